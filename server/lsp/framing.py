"""Reading LSP messages off a byte stream, forgivingly.

pygls' reader takes only `Content-Length: N\\r\\n` exactly, trusts N, and reads N
bytes at once: a lowercase or space-padded header, LF-only line ends or an
absurd length (2**64, a 5,000-digit number) stall the stream or end the
process. Here header names are case-insensitive, line ends may be LF or CRLF,
values may be padded, a length above MAX_BODY_BYTES is a framing error, and
after any framing error the reader resynchronises on the next
`Content-Length` header instead of giving up. Each bad message costs one log
line, never a traceback, and never the process. A body that is JSON but not a
JSON-RPC 2.0 object (a batch, a number, no "jsonrpc", an id that is neither an
integer nor a string, NaN, nesting deeper than MAX_DEPTH) is dropped the same
way; a request among those is answered InvalidRequest.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

from pygls.exceptions import JsonRpcInvalidRequest

log = logging.getLogger("hearth")

MAX_BODY_BYTES = 64 << 20  # an LSP message (a whole large file) fits many times over
MAX_DEPTH = 100  # lists and objects in one message; LSP's own go about 10 deep
_LENGTH = re.compile(rb"content-length\s*:\s*(\d{1,12})\s*$", re.IGNORECASE)


class AsyncReader(Protocol):
    def readline(self) -> Awaitable[bytes]: ...

    def readexactly(self, n: int) -> Awaitable[bytes]: ...


async def read_messages(stop: threading.Event, reader: AsyncReader,
                        handle: Callable[[bytes], None]) -> None:
    """Call ``handle`` with each message body until the stream ends or ``stop`` is set."""
    length: int | None = None
    while not stop.is_set():
        line = await reader.readline()
        if not line:
            return
        if not line.endswith(b"\n"):  # the stream ended inside a header line
            return
        match = _LENGTH.search(line.rstrip(b"\r\n"))
        if match:  # a header, possibly after garbage from a broken message
            value = int(match.group(1))
            if value > MAX_BODY_BYTES:
                log.warning("dropped a message with Content-Length %d (more than %d bytes)",
                            value, MAX_BODY_BYTES)
                length = None
            else:
                length = value
            continue
        if line.strip():
            continue  # another header (Content-Type), or garbage between messages
        if length is None:
            continue  # a blank line without a usable length: skip to the next header
        body = await reader.readexactly(length) if length else b""
        length = None
        if not body and not stop.is_set():
            log.warning("dropped a message with Content-Length 0")
            continue
        handle(body)


def handler_for(protocol: Any) -> Callable[[bytes], None]:
    """Parse a body and give it to the pygls protocol; a bad one costs one log line."""

    def handle(body: bytes) -> None:
        try:
            data = json.loads(body, parse_constant=_not_json)
        except (ValueError, RecursionError) as exc:
            log.warning("dropped a message that is not JSON (%d bytes): %s", len(body),
                        str(exc)[:120])
            return
        problem = _envelope_problem(data)
        if problem:
            log.warning("dropped a message that is %s (%d bytes): %.80r", problem, len(body), body)
            msg_id = data.get("id") if isinstance(data, dict) else None
            if _usable_id(msg_id) and "method" in data:  # a request: answer it
                protocol._send_response(msg_id, None, JsonRpcInvalidRequest(
                    f"this message is {problem}").to_response_error())
            return
        try:
            # The message itself only: as json.loads' object_hook (pygls' way) it would
            # also structure, and answer, any object inside the params with a "jsonrpc" key.
            message = protocol.structure_message(data)
            if getattr(message, "jsonrpc", None) != "2.0":
                return  # malformed: answered (a request) and logged by structure_message
            protocol.handle_message(message)
        except Exception:  # the server stays up whatever one message does
            log.exception("could not handle a message")

    return handle


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # Python reads NaN and Infinity; editors do not


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether ``value`` nests lists and objects more than ``limit`` deep (no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if not isinstance(item, (dict, list)):
            continue
        items: Iterable[Any] = item.values() if isinstance(item, dict) else item
        if depth > limit:
            return True
        stack.extend((v, depth + 1) for v in items)
    return False


def _usable_id(msg_id: Any) -> bool:
    return isinstance(msg_id, (int, str)) and not isinstance(msg_id, bool)


def _envelope_problem(data: Any) -> str | None:
    """What makes ``data`` no LSP message (pygls would raise on it), or None."""
    if not isinstance(data, dict) or data.get("jsonrpc") != "2.0":
        return "not a JSON-RPC 2.0 object"
    if "method" in data and not isinstance(data["method"], str):
        return "a message whose method is not a string"
    if "id" in data and not _usable_id(data["id"]):
        return "a message whose id is neither an integer nor a string"
    if _deeper_than(data, MAX_DEPTH):  # pygls' (recursive) converters would fail on it,
        return f"nested more than {MAX_DEPTH} deep"  # or on the answer that echoes it
    return None
