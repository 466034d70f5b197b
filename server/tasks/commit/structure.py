"""What a diff does, read from its structure: definitions added, removed or changed,
docstrings written, tests added. Pure functions over FileDiff.

When the model's message is refused (the bundled 135M/270M models rarely describe
a real diff), ``structural_message`` says what changed in those terms instead:
"document total_value and apply_discount, add test_apply_discount_half_2". Shallow,
never wrong about what the diff contains, and said to be written from the diff.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from ....indexer.lines import split_lines
from .gitdiff import DANGLING, DOCUMENT_SUFFIXES, MD_HEADING, TEST_PATH, FileDiff, type_hint

# A definition line in Python, JS/TS, Go, Rust, Ruby, Kotlin, Swift (+ or - or context).
_DEF = re.compile(r"^\s*(?:export\s+)?(?:pub(?:\([^)]*\))?\s+)?(?:async\s+)?"
                  r"(def|class|function|fn|func|fun|interface|struct|enum|trait)\s+"
                  r"(?:\([^)]*\)\s*)?([A-Za-z_]\w*)")
_FUNCTIONS = frozenset(["def", "function", "fn", "func", "fun"])  # _DEF's, not a class's
_HUNK = re.compile(r"^@@ [^@]* @@ ?(.*)$")
_DOC_OPEN = re.compile(r"^\s*[rRuU]?(\"\"\"|''')|^\s*/\*\*|^\s*///")
ORDER = ("add", "remove", "change", "document", "test")


@dataclass(frozen=True)
class Fact:
    action: str  # one of ORDER
    name: str
    path: str


_TRIPLE = ('"""', "'''")
# Lines at the top level that still belong to the definition above (its closing
# bracket, Ruby's end) or to the next one (a decorator).
_NOT_TOP_LEVEL = ("}", ")", "]", "end", "@")


def _defined(line: str) -> str | None:
    m = _DEF.match(line)
    return m.group(2) if m else None


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def file_facts(f: FileDiff) -> list[Fact]:
    """The facts of one file's patch, in the order found, each (action, name) once."""
    return list(_patch_facts(f.path, f.patch))


@functools.lru_cache(maxsize=32)  # (a long-running server: patches can be large)
def _patch_facts(path: str, patch: str) -> tuple[Fact, ...]:
    """file_facts, kept: each candidate subject is checked against the same files'
    facts several times (what the change touches, what its verb contradicts), and a
    re-ask or another candidate checks them again."""
    added: dict[str, None] = {}
    removed: dict[str, None] = {}
    documented: dict[str, None] = {}
    changed: dict[str, None] = {}
    current: str | None = None  # the definition the lines are in
    last_def: str | None = None  # a definition on the line just before (for docstrings)
    in_doc = False
    # The triple quote of a multi-line string the lines are in: a `def` in it is text
    # (a test's source code), not a definition.
    in_string: str | None = None
    # The functions seen opened in this hunk, (indent, name): a `def` inside one is
    # local to it (a test's helper), a change of it and not a fact of its own.
    functions: list[tuple[int, str]] = []
    for raw in split_lines(patch):
        if raw.startswith(("+++", "---", "diff --git", "index ")):
            continue
        hunk = _HUNK.match(raw)
        if hunk:
            current, last_def, in_doc = _defined(hunk.group(1)), None, False
            in_string, functions = None, []
            continue
        sign, line = raw[:1], raw[1:]
        if in_string is not None and not in_doc:
            if sign != "-" and line.count(in_string) % 2:
                in_string = None
            if sign in "+-" and line.strip() and current is not None:
                changed[current] = None
            continue
        if line.strip() and not in_doc:
            while functions and functions[-1][0] >= _indent(line):
                functions.pop()
        definition = _DEF.match(line)
        name = definition.group(2) if definition else None
        if name is not None and functions:
            name = None  # local to the function it is in: that one changes
        elif definition is not None and definition.group(1) in _FUNCTIONS:
            functions.append((_indent(line), definition.group(2)))
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
            if not _indent(line) and not line.startswith(_NOT_TOP_LEVEL):
                current = None  # code at the top level: no definition's change
        if sign != "-":
            in_string = next((q for q in _TRIPLE if line.count(q) % 2), None)
        if sign in "+-" and line.strip() and current is not None:
            changed[current] = None
    test_file = bool(TEST_PATH.search(path))
    signature = [n for n in added if n in removed]  # removed and added again: changed
    found = [Fact("test" if test_file and n.startswith(("test", "Test")) else "add", n, path)
             for n in added if n not in removed]
    found += [Fact("remove", n, path) for n in removed if n not in added]
    found += [Fact("change", n, path) for n in dict.fromkeys([*signature, *changed])
              if (n not in added and n not in removed) or n in signature]
    said = {fact.name for fact in found}  # "add mean" says it, not "add mean, document mean"
    found += [Fact("document", n, path) for n in documented if n not in said]
    return tuple(found)


def facts(files: list[FileDiff]) -> list[Fact]:
    """Every file's facts; a file whose patch shows no definition is a fact of its own
    (a document's change in one section: "the Install section of README.md")."""
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
            elif action == "change" and _document(f.path):
                # The sections named: a change under the title or above every
                # heading as well (an intro's figures) is the named sections' context.
                titles = [t for t in sections(f.patch) if t is not None]
                if titles:
                    said = f"the {_names(titles)} section{'s' * (len(titles) > 1)}"
                    # of the file, or, when that is too long, the sections alone
                    name = next((s for s in (f"{said} of {name}", said) if len(s) <= 48),
                                name)
            out.append(Fact(action, name, f.path))
    return out


def _document(path: str) -> bool:
    return path.lower().endswith(DOCUMENT_SUFFIXES)


_RST_UNDERLINE = re.compile(r"^([=\-~^\"'`#*+])\1{2,}\s*$")


def _title(heading: str | None) -> str | None:
    if heading is None:
        return None
    title = heading.replace("`", "").split(": ", 1)[0].strip(" .:")
    return title if 0 < len(title) <= 40 and re.search(r"[A-Za-z]", title) else None


def sections(patch: str) -> list[str | None]:
    """The headings (Markdown, reStructuredText) of the sections a document's patch
    changes, in order, each once: the last heading above each changed line that the
    patch shows ("Engine" for "## Engine: `bench/engine.py`"). None stands for a change
    under the document's title (`# Title`), above every heading, or below a heading
    out of view."""
    found: dict[str | None, None] = {}
    heading: str | None = None
    previous = ""
    for raw in split_lines(patch):
        if raw.startswith(("+++", "---", "diff --git", "index ")):
            continue
        hunk = _HUNK.match(raw)
        if hunk:
            m = MD_HEADING.match(hunk.group(1))
            heading = m.group(2) if m and len(m.group(1)) > 1 else None
            previous = ""
            continue
        sign, line = raw[:1], raw[1:]
        if sign != "-":
            m = MD_HEADING.match(line)
            if m:
                heading = m.group(2) if len(m.group(1)) > 1 else None  # "# Title": none
            elif _RST_UNDERLINE.match(line) and previous.strip() and \
                    not _RST_UNDERLINE.match(previous):
                heading = previous.strip()
            previous = line
        if sign in "+-" and line.strip() and not MD_HEADING.match(line):
            found[_title(heading)] = None
    return list(found)


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


def _prefix(found: list[Fact], files: list[FileDiff], style: str) -> str:
    if style == "conventional":
        return conventional_type(found, files) + ": "
    if style == "scoped":
        where = area(files)
        if not where and found:  # no common folder: the one most of the facts are in
            tops = [f.path.split("/", 1)[0] if "/" in f.path else _stem(f.path) for f in found]
            where = max(dict.fromkeys(tops), key=tops.count)
        return f"{where}: " if where else ""
    return ""


def _header(prefix: str, style: str, text: str) -> str:
    if style == "plain" or not prefix:
        text = text[0].upper() + text[1:]
    return prefix + text


def structural_message(files: list[FileDiff], style: str, max_header: int) -> str | None:
    """The subject line for ``files`` in ``style``, from their structure; None when
    the diff shows nothing to name."""
    found = facts(files)
    prefix = _prefix(found, files, style)
    text = subject(found, max_header - len(prefix))
    return None if text is None else _header(prefix, style, text)


def authored_message(files: list[FileDiff], style: str, max_header: int) -> str | None:
    """The subject line for ``files`` with one fact in the author's own words ("add
    name_reason: what a file is by its name alone"); None when the added lines hold
    no prose of the author's."""
    found = facts(files)
    prefix = _prefix(found, files, style)
    joint = " — " if style == "scoped" else ": "  # not a second "area: "
    for fact, text in author_words(files, found):  # the best whose words fit
        lead = f"{_verb(fact.action)} {fact.name}"
        cut = _cut(text, max_header - len(prefix) - len(lead) - len(joint))
        if cut is not None:
            return _header(prefix, style, lead + joint + cut)
    return None


def structural_messages(files: list[FileDiff], style: str, max_header: int, *,
                        authored: bool = True) -> list[str]:
    """The subject lines for ``files``, best first: in the author's words (unless not
    ``authored``), then the facts alone."""
    said = [authored_message(files, style, max_header) if authored else None,
            structural_message(files, style, max_header)]
    return [s for s in said if s is not None]


# --------------------------------------------------------------- the author's words
# What the change's author wrote in it, in prose: the docstring of a new definition,
# a comment. Subjects often say what those say ("One place says what a file is by its
# name" for a new name_reason documented "What a file is by its name alone"). A
# docstring added to a definition that had none says what the definition does, not
# what the change does: "document total_value" says that already.

_LINE_COMMENT = re.compile(r"^\s*(?:#|//+)(?!!)\s?(.*)$")
_PREPROCESSOR = re.compile(r"^\s*#\s*(include|define|undef|ifn?def|if|elif|else|endif|pragma|"
                           r"error|region|endregion)\b")
_DOC_START = re.compile(r"^\s*[rRuU]?(\"\"\"|''')(.*)$|^\s*/\*\*?(.*)$")
_TRAILING = re.compile(r"^\s*[^\s#/].*\s(?:#|//)\s+(.+)$")  # the last: "a // b  # pages"
_PROSE_WORD = re.compile(r"[\"'`(]*[A-Za-z][A-Za-z'’-]*[\"'`),.;:!?]*")
_NOT_PROSE = re.compile(r"\b(TODO|FIXME|XXX|noqa|pragma|pylint|eslint|fmt|coding|copyright|"
                        r"licen[cs]e|SPDX)\b|type:\s*ignore|https?://|[-=*#~_]{3}", re.I)
# Words a cut must not end on, besides those the validator refuses: the sentence would
# stop open.
_OPEN_LIST = """when its their but not so if than be was were this these those about over
under after before between through without within via per like since until while whose
may might can could will would shall should must has have had do does did
says tells gives takes makes keeps holds puts sets gets names"""  # verbs wanting an object
_OPEN = DANGLING | frozenset(_OPEN_LIST.split())
_RANK = {"doc": 0, "comment": 2, "trailing": 3}  # a changed definition's doc: 1


def _prose(text: str) -> bool:
    """A sentence of words, not code commented out or a marker ("TODO", "noqa")."""
    words = text.split()
    if len(words) < 4 or _NOT_PROSE.search(text):
        return False
    return sum(bool(_PROSE_WORD.fullmatch(w)) for w in words) >= 0.7 * len(words)


@dataclass(frozen=True)
class Note:
    kind: str  # "doc" (a docstring or doc comment), "comment", "trailing" (after code)
    name: str | None  # the definition it documents or is in
    text: str  # its lines joined into one


def notes(f: FileDiff) -> list[Note]:
    """The prose of one file's added lines, in the order found."""
    out: list[Note] = []
    block: list[str] = []  # a run of whole-line comments
    doc: list[str] | None = None  # an open docstring (or /** */ comment)
    close = ""
    current: str | None = None  # the definition the lines are in
    last_def: str | None = None  # a definition on the line just before (for docstrings)

    def add(kind: str, lines: list[str], name: str | None) -> None:
        text = " ".join(" ".join(lines).split())
        if _prose(text):
            out.append(Note(kind, name, text))

    for raw in split_lines(f.patch):
        if raw.startswith(("+++", "---", "diff --git", "index ")):
            continue
        hunk = _HUNK.match(raw)
        sign, line = raw[:1], raw[1:]
        if doc is not None:
            end = line.find(close) if sign == "+" else 0
            doc.append((line[:end] if end >= 0 else line).strip(" */"))
            if end >= 0:
                add("doc", doc, current)
                doc = None
            continue
        if hunk or sign != "+":
            if block:
                add("comment", block, current)
                block = []
            name = _defined(hunk.group(1) if hunk else line)
            if name is not None:
                current = last_def = name
            elif hunk or line.strip():
                last_def = None
            continue
        name = _defined(line)
        if name is not None:
            current = last_def = name
            continue
        opened = _DOC_START.match(line)
        if opened and not block:
            close = opened.group(1) or "*/"
            rest = opened.group(2) if opened.group(1) else opened.group(3)
            current = last_def or current
            if close in rest:
                add("doc", [rest[:rest.index(close)].strip(" *")], current)
            else:
                doc = [rest.strip(" *")]
            last_def = None
            continue
        comment = _LINE_COMMENT.match(line)
        if comment and not _PREPROCESSOR.match(line):
            block.append(comment.group(1))
            continue
        if block:
            add("comment", block, current)
            block = []
        trailing = _TRAILING.match(line)
        if trailing and line.count("'") % 2 == 0 and line.count('"') % 2 == 0:
            add("trailing", [trailing.group(1)], current)  # (not a "#" inside a string)
        if line.strip():
            last_def = None
    if block:
        add("comment", block, current)
    if doc:
        add("doc", doc, current)
    return out


def author_words(files: list[FileDiff], found: list[Fact]) -> list[tuple[Fact, str]]:
    """Each fact the author's words are about, with their first sentence, best first:
    a new definition's docstring, a changed one's, a comment, a comment after code;
    code before tests; in a file with more lines added before one with fewer."""
    by_name: dict[str, Fact] = {}
    for fact in found:  # (a name moved between files is said to be added)
        by_name.setdefault(fact.name, fact)
    candidates = []
    for i, f in enumerate(files):
        test_file = bool(TEST_PATH.search(f.path))
        prose = f.patch and not _document(f.path)  # a document's "#" is a heading
        for j, note in enumerate(notes(f) if prose else []):
            about = by_name.get(note.name or "")
            if note.kind == "doc" and (about is None or about.action == "document"):
                continue  # the definition was documented, not changed: see above
            about = about or next((x for x in found if x.path == f.path), None)
            if about is not None:
                rank = _RANK[note.kind] + (note.kind == "doc" and about.action not in ("add", "test"))
                candidates.append(((test_file, rank, -f.added, i, j), about, note.text))
    return [(about, _first_sentence(text))
            for _, about, text in sorted(candidates, key=lambda c: c[0])]


def _first_sentence(text: str) -> str:
    end = re.search(r"(?<=[a-z0-9)\]`'\"])[.;](\s|$)", text)
    text = text[:end.start()] if end else text.rstrip(".")
    head = text.split(": ", 1)[0]  # "aborted inside the batch: the prompt never ..."
    text = head if head != text and len(head.split()) >= 4 else text
    if re.match(r"[A-Z][a-z]*\b", text) and not re.match(r"I\b", text):
        # "What a file is" -> "add x: what a file is"; not "HEAD", "RemoteEngine" or "I"
        text = text[0].lower() + text[1:]
    return text


def _cut(text: str, room: int) -> str | None:
    """``text`` within ``room`` characters: whole, else at the last clause boundary
    that fits, else at a word; never ending on a word that leaves the sentence open.
    None when fewer than three words are left."""
    tries = [text]
    if len(text) > room:
        bounds = [m.start() for m in re.finditer(r"[,;:](?=\s)|\s(?=\()|\s[-—]\s", text)
                  if m.start() <= room]
        tries = [text[:b] for b in reversed(bounds)] + [text[:room + 1].rsplit(" ", 1)[0]]
    for cut in tries:
        if cut.count("(") > cut.count(")"):  # "... runs it (the variable set outside"
            cut = cut[:cut.rindex("(")]
        words = cut.split()
        while words and (words[-1].lower() in _OPEN
                         or re.search(r"[,;:(\"'`/—-]$", words[-1])):
            stripped = words[-1].rstrip(",;:")
            if stripped and stripped != words[-1] and not re.search(r"[(\"'`/—-]$", stripped):
                words[-1] = stripped  # "files," -> "files"
            else:
                words.pop()
        if len(words) >= 3:
            return " ".join(words)
    return None
