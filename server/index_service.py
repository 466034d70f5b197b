"""The workspace index inside the server: background phases, freshness, search.

One background thread writes the index (phase 1, then embeddings, then file
updates as they come); searches run on their own read-only connection, so a
long indexing pass never blocks a query. Embedding batches wait while the
model is generating for the user. Nothing here knows about LSP.
"""

from __future__ import annotations

import errno
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..indexer.context import ContextPiece, prompt_context
from ..indexer.embeddings import Embedder, TextEmbedder  # torch: when an Embedder is made
from ..indexer.secrets import ENV_DEPTH, is_env_file
from ..indexer.store import CorruptIndex, IndexUnavailable
from ..indexer.vectors import VectorStoreUnavailable
from ..indexer.workspace import SearchResult, WorkspaceIndex
from .settings import IndexSettings

log = logging.getLogger(__name__)

Report = Callable[[str, str, int | None], None]  # (phase, message, percentage); phase "" = end
MAX_REPAIRS = 2  # rebuilds of a store found damaged while in use, per process


class IndexService:
    def __init__(self, root: Path, cache: Path, settings: IndexSettings, *,
                 report: Report | None = None, busy: Callable[[], bool] = lambda: False,
                 embed: bool = True, open_paths: Callable[[], list[Path]] = list,
                 load_embedder: Callable[[Path | None, str], TextEmbedder] | None = None):
        """``load_embedder(folder, backend)``: the embedding model (folder None: the
        bundled one; backend: index.embeddingBackend); by default loaded in this process
        (the shared daemon's with model.shared)."""
        self.root, self.cache, self.settings = root, cache, settings
        # Changed paths arrive resolved (watchdog's) or as the editor names them; a root
        # reached through a link (macOS /tmp, a ~/code link) is compared resolved too.
        self._real_root = root.resolve()
        self._load_embedder = load_embedder or Embedder.loader(cache)
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
        self._stopping = threading.Event()
        self._repairing = False  # a damaged store is being replaced
        self._repairs = 0
        self.notices: list[str] = []  # what the user was told (rebuilt, checked, disk full)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop indexing (within a file) and close the index. A thread that does not
        finish in time keeps its connection; the next start checks the store."""
        self._stopping.set()
        self._queue.put(("stop", None))
        if self._thread.is_alive():
            self._thread.join(10)
        if self._thread.is_alive():
            log.warning("the index thread of %s did not stop in time; the next start checks "
                        "the index", self.root)
            return
        with self._read_lock:
            # The reader first: the last connection to close checkpoints the WAL into
            # the file, and a read-only one cannot (a read-only folder could not use it).
            for idx in (self.reader, self.writer):
                if idx is not None:
                    idx.close()

    # ------------------------------------------------------------- requests

    def reindex(self, rebuild: bool = False) -> None:
        self._queue.put(("reindex", rebuild))

    def files_changed(self, paths: list[Path]) -> None:
        rels = []
        for p in paths:
            try:
                rels.append(p.resolve().relative_to(self._real_root).as_posix())
            except (ValueError, OSError, RuntimeError):  # RuntimeError: a loop of links
                continue  # not in this workspace
        if any(rel.count("/") <= ENV_DEPTH and is_env_file(rel.rsplit("/", 1)[-1])
               for rel in rels):  # (as far down as env_values reads them)
            # New secret values: every chunk is checked for them (the whole index is read
            # again once, update() knows from the values' digest).
            self._queue.put(("reindex", False))
        elif rels:
            self._queue.put(("files", rels))

    def search(self, query: str, k: int = 10, path_glob: str | None = None,
               language: str | None = None, dense: bool = True) -> list[SearchResult]:
        """Blocking: call from a worker thread (asyncio.to_thread). ``dense=False``: the
        lexical index alone (no query embedding: names looked up as they are typed)."""
        if not self.ready.is_set() or self.reader is None:
            raise IndexNotReady(self.error or "the workspace index is still being built")
        embedder = vectors = None
        with self._read_lock, self._damage_is_repaired():
            if self.reader is None:  # replaced meanwhile
                raise IndexNotReady(self.error or "the workspace index is being rebuilt")
            if dense and self._vectors is not None and self.reader.store.has_embeddings():
                embedder, vectors = self._guarded(), self._vectors
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
            if self.reader is None:
                return []
            embedder = vectors = None
            if query and self._vectors is not None and self.reader.store.has_embeddings():
                embedder, vectors = self._guarded(), self._vectors
            try:
                with self._damage_is_repaired():
                    pieces = self.reader.context(budget, count_tokens, path=path, line=line,
                                                 query=query, embedder=embedder,
                                                 vectors=vectors)
            except IndexNotReady:
                return []  # a prompt goes without context rather than fail
        if pieces:  # what a prompt was given, and from where
            log.info("context for %s:%s: %s", path, (line or 0) + 1,
                     ", ".join(f"{p.header()} [{p.reason}]" for p in pieces))
        return pieces

    def context_text(self, path: str, line: int, budget: int) -> str:
        """Retrieved context as prompt text (a task's ContextFn)."""
        return prompt_context(self, path, line, budget)

    def relative(self, path: Path) -> str | None:
        try:
            return path.resolve().relative_to(self._real_root).as_posix()
        except (ValueError, OSError, RuntimeError):
            return None

    def symbols(self, query: str, limit: int = 200) -> list[tuple]:
        if not self.ready.is_set() or self.reader is None:
            return []
        with self._read_lock:
            if self.reader is None:
                return []
            try:
                with self._damage_is_repaired():
                    return self.reader.store.definitions(query, limit)
            except IndexNotReady:
                return []

    def _guarded(self) -> Any:
        """The embedder, its calls one at a time where it needs it (a model in this
        process); the daemon's serializes encodes itself, and a lock held here while an
        index batch waits there for a user's generation would hold up this window's
        searches."""
        if getattr(self._embedder, "thread_safe", False):
            return self._embedder
        return _Locked(self._embedder, self._embed_lock)

    def status(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        with self._read_lock:
            if self.reader is not None:
                try:
                    with self._damage_is_repaired():
                        counts = self.reader.store.counts()
                except (IndexNotReady, sqlite3.Error) as exc:
                    log.debug("index counts unavailable: %s", exc)
        out = {"state": self.state, "error": self.error, **counts,
               "notices": list(self.notices[-5:])}
        if self._embedder is not None:  # e.g. "at the shared daemon (pid 4242)"
            out["embedder"] = f"{self._embedder.name} {getattr(self._embedder, 'where', '')}"
        return out

    # ---------------------------------------------------------------- faults

    @contextmanager
    def _damage_is_repaired(self) -> Iterator[None]:
        """A damaged page met while reading: the store is replaced and rebuilt in the
        background, and the caller gets a clear IndexNotReady meanwhile."""
        try:
            yield
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError):
                raise
            self._repair(str(exc))
            raise IndexNotReady(self.error or str(exc)) from exc

    def _repair(self, reason: str) -> None:
        if self._repairing:
            return
        if self._repairs >= MAX_REPAIRS:  # a disk that damages whatever is written
            self.ready.clear()
            self._fail(f"the workspace index was damaged again after {self._repairs} rebuilds "
                       f"({reason}); search is off until the next start")
            return
        self._repairs += 1
        self._repairing = True
        self.ready.clear()
        self.error = f"the workspace index is damaged ({reason}); rebuilding it"
        self.state = "indexing"
        self._tell(self.error)
        self._queue.put(("repair", reason))

    def _tell(self, message: str, level: int = logging.WARNING) -> None:
        """A notice for the user: the log (window/logMessage) and the index status."""
        self.notices.append(message)
        log.log(level, "%s", message)

    def _write_failure(self, exc: BaseException) -> str | None:
        """What a failed write means for the user when the disk is at fault (full,
        read-only, gone); None for anything else."""
        full = (isinstance(exc, sqlite3.OperationalError) and "full" in str(exc)) or (
            isinstance(exc, OSError) and exc.errno == errno.ENOSPC)
        if full:
            return f"the disk holding the index ({self.writer.dir if self.writer else self.cache}" \
                   f") is full"
        if isinstance(exc, sqlite3.OperationalError) and "readonly" in str(exc).replace(
                "read-only", "readonly").replace(" ", ""):
            return f"the index ({self.writer.dir if self.writer else self.cache}) cannot be " \
                   "written (read-only)"
        if isinstance(exc, OSError) and exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            return f"the index cannot be written ({exc.strerror}: {exc.filename})"
        return None

    # ---------------------------------------------------------------- thread

    def _run(self) -> None:
        try:
            self.writer = WorkspaceIndex(self.root, self.cache,
                                         max_file_kb=self.settings.max_file_kb,
                                         exclude=self.settings.exclude,
                                         max_files=self.settings.max_files,
                                         max_chunks=self.settings.max_chunks)
        except (IndexUnavailable, CorruptIndex) as exc:
            # A read-only cache folder without an index, a damaged store another
            # process writes, a full disk: the other features go on without an index.
            self._fail(f"no workspace index: {exc}; search, workspace symbols and retrieved "
                       "context are off (set HEARTH_CACHE_DIR to a writable folder, or free "
                       "space, then restart)")
            return
        except Exception as exc:
            self._fail(f"cannot open the index: {exc}")
            return
        for notice in self.writer.notices:  # already logged by the index
            self.notices.append(notice)
        if self.writer.readonly:
            reason = self.writer.readonly_reason or f"another Hearth process indexes {self.root}"
            self._tell(f"{reason}: searching the index read-only, not updating it")
            self.state = "readonly"
            self.reader = self.writer
            self.ready.set()
        else:
            self._phase1(rebuild=False)
        while True:
            kind, arg = self._queue.get()
            if kind == "stop":
                return
            if self.writer.readonly or self._stopping.is_set():
                continue
            try:
                if kind == "reindex":
                    self._phase1(rebuild=bool(arg))
                elif kind == "embed":
                    self._phase2()
                elif kind == "repair":
                    self._replace_store(str(arg))
                elif kind == "files":
                    stats = self.writer.update_paths(arg, keep=self._open_rels())
                    log.info("index: %d files updated, %d removed", stats.changed, stats.removed)
                    if stats.left_out:
                        log.info("index: %d new files not indexed: the index is at its cap "
                                 "(index.maxFiles / index.maxChunks); open them to have "
                                 "them indexed", sum(stats.left_out.values()))
                    self._phase2()
            except sqlite3.DatabaseError as exc:
                if isinstance(exc, sqlite3.OperationalError):
                    disk = self._write_failure(exc)
                    self.error = (f"{disk}: {len(arg) if kind == 'files' else 'the'} changed "
                                  "files are indexed on the next start or Reindex" if disk
                                  else f"index update failed: {exc}")
                    log.warning("%s", self.error)
                else:
                    self._repair(str(exc))
            except Exception as exc:  # keep the thread alive: report and go on
                disk = self._write_failure(exc)
                if disk:
                    self.error = f"index update failed: {disk}"
                    log.warning("%s", self.error)
                else:
                    log.exception("index update failed")
                    self.error = str(exc)

    def _replace_store(self, reason: str) -> None:
        """A damaged store met in use: close every connection, start an empty store and
        index the workspace again (phase 1 reopens the reader)."""
        assert self.writer is not None
        with self._read_lock:
            if self.reader is not None and self.reader is not self.writer:
                self.reader.close()
            self.reader = None
            if self._vectors is not None:
                self._vectors = None  # the writer closes it with the old store
        try:
            self.writer.replace_damaged_store(reason)
        finally:
            self._repairing = False
        self._phase1(rebuild=True, why=f"rebuilding: {reason}")

    def _phase1(self, rebuild: bool, why: str = "") -> None:
        assert self.writer is not None
        self.state = "indexing"
        # What the user should know first (a damaged store rebuilt) opens the progress.
        first = why or ("; ".join(self.writer.notices) if not self.ready.is_set() else "")
        self.report("Indexing workspace", first or "discovering files", 0)

        def progress(done: int, total: int, current: str) -> None:
            self.report("Indexing workspace", f"{done}/{total} files",
                        int(100 * done / max(total, 1)))

        try:
            stats = self.writer.update(progress, rebuild=rebuild,
                                       should_stop=self._stopping.is_set,
                                       keep=self._open_rels())
        except sqlite3.DatabaseError as exc:
            if not isinstance(exc, sqlite3.OperationalError):  # a damaged page met on the way
                self._repair(str(exc))
                return
            disk = self._write_failure(exc)
            if disk is None:
                self._fail(f"indexing failed: {exc}")
                return
            self._partial(disk)
            return
        except Exception as exc:
            disk = self._write_failure(exc)
            if disk is None:
                self._fail(f"indexing failed: {exc}")
            else:
                self._partial(disk)
            return
        if stats.stopped:
            return
        if not self._open_reader():
            return
        counts = self.writer.store.counts()
        log.info("index: %d files, %d chunks in %.2f s (skipped: %s)", stats.files,
                 counts["chunks"], stats.seconds,
                 ", ".join(f"{n} {r}" for r, n in stats.skipped.most_common()) or "none")
        left_out = sum(stats.left_out.values())
        if left_out:  # the index's notice (logged there) says which cap and what to do
            self._collect_notices()
        self.report("", f"{counts['files']} files, {counts['chunks']} chunks"
                    + (f"; {left_out} files left out (index.maxFiles / index.maxChunks)"
                       if left_out else ""), None)
        self.error = None  # a damaged store, a full disk: behind us now
        self.ready.set()
        self._phase2()

    def _open_rels(self) -> list[str]:
        """The editor's open files, relative to the root: indexed whatever the caps say."""
        try:
            paths = self.open_paths()
        except Exception as exc:  # the editor's state is not worth failing an update for
            log.debug("open files unavailable: %s", exc)
            return []
        return [rel for rel in map(self.relative, paths) if rel is not None]

    def _collect_notices(self) -> None:
        """The index's own notices (a vector store rebuilt), for status()."""
        if self.writer is not None:
            self.notices.extend(n for n in self.writer.notices if n not in self.notices)

    def _open_reader(self) -> bool:
        """The connection searches use (phase 1 just checked the file)."""
        if self.reader is not None:
            return True
        try:
            self.reader = WorkspaceIndex(self.root, self.cache, readonly=True, check=False)
            return True
        except Exception as exc:
            self._fail(f"cannot open the index for searching: {exc}")
            return False

    def _partial(self, disk: str) -> None:
        """Phase 1 could not write everything (a full or read-only disk): what was
        committed is searched, and the user is told how to finish."""
        assert self.writer is not None
        try:
            done = self.writer.store.counts()["files"]
        except sqlite3.Error:
            done = 0
        self.error = (f"indexing stopped: {disk}; search answers from the {done} files "
                      "indexed so far (free some space, then run Reindex or restart)")
        self._tell(self.error)  # told before the state says so
        self.report("", self.error, None)
        self.state = "error"
        if self._open_reader():
            self.ready.set()

    def _phase2(self) -> None:
        if not self.embed or self.writer is None:
            self.state = "ready"
            return
        if self._vectors is None:
            try:
                model = Path(self.settings.embedding_model) if self.settings.embedding_model \
                    else None
                if self._embedder is None:  # a retry keeps the loaded model
                    self._embedder = self._load_embedder(model,
                                                         self.settings.embedding_backend)
                self._vectors = self.writer.open_vectors(self._embedder, self.settings.chroma_url)
            except VectorStoreUnavailable as exc:
                self._collect_notices()
                self._retry_later(str(exc))
                return
            except Exception as exc:  # lexical search keeps working
                self._collect_notices()
                self.state = "ready"
                self.error = f"embeddings unavailable, lexical search only: {exc}"
                log.warning("%s", self.error)
                return
            self._collect_notices()
        self.state = "embedding"
        pending = self.writer.store.db.execute(
            "SELECT count(*) FROM chunks WHERE embedded = 0").fetchone()[0]
        if pending:
            self.report("Embedding chunks", f"0/{pending}", 0)

        def progress(done: int, total: int, current: str) -> None:
            self.report("Embedding chunks", f"{done}/{total} chunks", int(100 * done / total))
            while self.busy():  # the user's generation comes first
                time.sleep(0.05)

        first = self._open_rels()
        try:
            stats = self.writer.embed_pending(self._guarded(),
                                              self._vectors, progress, first=first, batch=64)
        except VectorStoreUnavailable as exc:
            if not self.settings.chroma_url:
                # An embedded store that fails (its folder deleted or damaged under us)
                # is opened afresh next time, checked and reconciled first.
                with self._read_lock:
                    self._vectors = None
                self.writer.close_vectors()
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
