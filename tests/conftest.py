"""Shared fixtures. Real-model tests are marked `slow`; they still run in `make test`."""

from __future__ import annotations

import os
import shutil
import subprocess
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

    return resolve_model_path(ModelSettings(), shared_cache())
