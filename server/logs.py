"""Logging for a process whose stdout is the LSP channel.

Logs go to stderr and, once a client is connected, to ``window/logMessage``.
Records from the generation thread are handed to the event loop, which owns
the transport. Every record passes the same redaction as prompts do
(indexer/secrets.py) before it is written anywhere.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable

from ..indexer.secrets import Redactor

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Third-party loggers that would echo every JSON-RPC message at INFO, or (watchdog)
# every file event at DEBUG: a log file under a watched folder then feeds itself.
QUIET = ("pygls", "httpx", "urllib3", "filelock", "watchdog")


# Secret shapes, plus the values of every workspace's `.env*` files as the server
# learns them (remember_secrets).
REDACTOR = Redactor()


def remember_secrets(values: set[str]) -> None:
    REDACTOR.values |= values


class RedactingFilter(logging.Filter):
    """Replaces secrets in a record's message and traceback before any handler sees it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: log what there is
            message = str(record.msg)
        record.msg, record.args = REDACTOR(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = REDACTOR(record.exc_text)
            record.exc_info = None
        return True


def setup_stderr(level: str = "info") -> None:
    root = logging.getLogger()
    if not any(getattr(h, "_hearth_stderr", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(FORMAT))
        handler.addFilter(RedactingFilter())
        handler._hearth_stderr = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    set_level(level)


def set_level(level: str) -> None:
    logging.getLogger().setLevel(level.upper())
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)


class ClientLogHandler(logging.Handler):
    """Forwards records to the client as window/logMessage."""

    def __init__(self, send: Callable[[int, str], None]):
        super().__init__()
        self._send = send
        self.loop: asyncio.AbstractEventLoop | None = None
        self.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        self.addFilter(RedactingFilter())

    def emit(self, record: logging.LogRecord) -> None:
        if self.loop is None or record.name.startswith(QUIET):
            return
        # LSP MessageType: 1 error, 2 warning, 3 info, 4 log
        kind = 1 if record.levelno >= logging.ERROR else 2 if record.levelno >= logging.WARNING \
            else 3 if record.levelno >= logging.INFO else 4
        try:
            message = self.format(record)
            self.loop.call_soon_threadsafe(self._send, kind, message)
        except RuntimeError:  # loop closed during shutdown
            pass
