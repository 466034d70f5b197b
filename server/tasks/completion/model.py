"""Which model completes code, and the worker that holds it.

The completion model is a base model (``completion.preset``, default Gemma 3 270M;
or ``completion.path``), usually not the task model (``model.*``, an instruct
model). When both name the same file the task worker is shared; otherwise this
holds a second GenerationWorker with its own engine, loaded on first use, so a
review running on the task model never holds up a keystroke's suggestion.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ...engine.base import Engine
from ...engine.worker import GenerationWorker
from ...gguf_info import find_tokens, read_gguf
from ...settings import ModelSettings, Settings
from .prompt import FIM_TOKENS, FimFormat, detect_format

log = logging.getLogger(__name__)

EngineFactory = Callable[[Settings, Path], Engine]


def completion_model_settings(settings: Settings) -> ModelSettings:
    """``model.*`` with the completion model's file: same threads, context, GPU layers."""
    c = settings.completion
    return dataclasses.replace(settings.model, preset=c.preset, path=c.path)


def same_model(settings: Settings) -> bool:
    """Whether completions and tasks name the same model file (then one worker serves both)."""
    m, c = settings.model, settings.completion
    if c.path and m.path:
        return Path(c.path).expanduser() == Path(m.path).expanduser()
    if c.path or m.path:
        return False
    return c.preset == m.preset


def _model_key(model: ModelSettings) -> tuple[Any, ...]:
    return (model.preset, model.path, model.gpu_layers, model.context_length, model.threads,
            model.batch_size)


def format_of(path: str) -> FimFormat | None:
    """The FIM format of the GGUF at ``path`` (None: prefix-only, or not a GGUF file)."""
    try:
        header = read_gguf(path)
    except (OSError, ValueError):
        return None
    name = " ".join(str(header.metadata.get(k, "")) for k in
                    ("general.name", "general.basename", "general.finetune"))
    return detect_format(find_tokens(path, FIM_TOKENS), name)


class CompletionModel:
    """The completion worker: shared with the tasks, or its own, reloaded on a change."""

    def __init__(self, factory: EngineFactory, cache: Path) -> None:
        self.factory, self.cache = factory, cache
        self.own: GenerationWorker | None = None
        self._key: tuple[Any, ...] | None = None
        self._formats: dict[str, FimFormat | None] = {}

    def worker(self, settings: Settings, shared: GenerationWorker) -> GenerationWorker:
        """The worker to complete with under ``settings`` (loading its model if needed)."""
        if same_model(settings):
            return shared
        model = completion_model_settings(settings)
        key = _model_key(model)
        if self.own is None:
            self.own = GenerationWorker("hearth-completion")
        if key != self._key:
            self._key = key
            loaded = dataclasses.replace(settings, model=model)
            factory, cache = self.factory, self.cache
            self.own.load(lambda: factory(loaded, cache))
            log.info("completion model: loading %s", model.path or model.preset)
        return self.own

    async def format(self, worker: GenerationWorker) -> FimFormat | None:
        """The FIM format of the worker's loaded model (read once per file)."""
        engine = worker.engine
        if engine is None:
            return None
        path = engine.info.path
        if path not in self._formats:
            fmt = await asyncio.to_thread(format_of, path)
            self._formats[path] = fmt
            log.info("completion model %s: %s", engine.info.name,
                     f"fill-in-the-middle ({fmt.family})" if fmt else "prefix-only continuation")
        return self._formats[path]

    def status(self) -> dict[str, Any]:
        own = self.own
        if own is None:
            return {"worker": "shared" if self._key is None else "none"}
        engine = own.engine
        return {"worker": "own", "state": own.state, "error": own.error,
                "model": engine.info.name if engine is not None else None}

    def close(self) -> None:
        if self.own is not None:
            self.own.shutdown()
            self.own = None
            self._key = None


__all__ = ["CompletionModel", "completion_model_settings", "format_of", "same_model"]
