"""The generation worker of a process that may use the shared model (``model.shared``).

SharedWorker is a GenerationWorker. With an in-process engine it is exactly that: one
job at a time, in priority order. With an engine that says it is ``concurrent`` (the
DaemonEngine of daemon_client.py), it hands jobs to the engine as they come, each on
its own thread and with its priority: the daemon's one queue then orders every client's
jobs, and a job of this process waiting there (the git hook's, a review on save) never
holds up a more urgent one of the same process (the user's action). Up to MAX_IN_FLIGHT
of the less urgent ones are at the daemon at once; the user's own never wait for room.
"""

from __future__ import annotations

import logging
import threading

from .base import EngineError, ModelUnavailable
from .worker import GenerationWorker, Job, Priority

log = logging.getLogger(__name__)

# Generations of one process less urgent than the user's (reviews on save, the hook,
# background work) in flight at the daemon at once; the user's own and completions go at
# once, whatever else is in flight (DaemonEngine's connection pool has room for them).
MAX_IN_FLIGHT = 4
URGENT = Priority.USER


class SharedWorker(GenerationWorker):
    """A GenerationWorker that runs a concurrent engine's generations side by side.

    With an in-process engine (``concurrent`` unset) it is a GenerationWorker: one job
    at a time, in priority order. With a DaemonEngine the daemon's queue decides the
    order across every client; here, the most urgent job queued goes first, each handing
    its priority on, and up to MAX_IN_FLIGHT less urgent than the user's wait there at
    once. A load waits until the jobs in flight are done (cancelled, when it replaces
    the engine).
    """

    def __init__(self, name: str = "hearth-generation", max_in_flight: int = MAX_IN_FLIGHT):
        super().__init__(name)
        self._in_flight: set[Job] = set()
        self._max = max_in_flight
        # Notified when a job leaves (room for another) and when one is queued.
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

    def _enqueue(self, job: Job) -> Job:
        super()._enqueue(job)
        with self._lock:  # a job waiting for room may have to let this one go first
            self._drained.notify_all()
        return job

    def _room_for(self, job: Job) -> bool:
        """Wait until ``job`` may go to the engine: at once when it is as urgent as the
        user's, else when fewer than MAX_IN_FLIGHT less urgent jobs are in flight. False
        when a more urgent job is queued meanwhile: it goes first."""
        with self._lock:
            while True:
                if job.priority <= URGENT or job.cancelled or len(
                        [j for j in self._in_flight if j.priority > URGENT]) < self._max:
                    return True
                if any(j.priority < job.priority and j not in self._in_flight
                       and not j.cancelled for j in self._jobs):
                    return False
                self._drained.wait(timeout=0.5)  # (a cancel does not notify)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            job = item[2]
            if job is None or job.load is not None \
                    or not getattr(self.engine, "concurrent", False):
                if job is None:
                    return
                if job.load is not None:
                    self._drain()
                self._run_one(job)  # as GenerationWorker runs it
                continue
            if not self._room_for(job):
                self._queue.put(item)  # its place among its peers is kept
                continue
            if not job.future.set_running_or_notify_cancel():
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
                    job.grammar, job.start, priority=job.priority, kind=job.kind,
                    enough=job.enough_event.is_set)
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

    def shutdown(self, timeout: float = 5.0) -> None:
        self.cancel_where(lambda j: True)
        with self._lock:
            self._drained.wait_for(lambda: not self._in_flight, timeout=timeout)
        super().shutdown(timeout)


__all__ = ["MAX_IN_FLIGHT", "URGENT", "SharedWorker"]
