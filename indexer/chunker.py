"""Split a source file into symbol-aware chunks with tree-sitter.

A chunk is a function or method, the header of a class/struct/impl (its
signature, doc and fields, without the methods, which are chunks of their
own), another definition (struct, enum, type alias), or a merged run of small
top-level statements. A symbol too long for a prompt is split at statement
boundaries; every piece keeps the signature and scope. Languages without a
grammar fall back to overlapping line windows.

Lines are 0-based here; the search output converts them to 1-based.
"""

from __future__ import annotations

import builtins
import functools
import hashlib
import re
from dataclasses import dataclass, field
from typing import NamedTuple

import tree_sitter as ts

from .grammars import LangSpec, language, spec_for, tags_query
from .lines import split_lines

MAX_CHUNK_LINES = 120  # longer symbols are split at statement boundaries
RUN_MAX_LINES = 40  # merged top-level statements per chunk
WINDOW_LINES, WINDOW_OVERLAP = 60, 10


@dataclass
class Chunk:
    path: str
    language: str
    symbol: str  # qualified name, e.g. "Inventory.add"; "" for statement runs
    kind: str  # function | method | class | struct | ... | statements | window
    start_line: int
    end_line: int  # inclusive
    text: str
    signature: str = ""
    doc: str = ""
    part: int = 0  # 1.. for pieces of a split symbol
    hash: str = field(init=False)

    def __post_init__(self) -> None:
        self.hash = hashlib.sha1(
            f"{self.language}\0{self.symbol}\0{self.text}".encode("utf-8", "surrogatepass")
        ).hexdigest()

    @property
    def name(self) -> str:
        return self.symbol.rsplit(".", 1)[-1]


class Symbol(NamedTuple):
    """A definition or reference; a tuple in the store's row order (store.SymbolRow):
    phase 1 makes ~100 per file, and a frozen dataclass took 3x as long to build."""

    line: int
    col: int  # UTF-16 column, as the LSP wants it
    is_definition: bool
    name: str
    kind: str  # e.g. function, class, method, call
    end_col: int


@dataclass
class FileChunks:
    chunks: list[Chunk]
    symbols: list[Symbol]
    parse_errors: bool = False


# ------------------------------------------------------------------ helpers


def node_text(node: ts.Node | None) -> str:
    return node.text.decode("utf-8", "replace") if node is not None and node.text else ""


def definition_name(node: ts.Node) -> str:
    """A definition's name across grammars (C declarators, Rust impls, Go types...)."""
    named = node.child_by_field_name("name")
    if named is not None:
        return node_text(named)
    if node.type == "impl_item":  # impl Trait for Type
        trait, typ = node.child_by_field_name("trait"), node.child_by_field_name("type")
        return f"{node_text(trait)} for {node_text(typ)}" if trait is not None else node_text(typ)
    if node.type == "type_declaration":
        spec = next((c for c in node.named_children if c.type in ("type_spec", "type_alias")), None)
        return definition_name(spec) if spec is not None else ""
    declarator = node.child_by_field_name("declarator")
    while declarator is not None:
        if declarator.type in ("identifier", "field_identifier", "qualified_identifier",
                               "destructor_name", "operator_name", "type_identifier"):
            return node_text(declarator)
        declarator = declarator.child_by_field_name("declarator") or next(
            (c for c in declarator.named_children if "identifier" in c.type), None)
    if node.type in ("lexical_declaration", "variable_declaration"):
        decl = next((c for c in node.named_children if c.type == "variable_declarator"), None)
        return definition_name(decl) if decl is not None else ""
    return ""


def _end_row(node: ts.Node) -> int:
    """Last line of a node (some nodes end at column 0 of the next line)."""
    end = node.end_point
    return end.row - 1 if end.column == 0 and end.row > node.start_point.row else end.row


def _unwrap(node: ts.Node, spec: LangSpec) -> ts.Node:
    """The definition inside ``export``/decorator/template wrappers."""
    while node.type in spec.wrappers:
        inner = next((c for c in reversed(node.named_children)
                      if c.type not in ("decorator", "comment", "template_parameter_list")), None)
        if inner is None:
            return node
        node = inner
    return node


def _is_arrow_function(node: ts.Node) -> bool:
    if node.type not in ("lexical_declaration", "variable_declaration"):
        return False
    for decl in node.named_children:
        value = decl.child_by_field_name("value") if decl.type == "variable_declarator" else None
        if value is not None and value.type in ("arrow_function", "function_expression",
                                                "function", "generator_function"):
            return True
    return False


def _classify(node: ts.Node, spec: LangSpec) -> str | None:
    inner = _unwrap(node, spec)
    if inner.type in spec.functions or _is_arrow_function(inner):
        return "function"
    if inner.type in spec.containers:
        return "container"
    if inner.type in spec.definitions:
        return "definition"
    return None


def _body(node: ts.Node) -> ts.Node | None:
    body = node.child_by_field_name("body")
    if body is not None:
        return body
    return next((c for c in node.named_children
                 if c.type in ("class_body", "declaration_list", "field_declaration_list",
                               "interface_body", "enum_body", "block")), None)


def _doc_and_start(node: ts.Node, spec: LangSpec, lines: list[str]) -> tuple[int, str]:
    """Extend a definition upwards over the comments that document it."""
    start = node.start_point.row
    docs: list[str] = []
    prev = node.prev_named_sibling
    while prev is not None and prev.type in spec.comments and prev.end_point.row >= start - 1:
        docs.insert(0, node_text(prev))
        start = prev.start_point.row
        prev = prev.prev_named_sibling
    doc = "\n".join(docs)
    body = _body(_unwrap(node, spec))
    if body is not None and body.named_children:  # Python-style docstring
        first = body.named_children[0]
        if first.type == "expression_statement" and first.named_children and \
                first.named_children[0].type == "string":
            doc = node_text(first.named_children[0])
    return start, _clean_doc(doc)


_DOC_MARKERS = re.compile(r"^\s*(/\*\*?|\*/|\*|///?|//!|#|\"\"\"|''')\s?", re.M)


def _clean_doc(doc: str) -> str:
    doc = _DOC_MARKERS.sub("", doc)
    return re.sub(r"(\"\"\"|'''|\*/)\s*$", "", doc.strip()).strip()


def _signature(node: ts.Node, lines: list[str]) -> str:
    """The definition's text up to its body (at most 5 lines)."""
    body = _body(node)
    if body is None:  # a declaration without a body: its own text
        return node_text(node).split("\n", 1)[0].rstrip("{;: ").strip()
    first = node.start_point.row
    last = min(body.start_point.row if body is not None else first, first + 4)
    rows = [line.encode("utf-8") for line in lines[first: last + 1]]
    if not rows:
        return ""
    if body is not None and body.start_point.row == last:
        rows[-1] = rows[-1][: body.start_point.column]
    rows[0] = rows[0][node.start_point.column:] if len(rows) > 1 or body is None or \
        body.start_point.row != first else rows[0][node.start_point.column: body.start_point.column]
    sig = "\n".join(r.decode("utf-8", "replace") for r in rows).strip()
    return sig.rstrip("{:").strip()


# -------------------------------------------------------------------- chunker


class _Builder:
    def __init__(self, path: str, lang: str, spec: LangSpec, source: bytes):
        self.path, self.lang, self.spec = path, lang, spec
        self.lines = split_lines(source.decode("utf-8", "replace"))
        self.chunks: list[Chunk] = []

    def text(self, start: int, end: int) -> str:
        return "\n".join(self.lines[start: end + 1])

    def emit(self, symbol: str, kind: str, start: int, end: int, signature: str = "",
             doc: str = "", node: ts.Node | None = None) -> None:
        if end - start + 1 > MAX_CHUNK_LINES and node is not None:
            self.split(symbol, kind, start, end, signature, doc, node)
            return
        self.chunks.append(Chunk(self.path, self.lang, symbol, kind, start, end,
                                 self.text(start, end), signature, doc))

    def split(self, symbol: str, kind: str, start: int, end: int, signature: str, doc: str,
              node: ts.Node) -> None:
        """Pieces at statement boundaries, each carrying the signature and scope."""
        body = _body(_unwrap(node, self.spec))
        statements = body.named_children if body is not None else []
        if not statements:
            statements = []
        pieces: list[tuple[int, int]] = []
        piece_start = start
        for stmt in statements:
            s_end = _end_row(stmt)
            if s_end - piece_start + 1 > MAX_CHUNK_LINES and stmt.start_point.row > piece_start:
                pieces.append((piece_start, stmt.start_point.row - 1))
                piece_start = stmt.start_point.row
        pieces.append((piece_start, end))
        # A single statement can itself be huge: fall back to fixed windows.
        final: list[tuple[int, int]] = []
        for a, b in pieces:
            while b - a + 1 > MAX_CHUNK_LINES:
                final.append((a, a + MAX_CHUNK_LINES - 1))
                a += MAX_CHUNK_LINES
            final.append((a, b))
        for i, (a, b) in enumerate(final, 1):
            header = "" if a == start else f"{signature}\n    ...  # {symbol}, part {i}\n"
            self.chunks.append(Chunk(self.path, self.lang, symbol, kind, a, b,
                                     header + self.text(a, b), signature, doc, part=i))

    def visit(self, parent: ts.Node, scope: list[str], in_container: bool) -> None:
        """Chunks for ``parent``'s children; ``in_container``: inside a class-like body."""
        run: list[ts.Node] = []

        def flush() -> None:
            if not run:
                return
            first, last = run[0].start_point.row, _end_row(run[-1])
            name = ".".join(scope)
            self.emit(name, "members" if in_container else "statements", first, last)
            run.clear()

        for child in parent.named_children:
            kind = _classify(child, self.spec)
            if kind is None:
                if child.type in self.spec.comments:
                    continue  # attached to the next definition, or dropped
                if run and _end_row(child) - run[0].start_point.row + 1 > RUN_MAX_LINES:
                    flush()
                run.append(child)
                continue
            flush()
            inner = _unwrap(child, self.spec)
            name = (definition_name(inner) or "<anonymous>").replace("::", ".")
            start, doc = _doc_and_start(child, self.spec, self.lines)
            end = _end_row(child)
            qual = ".".join([*scope, name])
            if kind == "function":
                fkind = "method" if in_container or inner.type == "method_declaration" else "function"
                if "." in name:  # C++ `int A::n()` defined outside its class
                    fkind = "method"
                if self.lang == "go" and inner.type == "method_declaration":
                    receiver = node_text(inner.child_by_field_name("receiver"))
                    rtype = re.sub(r"[()*\s]", " ", receiver).split()
                    qual = f"{rtype[-1]}.{name}" if rtype else qual
                self.emit(qual, fkind, start, end, _signature(inner, self.lines), doc, child)
            elif kind == "definition":
                self.emit(qual, self.spec.definitions[inner.type], start, end,
                          _signature(inner, self.lines), doc, child)
            else:
                self.container(child, inner, qual, start, end, doc, scope)
        flush()

    def container(self, node: ts.Node, inner: ts.Node, qual: str, start: int, end: int,
                  doc: str, scope: list[str]) -> None:
        kind = self.spec.containers[inner.type]
        body = _body(inner)
        members = body.named_children if body is not None else []
        first_def = next((m for m in members if _classify(m, self.spec) is not None), None)
        if first_def is None:  # no methods: the whole thing is one chunk
            self.emit(qual, kind, start, end, _signature(inner, self.lines), doc, node)
            return
        first_start = _doc_and_start(first_def, self.spec, self.lines)[0]
        header_end = max(start, first_start - 1)
        self.chunks.append(Chunk(self.path, self.lang, qual, kind, start, header_end,
                                 self.text(start, header_end), _signature(inner, self.lines), doc))
        # From the first definition on: methods are chunks, other members merge into runs.
        tail = members[members.index(first_def):]
        # Namespaces and modules hold functions, not methods.
        self._visit_nodes(tail, qual.split("."), kind not in ("namespace", "module"))

    def _visit_nodes(self, nodes: list[ts.Node], scope: list[str], in_container: bool) -> None:
        class _Parent:  # visit() only needs .named_children
            named_children = nodes

        self.visit(_Parent(), scope, in_container)  # type: ignore[arg-type]


def _utf16(line: str, byte_col: int) -> int:
    if line.isascii():  # the common case: bytes, code points and UTF-16 units agree
        return byte_col
    prefix = line.encode("utf-8")[:byte_col].decode("utf-8", "ignore")
    return len(prefix.encode("utf-16-le")) // 2


# References not stored: calls of a language's built-ins (Python's `len`, `isinstance`,
# `ValueError`, ...) are a sixth of all references in real code, and a reference is
# only ever used to find a definition in the workspace or the callers of one.
UNSTORED_REFERENCES = {"python": frozenset(n for n in dir(builtins) if not n.startswith("_"))}


def _symbols(lang: str, tree: ts.Tree, lines: list[str],
             spec: LangSpec | None = None) -> list[Symbol]:
    """Definitions and references from the grammar's tags query. A definition's kind
    is the chunker's own where it knows the node (struct, enum, impl, trait, union,
    ...): the tags queries call all of those "class" or "type"."""
    query = tags_query(lang)
    if query is None:
        return []
    out: list[Symbol] = []
    seen = set()
    n_lines = len(lines)
    unstored = UNSTORED_REFERENCES.get(lang, frozenset())
    # Each pattern's role capture, found once: phase 1 meets ~100 matches per file.
    roles: dict[int, tuple[str, str, bool] | None] = {}
    for pattern, captures in ts.QueryCursor(query).matches(tree.root_node):
        names = captures.get("name")
        if not names:
            continue
        role = roles.get(pattern)
        if pattern not in roles or (role is not None and role[0] not in captures):
            role = roles[pattern] = _match_role(captures)
        if role is None:
            continue
        capture, kind, is_def = role
        node = names[0]
        row, col = node.start_point
        end_row, end_col = node.end_point
        name = node_text(node)
        if not is_def and name in unstored:
            continue
        line = lines[row] if row < n_lines else ""
        if end_row != row:
            end_col = len(line.encode())
        if spec is not None and is_def:
            kind = _definition_kind(captures[capture][0], kind, spec)
        if not line.isascii():
            col, end_col = _utf16(line, col), _utf16(line, end_col)
        key = (name, row, col, is_def)
        if key not in seen:
            seen.add(key)
            out.append(Symbol(row, col, is_def, name, kind, end_col))
    return out


def _match_role(captures: dict[str, list[ts.Node]]) -> tuple[str, str, bool] | None:
    """A match's role capture: (its name, kind, is a definition); None when it has none."""
    for capture, nodes in captures.items():
        info = _role(capture)
        if info is not None and nodes:
            return capture, info[0], info[1]
    return None


@functools.lru_cache(maxsize=256)
def _role(capture: str) -> tuple[str, bool] | None:
    """A tags query's capture name as (kind, is a definition), or None for the others
    (``name``, ``doc``, ...)."""
    if not capture.startswith(("definition.", "reference.")):
        return None
    role, kind = capture.split(".", 1)
    return kind, role == "definition"


_GO_TYPES = {"struct_type": "struct", "interface_type": "interface"}


def _definition_kind(node: ts.Node, tagged: str, spec: LangSpec) -> str:
    """The kind of a definition node: the chunker's name for its node type; a Go
    `type X struct` / `interface`; a function inside a class is a method."""
    kind = spec.containers.get(node.type) or spec.definitions.get(node.type) or tagged
    if node.type in ("type_declaration", "type_spec"):
        spec_node = node if node.type == "type_spec" else next(
            (c for c in node.named_children if c.type == "type_spec"), None)
        body = spec_node.child_by_field_name("type") if spec_node is not None else None
        kind = _GO_TYPES.get(body.type, kind) if body is not None else kind
    if kind in ("function", "method"):  # the tags queries disagree on which is which
        if node.type.startswith("method"):  # Go's method_declaration, JS/TS/Java methods
            return "method"
        parent = node.parent
        while parent is not None:
            if spec.containers.get(parent.type, "module") not in ("module", "namespace"):
                return "method"
            parent = parent.parent
        return "function"
    return kind


def windows(path: str, lang: str, text: str) -> list[Chunk]:
    """Overlapping line windows for files without a grammar."""
    lines = split_lines(text)
    out = []
    start = 0
    while start < len(lines):
        end = min(len(lines), start + WINDOW_LINES) - 1
        body = "\n".join(lines[start: end + 1])
        if body.strip():
            out.append(Chunk(path, lang, "", "window", start, end, body))
        if end + 1 >= len(lines):
            break
        start = end + 1 - WINDOW_OVERLAP
    return out


def chunk_file(path: str, lang: str | None, source: bytes) -> FileChunks:
    """Chunks and symbols of one file. Never raises for bad input."""
    text = source.decode("utf-8", "replace")
    grammar = language(lang) if lang else None
    spec = spec_for(lang) if lang else None
    if grammar is None or spec is None:
        return FileChunks(windows(path, lang or "text", text), [])
    tree = ts.Parser(grammar).parse(source)
    builder = _Builder(path, lang or "", spec, source)
    builder.visit(tree.root_node, [], False)
    chunks = [c for c in builder.chunks if c.text.strip()]
    if not chunks and text.strip():
        chunks = windows(path, lang or "text", text)
    return FileChunks(chunks, _symbols(lang or "", tree, builder.lines, spec),
                      parse_errors=tree.root_node.has_error)
