"""LlamaEngine with the real default model: streaming, cancellation, prefix reuse,
grammar checks, llama.cpp's logs."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time

import pytest

from hearth_lsp.server.engine.base import EngineError, ModelUnavailable
from hearth_lsp.server.engine.llama import LlamaEngine, gpu_offload_supported
from hearth_lsp.server.engine.worker import GenerationWorker, Priority
from hearth_lsp.server.settings import ModelSettings, SamplingSettings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def worker(smollm2_path):
    w = GenerationWorker()
    info = w.load(lambda: LlamaEngine(smollm2_path, ModelSettings(batch_size=2048))).future.result(60)
    # Every layer on the GPU when this llama.cpp build has one (model.gpuLayers unset).
    assert info.chat_template and info.threads >= 1
    assert info.gpu_layers == (-1 if gpu_offload_supported() else 0)
    yield w
    w.shutdown()


def test_streams_pieces_and_counts_tokens(worker):
    pieces = []
    out = worker.submit("t", "The capital of France is", SamplingSettings(temperature=0, max_tokens=12),
                        on_piece=pieces.append).future.result(60)
    assert "".join(pieces) == out.text and out.text.strip()
    assert out.finish_reason in ("length", "stop") and 1 <= out.completion_tokens <= 12
    assert 0 < out.first_token_s <= out.total_s
    # A lone surrogate (JSON's "\ud800", from an editor or a daemon's client) is text.
    assert worker.engine.count_tokens("a\ud800b") >= 2
    odd = worker.submit("t", "x = '\ud800'\n", SamplingSettings(temperature=0, max_tokens=2))
    assert odd.future.result(60).completion_tokens >= 1


def test_first_token_constraint(worker):
    out = worker.submit("t", 'def add(a, b):\n    """', SamplingSettings(temperature=0, max_tokens=8),
                        start=r"[ \t]*[A-Z]").future.result(60)
    assert out.text.lstrip()[:1].isupper()


def on_gpu(worker) -> bool:
    return worker.engine.info.gpu_layers != 0


def test_cancel_during_decoding_stops_within_one_token(worker):
    lock = threading.Lock()
    pieces: list[str] = []
    started = threading.Event()

    def on_piece(piece: str) -> None:  # on the worker thread
        with lock:
            pieces.append(piece)
            if len(pieces) >= 5:
                started.set()

    # Greedy counting goes on for 200+ tokens with this model: far more than 5.
    job = worker.submit("t", "Count from one to one thousand: 1, 2, 3, 4, 5, 6, 7, 8, 9, 10,",
                        SamplingSettings(temperature=0, max_tokens=400), on_piece=on_piece)
    assert started.wait(60), "no 5 tokens"
    with lock:  # no piece can be delivered between counting and cancelling
        job.cancel()
        at_cancel = len(pieces)
    result = job.future.result(60)
    assert result.finish_reason == "cancelled"
    # The token being decoded when the cancel came may still be delivered; no other.
    assert len(pieces) - at_cancel <= 1, (at_cancel, len(pieces))
    assert result.text == "".join(pieces)
    assert worker.idle.wait(10)


def test_cancel_during_prompt_evaluation_aborts_it(worker, monkeypatch):
    # Thousands of tokens in one batch (batch_size=2048): measured here (2 shared
    # cores) the whole prompt takes ~50 s to evaluate, where a cancel during it
    # returns in well under a second. No per-token check runs inside a batch; only
    # llama.cpp's abort callback can stop it.
    long_prompt = "def f(x):\n    return x + 1\n\n" * 250
    llm = worker.engine.llm
    original = llm.eval
    calls: list[int] = []

    def eval_then_cancel(tokens):
        calls.append(len(tokens))
        if len(calls) == 1:  # the prompt's first batch starts: cancel it now
            worker.running().cancel()
        return original(tokens)

    monkeypatch.setattr(llm, "eval", eval_then_cancel)
    job = worker.submit("t", long_prompt, SamplingSettings(max_tokens=50))
    result = job.future.result(120)
    monkeypatch.undo()
    assert calls and calls[0] > 2000  # the cancel really landed in a large batch
    assert result.finish_reason == "cancelled" and result.completion_tokens == 0
    if not on_gpu(worker):  # llama.cpp polls the abort callback on the CPU backend only
        # Aborted inside the batch: the prompt never made it into the context.
        assert llm.n_tokens < result.prompt_tokens
    assert worker.idle.wait(60)
    # The context is still consistent: the next generation works.
    after = worker.submit("t", "Hello,", SamplingSettings(temperature=0, max_tokens=5)).future.result(60)
    assert after.finish_reason in ("length", "stop") and after.text


def test_cancel_as_soon_as_the_job_runs_frees_the_worker(worker):
    long_prompt = "def g(y):\n    return y * 3\n\n" * 250  # ~50 s of prompt work here
    job = worker.submit("t", long_prompt, SamplingSettings(max_tokens=50))
    deadline = time.monotonic() + 30
    while worker.running() is not job:
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.001)
    job.cancel()
    # A bounded wait well under the uncancelled prompt time measured above.
    assert worker.idle.wait(20), "the worker is still busy with a cancelled prompt"
    result = job.future.result(0)
    assert result.finish_reason == "cancelled" and result.completion_tokens == 0
    if not on_gpu(worker):  # a GPU may have evaluated the whole prompt before the cancel
        assert worker.engine.llm.n_tokens < result.prompt_tokens


def test_a_sampled_answer_that_yields_to_a_user_action_runs_again_to_the_same_text(worker):
    """A hook's answer at temperature 0.9 (seed -1: random) stops for a user's action
    after a few tokens and runs again from the start, after the user's prompt has
    replaced the KV cache: the seed drawn at submit makes the rerun sample the same
    tokens, so what was streamed before the stop is the start of the final text."""
    pieces: list[str] = []
    jobs: dict = {}
    sampled = SamplingSettings(temperature=0.9, top_k=40, top_p=0.95, max_tokens=24, seed=-1)

    def on_piece(piece: str) -> None:  # on the worker thread
        pieces.append(piece)
        if len(pieces) == 4:
            jobs["user"] = worker.submit("doc", "A short poem about rain:",
                                         SamplingSettings(temperature=0, max_tokens=6))

    hook = worker.submit("commit", "Write a commit message for a typo fix in the README:",
                         sampled, priority=Priority.HOOK, on_piece=on_piece)
    result = hook.future.result(120)
    assert jobs["user"].future.result(60).text
    assert hook.restarts == 1
    assert result.completion_tokens > 4 and "".join(pieces) == result.text


def test_an_invalid_grammar_is_a_clear_error_before_sampling(worker):
    pieces: list[str] = []
    job = worker.submit("t", "Hello", SamplingSettings(max_tokens=5), on_piece=pieces.append,
                        grammar='root ::= "{" undefined-rule "}"')
    # llama.cpp would build a NULL sampler from it and crash the process (SIGSEGV).
    with pytest.raises(EngineError, match="invalid grammar:.*undefined-rule"):
        job.future.result(60)
    assert pieces == []
    good = worker.submit("t", "Hello", SamplingSettings(max_tokens=5),
                         grammar='root ::= "a" [b-z]{1,3}').future.result(60)
    assert good.text[:1] == "a" and 2 <= len(good.text) <= 4


def test_llama_cpp_logs_are_python_debug_records(smollm2_path, caplog):
    caplog.set_level(logging.DEBUG, logger="hearth_lsp.server.engine.llama.native")
    engine = LlamaEngine(smollm2_path, ModelSettings(context_length=512))
    engine.close()
    native = [r for r in caplog.records if r.name == "hearth_lsp.server.engine.llama.native"]
    assert any(r.getMessage().startswith("llama_context:") for r in native)
    assert all(r.levelno == logging.DEBUG for r in native)


def test_the_cli_prints_no_llama_cpp_log_lines(tmp_path):
    # The Gemma preset's KV cache logs a warning (`llama_kv_cache_iswa: ...`) that
    # llama-cpp-python's own callback printed to stderr on every command.
    (tmp_path / "m.py").write_text("def add(a, b):\n    return a + b\n")
    env = {**os.environ, "HEARTH_MODEL_PRESET": "gemma3-270m", "HEARTH_DOCSTRING_SEED": "1"}
    hearth = [sys.executable, "-m", "hearth_lsp.server"]
    done = subprocess.run([*hearth, "docstring", "m.py::add"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    leaked = [line for line in done.stderr.splitlines()
              if line.startswith(("llama_", "load_tensors", "llm_load", "print_info",
                                  "load:", "sched_", "ggml_"))]
    assert leaked == [], done.stderr[-2000:]
    # It ran: a docstring, or a refusal that says why (never a crash).
    assert done.returncode == 0 and done.stdout.strip() or "hearth:" in done.stderr, done.stderr


def test_prompt_longer_than_the_context_is_a_clear_error(worker):
    with pytest.raises(EngineError, match="raise model.contextLength"):
        worker.submit("t", "word " * 5000, SamplingSettings()).future.result(60)


def test_second_prompt_with_a_shared_prefix_reuses_the_kv_cache(worker, monkeypatch):
    llm = worker.engine.llm
    evaluated: list[int] = []
    original = llm.eval
    monkeypatch.setattr(llm, "eval", lambda tokens: (evaluated.append(len(tokens)), original(tokens))[1])
    prefix = "Here is some code:\n" + "def f(x):\n    return x * 2\n" * 60
    s = SamplingSettings(temperature=0, max_tokens=2)
    cold = worker.submit("t", "Unrelated start. " + prefix + "Question one?", s).future.result(60)
    first_eval = evaluated[0]
    evaluated.clear()
    worker.submit("t", "Unrelated start. " + prefix + "Question two?", s).future.result(60)
    # Only the part after the shared prefix is evaluated again.
    assert first_eval >= cold.prompt_tokens - 1 and evaluated[0] < 10


def test_missing_file_is_model_unavailable(tmp_path):
    with pytest.raises(Exception) as err:
        LlamaEngine(tmp_path / "nope.gguf", ModelSettings())
    assert "nope.gguf: no such file" in str(err.value)
    assert isinstance(err.value, (ModelUnavailable, ValueError))
