"""`hearth.generateCommitMessage` over LSP with a scripted engine: exact behaviour."""

from __future__ import annotations

import json
import subprocess

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcException

from lsp_helpers import FAKE_SERVER, REAL_SERVER, progress_titles, start, stop, wait_model


async def commit_message(client, **params):
    return await client.workspace_execute_command_async(types.ExecuteCommandParams(
        command="hearth.generateCommitMessage", arguments=[params] if params else []))


async def server(root, answers, **env):
    client, _, _ = await start(FAKE_SERVER, root, env={
        "FAKE_ENGINE_RESPONSES": json.dumps(answers), **env})
    await wait_model(client)
    return client


def stage_change(repo):
    path = repo / "inventory" / "pricing.py"
    path.write_text(path.read_text().replace("cents // 100", "abs(cents) // 100"))
    (repo / "uv.lock").write_text("version = 1\n")
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)


async def test_a_workspace_inside_a_larger_repository_is_refused(tmp_path):
    """The whole outer repository's staged diff went into the prompt, files outside the
    workspace (and outside its privacy.localOnly patterns) too."""
    outer = tmp_path / "big"
    (outer / "ws").mkdir(parents=True)
    (outer / "other").mkdir()
    subprocess.run(["git", "init", "-q"], cwd=outer, check=True)
    (outer / "ws" / "app.py").write_text("x = 1\n")
    (outer / "other" / "payroll.py").write_text("SALARY = 1\n")
    subprocess.run(["git", "add", "-A"], cwd=outer, check=True)
    client = await server(outer / "ws", ["feat: add app"])
    try:
        with pytest.raises(JsonRpcException, match="larger than the workspace folder"):
            await commit_message(client)
    finally:
        await stop(client)


async def test_a_valid_message_for_the_staged_diff(demo_repo):
    stage_change(demo_repo)
    client = await server(demo_repo, ["fix(pricing): Formatted negative prices correctly."])
    try:
        result = await commit_message(client)
        assert result["message"] == "fix(pricing): format negative prices correctly"
        assert result["staged"] is True and result["summarised"] is False
        assert {f["path"]: f["leftOut"] for f in result["files"]} == {
            "inventory/pricing.py": None, "uv.lock": "lockfile"}
        assert any("uv.lock (lockfile)" in n for n in result["notices"])
        assert "Hearth: commit message" in [t for t, _ in progress_titles(client)]
    finally:
        await stop(client)


async def test_an_echoed_diff_is_refused_and_the_retry_is_used(demo_repo):
    stage_change(demo_repo)
    echo = 'fix: return f"{sign}{currency}{abs(cents) // 100}.{cents % 100:02d}"'
    client = await server(demo_repo, [echo, "fix(pricing): keep the sign of negative prices"])
    try:
        result = await commit_message(client, repo=str(demo_repo))
        assert result["message"] == "fix(pricing): keep the sign of negative prices"
    finally:
        await stop(client)


async def test_nothing_valid_gives_the_structures_message_and_says_so(demo_repo):
    stage_change(demo_repo)
    client = await server(demo_repo, ["Update pricing.py", "changed things"])
    try:
        result = await commit_message(client)
        assert result["fromStructure"] is True and result["source"] == "structure"
        assert result["message"] == "chore: change format_price"
        assert any("written from the diff's structure" in n for n in result["notices"])
    finally:
        await stop(client)


async def test_without_the_fallback_nothing_valid_is_an_error_not_a_message(demo_repo):
    stage_change(demo_repo)
    client = await server(demo_repo, ["Update pricing.py", "changed things"],
                          HEARTH_COMMIT_FROM_STRUCTURE="false")
    try:
        with pytest.raises(JsonRpcException, match="no valid commit message"):
            await commit_message(client)
    finally:
        await stop(client)


async def test_a_diff_larger_than_the_context_is_summarised_per_file(demo_repo):
    for name in ("a", "b", "c"):
        (demo_repo / f"{name}.py").write_text(
            "".join(f"def scale_{name}_{i}(x):\n    return x * {i}\n" for i in range(40)))
    subprocess.run(["git", "add", "-A"], cwd=demo_repo, check=True)
    answers = ["Add the a helpers", "Add the b helpers", "Add the c helpers",
               "feat: add scale helpers"]
    client = await server(demo_repo, answers, FAKE_ENGINE_CONTEXT="700")
    try:
        result = await commit_message(client)
        assert result["message"] == "feat: add scale helpers"
        assert result["summarised"] is True
        assert any("summarised per file" in n for n in result["notices"])
    finally:
        await stop(client)


@pytest.mark.parametrize("params, error", [
    ({"repo": "/"}, "outside the workspace folders"),
    ({"repo": 5}, "'repo' must be"),
    ({"repo": "\u00d1\udfa0\ud819"}, "'repo' must be"),  # lone surrogates (found by test_fuzz)
])
async def test_bad_repositories_and_params_are_clear_errors(demo_repo, params, error):
    client = await server(demo_repo, [])
    try:
        with pytest.raises(JsonRpcException, match=error):
            await commit_message(client, **params)
        with pytest.raises(JsonRpcException, match="nothing to describe"):
            await commit_message(client)  # a clean work tree
    finally:
        await stop(client)


async def test_a_small_models_file_gives_the_structures_subject_without_its_load(demo_repo,
                                                                                 tmp_path):
    # commit.fromStructure "auto": with a model file under 500 MB, Hearth's own subject
    # comes first, so the server reads the file's size and does not wait for the load:
    # here a file that cannot load at all (no GGUF), and the message is still written.
    model = tmp_path / "small.gguf"
    with model.open("wb") as f:
        f.truncate(1000)  # sparse: its size is all that is read
    stage_change(demo_repo)
    client, _, _ = await start(REAL_SERVER, demo_repo, env={"HEARTH_MODEL_PATH": str(model)})
    try:
        result = await commit_message(client)
        assert result["source"] == "structure", result
        assert result["message"] == "chore: change format_price"
        assert any("auto, with a model under 500 MB" in n for n in result["notices"])
    finally:
        await stop(client)
