"""Evaluation of the four tasks with the real models (not a test).

    .venv/bin/python bench/tasks.py [--models smollm2,gemma3-270m] [--docstrings 12]

Every figure counts what reached the user after Hearth's own validation, and is
chosen so that it could come out otherwise; nothing here re-checks what the
validation already guarantees.

- Review: ``bench/fixtures/planted.py`` (functions with planted bugs, and clean
  ones). Findings on the planted line vs elsewhere, planted bugs found,
  findings per clean function.
- Docstrings: the functions of markdown-it-py's ``token.py`` (from
  site-packages: code nobody here wrote) with every docstring removed. Share that
  passes validation, and ROUGE-L of the summary against the removed docstring's
  first sentence, next to a baseline that only splits the function's name.
- Tests: CPython's ``colorsys.py`` copied into a workspace. Tests kept (passed in
  Hearth's sandbox) and inserted into the test file as an editor would, then the
  final test file is run again with plain pytest in a fresh copy of the original
  workspace: how many of the kept tests still pass there.
- Commit messages: staged edits of that same copy of ``colorsys.py`` (and a README,
  a test file), each with a reference subject written for it. Messages made; how
  many subjects name a file or identifier the diff touches (a stricter check than
  validation's, which accepts any word sharing a 4-letter stem with the diff);
  ROUGE-L against the reference subject; the commit type against the reference's
  (for code diffs, where Hearth does not force the type).

The answer cache is off. Rewrites the "tasks" section of docs/benchmarks.md (the
fixtures) and, as each model's run ends, that model's "tasks-<preset>" section.
"""

from __future__ import annotations

import argparse
import asyncio
import builtins
import keyword
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

from retrieval import SITE, strip_docstrings  # noqa: E402

from hearth_lsp.server.local import local_worker  # noqa: E402
from hearth_lsp.server.settings import Settings, cache_dir  # noqa: E402
from hearth_lsp.server.tasks.commit.message import lcs_length  # noqa: E402
from hearth_lsp.server.tasks.commit.run import generate_commit_message  # noqa: E402
from hearth_lsp.server.tasks.docs import python as docstring  # noqa: E402
from hearth_lsp.server.tasks.docs.run import generate_docstring  # noqa: E402
from hearth_lsp.server.tasks.review.run import review_code, review_spans_for  # noqa: E402
from hearth_lsp.server.tasks.runner import Refusal, TaskRun  # noqa: E402
from hearth_lsp.server.tasks.testgen.run import generate_tests  # noqa: E402

from report import NOISE, machine_description, wait_for_quiet, write_section  # noqa: E402

FIXTURE = REPO / "bench" / "fixtures" / "planted.py"
# Planted bugs: function -> the lines (1-based, in planted.py) a finding must point at.
BUGS = {"average": {13}, "find_user": {17, 18}, "read_config": {22}, "last_item": {28},
        "is_admin": {32}, "run_command": {38}}
CLEAN = ["clamp", "word_count", "mean_of_pairs", "open_db", "title_case", "safe_div"]

DOC_SOURCE = SITE / "markdown_it" / "token.py"  # 180 lines: the file fits any prompt
DOC_PATH = "markdown_it/token.py"
COLORSYS = Path(shutil.__file__).parent / "colorsys.py"  # CPython's own
TEST_FUNCTIONS = ["rgb_to_hls", "hls_to_rgb", "rgb_to_hsv", "hsv_to_rgb"]
MODULE = "colorlib/colorsys.py"
# (path, old, new, reference subject): edits of the colorsys copy, each staged alone.
DIFFS = [
    (MODULE, "_v(", "_hue_to_channel(", "refactor: rename _v to _hue_to_channel"),
    (MODULE, "def rgb_to_hsv(r, g, b):\n",
     "def rgb_to_hsv(r, g, b):\n    if not all(0.0 <= c <= 1.0 for c in (r, g, b)):\n"
     "        raise ValueError(\"rgb values must be between 0 and 1\")\n",
     "feat: reject rgb values outside 0..1 in rgb_to_hsv"),
    (MODULE, "ONE_SIXTH = 1.0/6.0\n", "ONE_SIXTH = 1.0/6.0\nTWO_PI = 6.283185307179586\n",
     "feat: add a TWO_PI constant"),
    ("README.md", None, "# colorlib\n\nColor space conversions (RGB, YIQ, HLS, HSV), copied "
     "from CPython's colorsys.\n", "docs: add a README for colorlib"),
    ("tests/test_roundtrip.py", None,
     "from colorlib.colorsys import hsv_to_rgb, rgb_to_hsv\n\n\n"
     "def test_hsv_round_trip():\n    rgb = (0.2, 0.4, 0.6)\n"
     "    assert all(abs(a - b) < 1e-9 for a, b in zip(hsv_to_rgb(*rgb_to_hsv(*rgb)), rgb))\n",
     "test: check that hsv conversions round-trip"),
]

GIT_ENV = {"GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@l", "GIT_COMMITTER_NAME": "b",
           "GIT_COMMITTER_EMAIL": "b@l", "PATH": "/usr/bin:/bin"}


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True,
                          text=True, env=GIT_ENV).stdout


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def rouge_l(candidate: str, reference: str) -> float:
    """ROUGE-L F1 over lowercase words (longest common subsequence)."""
    a, b = words(candidate), words(reference)
    if not a or not b:
        return 0.0
    lcs = lcs_length(a, b)
    if lcs == 0:
        return 0.0
    p, r = lcs / len(a), lcs / len(b)
    return 2 * p * r / (p + r)


_DEF = re.compile(r"^\s*(?:async\s+)?(?:def|class)\s+(\w+)")
_BUILTINS = set(dir(builtins))


def touched_names(patch: str) -> set[str]:
    """What a subject may name to be about this diff: each file's name and stem (not
    its folders); in Python files, the identifiers on changed lines (string literals,
    comments, keywords and builtins left out) and the function or class each change
    is in (from the hunk header or the last `def`/`class` line before it)."""
    names: set[str] = set()
    path, enclosing = "", None
    for line in patch.splitlines():
        if line.startswith("+++ ") or line.startswith("--- "):
            target = line[4:].strip()
            if target != "/dev/null":
                path = target.split("/", 1)[1] if target[:2] in ("a/", "b/") else target
                p = Path(path)
                names |= {p.name.lower(), p.stem.lower()}
            continue
        if not path.endswith(".py"):
            continue
        if line.startswith("@@"):
            m = _DEF.match(line.rsplit("@@", 1)[-1])
            enclosing = m.group(1) if m else None
            continue
        code = line[1:]
        m = _DEF.match(code)
        if m:
            enclosing = m.group(1)
        if line[:1] not in "+-":
            continue
        if enclosing:
            names.add(enclosing.lower())
        code = re.sub(r"\"[^\"]*\"|'[^']*'|#.*", "", code)
        for ident in re.findall(r"[A-Za-z_][A-Za-z0-9_]{2,}", code):
            if not keyword.iskeyword(ident) and ident not in _BUILTINS:
                names.add(ident.lower())
    return names


def mentions(subject: str, names: set[str]) -> bool:
    tokens = {t.lower() for t in re.findall(r"[A-Za-z_][A-Za-z0-9_.]*", subject)}
    tokens |= {t.rsplit(".", 1)[0] for t in tokens}  # "colorsys.py" -> "colorsys"
    return bool(tokens & names)


def run_pytest(root: Path, test_path: str) -> dict[str, bool]:
    """Plain pytest (no sandbox) on one file: {test name: passed}."""
    report = root / ".bench-junit.xml"
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                    f"--junitxml={report}", test_path], cwd=root, capture_output=True,
                   timeout=300)
    if not report.exists():
        return {}
    out = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        failed = any(child.tag in ("failure", "error", "skipped") for child in case)
        out[case.get("name", "")] = not failed
    return out


def colorsys_workspace(dest: Path) -> Path:
    (dest / "colorlib").mkdir(parents=True)
    (dest / "colorlib" / "__init__.py").write_text("")
    shutil.copy(COLORSYS, dest / MODULE)
    git(dest, "init", "-q")
    git(dest, "add", "-A")
    git(dest, "commit", "-qm", "colorsys from CPython")
    return dest


def doc_sample(count: int, seed: int) -> tuple[str, list[tuple[docstring.FunctionTarget, str]]]:
    """DOC_SOURCE without docstrings, and a seeded sample of its functions with the
    first sentence of each one's removed docstring."""
    stripped, found = strip_docstrings(DOC_SOURCE.read_text(encoding="utf-8"))
    fns = {f.qualname: f for f in docstring.list_functions(stripped)}
    pool = sorted(name for name in found if name in fns)
    chosen = sorted(random.Random(seed).sample(pool, min(count, len(pool))))
    return stripped, [(fns[name], found[name]) for name in chosen]


def name_baseline(qualname: str) -> str:
    """The function's name as words: what a summary gets for free."""
    return " ".join(re.split(r"[_.]+|(?<=[a-z])(?=[A-Z])", qualname))


async def evaluate(preset: str, docs: int, seed: int, tmp: Path) -> dict:
    settings = Settings()
    settings.model.preset = preset
    settings.cache.enabled = False
    settings.tests.python = sys.executable  # the venv has pytest
    # The model's own commit subjects: as shipped, a model under 500 MB comes after
    # Hearth's subject from the diff (bench/quality.py reports both).
    settings.commit.from_structure = "fallback"
    out: dict = {"model": preset}
    async with local_worker(settings, cache_dir()) as worker:
        out["where"] = worker.engine.info.where if worker.engine else "?"
        out["review"] = await review(worker, settings)
        print(preset, "review", out["review"], flush=True)
        out["docstrings"] = await docstrings(worker, settings, docs, seed)
        print(preset, "docstrings", {k: v for k, v in out["docstrings"].items()
                                     if k != "samples"}, flush=True)
        out["tests"] = await tests(worker, settings, tmp / f"{preset}-tests")
        print(preset, "tests", out["tests"], flush=True)
        out["commit"] = await commits(worker, settings, tmp / f"{preset}-commit")
        print(preset, "commit", {k: v for k, v in out["commit"].items() if k != "messages"},
              flush=True)
    return out


async def review(worker, settings: Settings) -> dict:
    source = FIXTURE.read_text()
    spans = {s.label.split()[-1]: s for s in review_spans_for(source, "planted.py", "python",
                                                               limit=100)}
    t0 = time.perf_counter()
    kept = dropped = found = on_target = elsewhere = clean_findings = 0
    for name in [*BUGS, *CLEAN]:
        [result] = await review_code(TaskRun(worker), settings, source=source,
                                     path="planted.py", language="python", spans=[spans[name]])
        kept += len(result.findings)
        dropped += result.dropped
        lines = [f.line + 1 for f in result.findings]
        if name in BUGS:
            hits = [n for n in lines if n in BUGS[name]]
            on_target += len(hits)
            elsewhere += len(lines) - len(hits)
            found += bool(hits)
        else:
            clean_findings += len(lines)
    return {"kept": kept, "dropped": dropped, "found": found, "on_target": on_target,
            "elsewhere": elsewhere, "clean_per_fn": clean_findings / len(CLEAN),
            "s_per_fn": (time.perf_counter() - t0) / (len(BUGS) + len(CLEAN))}


async def docstrings(worker, settings: Settings, count: int, seed: int) -> dict:
    source, sample = doc_sample(count, seed)
    ok, scores, baseline, samples = 0, [], [], []
    t0 = time.perf_counter()
    for fn, reference in sample:
        try:
            result = await generate_docstring(TaskRun(worker), settings, source=source,
                                              path=DOC_PATH, line=fn.def_line)
        except Refusal as exc:
            samples.append((fn.qualname, None, str(exc)[:80]))
            continue
        ok += 1
        summary = docstring.summary_part(result.text)
        scores.append(rouge_l(summary, reference))
        baseline.append(rouge_l(name_baseline(fn.qualname), reference))
        samples.append((fn.qualname, summary[:80], reference[:80]))
    return {"ok": ok, "total": len(sample), "rouge": sum(scores) / len(scores) if scores else 0,
            "baseline": sum(baseline) / len(baseline) if baseline else 0,
            "s_per_fn": (time.perf_counter() - t0) / max(1, len(sample)), "samples": samples}


async def tests(worker, settings: Settings, root: Path) -> dict:
    ws = colorsys_workspace(root / "ws")
    generated = failing = 0
    kept: list[str] = []
    test_path = None
    t0 = time.perf_counter()
    for name in TEST_FUNCTIONS:
        source = (ws / MODULE).read_text()
        fn = next(f for f in docstring.list_functions(source) if f.qualname == name)
        try:
            result = await generate_tests(TaskRun(worker), settings, root=ws, rel=MODULE,
                                          source=source, line=fn.def_line)
        except Refusal as exc:
            print(f"  tests for {name} refused: {exc}", flush=True)
            continue
        generated += len(result.passing) + len(result.failing)
        failing += len(result.failing)
        test_path = result.layout.test_path
        if result.new_text is not None:  # what the editor inserts
            (ws / test_path).parent.mkdir(parents=True, exist_ok=True)
            (ws / test_path).write_text(result.new_text)
            kept += [t.name for t in result.passing]
    seconds = (time.perf_counter() - t0) / len(TEST_FUNCTIONS)
    rerun: dict[str, bool] = {}
    if kept and test_path:
        fresh = colorsys_workspace(root / "fresh")
        (fresh / test_path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ws / test_path, fresh / test_path)
        rerun = run_pytest(fresh, test_path)
    still = sum(rerun.get(name, False) for name in kept)
    return {"functions": len(TEST_FUNCTIONS), "generated": generated, "kept": len(kept),
            "failing": failing, "rerun_passed": still, "collected": len(rerun),
            "s_per_fn": seconds}


async def commits(worker, settings: Settings, root: Path) -> dict:
    ws = colorsys_workspace(root / "ws")
    made, named, scores, typed, typed_total, seconds, messages = 0, 0, [], 0, 0, [], []
    for path, old, new, reference in DIFFS:
        target = ws / path
        if old is None:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(new)
        else:
            text = target.read_text()
            assert old in text, f"bench diff no longer applies to {path}"
            target.write_text(text.replace(old, new))
        git(ws, "add", "-A")
        patch = git(ws, "diff", "--cached")
        names = touched_names(patch)
        t0 = time.perf_counter()
        try:
            result = await generate_commit_message(TaskRun(worker), settings, ws)
        except Refusal as exc:
            messages.append((reference, None, str(exc)[:100]))
        else:
            made += 1
            header = result.message.splitlines()[0]
            subject = header.split(": ", 1)[-1]
            named += mentions(subject, names)
            scores.append(rouge_l(subject, reference.split(": ", 1)[1]))
            if not path.endswith(".md") and not path.startswith("tests/"):
                typed_total += 1
                typed += header.split(":")[0].split("(")[0] == reference.split(":")[0]
            messages.append((reference, header, ""))
        seconds.append(time.perf_counter() - t0)
        git(ws, "commit", "-qm", reference)
    return {"diffs": len(DIFFS), "made": made, "named": named,
            "rouge": sum(scores) / len(scores) if scores else 0.0, "typed": typed,
            "typed_total": typed_total, "s_per_msg": sum(seconds) / len(seconds),
            "messages": messages}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", default="smollm2,gemma3-270m")
    parser.add_argument("--docstrings", type=int, default=12,
                        help=f"functions of {DOC_PATH} sampled for docstrings (at most all)")
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--smoke", action="store_true",
                        help="one of everything, nothing written: does the script still run?")
    args = parser.parse_args()
    if args.smoke:
        global BUGS, CLEAN, TEST_FUNCTIONS, DIFFS
        BUGS, CLEAN = dict(list(BUGS.items())[:1]), CLEAN[:1]
        TEST_FUNCTIONS, DIFFS = TEST_FUNCTIONS[:1], DIFFS[:2]
        args.docstrings, args.no_write = 1, True
    description = [
        "Everything the model says is validated first; the columns count what reached the "
        "user, and each could come out otherwise. Answer cache off. Each model has its own "
        "section below, written when its run ends (`--models` runs them one at a time; "
        "`--models ''` rewrites only this description).", "",
        f"- Review: `bench/fixtures/planted.py` ({len(BUGS)} functions with a planted bug, "
        f"{len(CLEAN)} clean), one review per function. This fixture was written here (the "
        "exception to real code): a smoke check, not a quality figure.",
        f"- Docstrings: {len(doc_sample(args.docstrings, args.seed)[1])} functions (a "
        f"sample of at most {args.docstrings}, seed {args.seed}) of markdown-it-py's "
        f"`{DOC_PATH}` (site-packages) with every docstring removed; ROUGE-L (F1 over words) "
        "of the summary paragraph against the first sentence of the removed docstring, "
        "averaged over the docstrings that passed; \"name only\" scores the function's "
        "name split into words on the same functions. No prompt was tuned on this code.",
        f"- Tests: CPython's `colorsys.py` as `{MODULE}`; tests for "
        f"{', '.join(f'`{n}`' for n in TEST_FUNCTIONS)}, each result inserted into the test "
        "file as the editor would; the final test file then runs with plain pytest (no "
        "sandbox) in a fresh copy of the original workspace.",
        f"- Commit messages: {len(DIFFS)} staged edits of that copy (a rename, a validation, "
        "a constant, a README, a test file), each with a reference subject written for it. "
        "\"names the diff\": the subject contains a touched file's name (or stem; not a "
        "folder) or an identifier "
        "from a changed line or hunk header (string literals left out). Type as the "
        "reference: code diffs only (Hearth forces `docs`/`test` for the others)."]
    if not args.no_write:
        write_section("tasks", "## Tasks: `bench/tasks.py`\n\n" + "\n".join(description))
    tmp = Path(tempfile.mkdtemp(prefix="hearth-tasks-"))
    for preset in filter(None, args.models.split(",")):
        load_before = wait_for_quiet(0 if args.smoke else None)
        r = asyncio.run(evaluate(preset, args.docstrings, args.seed, tmp))
        rv, dc, ts, cm = r["review"], r["docstrings"], r["tests"], r["commit"]
        for reference, made, why in cm["messages"]:
            print(f"  commit: {reference!r} -> {made or 'refused: ' + why!r}")
        for name, summary, ref in dc["samples"]:
            print(f"  docstring {name}: {summary!r} / {ref!r}")
        lines = [
            "| review findings kept, dropped by the anchoring checks | planted bugs found (a "
            "finding on the planted line) | findings in buggy functions: on the planted line "
            "/ elsewhere | findings per clean function | s/function |",
            "|---|---|---|---|---|",
            f"| {rv['kept']} kept, {rv['dropped']} dropped | {rv['found']}/{len(BUGS)} | "
            f"{rv['on_target']} / {rv['elsewhere']} | {rv['clean_per_fn']:.2f} | "
            f"{rv['s_per_fn']:.1f} s |", "",
            "| docstrings passing validation | summary ROUGE-L | s/docstring |", "|---|---|---|",
            f"| {dc['ok']}/{dc['total']} | {dc['rouge']:.2f} (name only: {dc['baseline']:.2f}) "
            f"| {dc['s_per_fn']:.1f} s |", "",
            "| tests generated / kept (passed in the sandbox) / failing (reported) | kept "
            "tests passing again in a fresh copy | s/function |", "|---|---|---|",
            f"| {ts['generated']} / {ts['kept']} / {ts['failing']} | {ts['rerun_passed']}/"
            f"{ts['kept']} ({ts['collected']} collected) | {ts['s_per_fn']:.1f} s |", "",
            "| commit messages made | subject names the diff | subject ROUGE-L | type as the "
            "reference | s/message |", "|---|---|---|---|---|",
            f"| {cm['made']}/{cm['diffs']} | {cm['named']}/{cm['made']} | {cm['rouge']:.2f} | "
            f"{cm['typed']}/{cm['typed_total']} | {cm['s_per_msg']:.1f} s |"]
        print("\n".join(lines), flush=True)
        if not args.no_write:
            write_section(f"tasks-{preset}", f"### Tasks with `{preset}`\n\n"
                          + machine_description(model_where=r["where"], load_before=load_before)
                          + "\n\n" + NOISE + " Only the seconds columns depend on it.\n\n"
                          + "\n".join(lines))
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
