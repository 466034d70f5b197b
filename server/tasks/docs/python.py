"""Python docstrings: find the function, build the prompt, clean, place, validate.

Everything here is pure (text in, text out) so it is tested without an editor
or a model. Lines are 0-based; columns are Python string indices (the LSP
layer converts them to UTF-16).
"""

from __future__ import annotations

import ast
import functools
import inspect
import io
import json
import re
import tokenize
from dataclasses import dataclass
from pathlib import Path

from ....indexer.lines import split_lines, with_newlines_of
from ... import cleaning
from ...chat_format import ChatTemplateError, Message, merge_system, render_chat
from ...prompts import render, task_prompt
from ..runner import Refusal

# Characters of file context per token, conservatively (code tokenizes densely).
CHARS_PER_TOKEN = 3
INDENT_UNIT = "    "
PREFILL = '"""'  # the answer starts inside the docstring


class DocstringError(Refusal):
    """Nothing valid could be produced; the message says why."""


@dataclass(frozen=True)
class FunctionTarget:
    name: str
    qualname: str
    start_line: int  # first decorator or `def`
    def_line: int
    end_line: int  # last line of the body (inclusive)
    colon: tuple[int, int]  # position of the ':' that ends the signature
    body_line: int
    body_col: int
    body_indent: str  # indentation for new body lines
    params: tuple[str, ...]
    docstring: tuple[int, int, int, int] | None  # existing: (line, col, end_line, end_col)
    # Facts from the code, to check what a docstring claims against:
    return_annotation: str | None = None  # the text after `->`
    return_kinds: tuple[str, ...] = ()  # builtin types its `return x` give, when all known
    returns_value: bool | None = None  # whether a `return x` of its own exists
    decorators: tuple[str, ...] = ()  # their names as written: "property", "functools.cache"

    @property
    def has_docstring(self) -> bool:
        return self.docstring is not None


@dataclass(frozen=True)
class Edit:
    start: tuple[int, int]
    end: tuple[int, int]
    new_text: str


# --------------------------------------------------------------------- finding


def _byte_to_index(line: str, byte_col: int) -> int:
    return len(line.encode("utf-8")[:byte_col].decode("utf-8", errors="ignore"))


def _params(node: ast.FunctionDef | ast.AsyncFunctionDef) -> tuple[str, ...]:
    a = node.args
    names = [p.arg for p in (*a.posonlyargs, *a.args)]
    if a.vararg:
        names.append("*" + a.vararg.arg)
    names += [p.arg for p in a.kwonlyargs]
    if a.kwarg:
        names.append("**" + a.kwarg.arg)
    return tuple(names)


def _signature_colon(lines: list[str], def_line: int, body_line: int) -> tuple[int, int]:
    """The ':' closing the signature, found with the tokenizer (strings can hold ':').
    Only the lines up to the body's first one are read: it comes after the colon."""
    text = "\n".join(lines[def_line:body_line + 1]) + "\n"
    depth = 0
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type == tokenize.OP:
                if tok.string in "([{":
                    depth += 1
                elif tok.string in ")]}":
                    depth -= 1
                elif tok.string == ":" and depth == 0:
                    return def_line + tok.start[0] - 1, tok.start[1]
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pass
    raise DocstringError("cannot find the end of the function signature")


def _docstring_node(node: ast.FunctionDef | ast.AsyncFunctionDef) -> ast.Expr | None:
    first = node.body[0]
    if (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
            and isinstance(first.value.value, str)):
        return first
    return None


def list_functions(source: str) -> list[FunctionTarget]:
    """Every function and method, outermost first. Empty if the file does not parse."""
    return list(_functions(source))


@functools.lru_cache(maxsize=8)
def _functions(source: str) -> tuple[FunctionTarget, ...]:
    """Parsed once per text: code actions ask several times for each document version."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, UnicodeEncodeError):  # lone surrogates, NUL bytes
        return ()
    lines = split_lines(source)
    out: list[FunctionTarget] = []

    def visit(node: ast.AST, scope: list[str]) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                out.append(_target(child, scope, lines))
                visit(child, [*scope, child.name])
            elif isinstance(child, ast.ClassDef):
                visit(child, [*scope, child.name])
            else:
                visit(child, scope)

    visit(tree, [])
    return tuple(out)


def _target(node: ast.FunctionDef | ast.AsyncFunctionDef, scope: list[str],
            lines: list[str]) -> FunctionTarget:
    def_line = node.lineno - 1
    start = min([def_line] + [d.lineno - 1 for d in node.decorator_list])
    first = node.body[0]
    body_line = first.lineno - 1
    body_col = _byte_to_index(lines[body_line], first.col_offset)
    colon = _signature_colon(lines, def_line, body_line)
    def_indent = lines[def_line][: len(lines[def_line]) - len(lines[def_line].lstrip())]
    # `def f(): return 1`: the body will move to its own line, one level in.
    body_indent = (lines[body_line][:body_col] if body_line > colon[0]
                   else def_indent + INDENT_UNIT)
    doc = _docstring_node(node)
    doc_range = None
    if doc is not None:
        assert doc.end_lineno is not None and doc.end_col_offset is not None
        doc_range = (doc.lineno - 1, _byte_to_index(lines[doc.lineno - 1], doc.col_offset),
                     doc.end_lineno - 1,
                     _byte_to_index(lines[doc.end_lineno - 1], doc.end_col_offset))
    assert node.end_lineno is not None
    return FunctionTarget(
        name=node.name, qualname=".".join([*scope, node.name]), start_line=start,
        def_line=def_line, end_line=node.end_lineno - 1, colon=colon, body_line=body_line,
        body_col=body_col, body_indent=body_indent, params=_params(node), docstring=doc_range,
        return_annotation=ast.unparse(node.returns) if node.returns is not None else None,
        return_kinds=_return_kinds(node), returns_value=bool(_own_returns(node)),
        decorators=tuple(ast.unparse(d.func if isinstance(d, ast.Call) else d)
                         for d in node.decorator_list))


def _own_returns(node: ast.FunctionDef | ast.AsyncFunctionDef) -> list[ast.expr]:
    """The values of the function's own `return x` (nested functions' left out)."""
    out: list[ast.expr] = []
    stack: list[ast.AST] = list(node.body)
    while stack:
        child = stack.pop()
        if isinstance(child, ast.Return) and child.value is not None and not (
                isinstance(child.value, ast.Constant) and child.value.value is None):
            out.append(child.value)
        if not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda,
                                  ast.ClassDef)):
            stack.extend(ast.iter_child_nodes(child))
    return out


_CALL_KINDS = {"int": "int", "float": "float", "str": "str", "bool": "bool", "len": "int",
               "list": "list", "sorted": "list", "dict": "dict", "tuple": "tuple",
               "set": "set", "repr": "str", "round": "int", "isinstance": "bool",
               "bytes": "bytes", "abs": None, "sum": None, "max": None, "min": None}


def _expr_kind(e: ast.expr) -> str | None:
    """The builtin type an expression evaluates to, when the code alone says so."""
    if isinstance(e, ast.Constant):
        return type(e.value).__name__ if isinstance(e.value, (bool, int, float, str, bytes)) \
            else None
    if isinstance(e, ast.JoinedStr):
        return "str"
    if isinstance(e, (ast.List, ast.ListComp)):
        return "list"
    if isinstance(e, (ast.Dict, ast.DictComp)):
        return "dict"
    if isinstance(e, (ast.Set, ast.SetComp)):
        return "set"
    if isinstance(e, ast.Tuple):
        return "tuple"
    if isinstance(e, ast.Compare) or (isinstance(e, ast.UnaryOp) and isinstance(e.op, ast.Not)):
        return "bool"
    if isinstance(e, ast.Call) and isinstance(e.func, ast.Name):
        return _CALL_KINDS.get(e.func.id)
    if isinstance(e, ast.Attribute) and isinstance(e.value, ast.Name) and \
            e.value.id == "math" and e.attr in ("pi", "e", "tau", "inf", "nan"):
        return "float"
    if isinstance(e, ast.BinOp):
        if isinstance(e.op, ast.Div):
            return "float"
        sides = {_expr_kind(e.left), _expr_kind(e.right)}
        if "float" in sides and sides <= {"float", "int", None}:
            return "float"  # x * 2.0, math.pi * r ** 2
        if sides == {"int"}:
            return "int"
        if sides == {"str"} and isinstance(e.op, ast.Add):
            return "str"
    return None


def _return_kinds(node: ast.FunctionDef | ast.AsyncFunctionDef) -> tuple[str, ...]:
    kinds = [_expr_kind(v) for v in _own_returns(node)]
    if not kinds or any(k is None for k in kinds):
        return ()
    return tuple(sorted({k for k in kinds if k}))


def find_function(source: str, line: int) -> FunctionTarget | None:
    """The innermost function whose lines (decorators included) contain ``line``."""
    best = None
    for fn in list_functions(source):
        if fn.start_line <= line <= fn.end_line and (best is None or fn.start_line >= best.start_line):
            best = fn
    return best


def function_source(source: str, fn: FunctionTarget) -> str:
    return "\n".join(split_lines(source)[fn.start_line: fn.end_line + 1])


# ---------------------------------------------------------------------- prompts


# The answer starts inside `"""`: its first token must begin the summary (a
# capital letter), not a newline and the function's code, which small models
# otherwise like to echo. Enforced on the first token only, so decoding keeps
# its full speed; the cleaner handles the rest.
START = r"[ \t]*[A-Z]"


@dataclass(frozen=True)
class DocstringPrompt:
    text: str
    stop: list[str]
    chat: bool
    start: str = START
    # The chat turns ``text`` was rendered from (None for completion-style prompts):
    # a model server applies its own template to them. ``prefill`` opens the answer.
    messages: list[Message] | None = None
    prefill: str = ""


def _span(node: ast.AST) -> tuple[int, int]:
    """0-based first line (decorators included) and last line of a statement."""
    first = node.lineno - 1  # type: ignore[attr-defined]
    for d in getattr(node, "decorator_list", []):
        first = min(first, d.lineno - 1)
    return first, node.end_lineno - 1  # type: ignore[attr-defined]


def _header_end(node: ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """The last line of a definition's header: its docstring if it has one, else the
    line before its first statement."""
    first = node.body[0]
    if (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
            and isinstance(first.value.value, str)):
        return first.end_lineno - 1  # type: ignore[operator]
    return max(node.lineno - 1, first.lineno - 2)


def context_lines(source: str, fn: FunctionTarget, budget_chars: int) -> list[int]:
    """The lines of ``source`` (0-based, ascending) worth showing around ``fn`` within
    ``budget_chars``, the function itself excluded.

    Always: the headers of the classes that enclose it. Then, while they fit: the
    definitions its body uses (module functions and classes, methods of its class,
    constants), whole when small, else their header; the imports; the definitions
    just before and after it (their docstrings are examples of the file's style);
    then the rest of the file from the top. Never the head of the file at the
    expense of the function."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []
    lines = split_lines(source)
    chosen: set[int] = set()
    used = 0

    def take(first: int, last: int, *, force: bool = False) -> bool:
        nonlocal used
        new = [n for n in range(first, last + 1)
               if n not in chosen and not fn.start_line <= n <= fn.end_line]
        cost = sum(len(lines[n]) + 1 for n in new)
        if not force and used + cost > budget_chars:
            return False
        chosen.update(new)
        used += cost
        return True

    # The enclosing classes (outermost first) and the definitions at each level.
    scopes: list[list[ast.stmt]] = [tree.body]
    target_node: ast.FunctionDef | ast.AsyncFunctionDef | None = None
    node: ast.AST = tree
    while target_node is None:
        nxt: ast.AST | None = None
        for child in ast.iter_child_nodes(node):
            if not isinstance(child, (ast.stmt, ast.ExceptHandler)):
                continue
            a, b = _span(child)
            if not a <= fn.def_line <= b:
                continue
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) and \
                    child.lineno - 1 == fn.def_line:
                target_node = child
            elif isinstance(child, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                take(a, _header_end(child), force=True)
                scopes.append(child.body)
                nxt = child
            else:  # if / try / with around the definition: look inside
                nxt = child
            break
        if target_node is None:
            if nxt is None:
                return sorted(chosen)
            node = nxt

    def definitions() -> dict[str, ast.stmt]:
        out: dict[str, ast.stmt] = {}
        for body in scopes:  # inner scopes win
            for stmt in body:
                if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    out[stmt.name] = stmt
                elif isinstance(stmt, (ast.Assign, ast.AnnAssign)):
                    targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
                    for t in targets:
                        if isinstance(t, ast.Name):
                            out[t.id] = stmt
        return out

    defs = definitions()
    names: list[str] = []
    for sub in ast.walk(target_node):
        if isinstance(sub, ast.Name):
            names.append(sub.id)
        elif isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Name) and \
                sub.value.id in ("self", "cls"):
            names.append(sub.attr)
    for name in dict.fromkeys(names):
        stmt = defs.get(name)
        if stmt is None or stmt is target_node:
            continue
        a, b = _span(stmt)
        if b - a > 25 and isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef,
                                             ast.ClassDef)):
            take(a, _header_end(stmt))
        else:
            take(a, b) or (isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef,
                                            ast.ClassDef)) and take(a, _header_end(stmt)))
    for stmt in tree.body:
        if isinstance(stmt, (ast.Import, ast.ImportFrom)):
            take(*_span(stmt))
    # Neighbours in the innermost scope, nearest first.
    siblings = [s for s in scopes[-1] if s is not target_node]
    siblings.sort(key=lambda s: abs(_span(s)[0] - fn.def_line))
    for stmt in siblings:
        a, b = _span(stmt)
        if not take(a, b) and isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                 ast.ClassDef)):
            take(a, _header_end(stmt))
    for n in range(len(lines)):  # then the file from the top, as room allows
        if not take(n, n):
            break
    return sorted(chosen)


def _render_lines(lines: list[str], numbers: list[int], gap: str | None) -> str:
    """The numbered lines in order; ``gap`` (a line) where lines were left out."""
    out: list[str] = []
    previous = -1
    for n in numbers:
        if gap is not None and n != previous + 1 and out:
            out.append(gap)
        out.append(lines[n])
        previous = n
    return "\n".join(out)


def focused_file(source: str, fn: FunctionTarget, budget_chars: int,
                 gap: str = "# ...") -> str:
    """The file as context for documenting ``fn`` (the function itself left out): all
    of it when it fits, else what ``context_lines`` chooses, gaps marked."""
    if len(source) <= budget_chars:
        return source
    lines = split_lines(source)
    return _render_lines(lines, context_lines(source, fn, budget_chars), gap)


def completion_prefix(source: str, fn: FunctionTarget, budget_chars: int) -> str:
    """The text a base model continues: context, then ``fn`` up to its signature's
    colon. The signature is always there, whatever the budget; without a marker
    where lines were left out (small models copy markers into the docstring)."""
    lines = split_lines(source)
    head = lines[: fn.colon[0] + 1]
    if fn.body_line == fn.colon[0]:  # one-line function: cut after the colon
        head = lines[: fn.colon[0]] + [lines[fn.colon[0]][: fn.colon[1] + 1]]
    signature = "\n".join(head[fn.start_line:])
    whole = "\n".join(head)
    if len(whole) <= budget_chars:
        return whole
    left = max(0, budget_chars - len(signature))
    before = [n for n in context_lines(source, fn, left) if n < fn.start_line]
    # Lines after the function cannot come before its signature in a continuation.
    context = _render_lines(lines, before, "")  # a blank line where lines were left out
    return (context + "\n\n" if context else "") + signature


def build_prompt(source: str, fn: FunctionTarget, *, path: str, chat_template: str | None,
                 bos_token: str = "", eos_token: str = "", context_tokens: int = 4096,
                 max_tokens: int = 160, root: Path | None = None,
                 style: str = "google") -> DocstringPrompt:
    """Stable parts first (instructions, the file), then the function that changes."""
    func = function_source(source, fn)
    reserve = max_tokens + 200 + len(func) // CHARS_PER_TOKEN
    budget = max(0, (context_tokens - reserve) * CHARS_PER_TOKEN)
    if chat_template:
        # File context goes in the system turn (stable across requests on this file);
        # the function is the user turn; the answer is primed with the opening quotes,
        # which keeps small models from echoing the code back.
        messages = [
            Message("system", render("docstring.system.txt", root, path=path,
                                     style_rules=STYLE_RULES.get(style, STYLE_RULES["google"]),
                                     file_text=focused_file(source, fn, budget)).strip()),
            Message("user", render("docstring.user.txt", root, qualname=fn.qualname,
                                   function=func).strip()),
        ]
        try:
            text = render_chat(chat_template, messages, bos_token=bos_token, eos_token=eos_token)
        except ChatTemplateError:  # e.g. templates that refuse a system role
            text = render_chat(chat_template, merge_system(messages), bos_token=bos_token,
                               eos_token=eos_token)
        stop = ['"""', *(s for s in (eos_token, "<|im_end|>", "<end_of_turn>") if s)]
        return DocstringPrompt(text + PREFILL, stop, chat=True, messages=messages,
                               prefill=PREFILL)
    # Base model: continue the file right after the signature, inside `"""`.
    prefix = completion_prefix(source, fn, budget) + "\n"
    text = render("docstring.completion.txt", root, file_prefix=prefix, indent=fn.body_indent)
    return DocstringPrompt(text, ['"""', "'''", "\ndef ", "\nclass ", "\n\n\n"], chat=False)


# ------------------------------------------------------------ the first word
#
# A summary says what the function does (PEP 257: "Return the ..."; many projects
# write "Returns ..."). Left free, the bundled models begin with chatter that the
# checks then refuse ("Python docstring for `f`", "This is a docstring"), so the
# first word is constrained to a verb. The grammar admits what a tokenizer begins
# such a word with: either case, either form, after a space or a new line
# (completion-style prompts continue right after the opening quotes), and leaves
# everything after the first word free. Properties describe a thing ("The second
# item of ...") and begin with a noun phrase's first word instead; dunders are free.

_SUMMARY_VERB_LIST = """
accept add adjust allow append apply ask assign attach build calculate call cast check
choose clean clear close collect combine compare compile compute configure construct
contain convert copy count create decode decorate define delete describe detect
determine disable dispatch display drop dump emit enable encode ensure escape evaluate
execute expand extract fetch fill filter find flush format generate get guess handle
hash ignore include initialize insert inspect iterate join keep list load locate lock
look make map mark match merge migrate modify move normalize notify open parse pass
patch perform place pop populate prepare print process produce provide push put
quote raise read receive record reduce refresh register reload remove rename render
reorder replace report represent request require reset resolve restore retrieve
return reverse run save scan search select send serialize set setup show skip sort
split start stop store strip substitute swap take tell test transform translate
truncate try turn unescape unpack unquote update upgrade use validate verify visit
wait walk warn wrap write yield
"""
SUMMARY_VERBS = tuple(_SUMMARY_VERB_LIST.split())


def _first_words(words: set[str]) -> str:
    forms = sorted({f for w in words for f in (w, w.capitalize())})
    return "first ::= " + " | ".join(f'"{f}"' for f in forms) + "\n"


# A property describes a thing: its summary begins with an article, "Whether", one
# of the words of its own name ("Runtime path tied to the user" for
# ``user_runtime_path``) or a verb ("Return the ...", as many projects write).
NOUN_OPENERS = ("the", "a", "an", "whether", "true", "each", "all", "any", "its")


def _is_property(fn: FunctionTarget) -> bool:
    return any(d.rsplit(".", 1)[-1] in ("property", "cached_property")
               or d.endswith((".setter", ".getter", ".deleter")) for d in fn.decorators)


def summary_grammar(fn: FunctionTarget, avoid: str = "") -> str | None:
    """GBNF for a docstring's summary: a function's begins with a verb, a property's
    with a noun phrase's first word; None for a dunder (no constraint). ``avoid``: the
    refused answer's first word, which the re-ask may not begin with (in either form:
    a model that copied "Sorts the items ..." from a neighbour starts it again)."""
    if fn.name.startswith("__"):
        return None
    avoided = avoid.lower()
    words = {form for forms in ((v, cleaning.third_person(v)) for v in SUMMARY_VERBS)
             if avoided not in forms for form in forms}
    if _is_property(fn):
        words |= {w.lower() for w in re.findall(r"[A-Za-z]{2,}", fn.name)} | set(NOUN_OPENERS)
        words.discard(avoid.lower())
    return (r'root ::= [ \t\n]* first ([ ,.;:\n] rest)?' + "\n" + _first_words(words)
            + r'rest ::= [^\x00]*' + "\n")


# ----------------------------------------------------------------------- styles

STYLES = ("google", "numpy", "sphinx")
STYLE_RULES = {
    "google": ('If the function takes arguments, add a blank line and an "Args:" section with '
               'one line per argument ("name: what it is").\nIf it returns a value, add a '
               '"Returns:" line.'),
    "numpy": ('If the function takes arguments, add a blank line, then "Parameters", then '
              '"----------", then for each argument a line "name : type" and an indented '
              'description.\nIf it returns a value, add "Returns" and "-------" the same way.'),
    "sphinx": ('If the function takes arguments, add a blank line and one ":param name: what '
               'it is" line per argument.\nIf it returns a value, add a ":returns: ..." line.'),
}


def detect_style(source: str) -> str:
    """The docstring convention the file already uses (Google when it shows none)."""
    if re.search(r"^\s*:param\b", source, re.M):
        return "sphinx"
    if re.search(r"^\s*Parameters\s*\n\s*-{3,}", source, re.M):
        return "numpy"
    return "google"


_GOOGLE_SECTION = re.compile(r"^(Args|Arguments|Parameters|Keyword Args|Keyword Arguments):\s*$")
_GOOGLE_ITEM = re.compile(r"^(\*{0,2}[A-Za-z_]\w*)\s*(\([^)]*\))?\s*:")


def documented_params(text: str) -> list[str] | None:
    """Parameter names a docstring documents, or None when it has no parameter section."""
    lines = split_lines(text)
    sphinx = re.findall(r"^\s*:param\s+(?:[^:]*\s)?(\*{0,2}\w+)\s*:", text, re.M)
    if sphinx:
        return sphinx
    for n, line in enumerate(lines):
        if line.strip() == "Parameters" and n + 1 < len(lines) and \
                set(lines[n + 1].strip()) == {"-"}:
            base = len(line) - len(line.lstrip())
            out = []
            rest = lines[n + 2:]
            for k, item in enumerate(rest):
                if not item.strip() or len(item) - len(item.lstrip()) > base:
                    continue  # blank, or a description under an item
                if k + 1 < len(rest) and rest[k + 1].strip() and set(rest[k + 1].strip()) == {"-"}:
                    break  # the next section's title
                m = re.match(r"^(\*{0,2}\w+)\s*(:|$)", item.strip())
                if m:
                    out.append(m.group(1))
            return out
    for n, line in enumerate(lines):
        if _GOOGLE_SECTION.match(line.strip()):
            indent = None
            out = []
            for item in lines[n + 1:]:
                if not item.strip():
                    continue
                width = len(item) - len(item.lstrip())
                if width == 0:
                    break
                indent = width if indent is None else indent
                if width == indent:
                    m = _GOOGLE_ITEM.match(item.strip())
                    if m:
                        out.append(m.group(1))
            return out
    return None


def check_params(text: str, fn: FunctionTarget) -> None:
    """No invented parameter, none missing (self/cls aside; `*args` may be `args`)."""
    real = [p for p in fn.params if p not in ("self", "cls")]
    documented = documented_params(text)
    if documented is None:
        if real:
            raise DocstringError(f"the docstring documents none of the parameters "
                                 f"({', '.join(real)})")
        return
    bare = {p.lstrip("*") for p in real}
    got = {d.lstrip("*") for d in documented}
    invented, missing = got - bare, bare - got
    if invented or missing:
        parts = []
        if invented:
            parts.append(f"invented: {', '.join(sorted(invented))}")
        if missing:
            parts.append(f"missing: {', '.join(sorted(missing))}")
        raise DocstringError("the documented parameters are not the real ones ("
                             + "; ".join(parts) + ")")


# ------------------------------------------------------------------------- junk
#
# What a tiny model writes when it has nothing to say never reaches the user: a
# junk summary refuses the docstring; junk parameter lines are dropped (the
# parameters are then asked for once more, and refused if still junk); a Returns
# section is dropped when it is junk or the function returns nothing; a return
# type that contradicts the annotation or the returned values refuses it.

_ITEM_GOOGLE = re.compile(r"^(\*{0,2}[A-Za-z_]\w*)\s*(?:\(([^)]*)\))?\s*:\s*(.*)$")
_SPHINX_PARAM = re.compile(r"^:param\s+(?:([^:]*?)\s+)?(\*{0,2}\w+)\s*:\s*(.*)$")
_SPHINX_RETURNS = re.compile(r"^:(returns?|rtype)\s*:\s*(.*)$")
_RETURNS_TITLE = re.compile(r"^(Returns?|Yields?)\s*:?\s*$")


@dataclass(frozen=True)
class Section:
    """A part of a docstring: ``kind`` is "param" or "returns"; lines are 0-based and
    inclusive; ``type`` is what it declares (``(int)``, ``int:``, ``:rtype:``)."""
    kind: str
    first: int
    last: int
    name: str
    description: str
    type: str = ""


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _continuation(lines: list[str], n: int, base: int) -> int:
    """The last line of the item starting at ``n``: lines indented deeper than ``base``."""
    end = n
    for k in range(n + 1, len(lines)):
        if lines[k].strip() and _indent(lines[k]) > base:
            end = k
        else:
            break
    return end


def sections(text: str) -> list[Section]:
    """The parameter items and the returns part of a Google, NumPy or Sphinx docstring."""
    lines = split_lines(text)
    out: list[Section] = []
    n = 0
    while n < len(lines):
        line, stripped = lines[n], lines[n].strip()
        m = _SPHINX_PARAM.match(stripped)
        if m:
            end = _continuation(lines, n, _indent(line))
            desc = " ".join([m.group(3), *(x.strip() for x in lines[n + 1:end + 1])])
            out.append(Section("param", n, end, m.group(2), desc.strip(), m.group(1) or ""))
            n = end + 1
            continue
        m = _SPHINX_RETURNS.match(stripped)
        if m:
            end = _continuation(lines, n, _indent(line))
            desc = " ".join([m.group(2), *(x.strip() for x in lines[n + 1:end + 1])]).strip()
            if m.group(1) == "rtype":
                out.append(Section("returns", n, end, "", "", desc))
            else:
                out.append(Section("returns", n, end, "", desc))
            n = end + 1
            continue
        numpy = n + 1 < len(lines) and set(lines[n + 1].strip()) == {"-"} and stripped
        if _GOOGLE_SECTION.match(stripped) or (numpy and stripped == "Parameters"):
            base = _indent(line)
            k = n + (2 if numpy else 1)
            while k < len(lines):
                item = lines[k]
                if not item.strip():
                    k += 1
                    continue
                if _indent(item) <= base and not numpy:
                    break
                if numpy and (_indent(item) < base or (k + 1 < len(lines) and
                              set(lines[k + 1].strip()) == {"-"})):
                    break
                end = _continuation(lines, k, _indent(item))
                if numpy:
                    m2 = re.match(r"^(\*{0,2}\w+)\s*(?::\s*(.*))?$", item.strip())
                    if m2:
                        desc = " ".join(x.strip() for x in lines[k + 1:end + 1])
                        out.append(Section("param", k, end, m2.group(1), desc, m2.group(2) or ""))
                else:
                    m2 = _ITEM_GOOGLE.match(item.strip())
                    if m2:
                        desc = " ".join([m2.group(3), *(x.strip() for x in lines[k + 1:end + 1])])
                        out.append(Section("param", k, end, m2.group(1), desc.strip(),
                                           m2.group(2) or ""))
                k = end + 1
            n = k
            continue
        if _RETURNS_TITLE.match(stripped):
            base = _indent(line)
            start = n + 2 if numpy else n + 1
            end = start - 1
            for k in range(start, len(lines)):
                if not lines[k].strip():
                    if k + 1 < len(lines) and lines[k + 1].strip() and \
                            _indent(lines[k + 1]) > base:
                        continue
                    break
                if _indent(lines[k]) <= base and not (numpy and k == start):
                    break
                end = k
            body = [x.strip() for x in lines[start:end + 1] if x.strip()]
            rtype, desc = "", " ".join(body)
            if numpy and body:
                rtype, desc = body[0], " ".join(body[1:])
            elif body:
                m3 = re.match(r"^([A-Za-z_][\w\[\], .|]*?)\s*:\s+(.*)$", body[0])
                if m3 and len(m3.group(1).split()) <= 3:
                    rtype, desc = m3.group(1), " ".join([m3.group(2), *body[1:]])
                elif re.fullmatch(r"[A-Za-z_][\w\[\], .|]*", body[0]) and len(body) == 1 and \
                        body[0].lower().rstrip(".") in _TYPE_NAMES:
                    rtype, desc = body[0].rstrip("."), ""
            out.append(Section("returns", n, max(end, n), "", desc, rtype))
            n = max(end, n) + 1
            continue
        n += 1
    return out


_TYPE_NAMES = frozenset(["int", "float", "str", "bool", "list", "dict", "tuple", "set",
                         "bytes", "none", "string", "integer", "boolean"])
_TYPE_ALIASES = {"string": "str", "integer": "int", "boolean": "bool", "none": "None"}


def _type_names(text: str) -> set[str]:
    names = {_TYPE_ALIASES.get(w.lower(), w) for w in re.findall(r"[A-Za-z_]\w*", text)}
    return {n for n in names if n in ("int", "float", "str", "bool", "list", "dict", "tuple",
                                      "set", "bytes", "None")}


def return_type_conflict(declared: str, fn: FunctionTarget) -> str | None:
    """Why a declared return type contradicts the annotation or the returned values."""
    said = _type_names(declared)
    if not said:
        return None
    if fn.return_annotation:
        real = _type_names(fn.return_annotation)
        if real and not said & real:
            return (f"the docstring says it returns {declared!r}, the annotation says "
                    f"{fn.return_annotation!r}")
        return None
    if fn.return_kinds:
        real = set(fn.return_kinds)
        if not said & real and not (said == {"float"} and real == {"int"}):  # int is a float
            return (f"the docstring says it returns {declared!r}, the code returns "
                    f"{'/'.join(sorted(real))}")
    return None


def _param_descriptions(text: str, fn: FunctionTarget) -> dict[str, Section]:
    return {sec.name.lstrip("*"): sec for sec in sections(text) if sec.kind == "param"}


def docstring_junk(text: str, fn: FunctionTarget, source: str = "") -> list[str]:
    """Every reason ``text`` is junk as a docstring of ``fn`` (empty: none found).

    Independent of the parameter check: placeholders, the name repeated, one word,
    the same description for two parameters, a summary that is a placeholder, a
    Returns part for a function that returns nothing, a type the code contradicts."""
    reasons: list[str] = []
    summary = summary_part(text)
    first = summary.split("\n\n", 1)[0]
    why = cleaning.summary_junk_reason(first, fn.qualname)
    if why:
        reasons.append(why)
    if "file truncated" in text or re.search(r"^\s*# \.\.\.", text, re.M):
        reasons.append("the docstring copies a marker of the prompt")
    items = _param_descriptions(text, fn)
    known = cleaning.file_words(source) if source else None
    if why := _made_up(first, known, source):
        reasons.append(f"the summary {why}")
    for paragraph in _body_paragraphs(text):
        if why := _made_up(paragraph.text, known, source, names=1):
            reasons.append(f"a paragraph {why}")
    for name, sec in items.items():
        for why in (cleaning.placeholder_reason(sec.description, name),
                    cleaning.invented_reason(sec.description, known)):
            if why:
                reasons.append(f"parameter {name}: {why}")
        conflict = _param_type_conflict(sec.type, name, fn)
        if conflict:
            reasons.append(conflict)
    for name in cleaning.repeated_descriptions({n: sec.description for n, sec in items.items()}):
        reasons.append(f"parameter {name}: the same description as another parameter")
    for sec in sections(text):
        if sec.kind != "returns":
            continue
        if fn.returns_value is False:
            reasons.append("the docstring says what it returns, but it returns nothing")
            continue
        if sec.description:
            why = cleaning.placeholder_reason(sec.description, min_words=1)
            if why:
                reasons.append(f"returns: {why}")
        if sec.type:
            conflict = return_type_conflict(sec.type, fn)
            if conflict:
                reasons.append(conflict)
    return reasons


@dataclass(frozen=True)
class _Paragraph:
    text: str
    first: int  # line numbers in the docstring, inclusive
    last: int


def _body_paragraphs(text: str) -> list[_Paragraph]:
    """The paragraphs between the summary and the first section: prose the model wrote
    about the function beyond its first sentence."""
    end = len(split_lines(summary_part(text)))
    out: list[_Paragraph] = []
    start: int | None = None
    lines = split_lines(text)[:end]
    for n, line in enumerate([*lines, ""]):
        if line.strip() and start is None:
            start = n
        elif not line.strip() and start is not None:
            out.append(_Paragraph("\n".join(lines[start:n]), start, n - 1))
            start = None
    return out[1:]  # the first paragraph is the summary, checked on its own


def _made_up(text: str, known: frozenset[str] | None, source: str,
             names: int = 2) -> str | None:
    """Why ``text`` is made up: ``names`` or more names the file does not have, or a
    link it does not have. A paragraph after the summary goes for one such name ("If
    the value is not an instance of _LocalVersion", in a file without it: Gemma,
    packaging/version.py): the summary is kept, so little is lost."""
    return cleaning.invented_reason(text, known, names) or (
        cleaning.invented_link(text, source) if source else None)


def _param_type_conflict(declared: str, name: str, fn: FunctionTarget) -> str | None:
    del declared, name, fn  # parameter annotations are not kept yet: nothing to contradict
    return None


def drop_junk(text: str, fn: FunctionTarget, source: str = "") -> str:
    """``text`` without its junk parameter items and junk Returns part; DocstringError
    when the summary itself (or a claimed return type) is junk: then nothing is kept.
    ``source``: the file, whose names a description may cite (others are made up)."""
    first = summary_part(text).split("\n\n", 1)[0]
    why = cleaning.summary_junk_reason(first, fn.qualname)
    known = cleaning.file_words(source) if source else None
    if not why and (made_up := _made_up(first, known, source)):
        why = f"the summary {made_up}"
    if why:
        raise DocstringError(f"{why}; not shown")
    lines = split_lines(text)
    drop: set[int] = set()
    for paragraph in _body_paragraphs(text):  # the summary stays; made-up prose goes
        if _made_up(paragraph.text, known, source, names=1):
            drop.update(range(paragraph.first, paragraph.last + 1))
    items = _param_descriptions(text, fn)
    repeated = set(cleaning.repeated_descriptions(
        {n: sec.description for n, sec in items.items()}))
    for name, sec in items.items():
        if name in repeated or cleaning.placeholder_reason(sec.description, name) or \
                cleaning.invented_reason(sec.description, known):
            drop.update(range(sec.first, sec.last + 1))
    for sec in sections(text):
        if sec.kind != "returns":
            continue
        if sec.type and return_type_conflict(sec.type, fn):
            raise DocstringError(f"{return_type_conflict(sec.type, fn)}; not shown")
        if fn.returns_value is False or (sec.description and cleaning.placeholder_reason(
                sec.description, min_words=1)) or \
                (not sec.description and not sec.type):
            drop.update(range(sec.first, sec.last + 1))
    if not drop:
        return text
    kept = [line for n, line in enumerate(lines) if n not in drop]
    # A section title left with nothing under it goes too.
    out: list[str] = []
    for n, line in enumerate(kept):
        title = _GOOGLE_SECTION.match(line.strip()) or line.strip() == "Parameters"
        rest = [x for x in kept[n + 1:] if x.strip()]
        if title:
            nxt = rest[0] if rest else ""
            if line.strip() == "Parameters" and set(nxt.strip()) == {"-"}:
                after = rest[1] if len(rest) > 1 else ""
                if not after or _indent(after) < _indent(line) or \
                        _SECTION_START.match(after) or after.strip() in ("Returns", "Yields"):
                    continue
            elif not nxt or _indent(nxt) <= _indent(line):
                continue
        if set(line.strip()) == {"-"} and out and out[-1].strip() == "":
            continue
        out.append(line)
    # Orphaned dashes of a removed NumPy title.
    final: list[str] = []
    for line in out:
        if set(line.strip()) == {"-"} and (not final or not final[-1].strip() or
                                          final[-1].strip() not in ("Parameters", "Returns",
                                                                    "Yields")):
            continue
        final.append(line)
    return cleaning.tidy_blank_lines("\n".join(final))


# ------------------------------------------------- completing the parameters
#
# Small models often write a good summary and no parameter section. Rather
# than refuse, a second, grammar-constrained request asks for one description
# per real parameter (the grammar admits exactly those names), and Hearth
# writes the section in the file's convention.

_SECTION_START = re.compile(
    r"^\s*(Args|Arguments|Parameters|Returns|Return|Yields|Raises|Keyword Args|Examples?|"
    r"Notes?)\s*:?\s*$|^\s*:(param|returns?|rtype|raises)\b", re.M)


def summary_part(text: str) -> str:
    """The docstring without its parameter/returns sections."""
    m = _SECTION_START.search(text)
    return (text[: m.start()] if m else text).strip()


def copies_another_docstring(source: str, text: str) -> bool:
    """Whether ``text`` starts like a docstring the file already has (small models copy
    the module docstring)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return False
    first = split_lines(summary_part(text))[0].strip().lower() if text.strip() else ""
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node)
            if doc and first and split_lines(doc.strip())[0].strip().lower() == first:
                return True
    return False


def real_params(fn: FunctionTarget) -> tuple[str, ...]:
    return tuple(p for p in fn.params if p not in ("self", "cls"))


def returns_value(source: str, fn: FunctionTarget) -> bool:
    """Whether the function returns a value (a `return x` of its own, not a nested one's)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return False
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and \
                node.lineno - 1 == fn.def_line:
            stack: list[ast.AST] = list(node.body)
            while stack:
                child = stack.pop()
                if isinstance(child, ast.Return) and child.value is not None and not (
                        isinstance(child.value, ast.Constant) and child.value.value is None):
                    return True
                if not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda,
                                          ast.ClassDef)):
                    stack.extend(ast.iter_child_nodes(child))
    return False


# A worked example shown before the real function (an earlier turn in chat, an
# earlier entry otherwise): the bundled models copy the shape of an answer they see
# far better than they follow one described ("threshold: low_stock", "int32(10)").
PARAMS_EXAMPLE = {
    "qualname": "to_celsius", "path": "weather.py",
    "function": "def to_celsius(f, digits=1):\n    return round((f - 32) / 1.8, digits)",
    "summary": "Convert degrees Fahrenheit to Celsius.",
    "shape": '{"params": {"f": "...", "digits": "..."}, "returns": "..."}',
}
PARAMS_EXAMPLE_PARAMS = {"f": "the temperature in degrees Fahrenheit",
                         "digits": "how many decimals to round the result to"}
PARAMS_EXAMPLE_RETURNS = "the temperature in degrees Celsius"
PARAMS_EXAMPLE_ANSWER = {"params": PARAMS_EXAMPLE_PARAMS, "returns": PARAMS_EXAMPLE_RETURNS}
_EXAMPLE_WORDS = frozenset(["temperature", "fahrenheit", "celsius"])


def params_prompt(values: dict[str, str], *, chat: bool,
                  root: Path | None = None) -> tuple[list[Message] | None, str]:
    """The request for parameter descriptions, after the worked example."""
    answer = json.dumps(PARAMS_EXAMPLE_ANSWER)
    if chat:
        messages, _ = task_prompt("docstring.params", root, chat=True, **values)
        assert messages is not None
        example = render("docstring.params.user.txt", root, **PARAMS_EXAMPLE).strip()
        return [messages[0], Message("user", example), Message("assistant", answer),
                *messages[1:]], ""
    _, example_text = task_prompt("docstring.params", root, chat=False, **PARAMS_EXAMPLE)
    _, text = task_prompt("docstring.params", root, chat=False, **values)
    return None, f"{example_text.rstrip()} {answer}\n\n{text}"


def params_grammar(params: tuple[str, ...], returns: bool) -> str:
    from .comments import fields_grammar  # one grammar builder for every language

    return fields_grammar(params, returns, summary=False)


def parse_params_answer(raw: str, params: tuple[str, ...],
                        source: str = "") -> tuple[dict[str, str], str]:
    """The descriptions in the model's JSON answer; DocstringError when they are not
    worth keeping. ``source``: the function, for words an answer may share with the
    worked example (a function about temperatures may say "Fahrenheit")."""
    try:
        data = json.loads(raw[raw.find("{"):])
    except ValueError as exc:
        raise DocstringError(f"the parameter descriptions are not JSON: {raw[:60]!r}") from exc
    got = {str(k): " ".join(str(v).split()).rstrip(".") for k, v in
           (data.get("params") or {}).items()}
    if tuple(got) != tuple(p.lstrip("*") for p in params):
        raise DocstringError(f"described parameters {list(got)} are not {list(params)}")
    copied = {v.lower() for v in PARAMS_EXAMPLE_PARAMS.values()} | {
        "what it is", "what it does", "", PARAMS_EXAMPLE_RETURNS}
    # Words only the example has ("f: the temperature in degrees Fahrenheit, the
    # number of digits" for a function about something else: Gemma).
    own = {w for w in _EXAMPLE_WORDS if w not in source.lower()}
    if any(v.lower() in copied or own & set(re.findall(r"[a-z]+", v.lower()))
           for v in got.values()):
        raise DocstringError("the parameter descriptions copy the example")
    for v in [*got.values(), str(data.get("returns", ""))]:
        if re.search(r"[{};]|\w\(.*\)|\[\]", v):
            raise DocstringError(f"a parameter description is code, not prose: {v[:60]!r}")
    junk = [f"{name}: {why}" for name, desc in got.items()
            if (why := cleaning.placeholder_reason(desc, name))]
    junk += [f"{name}: the same as another parameter's"
             for name in cleaning.repeated_descriptions(got) if name not in junk]
    if junk:
        raise DocstringError("the model could not describe the parameters (" + "; ".join(junk)
                             + "); write them yourself or configure a larger model")
    returned = " ".join(str(data.get("returns", "")).split()).rstrip(".")
    if returned and cleaning.placeholder_reason(returned, min_words=1):
        returned = ""  # a placeholder says less than no Returns section
    return {p: got[p.lstrip("*")] for p in params}, returned


def render_sections(style: str, params: dict[str, str], returns: str) -> str:
    """The parameter and returns sections in ``style`` (unindented docstring text)."""
    out: list[str] = []
    if style == "numpy":
        if params:
            out += ["Parameters", "----------"]
            for name, desc in params.items():
                out += [name, f"    {desc}."]
        if returns:
            out += ([""] if out else []) + ["Returns", "-------", f"    {returns}."]
    elif style == "sphinx":
        out += [f":param {name}: {desc}." for name, desc in params.items()]
        if returns:
            out.append(f":returns: {returns}.")
    else:
        if params:
            out += ["Args:", *(f"    {name}: {desc}." for name, desc in params.items())]
        if returns:
            out += ([""] if out else []) + ["Returns:", f"    {returns[:1].upper()}{returns[1:]}."]
    return "\n".join(out)


# ---------------------------------------------------------------------- parsing


# "This function takes x and returns y." says what the function does with a subject
# that docstrings leave out: keep the sentence from its verb on ("Takes x and ...").
_META_SUBJECT = re.compile(
    r"^(?:this|the)\s+(?:`[^`\n]+`\s+)?(?:python\s+)?(?:function|method|helper)\s+"
    r"(?!(?:is|was|has|does)\b)(?=[a-z]+s\b)", re.I)


def drop_meta_subject(text: str) -> str:
    m = _META_SUBJECT.match(text)
    if m is None:
        return text
    rest = text[m.end():]
    return rest[:1].upper() + rest[1:]


def clean_output(raw: str, fn: FunctionTarget, stops: tuple[str, ...] | list[str] = (),
                 source: str = "") -> str:
    """The docstring text in the model's answer, or '' when there is none. ``source``
    (the file) lets descriptions that cite names the code lacks go as junk."""
    text = cleaning.cut_at_stops(raw, list(stops))
    text = cleaning.strip_code_fences(text)
    # An answer that quotes the docstring: keep what is inside the quotes.
    for quote in ('"""', "'''"):
        if quote in text:
            parts = text.split(quote)
            inner = parts[1] if len(parts) > 2 or text.strip().startswith(quote) else parts[0]
            text = inner
            break
    text = cleaning.strip_chatter(text)
    kept = []
    for line in split_lines(text):
        stripped = line.strip()
        # The model echoing the code is not documentation.
        if stripped.startswith(("def ", "async def ", "class ", "@", "return ", "import ",
                                "from ")) or stripped.startswith(f"{fn.name}("):
            break
        kept.append(line)
    text = cleaning.dedent_block("\n".join(kept))
    text = cleaning.drop_repeated_lines(text)
    text = cleaning.tidy_blank_lines(text)
    lines = split_lines(text)[:40]  # a docstring, not an essay
    text = drop_meta_subject("\n".join(lines).strip())
    # Junk never reaches the user: a placeholder summary refuses; placeholder
    # parameter lines go (the parameters are then asked for once more).
    return drop_junk(text, fn, source) if text else text


# ------------------------------------------------------------------- placement


def render_docstring(text: str, indent: str) -> str:
    """``text`` as a docstring literal at ``indent`` (no trailing newline)."""
    body = text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    lines = split_lines(body)
    if len(lines) == 1:
        return f'{indent}"""{lines[0]}"""'
    rest = [f"{indent}{line}" if line.strip() else "" for line in lines[1:]]
    return "\n".join([f'{indent}"""{lines[0]}', *rest, f'{indent}"""'])


def docstring_edit(source: str, fn: FunctionTarget, text: str) -> Edit:
    """The edit that makes ``text`` the docstring of ``fn`` (inserting or replacing)."""
    literal = render_docstring(text, fn.body_indent)
    if fn.docstring is not None:
        line, col, end_line, end_col = fn.docstring
        edit = Edit((line, col), (end_line, end_col), literal.lstrip())
    elif fn.body_line > fn.colon[0]:
        # Insert right under the signature, before comments and the first statement.
        edit = Edit((fn.colon[0] + 1, 0), (fn.colon[0] + 1, 0), literal + "\n")
    else:  # `def f(): return 1`: move the body to its own line under the docstring.
        colon_line, colon_col = fn.colon
        edit = Edit((colon_line, colon_col + 1), (fn.body_line, fn.body_col),
                    "\n" + literal + "\n" + fn.body_indent)
    return Edit(edit.start, edit.end, with_newlines_of(source, edit.new_text))


def apply_edit(source: str, edit: Edit) -> str:
    lines = split_lines(source, keepends=True)
    if not source.endswith(("\n", "\r")):
        lines.append("")

    def offset(pos: tuple[int, int]) -> int:
        line, col = pos
        if line >= len(lines):
            return len(source)
        return sum(len(x) for x in lines[:line]) + col

    start, end = offset(edit.start), offset(edit.end)
    return source[:start] + edit.new_text + source[end:]


def _strip_docstrings(tree: ast.AST) -> str:
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Module)):
            body = node.body
            if (body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                    and isinstance(body[0].value.value, str)):
                node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, include_attributes=False)


def validate(source: str, new_source: str, fn: FunctionTarget, text: str) -> None:
    """The new file parses, its code is unchanged, and ``fn`` has exactly ``text``."""
    try:
        new_tree = ast.parse(new_source)
    except SyntaxError as exc:
        raise DocstringError(f"the edit would break the file: {exc.msg} (line {exc.lineno})") from exc
    if _strip_docstrings(ast.parse(source)) != _strip_docstrings(ast.parse(new_source)):
        raise DocstringError("the edit would change code, not only the docstring")
    for node in ast.walk(new_tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == fn.name \
                and node.lineno - 1 == fn.def_line:
            if (ast.get_docstring(node, clean=True) or "") != inspect.cleandoc(text):
                raise DocstringError("the docstring did not land where expected")
            junk = docstring_junk(text, fn, source)
            if junk:
                raise DocstringError("the docstring is not worth keeping: " + "; ".join(junk))
            return
    raise DocstringError(f"function {fn.qualname} not found after the edit")
