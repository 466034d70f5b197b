"""What every task shares: the model, one generation at a time, the answer cache,
cancellation and refusals. No LSP, no task-specific code.

A task (``tasks/<name>/run.py``) builds prompts with its pure modules, calls
``TaskRun.generate`` for each answer, validates, and calls ``TaskRun.keep`` once
the result passed every check: only then do its answers enter the cache, so a
refused answer is never replayed and "try again" really tries again.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import threading
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, ParamSpec, TypeVar

from ...indexer.secrets import Redactor
from ..chat_format import ChatTemplateError, Message, merge_system, render_chat
from ..engine.base import Completion, EngineError, ModelInfo, ModelUnavailable
from ..engine.router import Backend, first_ready
from ..engine.worker import GenerationWorker, Job, Priority, wait_for
from ..result_cache import checks_epoch
from ..settings import SamplingSettings, Settings, shareable

log = logging.getLogger(__name__)

ContextFn = Callable[[str, int, int], str]  # (path, first line, budget tokens) -> prompt text


class Refusal(ValueError):
    """A task declined to answer; the message says why, in words for the user.

    Every task's own error (a docstring that failed validation, a git state,
    a sandbox that cannot run, ...) derives from this, so the LSP layer and the
    CLI handle all of them in one place.
    """


class TaskCancelled(Refusal):
    """The user (or a newer request) cancelled the task."""


class CancelToken:
    """One per task: fed by `$/cancelRequest`, the progress bar's cancel and newer
    requests. Cancelling stops the running generation at the next token, drops
    queued ones and runs the registered callbacks (e.g. killing the sandbox's
    process group); ``check()`` between steps turns it into TaskCancelled."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[], None]] = []

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def cancel(self) -> None:
        with self._lock:
            if self._event.is_set():
                return
            self._event.set()
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            try:
                callback()
            except Exception:  # a failing callback must not stop the others
                log.exception("cancel callback failed")

    def on_cancel(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Run ``callback`` when cancelled (at once if already); returns an unregister."""
        with self._lock:
            if not self._event.is_set():
                self._callbacks.append(callback)
                return lambda: self._discard(callback)
        callback()
        return lambda: None

    def _discard(self, callback: Callable[[], None]) -> None:
        with self._lock, contextlib.suppress(ValueError):
            self._callbacks.remove(callback)

    def check(self, what: str = "the task") -> None:
        if self.cancelled:
            raise TaskCancelled(f"{what} was cancelled")


@dataclasses.dataclass
class TaskRun:
    """One task's use of the model: its priority, its cancel token, and the answers
    it will keep in the cache if (and only if) its result is valid."""

    worker: GenerationWorker
    key: Hashable | None = None  # a newer task with the same key cancels this one
    priority: Priority = Priority.USER
    fresh: bool = False  # "Regenerate": neither read the cache nor replay; sample anew
    token: CancelToken = dataclasses.field(default_factory=CancelToken)
    # Replaces secrets in every prompt (and answer) before the model, the cache or a
    # log sees them: the workspace's indexer.secrets.Redactor.
    redactor: Redactor | None = None
    # The task's route (routes.<task>): backends tried in order. Empty: ``worker`` only.
    route: list[Backend] = dataclasses.field(default_factory=list)
    # Told (in words for the user) when a backend is skipped or fails and the next runs.
    on_notice: Callable[[str], None] | None = None
    backend: str = "local"  # the backend that ran (or runs) the task
    answered: bool = False  # a generation came back (a cached answer is not one)
    notices: list[str] = dataclasses.field(default_factory=list)
    _at: int = 0  # index in ``route`` of the backend in use
    _blocked: str | None = None  # why this task may not run at all (see keep_local)
    _answers: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)
    _hit: str | None = None  # the cache key of the last answer replayed from the cache
    _stale: set[str] = dataclasses.field(default_factory=set)  # never replayed again here

    async def count_tokens(self, text: str) -> int | None:
        """``text``'s length in the ready model's tokens; None when it cannot say. The
        text is redacted first, as generate() will: a model server counts it by its
        tokenize endpoint, and no secret may reach it that way either."""
        engine = self.worker.engine
        if engine is None:
            return None
        if self.redactor is not None:
            text = self.redactor(text)
        try:
            return await asyncio.to_thread(engine.count_tokens, text)
        except Exception:  # noqa: BLE001 - an estimate is then all there is
            log.debug("could not count tokens", exc_info=True)
            return None

    async def ready(self) -> ModelInfo:
        """The info of the model that will answer: the first backend of the route that
        can (skipping, with a notice, those that cannot), waiting for a load or a
        connection in progress. ModelUnavailable, with every reason, when none can."""
        if self._blocked is not None:
            raise Refusal(self._blocked)
        if not self.route:
            return await ready_engine(self.worker)
        try:
            at, info, skipped = await first_ready(self.route, self._at)
        except ModelUnavailable:
            self._at = len(self.route) - 1  # every one was tried: no fallback is left
            raise
        self._at = at
        backend = self.route[at]
        self.worker, self.backend = backend.worker, backend.name
        for reason in skipped:
            self._notice(f"{reason}; using '{backend.name}'")
        return info

    def keep_local(self, reason: str) -> None:
        """Nothing of this task may leave the machine (``reason`` says why, e.g. a
        privacy.localOnly file): only the route's local backend remains, and without
        one the task is refused when it asks for a model."""
        local = [b for b in self.route if not b.remote]
        if not self.can_stay_local:
            self._blocked = (f"{reason}, and this task's route names only model servers; "
                             "add \"local\" to its routes.* setting")
        self.route, self._at = local, 0
        if local:
            self.worker, self.backend = local[0].worker, local[0].name
        log.info("%s: this task runs on the local model only", reason)

    def _notice(self, text: str) -> None:
        self.notices.append(text)
        log.warning("%s", text)
        if self.on_notice is not None:
            self.on_notice(text)

    def fall_back(self, error: Exception) -> bool:
        """The backend in use failed before streaming anything: move to the next of the
        route (True), or there is none (False). Its answers so far are dropped."""
        self._answers = []
        if self._at + 1 >= len(self.route):
            return False
        failed = self.route[self._at].name
        self._at += 1
        self._notice(f"{error}; trying '{self.route[self._at].name}' instead of '{failed}'")
        return True

    @property
    def remote(self) -> bool:
        return bool(self.route) and self.route[self._at].remote

    @property
    def can_stay_local(self) -> bool:
        """Whether keep_local() leaves a backend to run on."""
        return not self.route or any(not b.remote for b in self.route)

    async def generate(self, kind: str, prompt: str, sampling: SamplingSettings, *,
                       stop: list[str], grammar: str | None,
                       on_piece: Callable[[str], None] | None = None,
                       start: str | None = None, messages: list[Message] | None = None,
                       prefill: str = "",
                       enough: Callable[[str], bool] | None = None) -> Completion:
        """One generation (or a cached answer that once passed validation).

        ``prompt`` is the text for the local model (ending with ``prefill``, the opening
        of the answer, when there is one); ``messages`` are the chat turns it was
        rendered from, which a model server takes instead and answers whole: the
        prefill is then cut from the front of its answer, so that both engines hand
        back what follows the prefill.

        ``enough``: asked with the text so far as it streams; once it says True the
        generation stops there (finish_reason "enough"), e.g. when a first line
        already decides that the answer will be refused."""
        self.token.check(kind)
        self._hit = None
        remote_chat = self.remote and messages is not None
        if remote_chat and self.redactor is not None:
            messages = [dataclasses.replace(m, content=self.redactor(m.content))
                        for m in messages or []]
        if self.redactor is not None:
            prompt, hidden = self.redactor.redact(prompt)
            if hidden:
                log.info("%s: %d secret value(s) replaced in the prompt", kind, hidden)
        cache = self.worker.results
        cache_key = None
        if cache is not None and self.worker.engine is not None:
            info = self.worker.engine.info
            # Only what decides the answer: a task's section also holds other settings
            # (commit.hookTimeoutS, docstring.style) that must not split the cache.
            decides = {f.name: getattr(sampling, f.name)
                       for f in dataclasses.fields(SamplingSettings)}
            cache_key = cache.key(kind, prompt=prompt, grammar=grammar, stop=stop, start=start,
                                  sampling=decides,
                                  model=[info.name, info.path, info.file_size,
                                         info.context_length], checks=checks_epoch())
            hit = None if self.fresh or cache_key in self._stale else \
                await asyncio.to_thread(cache.get, cache_key)
            if hit is not None:
                log.info("%s: answered from the result cache", kind)
                self._hit = cache_key
                if on_piece is not None:
                    on_piece(hit)
                return Completion(hit, 0, 0, 0.0, 0.0, "cached")
        if self.fresh:  # a fixed seed or a near-greedy sample would give the same text
            sampling = dataclasses.replace(sampling, seed=-1,
                                           temperature=max(sampling.temperature, 0.5))
        all_stops = [*stop, *sampling.stop]
        # A chat server writes the prefill itself: a stop string inside it would end
        # the answer before it begins; those are applied below, after the prefill.
        sent_stops = [s for s in all_stops if s not in prefill] if remote_chat else all_stops
        watch = _Enough(enough, on_piece) if enough is not None else None
        job = self.worker.submit(kind, prompt, sampling, stop=sent_stops,
                                 grammar=grammar, start=start, priority=self.priority,
                                 key=self.key, on_piece=watch.piece if watch else on_piece,
                                 messages=messages if remote_chat else None)
        if watch is not None:
            watch.attach(job)
        unregister = self.token.on_cancel(job.cancel)
        try:
            completion: Completion = await wait_for(job)
        except asyncio.CancelledError:  # `$/cancelRequest`: the whole task stops
            self.token.cancel()
            raise
        finally:
            unregister()
        if completion.finish_reason == "cancelled" or self.token.cancelled:
            self.token.cancel()
            raise TaskCancelled(f"{kind} was cancelled")
        if remote_chat:
            completion = dataclasses.replace(
                completion, text=after_prefill(completion.text, prefill, all_stops))
        if self.redactor is not None:  # the model may still guess or echo one
            completion = dataclasses.replace(completion, text=self.redactor(completion.text))
        if cache_key is not None:
            self._answers.append((cache_key, kind, completion.text))
        self.answered = True
        return completion

    async def keep(self) -> None:
        """The result passed validation: its answers may now be replayed from the cache."""
        cache = self.worker.results
        answers, self._answers = self._answers, []
        if cache is None:
            return
        for cache_key, kind, text in answers:
            await asyncio.to_thread(cache.put, cache_key, kind, text)

    async def stale(self, completion: Completion) -> bool:
        """``completion`` came from the cache and the checks refuse it now: it passed
        them when it was kept, but some read more than the prompt (a recent commit's
        subject, a docstring outside the prompt's part of the file; a change to the
        checks' code is a new cache epoch instead). It leaves the cache, and True says
        to ask the model, without counting it as the task's attempt."""
        key, self._hit = self._hit, None
        if completion.finish_reason != "cached" or key is None or self.worker.results is None:
            return False
        log.info("a cached answer fails today's checks: removed from the cache, asking the "
                 "model")
        self._stale.add(key)  # (even if the cache cannot delete it now)
        await asyncio.to_thread(self.worker.results.delete, key)
        return True

    async def forget(self) -> None:
        """The answers so far failed validation: never replay them."""
        self._answers = []


P = ParamSpec("P")
R = TypeVar("R")


class _Enough:
    """Streams pieces on, and stops the job once ``enough`` says the text so far decides
    the answer. (Pieces may stream before submit() returns the job: they are kept, and
    looked at when the job is attached.)"""

    def __init__(self, enough: Callable[[str], bool],
                 on_piece: Callable[[str], None] | None) -> None:
        self.enough, self.on_piece = enough, on_piece
        self.text = ""
        self.job: Job | None = None
        self.lock = threading.Lock()

    def piece(self, text: str) -> None:
        if self.on_piece is not None:
            self.on_piece(text)
        with self.lock:
            self.text += text
            self._check()

    def attach(self, job: Job) -> None:
        with self.lock:
            self.job = job
            self._check()

    def _check(self) -> None:
        if self.job is not None and not self.job.enough_event.is_set() \
                and self.enough(self.text):
            self.job.enough()


def routed(task: Callable[..., Awaitable[R]]) -> Callable[..., Awaitable[R]]:
    """Run a task (``task(run, ...)``) again on the next backend of its route when a model
    server fails it: unreachable, an error status, a stream cut or stalled. Nothing of a
    task reaches the user before its result is validated, so starting over is safe; the
    prompts are built anew for the next model. The local model's errors, refusals and
    cancellation are the task's own."""

    @functools.wraps(task)
    async def run_routed(run: TaskRun, *args: Any, **kwargs: Any) -> R:
        while True:
            try:
                return await task(run, *args, **kwargs)
            except TaskCancelled:
                raise
            except EngineError as exc:
                if not run.remote or run.token.cancelled or not run.fall_back(exc):
                    raise
    return run_routed


def after_prefill(text: str, prefill: str, stop: list[str]) -> str:
    """A chat server's whole answer, as the local model would have continued after
    ``prefill``: without a code fence or the prefill in front, cut at the first stop."""
    body = text.lstrip()
    if body.startswith("```"):  # ```python\n...
        body = body.split("\n", 1)[1] if "\n" in body else ""
    head = prefill.strip()
    found = body.find(head) if head else -1
    if found >= 0:  # what it wrote before the prefill (a signature, imports) is not asked for
        body = body[found + len(head):]
    cut = min((i for s in stop if s and (i := body.find(s)) >= 0), default=-1)
    return body[:cut] if cut >= 0 else body


async def ready_engine(worker: GenerationWorker) -> ModelInfo:
    """The loaded model's info, waiting for a load in progress."""
    job = worker.load_job
    if worker.state == "loading" and job is not None:
        with contextlib.suppress(ModelUnavailable):  # reported below
            await wait_for(job)
    if worker.engine is None:
        raise ModelUnavailable(worker.error or "no model is loaded")
    return worker.engine.info


def prompt_text(info: ModelInfo, messages: list[Message] | None, completion: str) -> str:
    """Chat messages through the model's template, or the completion-style text."""
    if messages is None or not info.chat_template:
        return completion or "\n\n".join(m.content for m in messages or [])
    try:
        return render_chat(info.chat_template, messages, bos_token=info.bos_token,
                           eos_token=info.eos_token)
    except ChatTemplateError:  # e.g. templates that refuse a system role
        return render_chat(info.chat_template, merge_system(messages),
                           bos_token=info.bos_token, eos_token=info.eos_token)


def stops(info: ModelInfo, *extra: str) -> list[str]:
    """Stop strings: the task's own, then the model's end-of-turn markers."""
    return [*extra, *(s for s in (info.eos_token, "<|im_end|>", "<end_of_turn>") if s)]


def shareable_context(index: Any, settings: Settings,
                      private: Callable[[str], bool] | None = None) -> ContextFn:
    """Retrieved context from ``index`` (an IndexService or a WorkspaceIndex) that may go
    into any prompt: with model servers in the settings, no privacy.localOnly file (and
    no secret file) is retrieved into a prompt, whichever backend it goes to.
    ``private(path)``: whether a file of the index must stay local (default: by
    ``settings``; a folder with another folder inside has both's patterns)."""
    from ...indexer.context import estimate_tokens, render_context

    def context(path: str, line: int, budget: int) -> str:
        pieces = index.context(budget, estimate_tokens, path=path, line=line)
        return render_context([p for p in pieces if shareable(settings, p.path, private)])
    return context


def count(n: int, noun: str) -> str:
    """'1 finding', '2 findings'."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


__all__ = ["CancelToken", "ContextFn", "Refusal", "TaskCancelled", "TaskRun", "after_prefill",
           "count", "prompt_text", "ready_engine", "routed", "stops"]
