"""LSP handlers: read params, call domain code, convert the result. Nothing more."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.exceptions import (
    JsonRpcContentModified,
    JsonRpcInvalidParams,
)
from pygls.uris import to_fs_path
from pygls.workspace import TextDocument
from pygls.workspace.position_codec import ServerTextPosition

from ...indexer.languages import language_of
from .. import doccomment, tasks
from ..docstring import DocstringError, Edit, find_function
from ..index_service import IndexNotReady
from ..settings import SPECS
from . import filedoc, review, testgen
from .commit import CMD_COMMIT_MESSAGE, command_commit_message
from .common import (
    PROGRESS_INTERVAL_S,
    RequestFailed,
    call_soon,
    client_resolves,
    failures_reported,
    resolve_command_action,
    wants_kind,
)
from .server import HearthServer

log = logging.getLogger("hearth")

DOCSTRING_KIND = types.CodeActionKind.RefactorRewrite + ".hearth.docstring"
CMD_DOCSTRING = "hearth.generateDocstring"
CMD_STATUS = "hearth.status"
CMD_RELOAD = "hearth.reloadModel"
CMD_SEARCH = "hearth.search"
CMD_REINDEX = "hearth.reindex"


def register(ls: HearthServer) -> None:
    ls.feature(types.INITIALIZE)(initialize)
    ls.feature(types.INITIALIZED)(initialized)
    ls.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)(did_change_configuration)
    ls.feature(types.SHUTDOWN)(shutdown)
    ls.feature(types.TEXT_DOCUMENT_CODE_ACTION, types.CodeActionOptions(
        code_action_kinds=[DOCSTRING_KIND, review.REVIEW_KIND, review.SYMBOL_REVIEW_KIND,
                           testgen.TESTS_KIND, filedoc.DOCUMENT_FILE_KIND,
                           types.CodeActionKind.QuickFix],
        resolve_provider=True))(code_action)
    ls.feature(types.CODE_ACTION_RESOLVE)(code_action_resolve)
    ls.command(CMD_DOCSTRING)(command_docstring)
    ls.command(CMD_STATUS)(command_status)
    ls.command(CMD_RELOAD)(command_reload)
    ls.command(CMD_SEARCH)(command_search)
    ls.command(CMD_REINDEX)(command_reindex)
    ls.command(CMD_COMMIT_MESSAGE)(command_commit_message)
    ls.command(review.CMD_REVIEW)(review.command_review)
    ls.command(testgen.CMD_TESTS)(testgen.command_tests)
    ls.command(filedoc.CMD_DOCUMENT_FILE)(filedoc.command_document_file)
    ls.feature(types.TEXT_DOCUMENT_DID_CHANGE)(did_change)
    ls.feature(types.TEXT_DOCUMENT_DID_CLOSE)(did_close)
    ls.feature(types.WORKSPACE_SYMBOL)(workspace_symbol)
    ls.feature(types.TEXT_DOCUMENT_DID_SAVE)(did_save)
    ls.feature(types.WORKSPACE_DID_CHANGE_WATCHED_FILES)(did_change_watched_files)


# ------------------------------------------------------------------- lifecycle


def initialize(ls: HearthServer, params: types.InitializeParams) -> None:
    # Answer at once: the model loads in the background after `initialized`.
    root_uri = params.root_uri or (params.workspace_folders[0].uri if params.workspace_folders
                                   else None)
    root = to_fs_path(root_uri) if root_uri else params.root_path
    ls.sources.root = Path(root) if root else None
    ls.sources.initialization_options = params.initialization_options
    ls.apply_settings()


async def initialized(ls: HearthServer, params: types.InitializedParams) -> None:
    ls.client_log.loop = asyncio.get_running_loop()
    await _pull_configuration(ls)
    ls.apply_settings()
    ls.start_index()
    await _watch_files(ls)
    await ls.load_model()


async def _watch_files(ls: HearthServer) -> None:
    """Ask the client to report file changes (it sees edits outside the editor too).

    The server's own watchdog observer covers clients that cannot do this;
    a change reported twice costs one hash comparison.
    """
    workspace = ls.client_capabilities.workspace
    watched = workspace.did_change_watched_files if workspace else None
    if ls.index is None or not (watched and watched.dynamic_registration):
        return
    options = types.DidChangeWatchedFilesRegistrationOptions(
        watchers=[types.FileSystemWatcher(glob_pattern="**/*")])
    try:
        await ls.client_register_capability_async(types.RegistrationParams(registrations=[
            types.Registration(id="hearth-watched-files",
                               method=types.WORKSPACE_DID_CHANGE_WATCHED_FILES,
                               register_options=options)]))
    except Exception as exc:  # the index still has its own watcher
        log.info("client did not register file watchers: %s", exc)


async def _pull_configuration(ls: HearthServer) -> None:
    workspace = ls.client_capabilities.workspace
    if not (workspace and workspace.configuration):
        return
    try:
        result = await ls.workspace_configuration_async(types.ConfigurationParams(
            items=[types.ConfigurationItem(section="hearth")]))
    except Exception as exc:  # a client that fails here must not stop the server
        log.warning("workspace/configuration failed: %s", exc)
        return
    if result and isinstance(result[0], dict):
        ls.sources.client_configuration = result[0]


async def did_change_configuration(ls: HearthServer,
                                   params: types.DidChangeConfigurationParams) -> None:
    pushed = params.settings
    if isinstance(pushed, dict) and pushed:
        ls.sources.client_configuration = pushed.get("hearth", pushed)
    else:  # the "pull" model: the notification only says something changed
        await _pull_configuration(ls)
    changed = ls.apply_settings()
    log.info("settings changed: %s", ", ".join(SPECS[k].key for k in sorted(changed)) or "none")
    if any(SPECS[k].reload for k in changed):
        await ls.load_model()


def shutdown(ls: HearthServer, params: None) -> None:
    ls.worker.shutdown()
    ls.stop_index()


# ----------------------------------------------------------------- code actions


def _check_position(doc: TextDocument, position: types.Position) -> None:
    if position.line < 0 or position.character < 0:
        raise JsonRpcInvalidParams(f"position {position.line}:{position.character} is negative")
    if position.line > len(doc.lines):
        raise JsonRpcInvalidParams(
            f"line {position.line} is outside {doc.uri} ({len(doc.lines)} lines)")



def code_action(ls: HearthServer, params: types.CodeActionParams) -> list[types.CodeAction]:
    """Cheap: parse the file and offer actions. The model runs only on resolve/command."""
    doc = ls.get_document(params.text_document.uri)
    _check_position(doc, params.range.start)
    _check_position(doc, params.range.end)
    return [*review.quick_fixes(ls, doc, params), *_docstring_actions(ls, doc, params),
            *testgen.tests_actions(ls, doc, params), *review.review_actions(ls, doc, params),
            *filedoc.document_file_actions(ls, doc, params)]


def _docstring_actions(ls: HearthServer, doc: TextDocument,
                       params: types.CodeActionParams) -> list[types.CodeAction]:
    lang = language_of(doc.uri, doc.language_id)
    if not wants_kind(params.context.only, DOCSTRING_KIND):
        return []
    if lang == "python":
        fn: Any = find_function(doc.source, params.range.start.line)
        noun = "docstring"
    elif doccomment.supported(lang):
        fn = doccomment.find_target(doc.source, lang, params.range.start.line)
        noun = "doc comment"
    else:
        return []
    if fn is None:
        return []
    title = (f"Hearth: Regenerate {noun}" if fn.has_docstring
             else f"Hearth: Generate {noun}")
    data = {"task": "docstring", "uri": doc.uri, "version": doc.version,
            "line": fn.def_line, "symbol": fn.qualname, "regenerate": fn.has_docstring}
    action = types.CodeAction(title=title, kind=DOCSTRING_KIND, data=data)
    if not client_resolves(ls, "edit"):
        # Older clients cannot resolve `edit`: give them a command instead.
        action.command = types.Command(title=title, command=CMD_DOCSTRING, arguments=[data])
    return [action]


def _action_args(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise JsonRpcInvalidParams("expected an object with uri and line")
    if not isinstance(data.get("line"), int) or data["line"] < 0:
        raise JsonRpcInvalidParams("'line' must be a non-negative integer")
    return data


async def code_action_resolve(ls: HearthServer, action: types.CodeAction) -> types.CodeAction:
    if resolve_command_action(action):  # the command runs the model, not the resolve
        return action
    data = _action_args(action.data)
    doc = ls.get_document(data.get("uri"))
    if data.get("version") is not None and data["version"] != doc.version:
        raise JsonRpcContentModified(
            f"{doc.uri} changed since the action was offered; ask for code actions again")
    try:
        result = await _docstring(ls, doc, data["line"], bool(data.get("regenerate")))
    except RequestFailed as exc:
        if isinstance(exc.__cause__, tasks.TaskCancelled):
            raise
        # A refusal (or no model) is news for the user, not a protocol failure: say
        # why, and resolve to an action without an edit. An error response would
        # reach them as the editor's generic "Request codeAction/resolve failed".
        ls.show(f"Hearth: no docstring: {exc}", types.MessageType.Warning)
        return action
    action.edit = _workspace_edit(doc, result.edit)
    return action


async def command_docstring(ls: HearthServer, *args: Any) -> dict[str, Any]:
    """`hearth.generateDocstring` [{uri, line, regenerate?}]: compute, apply, report."""
    data = _action_args(args[0] if args else None)
    doc = ls.get_document(data.get("uri"))
    _check_position(doc, types.Position(line=data["line"], character=0))
    result = await _docstring(ls, doc, data["line"], bool(data.get("regenerate")))
    applied = await ls.workspace_apply_edit_async(types.ApplyWorkspaceEditParams(
        edit=_workspace_edit(doc, result.edit), label=f"Docstring for {result.function.qualname}"))
    return {"applied": bool(applied and applied.applied), "symbol": result.function.qualname,
            "docstring": result.text}


async def _docstring(ls: HearthServer, doc: TextDocument, line: int, regenerate: bool):
    source, version = doc.source, doc.version
    lang = language_of(doc.uri, doc.language_id)
    python = lang == "python"
    try:
        fn: Any = find_function(source, line) if python else (
            doccomment.find_target(source, lang, line) if doccomment.supported(lang) else None)
    except doccomment.DocCommentError:
        fn = None
    label = fn.qualname if fn else f"line {line + 1}"
    pieces: list[str] = []
    job_key = ("docstring", doc.uri)
    loop = asyncio.get_running_loop()

    async with ls.work_progress(f"Hearth: docstring for {label}", cancel_key=job_key) as report:
        last = 0.0

        def on_piece(piece: str) -> None:
            # At most ~10 reports a second: a notification per token costs the
            # decoding threads CPU on small machines.
            nonlocal last
            pieces.append(piece)
            now = loop.time()
            if len(pieces) == 1 or now - last >= PROGRESS_INTERVAL_S:
                last = now
                report(f"{len(pieces)} tokens")

        result: tasks.DocstringResult | tasks.DocCommentResult
        with failures_reported(report, (DocstringError, doccomment.DocCommentError,
                                        tasks.TaskCancelled)):
            if python:
                result = await tasks.generate_docstring(
                    ls.worker, ls.settings, source=source, path=ls.document_path(doc),
                    line=line, key=job_key, chat=ls.chat_mode(), root=ls.root,
                    regenerate=regenerate, on_piece=lambda p: call_soon(loop, on_piece, p))
            elif lang is not None and doccomment.supported(lang):
                result = await tasks.generate_doc_comment(
                    ls.worker, ls.settings, source=source, path=ls.document_path(doc),
                    language=lang, line=line, key=job_key, root=ls.root, regenerate=regenerate,
                    on_piece=lambda p: call_soon(loop, on_piece, p))
            else:
                raise DocstringError(f"Hearth cannot document {lang or 'this'} files")
        report.end(f"{result.completion.completion_tokens} tokens, "
                   f"{result.completion.tokens_per_s:.0f} tok/s")
    if doc.version != version:
        raise JsonRpcContentModified(f"{doc.uri} changed while the docstring was written")
    return result


def _workspace_edit(doc: TextDocument, edit: Edit) -> types.WorkspaceEdit:
    start = doc.position_to_client_units(ServerTextPosition(*edit.start))
    end = doc.position_to_client_units(ServerTextPosition(*edit.end))
    return types.WorkspaceEdit(document_changes=[types.TextDocumentEdit(
        text_document=types.OptionalVersionedTextDocumentIdentifier(
            uri=doc.uri, version=doc.version),
        edits=[types.TextEdit(range=types.Range(start=start, end=end),
                              new_text=edit.new_text)])])


# --------------------------------------------------------------------- commands


def command_status(ls: HearthServer, *args: Any) -> dict[str, Any]:
    engine = ls.worker.engine
    running = ls.worker.running()
    return {
        "index": ls.index.status() if ls.index is not None else {"state": "off"},
        "model": ls.worker.state,
        "error": ls.worker.error,
        "info": None if engine is None else {
            "name": engine.info.name, "path": engine.info.path,
            "contextLength": engine.info.context_length,
            "chatTemplate": bool(engine.info.chat_template), "where": engine.info.where},
        "running": running.kind if running else None,
        "pending": ls.worker.pending(),
    }


async def command_reload(ls: HearthServer, *args: Any) -> dict[str, Any]:
    ls._loaded_model = None
    await ls.load_model()
    return command_status(ls)


# ------------------------------------------------------------------------ index


def _index(ls: HearthServer):
    if ls.index is None:
        raise RequestFailed("the workspace index is off (index.enabled) or there is no "
                            "workspace folder")
    return ls.index


async def command_search(ls: HearthServer, *args: Any) -> list[dict[str, Any]]:
    """`hearth.search` [{query, k?, path?, language?}] -> results as `hearth search --json`."""
    params = args[0] if args else None
    if not isinstance(params, dict) or not isinstance(params.get("query"), str):
        raise JsonRpcInvalidParams("expected [{\"query\": string, \"k\"?: int}]")
    k = params.get("k", 10)
    if not isinstance(k, int) or not 1 <= k <= 200:
        raise JsonRpcInvalidParams("'k' must be an integer from 1 to 200")
    index = _index(ls)
    try:
        results = await asyncio.to_thread(index.search, params["query"], k, params.get("path"),
                                          params.get("language"))
    except IndexNotReady as exc:
        raise RequestFailed(str(exc)) from exc
    return [r.as_dict() for r in results]


def command_reindex(ls: HearthServer, *args: Any) -> dict[str, Any]:
    params = args[0] if args and isinstance(args[0], dict) else {}
    index = _index(ls)
    index.reindex(rebuild=bool(params.get("rebuild")))
    return index.status()


async def workspace_symbol(ls: HearthServer,
                           params: types.WorkspaceSymbolParams) -> list[types.WorkspaceSymbol]:
    if ls.index is None or ls.root is None:
        return []
    rows = await asyncio.to_thread(ls.index.symbols, params.query)
    root = ls.root
    return [types.WorkspaceSymbol(
        name=name, kind=SYMBOL_KINDS.get(kind, types.SymbolKind.Variable),
        location=types.Location(uri=(root / path).as_uri(), range=types.Range(
            start=types.Position(line=line, character=col),
            end=types.Position(line=line, character=end_col))))
        for name, kind, path, line, col, end_col in rows]


SYMBOL_KINDS = {
    "function": types.SymbolKind.Function, "method": types.SymbolKind.Method,
    "class": types.SymbolKind.Class, "interface": types.SymbolKind.Interface,
    "module": types.SymbolKind.Module, "constant": types.SymbolKind.Constant,
    "type": types.SymbolKind.TypeParameter, "macro": types.SymbolKind.Function,
}


def _uri_path(uri: str) -> Path | None:
    fs = to_fs_path(uri)
    return Path(fs) if fs else None


def did_save(ls: HearthServer, params: types.DidSaveTextDocumentParams) -> None:
    path = _uri_path(params.text_document.uri)
    if ls.index is not None and path is not None:
        ls.index.files_changed([path])
    review.review_on_save(ls, params.text_document.uri)


def did_change(ls: HearthServer, params: types.DidChangeTextDocumentParams) -> None:
    review.document_changed(ls, params)


def did_close(ls: HearthServer, params: types.DidCloseTextDocumentParams) -> None:
    uri = params.text_document.uri
    ls.worker.cancel_where(lambda j: j.key == ("review", uri))
    if ls.reviews.findings(uri):
        ls.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=uri,
                                                                           diagnostics=[]))
    ls.reviews.close(uri)


def did_change_watched_files(ls: HearthServer, params: types.DidChangeWatchedFilesParams) -> None:
    paths = [p for p in (_uri_path(c.uri) for c in params.changes) if p is not None]
    if ls.index is not None and paths:
        ls.index.files_changed(paths)
