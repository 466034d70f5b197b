// Drives a real VS Code (code-server) in Debian's Chromium through Playwright:
// the Hearth extension is already installed; this script only clicks and reads.
// Input: a JSON file (argv[2]); output: result.json plus screenshots in `out`.
// Every step records what it saw, so a failure says how far the editor got.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const cfg = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const result = { ok: false, steps: [] };
const save = () => writeFileSync(join(cfg.out, 'result.json'), JSON.stringify(result, null, 2));
const step = (name, data = {}) => { result.steps.push({ name, ...data }); save(); };

const browser = await chromium.launch({
  executablePath: cfg.chromium,
  headless: true,
  // Without the background-networking flags Chromium keeps dialing Google on a closed network.
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
    '--disable-sync', '--disable-quic', '--no-first-run'],
});
const page = await browser.newPage({ viewport: { width: 1400, height: 850 } });
const shot = (name) => page.screenshot({ path: join(cfg.out, `${name}.png`) });
const hearthItem = page.locator('[id="hearth.hearth"]');
const notifications = () => page.$$eval('.notification-toast .notification-list-item-message',
  (els) => els.map((e) => e.textContent));

async function palette(title) {
  await page.keyboard.press('F1');
  await page.locator('.quick-input-widget').waitFor({ state: 'visible' });
  await page.keyboard.type(title);
  await page.locator('.quick-input-list .monaco-list-row', { hasText: title }).first().waitFor();
  await page.keyboard.press('Enter');
}

async function openFile(path, line) {
  // Click the row whose label is the file's name: Enter would take the first match,
  // and "pricing.py" also matches a recently opened "test_pricing.py".
  const name = new RegExp(`^${path.split('/').pop().replace(/[.]/g, '\\.')}`);
  await page.keyboard.press('Control+P');
  await page.locator('.quick-input-widget').waitFor({ state: 'visible' });
  await page.keyboard.type(path);
  await page.locator('.quick-input-list .monaco-list-row', { hasText: name }).first().click();
  await page.locator('.quick-input-widget').waitFor({ state: 'hidden' });
  await page.locator('.tab.active', { hasText: name }).waitFor();
  await page.keyboard.press('Control+G');
  await page.keyboard.type(String(line));
  await page.locator('.quick-input-list .monaco-list-row', { hasText: `go to line ${line}` }).waitFor();
  await page.keyboard.press('Enter');
  await page.locator('.quick-input-widget').waitFor({ state: 'hidden' });
  await page.locator('.statusbar-item', { hasText: `Ln ${line},` }).waitFor();
}

async function waitForStatus(predicate, timeout) {
  await page.waitForFunction(([source]) => {
    const label = document.getElementById('hearth.hearth')?.getAttribute('aria-label') ?? '';
    return new Function('label', source)(label);
  }, [predicate], { timeout });
  return { label: await hearthItem.getAttribute('aria-label'), text: (await hearthItem.textContent()).trim() };
}

async function workspace() {
  await page.goto(`${cfg.url}/?folder=${encodeURIComponent(cfg.folder)}`);
  await page.locator('.part.statusbar').waitFor({ timeout: 90_000 });
  step('workbench');
  await hearthItem.waitFor({ timeout: 60_000 });
  step('extension activated', { label: await hearthItem.getAttribute('aria-label') });
  const ready = await waitForStatus("return label.includes('Model: ready')", 120_000);
  step('model ready', ready);
  await shot('status-bar');

  // A setting changed in the Settings editor while running (the server logs it).
  if (cfg.setting) {
    await palette('Preferences: Open User Settings');
    await page.locator('.settings-editor').waitFor();
    await page.keyboard.type(cfg.setting.query);
    const item = page.locator('.setting-item-contents', { hasText: cfg.setting.title });
    await item.locator('select').selectOption(cfg.setting.value);
    // The editor writes settings.json debounced; closing it earlier loses the change.
    const deadline = Date.now() + 30_000;
    while (!readFileSync(cfg.setting.file, 'utf8').includes(`"${cfg.setting.query}"`)) {
      if (Date.now() > deadline) throw new Error(`${cfg.setting.query} never reached ${cfg.setting.file}`);
      await page.waitForTimeout(100);
    }
    await shot('settings');
    step('setting changed', cfg.setting);
    await page.keyboard.press('Control+W');
    await page.locator('.settings-editor').waitFor({ state: 'hidden' });
  }

  await openFile(cfg.file, cfg.line);
  await page.keyboard.press('Control+.');
  const rows = page.locator('.action-widget .monaco-list-row');
  await rows.filter({ hasText: 'Hearth:' }).first().waitFor({ timeout: 30_000 });
  const actions = await rows.allTextContents();
  step('code actions', { actions });
  await shot('code-actions');

  await rows.filter({ hasText: cfg.action }).first().click();
  await page.locator('.monaco-editor .view-lines', { hasText: cfg.expectText }).first().waitFor({ timeout: 60_000 });
  await page.keyboard.press('Control+S');
  await page.locator('.tab.active.dirty').waitFor({ state: 'detached' });
  step('code action applied and saved');
  await shot('docstring');

  // Review on save: the finding becomes a diagnostic (the Problems count in the status bar).
  await page.waitForFunction(() =>
    !/No Problems/.test(document.getElementById('status.problems')?.getAttribute('aria-label') ?? 'No Problems'),
  null, { timeout: 60_000 });
  await page.keyboard.press('Control+Shift+M');
  const problem = page.locator('.markers-panel .monaco-list-row', { hasText: 'hearth' }).first();
  await problem.waitFor({ timeout: 15_000 });
  step('review diagnostics', { problems: await page.locator('.markers-panel .monaco-list-row').allTextContents() });
  await shot('review-on-save');

  await palette('Hearth: Generate commit message');
  await page.keyboard.press('Control+Shift+G');
  const input = page.locator('.scm-editor .view-lines').first();
  await input.waitFor();
  await page.waitForFunction(() =>
    (document.querySelector('.scm-editor .view-lines')?.textContent ?? '').trim().length > 0,
  null, { timeout: 60_000 });
  const message = await page.$$eval('.scm-editor .view-line',
    (els) => els.map((e) => e.textContent.replace(/\u00a0/g, ' ')).join('\n'));
  step('commit message', { message: message.trim() });
  await shot('commit-message');

  // Tests for another function: only passing ones are inserted into the test file.
  await openFile(cfg.file, cfg.testsLine);
  await palette('Hearth: Generate tests');
  const toast = page.locator('.notification-toast', { hasText: 'passing test' });
  await toast.waitFor({ timeout: 120_000 });
  step('tests', { notifications: await notifications() });
  await shot('tests');
  // The edit went into the test file's buffer (not open until now): show it, save it.
  await openFile(cfg.testFile, 1);
  await page.keyboard.press('Control+End');
  await page.locator('.monaco-editor .view-lines', { hasText: cfg.expectTest }).first().waitFor();
  await shot('tests-inserted');
  await page.keyboard.press('Control+S');
  await page.locator('.tab.active.dirty').waitFor({ state: 'detached' });
  step('tests saved');

  // A new server process, and the status bar follows it back to ready.
  await palette('Hearth: Restart server');
  await page.waitForTimeout(500);
  step('restarted', await waitForStatus("return label.includes('Model: ready')", 60_000));

  // A command from a code action that the server refuses: its reason, not a generic error.
  await openFile(cfg.file, cfg.refusedLine);
  await page.keyboard.press('Control+.');
  await page.locator('.action-widget .monaco-list-row', { hasText: cfg.refusedAction }).first().click();
  await page.locator('.notification-toast', { hasText: cfg.refusedText }).waitFor({ timeout: 60_000 });
  step('refused', { notifications: await notifications() });
  await shot('refused');
}

async function brokenServer() {
  await page.goto(`${cfg.url}/?folder=${encodeURIComponent(cfg.folder)}`);
  await hearthItem.waitFor({ timeout: 90_000 });
  const status = await waitForStatus("return label.includes('not running')", 60_000);
  await page.locator('.notification-toast', { hasText: 'Hearth could not start' }).waitFor({ timeout: 30_000 });
  step('start failure', { ...status, notifications: await notifications(),
    buttons: await page.locator('.notification-toast .monaco-button').allTextContents() });
  await shot('start-failure');
}

// The real model, started through hearth.pythonPath: ready, and actions on a function.
async function realModel() {
  await page.goto(`${cfg.url}/?folder=${encodeURIComponent(cfg.folder)}`);
  await hearthItem.waitFor({ timeout: 90_000 });
  step('model ready', await waitForStatus("return label.includes('Model: ready')", 240_000));
  await openFile(cfg.file, cfg.line);
  await page.keyboard.press('Control+.');
  const rows = page.locator('.action-widget .monaco-list-row');
  await rows.filter({ hasText: 'Hearth:' }).first().waitFor({ timeout: 30_000 });
  step('code actions', { actions: await rows.allTextContents() });
  await shot('real-model');
  // What the small model writes varies; either the docstring goes in or Hearth says why not.
  await rows.filter({ hasText: 'Hearth: Generate docstring' }).first().click();
  const inserted = page.locator('.monaco-editor .view-line', { hasText: '"""' }).nth(1);
  const refused = page.locator('.notification-toast', { hasText: 'Hearth' });
  await inserted.or(refused).first().waitFor({ timeout: 240_000 });
  step('docstring', { inserted: await inserted.isVisible(), notifications: await notifications() });
  await shot('real-model-docstring');
}

// Ghost text: appears after typing, Tab accepts it, typing on (a character that
// disagrees) dismisses it. The server's engine is scripted (see the Python test).
const ghostText = async () => (await page.$$eval('.monaco-editor .ghost-text-decoration',
  (els) => els.map((e) => e.textContent).join(''))).replace(/\u00a0/g, ' ');
const lineText = (n) => page.$$eval('.monaco-editor .view-line',
  (els) => els.map((e) => e.textContent.replace(/\u00a0/g, ' ')));

async function typeAt(line, text) {
  await page.keyboard.press('Control+G');
  await page.keyboard.type(String(line));
  await page.locator('.quick-input-list .monaco-list-row', { hasText: `go to line ${line}` }).waitFor();
  await page.keyboard.press('Enter');
  await page.locator('.quick-input-widget').waitFor({ state: 'hidden' });
  await page.keyboard.press('End');
  await page.keyboard.type(text, { delay: 60 });
}

async function inlineCompletion() {
  await page.goto(`${cfg.url}/?folder=${encodeURIComponent(cfg.folder)}`);
  await hearthItem.waitFor({ timeout: 90_000 });
  step('model ready', await waitForStatus("return label.includes('Model: ready')", 120_000));
  await openFile(cfg.file, cfg.acceptLine);
  await page.keyboard.press('End');
  await page.keyboard.type(cfg.typed, { delay: 60 });
  // Ghost text is split over several spans (and spaces are no-break spaces): poll the
  // joined text rather than one element.
  const ghostAppears = async () => {
    const deadline = Date.now() + 60_000;
    while (!(await ghostText()).includes(cfg.ghostHas)) {
      if (Date.now() > deadline) {
        // What the editor holds and what the server saw, for the failure's diagnosis.
        throw new Error(`no ghost text "${cfg.ghostHas}": "${await ghostText()}"\n` +
          `lines: ${JSON.stringify(await lineText())}\n` +
          `server log:\n${readFileSync(cfg.serverLog, 'utf8').slice(-3000)}`);
      }
      await page.waitForTimeout(100);
    }
  };
  await ghostAppears();
  step('ghost shown', { ghost: await ghostText() });
  await shot('ghost-text');
  await page.keyboard.press('Tab');
  await page.locator('.monaco-editor .view-line', { hasText: cfg.acceptedHas }).first().waitFor({ timeout: 15_000 });
  step('accepted', { lines: await lineText(), ghost: await ghostText() });
  await shot('ghost-accepted');

  await typeAt(cfg.cancelLine, cfg.typed);
  await ghostAppears();
  step('ghost shown again', { ghost: await ghostText() });
  await page.keyboard.type(cfg.typeOn);
  // The server answered the request at the new position (it logs each answer).
  const deadline = Date.now() + 60_000;
  while (!readFileSync(cfg.serverLog, 'utf8').includes(cfg.answeredAfter)) {
    if (Date.now() > deadline) throw new Error(`no answer logged for ${cfg.answeredAfter}`);
    await page.waitForTimeout(100);
  }
  await page.waitForTimeout(300); // let the editor render what came back
  step('typed on', { ghost: await ghostText(), lines: await lineText() });
  await shot('ghost-dismissed');
  await page.keyboard.press('Control+S');
  await page.locator('.tab.active.dirty').waitFor({ state: 'detached' });
  // On a busy machine the tab can look clean before the file is written: wait for the
  // last thing typed to be on disk (an earlier state of the file is not the save).
  const file = join(cfg.folder, cfg.file);
  const until = Date.now() + 30_000;
  while (!readFileSync(file, 'utf8').includes(cfg.savedHas ?? cfg.acceptedHas)) {
    if (Date.now() > until) throw new Error(`${cfg.file} was not saved`);
    await page.waitForTimeout(100);
  }
  step('saved');
}

const scenarios = { workspace, 'broken-server': brokenServer, 'real-model': realModel,
  'inline-completion': inlineCompletion };
try {
  await scenarios[cfg.scenario]();
  result.ok = true;
} catch (err) {
  result.error = String(err?.stack ?? err);
  result.notifications = await notifications().catch(() => []);
  await shot('failure').catch(() => undefined);
} finally {
  save();
  await browser.close();
}
