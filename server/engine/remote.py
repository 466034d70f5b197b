"""The remote engine: a model served over HTTP by an OpenAI-compatible server.

llama.cpp's llama-server, llama-cpp-python's server, vLLM, Ollama or OpenAI
itself: ``/v1/chat/completions`` for chat messages, ``/v1/completions`` for
completion-style prompts, always streamed. ``connect`` reads ``/v1/models``
and probes what kind of server answers (``/props``, ``/openapi.json``,
``/api/version``) to learn the context length, whether it has a chat template,
how it takes a grammar or a JSON schema, and where it tokenizes.

The generation worker's thread calls ``generate``; the HTTP work runs on the
engine's own asyncio loop (one thread per engine, httpx.AsyncClient), so that
a cancel closes the stream at once, even in the middle of a read: the server
sees the disconnect and stops generating.

Failures before the first token are retried with exponential backoff and
jitter; a circuit breaker per backend turns a dead server into one fast
failure (``BackendUnavailable``) instead of a timeout per request. Every
message names the backend and the setting to look at; the API key never
appears in a message or a log record.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import email.utils
import json
import logging
import math
import os
import queue
import random
import re
import shlex
import subprocess
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from ..chat_format import Message
from ..settings import STRUCTURED_MODES, SamplingSettings
from ..settings import BackendSettings as BackendConfig
from .base import Completion, EngineError, ModelInfo
from .httpx_import import httpx, verify

log = logging.getLogger(__name__)

T = TypeVar("T")

# Exponential backoff between attempts before the first token: BASE * 2**n plus
# up to as much again of jitter, at most MAX. Tests may lower BASE.
BACKOFF_BASE_S = 0.25
BACKOFF_MAX_S = 8.0
# A Retry-After longer than this is not waited for: the call fails and says so.
RETRY_AFTER_MAX_S = 30.0
# How often the worker's thread looks at ``should_stop`` while no piece arrives.
POLL_S = 0.01
# Error bodies are read up to this many bytes, and quoted up to QUOTE characters.
ERROR_BODY_MAX = 64 * 1024
QUOTE = 200
# A JSON answer (the model list, a probe, a whole completion) and one line of a stream
# are read up to this many bytes: past it the server is refused, not kept in memory
# (a 300 MiB model list took the process to 993 MiB). OpenRouter's list is ~2 MiB.
BODY_MAX = 32 * 1024 * 1024
# Server-sent events' lines end in CRLF, LF or CR.
_LINE_END = re.compile(rb"\r\n|\r|\n")
# A stream's first line that is none of the event-stream's fields: the body is read
# whole as one JSON answer (an error some servers send under text/event-stream).
_SSE_FIELD = re.compile(r"(?:data|event|id|retry|error)(?::|$)|:|$")
# How long the answer's usage and [DONE] are waited for once its finish reason came:
# a server that sends neither and keeps the connection open still answered.
FINISH_GRACE_S = 1.0
# What an API key may hold: printable ASCII, no spaces (an HTTP header token).
_HEADER_TOKEN = re.compile(r"[\x21-\x7e]+")
DEFAULT_CONTEXT = 4096
# Renders messages for prompt_text (cache keys, logs) when the server's own
# template is not known; the server applies its own template to the messages.
GENERIC_CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")



class BackendUnavailable(EngineError):
    """The backend could not be reached or did not answer before the first token.

    Nothing was streamed: falling back to another engine is safe.
    """


@dataclass
class RemoteModelInfo(ModelInfo):
    backend: str = ""
    url: str = ""  # without credentials
    server: str = "openai"  # llama-server | llama-cpp-python | vllm | ollama | openai
    structured: str = "none"  # what a grammar becomes: grammar | json_schema | none
    server_chat_template: str | None = None  # the server's own, when it says

    @property
    def where(self) -> str:
        return f"server {self.backend}"

    def describe(self) -> str:
        template = "chat" if self.chat_template else "completion only"
        return (f"{self.name} on {self.server} at {self.url} (backend {self.backend}), "
                f"context {self.context_length}, {template}, structured output: "
                f"{self.structured}")


@dataclass
class Capabilities:
    """What connect() learned about the server."""

    server: str = "openai"
    grammar_field: str | None = None  # grammar | structured_outputs | guided_grammar
    schema_field: str | None = None  # json_schema | structured_outputs | guided_json
    chat_schema_field: str | None = None  # response_format (json_schema | json_object)
    extra_sampling: bool = False  # top_k, min_p, a repeat penalty
    max_stops: int | None = None  # OpenAI takes 4
    tokenize: str | None = None  # llama-server | llama-cpp-python | vllm
    context_length: int | None = None
    trained_context_length: int | None = None
    chat_template: str | None = None
    has_chat_template: bool = True
    warnings: list[str] = field(default_factory=list)


class CircuitBreaker:
    """closed -> (``failures`` failures in a row) -> open -> (``reset_s``) -> half-open.

    Half-open lets one call through as a probe: success closes the breaker,
    failure opens it for another ``reset_s``. ``failures`` < 1 disables it.
    """

    def __init__(self, failures: int, reset_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.failures = failures
        self.reset_s = reset_s
        self._clock = clock
        self._lock = threading.Lock()
        self._count = 0
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> str:
        with self._lock:
            return self._state()

    def _state(self) -> str:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at >= self.reset_s:
            return "half-open"
        return "open"

    def retry_in(self) -> float:
        with self._lock:
            if self._opened_at is None:
                return 0.0
            return max(0.0, self.reset_s - (self._clock() - self._opened_at))

    def admit(self) -> bool | None:
        """None: refused (open, or a probe is in flight); False: a normal call; True: the probe."""
        with self._lock:
            state = self._state()
            if state == "closed":
                return False
            if state == "open" or self._probing:
                return None
            self._probing = True
            return True

    def success(self) -> None:
        with self._lock:
            self._count = 0
            self._opened_at = None
            self._probing = False

    def failure(self) -> None:
        with self._lock:
            self._count += 1
            self._probing = False
            if self.failures > 0 and (self._count >= self.failures or self._opened_at is not None):
                self._opened_at = self._clock()

    def release(self, probe: bool | None) -> None:
        """A call that ended without a verdict (cancelled): let the next one probe."""
        if probe:
            with self._lock:
                self._probing = False


class _Failure(Exception):
    """One attempt failed: the error to raise, whether to retry, whether it counts."""

    def __init__(self, error: EngineError, *, retry: bool, counts: bool,
                 retry_after: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry = retry
        self.counts = counts
        self.retry_after = retry_after


class _StopScanner:
    """Cuts the text at the first stop string, holding back what could begin one."""

    def __init__(self, stops: list[str]) -> None:
        self.stops = [s for s in dict.fromkeys(stops) if s]
        self.hold = max((len(s) for s in self.stops), default=1) - 1
        self.pending = ""

    def feed(self, text: str) -> tuple[str, bool]:
        """(text that is safe to hand on, whether a stop string was met)."""
        self.pending += text
        cut = min((i for s in self.stops if (i := self.pending.find(s)) >= 0), default=-1)
        if cut >= 0:
            out, self.pending = self.pending[:cut], ""
            return out, True
        keep = self._partial()
        out = self.pending[:len(self.pending) - keep]
        self.pending = self.pending[len(self.pending) - keep:]
        return out, False

    def _partial(self) -> int:
        """Length of the longest tail of ``pending`` that begins a stop string."""
        for n in range(min(self.hold, len(self.pending)), 0, -1):
            tail = self.pending[-n:]
            if any(s.startswith(tail) for s in self.stops):
                return n
        return 0

    def flush(self) -> str:
        out, self.pending = self.pending, ""
        return out


@dataclass
class _Stream:
    """What one generation's coroutine hands to the worker's thread."""

    events: queue.Queue[tuple[str, Any]] = field(default_factory=queue.Queue)
    started: bool = False  # a data event arrived: no more retries
    finish_seen: bool = False  # an event carried a finish_reason
    # Set by the worker's thread on cancel. Python < 3.12's wait_for can swallow a
    # task's cancellation when its inner read completes at that moment; the reader
    # checks this after every await, and the worker cancels again until it ends.
    cancelled: bool = False


def _display_url(url: str) -> str:
    """The URL without user:password@."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def _root_url(url: str) -> str:
    """The server's root: ``http://h:8080/v1`` -> ``http://h:8080``."""
    base = url.rstrip("/")
    return base[: -len("/v1")] if base.endswith("/v1") else base


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    with contextlib.suppress(ValueError):
        seconds = float(value)
        return max(0.0, seconds) if math.isfinite(seconds) else None
    with contextlib.suppress(TypeError, ValueError):
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    return None


def _whole_event(data: list[str]) -> bool:
    """Whether an SSE event's data lines read to the end are a whole event: [DONE] or
    JSON that parses."""
    text = "\n".join(data).strip()
    if text == "[DONE]":
        return True
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _server_message(body: bytes, secret: str | None = None) -> str:
    """The error message a server put in its body, else a short quote of the body;
    ``secret`` (the API key) is taken out before the quote is cut, so no part of it
    is left at the cut."""
    text = body.decode("utf-8", "replace").strip()
    with contextlib.suppress(ValueError):
        data = json.loads(text)
        if isinstance(data, dict):
            err = data.get("error", data.get("detail", data.get("message")))
            if isinstance(err, dict):
                err = err.get("message") or err.get("msg") or err
            if isinstance(err, list) and err and isinstance(err[0], dict):  # FastAPI 422
                err = "; ".join(f"{'.'.join(map(str, e.get('loc', [])))}: {e.get('msg')}"
                                for e in err[:3])
            if err:
                text = str(err)
    text = " ".join(text.split())
    if secret:
        text = text.replace(secret, "[redacted]")
    return text[:QUOTE] + ("..." if len(text) > QUOTE else "")


async def _read_body(response: httpx.Response, limit: int) -> tuple[bytes, bool]:
    """The body, up to ``limit`` bytes; and whether there was more (left unread)."""
    parts: list[bytes] = []
    size = 0
    async for part in response.aiter_bytes():
        parts.append(part)
        size += len(part)
        if size > limit:
            return b"".join(parts)[:limit], True
    return b"".join(parts), False


async def _lines(response: httpx.Response, limit: int) -> AsyncGenerator[str, None]:
    """The body's lines (CRLF, LF or CR), decoded as UTF-8 as event streams are; a line
    longer than ``limit`` bytes raises ``_TooLong`` instead of growing without end."""
    buf = bytearray()  # the line so far: it holds no line end, but perhaps a last CR
    async for part in response.aiter_bytes():
        start = max(len(buf) - 1, 0)  # only the new bytes are searched: a long line
        buf += part                   # costs its length, not its length squared
        pos = 0
        while (end := _LINE_END.search(buf, start)) is not None:
            if end.group() == b"\r" and end.end() == len(buf):
                break  # perhaps the first half of a CRLF split between two reads
            yield buf[pos:end.start()].decode("utf-8", "replace")
            pos = start = end.end()
        del buf[:pos]
        if len(buf) > limit:
            raise _TooLong
    if buf:
        yield buf.rstrip(b"\r").decode("utf-8", "replace")


class _TooLong(Exception):
    """A line of a stream longer than BODY_MAX."""


def _is_html(content_type: str, body: bytes = b"") -> bool:
    head = body[:200].lstrip().lower()
    return "text/html" in content_type or head.startswith((b"<!doctype html", b"<html"))


class RemoteEngine:
    """An Engine whose model runs on an OpenAI-compatible server."""

    max_connections = 4  # requests of this process at the server at once

    def __init__(self, config: BackendConfig, *, environ: Mapping[str, str] = os.environ):
        if config.structured not in STRUCTURED_MODES:
            raise EngineError(f"{config.setting('structured')} is {config.structured!r}; "
                              f"use one of {', '.join(STRUCTURED_MODES)}")
        self.config = config
        self._environ = environ
        self.url = config.url.rstrip("/")
        self.root = _root_url(self.url)
        self.shown_url = _display_url(self.url)
        self.breaker = CircuitBreaker(config.breaker_failures, config.breaker_reset_s)
        self.capabilities = Capabilities()
        self.model: str | None = config.model
        self.connected = False
        self.info: ModelInfo = self._make_info()  # a RemoteModelInfo
        self._key: str | None = None
        self._key_loaded = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._client: httpx.AsyncClient | None = None
        self._start_lock = threading.Lock()
        self._token_counts: dict[str, int] = {}
        self._grammar_checks: dict[str, str | None] = {}

    # ---- messages -------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        if self._key:
            text = text.replace(self._key, "[redacted]")
        return text

    def _said(self, body: bytes) -> str:
        return _server_message(body, self._key)

    def _error(self, what: str, hint: str = "", kind: type[EngineError] = EngineError) -> EngineError:
        text = f"backend '{self.config.name}' ({self.shown_url}): {what}"
        if hint:
            text += f" — {hint}"
        return kind(self._scrub(text))

    def _key_hint(self) -> str:
        cfg = self.config
        if cfg.api_key_env:
            return f"check {cfg.setting('api_key_env')} ({cfg.api_key_env})"
        if cfg.api_key_command:
            return f"check {cfg.setting('api_key_command')}"
        return (f"the server wants an API key: set {cfg.setting('api_key_env')} or "
                f"{cfg.setting('api_key_command')}")

    def _make_info(self) -> RemoteModelInfo:
        caps = self.capabilities
        name = self.model or "?"
        context = self.config.context_length or caps.context_length or DEFAULT_CONTEXT
        if caps.has_chat_template:
            template: str | None = GENERIC_CHAT_TEMPLATE
        else:
            template = None
        structured = self._structured_mode(grammar=True)
        return RemoteModelInfo(
            name=name, path=f"{self.config.name}: {self.shown_url}", file_size=0,
            architecture=f"remote ({caps.server})", context_length=context,
            trained_context_length=caps.trained_context_length, chat_template=template,
            warnings=list(caps.warnings), backend=self.config.name, url=self.shown_url,
            server=caps.server, structured=structured,
            server_chat_template=caps.chat_template)

    # ---- the API key ----------------------------------------------------------

    def _api_key(self) -> str | None:
        if self._key_loaded:
            return self._key
        cfg = self.config
        key: str | None = None
        if cfg.api_key_env:
            key = self._environ.get(cfg.api_key_env) or None
            if key is None and not cfg.api_key_command:
                raise self._error(f"{cfg.setting('api_key_env')} names {cfg.api_key_env}, "
                                  "which is not set (or empty) in Hearth's environment",
                                  "set it before starting the editor, or use "
                                  f"{cfg.setting('api_key_command')}")
        source = cfg.setting("api_key_env")
        if key is None and cfg.api_key_command:
            key, source = self._run_key_command(cfg.api_key_command), cfg.setting(
                "api_key_command")
        key = key.strip() if key else None
        if key is not None and not _HEADER_TOKEN.fullmatch(key):
            # Never quoted: httpx's own refusal quoted the whole header, key and all, and
            # it reached the editor and the log.
            raise self._error(f"the API key from {source} holds a space, a line break or a "
                              "character outside ASCII, which an HTTP header cannot carry",
                              "it should be the key alone, on one line")
        self._key, self._key_loaded = key, True
        return self._key

    def _run_key_command(self, command: str) -> str:
        setting = self.config.setting("api_key_command")
        try:
            argv = shlex.split(command)
        except ValueError as exc:
            raise self._error(f"{setting} cannot be split into words ({exc})") from None
        if not argv:
            raise self._error(f"{setting} is empty")
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=30,
                                  stdin=subprocess.DEVNULL, env=dict(self._environ), check=False)
        except FileNotFoundError:
            raise self._error(f"{setting}: {argv[0]} was not found") from None
        except subprocess.TimeoutExpired:
            raise self._error(f"{setting} did not finish within 30 s") from None
        except OSError as exc:
            raise self._error(f"{setting} could not run ({exc.strerror})") from None
        # The first line: `pass show` prints the password there, then notes (user
        # names, URLs) on the lines below.
        key = next((line.strip() for line in done.stdout.splitlines() if line.strip()), "")
        # Neither stdout nor stderr is quoted: either may hold the key.
        if done.returncode != 0:
            raise self._error(f"{setting} failed with exit status {done.returncode}")
        if not key:
            raise self._error(f"{setting} printed nothing")
        return key

    def _headers(self) -> dict[str, str]:
        key = self._api_key()
        return {"Authorization": f"Bearer {key}"} if key else {}

    # ---- the loop thread ------------------------------------------------------

    def _start(self) -> asyncio.AbstractEventLoop:
        with self._start_lock:
            if self._loop is not None:
                return self._loop
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                loop.run_forever()

            thread = threading.Thread(target=run, name=f"hearth-backend-{self.config.name}",
                                      daemon=True)
            thread.start()
            ready.wait()
            cfg = self.config

            async def make_client() -> httpx.AsyncClient:
                # trust_env=False: no proxy variables or .netrc credentials sneak in.
                return httpx.AsyncClient(
                    timeout=httpx.Timeout(connect=cfg.connect_timeout_s, read=None,
                                          write=max(cfg.connect_timeout_s, 10.0),
                                          pool=cfg.connect_timeout_s),
                    limits=httpx.Limits(max_connections=self.max_connections,
                                        max_keepalive_connections=2),
                    trust_env=False, follow_redirects=False,
                    verify=verify(self.url))

            self._client = asyncio.run_coroutine_threadsafe(make_client(), loop).result()
            self._loop, self._thread = loop, thread
            return loop

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        loop = self._start()
        future = asyncio.run_coroutine_threadsafe(coro, loop)
        try:
            return future.result(timeout)
        except BaseException:
            future.cancel()
            raise

    # ---- one HTTP exchange ----------------------------------------------------

    async def _get_json(self, url: str, *, what: str, timeout: float,
                        method: str = "GET", body: Any = None) -> Any:
        """GET (or POST) ``url`` for JSON; every failure is a _Failure with a clear error."""
        assert self._client is not None
        cfg = self.config
        request = self._client.build_request(method, url, headers=self._headers(), json=body)

        async def exchange() -> tuple[httpx.Response, bytes, bool]:
            response = await self._client.send(request, stream=True)  # type: ignore[union-attr]
            try:
                limit = ERROR_BODY_MAX if response.status_code >= 300 else BODY_MAX
                raw, more = await _read_body(response, limit)
            finally:
                await response.aclose()
            return response, raw, more

        try:
            response, raw, more = await asyncio.wait_for(exchange(), timeout)
        except (asyncio.TimeoutError, httpx.TimeoutException):
            # Not retried: a server that takes connections and never answers (wedged, a
            # dead tunnel) cost (retries + 1) x the timeout before the next backend ran.
            raise _Failure(self._error(
                f"{what}: no answer within {timeout:g} s",
                f"is the server overloaded? check {cfg.setting('url')}", BackendUnavailable),
                retry=False, counts=True) from None
        except httpx.TransportError as exc:
            raise self._transport_failure(exc, started=False) from None
        self._check_status(response.status_code, response.headers, raw, what)
        if _is_html(response.headers.get("content-type", ""), raw):
            raise _Failure(self._error(
                f"{what} answered with an HTML page, not the API",
                f"check {cfg.setting('url')}: it should be the API's base URL, usually ending "
                "in /v1"), retry=False, counts=False)
        if more:
            raise self._too_big(f"{what} answered with")
        try:
            return json.loads(raw)
        except ValueError:
            raise _Failure(self._error(
                f"{what} answered with something that is not JSON "
                f"({self._said(raw)!r})",
                f"check {cfg.setting('url')}"), retry=False, counts=False) from None

    def _too_big(self, what: str, tail: str = "") -> _Failure:
        return _Failure(self._error(
            f"{what} more than {BODY_MAX / (1024 * 1024):g} MiB{tail}",
            f"is {self.config.setting('url')} an OpenAI-compatible server?"),
            retry=False, counts=False)

    def _transport_failure(self, exc: httpx.TransportError, *, started: bool) -> _Failure:
        cfg = self.config
        reason = str(exc) or type(exc).__name__
        if isinstance(exc, httpx.ConnectTimeout):
            return _Failure(self._error(
                f"no connection within {cfg.connect_timeout_s:g} s",
                f"is the server running and reachable? check {cfg.setting('url')} "
                f"(or raise {cfg.setting('connect_timeout_s')})", BackendUnavailable),
                retry=True, counts=True)
        if isinstance(exc, httpx.ConnectError):
            # Refused or unreachable: nothing listens, and a retry a second later finds
            # the same. Failing at once lets the route's next backend answer within
            # milliseconds; the breaker then skips this one until breakerResetS.
            return _Failure(self._error(
                f"cannot connect ({reason})",
                f"is the server running? check {cfg.setting('url')}", BackendUnavailable),
                retry=False, counts=True)
        if started:
            return _Failure(self._error(
                f"the stream was cut in the middle ({reason})",
                "the server or a proxy closed the connection; the answer is incomplete"),
                retry=False, counts=True)
        return _Failure(self._error(
            f"the connection failed before an answer ({reason})",
            f"check the server's log and {cfg.setting('url')}", BackendUnavailable),
            retry=True, counts=True)

    def _check_status(self, status: int, headers: httpx.Headers, body: bytes, what: str) -> None:
        if status < 300:
            return
        cfg = self.config
        if status < 400:
            # Not followed: the API key would go along to wherever it points.
            where = headers.get("location")
            to = f" to {_display_url(where)}" if where else ""
            raise _Failure(self._error(
                f"{what}: {status} {httpx.codes.get_reason_phrase(status)}: redirected{to}",
                f"set {cfg.setting('url')} to the address it points to: Hearth does not follow "
                "redirects, so the API key goes to no other address"),
                retry=False, counts=False)
        reason = httpx.codes.get_reason_phrase(status)
        said = self._said(body) if not _is_html(headers.get("content-type", ""), body) else ""
        detail = f"{status} {reason}" + (f" ({said})" if said else "")
        if status in (401, 403):
            if cfg.api_key_command:  # a rotated token: run the command again next time
                self._key_loaded = False
            raise _Failure(self._error(f"{what}: {detail}", self._key_hint()),
                           retry=False, counts=False)
        if status == 404:
            if "model" in said.lower():
                hint = f"check {cfg.setting('model')} ({self.model or 'the first model'})"
            else:
                hint = (f"check {cfg.setting('url')}: it should be the API's base URL, usually "
                        "ending in /v1")
            raise _Failure(self._error(f"{what}: {detail}", hint), retry=False, counts=False)
        if status == 429:
            after = _retry_after(headers.get("retry-after"))
            wait = f"; the server asks to wait {after:.0f} s" if after is not None else ""
            raise _Failure(self._error(
                f"{what}: {detail}: rate limited{wait}",
                f"try again later, or raise {cfg.setting('retries')}", BackendUnavailable),
                retry=after is None or after <= RETRY_AFTER_MAX_S, counts=False,
                retry_after=after)
        if status in (408, 425) or status >= 500:
            # A Retry-After past RETRY_AFTER_MAX_S is not waited for (it slept an hour
            # on a 503 that asked so, and the route's next backend never got the task).
            after = _retry_after(headers.get("retry-after"))
            wait = f"; the server asks to wait {after:.0f} s" if after is not None else ""
            raise _Failure(self._error(
                f"{what}: {detail}{wait}", "the server failed; check its log",
                BackendUnavailable), retry=after is None or after <= RETRY_AFTER_MAX_S,
                counts=True, retry_after=after)
        hint = ""
        if any(w in said.lower() for w in ("grammar", "schema", "structured", "guided")):
            hint = f"the server refused the constraint; try {cfg.setting('structured')} = \"none\""
        elif any(w in said.lower() for w in ("context", "too long", "max_tokens", "maximum")):
            hint = "the prompt is too long for the server's context; shorten the input"
        raise _Failure(self._error(f"{what}: {detail}", hint), retry=False, counts=False)

    async def _with_retries(self, attempt: Callable[[], Coroutine[Any, Any, T]],
                            stream: _Stream | None = None) -> T:
        """Run ``attempt`` through the breaker, retrying failures before the first token."""
        cfg = self.config
        probe = self.breaker.admit()
        if probe is None:
            raise self._error(
                f"skipped: the last {max(cfg.breaker_failures, 1)} calls failed, the next try "
                f"is in {self.breaker.retry_in():.0f} s",
                f"start the server or check {cfg.setting('url')}; "
                f"{cfg.setting('breaker_reset_s')} sets the pause", BackendUnavailable)
        attempts = 1 if probe else max(0, cfg.retries) + 1
        verdict = False
        try:
            for n in range(attempts):
                try:
                    result = await attempt()
                except _Failure as failure:
                    started = stream is not None and stream.started
                    if failure.retry and not started and n + 1 < attempts:
                        wait = self._backoff(n, failure.retry_after)
                        log.warning("%s; retrying in %.1f s (attempt %d of %d)",
                                    failure.error, wait, n + 2, attempts)
                        await asyncio.sleep(wait)
                        continue
                    verdict = True
                    if failure.counts:
                        self.breaker.failure()
                    else:  # the server answered: it is up
                        self.breaker.success()
                    error = failure.error
                    if n:
                        error = type(error)(f"{error} (after {n + 1} attempts)")
                    raise error from None
                verdict = True
                self.breaker.success()
                return result
            raise AssertionError("unreachable")  # pragma: no cover
        finally:
            if not verdict:
                self.breaker.release(probe)

    @staticmethod
    def _backoff(n: int, retry_after: float | None) -> float:
        base = min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** n)
        wait = base + random.uniform(0, base)
        return max(wait, retry_after) if retry_after is not None else wait

    # ---- connect and capabilities ---------------------------------------------

    def connect(self) -> ModelInfo:
        """Read /v1/models, pick the model, probe the server's kind and capabilities."""
        self._api_key()  # a missing key variable is a clear error before any request
        self._run(self._with_retries(self._connect_once))
        self.connected = True
        self.info = self._make_info()
        log.info("backend '%s' (%s): %s", self.config.name, self.shown_url, self.info.describe())
        for warning in self.info.warnings:
            log.warning("backend '%s': %s", self.config.name, warning)
        return self.info

    async def _connect_once(self) -> None:
        cfg = self.config
        probe_timeout = max(cfg.connect_timeout_s, min(cfg.first_token_timeout_s, 30.0))
        listing = await self._get_json(f"{self.url}/models", what="GET /models",
                                       timeout=probe_timeout)
        data = listing.get("data") if isinstance(listing, dict) else None
        if not isinstance(data, list):
            raise _Failure(self._error(
                "GET /models did not answer with a model list",
                f"check {cfg.setting('url')}: is this an OpenAI-compatible server?"),
                retry=False, counts=False)
        models = [m for m in data if isinstance(m, dict) and isinstance(m.get("id"), str)]
        ids = [m["id"] for m in models]
        if cfg.model is not None and cfg.model not in ids:
            offered = ", ".join(ids[:10]) or "none"
            raise _Failure(self._error(
                f"the server has no model {cfg.model!r} (it offers: {offered})",
                f"check {cfg.setting('model')}"), retry=False, counts=False)
        if not ids:
            raise _Failure(self._error("the server offers no model",
                                       "load one on the server"), retry=False, counts=False)
        self.model = cfg.model or ids[0]
        entry = models[ids.index(self.model)]
        caps = Capabilities()
        if isinstance(entry.get("max_model_len"), int):  # vLLM
            caps.context_length = entry["max_model_len"]
        meta = entry.get("meta")
        if isinstance(meta, dict) and isinstance(meta.get("n_ctx_train"), int):  # llama-server
            caps.trained_context_length = meta["n_ctx_train"]
        await self._probe(caps, probe_timeout)
        self._settle(caps)
        self.capabilities = caps

    async def _probe_json(self, path: str, timeout: float, method: str = "GET",
                          body: Any = None) -> Any:
        """JSON from a probe, or None: probes that fail only mean 'not this kind'."""
        try:
            return await self._get_json(f"{self.root}{path}", what=f"{method} {path}",
                                        timeout=timeout, method=method, body=body)
        except _Failure:
            return None

    async def _probe(self, caps: Capabilities, timeout: float) -> None:
        props = await self._probe_json("/props", timeout)
        if isinstance(props, dict) and ("default_generation_settings" in props
                                        or "build_info" in props):
            caps.server = "llama-server"
            settings = props.get("default_generation_settings") or {}
            n_ctx = props.get("n_ctx", settings.get("n_ctx") if isinstance(settings, dict) else None)
            if isinstance(n_ctx, int) and n_ctx > 0:
                caps.context_length = n_ctx
            template = props.get("chat_template")
            if isinstance(template, str):
                caps.chat_template = template or None
                caps.has_chat_template = bool(template)
            caps.grammar_field, caps.schema_field = "grammar", "json_schema"
            caps.chat_schema_field = "response_format"
            caps.extra_sampling, caps.tokenize = True, "llama-server"
            return
        spec = await self._probe_json("/openapi.json", timeout)
        if isinstance(spec, dict) and isinstance(spec.get("paths"), dict):
            paths = spec["paths"]
            props_of = self._request_properties(spec)
            if "/extras/tokenize/count" in paths or "/extras/tokenize" in paths:
                caps.server = "llama-cpp-python"
                caps.extra_sampling, caps.tokenize = True, "llama-cpp-python"
                if "grammar" in props_of:
                    caps.grammar_field = "grammar"
                if "response_format" in props_of:
                    caps.chat_schema_field = "response_format"
                return
            if "/tokenize" in paths and ("/version" in paths or "/health" in paths):
                caps.server = "vllm"
                caps.extra_sampling, caps.tokenize = True, "vllm"
                if "structured_outputs" in props_of:
                    caps.grammar_field = caps.schema_field = "structured_outputs"
                elif "guided_grammar" in props_of:
                    caps.grammar_field, caps.schema_field = "guided_grammar", "guided_json"
                caps.chat_schema_field = "response_format"
                return
        version = await self._probe_json("/api/version", timeout)
        if isinstance(version, dict) and "version" in version:
            caps.server = "ollama"
            caps.chat_schema_field = "response_format"
            shown = await self._probe_json("/api/show", timeout, "POST", {"model": self.model})
            if isinstance(shown, dict):
                info = shown.get("model_info") or {}
                trained = [v for k, v in info.items()
                           if k.endswith(".context_length") and isinstance(v, int)]
                if trained:
                    caps.trained_context_length = trained[0]
                match = re.search(r"^num_ctx\s+(\d+)", str(shown.get("parameters") or ""), re.M)
                if match:
                    caps.context_length = int(match.group(1))
                if "template" in shown:
                    caps.has_chat_template = bool(shown.get("template"))
            return
        caps.server = "openai"
        caps.chat_schema_field = "response_format"
        caps.max_stops = 4

    @staticmethod
    def _request_properties(spec: dict) -> set[str]:
        """Every property name of the completion request schemas in an OpenAPI document."""
        names: set[str] = set()
        schemas = (spec.get("components") or {}).get("schemas") or {}
        for title, schema in schemas.items():
            if "Completion" in title and "Request" in title and isinstance(schema, dict):
                names.update((schema.get("properties") or {}).keys())
        return names

    def _settle(self, caps: Capabilities) -> None:
        cfg = self.config
        if cfg.context_length is None and caps.context_length is None:
            caps.warnings.append(
                f"the server does not say its context length; assuming {DEFAULT_CONTEXT} "
                f"tokens (set {cfg.setting('context_length')})")
        if cfg.structured == "auto" and caps.grammar_field is None:
            caps.warnings.append(
                f"{caps.server} takes no grammar: answers are not constrained while sampling, "
                "only validated afterwards")

    def _structured_mode(self, *, grammar: bool) -> str:
        """What a grammar (or a JSON schema) becomes on this server."""
        mode = self.config.structured
        caps = self.capabilities
        if mode != "auto":
            return mode
        if grammar and caps.grammar_field:
            return "grammar"
        if not grammar and (caps.schema_field or caps.chat_schema_field):
            return "json_schema"
        return "none"

    # ---- generation -----------------------------------------------------------

    def _body(self, prompt: str, messages: list[Message] | None, sampling: SamplingSettings,
              stop: list[str], grammar: str | None,
              json_schema: dict | None) -> tuple[str, dict[str, Any]]:
        caps = self.capabilities
        body: dict[str, Any] = {"model": self.model, "stream": True,
                                "max_tokens": sampling.max_tokens,
                                "temperature": sampling.temperature, "top_p": sampling.top_p}
        if messages is not None:
            path = "/chat/completions"
            body["messages"] = [{"role": m.role, "content": m.content} for m in messages]
        else:
            path = "/completions"
            body["prompt"] = prompt
        stops = [s for s in dict.fromkeys([*stop, *sampling.stop]) if s]
        if stops:
            body["stop"] = stops[: caps.max_stops] if caps.max_stops else stops
        if sampling.seed >= 0:
            body["seed"] = sampling.seed
        if caps.extra_sampling:
            body["min_p"] = sampling.min_p
            if caps.server == "vllm":
                body["top_k"] = sampling.top_k or -1
                body["repetition_penalty"] = sampling.repeat_penalty
            else:
                body["top_k"] = sampling.top_k
                body["repeat_penalty"] = sampling.repeat_penalty
        if caps.server in ("vllm", "openai", "llama-server"):
            body["stream_options"] = {"include_usage": True}
        self._constrain(body, chat=messages is not None, grammar=grammar, json_schema=json_schema)
        return path, body

    def _constrain(self, body: dict[str, Any], *, chat: bool, grammar: str | None,
                   json_schema: dict | None) -> None:
        caps = self.capabilities
        if grammar and self._structured_mode(grammar=True) == "grammar":
            fieldname = caps.grammar_field or "grammar"
            if fieldname == "structured_outputs":
                body["structured_outputs"] = {"grammar": grammar}
            else:
                body[fieldname] = grammar
            return
        if json_schema is None or self._structured_mode(grammar=False) != "json_schema":
            return
        if caps.schema_field == "structured_outputs":
            body["structured_outputs"] = {"json": json_schema}
        elif caps.schema_field and (not chat or caps.server != "llama-server"):
            body[caps.schema_field] = json_schema  # json_schema, guided_json
        elif chat and caps.server == "llama-cpp-python":
            body["response_format"] = {"type": "json_object", "schema": json_schema}
        elif chat:
            body["response_format"] = {"type": "json_schema", "json_schema": {
                "name": "answer", "schema": json_schema}}

    def generate(self, prompt: str, sampling: SamplingSettings, stop: list[str],
                 should_stop: Callable[[], bool], on_piece: Callable[[str], None],
                 grammar: str | None = None, start: str | None = None,
                 messages: list[Message] | None = None,
                 json_schema: dict | None = None) -> Completion:
        """Stream one answer; ``messages`` go to /chat/completions, else ``prompt`` to /completions.

        ``start`` (a first-token regex) has no remote equivalent and is ignored.
        """
        started = time.perf_counter()
        if not self.connected:
            self.connect()
        self._api_key()  # here, not on the loop: a key command may take a while
        path, body = self._body(prompt, messages, sampling, stop, grammar, json_schema)
        if grammar and self._structured_mode(grammar=True) == "grammar":  # it will be sent
            self._check_grammar(grammar)
        loop = self._start()
        stream = _Stream()
        finished = threading.Event()

        async def launch() -> asyncio.Task:
            task = asyncio.ensure_future(self._generate_task(path, body, stream))
            task.add_done_callback(lambda _t: finished.set())
            return task

        task = asyncio.run_coroutine_threadsafe(launch(), loop).result()
        scanner = _StopScanner([*stop, *sampling.stop])
        pieces: list[str] = []
        chunks = 0
        first = 0.0
        finish = "stop"
        usage: dict[str, Any] = {}
        error: BaseException | None = None
        try:
            while True:
                if should_stop():
                    finish = "cancelled"
                    break
                try:
                    kind, value = stream.events.get(timeout=POLL_S)
                except queue.Empty:
                    continue
                if kind == "piece":
                    chunks += 1
                    if not first:
                        first = time.perf_counter() - started
                    text, hit = scanner.feed(value)
                    if text:
                        pieces.append(text)
                        on_piece(text)
                    if hit:
                        finish = "stop"
                        break
                elif kind == "finish":
                    finish = value
                elif kind == "usage":
                    usage = value
                elif kind == "error":
                    error = value
                    break
                elif kind == "end":
                    tail = scanner.flush()
                    if tail:
                        pieces.append(tail)
                        on_piece(tail)
                    break
        finally:
            if not finished.is_set():  # cancelled, a stop string, or on_piece raised
                stream.cancelled = True
                give_up = time.monotonic() + 2.0
                while not finished.is_set() and time.monotonic() < give_up:
                    loop.call_soon_threadsafe(task.cancel)
                    finished.wait(0.05)
        if error is not None:
            raise error
        text = "".join(pieces)
        prompt_tokens = usage.get("prompt_tokens")
        completion_tokens = usage.get("completion_tokens")
        if not isinstance(prompt_tokens, int):
            prompt_tokens = self._estimate(prompt if messages is None else
                                           "\n".join(m.content for m in messages))
        if not isinstance(completion_tokens, int) or finish == "cancelled":
            completion_tokens = chunks
        return Completion(text, prompt_tokens, completion_tokens, first,
                          time.perf_counter() - started, finish)

    async def _generate_task(self, path: str, body: dict[str, Any], stream: _Stream) -> None:
        try:
            await self._with_retries(lambda: self._attempt(path, body, stream), stream)
        except EngineError as exc:
            stream.events.put(("error", exc))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug here must still reach the worker as an EngineError
            log.exception("backend '%s': generation failed", self.config.name)
            stream.events.put(("error", self._error(f"generation failed: {type(exc).__name__}")))
        else:
            stream.events.put(("end", None))

    async def _attempt(self, path: str, body: dict[str, Any], stream: _Stream) -> None:
        assert self._client is not None
        cfg = self.config
        what = f"POST {path}"
        began = time.monotonic()
        deadline = began + cfg.first_token_timeout_s

        def first_token_timeout() -> _Failure:
            return _Failure(self._error(
                f"no answer within {cfg.first_token_timeout_s:g} s",
                f"the server is busy or slow; raise {cfg.setting('first_token_timeout_s')}",
                BackendUnavailable), retry=False, counts=True)

        request = self._client.build_request("POST", f"{self.url}{path}", json=body,
                                             headers=self._headers())
        try:
            response = await asyncio.wait_for(self._client.send(request, stream=True),
                                              max(0.0, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            raise first_token_timeout() from None
        except httpx.TransportError as exc:
            raise self._transport_failure(exc, started=False) from None
        try:
            if stream.cancelled:
                raise asyncio.CancelledError
            content_type = response.headers.get("content-type", "")
            if response.status_code >= 300:
                try:
                    raw, _ = await asyncio.wait_for(_read_body(response, ERROR_BODY_MAX),
                                                    max(0.0, deadline - time.monotonic()))
                except asyncio.TimeoutError:
                    raise first_token_timeout() from None
                except httpx.TransportError as exc:
                    raise self._transport_failure(exc, started=False) from None
                self._check_status(response.status_code, response.headers, raw, what)
            # Not by its Content-Type: servers send streams without text/event-stream (a
            # bare StreamingResponse, a proxy that rewrote it) and errors with it.
            # _read_events tells an event stream from one JSON answer by its first line.
            await self._read_stream(response, stream, deadline, what, content_type)
        finally:
            # Shielded: the worker cancels this task again while it closes, and a close
            # cut short leaves the socket open, so the server never learns that its
            # client left and generates on to max_tokens.
            await asyncio.shield(response.aclose())

    def _single_answer(self, raw: bytes, content_type: str, what: str, stream: _Stream) -> None:
        """A 200 that is not a stream: one JSON answer (a server that ignores stream=true)."""
        cfg = self.config
        if _is_html(content_type, raw):
            raise _Failure(self._error(
                f"{what} answered with an HTML page, not the API",
                f"check {cfg.setting('url')}: it should be the API's base URL, usually ending "
                "in /v1"), retry=False, counts=False)
        try:
            data = json.loads(raw)
        except ValueError:
            raise _Failure(self._error(
                f"{what} answered with something that is neither a stream nor JSON "
                f"({self._said(raw)!r})", f"check {cfg.setting('url')}"),
                retry=False, counts=False) from None
        stream.started = True
        self._event(data, stream, what)
        if not stream.finish_seen:
            raise _Failure(self._error(
                f"{what} answered with JSON that holds no completion "
                f"({self._said(raw)!r})", f"check {cfg.setting('url')}"),
                retry=False, counts=False)

    async def _read_stream(self, response: httpx.Response, stream: _Stream,
                           deadline: float, what: str, content_type: str) -> None:
        lines = _lines(response, BODY_MAX)
        try:
            await self._read_events(lines, stream, deadline, what, content_type)
        except _TooLong:
            raise self._too_big(f"{what} sent", " in one event") from None
        finally:
            with contextlib.suppress(Exception):
                await lines.aclose()

    async def _read_events(self, lines: AsyncIterator[str], stream: _Stream, deadline: float,
                           what: str, content_type: str) -> None:
        cfg = self.config
        data: list[str] = []
        size = 0  # of the event's data so far
        bare: list[str] | None = None  # a body that is not an event stream
        finished = False
        last = time.monotonic()
        while True:
            if stream.finish_seen:  # only the usage and [DONE] are to come
                limit = last + FINISH_GRACE_S
            else:
                limit = last + cfg.between_tokens_timeout_s if stream.started else deadline
            try:
                line = await asyncio.wait_for(lines.__anext__(),
                                              max(0.0, limit - time.monotonic()))
            except StopAsyncIteration:
                break
            except asyncio.TimeoutError:
                if stream.finish_seen:  # a server that never sends [DONE] nor closes
                    break
                if stream.started:
                    raise _Failure(self._error(
                        f"no token for {cfg.between_tokens_timeout_s:g} s in the middle of "
                        "the answer",
                        f"the server stalled; raise {cfg.setting('between_tokens_timeout_s')}"),
                        retry=False, counts=True) from None
                raise _Failure(self._error(
                    f"no answer within {cfg.first_token_timeout_s:g} s",
                    f"the server is busy or slow; raise {cfg.setting('first_token_timeout_s')}",
                    BackendUnavailable), retry=False, counts=True) from None
            except httpx.TransportError as exc:
                raise self._transport_failure(exc, started=stream.started) from None
            if stream.cancelled:
                raise asyncio.CancelledError
            if bare is None and not data and not stream.started and not _SSE_FIELD.match(line):
                bare = []
            if bare is not None:
                bare.append(line)
                size += len(line) + 1
                if size > BODY_MAX:
                    raise _TooLong
                continue
            if line.startswith(":"):  # a comment: keep-alive pings
                continue
            if line.startswith("data:"):
                data.append(line[5:].removeprefix(" "))
                size += len(line)
                if size > BODY_MAX:  # one event of endless data: lines
                    raise _TooLong
                continue
            if line.startswith("error:"):  # llama-server's in-stream error line
                said = self._said(line[6:].strip().encode())
                raise _Failure(self._error(f"{what}: the server reported an error: {said}"),
                               retry=False, counts=False)
            if line.strip():
                continue  # event:, id:, retry: fields
            if data:
                if self._dispatch(data, stream, what):
                    finished = True
                    break
                last = time.monotonic()
                data = []
                size = 0
        if bare is not None:
            self._single_answer("\n".join(bare).encode(), content_type, what, stream)
            return
        if data and not finished:
            if not _whole_event(data):  # the connection closed in the middle of an event
                raise self._transport_failure(httpx.RemoteProtocolError(
                    "the connection closed in the middle of an event"), started=stream.started)
            finished = self._dispatch(data, stream, what)
        if not finished and not stream.finish_seen:
            raise self._transport_failure(
                httpx.RemoteProtocolError("the stream ended before its last event"),
                started=stream.started)

    def _dispatch(self, data: list[str], stream: _Stream, what: str) -> bool:
        """Handle one SSE event; True at [DONE]."""
        text = "\n".join(data)
        data.clear()
        if text.strip() == "[DONE]":
            if not stream.finish_seen:
                raise _Failure(self._error(
                    "the server ended the answer without a finish reason (interrupted, "
                    "perhaps by another client's request)",
                    "try again; a llama-cpp-python server shared by several users should run "
                    "with --interrupt_requests false"), retry=False, counts=False)
            return True
        try:
            event = json.loads(text)
        except ValueError:
            raise _Failure(self._error(
                f"{what} sent an event that is not JSON ({self._said(text.encode())!r})",
                f"check {self.config.setting('url')}"), retry=False, counts=False) from None
        stream.started = True
        self._event(event, stream, what)
        return False

    def _event(self, event: Any, stream: _Stream, what: str) -> None:
        if not isinstance(event, dict):
            return
        if event.get("error"):  # (vLLM and others send "error": null in every event)
            said = self._said(json.dumps(event).encode())
            hint = ""
            if "model" in said.lower():
                hint = f"check {self.config.setting('model')}"
            raise _Failure(self._error(f"{what}: the server reported an error: {said}", hint),
                           retry=False, counts=False)
        usage = event.get("usage")
        if isinstance(usage, dict):
            stream.events.put(("usage", usage))
        choices = event.get("choices") or []
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            return
        choice = choices[0]
        piece = choice.get("text")
        if piece is None:
            delta = choice.get("delta") or choice.get("message") or {}
            piece = delta.get("content") if isinstance(delta, dict) else None
        if isinstance(piece, str) and piece:
            stream.events.put(("piece", piece))
        reason = choice.get("finish_reason")
        if reason:
            stream.finish_seen = True
            stream.events.put(("finish", "length" if reason == "length" else "stop"))

    def _check_grammar(self, text: str) -> None:
        """Refuse a grammar llama.cpp cannot parse before it leaves: llama-cpp-python's
        server crashes on one (a NULL sampler), others answer 400 mid-task.

        llama.cpp's own parser, without a vocabulary (no model is loaded for this).
        """
        if text not in self._grammar_checks:
            try:
                from .llama import grammar_problem, route_native_logs

                route_native_logs()
                problem = grammar_problem(text, None)
            except ImportError:  # pragma: no cover - llama-cpp-python is a dependency
                problem = None
            self._grammar_checks[text] = problem
        problem = self._grammar_checks[text]
        if problem is not None:
            raise self._error(f"{problem}; not sent to the server")

    # ---- tokens and the end ---------------------------------------------------

    @staticmethod
    def _estimate(text: str) -> int:
        return max(1, len(text) // 3) if text else 0

    def count_tokens(self, text: str) -> int:
        """The server's own count when it has a tokenize endpoint, else len/3."""
        caps = self.capabilities
        if not self.connected or caps.tokenize is None or self.breaker.state != "closed":
            return self._estimate(text)
        cached = self._token_counts.get(text)
        if cached is not None:
            return cached
        body: dict[str, Any]
        if caps.tokenize == "llama-cpp-python":
            path, body = "/extras/tokenize/count", {"input": text}
        elif caps.tokenize == "llama-server":
            path, body = "/tokenize", {"content": text}
        else:
            path, body = "/tokenize", {"model": self.model, "prompt": text}
        timeout = max(self.config.connect_timeout_s, 5.0)
        try:
            self._api_key()
            answer = self._run(self._get_json(f"{self.root}{path}", what=f"POST {path}",
                                              timeout=timeout, method="POST", body=body),
                               timeout + 1.0)
        except (_Failure, EngineError, TimeoutError, concurrent.futures.TimeoutError):
            return self._estimate(text)
        if isinstance(answer, dict) and isinstance(answer.get("count"), int):
            n = answer["count"]
        elif isinstance(answer, dict) and isinstance(answer.get("tokens"), list):
            n = len(answer["tokens"])
        else:
            return self._estimate(text)
        if len(self._token_counts) > 512:
            self._token_counts.clear()
        self._token_counts[text] = n
        return n

    def close(self) -> None:
        loop, thread, client = self._loop, self._thread, self._client
        if loop is None:
            return
        self._loop = self._thread = self._client = None

        async def shut() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if client is not None:
                await client.aclose()
            await loop.shutdown_asyncgens()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shut(), loop).result(timeout=5)
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(timeout=5)
        if not loop.is_running():
            loop.close()
        self.connected = False


__all__ = ["BackendConfig", "BackendUnavailable", "CircuitBreaker", "RemoteEngine",
           "RemoteModelInfo"]
