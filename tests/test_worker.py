"""The generation worker: one thread, priorities, cancellation, failures."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from hearth_lsp.server.engine.base import EngineError, ModelUnavailable
from hearth_lsp.server.engine.fake import FakeEngine
from hearth_lsp.server.engine.worker import MAX_RESTARTS, GenerationWorker, Priority, wait_for
from hearth_lsp.server.settings import SamplingSettings

S = SamplingSettings(max_tokens=1000)


@pytest.fixture
def worker():
    w = GenerationWorker()
    yield w
    w.shutdown()


def loaded(worker, engine):
    worker.load(lambda: engine).future.result(5)
    return engine


def test_generates_and_streams_pieces(worker):
    loaded(worker, FakeEngine.scripted(["one two three"]))
    pieces = []
    result = worker.submit("t", "prompt", S, on_piece=pieces.append).future.result(5)
    assert result.text == "one two three" and "".join(pieces) == result.text
    assert result.finish_reason == "stop" and result.completion_tokens == 3


def test_a_job_told_enough_stops_there_and_finishes_with_that_text(worker):
    # (a commit message whose first line is refused: the rest is not generated)
    loaded(worker, FakeEngine.scripted(["one two three four five six"]))
    submitted = threading.Event()
    jobs = []

    def piece(text):
        submitted.wait(5)
        if "two" in text:
            jobs[0].enough()

    jobs.append(worker.submit("t", "p", S, on_piece=piece))
    submitted.set()
    result = jobs[0].future.result(5)
    assert result.text == "one two" and result.finish_reason == "enough"
    assert not jobs[0].cancelled
    assert worker.submit("t", "p", S).future.result(5).finish_reason == "stop"  # still up


def test_stop_sequences_and_max_tokens(worker):
    loaded(worker, FakeEngine.scripted(["a b STOP c", "a b c d"]))
    assert worker.submit("t", "p", S, stop=["STOP"]).future.result(5).text == "a b "
    short = worker.submit("t", "p", SamplingSettings(max_tokens=2)).future.result(5)
    assert short.text == "a b" and short.finish_reason == "length"


def test_everything_runs_on_one_thread(worker):
    seen = set()
    engine = FakeEngine(default="x", responses=[])
    original = engine.generate

    def spy(*args, **kwargs):
        seen.add(threading.get_ident())
        return original(*args, **kwargs)

    engine.generate = spy  # type: ignore[method-assign]
    loaded(worker, engine)
    jobs = [worker.submit("t", str(i), S) for i in range(5)]
    for j in jobs:
        j.future.result(5)
    assert len(seen) == 1 and threading.get_ident() not in seen


def test_user_requests_jump_ahead_of_background_work(worker):
    engine = loaded(worker, FakeEngine(default="w " * 20, piece_delay_s=0.01))
    first = worker.submit("doc", "first", S, priority=Priority.USER)  # never yields
    time.sleep(0.05)  # `first` is running; the rest queue up behind it
    bg = worker.submit("bg", "background", S, priority=Priority.BACKGROUND)
    hook = worker.submit("commit", "hook", S, priority=Priority.HOOK)
    save = worker.submit("review", "save", S, priority=Priority.SAVE)
    user = worker.submit("doc", "user", S, priority=Priority.USER)
    for j in (first, bg, hook, save, user):
        j.future.result(10)
    assert engine.prompts == ["first", "user", "save", "hook", "background"]


def test_cancel_stops_a_running_generation_within_a_token(worker):
    loaded(worker, FakeEngine(default="tok " * 10000, piece_delay_s=0.002))
    job = worker.submit("t", "p", S)
    while worker.running() is not job:
        time.sleep(0.001)
    time.sleep(0.02)
    job.cancel()
    result = job.future.result(5)
    assert result.finish_reason == "cancelled"
    assert worker.idle.wait(5)
    assert result.completion_tokens < 1000  # stopped long before the end


def test_a_newer_job_with_the_same_key_cancels_the_older(worker):
    loaded(worker, FakeEngine(default="tok " * 2000, piece_delay_s=0.002))
    old = worker.submit("doc", "old", S, key=("doc", "file:///a.py"))
    queued = worker.submit("doc", "queued", S, key=("doc", "file:///b.py"))
    new = worker.submit("doc", "new", S, key=("doc", "file:///a.py"))
    assert old.cancelled and not queued.cancelled
    assert new.future.result(10).finish_reason == "length"
    assert old.future.cancelled() or old.future.result().finish_reason == "cancelled"


def test_queued_jobs_that_are_cancelled_never_run(worker):
    engine = loaded(worker, FakeEngine(default="a " * 50, piece_delay_s=0.005))
    running = worker.submit("t", "running", S)
    waiting = worker.submit("t", "waiting", S)
    waiting.cancel()
    running.future.result(5)
    assert worker.idle.wait(2)
    assert waiting.future.cancelled() and "waiting" not in engine.prompts


def test_a_failed_load_keeps_the_worker_up_and_explains(worker):
    def broken():
        raise FileNotFoundError("/models/missing.gguf: no such file; set model.path")

    load = worker.load(broken)
    with pytest.raises(ModelUnavailable, match="missing.gguf"):
        load.future.result(5)
    assert worker.state == "error"
    with pytest.raises(ModelUnavailable, match="missing.gguf"):
        worker.submit("t", "p", S).future.result(5)
    loaded(worker, FakeEngine.scripted(["ok"]))
    assert worker.state == "ready" and worker.submit("t", "p", S).future.result(5).text == "ok"


def test_engine_exceptions_fail_the_job_not_the_worker(worker):
    def explode(prompt):
        raise RuntimeError("boom")

    loaded(worker, FakeEngine(responses=[explode, "fine"]))
    with pytest.raises(EngineError, match="boom"):
        worker.submit("t", "p", S).future.result(5)
    assert worker.submit("t", "p", S).future.result(5).text == "fine"


async def test_cancelling_the_awaiting_task_cancels_the_job(worker):
    loaded(worker, FakeEngine(default="tok " * 10000, piece_delay_s=0.002))
    job = worker.submit("t", "p", S)
    task = asyncio.ensure_future(wait_for(job))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert job.cancelled
    assert await asyncio.to_thread(worker.idle.wait, 2)


def test_state_listeners_see_loading_and_ready(worker):
    states = []
    worker.add_listener(lambda state, w: states.append(state))
    loaded(worker, FakeEngine())
    assert states == ["loading", "ready"]


def test_shutdown_never_frees_the_model_under_a_running_generation():
    # An engine stuck inside one call (as llama.cpp is in a batch it cannot abort):
    # closing it then would free the model under the generation thread (SIGSEGV).
    release = threading.Event()
    closed = []

    def stuck(prompt):
        release.wait(10)
        return "late"

    engine = FakeEngine(responses=[stuck])
    engine.close = lambda: closed.append(True)  # type: ignore[method-assign]
    w = GenerationWorker()
    loaded(w, engine)
    job = w.submit("t", "p", S)
    deadline = time.monotonic() + 5
    while w.running() is not job:
        assert time.monotonic() < deadline
        time.sleep(0.001)
    w.shutdown(timeout=0.2)
    assert closed == [] and w.engine is engine
    release.set()
    assert job.future.result(5).finish_reason in ("stop", "cancelled")


def _completion_arrives_mid_generation(worker, priority, cancel_first_during_completion=False,
                                       urgent=Priority.COMPLETION):
    """A job at ``priority`` streams; after its first piece an ``urgent`` job is submitted
    (from its on_piece, so the order of events is fixed, not timed)."""
    text = "one two three four five six seven eight"
    engine = loaded(worker, FakeEngine(default=text, piece_delay_s=0.001))
    pieces: list[str] = []
    jobs: dict = {}

    def ghost_piece(piece):
        if cancel_first_during_completion:
            jobs["first"].cancel()

    def first_piece(piece):
        pieces.append(piece)
        if "ghost" not in jobs:
            jobs["ghost"] = worker.submit("completion", "ghost", S, priority=urgent,
                                          on_piece=ghost_piece)

    jobs["first"] = worker.submit("review", "review", S, priority=priority,
                                  on_piece=first_piece)
    first = jobs["first"].future.result(10)
    ghost = jobs["ghost"].future.result(10)
    assert ghost.text == text and ghost.finish_reason == "stop"
    return engine, jobs["first"], first, pieces, text


def test_a_running_review_on_save_yields_to_a_completion_and_runs_again(worker):
    engine, job, result, pieces, text = _completion_arrives_mid_generation(worker, Priority.SAVE)
    # stopped for the completion, then run again from the start: the whole answer
    assert engine.prompts == ["review", "ghost", "review"]
    assert job.restarts == 1
    assert result.text == text and result.finish_reason == "stop"
    assert "".join(pieces) == text  # what was streamed before yielding is not streamed twice
    assert worker.idle.wait(5)


def test_background_work_yields_too_but_a_user_action_does_not(worker):
    engine, job, result, _, text = _completion_arrives_mid_generation(worker,
                                                                      Priority.BACKGROUND)
    assert engine.prompts == ["review", "ghost", "review"] and result.text == text
    worker.shutdown()
    user_worker = GenerationWorker()
    try:
        engine, job, result, _, text = _completion_arrives_mid_generation(user_worker,
                                                                          Priority.USER)
        assert engine.prompts == ["review", "ghost"] and job.restarts == 0
        assert result.text == text
    finally:
        user_worker.shutdown()


@pytest.mark.parametrize(("running", "urgent"), [
    (Priority.SAVE, Priority.USER),  # a review on save waits for the user's action
    (Priority.HOOK, Priority.USER),
    (Priority.HOOK, Priority.SAVE),
    (Priority.BACKGROUND, Priority.HOOK),  # another tool's work waits for a commit
])
def test_a_running_job_yields_to_any_more_urgent_one(worker, running, urgent):
    engine, job, result, pieces, text = _completion_arrives_mid_generation(
        worker, running, urgent=urgent)
    # The urgent job ran after one token of the other, not after its whole answer.
    assert engine.prompts == ["review", "ghost", "review"] and job.restarts == 1
    assert result.text == "".join(pieces) == text


@pytest.mark.parametrize(("running", "urgent"), [
    (Priority.SAVE, Priority.SAVE), (Priority.BACKGROUND, Priority.BACKGROUND),
    (Priority.USER, Priority.USER),
])
def test_a_job_of_the_same_priority_waits_its_turn(worker, running, urgent):
    engine, job, *_ = _completion_arrives_mid_generation(worker, running, urgent=urgent)
    assert engine.prompts == ["review", "ghost"] and job.restarts == 0


def test_urgent_work_that_never_stops_coming_does_not_starve_a_yielding_job(worker):
    # Ghost text while the user types: a completion arrives during every run of the hook's
    # job. It yields MAX_RESTARTS times, then runs to its end; the completions still run.
    engine = loaded(worker, FakeEngine(default="feat: add to_euros", piece_delay_s=0.001))
    generate = engine.generate
    ghosts = []

    def typing(prompt, *args, **kwargs):
        if prompt == "hook":
            ghosts.append(worker.submit("completion", "ghost", S, priority=Priority.COMPLETION))
        return generate(prompt, *args, **kwargs)

    engine.generate = typing  # type: ignore[method-assign]
    job = worker.submit("commit", "hook", S, priority=Priority.HOOK)
    assert job.future.result(10).text == "feat: add to_euros"
    assert job.restarts == MAX_RESTARTS
    assert engine.prompts == ["hook", "ghost"] * (MAX_RESTARTS + 1)
    assert all(g.future.result(10).finish_reason == "stop" for g in ghosts)


def test_a_rerun_after_yielding_samples_with_the_first_run_s_seed(worker):
    """A random seed (-1) is drawn once, when the job is submitted: the rerun samples
    the same answer, so what the first run streamed stays the start of it."""
    random_seed = SamplingSettings(max_tokens=1000, seed=-1)
    text = "one two three four"
    engine = loaded(worker, FakeEngine(default=text, piece_delay_s=0.001))
    jobs: dict = {}

    def first_piece(_piece):
        if "user" not in jobs:
            jobs["user"] = worker.submit("doc", "user", S, priority=Priority.USER)

    jobs["hook"] = worker.submit("commit", "hook", random_seed, priority=Priority.HOOK,
                                 on_piece=first_piece)
    jobs["hook"].future.result(10)
    jobs["user"].future.result(10)
    assert engine.prompts == ["hook", "user", "hook"]
    first, _, rerun = engine.samplings
    assert first.seed == rerun.seed >= 0
    other = worker.submit("commit", "again", random_seed, priority=Priority.HOOK)
    other.future.result(10)
    assert engine.samplings[-1].seed >= 0 and random_seed.seed == -1  # the caller's is kept
    assert engine.samplings[-1].seed != first.seed  # asked again: another answer


def test_random_seeds_repeat_from_process_to_process():
    """As llama.cpp's own seed sequence did: the same requests in a new process (a rerun
    of bench/quality.py) sample the same answers, while each request gets a new seed."""
    seeds = []
    for _ in range(2):
        w = GenerationWorker()
        try:
            engine = loaded(w, FakeEngine(default="x"))
            for n in range(3):
                w.submit("t", str(n), SamplingSettings(seed=-1)).future.result(10)
            w.submit("t", "fixed", SamplingSettings(seed=7)).future.result(10)
            seeds.append([s.seed for s in engine.samplings])
        finally:
            w.shutdown()
    assert seeds[0] == seeds[1] and len(set(seeds[0][:3])) == 3 and seeds[0][3] == 7


def test_a_yielded_job_cancelled_while_queued_again_ends_cancelled(worker):
    engine, job, result, _, _ = _completion_arrives_mid_generation(
        worker, Priority.SAVE, cancel_first_during_completion=True)
    assert job.restarts == 1 and result.finish_reason == "cancelled"
    assert worker.idle.wait(5)
