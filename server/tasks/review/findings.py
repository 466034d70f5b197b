"""Code review: the prompt, the findings grammar, and the checks findings must pass.

Pure functions. The model sees the code with line numbers and answers JSON
under a grammar (the same shape is described in the prompt). A finding is
kept only when its ``quote`` is really in the code at or near its ``line``;
the quote, not the line number, decides where the diagnostic goes, and its
message must say something about the code (not a placeholder, not words for the
program's user, no names the file does not have). Anything else is dropped.
Lines are 0-based here; columns are Python string indices (the LSP layer
converts them to UTF-16).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from ....indexer.grammars import syntax_errors
from ....indexer.lines import split_lines
from ...chat_format import Message
from ...cleaning import file_words, invented_reason, placeholder_reason
from ...prompts import task_prompt
from ..runner import Refusal

CATEGORIES = ("bug", "security", "performance", "error-handling", "maintainability")
SEVERITIES = ("error", "warning", "info")
MAX_FINDINGS = 5
MAX_MESSAGE = 300  # characters of a finding's message
ANCHOR_WINDOW = 3  # lines either side of the stated line where the quote may be

FINDINGS_GRAMMAR = r'''
root ::= "{" ws "\"findings\":" ws "[" ws (finding ("," ws finding){0,4})? ws "]" ws "}"
finding ::= "{" ws "\"line\":" ws line "," ws "\"quote\":" ws str "," ws "\"severity\":" ws severity "," ws "\"category\":" ws category "," ws "\"message\":" ws str ("," ws "\"replacement\":" ws str)? ws "}"
line ::= [1-9] [0-9]{0,4}
severity ::= "\"error\"" | "\"warning\"" | "\"info\""
category ::= "\"bug\"" | "\"security\"" | "\"performance\"" | "\"error-handling\"" | "\"maintainability\""
str ::= "\"" char{1,200} "\""
char ::= [^"\\\n] | "\\" ["\\/nt]
ws ::= [ \n]{0,3}
'''

FINDING_SCHEMA: dict = {
        "type": "object", "required": ["line", "quote", "severity", "category", "message"],
        "properties": {
            "line": {"type": "integer", "description": "line number as shown in the listing"},
            "quote": {"type": "string", "description": "the exact code the finding is about, "
                                                       "copied from that line"},
            "severity": {"enum": list(SEVERITIES)},
            "category": {"enum": list(CATEGORIES)},
            "message": {"type": "string", "description": "what is wrong and why"},
            "replacement": {"type": "string", "description": "optional: code to replace the "
                                                             "quote with"}}}
# The answer's shape: what FINDINGS_GRAMMAR enforces, and what the prompt describes.
SCHEMA = {"type": "object", "required": ["findings"], "properties": {"findings": {
    "type": "array", "maxItems": MAX_FINDINGS, "items": FINDING_SCHEMA}}}


class ReviewError(Refusal):
    pass


@dataclass(frozen=True)
class Span:
    """The code under review: lines ``start``..``end`` (0-based, inclusive) of a file."""

    start: int
    end: int
    label: str  # e.g. "function parse_price", "lines 10-20", "the file"


@dataclass(frozen=True)
class Finding:
    line: int  # 0-based, where the quote was found
    start_col: int
    end_col: int
    quote: str
    severity: str
    category: str
    message: str
    replacement: str | None = None  # only when it can be applied as a quick fix

    def as_dict(self, path: str = "") -> dict:
        out = {"line": self.line + 1, "column": self.start_col + 1,
               "end_column": self.end_col + 1, "severity": self.severity,
               "category": self.category, "message": self.message, "quote": self.quote}
        if path:
            out = {"path": path, **out}
        if self.replacement is not None:
            out["replacement"] = self.replacement
        return out


# ------------------------------------------------------------------ prompt


def numbered(lines: list[str], span: Span) -> str:
    width = len(str(span.end + 1))
    return "\n".join(f"{n + 1:>{width}} | {lines[n]}" for n in range(span.start, span.end + 1))


def build_prompt(source: str, span: Span, *, path: str, language: str, context: str = "",
                 chat: bool = True, root: Path | None = None
                 ) -> tuple[list[Message] | None, str]:
    """(chat messages, completion-style text); the stable part (rules, schema) first."""
    values = {"path": path, "language": language, "label": span.label,
              "code": numbered(split_lines(source), span),
              "schema": json.dumps(FINDING_SCHEMA, indent=1),
              "categories": ", ".join(CATEGORIES), "max_findings": str(MAX_FINDINGS),
              "context": (f"Related code from the workspace (for reference, not under review):\n"
                          f"{context}\n\n" if context else "")}
    return task_prompt("review", root, chat=chat, **values)


# ----------------------------------------------------------------- parsing


def parse_findings(raw: str) -> list[dict]:
    """The finding objects in the model's JSON; a cut-off answer keeps its complete ones."""
    text = raw.strip()
    start = text.find("{")
    if start < 0:
        return []
    try:
        data = json.loads(text[start:])
        items = data.get("findings", []) if isinstance(data, dict) else []
        return [i for i in items if isinstance(i, dict)]
    except json.JSONDecodeError:
        pass
    out = []  # truncated: decode object by object inside the array
    decoder = json.JSONDecoder()
    pos = text.find("[", start)
    while pos >= 0:
        nxt = text.find("{", pos + 1)
        if nxt < 0:
            break
        try:
            obj, end = decoder.raw_decode(text, nxt)
        except json.JSONDecodeError:
            break
        if isinstance(obj, dict):
            out.append(obj)
        pos = end
    return out


def unusable_reason(raw: str) -> str | None:
    """Why the model's answer is no review at all (then "no findings" would be a claim
    it did not make), or None. Prose, an empty answer, JSON without a findings list, or
    one cut off before any finding was whole and before its list closed."""
    text = raw.strip()
    start = text.find("{")
    if start < 0:
        return f"holds no JSON ({text[:60]!r})" if text else "is empty"
    try:
        data = json.loads(text[start:])
    except json.JSONDecodeError:
        if parse_findings(text) or re.search(r'"findings"\s*:\s*\[\s*\]', text):
            return None  # cut off after whole findings, or after an empty list
        return "was cut off before any finding was whole"
    if not isinstance(data, dict) or not isinstance(data.get("findings"), list):
        return "is JSON without a list of findings"
    return None


def _norm(text: str) -> str:
    return " ".join(text.split())


# Text for a user of the program, not a review of its code: SmolLM2's one finding in
# `make demo` read "The item is not available for this quantity. Please try to find it
# again later."
_TO_A_USER = re.compile(r"\b(please|sorry|thank you|thanks|try (it |that )?again|"
                        r"(contact|ask) (us|the (administrator|support)))\b",
                        re.I)


def message_junk_reason(message: str, known: frozenset[str] | None = None) -> str | None:
    """Why a finding's message is not worth a diagnostic, or None. ``known``: the
    file's words (names the message may cite)."""
    placeholder = placeholder_reason(message)
    if placeholder:
        return f"the message is {placeholder}"
    m = _TO_A_USER.search(message)
    if m:
        return f"the message speaks to a user of the program ({m.group(0)!r}), not of its code"
    return invented_reason(message, known)


def anchor(item: dict, lines: list[str], span: Span) -> Finding | None:
    """A checked Finding, or None when the item is malformed or its quote is not there."""
    try:
        stated = int(item["line"]) - 1
        quote = str(item["quote"])
        severity = str(item.get("severity", "warning"))
        category = str(item["category"])
        # One line, of a bounded length: a message's line breaks printed as lines of
        # their own that CI problem matchers read as findings.
        message = " ".join(str(item["message"]).split())[:MAX_MESSAGE]
    except (KeyError, TypeError, ValueError):
        return None
    if category not in CATEGORIES or severity not in SEVERITIES:
        return None
    first = quote.strip().splitlines()[0].strip() if quote.strip() else ""
    if len(first) < 3 or not message or _norm(message) == _norm(quote):
        return None
    lo = max(span.start, stated - ANCHOR_WINDOW)
    hi = min(span.end, stated + ANCHOR_WINDOW)
    # Nearest line to the stated one that holds the quote.
    # The quote with its spaces as any run of blanks: the model squeezes "x  /  y".
    loose = re.compile(r"\s+".join(map(re.escape, first.split())))
    for n in sorted(range(lo, hi + 1), key=lambda n: abs(n - stated)):
        col = lines[n].find(first)  # the quote as written, where the line has it
        if col >= 0:
            end = col + len(first)
        elif found := loose.search(lines[n]):
            col, end = found.span()
        else:
            continue
        text = lines[n][col:end]  # the file's own text: what a later edit is checked against
        replacement = item.get("replacement")
        exact = isinstance(replacement, str) and quote.strip() == first == text and \
            replacement.strip() != first
        return Finding(n, col, end, text, severity, category, message,
                       replacement if exact else None)
    return None


def check_findings(raw: str, source: str, span: Span, *, language: str = "") -> list[Finding]:
    """Anchored, de-duplicated findings whose message says something about the code;
    quick fixes only where the result still parses."""
    lines = split_lines(source)
    known = file_words(source)
    out: list[Finding] = []
    seen = set()
    for item in parse_findings(raw)[:MAX_FINDINGS]:
        finding = anchor(item, lines, span)
        if finding is None or message_junk_reason(finding.message, known):
            continue
        key = (finding.line, finding.category)
        if key in seen:
            continue
        seen.add(key)
        if finding.replacement is not None and not _fix_parses(source, finding, language):
            finding = Finding(**{**finding.__dict__, "replacement": None})
        out.append(finding)
    return out


def apply_fix(source: str, finding: Finding) -> str:
    lines = split_lines(source, keepends=True)
    line = lines[finding.line]
    lines[finding.line] = line[: finding.start_col] + (finding.replacement or "") + \
        line[finding.end_col:]
    return "".join(lines)


def _fix_parses(source: str, finding: Finding, language: str) -> bool:
    """Whether the fix leaves the code parsing as well as it did: Python by its own
    parser, the others by tree-sitter's count of syntax errors (a JavaScript fix that
    dropped a parenthesis was offered, and applied, unchecked)."""
    fixed = apply_fix(source, finding)
    if language == "python":
        import ast

        try:
            ast.parse(fixed)
            return True
        except SyntaxError:
            return False
    before = syntax_errors(source, language)
    if before is None:
        return False  # no grammar: a fix that cannot be checked is not offered
    after = syntax_errors(fixed, language)
    return after is not None and after <= before


# ------------------------------------------------------------------ spans


def changed_lines(old: str, new: str) -> set[int]:
    """0-based lines of ``new`` that differ from ``old`` (added or modified)."""
    import difflib

    a, b = split_lines(old), split_lines(new)
    out: set[int] = set()
    for tag, _, _, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag in ("replace", "insert"):
            out.update(range(j1, j2))
        elif tag == "delete" and j1 < len(b):
            out.add(j1)  # the line after a deletion is where it shows
    return out


_SARIF_LEVEL = {"error": "error", "warning": "warning", "info": "note"}


def sarif(results: dict[str, list[Finding]], tool_version: str) -> dict:
    """SARIF 2.1.0 for CI pipelines (GitHub code scanning and friends)."""
    return {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json", "version": "2.1.0",
        "runs": [{
            # Columns count code points, as Finding's do (SARIF's default is UTF-16
            # units, which put a finding after an emoji two columns early).
            "columnKind": "unicodeCodePoints",
            "tool": {"driver": {
                "name": "hearth", "version": tool_version,
                "rules": [{"id": c, "name": re.sub(r"(^|-)(\w)", lambda m: m[2].upper(), c),
                           "shortDescription": {"text": f"{c} finding"}} for c in CATEGORIES]}},
            "results": [{
                "ruleId": f.category, "level": _SARIF_LEVEL[f.severity],
                "message": {"text": f.message},
                "locations": [{"physicalLocation": {
                    "artifactLocation": {"uri": path},
                    "region": {"startLine": f.line + 1, "startColumn": f.start_col + 1,
                               "endColumn": f.end_col + 1, "snippet": {"text": f.quote}}}}],
            } for path, findings in results.items() for f in findings]}]}
