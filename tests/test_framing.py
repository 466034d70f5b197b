"""Broken framing never ends the server or stalls the stream: after each bad
message, the next good request is answered."""

from __future__ import annotations

import json
import os
import select
import subprocess
import time

import pytest

from lsp_helpers import FAKE_SERVER


def frame(body: bytes, header: bytes = b"Content-Length: %d\r\n\r\n") -> bytes:
    return (header % len(body) if b"%d" in header else header) + body


def request(n: int, method: str = "workspace/executeCommand") -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": n, "method": method,
                       "params": {"command": "hearth.status"}}).encode()


BAD = {
    "length 2**64": b"Content-Length: 18446744073709551616\r\n\r\n{}",
    "length 99999999999": b"Content-Length: 99999999999\r\n\r\n{}",
    "length of 5000 digits": b"Content-Length: " + b"9" * 5000 + b"\r\n\r\n{}",
    "not JSON": frame(b"{this is not json"),
    "nested 100000 deep": frame(b"[" * 100_000 + b"]" * 100_000),
    "empty body": b"Content-Length: 0\r\n\r\n",
}
GOOD_VARIANTS = {  # headers editors and hand-written clients really send
    "lowercase": b"content-length: %d\r\n\r\n",
    "LF only": b"Content-Length: %d\n\n",
    "padded": b"Content-Length:    %d   \r\n\r\n",
    "with Content-Type": b"Content-Type: application/vscode-jsonrpc; charset=utf-8\r\n"
                         b"Content-Length: %d\r\n\r\n",
}


class RawClient:
    def __init__(self, env: dict[str, str]):
        self.proc = subprocess.Popen(FAKE_SERVER, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=env)
        self.buffer = b""

    def send(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def answer(self, n: int, timeout: float = 20) -> dict:
        """The response with id ``n`` (bounded wait; notifications are skipped)."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            while b"\r\n\r\n" in self.buffer:
                head, rest = self.buffer.split(b"\r\n\r\n", 1)
                length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
                if len(rest) < length:
                    break
                body, self.buffer = rest[:length], rest[length:]
                message = json.loads(body)
                if message.get("id") == n and "method" not in message:
                    return message
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if ready:
                chunk = os.read(self.proc.stdout.fileno(), 1 << 16)
                assert chunk, f"the server exited ({self.proc.poll()})"
                self.buffer += chunk
        raise AssertionError(f"no answer to request {n}")

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def client():
    env = {**os.environ, "HEARTH_INDEX_ENABLED": "false"}
    raw = RawClient(env)
    raw.send(frame(json.dumps({"jsonrpc": "2.0", "id": 0, "method": "initialize",
                               "params": {"capabilities": {}}}).encode()))
    assert "result" in raw.answer(0)
    raw.send(frame(b'{"jsonrpc": "2.0", "method": "initialized", "params": {}}'))
    yield raw
    raw.close()


def test_every_bad_frame_is_followed_by_an_answered_request(client):
    for n, (name, data) in enumerate(BAD.items(), start=1):
        client.send(data + frame(request(n)))
        answer = client.answer(n)
        assert "result" in answer, name
    assert client.proc.poll() is None


def test_header_variants_are_understood(client):
    for n, (name, header) in enumerate(GOOD_VARIANTS.items(), start=100):
        client.send(frame(request(n), header))
        assert "result" in client.answer(n), name


def test_requests_out_of_the_life_cycle_are_refused_and_answered(tmp_path):
    # Before initialize: "not initialized" (pygls answered an internal error with a
    # traceback). A second initialize would move the workspace: refused. After shutdown,
    # every request but exit is refused (pygls answered none: the editor waited).
    raw = RawClient({**os.environ, "HEARTH_INDEX_ENABLED": "false"})
    try:
        raw.send(frame(request(1)))
        assert raw.answer(1)["error"]["code"] == -32002
        init = {"capabilities": {}, "rootUri": tmp_path.as_uri()}
        raw.send(frame(json.dumps({"jsonrpc": "2.0", "id": 2, "method": "initialize",
                                   "params": init}).encode()))
        assert "result" in raw.answer(2)
        raw.send(frame(b'{"jsonrpc": "2.0", "method": "initialized", "params": {}}'))
        raw.send(frame(json.dumps({"jsonrpc": "2.0", "id": 3, "method": "initialize", "params": {
            **init, "rootUri": (tmp_path / "elsewhere").as_uri()}}).encode()))
        assert raw.answer(3)["error"]["code"] == -32600
        raw.send(frame(request(4)))
        assert raw.answer(4)["result"]["folders"][0]["root"] == str(tmp_path)  # not moved
        raw.send(frame(b'{"jsonrpc": "2.0", "id": 5, "method": "shutdown"}'))
        assert raw.answer(5)["result"] is None
        raw.send(frame(request(6)))
        assert raw.answer(6)["error"]["code"] == -32600
        raw.send(frame(b'{"jsonrpc": "2.0", "method": "exit"}'))
        assert raw.proc.wait(20) == 0
    finally:
        raw.close()
