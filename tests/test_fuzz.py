"""What fuzzing the server found (bench/fuzz.py's client, one server each): answers to
the server's own requests that it cannot read, objects inside params read as
messages, answers that borrow a running request's id, and expected protocol errors
logged as tracebacks."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import fuzz  # noqa: E402

WAIT_S = 60  # for an answer: generous (a shared 2-core machine), never a timing


@pytest.fixture
def server(tmp_path):
    root = fuzz.workspace(tmp_path / "ws")
    with open(tmp_path / "server.log", "w+b") as err:
        session = fuzz.Session(fuzz.FAKE_SERVER, fuzz.server_env(), err, cwd=tmp_path)
        yield session, root
        if session.alive():
            session.proc.kill()
        session.proc.wait()


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
