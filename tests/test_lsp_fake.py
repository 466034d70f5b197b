"""End-to-end LSP behaviour with a scripted engine: exact results, every error path.

The server runs as a real child process over stdio; only the model is scripted.
"""

from __future__ import annotations

import ast
import asyncio
import concurrent.futures
import json
import time

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcException

from lsp_helpers import (
    FAKE_SERVER,
    actions_at,
    apply,
    open_doc,
    progress_titles,
    start,
    stop,
    wait_model,
    wait_until,
)

DOC = "Convert a price to cents.\n\nArgs:\n    text: the price, e.g. '€12.50'."


@pytest.fixture
async def fake(demo_repo):
    env = {"FAKE_ENGINE_RESPONSES": json.dumps([DOC]), "FAKE_ENGINE_DEFAULT": "Do the thing."}
    client, result, _ = await start(FAKE_SERVER, demo_repo, env=env)
    await wait_model(client)
    yield client, result, demo_repo
    await stop(client)


async def test_capabilities_advertise_actions_resolve_and_commands(fake):
    client, result, _ = fake
    caps = result.capabilities
    assert caps.code_action_provider.resolve_provider is True
    assert "refactor.rewrite.hearth.docstring" in caps.code_action_provider.code_action_kinds
    assert {"hearth.generateDocstring", "hearth.status", "hearth.reloadModel"} <= set(
        caps.execute_command_provider.commands)
    assert result.server_info.name == "hearth"


async def test_model_loading_is_reported_as_progress(fake):
    client, _, _ = fake
    await wait_until(lambda: ("Loading model", "ready: fake on CPU (1 threads)")
                     in progress_titles(client))


async def test_docstring_action_is_cheap_then_resolves_to_a_versioned_edit(fake):
    client, _, root = fake
    path = root / "inventory" / "pricing.py"
    uri = open_doc(client, path)
    actions = await actions_at(client, uri, 9)  # inside `parse_price`
    assert [a.title for a in actions] == [
        "Hearth: Generate docstring", "Hearth: Generate tests for parse_price",
        "Hearth: Review function parse_price", "Hearth: Review file",
        "Hearth: Regenerate file documentation"]
    assert actions[0].edit is None and actions[0].command is None  # nothing computed yet
    resolved = await client.code_action_resolve_async(actions[0])
    change = resolved.edit.document_changes[0]
    assert change.text_document.version == 1
    new = apply(path.read_text(), resolved.edit, uri)
    fn = next(n for n in ast.parse(new).body if getattr(n, "name", "") == "parse_price")
    assert ast.get_docstring(fn) == DOC


async def test_a_replayed_answer_says_it_came_from_the_cache(demo_repo, tmp_path):
    env = {"FAKE_ENGINE_RESPONSES": json.dumps([DOC, DOC]), "HEARTH_CACHE_ENABLED": "true",
           "HEARTH_CACHE_DIR": str(tmp_path / "cache")}
    client, _, _ = await start(FAKE_SERVER, demo_repo, env=env)
    try:
        uri = open_doc(client, demo_repo / "inventory" / "pricing.py")
        for _ in range(2):
            [action] = await actions_at(client, uri, 9, only=["refactor.rewrite.hearth.docstring"])
            await client.code_action_resolve_async(action)
        ends = [end for title, end in progress_titles(client) if "docstring" in title]
        assert len(ends) == 2 and "tok/s" in ends[0] and ends[1] == "from the answer cache", ends
    finally:
        await stop(client)


async def test_documented_functions_offer_regenerate(fake):
    client, _, root = fake
    uri = open_doc(client, root / "x.py", text='def f(text):\n    """Old."""\n    return text\n')
    actions = await actions_at(client, uri, 0, only=["refactor.rewrite.hearth.docstring"])
    assert [a.title for a in actions] == ["Hearth: Regenerate docstring"]
    resolved = await client.code_action_resolve_async(actions[0])
    edit = resolved.edit.document_changes[0].edits[0]
    assert edit.new_text == '"""Convert a price to cents.\n\n    Args:\n        text: the price, e.g. \'€12.50\'.\n    """'


async def test_actions_follow_the_code_and_the_requested_kinds(fake):
    client, _, root = fake
    uri = open_doc(client, root / "inventory" / "pricing.py")

    async def titles(uri, line, only=None):
        return [a.title for a in await actions_at(client, uri, line, only=only)]

    assert await titles(uri, 0) == [  # the module docstring: no function here
        "Hearth: Review file", "Hearth: Regenerate file documentation"]
    assert await titles(uri, 9, only=["quickfix"]) == []
    assert await titles(uri, 9, only=["refactor.rewrite"]) == ["Hearth: Generate docstring"]
    js = open_doc(client, root / "a.js", language="javascript", text="function f() {}\n")
    assert await titles(js, 0) == ["Hearth: Generate doc comment", "Hearth: Review function f",
                                   "Hearth: Review file", "Hearth: Document file"]
    text = open_doc(client, root / "notes.txt", language="plaintext", text="hello\n")
    assert await titles(text, 0) == []
    broken = open_doc(client, root / "broken.py", text="def f(:\n")
    assert not {"Hearth: Generate docstring", "Hearth: Document file"} & set(
        await titles(broken, 0))


async def test_command_applies_the_edit_through_the_client(fake):
    client, _, root = fake
    uri = open_doc(client, root / "inventory" / "pricing.py")
    out = await client.workspace_execute_command_async(types.ExecuteCommandParams(
        command="hearth.generateDocstring", arguments=[{"uri": uri, "line": 9}]))
    assert out == {"applied": True, "symbol": "parse_price", "docstring": DOC, "notice": None}
    assert client.applied_edits[0].edit.document_changes[0].text_document.uri == uri


async def test_stale_actions_are_refused_with_content_modified(fake):
    client, _, root = fake
    path = root / "inventory" / "pricing.py"
    uri = open_doc(client, path)
    action = (await actions_at(client, uri, 9))[0]
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
        content_changes=[types.TextDocumentContentChangeWholeDocument(text=path.read_text() + "\n")]))
    with pytest.raises(JsonRpcException) as err:
        await client.code_action_resolve_async(action)
    assert err.value.code == -32801 and "changed" in err.value.message


@pytest.mark.parametrize("call, message", [
    (lambda c, uri: actions_at(c, "file:///nowhere.py", 0), "unknown document"),
    (lambda c, uri: actions_at(c, uri, 9999), "outside"),
    (lambda c, uri: c.code_action_resolve_async(types.CodeAction(title="x", data="junk")),
     "expected an object"),
    (lambda c, uri: c.code_action_resolve_async(types.CodeAction(title="x", data={"uri": uri, "line": -1})),
     "non-negative"),
    (lambda c, uri: c.workspace_execute_command_async(types.ExecuteCommandParams(command="hearth.nope")),
     "not defined"),
    (lambda c, uri: c.workspace_execute_command_async(types.ExecuteCommandParams(
        command="hearth.generateDocstring", arguments=[{"uri": uri, "line": 0}])), "no Python function"),
    # Beyond what a Position can hold: lsprotocol refused to build one (an internal error).
    (lambda c, uri: c.workspace_execute_command_async(types.ExecuteCommandParams(
        command="hearth.generateDocstring", arguments=[{"uri": uri, "line": 2**31}])),
     "line 2147483648 is outside"),
    (lambda c, uri: c.workspace_execute_command_async(types.ExecuteCommandParams(
        command="hearth.generateTests", arguments=[{"uri": uri, "line": 2**40}])),
     "no Python function at line"),
])
async def test_bad_requests_get_errors_and_the_server_stays_up(fake, call, message):
    client, _, root = fake
    uri = open_doc(client, root / "inventory" / "pricing.py")
    with pytest.raises(JsonRpcException, match=message):
        await call(client, uri)
    assert (await wait_model(client))["model"] == "ready"


@pytest.mark.parametrize("command, doing", [("hearth.review", "review"),
                                             ("hearth.generateTests", "write tests for"),
                                             ("hearth.generateDocstring", "document")])
async def test_commands_on_a_huge_file_are_refused_with_the_reason(fake, command, doing):
    """No action is offered on a 5 MB file, but a key binding can still send the
    command: the review and the tests parsed it while holding the GIL, and every
    other request waited seconds."""
    client, _, root = fake
    text = "".join(f"def f{n}(a):\n    return a * {n}\n\n\n" for n in range(40_000))
    uri = open_doc(client, root / "huge.py", text=text)
    with pytest.raises(JsonRpcException, match=f"cannot {doing} huge.py: it has 1.5 million "
                       "characters; Hearth offers actions on files up to 512 KB"):
        await client.workspace_execute_command_async(types.ExecuteCommandParams(
            command=command, arguments=[{"uri": uri, "line": 4, "scope": "symbol"}]))


def send_raw(client, body: bytes):
    client.protocol.writer.write(b"Content-Length: %d\r\n\r\n%s" % (len(body), body))


async def test_garbage_on_the_wire_does_not_kill_the_server(fake):
    client, _, _ = fake
    send_raw(client, b"{this is not json")
    send_raw(client, b'{"jsonrpc": "2.0", "id": 99, "method": 5}')
    # A request whose params do not fit the method: the server answers with an error.
    answer = concurrent.futures.Future()
    client.protocol._request_futures["raw-1"] = answer
    send_raw(client, json.dumps({"jsonrpc": "2.0", "id": "raw-1", "method": "textDocument/codeAction",
                                 "params": {"garbage": True}}).encode())
    with pytest.raises(JsonRpcException):
        await asyncio.wait_for(asyncio.wrap_future(answer), 5)
    # Tokens and ids of the wrong type: pygls raised on a list ("Error in server" popup).
    for method, params in [("window/workDoneProgress/cancel", {"token": [1]}),
                           ("window/workDoneProgress/cancel", {"token": {"a": 1}}),
                           ("$/cancelRequest", {"id": [1]})]:
        send_raw(client, json.dumps({"jsonrpc": "2.0", "method": method,
                                     "params": params}).encode())
    assert (await wait_model(client))["model"] == "ready"
    assert not [m.message for m in client.messages if "Error in server" in m.message]


async def test_invalid_settings_are_shown_and_defaults_used(demo_repo):
    client, _, _ = await start(FAKE_SERVER, demo_repo,
                               init_options={"docstring": {"maxTokens": -5}, "model": {"wat": 1}})
    try:
        await wait_model(client)
        shown = [m.message for m in client.messages]
        assert any("docstring.maxTokens: must be at least 1" in m for m in shown)
        assert any("unknown setting model.wat" in m for m in shown)
    finally:
        await stop(client)


async def test_a_thousand_bad_settings_are_one_message_not_a_thousand(demo_repo):
    junk = {f"k{i}": 1 for i in range(1000)}
    client, _, _ = await start(FAKE_SERVER, demo_repo, init_options={"review": junk})
    try:
        await wait_model(client)
        shown = [m.message for m in client.messages if "Hearth settings" in m.message]
        assert len(shown) == 1 and shown[0].endswith("; and 997 more (see the log)")
        assert "unknown setting review.k0" in shown[0] and shown[0].count("unknown") == 3
    finally:
        await stop(client)


async def test_bad_model_path_is_explained_and_everything_else_keeps_working(demo_repo, tmp_path):
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"definitely not a model")
    client, _, _ = await start(FAKE_SERVER, demo_repo, init_options={"model": {"path": str(bad)}})
    try:
        status = await wait_model(client)
        assert status["model"] == "error" and "not a GGUF model file" in status["error"]
        await wait_until(lambda: any(str(bad) in m.message and m.type == types.MessageType.Error
                                     for m in client.messages))
        uri = open_doc(client, demo_repo / "inventory" / "pricing.py")
        actions = await actions_at(client, uri, 9)  # listing needs no model
        # Resolving says why there is no edit instead of failing the request.
        resolved = await client.code_action_resolve_async(actions[0])
        assert resolved.edit is None
        await wait_until(lambda: any(
            "no docstring: model unavailable:" in m.message and "not a GGUF" in m.message
            and m.type == types.MessageType.Warning for m in client.messages))
    finally:
        await stop(client)


async def test_configuration_changes_apply_live_and_reload_the_model(demo_repo, tmp_path):
    client, _, _ = await start(FAKE_SERVER, demo_repo, configuration={})
    try:
        assert (await wait_model(client))["info"]["path"] == "<fake>"
        missing = tmp_path / "gone.gguf"
        client.set_configuration({"model": {"path": str(missing)}}, section="hearth")
        client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings=None))
        status = await wait_model(client, want=("error",))
        assert f"{missing}: no such file" in status["error"]
        # push-style change (settings in the notification) back to a working model
        client.workspace_did_change_configuration(
            types.DidChangeConfigurationParams(settings={"hearth": {"model": {"path": None}}}))
        assert (await wait_model(client, want=("ready",)))["info"]["path"] == "<fake>"
    finally:
        await stop(client)


async def test_the_user_config_edited_outside_the_editor_applies_live(demo_repo, tmp_path):
    """`hearth models use` or another editor rewrites the user config; the running
    server reads it again (the client only watches the workspace)."""
    config = tmp_path / "conf" / "config.toml"
    config.parent.mkdir()
    client, _, _ = await start(FAKE_SERVER, demo_repo, env={"HEARTH_CONFIG_FILE": str(config)})
    try:
        assert (await wait_model(client))["info"]["path"] == "<fake>"
        missing = tmp_path / "gone.gguf"
        config.write_text(f'[model]\npath = "{missing}"\n')
        status = await wait_model(client, want=("error",), timeout=30)
        assert f"{missing}: no such file" in status["error"]
    finally:
        await stop(client)


@pytest.fixture
async def slow(demo_repo):
    """A server whose scripted model writes slowly (50 ms a token, up to 1000 tokens:
    50 s unless cancelled), and an action to resolve."""
    env = {"FAKE_ENGINE_DEFAULT": "word ", "FAKE_ENGINE_REPEAT": "1000",
           "FAKE_ENGINE_DELAY": "0.05"}
    client, _, _ = await start(FAKE_SERVER, demo_repo, env=env,
                               init_options={"docstring": {"maxTokens": 2000}})
    await wait_model(client)
    uri = open_doc(client, demo_repo / "inventory" / "pricing.py")
    action = (await actions_at(client, uri, 9))[0]
    yield client, action
    await stop(client)


async def wait_worker_free(client, timeout: float = 10) -> None:
    """Nothing running or queued within ``timeout`` s: far less than the 50 s the
    scripted answer takes when the cancel does not reach the worker."""
    deadline = time.monotonic() + timeout
    while (status := await wait_model(client))["running"] is not None or status["pending"]:
        assert time.monotonic() < deadline, f"the cancel did not reach the worker: {status}"
        await asyncio.sleep(0.02)


async def test_cancel_request_stops_generation_and_frees_the_worker(slow):
    client, action = slow
    pending = asyncio.ensure_future(client.protocol.send_request_async(
        types.CODE_ACTION_RESOLVE, action, msg_id="slow-1"))
    await wait_until(lambda: any(r and isinstance(r[-1], types.WorkDoneProgressReport)
                                 for r in client.progress_reports.values()))
    assert (await wait_model(client))["running"] == "docstring"
    client.cancel_request(types.CancelParams(id="slow-1"))
    with pytest.raises(JsonRpcException, match="cancel"):
        await asyncio.wait_for(pending, 10)
    await wait_worker_free(client)


async def test_progress_cancel_from_the_client_stops_generation(slow):
    client, action = slow
    pending = asyncio.ensure_future(client.code_action_resolve_async(action))
    await wait_until(lambda: any(r and isinstance(r[-1], types.WorkDoneProgressReport)
                                 for r in client.progress_reports.values()))
    token = next(t for t, r in client.progress_reports.items()
                 if r and getattr(r[0], "title", "").startswith("Hearth: docstring"))
    client.window_work_done_progress_cancel(types.WorkDoneProgressCancelParams(token=token))
    with pytest.raises(JsonRpcException, match="cancelled"):
        await asyncio.wait_for(pending, 10)
    await wait_worker_free(client)
    ended = client.progress_reports[token][-1]
    assert isinstance(ended, types.WorkDoneProgressEnd) and "cancelled" in (ended.message or "")
