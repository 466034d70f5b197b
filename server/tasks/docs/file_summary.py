"""'Document file': a summary of a whole file, at its top, in the language's convention.

Pure functions. The model sees the file's outline (its symbols and signatures,
from the chunker) and answers one or two sentences under a grammar; Hearth
places them: a Python module docstring, `//!` for Rust, `// Package x ...` for
Go, `/** @file ... */` for JS/TS and C/C++, a `/* ... */` header for Java.
Validation: the code is unchanged once comments and docstrings are removed, and
the summary talks about something the file defines.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

from ....indexer.chunker import chunk_file
from ....indexer.lines import newline_of, split_lines, with_newlines_of
from ...chat_format import Message
from ...prompts import task_prompt
from ..runner import Refusal
from . import comments as doccomment

GRAMMAR = "\n".join([
    r'root ::= [A-Z] [^\n*/"]{15,240} "."',
])


class FileDocError(Refusal):
    pass


@dataclass(frozen=True)
class FileDocTarget:
    language: str
    insert_line: int  # the summary goes above this line
    existing: tuple[int, int] | None  # lines of the current file documentation
    outline: str
    names: frozenset[str]  # identifiers the file defines (for grounding)
    package: str = ""  # Go


def _python_target(source: str) -> FileDocTarget:
    lines = split_lines(source)
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise FileDocError(f"the file does not parse: {exc.msg} (line {exc.lineno})") from exc
    start = 0
    while start < len(lines) and (lines[start].startswith("#!") or
                                  re.match(r"#.*coding[:=]", lines[start])):
        start += 1
    existing = None
    first = tree.body[0] if tree.body else None
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
            and isinstance(first.value.value, str):
        existing = (first.lineno - 1, (first.end_lineno or first.lineno) - 1)
    return FileDocTarget("python", existing[0] if existing else start, existing, "", frozenset())


def find_target(source: str, path: str, language: str) -> FileDocTarget:
    if language == "python":
        base = _python_target(source)
    else:
        if not doccomment.supported(language):
            raise FileDocError(f"Hearth cannot document {language} files")
        lines = split_lines(source)
        start = 1 if lines and lines[0].startswith("#!") else 0
        existing = None
        end = start
        style = _style(language)
        marker = {"rust": "//!", "go": "//"}.get(style, "/*")
        if language == "go":
            package_line = next((n for n, line in enumerate(lines)
                                 if line.startswith("package ")), None)
            if package_line is None:
                raise FileDocError("no package clause")
            start = package_line
            top = package_line
            while top > 0 and lines[top - 1].startswith("//"):
                top -= 1
            existing = (top, package_line - 1) if top < package_line else None
        elif lines[start:start + 1] and lines[start].lstrip().startswith(marker):
            if marker == "/*":
                while end < len(lines) and "*/" not in lines[end]:
                    end += 1
            else:
                while end + 1 < len(lines) and lines[end + 1].startswith(marker):
                    end += 1
            existing = (start, end)
        base = FileDocTarget(language, start, existing, "", frozenset())
    chunks = chunk_file(path, language, source.encode("utf-8", "surrogatepass")).chunks
    outline = [f"{c.kind} {c.symbol}: {c.signature or split_lines(c.text)[0]}".strip()
               for c in chunks if c.symbol][:40]
    names = frozenset(part.lower() for c in chunks for part in
                      re.findall(r"[A-Za-z][a-z]+|[A-Z]+(?![a-z])", c.symbol) if len(part) >= 4)
    names |= frozenset(p.lower() for p in re.findall(r"[A-Za-z][a-z]{3,}", Path(path).stem))
    package = ""
    if language == "go":
        m = re.search(r"^package\s+(\w+)", source, re.M)
        package = m.group(1) if m else ""
    return FileDocTarget(base.language, base.insert_line, base.existing, "\n".join(outline),
                         names, package)


def _style(language: str) -> str:
    return doccomment.STYLES.get(language, "python")


def build_prompt(source: str, target: FileDocTarget, *, path: str, chat: bool,
                 root: Path | None = None) -> tuple[list[Message] | None, str]:
    head = "\n".join(split_lines(source)[:30])
    values = {"path": path, "language": target.language, "outline": target.outline or "(none)",
              "head": head}
    return task_prompt("filedoc", root, chat=chat, **values)


def check_summary(raw: str, target: FileDocTarget, path: str) -> str:
    text = " ".join(raw.split())
    if len(text.split()) < 4:
        raise FileDocError(f"the summary says nothing: {text!r}")
    if re.search(r"[{};=]|\bdef |\bfunc |\breturn\b|\(\)", text) or path in text:
        raise FileDocError(f"the summary repeats code or the prompt: {text[:80]!r}")
    words = {w.lower()[:4] for w in re.findall(r"[A-Za-z]{4,}", text)}
    if target.names and not words & {n[:4] for n in target.names}:
        raise FileDocError(f"the summary is about nothing the file defines: {text[:80]!r}")
    return text if text.endswith(".") else text + "."


def render_summary(summary: str, target: FileDocTarget) -> str:
    """The file documentation text, ending with a newline."""
    style = _style(target.language)
    if target.language == "python":
        body = summary.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
        return f'"""{body}"""\n'
    if style == "rust":
        return f"//! {summary}\n"
    if style == "go":
        first, _, rest = summary.partition(" ")
        lead = f"Package {target.package} "
        if first.lower() in ("this", "the") and rest.lower().startswith(("package", "file")):
            rest = rest.split(" ", 1)[1] if " " in rest else rest
            summary = rest
        return f"// {lead}{summary[0].lower()}{summary[1:]}\n"
    if target.language == "java":
        return f"/*\n * {summary}\n */\n"
    return f"/**\n * @file {summary}\n */\n"


def apply(source: str, target: FileDocTarget, comment: str) -> str:
    lines = split_lines(source, keepends=True)
    comment = with_newlines_of(source, comment)
    if target.existing is not None:
        a, b = target.existing
        return "".join(lines[:a]) + comment + "".join(lines[b + 1:])
    blank = "" if target.language == "go" else newline_of(source)
    at = target.insert_line
    return "".join(lines[:at]) + comment + blank + "".join(lines[at:])


def validate(before: str, after: str, target: FileDocTarget) -> None:
    if target.language == "python":
        from .python import _strip_docstrings

        try:
            new_tree = ast.parse(after)
        except SyntaxError as exc:
            raise FileDocError(f"the file would no longer parse: {exc.msg}") from exc
        if _strip_docstrings(ast.parse(before)) != _strip_docstrings(new_tree):
            raise FileDocError("the code itself would change")
        return
    old_tokens, old_errors = doccomment._code_tokens(before, target.language)
    new_tokens, new_errors = doccomment._code_tokens(after, target.language)
    if new_errors and not old_errors:
        raise FileDocError("the file would no longer parse")
    if old_tokens != new_tokens:
        raise FileDocError("the code itself would change")
