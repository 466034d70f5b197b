"""`hearth.generateTests`: pytest tests that passed in the sandbox, inserted as one edit.

Tests that fail are not inserted: they are reported (they may reveal a bug, or
a wrong expectation of the model), with the failure. The tests are merged into
the test file as the editor has it (unsaved edits included) and applied as a
versioned edit of that buffer, or of the file when it is not open.
"""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams
from pygls.uris import from_fs_path, to_fs_path
from pygls.workspace import TextDocument

from ....indexer.languages import language_of
from ....indexer.lines import read_source
from ...tasks.docs.python import find_function
from ...tasks.testgen.run import generate_tests, tests_summary
from ..common import (
    RequestFailed,
    call_soon,
    check_usable,
    command_action,
    failures_reported,
    wants_kind,
)
from ..edits import file_edit
from ..server import HearthServer

CMD_TESTS = "hearth.generateTests"
TESTS_KIND = types.CodeActionKind.Refactor + ".hearth.tests"
KINDS = [TESTS_KIND]


@dataclass
class _Files:
    """Per server: one writer at a time per test file (two source files may share one:
    `a/pricing.py` and `b/pricing.py` both get tests/test_pricing.py), and what the last
    edit of a file the editor did not have open left in it: the editor may hold that
    unsaved (VS Code and Neovim apply an edit of a closed file to a buffer they open), so
    the disk alone does not say what the file is now. Forgotten at a save or close."""
    locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    written: dict[str, str] = field(default_factory=dict)


_files: weakref.WeakKeyDictionary[HearthServer, _Files] = weakref.WeakKeyDictionary()


def files(ls: HearthServer) -> _Files:
    return _files.setdefault(ls, _Files())


def on_save(ls: HearthServer, uri: str) -> None:
    files(ls).written.pop(uri, None)


def on_close(ls: HearthServer, uri: str) -> None:
    files(ls).written.pop(uri, None)


def _changed_since(ls: HearthServer, test_file: Path, uri: str, old_text: str | None,
                   buffer: TextDocument | None) -> bool:
    """Whether the test file is no longer the text the tests were merged into: an edit
    made from that text would undo what the user (or another tests run) did meanwhile."""
    if buffer is not None:
        return buffer.source != old_text
    written = files(ls).written.get(uri)
    if written is not None and written != old_text:
        return True  # our last edit of it, maybe unsaved in the editor
    try:
        now: str | None = read_source(test_file)
    except FileNotFoundError:
        now = None
    except (OSError, UnicodeDecodeError):
        return True
    return now != old_text


def actions(ls: HearthServer, doc: TextDocument,
            params: types.CodeActionParams) -> list[types.CodeAction]:
    if language_of(doc.uri, doc.language_id) != "python" or ls.root_of(doc.uri) is None:
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
    check_usable(doc.uri, doc.source, "write tests for")
    root = ls.root_of(doc.uri)
    if root is None:
        raise RequestFailed("test generation needs a workspace folder")
    path = Path(to_fs_path(doc.uri) or "")
    try:
        rel = path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        raise RequestFailed(f"{path} is not inside the workspace {root}") from None
    loop = asyncio.get_running_loop()
    version = doc.version

    def open_doc(file: Path) -> TextDocument | None:
        return ls.open_document(from_fs_path(str(file)) or file.as_uri())

    def open_text(file: Path) -> str | None:
        found = open_doc(file)
        return found.source if found is not None else None

    async with ls.task("Hearth: tests", ("tests", doc.uri), route="tests", uri=doc.uri) as report:
        assert report.run is not None
        with failures_reported(report):
            result = await generate_tests(
                report.run, ls.settings_of(doc.uri), root=root, rel=rel, source=doc.source,
                line=data["line"], context=ls.context_fn(doc.uri), open_text=open_text,
                progress=lambda m: call_soon(loop, report, m))
        report.end(f"{len(result.passing)} passing, {len(result.failing)} failing")
    if result.warnings:
        ls.say_once(("sandbox", tuple(result.warnings)),
                    "Hearth: generated tests ran without isolating " + "; ".join(result.warnings)
                    + " (install bubblewrap, or set tests.requireIsolation to refuse instead)")
    failing = [{"name": c.name, "source": c.source, "message": m[-1500:]}
               for c, m in result.failing]
    if failing:
        ls.show(f"Hearth: {len(failing)} generated test(s) for {result.function.qualname} failed "
                "and were not inserted; they may reveal a bug or a wrong expectation: "
                + "; ".join(f"{f['name']}: {f['message'].strip().splitlines()[-1][:160]}"
                            for f in failing if f["message"].strip()),
                types.MessageType.Warning)
    applied = False
    if result.new_text is not None and not ls.still_open(doc, version):
        # They passed against the code as it was: the code now may fail them.
        raise RequestFailed(f"{path.name} changed (or was closed) while the tests were "
                            "written; generate them again")
    if result.new_text is not None:
        test_file = root / result.layout.test_path
        uri = from_fs_path(str(test_file)) or test_file.as_uri()
        state = files(ls)
        async with state.locks.setdefault(uri, asyncio.Lock()):
            buffer = open_doc(test_file)
            if _changed_since(ls, test_file, uri, result.old_text, buffer):
                raise RequestFailed(f"{result.layout.test_path} changed while the tests were "
                                    "written; generate them again")
            edit = file_edit(test_file, result.old_text, result.new_text, buffer)
            response = await ls.workspace_apply_edit_async(types.ApplyWorkspaceEditParams(
                edit=edit, label=f"Tests for {result.function.qualname}"))
            applied = bool(response and response.applied)
            if applied and buffer is None:
                state.written[uri] = result.new_text
    elif not failing:
        raise RequestFailed(f"the model wrote no usable test for {result.function.qualname}")
    return {"applied": applied, "testFile": result.layout.test_path,
            "passing": [{"name": c.name, "source": c.source} for c in result.passing],
            "failing": failing,
            "summary": tests_summary(applied=applied, test_file=result.layout.test_path,
                                     passing=len(result.passing), failing=len(failing))}


COMMANDS = {CMD_TESTS: command_tests}
