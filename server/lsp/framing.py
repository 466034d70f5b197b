"""Reading LSP messages off a byte stream, forgivingly.

pygls' reader takes only `Content-Length: N\\r\\n` exactly, trusts N, and reads N
bytes at once: a lowercase or space-padded header, LF-only line ends or an
absurd length (2**64, a 5,000-digit number) stall the stream or end the
process. Here header names are case-insensitive, line ends may be LF or CRLF,
values may be padded, a length above MAX_BODY_BYTES is a framing error, and
after any framing error the reader resynchronises on the next
`Content-Length` header instead of giving up. Each bad message costs one log
line, never a traceback, and never the process.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

log = logging.getLogger("hearth")

MAX_BODY_BYTES = 64 << 20  # an LSP message (a whole large file) fits many times over
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
            message = json.loads(body, object_hook=protocol.structure_message)
        except (ValueError, RecursionError) as exc:
            log.warning("dropped a message that is not JSON (%d bytes): %s", len(body),
                        str(exc)[:120])
            return
        try:
            protocol.handle_message(message)
        except Exception:  # the server stays up whatever one message does
            log.exception("could not handle a message")

    return handle
