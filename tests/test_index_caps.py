"""Caps for huge repositories (index.maxFiles, index.maxChunks): the rest is left out
with a notice that says how much, and the files open in the editor are always in."""

from __future__ import annotations

import time
from pathlib import Path

from hearth_lsp.indexer.workspace import WorkspaceIndex
from hearth_lsp.server.index_service import IndexService
from hearth_lsp.server.settings import IndexSettings


def make_workspace(root: Path, files: int = 10, functions: int = 3) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        (root / f"mod_{i:02d}.py").write_text("".join(
            f"def handler_{i}_{j}(event):\n    return event * {j}\n\n\n"
            for j in range(functions)))
    return root


def indexed(idx: WorkspaceIndex) -> set[str]:
    return set(idx.store.files())


def symbols(idx: WorkspaceIndex, query: str) -> list[str]:
    return [r.symbol for r in idx.search(query, k=50)]


def test_max_files_keeps_the_open_files_and_says_how_many_were_left_out(tmp_path):
    root = make_workspace(tmp_path / "ws")
    idx = WorkspaceIndex(root, tmp_path / "cache", max_files=3)
    try:
        stats = idx.update(workers=1, keep=["mod_09.py", "not/in/the/workspace.py"])
        # The open file, then the first others in path order, up to the cap.
        assert indexed(idx) == {"mod_09.py", "mod_00.py", "mod_01.py"}
        assert stats.left_out["maxFiles"] == 7
        assert idx.search("handler_9_2")[0].path == "mod_09.py"
        assert "handler_5_1" not in symbols(idx, "handler_5_1")
        [notice] = idx.notices
        assert "7 of 10 files" in notice and "index.maxFiles (3)" in notice
        assert "open files are always indexed" in notice
    finally:
        idx.close()


def test_max_chunks_leaves_out_whole_files_but_never_an_open_one(tmp_path):
    root = make_workspace(tmp_path / "ws")  # 3 chunks a file
    idx = WorkspaceIndex(root, tmp_path / "cache", max_chunks=7)
    try:
        stats = idx.update(workers=1, keep=["mod_05.py"])
        # mod_05 (3 chunks), then mod_00 (6), then mod_01 would make 9 > 7: the rest is out.
        assert indexed(idx) == {"mod_05.py", "mod_00.py"}
        assert stats.left_out["maxChunks"] == 8
        assert idx.store.counts()["chunks"] == 6
        assert "index.maxChunks (7 chunks)" in idx.notices[-1]
        # An open file is indexed even when it alone is over the cap.
        idx.max_chunks = 2
        idx.update(workers=1, keep=["mod_07.py"])
        assert indexed(idx) == {"mod_07.py"}
    finally:
        idx.close()


def test_the_chunk_cap_stops_a_parsing_pool_early_and_leaves_no_worker(tmp_path):
    import multiprocessing

    root = make_workspace(tmp_path / "ws", files=90)  # above the pool's threshold
    idx = WorkspaceIndex(root, tmp_path / "cache", max_chunks=30)
    try:
        stats = idx.update(workers=2)
        assert len(indexed(idx)) == 10 and stats.left_out["maxChunks"] == 80
        assert idx.store.counts()["chunks"] == 30
        deadline = time.monotonic() + 30
        while multiprocessing.active_children() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not multiprocessing.active_children()
    finally:
        idx.close()


def test_a_lower_cap_shrinks_an_existing_index(tmp_path):
    root = make_workspace(tmp_path / "ws")
    idx = WorkspaceIndex(root, tmp_path / "cache")
    try:
        idx.update(workers=1)
        assert len(indexed(idx)) == 10
        idx.max_files = 4
        stats = idx.update(workers=1, keep=["mod_08.py"])
        assert indexed(idx) == {"mod_08.py", "mod_00.py", "mod_01.py", "mod_02.py"}
        assert stats.removed == 6
        # Every chunk of a file left out is gone from the lexical index too.
        assert "handler_6_0" not in symbols(idx, "handler_6_0")
    finally:
        idx.close()


def test_a_new_file_at_the_cap_is_indexed_only_when_open(tmp_path):
    root = make_workspace(tmp_path / "ws", files=3)
    idx = WorkspaceIndex(root, tmp_path / "cache", max_files=3)
    try:
        idx.update(workers=1)
        (root / "new_a.py").write_text("def brand_new_a():\n    pass\n")
        (root / "new_b.py").write_text("def brand_new_b():\n    pass\n")
        stats = idx.update_paths(["new_a.py", "new_b.py"], keep=["new_b.py"])
        assert stats.left_out["maxFiles"] == 1
        assert "new_b.py" in indexed(idx) and "new_a.py" not in indexed(idx)
        # A file already indexed is always re-indexed when it changes.
        (root / "mod_00.py").write_text("def changed_handler():\n    pass\n")
        idx.update_paths(["mod_00.py"])
        assert idx.search("changed_handler")[0].path == "mod_00.py"
    finally:
        idx.close()


def test_the_service_passes_the_caps_and_the_open_files_and_reports_what_was_left_out(
        tmp_path):
    root = make_workspace(tmp_path / "ws")
    reports: list[tuple] = []
    svc = IndexService(root, tmp_path / "cache", IndexSettings(max_files=2), embed=False,
                       report=lambda *a: reports.append(a),
                       open_paths=lambda: [root / "mod_07.py"])
    svc.start()
    try:
        deadline = time.monotonic() + 60
        while not svc.ready.is_set():
            assert time.monotonic() < deadline, "phase 1 did not finish"
            time.sleep(0.02)
        assert {r.path for r in svc.search("handler", k=50)} == {"mod_07.py", "mod_00.py"}
        end = [message for phase, message, _ in reports if phase == ""]
        assert any("8 files left out" in m for m in end), end
        assert any("index.maxFiles (2)" in n for n in svc.status()["notices"])
    finally:
        svc.stop()
