"""The remote engine (server/engine/remote.py) against real HTTP servers.

Slow tests run llama-cpp-python's own OpenAI-compatible server
(``python -m llama_cpp.server``) on the bundled SmolLM2, behind tests/proxy.py
where a failure is injected. The others talk to tests/proxy.py answering as a
canned server (the shapes of llama-server, vLLM, Ollama and OpenAI, and their
failures). No test asserts on timings: waits are bounded, and what happened is
counted in requests at the proxy.
"""

from __future__ import annotations

import json
import logging
import shlex
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from hearth_lsp.server.chat_format import Message
from hearth_lsp.server.engine import remote
from hearth_lsp.server.engine.base import EngineError
from hearth_lsp.server.engine.remote import BackendConfig, BackendUnavailable, RemoteEngine
from hearth_lsp.server.settings import SamplingSettings

from proxy import Drop, Forward, Hang, Proxy, Reply, Seen, sse

KEY = "sk-test-7f3a9c1e5b"  # never to be seen in a message or a log record
MODELS = {"object": "list", "data": [{"id": "tiny", "object": "model"}]}
JSON_GRAMMAR = r'''root ::= "{\"name\": \"" [a-z]{1,8} "\", \"count\": " [0-9]{1,3} "}"'''
# Never accepting: the model can only stop at max_tokens.
ENDLESS_GRAMMAR = 'root ::= [a-z]+ " " root'


def greedy(max_tokens: int = 24, **kw) -> SamplingSettings:
    return SamplingSettings(temperature=0.0, max_tokens=max_tokens, seed=1, **kw)


def never() -> bool:
    return False


def wait_until(check: Callable[[], bool], limit_s: float = 10.0) -> bool:
    """Poll ``check`` until it holds, for at most ``limit_s`` (a bound, not a measurement)."""
    end = time.monotonic() + limit_s
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(0.02)
    return check()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def completion_events(*texts: str, finish: str | None = "stop",
                      usage: dict | None = None) -> list[str]:
    events: list[dict | str] = [{"choices": [{"index": 0, "text": t, "finish_reason": None}]}
                                for t in texts]
    if finish:
        events.append({"choices": [{"index": 0, "text": "", "finish_reason": finish}]})
    if usage:
        events.append({"choices": [], "usage": usage})
    return sse(*events, "[DONE]")


def chat_events(*texts: str) -> list[str]:
    events: list[dict | str] = [{"choices": [{"index": 0, "delta": {"role": "assistant"}}]}]
    events += [{"choices": [{"index": 0, "delta": {"content": t}}]} for t in texts]
    events.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    return sse(*events, "[DONE]")


def canned(routes: dict[str, object]) -> Callable[[Seen], object]:
    """A handler answering ``"METHOD /path"`` from ``routes`` (an action, or a callable of
    the request); GET /v1/models lists one model unless overridden; anything else is 404."""

    def handler(seen: Seen):
        answer = routes.get(f"{seen.method} {seen.path}")
        if callable(answer):
            return answer(seen)
        if answer is not None:
            return answer
        if (seen.method, seen.path) == ("GET", "/v1/models"):
            return Reply(body=MODELS)
        return Reply(404, {"detail": "Not Found"})

    return handler


@pytest.fixture(autouse=True)
def _quick_backoff(monkeypatch):
    monkeypatch.setattr(remote, "BACKOFF_BASE_S", 0.01)


@pytest.fixture
def proxies() -> Iterator[Callable[..., Proxy]]:
    started: list[Proxy] = []

    def make(upstream=None, handler=None) -> Proxy:
        proxy = Proxy(upstream, handler).start()
        started.append(proxy)
        return proxy

    yield make
    for proxy in started:
        proxy.stop()


@pytest.fixture
def engines() -> Iterator[Callable[..., RemoteEngine]]:
    made: list[RemoteEngine] = []

    def make(url: str, environ: dict | None = None, **settings) -> RemoteEngine:
        settings = {"connect_timeout_s": 2.0, "first_token_timeout_s": 30.0,
                    "between_tokens_timeout_s": 30.0, "retries": 0, **settings}
        engine = RemoteEngine(BackendConfig(name="team", url=url, **settings),
                              environ=environ or {})
        made.append(engine)
        return engine

    yield make
    for engine in made:
        engine.close()


# ---- the real server ------------------------------------------------------------


@pytest.mark.slow
def test_connect_detects_the_model_and_what_the_server_can_do(llama_server, proxies, engines):
    proxy = proxies(llama_server)
    engine = engines(proxy.url)
    info = engine.connect()
    assert info.name == "smollm2"  # the server's first (only) model
    assert info.path == f"team: {proxy.url}"
    assert info.where == "server team"
    assert engine.capabilities.server == "llama-cpp-python"
    assert info.structured == "grammar"
    assert info.chat_template  # chat prompts go to /v1/chat/completions
    # This server does not say its context: the default, with a warning naming the setting.
    assert info.context_length == remote.DEFAULT_CONTEXT
    assert any("backends.team.contextLength" in w for w in info.warnings)
    # The server's own tokenizer (2 tokens), not the len/3 estimate (3).
    assert engine.count_tokens("hello world") == 2
    assert any(r.path == "/extras/tokenize/count" for r in proxy.requests)
    named = engines(proxy.url, model="smollm2")
    assert named.connect().name == "smollm2"


@pytest.mark.slow
def test_completion_and_chat_are_streamed_piece_by_piece(llama_server, proxies, engines):
    proxy = proxies(llama_server)
    engine = engines(proxy.url)
    engine.connect()
    pieces: list[str] = []
    done = engine.generate("def add(a, b):\n    return", greedy(16), [], never, pieces.append)
    assert len(pieces) > 1
    assert done.text == "".join(pieces) and done.text.strip()
    assert done.finish_reason in ("stop", "length")
    assert done.completion_tokens >= len(pieces)
    sent = proxy.posts("/v1/completions")[-1].json()
    assert sent["stream"] is True and sent["prompt"].startswith("def add")
    assert sent["max_tokens"] == 16 and sent["top_k"] == 40  # llama.cpp's own sampling fields

    pieces = []
    chat = engine.generate("", greedy(12), [], never, pieces.append,
                           messages=[Message("system", "Answer briefly."),
                                     Message("user", "Say hello.")])
    assert len(pieces) > 1 and chat.text == "".join(pieces) and chat.text.strip()
    sent = proxy.posts("/v1/chat/completions")[-1].json()
    assert sent["messages"] == [{"role": "system", "content": "Answer briefly."},
                                {"role": "user", "content": "Say hello."}]


@pytest.mark.slow
def test_a_grammar_constrains_the_answer(llama_server, proxies, engines):
    proxy = proxies(llama_server)
    engine = engines(proxy.url)
    engine.connect()
    done = engine.generate("A JSON object describing a cat:\n", greedy(40, repeat_penalty=1.0),
                           [], never, lambda _p: None, grammar=JSON_GRAMMAR)
    value = json.loads(done.text)
    assert set(value) == {"name", "count"} and value["name"].isalpha()
    assert proxy.posts("/v1/completions")[-1].json()["grammar"] == JSON_GRAMMAR


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_cancel_closes_the_stream_and_frees_the_server(llama_server, proxies, engines):
    proxy = proxies(llama_server)
    # The follow-up request waits at most 20 s for its first token; the cancelled
    # generation alone would run 1500 tokens under a grammar (a minute or more here).
    engine = engines(proxy.url, first_token_timeout_s=20.0)
    engine.connect()
    pieces: list[str] = []
    done = engine.generate("Words:", SamplingSettings(temperature=0.8, max_tokens=1500), [],
                           lambda: len(pieces) >= 3, pieces.append, grammar=ENDLESS_GRAMMAR)
    assert done.finish_reason == "cancelled"
    assert len(pieces) == 3 and done.text == "".join(pieces)
    cancelled = proxy.posts("/v1/completions")[-1]
    assert wait_until(lambda: cancelled.client_closed_early, 5), "the stream was not closed"
    after = engine.generate("Hello", greedy(4), [], never, lambda _p: None)
    assert after.finish_reason in ("stop", "length")
    assert engine.breaker.state == "closed"


@pytest.mark.slow
def test_a_stream_cut_in_the_middle_is_an_error_and_not_retried(llama_server, proxies, engines):
    proxy = proxies(llama_server)
    engine = engines(proxy.url, retries=2)
    engine.connect()
    proxy.then(Forward(cut_after=900))
    pieces: list[str] = []
    with pytest.raises(EngineError) as caught:
        engine.generate("def add(a, b):", greedy(64), [], never, pieces.append)
    assert not isinstance(caught.value, BackendUnavailable)  # pieces went out: no fallback
    assert pieces, "the cut was meant to come after the first pieces"
    message = str(caught.value)
    assert "backend 'team'" in message and "cut in the middle" in message
    assert len(proxy.posts("/v1/completions")) == 1


@pytest.mark.slow
def test_failures_before_the_first_token_are_retried(llama_server, proxies, engines):
    proxy = proxies(llama_server)
    engine = engines(proxy.url, retries=2)
    engine.connect()
    proxy.then(Drop(), Reply(503, {"error": {"message": "loading"}}))
    done = engine.generate("Hello", greedy(4), [], never, lambda _p: None)
    assert done.text
    assert len(proxy.posts("/v1/completions")) == 3
    assert engine.breaker.state == "closed"


@pytest.mark.slow
def test_a_model_the_server_lacks_is_named(llama_server, proxies, engines):
    proxy = proxies(llama_server)
    engine = engines(proxy.url, model="nope")
    with pytest.raises(EngineError) as caught:
        engine.connect()
    message = str(caught.value)
    assert not isinstance(caught.value, BackendUnavailable)
    assert "'nope'" in message and "smollm2" in message and "backends.team.model" in message


# ---- canned servers: what each kind of server is sent ------------------------------


def test_llama_server_gets_grammar_and_its_context_and_tokenizer(proxies, engines):
    listing = {"data": [{"id": "qwen", "meta": {"n_ctx_train": 32768}}]}
    proxy = proxies(handler=canned({
        "GET /v1/models": Reply(body=listing),
        "GET /props": Reply(body={"default_generation_settings": {"n_ctx": 8192},
                                  "chat_template": "{{ messages }}", "build_info": "b1"}),
        "POST /v1/completions": Reply(chunks=completion_events(
            "Hel", "lo", usage={"prompt_tokens": 7, "completion_tokens": 2})),
        "POST /tokenize": Reply(body={"tokens": [1, 2, 3, 4, 5]}),
    }))
    engine = engines(proxy.url)
    info = engine.connect()
    assert (info.name, info.context_length, info.trained_context_length) == ("qwen", 8192, 32768)
    assert engine.capabilities.server == "llama-server" and info.structured == "grammar"
    assert info.server_chat_template == "{{ messages }}"
    pieces: list[str] = []
    done = engine.generate("Say", greedy(8), ["\n"], never, pieces.append, grammar=JSON_GRAMMAR)
    assert pieces == ["Hel", "lo"] and done.text == "Hello"
    assert (done.prompt_tokens, done.completion_tokens) == (7, 2)  # the server's usage
    sent = proxy.posts()[-1].json()
    assert sent["grammar"] == JSON_GRAMMAR and sent["stop"] == ["\n"]
    assert sent["repeat_penalty"] == 1.1 and sent["stream_options"] == {"include_usage": True}
    assert engine.count_tokens("anything") == 5


@pytest.mark.parametrize("field", ["structured_outputs", "guided_grammar"])
def test_vllm_gets_its_own_structured_output_field(proxies, engines, field):
    spec = {"paths": {"/v1/completions": {}, "/tokenize": {}, "/version": {}},
            "components": {"schemas": {"CompletionRequest": {"properties": {
                "prompt": {}, field: {}}}}}}
    proxy = proxies(handler=canned({
        "GET /v1/models": Reply(body={"data": [{"id": "m", "max_model_len": 16384}]}),
        "GET /openapi.json": Reply(body=spec),
        "POST /v1/completions": Reply(chunks=completion_events("ok")),
        "POST /v1/chat/completions": Reply(chunks=chat_events("ok")),
    }))
    engine = engines(proxy.url)
    info = engine.connect()
    assert engine.capabilities.server == "vllm" and info.context_length == 16384
    engine.generate("x", greedy(4), [], never, lambda _p: None, grammar=JSON_GRAMMAR)
    sent = proxy.posts()[-1].json()
    if field == "structured_outputs":
        assert sent["structured_outputs"] == {"grammar": JSON_GRAMMAR}
    else:
        assert sent["guided_grammar"] == JSON_GRAMMAR
    assert sent["repetition_penalty"] == 1.1 and "repeat_penalty" not in sent
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    engine.generate("", greedy(4), [], never, lambda _p: None,
                    messages=[Message("user", "x")], json_schema=schema)
    sent = proxy.posts("/chat/completions")[-1].json()
    if field == "structured_outputs":
        assert sent["structured_outputs"] == {"json": schema}
    else:
        assert sent["guided_json"] == schema


def test_ollama_gets_no_grammar_but_a_json_schema_format(proxies, engines):
    proxy = proxies(handler=canned({
        "GET /api/version": Reply(body={"version": "0.6.2"}),
        "POST /api/show": Reply(body={"model_info": {"llama.context_length": 131072},
                                      "parameters": "num_ctx 8192\nstop \"<|eot|>\"",
                                      "template": "{{ .Prompt }}"}),
        "POST /v1/chat/completions": Reply(chunks=chat_events("{}")),
    }))
    engine = engines(proxy.url)
    info = engine.connect()
    assert engine.capabilities.server == "ollama" and info.structured == "none"
    assert (info.context_length, info.trained_context_length) == (8192, 131072)
    assert any("takes no grammar" in w for w in info.warnings)
    schema = {"type": "object"}
    engine.generate("", greedy(4), [], never, lambda _p: None, grammar=JSON_GRAMMAR,
                    messages=[Message("user", "x")], json_schema=schema)
    sent = proxy.posts()[-1].json()
    assert "grammar" not in sent
    assert sent["response_format"] == {"type": "json_schema",
                                       "json_schema": {"name": "answer", "schema": schema}}


def test_plain_openai_gets_standard_fields_and_stops_are_enforced_here(proxies, engines):
    proxy = proxies(handler=canned({
        "POST /v1/completions": Reply(chunks=completion_events("abc", "ST", "OP6 and more")),
    }))
    engine = engines(proxy.url)
    info = engine.connect()
    assert engine.capabilities.server == "openai" and info.structured == "none"
    pieces: list[str] = []
    stops = [f"STOP{i}" for i in range(1, 7)]
    done = engine.generate("x", greedy(8), stops, never, pieces.append, grammar=JSON_GRAMMAR)
    assert done.text == "abc" and pieces == ["abc"]  # "ST" was held back, then cut
    sent = proxy.posts()[-1].json()
    assert sent["stop"] == stops[:4]  # OpenAI takes four
    assert not {"grammar", "top_k", "min_p", "repeat_penalty"} & set(sent)


def test_the_structured_setting_overrides_detection(proxies, engines):
    routes = {"POST /v1/completions": Reply(chunks=completion_events("x"))}
    proxy = proxies(handler=canned(routes))
    forced = engines(proxy.url, structured="grammar")
    forced.connect()
    forced.generate("x", greedy(2), [], never, lambda _p: None, grammar=JSON_GRAMMAR)
    assert proxy.posts()[-1].json()["grammar"] == JSON_GRAMMAR
    routes["GET /props"] = Reply(body={"build_info": "b1", "chat_template": ""})
    off = engines(proxy.url, structured="none")
    info = off.connect()
    assert info.structured == "none" and info.chat_template is None  # no template: completion
    off.generate("x", greedy(2), [], never, lambda _p: None, grammar=JSON_GRAMMAR)
    assert "grammar" not in proxy.posts()[-1].json()
    with pytest.raises(EngineError, match="backends.team.structured"):
        engines(proxy.url, structured="regex")


def test_an_answer_that_is_not_streamed_is_taken_whole(proxies, engines):
    proxy = proxies(handler=canned({"POST /v1/completions": Reply(body={
        "choices": [{"text": "whole answer", "finish_reason": "stop"}]})}))
    engine = engines(proxy.url)
    pieces: list[str] = []
    done = engine.generate("x", greedy(8), [], never, pieces.append)  # connects first
    assert done.text == "whole answer" and pieces == ["whole answer"]
    # Longer than an error body (64 KiB), pretty-printed over several lines.
    proxy.handler = canned({"POST /v1/completions": Reply(body=json.dumps(
        {"choices": [{"text": "y" * 100_000, "finish_reason": "length"}]}, indent=2))})
    assert engine.generate("x", greedy(8), [], never, lambda _p: None).text == "y" * 100_000


# ---- canned servers: failures ------------------------------------------------------


def test_an_unreachable_url_is_a_fast_clear_failure(engines):
    engine = engines(f"http://127.0.0.1:{free_port()}/v1", retries=1)
    with pytest.raises(BackendUnavailable) as caught:
        engine.connect()
    message = str(caught.value)
    assert "backend 'team'" in message and "cannot connect" in message
    assert "backends.team.url" in message
    assert "(after" not in message  # a refused connection is not retried: the route moves on
    with pytest.raises(BackendUnavailable):  # generate connects first, and fails the same way
        engine.generate("x", greedy(2), [], never, lambda _p: None)


def test_401_names_the_key_setting_never_the_key(proxies, engines, caplog):
    caplog.set_level(logging.DEBUG)
    proxy = proxies(handler=canned({
        "POST /v1/completions": Reply(401, {"error": {"message": "Invalid API key"}})}))
    engine = engines(proxy.url, environ={"TEAM_LLM_KEY": KEY}, api_key_env="TEAM_LLM_KEY")
    engine.connect()
    with pytest.raises(EngineError) as caught:
        engine.generate("x", greedy(2), [], never, lambda _p: None)
    message = str(caught.value)
    assert not isinstance(caught.value, BackendUnavailable)
    assert message.startswith(f"backend 'team' ({proxy.url}): POST /completions: 401 Unauthorized")
    assert "backends.team.apiKeyEnv (TEAM_LLM_KEY)" in message
    assert all(r.headers.get("authorization") == f"Bearer {KEY}" for r in proxy.requests)
    assert len(proxy.requests) >= 2
    assert KEY not in message and KEY not in engine.info.path + engine.info.describe()
    records = [r.getMessage() + (r.exc_text or "") for r in caplog.records]
    assert records and not [r for r in records if KEY in r]


def test_the_key_can_come_from_a_command(proxies, engines, caplog):
    caplog.set_level(logging.DEBUG)
    proxy = proxies(handler=canned({"POST /v1/completions": Reply(403, "forbidden")}))
    command = f"{shlex.quote(sys.executable)} -c \"print('{KEY}')\""
    engine = engines(proxy.url, api_key_command=command)
    engine.connect()
    assert proxy.requests[0].headers["authorization"] == f"Bearer {KEY}"
    with pytest.raises(EngineError) as caught:
        engine.generate("x", greedy(2), [], never, lambda _p: None)
    assert "403 Forbidden" in str(caught.value)
    assert "backends.team.apiKeyCommand" in str(caught.value) and KEY not in str(caught.value)
    assert not [r for r in caplog.records if KEY in r.getMessage()]
    failing = engines(proxy.url, api_key_command=f"{shlex.quote(sys.executable)} -c "
                      f"\"import sys; print('{KEY}'); sys.exit(3)\"")
    with pytest.raises(EngineError) as caught:
        failing.connect()
    assert "exit status 3" in str(caught.value) and KEY not in str(caught.value)


def test_a_missing_key_variable_is_named_before_any_request(proxies, engines):
    proxy = proxies(handler=canned({}))
    engine = engines(proxy.url, api_key_env="TEAM_LLM_KEY")
    with pytest.raises(EngineError, match=r"backends\.team\.apiKeyEnv names TEAM_LLM_KEY"):
        engine.connect()
    assert proxy.requests == []
    unconfigured = engines(proxy.url)
    proxy.handler = canned({"GET /v1/models": Reply(401, {"detail": "Invalid API key"})})
    with pytest.raises(EngineError, match="set backends.team.apiKeyEnv or backends.team.apiKeyCommand"):
        unconfigured.connect()


def test_404_names_the_model_or_the_url(proxies, engines):
    proxy = proxies(handler=canned({"POST /v1/completions": Reply(404, {"error": {
        "message": "The model `tiny` does not exist.", "code": "model_not_found"}})}))
    engine = engines(proxy.url, retries=2)
    engine.connect()
    with pytest.raises(EngineError) as caught:
        engine.generate("x", greedy(2), [], never, lambda _p: None)
    assert "404 Not Found" in str(caught.value) and "backends.team.model" in str(caught.value)
    assert len(proxy.posts()) == 1  # not retried
    wrong = proxies(handler=canned({"GET /v1/models": Reply(404, {"detail": "Not Found"})}))
    with pytest.raises(EngineError) as caught:
        engines(wrong.url).connect()
    assert "backends.team.url" in str(caught.value) and "/v1" in str(caught.value)


def test_an_html_page_is_a_wrong_url(proxies, engines):
    page = Reply(body="<!DOCTYPE html><html><body>Welcome</body></html>",
                 headers={"Content-Type": "text/html; charset=utf-8"})
    proxy = proxies(handler=canned({"GET /v1/models": page}))
    with pytest.raises(EngineError) as caught:
        engines(proxy.url).connect()
    assert "HTML page" in str(caught.value) and "backends.team.url" in str(caught.value)
    proxy.handler = canned({"POST /v1/completions": page})
    with pytest.raises(EngineError) as caught:
        engines(proxy.url).generate("x", greedy(2), [], never, lambda _p: None)
    assert "HTML page" in str(caught.value) and "backend 'team'" in str(caught.value)


@pytest.mark.timeout(60)
def test_429_waits_for_retry_after_then_gives_a_clear_message(proxies, engines):
    ok = Reply(chunks=completion_events("fine"))
    proxy = proxies(handler=canned({"POST /v1/completions": ok}))
    engine = engines(proxy.url, retries=1, breaker_failures=1)
    engine.connect()
    proxy.then(Reply(429, {"error": "slow down"}, headers={"Retry-After": "0"}))
    assert engine.generate("x", greedy(2), [], never, lambda _p: None).text == "fine"
    assert len(proxy.posts()) == 2
    proxy.then(Reply(429, {"error": "slow down"}, headers={"Retry-After": "120"}))
    with pytest.raises(BackendUnavailable) as caught:  # too long to wait for: no retry
        engine.generate("x", greedy(2), [], never, lambda _p: None)
    message = str(caught.value)
    assert "429 Too Many Requests" in message and "wait 120 s" in message
    assert "backends.team.retries" in message
    assert len(proxy.posts()) == 3
    assert engine.breaker.state == "closed"  # a busy server is not a dead one


def test_5xx_is_retried_then_reported_with_the_attempts(proxies, engines):
    proxy = proxies(handler=canned({"POST /v1/completions": Reply(503, "overloaded")}))
    engine = engines(proxy.url, retries=2, breaker_failures=5)
    engine.connect()
    with pytest.raises(BackendUnavailable) as caught:
        engine.generate("x", greedy(2), [], never, lambda _p: None)
    assert "503 Service Unavailable" in str(caught.value)
    assert "(after 3 attempts)" in str(caught.value)
    assert len(proxy.posts()) == 3


@pytest.mark.timeout(60)
def test_a_server_slower_than_the_first_token_timeout(proxies, engines):
    proxy = proxies(handler=canned({"POST /v1/completions": Hang()}))
    engine = engines(proxy.url, first_token_timeout_s=0.5, retries=2)
    engine.connect()
    with pytest.raises(BackendUnavailable) as caught:
        engine.generate("x", greedy(2), [], never, lambda _p: None)
    message = str(caught.value)
    assert "no answer within 0.5 s" in message and "backends.team.firstTokenTimeoutS" in message
    assert len(proxy.posts()) == 1  # a slow server is not asked again
    assert wait_until(lambda: proxy.posts()[0].client_closed_early, 5)


@pytest.mark.timeout(60)
def test_a_stall_between_tokens(proxies, engines):
    stalled = Reply(chunks=completion_events("one", " two", " three"), delays={2: 30.0})
    proxy = proxies(handler=canned({"POST /v1/completions": stalled}))
    engine = engines(proxy.url, between_tokens_timeout_s=0.5, retries=2)
    engine.connect()
    pieces: list[str] = []
    with pytest.raises(EngineError) as caught:
        engine.generate("x", greedy(8), [], never, pieces.append)
    assert not isinstance(caught.value, BackendUnavailable)
    assert "backends.team.betweenTokensTimeoutS" in str(caught.value)
    assert pieces == ["one", " two"] and len(proxy.posts()) == 1


def test_server_errors_inside_the_stream(proxies, engines):
    routes: dict[str, object] = {"POST /v1/completions": Reply(
        chunks=sse({"choices": [{"text": "par", "finish_reason": None}]},
                   {"error": {"message": "grammar failed to parse"}}))}
    proxy = proxies(handler=canned(routes))
    engine = engines(proxy.url)
    with pytest.raises(EngineError, match="grammar failed to parse"):
        engine.generate("x", greedy(8), [], never, lambda _p: None)
    routes["POST /v1/completions"] = Reply(chunks=completion_events("half", finish=None))
    with pytest.raises(EngineError, match="without a finish reason"):
        engine.generate("x", greedy(8), [], never, lambda _p: None)


def test_the_breaker_opens_half_opens_and_closes(proxies, engines):
    failing = Reply(503, "down")
    routes: dict[str, object] = {"POST /v1/completions": failing}
    proxy = proxies(handler=canned(routes))
    engine = engines(proxy.url, breaker_failures=2, breaker_reset_s=0.3)
    engine.connect()
    for _ in range(2):
        with pytest.raises(BackendUnavailable):
            engine.generate("x", greedy(2), [], never, lambda _p: None)
    assert engine.breaker.state == "open" and len(proxy.posts()) == 2
    with pytest.raises(BackendUnavailable) as caught:  # fails at once, nothing sent
        engine.generate("x", greedy(2), [], never, lambda _p: None)
    assert "backends.team.breakerResetS" in str(caught.value)
    assert len(proxy.posts()) == 2

    assert wait_until(lambda: engine.breaker.state == "half-open", 10)
    with pytest.raises(BackendUnavailable):  # the probe fails: open again
        engine.generate("x", greedy(2), [], never, lambda _p: None)
    assert engine.breaker.state == "open" and len(proxy.posts()) == 3
    with pytest.raises(BackendUnavailable):
        engine.generate("x", greedy(2), [], never, lambda _p: None)
    assert len(proxy.posts()) == 3

    routes["POST /v1/completions"] = Reply(chunks=completion_events("back"))
    assert wait_until(lambda: engine.breaker.state == "half-open", 10)
    assert engine.generate("x", greedy(2), [], never, lambda _p: None).text == "back"
    assert engine.breaker.state == "closed" and len(proxy.posts()) == 4


@pytest.mark.timeout(60)
def test_cancel_while_waiting_for_the_first_token(proxies, engines):
    proxy = proxies(handler=canned({"POST /v1/completions": Hang()}))
    engine = engines(proxy.url, first_token_timeout_s=60.0)
    engine.connect()
    stop = threading.Event()
    threading.Thread(target=lambda: (wait_until(lambda: bool(proxy.posts()), 10), stop.set()),
                     daemon=True).start()
    done = engine.generate("x", greedy(2), [], stop.is_set, lambda _p: None)
    assert done.finish_reason == "cancelled" and done.text == ""
    assert wait_until(lambda: proxy.posts()[0].client_closed_early, 5)
    assert engine.breaker.state == "closed"


def test_a_grammar_llama_cpp_cannot_parse_is_never_sent(proxies, engines):
    # llama-cpp-python's server dies of one (SIGSEGV: a NULL sampler), seen by hand.
    proxy = proxies(handler=canned({"GET /openapi.json": Reply(body={
        "paths": {"/extras/tokenize/count": {}},
        "components": {"schemas": {"CreateCompletionRequest": {"properties": {"grammar": {}}}}}})}))
    engine = engines(proxy.url)
    engine.connect()
    with pytest.raises(EngineError) as caught:
        engine.generate("x", greedy(2), [], never, lambda _p: None, grammar="root ::= [a-z")
    assert "invalid grammar" in str(caught.value) and "backend 'team'" in str(caught.value)
    assert proxy.posts() == []


def test_https_servers_have_their_certificates_checked_plain_http_loads_none(engines):
    import ssl

    def context(url: str) -> ssl.SSLContext:
        engine = engines(url)
        engine._start()  # builds the client; connects to nothing
        return engine._client._transport._pool._ssl_context  # type: ignore[union-attr]

    checked = context("https://models.example.internal/v1")
    assert checked.verify_mode == ssl.CERT_REQUIRED and checked.check_hostname
    assert checked.cert_store_stats()["x509_ca"] > 0  # the CA bundle is loaded
    plain = context("http://127.0.0.1:9/v1")  # the daemon, a local llama-server
    assert plain.cert_store_stats()["x509_ca"] == 0


# ---- bad input found by an audit (each reproduced before the fix) ------------------


def test_a_key_an_http_header_cannot_carry_is_refused_without_quoting_it(proxies, engines,
                                                                          caplog):
    """httpx refused the header and quoted it whole (key and all) in the error, which
    reached the editor and the log; the failure was also retried as a dead server."""
    caplog.set_level(logging.DEBUG)
    proxy = proxies(handler=canned({}))
    for bad in (f"{KEY}\nlogin: alice", f"{KEY} x", f"{KEY}é"):
        engine = engines(proxy.url, environ={"TEAM_LLM_KEY": bad}, api_key_env="TEAM_LLM_KEY")
        with pytest.raises(EngineError) as caught:
            engine.connect()
        assert "the API key from backends.team.apiKeyEnv holds a space, a line break" in \
            str(caught.value)
        assert KEY not in str(caught.value)
    assert not proxy.requests
    assert not [r for r in caplog.records if KEY in r.getMessage() + (r.exc_text or "")]


def test_a_key_commands_first_line_is_the_key(proxies, engines):
    """`pass show` prints the password, then notes on the lines below."""
    proxy = proxies(handler=canned({}))
    script = f"print('{KEY}'); print('login: alice')"
    engine = engines(proxy.url, api_key_command=f"{shlex.quote(sys.executable)} -c "
                     f"{shlex.quote(script)}")
    engine.connect()
    assert proxy.requests[0].headers["authorization"] == f"Bearer {KEY}"


def test_a_key_quoted_by_the_server_is_redacted_before_the_quote_is_cut(proxies, engines):
    """The quote was cut at 200 characters first: a key across the cut was not found
    whole, and its first part was shown."""
    said = "x" * 180 + f" Received key: {KEY}"
    proxy = proxies(handler=canned({"GET /v1/models": Reply(401, {"error": {"message": said}})}))
    engine = engines(proxy.url, environ={"TEAM_LLM_KEY": KEY}, api_key_env="TEAM_LLM_KEY")
    with pytest.raises(EngineError) as caught:
        engine.connect()
    assert "Received key: [re" in str(caught.value)  # "[redacted]", cut at 200
    assert KEY[:8] not in str(caught.value)


@pytest.mark.timeout(60)
def test_a_5xx_asking_for_a_long_wait_fails_at_once_for_the_next_backend(proxies, engines):
    """It slept for the Retry-After (an hour), and the route's next backend never ran."""
    proxy = proxies(handler=canned({"POST /v1/completions": Reply(
        503, "busy", headers={"Retry-After": "3600"})}))
    engine = engines(proxy.url, retries=2, breaker_failures=5)
    engine.connect()
    with pytest.raises(BackendUnavailable, match="the server asks to wait 3600 s"):
        engine.generate("x", greedy(2), [], never, lambda _p: None)
    assert len(proxy.posts()) == 1


@pytest.mark.timeout(60)
def test_a_server_that_never_answers_the_model_list_is_asked_once(proxies, engines):
    """A wedged server or a dead tunnel cost (retries + 1) x the timeout per connect."""
    proxy = proxies(handler=canned({"GET /v1/models": Hang()}))
    engine = engines(proxy.url, first_token_timeout_s=0.5, connect_timeout_s=0.5, retries=2)
    with pytest.raises(BackendUnavailable, match="no answer within 0.5 s"):
        engine.connect()
    assert len([r for r in proxy.requests if r.path == "/v1/models"]) == 1


def test_stream_shapes_servers_send(proxies, engines):
    routes: dict[str, object] = {}
    proxy = proxies(handler=canned(routes))
    engine = engines(proxy.url)
    engine.connect()
    # "error": null in every event (vLLM, proxies): no error.
    routes["POST /v1/completions"] = Reply(chunks=sse(
        {"error": None, "choices": [{"text": "hi", "finish_reason": None}]},
        {"error": None, "choices": [{"text": "", "finish_reason": "stop"}]}, "[DONE]"))
    assert engine.generate("x", greedy(4), [], never, lambda _p: None).text == "hi"
    # A finish reason, then neither [DONE] nor a close: the answer is whole.
    routes["POST /v1/completions"] = Reply(chunks=completion_events("hello")[:-1] + [": ping\n\n"],
                                           delays={2: 30.0})
    assert engine.generate("x", greedy(4), [], never, lambda _p: None).text == "hello"
    # The stream ended in the middle of an event, after a piece: a cut stream (what
    # the shared daemon's clients recover from), not "an event that is not JSON".
    routes["POST /v1/completions"] = Reply(chunks=[
        *completion_events("par", finish=None)[:-1], 'data: {"choices": [{"te'])
    with pytest.raises(EngineError, match="the stream was cut in the middle"):
        engine.generate("x", greedy(4), [], never, lambda _p: None)


def test_backend_urls_and_numbers_the_client_cannot_use_are_settings_problems():
    from hearth_lsp.server.settings import parse_backend

    for url, why in [("http://127.0.0.1:99999/v1", "Port out of range"),
                     ("http://[::1/v1", "Invalid IPv6 URL"), ("http://:80/v1", "names no host")]:
        _, problems = parse_backend("team", {"url": url}, "config.toml")
        assert len(problems) == 1 and why in problems[0], problems
    _, problems = parse_backend("team", {"url": "http://127.0.0.1:8080/v1",
                                         "firstTokenTimeoutS": float("nan"),
                                         "connectTimeoutS": float("inf")}, "config.toml")
    assert [p.split(": ")[1] for p in problems] == ["backends.team.firstTokenTimeoutS",
                                                    "backends.team.connectTimeoutS"]


def test_streams_and_errors_are_told_apart_by_their_body_not_their_content_type(proxies,
                                                                                engines):
    routes: dict[str, object] = {}
    proxy = proxies(handler=canned(routes))
    engine = engines(proxy.url)
    engine.connect()
    # An event stream under another type (a bare StreamingResponse, a rewriting proxy)
    # is still streamed piece by piece.
    for content_type in ("text/plain; charset=utf-8", "application/x-ndjson"):
        routes["POST /v1/completions"] = Reply(chunks=completion_events("Hello", " world"),
                                               headers={"Content-Type": content_type})
        pieces: list[str] = []
        assert engine.generate("x", greedy(4), [], never, pieces.append).text == "Hello world"
        assert pieces == ["Hello", " world"]
    # CRLF and CR end lines too, also when a CRLF is split between two reads (here in
    # an event of two data: lines, which one blank line too many would cut in two).
    event = 'data: {"choices": [{"text": "%s", "finish_reason": %s}]}'
    routes["POST /v1/completions"] = Reply(chunks=[
        'data: {"choices": [{"text": "a",\r', '\ndata: "finish_reason": null}]}\r\n\r\n',
        event % ("b", "null") + "\r\r",
        event % ("", '"stop"') + "\r\n\r\n", "data: [DONE]\r\n\r\n"])
    assert engine.generate("x", greedy(4), [], never, lambda _p: None).text == "ab"
    # A bare JSON error sent as text/event-stream: the server's own message.
    routes["POST /v1/completions"] = Reply(chunks=[json.dumps(
        {"error": {"message": "context length exceeded: 9000 > 4096"}})])
    with pytest.raises(EngineError, match="reported an error: context length exceeded"):
        engine.generate("x", greedy(4), [], never, lambda _p: None)


def test_a_redirect_is_named_and_not_followed(proxies, engines):
    target = proxies(handler=canned({}))
    proxy = proxies(handler=canned({
        "GET /v1/models": Reply(301, headers={"Location": f"{target.url}/models"}),
        "POST /v1/completions": Reply(307, headers={
            "Location": "http://user:pw@example.invalid/v1/completions"})}))
    with pytest.raises(EngineError, match=f"301 Moved Permanently: redirected to {target.url}/"
                                          "models — set backends.team.url"):
        engines(proxy.url, api_key_env="K", environ={"K": KEY}).connect()
    engine = engines(proxy.url)
    engine.capabilities, engine.model, engine.connected = remote.Capabilities(), "tiny", True
    with pytest.raises(EngineError) as caught:
        engine.generate("x", greedy(2), [], never, lambda _p: None)
    assert ("redirected to http://example.invalid/v1/completions" in str(caught.value)
            and "pw" not in str(caught.value))
    assert target.requests == []  # the key went nowhere else


def test_bodies_past_the_limit_are_refused_not_kept_in_memory(proxies, engines, monkeypatch):
    monkeypatch.setattr(remote, "BODY_MAX", 1024 * 1024)
    routes: dict[str, object] = {"GET /v1/models": Reply(body={
        **MODELS, "pad": "x" * (2 * 1024 * 1024)})}
    proxy = proxies(handler=canned(routes))
    with pytest.raises(EngineError, match="GET /models answered with more than 1 MiB"):
        engines(proxy.url).connect()
    del routes["GET /v1/models"]
    engine = engines(proxy.url)
    engine.connect()
    # One line that never ends (the server then waits), and one event of endless
    # data: lines.
    for chunks, delays in ((["data: " + "x" * 65536] * 40 + ["\n"], {40: 60.0}),
                           (["data: " + "x" * 1000 + "\n"] * 2000, {})):
        routes["POST /v1/completions"] = Reply(chunks=chunks, delays=delays)
        with pytest.raises(EngineError, match="POST /completions sent more than 1 MiB in one event"):
            engine.generate("x", greedy(2), [], never, lambda _p: None)
