"""`.ci/run`, the CI entry point: what it asks make for (a `make` on PATH records it)."""

from __future__ import annotations

import os
import subprocess

from conftest import REPO


def test_ci_runs_lint_then_the_tests_with_editors_required(tmp_path):
    calls = tmp_path / "calls"
    fake = tmp_path / "bin" / "make"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\necho "$* HEARTH_REQUIRE_EDITORS=${HEARTH_REQUIRE_EDITORS:-}"'
                    f' >> {calls}\n')
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{fake.parent}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run([str(REPO / ".ci" / "run")], env=env, check=True, timeout=60,
                   stdin=subprocess.DEVNULL)
    assert calls.read_text().splitlines() == [
        "lint HEARTH_REQUIRE_EDITORS=", "test HEARTH_REQUIRE_EDITORS=1"]
