"""The editor's open documents, with the LSP's line ends.

pygls splits a document with `str.splitlines()`, which also breaks at a form feed,
U+2028 and the like (see `indexer.lines`). Its incremental sync then applied an
edit on a line below the one the editor meant, so the server's copy of the buffer
drifted from the editor's, and every position converted through `lines` (review
diagnostics, a docstring's insertion point) pointed at the wrong line. The
workspace below makes its documents count lines as the LSP does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pygls.workspace import TextDocument, Workspace

from ...indexer.lines import split_lines


class LspTextDocument(TextDocument):
    """A pygls document whose `lines` end only at "\\n", "\\r\\n" and "\\r". They are
    kept until the text changes: pygls splits the whole text again on every use, and
    a handler asks for them once per diagnostic."""

    _lines_of: str | None = None
    _lines: tuple[str, ...] = ()

    @property
    def lines(self) -> Sequence[str]:
        source = self.source
        if source is not self._lines_of:
            self._lines = tuple(split_lines(source, keepends=True))
            self._lines_of = source
        return self._lines


class LspWorkspace(Workspace):
    """A pygls workspace whose documents are `LspTextDocument`s."""

    def _create_text_document(self, doc_uri: str, source: str | None = None,
                              version: int | None = None,
                              language_id: str | None = None) -> TextDocument:
        return LspTextDocument(doc_uri, source=source, version=version,
                               language_id=language_id, sync_kind=self._sync_kind,
                               position_codec=self._position_codec)


def as_lsp_workspace(workspace: Any) -> Any:
    """``workspace`` as an `LspWorkspace`: pygls builds a plain `Workspace` inside
    its own `initialize` handler, with no hook to choose the class; the subclass
    adds no state, so the object can take it as it is."""
    if type(workspace) is Workspace:
        workspace.__class__ = LspWorkspace
    return workspace
