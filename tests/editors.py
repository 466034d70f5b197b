"""What the real-editor tests share: the scripted model's answers for the user's
session on the demo workspace, and what to do when an editor is not installed."""

from __future__ import annotations

import pytest

from conftest import REQUIRE_EDITORS

# The session on examples/demo-workspace, in the order the model is asked: a
# docstring for parse_price, the review on save (the raise is on line 18 once the
# docstring is in), tests for apply_discount, the commit message.
DOC = "Turn a price such as '€12.50' into cents.\n\nArgs:\n    text: the price as written"
FINDING = {"findings": [{"line": 18, "quote": 'raise ValueError(f"not a price: {text!r}")',
                         "severity": "info", "category": "maintainability",
                         "message": "say which formats are accepted"}]}
COMMIT = "docs(pricing): explain the accepted price formats"
# Continues the prompt's "def test_": one test passes, one fails (999 * 0.5 rounds to 500).
TESTS = ("apply_discount_quarter():\n    assert apply_discount(1000, 25) == 750\n\n\n"
         "def test_apply_discount_rounding():\n    assert apply_discount(999, 50) == 1\n")


def require(missing: list[str], fix: str) -> None:
    """Skip a real-editor test whose editor is missing; fail instead in CI.

    `.ci/run` sets HEARTH_REQUIRE_EDITORS=1, so a broken editor setup cannot pass
    as a skip.
    """
    if not missing:
        return
    message = f"needs {', '.join(missing)}: {fix}"
    if REQUIRE_EDITORS:  # read before the tests' isolation removed HEARTH_* variables
        pytest.fail(message)
    pytest.skip(message)
