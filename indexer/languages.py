"""Which language a file is written in, from its name.

Language ids are the LSP ones (``python``, ``typescriptreact``, ...), so a
document's ``languageId`` and a file on disk agree.
"""

from __future__ import annotations

import re
from pathlib import PurePath

EXTENSIONS: dict[str, str] = {
    ".py": "python", ".pyi": "python",
    ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript", ".jsx": "javascriptreact",
    ".ts": "typescript", ".mts": "typescript", ".cts": "typescript", ".tsx": "typescriptreact",
    ".go": "go", ".rs": "rust", ".java": "java",
    ".c": "c", ".h": "c",
    ".cc": "cpp", ".cpp": "cpp", ".cxx": "cpp", ".hpp": "cpp", ".hh": "cpp", ".hxx": "cpp",
}


# A `.h` file is C or C++. A C++ header read with the C grammar is mostly error
# recovery: about 5x slower to parse (the C headers were 60% of phase 1's parsing
# on the benchmark corpus), and its classes, namespaces and templates come out as
# noise. These are what C cannot have, at the start of a line (or `std::`).
_CPP_HEADER = re.compile(
    rb"^[ \t]*(?:namespace(?:\s+[\w:]+)?\s*\{|template\s*<|(?:public|private|protected)\s*:|"
    rb"using\s+namespace\s|#\s*include\s*<[\w/]+>|class\s+\w+(?:\s+final)?\s*[:{])|\bstd::",
    re.M)
SNIFF_BYTES = 32768


def language_of(path: str | PurePath, language_id: str | None = None,
                content: bytes | None = None) -> str | None:
    """The language of ``path``; an editor's ``languageId`` wins when it is known.
    With ``content``, a `.h` file that is C++ (see _CPP_HEADER) is "cpp"."""
    if language_id and language_id in set(EXTENSIONS.values()):
        return language_id
    suffix = PurePath(path).suffix.lower()
    lang = EXTENSIONS.get(suffix)
    if suffix == ".h" and content is not None and _CPP_HEADER.search(content[:SNIFF_BYTES]):
        return "cpp"
    return lang
