"""Tree-sitter grammars from the per-language packages, and what their nodes mean.

Each language says which node types are functions, which are containers
(classes, impls, namespaces) whose members become chunks of their own, which
are other definitions (structs, enums, type aliases), and which only wrap a
definition (``export``, decorators, templates).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from functools import cache

import tree_sitter as ts


@dataclass(frozen=True)
class LangSpec:
    module: str
    entry: str = "language"
    tags_from: tuple[str, ...] = ()  # modules whose queries/tags.scm apply
    functions: frozenset[str] = frozenset()
    containers: dict[str, str] = field(default_factory=dict)  # node type -> kind
    definitions: dict[str, str] = field(default_factory=dict)  # node type -> kind
    wrappers: frozenset[str] = frozenset()
    comments: frozenset[str] = frozenset({"comment"})


_JS_FUNCS = frozenset({"function_declaration", "generator_function_declaration",
                       "method_definition", "function_signature", "abstract_method_signature"})
_JS_CONTAINERS = {"class_declaration": "class", "abstract_class_declaration": "class",
                  "class": "class"}

SPECS: dict[str, LangSpec] = {
    "python": LangSpec(
        "tree_sitter_python", tags_from=("tree_sitter_python",),
        functions=frozenset({"function_definition"}),
        containers={"class_definition": "class"}, wrappers=frozenset({"decorated_definition"})),
    "javascript": LangSpec(
        "tree_sitter_javascript", tags_from=("tree_sitter_javascript",),
        functions=_JS_FUNCS, containers=_JS_CONTAINERS, wrappers=frozenset({"export_statement"})),
    "typescript": LangSpec(
        "tree_sitter_typescript", "language_typescript",
        tags_from=("tree_sitter_javascript", "tree_sitter_typescript"),
        functions=_JS_FUNCS, containers={**_JS_CONTAINERS, "interface_declaration": "interface",
                                         "internal_module": "namespace"},
        definitions={"type_alias_declaration": "type", "enum_declaration": "enum"},
        wrappers=frozenset({"export_statement", "ambient_declaration"})),
    "go": LangSpec(
        "tree_sitter_go", tags_from=("tree_sitter_go",),
        functions=frozenset({"function_declaration", "method_declaration"}),
        definitions={"type_declaration": "type"}),
    "rust": LangSpec(
        "tree_sitter_rust", tags_from=("tree_sitter_rust",),
        functions=frozenset({"function_item", "function_signature_item"}),
        containers={"impl_item": "impl", "trait_item": "trait", "mod_item": "module"},
        definitions={"struct_item": "struct", "enum_item": "enum", "type_item": "type",
                     "union_item": "union", "macro_definition": "macro"},
        comments=frozenset({"line_comment", "block_comment"})),
    "java": LangSpec(
        "tree_sitter_java", tags_from=("tree_sitter_java",),
        functions=frozenset({"method_declaration", "constructor_declaration"}),
        containers={"class_declaration": "class", "interface_declaration": "interface",
                    "enum_declaration": "enum", "record_declaration": "record"},
        comments=frozenset({"line_comment", "block_comment"})),
    "c": LangSpec(
        "tree_sitter_c", tags_from=("tree_sitter_c",),
        functions=frozenset({"function_definition"}),
        definitions={"struct_specifier": "struct", "enum_specifier": "enum",
                     "union_specifier": "union", "type_definition": "type"}),
    "cpp": LangSpec(
        "tree_sitter_cpp", tags_from=("tree_sitter_cpp",),
        functions=frozenset({"function_definition"}),
        containers={"class_specifier": "class", "struct_specifier": "struct",
                    "namespace_definition": "namespace"},
        definitions={"enum_specifier": "enum", "union_specifier": "union",
                     "type_definition": "type", "alias_declaration": "type"},
        wrappers=frozenset({"template_declaration"})),
}
# The LSP splits these ids; the grammars do not.
ALIASES = {"javascriptreact": "javascript", "typescriptreact": "tsx"}
SPECS["tsx"] = LangSpec(
    "tree_sitter_typescript", "language_tsx", tags_from=SPECS["typescript"].tags_from,
    functions=SPECS["typescript"].functions, containers=SPECS["typescript"].containers,
    definitions=SPECS["typescript"].definitions, wrappers=SPECS["typescript"].wrappers)


def spec_for(language: str) -> LangSpec | None:
    return SPECS.get(ALIASES.get(language, language))


@cache
def language(name: str) -> ts.Language | None:
    spec = spec_for(name)
    if spec is None:
        return None
    try:
        module = importlib.import_module(spec.module)
    except ImportError:
        return None
    return ts.Language(getattr(module, spec.entry)())


def syntax_errors(source: str, name: str) -> int | None:
    """How many syntax errors tree-sitter finds in ``source`` (ERROR and MISSING
    nodes), or None without a grammar for ``name``: to tell an edit that breaks the
    code from one that does not, in any language with a grammar."""
    lang = language(name)
    if lang is None:
        return None
    stack = [ts.Parser(lang).parse(source.encode("utf-8")).root_node]
    count = 0
    while stack:
        node = stack.pop()
        if node.is_error or node.is_missing:
            count += 1
        elif node.has_error:  # only subtrees holding an error are walked
            stack.extend(node.children)
    return count


@cache
def tags_query(name: str) -> ts.Query | None:
    """The grammar packages' own tags queries (definitions and references)."""
    spec, lang = spec_for(name), language(name)
    if spec is None or lang is None:
        return None
    sources = []
    for module in spec.tags_from:
        try:
            sources.append(importlib.import_module(module).TAGS_QUERY)
        except (ImportError, AttributeError):
            continue
    try:
        return ts.Query(lang, "\n".join(sources))
    except (ts.QueryError, ValueError):
        # An inherited query can name nodes this grammar lacks: keep the own one.
        try:
            return ts.Query(lang, sources[-1]) if sources else None
        except (ts.QueryError, ValueError):
            return None
