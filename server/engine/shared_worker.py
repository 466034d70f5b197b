"""The generation worker of a process that may use the shared model (``model.shared``).

SharedWorker is a GenerationWorker. With an in-process engine it is exactly that: one
job at a time, in priority order. With an engine that says it is ``concurrent`` (the
DaemonEngine of daemon_client.py), it hands up to MAX_IN_FLIGHT jobs to the engine at
once, each on its own thread and with its priority: the daemon's one queue then orders
every client's jobs, and a job of this process waiting there (the git hook's, a review
on save) never holds up a more urgent one of the same process (the user's action).
"""

from __future__ import annotations

import logging
import threading

from .base import EngineError, ModelUnavailable
from .worker import GenerationWorker, Job

log = logging.getLogger(__name__)

# Generations of one process in flight at the daemon at once (httpx's pool holds 4).
MAX_IN_FLIGHT = 4


class SharedWorker(GenerationWorker):
    """A GenerationWorker that runs a concurrent engine's generations side by side.

    With an in-process engine (``concurrent`` unset) it is a GenerationWorker: one job
    at a time, in priority order. With a DaemonEngine the daemon's queue decides the
    order across every client; here, up to MAX_IN_FLIGHT jobs wait there at once (the
    most urgent first when more are queued), each handing its priority on. A load
    waits until the jobs in flight are done (cancelled, when it replaces the engine).
    """

    def __init__(self, name: str = "hearth-generation", max_in_flight: int = MAX_IN_FLIGHT):
        super().__init__(name)
        self._in_flight: set[Job] = set()
        self._slots = threading.Semaphore(max_in_flight)
        self._max = max_in_flight
        self._drained = threading.Condition(self._lock)

    def running(self) -> Job | None:
        with self._lock:
            if self._running is not None:
                return self._running
            active = sorted(self._in_flight, key=lambda j: (j.priority, j.id))
        return active[0] if active else None

    def pending(self) -> int:
        with self._lock:
            busy = self._in_flight | ({self._running} if self._running else set())
            return len([j for j in self._jobs if j not in busy])

    def in_flight(self) -> int:
        with self._lock:
            return len(self._in_flight)

    def _run(self) -> None:
        while True:
            concurrent = bool(getattr(self.engine, "concurrent", False))
            if concurrent:
                self._slots.acquire()  # a slot first: then the most urgent job waiting
            _, _, job = self._queue.get()
            if job is None or job.load is not None or not concurrent \
                    or not getattr(self.engine, "concurrent", False):
                if concurrent:
                    self._slots.release()
                if job is None:
                    return
                if job.load is not None:
                    self._drain()
                self._run_one(job)  # as GenerationWorker runs it
                continue
            if not job.future.set_running_or_notify_cancel():
                self._slots.release()
                self._forget(job)
                continue
            with self._lock:
                self._in_flight.add(job)
            self.idle.clear()
            threading.Thread(target=self._remote, args=(job,), daemon=True,
                             name=f"{self.name}-{job.id}").start()

    def _forget(self, job: Job) -> None:
        with self._lock:
            self._jobs.discard(job)
            self._in_flight.discard(job)
            if not self._in_flight:
                self._drained.notify_all()
            if not self._jobs:
                self.idle.set()

    def _drain(self) -> None:
        """Before a load: stop the generations in flight and wait for them."""
        with self._lock:
            flying = list(self._in_flight)
        for job in flying:
            job.cancel_event.set()
        with self._lock:
            self._drained.wait_for(lambda: not self._in_flight, timeout=10.0)

    def _remote(self, job: Job) -> None:
        engine = self.engine
        try:
            if engine is None:
                job.future.set_exception(ModelUnavailable(self.error or "no model is loaded"))
                return
            assert job.sampling is not None
            on_piece = job.on_piece or (lambda _piece: None)
            try:
                result = engine.generate(  # type: ignore[call-arg]
                    job.prompt, job.sampling, job.stop, job.should_stop, on_piece,
                    job.grammar, job.start, priority=job.priority, kind=job.kind)
            except EngineError as exc:
                job.future.set_exception(exc)
                return
            except Exception as exc:  # keep the worker alive whatever the engine does
                log.exception("generation failed")
                job.future.set_exception(EngineError(f"generation failed: {exc}"))
                return
            job.future.set_result(job.outcome(result))
        finally:
            self._forget(job)
            self._slots.release()

    def shutdown(self, timeout: float = 5.0) -> None:
        self.cancel_where(lambda j: True)
        with self._lock:
            self._drained.wait_for(lambda: not self._in_flight, timeout=timeout)
        super().shutdown(timeout)


__all__ = ["MAX_IN_FLIGHT", "SharedWorker"]
