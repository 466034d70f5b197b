"""`hearth hook install|uninstall`: a prepare-commit-msg hook that fills in a message.

The hook only acts when git gives it no message source (a plain `git commit`):
`-m`/`-F`, templates, merges, squashes and amends are left alone. It never
blocks a commit: if Hearth fails, or has no message within `commit.hookTimeoutS`
(`hearth commit-msg --hook` gives up with status 0), the editor opens as it would
without it.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

from .gitdiff import GitStateError

MARKER = "# hearth: prepare-commit-msg hook"


def hooks_dir(repo: Path) -> Path:
    """The hooks folder git uses (honours core.hooksPath and worktrees)."""
    try:
        out = subprocess.run(["git", "-C", str(repo), "rev-parse", "--git-path", "hooks"],
                             capture_output=True, text=True, check=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        raise GitStateError(f"{repo} is not inside a git repository") from exc
    path = Path(out.stdout.strip())
    return path if path.is_absolute() else (repo / path).resolve()


def hook_script(python: str = sys.executable) -> str:
    return f"""#!/bin/sh
{MARKER} (remove with `hearth hook uninstall`)
# $2 is the message source: empty for a plain `git commit`, else message,
# template, merge, squash or commit (amend); only the plain case is filled.
[ -n "$2" ] && exit 0
{shlex.quote(python)} -m hearth_lsp.server commit-msg --hook "$1" || true
"""


def install(repo: Path) -> Path:
    path = hooks_dir(repo) / "prepare-commit-msg"
    if path.exists() and MARKER not in path.read_text(errors="replace"):
        raise GitStateError(f"{path} exists and is not Hearth's: remove or merge it by hand")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(hook_script())
    path.chmod(0o755)
    return path


def uninstall(repo: Path) -> Path | None:
    path = hooks_dir(repo) / "prepare-commit-msg"
    if not path.exists():
        return None
    if MARKER not in path.read_text(errors="replace"):
        raise GitStateError(f"{path} is not Hearth's hook: left as it is")
    path.unlink()
    return path


def comment_char(repo: Path) -> str:
    """What begins git's comment lines in the message file (core.commentChar; "#" when
    unset; "auto" is resolved by has_user_text from the file itself)."""
    try:
        done = subprocess.run(["git", "-C", str(repo), "config", "core.commentChar"],
                              capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "#"
    return done.stdout.strip() or "#"


def has_user_text(existing: str, comment: str = "#") -> bool:
    """Whether git's message file holds text of the user's (a template, `-m` was
    handled before the hook): a line that is neither one of git's comments nor below
    its scissors line (`git commit -v` puts the diff there). With core.commentChar
    "auto", git's comments begin with the character its "Please enter" line does."""
    lines = existing.splitlines()
    if comment == "auto" or len(comment) != 1:
        comment = next((line[0] for line in lines if "Please enter the commit message" in line
                        and line[:1] and not line[0].isalnum()), "#")
    scissors = f"{comment} {'-' * 24} >8 {'-' * 24}"
    for line in lines:
        if line.rstrip() == scissors:
            break
        if line.strip() and not line.startswith(comment):
            return True
    return False


def fill_message_file(path: Path, message: str, comment: str = "#") -> None:
    """Put ``message`` above what git wrote (its comments, the diff of `commit -v`),
    unless the user's text is already there."""
    existing = path.read_bytes() if path.exists() else b""  # (kept byte for byte)
    if has_user_text(existing.decode("utf-8", "replace"), comment):
        return
    path.write_bytes((message.rstrip() + "\n").encode("utf-8")
                     + (b"\n" + existing if existing else b""))
