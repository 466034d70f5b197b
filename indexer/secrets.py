"""Secrets: which files are secrets by name, and one redaction pass for text.

Used wherever text leaves a file for somewhere else — the index (chunk text
and embeddings), every prompt (local or remote), log records and the answer
cache — so a credential in a repository never reaches a model, a log line or
a store. Pure: no I/O except reading a workspace's `.env*` files for the
values they define.

What is redacted, each replaced by `<redacted:KIND>`:
- values defined in the workspace's `.env*` files (six characters or more);
- private key blocks (PEM, OpenSSH, PGP);
- well-known token shapes: AWS access keys, GitHub, GitLab, Slack (tokens and
  webhook URLs), Stripe, OpenAI/Anthropic-style `sk-…`, Google API keys, npm, PyPI,
  Hugging Face, SendGrid and Twilio tokens, Azure `AccountKey=…`, JWTs;
- passwords in URLs (`scheme://user:password@host`) and tokens used as a URL's user;
- `Bearer …` / `Basic …` credentials (Authorization headers);
- high-entropy values assigned to secret-looking names (`api_key = "…"`,
  `"password": "…"`, `TOKEN=…`, `DB_PASS=…`).

Not caught: a secret cut into pieces (`"ghp_" + "…"`, implicit string concatenation
across lines), or named in prose (`# my token is …`).
"""

from __future__ import annotations

import fnmatch
import hashlib
import math
import os
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
    "secrets.*", "*.secret", "*.secrets", ".pgpass", ".git-credentials", ".dockercfg",
    "kubeconfig", "kubeconfig.*", "*.kubeconfig", "*.tfvars", "*.tfvars.json", "*.tfstate",
    "*.tfstate.*", ".vault-token", ".s3cfg", ".boto", "*.ppk", ".my.cnf",
    "*service-account*.json", "*service_account*.json",
)
# Folders whose every file is a credential, a key or a token cache (`.aws/config`,
# `.kube/config`, `.aws/sso/cache/*.json` say nothing by their names alone), and a file
# secret in its folder only: a project's `.docker/` holds Dockerfiles as often.
SECRET_DIRS = frozenset({".ssh", ".aws", ".kube", ".gnupg"})
SECRET_IN_FOLDER = frozenset({(".docker", "config.json")})
# Templates that hold no real values.
NOT_SECRET_NAMES = (".env.example", ".env.sample", ".env.template", ".env.dist")


# One pattern for all the globs (fnmatch's own translation): discovery asks for every file.
_SECRET_FILE = re.compile("|".join(fnmatch.translate(g) for g in SECRET_FILE_GLOBS))


def is_secret_file(path: str | Path) -> bool:
    """A secret by its name, or by a folder it is in when ``path`` names its folders
    (a relative posix path or a Path; a bare name is judged by the name alone)."""
    parts = [p.lower() for p in (path.parts if isinstance(path, Path)
                                 else path.rstrip("/").split("/"))]
    if any(folder in SECRET_DIRS for folder in parts[:-1]) or tuple(parts[-2:]) in SECRET_IN_FOLDER:
        return True
    name = parts[-1] if parts else ""
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
    # These start with their literal and look behind it for the word's start (not `\b`
    # first): re then finds the literal by a fast search instead of trying every
    # position, and "SK", "hf_", "SG." are common enough in code to be found often.
    ("slack-webhook", re.compile(r"hooks\.slack\.com/(?:services|workflows|triggers)/"
                                 r"[A-Za-z0-9_/\-]+"), ("hooks.slack.com",)),
    # A digit in it: `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` is a name.
    ("huggingface-token", re.compile(r"hf_(?<!\whf_)(?=[A-Za-z]*[0-9])[A-Za-z0-9]{30,}\b"),
     ("hf_",)),
    ("sendgrid-key", re.compile(r"SG\.(?<!\wSG\.)[A-Za-z0-9_\-]{16,}\.[A-Za-z0-9_\-]{16,}"),
     ("SG.",)),
    ("twilio-key", re.compile(r"SK(?<!\wSK)[0-9a-f]{32}\b"), ("SK",)),
    # Azure storage connection strings (`...;AccountKey=<base64>;...`): the key alone.
    ("azure-key", re.compile(r"(?<=AccountKey=)[A-Za-z0-9+/]{20,}={0,2}"), ("AccountKey=",)),
]
# scheme://user:password@host: the password, which may hold a literal `@` (the last `@`
# before the host's `/` ends it), and a user that is a token (`https://<token>@github.com`,
# `https://<token>:x-oauth-basic@…`). A user never holds `<`: a token replaced above
# (`https://<redacted:github-token>@…`) is not read as `user:password`.
_URL_USERINFO = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.\-]*://(?P<user>[^\s:/@'\"<]*)"
                           r"(?::(?P<password>[^\s/'\"]{3,}))?(?=@)")
# `Authorization: Bearer <token>` / `Basic <base64>`, in code, headers and curl lines.
_AUTH_SCHEME = re.compile(r"(?:[Bb]earer(?<!\w[Bb]earer)|[Bb]asic(?<!\w[Bb]asic))[ \t]+"
                          r"(?P<secret>[A-Za-z0-9_\-.~+/]{8,}=*)")
_AUTH_LITERALS = ("earer", "asic")
# name = "value", name: value, "name": "value", NAME=value. The name starts where a
# run of name characters starts (the lookbehind): a match found later in the run
# would be found from its start too, and trying every position inside every word
# made this pattern cost most of the index's phase 1.
_ASSIGNED = re.compile(
    r"(?<![\w.\-])"
    r"(?P<head>(?P<name>(?i:[\w.\-]*(?:secret|token|"
    r"pass(?:w(?:or)?d|phrase|(?<![a-z]pass)(?![a-z]))|pwd|api[_\-]?key|apikey|access[_\-]?key|"
    r"private[_\-]?key|auth[_\-]?key|client[_\-]?secret|credentials?)[\w.\-]*))[\"']?\s*[:=]\s*"
    r"(?:[\"'](?P<quoted>[^\"'\n]{8,})[\"']|(?P<bare>[^\s\"',;)}\]]{8,})))")
# Lower-case literals one of which every _ASSIGNED match holds (for ASCII text, where
# str.lower() agrees with the pattern's case-insensitive matching).
_ASSIGNED_WORDS = ("secret", "token", "pass", "pwd", "api", "access", "private", "auth",
                   "credential")
# A name that is a password's (`DB_PASS`, `smtp_password`, `PASSPHRASE`), whose quoted
# value is one unless it is words or a template: people pick passwords of low entropy.
# Not `pwd`: as often the working directory (`pwd = "/srv/app"`).
_PASSWORD_NAME = re.compile(r"(?i:pass(?:w(?:or)?d|phrase)?)$")
ENTROPY_BITS = 3.0  # per character; English words and identifiers stay below


def entropy(text: str) -> float:
    counts = Counter(text)
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in counts.values()) if n else 0.0


_WORDS = re.compile(r"[a-z]+(?:[_\-. ][a-z]+)*")


def _looks_random(value: str, quoted: bool) -> bool:
    if value.startswith(("<redacted", "${", "{{", "os.environ", "process.env", "getenv")):
        return False
    has_digit = any(c.isdigit() for c in value)
    if not quoted:  # unquoted: code (a name, a call, an attribute) unless it looks like a key
        if any(c in value for c in "([.") or not has_digit:
            return False
        return entropy(value) >= ENTROPY_BITS + 0.5
    if _WORDS.fullmatch(value):  # words: a name or a message
        return False
    return entropy(value) >= ENTROPY_BITS and (has_digit or len(value) >= 16)


def _looks_like_password(value: str) -> bool:
    """A quoted value given to a password's name: not words, a sentence or a template."""
    return not (_WORDS.fullmatch(value.lower()) or any(c.isspace() for c in value)
                or any(t in value for t in ("{", "%(", "<redacted")))


@dataclass
class Redactor:
    """Redacts known values (from `.env*` files) and secret shapes from text."""

    values: set[str] = field(default_factory=set)

    @classmethod
    def for_workspace(cls, root: Path | None) -> Redactor:
        return cls(env_values(root) if root is not None else set())

    def redact(self, text: str) -> tuple[str, int]:
        """The text with every secret replaced, and how many were."""
        return self._redact(text, _TOKEN_SHAPES, True, True, _ASSIGNED_WORDS)

    def for_text(self, whole: str) -> Callable[[str], str]:
        """A redact function for pieces of ``whole`` (a file's chunks: its lines, joined
        by newlines, with headers made of its names). It gives what ``self`` gives,
        but tries only the patterns whose literals occur in ``whole``: most files hold
        none, and phase 1 redacts every chunk."""
        shapes = [s for s in _TOKEN_SHAPES if any(lit in whole for lit in s[2])]
        url = "://" in whole
        auth = any(lit in whole for lit in _AUTH_LITERALS)
        if whole.isascii():  # its pieces are ASCII too (the headers are)
            lower = whole.lower()
            words = tuple(w for w in _ASSIGNED_WORDS if w in lower)
        else:
            words = _ASSIGNED_WORDS
        if not (shapes or url or auth or words or self.values):
            return _unchanged
        return lambda text: self._redact(text, shapes, url, auth, words)[0]

    def _redact(self, text: str, shapes: Sequence[tuple[str, re.Pattern[str], tuple[str, ...]]],
                url_possible: bool, auth_possible: bool,
                words: tuple[str, ...]) -> tuple[str, int]:
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
            user, password = match["user"], match["password"]
            if _token_user(user):
                count += 1
                user = "<redacted:token>"
            if password is not None and not password.startswith("<redacted"):  # a token's
                count += 1
                password = "<redacted:password>"
            return match.string[match.start():match.start("user")] + user + (
                ":" + password if password is not None else "")

        if url_possible and "://" in text:
            text = _URL_USERINFO.sub(url, text)

        def auth(match: re.Match[str]) -> str:
            nonlocal count
            if not _looks_random(match["secret"], quoted=True):
                return match[0]
            count += 1
            return match[0][:match.start("secret") - match.start()] + "<redacted:token>"

        if auth_possible and any(lit in text for lit in _AUTH_LITERALS):
            text = _AUTH_SCHEME.sub(auth, text)

        def assigned(match: re.Match[str]) -> str:
            nonlocal count
            value = match["quoted"] or match["bare"] or ""
            quoted = match["quoted"] is not None
            if not (_looks_random(value, quoted=quoted) or quoted and _PASSWORD_NAME.search(
                    match["name"]) and _looks_like_password(value)):
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


def _token_user(user: str) -> bool:
    """A URL's user that is a token, not a name (an e-mail address has `.` or `%40`)."""
    return len(user) >= 20 and "." not in user and "%" not in user and _looks_random(
        user, quoted=True)


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


# Where env_values looks for `.env*` files: folders this deep below the root
# (`services/api/config/.env`), this many folders and files at most. It runs on each
# index update, so a huge tree costs a bounded walk, the shallow folders first.
ENV_DEPTH = 3
ENV_FOLDERS_MAX = 1000
ENV_FILES_MAX = 50


def env_files(root: Path) -> list[Path]:
    """The workspace's `.env*` files, at the top level and in folders below it but not
    in vendored ones (a package's own `.env` in node_modules is not the user's). Ignored
    folders count: `.env` files are ignored as a rule."""
    from .discovery import VENDORED_DIRS  # here: discovery imports this module

    found: list[Path] = []
    folders, seen = [(root, 0)], 0
    while folders and seen < ENV_FOLDERS_MAX and len(found) < ENV_FILES_MAX:
        folder, depth = folders.pop(0)
        seen += 1
        try:
            with os.scandir(folder) as entries:
                listed = sorted(entries, key=lambda e: e.name)
        except OSError:
            continue
        for entry in listed:
            try:
                if is_env_file(entry.name) and entry.is_file():  # a link to a shared one too
                    found.append(Path(entry.path))
                elif depth < ENV_DEPTH and entry.name not in VENDORED_DIRS and entry.is_dir(
                        follow_symlinks=False):
                    folders.append((Path(entry.path), depth + 1))
            except OSError:
                continue
    return found[:ENV_FILES_MAX]


def env_values(root: Path, files: Iterable[Path] | None = None) -> set[str]:
    """The values defined in a workspace's `.env*` files (env_files), six characters
    or more: those strings are secrets wherever else they appear."""
    out: set[str] = set()
    candidates = list(files) if files is not None else env_files(root)
    for path in candidates:
        try:
            with path.open(encoding="utf-8", errors="replace") as fh:
                text = fh.read(1_000_000)
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
            if len(value) >= 6 and value.lower() not in ("true", "false", "localhost") and not (
                    _WORDS.fullmatch(value) and not _SECRET_KEY.search(line.split("=", 1)[0])):
                out.add(value)
    return out


# A `.env` name that holds a secret even when its value is a plain word (a password of
# the user's choosing). Other names' plain-word values (`NODE_ENV=production`,
# `LOG_LEVEL=warning`) are settings: replaced wherever they appear, "production" left
# no prompt or index chunk whole.
_SECRET_KEY = re.compile(r"(?i)secret|token|pass|pwd|key|auth|credential|private|salt|cookie")
