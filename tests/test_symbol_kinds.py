"""`workspace/symbol` kinds: structs, enums, traits and impls are not Variables."""

from __future__ import annotations

import pytest
from lsprotocol.types import SymbolKind

from hearth_lsp.indexer.chunker import chunk_file
from hearth_lsp.server.lsp.features.workspace import symbol_kind

SOURCES = {
    ("a.rs", "rust"): b"struct Point { x: i32 }\nenum Color { Red }\n"
                      b"impl Point { fn norm(&self) -> i32 { self.x } }\n"
                      b"trait Shape { fn area(&self) -> f64; }\nunion U { a: u32 }\n"
                      b"mod inner { fn helper() {} }\n",
    ("a.go", "go"): b"package p\ntype S struct{}\ntype I interface{}\nfunc (s S) M() {}\n"
                    b"func F() {}\n",
    ("a.c", "c"): b"struct s {int a;};\nenum e {X};\nint f(void){return 0;}\n",
    ("a.py", "python"): b"class A:\n    def m(self):\n        pass\ndef f():\n    pass\n",
}

EXPECTED = {
    "rust": {"Point": SymbolKind.Struct, "Color": SymbolKind.Enum, "norm": SymbolKind.Method,
             "Shape": SymbolKind.Interface, "U": SymbolKind.Struct,
             "helper": SymbolKind.Function},
    "go": {"S": SymbolKind.Struct, "I": SymbolKind.Interface, "M": SymbolKind.Method,
           "F": SymbolKind.Function},
    "c": {"s": SymbolKind.Struct, "e": SymbolKind.Enum, "f": SymbolKind.Function},
    "python": {"A": SymbolKind.Class, "m": SymbolKind.Method, "f": SymbolKind.Function},
}


@pytest.mark.parametrize(("path", "lang"), list(SOURCES))
def test_definitions_get_the_matching_symbol_kind(path, lang):
    defs = {s.name: symbol_kind(s.kind) for s in chunk_file(path, lang, SOURCES[path, lang]).symbols
            if s.is_definition}
    assert {name: defs.get(name) for name in EXPECTED[lang]} == EXPECTED[lang]
