"""A small HTTP/1.1 proxy and canned server for failure injection (asyncio, own thread).

Every request that reaches it is recorded (method, path, headers, body). What
happens to a request is an *action*: ``Forward`` it to the upstream server
(optionally delayed, or cut after some bytes of the answer's body), answer a
canned ``Reply`` (a status, headers and a body, or a body streamed in chunks
with pauses), ``Hang`` (never answer) or ``Drop`` (close the connection at
once). Actions queued with ``then`` are used first, one per request, then
``handler(seen)``, then the default (forward when there is an upstream, else
404).

Each connection carries one request: the request goes upstream with
``Connection: close``, so the upstream's answer ends with its connection and
the client opens a new connection for its next request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any


@dataclass
class Seen:
    """One request, as the proxy received it."""

    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    client_closed_early: bool = False  # the client hung up before the answer ended

    def json(self) -> Any:
        return json.loads(self.body or b"null")


@dataclass
class Forward:
    delay_s: float = 0.0  # before the first byte of the answer reaches the client
    cut_after: int | None = None  # close both sides after this many bytes of the answer's body


@dataclass
class Reply:
    status: int = 200
    body: bytes | str | dict | list = b""
    headers: dict[str, str] = field(default_factory=dict)
    chunks: list[bytes | str] | None = None  # streamed with chunked encoding instead of body
    delays: dict[int, float] = field(default_factory=dict)  # chunk index -> pause before it
    cut: bool = False  # end the connection after the chunks without the final chunk
    delay_s: float = 0.0  # before the status line


@dataclass
class Hang:
    pass


@dataclass
class Drop:
    pass


Action = Forward | Reply | Hang | Drop


def sse(*events: dict | str) -> list[str]:
    """Server-sent events, one chunk each; a str is sent as ``data: <str>``."""
    return [f"data: {e if isinstance(e, str) else json.dumps(e)}\n\n" for e in events]


class Proxy:
    def __init__(self, upstream: tuple[str, int] | None = None,
                 handler: Callable[[Seen], Action | None] | None = None) -> None:
        self.upstream = upstream
        self.handler = handler
        self.requests: list[Seen] = []
        self._queued: list[Action] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    # ---- the test's side ------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def then(self, *actions: Action) -> Proxy:
        with self._lock:
            self._queued.extend(actions)
        return self

    def posts(self, suffix: str = "completions") -> list[Seen]:
        """The POST requests whose path ends with ``suffix``."""
        return [r for r in list(self.requests) if r.method == "POST" and r.path.endswith(suffix)]

    def start(self) -> Proxy:
        loop = asyncio.new_event_loop()
        started = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            self._server = loop.run_until_complete(
                asyncio.start_server(self._serve, "127.0.0.1", 0))
            self.port = self._server.sockets[0].getsockname()[1]
            started.set()
            loop.run_forever()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="test-proxy", daemon=True)
        self._thread.start()
        started.wait(10)
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop is None:
            return

        async def shut() -> None:
            if self._server is not None:
                self._server.close()
            for writer in list(self._writers):
                writer.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shut(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(5)
        self._loop = None

    def __enter__(self) -> Proxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- the proxy's side -----------------------------------------------------

    def _action(self, seen: Seen) -> Action:
        with self._lock:
            if self._queued:
                return self._queued.pop(0)
        if self.handler is not None:
            chosen = self.handler(seen)
            if chosen is not None:
                return chosen
        return Forward() if self.upstream else Reply(404, {"error": "not found"})

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            request = await self._read_request(reader)
            if request is None:
                return
            seen, head, body = request
            self.requests.append(seen)
            action = self._action(seen)
            if isinstance(action, Drop):
                return
            if isinstance(action, Hang):
                await reader.read()  # until the client gives up
                seen.client_closed_early = True
                return
            if isinstance(action, Reply):
                await self._reply(action, writer, reader, seen)
                return
            await self._forward(action, head, body, reader, writer, seen)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
            with contextlib.suppress(Exception):
                writer.close()

    @staticmethod
    async def _read_request(reader: asyncio.StreamReader) -> tuple[Seen, bytes, bytes] | None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            return None
        lines = head.decode("latin-1").split("\r\n")
        method, target, _version = lines[0].split(" ", 2)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        body = b""
        if int(headers.get("content-length", "0") or 0):
            body = await reader.readexactly(int(headers["content-length"]))
        # One request per connection: the answer ends with the upstream's connection.
        kept = [line for line in lines[1:] if line
                and not line.lower().startswith(("connection:", "keep-alive:"))]
        head = "\r\n".join([lines[0], *kept, "Connection: close", "", ""]).encode("latin-1")
        return Seen(method, target, headers, body), head, body

    async def _reply(self, reply: Reply, writer: asyncio.StreamWriter,
                     reader: asyncio.StreamReader, seen: Seen) -> None:
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        headers = dict(reply.headers)
        body = reply.body
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
            headers.setdefault("Content-Type", "application/json")
        if isinstance(body, str):
            body = body.encode()
        reason = HTTPStatus(reply.status).phrase if reply.status in HTTPStatus._value2member_map_ else "X"
        lines = [f"HTTP/1.1 {reply.status} {reason}"]
        if reply.chunks is None:
            headers.setdefault("Content-Type", "text/plain")
            headers["Content-Length"] = str(len(body))
        else:
            headers.setdefault("Content-Type", "text/event-stream")
            headers["Transfer-Encoding"] = "chunked"
        headers["Connection"] = "close"
        lines += [f"{k}: {v}" for k, v in headers.items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        if reply.chunks is None:
            writer.write(body)
            await writer.drain()
            return
        await writer.drain()
        for i, chunk in enumerate(reply.chunks):
            if i in reply.delays:
                closed = asyncio.ensure_future(reader.read())
                done, _ = await asyncio.wait({closed}, timeout=reply.delays[i])
                if done:  # the client hung up while we paused
                    seen.client_closed_early = True
                    return
                closed.cancel()
            data = chunk.encode() if isinstance(chunk, str) else chunk
            writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            await writer.drain()
        if not reply.cut:
            writer.write(b"0\r\n\r\n")
            await writer.drain()

    async def _forward(self, action: Forward, head: bytes, body: bytes,
                       reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                       seen: Seen) -> None:
        assert self.upstream is not None
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        up_writer.write(head + body)
        await up_writer.drain()
        upstream_done = asyncio.Event()

        async def watch_client() -> None:
            await reader.read()  # EOF: the client hung up
            if not upstream_done.is_set():
                seen.client_closed_early = True
            up_writer.close()  # the upstream sees the disconnect

        watcher = asyncio.ensure_future(watch_client())
        try:
            if action.delay_s:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(asyncio.shield(watcher), action.delay_s)
                if watcher.done():
                    return
            sent_body = 0
            in_body = False
            pending = b""
            while True:
                data = await up_reader.read(4096)
                if not data:
                    upstream_done.set()
                    break
                if action.cut_after is not None:
                    if not in_body:
                        pending += data
                        end = pending.find(b"\r\n\r\n")
                        if end < 0:
                            continue
                        in_body = True
                        writer.write(pending[: end + 4])
                        data = pending[end + 4:]
                    room = action.cut_after - sent_body
                    if len(data) >= room:
                        writer.write(data[:room])
                        await writer.drain()
                        return  # cut: both connections close
                    sent_body += len(data)
                writer.write(data)
                await writer.drain()
        finally:
            upstream_done.set()
            watcher.cancel()
            with contextlib.suppress(Exception):
                up_writer.close()
