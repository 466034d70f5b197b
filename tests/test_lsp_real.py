"""The real server with the real bundled models, as an editor drives it.

These assert on structure and validation, never on the model's words. Sampling
is greedy where the model writes an answer that is checked (the same answer every
run on one build of llama.cpp); a docstring the validation refuses must then
come as an action without an edit plus a warning that says why.
"""

from __future__ import annotations

import ast
import asyncio
import time

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcException

from hearth_lsp.server.engine.llama import gpu_offload_supported

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


GREEDY = {"docstring": {"temperature": 0.0, "seed": 1}}


@pytest.fixture
async def real(demo_repo):
    client, result, init_s = await start(REAL_SERVER, demo_repo, init_options=GREEDY)
    yield client, demo_repo, init_s
    await stop(client)


async def docstring_or_reason(client, action: types.CodeAction, path, uri: str,
                              name: str) -> str | None:
    """Resolve a docstring action: either its edit adds a docstring to ``name`` and
    changes nothing else (returns None), or there is no edit and a warning says why
    (returns the reason). Never an error, never a broken edit."""
    shown = len(client.messages)
    resolved = await client.code_action_resolve_async(action)
    if resolved.edit is None:
        await wait_until(lambda: any(m.message.startswith("Hearth: no docstring: ")
                                     for m in client.messages[shown:]), timeout=10)
        warning = next(m for m in client.messages[shown:]
                       if m.message.startswith("Hearth: no docstring: "))
        reason = warning.message.removeprefix("Hearth: no docstring: ")
        assert warning.type == types.MessageType.Warning
        # A refusal of the model's answer, not a failure of the server.
        assert "cancel" not in reason and "model unavailable" not in reason, reason
        assert any(w in reason for w in ("docstring", "parameter", "summary")), reason
        return reason
    text = path.read_text()
    change = resolved.edit.document_changes[0]
    assert change.text_document.version == 1
    new = apply(text, resolved.edit, uri)
    fn = next(n for n in ast.walk(ast.parse(new)) if getattr(n, "name", "") == name)
    assert (ast.get_docstring(fn) or "").strip()
    # Only the docstring was added: the rest of the file is byte-for-byte the same.
    assert new.replace(change.edits[0].new_text, "", 1) == text
    return None


async def test_initialize_answers_before_the_model_is_loaded(real):
    client, _, init_s = real
    # The first status request after initialize still finds the model loading:
    # loading happens in the background, after `initialized`.
    status = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="hearth.status"))
    assert status["model"] in ("loading", "empty")
    status = await wait_model(client)
    assert status["model"] == "ready", status["error"]
    assert status["info"]["chatTemplate"] is False  # the default: Gemma 3 270M, a base model
    # Where the engine says it runs: every layer on the GPU when this llama.cpp
    # build has one (model.gpuLayers unset), else the CPU.
    assert status["info"]["where"].startswith("GPU (" if gpu_offload_supported() else "CPU (")
    await wait_until(lambda: any(t == "Loading model" and (m or "").startswith("ready: ")
                                 for t, m in progress_titles(client)))
    assert any("model ready:" in m.message and "context 4096" in m.message
               for m in client.log_messages)


async def test_docstring_action_edits_the_version_it_was_computed_for(real):
    client, root, _ = real
    path = root / "inventory" / "models.py"
    uri = open_doc(client, path)
    await wait_model(client)
    line = line_of(path, "def total_value")
    actions = await actions_at(client, uri, line, only=["refactor.rewrite.hearth.docstring"])
    assert [a.title for a in actions] == ["Hearth: Generate docstring"]
    await docstring_or_reason(client, actions[0], path, uri, "total_value")
    await wait_until(lambda: any(t.startswith("Hearth: docstring for Inventory.total_value")
                                 for t, _ in progress_titles(client)))


# A long answer to cancel: 3000 tokens sampled nearly at random (no top-k, top-p or
# min-p cut, temperature 3), which never write the docstring's end; uncancelled
# this takes ~30 s on 2 CPU cores. (At temperature 1.5 the model closed the
# docstring within seconds: a lost cancel then went unseen.)
LONG = {"docstring": {"maxTokens": 3000, "temperature": 3.0, "topK": 0, "topP": 1.0,
                      "minP": 0.0, "seed": 7, "stop": []}}


async def wait_worker_free(client, timeout: float = 30) -> dict:
    """hearth.status shows nothing running or queued within ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        status = await wait_model(client)
        if status["running"] is None and status["pending"] == 0:
            return status
        assert time.monotonic() < deadline, f"the cancel did not reach the worker: {status}"
        await asyncio.sleep(0.05)


def docstring_progress(client) -> tuple[str, list] | None:
    for token, reports in client.progress_reports.items():
        if reports and getattr(reports[0], "title", "").startswith("Hearth: docstring"):
            return str(token), reports
    return None


@pytest.mark.parametrize("how", ["cancelRequest", "progress"])
async def test_cancelling_a_long_generation_frees_the_worker_and_the_next_works(demo_repo, how):
    client, _, _ = await start(REAL_SERVER, demo_repo, init_options=LONG)
    try:
        await wait_model(client)
        path = demo_repo / "inventory" / "pricing.py"
        uri = open_doc(client, path)
        pending = asyncio.ensure_future(client.protocol.send_request_async(
            types.WORKSPACE_EXECUTE_COMMAND, types.ExecuteCommandParams(
                command="hearth.generateDocstring",
                arguments=[{"uri": uri, "line": line_of(path, "def parse_price")}]),
            msg_id="long-1"))
        # The model is writing: its first tokens are reported.
        await wait_until(lambda: (found := docstring_progress(client)) is not None and any(
            isinstance(r, types.WorkDoneProgressReport) for r in found[1]), timeout=120)
        token, reports = docstring_progress(client)  # type: ignore[misc]
        if how == "cancelRequest":
            client.cancel_request(types.CancelParams(id="long-1"))
        else:
            client.window_work_done_progress_cancel(
                types.WorkDoneProgressCancelParams(token=token))
        with pytest.raises(JsonRpcException, match="cancel"):
            await asyncio.wait_for(pending, 60)
        # The answer alone proves nothing for a command (pygls answers a cancelled
        # command at once): the worker itself must stop, and the task say so.
        await wait_worker_free(client)
        await wait_until(lambda: isinstance(reports[-1], types.WorkDoneProgressEnd), timeout=10)
        assert "cancelled" in (reports[-1].message or ""), reports[-1]
        # The model still answers.
        client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
            settings={"docstring": {"maxTokens": 60, "temperature": 0.0, "seed": 1}}))
        await asyncio.sleep(0.2)
        again = (await actions_at(client, uri, line_of(path, "def format_price")))[0]
        await docstring_or_reason(client, again, path, uri, "format_price")
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
    client, _, _ = await start(REAL_SERVER, demo_repo, init_options={
        "model": {"preset": "gemma3-270m"}, **GREEDY})
    try:
        status = await wait_model(client, timeout=600)
        assert status["model"] == "ready", status["error"]
        assert "gemma" in status["info"]["name"].lower()
        path = demo_repo / "inventory" / "pricing.py"
        uri = open_doc(client, path)
        action = (await actions_at(client, uri, line_of(path, "def format_price")))[0]
        # A base model may write nothing usable: then the server must say so, not
        # hand out a broken edit.
        await docstring_or_reason(client, action, path, uri, "format_price")
    finally:
        await stop(client)
