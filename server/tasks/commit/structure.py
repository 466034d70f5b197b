"""What a diff does, read from its structure: definitions added, removed or changed,
docstrings written, tests added. Pure functions over FileDiff.

When the model's message is refused (the bundled 135M/270M models rarely describe
a real diff), ``structural_message`` says what changed in those terms instead:
"document total_value and apply_discount, add test_apply_discount_half_2". Shallow,
never wrong about what the diff contains, and said to be written from the diff.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .gitdiff import TEST_PATH, FileDiff, type_hint

# A definition line in Python, JS/TS, Go, Rust, Ruby, Kotlin, Swift (+ or - or context).
_DEF = re.compile(r"^\s*(?:export\s+)?(?:pub(?:\([^)]*\))?\s+)?(?:async\s+)?"
                  r"(?:def|class|function|fn|func|fun|interface|struct|enum|trait)\s+"
                  r"(?:\([^)]*\)\s*)?([A-Za-z_]\w*)")
_HUNK = re.compile(r"^@@ [^@]* @@ ?(.*)$")
_DOC_OPEN = re.compile(r"^\s*[rRuU]?(\"\"\"|''')|^\s*/\*\*|^\s*///")
ORDER = ("add", "remove", "change", "document", "test")


@dataclass(frozen=True)
class Fact:
    action: str  # one of ORDER
    name: str
    path: str


def _defined(line: str) -> str | None:
    m = _DEF.match(line)
    return m.group(1) if m else None


def file_facts(f: FileDiff) -> list[Fact]:
    """The facts of one file's patch, in the order found, each (action, name) once."""
    added: dict[str, None] = {}
    removed: dict[str, None] = {}
    documented: dict[str, None] = {}
    changed: dict[str, None] = {}
    current: str | None = None  # the definition the lines are in
    last_def: str | None = None  # a definition on the line just before (for docstrings)
    in_doc = False
    for raw in f.patch.splitlines():
        if raw.startswith(("+++", "---", "diff --git", "index ")):
            continue
        hunk = _HUNK.match(raw)
        if hunk:
            current, last_def, in_doc = _defined(hunk.group(1)), None, False
            continue
        sign, line = raw[:1], raw[1:]
        name = _defined(line)
        if name is not None:
            if sign == "+":
                added[name] = None
            elif sign == "-":
                removed[name] = None
            current = last_def = name
            continue
        if sign == "+" and last_def is not None and _DOC_OPEN.match(line):
            documented[last_def] = None
            quote = line.strip()[:3]
            in_doc = quote in ('"""', "'''") and line.strip().count(quote) < 2
            last_def = None
            continue
        if in_doc:
            if sign == "+" and re.search(r"\"\"\"|'''", line):
                in_doc = False
            continue
        if line.strip():
            last_def = None
        if sign in "+-" and line.strip() and current is not None:
            changed[current] = None
    test_file = bool(TEST_PATH.search(f.path))
    signature = [n for n in added if n in removed]  # removed and added again: changed
    found = [Fact("test" if test_file and n.startswith(("test", "Test")) else "add", n, f.path)
             for n in added if n not in removed]
    found += [Fact("remove", n, f.path) for n in removed if n not in added]
    found += [Fact("change", n, f.path) for n in dict.fromkeys([*signature, *changed])
              if (n not in added and n not in removed) or n in signature]
    found += [Fact("document", n, f.path) for n in documented]
    return found


def facts(files: list[FileDiff]) -> list[Fact]:
    """Every file's facts; a file whose patch shows no definition is a fact of its own."""
    out: list[Fact] = []
    for f in files:
        found = file_facts(f) if f.patch else []
        if found:
            out += found
        else:
            name = f.path.rsplit("/", 1)[-1]
            action = {"A": "add", "D": "remove"}.get(f.status[:1], "change")
            if f.status.startswith("R") and f.old_path:
                action, name = "change", f"{f.old_path.rsplit('/', 1)[-1]} -> {name}"
            out.append(Fact(action, name, f.path))
    return out


def _verb(action: str) -> str:
    return "add" if action == "test" else action  # "add test_x"


def _names(names: list[str], keep: int = 3) -> str:
    quoted = names[:keep]
    if len(names) > keep:
        return ", ".join(quoted) + f" and {len(names) - keep} more"
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


_COUNTED = {"add": "definitions", "remove": "definitions", "change": "definitions",
            "document": "definitions", "test": "tests"}
_WHERE = {"add": "to", "test": "to", "remove": "from"}  # else "in"


def _count(action: str, n: int, where: str | None) -> str:
    """"add 2 tests", or with the one file they are in: "add 2 tests to test_x.py"."""
    noun = _COUNTED[action]
    text = f"{_verb(action)} {n} {noun}" if n > 1 else f"{_verb(action)} a {noun[:-1]}"
    return f"{text} {_WHERE.get(action, 'in')} {where}" if where else text


def subject(found: list[Fact], limit: int) -> str | None:
    """"document a and b, add test_c" within ``limit`` characters: names while they fit,
    then fewer names ("change a and 3 more"), then counts with their file ("add 2 tests
    to test_x.py"), then bare counts ("add 2 tests"), last clauses first; whole clauses
    only. A name tells the reader more than a file does, and a file more than a count:
    when every clause has come down to a bare count, the first clause alone with a name
    or its file is said instead."""
    groups = []
    for action in ORDER:
        facts_of = [f for f in found if f.action == action]
        names = list(dict.fromkeys(f.name for f in facts_of))
        if names:
            paths = {f.path for f in facts_of}
            groups.append((action, names, paths.pop().rsplit("/", 1)[-1]
                           if len(paths) == 1 else None))
    if not groups:
        return None
    # Each clause's forms, most telling first: up to three names, fewer, then counts.
    forms = [[f"{_verb(a)} {_names(n, keep)}" for keep in range(min(3, len(n)), 0, -1)]
             + ([_count(a, len(n), where)] if where else []) + [_count(a, len(n), None)]
             for a, n, where in groups]
    bare = {f[-1] for f in forms}
    clauses = [f[0] for f in forms]
    said = None
    for i in reversed(range(len(clauses))):  # shorten the later clauses first
        for form in forms[i]:
            clauses[i] = form
            if len(", ".join(clauses)) <= limit:
                said = ", ".join(clauses)
                break
        if said is not None:
            break
    else:
        while clauses and len(", ".join(clauses)) > limit:  # the shortest do not fit
            clauses.pop()
        said = ", ".join(clauses) or None
    if said is not None and not set(said.split(", ")) <= bare:
        return said
    first = next((form for f in forms for form in f[:-1] if len(form) <= limit), None)
    return first or said


# Verbs that say a definition was there before the change, and that it still is after.
_WAS_THERE_LIST = """change update fix refactor rename modify rework simplify improve tweak
adjust extend remove delete drop revert restore move"""
_STILL_THERE_LIST = """add introduce create implement change update fix refactor rename modify
rework simplify improve tweak adjust extend document restore"""
_WAS_THERE = frozenset(_WAS_THERE_LIST.split())
_STILL_THERE = frozenset(_STILL_THERE_LIST.split())
_SAYS_OF_A_NAME = _WAS_THERE | _STILL_THERE


def contradiction(subject: str, files: list[FileDiff]) -> str | None:
    """Why the subject's verb cannot be true of the definition it names, or None:
    "change to_euros" when the diff adds to_euros (it was not there to change), "add
    old_helper" when it removes it. Each clause ("add a, change b") is read on its own:
    its first word, then the name after it (past an article)."""
    claims = []  # (verb, name) of each clause whose verb says something of a name
    for clause in subject.split(","):
        words = [w.strip("`'\"().:;") for w in clause.split()]
        rest = [w for w in words[1:] if w.lower() not in ("a", "an", "the")]
        if rest and words[0].lower() in _SAYS_OF_A_NAME:
            claims.append((words[0].lower(), rest[0]))
    if not claims:  # the diff is read only for a subject that says something of it
        return None
    found = facts(files)
    added = {f.name for f in found if f.action in ("add", "test")}
    removed = {f.name for f in found if f.action == "remove"}
    added, removed = added - removed, removed - added  # moved from file to file: both
    for verb, name in claims:
        if name in added and verb in _WAS_THERE:
            return f"the subject says to {verb} {name}, which this change adds: {subject!r}"
        if name in removed and verb in _STILL_THERE:
            return f"the subject says to {verb} {name}, which this change removes: {subject!r}"
    return None


def conventional_type(found: list[Fact], files: list[FileDiff]) -> str:
    """The type the facts support, and no more: docs, test, feat (only additions), else
    chore (whether a change fixes or refactors is not in the structure)."""
    actions = {f.action for f in found}
    hint = type_hint(files)  # all documentation, or all tests, by their paths
    if hint:
        return hint
    if actions <= {"document"}:
        return "docs"
    if actions <= {"test"}:
        return "test"
    if actions <= {"add", "document", "test"} and "add" in actions:
        return "feat"
    return "chore"


def _stem(path: str) -> str:
    return path.rsplit("/", 1)[-1].split(".", 1)[0]


def area(files: list[FileDiff]) -> str:
    """The scoped style's area: the one file's stem, else the deepest common folder."""
    paths = [f.path for f in files]
    if len(paths) == 1:
        return _stem(paths[0])
    parts = [p.split("/")[:-1] for p in paths]
    common: list[str] = []
    for level in zip(*parts, strict=False):
        if len(set(level)) != 1:
            break
        common.append(level[0])
    return "/".join(common)


def structural_message(files: list[FileDiff], style: str, max_header: int) -> str | None:
    """The subject line for ``files`` in ``style``, from their structure; None when
    the diff shows nothing to name."""
    found = facts(files)
    if style == "conventional":
        prefix = conventional_type(found, files) + ": "
    elif style == "scoped":
        where = area(files)
        if not where and found:  # no common folder: the one most of the facts are in
            tops = [f.path.split("/", 1)[0] if "/" in f.path else _stem(f.path) for f in found]
            where = max(dict.fromkeys(tops), key=tops.count)
        prefix = f"{where}: " if where else ""
    else:
        prefix = ""
    text = subject(found, max_header - len(prefix))
    if text is None:
        return None
    if style == "plain" or not prefix:
        text = text[0].upper() + text[1:]
    return prefix + text
