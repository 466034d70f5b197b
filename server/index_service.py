"""The workspace index inside the server: background phases, freshness, search.

One background thread writes the index (phase 1, then embeddings, then file
updates as they come); searches run on their own read-only connection, so a
long indexing pass never blocks a query. Embedding batches wait while the
model is generating for the user. Nothing here knows about LSP.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..indexer.context import ContextPiece, prompt_context
from ..indexer.vectors import VectorStoreUnavailable
from ..indexer.workspace import SearchResult, WorkspaceIndex
from .settings import IndexSettings

log = logging.getLogger(__name__)

Report = Callable[[str, str, int | None], None]  # (phase, message, percentage); phase "" = end


class IndexService:
    def __init__(self, root: Path, cache: Path, settings: IndexSettings, *,
                 report: Report | None = None, busy: Callable[[], bool] = lambda: False,
                 embed: bool = True, open_paths: Callable[[], list[Path]] = list):
        self.root, self.cache, self.settings = root, cache, settings
        self.open_paths = open_paths
        self.report = report or (lambda phase, message, pct: None)
        self.busy = busy
        self.embed = embed
        self.state = "starting"  # starting | indexing | embedding | ready | readonly | error
        self.error: str | None = None
        self.writer: WorkspaceIndex | None = None
        self.reader: WorkspaceIndex | None = None
        self._embedder: Any = None
        self._vectors: Any = None
        self._embed_lock = threading.Lock()  # the tokenizer is not safe across threads
        self._read_lock = threading.Lock()
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="hearth-index", daemon=True)
        self.ready = threading.Event()  # phase 1 done: search answers
        self._retry_in = 0.0  # backoff while the vector store is unavailable

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._queue.put(("stop", None))
        self._thread.join(10)
        for idx in (self.writer, self.reader):
            if idx is not None:
                idx.close()

    # ------------------------------------------------------------- requests

    def reindex(self, rebuild: bool = False) -> None:
        self._queue.put(("reindex", rebuild))

    def files_changed(self, paths: list[Path]) -> None:
        rels = []
        for p in paths:
            try:
                rels.append(p.resolve().relative_to(self.root).as_posix())
            except ValueError:
                continue  # not in this workspace
        if rels:
            self._queue.put(("files", rels))

    def search(self, query: str, k: int = 10, path_glob: str | None = None,
               language: str | None = None) -> list[SearchResult]:
        """Blocking: call from a worker thread (asyncio.to_thread)."""
        if not self.ready.is_set() or self.reader is None:
            raise IndexNotReady(self.error or "the workspace index is still being built")
        embedder = vectors = None
        with self._read_lock:
            if self._vectors is not None and self.reader.store.has_embeddings():
                embedder, vectors = _Locked(self._embedder, self._embed_lock), self._vectors
            return self.reader.hybrid_search(query, k, embedder, vectors, path_glob=path_glob,
                                             language=language)

    def context(self, budget: int, count_tokens: Callable[[str], int], *,
                path: str | None = None, line: int | None = None,
                query: str = "") -> list[ContextPiece]:
        """Token-budgeted context for a prompt (blocking); [] while the index is not ready,
        so a task never waits for indexing."""
        if not self.ready.is_set() or self.reader is None or budget <= 0:
            return []
        with self._read_lock:
            embedder = vectors = None
            if query and self._vectors is not None and self.reader.store.has_embeddings():
                embedder, vectors = _Locked(self._embedder, self._embed_lock), self._vectors
            pieces = self.reader.context(budget, count_tokens, path=path, line=line,
                                         query=query, embedder=embedder, vectors=vectors)
        if pieces:  # what a prompt was given, and from where
            log.info("context for %s:%s: %s", path, (line or 0) + 1,
                     ", ".join(f"{p.header()} [{p.reason}]" for p in pieces))
        return pieces

    def context_text(self, path: str, line: int, budget: int) -> str:
        """Retrieved context as prompt text (a task's ContextFn)."""
        return prompt_context(self, path, line, budget)

    def relative(self, path: Path) -> str | None:
        try:
            return path.resolve().relative_to(self.root).as_posix()
        except ValueError:
            return None

    def symbols(self, query: str, limit: int = 200) -> list[tuple]:
        if not self.ready.is_set() or self.reader is None:
            return []
        with self._read_lock:
            return self.reader.store.definitions(query, limit)

    def status(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        if self.reader is not None:
            with self._read_lock:
                counts = self.reader.store.counts()
        return {"state": self.state, "error": self.error, **counts}

    # ---------------------------------------------------------------- thread

    def _run(self) -> None:
        try:
            self.writer = WorkspaceIndex(self.root, self.cache,
                                         max_file_kb=self.settings.max_file_kb,
                                         exclude=self.settings.exclude)
        except Exception as exc:
            self._fail(f"cannot open the index: {exc}")
            return
        if self.writer.readonly:
            self.state = "readonly"
            self.reader = self.writer
            self.ready.set()
            log.warning("another Hearth process indexes %s: searching its index read-only",
                        self.root)
        else:
            self._phase1(rebuild=False)
        while True:
            kind, arg = self._queue.get()
            if kind == "stop":
                return
            if self.writer.readonly:
                continue
            try:
                if kind == "reindex":
                    self._phase1(rebuild=bool(arg))
                elif kind == "embed":
                    self._phase2()
                elif kind == "files":
                    stats = self.writer.update_paths(arg)
                    log.info("index: %d files updated, %d removed", stats.changed, stats.removed)
                    self._phase2()
            except Exception as exc:  # keep the thread alive: report and go on
                log.exception("index update failed")
                self.error = str(exc)

    def _phase1(self, rebuild: bool) -> None:
        assert self.writer is not None
        self.state = "indexing"
        self.report("Indexing workspace", "discovering files", 0)

        def progress(done: int, total: int, current: str) -> None:
            self.report("Indexing workspace", f"{done}/{total} files",
                        int(100 * done / max(total, 1)))

        try:
            stats = self.writer.update(progress, rebuild=rebuild)
        except Exception as exc:
            self._fail(f"indexing failed: {exc}")
            return
        if self.reader is None:
            self.reader = WorkspaceIndex(self.root, self.cache, readonly=True)
        counts = self.writer.store.counts()
        log.info("index: %d files, %d chunks in %.2f s (skipped: %s)", stats.files,
                 counts["chunks"], stats.seconds,
                 ", ".join(f"{n} {r}" for r, n in stats.skipped.most_common()) or "none")
        self.report("", f"{counts['files']} files, {counts['chunks']} chunks", None)
        self.ready.set()
        self._phase2()

    def _phase2(self) -> None:
        if not self.embed or self.writer is None:
            self.state = "ready"
            return
        if self._vectors is None:
            try:
                from ..indexer.embeddings import Embedder

                model = Path(self.settings.embedding_model) if self.settings.embedding_model \
                    else None
                if self._embedder is None:  # a retry keeps the loaded model
                    self._embedder = Embedder(model)
                self._vectors = self.writer.open_vectors(self._embedder, self.settings.chroma_url)
            except VectorStoreUnavailable as exc:
                self._retry_later(str(exc))
                return
            except Exception as exc:  # lexical search keeps working
                self.state = "ready"
                self.error = f"embeddings unavailable, lexical search only: {exc}"
                log.warning("%s", self.error)
                return
        self.state = "embedding"
        pending = self.writer.store.db.execute(
            "SELECT count(*) FROM chunks WHERE embedded = 0").fetchone()[0]
        if pending:
            self.report("Embedding chunks", f"0/{pending}", 0)

        def progress(done: int, total: int, current: str) -> None:
            self.report("Embedding chunks", f"{done}/{total} chunks", int(100 * done / total))
            while self.busy():  # the user's generation comes first
                time.sleep(0.05)

        first = [rel for rel in map(self.relative, self.open_paths()) if rel is not None]
        try:
            stats = self.writer.embed_pending(_Locked(self._embedder, self._embed_lock),
                                              self._vectors, progress, first=first, batch=64)
        except VectorStoreUnavailable as exc:
            self._retry_later(str(exc))
            return
        self._retry_in = 0.0
        self.error = None
        if pending:
            self.report("", f"{stats.embedded} embedded, {stats.reused} reused", None)
        self.state = "ready"

    def _retry_later(self, message: str) -> None:
        """The vector store is down: chunks stay pending, search answers lexically,
        and phase 2 is tried again with a doubling delay (5 s up to 5 min)."""
        self._retry_in = min(300.0, self._retry_in * 2) if self._retry_in else 5.0
        self.state, self.error = "ready", f"{message}; retrying in {self._retry_in:.0f} s"
        log.warning("%s", self.error)
        self.report("", self.error, None)
        timer = threading.Timer(self._retry_in, self._queue.put, (("embed", None),))
        timer.daemon = True
        timer.start()

    def _fail(self, message: str) -> None:
        self.state, self.error = "error", message
        log.error("%s", message)
        self.report("", message, None)


class IndexNotReady(RuntimeError):
    pass


class _Locked:
    """An embedder whose calls hold a lock (HF fast tokenizers are not thread-safe)."""

    def __init__(self, embedder: Any, lock: threading.Lock):
        self._e, self._lock = embedder, lock
        self.name, self.max_tokens = embedder.name, embedder.max_tokens

    def __getattr__(self, attr: str) -> Any:
        fn = getattr(self._e, attr)
        if not callable(fn):
            return fn

        def locked(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return fn(*args, **kwargs)

        return locked
