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


def fill_message_file(path: Path, message: str) -> None:
    """Put ``message`` above what git wrote (its `#` comments), unless the user's
    text is already there."""
    existing = path.read_text(encoding="utf-8") if path.exists() else ""
    if any(line.strip() and not line.startswith("#") for line in existing.splitlines()):
        return
    path.write_text(message.rstrip() + "\n" + ("\n" + existing if existing else ""),
                    encoding="utf-8")
