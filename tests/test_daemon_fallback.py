# ruff: noqa: F811 - the cache fixture, imported from test_daemon_shared, is taken by name
"""model.shared when the daemon fails: clients fall back to a model of their own.

Real daemon processes (tests/fake_daemon.py: the real daemon serving a scripted
FakeEngine), killed with SIGKILL in the middle of an answer, or kept from starting
(HEARTHD_SCRIPT names a missing script). The client's fallback is a FakeEngine in
this process, so which model answered is exact.
"""

from __future__ import annotations

import os
import signal
import threading
import time

from test_daemon_shared import (  # noqa: F401 - the fixture is used by name
    DOC,
    cache,
    info,
    shared_settings,
)

from hearth_lsp.server.daemon_files import pid_alive
from hearth_lsp.server.engine.daemon_client import DaemonEngine, shared_engine_factory
from hearth_lsp.server.engine.fake import FakeEngine
from hearth_lsp.server.engine.shared_worker import SharedWorker
from hearth_lsp.server.engine.worker import wait_for
from hearth_lsp.server.local import engine_factory_for, local_worker
from hearth_lsp.server.settings import SamplingSettings

LONG = " ".join([DOC] * 4)  # many pieces, each after a delay: time to kill the daemon
SAMPLING = SamplingSettings(max_tokens=500)


def kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.01)


def slow_daemon(monkeypatch) -> None:
    monkeypatch.setenv("FAKE_ENGINE_DEFAULT", LONG)
    monkeypatch.setenv("FAKE_ENGINE_DELAY", "0.05")


class Own:
    """The fallback factory: a FakeEngine in this process, counted."""

    def __init__(self, answer: str = DOC) -> None:
        self.answer = answer
        self.made: list[FakeEngine] = []

    def __call__(self, _settings, _cache) -> FakeEngine:
        engine = FakeEngine(default=self.answer)
        self.made.append(engine)
        return engine


def killing_on_first_piece(engine: DaemonEngine, pieces: list[str]):
    """on_piece: the first piece kills the daemon that sent it."""
    killed: list[int] = []

    def on_piece(piece: str) -> None:
        pieces.append(piece)
        if not killed:
            killed.append(engine.state.pid)
            kill(engine.state.pid)

    return on_piece, killed


def test_a_daemon_that_cannot_start_gives_a_model_in_this_process(cache, monkeypatch):
    monkeypatch.setenv("HEARTHD_SCRIPT", str(cache / "missing.py"))
    own = Own()
    engine = engine_factory_for(shared_settings(), own)(shared_settings(), cache)
    assert engine is own.made[0] and len(own.made) == 1  # the test factory, loaded here
    warning = " ".join(engine.info.warnings)
    assert "shared model daemon is not available" in warning
    assert "did not start" in warning and "loaded in this process" in warning
    assert engine.generate("hi", SAMPLING, [], lambda: False, lambda _p: None).text == DOC


async def test_the_cli_worker_falls_back_when_the_daemon_cannot_start(cache, monkeypatch,
                                                                      caplog):
    monkeypatch.setenv("HEARTHD_SCRIPT", str(cache / "missing.py"))
    own = Own()
    async with local_worker(shared_settings(), cache, own) as worker:
        assert worker.engine is own.made[0]
        job = worker.submit("docstring", "hi", SAMPLING)
        assert (await wait_for(job)).text == DOC
    assert any("loaded in this process instead" in r.getMessage() for r in caplog.records)


def test_a_job_cut_by_a_dying_daemon_is_retried_on_the_restarted_one(cache, monkeypatch):
    slow_daemon(monkeypatch)
    own = Own()
    engine = shared_engine_factory(shared_settings(), cache, fallback=own)
    assert isinstance(engine, DaemonEngine)
    try:
        pieces: list[str] = []
        on_piece, killed = killing_on_first_piece(engine, pieces)
        result = engine.generate("one", SAMPLING, [], lambda: False, on_piece)
        assert killed and engine.restarts == 1 and engine.state.pid != killed[0]
        assert result.text == LONG and result.finish_reason == "stop"
        assert "".join(pieces) == LONG  # what was streamed before the cut, not twice
        assert not own.made and engine.in_process is None  # the daemon answered
        assert info(cache)["counts"]["completed"] == 1
    finally:
        engine.close()


def test_a_job_cut_by_a_daemon_that_cannot_restart_runs_in_this_process(cache, monkeypatch):
    slow_daemon(monkeypatch)
    own = Own(LONG)
    engine = shared_engine_factory(shared_settings(), cache, fallback=own)
    assert isinstance(engine, DaemonEngine)
    notices: list[str] = []
    engine.on_notice = notices.append
    try:
        monkeypatch.setenv("HEARTHD_SCRIPT", str(cache / "missing.py"))  # no restart
        pieces: list[str] = []
        on_piece, killed = killing_on_first_piece(engine, pieces)
        result = engine.generate("one", SAMPLING, [], lambda: False, on_piece)
        assert killed and len(own.made) == 1 and own.made[0].prompts == ["one"]
        assert result.text == LONG and "".join(pieces) == LONG
        assert engine.fallbacks == 1 and engine.concurrent is False
        assert len(notices) == 1 and "did not start" in notices[0]
        assert notices[0] in engine.info.warnings
        # Later jobs go straight to the model of this process.
        again = engine.generate("two", SAMPLING, [], lambda: False, lambda _p: None)
        assert again.text == LONG and own.made[0].prompts == ["one", "two"]
        assert len(own.made) == 1
    finally:
        engine.close()


def test_the_shared_worker_retries_jobs_in_flight_when_the_daemon_dies(cache, monkeypatch):
    """The language server's path: a SharedWorker with jobs in flight at the daemon."""
    slow_daemon(monkeypatch)
    own = Own(LONG)
    worker = SharedWorker()
    try:
        settings = shared_settings()
        make = engine_factory_for(settings, own)
        wait_for_sync(worker.load(lambda: make(settings, cache)))
        engine = worker.engine
        assert isinstance(engine, DaemonEngine)
        first_piece = threading.Event()
        jobs = [worker.submit("docstring", f"job {i}", SAMPLING,
                              on_piece=lambda _p: first_piece.set()) for i in range(2)]
        assert first_piece.wait(30)
        old = engine.state.pid
        monkeypatch.setenv("HEARTHD_SCRIPT", str(cache / "missing.py"))
        kill(old)
        results = [job.future.result(timeout=60) for job in jobs]
        assert [r.text for r in results] == [LONG, LONG]
        assert len(own.made) == 1 and sorted(own.made[0].prompts) == ["job 0", "job 1"]
        assert engine.fallbacks == 1
    finally:
        worker.shutdown()


def wait_for_sync(job):
    return job.future.result(timeout=60)


def test_without_a_fallback_a_daemon_that_cannot_restart_fails_the_job(cache, monkeypatch):
    slow_daemon(monkeypatch)
    engine = shared_engine_factory(shared_settings(), cache)
    assert isinstance(engine, DaemonEngine)
    try:
        monkeypatch.setenv("HEARTHD_SCRIPT", str(cache / "missing.py"))
        pieces: list[str] = []
        on_piece, killed = killing_on_first_piece(engine, pieces)
        try:
            engine.generate("one", SAMPLING, [], lambda: False, on_piece)
        except Exception as exc:  # noqa: BLE001 - its message is the point
            assert "not reachable" in str(exc) and "did not start" in str(exc)
        else:
            raise AssertionError("the job should fail")
        assert killed
    finally:
        engine.close()

