"""Outside changes seen through watchdog, and the loggers kept quiet about them."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from hearth_lsp.indexer.watch import Watcher
from hearth_lsp.server import logs


def watch(root: Path, **kwargs) -> tuple[Watcher, list[list[Path]], threading.Event]:
    seen: list[list[Path]] = []
    event = threading.Event()

    def changed(paths: list[Path]) -> None:
        seen.append(paths)
        event.set()
    watcher = Watcher(root, changed, **kwargs)
    watcher.start()
    return watcher, seen, event


def test_a_burst_of_changes_arrives_as_one_update(tmp_path):
    (tmp_path / "pkg").mkdir()
    watcher, seen, event = watch(tmp_path)
    try:
        for i in range(20):
            (tmp_path / "pkg" / f"m{i}.py").write_text("x = 1\n")
        assert event.wait(10)
        time.sleep(1)  # anything arriving late would be a second update
        assert len(seen) == 1
        assert {p.name for p in seen[0]} == {f"m{i}.py" for i in range(20)}
    finally:
        watcher.stop()


def test_a_folder_moved_out_arrives_as_the_folder(tmp_path):
    """The files in it get no event of their own; the index drops them by the
    folder's path."""
    (tmp_path / "ws" / "pkg").mkdir(parents=True)
    (tmp_path / "ws" / "pkg" / "m.py").write_text("x = 1\n")
    watcher, seen, event = watch(tmp_path / "ws")
    try:
        (tmp_path / "ws" / "pkg").rename(tmp_path / "elsewhere")
        assert event.wait(10)
        time.sleep(1)
        assert [p.name for batch in seen for p in batch] == ["pkg"]
    finally:
        watcher.stop()


def test_a_folder_watched_alone_ignores_what_happens_below_it(tmp_path):
    """The user config's folder: a config file in a home directory must not mean
    watching the whole home (every log write below it would wake the server)."""
    (tmp_path / "logs").mkdir()
    watcher, seen, event = watch(tmp_path, recursive=False)
    try:
        for i in range(5):
            (tmp_path / "logs" / "server.log").write_text(f"line {i}\n")
        (tmp_path / "config.toml").write_text("[model]\n")
        assert event.wait(10)
        time.sleep(1)
        assert [p.name for batch in seen for p in batch] == ["config.toml"]
    finally:
        watcher.stop()


def test_debug_logging_leaves_out_watchdogs_own_records():
    """At log level debug, watchdog logs each inotify event; with the log file under a
    watched folder, each record would cause the next one."""
    before = logging.getLogger().level
    try:
        logs.set_level("debug")
        assert logging.getLogger("hearth_lsp.server").isEnabledFor(logging.DEBUG)
        assert not logging.getLogger("watchdog.observers.inotify_buffer").isEnabledFor(
            logging.DEBUG)
    finally:
        logging.getLogger().setLevel(before)
