"""Which language a file is written in, from its name.

Language ids are the LSP ones (``python``, ``typescriptreact``, ...), so a
document's ``languageId`` and a file on disk agree.
"""

from __future__ import annotations

from pathlib import PurePath

EXTENSIONS: dict[str, str] = {
    ".py": "python", ".pyi": "python",
    ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript", ".jsx": "javascriptreact",
    ".ts": "typescript", ".mts": "typescript", ".cts": "typescript", ".tsx": "typescriptreact",
    ".go": "go", ".rs": "rust", ".java": "java",
    ".c": "c", ".h": "c",
    ".cc": "cpp", ".cpp": "cpp", ".cxx": "cpp", ".hpp": "cpp", ".hh": "cpp", ".hxx": "cpp",
}


def language_of(path: str | PurePath, language_id: str | None = None) -> str | None:
    """The language of ``path``; an editor's ``languageId`` wins when it is known."""
    if language_id and language_id in set(EXTENSIONS.values()):
        return language_id
    return EXTENSIONS.get(PurePath(path).suffix.lower())
