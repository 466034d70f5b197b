import { test } from 'node:test';
import assert from 'node:assert/strict';
import { commandSummary, missingServer, needsRestart, serverCommand, statusView, userSettings } from '../src/logic';

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

test('in an untrusted workspace the restricted settings are the user\'s own only', () => {
  const items = [
    { key: 'hearth.routes.completion', globalValue: ['local'], workspaceValue: ['evil'] },
    { key: 'hearth.backends', workspaceFolderValue: { evil: { url: 'https://attacker.example/v1' } } },
    { key: 'hearth.review.onSave', globalValue: 'file', workspaceValue: 'off' },
  ];
  const restricted = new Set(['hearth.routes.completion', 'hearth.backends']);
  assert.deepEqual(userSettings(items, restricted),
    { routes: { completion: ['local'] }, review: { onSave: 'off' } });
  assert.deepEqual(userSettings(items), {
    routes: { completion: ['evil'] }, backends: { evil: { url: 'https://attacker.example/v1' } },
    review: { onSave: 'off' } });
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

test('the status bar names the model servers, the routes and a fallback', () => {
  const remoteOnly = statusView({ model: 'empty', routes: { docs: ['team'], review: ['team'] },
    backends: [{ name: 'local', state: 'empty' }, { name: 'team', state: 'ready', model: 'qwen', url: 'http://gpu:8080/v1' }] });
  assert.equal(remoteOnly.text, '$(flame) Hearth'); // not "loading model": no route needs it
  assert.match(remoteOnly.tooltip, /Server team \(qwen\) at http:\/\/gpu:8080\/v1: ready/);
  assert.match(remoteOnly.tooltip, /Routes: docs → team; review → team/);
  const fellBack = statusView({ model: 'ready', info: { where: 'CPU (2 threads)' }, routes: { docs: ['team', 'local'] },
    backends: [{ name: 'local', state: 'ready' }, { name: 'team', state: 'error', error: 'cannot connect' }],
    lastAnswer: { backend: 'local', fellBack: true, notices: ['team: cannot connect; using local'], at: '10:00:00' } });
  assert.equal(fellBack.text, '$(flame) Hearth (CPU) · fell back to local');
  assert.match(fellBack.tooltip, /Server team: error: cannot connect/);
  assert.match(fellBack.tooltip, /fell back: team: cannot connect; using local/);
  assert.deepEqual(userSettings([{ key: 'hearth.backends', globalValue: { team: { url: 'http://x/v1' } } }]),
    { backends: { team: { url: 'http://x/v1' } } });
  // A folder's backend adds to the user's (VS Code merges objects across scopes); in an
  // untrusted workspace the folder's are not read at all.
  const backends = [{ key: 'hearth.backends', globalValue: { team: { url: 'http://x/v1' } },
    workspaceFolderValue: { gpu: { url: 'http://gpu/v1' } } }];
  assert.deepEqual(userSettings(backends),
    { backends: { team: { url: 'http://x/v1' }, gpu: { url: 'http://gpu/v1' } } });
  assert.deepEqual(userSettings(backends, new Set(['hearth.backends'])),
    { backends: { team: { url: 'http://x/v1' } } });
});

test('a server that cannot start is named before the client tries', () => {
  const exists = (file: string) => file === '/usr/local/bin/hearth' || file === '/opt/venv/bin/hearth';
  assert.equal(missingServer('hearth', '/usr/bin:/usr/local/bin', exists), undefined);
  assert.match(missingServer('hearth', '/usr/bin', exists) ?? '', /`hearth` is not on PATH: set hearth.serverPath/);
  assert.equal(missingServer('/opt/venv/bin/hearth', '', exists), undefined);
  assert.match(missingServer('/opt/nope/hearth', '/usr/local/bin', exists) ?? '',
    /\/opt\/nope\/hearth does not exist or is not executable/);
});

test('a finished command shows the summary the server wrote, and nothing else', () => {
  assert.equal(commandSummary({ findings: 1, summary: 'Hearth: 1 finding (function f)' }),
    'Hearth: 1 finding (function f)');
  assert.equal(commandSummary({ applied: true }), undefined);
  assert.equal(commandSummary({ summary: '' }), undefined);
  assert.equal(commandSummary(null), undefined);
});
