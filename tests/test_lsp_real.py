"""The real server with the real bundled models, as an editor drives it.

These assert on structure and validation, never on the model's words.
"""

from __future__ import annotations

import ast
import asyncio

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcException

from lsp_helpers import (
    REAL_SERVER,
    actions_at,
    apply,
    open_doc,
    progress_titles,
    start,
    stop,
    wait_model,
    wait_until,
)

pytestmark = pytest.mark.slow


def line_of(path, needle: str) -> int:
    return next(i for i, row in enumerate(path.read_text().splitlines()) if needle in row)


@pytest.fixture
async def real(demo_repo):
    client, result, init_s = await start(REAL_SERVER, demo_repo)
    yield client, demo_repo, init_s
    await stop(client)


async def test_initialize_answers_before_the_model_is_loaded(real):
    client, _, init_s = real
    # The first status request after initialize still finds the model loading:
    # loading happens in the background, after `initialized`.
    status = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="hearth.status"))
    assert status["model"] in ("loading", "empty")
    status = await wait_model(client)
    assert status["model"] == "ready", status["error"]
    assert status["info"]["chatTemplate"] is True and "CPU" in status["info"]["where"]
    await wait_until(lambda: any(t == "Loading model" and (m or "").startswith("ready: ")
                                 for t, m in progress_titles(client)))
    assert any("model ready:" in m.message and "context 4096" in m.message
               for m in client.log_messages)


async def test_docstring_action_edits_the_version_it_was_computed_for(real):
    client, root, _ = real
    path = root / "inventory" / "models.py"
    text = path.read_text()
    uri = open_doc(client, path)
    await wait_model(client)
    line = line_of(path, "def total_value")
    actions = await actions_at(client, uri, line, only=["refactor.rewrite.hearth.docstring"])
    assert [a.title for a in actions] == ["Hearth: Generate docstring"]
    resolved = await client.code_action_resolve_async(actions[0])
    change = resolved.edit.document_changes[0]
    assert change.text_document.version == 1
    new = apply(text, resolved.edit, uri)
    tree = ast.parse(new)
    method = next(n for n in ast.walk(tree) if getattr(n, "name", "") == "total_value")
    doc = ast.get_docstring(method)
    assert doc and doc.strip()
    # Only the docstring was added: the rest of the file is byte-for-byte the same.
    assert new.replace(change.edits[0].new_text, "", 1) == text
    await wait_until(lambda: any(t.startswith("Hearth: docstring for Inventory.total_value")
                                 for t, _ in progress_titles(client)))


async def test_cancelling_a_long_generation_returns_promptly_and_the_next_works(demo_repo):
    # A long answer to cancel: many tokens, no stop at the end of the docstring.
    client, _, _ = await start(REAL_SERVER, demo_repo, init_options={
        "docstring": {"maxTokens": 3000, "temperature": 1.5, "stop": []}})
    try:
        await wait_model(client)
        path = demo_repo / "inventory" / "pricing.py"
        uri = open_doc(client, path)
        action = (await actions_at(client, uri, 9))[0]
        pending = asyncio.ensure_future(client.protocol.send_request_async(
            types.CODE_ACTION_RESOLVE, action, msg_id="long-1"))
        await wait_until(lambda: any(r and getattr(r[-1], "kind", "") == "report"
                                     for r in client.progress_reports.values()))
        client.cancel_request(types.CancelParams(id="long-1"))
        with pytest.raises(JsonRpcException, match="cancel"):
            await pending
        while (await wait_model(client))["running"] is not None:
            await asyncio.sleep(0.01)
        # The worker is free and the model still answers.
        client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
            settings={"docstring": {"maxTokens": 60}}))
        await asyncio.sleep(0.2)
        again = (await actions_at(client, uri, line_of(path, "def format_price")))[0]
        try:
            resolved = await client.code_action_resolve_async(again)
            assert resolved.edit is not None
        except JsonRpcException as exc:  # the model answered; validation refused it
            assert "cancel" not in exc.message and "docstring" in exc.message, exc.message
    finally:
        await stop(client)


async def test_configuration_change_reloads_the_model_without_restart(demo_repo, smollm2_path, tmp_path):
    client, _, _ = await start(REAL_SERVER, demo_repo)
    try:
        await wait_model(client)
        copy = tmp_path / "renamed-model.gguf"
        copy.write_bytes(smollm2_path.read_bytes())
        client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
            settings={"hearth": {"model": {"path": str(copy)}}}))
        await wait_until(lambda: sum(t == "Loading model" for t, m in progress_titles(client)) == 2
                         and all(m for t, m in progress_titles(client)), timeout=120)
        status = await wait_model(client)
        assert status["model"] == "ready" and status["info"]["path"] == str(copy)
    finally:
        await stop(client)


async def test_a_bad_model_path_is_explained_and_the_server_stays_up(demo_repo, tmp_path):
    truncated = tmp_path / "truncated.gguf"
    from hearth_lsp.server.models import resolve_model_path
    from hearth_lsp.server.settings import ModelSettings

    data = resolve_model_path(ModelSettings(), tmp_path).read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    client, _, _ = await start(REAL_SERVER, demo_repo, init_options={"model": {"path": str(truncated)}})
    try:
        status = await wait_model(client)
        assert status["model"] == "error" and "truncated" in status["error"]
        await wait_until(lambda: any(str(truncated) in m.message for m in client.messages))
        uri = open_doc(client, demo_repo / "inventory" / "pricing.py")
        assert len(await actions_at(client, uri, 9, only=["refactor.rewrite.hearth.docstring"])) == 1
    finally:
        await stop(client)


async def test_gemma_preset_prompts_completion_style(demo_repo):
    client, _, _ = await start(REAL_SERVER, demo_repo, init_options={"model": {"preset": "gemma3-270m"}})
    try:
        status = await wait_model(client, timeout=600)
        assert status["model"] == "ready", status["error"]
        assert "gemma" in status["info"]["name"].lower()
        path = demo_repo / "inventory" / "pricing.py"
        uri = open_doc(client, path)
        action = (await actions_at(client, uri, line_of(path, "def format_price")))[0]
        try:
            resolved = await client.code_action_resolve_async(action)
        except JsonRpcException as exc:
            # A base model may write nothing usable: then the server must say so, not
            # hand out a broken edit.
            assert "no usable docstring" in exc.message or "parameters" in exc.message
            return
        new = apply(path.read_text(), resolved.edit, uri)
        fn = next(n for n in ast.parse(new).body if getattr(n, "name", "") == "format_price")
        assert ast.get_docstring(fn)
    finally:
        await stop(client)
