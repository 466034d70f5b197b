"""The model for the command line (the server has its own life cycle): in this process,
or, with ``model.shared``, the shared daemon's (started if none runs)."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from .engine.base import Engine, ModelUnavailable
from .engine.worker import GenerationWorker, wait_for
from .models import ModelNotFound, resolve_model_path
from .result_cache import ResultCache
from .settings import LOCAL, Settings

EngineFactory = Callable[[Settings, Path], Engine]


def llama_engine_factory(settings: Settings, cache: Path) -> Engine:
    from .engine.llama import LlamaEngine  # imports llama_cpp: only when loading

    return LlamaEngine(resolve_model_path(settings.model, cache), settings.model)


def model_file_bytes(settings: Settings, cache: Path, route: list[str],
                     factory: EngineFactory | None = None) -> int:
    """The size of the GGUF file the route's first backend would load, known without
    loading it; 0 when it is not known (a model server first, a test's engine, no file)."""
    if factory is not None or not route or route[0] != LOCAL:
        return 0
    try:
        return resolve_model_path(settings.model, cache).stat().st_size
    except (OSError, ModelNotFound):
        return 0


def engine_factory_for(settings: Settings, factory: EngineFactory | None = None) -> EngineFactory:
    """The factory that gives the configured model: the shared daemon's with
    ``model.shared`` (``factory``'s in this process, with a notice, when the daemon
    cannot be started or reached), else ``factory`` (tests) or llama.cpp in this process."""
    own = factory or llama_engine_factory
    if settings.model.shared:
        from .engine.daemon_client import shared_engine_factory

        return functools.partial(shared_engine_factory, fallback=own)
    return own


def new_worker(settings: Settings) -> GenerationWorker:
    """A generation worker fit for the configured model: with ``model.shared`` one that
    hands the daemon every job at once, so that its queue orders them by priority."""
    if settings.model.shared:
        from .engine.shared_worker import SharedWorker

        return SharedWorker()
    return GenerationWorker()


def open_result_cache(settings: Settings, cache: Path) -> ResultCache | None:
    if not settings.cache.enabled:
        return None
    return ResultCache(cache / "results.sqlite", max_bytes=settings.cache.max_mb << 20)


@asynccontextmanager
async def local_worker(settings: Settings, cache: Path,
                       factory: EngineFactory | None = None, *,
                       load: bool = True, required: bool = True,
                       ) -> AsyncIterator[GenerationWorker]:
    """A generation worker with the configured model loaded (ModelUnavailable if it cannot
    and it is ``required``; else the worker says why in its state). ``load=False``: no model
    (a route that does not name ``local``). With ``model.shared`` the model is the shared
    daemon's: no load here when it is warm."""
    worker = new_worker(settings)
    worker.results = open_result_cache(settings, cache)
    make = engine_factory_for(settings, factory)
    try:
        if load:
            job = worker.load(lambda: make(settings, cache))
            if required:
                await wait_for(job)
            else:  # the route's next backend may answer; ready() says why not
                with contextlib.suppress(ModelUnavailable):
                    await wait_for(job)
        yield worker
    finally:
        worker.shutdown()
        if worker.results is not None:
            worker.results.close()
