"""Changes made outside the editor (git checkout, codegen, formatters), via watchdog.

Events are debounced and coalesced: a checkout touching 500 files becomes one
update of 500 paths, delivered after things have been quiet for a moment.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from .discovery import VENDORED_DIRS

DEBOUNCE_S = 0.3


class _Handler(FileSystemEventHandler):
    def __init__(self, watcher: Watcher):
        self.watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write") or (
                event.is_directory and event.event_type != "deleted"):
            # A folder moved in or within the tree comes with an event for each file in
            # it; one moved out (or deleted) comes as the folder alone: update_paths
            # drops the files indexed below it.
            return
        for attr in ("src_path", "dest_path"):
            raw = getattr(event, attr, "")
            if raw:
                path = Path(raw if isinstance(raw, str) else raw.decode())
                self.watcher.touch(path)


class Watcher:
    def __init__(self, root: Path, on_change: Callable[[list[Path]], None],
                 ignore: tuple[Path, ...] = (), recursive: bool = True):
        self.root = root.resolve()
        self.on_change = on_change
        self.ignore = tuple(p.resolve() for p in ignore)
        self._pending: set[Path] = set()
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._observer = Observer()
        self._observer.schedule(_Handler(self), str(self.root), recursive=recursive)

    def start(self) -> None:
        self._observer.daemon = True
        self._observer.start()

    def stop(self) -> None:
        self._observer.stop()
        if self._timer:
            self._timer.cancel()

    def touch(self, path: Path) -> None:
        try:
            rel = path.relative_to(self.root)
        except ValueError:
            return
        if any(part in VENDORED_DIRS for part in rel.parts[:-1]) or \
                any(path == i or i in path.parents for i in self.ignore):
            return
        with self._lock:
            self._pending.add(path)
            if self._timer:
                self._timer.cancel()
            self._timer = threading.Timer(DEBOUNCE_S, self._flush)
            self._timer.daemon = True
            self._timer.start()

    def _flush(self) -> None:
        with self._lock:
            paths, self._pending = sorted(self._pending), set()
        if paths:
            self.on_change(paths)
