"""Vectors in chromadb: ids and embeddings only (text and metadata stay in SQLite).

Embedded (`PersistentClient` in the workspace's cache folder) by default; a
`chroma run` server when `index.chromaUrl` is set. A server that is down is
retried with backoff and then reported; lexical search keeps working.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

log = logging.getLogger(__name__)


class VectorStoreUnavailable(RuntimeError):
    pass


def _client(folder: Path | None, url: str | None) -> Any:
    import chromadb
    from chromadb.config import Settings

    settings = Settings(anonymized_telemetry=False, allow_reset=False)
    if url:
        parsed = urlparse(url if "://" in url else f"http://{url}")
        return chromadb.HttpClient(host=parsed.hostname or "127.0.0.1", port=parsed.port or 8000,
                                   ssl=parsed.scheme == "https", settings=settings)
    assert folder is not None
    folder.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(folder), settings=settings)


class VectorStore:
    def __init__(self, collection: str, *, folder: Path | None = None, url: str | None = None,
                 retries: int = 3):
        self.where = url or str(folder)
        last: Exception | None = None
        for attempt in range(retries):
            try:
                self.client = _client(folder, url)
                self.col = self.client.get_or_create_collection(
                    collection, metadata={"hnsw:space": "cosine"}, embedding_function=None)
                return
            except Exception as exc:  # connection refused, bad folder, ...
                last = exc
                time.sleep(0.2 * 2 ** attempt)
        raise VectorStoreUnavailable(f"chroma at {self.where} is unavailable: {last}")

    def _call(self, what: str, fn: Any, retries: int = 3) -> Any:
        """Run one chroma call, retried with backoff; a server that stays down is
        VectorStoreUnavailable (the caller falls back to lexical search)."""
        for attempt in range(retries):
            try:
                return fn()
            except Exception as exc:
                if attempt == retries - 1:
                    raise VectorStoreUnavailable(
                        f"chroma at {self.where} failed to {what}: {exc}") from exc
                time.sleep(0.2 * 2 ** attempt)
        raise AssertionError("unreachable")

    def upsert(self, ids: Sequence[int], vectors: Any) -> None:
        if len(ids):
            self._call("store vectors", lambda: self.col.upsert(
                ids=[str(i) for i in ids], embeddings=[list(map(float, v)) for v in vectors]))

    def delete(self, ids: Sequence[int]) -> None:
        if len(ids):
            self._call("delete vectors", lambda: self.col.delete(ids=[str(i) for i in ids]))

    def query(self, vector: Any, k: int) -> list[tuple[int, float]]:
        """(chunk id, similarity in [-1, 1]) best first."""
        def run() -> Any:
            count = self.col.count()
            if count == 0:
                return None
            return self.col.query(query_embeddings=[list(map(float, vector))],
                                  n_results=min(k, count), include=["distances"])

        # One try: a query is interactive, and lexical search answers meanwhile.
        res = self._call("query", run, retries=1)
        if res is None:
            return []
        ids, dists = res["ids"][0], res["distances"][0]
        return [(int(i), 1.0 - float(d)) for i, d in zip(ids, dists, strict=True)]

    def count(self) -> int:
        return int(self._call("count", self.col.count))
