"""Chunker goldens per language: symbols, kinds, scopes, line ranges, docs."""

from __future__ import annotations

import pytest

from hearth_lsp.indexer.chunker import MAX_CHUNK_LINES, WINDOW_LINES, chunk_file
from hearth_lsp.indexer.languages import language_of


def outline(path: str, source: str):
    result = chunk_file(path, language_of(path), source.encode())
    return [(c.kind, c.symbol, c.start_line + 1, c.end_line + 1) for c in result.chunks], result


PYTHON = '''"""Module doc."""
import os

X = 1


@dataclass
class Item:
    """An item."""

    sku: str

    def price(self) -> int:
        return 1

    @property
    def name(self):
        def helper():
            return 2
        return helper()


async def fetch(url):
    # fetches
    return url
'''


GOLDENS = {
    "a.py": (PYTHON, [
        ("statements", "", 1, 4), ("class", "Item", 7, 12), ("method", "Item.price", 13, 14),
        ("method", "Item.name", 16, 20), ("function", "fetch", 23, 25)]),
    "a.js": ("/** Adds. */\nexport function add(a, b) { return a + b; }\nclass Foo extends Bar {\n"
             "  constructor() { super(); }\n  run(y) { return y; }\n}\nconst mul = (a, b) => a * b;\n"
             "module.exports = { add };\n", [
                 ("function", "add", 1, 2), ("class", "Foo", 3, 3), ("method", "Foo.constructor", 4, 4),
                 ("method", "Foo.run", 5, 5), ("function", "mul", 7, 7), ("statements", "", 8, 8)]),
    "b.ts": ("export interface P { x: number }\ntype T = string;\n@dec()\nexport class Svc {\n"
             "  private n = 1;\n  async go(a: string): Promise<void> {}\n}\nenum E { A }\n", [
                 ("interface", "P", 1, 1), ("type", "T", 2, 2), ("class", "Svc", 3, 5),
                 ("method", "Svc.go", 6, 6), ("enum", "E", 8, 8)]),
    "c.tsx": ("export function App(): JSX.Element {\n  return <div>hi</div>;\n}\n", [
        ("function", "App", 1, 3)]),
    "d.go": ("package main\n\n// Add adds.\nfunc Add(a, b int) int { return a + b }\n\n"
             "type S struct { X int }\n\nfunc (s *S) Get() int { return s.X }\n", [
                 ("statements", "", 1, 1), ("function", "Add", 3, 4), ("type", "S", 6, 6),
                 ("method", "S.Get", 8, 8)]),
    "e.rs": ("/// Adds.\npub fn add(a: i32) -> i32 { a }\nstruct S { x: i32 }\nimpl S {\n"
             "    fn get(&self) -> i32 { self.x }\n}\n", [
                 ("function", "add", 1, 2), ("struct", "S", 3, 3), ("impl", "S", 4, 4),
                 ("method", "S.get", 5, 5)]),
    "F.java": ("package a;\n/** Doc */\npublic class A {\n  int x;\n  public A() {}\n"
               "  /** m */\n  public int m(int y) { return y; }\n}\n", [
                   ("statements", "", 1, 1), ("class", "A", 2, 4), ("method", "A.A", 5, 5),
                   ("method", "A.m", 6, 7)]),
    "g.c": ("#include <stdio.h>\n/* add */\nint add(int a, int b) { return a + b; }\n"
            "struct S { int x; };\n", [
                ("statements", "", 1, 1), ("function", "add", 2, 3), ("struct", "S", 4, 4)]),
    "h.cpp": ("namespace ns {\nclass A {\npublic:\n  int m(int y) { return y; }\n};\n"
              "int A::n() { return 1; }\n}\n", [
                  ("namespace", "ns", 1, 1), ("class", "ns.A", 2, 3), ("method", "ns.A.m", 4, 4),
                  ("method", "ns.A.n", 6, 6)]),
}


@pytest.mark.parametrize("path", sorted(GOLDENS))
def test_chunk_goldens(path):
    source, expected = GOLDENS[path]
    got, result = outline(path, source)
    assert got == expected
    assert not result.parse_errors


def test_docs_and_signatures_are_extracted():
    _, result = outline("a.py", PYTHON)
    item = next(c for c in result.chunks if c.symbol == "Item")
    assert item.doc == "An item." and item.signature == "class Item"
    price = next(c for c in result.chunks if c.symbol == "Item.price")
    assert price.signature == "def price(self) -> int"
    _, js = outline("a.js", GOLDENS["a.js"][0])
    assert next(c for c in js.chunks if c.symbol == "add").doc == "Adds."
    _, go = outline("d.go", GOLDENS["d.go"][0])
    assert next(c for c in go.chunks if c.symbol == "Add").doc == "Add adds."


def test_long_functions_split_at_statement_boundaries_with_signature():
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_CHUNK_LINES * 2 + 10))
    source = f"def long(a, b):\n{body}    return a\n"
    chunks = chunk_file("long.py", "python", source.encode()).chunks
    assert [c.part for c in chunks] == [1, 2, 3]
    assert all(c.symbol == "long" and c.kind == "function" for c in chunks)
    assert chunks[1].text.startswith("def long(a, b)\n    ...  # long, part 2")
    covered = [line for c in chunks for line in range(c.start_line, c.end_line + 1)]
    assert covered == list(range(len(source.splitlines())))  # no gaps, no overlap
    assert all(c.end_line - c.start_line < MAX_CHUNK_LINES for c in chunks)


def test_unicode_lines_and_utf16_symbol_columns():
    source = ('s = "日本"; t = "😀😀"\n\ndef café(ñ):\n    return ñ\n\n'
              'class Ünï:\n    def m(self):\n        return café(1)\n')
    result = chunk_file("u.py", "python", source.encode())
    assert [(c.symbol, c.start_line) for c in result.chunks] == [
        ("", 0), ("café", 2), ("Ünï", 5), ("Ünï.m", 6)]
    defs = {s.name: s for s in result.symbols if s.is_definition}
    assert (defs["café"].line, defs["café"].col, defs["café"].end_col) == (2, 4, 8)
    call = next(s for s in result.symbols if not s.is_definition and s.name == "café")
    assert (call.line, call.col) == (7, 15)


def test_files_without_a_grammar_fall_back_to_overlapping_windows():
    text = "".join(f"line {i}\n" for i in range(150))
    chunks = chunk_file("notes.md", None, text.encode()).chunks
    assert [c.kind for c in chunks] == ["window"] * 3
    assert chunks[0].end_line == WINDOW_LINES - 1 and chunks[1].start_line < chunks[0].end_line


def test_broken_and_binary_ish_sources_never_raise():
    result = chunk_file("bad.py", "python", b"def f(:\n    return \xff\xfe\n\nclass C:\n    pass\n")
    assert result.parse_errors and any(c.symbol == "C" for c in result.chunks)
    assert chunk_file("empty.py", "python", b"").chunks == []


def test_content_hash_changes_with_the_text_only():
    a = chunk_file("a.py", "python", b"def f():\n    return 1\n").chunks[0]
    b = chunk_file("b.py", "python", b"\n\ndef f():\n    return 1\n").chunks[0]
    c = chunk_file("a.py", "python", b"def f():\n    return 2\n").chunks[0]
    assert a.hash == b.hash != c.hash


def test_references_and_definitions_from_tags_queries():
    result = chunk_file("a.py", "python", PYTHON.encode())
    defs = {(s.name, s.kind) for s in result.symbols if s.is_definition}
    assert {("Item", "class"), ("price", "method"), ("fetch", "function")} <= defs
    assert any(s.name == "helper" and not s.is_definition for s in result.symbols)


def test_calls_of_python_builtins_are_not_stored_as_references():
    source = b"def total(items):\n    return len(items) + helper(sum(items))\n"
    refs = {s.name for s in chunk_file("a.py", "python", source).symbols if not s.is_definition}
    assert refs == {"helper"}
    # A workspace definition of the same name is still a definition.
    defs = chunk_file("b.py", "python", b"def len(x):\n    return 0\n").symbols
    assert [(s.name, s.is_definition) for s in defs] == [("len", True)]


CPP_HEADER = b"""#pragma once
#include <vector>

namespace at {
class Tensor {
 public:
  int dim() const { return 0; }
};
}  // namespace at
"""
C_HEADER = b"""#ifndef POINT_H
#define POINT_H
#include <stddef.h>
struct point { int x, y; };
int point_norm(const struct point *p);
#endif
"""


def test_a_cpp_header_is_read_as_cpp_and_a_c_header_as_c():
    assert language_of("at/Tensor.h", content=CPP_HEADER) == "cpp"
    assert language_of("geo/point.h", content=C_HEADER) == "c"
    assert language_of("geo/point.h") == "c"  # no content: by the name alone
    assert language_of("at/Tensor.h", "c", content=CPP_HEADER) == "c"  # the editor's word wins
    result = chunk_file("at/Tensor.h", "cpp", CPP_HEADER)
    assert not result.parse_errors
    assert ("method", "at.Tensor.dim") in [(c.kind, c.symbol) for c in result.chunks]
