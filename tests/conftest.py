"""Shared fixtures. Real-model tests are marked `slow`; they still run in `make test`."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "examples" / "demo-workspace"
# Read once, when pytest loads this file: the isolation below removes every HEARTH_*
# variable before a test runs, and the real-editor tests must still see it
# (tests/editors.py's `require`): in CI a missing editor is a failure, not a skip.
REQUIRE_EDITORS = os.environ.get("HEARTH_REQUIRE_EDITORS") == "1"


def isolated_environ(home: Path) -> dict[str, str]:
    """os.environ without the developer's HEARTH_* variables, config file and cache.

    Scripted engines answer the same prompts differently from test to test: the
    answer cache is off unless a test turns it on.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEARTH_")}
    env.update(HEARTH_CONFIG_FILE=str(home / "config.toml"), HEARTH_CACHE_DIR=str(shared_cache()),
               HEARTH_CACHE_ENABLED="false")
    return env


@pytest.fixture(autouse=True)
def _isolated_config(tmp_path_factory, monkeypatch):
    """No test reads the developer's own config file, cache or HEARTH_* variables."""
    wanted = isolated_environ(tmp_path_factory.getbasetemp() / "hearth-home")
    for name in list(os.environ):
        if name not in wanted:
            monkeypatch.delenv(name)
    for name, value in wanted.items():
        monkeypatch.setenv(name, value)


def shared_cache() -> Path:
    # Shared across tests so the Gemma preset is assembled once per machine.
    path = REPO / ".hearth-cache"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture
def demo_repo(tmp_path) -> Path:
    """A git copy of the demo workspace."""
    dest = tmp_path / "demo-workspace"
    shutil.copytree(DEMO, dest, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache", ".benchmarks"))
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@localhost",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@localhost", "PATH": "/usr/bin:/bin"}
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "init"]):
        subprocess.run(cmd, cwd=dest, env=env, check=True, capture_output=True)
    return dest


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    from hearth_lsp.server.models import resolve_model_path
    from hearth_lsp.server.settings import ModelSettings

    return resolve_model_path(ModelSettings(preset="smollm2"), shared_cache())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def llama_server(smollm2_path, tmp_path_factory) -> Iterator[tuple[str, int]]:
    """llama-cpp-python's OpenAI-compatible server on SmolLM2 (one per test session);
    --interrupt_requests false so that a waiting request does not end the running one:
    only the client's hang-up can."""
    import httpx

    port = free_port()
    log_path = tmp_path_factory.mktemp("llama-server") / "server.log"
    with open(log_path, "wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(smollm2_path),
             "--model_alias", "smollm2", "--host", "127.0.0.1", "--port", str(port),
             "--n_ctx", "2048", "--n_threads", "2", "--interrupt_requests", "false",
             "--verbose", "false"], stdout=out, stderr=subprocess.STDOUT)
    try:
        def up() -> bool:
            if server.poll() is not None:
                return True
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1).is_success
            return False

        deadline = time.monotonic() + 90
        while not up() and time.monotonic() < deadline:
            time.sleep(0.1)
        if not up() or server.poll() is not None:
            pytest.fail(f"llama_cpp.server did not start:\n{log_path.read_text()[-3000:]}")
        yield "127.0.0.1", port
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


