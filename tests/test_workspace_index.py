"""Index freshness, locking, damaged stores and the search result format."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from hearth_lsp.indexer.workspace import WorkspaceIndex


@pytest.fixture
def ws(tmp_path):
    root = tmp_path / "ws"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "prices.py").write_text(
        "def parse_price(text):\n    return int(text)\n\n\ndef format_price(cents):\n"
        "    return str(cents)\n")
    (root / "pkg" / "stock.ts").write_text(
        "export function totalStockValue(items: number[]): number {\n"
        "  return items.reduce((a, b) => a + b, 0);\n}\n")
    return root


@pytest.fixture
def index(ws, tmp_path):
    idx = WorkspaceIndex(ws, tmp_path / "cache")
    idx.update()
    yield idx
    idx.close()


def chunk_rows(idx):
    return {(r[0], r[1]): r[2] for r in idx.store.db.execute("SELECT path, symbol, id FROM chunks")}


def test_search_finds_identifiers_by_their_parts(index):
    results = index.search("stock value", k=3)
    assert results[0].as_dict() | {"score": 0} == {
        "path": "pkg/stock.ts", "start_line": 1, "end_line": 3, "symbol": "totalStockValue",
        "kind": "function", "language": "typescript", "score": 0}
    assert index.search("parse_price")[0].symbol == "parse_price"
    assert [r.symbol for r in index.search("price", language="typescript")] == []
    assert {r.path for r in index.search("price", path_glob="pkg/*.py")} == {"pkg/prices.py"}


def test_english_filler_words_do_not_match_on_their_own(ws, tmp_path):
    """Nearly every chunk says "the" or "to": as query terms they cost a scan of the
    whole lexical index and find nothing the other words do not."""
    from hearth_lsp.indexer.store import fts_query

    assert fts_query("convert degrees to radians") == '"convert" OR "degrees" OR "radians"'
    assert fts_query("this") == '"this"'  # nothing else to search for
    (ws / "pkg" / "notes.py").write_text(
        'def look():\n    """The end of the line is the place to look."""\n')
    idx = WorkspaceIndex(ws, tmp_path / "cache")
    try:
        idx.update()
        assert {r.path for r in idx.search("the price of the item", k=10)} == {"pkg/prices.py"}
        assert {r.path for r in idx.search("the", k=10)} == {"pkg/notes.py"}
    finally:
        idx.close()


def test_editing_one_function_replaces_only_its_chunk(index, ws):
    before = chunk_rows(index)
    path = ws / "pkg" / "prices.py"
    path.write_text(path.read_text().replace("return str(cents)", "return f'{cents / 100:.2f}'"))
    stats = index.update()
    after = chunk_rows(index)
    assert (stats.changed, stats.chunks_added, stats.chunks_removed) == (1, 1, 1)
    assert after[("pkg/prices.py", "parse_price")] == before[("pkg/prices.py", "parse_price")]
    assert after[("pkg/prices.py", "format_price")] != before[("pkg/prices.py", "format_price")]


def test_an_edit_takes_the_old_words_out_of_the_lexical_index(index, ws):
    path = ws / "pkg" / "prices.py"
    path.write_text(path.read_text().replace("format_price", "render_amount"))
    index.update()
    assert index.search("format") == []
    assert index.search("render amount")[0].symbol == "render_amount"
    index.update(rebuild=True)
    assert index.search("render amount")[0].symbol == "render_amount"
    assert index.search("format") == []


def test_a_file_that_holds_the_same_chunk_twice_loses_both_when_it_changes(ws, tmp_path):
    """Two identical line windows (text that repeats every 50 lines): the store kept
    one row per hash, so one twin outlived the file's next version and stayed
    searchable, and a file that gained a twin stored it once."""
    block = "".join(f"line {i} of the zebra notes\n" for i in range(50))
    notes = ws / "notes.txt"
    notes.write_text(block * 2)  # windows 0-59 and 50-99
    idx = WorkspaceIndex(ws, tmp_path / "cache")
    try:
        idx.update()

        def windows() -> list[tuple[int, int]]:
            return sorted(idx.store.db.execute(
                "SELECT start_line, end_line FROM chunks WHERE path = 'notes.txt'"))

        assert windows() == [(0, 59), (50, 99)]
        notes.write_text(block * 3)  # 50-109 is the same text as 0-59: a twin
        idx.update()
        assert windows() == [(0, 59), (50, 109), (100, 149)]
        notes.write_text("nothing about animals here\n")
        idx.update()
        assert windows() == [(0, 0)]
        assert index_terms(idx, "zebra") == []
    finally:
        idx.close()


def index_terms(idx, word):
    return idx.store.db.execute(
        "SELECT rowid FROM chunks_fts WHERE chunks_fts MATCH ?", (word,)).fetchall()


def test_a_worker_pool_indexes_exactly_what_one_process_does(tmp_path):
    root = tmp_path / "many"
    root.mkdir()
    for i in range(80):  # above POOL_MIN_FILES
        (root / f"m{i}.py").write_text(f"def handler_{i}(event):\n    return event + {i}\n")
    (root / "bad.py").write_bytes(b"def broken(:\n  \xff\xfe pass\n")
    tables = []
    for workers in (1, 2):
        idx = WorkspaceIndex(root, tmp_path / f"cache{workers}")
        try:
            stats = idx.update(workers=workers)
            assert stats.changed == 81
            tables.append(sorted(idx.store.db.execute(
                "SELECT path, symbol, kind, start_line, end_line, hash FROM chunks")))
            assert idx.search("handler_42")[0].symbol == "handler_42"
        finally:
            idx.close()
    assert tables[0] == tables[1]


def test_a_parsing_worker_killed_mid_build_costs_only_speed(tmp_path, caplog):
    import multiprocessing
    import signal

    root = tmp_path / "many"
    root.mkdir()
    for i in range(150):
        (root / f"m{i:03d}.py").write_text(f"def handler_{i}(event):\n    return event + {i}\n")
    killed: list[int] = []

    def kill_a_worker() -> bool:
        workers = multiprocessing.active_children()
        if not killed and workers:  # the pool has started: kill one of its workers
            killed.append(workers[0].pid)
            os.kill(workers[0].pid, signal.SIGKILL)
        return False

    idx = WorkspaceIndex(root, tmp_path / "cache")
    try:
        stats = idx.update(workers=2, should_stop=kill_a_worker)
        assert killed and stats.changed == 150
        assert "the worker pool failed" in caplog.text  # the rest was parsed here
        assert len(idx.store.files()) == 150 and idx.store.check(full=True) == []
        assert idx.search("handler_149")[0].symbol == "handler_149"
    finally:
        idx.close()


def test_a_first_build_starts_its_workers_while_discovery_checks_the_files(
        tmp_path, ws, monkeypatch):
    from hearth_lsp.indexer import workspace

    root = tmp_path / "many"
    root.mkdir()
    for i in range(70):
        (root / f"m{i}.py").write_text(f"def handler_{i}(event):\n    return event + {i}\n")
    events: list[str] = []
    real_start, real_check = workspace._start_pool, workspace.discover.__globals__["skip_reason"]
    monkeypatch.setattr(workspace, "_start_pool",
                        lambda n: events.append("pool") or real_start(n))
    monkeypatch.setitem(workspace.discover.__globals__, "skip_reason",
                        lambda *a, **k: events.append("check") or real_check(*a, **k))
    idx = WorkspaceIndex(root, tmp_path / "cache")
    try:
        assert idx.update(workers=2).changed == 70
        assert events.count("pool") == 1 and events.index("pool") < events.index("check")
        assert idx.search("handler_7")[0].symbol == "handler_7"
        events.clear()
        (root / "m1.py").write_text("def renamed(event):\n    return event\n")
        idx.update(workers=2)  # not a first build: no pool before the files are known
        assert "pool" not in events[:events.index("check")]
    finally:
        idx.close()
    small = WorkspaceIndex(ws, tmp_path / "small")  # a handful of files: no pool at all
    try:
        events.clear()
        small.update(workers=2)
        assert "pool" not in events
    finally:
        small.close()


def index_names(idx) -> set[str]:
    return {r[0] for r in idx.store.db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")}


def test_a_first_build_of_many_files_builds_the_store_s_indexes_at_the_end(tmp_path,
                                                                           monkeypatch):
    root = tmp_path / "many"
    root.mkdir()
    for i in range(70):
        (root / f"m{i}.py").write_text(f"def handler_{i}(event):\n    return helper(event)\n")
    idx = WorkspaceIndex(root, tmp_path / "cache")
    during: list[set[str]] = []
    try:
        stats = idx.update(workers=1, should_stop=lambda: during.append(index_names(idx)))
        assert stats.changed == 70 and during
        assert all("chunks_path" not in names and "symbols_name" not in names
                   for names in during)
        assert {"chunks_path", "symbols_name"} <= index_names(idx)
        assert idx.store.check(full=True) == []  # every index matches its table
        assert idx.search("handler_42")[0].symbol == "handler_42"
        [found] = idx.store.definitions("handler_42")  # symbols name their own file
        assert found[2] == "m42.py"
        # The next update is not a first build: files are looked up by path.
        (root / "m3.py").write_text("def renamed(event):\n    return event\n")
        assert idx.update(workers=1).changed == 1
        assert [r.symbol for r in idx.search("renamed")] == ["renamed"]
        assert "handler_3" not in {r.symbol for r in idx.search("handler_3", k=100)}
    finally:
        idx.close()

    # A build that fails half-way leaves the indexes in place and what it committed;
    # the next update is not a first build and completes it by path.
    from hearth_lsp.indexer import workspace

    monkeypatch.setattr(workspace, "COMMIT_EVERY_FILES", 20)
    calls = []

    def fail_later() -> bool:
        calls.append(1)
        if len(calls) == 30:
            raise RuntimeError("the disk is gone")
        return False

    idx = WorkspaceIndex(root, tmp_path / "cache2")
    try:
        with pytest.raises(RuntimeError):
            idx.update(workers=1, should_stop=fail_later)
        assert {"chunks_path", "symbols_name"} <= index_names(idx)
        assert idx.store.counts()["files"] == 20  # one committed batch
        assert idx.update(workers=1).changed == 50 and idx.store.check(full=True) == []
        assert idx.search("handler_69")[0].symbol == "handler_69"
        # Indexes a failed rebuild left out come back with the next update.
        idx.store.db.execute("DROP INDEX symbols_name")
        idx.store.db.commit()
        idx.update(workers=1)
        assert "symbols_name" in index_names(idx)
    finally:
        idx.close()


def test_a_store_from_another_version_is_rebuilt(index, ws, tmp_path):
    index.store.db.execute("UPDATE meta SET value = '0' WHERE key = 'schema'")
    index.store.db.commit()
    index.close()
    again = WorkspaceIndex(ws, tmp_path / "cache")
    try:
        assert again.store.counts()["chunks"] == 0
        again.update()
        assert again.search("parse price")[0].symbol == "parse_price"
    finally:
        again.close()


def test_unchanged_files_are_not_parsed_again(index, ws):
    assert index.update().changed == 0
    os.utime(ws / "pkg" / "prices.py")  # touched, same content
    assert index.update().changed == 0


def test_deletes_and_renames(index, ws):
    (ws / "pkg" / "stock.ts").rename(ws / "pkg" / "inventory.ts")
    stats = index.update()
    assert stats.removed == 1
    assert index.search("stock value")[0].path == "pkg/inventory.ts"
    (ws / "pkg" / "inventory.ts").unlink()
    index.update_paths(["pkg/inventory.ts"])
    assert index.search("stock value") == []


def test_a_folder_moved_out_of_the_workspace_takes_its_files_out_of_the_index(
        index, ws, tmp_path):
    """A folder moved out (or deleted) is reported as the folder alone: watchdog sends
    no event for the files in it, nor does an editor for a deleted folder."""
    (ws / "pkg" / "deep").mkdir()
    (ws / "pkg" / "deep" / "tax.py").write_text("def apply_tax(cents):\n    return cents\n")
    (ws / "pkgs.py").write_text("def list_packages():\n    return []\n")  # "pkg" + "s"
    index.update()
    (ws / "pkg").rename(tmp_path / "moved-out")
    stats = index.update_paths(["pkg"])
    assert stats.removed == 3
    assert set(index.store.files()) == {"pkgs.py"}
    assert index.search("apply tax") == [] and index.search("list packages")


def test_a_second_process_reads_but_does_not_write(index, ws, tmp_path):
    other = WorkspaceIndex(ws, tmp_path / "cache")
    try:
        assert other.readonly
        assert other.search("parse price")[0].symbol == "parse_price"
        with pytest.raises(Exception, match="another Hearth process"):
            other.update()
    finally:
        other.close()


def test_a_damaged_store_is_rebuilt(ws, tmp_path):
    idx = WorkspaceIndex(ws, tmp_path / "cache")
    idx.update()
    store = idx.dir / "index.sqlite"
    idx.close()
    store.write_bytes(b"this is not a database" * 100)
    for suffix in ("-wal", "-shm"):
        (idx.dir / f"index.sqlite{suffix}").unlink(missing_ok=True)
    again = WorkspaceIndex(ws, tmp_path / "cache")
    try:
        assert again.store.counts()["chunks"] == 0
        again.update()
        assert again.search("parse price")
    finally:
        again.close()


def test_a_killed_indexer_leaves_a_store_the_next_run_completes(ws, tmp_path):
    for i in range(600):
        (ws / "pkg" / f"gen_{i}.py").write_text(f"def f_{i}(x):\n    return x + {i}\n")
    cache = tmp_path / "cache"
    script = ("import sys; from pathlib import Path; from hearth_lsp.indexer.workspace import "
              "WorkspaceIndex as W; import os, signal\n"
              "w = W(Path(sys.argv[1]), Path(sys.argv[2]))\n"
              "w.update(lambda done, total, cur: os.kill(os.getpid(), signal.SIGKILL) "
              "if done >= 300 else None)\n")
    proc = subprocess.run([sys.executable, "-c", script, str(ws), str(cache)])
    assert proc.returncode == -9
    idx = WorkspaceIndex(ws, cache)
    try:
        partial = idx.store.counts()["files"]
        assert 0 < partial < 602
        idx.update()
        assert idx.store.counts()["files"] == 602
        assert idx.search("f_599")[0].symbol == "f_599"
    finally:
        idx.close()


def hearth(*args, cwd=None, env=None):
    return subprocess.run([sys.executable, "-m", "hearth_lsp.server", *args], cwd=cwd,
                          capture_output=True, text=True, env={**os.environ, **(env or {})})


def test_cli_index_and_search(ws, tmp_path):
    env = {"HEARTH_CACHE_DIR": str(tmp_path / "cli-cache")}
    out = hearth("index", str(ws), env=env)
    assert out.returncode == 0 and "indexed 2 files" in out.stdout and "store:" in out.stdout
    out = hearth("search", "stock value", "--root", str(ws), "--json", "-k", "1", env=env)
    [results] = [json.loads(line) for line in out.stdout.splitlines()]
    assert results[0]["symbol"] == "totalStockValue" and results[0]["start_line"] == 1
    batch = tmp_path / "queries.jsonl"
    batch.write_text('{"query": "parse price", "k": 1}\n{"query": "stock"}\n')
    out = hearth("search", "--batch", str(batch), "--root", str(ws), "--json", env=env)
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(lines) == 2 and lines[0][0]["symbol"] == "parse_price" and len(lines[0]) == 1
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n")
    out = hearth("search", "--batch", str(bad), "--root", str(ws), env=env)
    assert out.returncode == 2 and "bad.jsonl:1: expected a JSON object" in out.stderr


class RecordingEmbedder:
    """Enough of Embedder for embed_pending: records the order texts arrive in."""

    name, max_tokens = "recording", 256

    def __init__(self):
        self.seen: list[str] = []

    def embed_counted(self, texts):
        return self.encode(texts), [len(t.split()) for t in texts]

    def encode(self, texts, counts=None):
        import numpy as np

        self.seen.extend(texts)
        return np.ones((len(texts), 4), dtype=np.float32)


class MemoryVectors:
    def __init__(self):
        self.vectors: dict[int, object] = {}

    def upsert(self, ids, vectors):
        self.vectors.update(zip(ids, vectors, strict=True))

    def delete(self, ids):
        for i in ids:
            self.vectors.pop(i, None)


def test_open_files_are_embedded_first(index, ws):
    embedder, vectors = RecordingEmbedder(), MemoryVectors()
    stats = index.embed_pending(embedder, vectors, first=["pkg/stock.ts"], batch=1)
    assert stats.embedded == 3 and len(vectors.vectors) == 3
    assert embedder.seen[0].startswith("pkg/stock.ts")
    # Nothing left to do; an edit re-embeds only the changed chunk.
    assert index.embed_pending(embedder, vectors).embedded == 0
    path = ws / "pkg" / "prices.py"
    path.write_text(path.read_text().replace("int(text)", "int(text.strip())"))
    index.update()
    again = index.embed_pending(embedder, vectors)
    assert (again.embedded, len(vectors.vectors)) == (1, 3)



def test_batches_hold_texts_of_like_length_and_open_files_still_come_first(ws, tmp_path):
    # The encoder pads a batch to its longest text: pending chunks in priority order
    # are sorted by length within windows of batches, the open file's chunks ahead.
    bodies = [(f"f{i}", " + ".join(["x"] * n)) for i, n in enumerate([40, 2, 25, 1, 60, 8])]
    (ws / "pkg" / "sizes.py").write_text("".join(
        f"def {name}(x):\n    return {body}\n\n\n" for name, body in bodies))
    idx = WorkspaceIndex(ws, tmp_path / "cache")
    idx.update()
    try:
        embedder, vectors = RecordingEmbedder(), MemoryVectors()
        stats = idx.embed_pending(embedder, vectors, first=["pkg/stock.ts"], batch=2)
        assert stats.embedded == 9 and len(vectors.vectors) == 9
        assert embedder.seen[0].startswith("pkg/stock.ts")
        rest = embedder.seen[1:]  # one window: 9 rows < 2 x 8
        assert [len(t) for t in rest] == sorted(len(t) for t in rest)
        # With batches of one, a window is 8 rows: the open file's chunk, then 7 by length.
        idx.store.db.execute("UPDATE chunks SET embedded = 0")
        idx.store.db.commit()
        embedder = RecordingEmbedder()
        embedder.name = "another model"  # nothing cached for it
        idx.embed_pending(embedder, MemoryVectors(), first=["pkg/stock.ts"], batch=1)
        assert embedder.seen[0].startswith("pkg/stock.ts") and len(embedder.seen) == 9
        window = [len(t) for t in embedder.seen[1:8]]
        assert window == sorted(window)
    finally:
        idx.close()

# The layout of schema 4 (symbols by path, files without ids), as that version wrote it.
SCHEMA_4 = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE files(path TEXT PRIMARY KEY, language TEXT, size INTEGER, mtime_ns INTEGER,
    hash TEXT, parse_errors INTEGER DEFAULT 0);
CREATE TABLE chunks(id INTEGER PRIMARY KEY, path TEXT NOT NULL, language TEXT, symbol TEXT,
    kind TEXT, start_line INTEGER, end_line INTEGER, part INTEGER, hash TEXT, text TEXT,
    signature TEXT, doc TEXT, embedded INTEGER DEFAULT 0);
CREATE VIRTUAL TABLE chunks_fts USING fts5(symbol, terms, content = '',
    tokenize = 'unicode61 remove_diacritics 2');
CREATE TABLE symbols(path TEXT, line INTEGER, col INTEGER, is_def INTEGER, name TEXT,
    kind TEXT, end_col INTEGER, PRIMARY KEY(path, line, col, is_def, name)) WITHOUT ROWID;
CREATE TABLE embeddings(model TEXT, hash TEXT, vector BLOB, PRIMARY KEY(model, hash));
CREATE TABLE vector_deletes(id INTEGER PRIMARY KEY);
INSERT INTO meta VALUES ('schema', '4');
INSERT INTO files VALUES ('pkg/prices.py', 'python', 1, 1, 'x', 0);
INSERT INTO chunks(path, language, symbol, kind, start_line, end_line, part, hash, text)
    VALUES ('pkg/prices.py', 'python', 'old_name', 'function', 0, 1, 0, 'h', 'def old_name');
INSERT INTO symbols VALUES ('pkg/prices.py', 0, 4, 1, 'old_name', 'function', 12);
"""


def test_a_store_of_the_older_larger_layout_is_rebuilt_in_the_new_one(ws, tmp_path):
    """Schema 5 stores symbols by file id: a schema-4 store (paths in every symbol) is
    rebuilt, with its vectors, and everything that reads symbols works on the result."""
    import sqlite3

    from hearth_lsp.indexer.context import neighbours
    from hearth_lsp.indexer.workspace import index_dir

    folder = index_dir(tmp_path / "cache", ws)
    folder.mkdir(parents=True)
    (folder / "chroma").mkdir()
    (folder / "chroma" / "stale.bin").write_bytes(b"vectors of the old chunk ids")
    db = sqlite3.connect(folder / "index.sqlite")
    db.executescript(SCHEMA_4)
    db.close()
    (ws / "pkg" / "cart.py").write_text(
        "from pkg.prices import parse_price\n\n\ndef total(lines):\n"
        "    return sum(parse_price(x) for x in lines)\n")
    idx = WorkspaceIndex(ws, tmp_path / "cache")
    try:
        assert any("another Hearth version" in n and "rebuilding" in n for n in idx.notices)
        assert not (folder / "chroma").exists()  # old chunk ids: their vectors go too
        assert idx.store.counts()["chunks"] == 0
        idx.update(workers=1)
        cols = [r[1] for r in idx.store.db.execute("PRAGMA table_info(symbols)")]
        assert "file" in cols and "path" not in cols
        assert [d[:3] for d in idx.store.definitions("parse_price")] == [
            ("parse_price", "function", "pkg/prices.py")]
        assert not idx.store.definitions("old_name")
        [total] = [c for c in idx.store.chunks(range(1, 100)).values() if c.symbol == "total"]
        found = {(n.chunk.symbol, n.relation) for n in neighbours(idx.store, total)}
        assert ("parse_price", "definition") in found
        # A file re-indexed keeps its id, so its symbols still name it.
        (ws / "pkg" / "prices.py").write_text("def parse_price(text):\n    return float(text)\n")
        idx.update_paths(["pkg/prices.py"])
        assert [d[2] for d in idx.store.definitions("parse_price")] == ["pkg/prices.py"]
        assert idx.store.db.execute("SELECT count(*) FROM symbols WHERE file NOT IN "
                                    "(SELECT id FROM files)").fetchone()[0] == 0
    finally:
        idx.close()


def test_long_chunk_text_is_stored_deflated_and_reads_back_exactly(ws, tmp_path):
    body = "".join(f"    total_{i} = compute_line_total(order, {i}) + tax_rate * {i}\n"
                   for i in range(30))
    doc = ("    \"\"\"The order's total with tax: each line's total plus the tax rate times "
           "its number,\n    summed over the thirty lines an order can have (caf\u00e9).\"\"\"\n")
    (ws / "pkg" / "orders.py").write_text(f"def order_total(order, tax_rate):\n{doc}{body}"
                                          "    return total_0  # caf\u00e9\n")
    idx = WorkspaceIndex(ws, tmp_path / "cache")
    try:
        idx.update(workers=1)
        cid, stored, stored_doc = idx.store.db.execute(
            "SELECT id, text, doc FROM chunks WHERE symbol = 'order_total'").fetchone()
        assert isinstance(stored, bytes) and len(stored) < len(body) / 2
        assert isinstance(stored_doc, bytes)  # the doc comment too
        chunk = idx.store.chunks([cid])[cid]
        assert chunk.text == (ws / "pkg" / "orders.py").read_text().rstrip("\n")
        assert chunk.doc.startswith("The order's total") and chunk.doc.endswith("(caf\u00e9).")
        [hit] = [r for r in idx.search("compute_line_total") if r.symbol == "order_total"]
        assert idx.chunk_text(hit) == chunk.text
        # Short chunks stay plain text; both kinds read back.
        short = idx.store.db.execute(
            "SELECT text FROM chunks WHERE symbol = 'parse_price'").fetchone()[0]
        assert isinstance(short, str)
        # Replacing the deflated chunk takes its words out of the lexical index.
        (ws / "pkg" / "orders.py").write_text("def order_total(order):\n    return 0\n")
        idx.update_paths(["pkg/orders.py"])
        assert idx.store.db.execute("SELECT count(*) FROM chunks_fts WHERE chunks_fts MATCH "
                                    "'\"compute_line_total\"'").fetchone()[0] == 0
        assert idx.store.check(full=True) == []
    finally:
        idx.close()


def test_a_saved_or_created_file_the_ignore_rules_leave_out_is_not_indexed(tmp_path):
    # A save or a file event names the file: it is checked against .gitignore as the
    # full build's listing would.
    root = tmp_path / "ws"
    (root / "generated").mkdir(parents=True)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    (root / ".gitignore").write_text("local_settings.py\ngenerated/\n")
    (root / "a.py").write_text("def hello():\n    return 1\n")
    idx = WorkspaceIndex(root, tmp_path / "cache")
    try:
        idx.update(workers=1)
        (root / "local_settings.py").write_text("def private_setting():\n    return 1\n")
        (root / "generated" / "out.py").write_text("def generated_thing():\n    return 3\n")
        (root / "b.py").write_text("def other():\n    return 2\n")
        stats = idx.update_paths(["local_settings.py", "generated/out.py", "b.py"])
        assert sorted(idx.store.files()) == ["a.py", "b.py"] and stats.changed == 1
        assert idx.search("private_setting") == []
    finally:
        idx.close()


def test_a_file_nested_deeper_than_the_chunker_goes_is_indexed_in_windows(tmp_path):
    # 400 nested Rust modules in 4 KB: the chunker's walk recursed past Python's limit
    # and the whole build failed.
    root = tmp_path / "ws"
    root.mkdir()
    (root / "deep.rs").write_text("mod m {\n" * 400 + "fn needle_fn() {}\n" + "}\n" * 400)
    idx = WorkspaceIndex(root, tmp_path / "cache")
    try:
        stats = idx.update(workers=1)
        assert stats.changed == 1
        assert [r.path for r in idx.search("needle_fn")] == ["deep.rs"]
    finally:
        idx.close()
