"""torch's OpenMP team must not outlive an encode call (see Embedder._encode).

A team left in a long-lived thread is counted by libgomp beside llama.cpp's, and
with more OpenMP threads than cores libgomp stops spinning at barriers: decoding
in the same process ran at 0.39x of raw (bench/engine.py measures the speed; this
checks the mechanism, never a timing)."""

from __future__ import annotations

import threading

import pytest

from hearth_lsp.indexer.embeddings import Embedder


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder(backend="torch")  # the OpenMP team is torch's


def test_every_encode_runs_in_a_thread_that_ends_with_it(embedder, monkeypatch):
    seen: list[threading.Thread] = []
    real = embedder.model.encode

    def recording(*args, **kwargs):
        seen.append(threading.current_thread())
        return real(*args, **kwargs)

    monkeypatch.setattr(embedder.model, "encode", recording)
    vectors = embedder.encode(["def add(a, b):\n    return a + b", "a docstring"])
    assert vectors.shape == (2, embedder.dimension)
    [thread] = seen
    assert thread is not threading.current_thread() and thread.name == "hearth-encode"
    assert not thread.is_alive()  # its OpenMP team went with it


def test_an_encode_error_reaches_the_caller(embedder, monkeypatch):
    def failing(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(embedder.model, "encode", failing)
    with pytest.raises(RuntimeError, match="out of memory"):
        embedder.encode(["x"])
