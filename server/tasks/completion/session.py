"""When to generate a completion, and what to reuse instead. No LSP, no model.

One CompletionSession per server. For each document (``key``) it keeps the running
generation and, across documents, the last finished ones:

- a request whose prefix a finished generation continues (the same prefix, or the
  user typed what it suggested) is answered from it: the completion cache, keyed
  by the prefix;
- a request the running generation still agrees with waits for it instead of
  starting again ("typing through" a suggestion as it is written);
- otherwise, after the debounce (a newer request in the meantime wins), a new
  generation replaces the running one, which is cancelled;
- an edit that disagrees with the running generation cancels it at once;
- a generation stops as soon as the line or block it completes has ended;
- with ``answer_within_s``, a request is answered before its generation ends: with
  the line being completed as soon as that line is whole and more lines are coming
  (a block), or at that time with the whole words written so far; the generation goes
  on and the rest is ready (reused) when the user accepts them or types on. The time
  limit llama.vim calls ``t_max_predict_ms``, without throwing the rest away.

A request that is cancelled ($/cancelRequest: the user typed on) leaves its
generation running, for the next request to reuse.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field

from ...engine.base import Completion, EngineError
from ..runner import Refusal, TaskCancelled, TaskRun
from .quality import clean_suggestion, finished, may_continue, typed_through, whole_words
from .run import CompletionRequest

log = logging.getLogger(__name__)

Generate = Callable[[TaskRun, CompletionRequest, Callable[[str], None]], Awaitable[Completion]]
MAX_FINISHED = 32


@dataclass
class Suggestion:
    text: str
    source: str  # "generated" | "running" (reused while generating) | "cache" | "none"
    reason: str = ""


@dataclass
class SessionStats:
    requests: int = 0
    generated: int = 0  # generations started
    from_cache: int = 0  # answered from a finished generation
    from_running: int = 0  # answered by waiting for the running generation
    superseded: int = 0  # requests a newer one replaced during the debounce
    cancelled_by_edit: int = 0  # running generations an edit contradicted
    stopped_early: int = 0  # generations stopped at the end of the line or block
    partial: int = 0  # answered early with part of a running generation
    whole_line: int = 0  # of them, with the line at the cursor once it was whole

    @property
    def reused(self) -> int:
        return self.from_cache + self.from_running


@dataclass(eq=False)
class _Generation:
    request: CompletionRequest
    run: TaskRun
    pieces: list[str] = field(default_factory=list)
    task: asyncio.Future | None = None
    done: bool = False
    stopped_early: bool = False
    failed: str | None = None
    # Set (on the event loop) when a line of it ends, then replaced by a fresh one: a
    # request's line can be shown once it is whole, before the rest is written.
    line_ended: asyncio.Event = field(default_factory=asyncio.Event)

    # Once stopped early: the text up to its last whole line. What follows is a token or
    # two of a line the model never finished ("total_pri"), which a later request,
    # typed through the suggestion, would otherwise be shown from the cache.
    kept: str | None = None

    @property
    def produced(self) -> str:
        return self.kept if self.kept is not None else "".join(self.pieces)

    def cancel(self) -> None:
        self.run.token.cancel()

    def end_line(self) -> None:
        ended, self.line_ended = self.line_ended, asyncio.Event()
        ended.set()


class CompletionSession:
    def __init__(self, max_finished: int = MAX_FINISHED) -> None:
        self.running: dict[Hashable, _Generation] = {}
        self.finished: OrderedDict[int, tuple[Hashable, _Generation]] = OrderedDict()
        self.max_finished = max_finished
        self.stats = SessionStats()
        self._seq: dict[Hashable, int] = {}

    def _answer(self, gen: _Generation, request: CompletionRequest, source: str,
                one_line: bool = False) -> Suggestion | None:
        rest = typed_through(gen.request.prefix, gen.request.suffix, gen.produced,
                             request.prefix, request.suffix)
        if rest is None:
            return None
        if one_line and not finished(rest, prefix=request.prefix, suffix=request.suffix,
                                     multiline=False):
            return None  # the line at the cursor is not whole yet
        if not gen.done and not one_line:  # part of a running generation: whole words
            rest = whole_words(rest)
        text = clean_suggestion(rest, prefix=request.prefix, suffix=request.suffix,
                                multiline=request.multiline and not one_line)
        return Suggestion(text, source) if text else None

    def cached(self, key: Hashable, request: CompletionRequest) -> Suggestion | None:
        """A finished generation that still suggests something after ``request.prefix``."""
        for n, (k, gen) in reversed(self.finished.items()):
            if k != key or gen.request.multiline != request.multiline:
                continue
            found = self._answer(gen, request, "cache")
            if found is not None:
                self.finished.move_to_end(n)
                return found
        return None

    async def _wait(self, gen: _Generation, request: CompletionRequest,
                    deadline: float | None) -> Suggestion | None:
        """Wait for ``gen``. With a ``deadline`` (loop time), answer before it ends: with
        the line at the cursor as soon as that line is whole (a block may follow), or
        past the deadline with what it has written so far, if that is a whole word or
        more (None: wait for the end)."""
        assert gen.task is not None
        loop = asyncio.get_running_loop()
        while deadline is not None and not gen.done:
            ended = gen.line_ended  # taken before looking: a line ending after it sets it
            left = deadline - loop.time()
            if left > 0:
                found = self._answer(gen, request, "partial", one_line=True) \
                    if request.multiline else None
                if found is not None:
                    self.stats.partial += 1
                    self.stats.whole_line += 1
                    return found
                waits: set[asyncio.Future] = {gen.task, asyncio.ensure_future(ended.wait())}
                try:
                    await asyncio.wait(waits, timeout=left, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for w in waits - {gen.task}:
                        w.cancel()
                continue
            found = self._answer(gen, request, "partial")
            if found is not None and not gen.done:
                self.stats.partial += 1
                return found
            deadline = loop.time() + 0.03  # not a whole word yet: look again shortly
        await asyncio.shield(gen.task)
        return None

    async def suggest(self, key: Hashable, request: CompletionRequest, *,
                      new_run: Callable[[], TaskRun], generate: Generate,
                      debounce_s: float = 0.0,
                      answer_within_s: float = 0.0) -> Suggestion:
        """The suggestion at ``request``'s cursor in document ``key``. ``answer_within_s``
        (0: no limit): past it, the whole words written so far, the generation going on."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + answer_within_s if answer_within_s > 0 else None
        self.stats.requests += 1
        seq = self._seq[key] = self._seq.get(key, 0) + 1
        found = self.cached(key, request)
        if found is not None:
            self.stats.from_cache += 1
            return found
        gen = self.running.get(key)
        if gen is not None and not gen.done:
            if may_continue(gen.request.prefix, gen.request.suffix, gen.produced,
                            request.prefix, request.suffix) \
                    and gen.request.multiline == request.multiline:
                early = await self._wait(gen, request, deadline)
                if early is not None:
                    return early
                found = self._answer(gen, request, "running")
                if found is not None:
                    self.stats.from_running += 1
                    return found
                if self._seq.get(key) != seq:
                    return Suggestion("", "none", "superseded")
                # Nothing written says nothing about what the user typed since: only
                # at the same cursor is the answer nothing; after it, a generation here.
                if gen.failed is None and not gen.stopped_early and not gen.produced \
                        and request.prefix == gen.request.prefix:
                    return Suggestion("", "none", "the model suggested nothing here")
            else:
                gen.cancel()
        if debounce_s > 0:
            await asyncio.sleep(debounce_s)
            if self._seq.get(key) != seq:
                self.stats.superseded += 1
                return Suggestion("", "none", "superseded")
        gen = self._start(key, request, new_run(), generate)
        early = await self._wait(gen, request, deadline)
        if early is not None:
            return early
        if gen.failed is not None:
            return Suggestion("", "none", gen.failed)
        return self._answer(gen, request, "generated") or Suggestion(
            "", "none", "nothing sound to suggest")

    def _start(self, key: Hashable, request: CompletionRequest, run: TaskRun,
               generate: Generate) -> _Generation:
        old = self.running.get(key)
        if old is not None and not old.done:
            old.cancel()
        gen = _Generation(request, run)
        self.running[key] = gen
        self.stats.generated += 1
        loop = asyncio.get_running_loop()

        def on_piece(piece: str) -> None:  # on the generation thread
            gen.pieces.append(piece)
            if "\n" in piece and request.multiline:
                with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits
                    loop.call_soon_threadsafe(gen.end_line)
            if not gen.stopped_early and finished(gen.produced, prefix=request.prefix,
                                                  suffix=request.suffix,
                                                  multiline=request.multiline):
                gen.stopped_early = True
                text = gen.produced
                gen.kept = text[:text.rfind("\n") + 1]
                gen.run.token.cancel()

        async def drive() -> None:
            try:
                await generate(run, request, on_piece)
            except TaskCancelled:
                if gen.stopped_early:
                    self.stats.stopped_early += 1
                else:
                    gen.failed = "cancelled"
            except (Refusal, EngineError) as exc:
                gen.failed = str(exc) or type(exc).__name__
                log.info("completion: %s", gen.failed)
            except asyncio.CancelledError:
                gen.failed = "cancelled"
                run.token.cancel()
            except Exception as exc:  # a bug must cost one suggestion, not the session
                gen.failed = f"completion failed: {exc}"
                log.exception("completion failed")
            finally:
                gen.done = True
                if self.running.get(key) is gen:
                    del self.running[key]
                if gen.failed is None and gen.produced:
                    self.finished[id(gen)] = (key, gen)
                    while len(self.finished) > self.max_finished:
                        self.finished.popitem(last=False)

        gen.task = asyncio.ensure_future(drive())
        return gen

    def edited(self, key: Hashable, text: str) -> None:
        """The document is now ``text``: cancel a running generation it contradicts."""
        gen = self.running.get(key)
        if gen is None or gen.done:
            return
        prefix, suffix = gen.request.prefix, gen.request.suffix
        middle_end = len(text) - len(suffix)
        if middle_end >= len(prefix) and text.startswith(prefix) and text.endswith(suffix):
            typed = text[len(prefix):middle_end]
            if may_continue(prefix, suffix, gen.produced, prefix + typed, suffix):
                return
        self.stats.cancelled_by_edit += 1
        gen.cancel()

    def forget(self, key: Hashable) -> None:
        """The document closed: stop its generation and drop what it suggested."""
        gen = self.running.pop(key, None)
        if gen is not None:
            gen.cancel()
        for n in [n for n, (k, _) in self.finished.items() if k == key]:
            del self.finished[n]
        self._seq.pop(key, None)

    async def close(self) -> None:
        for gen in list(self.running.values()):
            gen.cancel()
        tasks = [g.task for g in self.running.values() if g.task is not None]
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task


__all__ = ["CompletionSession", "SessionStats", "Suggestion"]
