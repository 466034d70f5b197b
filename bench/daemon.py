"""One warm model for every window and the git hook (`model.shared`), measured.

One run, the bundled default model on this machine, in fresh cache dirs (no answer cache):

1. Three editor windows (`hearth serve`, real processes) each loading their own model
   (model.shared = false) vs three windows sharing the daemon: for each window, the
   time from `initialize` to its first docstring (the code action resolved) and, on the
   daemon, to that docstring's first token (from the daemon's job trace), the model
   loads, and the resident memory of the processes holding a model.
2. The same three windows on three projects with the index on (the default): each
   indexes, embeds and searches its project; the embedding model loads and the resident
   memory, each window embedding for itself vs all of them at the daemon.
3. The git hook (`hearth commit-msg --hook FILE`, a real process as git runs it) on a
   staged change, with the model asked first (commit.fromStructure = fallback, as
   with a model file over 500 MB: the bundled one's size lets Hearth's own subject
   come first and load no model): loading its own model (cold), starting the daemon
   (cold, shared), and with the daemon warm; and once as shipped, without a daemon.
4. A user's action while two other clients have background work at the daemon: two
   tools on its OpenAI API each ask for a long answer (priority background: one runs,
   one waits), then a window asks for a docstring. Its wait in the daemon's queue
   against one token's time (the background answers' decode time per token, from the
   trace).

Writes the `daemon` section of docs/benchmarks.md (bench/report.py). Not a test.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "tests"))

import httpx  # noqa: E402

from hearth_lsp.server.daemon_files import daemon_dir, pid_alive, read_state  # noqa: E402
from hearth_lsp.server.models import PRESETS  # noqa: E402
from hearth_lsp.server.settings import ModelSettings  # noqa: E402

from lsp_helpers import REAL_SERVER, actions_at, open_doc, start, stop, wait_model  # noqa: E402
from report import (  # noqa: E402
    NOISE,
    load_average,
    machine_description,
    quiet_moment,
    write_section,
)

DEMO = REPO / "examples" / "demo-workspace"
GIT_ENV = {"GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@localhost",
           "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@localhost"}


def mib(values: list[float]) -> str:
    return " / ".join(f"{v:.0f}" for v in values)


def rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def workspace(tmp: Path) -> Path:
    dest = tmp / "ws"
    tmp.mkdir(parents=True, exist_ok=True)
    shutil.copytree(DEMO, dest, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    env = {**os.environ, **GIT_ENV}
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "init"]):
        subprocess.run(cmd, cwd=dest, env=env, check=True, capture_output=True)
    return dest


def env_for(cache: Path, shared: bool, index: bool = False) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HEARTH_", "HEARTHD_"))}
    env.update(HEARTH_CACHE_DIR=str(cache), HEARTH_CACHE_ENABLED="false",
               HEARTH_INDEX_ENABLED="true" if index else "false",
               HEARTH_CONFIG_FILE=str(cache / "none.toml"),
               HEARTH_MODEL_SHARED="true" if shared else "false",
               HEARTH_COMMIT_HOOK_TIMEOUT_S="600")  # measure the message, not the limit
    return env


def daemon_info(cache: Path) -> dict:
    for path in daemon_dir(cache).glob("*.json"):
        state = read_state(path)
        if state is not None and pid_alive(state.pid):
            return httpx.get(f"{state.root}/hearth/info",
                             headers={"Authorization": f"Bearer {state.token}"}).json()
    return {}


def stop_daemons(cache: Path) -> None:
    for path in daemon_dir(cache).glob("*.json"):
        state = read_state(path)
        if state is not None and pid_alive(state.pid):
            os.kill(state.pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while pid_alive(state.pid) and time.monotonic() < deadline:
                time.sleep(0.05)


# Each window documents a function of its own file (0-based line of its `def`), so
# that the daemon's KV prefix cache does not answer one window from another.
WINDOWS = [("inventory/pricing.py", 9), ("inventory/models.py", 24),
           ("tests/test_pricing.py", 4)]


def first_tokens(cache: Path, began: list[float]) -> list[float | None]:
    """For each window (``began``: its initialize, wall clock), seconds until the first
    token of the first job it sent the daemon, read from the daemon's job trace: the
    time a user waits for the answer to start, the model's load included when this
    window's request waited for it."""
    jobs = []
    for path in daemon_dir(cache).glob("*.trace.jsonl"):
        for line in path.read_text().splitlines():
            job = json.loads(line)
            if job.get("first_token_s") is not None:
                received = job["ts"] - job["latency_s"]
                jobs.append((received, received + job["first_token_s"]))
    jobs.sort()
    out: list[float | None] = []
    for i, opened_at in enumerate(began):
        end = began[i + 1] if i + 1 < len(began) else float("inf")
        mine = [first for received, first in jobs if opened_at <= received < end]
        out.append(mine[0] - opened_at if mine else None)
    return out


async def window(ws: Path, cache: Path, shared: bool, file: str,
                 line: int) -> tuple[object, float, float, int, float]:
    """One editor window: seconds from initialize to its model ready, and to its first
    docstring (each window documents a function of its own file, so that the daemon's
    KV prefix cache does not answer the second from the first); and when it began
    (wall clock, for the daemon's trace)."""
    quiet_moment(max_wait_s=10)
    began = time.time()
    started = time.perf_counter()
    client, _, _ = await start(REAL_SERVER, ws, env=env_for(cache, shared),
                               init_options={"model": {"shared": shared}})
    status = await wait_model(client, timeout=600)
    assert status["model"] == "ready", status
    ready = time.perf_counter() - started
    uri = open_doc(client, ws / file)
    actions = await actions_at(client, uri, line, only=["refactor.rewrite.hearth.docstring"])
    await client.code_action_resolve_async(actions[0])  # type: ignore[attr-defined]
    took = time.perf_counter() - started
    pid = client._server.pid  # type: ignore[attr-defined]
    return client, ready, took, pid, began


async def windows(shared: bool) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        cache.mkdir()
        ws = workspace(Path(tmp))
        opened = []
        try:
            ready, took, pids, began = [], [], [], []
            for file, line in WINDOWS:  # one after the other, as a user opens them
                client, r, t, pid, b = await window(ws, cache, shared, file, line)
                opened.append(client)
                ready.append(r)
                took.append(t)
                pids.append(pid)
                began.append(b)
            info = daemon_info(cache) if shared else {}
            windows_mib = [rss_mib(p) for p in pids]
            daemon_mib = rss_mib(info["pid"]) if info else 0.0
            return {"ready_s": ready, "first_s": took,
                    "first_token_s": first_tokens(cache, began) if shared else [],
                    "rss_mib": sum(windows_mib) + daemon_mib,
                    "windows_mib": windows_mib, "daemon_mib": daemon_mib,
                    "loads": info.get("loads", len(WINDOWS)) if shared else len(WINDOWS)}
        finally:
            for client in opened:
                await stop(client)  # type: ignore[arg-type]
            stop_daemons(cache)


async def index_status(client) -> dict:
    from lsprotocol import types

    return (await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="hearth.status")))["index"]


async def indexed_windows(shared: bool) -> dict:
    """Three windows on three projects (copies of the demo), the index on (the default):
    each indexes and embeds its project and answers one search; then the resident memory
    of the windows and the daemon."""
    from lsprotocol import types

    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        cache.mkdir()
        opened, pids = [], []
        try:
            for i in range(len(WINDOWS)):
                ws = workspace(Path(tmp) / f"project{i}")
                quiet_moment(max_wait_s=10)
                client, _, _ = await start(REAL_SERVER, ws, env=env_for(cache, shared, True),
                                           init_options={"model": {"shared": shared}})
                opened.append(client)
                pids.append(client._server.pid)  # type: ignore[attr-defined]
                assert (await wait_model(client, timeout=600))["model"] == "ready"
                deadline = time.monotonic() + 600
                while True:
                    index = await index_status(client)
                    if index["state"] == "ready" and index.get("embedded") == index.get("chunks"):
                        break
                    assert time.monotonic() < deadline and not index["error"], index
                    await asyncio.sleep(0.2)
                found = await client.workspace_execute_command_async(types.ExecuteCommandParams(
                    command="hearth.search", arguments=[{"query": "convert a price to cents"}]))
                assert found, "the search found nothing"
            info = daemon_info(cache) if shared else {}
            windows_mib = [rss_mib(p) for p in pids]
            daemon_mib = rss_mib(info["pid"]) if info else 0.0
            return {"rss_mib": sum(windows_mib) + daemon_mib, "windows_mib": windows_mib,
                    "daemon_mib": daemon_mib,
                    "embedding_loads": info.get("embeddingLoads") if shared else len(WINDOWS)}
        finally:
            for client in opened:
                await stop(client)  # type: ignore[arg-type]
            stop_daemons(cache)


def hook_run(repo: Path, cache: Path, shared: bool, model_first: bool = True
             ) -> tuple[float, str]:
    message = repo / ".git" / "COMMIT_EDITMSG"
    message.write_text("\n# Please enter the commit message for your changes.\n")
    env = env_for(cache, shared)
    if model_first:  # Hearth's own subjects after the model's refused answers
        env.update(HEARTH_COMMIT_FROM_STRUCTURE="fallback", HEARTH_COMMIT_AUTHOR_WORDS="fallback")
    quiet_moment(max_wait_s=10)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "hearth_lsp.server", "commit-msg", "--hook",
                           str(message)], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=300)
    took = time.perf_counter() - started
    first = message.read_text().split("\n", 1)[0]
    if done.returncode != 0:
        first = f"(exit {done.returncode}: {done.stderr.strip()[-200:]})"
    return took, first


def hooks() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        cache.mkdir()
        repo = workspace(Path(tmp))
        path = repo / "inventory" / "pricing.py"
        path.write_text(path.read_text() + "\n\ndef to_euros(cents):\n    return cents / 100\n")
        subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
        try:
            cold, msg_cold = hook_run(repo, cache, shared=False)
            shipped, msg_shipped = hook_run(repo, cache, shared=False, model_first=False)
            cold_daemon, msg_start = hook_run(repo, cache, shared=True)
            warm, msg_warm = hook_run(repo, cache, shared=True)
            warm2, _ = hook_run(repo, cache, shared=True)
            loads = daemon_info(cache).get("loads")
        finally:
            stop_daemons(cache)
    return {"cold_s": cold, "cold_daemon_s": cold_daemon, "warm_s": min(warm, warm2),
            "loads": loads, "messages": [msg_cold, msg_start, msg_warm],
            "shipped_s": shipped, "shipped_message": msg_shipped}


BACKGROUND_PROMPT = "# A long module of helpers for prices and stock.\n\n"  # + the demo's code
BACKGROUND_TOKENS = 256


async def user_waits() -> dict:
    """Two tools' long background answers at the daemon, one running and one queued, then
    a window's docstring, three times (a function of each of WINDOWS' files): how long
    each of the window's jobs waited in the daemon's queue, against one token of the
    background answers (their decode seconds per token)."""
    import threading

    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        cache.mkdir()
        ws = workspace(Path(tmp))
        client = None
        asked: list[tuple[float, float]] = []
        try:
            client, _, _ = await start(REAL_SERVER, ws, env=env_for(cache, True),
                                       init_options={"model": {"shared": True}})
            assert (await wait_model(client, timeout=600))["model"] == "ready"
            state = next(s for s in (read_state(p) for p in daemon_dir(cache).glob("*.json"))
                         if s is not None)
            auth = {"Authorization": f"Bearer {state.token}"}
            prompt = BACKGROUND_PROMPT + (ws / "inventory" / "models.py").read_text() \
                + "\n\ndef "  # mid-module: a base model writes on

            def tool() -> None:  # another program on the machine, on the OpenAI API
                httpx.post(f"{state.root}/v1/completions", headers=auth, timeout=600, json={
                    "prompt": prompt, "max_tokens": BACKGROUND_TOKENS, "temperature": 0,
                    "priority": "background", "stream": False}).raise_for_status()

            for file, line in WINDOWS:
                tools = [threading.Thread(target=tool) for _ in range(2)]
                for thread in tools:
                    thread.start()
                deadline = time.monotonic() + 60
                while True:  # one decoding, the other queued behind it
                    info = daemon_info(cache)
                    if info.get("running") and info.get("queue") == 1:
                        break
                    assert time.monotonic() < deadline, info
                    await asyncio.sleep(0.05)
                await asyncio.sleep(0.5)  # past its prompt: decoding, token by token
                began = time.time()
                uri = open_doc(client, ws / file)
                actions = await actions_at(client, uri, line,
                                           only=["refactor.rewrite.hearth.docstring"])
                await client.code_action_resolve_async(actions[0])  # type: ignore[attr-defined]
                asked.append((began, time.time()))
                for thread in tools:
                    thread.join(600)
            deadline = time.monotonic() + 10  # a job's trace line follows its answer
            while True:
                jobs = [json.loads(line) for path in daemon_dir(cache).glob("*.trace.jsonl")
                        for line in path.read_text().splitlines()]
                if sum(j["priority"] == "background" for j in jobs) >= 2 * len(WINDOWS) \
                        or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.05)
        finally:
            if client is not None:
                await stop(client)  # type: ignore[arg-type]
            stop_daemons(cache)
    background = [j for j in jobs if j["priority"] == "background"]

    def received(job: dict) -> float:
        return job["ts"] - job["latency_s"]

    mine = [j for j in jobs if j["priority"] == "user"
            and any(a <= received(j) <= b for a, b in asked)]
    # Decode seconds per token of the background answers' last runs: their generation
    # less their first token (the trace's first token counts from the request).
    per_token = [(j["generate_s"] - (j["first_token_s"] - (j["latency_s"] - j["generate_s"])))
                 / (j["tokens_out"] - 1) for j in background if j["tokens_out"] > 1]
    # Each of the window's jobs arrived while a background answer was under way.
    overlapped = sum(any(received(b) <= received(m) <= b["ts"] for b in background)
                     for m in mine)
    return {"waits_s": [j["queue_s"] for j in mine], "tasks": [j["task"] for j in mine],
            "token_s": statistics.median(per_token) if per_token else None,
            "background_tokens": [j["tokens_out"] for j in background],
            "restarts": sum(j.get("restarts", 0) for j in background),
            "overlapped": overlapped, "actions_s": [b - a for a, b in asked]}


def compile_bytecode() -> None:
    """Hearth's modules as bytecode, as pip leaves an installed package and as Python
    writes on a first import; where PYTHONDONTWRITEBYTECODE is set (here) nothing writes
    it, and every process measured would compile ~100 ms of sources first."""
    import compileall

    for folder in ("server", "indexer"):
        compileall.compile_dir(REPO / folder, quiet=1)


def main() -> int:
    compile_bytecode()
    load_before = load_average()
    separate = asyncio.run(windows(shared=False))
    shared = asyncio.run(windows(shared=True))
    indexed = {"separate": asyncio.run(indexed_windows(shared=False)),
               "shared": asyncio.run(indexed_windows(shared=True))}
    skip_hook = "--no-hook" in sys.argv  # the hook runs whole commit-message tasks: slow
    hook = None if skip_hook else hooks()
    waits = asyncio.run(user_waits())
    print(json.dumps({"separate": separate, "shared": shared, "indexed": indexed,
                      "hook": hook, "waits": waits}, indent=2), file=sys.stderr)
    n = len(WINDOWS)
    rows = ["| | each window loads its own model | one shared daemon |", "|---|---:|---:|"]
    for i, name in enumerate(["first", "second", "third"][:n]):
        bold = "**" if i else ""
        note = " (starts the daemon)" if i == 0 else ""
        rows.append(f"| {bold}{name} window{bold}: initialize → model ready | "
                    f"{separate['ready_s'][i]:.2f} s | {bold}{shared['ready_s'][i]:.2f} s{bold}"
                    f"{note} |")
        ratio = (f" ({shared['first_s'][i] / shared['first_s'][0]:.2f}× the first window's)"
                 if i else "")
        rows.append(f"| {bold}{name} window{bold}: initialize → its first docstring | "
                    f"{separate['first_s'][i]:.2f} s | {bold}{shared['first_s'][i]:.2f} s{bold}"
                    f"{ratio} |")
        ttft = shared["first_token_s"]
        if ttft[i] is not None:
            ratio = (f" ({ttft[i] / ttft[0]:.2f}× the first window's)"
                     if i and ttft[0] else "")
            rows.append(f"| {bold}{name} window{bold}: initialize → its first docstring's "
                        f"first token | (not traced) | {bold}{ttft[i]:.2f} s{bold}{ratio} |")
    rows += [
        f"| model loads for {n} windows | {separate['loads']} | {shared['loads']} |",
        f"| resident memory, {n} windows (+ the daemon) | {separate['rss_mib']:.0f} MiB "
        f"({mib(separate['windows_mib'])}) | {shared['rss_mib']:.0f} MiB "
        f"({shared['rss_mib'] / separate['rss_mib']:.2f}×; the daemon "
        f"{shared['daemon_mib']:.0f}, windows {mib(shared['windows_mib'])}) |",
    ]
    apart, one = indexed["separate"], indexed["shared"]
    rows += [
        f"| embedding model loads, {n} windows on {n} projects with the index on "
        f"(the default) | {apart['embedding_loads']} | {one['embedding_loads']} |",
        f"| resident memory, the same (each project indexed, embedded, searched once) | "
        f"{apart['rss_mib']:.0f} MiB ({mib(apart['windows_mib'])}) | "
        f"{one['rss_mib']:.0f} MiB ({one['rss_mib'] / apart['rss_mib']:.2f}×; the daemon "
        f"{one['daemon_mib']:.0f}, windows {mib(one['windows_mib'])}) |",
    ]
    table = "\n".join(rows)
    hooks_table = "The hook was not measured in this run (`--no-hook`)." if hook is None \
        else "\n".join([
        "| `hearth commit-msg --hook` (a real process, as git runs it), the model asked first "
        "(`commit.fromStructure` = `fallback`, as with a model file over 500 MB) "
        "| time to the message |",
        "|---|---:|",
        f"| cold: loads its own model (`model.shared = false`) | {hook['cold_s']:.2f} s |",
        f"| cold daemon: starts it, waits for its load | {hook['cold_daemon_s']:.2f} s |",
        f"| **warm daemon** | **{hook['warm_s']:.2f} s** "
        f"({hook['warm_s'] / hook['cold_s']:.2f}× cold) |",
        f"| as shipped with the bundled model (`commit.fromStructure` = `auto`: Hearth's own "
        f"subject first, no model loaded; no daemon), \"{hook['shipped_message']}\" | "
        f"{hook['shipped_s']:.2f} s ({hook['shipped_s'] / hook['cold_s']:.2f}× cold) |",
    ])
    token_ms = waits["token_s"] * 1000
    worst = max(waits["waits_s"])
    waits_table = "\n".join([
        "| a window's docstring while two tools' background answers are at the daemon "
        "(one decoding, one queued), 3 times | |",
        "|---|---:|",
        "| each of the window's jobs: its wait in the daemon's queue | "
        + " / ".join(f"{w * 1000:.1f} ms" for w in waits["waits_s"])
        + f" ({len(waits['waits_s'])} jobs: {', '.join(dict.fromkeys(waits['tasks']))}; "
        f"{waits['overlapped']} of them arrived while a background answer ran) |",
        f"| one token of the background answers (decode, median of "
        f"{len(waits['background_tokens'])} answers of {BACKGROUND_TOKENS} tokens) | "
        f"{token_ms:.1f} ms |",
        f"| **the longest wait ÷ one token** | **{worst * 1000 / token_ms:.2f}** "
        f"(median {statistics.median(waits['waits_s']) * 1000 / token_ms:.2f}) |",
        f"| background answers stopped for them at their next token and run again | "
        f"{waits['restarts']} |",
    ])
    loads_line = "" if hook is None else (f"The daemon loaded the model {hook['loads']} "
                                          "time(s) for the three hook runs that used it.\n")
    preset = ModelSettings().preset
    body = (f"## Shared model: `bench/daemon.py`\n\n"
            f"{machine_description(load_before=load_before)}\n\n{NOISE}\n\n"
            f"The bundled default model (`{preset}`: "
            f"{PRESETS[preset].description}; it loads in about a second), "
            "so the figures show "
            "the floor of what the daemon saves: with a 7B model the load it spares each "
            "window and each commit is tens of seconds and gigabytes. Times include "
            "Python's start-up and Hearth's imports in every process, from bytecode as an "
            "installed package has it (this machine sets PYTHONDONTWRITEBYTECODE, under which "
            "every process would compile Hearth's modules anew: the script compiles them "
            "first). Memory is each "
            "process's resident set once every window has written its docstring; a window "
            "on the daemon still holds the interpreter, pygls and lsprotocol: about 40 MiB "
            "before any of Hearth's code is imported. The first rows have the index off, "
            "so that they measure the model alone; the last two have it on, as it is by "
            "default: each window then embeds its project, with torch and the embedding "
            "model in every window, or in the daemon once (windows on the daemon still hold "
            "their own vector store: numpy and chromadb).\n\n"
            f"{table}\n\n{hooks_table}\n\n{loads_line}\n"
            "Before a user's job runs, a running review on save, hook or background answer "
            "stops at its next token (llama.cpp checks between tokens) and runs again "
            "after it; the wait is the time from the job's arrival in the daemon's queue to "
            "its start (the trace's `queue_s`).\n\n"
            f"{waits_table}\n")
    write_section("daemon", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
