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
    bound = {name for i in imports for _, name in _names(i)}
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
        # A module the test uses and the answer never imported (small models write
        # `pytest.raises` and forget `import pytest`): the test would fail on a NameError.
        used = sorted({n.id for n in ast.walk(node)
                       if isinstance(n, ast.Name) and n.id in _ALLOWED_IMPORTS} - bound)
        out.append(TestCase(name, code.rstrip() + "\n",
                            imports + tuple(f"import {m}" for m in used)))
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
    imported, after = _imports(existing)
    missing = [i for i in wanted if not _names(i) <= imported]
    # What is added takes the file's line ends; the user's lines stay as they are.
    nl = newline_of(existing)
    text = existing.rstrip() + nl * 3 + with_newlines_of(existing, body)
    if missing:
        lines = split_lines(text, keepends=True)
        lines[after:after] = [i + nl for i in missing]
        text = "".join(lines)
    return text


def _names(import_line: str) -> set[tuple[str, str]]:
    """What an import statement binds, as (module, name) pairs: ("", "pytest") for
    `import pytest`, ("pkg.a", "double") for `from pkg.a import double`."""
    try:
        tree = ast.parse(import_line.strip())
    except SyntaxError:
        return {("", import_line.strip())}
    out: set[tuple[str, str]] = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            out |= {("", a.asname or a.name) for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            out |= {(node.module or "", a.asname or a.name) for a in node.names}
    return out


def _imports(existing: str) -> tuple[set[tuple[str, str]], int]:
    """What the test file's top-level imports bind (see _names), and the line after its
    last one: where missing imports go. Read from the syntax tree, so an import in
    parentheses over several lines (black's, isort's) counts whole; a file that does
    not parse is read line by line."""
    try:
        tree = ast.parse(existing)
    except SyntaxError:
        lines = split_lines(existing)
        heads = [n for n, line in enumerate(lines) if line.startswith(("import ", "from "))]
        return set().union(*(_names(lines[n]) for n in heads)), (heads[-1] + 1 if heads else 0)
    imported: set[tuple[str, str]] = set()
    after = 0
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            imported |= _names(ast.get_source_segment(existing, node) or "")
            after = node.end_lineno or node.lineno
    return imported, after


def _sort_imports(lines: list[str]) -> list[str]:
    std = sorted(i for i in lines if i.split()[1].split(".")[0] in _ALLOWED_IMPORTS)
    return std + [i for i in lines if i not in std]
