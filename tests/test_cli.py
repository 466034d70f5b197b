"""The `hearth` command line, run as a user runs it."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pygls.lsp.client import LanguageClient

from hearth_lsp.server import cli
from hearth_lsp.server.settings import markdown_reference
from hearth_lsp.server.trust import set_trusted

REPO = Path(__file__).resolve().parent.parent
HEARTH = [sys.executable, "-m", "hearth_lsp.server"]


def hearth(*args, env=None, cwd=None, timeout=600):
    return subprocess.run([*HEARTH, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, cwd=cwd)


def test_config_shows_values_and_their_layers(tmp_path):
    (tmp_path / ".hearth.toml").write_text("[model]\ncontext_length = 2048\n")
    out = hearth("config", "--root", str(tmp_path), env={"HEARTH_DOCSTRING_MAX_TOKENS": "99"})
    assert out.returncode == 0
    assert re.search(r"^model\.contextLength +2048 +\(\.hearth\.toml\)$", out.stdout, re.M)
    data = json.loads(hearth("config", "--json", "--root", str(tmp_path),
                             env={"HEARTH_DOCSTRING_MAX_TOKENS": "99"}).stdout)
    rows = {r["key"]: r for r in data["settings"]}
    assert rows["docstring.maxTokens"] == {"key": "docstring.maxTokens", "value": 99,
                                           "source": "environment"}
    bad = hearth("config", env={"HEARTH_MODEL_THREADS": "lots"})
    assert "problem: environment: model.threads: expected an integer" in bad.stderr


def test_config_shows_backends_field_by_field(tmp_path):
    (tmp_path / ".hearth.toml").write_text('[backends.team]\nurl = "http://127.0.0.1:8080/v1"\n')
    set_trusted(tmp_path, True)
    rows = {r["key"]: r for r in json.loads(hearth("config", "--json", "--root",
                                                   str(tmp_path)).stdout)["settings"]}
    assert rows["backends.team.url"] == {"key": "backends.team.url", "source": ".hearth.toml",
                                         "value": "http://127.0.0.1:8080/v1"}
    assert rows["backends.team.retries"]["source"] == "default"


def test_configuration_reference_in_docs_is_current():
    assert (REPO / "docs" / "configuration.md").read_text() == markdown_reference(), \
        "regenerate: hearth config --reference > docs/configuration.md"


def test_doctor_reports_the_model_and_exits_zero():
    out = hearth("doctor", "--no-probe")
    assert out.returncode == 0, out.stdout + out.stderr
    # the bundled default: a base model, prompted completion-style
    assert "ok    model: Gemma 3 270m" in out.stdout and "no chat template" in out.stdout
    assert "llama-cpp-python: " in out.stdout and "git: git version" in out.stdout


def test_doctor_fails_with_a_named_path_for_a_broken_model(tmp_path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF")
    out = hearth("doctor", "--no-probe", env={"HEARTH_MODEL_PATH": str(bad)})
    assert out.returncode == 1
    assert f"FAIL  model: {bad}: file is truncated" in out.stdout


@pytest.mark.slow
def test_doctor_probe_generates_in_a_child_process():
    out = hearth("doctor")
    assert out.returncode == 0, out.stdout
    assert "ok    generation: " in out.stdout and "tokens in" in out.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_serve_over_tcp_on_loopback():
    port = free_port()
    proc = subprocess.Popen([*HEARTH, "serve", "--tcp", f"127.0.0.1:{port}"],
                            stderr=subprocess.PIPE, text=True)
    try:
        client = await connect(proc, port)
        result = await client.initialize_async(types.InitializeParams(
            capabilities=types.ClientCapabilities()))
        assert result.server_info.name == "hearth"
        status = await client.workspace_execute_command_async(
            types.ExecuteCommandParams(command="hearth.status"))
        assert status["model"] in ("empty", "loading", "ready")
        await client.shutdown_async(None)
        client.exit(None)
        await client.stop()
    finally:
        proc.kill()
        proc.wait()


def test_serve_rejects_a_bad_tcp_address():
    out = hearth("serve", "--tcp", "localhost:http")
    assert out.returncode == 2 and "expected HOST:PORT" in out.stderr


@pytest.mark.parametrize("host", ["0.0.0.0", "[::]", "192.0.2.1", "example.com"])
def test_serve_refuses_a_non_loopback_address_without_allow_remote(host):
    """Whoever connects can make Hearth run code (generated tests): loopback only,
    unless asked for. Before the fix 0.0.0.0 was served at once (the wait ran out)."""
    try:
        out = hearth("serve", "--tcp", f"{host}:{free_port()}", timeout=60)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"hearth serve --tcp {host}:... is serving") from exc
    assert out.returncode == 2, out.stderr
    assert "not a loopback address" in out.stderr and "--allow-remote" in out.stderr
    assert out.stdout == ""


def test_loopback_addresses():
    from hearth_lsp.server.cli import _tcp_address, is_loopback

    assert [h for h in ("127.0.0.1", "127.8.9.1", "::1", "localhost", "LOCALHOST")
            if not is_loopback(h)] == []
    assert [h for h in ("0.0.0.0", "::", "10.0.0.1", "::ffff:10.0.0.1", "example.com",
                        "localhost.example.com", "") if is_loopback(h)] == []
    assert _tcp_address("[::1]:2087") == ("::1", 2087)
    assert _tcp_address("2087") == ("127.0.0.1", 2087)


async def connect(proc, port: int) -> LanguageClient:
    client = LanguageClient("t", "0")
    for _ in range(200):
        try:
            await client.start_tcp("127.0.0.1", port)
            return client
        except OSError:
            assert proc.poll() is None, proc.communicate()[1]
            await asyncio.sleep(0.05)
    raise AssertionError("the server never listened")


def test_allow_remote_needs_a_token_file():
    out = hearth("serve", "--tcp", f"0.0.0.0:{free_port()}", "--allow-remote", timeout=60)
    assert out.returncode == 2 and "--allow-remote needs --token-file" in out.stderr


async def test_a_client_without_the_token_is_refused(tmp_path):
    token_file = tmp_path / "token"
    port = free_port()
    proc = subprocess.Popen([*HEARTH, "serve", "--tcp", f"127.0.0.1:{port}", "--token-file",
                             str(token_file)], stderr=subprocess.PIPE, text=True)
    try:
        client = await connect(proc, port)
        for options in (None, {"token": "guessed"}):
            with pytest.raises(JsonRpcException, match="needs a token"):
                await client.initialize_async(types.InitializeParams(
                    capabilities=types.ClientCapabilities(), initialization_options=options))
        with pytest.raises(JsonRpcException, match="needs a token"):
            await client.workspace_execute_command_async(
                types.ExecuteCommandParams(command="hearth.status"))
        token = token_file.read_text().strip()
        assert len(token) >= 32 and (token_file.stat().st_mode & 0o777) == 0o600
        result = await client.initialize_async(types.InitializeParams(
            capabilities=types.ClientCapabilities(), initialization_options={"token": token}))
        assert result.server_info.name == "hearth"
        status = await client.workspace_execute_command_async(
            types.ExecuteCommandParams(command="hearth.status"))
        assert status["model"] in ("empty", "loading", "ready", "error")
        await client.shutdown_async(None)
        client.exit(None)
        await client.stop()
    finally:
        proc.kill()
        proc.wait()


async def test_serve_with_allow_remote_listens_everywhere_and_warns(tmp_path):
    port = free_port()
    token_file = tmp_path / "token"
    token_file.write_text("a-token-the-user-chose-0123456789\n")
    proc = subprocess.Popen([*HEARTH, "serve", "--tcp", f"0.0.0.0:{port}", "--allow-remote",
                             "--token-file", str(token_file)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        client = await connect(proc, port)
        result = await client.initialize_async(types.InitializeParams(
            capabilities=types.ClientCapabilities(),
            initialization_options={"token": "a-token-the-user-chose-0123456789"}))
        assert result.server_info.name == "hearth"
        await client.shutdown_async(None)
        client.exit(None)
        await client.stop()
    finally:
        proc.kill()
        stdout, stderr = proc.communicate()
    assert f"listening on 0.0.0.0:{port}, not a loopback address (--allow-remote)" in stderr
    assert "can run code on this machine" in stderr
    assert stdout == ""


@pytest.mark.slow
def test_demo_runs_all_four_tasks_through_the_lsp(tmp_path):
    examples = {p: p.read_bytes() for p in (REPO / "examples").rglob("*.py")}
    out = hearth("demo", cwd=REPO, env={"TMPDIR": str(tmp_path)})
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "initialize answered in" in out.stdout
    assert "Hearth: Generate docstring" in out.stdout
    # Each task ran and either produced a validated result or said why not.
    for section, done in [("== review: inventory/models.py", r"reviewed .* findings|refused: "),
                          ("== tests: inventory/pricing.py", r"passing \(inserted|refused: "),
                          ("== commit message", r"   \| \w+|refused: ")]:
        assert section in out.stdout
        assert re.search(done, out.stdout.split(section, 1)[1]), section
    assert re.search(r"docstrings written through the LSP|no docstring passed validation",
                     out.stdout)
    # The demo worked on a copy: the example workspace itself is untouched.
    assert {p: p.read_bytes() for p in (REPO / "examples").rglob("*.py")} == examples


def test_a_command_imports_without_collections_and_leaves_the_collector_on():
    # `hearth serve` and the hook import with the garbage collector off (faster starts);
    # it must be on again afterwards, or a server running for days would never collect.
    assert gc.isenabled()
    with cli._importing():
        assert not gc.isenabled()
    assert gc.isenabled()
    assert gc.get_freeze_count() > 0  # what was imported is kept out of collections
    gc.unfreeze()
