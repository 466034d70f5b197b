"""What every engine offers the rest of Hearth.

An engine is used from exactly one thread, the generation worker's: a
llama.cpp context is not thread-safe, so nothing else touches it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from ..settings import SamplingSettings


class EngineError(RuntimeError):
    """The engine cannot do what was asked (no model, prompt too long, ...)."""


class ModelUnavailable(EngineError):
    """No model is loaded; the message says why and how to fix it."""


@dataclass
class ModelInfo:
    name: str
    path: str
    file_size: int
    architecture: str
    context_length: int  # allocated n_ctx
    trained_context_length: int | None
    chat_template: str | None
    bos_token: str = ""
    eos_token: str = ""
    gpu_layers: int = 0
    total_layers: int | None = None
    threads: int = 0
    warnings: list[str] = field(default_factory=list)

    @property
    def where(self) -> str:
        if self.gpu_layers:
            total = self.total_layers if self.total_layers is not None else "?"
            shown = total if self.gpu_layers < 0 else min(self.gpu_layers, self.total_layers or 10**9)
            return f"GPU ({shown}/{total} layers offloaded)"
        return f"CPU ({self.threads} threads)"

    def describe(self) -> str:
        size_mb = self.file_size / 1e6
        template = "chat template" if self.chat_template else "no chat template"
        return (f"{self.name} [{self.architecture}] {size_mb:.0f} MB, "
                f"context {self.context_length}, {template}, on {self.where} - {self.path}")


@dataclass
class Completion:
    """One finished generation and what it cost."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    first_token_s: float  # time from start of the job to the first token
    total_s: float
    finish_reason: str  # "stop" | "length" | "cancelled" | "enough" (Job.enough)

    @property
    def tokens_per_s(self) -> float:
        decode = self.total_s - self.first_token_s
        if self.completion_tokens <= 1 or decode <= 0:
            return 0.0
        return (self.completion_tokens - 1) / decode


class Engine(Protocol):
    info: ModelInfo

    def generate(self, prompt: str, sampling: SamplingSettings, stop: list[str],
                 should_stop: Callable[[], bool], on_piece: Callable[[str], None],
                 grammar: str | None = None, start: str | None = None) -> Completion:
        """Generate for ``prompt``, handing each text piece to ``on_piece``.

        ``grammar`` (GBNF) constrains every sampled token; ``start`` is a regex the
        first token must match, a cheap nudge that costs nothing after it.

        ``should_stop`` is checked between tokens; when it turns true decoding
        ends and the Completion's finish_reason is "cancelled".
        """
        ...

    def count_tokens(self, text: str) -> int: ...

    def close(self) -> None: ...
