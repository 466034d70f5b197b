"""Repository context for a completion: the definitions of the names near the cursor,
from a workspace index's symbol table, their heads read from the files (the edited
document's own from the editor's text). Blocking (SQLite, files): call in a thread."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ...settings import Settings, local_only
from .prompt import Definition, identifiers_near, pick_definitions
from .run import CompletionRequest

FILES_CACHED = 64  # other files' lines kept for definition heads (by path and mtime)
MAX_FILE_BYTES = 1 << 20
LOOKUP_LIMIT = 8  # rows asked of the symbol table per name (exact names come first)


class FileLines:
    """Files' lines, cached by path and modification time (thread-safe)."""

    def __init__(self, size: int = FILES_CACHED) -> None:
        self.size = size
        self._cache: OrderedDict[tuple[str, int], list[str]] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, file: Path) -> list[str] | None:
        try:
            st = file.stat()
            if st.st_size > MAX_FILE_BYTES:
                return None
            key = (str(file), st.st_mtime_ns)
            with self._lock:
                found = self._cache.get(key)
                if found is not None:
                    self._cache.move_to_end(key)
                    return found
            found = file.read_text(encoding="utf-8", errors="replace").splitlines()
            with self._lock:
                self._cache[key] = found
                while len(self._cache) > self.size:
                    self._cache.popitem(last=False)
            return found
        except OSError:
            return None


def repo_definitions(index: Any, request: CompletionRequest, rel: str, settings: Settings,
                     files: FileLines | None = None) -> tuple[Definition, ...]:
    """Definitions of the names near the cursor from ``index`` (an IndexService: its
    ``symbols`` and ``root``); ``rel`` is the document's path in the index. With model
    servers in the settings, privacy.localOnly files are never read (as
    runner.shareable_context does for the other tasks' context)."""
    names = identifiers_near(request.prefix, request.suffix)
    if not names:
        return ()
    current = (request.prefix + request.suffix).splitlines()
    root = Path(index.root)
    lines_of = files or FileLines()

    def read(path: str) -> Sequence[str] | None:
        return current if path == rel else lines_of(root / path)

    def allowed(path: str) -> bool:
        return not (settings.backends and local_only(settings, [path]))

    return tuple(pick_definitions(names, lambda name: index.symbols(name, LOOKUP_LIMIT), read,
                                  allowed, current=rel))


__all__ = ["FileLines", "repo_definitions"]
