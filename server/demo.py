"""`hearth demo`: Hearth end to end, over LSP, as an editor would drive it.

It copies the demo workspace into a temporary git repository, starts
`hearth serve` as a child process, and plays the editor's part: open files,
ask for code actions on each function and resolve them (docstrings), review a
file (diagnostics), generate tests for a function (run in the sandbox, only
passing ones applied), and write a commit message for the staged changes.
Whatever the model says that fails validation is shown as refused.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.lsp.client import LanguageClient

from ..indexer.lines import split_lines
from . import __version__
from .lsp.edits import apply_text_edits, edits_for
from .tasks.docs.python import list_functions

SERVER = [sys.executable, "-m", "hearth_lsp.server", "serve"]


def find_demo_workspace() -> Path | None:
    here = Path(__file__).resolve().parent
    for base in (Path.cwd(), *Path.cwd().parents, here.parent):
        candidate = base / "examples" / "demo-workspace"
        if candidate.is_dir():
            return candidate
    return None


def _copy_to_git(src: Path, dest: Path) -> None:
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns(".git", "__pycache__", ".venv"))
    env = {**os.environ, "GIT_AUTHOR_NAME": "Hearth Demo", "GIT_AUTHOR_EMAIL": "demo@localhost",
           "GIT_COMMITTER_NAME": "Hearth Demo", "GIT_COMMITTER_EMAIL": "demo@localhost"}
    for cmd in (["git", "init", "-q", "-b", "main"], ["git", "add", "-A"],
                ["git", "commit", "-q", "-m", "demo workspace"]):
        subprocess.run(cmd, cwd=dest, env=env, check=True, capture_output=True)


class DemoClient(LanguageClient):
    def __init__(self) -> None:
        super().__init__("hearth-demo", __version__)
        self.titles: dict[Any, str] = {}
        self.messages: list[str] = []
        self.diagnostics: dict[str, list[types.Diagnostic]] = {}

        @self.feature(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
        def _diagnostics(params: types.PublishDiagnosticsParams) -> None:
            self.diagnostics[params.uri] = list(params.diagnostics)

        @self.feature(types.WORKSPACE_APPLY_EDIT)
        def _apply(params: types.ApplyWorkspaceEditParams) -> types.ApplyWorkspaceEditResult:
            for change in params.edit.document_changes or []:
                if isinstance(change, types.CreateFile):
                    path = Path(_fs_path(change.uri))
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.touch()
                elif isinstance(change, types.TextDocumentEdit):
                    path = Path(_fs_path(change.text_document.uri))
                    text = path.read_text(encoding="utf-8") if path.exists() else ""
                    edits = [e for e in change.edits if isinstance(e, types.TextEdit)]
                    path.write_text(apply_text_edits(text, edits), encoding="utf-8")
            return types.ApplyWorkspaceEditResult(applied=True)

        @self.feature(types.WINDOW_WORK_DONE_PROGRESS_CREATE)
        def _create(params: types.WorkDoneProgressCreateParams) -> None:
            return None

        @self.feature(types.PROGRESS)
        def _progress(params: types.ProgressParams) -> None:
            value = params.value if isinstance(params.value, dict) else {}
            if value.get("kind") == "begin":
                self.titles[params.token] = value.get("title", "")
                print(f"  … {value.get('title')}")
            elif value.get("kind") == "end":
                print(f"  ✓ {self.titles.pop(params.token, '')}: {value.get('message', '')}")

        @self.feature(types.WINDOW_SHOW_MESSAGE)
        def _show(params: types.ShowMessageParams) -> None:
            self.messages.append(params.message)
            print(f"  [server] {params.message}")

        @self.feature(types.WINDOW_LOG_MESSAGE)
        def _log(params: types.LogMessageParams) -> None:
            if params.message.startswith("hearth: model ready"):
                print(f"  [log] {params.message}")


def _capabilities() -> types.ClientCapabilities:
    return types.ClientCapabilities(
        window=types.WindowClientCapabilities(work_done_progress=True),
        workspace=types.WorkspaceClientCapabilities(apply_edit=True, configuration=False),
        text_document=types.TextDocumentClientCapabilities(
            code_action=types.CodeActionClientCapabilities(
                resolve_support=types.ClientCodeActionResolveOptions(
                    properties=["edit", "command"]),
                data_support=True)))


async def _wait_for_model(client: LanguageClient, timeout: float = 600) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status = await client.workspace_execute_command_async(
            types.ExecuteCommandParams(command="hearth.status")) or {}
        if status.get("model") in ("ready", "error") or time.monotonic() > deadline:
            return dict(status)
        await asyncio.sleep(0.1)


async def _search(client: LanguageClient, timeout: float = 180) -> None:
    """Workspace search over the index the server built in the background."""
    deadline = time.monotonic() + timeout
    index: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = await client.workspace_execute_command_async(
            types.ExecuteCommandParams(command="hearth.status")) or {}
        index = status.get("index") or {}
        if index.get("state") in ("ready", "readonly", "error", "off"):
            break
        await asyncio.sleep(0.2)
    print(f"\n== workspace index: {index.get('state')}, {index.get('files', 0)} files, "
          f"{index.get('chunks', 0)} chunks, {index.get('embedded', 0)} embedded")
    if index.get("state") in ("error", "off", None):
        return
    for query in ("convert a price string to cents", "which items are running low"):
        results = await client.workspace_execute_command_async(types.ExecuteCommandParams(
            command="hearth.search", arguments=[{"query": query, "k": 3}]))
        print(f"-- hearth.search {query!r}")
        for r in results or []:
            print(f"   {r['path']}:{r['start_line']}-{r['end_line']}  {r['symbol'] or '(module)'}"
                  f"  [{r['kind']}]  {r['score']:.4f}")


def _fs_path(uri: str) -> str:
    from pygls.uris import to_fs_path

    return to_fs_path(uri) or uri


async def _command(client: LanguageClient, command: str, args: dict[str, Any]) -> Any:
    """Run a Hearth command; a refusal (validation, git state) is printed, not raised."""
    try:
        return await client.workspace_execute_command_async(
            types.ExecuteCommandParams(command=command, arguments=[args]))
    except Exception as exc:
        print(f"   refused: {getattr(exc, 'message', None) or exc}")
        return None


def _reopen(client: LanguageClient, path: Path) -> str:
    """Tell the server the file's current text (the demo edits files on disk too)."""
    uri = path.as_uri()
    client.text_document_did_close(types.DidCloseTextDocumentParams(
        text_document=types.TextDocumentIdentifier(uri=uri)))
    client.text_document_did_open(types.DidOpenTextDocumentParams(types.TextDocumentItem(
        uri=uri, language_id="python", version=100, text=path.read_text(encoding="utf-8"))))
    return uri


async def _review(client: DemoClient, workspace: Path) -> None:
    path = workspace / "inventory" / "models.py"
    print("\n== review: inventory/models.py (hearth.review, whole file; only findings whose "
          "quote is really in the code and whose message is about it are kept)")
    uri = _reopen(client, path)
    t0 = time.perf_counter()
    result = await _command(client, "hearth.review", {"uri": uri, "scope": "file"})
    if result is None:
        return
    await asyncio.sleep(0.2)  # publishDiagnostics follows the answer
    print(f"   reviewed {', '.join(result['reviewed'])} in {time.perf_counter() - t0:.1f} s: "
          f"{result['findings']} findings")
    for d in client.diagnostics.get(uri, []):
        print(f"   {path.name}:{d.range.start.line + 1}:{d.range.start.character + 1} "
              f"[{d.code}] {d.message}")


async def _tests(client: DemoClient, workspace: Path) -> None:
    path = workspace / "inventory" / "pricing.py"
    fn = next((f for f in list_functions(path.read_text(encoding="utf-8"))
               if f.name == "apply_discount"), None)
    if fn is None:
        return
    print("\n== tests: inventory/pricing.py::apply_discount (hearth.generateTests; run in the "
          "sandbox, only passing tests are inserted)")
    uri = _reopen(client, path)
    t0 = time.perf_counter()
    result = await _command(client, "hearth.generateTests", {"uri": uri, "line": fn.def_line})
    if result is None:
        return
    print(f"   {len(result['passing'])} passing (inserted into {result['testFile']}: "
          f"{result['applied']}), {len(result['failing'])} failing, "
          f"{time.perf_counter() - t0:.1f} s")
    for t in result["passing"]:
        print("\n".join("   | " + line for line in t["source"].splitlines()))
    for t in result["failing"]:
        last = t["message"].strip().splitlines()[-1] if t["message"].strip() else ""
        print(f"   left out {t['name']}: {last[:120]}")


async def _commit_message(client: DemoClient, workspace: Path) -> None:
    subprocess.run(["git", "add", "-A"], cwd=workspace, check=True, capture_output=True)
    print("\n== commit message for the staged changes (hearth.generateCommitMessage; the "
          "server never commits)")
    t0 = time.perf_counter()
    result = await _command(client, "hearth.generateCommitMessage", {"repo": str(workspace)})
    if result is None:
        return
    print(f"   ({time.perf_counter() - t0:.1f} s)")
    print("\n".join("   | " + line for line in result["message"].splitlines()))
    for notice in result["notices"]:
        print(f"   note: {notice}")


async def _drain(stream: asyncio.StreamReader | None, log_file: Path) -> None:
    if stream is None:
        return
    with log_file.open("wb") as fh:
        while chunk := await stream.read(65536):
            fh.write(chunk)
            fh.flush()


async def _run(workspace: Path, env: dict[str, str], options: dict[str, Any]) -> int:
    client = DemoClient()
    await client.start_io(*SERVER, env=env, cwd=str(workspace))
    server_log = workspace.parent / "hearth-server.log"
    drain = asyncio.create_task(_drain(client._server.stderr if client._server else None,
                                       server_log))
    started = time.perf_counter()
    await client.initialize_async(types.InitializeParams(
        capabilities=_capabilities(), root_uri=workspace.as_uri(), process_id=os.getpid(),
        initialization_options=options or None,
        workspace_folders=[types.WorkspaceFolder(uri=workspace.as_uri(), name=workspace.name)]))
    print(f"initialize answered in {(time.perf_counter() - started) * 1000:.0f} ms "
          "(the model loads in the background)")
    client.initialized(types.InitializedParams())
    status = await _wait_for_model(client)
    if status["model"] != "ready":
        print(f"model not ready: {status['error']}")
    else:
        info = status["info"]
        print(f"model: {info['name']} on {info['where']}, context {info['contextLength']}")
    written = 0
    for path in sorted(workspace.rglob("*.py")):
        rel = path.relative_to(workspace)
        if rel.parts[0] == "tests" or status["model"] != "ready":
            continue
        uri, text, version = path.as_uri(), path.read_text(encoding="utf-8"), 1
        client.text_document_did_open(types.DidOpenTextDocumentParams(
            types.TextDocumentItem(uri=uri, language_id="python", version=version, text=text)))
        print(f"\n== {rel}")
        for fn in list_functions(text):
            # Recompute: earlier docstrings moved the lines down.
            fn = next(f for f in list_functions(text) if f.qualname == fn.qualname)
            here = types.Position(line=fn.def_line, character=0)
            actions = await client.text_document_code_action_async(types.CodeActionParams(
                text_document=types.TextDocumentIdentifier(uri=uri),
                range=types.Range(start=here, end=here),
                context=types.CodeActionContext(diagnostics=[])))
            titles = [a.title for a in actions or []]
            print(f"-- {fn.qualname}: {', '.join(titles) or 'no actions'}")
            action = next((a for a in actions or [] if isinstance(a, types.CodeAction)
                           and a.title == "Hearth: Generate docstring"), None)
            if action is None:
                continue
            t0 = time.perf_counter()
            try:
                resolved = await client.code_action_resolve_async(action)
            except Exception as exc:  # the server refuses invalid output: say so, go on
                print(f"   (no docstring: {exc})")
                continue
            if resolved.edit is None:
                continue
            text = apply_text_edits(text, edits_for(resolved.edit, uri))
            version += 1
            client.text_document_did_change(types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
                content_changes=[types.TextDocumentContentChangeWholeDocument(text=text)]))
            new_fn = next(f for f in list_functions(text) if f.qualname == fn.qualname)
            lines = split_lines(text)[new_fn.def_line: new_fn.body_line + 1]
            print(f"   ({time.perf_counter() - t0:.2f} s)")
            print("\n".join("   | " + line for line in lines))
            written += 1
        path.write_text(text, encoding="utf-8")
    if status["model"] == "ready":
        await _review(client, workspace)
        await _tests(client, workspace)
        await _commit_message(client, workspace)
    await _search(client)
    await client.shutdown_async(None)
    client.exit(None)
    await client.stop()
    drain.cancel()
    if written:
        diff = subprocess.run(["git", "diff", "HEAD", "--stat"], cwd=workspace,
                              capture_output=True, text=True).stdout
        print(f"\n{written} docstrings written through the LSP; git diff HEAD --stat:\n{diff}")
    else:
        print("\nno docstring passed validation this time (the refusals are above)")
    print(f"workspace: {workspace}\nserver log: {server_log}")
    return 0 if status["model"] == "ready" else 1


def run_demo(workspace: str | None = None, preset: str | None = None,
             model_path: str | None = None) -> int:
    source = Path(workspace) if workspace else find_demo_workspace()
    if source is None or not source.is_dir():
        print("demo workspace not found: pass --workspace PATH", file=sys.stderr)
        return 2
    target = Path(tempfile.mkdtemp(prefix="hearth-demo-")) / source.name
    _copy_to_git(source, target)
    print(f"hearth demo: working on a git copy of {source} at {target}")
    options: dict[str, Any] = {}
    if preset:
        options.setdefault("model", {})["preset"] = preset
    if model_path:
        options.setdefault("model", {})["path"] = str(Path(model_path).resolve())
    return asyncio.run(_run(target, dict(os.environ), options))
