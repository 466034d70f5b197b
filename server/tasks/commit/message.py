"""Commit messages: prompts, the output grammar, and the checks a message must pass.

Pure functions (text in, text out). The grammar makes the model's output have
the right shape; ``validate`` checks what a grammar cannot: the subject's length
and mood, and that the model did not just echo a line of the diff (tiny models
do). A message that fails is repaired when the fix is mechanical and refused
otherwise: no message beats a wrong one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ....indexer.lines import split_lines
from ...chat_format import Message
from ...prompts import render, task_prompt
from ..runner import Refusal
from . import structure
from .gitdiff import (
    DANGLING,
    MAX_SUBJECT,
    PAST_COMMITS,
    Changes,
    FileDiff,
    stat_line,
    trim_patch,
    type_hint,
)

TYPES = ("feat", "fix", "docs", "style", "refactor", "perf", "test", "build", "ci", "chore",
         "revert")
MAX_HEADER = MAX_SUBJECT
MAX_BULLETS = 5
STYLES = ("conventional", "scoped", "plain")

# GBNF. The grammar fixes the shape (a known type, an optional scope, a subject
# of bounded length, a few bullets) and nothing a tokenizer would trip on: every
# rule admits the tokens a model naturally begins with — a leading space (" Add"
# after ":"), a capital letter ("Fix", "Add") — because masking them forces the
# model onto tokens it would never choose (subjects that began "ir…" and "xt…").
# Case, mood and spacing are normalised after generation, in ``validate``.
_BODY = r"""
body ::= "\n\n" bullet bullet? bullet? bullet? bullet?
bullet ::= "-" " "? [A-Za-z`] [^\n]{6,90} "\n"
"""


def _type_rule() -> str:
    variants = [v for t in TYPES for v in (t, t.capitalize())]
    return "type ::= " + " | ".join(f'"{v}"' for v in variants) + "\n"


# The subject's start: a letter of either case, or a backquote that opens a name
# (not a code fence), after an optional space (part of many tokenizers' word tokens).
SUBJECT_START = '([A-Za-z] | "`" [A-Za-z_])'
CONVENTIONAL_GRAMMAR = (
    'root ::= " "? type scope? ":" " "? subject body?\n'
    + _type_rule()
    + 'scope ::= "(" [A-Za-z0-9_./-]{1,20} ")"\n'
    + "subject ::= " + SUBJECT_START + r" [^\n]{5,56}" + "\n" + _BODY)
PLAIN_GRAMMAR = ('root ::= " "? ' + SUBJECT_START + r" [^\n]{5,66} body?" + "\n" + _BODY)

# "area: what changed" (git, Linux, Go, this project): the area is one of the changed
# paths' names (``scopes``), so a subject can only begin with something that changed.
_SCOPE = re.compile(r"^(?P<scope>[A-Za-z0-9_][A-Za-z0-9_.\-/]*): (?P<subject>\S.*)$")
MAX_SCOPES = 40


def scopes(files: list[FileDiff], recent: Sequence[str] = ()) -> list[str]:
    """The areas a scoped subject may name: each changed path, its file name and
    stem, its folders; and the areas of recent subjects that name one of those."""
    out: list[str] = []
    parts: set[str] = set()
    for f in files:
        for path in filter(None, (f.path, f.old_path)):
            segments = path.split("/")
            name = segments[-1]
            forms = [path, name, name.split(".", 1)[0], *segments[:-1],
                     "/".join(segments[:-1])]
            for form in forms:
                if form and form not in out:
                    out.append(form)
            parts |= {p.lower() for p in forms if p}
    for subject in recent:
        m = _SCOPE.match(subject)
        if m and m["scope"].lower() in parts and m["scope"] not in out:
            out.append(m["scope"])  # the repository's own spelling ("LSP" for lsp/)
    return [s for s in out if len(s) <= 40][:MAX_SCOPES]


def grammar(style: str, files: list[FileDiff], recent: Sequence[str]) -> str:
    if style == "conventional":
        return CONVENTIONAL_GRAMMAR
    if style == "scoped" and (names := scopes(files, recent)):
        alternatives = " | ".join('"' + n.replace("\\", "\\\\").replace('"', '\\"') + '"'
                                  for n in names)
        return ('root ::= " "? scope ":" " "? subject body?\n'
                + f"scope ::= {alternatives}\n"
                + "subject ::= " + SUBJECT_START + r" [^\n]{5,60}" + "\n" + _BODY)
    return PLAIN_GRAMMAR

_HEADER = re.compile(r"^(?P<type>[A-Za-z]+)(?:\((?P<scope>[^()\s]+)\))?(?P<bang>!)?:\s*(?P<subject>.+)$")

# Verbs a commit subject starts with, to put a subject in the imperative mood
# ("added x" -> "add x") without guessing at words we do not know.
_VERB_LIST = """
accept adapt add adjust align allow annotate append apply assert attach avoid await batch
bind block buffer bump cache call catch centralize chain change check clamp clarify clean
cleanup clear close collapse collect combine commit compare compress compute configure
connect consolidate consume convert copy correct count cover create decode decouple
deduplicate default define delay delete deploy deprecate derive describe detach detect
disable dispatch display document downgrade drop emit enable encode enforce ensure escape
evaluate exclude expand expire explain export expose extend extract factor fail fetch fill
filter finish fix flatten fold format forward gate generate group guard handle hash hide
hoist ignore implement import improve include increase index initialize inject inline insert
inspect install introduce isolate iterate join keep kill launch limit link lint list load
lock log lower make map mark match measure mention merge migrate mock monitor mount move
name narrow normalize note notify observe open optimize order override pack paginate pair
parse pass patch pause persist pick pin pipe plot polish poll populate port post prefer
prepare prepend preserve prevent print process profile promote propagate protect provide
proxy prune publish push query queue quote raise rank reach read rebuild reconnect record
redact redirect reduce refactor refine refresh register reindex reject relax relay release
reload remove rename render reorder reorganize repair repeat replace report request require
rerun rescue reserve reset resolve respect respond restore restrict restructure resume
retain retrieve retry return reuse reveal revert review rework rewrite round route run
sample save scan schedule scope search seed select send separate serialize set shift shorten
show shrink sign simplify skip sleep slice sort spawn speed split stage start stop store
stream strip stub submit subscribe summarize support suppress swap switch sync tag tell test
throttle tidy toggle track transform translate trigger trim truncate tune tweak unblock undo
unify unlock unpin unwrap update upgrade upload use validate verify wait warn watch widen
wrap write yield zip
"""
_VERBS = frozenset(_VERB_LIST.split())
# Prose of the prompt's instructions: a subject made of it echoes the prompt.
_PROMPT_PHRASES = ("type is one of", "type(scope)", "scope (optional)", "scope): subject",
                   "subject is lowercase", "imperative mood", "at most 72 characters",
                   "no period", "in your own words",
                   "lines of the diff", "bullet lines",
                   # the re-ask's rejection reasons, told back ("The subject does not
                   # say anything: a new commit message")
                   "message was rejected", "does not say anything", "neither a verb nor",
                   "repeats the diff", "stops mid-sentence", "is about nothing in the diff",
                   "copies the prompt's example", "copies a recent commit")


class CommitMessageError(Refusal):
    """No valid message could be made; says why."""


@dataclass(frozen=True)
class CommitPrompt:
    text: str
    stop: list[str]
    grammar: str


def _imperative(word: str) -> str | None:
    """The imperative form of a known verb in another form, else None."""
    w = word.lower()
    if w in _VERBS:
        return w
    candidates = []
    for suffix, repl in (("ies", "y"), ("ied", "y"), ("ing", ""), ("ing", "e"), ("ed", ""),
                         ("ed", "e"), ("es", ""), ("s", "")):
        if w.endswith(suffix):
            stem = w[: -len(suffix)]
            candidates.append(stem + repl)
            if suffix in ("ed", "ing") and len(stem) > 2 and stem[-1] == stem[-2]:
                candidates.append(stem[:-1])  # skipped -> skip, dropping -> drop
    return next((c for c in candidates if c in _VERBS), None)


def _diff_lines(files: list[FileDiff]) -> set[str]:
    out = set()
    for f in files:
        for line in split_lines(f.patch):
            if line[:1] in "+- " and not line.startswith(("+++", "---")):
                text = line[1:].strip().lower()
                if len(text) >= 12:
                    out.add(text)
    return out


_WORD = re.compile(r"[A-Za-z]{2,}")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*[A-Za-z0-9](\(\))?")
_FILE_NAME = re.compile(r"[A-Za-z_][\w/-]*\.[A-Za-z]\w{0,5}")
_STOPWORDS = frozenset(["the", "a", "an", "and", "or", "of", "to", "in", "on", "for", "with", "from", "by", "at", "as", "is", "are", "be", "it", "its", "this", "that", "into", "when", "than", "then", "not", "no", "new", "old", "all", "any", "some", "more", "less", "only", "also", "now", "use", "using"])


def _content_words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)
            if len(w) >= 4 and w.lower() not in _STOPWORDS and w.lower() not in _VERBS]


def _grounded(text: str, vocabulary: set[str], names: set[str] | None = None) -> bool:
    """Whether some content word of ``text`` shares a 4-letter stem with the changes
    (identifiers are split, so `parse_price` grounds "prices"), or it names one of the
    changes' identifiers whole (``names``: `on_gpu`, whose parts are too short to)."""
    words = _content_words(text)
    if not words or not vocabulary or any(w[:4] in vocabulary for w in words):
        return True
    return names is not None and any(
        ("_" in token or not token.isalpha()) and token.lower() in names
        for token in (w.strip(",:;`'\"()") for w in text.split()))


def _vocabulary(files: list[FileDiff]) -> set[str]:
    return _stems(" ".join(f"{f.path} {f.old_path} {f.patch}" for f in files))


def touched(files: list[FileDiff]) -> list[FileDiff]:
    """The files with only what the change touches: the added and removed lines, the
    definitions they are in (structure's facts) and the file's name, not the unchanged
    lines shown around them (nor git's hunk header: the definition above a hunk, which
    a function added after it is not in)."""
    out = []
    for f, facts in ((f, structure.file_facts(f)) for f in files):
        kept = [line[1:] for line in split_lines(f.patch)
                if line[:1] in "+-" and not line.startswith(("+++", "---"))]
        kept += [fact.name for fact in facts]  # not git's hunk header: the def above
        # The file's own name, not its folders' ("inventory/" of every file there).
        out.append(FileDiff(f.path.rsplit("/", 1)[-1], f.status, "\n".join(kept),
                            old_path=f.old_path.rsplit("/", 1)[-1]))
    return out


def _stems(text: str) -> set[str]:
    """The 4-letter stems of the words of ``text``, identifiers split."""
    words = set()
    for token in re.findall(r"[A-Za-z][A-Za-z0-9]*", text.replace("_", " ")):
        for part in re.findall(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])", token):
            if len(part) >= 4:
                words.add(part.lower()[:4])
    return words


def _echoes(text: str, diff_lines: set[str]) -> bool:
    t = text.strip().lower().rstrip(".")
    if re.search(r"^(diff --git|index [0-9a-f]|@@|\+\+\+|---)|[{};]|\bdef \b|\breturn\b", t):
        return True
    if re.search(r"\(\+\d+ -\d+\)", t):  # the prompt's file list: "tasks.py (+10 -8)"
        return True
    return len(t) >= 12 and any(t in line or line in t for line in diff_lines)


def diff_words(files: list[FileDiff]) -> set[str]:
    """Every whole word of the changes, lowercase: identifiers, their snake_case and
    camelCase parts, file names and stems."""
    words: set[str] = set()
    for f in files:
        for path in (f.path, f.old_path or ""):
            name = path.rsplit("/", 1)[-1].lower()
            words |= {name, name.split(".", 1)[0]}
        for token in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", f"{f.path} {f.old_path} {f.patch}"):
            words.add(token.lower())
            for part in re.findall(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])", token.replace("_", " ")):
                words.add(part.lower())
    words.discard("")
    return words


# First words a subject may have besides verbs and the diff's own words.
_OTHER_STARTERS = frozenset(["initial", "first", "more", "less", "better", "new", "only",
                             "no", "do", "don't", "dont", "again", "also", "minor", "small"])


def first_word_problem(subject: str, words: set[str]) -> str | None:
    """Why the subject's first word cannot begin it, or None.

    A subject begins with a verb (any form: the mood is repaired later), a word of the
    changes (a file, an identifier) or a quoted name; anything else is what a masked
    tokenizer produces ("xtrapyl", "irexpire") or chatter."""
    first = subject.split()[0] if subject.split() else ""
    if first.startswith("`"):
        return None
    bare = first.strip(",:;.'\"()[]!?").lower()
    if not bare:
        return f"the subject does not begin with a word: {subject!r}"
    if re.search(r"[:%={}<>\[\]()]", bare):  # "load1.share:.0% for phase 2"
        return f"the subject begins with code, not a word: {subject!r}"
    if _imperative(bare) or bare in words or bare in _OTHER_STARTERS:
        return None
    # A path or a dotted name of the changes ("bench/tasks.py", "Store.close"), by its
    # first part: "irepo.py" is not one because "py" is.
    if re.search(r"[./_]", bare) and re.split(r"[./]", bare)[0] in words:
        return None
    return (f"the subject begins with {first!r}, which is neither a verb nor a word "
            f"of the changes: {subject!r}")


def _name_like(piece: str) -> bool:
    """A snake_case or lowerCamel name, or letters and digits mixed: never a word of
    prose ("onlyFiles", "load_config", "utf8x"), so it must come from the changes."""
    return ("_" in piece.strip("_") or bool(re.match(r"[a-z]+[A-Z]", piece))
            or (len(piece) >= 5 and bool(re.search(r"[A-Za-z]", piece))
                and bool(re.search(r"\d", piece)) and not re.fullmatch(r"v?\d[\w.]*", piece)))


def subject_problem(subject: str, words: set[str]) -> str | None:
    """Why the subject, past its first word, is not a sentence about the changes: a
    list's numbered item ("The index_service.py: 2) a new way to ...") or a name the
    changes do not have ("write-onlyFiles"), as small models make them up."""
    if re.search(r"(^|\s)\(?\d{1,2}\)\s", subject):
        return f"the subject is an item of a numbered list: {subject!r}"
    call = re.search(r"[A-Za-z_][\w.]*\([^()]*,[^()]*\)", subject)
    if call:  # "total(xs)" names a call; "_resolve_target(args, found)" quotes one
        return f"the subject quotes code (a call with its arguments): {call[0]!r}"
    made_up = [piece for piece in re.findall(r"[A-Za-z0-9_]+", subject)
               if _name_like(piece) and piece.lower() not in words]
    if made_up:
        return f"the subject names {made_up[0]!r}, which the changes do not have: {subject!r}"
    return None


def echoes_prompt(text: str) -> bool:
    """Whether ``text`` repeats the prompt's instructions ("type is one of: feat, fix")."""
    t = " ".join(text.lower().split())
    if any(phrase in t for phrase in _PROMPT_PHRASES):
        return True
    listed = sum(1 for ty in TYPES if re.search(rf"\b{ty}\b", t))
    return listed >= 3  # a list of the commit types


def validate(raw: str, changes: Changes | None = None, style: str = "conventional") -> str:
    """The message, repaired where the fix is mechanical; CommitMessageError otherwise."""
    files = changes.described if changes else []
    diff_lines = _diff_lines(files)
    lines = [line.rstrip() for line in raw.strip().splitlines()]
    if not lines or not lines[0].strip():
        raise CommitMessageError("the model gave an empty message")
    header = lines[0].strip()
    if echoes_prompt(header):
        raise CommitMessageError(f"the message repeats the prompt's instructions: {header!r}")
    if style == "conventional":
        m = _HEADER.match(header)
        if m is None:
            raise CommitMessageError(f"not a Conventional Commits header: {header!r}")
        ctype, scope, subject = m["type"].lower(), m["scope"], m["subject"].strip()
        if ctype not in TYPES:
            raise CommitMessageError(f"unknown commit type {ctype!r} (one of {', '.join(TYPES)})")
        hint = type_hint(files)
        if hint and ctype != hint:
            ctype = hint  # every file is documentation (or a test): the type says so
    elif style == "scoped":
        m = _SCOPE.match(header)
        if m is None:
            raise CommitMessageError(f"not an `area: subject` line: {header!r}")
        known = {n.lower() for n in scopes(files, changes.recent if changes else [])}
        if files and m["scope"].lower() not in known:
            raise CommitMessageError(f"the area {m['scope']!r} is not one of the changed paths")
        ctype, scope, subject = "", m["scope"], m["subject"].strip()
    else:
        ctype, scope, subject = "", None, header
    subject = subject.rstrip(" .")
    words = subject.split()
    if not words:
        raise CommitMessageError("the subject is empty")
    if changes is not None and _norm(header) in {_norm(s) for s in changes.recent}:
        raise CommitMessageError(f"the message copies a recent commit's subject: {header!r}")
    examples = [sub for _, _, sub in _SHOTS] + [  # the worked examples
        past.subject for past in (changes.past if changes else [])]
    shown = {_norm(e) for e in examples}
    if _norm(subject) in shown or _norm(header) in shown:
        raise CommitMessageError(f"the message copies the prompt's example: {header!r}")
    words_of_changes = diff_words(files)
    copied = next((other for other in [*examples, *(changes.recent if changes else [])]
                   if near_copy(subject, other, words_of_changes)), None)
    if copied is not None:
        raise CommitMessageError(f"the message is another commit's subject, not this "
                                 f"change's: {header!r} (from {copied!r})")
    verb = _imperative(words[0])
    if verb is not None:
        words[0] = verb
    elif style != "scoped" and re.fullmatch(r"[A-Za-z]+(ed|ing|[^s]s)", words[0]):
        # (a scoped subject may describe: "sandbox: a cancel kills the whole tree")
        raise CommitMessageError(f"the subject is not in the imperative mood: {subject!r}")
    subject = " ".join(words)
    if _echoes(subject, diff_lines):
        raise CommitMessageError(f"the subject repeats the diff instead of describing it: "
                                 f"{subject!r}")
    if len([w for w in subject.split()
            if _WORD.fullmatch(w.strip(",:;`'\"()")) or _IDENTIFIER.fullmatch(w.strip("`'\""))
            or _FILE_NAME.fullmatch(w.strip("`'\""))
            ]) < 2:  # (a name is a word: "add to_euros", "change benchmarks.md")
        raise CommitMessageError(f"the subject does not say anything: {subject!r}")
    if subject.split()[-1].lower() in DANGLING or re.search(r"\.\s+[A-Z]\w*$", subject) \
            or re.search(r"[,;:(`'\"/-]$", subject):
        # cut at the grammar's length: "... how to test a function. The"
        raise CommitMessageError(f"the subject stops mid-sentence: {subject!r}")
    if verb is None:
        described = subject
        if style == "scoped":  # "a cancel kills ...": the word after the article
            described = re.sub(r"^(a|an|the)\s+", "", subject, flags=re.I)
        problem = first_word_problem(described, words_of_changes)
        if problem:
            raise CommitMessageError(problem)
    problem = subject_problem(subject, words_of_changes) if files else None
    if problem:
        raise CommitMessageError(problem)
    vocabulary = _vocabulary(files)
    if not _grounded(subject, vocabulary, words_of_changes):
        raise CommitMessageError(f"the subject is about nothing in the diff: {subject!r}")
    changed = touched(files)
    if files and not _grounded(subject, _vocabulary(changed), diff_words(changed)):
        # A small model retells a comment next to the change ("fix 0 for an empty
        # inventory" for a new to_euros below "# 0 for an empty inventory").
        raise CommitMessageError(f"the subject is about lines the change leaves as they "
                                 f"are: {subject!r}")
    problem = structure.contradiction(subject, files)
    if problem:
        raise CommitMessageError(problem)
    if style == "conventional" and scope and files and not any(
            scope.lower() in f"{f.path}\n{f.patch}".lower() for f in files):
        scope = None  # a scope named after nothing that changed is dropped
    if style in ("conventional", "scoped") and re.match(r"[A-Z][a-z]*\b", subject) and \
            not re.match(r"[A-Z][a-z]*[A-Z_]", subject):
        subject = subject[0].lower() + subject[1:]  # "Add x" -> "add x", not "README"
    if style == "conventional":
        header = f"{ctype}({scope}): {subject}" if scope else f"{ctype}: {subject}"
    elif style == "scoped":
        header = f"{scope}: {subject}"
    else:
        header = subject[0].upper() + subject[1:]
    if len(header) > MAX_HEADER:
        raise CommitMessageError(f"the subject line is {len(header)} characters "
                                 f"(at most {MAX_HEADER})")
    bullets = []
    for line in lines[1:]:
        text = line.strip()
        if not text:
            continue
        text = re.sub(r"^[-*]\s*", "", text)
        if (len([w for w in _WORD.findall(text) if len(w) >= 3]) < 3
                or _echoes(text, diff_lines) or text.lower() == subject.lower()
                or echoes_prompt(text)
                or not _grounded(text, vocabulary)):
            continue  # too short to say anything, repeats the diff or the subject, or
            # is about something that did not change
        bullets.append(f"- {text}")
        if len(bullets) == MAX_BULLETS:
            break
    return header + ("\n\n" + "\n".join(bullets) if bullets else "")


def lcs_length(a: list[str], b: list[str]) -> int:
    """The length of the longest common subsequence of two word lists (ROUGE-L's)."""
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b, 1):
            cur.append(prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1]))
        prev = cur
    return prev[-1]


def _longest_run(a: list[str], b: list[str]) -> list[str]:
    """The longest run of words ``a`` and ``b`` share, in order and contiguous."""
    best: tuple[int, int] = (0, 0)  # (length, end in a)
    prev = [0] * (len(b) + 1)
    for i, x in enumerate(a, 1):
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b, 1):
            if x == y:
                cur[j] = prev[j - 1] + 1
                best = max(best, (cur[j], i))
        prev = cur
    return a[best[1] - best[0]:best[1]]


def _subject_words(text: str) -> list[str]:
    m = _SCOPE.match(text) or _HEADER.match(text)
    body = m["subject"] if m else text
    return [w for w in (t.strip(",:;.`'\"()[]").lower() for t in body.split()) if w]


def near_copy(subject: str, other: str, words_of_changes: set[str]) -> bool:
    """Whether ``subject`` is ``other`` (an example or a recent subject) with a word or
    two changed, and nothing of this diff brought in: most of its words in order from
    ``other``, and what differs either nothing ("benchmarks.md: machine from the engine
    and torch", cut from another commit's subject) or words the changes do not have
    ("Answer cached: only answers whose result passed validation are kept").
    "return 0 for an empty inventory" after the example "return 0 for an empty cart"
    is this diff's, when the diff has an inventory. Or half of it or more is a run of
    the other's words that names things this diff does not have ("The answer cache
    never fails a task: an invalid grammar is a clear", for a change to a test)."""
    mine, theirs = _subject_words(subject), _subject_words(other)
    if len(mine) < 4:
        return False
    run = _longest_run(mine, theirs)
    if len(run) >= max(4, len(mine) / 2) and len(
            [w for w in _content_words(" ".join(run)) if w not in words_of_changes]) >= 2:
        return True
    if lcs_length(mine, theirs) < 0.75 * len(mine):
        return False
    new = set(mine) - set(theirs)
    return not new or any(w not in words_of_changes for w in new)


def header_refusal(changes: Changes | None, style: str) -> Callable[[str], bool]:
    """For an answer as it streams: True once its first line is complete and validate()
    refuses it. Only the header can refuse a message (a bad bullet is dropped), so the
    rest of the answer cannot save it, and its generation can stop there."""
    decided: dict[str, bool] = {}

    def refused(text: str) -> bool:
        head, newline, _ = text.lstrip().partition("\n")
        if not newline:
            return False
        if head not in decided:
            try:
                validate(head, changes, style)
            except CommitMessageError:
                decided[head] = True
            else:
                decided[head] = False
        return decided[head]

    return refused


# ------------------------------------------------------------------ prompts


def files_block(changes: Changes) -> str:
    return "\n".join(stat_line(f) for f in changes.files)


def diff_block(files: list[FileDiff], max_chars: int) -> tuple[str, list[str]]:
    """The patches within ``max_chars``; files whose patch was cut are named."""
    out, cut = [], []
    left = max_chars
    for f in files:
        patch = f.patch
        if len(patch) > left:
            patch = trim_patch(patch, max(200, left))
            cut.append(f.path)
        out.append(patch)
        left -= len(patch)
    return "".join(out), cut


def _style_rules(style: str, areas: Sequence[str] = ()) -> str:
    if style == "scoped":
        named = ", ".join(f"`{a}`" for a in areas[:4])
        return ("The first line names the area that changed, a colon, then what changed, "
                "lowercase, at most 72 characters in all"
                + (f"; the area is one of: {named}" if named else "") + ".")
    if style == "plain":
        return ("A subject line of at most 72 characters: capitalized, imperative mood "
                "(\"Add\", \"Fix\"), no period.")
    return ("A subject line `type(scope): subject` of at most 72 characters. type is one of: "
            + ", ".join(TYPES) + ". scope (optional) is the area changed, one lowercase word. "
            "subject is lowercase, imperative mood (\"add\", \"fix\"), no period.")


_CONVENTIONAL = re.compile(r"^[a-z]+(\([^)]*\))?!?: \S")
MAX_EXAMPLES = 5


def _norm(text: str) -> str:
    return " ".join(text.lower().rstrip(" .").split())


def _is_conventional(subject: str) -> bool:
    m = _HEADER.match(subject)
    return bool(m and _CONVENTIONAL.match(subject) and m["type"] in TYPES)


def _style_of(subject: str) -> str:
    if _is_conventional(subject):
        return "conventional"
    return "scoped" if _SCOPE.match(subject) else "plain"


def detect_style(subjects: list[str]) -> str:
    """The repository's own style from its recent subjects: `conventional` when most
    follow `type(scope): subject`, `scoped` when most follow `area: subject` (git,
    Linux, Go), else `plain`; conventional without history."""
    if len(subjects) < 3:
        return "conventional"
    counts = {style: sum(_style_of(s) == style for s in subjects) for style in STYLES}
    best = max(("conventional", "scoped"), key=lambda st: counts[st])
    return best if counts[best] / len(subjects) >= 0.5 else "plain"


def examples_block(subjects: list[str], style: str) -> str:
    """Up to MAX_EXAMPLES recent subjects in the chosen style, as a prompt paragraph
    ("" when there are none): the repository's vocabulary and length, few-shot."""
    fitting = [s for s in subjects if _style_of(s) == style and 8 <= len(s) <= 100
               ][:MAX_EXAMPLES]
    if not fitting:
        return ""
    return ("Recent commit subjects of this repository, for its style (do not copy them):\n"
            + "\n".join(f"- {s}" for s in fitting) + "\n")


# Two small changes and their messages, shown before the real one as earlier turns
# (chat) or earlier entries (completion): the bundled models follow a format they
# see answered, where told about it they echo the instructions ("A subject line
# of at most 72 characters") or the list of types.
_SHOTS = (
    (FileDiff("weather.py", "M", "diff --git a/weather.py b/weather.py\n--- a/weather.py\n"
              "+++ b/weather.py\n@@ -1,2 +1,3 @@\n def to_celsius(f):\n"
              "+    \"\"\"Convert degrees Fahrenheit to Celsius.\"\"\"\n     return (f - 32) / 1.8\n",
              1, 0), "docs", "document to_celsius"),
    (FileDiff("cart.py", "M", "diff --git a/cart.py b/cart.py\n--- a/cart.py\n+++ b/cart.py\n"
              "@@ -4,2 +4,4 @@ def total(items):\n+    if not items:\n+        return 0\n"
              "     return sum(i.price for i in items)\n", 2, 0), "fix",
     "return 0 for an empty cart"),
)


def shot_message(style: str, ctype: str, path: str, subject: str) -> str:
    """An example's message in ``style``."""
    area = path.rsplit(".", 1)[0]
    if style == "conventional":
        return f"{ctype}({area}): {subject}"
    if style == "scoped":
        return f"{area}: {subject}"
    return subject[0].upper() + subject[1:]


def build_prompt(changes: Changes, diff_text: str, *, style: str, chat: bool,
                 root: Path | None = None) -> tuple[list[Message] | None, str]:
    """(chat messages, completion-style text): one of them is used, per the model.
    The real change comes after worked examples in the same format: the repository's
    own small recent commits in its style (oldest first), else two made-up ones."""
    areas = scopes(changes.described, changes.recent) if style == "scoped" else []
    common = {"rules": _style_rules(style, areas),
              "examples": examples_block(changes.recent, style)}
    mine = [past for past in changes.past  # newest first
            if _style_of(past.subject) == style and len(past.subject) <= MAX_HEADER]
    shots = [({"files": "\n".join(stat_line(f) for f in past.files), "branch": "main",
               "diff": "".join(f.patch for f in past.files).rstrip()}, past.subject)
             for past in reversed(mine[:PAST_COMMITS])]
    if not shots:  # no small commit of this repository in its style: two made-up ones
        shots = [({"files": stat_line(f), "branch": "main", "diff": f.patch.rstrip()},
                  shot_message(style, ctype, f.path, subject)) for f, ctype, subject in _SHOTS]
    real = {"files": files_block(changes), "branch": changes.branch or "(detached HEAD)",
            "diff": diff_text.rstrip()}
    if chat:
        messages, _ = task_prompt("commit", root, chat=True, shots="", **common, **real)
        assert messages is not None
        turns = [messages[0]]
        for values, answer in shots:
            turns += [Message("user", render("commit.user.txt", root, **values).strip()),
                      Message("assistant", answer)]
        return [*turns, messages[1]], ""
    entries = "".join(render("commit.entry.completion.txt", root, **values).rstrip()
                      + f" {answer}\n\n" for values, answer in shots)
    return task_prompt("commit", root, chat=False, shots=entries, **common, **real)


def summary_prompt(f: FileDiff, patch: str, *, chat: bool,
                   root: Path | None = None) -> tuple[list[Message] | None, str]:
    """Map step for a large diff: one file's change in one line."""
    values = {"path": f.path, "stat": stat_line(f), "diff": patch.rstrip()}
    return task_prompt("commit.summary", root, chat=chat, **values)


SUMMARY_GRAMMAR = r'root ::= [A-Za-z] [^\n]{4,100}'


def summary_diff(summaries: list[tuple[FileDiff, str]]) -> str:
    """The reduce step's stand-in for the diff: one line per file."""
    return "\n".join(f"{stat_line(f)}: {text.strip()}" for f, text in summaries)
