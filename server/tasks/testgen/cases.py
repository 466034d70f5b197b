"""Unit tests for a Python function: where they go, the prompt, what is kept, the merge.

Pure functions. The project's own layout decides the test file (its tests
folder, `test_x.py` or `x_test.py`), the import line is computed (never left
to the model), only top-level `test_*` functions of the model's answer are
kept, and they are merged into the test file with imports de-duplicated.
Whether a test passes is decided by running it (``sandbox.py``), not here.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import PurePosixPath

from ....indexer.lines import newline_of, split_lines, with_newlines_of
from ... import cleaning
from ...chat_format import Message
from ...prompts import task_prompt
from ..runner import Refusal

_ALLOWED_IMPORTS = {"pytest", "math", "re", "json", "datetime", "decimal", "fractions",
                    "collections", "itertools", "functools", "dataclasses", "typing", "enum",
                    "string", "random", "statistics", "pathlib", "io", "textwrap", "unittest"}


class TestGenError(Refusal):
    pass


@dataclass(frozen=True)
class Layout:
    test_path: str  # relative to the root, posix
    module: str  # dotted import path of the code under test
    exists: bool


def module_name(rel: str, files: set[str]) -> str:
    """`src/inventory/pricing.py` -> `inventory.pricing` (up to the last folder that is a
    package; a `src/` layout is understood)."""
    parts = list(PurePosixPath(rel).with_suffix("").parts)
    if parts and parts[-1] == "__init__":
        parts = parts[:-1]
    start = len(parts) - 1
    while start > 0 and "/".join(parts[:start]) + "/__init__.py" in files:
        start -= 1
    # parts[start:] are packages down to the module; what is above ("src", the
    # repository root) only holds them.
    return ".".join(parts[start:])


def find_layout(rel: str, files: set[str]) -> Layout:
    """The test file for module ``rel`` following the project's habits."""
    tests = sorted(f for f in files if re.search(r"(^|/)(test_[^/]*|[^/]*_test)\.py$", f))
    suffix_style = sum(f.endswith("_test.py") for f in tests) > len(tests) / 2
    name = PurePosixPath(rel).stem
    file_name = f"{name}_test.py" if suffix_style else f"test_{name}.py"
    folders = [str(PurePosixPath(f).parent) for f in tests]
    # The folder that holds most tests (a tests/ tree mirroring the packages is not
    # guessed at: new tests go beside the others); `tests/` in a project without any.
    folder = max(set(folders), key=folders.count) if folders else "tests"
    path = file_name if folder in (".", "") else f"{folder}/{file_name}"
    return Layout(path, module_name(rel, files), path in files)


def style_sample(test_source: str, limit: int = 1200) -> str:
    """A few existing tests (imports, fixtures, asserts) to show the model the house style."""
    return test_source[:limit].rsplit("\n", 1)[0] if len(test_source) > limit else test_source


def build_prompt(function_source: str, *, qualname: str, layout: Layout,
                 existing_tests: str, context: str = "", chat: bool = True,
                 feedback: str = "", root=None) -> tuple[list[Message] | None, str]:
    name = qualname.split(".")[0]
    values = {"function": function_source.rstrip(), "qualname": qualname,
              "module": layout.module, "import_line": f"from {layout.module} import {name}",
              "style": style_sample(existing_tests).rstrip() or "(no tests yet)",
              "context": (f"Related code:\n{context}\n\n" if context else ""),
              "feedback": (f"These tests failed last time; fix them (the code is right):\n"
                           f"{feedback}\n\n" if feedback else "")}
    return task_prompt("tests", root, chat=chat, **values)


PREFILL = "def test_"


@dataclass(frozen=True)
class TestCase:
    name: str
    source: str  # the function's code
    imports: tuple[str, ...]  # import statements it needs


def _body_key(node: ast.FunctionDef) -> str:
    return ast.dump(ast.Module(body=node.body, type_ignores=[]))


def test_bodies(source: str) -> set[str]:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    return {_body_key(n) for n in tree.body if isinstance(n, ast.FunctionDef)}


def parse_tests(raw: str, *, taken: set[str] | frozenset[str] = frozenset(), calls: str = "",
                existing: str = "") -> list[TestCase]:
    """Top-level `test_*` functions in the answer (which starts after the prefill) that
    assert something, call ``calls`` (the function under test) and are not copies of
    a test ``existing`` already has."""
    text = cleaning.strip_code_fences(raw)
    if not text.lstrip().startswith(("def ", "import ", "from ", "@", "class ")):
        text = PREFILL + text
    # Keep the longest prefix that parses: a cut-off answer loses its last test only.
    lines = split_lines(text)
    tree = None
    for end in range(len(lines), 0, -1):
        try:
            tree = ast.parse("\n".join(lines[:end]))
            break
        except SyntaxError:
            continue
    if tree is None:
        return []
    imports = tuple(ast.get_source_segment("\n".join(lines), n) or "" for n in tree.body
                    if isinstance(n, (ast.Import, ast.ImportFrom)) and _allowed_import(n))
    out: list[TestCase] = []
    names = set(taken)
    bodies = test_bodies(existing)
    src = "\n".join(lines)
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef) or not node.name.startswith("test"):
            continue
        if not any(isinstance(n, ast.Assert) or _is_raises(n) for n in ast.walk(node)):
            continue  # a test that checks nothing proves nothing
        if calls and not any(isinstance(n, ast.Name) and n.id == calls or
                             isinstance(n, ast.Attribute) and n.attr == calls
                             for n in ast.walk(node)):
            continue  # not a test of this function
        if _body_key(node) in bodies:
            continue  # a copy of a test the file already has
        bodies.add(_body_key(node))
        code = ast.get_source_segment(src, node) or ""
        if node.decorator_list:
            first = min(d.lineno for d in node.decorator_list)
            code = "\n".join(lines[first - 1: node.end_lineno])
        name = node.name
        n = 2
        while name in names:
            name = f"{node.name}_{n}"
            n += 1
        if name != node.name:
            code = re.sub(rf"\bdef {node.name}\(", f"def {name}(", code, count=1)
        names.add(name)
        out.append(TestCase(name, code.rstrip() + "\n", imports))
    return out


def _allowed_import(node: ast.Import | ast.ImportFrom) -> bool:
    mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
    return all(m.split(".")[0] in _ALLOWED_IMPORTS for m in mods)


def _is_raises(node: ast.AST) -> bool:
    return isinstance(node, ast.With) and any(
        "raises" in (ast.unparse(item.context_expr) if hasattr(ast, "unparse") else "")
        for item in node.items)


def test_names(source: str) -> set[str]:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    return {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}


def merge(existing: str | None, tests: list[TestCase], import_line: str) -> str:
    """The test file with ``tests`` appended and the imports they need, each once."""
    wanted = [import_line, *dict.fromkeys(i for t in tests for i in t.imports)]
    body = "\n\n".join(t.source.rstrip() for t in tests) + "\n"
    if not existing or not existing.strip():
        return "\n".join(_sort_imports(wanted)) + "\n\n\n" + body
    have = {line.strip() for line in split_lines(existing)}
    missing = [i for i in wanted if i.strip() not in have and not _covered(i, existing)]
    # What is added takes the file's line ends; the user's lines stay as they are.
    nl = newline_of(existing)
    text = existing.rstrip() + nl * 3 + with_newlines_of(existing, body)
    if missing:
        lines = split_lines(text, keepends=True)
        last_import = max((n for n, line in enumerate(lines)
                           if line.startswith(("import ", "from "))), default=-1)
        lines[last_import + 1: last_import + 1] = [i + nl for i in missing]
        text = "".join(lines)
    return text


def _covered(import_line: str, existing: str) -> bool:
    """`from m import a` is covered when `from m import ...` already names ``a``."""
    m = re.match(r"from (\S+) import (\w+)$", import_line.strip())
    if not m:
        return False
    return any(re.match(rf"from {re.escape(m[1])} import .*\b{m[2]}\b", line)
               for line in split_lines(existing))


def _sort_imports(lines: list[str]) -> list[str]:
    std = sorted(i for i in lines if i.split()[1].split(".")[0] in _ALLOWED_IMPORTS)
    return std + [i for i in lines if i not in std]
