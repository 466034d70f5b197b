"""One workspace's index: where it lives, who may write it, how it is kept up to date.

Phase 1 (seconds): discover, parse, chunk, fill the lexical index and the
symbol table. Search answers from then on. Phase 2 (embeddings) builds on
the same store and only touches chunks not yet embedded.

Only one process writes a workspace's index: it holds an exclusive lock on
`write.lock`; a second process opens the store read-only and says so.
"""

from __future__ import annotations

import contextlib
import fcntl
import fnmatch
import functools
import hashlib
import itertools
import logging
import multiprocessing
import os
import re
import shutil
import sqlite3
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Generator, Iterable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .chunker import FileChunks, chunk_file, windows
from .context import ContextPiece, assemble, chunk_at
from .discovery import Discovery, discover, ignored, read_regular_file, skip_reason
from .embeddings import embedding_text
from .languages import language_of
from .secrets import (
    ENV_DEPTH,
    Redactor,
    blank_key_blocks,
    env_files,
    env_stamp,
    env_values,
    is_env_file,
)
from .store import (
    ChunkRow,
    CorruptIndex,
    FileRecord,
    IndexUnavailable,
    Store,
    StoredChunk,
    SymbolRow,
    chunk_row,
    chunk_terms,
    pack_vector,
    symbol_rows,
    unpack_text,
    unpack_vector,
)
from .vectors import (
    VectorStoreUnavailable,
    fingerprint_matches,
    folder_problem,
    save_fingerprint,
)

if TYPE_CHECKING:
    from .embeddings import TextEmbedder
    from .vectors import VectorStore

log = logging.getLogger(__name__)

Progress = Callable[[int, int, str], None]  # (done, total, message)


class ReadOnlyIndex(RuntimeError):
    pass


def private_folder(path: Path) -> None:
    """``path`` created if need be, readable by its owner only (a folder of the user's
    code and its vectors: the cache folder itself may be 0755 under a umask of 022)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(OSError):  # (a folder of someone else's: theirs to say)
        if path.stat().st_uid == os.getuid() and path.stat().st_mode & 0o077:
            path.chmod(0o700)


def index_dir(cache: Path, root: Path) -> Path:
    """Per-workspace folder under the cache dir (never inside the repository)."""
    root = root.resolve()
    digest = hashlib.sha1(str(root).encode()).hexdigest()[:12]
    return cache / "index" / f"{root.name or 'root'}-{digest}"


@dataclass
class IndexStats:
    files: int = 0
    changed: int = 0
    removed: int = 0
    chunks_added: int = 0
    chunks_removed: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    stopped: bool = False  # should_stop() said so before every file was done
    # Files left out by a cap, by the setting that did it ("maxFiles", "maxChunks").
    left_out: Counter[str] = field(default_factory=Counter)


@dataclass
class EmbedStats:
    embedded: int = 0  # texts run through the model
    reused: int = 0  # chunks whose vector came from the cache
    tokens: int = 0
    seconds: float = 0.0


@dataclass
class SearchResult:
    path: str
    start_line: int  # 1-based, inclusive
    end_line: int
    symbol: str
    kind: str
    language: str
    score: float

    def as_dict(self) -> dict:
        return {"path": self.path, "start_line": self.start_line, "end_line": self.end_line,
                "symbol": self.symbol, "kind": self.kind, "language": self.language,
                "score": round(self.score, 6)}


def file_hash(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


@dataclass
class ParsedFile:
    """One file read, hashed and chunked, ready to be written (sent back from the pool:
    rows, not objects, since unpickling objects cost the writing process a second)."""

    rel: str
    record: FileRecord | None = None
    chunks: list[ChunkRow] | None = None  # None: content unchanged (only touched)
    symbols: list[SymbolRow] = field(default_factory=list)
    parse_errors: bool = False
    terms: list[tuple[str, str]] | None = None  # lexical terms per chunk
    error: str | None = None


def parse_file(root: str, rel: str, known_hash: str | None,
               env: frozenset[str], max_bytes: int) -> ParsedFile:
    """Read, hash and chunk one file; never raises for bad content. ``env``: the values
    of the workspace's `.env*` files (env_values), redacted wherever they appear;
    ``max_bytes``: index.maxFileKb, checked again at the read."""
    try:
        st, data = read_regular_file(os.path.join(root, rel), max_bytes)
    except OSError as exc:
        return ParsedFile(rel, error=exc.strerror or str(exc))
    digest = file_hash(data)
    record = FileRecord(rel, language_of(rel, content=data), st.st_size, st.st_mtime_ns, digest)
    if digest == known_hash:
        return ParsedFile(rel, record)
    text = data.decode("utf-8", "replace")
    keyless = blank_key_blocks(text)
    try:
        result = chunk_file(rel, record.language,
                            data if keyless is text else keyless.encode("utf-8"))
    except RecursionError:  # nested deeper than the chunker's walk goes (a 4 KB file can)
        result = FileChunks(windows(rel, record.language or "text", keyless), [])
    redact = _redactor(env).for_text(keyless)
    for c in result.chunks:  # secrets never reach the store, the embeddings or a prompt
        text = redact(c.text)
        if text != c.text:
            c.text, c.signature, c.doc = text, redact(c.signature), redact(c.doc)
            c.__post_init__()  # the hash of what is stored
    return ParsedFile(rel, record, [chunk_row(c) for c in result.chunks],
                      symbol_rows(result.symbols), result.parse_errors,
                      [chunk_terms(c.symbol, c.path, c.text) for c in result.chunks])


@functools.lru_cache(maxsize=16)
def _redactor(env: frozenset[str]) -> Redactor:
    """One per set of `.env*` values (a workspace's, as they are now)."""
    return Redactor(set(env))


def collection_name(raw: str) -> str:
    """``raw`` as chromadb takes a collection's name: 3-512 characters of
    [a-zA-Z0-9._-], no "..", starting and ending with a letter or digit. A folder
    named "My Project" or "código" made one it refused, and dense search never
    worked there. Names that were valid stay as they were (no store to rebuild)."""
    name = re.sub(r"\.{2,}", ".", re.sub(r"[^A-Za-z0-9._-]+", "-", raw))[:120]
    return re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", name)


# SQLite settings while phase 1 writes (see update()).
BULK_CHECKPOINT_PAGES = 8192
BULK_CACHE_KB = 32768
# Files written per transaction while phase 1 writes.
COMMIT_EVERY_FILES = 200
# Below this many files to parse, a pool costs more (process start, imports) than it saves.
POOL_MIN_FILES = 64


def _pool_worker_init(parent: int) -> None:
    """In each parsing process. It lets go of stdin and stdout (a server's LSP pipes:
    a worker holding them keeps a dead server's pipes open for the editor, and a
    stray print would corrupt the protocol), and exits when its parent is gone: a
    killed server's workers would otherwise wait on their task queue forever
    (each holds the queue's write end too, so it never reads end-of-file)."""
    try:
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1):
            os.dup2(devnull, fd)
        os.close(devnull)
    except OSError:
        pass

    def orphaned() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=orphaned, name="hearth-orphan-watch", daemon=True).start()


# Batches of files submitted to the pool per worker before the writer takes results.
BATCHES_AHEAD = 3


def _parse_batch(root: str, items: list[tuple[str, str | None]],
                 env: frozenset[str], max_bytes: int) -> list[ParsedFile]:
    return [parse_file(root, rel, known_hash, env, max_bytes) for rel, known_hash in items]


def _start_pool(workers: int) -> ProcessPoolExecutor:
    """A parsing pool whose workers start now (Python and the indexer's imports, ~0.2 s
    each): on a first build they start while the files are being discovered."""
    # spawn, not fork: the server process has threads (the model, pygls), and
    # forking a process with threads can deadlock the child.
    ctx = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx,
                               initializer=_pool_worker_init, initargs=(os.getpid(),))
    for _ in range(workers):  # a spawn pool starts a worker per task submitted
        pool.submit(os.getpid)
    return pool


def _parse_all(root: Path, todo: list[tuple[str, str | None]], workers: int,
               started: ProcessPoolExecutor | None, env: frozenset[str], max_bytes: int
               ) -> Generator[ParsedFile, None, None]:
    """Parsed files in ``todo`` order, from a process pool when that pays (``started``:
    one already started, used, or shut down once this is iterated; the caller shuts
    it down if it never is)."""
    if workers <= 1 or len(todo) < POOL_MIN_FILES:
        if started is not None:
            started.shutdown(wait=False, cancel_futures=True)
        for rel, known_hash in todo:
            yield parse_file(str(root), rel, known_hash, env, max_bytes)
        return
    done = 0
    size = max(1, min(32, len(todo) // (workers * 8)))
    batches = iter([todo[i: i + size] for i in range(0, len(todo), size)])
    try:
        with started or _start_pool(workers) as pool:
            # A few batches ahead of the writer, not all of them: Executor.map submits
            # everything at once, and on a large tree the parsed files waiting for the
            # writer (it has one core's share against the workers' two) took ~300 MB.
            ahead: deque[Future[list[ParsedFile]]] = deque(
                pool.submit(_parse_batch, str(root), batch, env, max_bytes)
                for batch in itertools.islice(batches, workers * BATCHES_AHEAD))
            try:
                while ahead:
                    parsed_batch = ahead.popleft().result()
                    following = next(batches, None)
                    if following is not None:
                        ahead.append(pool.submit(_parse_batch, str(root), following, env,
                                                    max_bytes))
                    for parsed in parsed_batch:
                        yield parsed
                        done += 1
            except GeneratorExit:  # the caller stopped early: drop what is not started
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    except (BrokenProcessPool, OSError) as exc:
        # A pool that cannot start (no /dev/shm, an unguarded __main__, a killed
        # worker) only costs speed: the rest is parsed here.
        log.warning("parsing in one process (the worker pool failed: %s)", exc)
        for rel, known_hash in todo[done:]:
            yield parse_file(str(root), rel, known_hash, env, max_bytes)


# Present while a writer has the store open; found at the next open, it means the
# last writer never closed it (killed, crashed, power lost): check it in full.
OPEN_MARKER = "writer.open"
# The chroma folder's files as a clean close left them (see vectors.fingerprint).
VECTORS_CLOSED = "chroma.closed"


def left_out_notice(stats: IndexStats, max_files: int | None, max_chunks: int | None) -> str:
    """What a cap left out, for the user: how many files, which setting, what to do."""
    parts = []
    if stats.left_out["maxFiles"]:
        parts.append(f"{stats.left_out['maxFiles']} of {stats.files} files past index.maxFiles "
                     f"({max_files})")
    if stats.left_out["maxChunks"]:
        parts.append(f"{stats.left_out['maxChunks']} more files past index.maxChunks "
                     f"({max_chunks} chunks)")
    return (f"the workspace is larger than the index may hold: {' and '.join(parts)} were "
            "left out of search and retrieved context (the open files are always indexed; "
            "raise the setting or add index.exclude patterns to choose what is indexed)")


class WorkspaceIndex:
    def __init__(self, root: Path, cache: Path, *, max_file_kb: int = 512,
                 exclude: list[str] | None = None, readonly: bool = False,
                 check: bool = True, max_files: int | None = None,
                 max_chunks: int | None = None):
        """The index of ``root`` under ``cache``. ``readonly``: only search it. ``check``:
        check the store's pages first (False for a second connection in the same
        process, right after the writer checked them).

        ``notices`` says what was found and done on the way (a damaged store
        rebuilt, an unclean stop checked, files left out by a cap), for the user.
        ``max_files`` / ``max_chunks``: caps for huge repositories (see update()).
        """
        self.root = root.resolve()
        self.dir = index_dir(cache, self.root)
        self.max_file_kb = max_file_kb
        self.exclude = list(exclude or [])
        self.max_files, self.max_chunks = max_files, max_chunks
        self.notices: list[str] = []
        self._env_files: list[Path] | None = None  # the `.env*` files the last walk found
        self.readonly_reason: str | None = None  # why this one cannot write
        self._vectors: VectorStore | None = None
        self._lock_fh: Any = None
        self._snapshot: tempfile.TemporaryDirectory | None = None  # a read-only folder's copy
        unwritable = self._prepare_dir()
        if unwritable:
            self.readonly = True
            self.readonly_reason = unwritable
        else:
            self.readonly = readonly or not self._lock()
            if self.readonly and not readonly:
                self.readonly_reason = (f"another Hearth process is indexing {self.root}; this "
                                        "one only reads the index")
                log.warning("%s", self.readonly_reason)
        self.store = self._open_store(check, immutable=unwritable is not None)

    def _prepare_dir(self) -> str | None:
        """Create the index folder; None when it can be written, else why not."""
        try:
            private_folder(self.dir.parent)  # every workspace's code is in there
            self.dir.mkdir(mode=0o700, exist_ok=True)
            self._lock_fh = open(self.dir / "write.lock", "a+")  # noqa: SIM115 - held for life
            return None
        except OSError as exc:
            return f"the index folder {self.dir} cannot be written ({exc.strerror or exc})"

    def _lock(self) -> bool:
        try:
            fcntl.flock(self._lock_fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError:
            return False

    def _notice(self, message: str, level: int = logging.WARNING) -> None:
        self.notices.append(message)
        log.log(level, "%s", message)

    def _open_store(self, check: bool, immutable: bool = False) -> Store:
        path = self.dir / "index.sqlite"
        if immutable:  # a read-only folder: the index as it is, or none
            if not path.exists():
                raise IndexUnavailable(f"{self.readonly_reason}, and it holds no index yet")
            wal = Path(f"{path}-wal")
            if wal.exists() and wal.stat().st_size:
                # The last writer never folded its WAL into the file (it was killed), and
                # SQLite cannot use a WAL it may not write: read a copy of both.
                self._snapshot = tempfile.TemporaryDirectory(prefix="hearth-index-")
                copy = Path(self._snapshot.name) / "index.sqlite"
                shutil.copyfile(path, copy)
                shutil.copyfile(wal, f"{copy}-wal")
                return Store(copy, readonly=True, check="quick" if check else None)
            return Store(path, readonly=True, immutable=True, check="quick" if check else None)
        if self.readonly:
            return Store(path, readonly=path.exists(), check="quick" if check else None)
        marker = self.dir / OPEN_MARKER
        unclean = marker.exists()
        try:
            store = Store(path, check=("full" if unclean else "quick") if check else None)
            if unclean:
                self._notice(f"the index of {self.root} was not closed (Hearth was stopped "
                             "abruptly); checked it in full: intact", logging.INFO)
        except CorruptIndex as exc:
            why = "was not closed and " if unclean else ""
            self._notice(f"the index of {self.root} {why}cannot be used ({exc}); rebuilding it")
            store = self._new_store()
        try:
            marker.write_text(str(os.getpid()), encoding="utf-8")
        except OSError as exc:  # a full disk: the next start checks in full anyway
            log.debug("cannot write %s: %s", marker, exc)
        return store

    def _new_store(self) -> Store:
        """An empty store in place of the old one (and of its vectors: they are stored
        by chunk id, and a new store numbers chunks afresh)."""
        path = self.dir / "index.sqlite"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        shutil.rmtree(self.dir / "chroma", ignore_errors=True)
        (self.dir / VECTORS_CLOSED).unlink(missing_ok=True)
        return Store(path, check=None)

    def replace_damaged_store(self, reason: str) -> None:
        """The store turned out damaged while in use: start an empty one (update() fills
        it again). Other connections to the old file must be closed first."""
        self._require_writer()
        self._notice(f"the index of {self.root} is damaged ({reason}); rebuilding it")
        self.close_vectors()
        self.store.close()
        self.store = self._new_store()

    def close(self) -> None:
        """Close the store (and the vectors); a writer's clean close is recorded, so the
        next start only needs the quick check."""
        vectors, self._vectors = self._vectors, None
        if vectors is not None:
            vectors.close()
            if vectors.folder is not None and not self.readonly:
                save_fingerprint(vectors.folder, self.dir / VECTORS_CLOSED)
        self.store.close()
        if not self.readonly:
            (self.dir / OPEN_MARKER).unlink(missing_ok=True)
        if self._snapshot is not None:
            self._snapshot.cleanup()
        lock = self._lock_fh
        if lock is not None and not lock.closed:  # closing twice is harmless
            if not self.readonly:
                fcntl.flock(lock, fcntl.LOCK_UN)
            lock.close()

    def _require_writer(self) -> None:
        if self.readonly:
            raise ReadOnlyIndex(self.readonly_reason or
                                f"the index of {self.root} is being written by another Hearth "
                                "process; this one can search but not update it")

    # ------------------------------------------------------------- phase 1

    def update(self, progress: Progress | None = None, *, rebuild: bool = False,
               workers: int | None = None,
               should_stop: Callable[[], bool] = lambda: False,
               keep: Iterable[str] = ()) -> IndexStats:
        """Bring the index in line with the disk: only changed files are parsed again.

        Parsing and chunking run in a pool of processes when many files changed
        (tree-sitter parsing is most of phase 1 and holds the GIL for pure-Python
        chunking around it); this process only writes SQLite, in file order.
        ``should_stop`` is asked after each file: when it says so, what is done is
        committed (each file is whole) and the rest waits for the next update.

        ``keep``: files (relative, POSIX) indexed first and whatever the caps say
        (the editor's open files). Past ``max_files`` files or ``max_chunks`` chunks
        the other files are left out, in path order, and counted in ``stats.left_out``.
        """
        self._require_writer()
        started = time.perf_counter()
        pools: list[ProcessPoolExecutor] = []
        workers = workers or os.cpu_count() or 1
        first_build = rebuild or self.store.db.execute(
            "SELECT 1 FROM files LIMIT 1").fetchone() is None
        bulk = False

        def listed(candidates: int) -> None:
            # A first build of many files: the store's indexes are built at the end
            # (bulk_load), and the workers start while discovery checks the files (a
            # pool that cannot start now is tried again when parsing starts).
            nonlocal bulk
            if first_build and candidates >= POOL_MIN_FILES:
                bulk = True
                if workers > 1:
                    with contextlib.suppress(OSError):
                        pools.append(_start_pool(workers))

        try:
            found = discover(self.root, max_file_kb=self.max_file_kb, exclude=self.exclude,
                             on_candidates=listed)
            if not bulk:
                self.store.ensure_indexes()  # after a build whose index rebuild failed
            with self.store.bulk_load(BULK_CACHE_KB) if bulk else contextlib.nullcontext():
                stats = self._update(found, pools[0] if pools else None, progress, rebuild,
                                     workers, should_stop, keep, bulk)
        finally:
            for pool in pools:  # shut down by then, unless it was never used
                pool.shutdown(wait=False, cancel_futures=True)
        stats.seconds = time.perf_counter() - started
        return stats

    def _update(self, found: Discovery, pool: ProcessPoolExecutor | None,
                progress: Progress | None, rebuild: bool, workers: int,
                should_stop: Callable[[], bool], keep: Iterable[str],
                new: bool) -> IndexStats:
        """update() once the files are known; ``new``: the store holds none of them."""
        stats = IndexStats(files=len(found.files), skipped=found.skipped)
        known = {} if rebuild else self.store.files()
        env = self._env_values()
        stamp = env_stamp(env)
        row = self.store.db.execute("SELECT value FROM meta WHERE key = 'env'").fetchone()
        # New `.env*` values: every stored chunk may hold one unredacted; all read again.
        every = bool(known) and (row is None or row[0] != stamp)
        if rebuild:
            with self.store.transaction():
                self.store.clear()
        order, pinned = self._in_order(found.files, keep)
        if self.max_files is not None and len(order) > self.max_files:
            room = max(0, self.max_files - len(pinned))
            others = [rel for rel in order if rel not in pinned]
            stats.left_out["maxFiles"] = len(others) - room
            order = [rel for rel in order if rel in pinned] + others[:room]
        wanted = set(order)
        with self.store.transaction():
            for gone in sorted(set(known) - wanted):
                self.store.remove_file(gone)
                known.pop(gone)
                stats.removed += 1
        total = len(order)
        todo: list[tuple[str, str | None]] = []
        for rel in order:  # size + mtime first: unchanged files cost one stat
            rec = known.get(rel)
            if rec is None:  # new: parse_file reads it, and says so when it cannot
                todo.append((rel, None))
                continue
            try:
                st = (self.root / rel).stat()
            except OSError:
                stats.skipped["unreadable"] += 1
                continue
            if every:
                todo.append((rel, None))
            elif rec.size != st.st_size or rec.mtime_ns != st.st_mtime_ns:
                todo.append((rel, rec.hash))
        # Chunks per file already stored, for the chunk cap.
        stored = dict(self.store.db.execute("SELECT path, count(*) FROM chunks GROUP BY path")
                      ) if self.max_chunks is not None else {}
        if progress and total:
            progress(total - len(todo), total, "")
        done, batch = total - len(todo), 0
        # A bulk write: fewer checkpoints (each one syncs) and a larger page cache than
        # SQLite's defaults (1000 pages, 2 MB); both back to normal afterwards.
        self.store.db.execute(f"PRAGMA wal_autocheckpoint={BULK_CHECKPOINT_PAGES}")
        self.store.db.execute(f"PRAGMA cache_size=-{BULK_CACHE_KB}")
        self.store.db.execute("BEGIN")
        if not known:  # nothing stored yet: what this build commits, batch by batch,
            # is read with these values (a build that fails half-way resumes by path)
            self.store.db.execute("INSERT OR REPLACE INTO meta VALUES ('env', ?)", (stamp,))
        parsing = _parse_all(self.root, todo, workers, pool, env, self.max_file_kb * 1024)
        to_parse = {rel for rel, _ in todo}
        used, full = 0, False
        try:
            for rel in order:
                if rel not in known and rel not in to_parse:
                    continue  # unreadable
                parsed = next(parsing) if rel in to_parse and not full else None
                if should_stop():
                    stats.stopped = True
                    break
                if self.max_chunks is not None and rel not in pinned:
                    if parsed is None or parsed.chunks is None:
                        size = stored.get(rel, 0)
                    else:
                        size = len(parsed.chunks)
                    if full or used + size > self.max_chunks:
                        if not full:  # the rest is not parsed at all
                            full = True
                            parsing.close()
                        stats.left_out["maxChunks"] += 1
                        if rel in known:
                            self.store.remove_file(rel)
                            stats.removed += 1
                        continue
                    used += size
                elif self.max_chunks is not None:  # pinned: in, and counted
                    used += stored.get(rel, 0) if parsed is None or parsed.chunks is None \
                        else len(parsed.chunks)
                if parsed is not None and self._store_parsed(parsed, stats, new):
                    batch += 1
                if batch >= COMMIT_EVERY_FILES:  # a crash loses at most one batch
                    self.store.db.commit()
                    self.store.db.execute("BEGIN")
                    batch = 0
                if parsed is not None:
                    done += 1
                    if progress and (done % 50 == 0 or done == total):
                        progress(done, total, parsed.rel)
            if not stats.stopped:  # every file now read with these values
                self.store.db.execute("INSERT OR REPLACE INTO meta VALUES ('env', ?)", (stamp,))
            self.store.db.commit()
        except BaseException:
            self.store.db.rollback()
            raise
        finally:
            parsing.close()
            with contextlib.suppress(sqlite3.Error):  # a failed store: its error is the news
                self.store.db.execute("PRAGMA wal_autocheckpoint=1000")
                self.store.db.execute("PRAGMA cache_size=-2000")
                self.store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the bulk's WAL
        if stats.left_out:
            self._notice(left_out_notice(stats, self.max_files, self.max_chunks))
        return stats

    @staticmethod
    def _in_order(files: Iterable[Path], keep: Iterable[str]) -> tuple[list[str], set[str]]:
        """Discovered files, those in ``keep`` first; and which of them were in ``keep``."""
        rels = [p.as_posix() for p in files]
        found = set(rels)
        pinned = [rel for rel in dict.fromkeys(keep) if rel in found]
        first = set(pinned)
        return pinned + [rel for rel in rels if rel not in first], first

    def _store_parsed(self, parsed: ParsedFile, stats: IndexStats, new: bool = False) -> bool:
        if parsed.error is not None:
            log.debug("cannot read %s: %s", parsed.rel, parsed.error)
            stats.skipped["unreadable"] += 1
            return False
        record = parsed.record
        assert record is not None
        if parsed.chunks is None:  # touched, not changed
            self.store.db.execute("UPDATE files SET size=?, mtime_ns=? WHERE path=?",
                                  (record.size, record.mtime_ns, record.path))
            return True
        added, removed = self.store.replace_rows(record, parsed.chunks, parsed.symbols,
                                                 parsed.parse_errors, parsed.terms, new)
        stats.changed += 1
        stats.chunks_added += added
        stats.chunks_removed += removed
        return True

    def _index_file(self, rel: str, known: FileRecord | None, stats: IndexStats,
                    env: frozenset[str]) -> bool:
        try:
            st = (self.root / rel).stat()
        except OSError as exc:
            return self._store_parsed(ParsedFile(rel, error=str(exc)), stats)
        if known and known.size == st.st_size and known.mtime_ns == st.st_mtime_ns:
            return False
        return self._store_parsed(parse_file(str(self.root), rel, known.hash if known else None,
                                             env, self.max_file_kb * 1024), stats)

    def _env_values(self, changed: Iterable[str] | None = None) -> frozenset[str]:
        """The `.env*` values as they are now. The walk for the files (up to ~20 ms on a
        large tree) is made for a whole update and when a changed path is one; a save
        reads the ones found then and the top folder's (a `.env` just made there)."""
        if self._env_files is None or changed is None or any(
                rel.count("/") <= ENV_DEPTH and is_env_file(rel.rsplit("/", 1)[-1])
                for rel in changed):
            self._env_files = env_files(self.root)
            files = self._env_files
        else:
            try:
                top = [p for p in self.root.iterdir() if is_env_file(p.name) and p.is_file()]
            except OSError:
                top = []
            files = list(dict.fromkeys([*self._env_files, *top]))
        return frozenset(env_values(self.root, files))

    def update_paths(self, paths: list[str], keep: Iterable[str] = ()) -> IndexStats:
        """Re-index some files (saved, changed on disk, created or deleted). A file not
        indexed yet is left out when a cap is reached, unless it is in ``keep``."""
        self._require_writer()
        stats = IndexStats()
        known = self.store.files()
        pinned = set(keep)
        held: list[int] | None = None  # [files, chunks] in the store, counted when needed
        gone = [rel for rel in paths if rel not in known and not (self.root / rel).exists()]
        for rel in gone:  # a folder gone (deleted, moved out): the files indexed below it
            paths = list(paths) + self.store.files_under(rel)
        left_out = ignored(self.root, paths)  # as discover() would leave them out
        env = self._env_values(paths)
        with self.store.transaction():
            for rel in paths:
                full = self.root / rel
                if rel in left_out or not full.is_file() or skip_reason(
                        self.root, rel, max_file_kb=self.max_file_kb, exclude=self.exclude):
                    if rel in known:
                        self.store.remove_file(rel)
                        stats.removed += 1
                    continue
                if rel not in known and rel not in pinned and (
                        self.max_files is not None or self.max_chunks is not None):
                    if held is None:
                        held = [len(known), self.store.db.execute(
                            "SELECT count(*) FROM chunks").fetchone()[0]]
                    cap = "maxFiles" if self.max_files is not None and \
                        held[0] >= self.max_files else "maxChunks" if \
                        self.max_chunks is not None and held[1] >= self.max_chunks else None
                    if cap:
                        stats.left_out[cap] += 1
                        continue
                before = stats.chunks_added
                self._index_file(rel, known.get(rel), stats, env)
                if held is not None and rel not in known:
                    held[0] += 1
                    held[1] += stats.chunks_added - before
        return stats

    # -------------------------------------------------------------- search

    def search(self, query: str, k: int = 10, *, path_glob: str | None = None,
               language: str | None = None) -> list[SearchResult]:
        """Lexical search only (no embedding model needed)."""
        return self.hybrid_search(query, k, None, None, path_glob=path_glob, language=language,
                                  mode="lexical")

    def _results(self, ranked: list[tuple[int, float]], k: int, path_glob: str | None,
                 language: str | None) -> list[SearchResult]:
        chunks = self.store.chunks(i for i, _ in ranked)
        out: list[SearchResult] = []
        taken: dict[str, list[tuple[int, int]]] = {}
        for cid, score in ranked:
            c = chunks.get(cid)
            if c is None or not _matches(c, path_glob, language):
                continue
            spans = taken.setdefault(c.path, [])
            if any(a <= c.end_line and c.start_line <= b for a, b in spans):
                continue  # overlaps a better-ranked chunk of the same file
            spans.append((c.start_line, c.end_line))
            out.append(SearchResult(c.path, c.start_line + 1, c.end_line + 1, c.symbol, c.kind,
                                    c.language, score))
            if len(out) >= k:
                break
        return out

    # ------------------------------------------------------------- phase 2

    def embed_pending(self, embedder: TextEmbedder, vectors: VectorStore,
                      progress: Progress | None = None, *, first: Sequence[str] = (),
                      batch: int = 256) -> EmbedStats:
        """Embed chunks not embedded yet: files in ``first`` (open in the editor),
        then the most recently changed, by length within windows of a few batches.
        Identical texts are embedded once, and vectors are cached by (model, chunk
        hash) across re-indexing."""
        self._require_writer()
        stats = EmbedStats()
        started = time.perf_counter()
        db = self.store.db
        deletes = [r[0] for r in db.execute("SELECT id FROM vector_deletes")]
        for i in range(0, len(deletes), 1000):
            part = deletes[i: i + 1000]
            vectors.delete(part)
            with self.store.transaction():
                db.executemany("DELETE FROM vector_deletes WHERE id = ?", [(x,) for x in part])
        first_set = list(first)
        marks = ",".join("?" * len(first_set)) or "''"
        pending = db.execute(
            "SELECT c.id, c.hash, c.path, c.symbol, c.kind, c.signature, c.doc, c.text "
            "FROM chunks c LEFT JOIN files f ON f.path = c.path WHERE c.embedded = 0 "
            f"ORDER BY c.path IN ({marks}) DESC, f.mtime_ns DESC, c.id", first_set).fetchall()
        pending = _by_length_in_windows(pending, batch * LENGTH_WINDOW_BATCHES, set(first_set))
        total = len(pending)
        model = embedder.name
        for start in range(0, total, batch):
            rows = pending[start: start + batch]
            hashes = list({r[1] for r in rows})
            cached = {h: unpack_vector(v) for h, v in db.execute(
                f"SELECT hash, vector FROM embeddings WHERE model = ? AND hash IN "
                f"({','.join('?' * len(hashes))})", [model, *hashes])}
            todo = {r[1]: r for r in rows if r[1] not in cached}
            if todo:
                fresh, counts = embedder.embed_counted(
                    [embedding_text(r[2], r[3], r[4], r[5], unpack_text(r[6]), unpack_text(r[7]))
                     for r in todo.values()])
                fresh = fresh.astype("float32")
                stats.embedded += len(todo)
                stats.tokens += sum(counts)
                for h, vec in zip(todo, fresh, strict=True):
                    cached[h] = vec
            stats.reused += len(rows) - len(todo)
            vectors.upsert([r[0] for r in rows], [cached[r[1]] for r in rows])
            with self.store.transaction():
                db.executemany("INSERT OR IGNORE INTO embeddings VALUES (?,?,?)",
                               [(model, h, pack_vector(cached[h])) for h in todo])
                db.executemany("UPDATE chunks SET embedded = 1 WHERE id = ?",
                               [(r[0],) for r in rows])
            if progress:
                progress(min(start + batch, total), total, rows[-1][2])
        stats.seconds = time.perf_counter() - started
        return stats

    def ranked(self, query: str, pool: int, embedder: TextEmbedder | None,
               vectors: VectorStore | None, mode: str = "hybrid",
               lexical_weight_: float | None = None) -> list[tuple[int, float]]:
        """(chunk id, score), best first: dense and lexical fused by weighted
        reciprocal rank (the lexical weight depends on whether the query names code)."""
        rankings: list[list[tuple[int, float]]] = []
        if mode in ("hybrid", "lexical"):
            rankings.append(self.store.lexical(query, pool))
        if mode in ("hybrid", "dense") and embedder is not None and vectors is not None:
            vector = embedder.encode([query])[0]
            try:
                rankings.append(vectors.query(vector, pool))
            except VectorStoreUnavailable as exc:
                if mode == "dense":
                    raise
                log.warning("%s; answering from the lexical index only", exc)
        if not rankings:
            return []
        if len(rankings) == 1:
            return rankings[0]
        weight = lexical_weight(query) if lexical_weight_ is None else lexical_weight_
        return reciprocal_rank_fusion(rankings, [weight, 1.0])

    def hybrid_search(self, query: str, k: int, embedder: TextEmbedder | None,
                      vectors: VectorStore | None, *, path_glob: str | None = None,
                      language: str | None = None, mode: str = "hybrid") -> list[SearchResult]:
        """Dense and lexical rankings fused by reciprocal rank; filters applied here."""
        ranked = self.ranked(query, max(50, k * 10), embedder, vectors, mode)
        return self._results(ranked, k, path_glob, language)

    def context(self, budget: int, count_tokens: Callable[[str], int], *,
                path: str | None = None, line: int | None = None, query: str = "",
                embedder: TextEmbedder | None = None,
                vectors: VectorStore | None = None) -> list[ContextPiece]:
        """Chunks for a prompt about ``path``:``line`` (0-based) and/or ``query``,
        within ``budget`` tokens: neighbours of the chunk there, fused with search."""
        anchor = chunk_at(self.store, path, line) if path is not None and line is not None \
            else None
        ranked = [cid for cid, _ in self.ranked(query, 50, embedder, vectors)] if query else []
        exclude = (path, line, line) if anchor is None and path and line is not None else None
        return assemble(self.store, budget, count_tokens, anchor=anchor, ranked=ranked,
                        exclude=exclude)

    def open_vectors(self, embedder: TextEmbedder, chroma_url: str | None = None) -> VectorStore:
        """The vector collection for this workspace and embedding model.

        An embedded store that was not closed cleanly (or changed since) is read
        by a child process first: a damaged one is deleted and rebuilt (a damaged
        HNSW file crashes chromadb's native code). Then the store is reconciled
        with the SQLite store: vectors it lacks (a deleted folder, writes lost)
        are marked pending and come back from the embedding cache without the
        model; vectors of chunks that are gone are queued for deletion.
        """
        from .vectors import VectorStore

        name = collection_name(f"hearth-{self.dir.name}-{embedder.name}")
        folder = None if chroma_url else self.dir / "chroma"
        if folder is not None and not self.readonly:
            closed = self.dir / VECTORS_CLOSED
            if not fingerprint_matches(folder, closed):
                problem = folder_problem(folder)
                if problem is not None:
                    self._notice(f"the vector store {folder} is damaged ({problem}); "
                                 "rebuilding it from the embedding cache")
                    shutil.rmtree(folder, ignore_errors=True)
            closed.unlink(missing_ok=True)  # changes from here on are not checked yet
        if self._vectors is not None:
            self._vectors.close()
        vectors = VectorStore(name, folder=folder, url=chroma_url)
        self._vectors = vectors
        if not self.readonly:
            self.reconcile_vectors(vectors)
        return vectors

    def reconcile_vectors(self, vectors: VectorStore) -> int:
        """Make the store's `embedded` flags true of ``vectors``; returns how many
        chunks lacked their vector (now pending again)."""
        have = vectors.ids()
        db = self.store.db
        embedded = {r[0] for r in db.execute("SELECT id FROM chunks WHERE embedded = 1")}
        missing = sorted(embedded - have)
        known = {r[0] for r in db.execute("SELECT id FROM chunks")}
        stray = sorted(have - known)
        with self.store.transaction():
            db.executemany("UPDATE chunks SET embedded = 0 WHERE id = ?",
                           [(i,) for i in missing])
            db.executemany("INSERT OR IGNORE INTO vector_deletes VALUES (?)",
                           [(i,) for i in stray])
        if missing:
            self._notice(f"{len(missing)} of {len(embedded)} vectors were missing from "
                         f"{vectors.where}; restoring them from the embedding cache")
        return len(missing)

    def close_vectors(self) -> None:
        """Let go of the vector store (it failed): the next open_vectors checks it."""
        vectors, self._vectors = self._vectors, None
        if vectors is not None:
            vectors.close()

    def chunk_text(self, result: SearchResult) -> str:
        row = self.store.db.execute(
            "SELECT text FROM chunks WHERE path = ? AND start_line = ?",
            (result.path, result.start_line - 1)).fetchone()
        return unpack_text(row[0]) if row else ""


# The encoder pads a batch to its longest text: batches of chunks in priority order mix
# short and long texts, and cost ~12% more than the same texts sorted by length (the
# way SentenceTransformer.encode orders one call). Sorting within windows of this many
# batches keeps the order by priority at that scale and each batch as short as it can be.
LENGTH_WINDOW_BATCHES = 8


def _by_length_in_windows(rows: list, window: int, first: set[str]) -> list:
    """``rows`` (embed_pending's: id, hash, then embedding_text()'s parts) sorted by length
    within consecutive windows, the editor's open files still ahead in each."""
    def length(row: tuple) -> int:  # of embedding_text()'s text, before it is cut
        return sum(len(part or "") for part in row[2:6]) + len(unpack_text(row[6])) + \
            len(unpack_text(row[7]))
    out: list = []
    for start in range(0, len(rows), max(1, window)):
        out.extend(sorted(rows[start: start + window],
                          key=lambda r: (r[2] not in first, length(r))))
    return out


RRF_K = 60


def reciprocal_rank_fusion(rankings: list[list[tuple[int, float]]],
                           weights: Sequence[float] | None = None) -> list[tuple[int, float]]:
    scores: dict[int, float] = {}
    for n, ranking in enumerate(rankings):
        weight = weights[n] if weights else 1.0
        for rank, (cid, _) in enumerate(ranking):
            scores[cid] = scores.get(cid, 0.0) + weight / (RRF_K + rank + 1)
    return sorted(scores.items(), key=lambda kv: kv[1], reverse=True)


# Weight of the lexical ranking for a plain-English query, tuned with
# bench/retrieval.py (docstring sentences as queries): equal weights made hybrid
# worse than dense alone; identifiers in a query keep the full weight, since
# exact names are what the lexical index is for.
PROSE_LEXICAL_WEIGHT = 0.3
_CODE_LIKE = re.compile(r"[a-z][A-Z]|_|\.\w|\(|::|->")


def lexical_weight(query: str) -> float:
    return 1.0 if _CODE_LIKE.search(query) else PROSE_LEXICAL_WEIGHT


def _matches(c: StoredChunk, path_glob: str | None, language: str | None) -> bool:
    if language and c.language != language:
        return False
    return not path_glob or fnmatch.fnmatch(c.path, path_glob)
