"""LlamaEngine with the real default model: streaming, cancellation, prefix reuse."""

from __future__ import annotations

import time

import pytest

from hearth_lsp.server.engine.base import EngineError, ModelUnavailable
from hearth_lsp.server.engine.llama import LlamaEngine
from hearth_lsp.server.engine.worker import GenerationWorker
from hearth_lsp.server.settings import ModelSettings, SamplingSettings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def worker(smollm2_path):
    w = GenerationWorker()
    info = w.load(lambda: LlamaEngine(smollm2_path, ModelSettings(batch_size=2048))).future.result(60)
    assert info.chat_template and info.gpu_layers == 0 and info.threads >= 1
    yield w
    w.shutdown()


def test_streams_pieces_and_counts_tokens(worker):
    pieces = []
    out = worker.submit("t", "The capital of France is", SamplingSettings(temperature=0, max_tokens=12),
                        on_piece=pieces.append).future.result(60)
    assert "".join(pieces) == out.text and out.text.strip()
    assert out.finish_reason in ("length", "stop") and 1 <= out.completion_tokens <= 12
    assert 0 < out.first_token_s <= out.total_s


def test_first_token_constraint(worker):
    out = worker.submit("t", 'def add(a, b):\n    """', SamplingSettings(temperature=0, max_tokens=8),
                        start=r"[ \t]*[A-Z]").future.result(60)
    assert out.text.lstrip()[:1].isupper()


def test_cancel_during_prompt_evaluation_returns_promptly(worker, smollm2_path):
    long_prompt = ("def f(x):\n    return x + 1\n\n" * 250)  # thousands of tokens: seconds of prompt work
    job = worker.submit("t", long_prompt, SamplingSettings(max_tokens=50))
    while worker.running() is not job:
        time.sleep(0.005)
    time.sleep(0.3)
    job.cancel()
    result = job.future.result(30)
    assert result.finish_reason == "cancelled" and result.completion_tokens == 0
    # Stopped inside prompt evaluation: the prompt never made it into the context.
    assert worker.engine.llm.n_tokens < result.prompt_tokens
    # The context is still consistent: the next generation works.
    after = worker.submit("t", "Hello,", SamplingSettings(temperature=0, max_tokens=5)).future.result(60)
    assert after.finish_reason in ("length", "stop")


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
