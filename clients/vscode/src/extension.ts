// Hearth for VS Code: starts `hearth serve`, passes settings, shows the server's
// state, and offers palette commands. All behaviour lives in the server.
import * as fs from 'node:fs';
import * as vscode from 'vscode';
import {
  DidChangeConfigurationNotification,
  LanguageClient,
  LanguageClientOptions,
  ServerOptions,
  State,
  TransportKind,
} from 'vscode-languageclient/node';
import {
  commandSummary, Inspected, missingServer, needsRestart, serverCommand, Status, statusView,
  userSettings,
} from './logic';

const LANGUAGES = ['python', 'javascript', 'javascriptreact', 'typescript', 'typescriptreact',
  'go', 'rust', 'java', 'c', 'cpp'];

let client: LanguageClient | undefined;
let output: vscode.OutputChannel;
let statusItem: vscode.StatusBarItem;
let completionItem: vscode.StatusBarItem;
let completionsPending = 0;
let statusTimer: NodeJS.Timeout | undefined;
let startError: string | undefined;
let starting: Promise<void> | undefined; // the client's start, while it runs

function inspectAll(): Inspected[] {
  const config = vscode.workspace.getConfiguration();
  const keys = Object.keys(
    vscode.extensions.getExtension('hearth.hearth')?.packageJSON?.contributes?.configuration?.properties ?? {});
  return keys.map((key) => ({ key, ...(config.inspect(key) ?? {}) }));
}

/**
 * The settings to send the server, on every path (the configuration it pulls, a change
 * pushed): in a workspace VS Code does not trust, the restricted ones are the user's
 * own only. VS Code's filter drops a folder's value only for keys with a schema of
 * their own: `hearth.backends.team` in a cloned .vscode/settings.json passed it.
 */
function hearthSettings(): Record<string, unknown> {
  return userSettings(inspectAll(), vscode.workspace.isTrusted ? undefined : restrictedKeys());
}

function restrictedKeys(): Set<string> {
  const pkg = vscode.extensions.getExtension('hearth.hearth')?.packageJSON;
  // Unknown: every key is the user's own only, the safe side.
  const keys: string[] | undefined = pkg?.capabilities?.untrustedWorkspaces?.restrictedConfigurations;
  return new Set(keys ?? Object.keys(pkg?.contributes?.configuration?.properties ?? {}));
}

function serverCommandFromSettings(): { command: string; args: string[] } {
  const config = vscode.workspace.getConfiguration('hearth');
  return serverCommand({
    serverPath: config.get<string | null>('serverPath'),
    pythonPath: config.get<string | null>('pythonPath'),
  });
}

function isExecutable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

function makeClient(command: string, args: string[]): LanguageClient {
  output.appendLine(`starting: ${command} ${args.join(' ')}`);
  const serverOptions: ServerOptions = { command, args, transport: TransportKind.stdio };
  const clientOptions: LanguageClientOptions = {
    documentSelector: [...LANGUAGES.map((language) => ({ scheme: 'file', language })),
      { scheme: 'file', pattern: '**/*' }],
    outputChannel: output,
    // VS Code's own workspace trust: an untrusted folder's .hearth.toml may not set
    // programs to run or servers to send code to (the server ignores those keys).
    // Asked at each start (a restart after the folder was trusted says so), and no
    // settings: they come from workspace/configuration, which the server asks for
    // before it loads anything; settings sent here too stayed under it for good, and
    // a setting the user removed came back from them.
    initializationOptions: () => ({ workspaceTrusted: vscode.workspace.isTrusted }),
    middleware: {
      // Ghost text from the server (textDocument/inlineCompletion): a status bar hint
      // while one is being generated.
      provideInlineCompletionItems: async (document, position, context, token, next) => {
        completionsPending += 1;
        completionItem.show();
        try {
          return await next(document, position, context, token);
        } finally {
          completionsPending -= 1;
          if (completionsPending === 0) completionItem.hide();
        }
      },
      // Commands run from code actions: the server's reason when one fails (the
      // client's default is a generic "Request workspace/executeCommand failed"),
      // and the server's summary, as from the palette.
      executeCommand: (command, args) => execute(command, args),
      workspace: {
        // Send only what the user set: defaults would override .hearth.toml.
        configuration: (params, token, next) =>
          params.items.map((item) => (item.section === 'hearth' ? hearthSettings() : null)),
      },
    },
  };
  const made = new LanguageClient('hearth', 'Hearth', serverOptions, clientOptions);
  // vscode-languageclient 9 ships inline completion (LSP 3.18) as a proposed feature:
  // without this the client never asks for textDocument/inlineCompletion.
  made.registerProposedFeatures();
  return made;
}

async function reportStartFailure(message: string): Promise<void> {
  startError = message;
  output.appendLine(`Hearth could not start: ${message}`);
  void refreshStatus();
  const choice = await vscode.window.showErrorMessage(
    `Hearth could not start: ${message}`, 'Show output', 'Open settings');
  if (choice === 'Show output') output.show();
  if (choice === 'Open settings') {
    await vscode.commands.executeCommand('workbench.action.openSettings', 'hearth.serverPath');
  }
}

async function start(): Promise<void> {
  startError = undefined;
  const { command, args } = serverCommandFromSettings();
  const missing = missingServer(command, process.env.PATH ?? '', isExecutable);
  if (missing) {
    client = undefined;
    await reportStartFailure(missing);
    return;
  }
  client = makeClient(command, args);
  client.onDidChangeState((e) => {
    if (e.newState === State.Stopped && !startError) startError = 'the server stopped';
    void refreshStatus();
  });
  starting = client.start();
  try {
    await starting;
  } catch (err) {
    await reportStartFailure(err instanceof Error ? err.message : String(err));
  } finally {
    starting = undefined;
  }
}

/** Stop the server, also one still starting (the client cannot stop it then: it went
 * on running, untracked, with its own model in memory). */
async function stopClient(): Promise<void> {
  await starting?.catch(() => undefined);
  if (client) await client.stop().catch(() => undefined);
}

let restarting: Promise<void> = Promise.resolve();

/** Run a server command; failures and summaries become notifications. */
async function execute<T>(command: string, args: unknown[]): Promise<T | undefined> {
  if (!client || client.state !== State.Running) {
    void vscode.window.showWarningMessage('Hearth is not running', 'Show output')
      .then((c) => c && output.show());
    return undefined;
  }
  try {
    const result = await client.sendRequest<T>('workspace/executeCommand', { command, arguments: args });
    const summary = commandSummary(result);
    if (summary) void vscode.window.showInformationMessage(summary);
    return result;
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    void vscode.window.showWarningMessage(`Hearth: ${message}`);
    return undefined;
  }
}

async function refreshStatus(): Promise<void> {
  let status: Status | undefined;
  if (client && client.state === State.Running) {
    try {
      status = await client.sendRequest<Status>('workspace/executeCommand', { command: 'hearth.status' });
    } catch {
      status = undefined;
    }
  }
  const view = statusView(status, client?.state === State.Running ? undefined : startError);
  statusItem.text = view.text;
  statusItem.tooltip = view.tooltip;
  statusItem.backgroundColor = view.error
    ? new vscode.ThemeColor('statusBarItem.errorBackground') : undefined;
  statusItem.show();
}

function editorArgs(): { uri: string; line: number } | undefined {
  const editor = vscode.window.activeTextEditor;
  if (!editor) {
    void vscode.window.showInformationMessage('Hearth: open a file first');
    return undefined;
  }
  return { uri: editor.document.uri.toString(), line: editor.selection.active.line };
}

interface GitRepository { rootUri: vscode.Uri; inputBox: { value: string } }
interface GitAPI { repositories: GitRepository[]; getRepository(uri: vscode.Uri): GitRepository | null }

async function writeCommitMessage(arg?: { rootUri?: vscode.Uri }): Promise<void> {
  const gitExtension = vscode.extensions.getExtension<{ getAPI(v: 1): GitAPI }>('vscode.git');
  const git = gitExtension && (gitExtension.isActive ? gitExtension.exports : await gitExtension.activate()).getAPI(1);
  if (!git || git.repositories.length === 0) {
    void vscode.window.showWarningMessage('Hearth: no git repository is open');
    return;
  }
  const active = vscode.window.activeTextEditor?.document.uri;
  const repo = (arg?.rootUri && git.getRepository(arg.rootUri))
    || (active && git.getRepository(active)) || git.repositories[0];
  const typed = repo.inputBox.value;
  const result = await vscode.window.withProgress(
    { location: vscode.ProgressLocation.SourceControl, title: 'Hearth: commit message' },
    () => execute<{ message: string; notices: string[]; source?: string }>(
      'hearth.generateCommitMessage', [{ repo: repo.rootUri.fsPath }]));
  if (!result) return;
  if (repo.inputBox.value !== typed) {
    // The user wrote in the box while Hearth worked: theirs stays unless they choose.
    const choice = await vscode.window.showInformationMessage(
      `Hearth: you changed the commit message meanwhile; Hearth's is "${result.message.split('\n')[0]}"`,
      'Replace mine');
    if (choice !== 'Replace mine') return;
  }
  repo.inputBox.value = result.message;
  for (const notice of result.notices) output.appendLine(`commit message: ${notice}`);
  // Not the model's words: say so where the user looks, not only in the log.
  if (result.source === 'structure') {
    void vscode.window.showInformationMessage(
      "Hearth: the model's messages were refused; this one is written from the diff's " +
      'structure (see the Hearth output for why).');
  } else if (result.source === 'author') {
    void vscode.window.showInformationMessage(
      "Hearth: this message is in the change's own words (a docstring or comment it adds), " +
      'not the model\'s (hearth.commit.authorWords).');
  }
}

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  output = vscode.window.createOutputChannel('Hearth');
  statusItem = vscode.window.createStatusBarItem(vscode.StatusBarAlignment.Right, 100);
  statusItem.command = 'hearth.showOutput';
  statusItem.name = 'Hearth';
  completionItem = vscode.window.createStatusBarItem(vscode.StatusBarAlignment.Right, 99);
  completionItem.name = 'Hearth completion';
  completionItem.text = '$(loading~spin) Hearth: completing';
  completionItem.tooltip = 'Hearth is writing a suggestion (ghost text)';
  context.subscriptions.push(output, statusItem, completionItem);
  const register = (name: string, fn: (...args: any[]) => unknown) =>
    context.subscriptions.push(vscode.commands.registerCommand(name, fn));
  register('hearth.showOutput', () => output.show());
  register('hearth.restartServer', () => {
    // One at a time: a second click waits for the first restart, then makes its own.
    restarting = restarting.then(async () => {
      await stopClient();
      await start();
    });
    return restarting;
  });
  register('hearth.reviewFile', async () => {
    const args = editorArgs();
    if (args) await execute('hearth.review', [{ uri: args.uri, scope: 'file' }]);
  });
  register('hearth.generateTestsHere', async () => {
    const args = editorArgs();
    if (args) await execute('hearth.generateTests', [args]);
  });
  register('hearth.generateDocstringHere', async () => {
    const args = editorArgs();
    if (args) await execute('hearth.generateDocstring', [args]);
  });
  register('hearth.documentFileHere', async () => {
    const args = editorArgs();
    if (args) await execute('hearth.documentFile', [{ uri: args.uri }]);
  });
  register('hearth.writeCommitMessage', writeCommitMessage);
  // Trusting the folder in VS Code trusts it for Hearth too, from then on.
  context.subscriptions.push(vscode.workspace.onDidGrantWorkspaceTrust(() => {
    if (client?.state === State.Running) {
      void client.sendRequest('workspace/executeCommand',
        { command: 'hearth.trustFolder', arguments: [{}] }).catch(() => undefined);
    }
  }));
  register('hearth.reindexWorkspace', () => execute('hearth.reindex', [{}]));
  context.subscriptions.push(vscode.workspace.onDidChangeConfiguration(async (e) => {
    if (needsRestart(['hearth.serverPath', 'hearth.pythonPath'].filter((k) => e.affectsConfiguration(k)))) {
      await vscode.commands.executeCommand('hearth.restartServer');
    } else if (e.affectsConfiguration('hearth') && client?.state === State.Running) {
      // Not `synchronize.configurationSection`: that pushes the whole section,
      // defaults included, which would override .hearth.toml and the environment.
      await client.sendNotification(DidChangeConfigurationNotification.type,
        { settings: { hearth: hearthSettings() } });
    }
  }));
  statusTimer = setInterval(() => void refreshStatus(), 2000);
  context.subscriptions.push({ dispose: () => statusTimer && clearInterval(statusTimer) });
  await start();
  await refreshStatus();
}

export async function deactivate(): Promise<void> {
  if (statusTimer) clearInterval(statusTimer);
  await restarting.catch(() => undefined);
  await stopClient();
}
