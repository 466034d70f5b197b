"""The index's own SQLite database: files, chunks, symbols, lexical index, embeddings.

Chunk text, metadata and filtering live here (WAL mode), not in the vector
store: chromadb answers a plain top-k in milliseconds but a metadata-filtered
query in hundreds (measured with chromadb 1.5.9 at 100k vectors), and storing
documents there doubles the disk. The vector store holds ids and vectors only.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, cast

from .chunker import Chunk, Symbol

log = logging.getLogger(__name__)

# Bump when the schema or lexical_terms() changes: a store of another version is
# rebuilt (the contentless FTS table is deleted from by recomputing terms).
SCHEMA_VERSION = "5"  # 3: definition kinds (struct, enum, trait, ...); 4: secrets redacted;
# 5: symbols name their file by id (paths were a third of the store)
# SCHEMA_VERSION stays: a store's indexes are not part of what it holds.
# Indexes bulk_load() builds once at the end of a first build (SCHEMA creates them too).
BULK_INDEXES = {"chunks_path": "CREATE INDEX IF NOT EXISTS chunks_path ON chunks(path);",
                "symbols_name": "CREATE INDEX IF NOT EXISTS symbols_name ON symbols(name);"}
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);
-- A file keeps its id while it is re-indexed (an upsert, never a replace): symbols
-- refer to it.
CREATE TABLE IF NOT EXISTS files(
    id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE, language TEXT, size INTEGER,
    mtime_ns INTEGER, hash TEXT, parse_errors INTEGER DEFAULT 0);
CREATE TABLE IF NOT EXISTS chunks(
    id INTEGER PRIMARY KEY, path TEXT NOT NULL, language TEXT, symbol TEXT, kind TEXT,
    start_line INTEGER, end_line INTEGER, part INTEGER, hash TEXT, text TEXT,
    signature TEXT, doc TEXT, embedded INTEGER DEFAULT 0);
{chunks_path}
DROP INDEX IF EXISTS chunks_hash;  -- never searched by; 5 MB per 100k chunks
CREATE INDEX IF NOT EXISTS chunks_pending ON chunks(embedded) WHERE embedded = 0;
-- Contentless: the terms are derived from chunks.text, so storing them again
-- would only cost disk (about a seventh of the database).
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(
    symbol, terms, content = '', tokenize = 'unicode61 remove_diacritics 2');
-- Clustered by file (WITHOUT ROWID): a file's symbols are replaced together. The
-- file's id, not its path: a path in every symbol and again in the name index was
-- a third of the store (about 40 MB per 100k chunks).
CREATE TABLE IF NOT EXISTS symbols(
    file INTEGER, line INTEGER, col INTEGER, is_def INTEGER, name TEXT, kind TEXT,
    end_col INTEGER, PRIMARY KEY(file, line, col, is_def, name)) WITHOUT ROWID;
{symbols_name}
-- Vectors cached by (model, chunk hash), packed by pack_vector (int8 with a scale;
-- float16 in stores written before, still read).
CREATE TABLE IF NOT EXISTS embeddings(model TEXT, hash TEXT, vector BLOB,
    PRIMARY KEY(model, hash));
-- Chunk ids whose vectors must leave the vector store (phase 2 does it), so
-- phase 1 never needs the vector store and a crash loses no deletion.
CREATE TABLE IF NOT EXISTS vector_deletes(id INTEGER PRIMARY KEY);
""".format(**BULK_INDEXES)

_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@lru_cache(maxsize=65536)
def split_identifier(word: str) -> tuple[str, ...]:
    """``parsePrice`` -> (parse, price); ``HTTPServer_v2`` -> (http, server, v, 2)."""
    # No part holds `_` and no lookahead crosses it: one findall splits at it too.
    return tuple(part.lower() for part in _CAMEL.findall(word))


@lru_cache(maxsize=1 << 17)
def _word_terms(word: str) -> str:
    """One identifier's terms: itself lower-cased, then its parts when it has several."""
    parts = _CAMEL.findall(word)  # split_identifier's, lower-cased below in one go
    return word.lower() if len(parts) <= 1 else f"{word} {' '.join(parts)}".lower()


def lexical_terms(text: str) -> str:
    """Text for FTS5: each identifier once, whole and split, so `price` finds `parsePrice`.

    Identifiers repeat a lot in code; listing each once per chunk keeps indexing
    fast (this was half of phase 1) and the lexical index small.
    """
    return " ".join(map(_word_terms, dict.fromkeys(_IDENT.findall(text))))


# English words that nearly every chunk holds (in comments, docstrings, keywords).
# bm25 gives them almost no weight, but matching them is what costs: "compute the
# gradient" took 60 ms on 222,908 chunks, "compute gradient" 3 ms.
STOPWORDS = frozenset({
    "a", "an", "the", "to", "of", "in", "on", "at", "by", "for", "from", "with", "into",
    "and", "or", "is", "are", "be", "as", "it", "its", "this", "that", "these", "those",
    "was", "were", "been", "has", "have", "had", "do", "does", "can", "will", "would",
    "should", "may", "than", "then", "so", "such", "via"})


def fts_query(query: str) -> str:
    """An FTS5 OR-query of the query's words and identifier parts, safely quoted;
    without STOPWORDS unless the query is nothing else."""
    terms: list[str] = []
    for word in _IDENT.findall(query):
        for term in [word.lower(), *split_identifier(word)]:
            if term not in terms and len(term) > 1:
                terms.append(term)
    telling = [t for t in terms if t not in STOPWORDS]
    return " OR ".join(f'"{t}"' for t in telling or terms)


def chunk_terms(symbol: str, path: str, text: str) -> tuple[str, str]:
    """A chunk's two lexical columns: its symbol's terms, and its path's and text's."""
    return lexical_terms(symbol), lexical_terms(f"{path}\n{text}")


# (path, language, symbol, kind, start_line, end_line, part, hash, text (pack_text),
# signature, doc (pack_text))
ChunkRow = tuple[str, str, str, str, int, int, int, str, "str | bytes", str, "str | bytes"]
# (line, col, is_def, name, kind, end_col): the file is the one they are stored with
SymbolRow = tuple[int, int, int, str, str, int]


def chunk_row(c: Chunk) -> ChunkRow:
    return (c.path, c.language, c.symbol, c.kind, c.start_line, c.end_line, c.part, c.hash,
            pack_text(c.text), c.signature, pack_text(c.doc))


# A chunk's text or doc comment longer than this is stored deflated (a BLOB; shorter ones
# stay TEXT): code deflates about 2.5x, chunk text was a third of the store and doc
# comments (a second copy of part of the text) 15 MB per 100k chunks. Readers take
# either type (unpack_text), so stores written before hold plain text and still read.
PACK_MIN_BYTES = 128


def pack_text(text: str) -> str | bytes:
    data = text.encode("utf-8", "surrogatepass")
    if len(data) <= PACK_MIN_BYTES:
        return text
    packer = zlib.compressobj(1, zlib.DEFLATED, -15)  # raw deflate: no header, no checksum
    packed = packer.compress(data) + packer.flush()
    return packed if len(packed) < len(data) else text


_INT8 = b"\x01"  # an odd length marks the int8 packing: float16 packings are even


def pack_vector(vector: Any) -> bytes:
    """A unit vector for the embedding cache: int8 with one float32 scale, a quarter of
    float32 and half of the float16 used before (the cache was the store's largest
    part, ~115 MB per 100k chunks). Unpacked, it keeps cosine > 0.9999 with the
    original (test_vectors), so rankings move only among near-ties (< 1e-3 apart)."""
    import numpy as np  # here, not above: a window on the shared daemon never needs it

    values = np.asarray(vector, dtype=np.float32)
    peak = float(np.abs(values).max()) if values.size else 0.0
    scale = peak / 127 if peak > 0 else 1.0
    quantized = np.clip(np.rint(values / scale), -127, 127).astype(np.int8)
    return _INT8 + np.float32(scale).tobytes() + quantized.tobytes()


def unpack_vector(blob: bytes) -> Any:
    """pack_vector's vector (float32, unit length), or a float16 one of older stores."""
    import numpy as np

    if len(blob) % 2 == 0:
        return np.frombuffer(blob, dtype=np.float16).astype(np.float32)
    scale = np.frombuffer(blob, dtype=np.float32, count=1, offset=1)[0]
    values = np.frombuffer(blob, dtype=np.int8, offset=5).astype(np.float32) * scale
    norm = float(np.linalg.norm(values))
    return values / norm if norm > 0 else values


def unpack_text(value: str | bytes | None) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return zlib.decompress(value, -15).decode("utf-8", "surrogatepass")


def symbol_rows(symbols: Iterable[Symbol]) -> list[SymbolRow]:
    # A Symbol is a SymbolRow already; plain tuples cross to the writer cheaper.
    return cast(list[SymbolRow], list(map(tuple, symbols)))


@dataclass
class FileRecord:
    path: str
    language: str | None
    size: int
    mtime_ns: int
    hash: str


@dataclass
class StoredChunk:
    id: int
    path: str
    language: str
    symbol: str
    kind: str
    start_line: int  # 0-based
    end_line: int
    part: int
    hash: str
    text: str
    signature: str
    doc: str


class CorruptIndex(RuntimeError):
    """The store is damaged or was written by another version: rebuild it."""


class IndexUnavailable(RuntimeError):
    """The store cannot be opened or written (a read-only or full disk, a missing
    folder): not damage, so nothing is deleted."""


def _is_damage(exc: sqlite3.DatabaseError) -> bool:
    """SQLITE_CORRUPT / SQLITE_NOTADB (DatabaseError) are damage; SQLITE_FULL,
    SQLITE_READONLY, SQLITE_CANTOPEN, SQLITE_IOERR, SQLITE_BUSY (OperationalError)
    are the disk's or another process's doing."""
    return not isinstance(exc, sqlite3.OperationalError)


WAL_SIZE_LIMIT = 4 << 20
# Rows of PRAGMA quick_check / integrity_check worth reporting.
MAX_PROBLEMS = 20


class Store:
    def __init__(self, path: Path, *, readonly: bool = False, check: str | None = "quick",
                 immutable: bool = False):
        """Open (or create) the store at ``path``.

        ``check``: "quick" runs ``PRAGMA quick_check`` (every page and b-tree is
        read: a damaged page fails it, where a plain query would go on answering
        from what is left), "full" runs ``integrity_check`` and the lexical index's
        own check (after an unclean stop), None checks nothing (a second
        connection to a store just checked). ``immutable``: the folder cannot be
        written (a read-only disk): read the file as it is, without WAL files.
        Raises CorruptIndex (rebuild it) or IndexUnavailable (leave it alone).
        """
        self.path = path
        self.readonly = readonly or immutable
        if not immutable:
            path.parent.mkdir(parents=True, exist_ok=True)
        if immutable:
            uri = f"file:{path}?mode=ro&immutable=1"
        else:
            uri = f"file:{path}?mode=ro" if readonly else f"file:{path}"
        try:
            self.db = sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=30)
        except sqlite3.DatabaseError as exc:
            raise IndexUnavailable(f"cannot open {path}: {exc}") from exc
        try:
            if not immutable:
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=NORMAL")
                # A checkpointed WAL is cut back to this size (it otherwise keeps the
                # largest size it ever reached, e.g. phase 1's bulk write, on disk).
                self.db.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
            if check:
                problems = self.check(full=check == "full" and not readonly)
                if problems:
                    raise CorruptIndex(f"{path} is damaged ({'; '.join(problems[:3])}"
                                       f"{' ...' if len(problems) > 3 else ''})")
            if not readonly and not immutable:
                self.db.executescript(SCHEMA)
                self.db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)",
                                (SCHEMA_VERSION,))
                self.db.commit()
            version = self.db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
            self.db.execute("SELECT count(*) FROM chunks").fetchone()
        except CorruptIndex:
            self._close_quietly()
            raise
        except sqlite3.DatabaseError as exc:
            self._close_quietly()
            if _is_damage(exc):
                raise CorruptIndex(f"{path} is damaged ({exc})") from exc
            raise IndexUnavailable(f"cannot open {path}: {exc}") from exc
        if version is None or version[0] != SCHEMA_VERSION:
            self.db.close()
            raise CorruptIndex(f"{path}: written by another Hearth version "
                               f"(schema {version[0] if version else '?'}, "
                               f"this one reads {SCHEMA_VERSION})")

    def _close_quietly(self) -> None:
        with suppress(sqlite3.Error):
            self.db.close()

    def check(self, full: bool = False) -> list[str]:
        """What SQLite finds wrong with the file ([] when intact).

        quick_check reads every page and checks each b-tree's structure;
        integrity_check also checks that indexes match their tables, and the
        contentless FTS5 table's own check verifies its index structure.
        """
        try:
            rows = self.db.execute(
                f"PRAGMA {'integrity_check' if full else 'quick_check'}({MAX_PROBLEMS})"
            ).fetchall()
        except sqlite3.DatabaseError as exc:
            if not _is_damage(exc):
                raise
            return [str(exc)]
        problems = [str(r[0]) for r in rows if r[0] != "ok"]
        if full and not problems:
            try:
                has_fts = self.db.execute(
                    "SELECT 1 FROM sqlite_master WHERE name = 'chunks_fts'").fetchone()
                if has_fts:
                    self.db.execute(
                        "INSERT INTO chunks_fts(chunks_fts) VALUES ('integrity-check')")
                    self.db.commit()
            except sqlite3.DatabaseError as exc:
                if not _is_damage(exc):
                    raise
                problems.append(f"lexical index: {exc}")
        return problems

    def close(self) -> None:
        """Close; a writer first moves the WAL into the file, so the file alone is the
        index (what a read-only folder can still be searched from)."""
        if not self.readonly:
            with suppress(sqlite3.Error):  # busy (another connection reads): it stays
                self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._close_quietly()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        try:
            yield self.db
            self.db.commit()
        except BaseException:
            self.db.rollback()
            raise

    # -------------------------------------------------------------- files

    def files(self) -> dict[str, FileRecord]:
        rows = self.db.execute("SELECT path, language, size, mtime_ns, hash FROM files")
        return {r[0]: FileRecord(*r) for r in rows}

    def files_under(self, folder: str) -> list[str]:
        """The indexed paths below ``folder`` (a range of the path's unique index: "0"
        is the character after "/")."""
        return [r[0] for r in self.db.execute(
            "SELECT path FROM files WHERE path >= ? AND path < ?", (f"{folder}/", f"{folder}0"))]

    def replace_file(self, record: FileRecord, chunks: list[Chunk], symbols: list[Symbol],
                     parse_errors: bool = False,
                     terms: list[tuple[str, str]] | None = None) -> tuple[int, int]:
        """Store a file's chunks; chunks whose hash is unchanged keep their embeddings.

        ``terms`` are the chunks' lexical terms when already computed (by a
        parsing worker). Returns (chunks added, chunks removed). Runs in the
        caller's transaction.
        """
        return self.replace_rows(record, [chunk_row(c) for c in chunks],
                                 symbol_rows(symbols), parse_errors, terms)

    def replace_rows(self, record: FileRecord, chunks: list[ChunkRow],
                     symbols: list[SymbolRow], parse_errors: bool = False,
                     terms: list[tuple[str, str]] | None = None,
                     new: bool = False) -> tuple[int, int]:
        """replace_file() for chunks and symbols as rows (chunk_row, symbol_rows): what
        a parsing worker sends, since tuples cross a process boundary several times
        cheaper than objects. ``new``: the store has nothing of this file (nothing to
        look up, e.g. while bulk_load() has taken the path index away)."""
        # A file may hold the same chunk twice (two identical line windows, a repeated
        # statement run): each old row is matched to one new chunk at most, and the
        # rows left over go. (Keyed by hash alone, one of two twins was never deleted
        # and its text stayed searchable after the file lost it.)
        old: dict[str, list[int]] = {}
        if not new:
            for cid, h in self.db.execute("SELECT id, hash FROM chunks WHERE path = ? "
                                          "ORDER BY id", (record.path,)):
                old.setdefault(h, []).append(cid)
        kept: list[tuple[int, int, int, int]] = []  # same text: update position only
        fresh: list[int] = []
        for i, c in enumerate(chunks):
            twins = old.get(c[7])
            if twins:
                kept.append((c[4], c[5], c[6], twins.pop(0)))
            else:
                fresh.append(i)
        gone = [cid for ids in old.values() for cid in ids]
        self._delete_chunks(gone)
        if kept:
            self.db.executemany("UPDATE chunks SET start_line=?, end_line=?, part=? WHERE id=?",
                                kept)
        if fresh:
            # Ids as SQLite itself would give them (the largest plus one), chosen here so
            # the rows go in with one executemany each (one writer holds the store).
            first = (self.db.execute("SELECT max(id) FROM chunks").fetchone()[0] or 0) + 1
            self.db.executemany(
                "INSERT INTO chunks(id, path, language, symbol, kind, start_line, end_line, part, "
                "hash, text, signature, doc, embedded) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,0)",
                [(first + n, *chunks[i]) for n, i in enumerate(fresh)])
            self.db.executemany(
                "INSERT INTO chunks_fts(rowid, symbol, terms) VALUES (?, ?, ?)",
                [(first + n, *(terms[i] if terms else chunk_terms(
                    chunks[i][2], chunks[i][0], unpack_text(chunks[i][8]))))
                 for n, i in enumerate(fresh)])
        values = (record.path, record.language, record.size, record.mtime_ns, record.hash,
                  int(parse_errors))
        if new:
            file_id = self.db.execute(
                "INSERT INTO files(path, language, size, mtime_ns, hash, parse_errors) "
                "VALUES (?,?,?,?,?,?)", values).lastrowid
        else:
            file_id = self.db.execute(
                "INSERT INTO files(path, language, size, mtime_ns, hash, parse_errors) "
                "VALUES (?,?,?,?,?,?) ON CONFLICT(path) DO UPDATE SET "
                "language=excluded.language, size=excluded.size, mtime_ns=excluded.mtime_ns, "
                "hash=excluded.hash, parse_errors=excluded.parse_errors RETURNING id",
                values).fetchone()[0]
        if not new:
            self.db.execute("DELETE FROM symbols WHERE file = ?", (file_id,))
        self.db.executemany(
            "INSERT OR IGNORE INTO symbols(file, line, col, is_def, name, kind, end_col) "
            "VALUES (?,?,?,?,?,?,?)", [(file_id, *row) for row in symbols])
        return len(fresh), len(gone)

    def remove_file(self, path: str) -> list[int]:
        ids = [r[0] for r in self.db.execute("SELECT id FROM chunks WHERE path = ?", (path,))]
        self._delete_chunks(ids)
        self.db.execute("DELETE FROM symbols WHERE file IN (SELECT id FROM files WHERE path = ?)",
                        (path,))
        self.db.execute("DELETE FROM files WHERE path = ?", (path,))
        return ids

    def _delete_chunks(self, ids: list[int]) -> None:
        if not ids:
            return
        # A contentless FTS row is deleted by giving back the terms it was indexed with.
        gone: list[tuple[int, str, str, str]] = []
        for i in range(0, len(ids), 500):
            batch = ids[i: i + 500]
            gone.extend(self.db.execute(
                f"SELECT id, symbol, path, text FROM chunks WHERE id IN ({','.join('?' * len(batch))})",
                batch))
        self.db.executemany(
            "INSERT INTO chunks_fts(chunks_fts, rowid, symbol, terms) VALUES ('delete', ?, ?, ?)",
            [(cid, *chunk_terms(sym, path, unpack_text(text))) for cid, sym, path, text in gone])
        rows = [(i,) for i in ids]
        self.db.executemany("DELETE FROM chunks WHERE id = ?", rows)
        self.db.executemany("INSERT OR IGNORE INTO vector_deletes VALUES (?)", rows)

    def ensure_indexes(self) -> None:
        """The indexes bulk_load() takes away, back if a failed build left them out."""
        for sql in BULK_INDEXES.values():
            self.db.execute(sql)
        self.db.commit()

    @contextmanager
    def bulk_load(self, cache_kb: int = 2000) -> Iterator[None]:
        """While many files go into a store that has none: the indexes by path and by
        symbol name are dropped and built once at the end, from all the rows (growing
        them row by row in random order was a third of the writer's time on a
        10,000-file tree). Lookups by path must not happen meanwhile (replace_rows'
        ``new``). A writer killed in between gets them back from SCHEMA at its next
        open. ``cache_kb``: the page cache while the indexes are built (their sort)."""
        for name in BULK_INDEXES:
            self.db.execute(f"DROP INDEX IF EXISTS {name}")
        self.db.commit()
        try:
            yield
        finally:
            try:
                self.db.rollback()  # whatever the build left uncommitted
                self.db.execute(f"PRAGMA cache_size=-{cache_kb}")
                self.ensure_indexes()
                self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the indexes' WAL
            except sqlite3.Error as exc:  # the next update tries again (ensure_indexes)
                log.warning("could not rebuild the index's lookups by path and name: %s", exc)
            finally:
                with suppress(sqlite3.Error):
                    self.db.execute("PRAGMA cache_size=-2000")

    def clear(self) -> None:
        """Forget every file (for a rebuild); vectors are queued for deletion."""
        self.db.execute("INSERT OR IGNORE INTO vector_deletes SELECT id FROM chunks")
        self.db.execute("INSERT INTO chunks_fts(chunks_fts) VALUES ('delete-all')")
        for table in ("chunks", "symbols", "files"):
            self.db.execute(f"DELETE FROM {table}")

    # ------------------------------------------------------------- chunks

    _COLS = "id, path, language, symbol, kind, start_line, end_line, part, hash, text, " \
            "signature, doc"

    def chunks(self, ids: Iterable[int]) -> dict[int, StoredChunk]:
        ids = list(ids)
        out: dict[int, StoredChunk] = {}
        for i in range(0, len(ids), 500):
            batch = ids[i: i + 500]
            marks = ",".join("?" * len(batch))
            for row in self.db.execute(f"SELECT {self._COLS} FROM chunks WHERE id IN ({marks})",
                                       batch):
                cid, path, lang, symbol, kind, start, end, part, hash_, text, sig, doc = row
                out[cid] = StoredChunk(cid, path, lang, symbol, kind, start, end, part, hash_,
                                       unpack_text(text), sig, unpack_text(doc))
        return out

    def counts(self) -> dict[str, int]:
        q = self.db.execute
        return {"files": q("SELECT count(*) FROM files").fetchone()[0],
                "chunks": q("SELECT count(*) FROM chunks").fetchone()[0],
                "embedded": q("SELECT count(*) FROM chunks WHERE embedded = 1").fetchone()[0],
                "symbols": q("SELECT count(*) FROM symbols WHERE is_def = 1").fetchone()[0]}

    def has_embeddings(self) -> bool:
        """Cheap (unlike counts()): whether dense search has anything to search."""
        return self.db.execute("SELECT EXISTS(SELECT 1 FROM chunks WHERE embedded = 1)"
                               ).fetchone()[0] == 1

    def lexical(self, query: str, limit: int) -> list[tuple[int, float]]:
        """(chunk id, bm25 score; higher is better) for a free-text or identifier query."""
        match = fts_query(query)
        if not match:
            return []
        rows = self.db.execute(
            "SELECT rowid, bm25(chunks_fts, 4.0, 1.0) AS rank FROM chunks_fts "
            "WHERE chunks_fts MATCH ? ORDER BY rank LIMIT ?", (match, limit))
        return [(rowid, -rank) for rowid, rank in rows]

    def definitions(self, query: str, limit: int = 200) -> list[tuple]:
        """Definitions whose name contains ``query`` (case-insensitive), exact first."""
        rows = self.db.execute(
            "SELECT s.name, s.kind, f.path, s.line, s.col, s.end_col FROM symbols s "
            "JOIN files f ON f.id = s.file WHERE s.is_def = 1 AND s.name LIKE ? ESCAPE '\\' "
            "ORDER BY (lower(s.name) = lower(?)) DESC, length(s.name), f.path LIMIT ?", (f"%{_like(query)}%", query, limit))
        return list(rows)


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
