"""`hearth commit-msg` and `hearth hook`: the command line and a real `git commit`."""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest

from hearth_lsp.server import cli
from hearth_lsp.server.engine.fake import FakeEngine
from hearth_lsp.server.tasks.commit.hook import MARKER

HEADER = re.compile(r"^(feat|fix|docs|style|refactor|perf|test|build|ci|chore|revert)"
                    r"(\([^()\s]+\))?: [a-z].{2,}$")


def git(root, *args, env=None):
    return subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True,
                          text=True, env=env).stdout


def run_cli(argv, answers):
    engine = FakeEngine(responses=list(answers))
    args = cli.build_parser().parse_args(argv)
    return cli.cmd_commit_msg(args, factory=lambda settings, cache: engine), engine


def test_commit_msg_prints_the_validated_message(demo_repo, capsys):
    (demo_repo / "inventory" / "models.py").write_text("# emptied\n")
    git(demo_repo, "add", "-A")
    code, engine = run_cli(["commit-msg", "--repo", str(demo_repo), "--json"],
                           ["refactor(models): Removed the models."])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["message"] == "refactor(models): remove the models"
    assert out["staged"] is True
    assert engine.grammars[0] is not None and "feat" in engine.grammars[0]
    assert "inventory/models.py" in engine.prompts[0]


def test_commit_msg_errors_are_one_clear_line(tmp_path, capsys):
    code, _ = run_cli(["commit-msg", "--repo", str(tmp_path)], [])
    assert code == 1
    assert "not inside a git repository" in capsys.readouterr().err


def test_hook_install_refuses_a_foreign_hook_and_uninstalls_only_its_own(demo_repo, capsys):
    assert cli.main(["hook", "install", "--repo", str(demo_repo)]) == 0
    hook = demo_repo / ".git" / "hooks" / "prepare-commit-msg"
    assert MARKER in hook.read_text() and os.access(hook, os.X_OK)
    assert cli.main(["hook", "uninstall", "--repo", str(demo_repo)]) == 0
    assert not hook.exists()
    hook.write_text("#!/bin/sh\necho mine\n")
    assert cli.main(["hook", "install", "--repo", str(demo_repo)]) == 1
    assert "is not Hearth's" in capsys.readouterr().err
    assert cli.main(["hook", "uninstall", "--repo", str(demo_repo)]) == 1
    assert hook.read_text() == "#!/bin/sh\necho mine\n"


@pytest.mark.slow
def test_the_hook_fills_a_plain_commit_and_leaves_dash_m_alone(demo_repo):
    """A real `git commit` with the real default model behind the hook."""
    assert cli.main(["hook", "install", "--repo", str(demo_repo)]) == 0
    env = {**os.environ, "GIT_EDITOR": "true", "GIT_AUTHOR_NAME": "t",
           "GIT_AUTHOR_EMAIL": "t@localhost", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@localhost"}
    path = demo_repo / "inventory" / "pricing.py"
    path.write_text(path.read_text().replace('raise ValueError(f"not a price: {text!r}")',
                                             'raise ValueError(f"cannot read a price from {text!r}")'))
    git(demo_repo, "add", "-A")
    done = subprocess.run(["git", "-C", str(demo_repo), "commit"], env=env,
                          capture_output=True, text=True, timeout=600)
    if done.returncode == 0:  # the hook wrote a message that passed validation
        subject = git(demo_repo, "log", "-1", "--format=%s")
        assert HEADER.match(subject.strip()), subject
    else:  # validation refused the tiny model's message: git saw an empty one
        assert "empty commit message" in done.stderr + done.stdout
        assert "hearth commit-msg" in done.stderr
    path.write_text(path.read_text() + "\n")
    git(demo_repo, "add", "-A")
    git(demo_repo, "commit", "-m", "my own words", env=env)
    assert git(demo_repo, "log", "-1", "--format=%s").strip() == "my own words"
