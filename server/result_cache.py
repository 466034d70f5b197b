"""Finished generations on disk, so a repeated request is instant.

The key is a hash of everything that decides the model's answer: the task,
the exact prompt (which holds the code and the retrieved context), the
grammar, the sampling settings and the model file. The value is the raw
answer, stored only once the task's result passed validation (see
tasks/runner.py); validation runs again on a replayed one. Bounded (least recently used entries go first); `hearth cache
clear` empties it.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

MAX_ENTRIES = 5000
MAX_BYTES = 50 << 20


class ResultCache:
    def __init__(self, path: Path, *, max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES):
        self.path, self.max_entries, self.max_bytes = path, max_entries, max_bytes
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = self._open()

    def _open(self) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(self.path, check_same_thread=False, timeout=10)
            db.execute("CREATE TABLE IF NOT EXISTS results(key TEXT PRIMARY KEY, kind TEXT, "
                       "value TEXT, used REAL)")
            db.execute("SELECT count(*) FROM results").fetchone()
            return db
        except sqlite3.DatabaseError:  # a damaged cache is only a cache: start again
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)
            db = sqlite3.connect(self.path, check_same_thread=False, timeout=10)
            db.execute("CREATE TABLE results(key TEXT PRIMARY KEY, kind TEXT, value TEXT, "
                       "used REAL)")
            return db

    @staticmethod
    def key(kind: str, **parts: Any) -> str:
        blob = json.dumps({"kind": kind, **parts}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()

    def get(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM results WHERE key = ?", (key,)).fetchone()
            if row is not None:
                self._db.execute("UPDATE results SET used = ? WHERE key = ?", (time.time(), key))
                self._db.commit()
            return row[0] if row else None

    def put(self, key: str, kind: str, value: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO results VALUES (?,?,?,?)",
                             (key, kind, value, time.time()))
            self._evict()
            self._db.commit()

    def resize(self, max_bytes: int) -> None:
        """A new size limit (`cache.maxMb` changed): evict down to it now."""
        with self._lock:
            self.max_bytes = max_bytes
            self._evict()
            self._db.commit()

    def _evict(self) -> None:
        """Least recently used entries go until both limits hold (called under the lock)."""
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
            count, size = self._db.execute(
                "SELECT count(*), coalesce(sum(length(value)), 0) FROM results").fetchone()
        return {"entries": count, "bytes": size}

    def clear(self) -> int:
        with self._lock:
            n = self._db.execute("SELECT count(*) FROM results").fetchone()[0]
            self._db.execute("DELETE FROM results")
            self._db.commit()
            self._db.execute("VACUUM")
            return n

    def close(self) -> None:
        self._db.close()
