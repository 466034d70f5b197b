"""Repository context for a completion: code elsewhere in the workspace like the lines
above the cursor (the index's lexical search), and the definitions of the names near
the cursor (its symbol table), read from the files (the edited document's own from the
editor's text). Blocking (SQLite, files): call in a thread."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from ....indexer.discovery import read_regular_file
from ....indexer.lines import split_lines
from ...index_service import IndexNotReady
from ...settings import Settings, shareable
from .prompt import (
    Definition,
    Snippet,
    best_snippet,
    identifiers_near,
    lines_above,
    pick_definitions,
    snippet_query,
)
from .run import CompletionRequest

FILES_CACHED = 64  # other files' lines kept for definition heads (by path and mtime)
MAX_FILE_BYTES = 1 << 20
LOOKUP_LIMIT = 8  # rows asked of the symbol table per name (exact names come first)
SNIPPET_CANDIDATES = 8  # chunks the lexical search gives for the snippet to be chosen from
SNIPPETS_KEPT = 64  # documents whose last snippet is remembered


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
            # (not read_text: a FIFO in the indexed file's place blocked the completion)
            found = split_lines(read_regular_file(str(file), MAX_FILE_BYTES)[1].decode(
                "utf-8", "replace"))
            with self._lock:
                self._cache[key] = found
                while len(self._cache) > self.size:
                    self._cache.popitem(last=False)
            return found
        except OSError:
            return None


def repo_definitions(index: Any, request: CompletionRequest, rel: str, settings: Settings,
                     files: FileLines | None = None, *, private: Private = None
                     ) -> tuple[Definition, ...]:
    """Definitions of the names near the cursor from ``index`` (an IndexService: its
    ``symbols`` and ``root``); ``rel`` is the document's path in the index. With model
    servers in the settings, privacy.localOnly files are never read (as
    runner.shareable_context does for the other tasks' context)."""
    names = identifiers_near(request.prefix, request.suffix)
    if not names:
        return ()
    current = split_lines(request.prefix + request.suffix)
    root = Path(index.root)
    lines_of = files or FileLines()

    def read(path: str) -> Sequence[str] | None:
        return current if path == rel else lines_of(root / path)

    return tuple(pick_definitions(names, lambda name: index.symbols(name, LOOKUP_LIMIT), read,
                                  lambda path: shareable(settings, path, private), current=rel))


# Whether a file of the index must stay local (None: by the settings' privacy.localOnly;
# the server's judges each file as a task about it would be judged).
Private = Callable[[str], bool] | None


class RecentSnippets:
    """Each document's last snippet of similar code, for the ``size`` documents used
    most recently: kept while nearly as good (best_snippet's ``keep``), so the prompt's
    start, and the KV cache behind it, survives a new line."""

    def __init__(self, size: int = SNIPPETS_KEPT) -> None:
        self.size = size
        self._by_uri: OrderedDict[str, Snippet] = OrderedDict()

    def get(self, uri: str) -> Snippet | None:
        return self._by_uri.get(uri)

    def remember(self, uri: str, snippet: Snippet | None) -> None:
        """``snippet`` is the document's now; None forgets the one before."""
        self._by_uri.pop(uri, None)
        if snippet is not None:
            self._by_uri[uri] = snippet
            while len(self._by_uri) > self.size:
                self._by_uri.popitem(last=False)

    def __len__(self) -> int:
        return len(self._by_uri)


def repo_snippet(index: Any, request: CompletionRequest, rel: str, settings: Settings,
                 files: FileLines | None = None, keep: Snippet | None = None, *,
                 private: Private = None) -> Snippet | None:
    """The code of another file most like the lines above the cursor, from the chunks
    that ``index`` (an IndexService) finds for their names (``keep``, the document's
    snippet before, while it is nearly as good); None while the index is not ready."""
    above = lines_above(request.prefix)
    query = snippet_query(above)
    if not query:
        return None
    try:
        hits = index.search(query, k=SNIPPET_CANDIDATES, dense=False)
    except IndexNotReady:  # still being built: no snippet, and no waiting for one
        return None
    lines_of = files or FileLines()
    candidates = []
    for hit in hits:
        if hit.path == rel or not shareable(settings, hit.path, private):
            continue  # the document window shows its own file
        lines = lines_of(Path(index.root) / hit.path)
        if lines is not None:
            candidates.append((hit.path, lines, hit.start_line - 1, hit.end_line))
    if keep is not None and not shareable(settings, keep.path, private):
        keep = None  # (a model server was configured since)
    return best_snippet(above, candidates, keep=keep)


def with_repo_context(index: Any, request: CompletionRequest, rel: str, settings: Settings,
                      files: FileLines | None = None, keep: Snippet | None = None, *,
                      private: Private = None) -> CompletionRequest:
    """``request`` with its repository context (nothing when the budget is 0); ``keep``:
    the document's snippet before."""
    if settings.completion.repo_context_tokens <= 0:
        return request
    files = files or FileLines()
    return replace(request, snippet=repo_snippet(index, request, rel, settings, files, keep,
                                                 private=private),
                   definitions=repo_definitions(index, request, rel, settings, files,
                                                private=private))


__all__ = ["FileLines", "RecentSnippets", "repo_definitions", "repo_snippet", "with_repo_context"]
