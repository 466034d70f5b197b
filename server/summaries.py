"""The one-line outcome of a task, as editors show it after a command.

Computed here once, so every client shows the same words (VS Code and Neovim
display the `summary` field of the command's result as it is).
"""

from __future__ import annotations


def count(n: int, noun: str) -> str:
    """'1 finding', '2 findings'."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def review_summary(findings: int, reviewed: list[str]) -> str:
    return f"Hearth: {count(findings, 'finding')} ({', '.join(reviewed) or 'nothing to review'})"


def tests_summary(*, applied: bool, test_file: str, passing: int, failing: int) -> str:
    """What went into which file, and what was left out."""
    if applied:
        where = f"added to {test_file}"
    elif passing:
        where = f"not added: the editor did not apply the edit to {test_file}"
    else:
        where = "added"
    return f"Hearth: {count(passing, 'passing test')} {where}; {failing} failing left out"
