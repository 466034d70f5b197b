"""What the feature modules share: RequestFailed, thread hand-off, action helpers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from pygls.exceptions import JsonRpcException

from ..engine.base import EngineError
from ..tasks.runner import Refusal

# LSP 3.17 "RequestFailed": the request was valid but could not be carried out.
REQUEST_FAILED = -32803
PROGRESS_INTERVAL_S = 0.1


class RequestFailed(JsonRpcException):
    CODE = REQUEST_FAILED


def call_soon(loop: asyncio.AbstractEventLoop, fn: Callable[..., Any], *args: Any) -> None:
    """Hand a call from the generation thread to the event loop."""
    loop.call_soon_threadsafe(fn, *args)


def wants_kind(only: Sequence[str] | None, kind: str) -> bool:
    """Whether a code action of ``kind`` passes the client's `context.only` filter."""
    return not only or any(kind == k or kind.startswith(k + ".") for k in only)


def client_resolves(ls: Any, prop: str) -> bool:
    """Whether the client resolves code action property ``prop`` (e.g. "edit") lazily."""
    text = ls.client_capabilities.text_document
    action = text.code_action if text else None
    support = action.resolve_support if action else None
    return bool(support and prop in support.properties)


@contextmanager
def failures_reported(report: Any) -> Iterator[None]:
    """A task's refusal (validation, git state, cancellation) or a missing model ends
    its progress with the reason and answers the request with RequestFailed."""
    try:
        yield
    except asyncio.CancelledError:  # `$/cancelRequest` on a resolve: the progress says so
        report.end("cancelled")
        raise
    except Refusal as exc:
        report.end(str(exc))
        raise RequestFailed(str(exc)) from exc
    except EngineError as exc:
        report.end(str(exc))
        raise RequestFailed(f"model unavailable: {exc}") from exc


def command_action(ls: Any, title: str, kind: str, command: str, args: dict) -> Any:
    """A code action that runs ``command`` with ``args``. Clients that resolve `command`
    lazily get it on `codeAction/resolve` (some client libraries read any action
    carrying a `command` as a bare Command); the others get it up front."""
    from lsprotocol import types

    action = types.CodeAction(title=title, kind=kind, data={"command": command, **args})
    if not client_resolves(ls, "command"):
        action.command = types.Command(title=title, command=command, arguments=[args])
    return action


def resolve_command_action(action: Any) -> bool:
    """Fill in the command of an action made by command_action; False for other actions."""
    from lsprotocol import types

    data = action.data if isinstance(action.data, dict) else {}
    if not isinstance(data.get("command"), str):
        return False
    args = {k: v for k, v in data.items() if k != "command"}
    action.command = types.Command(title=action.title, command=data["command"], arguments=[args])
    return True


# Above this size a document gets no actions and no review on save (and one message
# saying so): parsing a 5 MB file for every cursor move would keep a core busy.
MAX_ACTION_CHARS = 512 * 1024


def no_actions_reason(source: str) -> str | None:
    """Why Hearth offers nothing on this text (too large, invalid Unicode), or None."""
    if len(source) > MAX_ACTION_CHARS:
        return (f"it has {len(source) / 1e6:.1f} million characters; Hearth offers actions "
                f"on files up to {MAX_ACTION_CHARS // 1024} KB")
    try:
        source.encode("utf-8")
    except UnicodeEncodeError:
        return "it contains invalid Unicode (lone surrogates), so it cannot be parsed"
    return None


def check_usable(uri: str, source: str, doing: str) -> None:
    """Refuse a command on text Hearth offers nothing on (no_actions_reason), saying why.
    A command may name such a file (a key binding, another client) though no action
    offered it; tree-sitter and ast hold the GIL while they parse, so even from a
    thread a 5 MB parse held up every other request for a second or more."""
    refused = no_actions_reason(source)
    if refused:
        raise RequestFailed(f"Hearth cannot {doing} {uri.rsplit('/', 1)[-1]}: {refused}")
