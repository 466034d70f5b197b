import { test } from 'node:test';
import assert from 'node:assert/strict';
import { commandSummary, count, missingServer, needsRestart, testsSummary, serverCommand, statusView, userSettings } from '../src/logic';

test('the server command prefers an explicit path, then a Python, then PATH', () => {
  assert.deepEqual(serverCommand({ serverPath: '/opt/hearth/bin/hearth ' }),
    { command: '/opt/hearth/bin/hearth', args: ['serve'] });
  assert.deepEqual(serverCommand({ pythonPath: '/venv/bin/python' }),
    { command: '/venv/bin/python', args: ['-m', 'hearth_lsp.server', 'serve'] });
  assert.deepEqual(serverCommand({ serverPath: '  ', pythonPath: null }),
    { command: 'hearth', args: ['serve'] });
});

test('only settings the user set are sent, nested, the most specific scope winning', () => {
  const sent = userSettings([
    { key: 'hearth.review.onSave', globalValue: 'file', workspaceValue: 'off' },
    { key: 'hearth.model.preset' }, // default only: not sent
    { key: 'hearth.model.contextLength', globalValue: 8192 },
    { key: 'hearth.index.exclude', workspaceFolderValue: ['vendor/**'] },
    { key: 'hearth.serverPath', globalValue: '/x' }, // the client's own
  ]);
  assert.deepEqual(sent, {
    review: { onSave: 'off' }, model: { contextLength: 8192 }, index: { exclude: ['vendor/**'] },
  });
});

test('only the server location needs a restart', () => {
  assert.equal(needsRestart(['hearth.review.onSave']), false);
  assert.equal(needsRestart(['hearth.pythonPath', 'hearth.model.preset']), true);
});

test('the status bar shows the model state, the device and indexing', () => {
  assert.match(statusView(undefined).text, /Hearth/);
  const ready = statusView({ model: 'ready', info: { name: 'smollm2', where: 'CPU (2 threads)' },
    index: { state: 'embedding', files: 6, chunks: 20, embedded: 5 } });
  assert.equal(ready.text, '$(flame) Hearth (CPU) · embedding 25%');
  assert.match(ready.tooltip, /smollm2 on CPU/);
  const broken = statusView({ model: 'error', error: 'model file not found: /m.gguf' });
  assert.equal(broken.error, true);
  assert.match(broken.tooltip, /model file not found/);
  assert.equal(statusView(undefined, 'spawn hearth ENOENT').error, true);
});

test('counts read as English', () => {
  assert.equal(count(1, 'finding'), '1 finding');
  assert.equal(count(0, 'finding'), '0 findings');
  assert.equal(count(3, 'passing test'), '3 passing tests');
});

test('the tests summary says where passing tests went, or that the edit was refused', () => {
  assert.equal(testsSummary({ applied: true, testFile: 'tests/test_a.py', passing: [1], failing: [1, 2] }),
    'Hearth: 1 passing test added to tests/test_a.py; 2 failing left out');
  assert.equal(testsSummary({ applied: false, testFile: 'tests/test_a.py', passing: [1, 2], failing: [] }),
    'Hearth: 2 passing tests not added: the editor did not apply the edit to tests/test_a.py; 0 failing left out');
});

test('a server that cannot start is named before the client tries', () => {
  const exists = (file: string) => file === '/usr/local/bin/hearth' || file === '/opt/venv/bin/hearth';
  assert.equal(missingServer('hearth', '/usr/bin:/usr/local/bin', exists), undefined);
  assert.match(missingServer('hearth', '/usr/bin', exists) ?? '', /`hearth` is not on PATH: set hearth.serverPath/);
  assert.equal(missingServer('/opt/venv/bin/hearth', '', exists), undefined);
  assert.match(missingServer('/opt/nope/hearth', '/usr/local/bin', exists) ?? '',
    /\/opt\/nope\/hearth does not exist or is not executable/);
});

test('commands from code actions get the same summary as from the palette', () => {
  assert.equal(commandSummary('hearth.review', { findings: 1, reviewed: ['function parse_price'] }),
    'Hearth: 1 finding (function parse_price)');
  assert.match(commandSummary('hearth.generateTests',
    { applied: true, testFile: 't.py', passing: [], failing: [1] }) ?? '', /0 passing tests added/);
  assert.equal(commandSummary('hearth.generateDocstring', { applied: true }), undefined);
  assert.equal(commandSummary('hearth.review', null), undefined);
});
