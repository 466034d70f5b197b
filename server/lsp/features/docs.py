"""Docstrings, doc comments and file summaries through LSP.

"Generate/Regenerate docstring" (or "doc comment") is cheap to list and computed
on `codeAction/resolve` as one versioned edit (clients that cannot resolve `edit`
get the `hearth.generateDocstring` command instead); "Document file" runs as a
command and applies its edit through `workspace/applyEdit`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcContentModified, JsonRpcInvalidParams
from pygls.workspace import TextDocument

from ....indexer.languages import language_of
from ...tasks.docs import file_summary
from ...tasks.docs.run import DocCommentResult, DocstringResult, document_file, document_symbol
from ...tasks.docs.run import find_symbol as find_documentable
from ...tasks.docs.run import supported as documentable
from ...tasks.runner import TaskCancelled
from ..common import (
    PROGRESS_INTERVAL_S,
    RequestFailed,
    call_soon,
    check_usable,
    client_resolves,
    command_action,
    failures_reported,
    wants_kind,
)
from ..edits import versioned_edit, whole_document_edit
from ..server import HearthServer

DOCSTRING_KIND = types.CodeActionKind.RefactorRewrite + ".hearth.docstring"
DOCUMENT_FILE_KIND = types.CodeActionKind.Source + ".hearth.documentFile"
CMD_DOCSTRING = "hearth.generateDocstring"
CMD_DOCUMENT_FILE = "hearth.documentFile"
KINDS = [DOCSTRING_KIND, DOCUMENT_FILE_KIND]


def actions(ls: HearthServer, doc: TextDocument,
            params: types.CodeActionParams) -> list[types.CodeAction]:
    return [*_docstring_actions(ls, doc, params), *_document_file_actions(ls, doc, params)]


def _docstring_actions(ls: HearthServer, doc: TextDocument,
                       params: types.CodeActionParams) -> list[types.CodeAction]:
    lang = language_of(doc.uri, doc.language_id)
    if not wants_kind(params.context.only, DOCSTRING_KIND) or not documentable(lang):
        return []
    fn: Any = find_documentable(doc.source, lang, params.range.start.line)
    if fn is None:
        return []
    noun = "docstring" if lang == "python" else "doc comment"
    title = f"Hearth: Regenerate {noun}" if fn.has_docstring else f"Hearth: Generate {noun}"
    data = {"task": "docstring", "uri": doc.uri, "version": doc.version,
            "line": fn.def_line, "symbol": fn.qualname, "regenerate": fn.has_docstring}
    action = types.CodeAction(title=title, kind=DOCSTRING_KIND, data=data)
    if not client_resolves(ls, "edit"):
        # Older clients cannot resolve `edit`: give them a command instead.
        action.command = types.Command(title=title, command=CMD_DOCSTRING, arguments=[data])
    return [action]


def _document_file_actions(ls: HearthServer, doc: TextDocument,
                           params: types.CodeActionParams) -> list[types.CodeAction]:
    lang = language_of(doc.uri, doc.language_id)
    if not documentable(lang) or not wants_kind(params.context.only, DOCUMENT_FILE_KIND):
        return []
    try:
        target = file_summary.find_target(doc.source, doc.uri, lang or "text")
    except file_summary.FileDocError:
        return []
    regenerate = target.existing is not None
    title = "Hearth: Regenerate file documentation" if regenerate else "Hearth: Document file"
    return [command_action(ls, title, DOCUMENT_FILE_KIND, CMD_DOCUMENT_FILE,
                           {"uri": doc.uri, "regenerate": regenerate})]


def _action_args(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise JsonRpcInvalidParams("expected an object with uri and line")
    if not isinstance(data.get("line"), int) or data["line"] < 0:
        raise JsonRpcInvalidParams("'line' must be a non-negative integer")
    return data


async def resolve(ls: HearthServer, action: types.CodeAction) -> types.CodeAction:
    """`codeAction/resolve` of a docstring action: the versioned edit."""
    data = _action_args(action.data)
    doc = ls.get_document(data.get("uri"))
    if data.get("version") is not None and data["version"] != doc.version:
        raise JsonRpcContentModified(
            f"{doc.uri} changed since the action was offered; ask for code actions again")
    try:
        result = await _document_symbol(ls, doc, data["line"], bool(data.get("regenerate")))
    except RequestFailed as exc:
        if isinstance(exc.__cause__, TaskCancelled):
            raise
        # A refusal (or no model) is news for the user, not a protocol failure: say
        # why, and resolve to an action without an edit. An error response would
        # reach them as the editor's generic "Request codeAction/resolve failed".
        ls.show(f"Hearth: no docstring: {exc}", types.MessageType.Warning)
        return action
    action.edit = versioned_edit(doc, result.edit.start, result.edit.end, result.edit.new_text)
    _say_notice(ls, result)
    return action


def _say_notice(ls: HearthServer, result: DocstringResult | DocCommentResult) -> None:
    notice = getattr(result, "notice", None)
    if notice:
        ls.show(f"Hearth: {notice}", types.MessageType.Info)


async def command_docstring(ls: HearthServer, *args: Any) -> dict[str, Any]:
    """`hearth.generateDocstring` [{uri, line, regenerate?}]: compute, apply, report."""
    data = _action_args(args[0] if args else None)
    doc = ls.get_document(data.get("uri"))
    ls.check_line(doc, data["line"])
    result = await _document_symbol(ls, doc, data["line"], bool(data.get("regenerate")))
    edit = result.edit
    applied = await ls.workspace_apply_edit_async(types.ApplyWorkspaceEditParams(
        edit=versioned_edit(doc, edit.start, edit.end, edit.new_text),
        label=f"Docstring for {result.function.qualname}"))
    _say_notice(ls, result)
    return {"applied": bool(applied and applied.applied), "symbol": result.function.qualname,
            "docstring": result.text, "notice": getattr(result, "notice", None)}


async def _document_symbol(ls: HearthServer, doc: TextDocument, line: int,
                           regenerate: bool) -> DocstringResult | DocCommentResult:
    check_usable(doc.uri, doc.source, "document")
    source, version = doc.source, doc.version
    lang = language_of(doc.uri, doc.language_id)
    fn = find_documentable(source, lang, line)
    label = fn.qualname if fn else f"line {line + 1}"
    pieces = 0
    loop = asyncio.get_running_loop()

    async with ls.task(f"Hearth: docstring for {label}", ("docstring", doc.uri, line),
                       route="docs", fresh=regenerate, uri=doc.uri) as report:
        last = 0.0

        def on_piece(_piece: str) -> None:
            # At most ~10 reports a second: a notification per token costs the
            # decoding threads CPU on small machines.
            nonlocal last, pieces
            pieces += 1
            now = loop.time()
            if pieces == 1 or now - last >= PROGRESS_INTERVAL_S:
                last = now
                report(f"{pieces} tokens")

        assert report.run is not None
        with failures_reported(report):
            result = await document_symbol(
                report.run, ls.settings, source=source, path=ls.document_path(doc),
                language=lang, line=line, root=ls.root_of(doc.uri), regenerate=regenerate,
                chat=ls.chat_mode(), on_piece=lambda p: call_soon(loop, on_piece, p))
        done = result.completion
        report.end("from the answer cache" if done.finish_reason == "cached" else
                   f"{done.completion_tokens} tokens, {done.tokens_per_s:.0f} tok/s")
    if not ls.still_open(doc, version):
        raise JsonRpcContentModified(f"{doc.uri} changed (or was closed) while the docstring "
                                     "was written")
    return result


async def command_document_file(ls: HearthServer, *args: Any) -> dict[str, Any]:
    """`hearth.documentFile` [{uri, regenerate?}] -> {applied, summary}."""
    data = args[0] if args else None
    if not isinstance(data, dict):
        raise JsonRpcInvalidParams('expected [{"uri": ..., "regenerate"?: bool}]')
    doc = ls.get_document(data.get("uri"))
    check_usable(doc.uri, doc.source, "document")
    lang = language_of(doc.uri, doc.language_id) or "text"
    source, version = doc.source, doc.version
    regenerate = bool(data.get("regenerate"))
    async with ls.task("Hearth: document file", ("filedoc", doc.uri), route="docs",
                       fresh=regenerate, uri=doc.uri) as report:
        assert report.run is not None
        with failures_reported(report):
            result = await document_file(
                report.run, ls.settings, source=source, path=ls.document_path(doc),
                language=lang, root=ls.root_of(doc.uri), regenerate=regenerate)
        report.end(result.summary[:80])
    if not ls.still_open(doc, version):
        raise JsonRpcContentModified(f"{doc.uri} changed (or was closed) while it was being "
                                     "documented")
    applied = await ls.workspace_apply_edit_async(types.ApplyWorkspaceEditParams(
        edit=whole_document_edit(doc, result.new_source), label="Document file"))
    return {"applied": bool(applied and applied.applied), "summary": result.summary}


COMMANDS = {CMD_DOCSTRING: command_docstring, CMD_DOCUMENT_FILE: command_document_file}
