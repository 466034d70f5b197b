"""What the handler modules share: the RequestFailed error and thread hand-off."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from pygls.exceptions import JsonRpcException

# LSP 3.17 "RequestFailed": the request was valid but could not be carried out.
REQUEST_FAILED = -32803
PROGRESS_INTERVAL_S = 0.1


class RequestFailed(JsonRpcException):
    CODE = REQUEST_FAILED


def call_soon(loop: asyncio.AbstractEventLoop, fn: Callable[..., Any], *args: Any) -> None:
    """Hand a call from the generation thread to the event loop."""
    loop.call_soon_threadsafe(fn, *args)
