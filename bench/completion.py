"""Inline completion: latency with a warm KV cache beside raw llama_cpp, cancellation on
the next keystroke, reuse while typing through a suggestion, and line-completion quality.

One run, the bundled completion model (Gemma 3 270M base) on this machine's CPU. The
cursor positions are in real code the project did not write (installed packages'
sources): the rest of a line is blanked and the suggestion compared with it.

Latency is measured through Hearth's own completion path (CompletionSession ->
TaskRun -> the worker -> LlamaEngine; everything the server does but JSON-RPC and the
debounce), from the request to the cleaned suggestion, after a request one character
earlier warmed the KV cache with the same file (a user typing). Raw is
``llama_cpp.Llama.create_completion`` on the same prompt text, warmed the same way,
asked for as many tokens as Hearth generated (counted by re-tokenizing its output).

Quality is measured twice on the same held-back cursor positions: without and with
repository context (code of the package's other files like the lines above the cursor,
and the definitions of the names near the cursor, from a workspace index of the package
the file belongs to, built here without embeddings). The held-back
positions were not looked at while the context was designed (``--dev`` runs on the
development positions instead).

    .venv/bin/python bench/completion.py [--samples N] [--dev]
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

from hearth_lsp.server.engine.worker import GenerationWorker, Priority  # noqa: E402
from hearth_lsp.server.index_service import IndexService  # noqa: E402
from hearth_lsp.server.local import llama_engine_factory  # noqa: E402
from hearth_lsp.server.settings import Settings, cache_dir  # noqa: E402
from hearth_lsp.server.tasks.completion import run as completion_run  # noqa: E402
from hearth_lsp.server.tasks.completion.context import (  # noqa: E402
    FileLines,
    repo_snippet,
    with_repo_context,
)
from hearth_lsp.server.tasks.completion.model import CompletionModel, same_model  # noqa: E402
from hearth_lsp.server.tasks.completion.prompt import (  # noqa: E402
    SNIPPET_KEEP_SHARE,
    SNIPPET_LINES,
    build_prompt,
)
from hearth_lsp.server.tasks.completion.run import CompletionRequest  # noqa: E402
from hearth_lsp.server.tasks.completion.session import CompletionSession  # noqa: E402
from hearth_lsp.server.tasks.runner import TaskRun, ready_engine  # noqa: E402

import report  # noqa: E402

PACKAGES = (("click", ["termui.py", "utils.py", "parser.py"]),
            ("jinja2", ["utils.py", "filters.py"]),
            ("pygls", ["uris.py", "workspace/text_document.py"]))
DEV_START, HELD_BACK_START, STEP = 40, 58, 37  # the lines sampled: start, start + STEP, ...


def copies(into: Path) -> dict[str, Path]:
    """The packages' sources copied into ``into`` (an index leaves site-packages out)."""
    import importlib

    out = {}
    for name, _ in PACKAGES:
        src = Path(importlib.import_module(name).__file__ or "").parent
        out[name] = into / name
        shutil.copytree(src, out[name], ignore=shutil.ignore_patterns("__pycache__"))
    return out


def samples(n: int, roots: dict[str, Path], start: int
            ) -> list[tuple[str, str, str, str, str]]:
    """(package, path in it, prefix, suffix, the line's original rest): a cursor in the
    middle of a code line (after its first token), the rest of the line blanked."""
    out = []
    files = [(pkg, rel) for pkg, names in PACKAGES for rel in names
             if (roots[pkg] / rel).is_file()]
    per = max(1, n // len(files) + 1)
    for pkg, rel in files:
        lines = (roots[pkg] / rel).read_text().splitlines(keepends=True)
        picked = 0
        for i in range(start, len(lines), STEP):
            line = lines[i]
            code = line.strip()
            if len(code) < 16 or code.startswith(("#", '"', "'", "@")) or "import" in code:
                continue
            indent = len(line) - len(line.lstrip())
            cut = indent + max(4, len(code) // 3)
            prefix = "".join(lines[:i]) + line[:cut]
            rest = line[cut:].rstrip("\n")
            suffix = "\n" + "".join(lines[i + 1:])
            out.append((pkg, rel, prefix, suffix, rest))
            picked += 1
            if picked >= per:
                break
    return out[:n]


def snippet_changes(indexes: dict, roots: dict[str, Path], settings: Settings,
                    keep: bool) -> tuple[int, int]:
    """(new lines, those on which the snippet changed) while typing through the first
    file of each package line by line (the cursor indented on a new line after lines
    20 to 219), as the server asks: with or without the snippet shown before."""
    files = FileLines()
    lines_typed = changed = 0
    for pkg, names in PACKAGES:
        lines = (roots[pkg] / names[0]).read_text().splitlines(keepends=True)
        before, shown = None, None
        for i in range(20, min(len(lines), 220)):
            request = CompletionRequest("".join(lines[:i]) + "    ", "\n", path=names[0],
                                        language="python")
            before = repo_snippet(indexes[pkg], request, names[0], settings, files,
                                  keep=before if keep else None)
            now = (before.path, before.line) if before else None
            lines_typed += i > 20
            changed += i > 20 and now != shown
            shown = now
    return lines_typed, changed


class Score:
    def __init__(self) -> None:
        self.exact = self.dup = self.empty = 0
        self.similar: list[float] = []

    def add(self, text: str, suffix: str, rest: str) -> None:
        self.empty += not text
        self.exact += text.strip() == rest.strip()
        self.similar.append(difflib.SequenceMatcher(None, text.strip(), rest.strip()).ratio())
        self.dup += bool(text.strip()) and suffix.lstrip().startswith(text.strip())


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=40)
    ap.add_argument("--dev", action="store_true", help="the development positions")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="hearth-bench-completion-"))
    roots = copies(tmp / "src")
    indexes = {}
    for pkg, root in roots.items():
        svc = IndexService(root, tmp / "cache", Settings().index, embed=False)
        svc.start()
        svc.ready.wait(300)
        indexes[pkg] = svc
    load_before = report.wait_for_quiet()
    settings = Settings()
    sampling = settings.completion
    cache = cache_dir()
    model = CompletionModel(llama_engine_factory, cache)
    shared = GenerationWorker()
    if same_model(settings):  # the tasks' model completes too (the default): the server's one
        shared.load(lambda: llama_engine_factory(settings, cache))
    worker = model.worker(settings, shared)
    produced: list[str] = []

    async def generate(run, request, on_piece):
        def counting(piece: str) -> None:
            produced.append(piece)
            on_piece(piece)
        return await completion_run.generate(run, model.format, request, sampling, counting)

    def new_run() -> TaskRun:
        return TaskRun(worker, ("completion", "doc"), Priority.COMPLETION)

    async def suggest(session, request):
        produced.clear()
        started = time.perf_counter()
        found = await session.suggest("doc", request, new_run=new_run, generate=generate)
        took = time.perf_counter() - started
        # tokens Hearth generated (pieces can hold several while stop strings are matched)
        return found, took, len(raw.tokenize("".join(produced).encode(), add_bos=False))

    await ready_engine(worker)
    engine = worker.engine
    assert engine is not None
    where = engine.info.where
    import llama_cpp

    raw = llama_cpp.Llama(model_path=engine.info.path, n_ctx=settings.model.context_length,
                          n_batch=settings.model.batch_size, n_threads=engine.info.threads,
                          n_threads_batch=engine.info.threads, verbose=False)
    fmt = await model.format(worker)
    budget = max(64, min(sampling.context_tokens,
                         engine.info.context_length - sampling.max_tokens - 16))

    def raw_prompt(prefix: str, suffix: str, path: str) -> str:
        return build_prompt(prefix, suffix, fmt=fmt, budget_tokens=budget, path=path,
                            language="python").text

    # ---------------------------------------------------------------- latency + quality
    hearth_s, raw_s = [], []
    without, with_context = Score(), Score()
    cases = samples(args.samples, roots, DEV_START if args.dev else HELD_BACK_START)
    for _pkg, path, prefix, suffix, rest in cases:
        warm = CompletionRequest(prefix[:-1], prefix[-1] + suffix, path=path, language="python")
        await CompletionSession().suggest("doc", warm, new_run=new_run, generate=generate)
        request = CompletionRequest(prefix, suffix, path=path, language="python")
        found, took, pieces = await suggest(CompletionSession(), request)
        hearth_s.append(took)
        without.add(found.text, suffix, rest)
        # raw llama_cpp: warmed with the prompt one character earlier, same token count
        raw.create_completion(raw_prompt(prefix[:-1], prefix[-1] + suffix, path), max_tokens=1)
        started = time.perf_counter()
        raw.create_completion(raw_prompt(prefix, suffix, path), max_tokens=max(1, pieces),
                              temperature=sampling.temperature, top_k=sampling.top_k)
        raw_s.append(time.perf_counter() - started)

    # ----------------------------------------------- quality with repository context
    context_s, with_context_n, with_snippet, context_tokens, lookup_ms = [], 0, 0, [], []
    details = []
    for pkg, path, prefix, suffix, rest in cases:
        plain = CompletionRequest(prefix, suffix, path=path, language="python")
        started = time.perf_counter()
        request = with_repo_context(indexes[pkg], plain, path, settings)
        lookup_ms.append((time.perf_counter() - started) * 1000)
        warm = replace(request, prefix=prefix[:-1], suffix=prefix[-1] + suffix)
        await CompletionSession().suggest("doc", warm, new_run=new_run, generate=generate)
        found, took, _ = await suggest(CompletionSession(), request)
        context_s.append(took)
        with_context.add(found.text, suffix, rest)
        shown = build_prompt(prefix, suffix, fmt=fmt, budget_tokens=budget, path=path,
                             language="python", definitions=request.definitions,
                             snippet=request.snippet,
                             context_tokens=sampling.repo_context_tokens).context
        with_context_n += bool(shown)
        with_snippet += "# Similar code in " in shown
        context_tokens.append(len(raw.tokenize(shown.encode(), add_bos=False)) if shown else 0)
        details.append((path, rest, found.text))
    typed_lines, changed_kept = snippet_changes(indexes, roots, settings, keep=True)
    _, changed_fresh = snippet_changes(indexes, roots, settings, keep=False)
    for pkg_svc in indexes.values():
        pkg_svc.stop()
    shutil.rmtree(tmp, ignore_errors=True)

    # ------------------------------- the time limit: first ghost text, then the rest
    limit_s = sampling.answer_within_ms / 1000
    first_s, partial, by_line, shown_share = [], 0, 0, []
    for _pkg, path, prefix, suffix, _rest in cases:
        warm = CompletionRequest(prefix[:-1], prefix[-1] + suffix, path=path, language="python")
        await CompletionSession().suggest("doc", warm, new_run=new_run, generate=generate)
        session = CompletionSession()
        request = CompletionRequest(prefix, suffix, path=path, language="python")
        started = time.perf_counter()
        first = await session.suggest("doc", request, new_run=new_run, generate=generate,
                                      answer_within_s=limit_s)
        first_s.append(time.perf_counter() - started)
        if first.source == "partial":
            partial += 1
            by_line += session.stats.whole_line
            running = session.running.get("doc")
            if running is not None and running.task is not None:
                await asyncio.shield(running.task)  # the rest, as when the user accepts
            whole = await session.suggest("doc", request, new_run=new_run, generate=generate)
            if whole.text:
                shown_share.append(len(first.text) / len(whole.text))

    # ------------------------------------------------------------ cancel on a keystroke
    cancel_ms = []
    long_prefix = cases[0][2].rsplit("\n", 1)[0] + "\n    "
    for n in range(8):
        session = CompletionSession()
        prefix = long_prefix + "x" * n
        request = CompletionRequest(prefix, "\n", path="a.py", language="python")
        task = asyncio.ensure_future(session.suggest("doc", request, new_run=new_run,
                                                     generate=generate))
        gen = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            gen = session.running.get("doc")
            if gen is not None and gen.pieces:
                break
            await asyncio.sleep(0.002)
        if gen is None or gen.done:
            await task
            continue
        started = time.perf_counter()
        session.edited("doc", prefix + "#\n")  # a keystroke that disagrees
        await asyncio.wait_for(asyncio.shield(gen.task), 30)
        await asyncio.to_thread(worker.idle.wait, 30)
        cancel_ms.append((time.perf_counter() - started) * 1000)
        await task

    # ------------------------------------------------------ reuse while typing through
    session = CompletionSession()
    typed_requests = reused = 0
    for _pkg, path, prefix, suffix, rest in cases[:6]:
        request = CompletionRequest(prefix, suffix, path=path, language="python")
        found, _, _ = await suggest(session, request)
        for k in range(1, len(rest) + 1):  # the user types the original line
            step = CompletionRequest(prefix + rest[:k], suffix, path=path, language="python")
            before = session.stats.generated
            await suggest(session, step)
            typed_requests += 1
            reused += session.stats.generated == before
    through_requests = through_reused = 0
    for _pkg, path, prefix, suffix, _rest in cases[6:12]:
        request = CompletionRequest(prefix, suffix, path=path, language="python")
        found, _, _ = await suggest(session, request)
        for k in range(1, len(found.text) + 1):  # the user types the suggestion itself
            before = session.stats.generated
            await suggest(session, CompletionRequest(prefix + found.text[:k], suffix, path=path,
                                                     language="python"))
            through_requests += 1
            through_reused += session.stats.generated == before

    worker.shutdown()
    raw.close()
    ms = [s * 1000 for s in hearth_s]
    raw_ms = [s * 1000 for s in raw_s]
    ctx_ms = [s * 1000 for s in context_s]
    first_ms = [s * 1000 for s in first_s]
    n = len(cases)
    which = "development" if args.dev else "held-back"

    pairs = list(zip(with_context.similar, without.similar, strict=True))
    better = sum(a > b for a, b in pairs)
    worse = sum(a < b for a, b in pairs)
    gain = statistics.mean(a - b for a, b in pairs)
    gain_lo, gain_hi = report.bootstrap_interval(with_context.similar, without.similar, seed=1)

    def row(name: str, sc: Score) -> str:
        return (f"| {name} | {sc.exact}/{n} ({100 * sc.exact / n:.0f}%) | "
                f"{statistics.mean(sc.similar):.3f} | {sc.empty}/{n} | {sc.dup}/{n} |")
    body = f"""## Inline completion

`bench/completion.py`, one run: the completion model ({engine.info.name}, the
`completion.preset` default), {n} cursor positions in the middle of lines of installed
packages' sources (click, jinja2, pygls: code the project did not write), the rest of
each line blanked. Hearth's path is CompletionSession → TaskRun → worker → LlamaEngine
(all the server does except JSON-RPC and the `completion.debounceMs` wait, 120 ms by
default, which comes on top); the KV cache is warm from a request one character
earlier, as when typing. Raw is `llama_cpp.Llama.create_completion` on the same
prompt text, warmed the same way, for as many tokens as Hearth generated (Hearth
stops at the end of the line or block by itself).

| | p50 | p95 | max |
|---|---|---|---|
| Hearth: request → ghost text (ms) | {pct(ms, .5):.0f} | {pct(ms, .95):.0f} | {max(ms):.0f} |
| raw llama_cpp, same prompts and token counts (ms) | {pct(raw_ms, .5):.0f} | {pct(raw_ms, .95):.0f} | {max(raw_ms):.0f} |
| Hearth with repository context: request → ghost text (ms) | {pct(ctx_ms, .5):.0f} | {pct(ctx_ms, .95):.0f} | {max(ctx_ms):.0f} |
| looking the repository context up in the index (ms, per request) | {pct(lookup_ms, .5):.1f} | {pct(lookup_ms, .95):.1f} | {max(lookup_ms):.1f} |
| cancel: an edit that disagrees → the worker idle (ms, {len(cancel_ms)} runs) | {pct(cancel_ms, .5):.0f} | {pct(cancel_ms, .95):.0f} | {max(cancel_ms):.0f} |
| **Hearth with `completion.answerWithinMs` {sampling.answer_within_ms} (the default): request → first ghost text (ms)** | **{pct(first_ms, .5):.0f}** | **{pct(first_ms, .95):.0f}** | {max(first_ms):.0f} |

Targets from the issue: p50 ≤ 300 ms, p95 ≤ 700 ms, cancel ≤ 50 ms. The first rows wait
for the whole suggestion (`answerWithinMs` 0). With the time limit, {partial}/{n}
requests were answered before their generation ended, {by_line} of them with the line at
the cursor as soon as it was whole (more lines of a block were coming), the others with
the whole words written by the limit; the generation went on (the rest is served from
it when the user accepts or types on, as in the reuse figures below); those first
answers held {100 * statistics.median(shown_share) if shown_share else 0:.0f}%
of the whole suggestion's characters (median). The limit counts from the request;
in the editor the debounce comes first.

- Reuse while the user types the original line character by character after a
  suggestion: {reused}/{typed_requests} requests ({100 * reused / max(1, typed_requests):.0f}%) answered
  without a new generation (from the running or a finished one).
- Reuse while typing the suggestion itself: {through_reused}/{through_requests}
  ({100 * through_reused / max(1, through_requests):.0f}%).

Line completion quality on the {n} {which} cursor positions (lines {HELD_BACK_START if not args.dev else DEV_START}, +{STEP}, …
of each file), without and with repository context, from an index of the package the
file belongs to (`IndexService`, lexical index and symbols, no embeddings), as comments
before the file within `completion.repoContextTokens` ({sampling.repo_context_tokens}
tokens): first the window of {SNIPPET_LINES} lines of another file whose names are most like
the {SNIPPET_LINES} lines above the cursor's (among the chunks a lexical search for those
names finds), then the signatures of the names near the cursor (12 lines above, 3 below)
that the document window does not show. {with_context_n}/{n} prompts got some context,
{with_snippet} of them a snippet (mean {statistics.mean(context_tokens):.0f} tokens,
max {max(context_tokens)}). Edit similarity is difflib's ratio of the suggestion to the
blanked rest of the line; duplication counts suggestions that only repeat the text
after the cursor.

| | exact match | mean edit similarity | empty | duplicates the suffix |
|---|---|---|---|---|
{row("without repository context", without)}
{row("with repository context", with_context)}

With the context, the suggestion's edit similarity rose at {better} positions and fell at
{worse} (the rest unchanged); the mean difference is {gain:+.3f}, 95% paired bootstrap
interval [{gain_lo:+.3f}, {gain_hi:+.3f}].

The snippet is at the prompt's start: when it changes, the whole prompt is evaluated
again. Typing through the first file of each package line by line ({typed_lines} new
lines), it changed on {100 * changed_kept / typed_lines:.0f}% of them with the snippet shown
before kept while it scores {SNIPPET_KEEP_SHARE} of the best (the server's way), on
{100 * changed_fresh / typed_lines:.0f}% when chosen afresh each time.

{report.machine_description(model_where=where, load_before=load_before)}
"""
    if not args.dev:  # the development positions are not the figures
        report.write_section("completion", body)
    print(body)
    for path, rest, text in details:  # what the context gave, line by line (stderr)
        print(f"{path}: want {rest.strip()!r} got {text.strip()!r}", file=sys.stderr)


if __name__ == "__main__":
    asyncio.run(main())
