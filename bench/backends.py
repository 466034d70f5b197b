"""Model-server benchmark: Hearth's remote path against a plain streaming client, in one run.

    .venv/bin/python bench/backends.py [--runs 5] [--no-write]

Starts a real OpenAI-compatible server (llama-cpp-python's `python -m llama_cpp.server`)
on the bundled SmolLM2 on 127.0.0.1 and measures, in one run:

- decode speed through Hearth's remote engine (the worker's thread, the engine's own
  asyncio loop, the stop scanner) ÷ a plain httpx streaming client on the same prompt,
  same sampling (greedy, same max_tokens), interleaved; both count the server's
  streamed chunks and time from the first to the last one;
- cancel: from Hearth cancelling a long generation to the server being free again,
  read as the extra first-token latency of a one-token request sent at the moment of
  the cancel, over the same request's first-token latency on an idle server;
- failover: how long TaskRun.ready() takes to pick the local model when the first
  backend of the route is a dead port (the first request, with the default retries and
  backoff), and once that backend has failed (skipped without a new attempt);
- redaction: the cost of redacting a ~4k-token prompt (real code from installed
  packages with planted secrets and 20 .env values), p50 / p95.

Prints the figures and rewrites the "backends" section of docs/benchmarks.md.
Not a test: nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

from hearth_lsp.indexer.secrets import Redactor  # noqa: E402
from hearth_lsp.server.engine.fake import FakeEngine  # noqa: E402
from hearth_lsp.server.engine.remote import RemoteEngine  # noqa: E402
from hearth_lsp.server.engine.router import Backends  # noqa: E402
from hearth_lsp.server.engine.worker import GenerationWorker, wait_for  # noqa: E402
from hearth_lsp.server.models import resolve_model_path  # noqa: E402
from hearth_lsp.server.settings import BackendSettings, SamplingSettings, Settings, cache_dir  # noqa: E402
from hearth_lsp.server.tasks.runner import TaskRun  # noqa: E402

from report import NOISE, load_average, machine_description, write_section  # noqa: E402

PROMPT = ("Write a long, detailed explanation of how a hash table works, with its "
          "collision strategies, resizing and complexity:\n\n")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: Path, port: int, log: Path) -> subprocess.Popen:
    out = log.open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--model_alias",
         "smollm2", "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048",
         "--n_threads", "2", "--interrupt_requests", "false", "--verbose", "false"],
        stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"llama_cpp.server exited:\n{log.read_text()[-2000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1).is_success:
                return server
        time.sleep(0.2)
    server.kill()
    raise SystemExit("llama_cpp.server did not start in 120 s")


def sampling(max_tokens: int) -> SamplingSettings:
    return SamplingSettings(temperature=0.0, max_tokens=max_tokens, top_k=0, top_p=1.0,
                            min_p=0.0, repeat_penalty=1.0)


def plain_stream(url: str, body: dict) -> tuple[int, float, float]:
    """(chunks, first chunk s, last chunk s) with a plain streaming client, sending the
    very body Hearth sends (so both ask for the same tokens)."""
    started = time.perf_counter()
    chunks, first, last = 0, 0.0, 0.0
    with httpx.stream("POST", f"{url}/completions", json=body, timeout=300) as response:
        for line in response.iter_lines():
            if not line.startswith("data:") or line.strip() == "data: [DONE]":
                continue
            event = json.loads(line[5:])
            if event.get("choices") and event["choices"][0].get("text"):
                chunks += 1
                now = time.perf_counter() - started
                first = first or now
                last = now
    return chunks, first, last


def hearth_stream(engine: RemoteEngine, max_tokens: int) -> tuple[int, float, float]:
    """The same through Hearth's remote engine (no stop strings: pieces are chunks)."""
    started = time.perf_counter()
    times: list[float] = []
    engine.generate(PROMPT, sampling(max_tokens), [], lambda: False,
                    lambda _piece: times.append(time.perf_counter() - started))
    return len(times), times[0] if times else 0.0, times[-1] if times else 0.0


def rate(chunks: int, first: float, last: float) -> float:
    return (chunks - 1) / (last - first) if chunks > 1 and last > first else 0.0


def first_token_s(url: str) -> float:
    started = time.perf_counter()
    body = {"model": "smollm2", "prompt": "def add(a, b):", "max_tokens": 1,
            "temperature": 0.0, "stream": True}
    with httpx.stream("POST", f"{url}/completions", json=body, timeout=300) as response:
        for line in response.iter_lines():
            if line.startswith("data:") and '"text"' in line:
                return time.perf_counter() - started
    return time.perf_counter() - started


def cancel_delay(engine: RemoteEngine, url: str) -> float:
    """Extra first-token latency of a request sent the moment Hearth cancels a long one."""
    sampling = SamplingSettings(temperature=0.0, max_tokens=400)
    pieces: list[str] = []
    stop = threading.Event()
    done = threading.Event()

    def run() -> None:
        engine.generate(PROMPT, sampling, [], stop.is_set, pieces.append)
        done.set()

    threading.Thread(target=run, daemon=True).start()
    while len(pieces) < 10:
        time.sleep(0.005)
    stop.set()
    return first_token_s(url)


async def failover(dead_url: str, settings: Settings) -> tuple[float, float]:
    """(first pick of the local model with the route's first backend dead, the next pick)."""
    worker = GenerationWorker()
    await wait_for(worker.load(lambda: FakeEngine.scripted([])))
    settings.backends["team"] = BackendSettings(name="team", url=dead_url)
    settings.routes.docs = ["team", "local"]
    backends = Backends(worker)
    try:
        times = []
        for _ in range(2):
            run = TaskRun(worker, route=backends.route(settings, "docs"))
            started = time.perf_counter()
            await run.ready()
            times.append(time.perf_counter() - started)
            assert run.backend == "local"
        return times[0], times[1]
    finally:
        backends.shutdown()
        worker.shutdown()


def redaction_times(runs: int) -> tuple[float, float, int]:
    """p50 / p95 seconds to redact a ~4k-token prompt of real code, and its characters."""
    import email.message
    import json as json_mod

    text = "".join(inspect.getsource(m) for m in (json_mod.decoder, json_mod.encoder,
                                                   email.message))[:16000]
    secrets = [f"s3cr3t-value-{i:02d}-{'x' * (8 + i)}" for i in range(20)]
    lines = text.splitlines()
    for i, value in enumerate(secrets[:5]):  # planted in the code, as they are found
        lines.insert(40 * (i + 1), f"API_TOKEN_{i} = '{value}'")
    lines.insert(10, "aws_key = 'AKIAABCDEFGHIJKLMNOP'")
    lines.insert(20, "db = 'postgres://app:hunter2hunter2@db.internal/app'")
    prompt = "\n".join(lines)
    redactor = Redactor(set(secrets))
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        redactor.redact(prompt)
        times.append(time.perf_counter() - started)
    times.sort()
    return statistics.median(times), times[int(0.95 * (len(times) - 1))], len(prompt)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=160)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    load_before = load_average()
    model = resolve_model_path(Settings().model, cache_dir())
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(model, port, Path(tmp) / "server.log")
        engine = RemoteEngine(BackendSettings(name="bench", url=url))
        try:
            info = engine.connect()
            _, body = engine._body(PROMPT, None, sampling(args.tokens), [], None, None)
            plain_stream(url, {**body, "max_tokens": 8})  # warm both paths
            hearth_stream(engine, 8)
            plain, hearth = [], []
            cpu = {"plain": 0.0, "hearth": 0.0}  # this process's CPU seconds, per side

            def timed(side: str, call) -> None:
                before = time.process_time()
                call()
                cpu[side] += time.process_time() - before

            for n in range(args.runs):  # interleaved, alternating who goes first
                pair = [lambda: timed("plain", lambda: plain.append(plain_stream(url, body))),
                        lambda: timed("hearth", lambda: hearth.append(
                            hearth_stream(engine, args.tokens)))]
                for step in (pair if n % 2 == 0 else pair[::-1]):
                    step()
            plain_rate = statistics.median(rate(*r) for r in plain)
            hearth_rate = statistics.median(rate(*r) for r in hearth)
            idle = statistics.median(first_token_s(url) for _ in range(args.runs))
            delays = [cancel_delay(engine, url) - idle for _ in range(args.runs)]
        finally:
            engine.close()
            server.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.wait(10)
    first_pick, next_pick = asyncio.run(failover(f"http://127.0.0.1:{free_port()}/v1",
                                                 Settings()))
    r50, r95, chars = redaction_times(200)
    chunks = {"plain": sum(r[0] for r in plain) or 1, "hearth": sum(r[0] for r in hearth) or 1}
    rows = [
        ("client CPU per streamed chunk, Hearth / plain (the client shares the machine's "
         "2 cores with the server here)",
         f"{cpu['hearth'] / chunks['hearth'] * 1000:.2f} ms / "
         f"{cpu['plain'] / chunks['plain'] * 1000:.2f} ms", ""),
        ("decode through Hearth's remote engine ÷ a plain streaming client (median of "
         f"{args.runs}, {args.tokens} tokens, greedy)",
         f"{hearth_rate:.1f} / {plain_rate:.1f} chunks/s = **{hearth_rate / plain_rate:.2f}**",
         "≥ 0.95"),
        ("cancel → the server free again (extra first-token latency of the next request, "
         f"median / worst of {args.runs})",
         f"**{statistics.median(delays) * 1000:.0f} ms** / {max(delays) * 1000:.0f} ms "
         f"(idle first token {idle * 1000:.0f} ms)", "≤ 200 ms"),
        ("failover to the local model, first backend a dead port: first request (a refused "
         "connection is not retried)", f"**{first_pick * 1000:.0f} ms**", "≤ 1 s"),
        ("… once that backend has failed (skipped until breakerResetS)",
         f"**{next_pick * 1000:.2f} ms**", "≤ 50 ms"),
        (f"redaction of a ~4k-token prompt ({chars} characters of real code, 20 .env values, "
         "planted keys), p50 / p95 of 200", f"{r50 * 1000:.2f} ms / **{r95 * 1000:.2f} ms**",
         "p95 ≤ 5 ms"),
    ]
    lines = [f"Server: `python -m llama_cpp.server` (llama-cpp-python) on 127.0.0.1, "
             f"{info.describe()}; the model: {model.name}, 2 threads. Both clients read the "
             "same server, one after the other: a ratio above 1 is the machine's noise, not "
             "Hearth being faster than the server.", "",
             "| measure | result | target |", "|---|---|---|",
             *[f"| {a} | {b} | {c} |" for a, b, c in rows]]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        write_section("backends", f"## Model servers: `bench/backends.py`\n\n"
                      f"{machine_description(load_before=load_before)}\n\n{NOISE}\n\n{text}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
