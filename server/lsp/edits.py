"""LSP text edits both ways: the one builder of versioned WorkspaceEdits the features
send, and applying edits to a string the way an editor does (UTF-16 columns) for
`hearth demo` (an editor of sorts) and the tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from lsprotocol import types
from pygls.uris import from_fs_path
from pygls.workspace import TextDocument
from pygls.workspace.position_codec import ServerTextPosition

from ...indexer.lines import split_lines


def versioned_edit(doc: TextDocument, start: tuple[int, int] | types.Position,
                   end: tuple[int, int] | types.Position, new_text: str,
                   ) -> types.WorkspaceEdit:
    """Replace ``start``..``end`` of ``doc`` at its current version (the editor refuses
    the edit if the document changed since). Tuples are (line, Python column) and are
    converted to the client's units; Positions are already in them."""
    def client(pos: tuple[int, int] | types.Position) -> types.Position:
        if isinstance(pos, types.Position):
            return pos
        return doc.position_to_client_units(ServerTextPosition(*pos))

    return types.WorkspaceEdit(document_changes=[types.TextDocumentEdit(
        text_document=types.OptionalVersionedTextDocumentIdentifier(uri=doc.uri,
                                                                    version=doc.version),
        edits=[types.TextEdit(range=types.Range(start=client(start), end=client(end)),
                              new_text=new_text)])])


def whole_document_edit(doc: TextDocument, new_text: str) -> types.WorkspaceEdit:
    """Replace all of ``doc`` (at its current version) with ``new_text``."""
    return versioned_edit(doc, types.Position(line=0, character=0),
                          types.Position(line=len(doc.lines), character=0), new_text)


def file_edit(path: Path, old_text: str | None, new_text: str,
              open_doc: TextDocument | None) -> types.WorkspaceEdit:
    """Turn ``old_text`` into ``new_text`` in ``path``: a versioned edit of the editor's
    buffer when the file is open there (``old_text`` is then that buffer's text), else
    an edit of the file on disk (created first when ``old_text`` is None)."""
    if open_doc is not None:
        return whole_document_edit(open_doc, new_text)
    uri = from_fs_path(str(path)) or path.as_uri()
    changes: list[types.TextDocumentEdit | types.CreateFile] = []
    if old_text is None:
        changes.append(types.CreateFile(uri=uri, options=types.CreateFileOptions(
            ignore_if_exists=True)))
    end = types.Position(line=len(split_lines(old_text or "")), character=0)
    changes.append(types.TextDocumentEdit(
        text_document=types.OptionalVersionedTextDocumentIdentifier(uri=uri, version=None),
        edits=[types.TextEdit(range=types.Range(start=types.Position(line=0, character=0),
                                                end=end), new_text=new_text)]))
    return types.WorkspaceEdit(document_changes=changes)


def utf16_to_index(line: str, units: int) -> int:
    """Python string index of a UTF-16 column in ``line``."""
    count = 0
    for i, ch in enumerate(line):
        if count >= units:
            return i
        count += 2 if ord(ch) > 0xFFFF else 1
    return len(line)


def offset_of(text: str, position: types.Position) -> int:
    lines = split_lines(text, keepends=True)
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
