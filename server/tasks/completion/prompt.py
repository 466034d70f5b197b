"""Completion prompts: fill-in-the-middle per model family, or prefix-only continuation.

Pure: no model, no LSP. The model family is detected from the token strings of the
GGUF's vocabulary (and its name, for vocabularies shared with siblings that were
never trained to fill in the middle); the context is the text around the cursor,
cut at line boundaries to a token budget, with the window's start kept still while
the cursor moves within it so llama.cpp's KV prefix cache carries over between
keystrokes.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

# Estimated characters per token for the budget (the index's context uses the same).
CHARS_PER_TOKEN = 3
# The prefix window starts on a line that is a multiple of this: typing, or moving
# the cursor a few lines, keeps the same start and so the same cached tokens.
WINDOW_STEP_LINES = 32


@dataclass(frozen=True)
class FimFormat:
    """How one family writes fill-in-the-middle. The tokens are vocabulary strings."""

    family: str
    prefix: str
    suffix: str
    middle: str
    stops: tuple[str, ...]
    # The vocabulary must also hold these (tells families sharing FIM tokens apart).
    marker: tuple[str, ...] = ()
    # Only when the model's name says it is a code model: the same vocabulary ships
    # with general models that never learned the format (Qwen2.5, Gemma).
    needs_code_name: bool = False
    suffix_first: bool = False  # Codestral: [SUFFIX]suffix[PREFIX]prefix
    prefix_space: str = ""  # CodeLlama: "<PRE> " then the prefix

    @property
    def tokens(self) -> tuple[str, ...]:
        return (self.prefix, self.suffix, self.middle, *self.marker)

    def render(self, prefix: str, suffix: str) -> str:
        if self.suffix_first:
            return f"{self.suffix}{suffix}{self.prefix}{prefix}"
        return f"{self.prefix}{self.prefix_space}{prefix}{self.suffix}{suffix}{self.middle}"


# One table, most specific first: the first whose tokens are all in the vocabulary wins.
FIM_FORMATS: tuple[FimFormat, ...] = (
    FimFormat("deepseek-coder", "<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>",
              stops=("<|EOT|>", "<｜end▁of▁sentence｜>", "<｜fim▁begin｜>")),
    FimFormat("codellama", "▁<PRE>", "▁<SUF>", "▁<MID>", stops=("▁<EOT>", "<EOT>", "</s>"),
              marker=("▁<EOT>",), prefix_space=" "),
    FimFormat("codestral", "[PREFIX]", "[SUFFIX]", "[MIDDLE]", stops=("</s>", "[PREFIX]"),
              suffix_first=True),
    FimFormat("starcoder2", "<fim_prefix>", "<fim_suffix>", "<fim_middle>",
              stops=("<|endoftext|>", "<file_sep>", "<fim_prefix>", "<fim_middle>")),
    FimFormat("codegemma", "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>",
              stops=("<|file_separator|>", "<|fim_prefix|>", "<|fim_middle|>", "<eos>",
                     "<end_of_turn>"),
              marker=("<|file_separator|>",), needs_code_name=True),
    FimFormat("qwen2.5-coder", "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>",
              stops=("<|endoftext|>", "<|fim_pad|>", "<|file_sep|>", "<|repo_name|>",
                     "<|fim_prefix|>", "<|im_end|>"),
              marker=("<|fim_pad|>",), needs_code_name=True),
)

# Every token string any format looks for: what to ask the vocabulary about.
FIM_TOKENS: frozenset[str] = frozenset(t for f in FIM_FORMATS for t in f.tokens)


def detect_format(vocabulary: set[str] | frozenset[str], name: str = "") -> FimFormat | None:
    """The FIM format of a model whose vocabulary holds ``vocabulary`` (at least the
    FIM_TOKENS it has), or None: complete by continuing the prefix."""
    code_model = "code" in name.lower() or "coder" in name.lower()
    for fmt in FIM_FORMATS:
        if all(t in vocabulary for t in fmt.tokens) and (code_model or not fmt.needs_code_name):
            return fmt
    return None


_LINE_COMMENT = {
    "python": "#", "ruby": "#", "shell": "#", "bash": "#", "toml": "#", "yaml": "#",
    "javascript": "//", "typescript": "//", "javascriptreact": "//", "typescriptreact": "//",
    "tsx": "//", "go": "//", "rust": "//", "java": "//", "c": "//", "cpp": "//",
    "csharp": "//", "kotlin": "//", "swift": "//", "php": "//", "scala": "//",
    "lua": "--", "sql": "--", "haskell": "--",
}


def file_header(path: str, language: str | None) -> str:
    """A first line naming the file in its own comment syntax ("" when unknown)."""
    mark = _LINE_COMMENT.get(language or "")
    return f"{mark} {path}\n" if mark and path else ""


# ------------------------------------------------------------ repository context
#
# The definitions of the names used around the cursor, found in the workspace index,
# shown before the file as comments: a signature tells a small model what a function
# takes and what a class is called, which the window of the file alone does not show.

# Tokens for the definitions block (on top of the document window; its own budget so
# the document window's setting keeps its meaning). A setting would be
# `completion.repoContextTokens`.
REPO_CONTEXT_TOKENS = 160
NEAR_LINES_BEFORE = 12  # lines above the cursor whose names are looked up
NEAR_LINES_AFTER = 3  # and below it
MAX_NAMES = 24  # names looked up per request, nearest first
MAX_DEFINITIONS_PER_NAME = 2  # an overloaded name: the first two (current file first)
TOO_COMMON = 4  # a name defined in more places than this says nothing: skipped
HEAD_LINES = 12  # most lines of a definition's head (a long signature)
HEAD_CHARS = 200  # and most characters, once joined on one line

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_STRING_OR_COMMENT = re.compile(r"#.*$|//.*$|\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'")
_NOT_NAMES = frozenset(keyword.kwlist) | frozenset(keyword.softkwlist) | {
    "self", "cls", "this", "super", "true", "false", "null", "nil", "undefined", "const",
    "let", "var", "function", "func", "fn", "pub", "mut", "impl", "struct", "enum",
    "interface", "type", "new", "delete", "public", "private", "protected", "static",
    "void", "int", "str", "bool", "float", "dict", "list", "tuple", "set", "len", "range",
    "print", "isinstance", "string", "err", "args", "kwargs", "package", "return",
}


@dataclass(frozen=True)
class Definition:
    """One definition from the index: where it is and its head (signature lines)."""

    name: str
    path: str
    line: int  # 0-based
    text: str  # the head on one line
    first_line: str = ""  # its first line as the file has it ("" = the head's)


def identifiers_near(prefix: str, suffix: str, *, before: int = NEAR_LINES_BEFORE,
                     after: int = NEAR_LINES_AFTER, limit: int = MAX_NAMES) -> list[str]:
    """Names used around the cursor, nearest first: the cursor's line before it (the
    word being typed left out: it is not a name yet), the lines above going up, then
    the lines below. Keywords, very short names and the insides of strings and
    comments are left out."""
    above = prefix.split("\n")
    current, above = above[-1], above[-1 - before:-1]
    cut = re.search(r"[A-Za-z0-9_]*$", current)
    current = current[: cut.start()] if cut else current
    below = suffix.split("\n")
    rest_of_line, below = below[0], below[1:1 + after]
    lines = [current, *reversed(above), rest_of_line, *below]
    out: dict[str, None] = {}
    for n, line in enumerate(lines):
        names = _IDENT.findall(_STRING_OR_COMMENT.sub(" ", line))
        for name in (reversed(names) if n == 0 else names):
            if len(name) >= 3 and name not in _NOT_NAMES and not name.isdigit():
                out.setdefault(name, None)
    return list(out)[:limit]


def _balance(line: str) -> int:
    code = _STRING_OR_COMMENT.sub(" ", line)
    return sum(code.count(c) for c in "([{") - sum(code.count(c) for c in ")]}")


def definition_head(lines: Sequence[str], line: int, name: str,
                    max_lines: int = HEAD_LINES, max_chars: int = HEAD_CHARS) -> str | None:
    """The head of the definition of ``name`` at 0-based ``line`` of ``lines``, on one
    line: its first line and, while brackets are open, the next ones (a signature
    over several lines, joined), up to a body opening with "{"; cut at ``max_chars``.
    None when that line does not name ``name`` (the file changed since it was
    indexed)."""
    if not 0 <= line < len(lines) or not re.search(rf"\b{re.escape(name)}\b", lines[line]):
        return None
    head: list[str] = []
    depth = 0
    for text in lines[line: line + max_lines]:
        text = text.strip()
        head.append(text)
        if text.endswith("{"):  # a body opens: the head ends here
            break
        depth += _balance(text)
        if depth <= 0:
            break
    joined = re.sub(r"([(\[{]) ", r"\1", " ".join(h for h in head if h))
    joined = re.sub(r",? ([)\]}])", r"\1", joined).rstrip(" {")
    return joined if len(joined) <= max_chars else joined[: max_chars - 3].rstrip() + " ..."


def pick_definitions(names: Iterable[str], lookup: Callable[[str], list[tuple]],
                     read: Callable[[str], Sequence[str] | None],
                     allowed: Callable[[str], bool] = lambda path: True,
                     *, current: str = "", per_name: int = MAX_DEFINITIONS_PER_NAME,
                     too_common: int = TOO_COMMON) -> list[Definition]:
    """The definitions of ``names`` (in their order), from ``lookup(name)`` (the index's
    symbol table: rows (name, kind, path, line, ...), 0-based lines) and the files'
    text from ``read(path)``. Only exact names; a name defined in more than
    ``too_common`` places is skipped (it says nothing); definitions in ``current`` (the
    file being edited) come first; files ``allowed`` refuses (privacy.localOnly where
    prompts may leave the machine) are never read."""
    out: list[Definition] = []
    seen: set[tuple[str, int]] = set()
    for name in names:
        rows = [r for r in lookup(name) if r[0] == name]
        if not rows or len(rows) > too_common:
            continue
        rows.sort(key=lambda r: (r[2] != current, r[2], r[3]))
        taken = 0
        for row in rows:
            path, line = row[2], row[3]
            if taken >= per_name or (path, line) in seen or not allowed(path):
                continue
            lines = read(path)
            head = definition_head(lines, line, name) if lines is not None else None
            if not head or lines is None:
                continue
            seen.add((path, line))
            out.append(Definition(name, path, line, head, lines[line].strip()))
            taken += 1
    return out


def render_definitions(definitions: Sequence[Definition], *, language: str | None,
                       budget_tokens: int, shown: str = "") -> str:
    """The definitions as comments in the file's language, within ``budget_tokens``:
    taken in their order (most relevant first) while they fit, then written in file
    and line order, so the block (the start of the prompt, and of the KV cache) stays
    the same while the set of definitions does. A definition whose head is already in
    ``shown`` (the document window) is left out. "" when there is nothing, or no
    comment syntax for the language."""
    mark = _LINE_COMMENT.get(language or "")
    if not mark or budget_tokens <= 0:
        return ""
    budget = budget_tokens * CHARS_PER_TOKEN
    intro = f"{mark} Definitions used here, from the workspace:\n"
    used = len(intro)
    taken: list[Definition] = []
    heads: set[str] = set()
    paths: set[str] = set()
    for d in definitions:
        if d.text in heads or (shown and (d.first_line or d.text) in shown):
            continue
        cost = sum(len(mark) + 1 + len(h) + 1 for h in d.text.split("\n"))
        if d.path not in paths:
            cost += len(mark) + 1 + len(d.path) + 2
        if used + cost > budget:
            continue
        used += cost
        taken.append(d)
        heads.add(d.text)
        paths.add(d.path)
    if not taken:
        return ""
    out = [intro]
    last = None
    for d in sorted(taken, key=lambda d: (d.path, d.line)):
        if d.path != last:
            out.append(f"{mark} {d.path}:\n")
            last = d.path
        out.extend(f"{mark} {h}\n" for h in d.text.split("\n"))
    return "".join(out) + "\n"


# ------------------------------------------------------------ similar code
#
# Code elsewhere in the workspace that looks like the lines above the cursor (the
# same names, the same calls), shown before the file as comments: a small model
# continues a pattern it is shown far better than it recalls one. bench/completion.py:
# mean edit similarity of line completions 0.379 -> 0.435 on its development
# positions (exact 0 -> 3 of 34), 0.420 -> 0.450 on the held-back ones; the
# definitions alone had not moved it (0.422).

SNIPPET_LINES = 8  # lines above the cursor compared, and most lines of code shown
SNIPPET_MIN_SIMILARITY = 0.1  # Jaccard of the two windows' names; below it, nothing
# The snippet shown for the line before is kept while it scores at least this share of
# the best one: a new snippet changes the prompt's start, and the whole prompt is then
# evaluated again (the KV cache holds nothing after a change). bench/completion.py
# counts how often it changes on a new line, kept this way and not.
SNIPPET_KEEP_SHARE = 0.7


@dataclass(frozen=True)
class Snippet:
    """Lines of another file that look like the lines above the cursor."""

    path: str
    line: int  # 0-based, its first line
    lines: tuple[str, ...]
    similarity: float


def lines_above(prefix: str, n: int = SNIPPET_LINES) -> list[str]:
    """The ``n`` complete lines above the cursor's line. The line being typed is left
    out, so the snippet (at the prompt's start, where the KV cache begins) stays the
    same while the user types a line. (Only the document's tail is split: the prefix
    is all of it, on every keystroke.)"""
    return prefix.rsplit("\n", n + 1)[-n - 1:-1]


def snippet_query(above: Sequence[str], limit: int = MAX_NAMES) -> str:
    """The names of ``above``, nearest line first: a query for the lexical index."""
    code = [_STRING_OR_COMMENT.sub(" ", line) for line in reversed(above)]
    names = (n for line in code for n in _IDENT.findall(line))
    return " ".join([n for n in dict.fromkeys(names) if len(n) >= 3 and n not in _NOT_NAMES
                     ][:limit])


def _names(lines: Sequence[str]) -> set[str]:
    return set(_IDENT.findall("\n".join(lines)))


def _jaccard(mine: set[str], theirs: set[str]) -> float:
    return len(mine & theirs) / len(mine | theirs) if theirs else 0.0


def best_snippet(above: Sequence[str], candidates: Iterable[tuple[str, Sequence[str], int, int]],
                 *, window: int = SNIPPET_LINES, min_similarity: float = SNIPPET_MIN_SIMILARITY,
                 keep: Snippet | None = None,
                 keep_share: float = SNIPPET_KEEP_SHARE) -> Snippet | None:
    """The ``window`` lines most like ``above`` (Jaccard similarity of their names,
    keywords included: they carry the shape) among ``candidates``: (path, the file's
    lines, first line, end line), 0-based and end exclusive, as the index's chunks
    give them; every window that starts inside a candidate's range is tried. ``keep``
    (the snippet shown before) stays while it scores ``keep_share`` of the best."""
    mine = _names(above)
    if not mine:
        return None
    best: Snippet | None = None
    for path, lines, start, end in candidates:
        firsts = range(max(0, start), max(start + 1, end - window + 1))
        if not firsts:
            continue
        # each line's names once, not once per window it is in
        per_line = [_names([line]) for line in lines[firsts[0]: firsts[-1] + window]]
        for first in firsts:
            at = first - firsts[0]
            similarity = _jaccard(mine, set().union(*per_line[at: at + window]))
            if similarity >= min_similarity and (best is None or similarity > best.similarity):
                best = Snippet(path, first, tuple(lines[first: first + window]), similarity)
    if keep is not None:
        kept = _jaccard(mine, _names(keep.lines))
        if kept >= min_similarity and (best is None or kept >= keep_share * best.similarity):
            return replace(keep, similarity=kept)
    return best


def render_snippet(snippet: Snippet | None, *, language: str | None, budget_chars: int) -> str:
    """The snippet as comments in the file's language, whole lines within
    ``budget_chars``; "" when nothing fits or the language has no line comments."""
    mark = _LINE_COMMENT.get(language or "")
    if snippet is None or not mark:
        return ""
    out = [f"{mark} Similar code in {snippet.path}:\n"]
    used = len(out[0])
    for line in snippet.lines:
        text = f"{mark} {line.rstrip()}\n"
        if used + len(text) > budget_chars:
            break
        out.append(text)
        used += len(text)
    while len(out) > 1 and not out[-1][len(mark) + 1:].strip():
        out.pop()  # no blank lines at its end
    return "".join(out) + "\n" if len(out) > 1 else ""


@dataclass(frozen=True)
class CompletionPrompt:
    text: str
    stops: tuple[str, ...]
    fim: bool
    prefix: str  # the part of the document's prefix in the prompt
    suffix: str  # the part of the document's suffix in the prompt ("" without FIM)
    window_start: int  # offset in the document where ``prefix`` starts
    context: str = ""  # the repository context at the prompt's start (snippet, definitions)


def _prefix_window(prefix: str, budget_chars: int) -> int:
    """Where the prefix window starts: the start of the document when it fits, else a
    line that is a multiple of WINDOW_STEP_LINES, late enough to fit the budget."""
    if len(prefix) <= budget_chars:
        return 0
    earliest = len(prefix) - budget_chars
    starts = [0]
    at = 0
    while True:
        at = prefix.find("\n", at)
        if at < 0:
            break
        at += 1
        starts.append(at)
    # Lines starting at or after ``earliest``; the first on the step grid.
    for n, start in enumerate(starts):
        if start >= earliest and n % WINDOW_STEP_LINES == 0:
            return start
    # No grid line fits: the first whole line that does, else cut mid-line.
    return next((s for s in starts if s >= earliest), earliest)


def _suffix_window(suffix: str, budget_chars: int) -> str:
    if len(suffix) <= budget_chars:
        return suffix
    cut = suffix.rfind("\n", 0, budget_chars)
    return suffix[: cut + 1] if cut > 0 else suffix[:budget_chars]


def build_prompt(prefix: str, suffix: str, *, fmt: FimFormat | None, budget_tokens: int,
                 path: str = "", language: str | None = None,
                 extra_stops: tuple[str, ...] = (),
                 definitions: Sequence[Definition] = (), snippet: Snippet | None = None,
                 context_tokens: int = REPO_CONTEXT_TOKENS) -> CompletionPrompt:
    """The prompt for completing at the cursor between ``prefix`` and ``suffix``.

    With a FIM format, a quarter of the budget goes to the text after the cursor
    (up to the end of a line), the rest to the text before it; without one, all of
    it to the text before it, under a comment naming the file. The repository context
    comes first, as comments within ``context_tokens`` (on top of ``budget_tokens``):
    the ``snippet`` of similar code, then the ``definitions`` (from the index) that fit,
    leaving out those the window already shows.
    """
    budget = max(budget_tokens, 16) * CHARS_PER_TOKEN
    header = file_header(path, language)
    similar = render_snippet(snippet, language=language,
                             budget_chars=context_tokens * CHARS_PER_TOKEN)
    left = context_tokens - len(similar) // CHARS_PER_TOKEN
    if fmt is None:
        start = _prefix_window(prefix, budget - len(header))
        shown = prefix[start:]
        context = similar + render_definitions(definitions, language=language,
                                               budget_tokens=left, shown=shown)
        return CompletionPrompt(context + header + shown, tuple(extra_stops), False, shown,
                                "", start, context)
    after = _suffix_window(suffix, budget // 4)
    start = _prefix_window(prefix, budget - len(after) - len(header))
    shown = prefix[start:]
    context = similar + render_definitions(definitions, language=language,
                                           budget_tokens=left, shown=shown + after)
    text = fmt.render(context + header + shown, after)
    return CompletionPrompt(text, (*fmt.stops, *extra_stops), True, shown, after, start,
                            context)


__all__ = ["CHARS_PER_TOKEN", "FIM_FORMATS", "FIM_TOKENS", "REPO_CONTEXT_TOKENS",
           "CompletionPrompt", "Definition", "FimFormat", "Snippet", "best_snippet",
           "build_prompt", "definition_head", "detect_format", "file_header",
           "identifiers_near", "lines_above", "pick_definitions", "render_definitions",
           "render_snippet", "snippet_query"]
