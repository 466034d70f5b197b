"""Finished generations on disk, so a repeated request is instant.

The key is a hash of everything that decides the model's answer: the task,
the exact prompt (which holds the code and the retrieved context), the
grammar, the sampling settings and the model file. The value is the raw
answer, stored only once the task's result passed validation (see
tasks/runner.py); validation runs again on a replayed one. The checks themselves
are in the key too (``checks_epoch``): an answer kept by a version whose checks
were fewer is not replayed to be refused. Bounded (least recently used entries go
first); `hearth cache clear` empties it.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


@functools.cache
def checks_epoch(here: Path = Path(__file__).parent) -> str:
    """A hash of the code that prompts for and checks answers (the tasks and the shared
    junk checks, under ``here``): any change to it is a new epoch of the cache."""
    digest = hashlib.sha256()
    for path in sorted([here / "cleaning.py", *(here / "tasks").rglob("*.py")]):
        with contextlib.suppress(OSError):
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


MAX_ENTRIES = 5000
MAX_BYTES = 50 << 20


class ResultCache:
    """Never fails a task: a cache that cannot be opened is off, one that cannot be
    written (a read-only or full disk) still answers from what it holds, and a
    damaged one starts again. Each problem is logged once, with the path."""

    def __init__(self, path: Path, *, max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES):
        self.path, self.max_entries, self.max_bytes = path, max_entries, max_bytes
        self._lock = threading.Lock()
        self.problem: str | None = None  # why answers are not being kept, when they are not
        self._db: sqlite3.Connection | None = None
        self._untold: str | None = None  # a problem found before anyone could be told
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = self._open()
        except (OSError, sqlite3.Error) as exc:
            # Told at first use: a server opens its cache before the editor listens.
            self.problem = self._untold = (f"the answer cache is off: cannot open {path} "
                                           f"({_why(exc)})")
            log.debug("%s", self.problem)

    def _tell_untold(self) -> None:
        if self._untold is not None:
            log.warning("%s", self._untold)
            self._untold = None

    def _open(self) -> sqlite3.Connection:
        # The owner's only (answers quote the user's code); SQLite gives its WAL files the
        # database file's mode.
        with contextlib.suppress(OSError):  # (a read-only folder: read what it holds)
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        with contextlib.suppress(OSError):
            if os.stat(self.path).st_mode & 0o077:
                os.chmod(self.path, 0o600)
        db = sqlite3.connect(self.path, check_same_thread=False, timeout=10)
        try:
            db.execute("CREATE TABLE IF NOT EXISTS results(key TEXT PRIMARY KEY, kind TEXT, "
                       "value TEXT, used REAL)")
            db.execute("SELECT count(*) FROM results").fetchone()
            return db
        except sqlite3.DatabaseError as exc:
            db.close()
            if isinstance(exc, sqlite3.OperationalError):
                raise  # a read-only or full disk, a lock: not damage, keep the file
        log.warning("the answer cache %s was damaged; starting it again", self.path)
        return self._start_again()

    def _start_again(self) -> sqlite3.Connection:
        """A damaged cache is only a cache: start again."""
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)
        db = sqlite3.connect(self.path, check_same_thread=False, timeout=10)
        db.execute("CREATE TABLE results(key TEXT PRIMARY KEY, kind TEXT, value TEXT, "
                   "used REAL)")
        return db

    def _trouble(self, message: str) -> None:
        """One warning per spell of trouble (not one per answer)."""
        if self.problem is None:
            log.warning("%s", message)
        else:
            log.debug("%s", message)
        self.problem = message

    def _write_failed(self, exc: sqlite3.Error) -> None:
        """Called under the lock, after a failed write."""
        assert self._db is not None
        with contextlib.suppress(sqlite3.Error):
            self._db.rollback()
        if isinstance(exc, sqlite3.DatabaseError) and not isinstance(
                exc, (sqlite3.OperationalError, sqlite3.IntegrityError)):
            log.warning("the answer cache %s is damaged (%s); starting it again", self.path, exc)
            try:
                self._db.close()
                self._db = self._start_again()
                return
            except (OSError, sqlite3.Error) as again:
                self._db = None
                exc = again  # type: ignore[assignment]
        self._trouble(f"the answer cache {self.path} cannot be written ({_why(exc)}): new "
                      "answers are not kept until it can")

    def _write_ok(self) -> None:
        if self.problem is not None and self._db is not None:
            log.info("the answer cache %s can be written again", self.path)
            self.problem = None

    @staticmethod
    def key(kind: str, **parts: Any) -> str:
        blob = json.dumps({"kind": kind, **parts}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()

    def get(self, key: str) -> str | None:
        with self._lock:
            self._tell_untold()
            if self._db is None:
                return None
            try:
                row = self._db.execute("SELECT value FROM results WHERE key = ?",
                                       (key,)).fetchone()
            except sqlite3.OperationalError as exc:  # a lock, an I/O error: a miss
                self._trouble(f"the answer cache {self.path} cannot be read ({_why(exc)})")
                return None
            except sqlite3.Error as exc:  # damaged: started again
                self._write_failed(exc)
                return None
            if row is not None:
                try:
                    self._db.execute("UPDATE results SET used = ? WHERE key = ?",
                                     (time.time(), key))
                    self._db.commit()
                except sqlite3.Error as exc:  # still an answer; only its age is not kept
                    self._write_failed(exc)
            return row[0] if row else None

    def put(self, key: str, kind: str, value: str) -> None:
        with self._lock:
            self._tell_untold()
            if self._db is None:
                return
            try:
                self._db.execute("INSERT OR REPLACE INTO results VALUES (?,?,?,?)",
                                 (key, kind, value, time.time()))
                self._evict()
                self._db.commit()
            except sqlite3.Error as exc:
                self._write_failed(exc)
                return
            self._write_ok()

    def delete(self, key: str) -> None:
        """Forget one answer (today's checks refuse it)."""
        with self._lock:
            if self._db is None:
                return
            try:
                self._db.execute("DELETE FROM results WHERE key = ?", (key,))
                self._db.commit()
            except sqlite3.Error as exc:
                self._write_failed(exc)

    def resize(self, max_bytes: int) -> None:
        """A new size limit (`cache.maxMb` changed): evict down to it now."""
        with self._lock:
            self.max_bytes = max_bytes
            if self._db is None:
                return
            try:
                self._evict()
                self._db.commit()
            except sqlite3.Error as exc:
                self._write_failed(exc)

    def _evict(self) -> None:
        """Least recently used entries go until both limits hold (called under the lock)."""
        assert self._db is not None
        count, size = self._db.execute(
            "SELECT count(*), coalesce(sum(length(value)), 0) FROM results").fetchone()
        while count > self.max_entries or size > self.max_bytes:
            keep = max(0, min(self.max_entries, count) * 3 // 4)  # evict in one go
            self._db.execute("DELETE FROM results WHERE key NOT IN (SELECT key FROM results "
                             "ORDER BY used DESC LIMIT ?)", (keep,))
            count, size = self._db.execute(
                "SELECT count(*), coalesce(sum(length(value)), 0) FROM results").fetchone()

    def stats(self) -> dict[str, int]:
        with self._lock:
            if self._db is None:
                return {"entries": 0, "bytes": 0}
            count, size = self._db.execute(
                "SELECT count(*), coalesce(sum(length(value)), 0) FROM results").fetchone()
        return {"entries": count, "bytes": size}

    def clear(self) -> int:
        """Empty the cache; raises RuntimeError (saying why) when it cannot."""
        with self._lock:
            if self._db is None:
                raise RuntimeError(self.problem or f"cannot open {self.path}")
            try:
                n = self._db.execute("SELECT count(*) FROM results").fetchone()[0]
                self._db.execute("DELETE FROM results")
                self._db.commit()
                self._db.execute("VACUUM")
            except sqlite3.Error as exc:
                self._db.rollback()
                raise RuntimeError(f"cannot clear {self.path}: {_why(exc)}") from exc
            return n

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


def _why(exc: BaseException) -> str:
    """The reason, in the words a user can act on."""
    text = str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
    if "readonly" in text.lower().replace("read-only", "readonly").replace(" ", ""):
        return f"read-only: {text}"
    if "full" in text.lower():
        return f"the disk is full: {text}"
    return text
