"""Vectors in chromadb: ids and embeddings only (text and metadata stay in SQLite).

Embedded (`PersistentClient` in the workspace's cache folder) by default; a
`chroma run` server when `index.chromaUrl` is set. A server that is down is
retried with backoff and then reported; lexical search keeps working.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

log = logging.getLogger(__name__)


class VectorStoreUnavailable(RuntimeError):
    pass


# Opens an embedded store and reads every collection in it (count, one vector, a
# query): what the server would do first, in a process that may crash.
_PROBE = """
import sys
import chromadb
from chromadb.config import Settings
client = chromadb.PersistentClient(path=sys.argv[1], settings=Settings(
    anonymized_telemetry=False, allow_reset=False))
for col in client.list_collections():
    col = client.get_collection(col.name)
    n = col.count()
    if n:
        got = col.get(limit=1, include=["embeddings"])
        col.query(query_embeddings=[list(map(float, got["embeddings"][0]))],
                  n_results=min(5, n), include=["distances"])
client.close()
"""
PROBE_TIMEOUT_S = 120.0


def folder_problem(folder: Path, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """None when chromadb opens and reads ``folder`` (or there is none yet), else why not.

    In a child process: chromadb's native code crashes on some damage (a
    truncated `data_level0.bin` is a SIGSEGV with chromadb 1.5.9) and would take
    the server with it; other damage is an error on every call, forever.
    """
    if not folder.is_dir():
        return None
    try:
        proc = subprocess.run([sys.executable, "-c", _PROBE, str(folder)], capture_output=True,
                              timeout=timeout, stdin=subprocess.DEVNULL,
                              env={**os.environ, "ANONYMIZED_TELEMETRY": "False"})
    except subprocess.TimeoutExpired:
        return f"reading it took longer than {timeout:.0f} s"
    except OSError as exc:  # cannot start a process: nothing learnt, assume it is fine
        log.debug("cannot check %s: %s", folder, exc)
        return None
    if proc.returncode == 0:
        return None
    if proc.returncode < 0:
        return f"chromadb crashed reading it (signal {-proc.returncode})"
    lines = [ln for ln in proc.stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
    return lines[-1][:300] if lines else f"chromadb failed reading it (exit {proc.returncode})"


def fingerprint(folder: Path) -> list[tuple[str, int, int]]:
    """Every file in ``folder`` by (path, size, mtime): unchanged since a clean close
    means there is nothing to check."""
    out = []
    for path in sorted(folder.rglob("*")):
        try:
            st = path.stat()
        except OSError:
            continue
        if path.is_file():
            out.append((path.relative_to(folder).as_posix(), st.st_size, st.st_mtime_ns))
    return out


def save_fingerprint(folder: Path, record: Path) -> None:
    try:
        record.write_text(json.dumps(fingerprint(folder)), encoding="utf-8")
    except OSError as exc:
        log.debug("cannot record the state of %s: %s", folder, exc)


def fingerprint_matches(folder: Path, record: Path) -> bool:
    try:
        saved = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return [tuple(x) for x in saved] == fingerprint(folder)


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
        self.folder = None if url else folder
        self.client: Any = None
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
            import numpy as np

            # One float32 array: chroma takes it as it is, where a list of Python floats
            # per vector cost ~30 bytes a number (60 MB for 5,000 vectors) on the way.
            array = np.asarray(vectors, dtype=np.float32).reshape(len(ids), -1)
            self._call("store vectors", lambda: self.col.upsert(
                ids=[str(i) for i in ids], embeddings=array))

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

    def ids(self, page: int = 10000) -> set[int]:
        """Every id in the collection."""
        out: set[int] = set()
        offset = 0
        while True:
            got = self._call("list ids", lambda at=offset: self.col.get(
                include=[], limit=page, offset=at))
            out.update(int(i) for i in got["ids"])
            if len(got["ids"]) < page:
                return out
            offset += page

    def close(self) -> None:
        """Release the client (an embedded store's files and chromadb's cached system
        for that folder, so a new VectorStore there starts afresh)."""
        client, self.client = self.client, None
        close = getattr(client, "close", None)
        if close is not None:
            try:
                close()
            except Exception as exc:  # a store already broken: nothing more to release
                log.debug("closing chroma at %s: %s", self.where, exc)
