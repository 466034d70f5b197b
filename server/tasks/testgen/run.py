"""Test generation: pytest tests for one function, kept only when they pass in the sandbox."""

from __future__ import annotations

import ast
import asyncio
import dataclasses
import logging
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ....indexer.discovery import discover
from ....indexer.lines import read_source
from ...settings import Settings, local_only
from ...trust import is_trusted
from ..docs import python as docstring
from ..runner import ContextFn, TaskRun, count, prompt_text, routed, stops
from . import cases as testgen
from . import sandbox

log = logging.getLogger(__name__)


def tests_python(settings: Settings, root: Path) -> str:
    """The interpreter for generated tests: the setting, the workspace's venv (only in a
    trusted folder: a repository can ship any program as `.venv/bin/python`), python3."""
    if settings.tests.python:
        return settings.tests.python
    if is_trusted(root):
        for venv in (".venv", "venv", "env"):
            candidate = root / venv / "bin" / "python"
            if candidate.exists():
                return str(candidate)
    return shutil.which("python3") or sys.executable


@dataclass
class TestsResult:
    function: docstring.FunctionTarget
    layout: testgen.Layout
    passing: list[testgen.TestCase]
    failing: list[tuple[testgen.TestCase, str]]  # never passed, with the failure
    old_text: str | None  # the test file before (None: it does not exist)
    new_text: str | None  # after inserting the passing tests (None: nothing to insert)
    rounds: int
    warnings: list[str] = dataclasses.field(default_factory=list)  # walls the sandbox lacked


def _failure(ran: sandbox.RunResult, name: str) -> str | None:
    """Why the test ``name`` did not pass in ``ran``; None when it passed."""
    outcome = ran.outcomes.get(name)
    if outcome is not None and outcome.passed:
        return None
    return outcome.message if outcome else (ran.error or "the test did not run")


@routed
async def generate_tests(
    run: TaskRun, settings: Settings, *, root: Path, rel: str, source: str,
    line: int, context: ContextFn | None = None,
    progress: Callable[[str], None] | None = None,
    open_text: Callable[[Path], str | None] | None = None,
) -> TestsResult:
    """pytest tests for the function at ``line`` of ``rel`` that pass when run in the
    sandbox against ``source`` (the editor's text). Failing ones are reported, not kept.

    ``open_text(path)`` gives the editor's text of a file open there (None when it is
    not open): the tests are merged into the test file as the user sees it, unsaved
    edits included, never into an older copy from the disk."""
    fn = docstring.find_function(source, line)
    if fn is None:
        raise testgen.TestGenError(f"no Python function at line {line + 1} of {rel}")
    outer = [f for f in docstring.list_functions(source)
             if f.start_line < fn.start_line and fn.end_line <= f.end_line]
    if outer:  # a test cannot import it, and one calling outer() was dropped as not its own
        raise testgen.TestGenError(
            f"{fn.name} is local to {outer[-1].qualname}(): a test reaches it only through "
            f"{outer[0].qualname}(); generate the tests for that instead")
    files = [p.as_posix() for p in (await asyncio.to_thread(discover, root)).files]
    if rel not in files:
        files.append(rel)
    layout = testgen.find_layout(rel, set(files))
    test_file = root / layout.test_path
    if test_file.exists() or test_file.is_symlink():
        # A repository's test file may be a link to a file of the user's elsewhere: its
        # text would go into the prompt, and the tests into that file.
        real = test_file.resolve()
        if not real.is_relative_to(root.resolve()) or not real.is_file():
            raise testgen.TestGenError(
                f"{layout.test_path} leads to {real}, "
                + ("outside the workspace" if real.is_file() else "which is not a regular file")
                + ": Hearth reads and writes tests only in regular files inside it")
    elif not test_file.parent.resolve().is_relative_to(root.resolve()):
        # A new test file in a folder that is a link out of the workspace: the editor
        # would create it there.
        raise testgen.TestGenError(
            f"{Path(layout.test_path).parent} leads to {test_file.parent.resolve()}, outside "
            "the workspace: Hearth writes tests only inside it")
    old_text = open_text(test_file) if open_text is not None else None
    if old_text is None and test_file.exists():
        try:
            old_text = read_source(test_file)
        except UnicodeDecodeError:
            raise testgen.TestGenError(
                f"{layout.test_path} is not UTF-8: Hearth merges tests only into UTF-8 "
                "files") from None
    if old_text:
        try:
            ast.parse(old_text)
        except SyntaxError as exc:
            # Else every new test "fails" with the file's collection error, after the
            # model's time was spent.
            raise testgen.TestGenError(
                f"{layout.test_path} does not compile (line {exc.lineno}: {exc.msg}): fix it "
                "first; Hearth adds tests only to a test file Python can read") from None
    if local_only(settings, [layout.test_path]):  # its tests go into the prompt
        run.keep_local(f"{layout.test_path} is local-only (privacy.localOnly)")
    info = await run.ready()
    chat = bool(info.chat_template)
    related = ""
    if context is not None:
        related = await asyncio.to_thread(context, rel, line, 300)
    python = tests_python(settings, root)
    import_line = f"from {layout.module} import {fn.qualname.split('.')[0]}"
    passing: list[testgen.TestCase] = []
    failing: dict[str, tuple[testgen.TestCase, str]] = {}
    feedback = ""
    rounds = 0
    warnings: list[str] = []
    dropped = False  # a test that ran beside the kept ones failed: it is not in the edit

    async def sandboxed(text: str, cases: list[testgen.TestCase]) -> sandbox.RunResult:
        """``cases`` of the test file ``text`` (the others in it are not run)."""
        ran = await asyncio.to_thread(
            sandbox.run_tests, root, files, layout.test_path, text, python=python,
            overrides={rel: source}, test_timeout=settings.tests.timeout_s,
            on_cancel=run.token.on_cancel, require_isolation=settings.tests.require_isolation,
            select=[case.name for case in cases])
        run.token.check("the test run")
        return ran
    for rounds in range(1, 3 if settings.tests.repair else 2):
        if progress:
            progress("writing tests" if rounds == 1 else "fixing the failing tests")
        messages, text = testgen.build_prompt(
            docstring.function_source(source, fn), qualname=fn.qualname, layout=layout,
            existing_tests=old_text or "", context=related, chat=chat, feedback=feedback,
            root=root)
        prompt = prompt_text(info, messages, text) + testgen.PREFILL
        done = await run.generate("tests", prompt, settings.tests,
                                  stop=stops(info, "\nclass ", "\nif __name__", "```"),
                                  grammar=None, messages=messages, prefill=testgen.PREFILL)
        taken = testgen.test_names(old_text or "") | {t.name for t in passing}
        cases = testgen.parse_tests(
            testgen.PREFILL + done.text, taken=taken, calls=fn.qualname.split(".")[-1],
            existing="\n".join([old_text or "", *(t.source for t in passing)]))
        if not cases:
            feedback = "No test function with an assert was written."
            continue
        if progress:
            progress(f"running {len(cases)} tests")
        ran = await sandboxed(testgen.merge(old_text, passing + cases, import_line), cases)
        warnings = ran.warnings
        failed_now = []
        for case in cases:
            failure = _failure(ran, case.name)
            if failure is None:
                passing.append(case)
            else:
                failed_now.append((case, failure))
        log.info("tests for %s, round %d: %d passed, %d failed", fn.qualname, rounds,
                 len(cases) - len(failed_now), len(failed_now))
        failing = {c.name: (c, m) for c, m in failed_now}  # a later round's fix replaces
        dropped = dropped or bool(failed_now)
        if not failed_now:
            break
        feedback = "\n\n".join(f"{c.source.rstrip()}\n# failed with:\n# " +
                               "\n# ".join(m.strip().splitlines()[-6:]) for c, m in failed_now)
        quoted = [p for p in local_only(settings, files) if p in feedback] if run.remote else []
        if quoted:  # a traceback quotes the lines of a local-only file
            why = f"the failures quote {quoted[0]} (privacy.localOnly)"
            if not run.can_stay_local:
                warnings = [*warnings, f"the failing tests were not sent back to be fixed: {why}"
                            ", and this task's route has no local model"]
                break
            run.keep_local(why)
            info = await run.ready()
            chat = bool(info.chat_template)
    if passing and dropped:
        # A pass is recorded from inside the test process: a test left out could have
        # written one for another (then failed itself). The kept tests run again, in
        # the file as it will be inserted, without any code the edit does not show.
        if progress:
            progress(f"running the {len(passing)} kept tests again, as they will be inserted")
        ran = await sandboxed(testgen.merge(old_text, passing, import_line), passing)
        for case in passing:
            failure = _failure(ran, case.name)
            if failure is not None:
                failing[case.name] = (case, "passed only beside tests that were left out: "
                                      + failure)
        passing = [case for case in passing if case.name not in failing]
    new_text = testgen.merge(old_text, passing, import_line) if passing else None
    if passing:
        await run.keep()
    return TestsResult(fn, layout, passing, list(failing.values()), old_text, new_text, rounds,
                       warnings)


def tests_summary(*, applied: bool, test_file: str, passing: int, failing: int) -> str:
    """What went into which file, and what was left out (the line editors show)."""
    if applied:
        where = f"added to {test_file}"
    elif passing:
        where = f"not added: the editor did not apply the edit to {test_file}"
    else:
        where = "added"
    return f"Hearth: {count(passing, 'passing test')} {where}; {failing} failing left out"
