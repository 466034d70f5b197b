"""The daemon's embedding model: OpenAI's /v1/embeddings, and the index's client of it.

The daemon (HTTP, token, queue) is the real one in this process, its embedding model the
real bundled all-MiniLM-L6-v2 (loaded by the daemon as it would be), its generation model
a FakeEngine. What the daemon answers is compared with the same model loaded here, so a
vector that is reordered, cut differently or garbled in transit fails.
"""

from __future__ import annotations

import base64
import os
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from hearth_lsp.indexer.embeddings import Embedder
from hearth_lsp.server.daemon import Daemon, read_state
from hearth_lsp.server.engine.daemon_embedder import DaemonEmbedder, shared_embedder
from hearth_lsp.server.engine.fake import FakeEngine
from hearth_lsp.server.engine.worker import Priority
from hearth_lsp.server.settings import ModelSettings, SamplingSettings

pytestmark = pytest.mark.slow  # loads the embedding model twice

TEXTS = ["def parse_price(text): return int(float(text) * 100)",
         "class Inventory:\n    def add(self, item): ...",
         "tax rate " * 400]  # well past the 256 wordpieces the model reads


@pytest.fixture(scope="module")
def local() -> Embedder:
    return Embedder()


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    engine = FakeEngine(default="done", piece_delay_s=0.0)
    d = Daemon(ModelSettings(), cache, lambda _m, _c: engine)
    d.start()
    yield d
    d.stop()


def post(daemon: Daemon, path: str, body, token: str | None = None) -> httpx.Response:
    state = read_state(daemon.files.state)
    assert state is not None
    return httpx.post(f"{state.root}{path}", json=body, timeout=120,
                      headers={"Authorization": f"Bearer {token or state.token}"})


def test_openai_embeddings_are_the_model_s_own_vectors(daemon, local):
    answer = post(daemon, "/v1/embeddings", {"input": TEXTS})
    assert answer.status_code == 200, answer.text
    data = answer.json()
    assert data["object"] == "list" and data["model"] == local.name
    assert [item["index"] for item in data["data"]] == [0, 1, 2]
    vectors, counts = local.embed_counted(TEXTS)
    got = np.array([item["embedding"] for item in data["data"]], dtype=np.float32)
    assert got.shape == (3, local.dimension)
    assert np.allclose(got, vectors, atol=1e-5)
    # The long text was cut where the model stops reading, as in this process.
    assert [item["tokens"] for item in data["data"]] == counts and counts[2] == local.max_tokens
    assert data["usage"] == {"prompt_tokens": sum(counts), "total_tokens": sum(counts)}
    # base64: the same float32 values, byte for byte.
    raw = post(daemon, "/v1/embeddings", {"input": TEXTS, "encoding_format": "base64"}).json()
    decoded = np.stack([np.frombuffer(base64.b64decode(item["embedding"]), dtype="<f4")
                        for item in raw["data"]])
    assert np.array_equal(decoded, got)
    one = post(daemon, "/v1/embeddings", {"input": TEXTS[0], "model": "all-MiniLM-L6-v2"})
    assert np.allclose(one.json()["data"][0]["embedding"], vectors[0], atol=1e-5)
    assert daemon.embeddings.loads == 1  # loaded once, for every request


@pytest.mark.parametrize("body, message", [
    ({}, "input must be a string or a non-empty list"),
    ({"input": []}, "input must be a string or a non-empty list"),
    ({"input": ["a", 3]}, "input must hold strings"),
    ({"input": [[1, 2, 3]]}, "input must hold strings"),
    ({"input": ["x"] * 2049}, "at most 2048"),
    ({"input": "x", "encoding_format": "hex"}, "use float or base64"),
    ({"input": "x", "model": "text-embedding-3-small"}, "unknown embedding model"),
    ({"input": "x", "model": "/no/such/folder"}, "no such folder"),
    ({"input": "x", "priority": "urgent"}, "priority 'urgent'"),
    ({"input": "x", "backend": "tensorrt"}, "backend must be one of auto, torch"),
])
def test_bad_embedding_requests_are_told_what_is_wrong(daemon, body, message):
    answer = post(daemon, "/v1/embeddings", body)
    assert answer.status_code == 400
    assert message in answer.json()["error"]["message"]


def test_a_folder_that_is_not_a_model_is_refused_and_the_daemon_stays_up(daemon, tmp_path):
    answer = post(daemon, "/hearth/embedder", {"model": str(tmp_path)})
    assert answer.status_code == 503
    assert "not a sentence-transformers model folder" in answer.json()["error"]["message"]
    assert post(daemon, "/v1/embeddings", {"input": "still here"}).status_code == 200


def test_embeddings_need_the_token(daemon):
    answer = post(daemon, "/v1/embeddings", {"input": "x"}, token="wrong")
    assert answer.status_code == 401


def test_the_index_embedder_on_the_daemon_matches_the_one_in_process(daemon, local):
    remote = DaemonEmbedder(ModelSettings(), daemon.cache, None)
    assert (remote.name, remote.max_tokens, remote.dimension) == \
        (local.name, local.max_tokens, local.dimension)
    vectors, counts = remote.embed_counted(TEXTS)
    want, want_counts = local.embed_counted(TEXTS)
    assert vectors.dtype == np.float32 and counts == want_counts
    assert np.allclose(vectors, want, atol=1e-5)
    assert np.allclose(remote.encode(["where are prices parsed"]),
                       local.encode(["where are prices parsed"]), atol=1e-5)


def test_each_window_s_backend_runs_at_the_daemon_under_its_own_name(daemon, local):
    """index.embeddingBackend travels with the requests: int8 vectors and the default's
    float ones are two models at the daemon, never mixed."""
    assert post(daemon, "/v1/embeddings", {"input": "x"}).json()["model"] == local.name
    remote = DaemonEmbedder(ModelSettings(), daemon.cache, None, backend="onnx-int8")
    assert remote.name == local.name + "-int8"
    vectors, _ = remote.embed_counted(TEXTS)
    floats = local.encode(local.fit(TEXTS))
    near = (vectors * floats).sum(axis=1)
    assert near.min() > 0.97 and not np.allclose(vectors, floats, atol=1e-3)
    answer = post(daemon, "/v1/embeddings", {"input": TEXTS, "backend": "onnx-int8"}).json()
    assert answer["model"] == remote.name
    assert np.allclose([item["embedding"] for item in answer["data"]], vectors, atol=1e-5)
    # Exported into the daemon's own cache folder, as a language server's into its own.
    assert list(daemon.cache.glob("onnx/*/model-int8.onnx"))


def test_background_embeddings_wait_for_a_user_s_generation(tmp_path):
    """A chunk batch (priority background) sent while a user's generation runs is
    answered after that generation, not beside it; a query (user) is not held."""
    engine = FakeEngine(default=" ".join(["x"] * 40), piece_delay_s=0.05)  # 40 pieces: ~2 s
    order: list[str] = []

    class Recording:
        name, max_tokens, dimension = "recording", 256, 2

        def embed_counted(self, texts):
            order.append("embedded")
            return np.ones((len(texts), 2), dtype=np.float32), [1] * len(texts)

    d = Daemon(ModelSettings(), tmp_path, lambda _m, _c: engine,
               load_embedder=lambda folder, backend: Recording())
    d.start()
    try:
        d.worker.load_job.future.result(timeout=30)
        job = d.worker.submit("request", "p", SamplingSettings(max_tokens=40),
                              priority=Priority.USER)
        job.future.add_done_callback(lambda _f: order.append("generated"))
        while d.worker.running() is not job:
            time.sleep(0.01)
        answer = post(d, "/v1/embeddings", {"input": ["a"], "priority": "background"})
        assert answer.status_code == 200
        assert order == ["generated", "embedded"]
        order.clear()
        job = d.worker.submit("request", "p", SamplingSettings(max_tokens=40),
                              priority=Priority.USER)
        job.future.add_done_callback(lambda _f: order.append("generated"))
        while d.worker.running() is not job:
            time.sleep(0.01)
        assert post(d, "/v1/embeddings", {"input": ["a"]}).status_code == 200
        job.future.result(timeout=30)
        assert order == ["embedded", "generated"]
    finally:
        d.stop()


def test_a_daemon_that_cannot_start_again_falls_back_to_the_model_in_process(
        tmp_path, monkeypatch, local):
    """The daemon stops (idle, killed) and a new one cannot start: the next batch is
    embedded in this process, with a notice, and so is everything after it."""
    engine = FakeEngine(default="x")
    d = Daemon(ModelSettings(), tmp_path, lambda _m, _c: engine)
    d.start()
    broken = tmp_path / "broken_daemon.py"
    broken.write_text("import sys\nsys.exit('cannot start: a test')\n")
    monkeypatch.setenv("HEARTHD_SCRIPT", str(broken))
    notices: list[str] = []
    loaded: list[Path | None] = []

    def fallback():
        loaded.append(None)
        return local

    remote = shared_embedder(ModelSettings(), tmp_path, None, fallback=fallback,
                             on_notice=notices.append)
    assert isinstance(remote, DaemonEmbedder) and not loaded
    first, _ = remote.embed_counted(TEXTS[:1])
    assert remote.where == f"at the shared daemon (pid {os.getpid()})"  # this process's here
    d.stop()
    again, counts = remote.embed_counted(TEXTS[:1])
    assert np.allclose(first, again, atol=1e-5) and counts == local.embed_counted(TEXTS[:1])[1]
    assert loaded == [None] and remote.in_process is local
    assert remote.where.startswith("in this process (") and "(the daemon is gone)" in remote.where
    assert len(notices) == 1 and "loaded in this process instead" in notices[0]
    assert "cannot start: a test" in notices[0]
    # No daemon at all from the start: the model in this process, told once.
    assert shared_embedder(ModelSettings(), tmp_path, None, fallback=fallback,
                           on_notice=notices.append) is local
    assert len(notices) == 2


def test_a_search_does_not_wait_behind_an_index_batch_held_at_the_daemon(demo_repo, tmp_path):
    """The daemon holds an index's batch while a user's generation runs (above); the
    window's own searches must not queue behind that batch in the window."""
    from hearth_lsp.server.index_service import IndexService
    from hearth_lsp.server.settings import IndexSettings

    class HeldAtTheDaemon:
        thread_safe = True  # as DaemonEmbedder
        name, max_tokens = "held", 256

        def __init__(self):
            self.batches = 0
            self.holding, self.release = threading.Event(), threading.Event()

        def embed_counted(self, texts):
            self.batches += 1
            if self.batches > 1:  # the first batch goes through, the next is held
                self.holding.set()
                self.release.wait(120)
            return np.ones((len(texts), 4), dtype=np.float32), [1] * len(texts)

        def encode(self, texts, counts=None):
            return np.ones((len(texts), 4), dtype=np.float32)

    held = HeldAtTheDaemon()
    service = IndexService(demo_repo, tmp_path / "cache", IndexSettings(),
                           load_embedder=lambda folder, backend: held)
    service.start()
    try:
        deadline = time.monotonic() + 120
        while not (service.state == "ready" and held.batches == 1):
            assert time.monotonic() < deadline, service.status()
            time.sleep(0.05)
        changed = demo_repo / "inventory" / "pricing.py"
        changed.write_text(changed.read_text() + "\n\ndef to_euros(cents):\n    return cents\n")
        service.files_changed([changed])
        assert held.holding.wait(60)
        found: list = []
        search = threading.Thread(target=lambda: found.append(service.search("price", k=3)))
        search.start()
        search.join(60)  # a deadlock guard, not a timing: it returns at once or never
        assert found and found[0], "the search waited behind the held batch"
    finally:
        held.release.set()
        service.stop()
