"""Multi-root workspaces: each folder has its own root, index and `.hearth.toml`, and
folders can come and go while the server runs."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import pytest
from lsprotocol import types
from pytest_lsp import ClientServerConfig

from lsp_helpers import (
    FAKE_SERVER,
    capabilities,
    open_doc,
    progress_titles,
    start,
    stop,
    wait_until,
)

pytestmark = pytest.mark.slow  # real tree-sitter indexing of three small folders


def make_folder(base: Path, name: str, function: str, toml: str = "") -> Path:
    root = base / name
    root.mkdir()
    (root / f"{name}.py").write_text(f"def {function}(x):\n    return x + 1\n")
    if toml:
        (root / ".hearth.toml").write_text(toml)
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@l",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@l"}
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "i"]):
        subprocess.run(cmd, cwd=root, env=env, check=True, capture_output=True)
    return root


async def symbols(client, query: str) -> dict[str, str]:
    found = await client.workspace_symbol_async(types.WorkspaceSymbolParams(query=query))
    return {s.name: s.location.uri for s in found or []}


async def wait_symbol(client, name: str, present: bool = True) -> dict[str, str]:
    for _ in range(300):
        found = await symbols(client, name)
        if (name in found) == present:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"{name} {'never appeared' if present else 'never went'}")


async def test_each_folder_has_its_own_settings_and_index(tmp_path):
    alpha = make_folder(tmp_path, "alpha", "alpha_thing", '[review]\nonSave = "off"\n')
    beta = make_folder(tmp_path, "beta", "beta_thing")
    config = ClientServerConfig(server_command=FAKE_SERVER, server_env={
        **os.environ, "HEARTH_INDEX_ENABLED": "true", "HEARTH_INDEX_EMBEDDINGS": "false",
        "HEARTH_CACHE_DIR": str(tmp_path / "cache"),
        "FAKE_ENGINE_DEFAULT": '{"findings": []}'})
    client = await config.start()
    client.applied_edits = []
    caps = capabilities()
    caps.workspace.workspace_folders = True
    await client.initialize_session(types.InitializeParams(
        capabilities=caps, root_uri=alpha.as_uri(), workspace_folders=[
            types.WorkspaceFolder(uri=alpha.as_uri(), name="alpha"),
            types.WorkspaceFolder(uri=beta.as_uri(), name="beta")]))
    try:
        found = await wait_symbol(client, "alpha_thing")
        assert found["alpha_thing"] == (alpha / "alpha.py").as_uri()
        found = await wait_symbol(client, "beta_thing")
        assert found["beta_thing"] == (beta / "beta.py").as_uri()
        status = await client.workspace_execute_command_async(
            types.ExecuteCommandParams(command="hearth.status"))
        assert [f["root"] for f in status["folders"]] == [str(alpha), str(beta)]

        # alpha's .hearth.toml turns review on save off; beta keeps the default.
        for root, name in ((alpha, "alpha"), (beta, "beta")):
            path = root / f"{name}.py"
            uri = open_doc(client, path)
            text = path.read_text().replace("x + 1", "x + 2")
            path.write_text(text)
            client.text_document_did_change(types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
                content_changes=[types.TextDocumentContentChangeWholeDocument(text=text)]))
            client.text_document_did_save(types.DidSaveTextDocumentParams(
                text_document=types.TextDocumentIdentifier(uri=uri)))
        await wait_until(lambda: [m for t, m in progress_titles(client)
                                  if t == "Hearth: review" and m])
        reviewed = [r.message for reports in client.progress_reports.values() for r in reports
                    if isinstance(r, types.WorkDoneProgressReport)
                    and "_thing" in (r.message or "")]
        assert reviewed == ["function beta_thing (1/1)"]

        # A folder joins, another leaves.
        gamma = make_folder(tmp_path, "gamma", "gamma_thing")
        client.workspace_did_change_workspace_folders(types.DidChangeWorkspaceFoldersParams(
            event=types.WorkspaceFoldersChangeEvent(
                added=[types.WorkspaceFolder(uri=gamma.as_uri(), name="gamma")],
                removed=[types.WorkspaceFolder(uri=alpha.as_uri(), name="alpha")])))
        found = await wait_symbol(client, "gamma_thing")
        assert found["gamma_thing"] == (gamma / "gamma.py").as_uri()
        await wait_symbol(client, "alpha_thing", present=False)
        assert "beta_thing" in await symbols(client, "beta_thing")
    finally:
        await stop(client)


async def test_a_home_folder_opened_as_the_workspace_is_not_indexed_and_the_user_is_told(
        tmp_path):
    """Every project, cache and download below it: a walk of hours, and the watcher would
    take the inotify watches of every other program. The other features still work."""
    home = tmp_path / "home"
    home.mkdir()
    project = make_folder(home, "shop", "shop_thing")
    client, _, _ = await start(FAKE_SERVER, home, env={
        "HOME": str(home), "HEARTH_INDEX_ENABLED": "true", "HEARTH_INDEX_EMBEDDINGS": "false",
        "HEARTH_CACHE_DIR": str(tmp_path / "cache")})
    try:
        await wait_until(lambda: [m for m in client.messages if "not indexing" in m.message])
        [message] = [m.message for m in client.messages if "not indexing" in m.message]
        assert f"not indexing {home}: it is your home folder" in message
        status = await client.workspace_execute_command_async(
            types.ExecuteCommandParams(command="hearth.status"))
        assert status["index"] == {"state": "off", "reason": "it is your home folder"}
        # A project below it, added as a folder of its own, is indexed.
        client.workspace_did_change_workspace_folders(types.DidChangeWorkspaceFoldersParams(
            event=types.WorkspaceFoldersChangeEvent(
                added=[types.WorkspaceFolder(uri=project.as_uri(), name="shop")], removed=[])))
        found = await wait_symbol(client, "shop_thing")
        assert found["shop_thing"] == (project / "shop.py").as_uri()
    finally:
        await stop(client)
