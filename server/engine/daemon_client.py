"""The shared model (``model.shared``): Hearth's daemon as this process's "local" model.

``shared_engine_factory`` finds the daemon for the configured model (its state file
in the cache dir), starts it detached when none runs, waits until its model is
loaded and returns a DaemonEngine: a RemoteEngine pointed at the daemon (its
streaming, and its cancel by closing the stream), whose ModelInfo is the daemon's
own (chat template, bos/eos, context length), so prompts render exactly as for a
model in this process. Each generation carries its job's priority: the daemon's one
queue orders every client's jobs (a window's user action before another window's
review on save, before the git hook).

When the daemon cannot be started or reached (after one restart), a client given a
``fallback`` loads the model in its own process instead, says so (a log line and a
ModelInfo warning) and goes on; a job cut off by a dying daemon is retried once, on
the restarted daemon or in-process.

shared_worker.SharedWorker is the generation worker for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..chat_format import Message
from ..daemon_files import (
    DaemonFiles,
    DaemonState,
    daemon_key,
    file_lock,
    model_config,
    pid_alive,
    read_state,
)
from ..settings import BackendSettings, ModelSettings, SamplingSettings, Settings
from .base import Completion, Engine, EngineError, ModelInfo, ModelUnavailable
from .httpx_import import httpx, verify
from .remote import BackendUnavailable, Capabilities, RemoteEngine, _Failure
from .worker import Priority

log = logging.getLogger(__name__)

# How long a client waits for a daemon it started to listen, and for its model.
START_TIMEOUT_S = 60.0
LOAD_TIMEOUT_S = 900.0
# For tests: a script to run instead of `python -m hearth_lsp.server.daemon_cli`
# (tests/fake_daemon.py serves a scripted engine).
SCRIPT_ENV = "HEARTHD_SCRIPT"


class DaemonUnavailable(ModelUnavailable):
    """The shared model daemon could not be started or reached; the message says why."""


# A model loaded in this process instead of the daemon's (``fallback``).
Fallback = Callable[[], Engine]


def fallback_notice(reason: BaseException | str) -> str:
    return (f"the shared model daemon is not available ({reason}); the model is loaded in "
            "this process instead (set model.shared = false to skip the daemon)")


class _Resume:
    """The pieces of a retried answer: what the cut attempt already handed on is not
    handed on twice (only what comes after it; nothing more when the retry differs)."""

    def __init__(self, on_piece: Callable[[str], None], sent: str) -> None:
        self.on_piece, self.sent, self.seen, self.diverged = on_piece, sent, "", False

    def feed(self, piece: str) -> None:
        before = len(self.seen)
        self.seen += piece
        if self.diverged:
            return
        if not (self.seen.startswith(self.sent) or self.sent.startswith(self.seen)):
            self.diverged = True
            log.warning("the retried answer differs from the part already streamed; "
                        "the rest is not streamed (the result holds it whole)")
            return
        if len(self.seen) > len(self.sent):
            self.on_piece(self.seen[max(before, len(self.sent)):])


@dataclass
class DaemonModelInfo(ModelInfo):
    """The daemon's ModelInfo, plus where it runs."""

    daemon_pid: int = 0
    daemon_url: str = ""
    daemon_loads: int = 0

    @property
    def where(self) -> str:
        own = ModelInfo.where.fget(self)  # type: ignore[attr-defined]
        return f"{own}, shared daemon pid {self.daemon_pid}"


def _model_info(data: dict[str, Any], state: DaemonState, loads: int) -> DaemonModelInfo:
    known = {f.name for f in dataclasses.fields(ModelInfo)}
    fields = {k: v for k, v in data.items() if k in known}
    return DaemonModelInfo(**fields, daemon_pid=state.pid, daemon_url=state.root,
                           daemon_loads=loads)


# ------------------------------------------------------------ finding / starting

def daemon_command(config: dict[str, Any], idle_s: int) -> list[str]:
    import json

    script = os.environ.get(SCRIPT_ENV)
    head = [sys.executable, script] if script else \
        [sys.executable, "-m", "hearth_lsp.server.daemon_cli"]
    return [*head, "--model-json", json.dumps(config), "--idle-s", str(idle_s)]


def _answers(state: DaemonState, timeout: float = 2.0) -> dict[str, Any] | None:
    """The daemon's /hearth/info, or None when it does not answer with our token."""
    try:
        response = httpx.get(f"{state.root}/hearth/info", timeout=timeout, trust_env=False,
                             headers={"Authorization": f"Bearer {state.token}"},
                             verify=verify(state.root))
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    try:
        data = response.json()
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _reaper(process: subprocess.Popen) -> None:
    """Wait for a daemon this process started, so that it leaves no zombie."""
    threading.Thread(target=process.wait, name="hearth-daemon-reaper", daemon=True).start()


def _log_tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text[-lines:])


def ensure_daemon(model: ModelSettings, cache: Path, *, idle_s: int = 900,
                  start: bool = True, timeout: float = START_TIMEOUT_S) -> DaemonState:
    """The running daemon for ``model`` (started, detached, if none answers)."""
    key = daemon_key(model)
    files = DaemonFiles.of(cache, key)
    state = read_state(files.state)
    if state is not None and pid_alive(state.pid) and _answers(state) is not None:
        return state
    if not start:
        raise DaemonUnavailable(f"no hearth daemon runs for this model (state: {files.state})")
    # One client starts it; the others wait on the lock and then find it running.
    with file_lock(files.spawn):
        state = read_state(files.state)
        if state is not None and pid_alive(state.pid) and _answers(state) is not None:
            return state
        stale = state
        command = daemon_command(model_config(model), idle_s)
        log.info("starting the shared model daemon: %s", " ".join(command[:4]))
        with open(files.log, "ab") as err:
            os.chmod(files.log, 0o600)
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                start_new_session=True, close_fds=True, cwd=str(cache))
        _reaper(process)
        deadline = time.monotonic() + timeout
        while True:
            state = read_state(files.state)
            if state is not None and state != stale and pid_alive(state.pid) \
                    and _answers(state) is not None:
                log.info("shared model daemon pid %d at %s", state.pid, state.url)
                return state
            code = process.poll()
            if code is not None:
                # Another daemon holding the lock answers 0 and leaves its state file.
                if code == 0 and state is not None and _answers(state) is not None:
                    return state
                tail = _log_tail(files.log)
                raise DaemonUnavailable(
                    f"the shared model daemon did not start (exit status {code})"
                    + (f": {tail}" if tail else "")
                    + f" — see {files.log}, or set model.shared = false to load the model "
                    "in this process")
            if time.monotonic() > deadline:
                with contextlib.suppress(OSError):
                    process.terminate()
                raise DaemonUnavailable(
                    f"the shared model daemon did not answer within {timeout:g} s — see "
                    f"{files.log}, or set model.shared = false")
            time.sleep(0.05)


# ---------------------------------------------------------------------- engine

def _backend_config(state: DaemonState, context: int | None = None) -> BackendSettings:
    # One daemon, no fallback to wait for: no retries or breaker (a dead daemon is
    # started again instead), and long waits, as a background job may queue a while.
    return BackendSettings(name="daemon", url=state.url, structured="grammar",
                           connect_timeout_s=5.0, first_token_timeout_s=LOAD_TIMEOUT_S,
                           between_tokens_timeout_s=300.0, retries=0, breaker_failures=0,
                           breaker_reset_s=1.0, context_length=context)


class DaemonEngine(RemoteEngine):
    """An Engine whose model is held by Hearth's daemon (see the module docstring)."""

    concurrent = True  # SharedWorker runs its generations side by side
    # SharedWorker's MAX_IN_FLIGHT less urgent jobs, and the user's and completions,
    # which never wait for room.
    max_connections = 16

    def __init__(self, state: DaemonState, *, model: ModelSettings | None = None,
                 cache: Path | None = None, idle_s: int = 900,
                 load_timeout_s: float = LOAD_TIMEOUT_S,
                 fallback: Fallback | None = None) -> None:
        self.state = state
        self._model_settings, self._cache, self._idle_s = model, cache, idle_s
        self.load_timeout_s = load_timeout_s
        self.daemon_info: dict[str, Any] = {}
        self._model_info: DaemonModelInfo | None = None
        self._local = threading.local()
        self.restarts = 0
        # The daemon out of reach: the model in this process (loaded once, then used by
        # every later job, one at a time), and who is told so.
        self._fallback = fallback
        self.in_process: Engine | None = None
        self.fallbacks = 0
        self.on_notice: Callable[[str], None] | None = None
        self._recover_lock = threading.Lock()
        self._in_process_lock = threading.Lock()
        super().__init__(_backend_config(state))

    # ---- the token and the info ------------------------------------------------

    def _api_key(self) -> str | None:
        self._key, self._key_loaded = self.state.token, True
        return self._key

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.state.token}",
                "X-Hearth-Client": f"pid {os.getpid()}"}

    def _make_info(self) -> Any:
        if self._model_info is not None:
            return self._model_info
        return super()._make_info()

    async def _connect_once(self) -> None:
        """/hearth/info until the daemon's model is loaded (asking for a reload once when
        it failed before: the file may have been fixed since)."""
        deadline = time.monotonic() + self.load_timeout_s
        reloaded = False
        while True:
            info = await self._get_json(f"{self.root}/hearth/info", what="GET /hearth/info",
                                        timeout=10.0)
            if not isinstance(info, dict):
                raise _Failure(self._error("GET /hearth/info did not answer with an object"),
                               retry=False, counts=False)
            state = info.get("state")
            if state == "ready" and isinstance(info.get("model"), dict):
                break
            if state == "error" or (state == "empty" and not reloaded):
                if reloaded:
                    raise _Failure(ModelUnavailable(
                        f"the shared model daemon (pid {self.state.pid}) cannot load the "
                        f"model: {info.get('error')}"), retry=False, counts=False)
                reloaded = True
                await self._get_json(f"{self.root}/hearth/reload", what="POST /hearth/reload",
                                     timeout=10.0, method="POST", body={})
            if time.monotonic() > deadline:
                raise _Failure(ModelUnavailable(
                    f"the shared model daemon (pid {self.state.pid}) has not loaded the model "
                    f"within {self.load_timeout_s:g} s"), retry=False, counts=False)
            await asyncio.sleep(0.1)
        self.daemon_info = info
        model = info["model"]
        self._model_info = _model_info(model, self.state, int(info.get("loads") or 0))
        self.model = self._model_info.name
        self.capabilities = Capabilities(
            server="hearth", grammar_field="grammar", extra_sampling=True,
            tokenize="llama-cpp-python", context_length=self._model_info.context_length,
            trained_context_length=self._model_info.trained_context_length,
            chat_template=self._model_info.chat_template,
            has_chat_template=bool(self._model_info.chat_template))

    def connect(self) -> ModelInfo:
        info = super().connect()
        self.info = info
        return info

    # ---- generation --------------------------------------------------------------

    def _body(self, prompt: str, messages: list[Message] | None, sampling: SamplingSettings,
              stop: list[str], grammar: str | None,
              json_schema: dict | None) -> tuple[str, dict[str, Any]]:
        path, body = super()._body(prompt, None, sampling, stop, grammar, json_schema)
        priority = getattr(self._local, "priority", Priority.USER)
        body["priority"] = int(priority)
        body["kind"] = getattr(self._local, "kind", "request")
        body["ref"] = getattr(self._local, "ref", None) or uuid.uuid4().hex
        start = getattr(self._local, "start", None)
        if start:
            body["start"] = start
        if grammar:  # the daemon's engine takes GBNF as the local one does
            body["grammar"] = grammar
        return path, body

    def _check_grammar(self, text: str) -> None:
        pass  # the daemon's llama.cpp checks it as an in-process one would

    def generate(self, prompt: str, sampling: SamplingSettings, stop: list[str],
                 should_stop: Callable[[], bool], on_piece: Callable[[str], None],
                 grammar: str | None = None, start: str | None = None,
                 messages: list[Message] | None = None, json_schema: dict | None = None,
                 *, priority: Priority = Priority.USER, kind: str = "request",
                 enough: Callable[[], bool] | None = None) -> Completion:
        """Generate at the daemon, with ``priority`` in its queue. ``enough``: whether
        ``should_stop`` stopping the answer means the caller has all it needs (the daemon
        is told, and counts the job as done rather than cancelled). A daemon that is gone
        (killed, idle-stopped, or dying in the middle of the answer) is started again and
        the job asked once more there; when it cannot be, and a ``fallback`` was given,
        the job (and every later one) runs on the model loaded in this process."""
        self._local.priority, self._local.start, self._local.kind = priority, start, kind
        self._local.ref = uuid.uuid4().hex  # the job's name at the daemon, for /hearth/enough
        if self.in_process is not None:
            return self._generate_in_process(prompt, sampling, stop, should_stop, on_piece,
                                             grammar, start)
        if enough is not None:
            should_stop = self._telling_enough(should_stop, enough)
        sent: list[str] = []

        def tee(piece: str) -> None:
            sent.append(piece)
            on_piece(piece)

        state = self.state
        try:
            return super().generate(prompt, sampling, stop, should_stop, tee, grammar,
                                    None, None, json_schema)
        except EngineError as exc:
            cut = "stream was cut" in str(exc)
            if should_stop() or not (cut or isinstance(exc, BackendUnavailable)) \
                    or _answers(state) is not None:
                raise self._cut(exc) if cut else self._gone(exc) if isinstance(
                    exc, BackendUnavailable) else exc from None
            failure: EngineError = exc
        resume = _Resume(on_piece, "".join(sent))
        log.warning("the shared model daemon (pid %d) is gone (%s); %s", state.pid, failure,
                    "starting it again" if self._restartable() else "no settings to restart it")
        if self._recover(state, failure, should_stop) == "daemon":
            try:  # once more, on the daemon started again
                return super().generate(prompt, sampling, stop, should_stop, resume.feed,
                                        grammar, None, None, json_schema)
            except BackendUnavailable as exc:
                raise self._gone(exc) from None
            except EngineError as exc:
                raise self._cut(exc) if "stream was cut" in str(exc) else exc from None
        return self._generate_in_process(prompt, sampling, stop, should_stop, resume.feed,
                                         grammar, start)

    def _telling_enough(self, should_stop: Callable[[], bool],
                        enough: Callable[[], bool]) -> Callable[[], bool]:
        """``should_stop``, telling the daemon first (before the stream closes) when the
        stop is ``enough``: a client that leaves looks the same as one that cancels."""
        ref = self._local.ref
        told = False

        def stop() -> bool:
            nonlocal told
            if not should_stop():
                return False
            if enough() and not told:
                told = True
                try:
                    self._run(self._get_json(f"{self.root}/hearth/enough", method="POST",
                                             what="POST /hearth/enough", timeout=2.0,
                                             body={"ref": ref}), timeout=3.0)
                except Exception:  # noqa: BLE001 - then it counts as cancelled, no more
                    log.debug("could not tell the daemon a job had enough", exc_info=True)
            return True

        return stop

    def _cut(self, exc: Exception) -> EngineError:
        return EngineError(
            f"the shared model daemon (pid {self.state.pid}) stopped in the middle of the "
            f"answer ({exc}); it starts again with the next request")

    def _recover(self, state: DaemonState, failure: EngineError,
                 should_stop: Callable[[], bool]) -> str:
        """After the daemon at ``state`` failed a job: "daemon" when it runs again (started
        here, or by another job since), "local" when the model is now this process's;
        else the job's error. One job at a time, so that jobs cut together start one."""
        with self._recover_lock:
            if self.in_process is not None:
                return "local"
            if self.state != state and self.connected:
                return "daemon"
            reason: BaseException = failure
            if self._restartable():
                try:
                    self.reconnect()
                    return "daemon"
                except EngineError as again:
                    reason = again
            if self._fallback is None or should_stop():
                raise self._gone(reason)
            notice = fallback_notice(reason)
            log.warning("%s", notice)
            engine = self._fallback()
            engine.info.warnings.append(notice)
            self.in_process = engine
            self.fallbacks += 1
            self.concurrent = False  # SharedWorker: one job at a time again
            self.info = engine.info
        if self.on_notice is not None:
            with contextlib.suppress(Exception):
                self.on_notice(notice)
        return "local"

    def _generate_in_process(self, prompt: str, sampling: SamplingSettings, stop: list[str],
                             should_stop: Callable[[], bool], on_piece: Callable[[str], None],
                             grammar: str | None, start: str | None) -> Completion:
        engine = self.in_process
        assert engine is not None
        with self._in_process_lock:  # jobs that were in flight at the daemon: one by one
            return engine.generate(prompt, sampling, stop, should_stop, on_piece, grammar,
                                   start)

    def count_tokens(self, text: str) -> int:
        if self.in_process is not None:
            with self._in_process_lock:
                return self.in_process.count_tokens(text)
        return super().count_tokens(text)

    def close(self) -> None:
        super().close()
        engine, self.in_process = self.in_process, None
        if engine is not None:
            engine.close()

    def _restartable(self) -> bool:
        return self._model_settings is not None and self._cache is not None

    def _gone(self, exc: BaseException) -> EngineError:
        files = DaemonFiles.of(self._cache, self.state.key) if self._cache else None
        where = f"; its log: {files.log}" if files else ""
        return EngineError(f"the shared model daemon (pid {self.state.pid}) is not reachable "
                           f"or not answering: {exc}{where}")

    def reconnect(self) -> None:
        """Find (or start) the daemon again and connect to it."""
        assert self._model_settings is not None and self._cache is not None
        state = ensure_daemon(self._model_settings, self._cache, idle_s=self._idle_s)
        self.restarts += 1
        with self._start_lock:
            self.state = state
            self.config = _backend_config(state)
            self.url = state.url.rstrip("/")
            self.root = state.root
            self.shown_url = self.url
            self.connected = False
            self._token_counts.clear()
        self.connect()


def shared_engine_factory(settings: Settings, cache: Path, *,
                          fallback: Callable[[Settings, Path], Engine] | None = None) -> Engine:
    """The engine of ``model.shared``: the daemon's model (started if need be). When the
    daemon cannot be started or reached and ``fallback`` is given, the model that
    ``fallback`` loads in this process, with a warning in its ModelInfo saying why."""
    model = settings.model
    idle = model.daemon_idle_s
    local: Fallback | None = (lambda: fallback(settings, cache)) if fallback else None
    try:
        state = ensure_daemon(model, cache, idle_s=idle)
        engine = DaemonEngine(state, model=model, cache=cache, idle_s=idle, fallback=local)
        try:
            engine.connect()
        except BackendUnavailable:  # it went away between the two: once more
            engine.close()
            state = ensure_daemon(model, cache, idle_s=idle)
            engine = DaemonEngine(state, model=model, cache=cache, idle_s=idle, fallback=local)
            try:
                engine.connect()
            except BaseException:
                engine.close()
                raise
        except BaseException:
            engine.close()
            raise
    except (DaemonUnavailable, BackendUnavailable) as exc:
        if local is None:
            raise
        notice = fallback_notice(exc)
        log.warning("%s", notice)
        own = local()
        own.info.warnings.append(notice)
        return own
    return engine


__all__ = ["DaemonEngine", "DaemonModelInfo", "DaemonUnavailable",
           "daemon_command", "fallback_notice", "ensure_daemon", "shared_engine_factory"]
