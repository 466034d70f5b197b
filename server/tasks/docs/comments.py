"""Doc comments for JS/TS, Go, Rust, Java, C and C++: find, prompt, render, place, validate.

Pure functions over tree-sitter. The model does not write the comment: it
fills a small JSON object (a summary, one description per real parameter,
the return value) under a grammar built for this very function, so it cannot
invent a parameter or skip one; we render that in the language's convention
and place it above the declaration (and above its decorators, attributes or
`export`). Validation re-parses the result: same code once comments are
removed, no new syntax errors, documented parameters equal the real ones.
(Python docstrings live in ``docstring.py``.)
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import tree_sitter as ts

from ....indexer.chunker import definition_name, node_text
from ....indexer.grammars import language as ts_language
from ....indexer.grammars import spec_for
from ....indexer.lines import split_lines, with_newlines_of
from ... import cleaning
from ...chat_format import Message
from ...prompts import task_prompt
from ..runner import Refusal

STYLES = {"javascript": "jsdoc", "javascriptreact": "jsdoc", "typescript": "jsdoc",
          "typescriptreact": "jsdoc", "tsx": "jsdoc", "java": "javadoc", "c": "doxygen",
          "cpp": "doxygen", "go": "go", "rust": "rust"}
# Siblings just above a declaration that belong to it.
_ATTACHED = {"decorator", "attribute_item", "annotation", "marker_annotation"}


class DocCommentError(Refusal):
    pass


@dataclass(frozen=True)
class DocTarget:
    name: str
    qualname: str
    kind: str  # function | method | class | ...
    language: str
    insert_line: int  # the comment goes above this line
    def_line: int
    indent: str
    params: tuple[str, ...]
    returns: bool
    existing: tuple[int, int] | None  # lines of the current doc comment (inclusive)

    @property
    def has_docstring(self) -> bool:  # same question as for Python targets
        return self.existing is not None


def supported(language: str | None) -> bool:
    return language in STYLES and ts_language(language) is not None


def _parse(source: str, language: str) -> ts.Tree:
    lang = ts_language(language)
    if lang is None:
        raise DocCommentError(f"no grammar for {language}")
    return ts.Parser(lang).parse(source.encode("utf-8"))


def _param_name(param: ts.Node) -> str | None:
    if param.type in ("self_parameter", "comment", "variadic_parameter"):
        return None
    if param.type in ("identifier", "shorthand_property_identifier_pattern"):
        return node_text(param)
    for field in ("name", "pattern", "left", "declarator"):
        child = param.child_by_field_name(field)
        if child is not None:
            if child.type in ("identifier", "field_identifier", "shorthand_property_identifier"):
                return node_text(child)
            return _param_name(child)
    if param.type in ("rest_pattern", "spread_parameter", "variadic_parameter_declaration",
                      "pointer_declarator", "reference_declarator", "array_declarator",
                      "parenthesized_declarator"):  # C's function pointer: int (*cb)(int)
        ident = next((c for c in param.named_children if c.type == "identifier"), None)
        if ident is not None:
            return node_text(ident)
        return next((n for c in param.named_children if (n := _param_name(c))), None)
    return None


def _params(node: ts.Node, language: str) -> tuple[str, ...]:
    params = node.child_by_field_name("parameters")
    if params is None:
        decl = node.child_by_field_name("declarator")
        while decl is not None and params is None:
            params = decl.child_by_field_name("parameters")
            decl = decl.child_by_field_name("declarator")
    if params is None:
        return ()
    names: list[str] = []
    for p in params.named_children:
        if language == "go" and p.type in ("parameter_declaration",
                                           "variadic_parameter_declaration"):
            names += [node_text(c) for c in p.children_by_field_name("name")]
            continue
        name = _param_name(p)
        if name and name not in ("void",):
            names.append(name)
    return tuple(names)


def _returns(node: ts.Node, language: str, kind: str) -> bool:
    if kind not in ("function", "method"):
        return False
    if language == "go":
        return node.child_by_field_name("result") is not None
    if language == "rust":
        rt = node.child_by_field_name("return_type")
        return rt is not None and node_text(rt).strip() != "()"
    if language in ("java", "c", "cpp"):
        if node.type == "constructor_declaration":
            return False
        rtype = node.child_by_field_name("type")
        return rtype is not None and node_text(rtype).strip() != "void"
    rtype = node.child_by_field_name("return_type")
    if rtype is not None:
        return node_text(rtype).lstrip(": ").strip() not in ("void", "Promise<void>", "never")
    body = node.child_by_field_name("body")
    return bool(body is not None and re.search(r"\breturn\s+[^;\s}]", node_text(body)))


def _kind(node: ts.Node, spec) -> str | None:
    if node.type in spec.functions:
        parent = node.parent
        inside = parent is not None and parent.type in (
            "class_body", "declaration_list", "field_declaration_list", "interface_body")
        return "method" if inside or node.type == "method_declaration" else "function"
    return spec.containers.get(node.type) or spec.definitions.get(node.type)


def find_target(source: str, language: str, line: int) -> DocTarget | None:
    """The innermost documentable declaration covering 0-based ``line``."""
    spec = spec_for(language)
    if spec is None or language not in STYLES:
        return None
    tree = _parse(source, language)
    lines = split_lines(source)
    best: tuple[ts.Node, str] | None = None
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        if not node.start_point.row <= line <= node.end_point.row:
            continue
        kind = _kind(node, spec)
        if kind is not None and (best is None or best[0].start_byte <= node.start_byte
                                 and node.end_byte <= best[0].end_byte):
            best = (node, kind)  # deeper matches replace shallower ones
        # The first of declarations sharing the line (one-line code): a comment above
        # the line documents it.
        stack.extend(reversed(node.named_children))
    if best is None:
        return None
    node, kind = best
    outer = node
    while outer.parent is not None and outer.parent.type in spec.wrappers:
        outer = outer.parent
    prev = outer.prev_named_sibling
    while prev is not None and prev.type in _ATTACHED and prev.end_point.row >= outer.start_point.row - 1:
        outer = prev
        prev = prev.prev_named_sibling
    # Directives belong to the line below them (`//go:noinline`, `// eslint-disable-
    # next-line`, `// NOLINTNEXTLINE`): the comment goes above them, never between.
    prev = outer.prev_named_sibling
    while prev is not None and prev.type in spec.comments and \
            prev.end_point.row == outer.start_point.row - 1 and \
            _DIRECTIVE.match(node_text(prev)) and _own_line(prev, lines):
        outer = prev
        prev = prev.prev_named_sibling
    insert = outer.start_point.row
    existing = None
    doc_start = insert
    prev = outer.prev_named_sibling
    while prev is not None and prev.type in spec.comments and prev.end_point.row == doc_start - 1 \
            and _is_doc_comment(node_text(prev), language) and _own_line(prev, lines):
        doc_start = prev.start_point.row
        if node_text(prev).startswith("/*"):
            break  # the nearest block is the doc comment; one above it is another's
        prev = prev.prev_named_sibling
    if doc_start < insert:
        existing = (doc_start, insert - 1)
    row = lines[insert] if insert < len(lines) else ""
    scope: list[str] = []
    parent = node.parent
    while parent is not None:
        if parent.type in spec.containers:
            scope.insert(0, definition_name(parent))
        parent = parent.parent
    name = definition_name(node) or "(anonymous)"
    return DocTarget(name, ".".join([*filter(None, scope), name]), kind, language, insert,
                     node.start_point.row, row[: len(row) - len(row.lstrip())],
                     _params(node, language) if kind in ("function", "method") else (),
                     _returns(node, language, kind), existing)


# Comments that tell a tool about the next line, not a reader about the code.
_DIRECTIVE = re.compile(
    r"(?://\s*(?:go:|export\s|line\s|\+build|nolint|NOLINT|eslint-|@ts-|prettier-ignore|"
    r"istanbul\s|c8\s|tslint:|jshint|clang-format|cppcheck-suppress|coverity|"
    r"lint:|noinspection|rustfmt::|#\[)|/\*\s*(?:eslint|istanbul|c8|prettier|@ts-|global\s|"
    r"jshint|NOLINT|clang-format|webpack))")


def _own_line(comment: ts.Node, lines: list[str]) -> bool:
    """Whether nothing but indentation precedes ``comment`` on its line (not the
    trailing comment of a statement above)."""
    row = lines[comment.start_point.row] if comment.start_point.row < len(lines) else ""
    return not row[: comment.start_point.column].strip()


def _is_doc_comment(text: str, language: str) -> bool:
    if re.search(r"@license|@preserve|\bcopyright\b|SPDX-License-Identifier", text, re.I):
        return False  # a file's licence header, never replaced
    if _DIRECTIVE.match(text):
        return False
    style = STYLES[language]
    if style == "go":
        return text.startswith("//")
    if style == "rust":
        return text.startswith(("///", "/**")) and not text.startswith(("////", "/***"))
    if style == "doxygen":  # Doxygen's other forms: ///, /*! */, //!
        return text.startswith(("/**", "///", "/*!", "//!"))
    return text.startswith("/**")


# ------------------------------------------------------------------ prompt

# The placeholders of the JSON shape shown to the model; an answer that copies
# one back has said nothing.
SHAPE_SUMMARY, SHAPE_PARAM, SHAPE_RETURNS = (
    "One sentence: what it does.", "what it is", "what it returns")
_PLACEHOLDERS = {x.lower().strip(".") for x in (SHAPE_SUMMARY, SHAPE_PARAM, SHAPE_RETURNS,
                                                "what it does", "one sentence")}


def grammar(target: DocTarget) -> str:
    """GBNF for this target's JSON: exactly its parameters, in order."""
    return fields_grammar(target.params, target.returns, summary=True)


def fields_grammar(params: tuple[str, ...], returns: bool, *, summary: bool) -> str:
    """GBNF for `{"summary"?, "params": {exactly these names}, "returns"?}`.

    Descriptions cannot contain a newline or `*/` (they go inside comments)."""
    parts = [r'"{" ws']
    if summary:
        parts.append(r'"\"summary\":" ws sentence')
    if params:
        entries = ' "," ws '.join(f'"\\"{p.lstrip("*")}\\":" ws desc' for p in params)
        parts.append(('"," ws ' if summary else "")
                     + f'"\\"params\\":" ws "{{" ws {entries} ws "}}"')
    if returns:
        parts.append(r'"," ws "\"returns\":" ws desc' if len(parts) > 1 else
                     r'"\"returns\":" ws desc')
    return "\n".join([
        "root ::= " + " ".join(parts) + ' ws "}"',
        r'sentence ::= "\"" [A-Z] char{8,160} "\""',
        r'desc ::= "\"" [a-zA-Z`] char{2,120} "\""',
        r'char ::= [^"\\\n*/] | "\\" ["\\/]',
        r"ws ::= [ \n]{0,2}",
    ])


def build_prompt(source: str, target: DocTarget, *, path: str, chat: bool,
                 root: Path | None = None) -> tuple[list[Message] | None, str]:
    lines = split_lines(source)
    end = min(len(lines), target.def_line + 40)
    code = "\n".join(lines[target.insert_line: end])
    shape: dict[str, object] = {"summary": SHAPE_SUMMARY}
    if target.params:
        shape["params"] = {p: SHAPE_PARAM for p in target.params}
    if target.returns:
        shape["returns"] = SHAPE_RETURNS
    values = {"path": path, "language": target.language, "kind": target.kind,
              "symbol": target.qualname, "code": code, "shape": json.dumps(shape)}
    return task_prompt("doccomment", root, chat=chat, **values)


# ----------------------------------------------------------------- parsing


@dataclass(frozen=True)
class DocContent:
    summary: str
    params: dict[str, str]
    returns: str


def parse_answer(raw: str, target: DocTarget, path: str = "") -> DocContent:
    try:
        data = json.loads(raw[raw.find("{"):])
    except (json.JSONDecodeError, ValueError) as exc:
        raise DocCommentError(f"the model's answer is not JSON: {raw[:80]!r}") from exc
    summary = " ".join(str(data.get("summary", "")).split())
    texts = [summary, *map(str, (data.get("params") or {}).values()), str(data.get("returns", ""))]
    if any("*/" in t or "/*" in t for t in texts):
        # "*/" ends the block early: the rest of it becomes code or another comment.
        raise DocCommentError("the answer holds a comment's end or start ('*/', '/*')")
    if len(summary.split()) < 3:
        raise DocCommentError(f"the summary says nothing: {summary!r}")
    if re.search(r"[{};]|=>|\breturn\b", summary) or summary.lower().strip(".") == \
            target.name.lower():
        raise DocCommentError(f"the summary repeats the code: {summary!r}")
    if path and path in summary:
        raise DocCommentError(f"the summary repeats the prompt: {summary!r}")
    params = {str(k): " ".join(str(v).split()) for k, v in (data.get("params") or {}).items()}
    returns = " ".join(str(data.get("returns", "")).split())
    copied = [v for v in (summary, *params.values(), returns)
              if v.lower().strip(" .:") in _PLACEHOLDERS]
    if copied:
        raise DocCommentError(f"the answer copies the example instead of describing: {copied[0]!r}")
    if tuple(params) != target.params:
        raise DocCommentError(f"documented parameters {list(params)} are not the real ones "
                              f"{list(target.params)}")
    why = cleaning.summary_junk_reason(summary, target.name)
    if why:
        raise DocCommentError(why)
    shown = STYLES.get(target.language) != "go"  # Go comments do not list parameters
    junk = [f"{name}: {why}" for name, desc in params.items()
            if shown and (why := cleaning.placeholder_reason(desc, name))]
    junk += [f"{name}: the same as another parameter's"
             for name in cleaning.repeated_descriptions(params) if shown]
    if junk:
        raise DocCommentError("the model could not describe the parameters ("
                              + "; ".join(junk) + ")")
    if returns and cleaning.placeholder_reason(returns, min_words=1):
        returns = ""  # a placeholder says less than nothing
    if not summary.endswith((".", "!", "?")):
        summary += "."
    return DocContent(summary, params, returns)


# --------------------------------------------------------------- rendering


def render_comment(content: DocContent, target: DocTarget) -> str:
    """The comment in the language's convention, indented, ending with a newline."""
    style, ind = STYLES[target.language], target.indent
    if style == "go":
        # Go: a sentence that starts with the name ("Total returns ..."); parameters
        # are described in prose by convention, not listed.
        summary = re.sub(rf"^(The|This) (function|method|type)( `?{re.escape(target.name)}`?)? ",
                         "", content.summary)
        if not summary.startswith(target.name + " "):
            first, _, rest = summary.partition(" ")
            if first.lower() in _NOT_VERBS:  # "The sum of ..." cannot follow the name
                summary = f"{target.name}: {summary}"
            else:
                summary = f"{target.name} {cleaning.third_person(first.lower())} {rest}".rstrip()
        return f"{ind}// {summary}\n"
    if style == "rust":
        body = [content.summary]
        if content.params:
            body += ["", "# Arguments", ""] + [f"* `{n}` - {d}" for n, d in content.params.items()]
        if content.returns:
            body += ["", "# Returns", "", content.returns]
        return "".join(f"{ind}///{' ' + line if line else ''}\n" for line in body)
    ret_tag = "@returns" if style == "jsdoc" else "@return"
    body = [content.summary]
    if content.params or content.returns:
        body.append("")
    body += [f"@param {n} {d}" for n, d in content.params.items()]
    if content.returns:
        body.append(f"{ret_tag} {content.returns}")
    return f"{ind}/**\n" + "".join(f"{ind} *{' ' + line if line else ''}\n" for line in body) + \
        f"{ind} */\n"


_NOT_VERBS = frozenset(["the", "this", "a", "an", "it", "its", "that", "these", "those", "which", "when", "if", "in", "on", "for"])


@dataclass(frozen=True)
class LineEdit:
    start: int  # replace lines start..end-1 (end == start: insert)
    end: int
    new_text: str


def comment_edit(source: str, target: DocTarget, comment: str) -> LineEdit:
    """The edit that puts ``comment`` above ``target`` in ``source`` (replacing its
    doc comment if it has one), in the file's own line ends."""
    comment = with_newlines_of(source, comment)
    if target.existing is not None:
        return LineEdit(target.existing[0], target.existing[1] + 1, comment)
    return LineEdit(target.insert_line, target.insert_line, comment)


def apply_edit(source: str, edit: LineEdit) -> str:
    lines = split_lines(source, keepends=True)
    return "".join(lines[: edit.start]) + edit.new_text + "".join(lines[edit.end:])


def _code_tokens(source: str, language: str) -> tuple[list[str], bool]:
    tree = _parse(source, language)
    spec = spec_for(language)
    comments = spec.comments if spec else frozenset({"comment"})
    out: list[str] = []
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        if node.type in comments:
            continue
        if node.child_count == 0:
            out.append(node_text(node))
        stack.extend(reversed(node.children))
    return out, tree.root_node.has_error


def validate(before: str, after: str, target: DocTarget, comment: str) -> None:
    """Raises DocCommentError unless ``after`` is ``before`` plus a right comment."""
    old_tokens, old_errors = _code_tokens(before, target.language)
    new_tokens, new_errors = _code_tokens(after, target.language)
    if new_errors and not old_errors:
        raise DocCommentError("the file would no longer parse")
    if old_tokens != new_tokens:
        raise DocCommentError("the code itself would change")
    style = STYLES[target.language]
    if style == "rust":
        documented = tuple(re.findall(r"^\s*/// \* `([^`]+)`", comment, re.M))
    elif style == "go":
        documented = target.params  # Go doc comments describe parameters in prose
    else:
        documented = tuple(re.findall(r"@param\s+(\S+)", comment))
    if documented != target.params:
        raise DocCommentError(f"documented parameters {list(documented)} differ from the real "
                              f"ones {list(target.params)}")
