"""Apply LSP text edits to a string the way an editor does (UTF-16 columns).

Used by `hearth demo` (it is an editor of sorts) and by tests that check an
edit lands where it should.
"""

from __future__ import annotations

from collections.abc import Sequence

from lsprotocol import types


def utf16_to_index(line: str, units: int) -> int:
    """Python string index of a UTF-16 column in ``line``."""
    count = 0
    for i, ch in enumerate(line):
        if count >= units:
            return i
        count += 2 if ord(ch) > 0xFFFF else 1
    return len(line)


def offset_of(text: str, position: types.Position) -> int:
    lines = text.splitlines(keepends=True)
    if position.line >= len(lines):
        return len(text)
    start = sum(len(line) for line in lines[: position.line])
    content = lines[position.line].rstrip("\r\n")
    return start + utf16_to_index(content, position.character)


def apply_text_edits(text: str, edits: Sequence[types.TextEdit]) -> str:
    """Apply non-overlapping edits (all computed against ``text``)."""
    spans = sorted(((offset_of(text, e.range.start), offset_of(text, e.range.end), e.new_text)
                    for e in edits), reverse=True)
    for start, end, new_text in spans:
        text = text[:start] + new_text + text[end:]
    return text


def edits_for(edit: types.WorkspaceEdit, uri: str) -> list[types.TextEdit]:
    """The edits a WorkspaceEdit makes to one document (either form of WorkspaceEdit)."""
    out: list[types.TextEdit] = []
    for change in edit.document_changes or []:
        if isinstance(change, types.TextDocumentEdit) and change.text_document.uri == uri:
            out.extend(e for e in change.edits if isinstance(e, types.TextEdit))
    if edit.changes and uri in edit.changes:
        out.extend(edit.changes[uri])
    return out
