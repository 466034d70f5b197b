# ruff: noqa: F811 - the fixtures, imported from test_daemon, are taken by name
"""The daemon's /metrics (Prometheus text format) and its JSONL job trace.

The real daemon in this process with a FakeEngine (tests/test_daemon.py's fixtures);
the metrics are read back with prometheus_client's own parser.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
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

from hearth_lsp.server import daemon_files
from hearth_lsp.server.daemon import CLIENTS_KEPT, Trace
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


def test_a_job_that_yielded_is_traced_with_its_first_token_and_every_token_it_made(
        make_daemon, clients):
    # A background answer streams, yields to a user's action, and runs again from the
    # start: its first token is the one its client got in the first run (not the rerun's,
    # after the user's whole answer), and the tokens of the run that yielded are counted.
    text = "word " * 300
    engine = FakeEngine(default=text, piece_delay_s=0.03)
    daemon = make_daemon(engine)
    engine.responses = [text, "the docstring " * 10]  # the tool's first run, the user's
    asked = time.perf_counter()
    tool, out = in_thread(generate, clients(daemon), "tool", priority=Priority.BACKGROUND,
                          kind="tool")
    wait_until(lambda: engine.prompts == ["tool"]
               and (job := daemon.worker.running()) is not None and job.delivered > 0)
    streamed = time.perf_counter()  # the tool's client has had text by now
    generate(clients(daemon), "user", kind="docstring")
    tool.join(30)
    answer, _ = out["result"]
    wait_until(lambda: daemon.files.trace.exists()
               and len(daemon.files.trace.read_text().splitlines()) == 2)
    lines = {(r := json.loads(t))["task"]: r for t in daemon.files.trace.read_text().splitlines()}
    line = lines["tool"]
    assert line["restarts"] == 1 and line["tokens_out"] == answer.completion_tokens
    assert line["tokens_yielded"] >= 1
    assert line["first_token_s"] <= streamed - asked  # (the rerun's came after "user")
    assert samples(daemon)[("hearth_daemon_completion_tokens_total", (("task", "tool"),))] \
        == line["tokens_out"] + line["tokens_yielded"]


def test_queue_depth_leaves_out_a_job_cancelled_while_queued(make_daemon, clients):
    engine = FakeEngine(default="word " * 300, piece_delay_s=0.03)
    daemon = make_daemon(engine)
    release = threading.Event()
    blocker, _ = in_thread(generate, clients(daemon), "blocker", stop_when=release.is_set)
    wait_until(lambda: engine.prompts == ["blocker"])
    job = daemon.worker.submit("queued", "queued", SAMPLING, priority=Priority.BACKGROUND)
    assert samples(daemon)[("hearth_daemon_queue_depth", ())] == 1
    job.cancel()  # it stays in the worker's queue until its turn, but waits for nothing
    assert samples(daemon)[("hearth_daemon_queue_depth", ())] == 0
    release.set()
    blocker.join(30)


def test_the_daemon_keeps_the_names_of_its_latest_clients_only(make_daemon):
    # Every hook and CLI run is a new process with a new name ("pid N").
    daemon = make_daemon(FakeEngine())
    base = daemon.url.removesuffix("/v1")
    with httpx.Client() as http:
        for n in range(CLIENTS_KEPT + 10):
            http.get(f"{base}/hearth/info", headers={
                "Authorization": f"Bearer {daemon.token}", "X-Hearth-Client": f"pid {n}"})
        http.get(f"{base}/hearth/info", headers={
            "Authorization": f"Bearer {daemon.token}", "X-Hearth-Client": "pid 20"})
        info = http.get(f"{base}/hearth/info",
                        headers={"Authorization": f"Bearer {daemon.token}"}).json()
    assert len(info["clients"]) == CLIENTS_KEPT
    assert info["clients"][-2:] == [f"pid {CLIENTS_KEPT + 9}", "pid 20"]  # most recent last
    assert "pid 0" not in info["clients"] and "pid 10" in info["clients"]


def test_the_daemon_log_is_rotated_past_its_size(make_daemon, monkeypatch, tmp_path):
    # The daemon's stderr is the log file the client that started it opened: past its
    # size it moves to .log.1 and the daemon writes on in a new one.
    monkeypatch.setattr(daemon_files, "LOG_MAX_BYTES", 1000)
    daemon = make_daemon(FakeEngine(), idle_s=5)
    fd = os.open(daemon.files.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        daemon.log_fd = fd
        os.write(fd, b"old line\n" * 200)
        older = daemon.files.log.with_name(daemon.files.log.name + ".1")
        wait_until(older.exists)
        os.write(fd, b"new line\n")
        assert older.read_bytes() == b"old line\n" * 200
        assert daemon.files.log.read_bytes() == b"new line\n"
        assert daemon.files.log.stat().st_mode & 0o777 == 0o600
    finally:
        os.close(fd)


def test_rotate_log_leaves_a_stderr_that_is_not_the_log_alone(tmp_path):
    # `hearth daemon` run by hand writes to its terminal; a log file of the same name
    # from an earlier daemon is not moved.
    log = tmp_path / "d.log"
    log.write_bytes(b"x" * 100)
    other = os.open(tmp_path / "other", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.write(other, b"y" * 100)
        assert not daemon_files.rotate_log(log, other, max_bytes=10)
        assert log.read_bytes() == b"x" * 100
    finally:
        os.close(other)
