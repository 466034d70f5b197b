"""What the real-editor tests do when their editor is not installed."""

from __future__ import annotations

import os

import pytest


def require(missing: list[str], fix: str) -> None:
    """Skip a real-editor test whose editor is missing; fail instead in CI.

    `.ci/run` sets HEARTH_REQUIRE_EDITORS=1, so a broken editor setup cannot pass
    as a skip.
    """
    if not missing:
        return
    message = f"needs {', '.join(missing)}: {fix}"
    if os.environ.get("HEARTH_REQUIRE_EDITORS") == "1":
        pytest.fail(message)
    pytest.skip(message)
