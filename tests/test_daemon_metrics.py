# ruff: noqa: F811 - the fixtures, imported from test_daemon, are taken by name
"""The daemon's /metrics (Prometheus text format) and its JSONL job trace.

The real daemon in this process with a FakeEngine (tests/test_daemon.py's fixtures);
the metrics are read back with prometheus_client's own parser.
"""

from __future__ import annotations

import hashlib
import json
import time

import httpx
from prometheus_client.parser import text_string_to_metric_families
from test_daemon import (  # noqa: F401 - fixtures, taken by name
    SAMPLING,
    cache,
    clients,
    generate,
    in_thread,
    make_daemon,
    wait_until,
)

from hearth_lsp.server.daemon import Trace
from hearth_lsp.server.engine.fake import FakeEngine
from hearth_lsp.server.engine.worker import Priority

CANARY = "CANARY-7f3a9c-do-not-log"


def metrics(daemon, token: str | None = None) -> httpx.Response:
    return httpx.get(f"{daemon.url.removesuffix('/v1')}/metrics",
                     headers={"Authorization": f"Bearer {token or daemon.token}"})


def samples(daemon) -> dict[tuple[str, tuple], float]:
    """Every sample, by name and labels, parsed as a Prometheus server would."""
    response = metrics(daemon)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_metrics_need_the_token(make_daemon):
    daemon = make_daemon(FakeEngine())
    assert metrics(daemon, token="wrong").status_code == 401
    assert samples(daemon)[("hearth_daemon_refused_requests_total", ())] == 1


def test_metrics_count_a_job_with_its_tokens_and_latency(make_daemon, clients):
    answer = "one two three four"
    daemon = make_daemon(FakeEngine(default=answer))
    client = clients(daemon)
    before = samples(daemon)
    assert ("hearth_daemon_jobs_total", (("outcome", "completed"), ("task", "docstring"))) \
        not in before
    assert before[("hearth_daemon_queue_depth", ())] == 0
    assert before[("hearth_daemon_model_loads", ())] == 1
    result, _ = generate(client, "a prompt of six words here", kind="docstring")
    assert result.text == answer
    after = samples(daemon)
    task = (("task", "docstring"),)
    assert after[("hearth_daemon_jobs_total", (("outcome", "completed"), *task))] == 1
    assert after[("hearth_daemon_job_seconds_count", task)] == 1
    assert after[("hearth_daemon_job_seconds_bucket", (("le", "+Inf"), *task))] == 1
    assert after[("hearth_daemon_first_token_seconds_count", task)] == 1
    assert after[("hearth_daemon_completion_tokens_total", task)] == 4  # four pieces
    assert after[("hearth_daemon_prompt_tokens_total", task)] == 6  # the fake: words
    # A job its client leaves is counted as cancelled.
    slow = FakeEngine(default=" ".join(["w"] * 200), piece_delay_s=0.02)
    daemon2 = make_daemon(slow)
    client2 = clients(daemon2)
    stop = {"now": False}
    pieces: list[str] = []

    def on_piece(piece: str) -> None:
        pieces.append(piece)
        stop["now"] = True

    thread, out = in_thread(client2.generate, "x", SAMPLING, [], lambda: stop["now"],
                            on_piece, priority=Priority.BACKGROUND, kind="commit")
    thread.join(30)
    wait_until(lambda: samples(daemon2).get(
        ("hearth_daemon_jobs_total", (("outcome", "cancelled"), ("task", "commit")))) == 1)
    # ... with the tokens it did generate before it stopped, in the trace too.
    assert samples(daemon2).get(
        ("hearth_daemon_completion_tokens_total", (("task", "commit"),)), 0) >= 1
    wait_until(lambda: daemon2.files.trace.exists())
    [line] = [record for t in daemon2.files.trace.read_text().splitlines()
              if (record := json.loads(t))["task"] == "commit"]
    assert line["outcome"] == "cancelled" and line["tokens_out"] >= 1
    assert line["finish"] == "cancelled" and isinstance(line["first_token_s"], float)


def test_a_job_its_client_had_enough_of_is_completed_not_cancelled(make_daemon, clients):
    # The commit task stops reading an answer whose first line is already refused: it
    # tells the daemon before it leaves, and the job counts as done (most hook jobs).
    # A token every 0.3 s: the daemon sees the client gone before the job's next token.
    daemon = make_daemon(FakeEngine(default=" ".join(["w"] * 200), piece_delay_s=0.3))
    pieces: list[str] = []
    result = clients(daemon).generate("x", SAMPLING, [], lambda: bool(pieces), pieces.append,
                                      priority=Priority.HOOK, kind="commit",
                                      enough=lambda: True)
    assert result.finish_reason == "cancelled"  # here; the worker's Job makes it "enough"
    wait_until(lambda: daemon.files.trace.exists() and daemon.files.trace.read_text())
    [line] = [json.loads(t) for t in daemon.files.trace.read_text().splitlines()]
    assert line["outcome"] == "completed" and line["finish"] == "enough"
    assert line["tokens_out"] >= 1 and daemon.counts["cancelled"] == 0
    assert samples(daemon)[("hearth_daemon_jobs_total",
                            (("outcome", "completed"), ("task", "commit")))] == 1


def test_the_trace_has_a_line_per_job_and_no_prompt_text(make_daemon, clients):
    daemon = make_daemon(FakeEngine(default="alpha beta"))
    client = clients(daemon)
    prompt = f"Write a docstring. Secret: {CANARY}\ndef f(): pass"
    generate(client, prompt, kind="docstring")
    generate(client, "second", priority=Priority.BACKGROUND, kind="commit")
    trace = daemon.files.trace
    # The daemon writes a job's line after answering it: wait (bounded) for the second.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (
            not trace.exists() or len(trace.read_text().splitlines()) < 2):
        time.sleep(0.02)
    assert trace.parent == daemon.files.state.parent  # the cache dir's daemon folder
    assert trace.stat().st_mode & 0o777 == 0o600
    text = trace.read_text()
    assert CANARY not in text and "Write a docstring" not in text
    assert daemon.token not in text
    first, second = (json.loads(line) for line in text.splitlines())
    assert first["prompt_sha256"] == hashlib.sha256(prompt.encode()).hexdigest()
    assert first["task"] == "docstring" and first["outcome"] == "completed"
    assert first["model"] == "fake" and first["tokens_out"] == 2
    assert first["tokens_in"] == len(prompt.split()) and first["finish"] == "stop"
    for key in ("latency_s", "queue_s", "first_token_s", "generate_s", "ts"):
        assert isinstance(first[key], float), key
    assert second["task"] == "commit" and second["priority"] == "background"


def test_the_trace_is_rotated_past_its_size(tmp_path):
    trace = Trace(tmp_path / "t.trace.jsonl", max_bytes=300)
    for i in range(40):
        trace.write({"job": i, "pad": "x" * 40})
    current = trace.path.read_text().splitlines()
    older = trace.path.with_name("t.trace.jsonl.1").read_text().splitlines()
    assert trace.path.stat().st_size <= 300
    assert trace.path.with_name("t.trace.jsonl.1").stat().st_size <= 300
    assert json.loads(current[-1])["job"] == 39  # the newest line is kept
    assert json.loads(older[-1])["job"] + 1 == json.loads(current[0])["job"]
    assert not trace.path.with_name("t.trace.jsonl.2").exists()
