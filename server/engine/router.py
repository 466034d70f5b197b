"""Which engine runs a task: the routes of the settings and the backends behind them.

``local`` is the in-process model (the server's or the CLI's own worker). Every
other name is a ``[backends.NAME]`` model server, held by its own generation
worker so that its requests queue by priority and cancel between pieces exactly
like local ones. The worker's "load" is the connection: ``/v1/models`` and the
capability probes run once, on the worker's thread; a failed connection leaves the
worker in the error state and is tried again once the backend's breaker would
let a probe through, so a dead server costs one fast failure per
``breakerResetS``, not a timeout per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..settings import LOCAL, BackendSettings, Settings
from .base import Engine, ModelInfo, ModelUnavailable
from .worker import GenerationWorker, wait_for

log = logging.getLogger(__name__)

TASK_ROUTES = {"docs": "docs", "review": "review", "tests": "tests", "commit": "commit",
               "completion": "completion"}


def open_remote(config: BackendSettings) -> Engine:
    """A connected RemoteEngine (raises, naming the backend, when the server is not there)."""
    from .remote import RemoteEngine  # httpx only when a backend is used

    engine = RemoteEngine(config)
    try:
        engine.connect()
    except BaseException:
        engine.close()
        raise
    return engine


@dataclass(eq=False)
class Backend:
    """One name of a route: the local worker, or a model server's."""

    name: str
    worker: GenerationWorker
    config: BackendSettings | None = None  # None: the in-process model
    failed_at: float | None = None  # when the last connection attempt failed
    attempts: int = 0  # connections tried

    @property
    def remote(self) -> bool:
        return self.config is not None

    def engine_breaker(self) -> Any:
        return getattr(self.worker.engine, "breaker", None)

    async def ready(self) -> ModelInfo:
        """The engine's info, connecting first if needed; ModelUnavailable says why not."""
        worker = self.worker
        if not self.remote:
            job = worker.load_job
            if worker.state == "loading" and job is not None:
                with contextlib.suppress(ModelUnavailable):
                    await wait_for(job)
            if worker.engine is None:
                raise ModelUnavailable(worker.error or "no model is loaded")
            return worker.engine.info
        assert self.config is not None
        breaker = self.engine_breaker()
        if worker.state == "ready" and breaker is not None and breaker.state == "open":
            raise ModelUnavailable(
                f"backend '{self.name}' failed {breaker.failures} times in a row; "
                f"trying it again in {breaker.retry_in():.0f} s")
        if worker.state == "error" and self.failed_at is not None:
            wait = self.config.breaker_reset_s - (time.monotonic() - self.failed_at)
            if wait > 0:
                raise ModelUnavailable(f"{worker.error} (trying it again in {wait:.0f} s)")
        if worker.state in ("empty", "error"):
            config = self.config
            self.attempts += 1
            worker.load(lambda: open_remote(config))
        job = worker.load_job
        if worker.state == "loading" and job is not None:
            try:
                await wait_for(job)
            except ModelUnavailable:
                self.failed_at = time.monotonic()
                raise
        if worker.engine is None:
            raise ModelUnavailable(worker.error or f"backend '{self.name}' is not connected")
        self.failed_at = None
        return worker.engine.info

    def status(self) -> dict[str, Any]:
        """For hearth.status and `hearth doctor`."""
        engine = self.worker.engine
        out: dict[str, Any] = {"name": self.name, "state": self.worker.state,
                               "remote": self.remote}
        if self.config is not None:
            from .remote import _display_url

            out["url"] = _display_url(self.config.url)
        if engine is not None:
            out["model"] = engine.info.name
            out["describe"] = engine.info.describe()
        breaker = self.engine_breaker()
        if breaker is not None:
            out["breaker"] = breaker.state
        if self.worker.error:
            out["error"] = self.worker.error
        return out


def _config_key(config: BackendSettings) -> tuple:
    return dataclasses.astuple(config)


@dataclass
class Backends:
    """Every backend a route can name: ``local`` and one worker per model server.

    Workers are keyed by the backend's whole settings, so two workspace folders that
    define ``team`` alike share one connection, and a changed ``[backends.team]``
    gets a new one (the old is closed by ``prune``).
    """

    local: GenerationWorker
    _remote: dict[tuple, Backend] = field(default_factory=dict)
    _local: Backend | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._local = Backend(LOCAL, self.local)

    def backend(self, name: str, settings: Settings) -> Backend | None:
        if name == LOCAL:
            return self._local
        config = settings.backends.get(name)
        if config is None:
            return None
        key = _config_key(config)
        with self._lock:
            found = self._remote.get(key)
            if found is None:
                worker = GenerationWorker()
                worker.results = self.local.results  # one answer cache for every backend
                found = self._remote[key] = Backend(name, worker, config)
            return found

    def route(self, settings: Settings, task: str) -> list[Backend]:
        """The backends ``routes.<task>`` names, in order (``local`` when it names none)."""
        names = getattr(settings.routes, TASK_ROUTES[task], None) or [LOCAL]
        chosen = [b for b in (self.backend(n, settings) for n in names) if b is not None]
        return chosen or [self._local]  # type: ignore[list-item]

    def uses_local(self, settings: Iterable[Settings]) -> bool:
        """Whether any route of these settings names the in-process model."""
        return any(LOCAL in getattr(s.routes, f.name)
                   for s in settings for f in dataclasses.fields(s.routes))

    def prune(self, settings: Iterable[Settings]) -> None:
        """Close the workers of backends no settings define any more."""
        wanted = {_config_key(c) for s in settings for c in s.backends.values()}
        with self._lock:
            gone = [k for k in self._remote if k not in wanted]
            closing = [self._remote.pop(k) for k in gone]
        for backend in closing:
            backend.worker.shutdown()

    def share_results(self, results: Any) -> None:
        """The answer cache was opened, closed or replaced."""
        with self._lock:
            for backend in self._remote.values():
                backend.worker.results = results

    def all(self) -> list[Backend]:
        with self._lock:
            return [self._local, *self._remote.values()]  # type: ignore[list-item]

    def status(self) -> list[dict[str, Any]]:
        return [b.status() for b in self.all()]

    def shutdown(self) -> None:
        with self._lock:
            closing, self._remote = list(self._remote.values()), {}
        for backend in closing:
            backend.worker.shutdown()


async def first_ready(route: list[Backend], start: int = 0
                      ) -> tuple[int, ModelInfo, list[str]]:
    """The first backend of ``route`` (from ``start``) that can answer: its index, its
    info, and why each one before it was skipped. ModelUnavailable when none can."""
    skipped: list[str] = []
    for i in range(start, len(route)):
        backend = route[i]
        try:
            return i, await backend.ready(), skipped
        except ModelUnavailable as exc:
            if len(route) - start == 1:
                raise  # one backend: its own words
            skipped.append(f"{backend.name}: {exc}")
        except asyncio.CancelledError:
            raise
    raise ModelUnavailable("no backend of the route can answer: " + "; ".join(skipped))


__all__ = ["Backend", "Backends", "TASK_ROUTES", "first_ready", "open_remote"]
