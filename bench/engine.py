"""Engine benchmark: Hearth's LSP path against raw llama-cpp-python, in one run.

    .venv/bin/python bench/engine.py [--preset smollm2] [--runs 5]

Prints the figures and rewrites the "engine" section of docs/benchmarks.md.
Not a test: nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lsprotocol import types
from pygls.lsp.client import LanguageClient

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

from hearth_lsp.server import docstring  # noqa: E402
from hearth_lsp.server.gguf_info import read_gguf  # noqa: E402
from hearth_lsp.server.models import resolve_model_path  # noqa: E402
from hearth_lsp.server.settings import Settings, cache_dir  # noqa: E402

from report import machine_description, write_section  # noqa: E402

# The demo workspace's two modules as one file (~800 tokens): enough context that
# prompt processing matters, small enough for a 2-core CPU.
DEMO = REPO / "examples" / "demo-workspace" / "inventory"
BENCH_FILES = [DEMO / "models.py", DEMO / "pricing.py"]
# Greedy, fixed length: both paths produce the same tokens.
SAMPLING = {"temperature": 0.0, "maxTokens": 96, "seed": 1, "repeatPenalty": 1.0}


class BenchClient(LanguageClient):
    def __init__(self) -> None:
        super().__init__("hearth-bench", "0")
        self.events: list[tuple[float, object, dict]] = []

        @self.feature(types.WINDOW_WORK_DONE_PROGRESS_CREATE)
        def _create(params):
            return None

        @self.feature(types.WINDOW_LOG_MESSAGE)
        def _log(params):
            return None

        @self.feature(types.PROGRESS)
        def _progress(params: types.ProgressParams):
            value = params.value if isinstance(params.value, dict) else {}
            self.events.append((time.perf_counter(), params.token, value))


def capabilities() -> types.ClientCapabilities:
    return types.ClientCapabilities(
        window=types.WindowClientCapabilities(work_done_progress=True),
        text_document=types.TextDocumentClientCapabilities(
            code_action=types.CodeActionClientCapabilities(
                resolve_support=types.ClientCodeActionResolveOptions(properties=["edit"]))))


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


async def status(client: LanguageClient) -> dict:
    return await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="hearth.status"))


async def resolve_timed(client: BenchClient, action: types.CodeAction) -> tuple[float, float, int]:
    """(time to first streamed token, total seconds, tokens) for one resolve."""
    mark = len(client.events)
    started = time.perf_counter()
    await client.code_action_resolve_async(action)
    total = time.perf_counter() - started
    events = client.events[mark:]
    first = next((t for t, _, v in events if v.get("kind") == "report"), started + total)
    end = next(v.get("message", "") for _, _, v in reversed(events) if v.get("kind") == "end")
    tokens = int(end.split()[0]) if end and end.split()[0].isdigit() else 0
    return first - started, total, tokens


async def actions_at(client, uri, line):
    here = types.Position(line=line, character=0)
    out = await client.text_document_code_action_async(types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(uri=uri), range=types.Range(start=here, end=here),
        context=types.CodeActionContext(diagnostics=[])))
    return [a for a in out or [] if isinstance(a, types.CodeAction)]


async def lsp_bench(workspace: Path, source: str, fns, runs: int, options: dict) -> dict:
    client = BenchClient()
    env = {**os.environ, "HEARTH_LOG_LEVEL": "info"}
    await client.start_io(sys.executable, "-m", "hearth_lsp.server", "serve", env=env)
    proc = client._server
    assert proc is not None and proc.stderr is not None
    # Wait until the server process is up and reading, so the initialize round trip
    # measures the server, not Python's start-up.
    line = b""
    while b"serving LSP" not in line:
        line = await proc.stderr.readline()
    drain = asyncio.ensure_future(_drain(proc.stderr))
    started = time.perf_counter()
    await client.initialize_async(types.InitializeParams(
        capabilities=capabilities(), root_uri=workspace.as_uri(), process_id=os.getpid(),
        initialization_options=options))
    init_ms = (time.perf_counter() - started) * 1000
    client.initialized(types.InitializedParams())
    status_while_loading = []
    while (st := await status(client))["model"] != "ready":
        status_while_loading.append(st["model"])
        assert st["model"] != "error", st["error"]
        await asyncio.sleep(0.01)
    rss_mb = _rss_mb(proc.pid)

    path = workspace / "bench_target.py"
    path.write_text(source)
    uri = path.as_uri()
    client.text_document_did_open(types.DidOpenTextDocumentParams(types.TextDocumentItem(
        uri=uri, language_id="python", version=1, text=source)))
    a, b = fns
    # Time to first token: first action on the file, then another on the same file.
    first_ttft, _, _ = await resolve_timed(client, (await actions_at(client, uri, a.def_line))[0])
    second_ttft, _, _ = await resolve_timed(client, (await actions_at(client, uri, b.def_line))[0])
    # Throughput on the same prompt as the raw run (KV prefix warm on both sides).
    rates = []
    for _ in range(runs):
        ttft, total, tokens = await resolve_timed(client, (await actions_at(client, uri, a.def_line))[0])
        rates.append((tokens - 1) / (total - ttft))
    # Code-action latency while a long generation runs.
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
        settings={"docstring": {"maxTokens": 4000, "temperature": 1.0, "stop": []}}))
    await asyncio.sleep(0.1)
    long_action = (await actions_at(client, uri, b.def_line))[0]
    pending = asyncio.ensure_future(client.protocol.send_request_async(
        types.CODE_ACTION_RESOLVE, long_action, msg_id="bench-long"))
    while (await status(client))["running"] != "docstring":
        await asyncio.sleep(0.005)
    latencies = []
    for i in range(200):
        t0 = time.perf_counter()
        await actions_at(client, uri, a.def_line + (i % 3))
        latencies.append((time.perf_counter() - t0) * 1000)
    running_after = (await status(client))["running"]
    # Cancel to idle.
    t0 = time.perf_counter()
    client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id="bench-long"))
    with contextlib.suppress(Exception):  # the cancelled request answers with an error
        await pending
    cancel_answer_ms = (time.perf_counter() - t0) * 1000
    while (await status(client))["running"] is not None:
        await asyncio.sleep(0.001)
    cancel_idle_ms = (time.perf_counter() - t0) * 1000
    await client.shutdown_async(None)
    client.exit(None)
    await client.stop()
    drain.cancel()
    return {"init_ms": init_ms, "loading_seen": bool(status_while_loading), "rss_mb": rss_mb,
            "first_ttft": first_ttft, "second_ttft": second_ttft, "rate": statistics.median(rates),
            "lat_p50": pct(latencies, 0.5), "lat_p99": pct(latencies, 0.99),
            "generation_spanned_latency_test": running_after == "docstring",
            "cancel_answer_ms": cancel_answer_ms, "cancel_idle_ms": cancel_idle_ms}


async def _drain(stream) -> None:
    while await stream.read(65536):
        pass


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def raw_bench(model: Path, settings: Settings, source: str, fns, runs: int) -> dict:
    import llama_cpp

    from hearth_lsp.server.engine.llama import default_threads

    threads = settings.model.threads or default_threads()
    llm = llama_cpp.Llama(model_path=str(model), n_ctx=settings.model.context_length,
                          n_batch=settings.model.batch_size, n_threads=threads,
                          n_threads_batch=threads, n_gpu_layers=0, verbose=False)
    info = read_gguf(model)
    sampling = settings.docstring

    def prompt_for(fn):
        return docstring.build_prompt(source, fn, path="bench_target.py",
                                      chat_template=info.chat_template, bos_token=info.bos_token,
                                      eos_token=info.eos_token,
                                      context_tokens=settings.model.context_length,
                                      max_tokens=sampling.max_tokens)

    def run(fn) -> tuple[float, float, int]:
        p = prompt_for(fn)
        started = time.perf_counter()
        first, n = None, 0
        for chunk in llm.create_completion(
                p.text, max_tokens=sampling.max_tokens, temperature=sampling.temperature,
                top_k=sampling.top_k, top_p=sampling.top_p, min_p=sampling.min_p,
                repeat_penalty=sampling.repeat_penalty, seed=sampling.seed, stop=p.stop,
                stream=True):
            if chunk["choices"][0]["text"]:
                first = first or time.perf_counter() - started
                n += 1
        total = time.perf_counter() - started
        return first or total, total, n

    a, b = fns
    first_ttft = run(a)[0]
    second_ttft = run(b)[0]
    rates = []
    for _ in range(runs):
        ttft, total, n = run(a)
        rates.append((n - 1) / (total - ttft))
    llm.close()
    return {"first_ttft": first_ttft, "second_ttft": second_ttft, "rate": statistics.median(rates)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", default="smollm2")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    settings = Settings()
    settings.model.preset = args.preset
    for key, value in SAMPLING.items():
        setattr(settings.docstring, {"maxTokens": "max_tokens", "repeatPenalty": "repeat_penalty"}
                .get(key, key), value)
    model = resolve_model_path(settings.model, cache_dir())
    source = "\n\n".join(p.read_text() for p in BENCH_FILES)
    fns = [f for f in docstring.list_functions(source) if not f.has_docstring]
    fns = [fns[len(fns) // 2], fns[-1]]
    options = {"model": {"preset": args.preset}, "docstring": SAMPLING}

    print(f"model {model.name}; {len(source)} chars of context", flush=True)
    raw = raw_bench(model, settings, source, fns, args.runs)
    print("raw:", raw, flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["git", "init", "-q", tmp], check=True)
        lsp = asyncio.run(lsp_bench(Path(tmp), source, fns, args.runs, options))
    print("lsp:", lsp, flush=True)

    rows = [
        ("decode tokens/s, LSP path ÷ raw llama_cpp.Llama", f"{lsp['rate']:.1f} / {raw['rate']:.1f} "
         f"= **{lsp['rate'] / raw['rate']:.2f}**", "≥ 0.95"),
        ("time to first token, 2nd action on the same file ÷ 1st (LSP)",
         f"{lsp['second_ttft'] * 1000:.0f} ms / {lsp['first_ttft'] * 1000:.0f} ms = "
         f"**{lsp['second_ttft'] / lsp['first_ttft']:.2f}**", "≤ 0.3"),
        ("same, raw llama_cpp.Llama (for reference)",
         f"{raw['second_ttft'] * 1000:.0f} ms / {raw['first_ttft'] * 1000:.0f} ms = "
         f"{raw['second_ttft'] / raw['first_ttft']:.2f}", ""),
        ("`initialize` round trip (model not loaded yet)", f"**{lsp['init_ms']:.1f} ms**", "≤ 300 ms"),
        ("`textDocument/codeAction` during a generation, p50 / p99",
         f"{lsp['lat_p50']:.1f} ms / **{lsp['lat_p99']:.1f} ms** (200 requests"
         f"{', generation running throughout' if lsp['generation_spanned_latency_test'] else ''})",
         "p99 ≤ 50 ms"),
        ("cancel → error answer / → worker idle", f"{lsp['cancel_answer_ms']:.1f} ms / "
         f"**{lsp['cancel_idle_ms']:.1f} ms**", "≤ 100 ms"),
        ("server RSS after model load", f"{lsp['rss_mb']:.0f} MB", ""),
    ]
    lines = [f"Model: `{model.name}` (preset `{args.preset}`), prompt: a docstring for a function "
             f"of the demo workspace's `models.py` + `pricing.py` ({len(source)} chars, the file "
             f"as context), greedy, "
             f"at most {SAMPLING['maxTokens']} tokens, "
             f"median of {args.runs} runs.", "",
             "| measure | result | target |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    text = "\n".join(lines)
    print("\n" + text)
    if not args.no_write:
        write_section("engine", f"## Engine: `bench/engine.py`\n\n{machine_description()}\n\n{text}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
