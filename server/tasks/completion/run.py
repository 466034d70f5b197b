"""Completion on the model: the prompt, the one generation, the cleaned suggestion.

The calls into the shared runner (``ready_engine``, ``stops``, ``TaskRun.generate``)
are all here; ``session.py`` decides when to call, and what to reuse.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ...engine.base import Completion
from ...settings import CompletionSettings
from ..runner import TaskRun, ready_engine, stops
from .prompt import FimFormat, build_prompt

# The most of the document a prompt holds (tokens, prefix and suffix together): the
# first request on a file evaluates all of it; later ones reuse it from the KV cache.
CONTEXT_TOKENS = 512


@dataclass(frozen=True)
class CompletionRequest:
    """The cursor's place in a document: everything before it and everything after."""

    prefix: str
    suffix: str
    path: str = ""
    language: str | None = None
    multiline: bool = True


async def generate(run: TaskRun, fmt: FimFormat | None, request: CompletionRequest,
                   settings: CompletionSettings, on_piece: Callable[[str], None],
                   context_tokens: int = CONTEXT_TOKENS) -> Completion:
    """One raw continuation at the cursor (TaskCancelled when stopped)."""
    info = await ready_engine(run.worker)
    budget = max(64, min(context_tokens, info.context_length - settings.max_tokens - 16))
    prompt = build_prompt(request.prefix, request.suffix, fmt=fmt, budget_tokens=budget,
                          path=request.path, language=request.language)
    return await run.generate("completion", prompt.text, settings,
                              stop=stops(info, *prompt.stops), grammar=None,
                              on_piece=on_piece)


__all__ = ["CONTEXT_TOKENS", "CompletionRequest", "generate"]
