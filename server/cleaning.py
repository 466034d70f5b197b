"""Pure clean-up of model output, shared by every task.

Small models wrap answers in code fences, chat ("Here is the docstring:"),
echo the input and loop on the same line. Nothing here knows about a model.
"""

from __future__ import annotations

import re

_FENCE = re.compile(r"```[\w+-]*[ \t]*\n?(.*?)(?:\n?```|\Z)", re.S)
_CHATTER = re.compile(
    r"^\s*(sure[,!.]?|certainly[,!.]?|of course[,!.]?|here(?:'s| is)\b[^\n]*?:|"
    r"(?:the )?docstring(?: is)?:|answer:|output:)\s*", re.I)


def cut_at_stops(text: str, stops: list[str]) -> str:
    """Cut before the first stop sequence (engines may let one through when streaming)."""
    cut = min((i for s in stops if s and (i := text.find(s)) >= 0), default=len(text))
    return text[:cut]


def strip_code_fences(text: str) -> str:
    """The content of the first fenced block, or the text without stray fences."""
    m = _FENCE.search(text)
    if m and text.lstrip().startswith("```"):
        return m.group(1)
    return text.replace("```", "")


def strip_chatter(text: str) -> str:
    previous = None
    while previous != text:
        previous, text = text, _CHATTER.sub("", text, count=1)
    return text


def drop_repeated_lines(text: str, max_repeats: int = 1) -> str:
    """Drop non-blank lines seen more than ``max_repeats`` times (decoding loops)."""
    seen: dict[str, int] = {}
    out = []
    for line in text.splitlines():
        key = line.strip()
        if key:
            seen[key] = seen.get(key, 0) + 1
            if seen[key] > max_repeats:
                continue
        out.append(line)
    return "\n".join(out)


def tidy_blank_lines(text: str) -> str:
    """Trailing spaces off, at most one blank line in a row, no blank ends."""
    lines = [line.rstrip() for line in text.splitlines()]
    out: list[str] = []
    for line in lines:
        if not line and (not out or not out[-1]):
            continue
        out.append(line)
    while out and not out[-1]:
        out.pop()
    return "\n".join(out)


def dedent_block(text: str) -> str:
    """Remove the common indentation, ignoring the first line (often unindented)."""
    lines = text.splitlines()
    if len(lines) < 2:
        return text.strip()
    rest = [line for line in lines[1:] if line.strip()]
    common = min((len(line) - len(line.lstrip()) for line in rest), default=0)
    return "\n".join([lines[0].strip()] + [line[common:] for line in lines[1:]])
