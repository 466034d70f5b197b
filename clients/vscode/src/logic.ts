// The extension's own decisions, kept free of the `vscode` module so they are
// unit-tested with node's test runner. Everything else lives in the server.

export interface ClientPaths {
  serverPath?: string | null;
  pythonPath?: string | null;
}

export interface ServerCommand {
  command: string;
  args: string[];
}

/** How to start `hearth serve`: an explicit executable, a Python with Hearth, or `hearth` on PATH. */
export function serverCommand(paths: ClientPaths): ServerCommand {
  if (paths.serverPath && paths.serverPath.trim()) {
    return { command: paths.serverPath.trim(), args: ['serve'] };
  }
  if (paths.pythonPath && paths.pythonPath.trim()) {
    return { command: paths.pythonPath.trim(), args: ['-m', 'hearth_lsp.server', 'serve'] };
  }
  return { command: 'hearth', args: ['serve'] };
}

/**
 * Why `command` cannot be started, or undefined when it can: checked before the
 * language client tries, so a wrong path is one clear message naming the setting
 * (instead of the client's generic "couldn't create connection").
 */
export function missingServer(
  command: string, pathEnv: string, isExecutable: (file: string) => boolean,
): string | undefined {
  if (command.includes('/') || command.includes('\\')) {
    return isExecutable(command) ? undefined
      : `${command} does not exist or is not executable: check hearth.serverPath / hearth.pythonPath`;
  }
  const dirs = pathEnv.split(process.platform === 'win32' ? ';' : ':').filter(Boolean);
  const exts = process.platform === 'win32' ? ['.exe', '.cmd', ''] : [''];
  if (dirs.some((dir) => exts.some((ext) => isExecutable(`${dir}/${command}${ext}`)))) return undefined;
  return `\`${command}\` is not on PATH: set hearth.serverPath to Hearth's executable (e.g. /path/to/hearth/.venv/bin/hearth)`;
}

/** What VS Code's `inspect()` says about one setting. */
export interface Inspected {
  key: string; // e.g. "hearth.review.onSave"
  globalValue?: unknown;
  workspaceValue?: unknown;
  workspaceFolderValue?: unknown;
}

/**
 * The settings the user actually set, nested ({review: {onSave: ...}}) without the
 * `hearth.` prefix and without the client-only keys. Defaults are left out on
 * purpose: sending them would override the server's other layers (.hearth.toml,
 * environment variables) with values nobody chose.
 */
/** What to send as `initializationOptions`: the settings the user set, nested by section;
 * `restricted`: the keys to take from the user's own settings only (untrusted workspace). */
export function userSettings(items: Inspected[], restricted?: ReadonlySet<string>): Record<string, unknown> {
  const out: Record<string, any> = {};
  for (const item of items) {
    // In a workspace VS Code does not trust, the settings it restricts (programs to
    // run, servers to send code to, the guards) come from the user's own settings
    // only: inspect() reports the folder's values, which VS Code itself would ignore.
    const value = restricted?.has(item.key) ? item.globalValue
      : item.workspaceFolderValue ?? item.workspaceValue ?? item.globalValue;
    if (value === undefined || value === null) continue;
    const parts = item.key.replace(/^hearth\./, '').split('.');
    if (parts.length === 1 && parts[0] === 'backends') {
      // The one object-valued setting ({team: {url: ...}}): merged by name across the
      // scopes, as VS Code's own get() does, so a folder's backend adds to the user's.
      out.backends = restricted?.has(item.key) ? value : Object.assign({},
        ...[item.globalValue, item.workspaceValue, item.workspaceFolderValue]
          .filter((v) => v && typeof v === 'object'));
      continue;
    }
    if (parts.length < 2) continue; // serverPath, pythonPath: the client's own
    let node = out;
    for (const part of parts.slice(0, -1)) node = node[part] ??= {};
    node[parts[parts.length - 1]] = value;
  }
  return out;
}

/** Settings whose change needs a new server process (the others are sent live). */
export function needsRestart(changedKeys: string[]): boolean {
  return changedKeys.some((k) => k === 'hearth.serverPath' || k === 'hearth.pythonPath');
}

export interface Status {
  model?: string; // loading | ready | error | empty
  error?: string | null;
  info?: { name?: string; where?: string } | null;
  index?: { state?: string; files?: number; chunks?: number; embedded?: number; error?: string | null } | null;
  routes?: Record<string, string[]>;
  backends?: { name: string; state?: string; model?: string; url?: string; breaker?: string; error?: string }[];
  lastAnswer?: { title?: string; backend?: string; fellBack?: boolean; notices?: string[]; at?: string } | null;
}

export interface StatusView {
  text: string;
  tooltip: string;
  error: boolean;
}

/** The status bar item for a `hearth.status` answer (or a server that is not running). */
export function statusView(status: Status | undefined, serverError?: string): StatusView {
  if (serverError) {
    return { text: '$(error) Hearth', tooltip: `Hearth is not running: ${serverError}`, error: true };
  }
  if (!status) return { text: '$(loading~spin) Hearth', tooltip: 'Hearth is starting', error: false };
  const where = status.info?.where ?? '';
  const device = where.startsWith('GPU') ? 'GPU' : where.startsWith('CPU') ? 'CPU' : '';
  let text: string;
  let error = false;
  // No route names the in-process model: the model servers are the state to show.
  const localUsed = !status.routes || Object.values(status.routes).some((r) => r.includes('local'));
  const servers = (status.backends ?? []).filter((b) => b.name !== 'local');
  switch (localUsed ? status.model : servers.some((b) => b.state === 'ready') ? 'ready' : 'servers') {
    case 'ready':
      text = `$(flame) Hearth${device ? ` (${device})` : ''}`;
      break;
    case 'error':
      text = '$(error) Hearth: no model';
      error = true;
      break;
    case 'servers':
      text = '$(cloud) Hearth';
      break;
    default:
      text = '$(loading~spin) Hearth: loading model';
  }
  const index = status.index;
  if (index && (index.state === 'indexing' || index.state === 'embedding')) {
    const pct = index.chunks ? Math.floor((100 * (index.embedded ?? 0)) / index.chunks) : 0;
    text += index.state === 'indexing' ? ' · indexing' : ` · embedding ${pct}%`;
  }
  const lines = [
    `Model: ${status.model ?? 'unknown'}${status.info?.name ? ` — ${status.info.name}` : ''}${where ? ` on ${where}` : ''}`,
  ];
  if (status.error) lines.push(`Error: ${status.error}`);
  for (const b of servers) {
    const state = b.error && b.state !== 'ready' ? `${b.state}: ${b.error}` : b.state ?? 'not used yet';
    lines.push(`Server ${b.name}${b.model ? ` (${b.model})` : ''}${b.url ? ` at ${b.url}` : ''}: ${state === 'empty' ? 'not used yet' : state}`);
  }
  if (status.routes && servers.length) {
    lines.push(`Routes: ${Object.entries(status.routes).map(([task, names]) => `${task} → ${names.join(', ')}`).join('; ')}`);
  }
  const last = status.lastAnswer;
  if (last?.backend) {
    lines.push(`Last answer (${last.at ?? ''}): ${last.backend}${last.fellBack ? ` — fell back: ${(last.notices ?? []).slice(-1)[0] ?? ''}` : ''}`);
    if (last.fellBack) text += ` · fell back to ${last.backend}`;
  }
  if (index) lines.push(`Index: ${index.state ?? 'off'}${index.files !== undefined ? `, ${index.files} files, ${index.chunks} chunks` : ''}`);
  if (index?.error) lines.push(`Index error: ${index.error}`);
  lines.push('Click to show the output.');
  return { text, tooltip: lines.join('\n'), error };
}

/** The line the server wrote for a finished command (`summary` in its result), if any. */
export function commandSummary(result: unknown): string | undefined {
  const summary = result && typeof result === 'object' ? (result as { summary?: unknown }).summary : undefined;
  return typeof summary === 'string' && summary ? summary : undefined;
}
