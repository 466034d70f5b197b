"""Faults in the index's and the answer cache's files (issue 16), with the real SQLite,
chromadb and file systems: a damaged store (64 KiB overwritten anywhere, damage met
while searching, after an unclean stop), a deleted, damaged or crashing chroma
folder, a full disk (a 2 MB tmpfs) during indexing and cache writes, a read-only
cache folder. Each: a clear message, the rest keeps working, nothing lost, the next
start consistent. Waits are bounded; nothing is asserted about timings.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from hearth_lsp.indexer import workspace as workspace_module
from hearth_lsp.indexer.store import unpack_vector
from hearth_lsp.indexer.workspace import OPEN_MARKER, WorkspaceIndex, parse_file
from hearth_lsp.server.index_service import IndexNotReady, IndexService
from hearth_lsp.server.result_cache import ResultCache
from hearth_lsp.server.settings import IndexSettings

FILES = 120


def make_workspace(root: Path, files: int = FILES, functions: int = 12) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        (root / f"mod_{i}.py").write_text("".join(
            f"def handler_{i}_{j}(event, context):\n    '''Handle event {i}.{j}.'''\n"
            f"    return compute_total(event, context) * {j}\n\n\n" for j in range(functions)))
    return root


def snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def overwrite(path: Path, offset: int, size: int = 64 << 10, seed: int = 0) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(random.Random(seed or offset).randbytes(size))


def wait(predicate, timeout: float = 60, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what} not met in time"
        time.sleep(0.02)


# ------------------------------------------------------------ a damaged store


def test_a_64k_overwrite_anywhere_in_the_store_is_found_and_rebuilt(tmp_path, caplog):
    """Every 64 KiB-aligned offset of a ~1 MB store. Before the quick check at open, an
    overwrite of some of them opened fine and searches answered from damaged pages."""
    root = make_workspace(tmp_path / "ws")
    before = snapshot(root)
    cache = tmp_path / "cache"
    idx = WorkspaceIndex(root, cache)
    idx.update(workers=1)
    path, files = idx.dir / "index.sqlite", idx.store.counts()["files"]
    idx.close()
    good = path.read_bytes()
    assert len(good) > 768 << 10
    offsets = range(64 << 10, len(good) - (16 << 10), 64 << 10)  # page 1 (the header) aside
    rebuilt = 0
    for offset in offsets:
        path.write_bytes(good)
        overwrite(path, offset)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="hearth_lsp.indexer.workspace"):
            idx = WorkspaceIndex(root, cache)
        try:
            # The store in use is intact: untouched pages, or a new store.
            assert idx.store.check(full=True) == [], f"damage at {offset} went unnoticed"
            if idx.notices:
                rebuilt += 1
                [notice] = idx.notices
                assert "is damaged" in notice and notice.endswith("rebuilding it")
                assert notice in caplog.text
                assert idx.store.counts()["files"] == 0
            idx.update(workers=1)
            assert idx.store.counts()["files"] == files
            assert idx.search("handler_33_7")[0].symbol == "handler_33_7"
        finally:
            idx.close()
    assert rebuilt == len(offsets)  # random bytes over 16 pages: always damage
    assert snapshot(root) == before


def test_an_unclean_stop_is_checked_in_full_and_damage_then_rebuilt(tmp_path, caplog):
    root = make_workspace(tmp_path / "ws", files=20)
    cache = tmp_path / "cache"
    script = ("import os, signal, sys; from pathlib import Path\n"
              "from hearth_lsp.indexer.workspace import WorkspaceIndex\n"
              "w = WorkspaceIndex(Path(sys.argv[1]), Path(sys.argv[2]))\n"
              "w.update(workers=1)\nos.kill(os.getpid(), signal.SIGKILL)\n")
    proc = subprocess.run([os.sys.executable, "-c", script, str(root), str(cache)])
    assert proc.returncode == -9
    idx = WorkspaceIndex(root, cache)  # the marker is there: integrity_check, FTS check
    try:
        assert any("was not closed" in n and "intact" in n for n in idx.notices)
        assert idx.store.counts()["files"] == 20 and (idx.dir / OPEN_MARKER).exists()
    finally:
        idx.close()
    assert not (idx.dir / OPEN_MARKER).exists()  # a clean close
    idx = WorkspaceIndex(root, cache)
    try:
        assert idx.notices == []
    finally:
        idx.close()
    # Unclean and damaged: said so, and rebuilt.
    proc = subprocess.run([os.sys.executable, "-c", script, str(root), str(cache)])
    path = idx.dir / "index.sqlite"
    overwrite(path, path.stat().st_size // 2 // 4096 * 4096, 16 << 10)
    with caplog.at_level(logging.WARNING):
        idx = WorkspaceIndex(root, cache)
    try:
        [notice] = idx.notices
        assert "was not closed and cannot be used" in notice and "rebuilding it" in notice
        idx.update(workers=1)
        assert idx.search("handler_19_3")[0].symbol == "handler_19_3"
    finally:
        idx.close()


def service(root: Path, cache: Path, **kwargs) -> tuple[IndexService, list[tuple]]:
    reports: list[tuple] = []
    svc = IndexService(root, cache, IndexSettings(), embed=False,
                       report=lambda *a: reports.append(a), **kwargs)
    svc.start()
    return svc, reports


def test_damage_met_while_searching_is_rebuilt_with_a_notice(tmp_path, caplog):
    """The store goes bad under a running server: the search that meets it gets a clear
    error (not an answer from damaged pages), the store is rebuilt, search answers."""
    root = make_workspace(tmp_path / "ws")
    before = snapshot(root)
    svc, reports = service(root, tmp_path / "cache")
    try:
        assert svc.ready.wait(60)
        assert svc.search("handler_1_1")[0].symbol == "handler_1_1"
        path = svc.writer.dir / "index.sqlite"
        svc.writer.store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        for offset in range(64 << 10, path.stat().st_size - (64 << 10), 128 << 10):
            overwrite(path, offset)
        with caplog.at_level(logging.WARNING), pytest.raises(IndexNotReady, match="damaged"):
            for n in range(FILES):  # each reads pages it has not read before
                svc.search(f"handler_{n}_{n % 12}")
        assert "the workspace index is damaged" in caplog.text
        wait(lambda: svc.ready.is_set() and svc.state == "ready", what="rebuilt")
        assert svc.search("handler_42_5")[0].symbol == "handler_42_5"
        st = svc.status()
        assert st["files"] == FILES and st["error"] is None
        assert any("damaged" in n for n in st["notices"])
        assert any("rebuilding" in (r[1] or "") for r in reports)  # the progress said so
        assert svc.writer.store.check(full=True) == []
    finally:
        svc.stop()
    assert snapshot(root) == before


# ------------------------------------------------------------------ chroma


class FixedEmbedder:
    """Deterministic 8-dimensional vectors (the model is beside the point here)."""

    name, max_tokens = "fixed", 256

    def __init__(self):
        self.encoded = 0

    def embed_counted(self, texts):
        return self.encode(texts), [1] * len(texts)

    def encode(self, texts, counts=None):
        self.encoded += len(texts)
        rng = [random.Random(t) for t in texts]
        return np.array([[r.random() for _ in range(8)] for r in rng], dtype=np.float32)


def embedded_index(root: Path, cache: Path) -> tuple[WorkspaceIndex, FixedEmbedder]:
    idx = WorkspaceIndex(root, cache)
    idx.update(workers=1)
    embedder = FixedEmbedder()
    idx.embed_pending(embedder, idx.open_vectors(embedder))
    return idx, embedder


def hnsw_files(folder: Path, name: str) -> list[Path]:
    found = list(folder.rglob(name))
    assert found, f"no HNSW segment ({name}) was written"
    return found


def scramble(folder: Path) -> None:
    for path in hnsw_files(folder, "data_level0.bin"):
        path.write_bytes(random.Random(1).randbytes(path.stat().st_size))


def truncate(folder: Path) -> None:
    for path in hnsw_files(folder, "data_level0.bin"):
        with open(path, "r+b") as fh:
            fh.truncate(0)


CHROMA_FAULTS = {
    "deleted": lambda folder: shutil.rmtree(folder),
    "not a database": lambda folder: (folder / "chroma.sqlite3").write_bytes(b"garbage" * 999),
    "HNSW data scrambled (chromadb segfaults)": scramble,
    "HNSW data truncated to nothing": truncate,
    "HNSW metadata garbage": lambda folder: [p.write_bytes(b"garbage") for p in
                                             hnsw_files(folder, "index_metadata.pickle")],
}


@pytest.mark.slow
@pytest.mark.parametrize("fault", list(CHROMA_FAULTS))
def test_a_deleted_or_damaged_chroma_folder_is_rebuilt_from_the_embedding_cache(
        tmp_path, fault, caplog):
    """Between two runs. Scrambled HNSW data crashed the whole process (SIGSEGV in
    chromadb's native code); other damage failed every call, forever; a deleted folder
    left every chunk marked embedded and dense search empty."""
    root = make_workspace(tmp_path / "ws", files=120)  # > 1000 vectors: HNSW files on disk
    cache = tmp_path / "cache"
    idx, _ = embedded_index(root, cache)
    vectors = idx.open_vectors(FixedEmbedder())
    total = vectors.count()
    assert total == idx.store.counts()["embedded"] > 1000
    folder = idx.dir / "chroma"
    idx.close()
    CHROMA_FAULTS[fault](folder)
    # A child process opens it as the server would: the fault is real.
    if fault != "deleted":
        assert workspace_module.folder_problem(folder) is not None

    idx = WorkspaceIndex(root, cache)
    try:
        embedder = FixedEmbedder()
        with caplog.at_level(logging.WARNING):
            vectors = idx.open_vectors(embedder)
        notices = " | ".join(idx.notices)
        if fault == "deleted":
            assert "vectors were missing" in notices
        else:
            assert "is damaged" in notices and "rebuilding it from the embedding cache" in notices
        assert notices.split(" | ")[0] in caplog.text
        stats = idx.embed_pending(embedder, vectors)
        # Restored from the cache in index.sqlite: the model ran for nothing.
        assert embedder.encoded == 0 and stats.reused == total
        assert vectors.count() == total == idx.store.counts()["embedded"]
        query = FixedEmbedder().encode([idx.chunk_text(idx.search("handler_7_3")[0])])[0]
        assert vectors.query(query, 3)
    finally:
        idx.close()
    # The next start: a clean close was recorded, nothing to check or restore.
    idx = WorkspaceIndex(root, cache)
    try:
        idx.open_vectors(FixedEmbedder())
        assert idx.notices == []
    finally:
        idx.close()


@pytest.mark.slow
def test_a_chroma_folder_deleted_under_a_running_server(tmp_path, monkeypatch, caplog):
    """Writes to the deleted folder fail ("readonly database"); the service lets go of
    the store, opens a new one and restores the vectors from the embedding cache."""
    root = make_workspace(tmp_path / "ws", files=10)
    reports: list[tuple] = []
    svc = IndexService(root, tmp_path / "cache", IndexSettings(), embed=True,
                       report=lambda *a: reports.append(a),
                       load_embedder=lambda folder, backend: FixedEmbedder())
    monkeypatch.setattr(svc, "_retry_later", lambda message: (
        reports.append(("retry", message, None)), svc._queue.put(("embed", None))))
    svc.start()
    try:
        wait(lambda: svc.state == "ready" and svc.status().get("embedded") == 120,
             what="embedded")
        shutil.rmtree(svc.writer.dir / "chroma")
        (root / "mod_3.py").write_text("def brand_new_handler(event):\n    return event\n")
        with caplog.at_level(logging.WARNING):
            svc.files_changed([root / "mod_3.py"])
            wait(lambda: any(r[0] == "retry" for r in reports), what="a failed write")
            wait(lambda: svc.state == "ready" and svc.error is None
                 and svc.status().get("embedded") == svc.status().get("chunks"),
                 what="vectors restored")
        assert "vectors were missing" in caplog.text
        assert svc._vectors.count() == svc.status()["chunks"]
        # The new chunk's vector is there: a query with it finds it first.
        [new] = [r for r in svc.search("brand_new_handler", 50) if r.symbol ==
                 "brand_new_handler"]
        cid, blob = svc.writer.store.db.execute(
            "SELECT c.id, e.vector FROM chunks c JOIN embeddings e ON e.hash = c.hash "
            "WHERE c.symbol = ?", (new.symbol,)).fetchone()
        vector = unpack_vector(blob)
        assert svc._vectors.query(vector, 1)[0][0] == cid
    finally:
        svc.stop()


# ---------------------------------------------------------------- full disk


@contextlib.contextmanager
def tmpfs(path: Path, size: str = "2m"):
    if os.geteuid() != 0:
        pytest.skip("a small tmpfs (a full disk) needs root to mount")
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                   check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_a_full_disk_during_indexing_keeps_what_was_written(tmp_path, caplog):
    """The index outgrows a 2 MB tmpfs: the user is told (disk full, how to finish),
    search answers from what was committed, and with space the next start completes."""
    root = make_workspace(tmp_path / "ws", files=400, functions=12)
    before = snapshot(root)
    with tmpfs(tmp_path / "small") as cache:
        with caplog.at_level(logging.WARNING):
            svc, reports = service(root, cache)
            try:
                assert svc.ready.wait(120), svc.error
                assert svc.state == "error" and "is full" in svc.error
                assert "search answers from the" in svc.error and "Reindex" in svc.error
                assert svc.error in caplog.text and any(r[1] == svc.error for r in reports)
                st = svc.status()
                assert 0 < st["files"] < 400
                assert svc.search("handler_0_1")[0].symbol == "handler_0_1"
            finally:
                svc.stop()
        assert "Traceback" not in caplog.text
        # With room (a bigger disk, the same files): the next start completes.
        big = tmp_path / "big"
        shutil.copytree(cache / "index", big / "index")
    svc, _ = service(root, big)
    try:
        wait(lambda: svc.state == "ready", 120, "indexed")
        assert svc.status()["files"] == 400
        assert svc.writer.store.check(full=True) == []
        assert svc.search("handler_399_11")[0].symbol == "handler_399_11"
    finally:
        svc.stop()
    assert snapshot(root) == before


# ------------------------------------------------------------ the answer cache


def test_answer_cache_on_a_full_disk_warns_once_and_answers_still_come(tmp_path, caplog):
    with tmpfs(tmp_path / "small", "1m") as small:
        cache = ResultCache(small / "results.sqlite")
        cache.put("k0", "review", "kept")
        filler = small / "filler"
        with contextlib.suppress(OSError), open(filler, "wb") as fh:
            while True:
                fh.write(b"\0" * (64 << 10))
        with caplog.at_level(logging.WARNING):
            for i in range(1, 20):
                cache.put(f"k{i}", "review", "x" * 20_000)  # no exception reaches the task
            assert cache.get("k0") == "kept"  # what it holds still answers
        warnings = [r.getMessage() for r in caplog.records if "answer cache" in r.getMessage()]
        assert len(warnings) == 1 and "the disk is full" in warnings[0]
        assert str(small / "results.sqlite") in warnings[0]
        filler.unlink()
        cache.put("k99", "review", "after")
        assert cache.get("k99") == "after" and cache.problem is None
        cache.close()
        assert ResultCache(small / "results.sqlite").get("k0") == "kept"


@contextlib.contextmanager
def read_only(path: Path):
    """``path`` (a folder) made read-only for this process: a read-only remount when
    root (root ignores permission bits), chmod otherwise."""
    if os.geteuid() == 0:
        subprocess.run(["mount", "--bind", str(path), str(path)], check=True)
        subprocess.run(["mount", "-o", "remount,bind,ro", str(path)], check=True)
        try:
            yield
        finally:
            subprocess.run(["umount", "-l", str(path)], check=False)
    else:
        modes = {p: p.stat().st_mode for p in [path, *path.rglob("*")]}
        for p in modes:
            p.chmod(0o555 if p.is_dir() else 0o444)
        try:
            yield
        finally:
            for p, mode in modes.items():
                p.chmod(mode)


def test_a_read_only_cache_folder_answers_from_what_it_holds(tmp_path, caplog):
    folder = tmp_path / "cache"
    cache = ResultCache(folder / "results.sqlite")
    cache.put("k", "docstring", "kept")
    cache.close()
    with read_only(folder), caplog.at_level(logging.WARNING):
        cache = ResultCache(folder / "results.sqlite")
        assert cache.get("k") == "kept"
        cache.put("new", "docstring", "lost")
        cache.put("newer", "docstring", "lost")
        assert cache.get("new") is None
        cache.close()
        fresh = ResultCache(folder / "elsewhere" / "results.sqlite")  # cannot even create
        assert fresh.get("k") is None
        fresh.put("k", "docstring", "v")
        fresh.close()
    warnings = [r.getMessage() for r in caplog.records if "answer cache" in r.getMessage()]
    assert len(warnings) == 2 and all("read-only" in w for w in warnings)
    assert "is off: cannot open" in warnings[1]


def test_a_read_only_index_folder_is_searched_as_it_is(tmp_path, caplog):
    root = make_workspace(tmp_path / "ws", files=10)
    cache = tmp_path / "cache"
    idx = WorkspaceIndex(root, cache)
    idx.update(workers=1)
    idx.close()
    with read_only(cache), caplog.at_level(logging.WARNING):
        svc, _ = service(root, cache)
        try:
            assert svc.ready.wait(30)
            assert svc.state == "readonly"
            assert "cannot be written" in caplog.text and "searching the index read-only" \
                in caplog.text
            assert svc.search("handler_3_3")[0].symbol == "handler_3_3"
            assert svc.symbols("handler_3_3")
        finally:
            svc.stop()
        # A read-only folder without an index: one clear error, no index.
        other = make_workspace(tmp_path / "other", files=2)
        svc, reports = service(other, cache)
        try:
            wait(lambda: svc.state == "error", 30, "refused")
            assert "cannot be written" in svc.error and "holds no index" in svc.error
            with pytest.raises(IndexNotReady, match="cannot be written"):
                svc.search("handler")
        finally:
            svc.stop()


def test_a_file_event_on_a_loop_of_links_loses_none_of_the_others(tmp_path):
    # One event of a batch on a link to itself: resolving it raises (Python 3.11), and
    # the whole batch, the good file's save with it, was lost.
    root = tmp_path / "ws"
    root.mkdir()
    (root / "good.py").write_text("def good():\n    return 2\n")
    os.symlink("loop", root / "loop")
    svc = IndexService(root, tmp_path / "cache", IndexSettings(), embed=False)  # not started
    svc.files_changed([root / "good.py", root / "loop"])
    assert list(svc._queue.queue) == [("files", ["good.py"])]


def test_a_workspace_reached_through_a_link_takes_its_file_events(tmp_path):
    # macOS's /tmp, a ~/code link: the editor names files through the link, watchdog by
    # their real path; both were compared resolved with the root as given, and no change
    # after the first build ever reached the index.
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real, target_is_directory=True)
    root = tmp_path / "link"
    svc = IndexService(root, tmp_path / "cache", IndexSettings(), embed=False)  # not started
    svc.files_changed([root / "a.py", real / "b.py", tmp_path / "elsewhere.py"])
    assert list(svc._queue.queue) == [("files", ["a.py", "b.py"])]
    assert svc.relative(root / "pkg" / "c.py") == "pkg/c.py"


def test_a_changed_env_file_reads_the_whole_index_again(tmp_path):
    # Its values are redacted from every chunk: a full update (which sees that they
    # changed) rather than the file alone, which is never indexed.
    root = tmp_path / "ws"
    root.mkdir()
    svc = IndexService(root, tmp_path / "cache", IndexSettings(), embed=False)  # not started
    svc.files_changed([root / ".env.local", root / "a.py"])
    assert list(svc._queue.queue) == [("reindex", False)]
    svc._queue.get()
    svc.files_changed([root / "services" / "api" / ".env", root / "a.py"])  # read too
    assert list(svc._queue.queue) == [("reindex", False)]


@pytest.mark.parametrize("folder", ["My Project", "código", "a..b"])
def test_a_folder_whose_name_chroma_would_refuse_still_gets_vectors(tmp_path, folder):
    # The collection was named after the folder: chroma refused spaces and accents, and
    # dense search never worked there.
    root = tmp_path / folder
    root.mkdir()
    (root / "a.py").write_text("def hello():\n    return 1\n")
    idx, _ = embedded_index(root, tmp_path / "cache")
    try:
        assert idx.store.counts()["embedded"] == 1
    finally:
        idx.close_vectors()
        idx.close()


def test_a_file_replaced_after_it_was_listed_is_refused_at_the_read(tmp_path):
    """Discovery saw a small regular file; by the read it is a FIFO (the worker blocked
    on it for good, and the update with it), a link (to a file the rules leave out),
    or a log grown past index.maxFileKb (read whole)."""
    root = tmp_path / "ws"
    root.mkdir()
    os.mkfifo(root / "pipe.py")
    (root / "secret.txt").write_text("TOKEN = 'x'\n")
    (root / "link.py").symlink_to(root / "secret.txt")
    (root / "big.log").write_bytes(b"x" * 5000)
    (root / "ok.py").write_text("def ok():\n    return 1\n")
    parsed = {rel: parse_file(str(root), rel, None, frozenset(), 4096)
              for rel in ("pipe.py", "link.py", "big.log", "ok.py")}
    assert "not a regular file" in parsed["pipe.py"].error
    assert parsed["link.py"].error  # O_NOFOLLOW: the link itself is not read through
    assert "over index.maxFileKb (4 KB)" in parsed["big.log"].error
    assert parsed["ok.py"].error is None and parsed["ok.py"].chunks


def test_completion_context_never_blocks_on_a_fifo_in_an_indexed_files_place(tmp_path):
    from hearth_lsp.server.tasks.completion.context import FileLines

    os.mkfifo(tmp_path / "pipe.py")
    (tmp_path / "ok.py").write_text("def ok():\n    return 1\n")
    lines = FileLines()
    assert lines(tmp_path / "pipe.py") is None
    assert lines(tmp_path / "ok.py") == ["def ok():", "    return 1"]
