"""'Hearth: Document file': a file summary at its top, applied as one versioned edit."""

from __future__ import annotations

from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcContentModified, JsonRpcInvalidParams
from pygls.workspace import TextDocument

from ...indexer.languages import language_of
from .. import doccomment, filedoc, tasks
from .common import command_action, failures_reported, wants_kind
from .server import HearthServer

CMD_DOCUMENT_FILE = "hearth.documentFile"
DOCUMENT_FILE_KIND = types.CodeActionKind.Source + ".hearth.documentFile"


def document_file_actions(ls: HearthServer, doc: TextDocument,
                          params: types.CodeActionParams) -> list[types.CodeAction]:
    lang = language_of(doc.uri, doc.language_id)
    if lang is None or not (lang == "python" or doccomment.supported(lang)):
        return []
    if not wants_kind(params.context.only, DOCUMENT_FILE_KIND):
        return []
    try:
        target = filedoc.find_target(doc.source, doc.uri, lang)
    except filedoc.FileDocError:
        return []
    regenerate = target.existing is not None
    title = "Hearth: Regenerate file documentation" if regenerate else "Hearth: Document file"
    return [command_action(ls, title, DOCUMENT_FILE_KIND, CMD_DOCUMENT_FILE,
                           {"uri": doc.uri, "regenerate": regenerate})]


async def command_document_file(ls: HearthServer, *args: Any) -> dict[str, Any]:
    """[{uri, regenerate?}] -> {applied, summary}."""
    data = args[0] if args else None
    if not isinstance(data, dict):
        raise JsonRpcInvalidParams('expected [{"uri": ..., "regenerate"?: bool}]')
    doc = ls.get_document(data.get("uri"))
    lang = language_of(doc.uri, doc.language_id) or "text"
    source, version = doc.source, doc.version
    key = ("filedoc", doc.uri)
    async with ls.work_progress("Hearth: document file", cancel_key=key) as report:
        with failures_reported(report, (filedoc.FileDocError, tasks.TaskCancelled)):
            result = await tasks.document_file(
                ls.worker, ls.settings, source=source, path=ls.document_path(doc),
                language=lang, key=key, root=ls.root, regenerate=bool(data.get("regenerate")))
        report.end(result.summary[:80])
    if doc.version != version:
        raise JsonRpcContentModified(f"{doc.uri} changed while it was being documented")
    end = types.Position(line=len(doc.lines), character=0)
    edit = types.WorkspaceEdit(document_changes=[types.TextDocumentEdit(
        text_document=types.OptionalVersionedTextDocumentIdentifier(uri=doc.uri,
                                                                    version=doc.version),
        edits=[types.TextEdit(range=types.Range(start=types.Position(line=0, character=0),
                                                end=end), new_text=result.new_source)])])
    applied = await ls.workspace_apply_edit_async(types.ApplyWorkspaceEditParams(
        edit=edit, label="Document file"))
    return {"applied": bool(applied and applied.applied), "summary": result.summary}
