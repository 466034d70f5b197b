"""Cancellation end to end, with a scripted engine: every way a task is cancelled
must stop the work itself (the generation, the next generation, the sandbox's
processes), not only the answer to the request.

The server runs as a child process (tests/cancel_server.py: the scripted server
that also writes a line when each generation starts and ends). Each test waits
with a bound and fails when the cancel is lost: the scripted answers are long
enough (tens of seconds) that a generation nobody stopped is still running, or
ends "stop" instead of "cancelled".
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from pathlib import Path

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcException

from lsp_helpers import HERE, open_doc, start, stop, wait_model, wait_until

CANCEL_SERVER = [sys.executable, str(HERE / "cancel_server.py")]
PARSE_PRICE = 9  # the line of `def parse_price` in the demo's inventory/pricing.py


def generations(log: Path, event: str) -> list[dict]:
    if not log.exists():
        return []
    return [item for line in log.read_text().splitlines()
            if (item := json.loads(line))["event"] == event]


async def status(client) -> dict:
    return await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="hearth.status"))


async def wait_idle(client, timeout: float = 10) -> dict:
    """The worker runs nothing and has nothing queued, within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        now = await status(client)
        if now["running"] is None and now["pending"] == 0:
            return now
        assert time.monotonic() < deadline, f"the worker is still busy: {now}"
        await asyncio.sleep(0.02)


def task_progress(client, title: str) -> tuple[str, list] | None:
    """(token, reports) of the progress whose begin title starts with ``title``."""
    for token, reports in client.progress_reports.items():
        if reports and getattr(reports[0], "title", "").startswith(title):
            return str(token), reports
    return None


async def progress_token(client, title: str) -> str:
    await wait_until(lambda: task_progress(client, title) is not None, timeout=10)
    found = task_progress(client, title)
    assert found is not None
    return found[0]


async def progress_end(client, title: str, timeout: float = 10) -> str:
    """The end message of the task's progress (it must end within ``timeout``)."""
    def ended():
        found = task_progress(client, title)
        return found is not None and isinstance(found[1][-1], types.WorkDoneProgressEnd)

    await wait_until(ended, timeout=timeout)
    found = task_progress(client, title)
    assert found is not None
    return found[1][-1].message or ""


def docstring_request(client, uri: str, msg_id: str):
    return asyncio.ensure_future(client.protocol.send_request_async(
        types.WORKSPACE_EXECUTE_COMMAND, types.ExecuteCommandParams(
            command="hearth.generateDocstring", arguments=[{"uri": uri, "line": PARSE_PRICE}]),
        msg_id=msg_id))


@pytest.fixture
async def slow(demo_repo, tmp_path):
    """A model that writes 1000 tokens at 50 ms each (50 s) unless stopped."""
    log = tmp_path / "generations.jsonl"
    env = {"FAKE_ENGINE_DEFAULT": "word ", "FAKE_ENGINE_REPEAT": "1000",
           "FAKE_ENGINE_DELAY": "0.05", "FAKE_ENGINE_LOG": str(log)}
    client, _, _ = await start(CANCEL_SERVER, demo_repo, env=env,
                               init_options={"docstring": {"maxTokens": 2000}})
    await wait_model(client)
    uri = open_doc(client, demo_repo / "inventory" / "pricing.py")
    yield client, uri, log
    await stop(client)


async def assert_generation_cancelled(client, log: Path) -> None:
    await wait_idle(client)
    await wait_until(lambda: generations(log, "end"), timeout=10)
    [end] = generations(log, "end")
    assert end["finish"] == "cancelled" and end["tokens"] < 500, end
    assert "cancelled" in await progress_end(client, "Hearth: docstring")


async def test_cancel_request_for_a_command_stops_its_generation(slow):
    client, uri, log = slow
    pending = docstring_request(client, uri, "doc-1")
    await wait_until(lambda: generations(log, "start"), timeout=10)
    client.cancel_request(types.CancelParams(id="doc-1"))
    # pygls answers a cancelled command at once, whatever its task does...
    with pytest.raises(JsonRpcException, match="cancel"):
        await asyncio.wait_for(pending, 10)
    # ...so what matters is that the task's token reached the worker.
    await assert_generation_cancelled(client, log)


async def test_progress_cancel_for_a_command_stops_its_generation(slow):
    client, uri, log = slow
    pending = docstring_request(client, uri, "doc-2")
    token = await progress_token(client, "Hearth: docstring")
    await wait_until(lambda: generations(log, "start"), timeout=10)
    client.window_work_done_progress_cancel(types.WorkDoneProgressCancelParams(token=token))
    with pytest.raises(JsonRpcException, match="cancelled"):
        await asyncio.wait_for(pending, 10)
    await assert_generation_cancelled(client, log)


async def test_a_newer_request_for_the_same_symbol_cancels_the_older(slow):
    client, uri, log = slow
    first = docstring_request(client, uri, "doc-3")
    await wait_until(lambda: generations(log, "start"), timeout=10)
    second = docstring_request(client, uri, "doc-4")
    with pytest.raises(JsonRpcException, match="cancelled"):
        await asyncio.wait_for(first, 10)
    await wait_until(lambda: generations(log, "end"), timeout=10)
    assert generations(log, "end")[0]["finish"] == "cancelled"
    client.cancel_request(types.CancelParams(id="doc-4"))
    with pytest.raises(JsonRpcException, match="cancel"):
        await asyncio.wait_for(second, 10)
    await wait_idle(client)


# A summary without the parameter: the task asks the model a second time (under a
# grammar) for the parameter section.
SUMMARY_ONLY = "Convert a price such as '12.50' to integer cents."
PARAMS = '{"params": {"text": "the price, with an optional currency sign"}, ' \
         '"returns": "the price in cents"}'


@pytest.mark.parametrize("cancel", [False, True])
async def test_a_cancel_between_two_generations_stops_the_task(demo_repo, tmp_path, cancel):
    log = tmp_path / "generations.jsonl"
    # After the first answer is complete, the scripted model holds it for 2 s: the
    # cancel lands there, when no generation is running to notice it.
    env = {"FAKE_ENGINE_RESPONSES": json.dumps([SUMMARY_ONLY, PARAMS]),
           "FAKE_ENGINE_HOLD_S": "2", "FAKE_ENGINE_LOG": str(log)}
    client, _, _ = await start(CANCEL_SERVER, demo_repo, env=env)
    try:
        await wait_model(client)
        uri = open_doc(client, demo_repo / "inventory" / "pricing.py")
        pending = docstring_request(client, uri, "doc-5")
        token = await progress_token(client, "Hearth: docstring")
        if not cancel:  # the control: without a cancel there are two generations
            result = await asyncio.wait_for(pending, 30)
            assert result["applied"] is True
            assert [g["grammar"] for g in generations(log, "start")] == [False, True]
            return
        await wait_until(lambda: generations(log, "end"), timeout=10)
        assert generations(log, "end")[0]["finish"] == "stop"  # it finished, uncancelled
        client.window_work_done_progress_cancel(types.WorkDoneProgressCancelParams(token=token))
        with pytest.raises(JsonRpcException, match="cancelled"):
            await asyncio.wait_for(pending, 30)
        assert "cancelled" in await progress_end(client, "Hearth: docstring")
        await wait_idle(client)
        assert len(generations(log, "start")) == 1, generations(log, "start")
        assert client.applied_edits == []
    finally:
        await stop(client)


# ------------------------------------------------------------------ sandbox

# The scripted model continues "def test_": a test that would run for a minute.
SLOW_TEST = ("parse_price_waits():\n    import time\n    time.sleep(60)\n"
             "    assert parse_price('1') == 100\n")


def sandbox_processes(marker: str) -> list[tuple[int, str]]:
    """Live processes whose command line holds ``marker`` (zombies have none)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmdline = fh.read().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            continue
        if marker in cmdline:
            found.append((int(entry), cmdline[:200]))
    return found


@pytest.mark.parametrize("how", ["cancelRequest", "progress"])
async def test_a_cancel_during_the_test_run_kills_the_sandbox(demo_repo, tmp_path, how):
    # The server's temporary folder is this test's: only its sandbox matches.
    tmp = tmp_path / "server-tmp"
    tmp.mkdir()
    marker = f"{tmp}/hearth-tests-"
    env = {"FAKE_ENGINE_RESPONSES": json.dumps([SLOW_TEST]), "TMPDIR": str(tmp),
           "HEARTH_TESTS_PYTHON": sys.executable,
           # No per-test alarm before the minute is up: only the cancel can stop it.
           "HEARTH_TESTS_TIMEOUT_S": "120"}
    client, _, _ = await start(CANCEL_SERVER, demo_repo, env=env)
    try:
        await wait_model(client)
        uri = open_doc(client, demo_repo / "inventory" / "pricing.py")
        pending = asyncio.ensure_future(client.protocol.send_request_async(
            types.WORKSPACE_EXECUTE_COMMAND, types.ExecuteCommandParams(
                command="hearth.generateTests", arguments=[{"uri": uri, "line": PARSE_PRICE}]),
            msg_id="tests-1"))
        token = await progress_token(client, "Hearth: tests")
        await wait_until(lambda: sandbox_processes(marker), timeout=60)
        if how == "cancelRequest":
            client.cancel_request(types.CancelParams(id="tests-1"))
        else:
            client.window_work_done_progress_cancel(
                types.WorkDoneProgressCancelParams(token=token))
        with pytest.raises(JsonRpcException, match="cancel"):
            await asyncio.wait_for(pending, 30)
        deadline = time.monotonic() + 10
        while left := sandbox_processes(marker):
            assert time.monotonic() < deadline, f"sandbox processes left: {left}"
            await asyncio.sleep(0.05)
        assert "cancelled" in await progress_end(client, "Hearth: tests")
        await wait_idle(client)
        assert client.applied_edits == []
    finally:
        await stop(client)


async def test_a_review_on_save_does_not_take_a_running_requests_cancel(demo_repo, tmp_path):
    # A task started by a notification (review on save) has no request of its own:
    # it must not take over the cancel of the request running meanwhile (tasks find
    # their request id in pygls's context).
    log = tmp_path / "generations.jsonl"
    env = {"FAKE_ENGINE_DEFAULT": "word ", "FAKE_ENGINE_REPEAT": "1000",
           "FAKE_ENGINE_DELAY": "0.05", "FAKE_ENGINE_LOG": str(log)}
    client, _, _ = await start(CANCEL_SERVER, demo_repo, env=env, init_options={
        "docstring": {"maxTokens": 2000}, "review": {"onSave": "file"}})
    try:
        await wait_model(client)
        uri = open_doc(client, demo_repo / "inventory" / "pricing.py")
        other = open_doc(client, demo_repo / "inventory" / "models.py")
        pending = docstring_request(client, uri, "doc-6")
        await wait_until(lambda: generations(log, "start"), timeout=10)
        client.text_document_did_save(types.DidSaveTextDocumentParams(
            text_document=types.TextDocumentIdentifier(uri=other)))
        await progress_token(client, "Hearth: review")  # the review's task has begun
        client.cancel_request(types.CancelParams(id="doc-6"))
        with pytest.raises(JsonRpcException, match="cancel"):
            await asyncio.wait_for(pending, 10)
        await wait_until(lambda: generations(log, "end"), timeout=10)
        assert generations(log, "end")[0]["finish"] == "cancelled", generations(log, "end")
    finally:
        await stop(client)


# ------------------------------------------- a cancel read before the task runs


class Collect:
    """A transport that keeps what the server writes."""

    def __init__(self) -> None:
        self.data = b""

    def write(self, data: bytes) -> None:
        self.data += data

    def close(self) -> None:
        pass


def body(message: dict) -> bytes:
    return json.dumps({"jsonrpc": "2.0", **message}).encode()


async def test_a_cancel_read_in_the_same_breath_as_its_request_stops_the_task(demo_repo,
                                                                               monkeypatch):
    # Over TCP, asyncio's StreamReader hands the server every message already
    # received without yielding to the event loop: a request and its cancel that
    # arrive together are both handled before the request's task takes a step.
    # Handled here exactly so, in process.
    from hearth_lsp.server.engine.fake import FakeEngine
    from hearth_lsp.server.lsp.app import create_server
    from hearth_lsp.server.lsp.framing import handler_for

    monkeypatch.setenv("HEARTH_INDEX_ENABLED", "false")
    engine = FakeEngine(default="word " * 1000, piece_delay_s=0.05)  # 50 s uncancelled
    server = create_server(engine_factory=lambda settings, cache: engine)
    server.protocol.set_writer(Collect())
    handle = handler_for(server.protocol)
    try:
        handle(body({"id": 1, "method": "initialize", "params": {
            "capabilities": {}, "rootUri": demo_repo.as_uri(),
            "initializationOptions": {"docstring": {"maxTokens": 2000}}}}))
        handle(body({"method": "initialized", "params": {}}))
        await wait_until(lambda: server.worker.state == "ready", timeout=30)
        path = demo_repo / "inventory" / "pricing.py"
        handle(body({"method": "textDocument/didOpen", "params": {"textDocument": {
            "uri": path.as_uri(), "languageId": "python", "version": 1,
            "text": path.read_text()}}}))
        before = set(server.protocol._request_futures)
        handle(body({"id": "doc-7", "method": "workspace/executeCommand", "params": {
            "command": "hearth.generateDocstring",
            "arguments": [{"uri": path.as_uri(), "line": PARSE_PRICE}]}}))
        handle(body({"method": "$/cancelRequest", "params": {"id": "doc-7"}}))
        [inner] = [f for k, f in server.protocol._request_futures.items()
                   if k not in before and k != "doc-7"]  # the command's own task
        try:
            await asyncio.wait_for(asyncio.shield(inner), 10)
        except asyncio.TimeoutError:
            pytest.fail("the cancelled command's task still runs after 10 s")
        except Exception:  # the task's refusal
            pass
        assert "cancelled" in str(inner.exception())
        assert await asyncio.to_thread(server.worker.idle.wait, 10)
    finally:
        server.worker.shutdown(timeout=1)
        logging.getLogger().removeHandler(server.client_log)
