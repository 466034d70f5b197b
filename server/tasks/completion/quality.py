"""What a raw continuation may show as ghost text: pure rules, no model.

A small model keeps writing past the end of the block, closes brackets the editor
already closed, types out the line that follows the cursor and sometimes loops or
emits its own control tokens. Every rule here cuts the suggestion rather than
rewriting it; when nothing sound is left the answer is empty.
"""

from __future__ import annotations

import re
import unicodedata

OPENERS = {"(": ")", "[": "]", "{": "}"}
CLOSERS = {v: k for k, v in OPENERS.items()}
MAX_LINES = 16
# Control tokens that leak into text when a stop string was not configured.
_CONTROL = re.compile(r"<\|[A-Za-z_]+\|>|<(?:start|end)_of_turn>|<eos>|</s>|<fim[_-]\w+>|"
                      r"<file_sep>|<\uff5c[^>]*\uff5c>|\u2581<[A-Z]{3}>|\[(?:PREFIX|SUFFIX|MIDDLE)\]")
_BLOCK_KEYWORDS = ("def ", "class ", "async def ", "@", "function ", "func ", "fn ", "pub ",
                   "export ", "import ", "from ", "#include", "package ", "impl ", "struct ",
                   "interface ", "type ", "const ", "let ", "var ")


def indent_of(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def _opens_block(line: str) -> bool:
    code = line.split("#", 1)[0].rstrip() if "#" in line else line.rstrip()
    return code.endswith((":", "{", "(", "[")) or code.endswith("=>")


def _line_state(line_prefix: str) -> tuple[list[str], str | None]:
    """Brackets still open, and the open quote, at the end of the line before the cursor
    (a comment ends the scan)."""
    stack: list[str] = []
    quote: str | None = None
    i = 0
    while i < len(line_prefix):
        ch = line_prefix[i]
        if quote is not None:
            if ch == "\\":
                i += 2
                continue
            if ch == quote:
                quote = None
        elif ch in "\"'`":
            quote = ch
        elif ch == "#" or line_prefix.startswith("//", i):
            break
        elif ch in OPENERS:
            stack.append(ch)
        elif ch in CLOSERS and stack and stack[-1] == CLOSERS[ch]:
            stack.pop()
        i += 1
    return stack, quote


def _cut_brackets(text: str, line_prefix: str, line_suffix: str) -> str:
    """Stop before a closer that closes a bracket opened before the cursor when the text
    after the cursor closes it already, and before any closer that matches nothing."""
    outer, quote = _line_state(line_prefix)
    own: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if quote is not None:
            if ch == "\\":
                i += 2
                continue
            if ch == quote or ch == "\n":
                quote = None
        elif ch in "\"'`":
            quote = ch
        elif ch in OPENERS:
            own.append(ch)
        elif ch in CLOSERS:
            if own:
                if own[-1] != CLOSERS[ch]:
                    return text[:i]
                own.pop()
            elif outer and outer[-1] == CLOSERS[ch]:
                if line_suffix.lstrip().startswith(ch):
                    return text[:i]  # the editor (or the user) closed it already
                outer.pop()
            else:
                return text[:i]
        i += 1
    return text


def _overlap(text: str, suffix: str) -> int:
    """Length of the longest end of ``text`` that the suffix starts with."""
    best = 0
    for k in range(1, min(len(text), len(suffix), 200) + 1):
        if text.endswith(suffix[:k]):
            best = k
    return best


def _block(lines: list[str], line_prefix: str) -> list[str]:
    """The lines up to the end of the block the cursor is in, by indentation."""
    return _block_end(lines, line_prefix)[0]


def _block_end(lines: list[str], line_prefix: str) -> tuple[list[str], bool]:
    """The block's lines, and whether it ended before ``lines`` ran out."""
    first = line_prefix + lines[0]
    base = indent_of(first) if first.strip() else len(line_prefix)
    opened = _opens_block(first)
    kept = [lines[0]]
    if line_prefix.strip() and not opened and lines[0].strip():
        # Mid-statement: the suggestion completes the statement being typed; the
        # statements after it are suggested from a blank line.
        return kept, len(lines) > 1
    blanks = 0
    ended = False
    for line in lines[1:]:
        ended = True
        if not line.strip():
            blanks += 1
            if blanks >= 2:
                break
            kept.append(line)
            continue
        ind = indent_of(line)
        stripped = line.strip()
        if ind < base:
            break
        if ind == base:
            if opened:
                # The block the first line opened ends here; its closer belongs to it.
                if stripped[0] in CLOSERS or stripped in ("end", "fi", "done"):
                    kept.append(line)
                break
            if base == 0 and (blanks or stripped.startswith(_BLOCK_KEYWORDS)):
                break  # the next top-level definition: not this suggestion's
        blanks = 0
        kept.append(line)
        if len(kept) >= MAX_LINES:
            break
    else:
        ended = False
    while len(kept) > 1 and not kept[-1].strip():
        kept.pop()
    return kept, ended


def finished(raw: str, *, prefix: str, suffix: str, multiline: bool = True) -> bool:
    """Whether more tokens could no longer change the suggestion for ``raw``: the line
    (or the block) it completes has ended. The generation can stop there."""
    line_prefix = prefix.rsplit("\n", 1)[-1]
    lines = raw.split("\n")
    if len(lines) < 2:
        return False
    mid_line = bool(suffix.split("\n", 1)[0].strip())
    if not multiline or mid_line:
        # One line; at the end of a line with nothing typed yet, the next one.
        return bool(lines[0].strip()) or mid_line or len(lines) > 2
    # Lines that have ended cut the suggestion whatever follows them, as
    # clean_suggestion would: a line of the document after the cursor (the model
    # writing out the code that is already there, a base model's habit: decoding on
    # only made text that was cut away), a code fence, a decoding loop.
    ended = lines[:-1]
    following = _following(suffix)
    if any(line.strip() and line.strip() in following for line in ended[1:]):
        return True
    if "```" in "\n".join(ended) or len(_loops(ended, line_prefix)) < len(ended):
        return True
    # The last line may still grow, but once it has a character its indentation is known.
    complete = lines if lines[-1].strip() else ended
    if len(complete) < 2:
        return False
    return _block_end(complete, line_prefix)[1]


# A line this long or shorter may follow one like it (`pass`, `}`, `print(e)`); a longer
# one that copies the line above is a tiny model's favourite, not a suggestion.
COPY_CHARS = 8


def _following(suffix: str) -> list[str]:
    """The first lines of the document after the cursor's line (stripped, not blank):
    a suggestion that reaches one of them ends before it."""
    return [ln.strip() for ln in suffix.split("\n")[1:] if ln.strip()][:3]


def _loops(lines: list[str], line_prefix: str = "") -> list[str]:
    """Cut a decoding loop: a line that copies the one before it (longer than
    COPY_CHARS; the first line is the cursor's, ``line_prefix`` and all), or the third
    time a short one comes in a row (`}` closing nested blocks is code). Copying the
    line above is refused at the cursor's line: a suggestion holding such a copy was
    refused there once the user had typed up to it, and again at every keystroke."""
    out: list[str] = []
    for line in lines:
        key = line.strip()
        before = (line_prefix + out[0] if len(out) == 1 else out[-1]).strip() if out else ""
        if key and key == before and (len(key) > COPY_CHARS or (
                len(out) >= 2 and out[-2].strip() == key)):
            break
        out.append(line)
    return out


def clean_suggestion(raw: str, *, prefix: str, suffix: str, multiline: bool = True,
                     stops: tuple[str, ...] | list[str] = ()) -> str:
    """What to show after the cursor, or "" when the model gave nothing sound."""
    text = raw.replace("\r\n", "\n")
    cut = min((i for s in stops if s and (i := text.find(s)) >= 0), default=len(text))
    text = text[:cut]
    control = _CONTROL.search(text)
    if control:
        text = text[:control.start()]
    if "<redacted:" in text or "\ufffd" in text or _hidden(text, prefix):
        return ""  # an echoed secret placeholder, broken UTF-8, invisible characters
    fence = text.find("```")
    if fence >= 0:
        text = text[:fence]
    line_prefix = prefix.rsplit("\n", 1)[-1]
    line_suffix = suffix.split("\n", 1)[0]
    mid_line = bool(line_suffix.strip())
    lines = text.split("\n")
    if not multiline or mid_line:
        # One line; at the end of a line (after `def f():`) the next line.
        if not lines[0].strip() and len(lines) > 1 and not mid_line:
            lines = [lines[0], lines[1]]
        else:
            lines = lines[:1]
    else:
        lines = _block(lines, line_prefix)
    lines = _loops(lines, line_prefix)
    text = "\n".join(lines)
    text = _cut_brackets(text, line_prefix, line_suffix)
    text = _cut_suffix_repeats(text, line_suffix, suffix, line_prefix)
    text = text.rstrip()
    if not text.strip():
        return ""
    # Copying the line above (a tiny model's favourite) is not a suggestion, on one
    # line or at the head of several.
    previous = [ln for ln in prefix.split("\n")[:-1][-3:] if ln.strip()]
    whole = (line_prefix + text.split("\n", 1)[0]).strip()
    if previous and len(whole) > COPY_CHARS and whole == previous[-1].strip():
        return ""
    return text


# Bidirectional overrides and isolates: text that reads differently from how it runs
# ("Trojan Source", CVE-2021-42574). Never shown, whatever the file holds.
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f")


def _hidden(text: str, prefix: str) -> bool:
    """Whether ``text`` holds a character a reader cannot see: a control character, a
    line or paragraph separator, a bidi control, or a format character (a zero-width
    space) that the code before the cursor does not use itself (an emoji's joiner)."""
    seen: set[str] | None = None
    for c in text:
        if c in "\n\t" or c.isprintable() and c not in _BIDI:
            continue
        if c in _BIDI or unicodedata.category(c) != "Cf":
            return True  # Cc, Zl, Zp: never in a suggestion
        seen = set(prefix[-4000:]) if seen is None else seen
        if c not in seen:
            return True
    return False


def _cut_suffix_repeats(text: str, line_suffix: str, suffix: str,
                        line_prefix: str = "") -> str:
    """Never type what already follows the cursor."""
    rest = line_suffix.strip()
    first, _, more = text.partition("\n")
    following = _following(suffix)
    if not rest and following and (line_prefix + first).strip() == following[0]:
        return ""  # its first line is the next line of the document (its next ones too)
    if rest and len(rest) >= 2 and rest in first:
        first = first[:first.index(rest)]
        text = first if not more else first + "\n" + more
    # The next lines of the document, if the suggestion reaches them, end it.
    if following and "\n" in text:
        lines = text.split("\n")
        for n, line in enumerate(lines[1:], start=1):
            if line.strip() and line.strip() in following:
                text = "\n".join(lines[:n])
                break
    # Its end overlapping the start of the suffix: closers, quotes, a block's colon, or
    # 3+ characters (`for item in |:` + "items:" made "items::").
    k = _overlap(text, suffix)
    if k and (k >= 3 or all(c in ")]}\"'`;,:" for c in suffix[:k])):
        text = text[: len(text) - k]
    # Only re-typing the suffix: nothing to suggest.
    if text.strip() and suffix.lstrip().startswith(text.strip()):
        return ""
    return text


def whole_words(text: str) -> str:
    """``text`` without a word it may still be in the middle of (the generation goes
    on): "return self.na" -> "return self.", "f(a, " stays."""
    m = re.search(r"[A-Za-z0-9_]+$", text)
    return text[:m.start()] if m else text


def typed_through(old_prefix: str, old_suffix: str, produced: str, prefix: str,
                  suffix: str) -> str | None:
    """When the user typed (part of) what a generation for ``old_prefix`` produced, what
    it still suggests after the new ``prefix``; None when the edit diverged."""
    if suffix != old_suffix or not prefix.startswith(old_prefix):
        return None
    typed = prefix[len(old_prefix):]
    if produced.startswith(typed):
        return produced[len(typed):]
    return None


def may_continue(old_prefix: str, old_suffix: str, produced: str, prefix: str,
                 suffix: str) -> bool:
    """Whether a running generation can still become a suggestion for ``prefix``: what
    was typed since it started agrees with what it produced so far."""
    if suffix != old_suffix or not prefix.startswith(old_prefix):
        return False
    typed = prefix[len(old_prefix):]
    return produced.startswith(typed) or typed.startswith(produced)


__all__ = ["clean_suggestion", "indent_of", "may_continue", "typed_through", "whole_words"]
