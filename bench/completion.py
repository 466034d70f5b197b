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

    .venv/bin/python bench/completion.py [--samples N]
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

from hearth_lsp.server.engine.worker import GenerationWorker, Priority  # noqa: E402
from hearth_lsp.server.local import llama_engine_factory  # noqa: E402
from hearth_lsp.server.settings import Settings, cache_dir  # noqa: E402
from hearth_lsp.server.tasks.completion import run as completion_run  # noqa: E402
from hearth_lsp.server.tasks.completion.model import CompletionModel  # noqa: E402
from hearth_lsp.server.tasks.completion.prompt import build_prompt  # noqa: E402
from hearth_lsp.server.tasks.completion.run import CompletionRequest  # noqa: E402
from hearth_lsp.server.tasks.completion.session import CompletionSession  # noqa: E402
from hearth_lsp.server.tasks.runner import TaskRun, ready_engine  # noqa: E402

import report  # noqa: E402


def sources() -> list[Path]:
    """Python files of installed packages (not Hearth's): the held-out code."""
    import click
    import jinja2
    import pygls

    picked = []
    for pkg, names in ((click, ["termui.py", "utils.py", "parser.py"]),
                       (jinja2, ["utils.py", "filters.py"]),
                       (pygls, ["uris.py", "workspace/text_document.py"])):
        base = Path(pkg.__file__).parent
        picked += [base / n for n in names if (base / n).is_file()]
    return picked


def samples(n: int) -> list[tuple[str, str, str, str]]:
    """(path, prefix, suffix, the line's original rest): a cursor in the middle of a code
    line (after its first token), the rest of the line blanked."""
    out = []
    files = sources()
    per = max(1, n // len(files) + 1)
    for path in files:
        lines = path.read_text().splitlines(keepends=True)
        picked = 0
        for i in range(40, len(lines), 37):
            line = lines[i]
            code = line.strip()
            if len(code) < 16 or code.startswith(("#", '"', "'", "@")) or "import" in code:
                continue
            indent = len(line) - len(line.lstrip())
            cut = indent + max(4, len(code) // 3)
            prefix = "".join(lines[:i]) + line[:cut]
            rest = line[cut:].rstrip("\n")
            suffix = "\n" + "".join(lines[i + 1:])
            out.append((path.name, prefix, suffix, rest))
            picked += 1
            if picked >= per:
                break
    return out[:n]


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=20)
    args = ap.parse_args()
    load_before = report.wait_for_quiet()
    settings = Settings()
    sampling = settings.completion
    cache = cache_dir()
    model = CompletionModel(llama_engine_factory, cache)
    worker = model.worker(settings, GenerationWorker())
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
    hearth_s, raw_s, exact, similar, dup, empty = [], [], 0, [], 0, 0
    cases = samples(args.samples)
    for path, prefix, suffix, rest in cases:
        warm = CompletionRequest(prefix[:-1], prefix[-1] + suffix, path=path, language="python")
        await CompletionSession().suggest("doc", warm, new_run=new_run, generate=generate)
        request = CompletionRequest(prefix, suffix, path=path, language="python")
        found, took, pieces = await suggest(CompletionSession(), request)
        hearth_s.append(took)
        text = found.text
        if not text:
            empty += 1
        exact += text.strip() == rest.strip()
        similar.append(difflib.SequenceMatcher(None, text.strip(), rest.strip()).ratio())
        dup += bool(text.strip()) and suffix.lstrip().startswith(text.strip())
        # raw llama_cpp: warmed with the prompt one character earlier, same token count
        raw.create_completion(raw_prompt(prefix[:-1], prefix[-1] + suffix, path), max_tokens=1)
        started = time.perf_counter()
        raw.create_completion(raw_prompt(prefix, suffix, path), max_tokens=max(1, pieces),
                              temperature=sampling.temperature, top_k=sampling.top_k)
        raw_s.append(time.perf_counter() - started)

    # ------------------------------------------------------------ cancel on a keystroke
    cancel_ms = []
    long_prefix = cases[0][1].rsplit("\n", 1)[0] + "\n    "
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
    for path, prefix, suffix, rest in cases[:6]:
        request = CompletionRequest(prefix, suffix, path=path, language="python")
        found, _, _ = await suggest(session, request)
        for k in range(1, len(rest) + 1):  # the user types the original line
            step = CompletionRequest(prefix + rest[:k], suffix, path=path, language="python")
            before = session.stats.generated
            await suggest(session, step)
            typed_requests += 1
            reused += session.stats.generated == before
    through_requests = through_reused = 0
    for path, prefix, suffix, _rest in cases[6:12]:
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
    n = len(cases)
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
| cancel: an edit that disagrees → the worker idle (ms, {len(cancel_ms)} runs) | {pct(cancel_ms, .5):.0f} | {pct(cancel_ms, .95):.0f} | {max(cancel_ms):.0f} |

Targets from the issue: p50 ≤ 300 ms, p95 ≤ 700 ms, cancel ≤ 50 ms.

- Reuse while the user types the original line character by character after a
  suggestion: {reused}/{typed_requests} requests ({100 * reused / max(1, typed_requests):.0f}%) answered
  without a new generation (from the running or a finished one).
- Reuse while typing the suggestion itself: {through_reused}/{through_requests}
  ({100 * through_reused / max(1, through_requests):.0f}%).
- Line completion quality on the {n} blanked lines, without repository context:
  exact match {exact}/{n}, mean edit similarity {statistics.mean(similar):.2f}
  (difflib ratio), empty suggestions {empty}/{n}, suggestions that only repeat the
  text after the cursor {dup}/{n}. Repository context (definitions from the index)
  is not in the prompt yet, so the with/without comparison is not made.

{report.machine_description(model_where=where, load_before=load_before)}
"""
    report.write_section("completion", body)
    print(body)


if __name__ == "__main__":
    asyncio.run(main())
