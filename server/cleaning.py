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


# ------------------------------------------------------------------ junk
#
# Text a tiny model writes when it has nothing to say: placeholders from tutorials
# ("foo", "Hello, World!", "test.txt"), the name repeated, one word, the same words
# for every parameter. Pure checks, shared by every task that shows prose.

def third_person(verb: str) -> str:
    """"compute" -> "computes", "pass" -> "passes", "apply" -> "applies"; a word that
    already is ("returns") or is not a word stays as it is."""
    if not verb.isalpha() or (verb.endswith("s") and not verb.endswith("ss")):
        return verb
    if verb.endswith(("ss", "sh", "ch", "x", "z", "o")):
        return verb + "es"
    if verb.endswith("y") and len(verb) > 1 and verb[-2] not in "aeiou":
        return verb[:-1] + "ies"
    return verb + "s"


_PLACEHOLDER_LIST = (
    "foo bar baz qux quux spam eggs ham foobar hello world lorem ipsum dolor example "
    "sample dummy placeholder todo fixme xxx tbd something stuff thing none null nil "
    "result results value values data input output param parameter arg argument "
    "description text string str int float bool object obj item red green blue yes no "
    "true false test")
_PLACEHOLDER_WORDS = frozenset(_PLACEHOLDER_LIST.split())
_ARTICLES = frozenset(["the", "a", "an", "this", "that", "its", "of", "to", "is"])
_WORDS = re.compile(r"[A-Za-z][A-Za-z']*|\d+")


def _norm_words(text: str) -> list[str]:
    return [w.lower() for w in _WORDS.findall(text)]


def _split_identifier(name: str) -> set[str]:
    return {p.lower() for p in re.findall(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+",
                                          name.lstrip("*"))}


def placeholder_reason(description: str, name: str = "", min_words: int = 2) -> str | None:
    """Why ``description`` (of parameter ``name``, or of a return value) is junk, or
    None when it reads as a description. ``min_words``: content words it needs."""
    text = " ".join(description.split()).strip().rstrip(".")
    if not text:
        return "empty"
    low = text.lower()
    if re.fullmatch(r"(hello,? world!?|lorem ipsum.*|[\w-]+\.(txt|csv|json|py|md|log|dat)|"
                    r"[a-z_]+\d+)", low):
        return f"a placeholder ({text!r})"
    if re.fullmatch(r"`?[A-Za-z_][\w]*([._][\w]+)+(\[[^\]]*\]|\([^)]*\))*`?", text):
        return f"a name, not a description ({text!r})"
    words = _norm_words(text)
    content = [w for w in words if w not in _ARTICLES]
    if not content:
        return f"says nothing ({text!r})"
    if all(w in _PLACEHOLDER_WORDS or re.fullmatch(r"(value|item|arg|param|foo|bar|x|y|test)\d+",
                                                    w) for w in content):
        return f"a placeholder ({text!r})"
    own = _split_identifier(name) if name else set()
    if own and set(content) <= own | {"s"}:
        return f"repeats the name ({text!r})"
    if len(content) < min_words:
        return f"too short to describe anything ({text!r})"
    return None


def file_words(source: str) -> frozenset[str]:
    """Every name and word of ``source``, lowercase: what a description may cite."""
    return frozenset(w.lower() for w in re.findall(r"[A-Za-z0-9_]+", source))


def _codelike(token: str) -> bool:
    """A token that reads as a name or a code, not a word: "CBC3", "0x8EBDAABYTUS",
    "UserFontsPath" (acronyms of up to four letters, "URL", "UTF", are words)."""
    letters, digits = re.search(r"[A-Za-z]", token), re.search(r"\d", token)
    upper = sum(c.isupper() for c in token)
    return bool(letters and digits and len(token) >= 4) or (upper >= 2 and len(token) >= 5)


def invented_names(text: str, known: frozenset[str]) -> list[str]:
    """Names and codes in ``text`` that the code does not have (models make them up:
    "AES-256-CBC3 (SHA1) 0x8EBDAABYTUS" for a netmask). A name in backquotes counts
    twice: quoting it claims it is in the code ("for a given `get_spontaneous`")."""
    found = [t for t in re.findall(r"[A-Za-z0-9_]+", text)
             if _codelike(t) and t.lower() not in known]
    for quoted in re.findall(r"`([A-Za-z_][\w.\-]*)(?:\(\))?`", text):
        last = quoted.rsplit(".", 1)[-1]
        if last.lower() not in known and quoted.lower() not in known:
            found += [quoted, quoted]
    return found


def invented_reason(text: str, known: frozenset[str] | None, at_least: int = 2) -> str | None:
    """Why ``text`` is made up, when it names ``at_least`` things the code does not have
    (``known``: the file's words; None: nothing to check against)."""
    if known is None:
        return None
    made_up = invented_names(text, known)
    return f"names what the code does not have: {made_up[:3]}" if len(made_up) >= at_least \
        else None


_LINK = re.compile(r"\b(?:https?://|www\.)[^\s)>\]'\"`]+", re.I)


def invented_link(text: str, source: str) -> str | None:
    """Why ``text`` is made up, when it cites a link ``source`` does not have: small
    models write plausible URLs ("https://docs.python.org/3/whatsnew/...") that no one
    checked, and a reader would follow them."""
    for link in _LINK.findall(text):
        link = link.rstrip(".,;:")
        if link not in source:
            return f"cites a link the code does not have: {link!r}"
    return None


def repeated_descriptions(descriptions: dict[str, str]) -> list[str]:
    """Names whose description is word for word another name's (junk by copying)."""
    seen: dict[str, str] = {}
    out: list[str] = []
    for name, desc in descriptions.items():
        key = " ".join(_norm_words(desc))
        if key and key in seen:
            out += [n for n in (seen[key], name) if n not in out]
        seen.setdefault(key, name)
    return out


_JUNK_SUMMARY = re.compile(
    r"^(this is )?(a|an|the|my) (doc ?string|docstring|summary|description|function|method)\b"
    r"\s*\.?$|^doc ?string\b|\bdoc ?string (for|of)\b|^(python )?doc ?string\b|"
    r"^(summary|description|todo|fixme|tbd|none|n/a)\b\.?$|"
    r"hello,? world|file truncated|^\W*\.\.\.|^(a )?one-line summary|lorem ipsum|"
    # About the docstring or the language, not the function ("This docstring describes
    # the `X` property.", "Python 3.8", "Python function to create ...").
    r"^(this|the) doc ?string\b|^python (\d|function|method|code|script|docstring)|"
    # Chat addressed to the user, not documentation ("Your code is already a good start").
    r"^(your code|sure\b|certainly\b|of course\b|i('ll| will| would| have)\b|"
    r"here('s| is| are)\b|great\b)|"
    # The task told back ("Provide a docstring that describes the function's purpose,
    # parameters and return values.").
    r"^(please )?(provide|write|give)s? (a|the) (doc ?string|documentation) (that|which|"
    r"for|describing)\b|\bdescribes? the (function|method)'?s (purpose|parameters)\b", re.I)


def summary_junk_reason(summary: str, name: str = "") -> str | None:
    """Why a summary line is junk ("This is a docstring.", "Docstring for X"), or None."""
    first = " ".join(summary.split()).strip()
    if not first:
        return "the summary is empty"
    m = _JUNK_SUMMARY.search(first)
    if m and not (name and set(_norm_words(m.group(0))) & _split_identifier(name)):
        # ("Generate lorem ipsum" documents generate_lorem_ipsum: not a placeholder)
        return f"the summary is a placeholder: {first[:60]!r}"
    if re.search(r"\b(\w{3,}) (and|or) \1\b", first, re.I):  # "Sells and sells items"
        return f"the summary repeats itself: {first[:60]!r}"
    words = [w for w in _norm_words(first) if w not in _ARTICLES]
    # "Python 3.8"; one token is not a sentence either ("Version.py", "Publicshare.py")
    if len([w for w in words if not w.isdigit()]) < 2 or " " not in first:
        return f"the summary says nothing: {first[:60]!r}"
    if all(w in _PLACEHOLDER_WORDS for w in words):
        return f"the summary is a placeholder: {first[:60]!r}"
    if first.endswith(":"):
        return f"the summary is a label, not a sentence: {first[:60]!r}"
    if first.startswith("#") or re.search(r"(^|\s)([=~^*#-])\2{2,}(\s|$)", first):
        # "PythonDocs.py / ===== / # PlatformDirsABC.pythondocstring": a title
        return f"the summary is a heading's markup, not a sentence: {first[:60]!r}"
    if name and set(words) <= _split_identifier(name.rsplit(".", 1)[-1]) | {"function", "method"}:
        return f"the summary only repeats the name: {first[:60]!r}"
    parts = set().union(*(_split_identifier(p) for p in name.split("."))) if name else set()
    if name and re.fullmatch(r"`?[\w.]+`?:?(\s+\w+)?\.?", first) and \
            set().union(*map(_split_identifier, re.findall(r"\w+", first))) <= \
            parts | {"function", "method", "python", "property"}:
        # "Cycler.current: python", "Token.attrJoin: python" (a code fence's language)
        return f"the summary only repeats the name: {first[:60]!r}"
    short = name.rsplit(".", 1)[-1]
    if short and re.search(rf"`?\b{re.escape(short)}\b`?(\(\))?\s+(function|method)\b|"
                           rf"\b(function|method)\s+`?{re.escape(short)}\b", first, re.I):
        # "Passes a decimal number to the `parse_price` function": about the function,
        # from outside, not what it does.
        return f"the summary talks about the function by its name: {first[:60]!r}"
    return None
