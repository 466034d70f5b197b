"""Lines the way editors, git, tree-sitter and Python's tokenizer count them.

`str.splitlines()` also ends a line at a form feed, a vertical tab, \\x1c-\\x1e, NEL
(\\x85) and U+2028/U+2029. Source files carry those (a form feed between sections
of GNU-style code, U+2028 pasted into a string), and the LSP, git and every parser
here do not break lines there: a line number counted with `splitlines()` then points
below the line meant, and an edit built from it lands on other code. Everything that
turns text into numbered lines goes through `split_lines`.
"""

from __future__ import annotations

import re
from pathlib import Path

# The line ends of the LSP (3.17: "\n", "\r\n" and "\r"), git and Python's tokenizer.
_LINE_END = re.compile(r"\r\n|\r|\n")
# One line with its end, or the last line without one.
_LINE_WITH_END = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")
# What str.splitlines() breaks at besides those: if none is present it agrees.
_OTHER_BREAKS = re.compile("[\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")


def split_lines(text: str, keepends: bool = False) -> list[str]:
    """``text.splitlines(keepends)``, with only "\\n", "\\r\\n" and "\\r" as line ends."""
    if _OTHER_BREAKS.search(text) is None:  # the common case, at C speed
        return text.splitlines(keepends)
    if keepends:
        return _LINE_WITH_END.findall(text)
    lines = _LINE_END.split(text)
    if lines[-1] == "":  # splitlines() gives no empty line after a final line end
        lines.pop()
    return lines


def newline_of(text: str) -> str:
    """The line end ``text`` uses (its first one; "\\n" when it has none)."""
    found = _LINE_END.search(text)
    return found.group() if found else "\n"


def with_newlines_of(source: str, text: str) -> str:
    """``text`` with its line ends made ``source``'s: what goes into a file written
    with "\\r\\n" is written with "\\r\\n" too, not a mix of both."""
    nl = newline_of(source)
    return _LINE_END.sub(nl, text) if nl != "\n" or "\r" in text else text


def read_source(path: Path) -> str:
    """A file's text exactly, line ends included (`Path.read_text` turns "\\r\\n" into
    "\\n", and the file written back lost its CRLF on every line). Raises OSError and
    UnicodeDecodeError."""
    return path.read_bytes().decode("utf-8")


def write_source(path: Path, text: str) -> None:
    """Write ``text`` as it is (no newline translation)."""
    path.write_bytes(text.encode("utf-8"))
