"""The daemon listens beyond this machine only when asked to explicitly (--allow-remote)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from hearth_lsp.server.daemon import Daemon, RemoteBindRefused, is_loopback, read_state
from hearth_lsp.server.engine.fake import FakeEngine
from hearth_lsp.server.settings import ModelSettings

HERE = Path(__file__).resolve().parent


def hearth(cache: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HEARTH_CACHE_DIR": str(cache),
           "HEARTHD_SCRIPT": str(HERE / "fake_daemon.py")}
    return subprocess.run([sys.executable, "-m", "hearth_lsp.server", "daemon", *args],
                          env=env, capture_output=True, text=True, timeout=60, cwd=cache)


def test_loopback_addresses():
    for host in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "::", "192.168.1.10", "10.0.0.1", "example.org", ""):
        assert not is_loopback(host), host


def test_hearth_daemon_refuses_a_wildcard_bind_without_allow_remote(tmp_path):
    done = hearth(tmp_path, "--host", "0.0.0.0", "--idle-s", "1")
    assert done.returncode == 2, done.stderr
    assert "refused" in done.stderr and "0.0.0.0 is not a loopback address" in done.stderr
    assert "--allow-remote" in done.stderr
    assert done.stdout == ""
    assert not list((tmp_path / "daemon").glob("*.json"))  # nothing started


def test_the_daemon_itself_refuses_a_non_loopback_host(tmp_path):
    with pytest.raises(RemoteBindRefused, match="--allow-remote"):
        Daemon(ModelSettings(), tmp_path, lambda _m, _c: FakeEngine(), host="0.0.0.0")


def test_allow_remote_binds_and_clients_here_use_loopback(tmp_path):
    daemon = Daemon(ModelSettings(), tmp_path, lambda _m, _c: FakeEngine(), host="0.0.0.0",
                    allow_remote=True)
    daemon.start()
    try:
        assert daemon.httpd.server_address[0] == "0.0.0.0"
        state = read_state(daemon.files.state)
        assert state is not None and state.url.startswith("http://127.0.0.1:")
        response = httpx.get(f"{state.root}/health", trust_env=False)
        assert response.status_code == 401  # the token is still required
    finally:
        daemon.stop()


def test_a_port_that_cannot_be_had_is_a_message_not_a_traceback(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for given, why in ((str(port), "Address already in use"), ("70000", "0-65535")):
            done = hearth(tmp_path, "--port", given, "--idle-s", "1")
            assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
            assert f"cannot listen on 127.0.0.1:{given}: " in done.stderr and why in done.stderr


def test_a_state_file_the_daemon_did_not_write_is_stale(tmp_path):
    import json

    good = {"url": "http://127.0.0.1:8080/v1", "token": "t", "pid": os.getpid(), "key": "k"}
    path = tmp_path / "state.json"
    for change in ({}, {"url": "http://[::1]:8080/v1"}):
        path.write_text(json.dumps({**good, **change}))
        assert read_state(path) is not None, change
    for change in ({"pid": 2**40}, {"pid": 0}, {"url": "http://127.0.0.1:99999/v1"},
                   {"url": "ftp://127.0.0.1:8080"}, {"url": "http://127.0.0.1/v1"}):
        path.write_text(json.dumps({**good, **change}))
        assert read_state(path) is None, change
    daemon_dir = tmp_path / "daemon"
    daemon_dir.mkdir()
    (daemon_dir / "x.json").write_text(json.dumps({**good, "pid": 2**40}))
    for flag in ("--status", "--stop"):
        done = hearth(tmp_path, flag)
        assert "Traceback" not in done.stderr, done.stderr
