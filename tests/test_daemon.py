"""The shared-model daemon and its client, in this process, with a scripted engine.

The daemon (server/daemon.py: HTTP, token, queue, priorities, cancellation on
disconnect, idle exit) is the real one; only its model is a FakeEngine, so every
assertion is exact: which prompts the model saw, in which order, and with which
grammar. The clients are DaemonEngines (server/engine/daemon_client.py), each its own
HTTP client, as separate processes would be.
"""

from __future__ import annotations

import json
import os
import re
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest

from hearth_lsp.server import daemon as daemon_module
from hearth_lsp.server.daemon import (
    Daemon,
    DaemonFiles,
    daemon_key,
    file_lock,
    parse_priority,
    read_state,
    serve,
)
from hearth_lsp.server.engine.base import EngineError
from hearth_lsp.server.engine.daemon_client import DaemonEngine
from hearth_lsp.server.engine.fake import FakeEngine
from hearth_lsp.server.engine.shared_worker import MAX_IN_FLIGHT, SharedWorker
from hearth_lsp.server.engine.worker import GenerationWorker, Priority
from hearth_lsp.server.settings import ModelSettings, SamplingSettings

SAMPLING = SamplingSettings(max_tokens=50)


def wait_until(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


@pytest.fixture
def cache(tmp_path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def make_daemon(cache):
    started: list[Daemon] = []

    def make(engine: FakeEngine, **kwargs) -> Daemon:
        cache.mkdir(exist_ok=True)
        daemon = Daemon(ModelSettings(), cache, lambda _m, _c: engine, **kwargs)
        daemon.start()
        started.append(daemon)
        return daemon

    yield make
    for daemon in started:
        daemon.stop()


@pytest.fixture
def clients():
    made: list[DaemonEngine] = []

    def make(daemon: Daemon) -> DaemonEngine:
        state = read_state(daemon.files.state)
        assert state is not None
        engine = DaemonEngine(state)
        engine.connect()
        made.append(engine)
        return engine

    yield make
    for engine in made:
        engine.close()


def generate(engine: DaemonEngine, prompt: str, priority: Priority = Priority.USER,
             stop_when=lambda: False, **kwargs):
    pieces: list[str] = []
    result = engine.generate(prompt, SAMPLING, [], stop_when, pieces.append,
                             priority=priority, **kwargs)
    return result, pieces


def in_thread(fn, *args, **kwargs) -> tuple[threading.Thread, dict]:
    out: dict = {}

    def run() -> None:
        try:
            out["result"] = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            out["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def test_state_file_is_private_and_names_a_token(make_daemon):
    daemon = make_daemon(FakeEngine())
    state = read_state(daemon.files.state)
    assert state is not None and state.pid == os.getpid() and state.token == daemon.token
    assert state.url == daemon.url and state.url.startswith("http://127.0.0.1:")
    assert daemon.files.state.stat().st_mode & 0o777 == 0o600
    assert daemon.files.state.parent.stat().st_mode & 0o077 == 0
    assert daemon.files.state.stem == daemon_key(ModelSettings())


def test_a_request_without_the_right_token_is_refused(make_daemon):
    engine = FakeEngine(default="secret answer")
    daemon = make_daemon(engine)
    body = {"prompt": "hi", "max_tokens": 5}
    for headers in ({}, {"Authorization": "Bearer wrong"},
                    {"Authorization": f"Basic {daemon.token}"}):
        for method, path in (("GET", "/hearth/info"), ("GET", "/v1/models"),
                             ("POST", "/v1/completions")):
            response = httpx.request(method, f"{daemon.url.removesuffix('/v1')}{path}",
                                     headers=headers, json=body if method == "POST" else None)
            assert response.status_code == 401, (headers, path)
            assert "token" in response.json()["error"]["message"]
    assert engine.prompts == []  # nothing reached the model
    assert daemon.counts["refused"] == 9
    ok = httpx.post(f"{daemon.url}/completions", json=body,
                    headers={"Authorization": f"Bearer {daemon.token}"})
    assert ok.status_code == 200 and ok.json()["choices"][0]["text"] == "secret answer"


def test_a_body_is_read_only_when_it_may_be_and_never_taken_for_a_request(make_daemon):
    daemon = make_daemon(FakeEngine(default="ok"))
    host, port = daemon.url.removeprefix("http://").removesuffix("/v1").split(":")

    def exchange(head: str, body: bytes = b"") -> bytes:
        with socket.create_connection((host, int(port)), timeout=10) as conn:
            conn.sendall(head.encode() + body)
            conn.shutdown(socket.SHUT_WR)
            answer = b""
            while chunk := conn.recv(65536):
                answer += chunk
            return answer

    # Without the token, a body of any size is not read, and the connection closes:
    # the answer comes at once, not after the client has sent all it claims.
    endless = exchange("POST /v1/completions HTTP/1.1\r\nHost: x\r\n"
                       "Content-Length: -1\r\n\r\n", b"x" * 100_000)
    assert endless.startswith(b"HTTP/1.1 401") and endless.count(b"HTTP/1.1") == 1
    # A length the daemon refuses leaves the body unread: its bytes, here a whole
    # request, must not be served as the connection's next request.
    smuggled = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
    for length in ("-1", "abc", str(64 << 20)):
        answer = exchange(f"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: "
                          f"Bearer {daemon.token}\r\nContent-Length: {length}\r\n\r\n",
                          smuggled)
        assert answer.startswith(b"HTTP/1.1 400") and answer.count(b"HTTP/1.1") == 1, answer


def test_made_up_task_names_share_one_metrics_label(make_daemon):
    daemon = make_daemon(FakeEngine(default="ok"))
    auth = {"Authorization": f"Bearer {daemon.token}"}
    for n in range(daemon_module.MAX_TASK_LABELS + 10):
        kind = "docstring" if n == 0 else f"made-up-{n}"
        assert httpx.post(f"{daemon.url}/completions", headers=auth, json={
            "prompt": "x", "max_tokens": 2, "kind": kind}).status_code == 200
    exposition = httpx.get(f"{daemon.url.removesuffix('/v1')}/metrics", headers=auth).text
    tasks = set(re.findall(r'hearth_daemon_jobs_total\{[^}]*task="([^"]+)"', exposition))
    assert "docstring" in tasks and "other" in tasks
    assert len(tasks) == daemon_module.MAX_TASK_LABELS


def test_a_client_renders_with_the_daemons_model_info(make_daemon, clients):
    engine = FakeEngine(responses=["first answer"])
    daemon = make_daemon(engine)
    client = clients(daemon)
    info = client.info
    assert info.chat_template == engine.info.chat_template
    assert (info.bos_token, info.eos_token) == ("<s>", "</s>")
    assert info.context_length == engine.info.context_length and info.name == "fake"
    assert info.daemon_pid == os.getpid() and "shared daemon" in info.where
    result, pieces = generate(client, "<|user|>hi\n<|assistant|>", grammar='root ::= "x"',
                              start="^f")
    assert result.text == "first answer" and "".join(pieces) == "first answer"
    assert result.finish_reason == "stop"
    # The prompt arrives as rendered, with the grammar and the first-token regex.
    assert engine.prompts == ["<|user|>hi\n<|assistant|>"]
    assert engine.grammars == ['root ::= "x"'] and engine.starts == ["^f"]
    assert client.count_tokens("a b c") == 3  # the daemon's engine counts
    assert daemon.info()["counts"]["completed"] == 1


@pytest.mark.parametrize("stream", [True, False])
def test_an_answer_ends_when_its_job_does_not_at_the_next_poll(make_daemon, clients,
                                                                monkeypatch, stream):
    # The handler looks at its client between pieces every POLL_S; the end of an answer
    # must not wait for that look (it did: up to POLL_S on every request).
    from hearth_lsp.server import daemon as daemon_module

    monkeypatch.setattr(daemon_module, "POLL_S", 120.0)
    daemon = make_daemon(FakeEngine(default="one two three"))
    if stream:
        thread, out = in_thread(generate, clients(daemon), "p")
    else:
        state = read_state(daemon.files.state)
        assert state is not None
        thread, out = in_thread(httpx.post, f"{state.root}/v1/completions",
                                json={"prompt": "p", "max_tokens": 8}, timeout=60,
                                headers={"Authorization": f"Bearer {state.token}"})
    thread.join(30)
    assert not thread.is_alive(), "the answer waited for the handler's next poll"
    if stream:
        assert out["result"][0].text == "one two three"
    else:
        assert out["result"].json()["choices"][0]["text"] == "one two three"


def test_a_client_that_cancels_frees_the_daemon(make_daemon, clients):
    # 2000 pieces at 20 ms: 40 s unless the daemon stops when the client leaves.
    engine = FakeEngine(responses=["word " * 2000, "next answer"], piece_delay_s=0.02)
    daemon = make_daemon(engine)
    client = clients(daemon)
    first_piece = threading.Event()
    stop = threading.Event()

    def slow():
        return client.generate("long", SAMPLING.__class__(max_tokens=5000), [], stop.is_set,
                               lambda _p: first_piece.set())

    thread, out = in_thread(slow)
    assert first_piece.wait(20)
    stop.set()
    thread.join(20)
    assert out["result"].finish_reason == "cancelled"
    wait_until(lambda: daemon.worker.running() is None and daemon.counts["cancelled"] == 1)
    result, _ = generate(clients(daemon), "after")
    assert result.text == "next answer"
    assert engine.prompts == ["long", "after"]


def test_a_client_that_leaves_a_request_that_does_not_stream_frees_the_daemon(make_daemon):
    # Another tool's `"stream": false` request, its pieces faster than the daemon's poll
    # (50000 at 1 ms: 50 s): the tool quits while it runs (Ctrl-C), and the model is free.
    engine = FakeEngine(default="word " * 50000, piece_delay_s=0.001)
    daemon = make_daemon(engine)
    body = json.dumps({"prompt": "long", "max_tokens": 50000, "stream": False}).encode()
    host, port = daemon.url.removeprefix("http://").removesuffix("/v1").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/json\r\n"
                     + f"Authorization: Bearer {daemon.token}\r\n".encode()
                     + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        wait_until(lambda: engine.prompts == ["long"])
    wait_until(lambda: daemon.worker.running() is None and daemon.counts["cancelled"] == 1)


def test_a_reload_asked_for_a_loaded_model_loads_nothing(make_daemon, clients):
    # Clients ask for a reload when they find the model not loaded; asked of a loaded one
    # (two clients at once, one late), it would free the model under other requests.
    daemon = make_daemon(FakeEngine(default="ok"))
    clients(daemon)  # connected: the model is loaded
    for _ in range(2):
        response = httpx.post(f"{daemon.url.removesuffix('/v1')}/hearth/reload", json={},
                              headers={"Authorization": f"Bearer {daemon.token}"})
        assert response.json() == {"state": "ready"}
    assert daemon.loads == 1


def test_a_client_reloads_a_model_whose_load_failed(cache, clients):
    # The file was broken when the daemon started and is fixed since: the next client
    # asks for a reload and gets the model.
    def make(_model, _cache):
        if daemon.loads == 1:
            raise EngineError("not a GGUF file")
        return FakeEngine(default="ok")

    cache.mkdir()
    daemon = Daemon(ModelSettings(), cache, make)
    daemon.start()
    try:
        wait_until(lambda: daemon.worker.state == "error")
        result, _ = generate(clients(daemon), "p")
        assert result.text == "ok" and daemon.loads == 2
    finally:
        daemon.stop()


def test_a_daemon_started_while_another_stops_waits_for_it_and_serves(cache):
    # `hearth daemon --stop`, then at once a window: the old daemon has removed its state
    # file but holds the lock while its generation and server stop. The new one waits
    # for the lock and serves, rather than exit and leave its client with no daemon.
    cache.mkdir()
    files = DaemonFiles.of(cache, daemon_key(ModelSettings()))
    files.lock.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(files.lock):  # the stopping daemon's
        thread, out = in_thread(serve, ModelSettings(), cache, idle_s=2,
                                make_engine=lambda _m, _c: FakeEngine(default="ok"))
        time.sleep(0.3)  # (it finds the lock taken meanwhile)
    wait_until(lambda: read_state(files.state) is not None)
    thread.join(30)  # it stops when idle
    assert out["result"] == 0


def test_a_queued_job_whose_client_leaves_never_runs(make_daemon, clients):
    engine = FakeEngine(responses=["word " * 2000, "unused", "third"], piece_delay_s=0.02)
    daemon = make_daemon(engine)
    blocker_stop, queued_stop = threading.Event(), threading.Event()
    blocker, _ = in_thread(clients(daemon).generate, "blocker", SAMPLING.__class__(
        max_tokens=5000), [], blocker_stop.is_set, lambda _p: None)
    wait_until(lambda: engine.prompts == ["blocker"])
    queued, out = in_thread(clients(daemon).generate, "queued", SAMPLING, [],
                            queued_stop.is_set, lambda _p: None)
    wait_until(lambda: daemon.worker.pending() == 1)
    queued_stop.set()
    queued.join(20)
    assert out["result"].finish_reason == "cancelled"
    # The daemon saw the connection close and cancelled the job while it was queued.
    wait_until(lambda: daemon.counts["cancelled"] == 1)
    blocker_stop.set()
    blocker.join(20)
    result, _ = generate(clients(daemon), "third")
    assert engine.prompts == ["blocker", "third"]  # "queued" never reached the model
    assert result.text == "unused"  # the script's next answer: it was not consumed


def test_priorities_order_jobs_across_clients(make_daemon, clients):
    """A HOOK job (the git hook) queued first still runs after a USER one from another
    client (an editor window), both waiting for a third client's action to finish."""
    engine = FakeEngine(default="done", responses=["word " * 2000], piece_delay_s=0.02)
    daemon = make_daemon(engine)
    hook, window, other = clients(daemon), clients(daemon), clients(daemon)
    release = threading.Event()
    blocker, _ = in_thread(other.generate, "blocker", SAMPLING.__class__(max_tokens=5000), [],
                           release.is_set, lambda _p: None, priority=Priority.USER)
    wait_until(lambda: engine.prompts == ["blocker"])
    background, bg_out = in_thread(generate, hook, "hook", Priority.HOOK)
    wait_until(lambda: daemon.worker.pending() == 1)
    user, user_out = in_thread(generate, window, "user", Priority.USER)
    wait_until(lambda: daemon.worker.pending() == 2)
    release.set()
    for thread in (blocker, background, user):
        thread.join(20)
    assert engine.prompts == ["blocker", "user", "hook"]
    assert bg_out["result"][0].text == user_out["result"][0].text == "done"


def busy_daemon(make_daemon, clients):
    """A daemon whose model another client keeps busy with a long answer until the
    returned event is set: what a window sends it meanwhile waits in its queue."""
    engine = FakeEngine(default="done", responses=["word " * 2000], piece_delay_s=0.02)
    daemon = make_daemon(engine)
    release = threading.Event()
    blocker, _ = in_thread(clients(daemon).generate, "blocker", SAMPLING.__class__(
        max_tokens=5000), [], release.is_set, lambda _p: None)
    wait_until(lambda: engine.prompts == ["blocker"])
    return engine, daemon, release, blocker


def test_one_process_queues_its_urgent_job_at_the_daemon_beside_a_waiting_one(
        make_daemon, clients):
    """SharedWorker hands the daemon both of its jobs at once, so the daemon's queue puts
    the USER job first; one-at-a-time GenerationWorker would hold it back until its
    BACKGROUND job had run (the daemon would see ["blocker", "hook", "user"])."""
    engine, daemon, release, blocker = busy_daemon(make_daemon, clients)
    worker = SharedWorker()
    try:
        client = clients(daemon)
        worker.load(lambda: client).future.result(10)
        hook = worker.submit("commit", "hook", SAMPLING, priority=Priority.BACKGROUND)
        wait_until(lambda: daemon.worker.pending() == 1)
        user = worker.submit("docstring", "user", SAMPLING, priority=Priority.USER)
        wait_until(lambda: daemon.worker.pending() == 2)
        assert worker.running() is user  # the most urgent of those in flight
        release.set()
        assert user.future.result(20).text == hook.future.result(20).text == "done"
        assert engine.prompts == ["blocker", "user", "hook"]
        # Cancelling through the worker reaches the daemon too.
        engine.responses = ["word " * 2000]
        long = worker.submit("review", "long", SAMPLING.__class__(max_tokens=5000))
        wait_until(lambda: engine.prompts[-1] == "long")
        worker.cancel_where(lambda j: True)
        assert long.future.result(20).finish_reason == "cancelled"
        wait_until(lambda: daemon.worker.running() is None)
        # A job told it has enough stops at the daemon too, and keeps what it had.
        engine.responses = ["word " * 2000]
        seen: list[str] = []
        told = threading.Event()

        def piece(text: str) -> None:
            seen.append(text)
            if len(seen) == 3:
                told.wait(10)
                enough.enough()

        enough = worker.submit("commit", "enough", SAMPLING.__class__(max_tokens=5000),
                               on_piece=piece)
        told.set()
        done = enough.future.result(20)
        assert done.finish_reason == "enough" and done.text.startswith("".join(seen[:3]))
        assert len(done.text.split()) < 100
        wait_until(lambda: daemon.worker.running() is None)
        wait_until(lambda: daemon.files.trace.exists() and '"enough"' in
                   daemon.files.trace.read_text())
        [line] = [record for text in daemon.files.trace.read_text().splitlines()
                  if (record := json.loads(text))["finish"] == "enough"]
        assert line["outcome"] == "completed"  # done at the daemon too, not cancelled
    finally:
        release.set()
        worker.shutdown()
        blocker.join(20)


def test_a_user_action_goes_to_the_daemon_when_background_jobs_fill_the_room(
        make_daemon, clients):
    # Four reviews on save (MAX_IN_FLIGHT) wait at the daemon behind another client's
    # answer, a fifth waits here; the user's action still goes to the daemon at once,
    # ahead of the fifth, and runs first there.
    engine, daemon, release, blocker = busy_daemon(make_daemon, clients)
    worker = SharedWorker()
    try:
        worker.load(lambda: clients(daemon)).future.result(10)
        saves = [worker.submit("review", f"save{n}", SAMPLING, priority=Priority.SAVE)
                 for n in range(MAX_IN_FLIGHT + 1)]
        wait_until(lambda: daemon.worker.pending() == MAX_IN_FLIGHT)
        user = worker.submit("docstring", "user", SAMPLING, priority=Priority.USER)
        wait_until(lambda: daemon.worker.pending() == MAX_IN_FLIGHT + 1)
        assert worker.in_flight() == MAX_IN_FLIGHT + 1  # the fifth save still waits here
        release.set()
        assert user.future.result(20).text == "done"
        assert all(s.future.result(20).text == "done" for s in saves)
        assert engine.prompts[:2] == ["blocker", "user"]
        assert engine.prompts[-1] == f"save{MAX_IN_FLIGHT}"
    finally:
        release.set()
        worker.shutdown()
        blocker.join(20)


def test_a_user_action_from_one_client_stops_another_client_s_background_answer(
        make_daemon, clients):
    """Another tool's long answer (priority background) is running at the daemon when a
    window asks for a docstring: the tool's answer stops at its next token, the user's
    runs, then the tool's runs again from the start and streams on where it was."""
    text = "word " * 300
    engine = FakeEngine(default=text, piece_delay_s=0.03)  # 50 tokens: 1.5 s
    daemon = make_daemon(engine)
    tool = clients(daemon)
    engine.responses = [text, "the docstring"]  # the tool's first run, then the user's
    background, out = in_thread(generate, tool, "tool", priority=Priority.BACKGROUND)
    wait_until(lambda: engine.prompts == ["tool"])
    user, _ = generate(clients(daemon), "user")
    assert user.text == "the docstring"
    assert background.is_alive()  # the tool's answer was not run to its end first
    background.join(30)
    answer, pieces = out["result"]
    assert engine.prompts == ["tool", "user", "tool"]
    # Streamed once, whole: the rerun's first tokens were not sent again.
    assert answer.text == "".join(pieces) and text.startswith(answer.text)
    assert answer.completion_tokens == SAMPLING.max_tokens


def test_shared_worker_is_a_plain_worker_for_an_in_process_engine():
    engine = FakeEngine(default="x", piece_delay_s=0.01)
    worker = SharedWorker()
    try:
        worker.load(lambda: engine).future.result(10)
        release = threading.Event()
        engine.responses = [lambda _p: (release.wait(10), "first")[1]]
        first = worker.submit("a", "first", SAMPLING, priority=Priority.USER)
        wait_until(lambda: engine.prompts == ["first"])
        jobs = [worker.submit("b", name, SAMPLING, priority=prio)
                for name, prio in (("bg", Priority.BACKGROUND), ("save", Priority.SAVE),
                                   ("user", Priority.USER))]
        assert worker.pending() == 3 and worker.running() is first
        release.set()
        for job in (first, *jobs):
            job.future.result(10)
        assert engine.prompts == ["first", "user", "save", "bg"]  # one at a time, by priority
    finally:
        worker.shutdown()
    assert isinstance(worker, GenerationWorker)


def test_the_daemon_exits_when_idle_and_removes_its_state(make_daemon, clients):
    daemon = make_daemon(FakeEngine(default="ok"), idle_s=0.5)
    generate(clients(daemon), "one")
    assert daemon.wait(20), "the daemon did not stop when idle"
    assert not daemon.files.state.exists()


def test_bad_requests_are_answered_with_the_reason(make_daemon):
    engine = FakeEngine(default="ok")
    daemon = make_daemon(engine)
    auth = {"Authorization": f"Bearer {daemon.token}"}
    url = daemon.url
    for body, words in (({"prompt": 3}, "prompt"), ({"prompt": "x", "max_tokens": "many"},
                                                    "max_tokens"),
                        ({"prompt": "x", "priority": "urgent"}, "priority"),
                        ({"prompt": "x", "stop": [1]}, "stop"), ({"prompt": ""}, "prompt"),
                        ({"prompt": "x", "start": "(["}, "start"),
                        ({"prompt": "x", "top_p": 7}, "top_p"),
                        ({"prompt": "x", "temperature": -1}, "temperature")):
        response = httpx.post(f"{url}/completions", json=body, headers=auth)
        assert response.status_code == 400 and words in response.json()["error"]["message"]
    # Valid JSON Python cannot hold: an infinite count, nesting past the recursion limit.
    for raw in (b'{"prompt": "x", "max_tokens": 1e999}', b"[" * 100_000 + b"]" * 100_000,
                b"{not json"):
        response = httpx.post(f"{url}/completions", content=raw, headers=auth)
        assert response.status_code == 400, raw[:40]
    # A lone surrogate (JSON's \ud800) is counted, not a dropped connection.
    response = httpx.post(f"{url.removesuffix('/v1')}/extras/tokenize/count",
                          content=b'{"input": "a\\ud800b"}', headers=auth)
    assert response.status_code == 200
    assert httpx.get(f"{url}/nowhere", headers=auth).status_code == 404
    assert engine.prompts == []
    assert parse_priority("background") == Priority.BACKGROUND
    assert parse_priority("hook") == parse_priority(4) == Priority.HOOK
    assert parse_priority(9) == Priority.BACKGROUND
    assert parse_priority(0) == Priority.COMPLETION  # nobody jumps ahead of a load
    assert parse_priority(None) == Priority.USER


def test_an_openai_client_can_use_the_warm_model(make_daemon):
    """Any tool on the machine: /v1/models, and a streamed /v1/completions."""
    daemon = make_daemon(FakeEngine(default="a b c"))
    auth = {"Authorization": f"Bearer {daemon.token}"}
    models = httpx.get(f"{daemon.url}/models", headers=auth).json()
    assert [m["id"] for m in models["data"]] == ["fake"]
    with httpx.stream("POST", f"{daemon.url}/completions", headers=auth,
                      json={"prompt": "q", "stream": True, "max_tokens": 10}) as response:
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    events = [json.loads(line[6:]) for line in lines[:-1]]
    assert "".join(e["choices"][0]["text"] for e in events) == "a b c"
    assert events[-1]["choices"][0]["finish_reason"] == "stop"
    assert events[-1]["usage"]["completion_tokens"] == 3
    # Its model by name; another model's name is not answered with this one's text.
    named = httpx.post(f"{daemon.url}/completions", headers=auth,
                       json={"prompt": "q", "model": "fake", "max_tokens": 10})
    assert named.json()["choices"][0]["text"] == "a b c"
    other = httpx.post(f"{daemon.url}/completions", headers=auth,
                       json={"prompt": "q", "model": "gpt-4o", "max_tokens": 10})
    assert other.status_code == 404 and other.json()["error"] == {
        "message": "the model 'gpt-4o' is not served here: this daemon serves 'fake' "
                   "(GET /v1/models)", "type": "model_not_found"}


def test_a_daemon_that_is_gone_is_reported_clearly_without_settings_to_restart_it(
        make_daemon, clients):
    daemon = make_daemon(FakeEngine(default="ok"))
    client = clients(daemon)
    daemon.stop()
    with pytest.raises(EngineError, match="shared model daemon .* is not reachable"):
        generate(client, "x")
