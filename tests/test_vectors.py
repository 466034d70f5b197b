"""Phase 2: embeddings in chromadb (embedded and a real `chroma run`), hybrid search."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hearth_lsp.indexer.embeddings import Embedder, EmbeddingModelMissing
from hearth_lsp.indexer.vectors import VectorStore, VectorStoreUnavailable
from hearth_lsp.indexer.workspace import WorkspaceIndex, reciprocal_rank_fusion

pytestmark = pytest.mark.slow

SOURCES = {
    "money/prices.py": "def parse_price(text):\n    \"\"\"Turn '€12.50' into 1250 cents.\"\"\"\n"
                       "    return int(float(text.strip('€')) * 100)\n",
    "net/http.py": "def fetch_page(url, timeout=10):\n    \"\"\"Download a web page over HTTP.\"\"\"\n"
                   "    import urllib.request\n    return urllib.request.urlopen(url, timeout=timeout).read()\n",
    "geo/shapes.ts": "export function circleArea(radius: number): number {\n"
                     "  // area of a circle from its radius\n  return Math.PI * radius * radius;\n}\n",
    "dup/a.py": "def same():\n    return 42\n",
    "dup/b.py": "def same():\n    return 42\n",
}


@pytest.fixture(scope="module")
def embedder():
    return Embedder()


@pytest.fixture
def ws(tmp_path):
    root = tmp_path / "ws"
    for rel, text in SOURCES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_embedding_text_is_cut_where_the_model_stops_reading(embedder):
    long = "def f():\n" + "    x = compute_something_long(a, b, c)\n" * 200
    [fitted] = embedder.fit([long])
    assert len(fitted) < len(long) and long.startswith(fitted)
    assert embedder.token_counts([fitted])[0] <= embedder.max_tokens


def test_long_texts_are_encoded_in_smaller_batches_with_the_same_vectors(embedder, monkeypatch):
    """Batches keep to max_batch_tokens (the encoder's memory grows with batch x
    length^2); the vectors are those of one plain encode, in the order given."""
    import numpy as np

    texts, counts = embedder.fit_counted(
        [f"def handler_{i}(event):\n" + "    total = compute(event, rate) * 2\n" * (i % 7) * 12
         for i in range(40)])
    assert max(counts) > 200 and min(counts) < 40
    plain = embedder._encode(list(texts), 64)
    sizes: list[tuple[int, int]] = []
    real = embedder._encode

    def spy(batch, batch_size):
        sizes.append((len(batch), max(embedder.token_counts(batch))))
        return real(batch, batch_size)

    monkeypatch.setattr(embedder, "_encode", spy)
    monkeypatch.setattr(embedder, "max_batch_tokens", 2048)
    budgeted = embedder.encode(texts, counts)
    assert len(sizes) > 1 and all(n * longest <= 2048 for n, longest in sizes)
    assert sum(n for n, _ in sizes) == len(texts)
    cosines = np.sum(plain * budgeted, axis=1)
    assert cosines.min() > 0.9999


def test_the_batch_token_limit_follows_the_device(embedder):
    from hearth_lsp.indexer.embeddings import MAX_BATCH_TOKENS

    # Measured on a CPU: smaller batches are faster there; a GPU wants large ones.
    assert embedder.max_batch_tokens == MAX_BATCH_TOKENS[embedder.device]
    assert MAX_BATCH_TOKENS["cpu"] < MAX_BATCH_TOKENS["cuda"]


def test_cached_vectors_are_packed_small_and_unpack_close_to_the_model_s(embedder):
    import numpy as np

    from hearth_lsp.indexer.store import pack_vector, unpack_vector

    vectors = embedder.encode(list(SOURCES.values()))
    for vector in vectors:
        blob = pack_vector(vector)
        assert len(blob) == embedder.dimension + 5  # a quarter of float32
        again = unpack_vector(blob)
        assert again.dtype == np.float32 and abs(np.linalg.norm(again) - 1) < 1e-5
        assert float(again @ vector) > 0.9999
        # What stores written before hold (float16) still reads.
        old = unpack_vector(vector.astype(np.float16).tobytes())
        assert float(old @ vector) > 0.9999
    # Similarities between vectors move by far less than the gaps that rank them.
    exact = vectors @ vectors.T
    packed = np.stack([unpack_vector(pack_vector(v)) for v in vectors])
    assert np.abs(packed @ packed.T - exact).max() < 2e-3


def test_missing_model_folder_is_a_clear_error(tmp_path):
    with pytest.raises(EmbeddingModelMissing, match="not a sentence-transformers model folder"):
        Embedder(tmp_path)


def run_index(ws, cache, embedder, url=None):
    idx = WorkspaceIndex(ws, cache)
    idx.update()
    vectors = idx.open_vectors(embedder, url)
    stats = idx.embed_pending(embedder, vectors)
    return idx, vectors, stats


def check_behaviour(ws, cache, embedder, url=None):
    idx, vectors, stats = run_index(ws, cache, embedder, url)
    try:
        # Identical chunk texts (dup/a.py, dup/b.py) are embedded once.
        assert stats.embedded == 4 and stats.reused == 1 and vectors.count() == 5
        top = idx.hybrid_search("download a web page", 1, embedder, vectors, mode="dense")
        assert top[0].symbol == "fetch_page"
        hybrid = idx.hybrid_search("convert a price string to cents", 2, embedder, vectors)
        assert hybrid[0].symbol == "parse_price"
        assert idx.hybrid_search("circle area", 3, embedder, vectors,
                                 language="typescript")[0].path == "geo/shapes.ts"
        # Edit one function: only its chunk is embedded again.
        path = ws / "net" / "http.py"
        path.write_text(path.read_text().replace("timeout=10", "timeout=30"))
        idx.update()
        again = idx.embed_pending(embedder, vectors)
        assert (again.embedded, again.reused) == (1, 0) and vectors.count() == 5
        # Delete a file: its vectors leave the store.
        (ws / "geo" / "shapes.ts").unlink()
        idx.update()
        idx.embed_pending(embedder, vectors)
        assert vectors.count() == 4
        assert all(r.path != "geo/shapes.ts" for r in
                   idx.hybrid_search("circle area", 5, embedder, vectors))
    finally:
        idx.close()


def test_embedded_chroma(ws, tmp_path, embedder):
    check_behaviour(ws, tmp_path / "cache", embedder)


def test_reindexing_reuses_cached_vectors(ws, tmp_path, embedder):
    idx, vectors, _ = run_index(ws, tmp_path / "cache", embedder)
    idx.update(rebuild=True)
    stats = idx.embed_pending(embedder, vectors)
    assert stats.embedded == 0 and stats.reused == 5 and vectors.count() == 5
    idx.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_chroma(folder: Path, port: int) -> subprocess.Popen:
    exe = shutil.which("chroma", path=str(Path(sys.executable).parent))
    assert exe, "the chroma CLI ships with chromadb"
    proc = subprocess.Popen([exe, "run", "--path", str(folder), "--host", "127.0.0.1",
                             "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, "chroma run did not start"
            time.sleep(0.2)


@pytest.fixture
def chroma_server(tmp_path):
    port = free_port()
    proc = start_chroma(tmp_path / "chroma-server", port)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)


def test_chroma_server_mode(ws, tmp_path, embedder, chroma_server):
    check_behaviour(ws, tmp_path / "cache", embedder, chroma_server)


def test_a_chroma_server_that_is_down_is_a_clear_error_and_lexical_still_works(ws, tmp_path):
    with pytest.raises(VectorStoreUnavailable, match="unavailable"):
        VectorStore("x", url=f"http://127.0.0.1:{free_port()}", retries=2)
    idx = WorkspaceIndex(ws, tmp_path / "cache")
    idx.update()
    assert idx.hybrid_search("parse price", 1, None, None)[0].symbol == "parse_price"
    idx.close()


def test_reciprocal_rank_fusion_rewards_agreement():
    fused = reciprocal_rank_fusion([[(1, 9.0), (2, 8.0), (3, 7.0)], [(3, 0.9), (1, 0.8)]])
    assert [cid for cid, _ in fused] == [1, 3, 2]


def test_a_chroma_server_that_goes_down_and_comes_back(ws, tmp_path, embedder):
    port = free_port()
    proc = start_chroma(tmp_path / "chroma-server", port)
    idx, vectors, _ = run_index(ws, tmp_path / "cache", embedder, f"http://127.0.0.1:{port}")
    try:
        proc.terminate()
        proc.wait(10)
        # Search answers from the lexical index; new chunks wait for the store.
        assert idx.hybrid_search("parse price", 1, embedder, vectors)[0].symbol == "parse_price"
        (ws / "money" / "tax.py").write_text("def add_sales_tax(cents):\n    return cents * 2\n")
        idx.update()
        with pytest.raises(VectorStoreUnavailable, match="failed to"):
            idx.embed_pending(embedder, vectors)
        assert idx.store.db.execute("SELECT count(*) FROM chunks WHERE embedded = 0"
                                    ).fetchone()[0] == 1
        proc = start_chroma(tmp_path / "chroma-server", port)  # same data, back up
        assert idx.embed_pending(embedder, vectors).embedded == 1
        assert vectors.count() == 6
    finally:
        idx.close()
        proc.terminate()
        proc.wait(10)
