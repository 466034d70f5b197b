"""Completion on the model: the prompt, the one generation, the cleaned suggestion.

The calls into the shared runner (``ready_engine``, ``stops``, ``TaskRun.generate``)
are all here; ``session.py`` decides when to call, and what to reuse.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ...engine.base import Completion
from ...engine.worker import GenerationWorker
from ...settings import CompletionSettings
from ..runner import TaskRun, routed, stops
from .prompt import Definition, FimFormat, Snippet, build_prompt


@dataclass(frozen=True)
class CompletionRequest:
    """The cursor's place in a document: everything before it and everything after."""

    prefix: str
    suffix: str
    path: str = ""
    language: str | None = None
    multiline: bool = True
    # Repository context: code like the lines above the cursor and the definitions of
    # the names near it (already filtered for privacy.localOnly where the prompt may
    # leave the machine).
    definitions: tuple[Definition, ...] = ()
    snippet: Snippet | None = None


@routed
async def generate(run: TaskRun, fmt_of: Callable[[GenerationWorker], Awaitable[FimFormat | None]],
                   request: CompletionRequest, settings: CompletionSettings,
                   on_piece: Callable[[str], None],
                   context_tokens: int | None = None) -> Completion:
    """One raw continuation at the cursor (TaskCancelled when stopped), on the first
    backend of routes.completion that answers. ``fmt_of(worker)`` reads the local model's
    FIM format from its file; a model server gets a prefix-only prompt at /v1/completions
    (its FIM tokens, if any, are not known here)."""
    info = await run.ready()
    fmt = None if run.remote else await fmt_of(run.worker)
    if context_tokens is None:
        context_tokens = settings.context_tokens
    budget = max(64, min(context_tokens, info.context_length - settings.max_tokens - 16))
    prompt = build_prompt(request.prefix, request.suffix, fmt=fmt, budget_tokens=budget,
                          path=request.path, language=request.language,
                          definitions=request.definitions, snippet=request.snippet,
                          context_tokens=settings.repo_context_tokens)
    return await run.generate("completion", prompt.text, settings,
                              stop=stops(info, *prompt.stops), grammar=None,
                              on_piece=on_piece)


__all__ = ["CompletionRequest", "generate"]
