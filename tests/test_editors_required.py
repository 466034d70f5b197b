"""HEARTH_REQUIRE_EDITORS=1 (set by `.ci/run`) turns a missing editor into a failure.

Every test runs with the HEARTH_* variables removed (conftest.py), so the guard
must be read before that; these run pytest itself as CI does.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO


def _pytest(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """pytest as `.ci/run` runs it (the variable set outside, before pytest starts)."""
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                           *args], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HEARTH_REQUIRE_EDITORS": "1", **env})


def _path_without(tmp_path: Path, program: str) -> str:
    """A PATH with every program of this one but `program` (symlinks in one folder)."""
    shadow = tmp_path / f"path-without-{program}"
    shadow.mkdir()
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        if not folder or not Path(folder).is_dir():
            continue
        for entry in Path(folder).iterdir():
            link = shadow / entry.name
            if entry.name != program and not link.exists() and not link.is_symlink():
                link.symlink_to(entry)
    return str(shadow)


def test_a_missing_tmux_fails_the_neovim_terminal_test(tmp_path):
    done = _pytest(["tests/test_neovim.py::test_neovim_screens_in_a_terminal"], REPO,
                   PATH=_path_without(tmp_path, "tmux"))
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "1 failed" in out and "needs tmux" in out and "skipped" not in out, out


def test_require_fails_inside_a_test_body_after_isolation(tmp_path):
    """The same for any editor test (tests/test_vscode_e2e.py asks in a fixture):
    `require` inside a test, once the HEARTH_* variables are gone."""
    (tmp_path / "test_editor.py").write_text(
        "import os\n\nfrom editors import require\n\n\n"
        "def test_editor():\n"
        "    assert 'HEARTH_REQUIRE_EDITORS' not in os.environ  # isolated\n"
        "    require(['an-editor'], 'install it')\n")
    # tests/conftest.py as a plugin: loaded before collection, as pytest loads it.
    done = _pytest(["-p", "conftest", "--rootdir", str(tmp_path), "test_editor.py"], tmp_path,
                   PYTHONPATH=os.pathsep.join([str(REPO / "tests"),
                                               os.environ.get("PYTHONPATH", "")]))
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "1 failed" in out and "needs an-editor" in out, out
