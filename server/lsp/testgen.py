"""`hearth.generateTests`: pytest tests that passed in the sandbox, inserted as one edit.

Tests that fail are not inserted: they are reported (they may reveal a bug, or
a wrong expectation of the model), with the failure.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams
from pygls.uris import from_fs_path, to_fs_path
from pygls.workspace import TextDocument

from ...indexer.context import estimate_tokens, render_context
from ...indexer.languages import language_of
from .. import tasks
from ..docstring import find_function
from ..sandbox import SandboxError
from ..summaries import tests_summary
from ..testgen import TestGenError
from .common import RequestFailed, call_soon, command_action, failures_reported, wants_kind
from .server import HearthServer

CMD_TESTS = "hearth.generateTests"
TESTS_KIND = types.CodeActionKind.Refactor + ".hearth.tests"


def tests_actions(ls: HearthServer, doc: TextDocument,
                  params: types.CodeActionParams) -> list[types.CodeAction]:
    if language_of(doc.uri, doc.language_id) != "python" or ls.root is None:
        return []
    if not wants_kind(params.context.only, TESTS_KIND):
        return []
    fn = find_function(doc.source, params.range.start.line)
    if fn is None or fn.name.startswith("test"):
        return []
    title = f"Hearth: Generate tests for {fn.qualname}"
    return [command_action(ls, title, TESTS_KIND, CMD_TESTS,
                           {"uri": doc.uri, "line": fn.def_line})]


async def command_tests(ls: HearthServer, *args: Any) -> dict[str, Any]:
    """[{uri, line}] -> {applied, testFile, passing: [...], failing: [{name, message}]}."""
    data = args[0] if args else None
    if not isinstance(data, dict) or not isinstance(data.get("line"), int):
        raise JsonRpcInvalidParams('expected [{"uri": ..., "line": int}]')
    doc = ls.get_document(data.get("uri"))
    if ls.root is None:
        raise RequestFailed("test generation needs a workspace folder")
    path = Path(to_fs_path(doc.uri) or "")
    try:
        rel = path.resolve().relative_to(ls.root.resolve()).as_posix()
    except ValueError:
        raise RequestFailed(f"{path} is not inside the workspace {ls.root}") from None
    key = ("tests", doc.uri)
    loop = asyncio.get_running_loop()

    def context(rel_path: str, line: int, budget: int) -> str:
        if ls.index is None:
            return ""
        return render_context(ls.index.context(budget, estimate_tokens, path=rel_path, line=line))

    async with ls.work_progress("Hearth: tests", cancel_key=key) as report:
        with failures_reported(report, (TestGenError, SandboxError, tasks.TaskCancelled)):
            result = await tasks.generate_tests(
                ls.worker, ls.settings, root=ls.root, rel=rel, source=doc.source,
                line=data["line"], key=key, context=context,
                progress=lambda m: call_soon(loop, report, m))
        report.end(f"{len(result.passing)} passing, {len(result.failing)} failing")
    failing = [{"name": c.name, "source": c.source, "message": m[-1500:]}
               for c, m in result.failing]
    if failing:
        ls.show(f"Hearth: {len(failing)} generated test(s) for {result.function.qualname} failed "
                "and were not inserted; they may reveal a bug or a wrong expectation: "
                + "; ".join(f"{f['name']}: {f['message'].strip().splitlines()[-1][:160]}"
                            for f in failing if f["message"].strip()),
                types.MessageType.Warning)
    applied = False
    if result.new_text is not None:
        edit = _file_edit(ls, ls.root / result.layout.test_path, result.old_text,
                          result.new_text)
        response = await ls.workspace_apply_edit_async(types.ApplyWorkspaceEditParams(
            edit=edit, label=f"Tests for {result.function.qualname}"))
        applied = bool(response and response.applied)
    elif not failing:
        raise RequestFailed(f"the model wrote no usable test for {result.function.qualname}")
    return {"applied": applied, "testFile": result.layout.test_path,
            "passing": [{"name": c.name, "source": c.source} for c in result.passing],
            "failing": failing,
            "summary": tests_summary(applied=applied, test_file=result.layout.test_path,
                                     passing=len(result.passing), failing=len(failing))}


def _file_edit(ls: HearthServer, path: Path, old: str | None, new: str) -> types.WorkspaceEdit:
    uri = from_fs_path(str(path)) or path.as_uri()
    open_doc = ls.workspace.text_documents.get(uri)
    changes: list[Any] = []
    if old is None and open_doc is None:
        changes.append(types.CreateFile(uri=uri, options=types.CreateFileOptions(
            ignore_if_exists=True)))
        old = ""
    current = open_doc.source if open_doc is not None else (old or "")
    lines = current.splitlines()
    end = types.Position(line=len(lines), character=0)
    changes.append(types.TextDocumentEdit(
        text_document=types.OptionalVersionedTextDocumentIdentifier(
            uri=uri, version=open_doc.version if open_doc is not None else None),
        edits=[types.TextEdit(range=types.Range(start=types.Position(line=0, character=0),
                                                end=end), new_text=new)]))
    return types.WorkspaceEdit(document_changes=changes)
