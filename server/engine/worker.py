"""The one generation worker: a thread that owns the engine.

A llama.cpp context is not thread-safe, so every load and every generation
runs here, one at a time, taken from a priority queue: loading a model first,
then completions (ghost text the user is typing against),
then what the user asked for, then review-on-save, then the commit hook, then
background work. A job is cancelled by setting its event; the engine checks it
between tokens. A running review-on-save, hook or background generation yields to
a more urgent job that arrives meanwhile (a completion, a user's action, a review
before the hook): it stops at the next token and is queued again, to run from the
start once the queue comes back to it (after MAX_RESTARTS such restarts, to its end;
its future is only ever set once; its seed is fixed when it is submitted, so the rerun
writes what the first run had begun).
The asyncio loop only ever waits on futures, so it is never blocked.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import itertools
import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from ..chat_format import Message
from ..settings import SamplingSettings
from .base import Completion, Engine, EngineError, ModelInfo, ModelUnavailable

log = logging.getLogger(__name__)


class Priority(IntEnum):
    LOAD = 0
    COMPLETION = 1  # ghost text: the user is typing and waits for it
    USER = 2  # an action the user invoked
    SAVE = 3  # review-on-save
    HOOK = 4  # the git hook: a commit waits for it, but the user did not ask in the editor
    BACKGROUND = 5  # other tools' work through the daemon's API


# Generations at this priority or lower stop for any more urgent job that is waiting,
# and run again: the user's wait is one token, not the rest of someone else's answer.
PREEMPTIBLE = Priority.SAVE
# A job that has yielded this many times runs to its end: urgent work that never stops
# coming (ghost text while the user types) must not keep a commit's hook from finishing.
MAX_RESTARTS = 3
SEEDS_START = 0xFFFFFFFF  # llama.cpp's LLAMA_DEFAULT_SEED


@dataclass(eq=False)
class Job:
    kind: str
    priority: Priority
    key: Hashable | None = None
    prompt: str = ""
    sampling: SamplingSettings | None = None
    stop: list[str] = field(default_factory=list)
    grammar: str | None = None
    start: str | None = None
    on_piece: Callable[[str], None] | None = None
    # Chat turns for an engine that takes them (a model server); ``prompt`` is then
    # only their local rendering, for logs and cache keys.
    messages: list[Message] | None = None
    load: Callable[[], Engine] | None = None
    future: concurrent.futures.Future = field(default_factory=concurrent.futures.Future)
    cancel_event: threading.Event = field(default_factory=threading.Event)
    # Set by the caller once the text so far decides the answer (e.g. a refused first
    # line): the generation stops at the next token and hands back what it has.
    enough_event: threading.Event = field(default_factory=threading.Event)
    id: int = 0
    restarts: int = 0  # times it yielded to a more urgent job and was queued again
    delivered: int = 0  # characters already given to on_piece (not given again on a rerun)
    # perf_counter() when it was queued and when it first ran: its wait in the queue.
    submitted_at: float = 0.0
    started_at: float | None = None
    # perf_counter() when its first text went to on_piece (maybe in a run that yielded
    # later), and the tokens of the runs that yielded, generated again by the next.
    first_piece_at: float | None = None
    yielded_tokens: int = 0

    def cancel(self) -> None:
        """Stop this job: dropped if still queued, stopped at the next token if running."""
        self.cancel_event.set()
        self.future.cancel()  # only succeeds while the job is still queued

    @property
    def cancelled(self) -> bool:
        return self.cancel_event.is_set()

    def enough(self) -> None:
        """The text so far is all the caller needs: stop at the next token, and finish
        with that text (finish_reason "enough") instead of being cancelled."""
        self.enough_event.set()

    def should_stop(self) -> bool:
        return self.cancel_event.is_set() or self.enough_event.is_set()

    def outcome(self, result: Completion) -> Completion:
        """The engine's result as the caller sees it: a generation stopped by enough()
        is finished, not cancelled."""
        if self.enough_event.is_set() and not self.cancelled \
                and result.finish_reason == "cancelled":
            return dataclasses.replace(result, finish_reason="enough")
        return result


StateListener = Callable[[str, "GenerationWorker"], None]


class GenerationWorker:
    def __init__(self, name: str = "hearth-generation") -> None:
        self.name = name  # the thread's name
        self._queue: queue.PriorityQueue[tuple[int, int, Job | None]] = queue.PriorityQueue()
        self._seq = itertools.count(1)
        self._lock = threading.Lock()  # guards _jobs and _running
        self._jobs: set[Job] = set()
        self._running: Job | None = None
        self._thread: threading.Thread | None = None
        self._listeners: list[StateListener] = []
        self.engine: Engine | None = None
        self.state = "empty"  # empty | loading | ready | error
        self.error: str | None = None
        self.load_job: Job | None = None
        # Finished answers by prompt (a result_cache.ResultCache), set by the owner;
        # the tasks consult it so a repeated request does not run the model again.
        self.results: Any = None
        self.idle = threading.Event()
        self.idle.set()
        # The seeds of "random" (-1) answers: a new one for each job, from a sequence
        # that starts alike in every process, as llama.cpp's own does, so that a run of
        # the same requests (bench/quality.py's) samples the same answers again.
        self._seeds = random.Random(SEEDS_START)

    # ------------------------------------------------------------------ control

    def add_listener(self, listener: StateListener) -> None:
        """Called (on the worker thread) whenever the model state changes."""
        self._listeners.append(listener)

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self.name,
                                            daemon=True)
            self._thread.start()

    def _enqueue(self, job: Job) -> Job:
        job.id = next(self._seq)
        job.submitted_at = time.perf_counter()
        with self._lock:
            self._jobs.add(job)
        self._start()
        self._queue.put((int(job.priority), job.id, job))
        return job

    def load(self, factory: Callable[[], Engine]) -> Job:
        """Queue a (re)load ahead of everything else; its future gives ModelInfo."""
        self.state = "loading"
        self.load_job = self._enqueue(Job(kind="load", priority=Priority.LOAD, load=factory))
        return self.load_job

    def submit(self, kind: str, prompt: str, sampling: SamplingSettings, *,
               stop: list[str] | None = None, priority: Priority = Priority.USER,
               key: Hashable | None = None, grammar: str | None = None,
               start: str | None = None, on_piece: Callable[[str], None] | None = None,
               messages: list[Message] | None = None) -> Job:
        """Queue a generation. A newer job with the same key cancels the older one."""
        if key is not None:
            self.cancel_where(lambda j: j.key == key)
        if sampling.seed < 0:  # "random": drawn once, so that a rerun after yielding
            # samples what the interrupted run did, and what it streamed stays true
            with self._lock:
                seed = self._seeds.randrange(2**31)
            sampling = dataclasses.replace(sampling, seed=seed)
        job = Job(kind=kind, priority=priority, key=key, prompt=prompt, sampling=sampling,
                  stop=list(stop or []), grammar=grammar, start=start,
                  on_piece=on_piece, messages=messages)
        return self._enqueue(job)

    def cancel_where(self, predicate: Callable[[Job], bool]) -> int:
        with self._lock:
            victims = [j for j in self._jobs if j.load is None and predicate(j)]
        for job in victims:
            job.cancel()
        return len(victims)

    def running(self) -> Job | None:
        return self._running

    def completion_waiting(self) -> bool:
        """A COMPLETION job is queued (not cancelled, not the running one)."""
        return self.more_urgent_waiting(Priority.USER)

    def more_urgent_waiting(self, priority: Priority) -> bool:
        """A generation more urgent than ``priority`` is queued (not cancelled, not the
        running one)."""
        with self._lock:
            return any(j.priority < priority and j.load is None
                       and j is not self._running and not j.cancelled for j in self._jobs)

    def pending(self) -> int:
        """Jobs waiting to run (a cancelled one stays in the queue until its turn, and
        is not waiting)."""
        with self._lock:
            return len([j for j in self._jobs if j is not self._running and not j.cancelled])

    def shutdown(self, timeout: float = 5.0) -> None:
        self.cancel_where(lambda j: True)
        if self._thread is not None:
            self._queue.put((-1, 0, None))
            self._thread.join(timeout)
            if self._thread.is_alive():
                # Still inside llama.cpp (a generation that does not check for cancels):
                # freeing the model under it would crash the process. The thread is a
                # daemon; the process exit takes both.
                log.warning("the generation thread did not stop within %.0f s; "
                            "leaving the model loaded", timeout)
                return
        if self.engine is not None:
            self.engine.close()
            self.engine = None

    # ------------------------------------------------------------------- thread

    def _set_state(self, state: str, error: str | None = None) -> None:
        self.state, self.error = state, error
        for listener in list(self._listeners):
            try:
                listener(state, self)
            except Exception:  # a listener must never kill the worker
                log.exception("state listener failed")

    def _run(self) -> None:
        while True:
            _, _, job = self._queue.get()
            if job is None:
                return
            self._run_one(job)

    def _run_one(self, job: Job) -> None:
        """One job taken from the queue, on this thread; queued again if it yielded."""
        again = False
        try:
            # A job queued again after yielding already runs (its future says so).
            if not job.restarts and not job.future.set_running_or_notify_cancel():
                return  # cancelled while queued
            with self._lock:
                self._running = job
            if job.started_at is None:
                job.started_at = time.perf_counter()
            self.idle.clear()
            if job.load is not None:
                self._do_load(job)
            else:
                again = self._do_generate(job)
        finally:
            with self._lock:
                if not again:
                    self._jobs.discard(job)
                self._running = None
                if not self._jobs:
                    self.idle.set()
            if again:  # same priority and sequence: first among its peers
                self._queue.put((int(job.priority), job.id, job))

    def _do_load(self, job: Job) -> None:
        assert job.load is not None
        self._set_state("loading")
        old, self.engine = self.engine, None
        if old is not None:
            old.close()
        try:
            engine = job.load()
        except Exception as exc:  # any failure leaves the server up, without a model
            message = str(exc) or type(exc).__name__
            log.error("model not loaded: %s", message)
            self._set_state("error", message)
            job.future.set_exception(ModelUnavailable(message))
            return
        self.engine = engine
        self._set_state("ready")
        job.future.set_result(engine.info)

    def _do_generate(self, job: Job) -> bool:
        """Run one generation; True when it yielded to a more urgent job (queue it
        again)."""
        engine = self.engine
        if engine is None:
            reason = self.error or "no model is loaded"
            job.future.set_exception(ModelUnavailable(reason))
            return False
        assert job.sampling is not None
        on_piece = job.on_piece or (lambda _piece: None)
        preemptible = job.priority >= PREEMPTIBLE and job.restarts < MAX_RESTARTS
        yielded = False
        produced = 0

        def should_stop() -> bool:
            nonlocal yielded
            if job.should_stop():
                return True
            if preemptible and self.more_urgent_waiting(job.priority):
                yielded = True
                return True
            return False

        def piece_out(piece: str) -> None:
            # A rerun regenerates from the start: what an earlier run already streamed
            # is not streamed twice.
            nonlocal produced
            before, produced = produced, produced + len(piece)
            if produced > job.delivered:
                if job.first_piece_at is None:
                    job.first_piece_at = time.perf_counter()
                on_piece(piece[max(0, job.delivered - before):])
                job.delivered = produced

        try:
            extra = {"messages": job.messages} if job.messages is not None else {}
            result = engine.generate(job.prompt, job.sampling, job.stop, should_stop,
                                     piece_out, job.grammar, job.start, **extra)
        except EngineError as exc:
            job.future.set_exception(exc)
            return False
        except Exception as exc:  # keep the worker alive whatever the engine does
            log.exception("generation failed")
            job.future.set_exception(EngineError(f"generation failed: {exc}"))
            return False
        result = job.outcome(result)
        if yielded and result.finish_reason == "cancelled" and not job.cancelled:
            job.restarts += 1
            job.yielded_tokens += result.completion_tokens
            log.debug("%s: yielded to a more urgent job after %d tokens; queued again (%d)",
                      job.kind, result.completion_tokens, job.restarts)
            return True
        log.debug("%s: %d prompt + %d tokens, first token %.0f ms, %.1f tok/s (%s)",
                  job.kind, result.prompt_tokens, result.completion_tokens,
                  result.first_token_s * 1000, result.tokens_per_s, result.finish_reason)
        job.future.set_result(result)
        return False


async def wait_for(job: Job) -> Any:
    """Await a job from asyncio; cancelling the awaiting task cancels the job."""
    try:
        return await asyncio.wrap_future(job.future)
    except asyncio.CancelledError:
        job.cancel()
        raise


__all__ = ["MAX_RESTARTS", "PREEMPTIBLE", "Completion", "GenerationWorker", "Job",
           "ModelInfo", "Priority", "wait_for"]
