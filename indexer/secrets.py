"""Secrets: which files are secrets by name, and one redaction pass for text.

Used wherever text leaves a file for somewhere else — the index (chunk text
and embeddings), every prompt (local or remote), log records and the answer
cache — so a credential in a repository never reaches a model, a log line or
a store. Pure: no I/O except reading a workspace's `.env*` files for the
values they define.

What is redacted, each replaced by `<redacted:KIND>`:
- values defined in the workspace's `.env*` files (six characters or more);
- private key blocks (PEM, OpenSSH, PGP);
- well-known token shapes: AWS access keys, GitHub, GitLab, Slack, Stripe,
  OpenAI/Anthropic-style `sk-…`, Google API keys, npm and PyPI tokens, JWTs;
- passwords in URLs (`scheme://user:password@host`);
- high-entropy values assigned to secret-looking names (`api_key = "…"`,
  `"password": "…"`, `TOKEN=…`).
"""

from __future__ import annotations

import fnmatch
import hashlib
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .lines import split_lines

# Files that are secrets by their name: never indexed, never copied into the test
# sandbox, and "changed, not shown" in a commit prompt.
SECRET_FILE_GLOBS = (
    ".env", ".env.*", "*.env", "*.pem", "*.key", "*.p12", "*.pfx", "*.jks", "*.keystore",
    "id_rsa*", "id_dsa*", "id_ecdsa*", "id_ed25519*", "credentials", "credentials.*",
    "*credentials*.json", ".npmrc", ".pypirc", ".netrc", ".htpasswd", "*.kdbx",
    "secrets.*", "*.secret", "*.secrets",
)
# Templates that hold no real values.
NOT_SECRET_NAMES = (".env.example", ".env.sample", ".env.template", ".env.dist")


# One pattern for all the globs (fnmatch's own translation): discovery asks for every file.
_SECRET_FILE = re.compile("|".join(fnmatch.translate(g) for g in SECRET_FILE_GLOBS))


def is_secret_file(path: str | Path) -> bool:
    name = (path.name if isinstance(path, Path) else path.rstrip("/").rsplit("/", 1)[-1]).lower()
    if name in NOT_SECRET_NAMES:
        return False
    return _SECRET_FILE.match(name) is not None


# Each shape with the literals one of which any match contains: a text without them
# skips the pattern (a substring test is ~100x cheaper than a regex scan, and
# redaction runs over every indexed chunk).
_PRIVATE_KEY = re.compile(
    r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----.*?"
    r"(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|\Z)", re.DOTALL)
_TOKEN_SHAPES: list[tuple[str, re.Pattern[str], tuple[str, ...]]] = [
    ("private-key", _PRIVATE_KEY, ("PRIVATE KEY",)),
    ("aws-key", re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA)[A-Z0-9]{16}\b"),
     ("AKIA", "ASIA", "AGPA", "AIDA", "AROA")),
    ("github-token", re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{40,})"),
     ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_")),
    ("gitlab-token", re.compile(r"\bglpat-[A-Za-z0-9_\-]{20,}"), ("glpat-",)),
    ("slack-token", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"), ("xox",)),
    ("stripe-key", re.compile(r"\b[sr]k_(?:live|test)_[A-Za-z0-9]{16,}"), ("k_live_", "k_test_")),
    ("api-key", re.compile(r"\bsk-(?:ant-|proj-)?[A-Za-z0-9_\-]{20,}"), ("sk-",)),
    ("google-key", re.compile(r"\bAIza[0-9A-Za-z_\-]{35}\b"), ("AIza",)),
    ("npm-token", re.compile(r"\bnpm_[A-Za-z0-9]{36}\b"), ("npm_",)),
    ("pypi-token", re.compile(r"\bpypi-[A-Za-z0-9_\-]{50,}"), ("pypi-",)),
    ("jwt", re.compile(r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"),
     ("eyJ",)),
]
# scheme://user:password@host: the password part.
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s:/@'\"]+:)"
                           r"(?P<secret>[^\s@/'\"]{3,})(?=@)")
# name = "value", name: value, "name": "value", NAME=value. The name starts where a
# run of name characters starts (the lookbehind): a match found later in the run
# would be found from its start too, and trying every position inside every word
# made this pattern cost most of the index's phase 1.
_ASSIGNED = re.compile(
    r"(?<![\w.\-])"
    r"(?P<head>(?i:[\w.\-]*(?:secret|token|passw(?:or)?d|pwd|api[_\-]?key|apikey|access[_\-]?key|"
    r"private[_\-]?key|auth[_\-]?key|client[_\-]?secret|credentials?)[\w.\-]*)[\"']?\s*[:=]\s*"
    r"(?:[\"'](?P<quoted>[^\"'\n]{8,})[\"']|(?P<bare>[^\s\"',;)}\]]{8,})))")
# Lower-case literals one of which every _ASSIGNED match holds (for ASCII text, where
# str.lower() agrees with the pattern's case-insensitive matching).
_ASSIGNED_WORDS = ("secret", "token", "passw", "pwd", "api", "access", "private", "auth",
                   "credential")
ENTROPY_BITS = 3.0  # per character; English words and identifiers stay below


def entropy(text: str) -> float:
    counts = Counter(text)
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in counts.values()) if n else 0.0


def _looks_random(value: str, quoted: bool) -> bool:
    if value.startswith(("<redacted", "${", "{{", "os.environ", "process.env", "getenv")):
        return False
    has_digit = any(c.isdigit() for c in value)
    if not quoted:  # unquoted: code (a name, a call, an attribute) unless it looks like a key
        if any(c in value for c in "([.") or not has_digit:
            return False
        return entropy(value) >= ENTROPY_BITS + 0.5
    if re.fullmatch(r"[a-z]+(?:[_\-. ][a-z]+)*", value):  # words: a name or a message
        return False
    return entropy(value) >= ENTROPY_BITS and (has_digit or len(value) >= 16)


@dataclass
class Redactor:
    """Redacts known values (from `.env*` files) and secret shapes from text."""

    values: set[str] = field(default_factory=set)

    @classmethod
    def for_workspace(cls, root: Path | None) -> Redactor:
        return cls(env_values(root) if root is not None else set())

    def redact(self, text: str) -> tuple[str, int]:
        """The text with every secret replaced, and how many were."""
        return self._redact(text, _TOKEN_SHAPES, True, _ASSIGNED_WORDS)

    def for_text(self, whole: str) -> Callable[[str], str]:
        """A redact function for pieces of ``whole`` (a file's chunks: its lines, joined
        by newlines, with headers made of its names). It gives what ``self`` gives,
        but tries only the patterns whose literals occur in ``whole``: most files hold
        none, and phase 1 redacts every chunk."""
        shapes = [s for s in _TOKEN_SHAPES if any(lit in whole for lit in s[2])]
        url = "://" in whole
        if whole.isascii():  # its pieces are ASCII too (the headers are)
            lower = whole.lower()
            words = tuple(w for w in _ASSIGNED_WORDS if w in lower)
        else:
            words = _ASSIGNED_WORDS
        if not (shapes or url or words or self.values):
            return _unchanged
        return lambda text: self._redact(text, shapes, url, words)[0]

    def _redact(self, text: str, shapes: Sequence[tuple[str, re.Pattern[str], tuple[str, ...]]],
                url_possible: bool, words: tuple[str, ...]) -> tuple[str, int]:
        count = 0

        def sub(kind: str):
            def replace(_match: re.Match[str]) -> str:
                nonlocal count
                count += 1
                return f"<redacted:{kind}>"
            return replace

        for value in sorted(self.values, key=len, reverse=True):
            if value in text:
                count += text.count(value)
                text = text.replace(value, "<redacted:env>")
        for kind, pattern, literals in shapes:
            if any(lit in text for lit in literals):
                text = pattern.sub(sub(kind), text)

        def url(match: re.Match[str]) -> str:
            nonlocal count
            count += 1
            return match["head"] + "<redacted:password>"

        if url_possible and "://" in text:
            text = _URL_PASSWORD.sub(url, text)

        def assigned(match: re.Match[str]) -> str:
            nonlocal count
            value = match["quoted"] or match["bare"] or ""
            if not _looks_random(value, quoted=match["quoted"] is not None):
                return match[0]
            count += 1
            return match[0].replace(value, "<redacted:secret>")

        # A keyword inside a `<redacted:...>` put there above (api-key, token) cannot
        # start a match: `:` and `<` are not name characters and `>` follows it.
        if not words:
            return text, count
        if not text.isascii():
            text = _ASSIGNED.sub(assigned, text)
        else:
            lower = text.lower()
            if any(w in lower for w in words):
                text = _sub_assigned(text, lower, words, assigned)
        return text, count

    def __call__(self, text: str) -> str:
        return self.redact(text)[0]


def _unchanged(text: str) -> str:
    return text


_NAME_CHARS = frozenset("_.-")


def _sub_assigned(text: str, lower: str, words: tuple[str, ...],
                  replace: Callable[[re.Match[str]], str]) -> str:
    """``_ASSIGNED.sub(replace, text)`` for ASCII ``text`` (``lower`` is its lower case),
    trying the pattern only where a name holding one of ``words`` starts rather than
    at every name: the same matches, found left to right, for a fraction of the time.

    A match starts where a run of name characters starts (the lookbehind) and that run
    holds a keyword, so the runs around the keywords' occurrences, in order, are the
    only places re.sub could find one."""
    hits: set[int] = set()
    for word in words:
        at = lower.find(word)
        while at >= 0:
            hits.add(at)
            at = lower.find(word, at + 1)
    out: list[str] = []
    pos, tried = 0, -1
    for hit in sorted(hits):
        if hit < pos:
            continue
        start = hit
        while start > pos and (text[start - 1].isalnum() or text[start - 1] in _NAME_CHARS):
            start -= 1
        if start == tried:
            continue
        tried = start
        if start == pos and pos > 0 and (text[pos - 1].isalnum() or text[pos - 1] in _NAME_CHARS):
            continue  # the run began inside the previous match: no match starts in it
        match = _ASSIGNED.match(text, start)
        if match is None:
            continue
        out.append(text[pos:match.start()])
        out.append(replace(match))
        pos = match.end()
    if not out:
        return text
    out.append(text[pos:])
    return "".join(out)


def is_env_file(name: str) -> bool:
    """A `.env*` file whose values are secrets (not `.env.example` and its kind)."""
    return name.startswith(".env") and name not in NOT_SECRET_NAMES


def blank_key_blocks(text: str) -> str:
    """``text`` with each private key block replaced and its line breaks kept: a file
    is redacted whole before it is cut into chunks (a key cut by a chunk's edge would
    leave its lines after the BEGIN line in the next chunk), and its lines stay where
    they were."""
    if "PRIVATE KEY" not in text:
        return text
    return _PRIVATE_KEY.sub(lambda m: "<redacted:private-key>" + "\n" * m.group(0).count("\n"),
                            text)


def env_stamp(values: Iterable[str]) -> str:
    """A digest of a workspace's `.env*` values (not the values): stored with the index,
    whose chunks were redacted with them; when they change, every file is read again."""
    return hashlib.sha256("\0".join(sorted(values)).encode("utf-8", "surrogatepass")
                          ).hexdigest()


def env_values(root: Path, files: Iterable[Path] | None = None) -> set[str]:
    """The values defined in a workspace's `.env*` files (top level), six characters
    or more: those strings are secrets wherever else they appear."""
    out: set[str] = set()
    try:
        candidates = list(files) if files is not None else [
            p for p in root.iterdir() if p.is_file() and is_env_file(p.name)]
    except OSError:
        return out
    for path in candidates:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")[:1_000_000]
        except OSError:
            continue
        for line in split_lines(text):
            line = line.strip()
            if not line or line.startswith("#") or "=" not in line:
                continue
            value = line.split("=", 1)[1].strip()
            if value.startswith("export "):
                value = value[7:]
            value = value.split(" #", 1)[0].strip().strip("'\"")
            if len(value) >= 6 and value.lower() not in ("true", "false", "localhost"):
                out.add(value)
    return out
