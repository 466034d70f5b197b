"""Prompt templates, as files, so a workspace can override them.

A template is plain text with ``${name}`` placeholders (``string.Template``),
so code braces in a prompt need no escaping. A file of the same name in a
workspace's ``.hearth/prompts/`` replaces the packaged one, once the user trusts
that folder (server/trust.py): a repository's author must not write the prompts.
"""

from __future__ import annotations

import logging
import string
from importlib import resources
from pathlib import Path

from ..chat_format import Message
from ..trust import is_trusted

log = logging.getLogger(__name__)

OVERRIDE_DIR = Path(".hearth") / "prompts"


def load_template(name: str, root: Path | None = None) -> string.Template:
    """The template ``name`` (e.g. ``docstring.system.txt``), overridden per workspace."""
    if root is not None:
        override = root / OVERRIDE_DIR / name
        if override.is_file():
            if is_trusted(root):
                return string.Template(override.read_text(encoding="utf-8"))
            log.warning("ignoring %s: the folder is not trusted (hearth trust %s)", override,
                        root)
    text = resources.files(__name__).joinpath(name).read_text(encoding="utf-8")
    return string.Template(text)


def render(name: str, root: Path | None = None, **values: str) -> str:
    return load_template(name, root).substitute(values)


def task_prompt(task: str, root: Path | None, *, chat: bool,
                **values: str) -> tuple[list[Message] | None, str]:
    """(chat messages, "") from `<task>.system.txt` and `<task>.user.txt` for a model with
    a chat template, else (None, text) from `<task>.completion.txt`."""
    if chat:
        return [Message("system", render(f"{task}.system.txt", root, **values).strip()),
                Message("user", render(f"{task}.user.txt", root, **values).strip())], ""
    return None, render(f"{task}.completion.txt", root, **values)
