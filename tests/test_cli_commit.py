"""`hearth commit-msg` and `hearth hook`: the command line and a real `git commit`."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

import pytest

from hearth_lsp.server import cli
from hearth_lsp.server.engine.fake import FakeEngine
from hearth_lsp.server.tasks.commit.hook import MARKER, hook_script

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


def test_a_rejected_message_is_asked_again_with_the_reason(demo_repo, capsys):
    (demo_repo / "inventory" / "models.py").write_text("# emptied\n")
    git(demo_repo, "add", "-A")
    code, engine = run_cli(["commit-msg", "--repo", str(demo_repo)],
                           ["feat: type is one of: feat, fix, docs",
                            "refactor(models): remove the models"])
    assert code == 0 and "refactor(models): remove the models" in capsys.readouterr().out
    assert "rejected" not in engine.prompts[0]
    # The second prompt holds the first answer and why it was refused.
    assert "type is one of: feat, fix, docs" in engine.prompts[1]
    assert "That message was rejected: " in engine.prompts[1]


def test_from_a_folder_of_the_repository_its_top_s_settings_and_secrets_hold(demo_repo,
                                                                             capsys):
    # The diff is the whole repository's: read with the folder's settings (none), the
    # repository's privacy.localOnly and .env values were not applied.
    (demo_repo / ".env").write_text("SHOP_TOKEN=canary-env-3Xw9\n")
    (demo_repo / ".hearth.toml").write_text('[commit]\nstyle = "plain"\n')
    models = demo_repo / "inventory" / "models.py"
    models.write_text(models.read_text() + '\nTOKEN = "canary-env-3Xw9"\n')
    git(demo_repo, "add", "inventory/models.py")
    code, engine = run_cli(["commit-msg", "--repo", str(demo_repo / "inventory")],
                           ["Add the shop token"])
    assert code == 0 and capsys.readouterr().out == "Add the shop token\n"
    assert "TOKEN = " in engine.prompts[0] and "canary-env" not in engine.prompts[0]


def test_an_answer_whose_first_line_is_refused_stops_there(demo_repo, capsys):
    # Only the header can refuse a message: its body is not generated at all (on a
    # small model that is most of a refused attempt's time), and the re-ask shows the
    # model only the line that was refused.
    (demo_repo / "inventory" / "models.py").write_text("# emptied\n")
    git(demo_repo, "add", "-A")
    body = "".join(f"- the body line number {n} goes on about nothing\n" for n in range(5))
    code, engine = run_cli(["commit-msg", "--repo", str(demo_repo), "--json"],
                           ["feat: type is one of: feat, fix, docs\n\n" + body,
                            "refactor(models): remove the models\n\n" + body])
    assert code == 0
    assert "type is one of: feat, fix, docs" in engine.prompts[1]
    assert "body line number" not in engine.prompts[1]
    # An accepted header's body is generated and kept where it passes the checks.
    assert json.loads(capsys.readouterr().out)["message"].startswith(
        "refactor(models): remove the models")


def test_a_cached_message_that_todays_checks_refuse_is_not_an_attempt(demo_repo, capsys,
                                                                      tmp_path, monkeypatch):
    from hearth_lsp.server.result_cache import ResultCache

    monkeypatch.setenv("HEARTH_CACHE_ENABLED", "true")
    monkeypatch.setenv("HEARTH_CACHE_DIR", str(tmp_path / "cache"))
    (demo_repo / "inventory" / "models.py").write_text("# emptied\n")
    git(demo_repo, "add", "-A")
    argv = ["commit-msg", "--repo", str(demo_repo)]
    assert run_cli(argv, ["refactor(models): remove the models"])[0] == 0
    cache = ResultCache(tmp_path / "cache" / "results.sqlite")
    [key] = [row[0] for row in cache._open().execute("SELECT key FROM results")]
    cache.put(key, "commit", "feat: type is one of: feat, fix, docs")  # an earlier version's
    cache.close()
    capsys.readouterr()
    code, engine = run_cli(argv, ["refactor(models): remove the models"])
    assert code == 0 and "refactor(models): remove the models" in capsys.readouterr().out
    assert len(engine.prompts) == 1 and "rejected" not in engine.prompts[0]


def test_a_repository_that_writes_plain_subjects_gets_one_with_its_examples(demo_repo, capsys):
    for n, subject in enumerate(["Shorten the title.", "Fix the footer links",
                                 "Add a changelog entry", "Bump the version"]):
        (demo_repo / f"note{n}.txt").write_text(subject)
        git(demo_repo, "add", "-A")
        git(demo_repo, "commit", "-qm", subject)
    (demo_repo / "inventory" / "models.py").write_text("# emptied\n")
    git(demo_repo, "add", "-A")
    code, engine = run_cli(["commit-msg", "--repo", str(demo_repo)],
                           ["Bump the version", "Remove the inventory models"])
    assert code == 0
    assert capsys.readouterr().out.strip() == "Remove the inventory models"
    assert "- Fix the footer links" in engine.prompts[0]  # few-shot, in the repo's style
    assert "type(scope)" not in engine.prompts[0]  # no Conventional Commits rules
    # The first answer copied a recent subject: refused, asked again.
    assert "copies a recent commit's subject" in engine.prompts[1]


def stage_a_documented_function(repo):
    path = repo / "inventory" / "pricing.py"
    path.write_text(path.read_text() + '\n\ndef to_euros(cents):\n'
                    '    """Cents as euros, for the invoice totals."""\n'
                    '    return cents / 100\n')
    git(repo, "add", "-A")


def no_model(settings, cache):
    raise AssertionError("the model was loaded")


@pytest.mark.parametrize("mode, model_bytes", [("first", 600_000_000), ("auto", 1000)])
def test_the_authors_words_load_no_model(demo_repo, tmp_path, capsys, monkeypatch, mode,
                                         model_bytes):
    # commit.authorWords: a subject in the change's own words is written before any model
    # loads ("auto": the model file, not loaded, is small), so the hook is done at once.
    model = tmp_path / "model.gguf"
    with model.open("wb") as f:
        f.truncate(model_bytes)  # sparse: its size is all that is read
    monkeypatch.setenv("HEARTH_MODEL_PATH", str(model))
    monkeypatch.setenv("HEARTH_COMMIT_AUTHOR_WORDS", mode)
    stage_a_documented_function(demo_repo)
    args = cli.build_parser().parse_args(["commit-msg", "--repo", str(demo_repo), "--json"])
    # "auto" goes through the route's real engine (no factory): a load would fail on
    # this file, which is no GGUF.
    assert cli.cmd_commit_msg(args, factory=no_model if mode == "first" else None) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["source"] == "author", out
    assert out["message"] == "feat: add to_euros: cents as euros, for the invoice totals"


@pytest.mark.parametrize("mode, model_bytes", [("first", 600_000_000), ("auto", 1000)])
def test_the_structures_subject_loads_no_model(demo_repo, tmp_path, capsys, monkeypatch,
                                               mode, model_bytes):
    # commit.fromStructure: no prose in the change, so the subject comes from what it
    # adds, still before any model loads ("auto": the model file is small).
    model = tmp_path / "model.gguf"
    with model.open("wb") as f:
        f.truncate(model_bytes)
    monkeypatch.setenv("HEARTH_MODEL_PATH", str(model))
    monkeypatch.setenv("HEARTH_COMMIT_FROM_STRUCTURE", mode)
    path = demo_repo / "inventory" / "pricing.py"
    path.write_text(path.read_text() + "\n\ndef to_euros(cents):\n    return cents / 100\n")
    git(demo_repo, "add", "-A")
    args = cli.build_parser().parse_args(["commit-msg", "--repo", str(demo_repo), "--json"])
    assert cli.cmd_commit_msg(args, factory=no_model if mode == "first" else None) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["source"] == "structure" and out["message"] == "feat: add to_euros", out
    assert any("before asking the model" in n for n in out["notices"])


def test_a_large_model_file_is_asked_before_the_authors_words(demo_repo, tmp_path, capsys,
                                                              monkeypatch):
    model = tmp_path / "model.gguf"
    with model.open("wb") as f:
        f.truncate(600_000_000)
    monkeypatch.setenv("HEARTH_MODEL_PATH", str(model))
    stage_a_documented_function(demo_repo)
    args = cli.build_parser().parse_args(["commit-msg", "--repo", str(demo_repo)])
    assert cli.cmd_commit_msg(args) == 1  # the load was tried, and this file is no GGUF
    assert "hearth commit-msg: " in capsys.readouterr().err


def test_the_model_file_size_is_known_only_for_a_local_first_route(tmp_path):
    from hearth_lsp.server.local import model_file_bytes
    from hearth_lsp.server.settings import Settings

    settings = Settings()
    settings.model.path = str(tmp_path / "model.gguf")
    (tmp_path / "model.gguf").write_bytes(b"x" * 1000)
    assert model_file_bytes(settings, tmp_path, ["local"]) == 1000
    assert model_file_bytes(settings, tmp_path, ["lab", "local"]) == 0  # a server first
    assert model_file_bytes(settings, tmp_path, ["local"], factory=no_model) == 0
    settings.model.path = str(tmp_path / "missing.gguf")
    assert model_file_bytes(settings, tmp_path, ["local"]) == 0


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
@pytest.mark.timeout(900)  # the hook's own limit below is 600 s: a loaded machine is slow
def test_the_hook_fills_a_plain_commit_and_leaves_dash_m_alone(demo_repo):
    """A real `git commit` with the real default model behind the hook."""
    assert cli.main(["hook", "install", "--repo", str(demo_repo)]) == 0
    env = {**os.environ, "GIT_EDITOR": "true", "GIT_AUTHOR_NAME": "t",
           "GIT_AUTHOR_EMAIL": "t@localhost", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@localhost",
           "HEARTH_COMMIT_HOOK_TIMEOUT_S": "600"}  # the model's answer, however slow the machine
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


# The hook runs `PYTHON -m hearth_lsp.server commit-msg --hook FILE`: as PYTHON, this runs
# the same command line with a scripted engine. $SLOW: the model takes an hour to load
# ("load") or to write its answer ("generate").
FAKE_HOOK_PYTHON = f"""#!{sys.executable}
import os, sys, time
from hearth_lsp.server import cli
from hearth_lsp.server.engine.fake import FakeEngine

assert sys.argv[1:3] == ["-m", "hearth_lsp.server"], sys.argv
slow = os.environ.get("SLOW")
def factory(settings, cache):
    if slow == "load":
        time.sleep(3600)
    return FakeEngine(responses=[os.environ["ANSWER"]],
                      piece_delay_s=3600 if slow == "generate" else 0)
sys.exit(cli.cmd_commit_msg(cli.build_parser().parse_args(sys.argv[3:]), factory=factory))
"""


def plain_git_commit(repo, tmp_path, *args, **env):
    """`git commit` with the hook above; the editor keeps a copy of the message file it
    was given and adds the user's words when the first line is empty."""
    python = tmp_path / "hook-python"
    python.write_text(FAKE_HOOK_PYTHON)
    python.chmod(0o755)
    hook = repo / ".git" / "hooks" / "prepare-commit-msg"
    hook.parent.mkdir(exist_ok=True)
    hook.write_text(hook_script(python=str(python)))
    hook.chmod(0o755)
    editor = tmp_path / "editor"
    editor.write_text(f'#!/bin/sh\ncp "$1" {tmp_path / "seen"}\n'
                      'if [ -z "$(head -n1 "$1")" ]; then\n'
                      f'  {{ echo "my own words"; cat "$1"; }} > {tmp_path / "msg"} && '
                      f'mv {tmp_path / "msg"} "$1"\nfi\n')
    editor.chmod(0o755)
    proc = subprocess.Popen(
        ["git", "-C", str(repo), "commit", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True,  # the hook with it, to stop them all
        env={**os.environ, "GIT_EDITOR": str(editor), "GIT_AUTHOR_NAME": "t",
             "GIT_AUTHOR_EMAIL": "t@localhost", "GIT_COMMITTER_NAME": "t",
             "GIT_COMMITTER_EMAIL": "t@localhost", **env})
    try:
        out, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise AssertionError("git commit still waiting on the hook") from None
    return proc.returncode, out + err, (tmp_path / "seen").read_text()


COMMIT_ANSWER = "docs(pricing): explain the accepted price formats"


def stage_a_change(repo):
    path = repo / "inventory" / "pricing.py"
    path.write_text(path.read_text().replace(
        "def parse_price(text: str) -> int:\n",
        "def parse_price(text: str) -> int:\n    \"\"\"Accepted price formats: 12.50, €12.50.\"\"\"\n"))
    git(repo, "add", "-A")


def test_the_hook_fills_a_plain_commit(demo_repo, tmp_path):
    """The harness of the next test, with a model that answers at once."""
    stage_a_change(demo_repo)
    code, output, seen = plain_git_commit(demo_repo, tmp_path, ANSWER=COMMIT_ANSWER)
    assert code == 0, output
    assert seen.startswith(COMMIT_ANSWER + "\n") and "\n# Please enter the commit" in seen, seen
    assert git(demo_repo, "log", "-1", "--format=%s").strip() == COMMIT_ANSWER


@pytest.mark.parametrize("how", ["-v", "commentChar", "-a"])
def test_the_hook_fills_a_verbose_commit_a_commit_with_another_comment_char_and_commit_a(
        demo_repo, tmp_path, how):
    """`git commit -v` puts the diff below a scissors line and core.commentChar changes
    git's comments: the hook took either for the user's own text and wrote nothing. `git
    commit -a` holds .git/index.lock while the hook runs: no warning that it fails."""
    if how == "-a":
        path = demo_repo / "inventory" / "pricing.py"
        path.write_text(path.read_text() + "\n")  # changed, not staged
    else:
        stage_a_change(demo_repo)
    if how == "commentChar":
        git(demo_repo, "config", "core.commentChar", ";")
    code, output, seen = plain_git_commit(demo_repo, tmp_path,
                                          *([how] if how.startswith("-") else []),
                                          ANSWER=COMMIT_ANSWER)
    assert code == 0, output
    assert seen.startswith(COMMIT_ANSWER + "\n"), seen
    assert "index is locked" not in output
    assert git(demo_repo, "log", "-1", "--format=%s").strip() == COMMIT_ANSWER


def test_the_hook_never_describes_changes_the_commit_leaves_out(demo_repo, tmp_path):
    """`git commit --allow-empty` with unstaged edits: the hook described those edits
    (the CLI's fallback when nothing is staged) for a commit that holds none of them."""
    path = demo_repo / "inventory" / "pricing.py"
    path.write_text(path.read_text() + "\n")  # changed, not staged
    code, output, seen = plain_git_commit(demo_repo, tmp_path, "--allow-empty",
                                          ANSWER=COMMIT_ANSWER)
    assert code == 0, output
    assert "the commit changes no file" in output
    assert seen.startswith("\n# Please enter the commit message"), seen  # git's own
    assert git(demo_repo, "log", "-1", "--format=%s").strip() == "my own words"


@pytest.mark.parametrize("slow", ["load", "generate"])
def test_a_slow_hook_never_holds_up_the_commit(demo_repo, tmp_path, slow):
    """Past commit.hookTimeoutS the hook gives up with status 0, leaving git's message file
    as git wrote it; the user's editor opens on it and the commit is made."""
    stage_a_change(demo_repo)
    code, output, seen = plain_git_commit(demo_repo, tmp_path, ANSWER=COMMIT_ANSWER, SLOW=slow,
                                          HEARTH_COMMIT_HOOK_TIMEOUT_S="1")
    assert code == 0, output
    assert "no commit message within 1 s (commit.hookTimeoutS)" in output
    assert seen.startswith("\n# Please enter the commit message"), seen  # git's own
    assert git(demo_repo, "log", "-1", "--format=%s").strip() == "my own words"


def test_every_staged_file_keeps_its_patch_whatever_its_name_or_the_diff_config(tmp_path):
    """git quotes a non-ASCII name (octal escapes) or one with a quote or a line break,
    a name may hold " b/", and diff.noprefix / diff.mnemonicPrefix change the header:
    each cost its file's patch (the model saw only file names). A name that is not
    UTF-8 crashed the prompt's encoding."""
    from hearth_lsp.server.tasks.commit.gitdiff import read_changes

    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    names = ["café.py", "foo b/bar.py", 'say"hi".py', "a\nb.py", "plain.py"]
    for name in names:
        (repo / name).parent.mkdir(exist_ok=True)
        (repo / name).write_text(f"VALUE = {len(name)}\n")
    (repo.joinpath(os.fsdecode(b"bad\xe9.py"))).write_text("VALUE = 0\n")
    git(repo, "add", "-A")
    for config in ([], ["diff.noprefix", "true"], ["diff.mnemonicPrefix", "true"]):
        if config:
            git(repo, "config", *config)
        changes = read_changes(repo)
        patches = {f.path: f.patch for f in changes.files}
        assert set(patches) == {*names, "bad\ufffd.py"}, patches.keys()
        assert all("+VALUE = " in p for p in patches.values()), (config, patches)
        assert "+++ b/café.py" in patches["café.py"]  # as the model reads it
        for f in changes.files:
            (f.path + f.patch).encode("utf-8")


def test_a_message_written_while_the_staged_changes_changed_says_so(demo_repo, capsys):
    (demo_repo / "inventory" / "models.py").write_text("# emptied\n")
    (demo_repo / "README.md").write_text("Notes.\n")
    git(demo_repo, "add", "inventory/models.py")

    def restage(prompt: str) -> str:  # the user, while the model writes
        git(demo_repo, "reset", "-q", "inventory/models.py")
        git(demo_repo, "add", "README.md")
        return "refactor(models): remove the models"
    code, _ = run_cli(["commit-msg", "--repo", str(demo_repo)], [restage])
    assert code == 0
    assert "the staged changes changed while the message was written" in \
        capsys.readouterr().err
