"""Fuzzed JSON-RPC against one long-lived server: every request is answered (a result
or a JSON-RPC error) within a bounded wait, the process never dies, it still
answers `hearth.status` at the end, and expected protocol errors cost a log line,
not a traceback.

The generator is bench/fuzz.py's (bench/fuzz.py runs it for 100,000 messages).
Here hypothesis draws every choice: each example is one batch of messages sent
back to back to the same server process (its state carries over, so nothing is
shrunk; a failure lists the exact messages left unanswered). Without hypothesis
installed the same batches are drawn from a seeded random.Random instead.
"""

from __future__ import annotations

import asyncio
import functools
import random
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import fuzz  # noqa: E402

try:
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover - hypothesis is a dev extra
    st = None

T = TypeVar("T")
B = TypeVar("B")
BATCH = 60  # messages per example, sent back to back
BATCHES = 42  # examples: 2,520 messages
FRAME_BATCH = 8  # broken frames per example, each followed by a good request
FRAME_BATCHES = 40
WAIT_S = 60  # for a batch's answers: generous (a shared 2-core machine), never a timing


# Known server bugs the fuzzer finds, tolerated here until they are fixed: each is
# (what identifies its InternalError answer or its traceback, where it is). Empty
# this list when they are fixed; docs/reliability.md gives each fix.
KNOWN_BUGS: list[tuple[str, str]] = [
    # (a text in the server's log, what triggers it): none known; the fuzzer's earlier
    # finds (a NUL in 'repo', review on save racing an edit, documenting lone
    # surrogates, percent-encoded URIs) are fixed and have tests.
]


def known(text: str) -> bool:
    return any(signature in text for signature, _ in KNOWN_BUGS)


class HypothesisDraw:
    """bench/fuzz.py's Draw, backed by hypothesis' ``st.data()``."""

    def __init__(self, data: Any):
        self.data = data

    def integer(self, lo: int, hi: int) -> int:
        return self.data.draw(st.integers(lo, hi))

    def choice(self, options: Sequence[T]) -> T:
        return self.data.draw(st.sampled_from(options))

    def text(self, max_size: int) -> str:
        return self.data.draw(_text(max_size))

    def binary(self, max_size: int) -> bytes:
        return self.data.draw(st.binary(max_size=max_size))

    def json(self) -> Any:
        return self.data.draw(_json())


@functools.cache
def _text(max_size: int) -> Any:
    char = st.one_of(st.characters(), st.sampled_from(fuzz.ODD_CHARS),
                     st.characters(categories=["Cs"]))  # lone surrogates
    return st.lists(char, max_size=max_size).map("".join)


@functools.cache
def _json() -> Any:
    leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.sampled_from(fuzz.EDGE_INTS),
                     st.floats(allow_nan=False, allow_infinity=False), _text(20), st.sampled_from(["", "file:///", "hearth.status"]))
    keys = st.one_of(st.sampled_from(fuzz.PROTOCOL_KEYS), _text(8))
    return st.recursive(leaf, lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4)), max_leaves=8)


def drive(examples: int, make: Callable[[Any], B], send: Callable[[B], str | None],
          seed: int) -> tuple[str, str | None]:
    """``examples`` times: ``make`` a batch from a Draw (hypothesis' when installed), then
    ``send`` it, until ``send`` returns a failure; returns the driver's name and that
    failure. Failures are not raised inside the hypothesis example: the server is one
    long-lived process, so a replayed or shrunk example would meet another state.
    After a failure batches are still made (hypothesis checks that each example draws
    the same way), but no longer sent."""
    failure: list[str] = []

    def once(draw: Any) -> None:
        batch = make(draw)
        if not failure:
            found = send(batch)
            if found:
                failure.append(found)

    if st is None:
        rng = random.Random(seed)
        for _ in range(examples):
            once(fuzz.RandomDraw(rng))
        return "random.Random", failure[0] if failure else None

    @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
              phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(st.data())
    def example(data: Any) -> None:
        once(HypothesisDraw(data))

    example()
    return "hypothesis", failure[0] if failure else None


@pytest.fixture
def server(tmp_path):
    root = fuzz.workspace(tmp_path / "ws")
    with open(tmp_path / "server.log", "w+b") as err:
        session = fuzz.Session(fuzz.FAKE_SERVER, fuzz.server_env(), err, cwd=tmp_path)
        yield session, root
        if session.alive():
            session.proc.kill()
        session.proc.wait()


def test_fuzzed_messages_are_all_answered_and_the_server_lives(server):
    session, root = server
    fuzz.initialize(session, root)
    fuzzer = fuzz.Fuzzer(root)
    stats = fuzz.Stats()

    def make(draw: Any) -> list[fuzz.Message]:
        fuzzer.draw = draw
        fuzzer.forget()  # the server remembers; the generator must not (see Fuzzer.forget)
        return [fuzzer.message() for _ in range(BATCH)]

    def send(messages: list[fuzz.Message]) -> str | None:
        missing = fuzz.run_batch(session, messages, stats, timeout=WAIT_S)
        if not session.alive():
            return f"the server died ({session.proc.poll()}) in this batch:\n" + \
                "\n".join(str(m.body)[:300] for m in messages) + f"\n{session.stderr_tail()}"
        if missing:
            return f"unanswered in {WAIT_S} s:\n" + "\n".join(
                str(m.body)[:500] for m in missing) + f"\n--- server log:\n{session.stderr_tail()}"
        return None

    driver, failure = drive(BATCHES, make, send, seed=1)
    assert failure is None, failure
    final = fuzz.status(session, "final", timeout=WAIT_S)
    log = session.stderr_text()
    records = fuzz.traceback_records(log)
    print(f"\n{driver}: {stats.sent} messages, {stats.requests} requests, {stats.results} "
          f"results, errors {dict(stats.errors)}, traceback lines {log.count(fuzz.TRACEBACK)}, "
          f"log records with one {sum(records.values())}: {dict(records)}")

    assert stats.sent >= 2000 and stats.requests >= 800, stats
    assert stats.answered == stats.requests
    assert "result" in final and final["result"]["model"] in ("ready", "loading")
    assert not session.duplicates, f"answered twice: {session.duplicates[:10]}"
    bad = [a for a in session.responses.values() if not fuzz.well_formed(a)]
    assert not bad, bad[:5]
    # An InternalError is a handler that broke: a bug, unless it is a known one.
    internal = [(body, message) for body, message in stats.internal if not known(message)]
    assert not internal, "\n".join(f"{str(b)[:300]} -> {m[:1500]}" for b, m in internal)
    # Expected protocol errors (InvalidParams, MethodNotFound, unknown documents, broken
    # envelopes, answers to nothing) are one log line each, never a traceback.
    unexpected = [t for t in fuzz.tracebacks(log) if not known(t)]
    assert not unexpected, "\n\n".join(t[-1500:] for t in unexpected[:3])
    assert session.close() == 0


def test_fuzzed_framing_never_stalls_the_stream(server):
    session, root = server
    fuzz.initialize(session, root)
    fuzzer = fuzz.Fuzzer(root)
    counter = iter(range(10**9))
    sent = []

    def make(draw: Any) -> list[tuple[bytes, bytes]]:
        fuzzer.draw = draw
        fuzzer.forget()
        return [(fuzz.bad_frame(draw, fuzzer), draw.choice(fuzz.HEADERS))
                for _ in range(FRAME_BATCH)]

    def send(frames: list[tuple[bytes, bytes]]) -> str | None:
        for data, header in frames:
            probe = f"probe{next(counter)}"
            good = fuzz.frame(fuzz.dumps({"jsonrpc": "2.0", "id": probe,
                                          "method": "workspace/executeCommand",
                                          "params": {"command": "hearth.status"}}), header)
            session.send_bytes(data + good)
            sent.append(data)
            missing = session.wait([probe], WAIT_S)
            if not session.alive():
                return f"the server died after {data[:300]!r}:\n{session.stderr_tail()}"
            if missing or "result" not in session.responses[fuzz.key(probe)]:
                return f"no answer after {data[:300]!r}:\n{session.stderr_tail()}"
        return None

    driver, failure = drive(FRAME_BATCHES, make, send, seed=2)
    assert failure is None, failure
    assert len(sent) >= 300
    log = session.stderr_text()
    print(f"\n{len(sent)} broken frames; log records with a traceback: "
          f"{dict(fuzz.traceback_records(log))}")
    unexpected = [t for t in fuzz.tracebacks(log) if not known(t)]
    assert not unexpected, unexpected[:3]
    assert session.close() == 0


def test_a_document_whose_uri_is_percent_encoded_is_known(server):
    session, root = server
    fuzz.initialize(session, root)
    uri = (root / "my project" / "a.py").as_uri()  # file:///…/my%20project/a.py
    assert "%20" in uri
    session.send({"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {
        "textDocument": {"uri": uri, "languageId": "python", "version": 1, "text": fuzz.PY}}})
    here = {"line": 12, "character": 0}
    answer = session.request("textDocument/codeAction", {
        "textDocument": {"uri": uri}, "range": {"start": here, "end": here},
        "context": {"diagnostics": []}}, "actions")
    assert "result" in answer, answer
    assert any("docstring" in a["title"] for a in answer["result"])


# ------------------------------------------------- what the fuzzer found, fixed


def test_a_malformed_answer_to_a_server_request_fails_that_request_only(server):
    """pygls dropped an answer it could not read (here: to the progress the reload
    creates), and the reload, and the editor's request, waited forever."""
    session, root = server
    fuzz.initialize(session, root)
    session.answer_with = lambda request: {"jsonrpc": "2.0", "id": request["id"], "error": 5}
    answer = session.request("workspace/executeCommand", {"command": "hearth.reloadModel"},
                             "reload", timeout=WAIT_S)
    assert "result" in answer, answer  # the progress failed, not the reload
    log = session.stderr_text()
    assert "dropped a malformed answer" in log and fuzz.TRACEBACK not in log


def test_an_object_inside_the_params_is_not_read_as_a_message(server):
    """As json.loads' object_hook, structure_message also saw nested objects: one with
    a "jsonrpc" key was read, and answered, as a request of its own."""
    session, root = server
    fuzz.initialize(session, root)
    inner = {"jsonrpc": "2.0", "id": "inner", "method": "initialize", "params": 5}
    answer = session.request("workspace/symbol", {"query": "x", "extra": inner}, "outer")
    assert answer.get("result") == []
    fuzz.status(session, "after")
    assert fuzz.key("inner") not in session.responses


def test_an_answer_that_borrows_the_id_of_a_running_request_is_dropped(server):
    """pygls gave it to that request's handler: the request was answered with the
    client's "result", and the handler's own result raised."""
    session, root = server
    session.proc.kill()
    session.proc.wait()
    env = fuzz.server_env({"FAKE_ENGINE_DEFAULT": "word ", "FAKE_ENGINE_REPEAT": "40",
                           "FAKE_ENGINE_DELAY": "0.02"})
    with open(root.parent / "slow.log", "w+b") as err:
        slow = fuzz.Session(fuzz.FAKE_SERVER, env, err)
        try:
            fuzz.initialize(slow, root)
            uri = (root / "pkg" / "m0.py").as_uri()
            slow.send({"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {
                "textDocument": {"uri": uri, "languageId": "python", "version": 1,
                                 "text": fuzz.PY}}})
            slow.send({"jsonrpc": "2.0", "id": 77, "method": "workspace/executeCommand",
                       "params": {"command": "hearth.documentFile", "arguments": [{"uri": uri}]}})
            slow.send({"jsonrpc": "2.0", "id": 77, "result": "the client's"})
            assert not slow.wait([77], WAIT_S)
            assert slow.responses[fuzz.key(77)].get("result") != "the client's"
            fuzz.status(slow, "after")
            log = slow.stderr_text()
            assert "which the server never asked" in log and not fuzz.tracebacks(log), log[-3000:]
        finally:
            slow.close()


def test_expected_protocol_errors_are_one_log_line_each(server):
    session, root = server
    fuzz.initialize(session, root)
    unknown = (root / "nowhere.py").as_uri()
    here = {"line": 0, "character": 0}
    requests = {  # id -> expected error code
        "unknown-doc": ({"method": "textDocument/codeAction", "params": {
            "textDocument": {"uri": unknown}, "range": {"start": here, "end": here},
            "context": {"diagnostics": []}}}, -32602),
        "bad-params": ({"method": "textDocument/codeAction", "params": {"range": 5}}, -32602),
        "no-command": ({"method": "workspace/executeCommand",
                        "params": {"command": "hearth.nope"}}, -32602),
        "no-method": ({"method": "hearth/nothing", "params": {}}, -32601),
        "refused": ({"method": "workspace/executeCommand", "params": {
            "command": "hearth.search", "arguments": [{"query": "x"}]}}, -32803),
    }
    for msg_id, (body, _) in requests.items():
        session.send({"jsonrpc": "2.0", "id": msg_id, **body})
    for data in [b"[1, 2]", b"5", b'{"id": 1.5, "jsonrpc": "2.0", "method": "x"}',
                 b'{"jsonrpc": "2.0", "id": 9, "method": 7}',
                 b'{"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": {"a": 1}}}',
                 b'{"jsonrpc": "2.0", "id": "nothing", "result": 1}']:
        session.send_bytes(fuzz.frame(data))
    session.send({"id": "sloppy", "method": "workspace/symbol", "params": {"query": "x"}})
    assert not session.wait([*requests, "sloppy", 9], WAIT_S)
    for msg_id, (_, code) in requests.items():
        assert session.responses[fuzz.key(msg_id)]["error"]["code"] == code, msg_id
    for sloppy in ("sloppy", 9):  # no "jsonrpc", a method that is not a string
        assert session.responses[fuzz.key(sloppy)]["error"]["code"] == -32600
    fuzz.status(session, "after")
    log = session.stderr_text()
    assert fuzz.TRACEBACK not in log, log[-3000:]
    assert log.count("WARNING") >= len(requests) + 7


async def test_handled_messages_leave_no_future_behind(tmp_path):
    """pygls kept the future of each notification its own handlers ran (didOpen,
    didChange, didClose) and of each command's handler: one entry per keystroke, for
    the life of the server."""
    import json
    import logging

    from hearth_lsp.server.engine.fake import FakeEngine
    from hearth_lsp.server.lsp.app import create_server
    from hearth_lsp.server.lsp.framing import handler_for

    class Sink:
        def write(self, data: bytes) -> None:
            pass

        def close(self) -> None:
            pass

    server = create_server(engine_factory=lambda settings, cache: FakeEngine(), environ={
        "HEARTH_INDEX_ENABLED": "false", "HEARTH_CACHE_ENABLED": "false",
        "HEARTH_CONFIG_FILE": str(tmp_path / "none.toml")})
    try:
        protocol = server.protocol
        protocol.set_writer(Sink())
        handle = handler_for(protocol)

        def send(message: dict) -> None:
            handle(json.dumps({"jsonrpc": "2.0", **message}).encode())

        send({"id": 0, "method": "initialize", "params": {"capabilities": {},
                                                          "rootUri": tmp_path.as_uri()}})
        uri = (tmp_path / "a.py").as_uri()
        send({"method": "textDocument/didOpen", "params": {"textDocument": {
            "uri": uri, "languageId": "python", "version": 1, "text": "x = 1\n"}}})
        for version in range(2, 102):
            send({"method": "textDocument/didChange", "params": {
                "textDocument": {"uri": uri, "version": version},
                "contentChanges": [{"text": f"x = {version}\n"}]}})
        for n in range(1, 21):
            send({"id": n, "method": "workspace/executeCommand", "params": {
                "command": "hearth.search", "arguments": [{"query": "x"}]}})
        send({"method": "textDocument/didClose", "params": {"textDocument": {"uri": uri}}})
        deadline = asyncio.get_running_loop().time() + 30
        while protocol._request_futures and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        assert not protocol._request_futures, len(protocol._request_futures)
    finally:
        server.worker.shutdown()
        logging.getLogger().removeHandler(server.client_log)


async def test_answers_to_the_servers_requests_leave_nothing_behind(tmp_path):
    """Answered with an error (well formed or not), a request of the server's left its
    entry in pygls' _result_types for good."""
    import json
    import logging

    from hearth_lsp.server.engine.fake import FakeEngine
    from hearth_lsp.server.lsp.app import create_server
    from hearth_lsp.server.lsp.framing import handler_for

    written: list[bytes] = []

    class Sink:
        def write(self, data: bytes) -> None:
            written.append(data)

        def close(self) -> None:
            pass

    server = create_server(engine_factory=lambda settings, cache: FakeEngine(), environ={
        "HEARTH_INDEX_ENABLED": "false", "HEARTH_CACHE_ENABLED": "false",
        "HEARTH_CONFIG_FILE": str(tmp_path / "none.toml")})
    try:
        protocol = server.protocol
        protocol.set_writer(Sink())
        handle = handler_for(protocol)

        def send(message: dict) -> None:
            handle(json.dumps({"jsonrpc": "2.0", **message}).encode())

        def asked() -> list[dict]:
            out = []
            for chunk in written:
                body = json.loads(chunk.split(b"\r\n\r\n", 1)[1])
                if "method" in body and "id" in body:
                    out.append(body)
            return out

        send({"id": 0, "method": "initialize", "params": {
            "capabilities": {"window": {"workDoneProgress": True}}, "rootUri": tmp_path.as_uri()}})
        for n, error in enumerate([{"code": -32603, "message": "no"}, 5]):
            send({"id": f"reload{n}", "method": "workspace/executeCommand",
                  "params": {"command": "hearth.reloadModel"}})
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 30
            while len(asked()) <= n and loop.time() < deadline:
                await asyncio.sleep(0.02)
            send({"id": asked()[n]["id"], "error": error})
        deadline = asyncio.get_running_loop().time() + 30
        while (protocol._request_futures or protocol._result_types) \
                and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        assert not protocol._result_types and not protocol._request_futures
    finally:
        server.worker.shutdown()
        logging.getLogger().removeHandler(server.client_log)
