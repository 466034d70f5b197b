"""SharedWorker is the language server's worker: with an in-process engine it must be
a GenerationWorker in every respect. Every test of tests/test_worker.py that takes the
``worker`` fixture runs here again on a SharedWorker (the fixture below replaces it)."""

from __future__ import annotations

import pytest
from test_worker import (  # noqa: F401 - collected again, on this module's fixture
    test_a_failed_load_keeps_the_worker_up_and_explains,
    test_a_job_told_enough_stops_there_and_finishes_with_that_text,
    test_a_newer_job_with_the_same_key_cancels_the_older,
    test_a_running_review_on_save_yields_to_a_completion_and_runs_again,
    test_a_yielded_job_cancelled_while_queued_again_ends_cancelled,
    test_background_work_yields_too_but_a_user_action_does_not,
    test_cancel_stops_a_running_generation_within_a_token,
    test_cancelling_the_awaiting_task_cancels_the_job,
    test_engine_exceptions_fail_the_job_not_the_worker,
    test_everything_runs_on_one_thread,
    test_generates_and_streams_pieces,
    test_queued_jobs_that_are_cancelled_never_run,
    test_state_listeners_see_loading_and_ready,
    test_stop_sequences_and_max_tokens,
    test_user_requests_jump_ahead_of_background_work,
)

from hearth_lsp.server.engine.shared_worker import SharedWorker


@pytest.fixture
def worker():
    w = SharedWorker()
    yield w
    w.shutdown()
