"""Workspace trust: which folders may tell Hearth to run programs, send code off the
machine or change its prompts.

Opening a cloned repository must be as safe as opening it in a text editor: the
person who wrote its `.hearth.toml` is not the user. Until the user trusts a
folder (`hearth trust PATH`, the editor's own workspace trust, or Neovim's
`:HearthTrust`), the settings marked ``trusted`` in settings.py are ignored when
they come from that folder's `.hearth.toml`, and so are its prompt overrides in
`.hearth/prompts/`. Trusted folders are kept in the user's config folder
(`trusted-folders.json`, beside `config.toml`); a trusted folder's subfolders
are trusted too.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

TRUST_FILE = "trusted-folders.json"
# Folders the editor says are trusted for this session (VS Code's workspace trust):
# not written anywhere, gone with the process.
_SESSION: set[Path] = set()


def trust_path(environ: Mapping[str, str] = os.environ) -> Path:
    from .settings import user_config_path

    return user_config_path(environ).parent / TRUST_FILE


def _norm(path: Path) -> Path:
    return Path(os.path.realpath(path.expanduser()))


def trusted_folders(environ: Mapping[str, str] = os.environ) -> list[Path]:
    """The folders the user trusts ([] when the file is missing or unreadable)."""
    try:
        data = json.loads(trust_path(environ).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    folders = data.get("folders") if isinstance(data, dict) else None
    return [Path(p) for p in folders or [] if isinstance(p, str)]


def trust_for_session(folders: Iterable[Path]) -> None:
    """The editor trusts these folders (its own workspace trust) while Hearth runs."""
    _SESSION.update(map(_norm, folders))


def is_trusted(root: Path | None, environ: Mapping[str, str] = os.environ) -> bool:
    """Whether ``root`` is, or is inside, a folder the user trusts, in the trust file
    or for this session."""
    if root is None:
        return False
    here = _norm(root)
    return any(here == t or t in here.parents
               for t in (*map(_norm, trusted_folders(environ)), *_SESSION))


def set_trusted(root: Path, trusted: bool, environ: Mapping[str, str] = os.environ) -> bool:
    """Trust (or stop trusting) ``root``; returns whether anything changed."""
    folder = _norm(root)
    current = [_norm(p) for p in trusted_folders(environ)]
    if trusted == (folder in current):
        return False
    folders = [*current, folder] if trusted else [p for p in current if p != folder]
    path = trust_path(environ)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"folders": [str(p) for p in folders]}, indent=1) + "\n",
                   encoding="utf-8")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return True
