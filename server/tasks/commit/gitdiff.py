"""The changes a commit message describes: the staged diff, read with gitpython.

Reading (``read_changes``) talks to git; everything after it is pure: which
files go into a prompt (lockfiles, binaries, minified and generated files are
only listed), and how a diff too large for the context is split per file.
"""

from __future__ import annotations

import codecs
import dataclasses
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from ....indexer.discovery import MINIFIED_LINE_CHARS, name_reason
from ....indexer.lines import split_lines
from ....indexer.secrets import Redactor
from ..runner import Refusal


class GitStateError(Refusal):
    """The repository is in a state where no message should be written; says why."""


@dataclass
class FileDiff:
    path: str
    status: str  # A M D R C T
    patch: str  # the file's unified diff (headers included); "" when left out
    added: int = 0
    removed: int = 0
    left_out: str = ""  # why the patch is not in the prompt ("lockfile", "binary", ...)
    old_path: str = ""  # renames


@dataclass
class PastCommit:
    """A recent commit of the repository, whole and small: a worked example for the
    prompt, in the repository's own words and style."""
    files: list[FileDiff]
    subject: str


@dataclass
class Changes:
    repo: Path
    staged: bool  # False: nothing was staged, these are the unstaged changes
    files: list[FileDiff]
    branch: str | None  # None: detached HEAD
    initial: bool = False  # no commit yet
    notices: list[str] = field(default_factory=list)
    # The repository's latest commit subjects (newest first, merges left out): its
    # style, and examples for the prompt.
    recent: list[str] = field(default_factory=list)
    # The newest small commits among them, whole (newest first): worked examples.
    past: list[PastCommit] = field(default_factory=list)
    stamp: str | None = None  # the staged changes' fingerprint (staged_stamp), when staged

    @property
    def described(self) -> list[FileDiff]:
        return [f for f in self.files if not f.left_out]

    @property
    def listed_only(self) -> list[FileDiff]:
        return [f for f in self.files if f.left_out]


# A test file by its path: tests/, test_x.py, x_test.go, x.test.ts, x.spec.js.
TEST_PATH = re.compile(r"(^|/)(tests?/|test_[^/]*$|[^/]*_test\.\w+$|[^/]*\.(test|spec)\.\w+$)")
DOCUMENT_SUFFIXES = (".md", ".rst", ".txt", ".adoc")  # prose, by the file's name (lowercase)
# Words a subject cannot end with: it was cut short ("... how to test a function. The").
DANGLING = frozenset(["the", "a", "an", "of", "to", "for", "with", "and", "or", "in", "on",
                      "by", "from", "that", "which", "is", "are", "as", "at", "into"])


def type_hint(files: list[FileDiff]) -> str | None:
    """The type a message must have when the files leave no doubt (all docs, all tests)."""
    paths = [f.path for f in files]
    if not paths:
        return None
    if all(p.lower().endswith(DOCUMENT_SUFFIXES) or p.startswith("docs/") for p in paths):
        return "docs"
    if all(TEST_PATH.search(p) for p in paths):
        return "test"
    return None


RECENT_SUBJECTS = 20
PAST_COMMITS = 2  # worked examples from the history
# Candidates for them: the prompt shows the newest PAST_COMMITS in the style it asks
# for, so a repository whose styles are mixed still finds some a few commits back.
PAST_CANDIDATES = 4
# The longest subject a worked example may have (the header's limit): longer ones
# would teach the model to write what the checks refuse.
MAX_SUBJECT = 72
PAST_COMMIT_CHARS = 900  # the most diff one example may have: the real change needs the room
MAX_PAST_FILES = 4


def _open_repo(path: Path):
    import git

    try:
        return git.Repo(path, search_parent_directories=True)
    except git.NoSuchPathError as exc:
        raise GitStateError(f"{path} does not exist") from exc
    except git.InvalidGitRepositoryError as exc:
        raise GitStateError(f"{path} is not inside a git repository") from exc


def toplevel(path: Path) -> Path | None:
    """The working tree of the repository holding ``path``; None outside any."""
    try:
        tree = _open_repo(path).working_tree_dir
    except GitStateError:
        return None
    return Path(tree).resolve() if tree else None


def head_text(path: Path) -> str | None:
    """The file at ``path`` as committed at HEAD; None when it is not in git (no
    repository, no commit yet, a new file)."""
    import git

    try:
        repo = _open_repo(path.parent)
        rel = path.resolve().relative_to(Path(repo.working_tree_dir or "").resolve())
        blob = repo.head.commit.tree / rel.as_posix()
        return blob.data_stream.read().decode("utf-8", "replace")
    except (GitStateError, ValueError, KeyError, OSError, git.GitError):
        return None


def read_changes(path: Path, *, hook: bool = False) -> Changes:
    """The staged changes of the repository containing ``path`` (or, when nothing is
    staged, the unstaged ones, with a notice). Raises GitStateError with a clear
    message for states where a message makes no sense. ``hook``: called by git's
    prepare-commit-msg, during the commit: the staged changes are the commit's
    (`git commit -a` stages into the index git names in GIT_INDEX_FILE), unstaged ones
    are never in it, and the index lock is git's own."""
    import git

    repo = _open_repo(path)
    if repo.bare:
        raise GitStateError(f"{repo.git_dir} is a bare repository: there is nothing to commit")
    git_dir = Path(repo.git_dir)
    if (git_dir / "MERGE_HEAD").exists():
        raise GitStateError("a merge is in progress: git has prepared its message "
                            "(.git/MERGE_MSG); finish or abort the merge first")
    if (git_dir / "rebase-merge").exists() or (git_dir / "rebase-apply").exists():
        raise GitStateError("a rebase is in progress: the commits being replayed keep their "
                            "messages; finish or abort the rebase first")
    if (git_dir / "CHERRY_PICK_HEAD").exists() or (git_dir / "REVERT_HEAD").exists():
        raise GitStateError("a cherry-pick or revert is in progress: git has prepared its "
                            "message; finish or abort it first")
    try:
        repo.head.commit  # noqa: B018 - raises without any commit
        initial = False
    except ValueError:
        initial = True
    branch = None if repo.head.is_detached else repo.head.ref.name
    notices: list[str] = []
    if branch is None:
        notices.append("HEAD is detached: the commit will not be on any branch")
    if initial:
        notices.append("this will be the repository's first commit")
    if not hook and (git_dir / "index.lock").exists():
        notices.append("git's index is locked (.git/index.lock): another git command is "
                       "running, or one stopped half way; `git commit` fails until it ends "
                       "or the file is removed")
    root = Path(repo.working_tree_dir or path)
    try:
        files = _diff(repo, cached=True)
        staged = True
        if not files and not hook:
            files = _diff(repo, cached=False)
            staged = False
            if files:
                notices.append("nothing is staged: describing the unstaged changes "
                               "(stage them with `git add` before committing)")
    except git.GitCommandError as exc:
        raise GitStateError(f"git failed: {exc.stderr.strip() or exc}") from exc
    conflicted = [f.path for f in files if f.status == "U"]
    if conflicted:
        raise GitStateError(
            f"{_printable(', '.join(conflicted[:5]))} still "
            f"{'has' if len(conflicted) == 1 else 'have'} merge conflicts: resolve them and "
            "`git add` the result first (git refuses the commit until then)")
    if not files:
        untracked = repo.untracked_files
        hint = f" ({len(untracked)} untracked files: `git add` them first)" if untracked else ""
        raise GitStateError("nothing to describe: the commit changes no file" if hook else
                            f"nothing to describe: no staged or unstaged changes{hint}")
    redact = Redactor.for_workspace(root)
    redacted = 0
    for f in files:  # a secret in a diff never reaches a prompt, local or remote
        f.patch, n = redact.redact(f.patch)
        redacted += n
    if redacted:
        notices.append(f"{redacted} secret value(s) in the diff were replaced by placeholders "
                       "before the model saw it")
    logged = [] if initial else history(repo)
    recent = [redact(s) for s in recent_subjects(logged)]
    past = past_commits(repo, logged)
    for commit in past:
        commit.subject = redact(commit.subject)
        for f in commit.files:
            f.patch = redact(f.patch)
    stamp = staged_stamp(repo) if staged and not hook else None
    return Changes(root, staged, files, branch, initial, notices, recent, past, stamp)


def staged_stamp(repo) -> str | None:
    """A fingerprint of what is staged (each path's mode and blob): git's index may
    change while a message is written (`git add`, `git reset`)."""
    import git

    try:
        raw = repo.git.diff("--cached", "--raw", "-z", "--no-color", "--no-ext-diff",
                            "--no-abbrev")
    except git.GitCommandError:
        return None
    return hashlib.sha256(raw.encode("utf-8", "surrogateescape")).hexdigest()


def staged_since(changes: Changes) -> str | None:
    """A notice when what is staged is no longer what ``changes`` described."""
    if changes.stamp is None:
        return None
    try:
        now = staged_stamp(_open_repo(changes.repo))
    except GitStateError:
        return None
    if now is None or now == changes.stamp:
        return None
    return ("the staged changes changed while the message was written: it describes them "
            "as they were; ask again for the ones staged now")


@dataclass
class _Logged:
    """One commit of `git log --numstat`: its shas (its own, then its parents'), its
    subject and its numstat rows (added, deleted, path)."""
    shas: list[str]
    subject: str
    stats: list[list[str]]


def history(repo, look_at: int = RECENT_SUBJECTS) -> list[_Logged]:
    """The last ``look_at`` non-merge commits of HEAD, newest first, from one `git log`
    (the recent subjects and the worked examples both come from it)."""
    import git

    try:
        log = repo.git.log("-n", str(look_at), "--no-merges", "--format=%x01%H %P%x02%s",
                           "--numstat")
    except git.GitCommandError:  # e.g. a shallow or damaged history: no examples
        return []
    out = []
    for block in log.split("\x01")[1:]:
        head, _, rest = block.partition("\x02")
        subject, *rows = split_lines(rest) or [""]
        out.append(_Logged(head.split(), subject.strip(),
                           [r.split("\t") for r in rows if r.strip()]))
    return out


def recent_subjects(logged: list[_Logged]) -> list[str]:
    """The subjects of ``logged`` (history()), newest first."""
    return [c.subject for c in logged if c.subject]


# Where a subject's clause ends: " (", ", ", "; ", " - ", ": ".
_CLAUSE_END = re.compile(r" \(|[,;:] | [-\u2013\u2014] ")


def headline(subject: str, limit: int = MAX_SUBJECT) -> str | None:
    """``subject`` when it fits ``limit`` characters, else its first clauses that do
    ("Round the total to cents, as the receipts expect it" -> "Round the total to
    cents"), else None. A repository that writes long subjects still has worked
    examples in its own words; one cut at a length, mid-clause, would teach the model
    to stop mid-sentence."""
    subject = subject.strip()
    if len(subject) <= limit:
        return subject
    for m in reversed(list(_CLAUSE_END.finditer(subject, 0, limit + 1))):
        head = subject[:m.start()].rstrip(" .")
        if len(head.split()) >= 4 and head.count("(") == head.count(")") \
                and head.count("`") % 2 == 0:
            return head
    return None


def past_commits(repo, logged: list[_Logged], n: int = PAST_CANDIDATES,
                 max_chars: int = PAST_COMMIT_CHARS) -> list[PastCommit]:
    """Up to ``n`` of the commits in ``logged`` (history()) of at most MAX_PAST_FILES
    text files, nothing left out, with a headline() of at most MAX_SUBJECT characters,
    newest first; a diff larger than ``max_chars`` is cut to that, its files sharing
    it (the example teaches the repository's words and style; its whole diff would
    crowd out the real one)."""
    import git

    out: list[PastCommit] = []
    for c in logged:
        stats = c.stats
        subject = headline(c.subject)
        if len(c.shas) != 2 or not 1 <= len(stats) <= MAX_PAST_FILES \
                or any(a == "-" for a, *_ in stats) or subject is None:
            continue  # a root commit, a binary or sprawling change, a subject too long
        try:
            files = _diff(repo, between=(c.shas[1], c.shas[0]))
        except git.GitCommandError:
            continue
        if not files or any(f.left_out for f in files):
            continue
        share = max_chars // len(files)
        files = [dataclasses.replace(f, patch=trim_patch(f.patch, share)) for f in files]
        out.append(PastCommit(files, subject))
        if len(out) == n:
            break
    return out


def _diff(repo, *, cached: bool = False, between: tuple[str, str] | None = None
          ) -> list[FileDiff]:
    args = ["--cached"] if cached else [*between] if between else []
    # -M: renames as renames; --no-color/--no-ext-diff: the user's config must not
    # change what we parse.
    # The prefixes: diff.noprefix and diff.mnemonicPrefix change them, and the patch
    # headers are parsed (_header_path); core.quotePath=false: the model reads a
    # non-ASCII name as it is, not in quotes with octal escapes.
    common = [*args, "-M", "--no-color", "--no-ext-diff", "--src-prefix=a/", "--dst-prefix=b/"]
    numstat = repo.git.diff(*common, "--numstat", "-z")
    status = repo.git.diff(*common, "--name-status", "-z")
    patch = repo.git(c="core.quotePath=false").diff(*common, "--unified=3")
    files = parse_diff(numstat, status, patch)
    for f in files:  # a name that is not UTF-8 (git gives its bytes) must still encode
        f.path, f.old_path, f.patch = (_printable(f.path), _printable(f.old_path),
                                       _printable(f.patch))
    for f in files:
        if f.patch and f.path.lower().endswith(".md"):
            text = _new_text(repo, f.path, cached, between)
            if text is not None:
                f.patch = section_headers(f.patch, text)
    return files


MAX_SECTIONS_READ = 2_000_000  # characters of a document read for its headings


def _new_text(repo, path: str, cached: bool, between: tuple[str, str] | None) -> str | None:
    """A file as the diff leaves it: staged, committed (``between``) or in the tree."""
    import git

    try:
        if cached or between:
            text = repo.git.show(f"{between[1] if between else ''}:{path}")
        else:
            text = (Path(repo.working_tree_dir) / path).read_text(encoding="utf-8")
    except (git.GitCommandError, OSError, UnicodeDecodeError, ValueError):
        return None
    return text if len(text) <= MAX_SECTIONS_READ else None


_HUNK_START = re.compile(r"^(@@ -\d+(?:,\d+)? \+(\d+)(?:,\d+)? @@).*$", re.M)
# A Markdown heading (its level, its text), as git's own markdown diff driver finds one.
MD_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(\S.*?)[\s#]*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")


def section_headers(patch: str, text: str) -> str:
    """A Markdown file's patch with each hunk header naming the heading above the hunk
    in ``text`` (the file as the diff leaves it), as git's markdown diff driver would
    (`*.md diff=markdown` in .gitattributes, which few repositories set; git's default
    names the last line that starts with a letter). The prompt, and a subject, can then
    say which section changed. Headings inside code fences are not headings."""
    headings: list[tuple[int, str]] = []
    fenced = False
    for n, line in enumerate(split_lines(text), 1):
        if _FENCE.match(line):
            fenced = not fenced
        elif not fenced and MD_HEADING.match(line):
            headings.append((n, line.strip()))

    def named(m: re.Match[str]) -> str:
        start = int(m.group(2))
        above = [heading for n, heading in headings if n < start]
        return f"{m.group(1)} {above[-1]}" if above else m.group(1)

    return _HUNK_START.sub(named, patch)


def parse_diff(numstat_z: str, name_status_z: str, patch: str) -> list[FileDiff]:
    """Join `git diff --numstat -z`, `--name-status -z` and the patch, per file."""
    files: dict[str, FileDiff] = {}
    fields = name_status_z.split("\0")
    i = 0
    while i < len(fields) and fields[i]:
        code = fields[i]
        if code[0] in "RC":
            old, new = fields[i + 1], fields[i + 2]
            files[new] = FileDiff(new, code[0], "", old_path=old)
            i += 3
        else:
            files[fields[i + 1]] = FileDiff(fields[i + 1], code[0], "")
            i += 2
    parts = numstat_z.split("\0")
    i = 0
    while i < len(parts) and parts[i]:
        added, removed, name = parts[i].split("\t", 2)
        if name == "":  # a rename: the two paths follow
            name = parts[i + 2]
            i += 3
        else:
            i += 1
        f = files.get(name)
        if f is None:
            continue
        if added == "-":
            f.left_out = "binary"
        else:
            f.added, f.removed = int(added), int(removed)
    for chunk in _split_patch(patch):
        f = files.get(chunk[0])
        if f is not None:  # a type change (file -> link) is two diffs of one path
            f.patch += chunk[1]
    for f in files.values():
        # A renamed secret file (`git mv .env service.cfg`) is one still: its old lines
        # are in the patch as context and removals.
        f.left_out = f.left_out or leave_out_reason(f.path, f.patch) or (
            leave_out_reason(f.old_path, "") if f.old_path else "")
        if f.left_out:
            f.patch = ""
    return list(files.values())


_DIFF_HEADER = re.compile(r"^diff --git (.*)$", re.M)
_SAME_PATH = re.compile(r"a/(.*) b/\1")
_QUOTED = r'"(?:[^"\\]|\\.)*"'
_TWO_PATHS = re.compile(rf"(?:{_QUOTED}|a/.*?) (?:(?P<quoted>{_QUOTED})|b/(?P<plain>.*))")


def _printable(text: str) -> str:
    """``text`` with the bytes of a name that is not UTF-8 (surrogates, as git's output
    was decoded) as U+FFFD: a prompt holding them could not be encoded."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _header_path(rest: str) -> str:
    """The new path in a `diff --git` header (after "diff --git "): `a/x b/x`, a name
    with spaces (`a/x y b/x y`), or C-quoted (`"a/say\\"hi\\".py" "b/..."`: a quote, a
    backslash or a control character in it)."""
    same = _SAME_PATH.fullmatch(rest)
    if same:
        return same.group(1)
    two = _TWO_PATHS.fullmatch(rest)
    if two is None:
        return rest
    if two.group("quoted") is not None:
        body = two.group("quoted")[1:-1].removeprefix("b/")
        raw = codecs.escape_decode(body.encode("utf-8", "surrogateescape"))[0]
        return raw.decode("utf-8", "surrogateescape")  # type: ignore[union-attr]
    return two.group("plain")


def _split_patch(patch: str) -> list[tuple[str, str]]:
    heads = list(_DIFF_HEADER.finditer(patch))
    out = []
    for n, m in enumerate(heads):
        end = heads[n + 1].start() if n + 1 < len(heads) else len(patch)
        out.append((_header_path(m.group(1)), patch[m.start(): end].rstrip("\n") + "\n"))
    return out


def leave_out_reason(path: str, patch: str) -> str:
    """Why a file's diff stays out of the prompt ('' to keep it)."""
    by_name = name_reason(path)
    if by_name:
        return "secret file: changed, not shown" if by_name == "secret" else by_name
    if "Binary files" in patch and "differ" in patch and "@@" not in patch:
        return "binary"
    added = [line for line in split_lines(patch) if line.startswith("+")
             and not line.startswith("+++")]
    if added and sum(map(len, added)) / len(added) > MINIFIED_LINE_CHARS:
        return "minified"
    head = "\n".join(added[:40])
    if any(marker in head for marker in ("@generated", "DO NOT EDIT", "Code generated by")):
        return "generated"
    return ""


def stat_line(f: FileDiff) -> str:
    """`M src/app.py (+3 -1)`, or with the reason it was left out."""
    name = f"{f.old_path} -> {f.path}" if f.old_path else f.path
    if f.left_out:
        return f"{f.status} {name} ({f.left_out}, not shown)"
    return f"{f.status} {name} (+{f.added} -{f.removed})"


def trim_patch(patch: str, max_chars: int) -> str:
    """A file's patch cut at a hunk boundary to at most ``max_chars`` (marked when cut);
    when not even the first hunk fits, at a line boundary within it."""
    if len(patch) <= max_chars:
        return patch
    hunks = re.split(r"(?m)^(?=@@ )", patch)
    out = hunks[0]
    for n, hunk in enumerate(hunks[1:]):
        if len(out) + len(hunk) > max_chars:
            if n == 0:  # not even the first hunk fits (a new file): its first lines
                head = hunk[:max(0, max_chars - len(out))]
                out += head[:head.rfind("\n") + 1]
            break
        out += hunk
    if len(out) > max_chars:
        out = out[:max_chars]
    return out.rstrip("\n") + f"\n[... {len(patch) - len(out)} more characters of this diff]\n"
