"""Documents a hostile or careless editor sends: huge, invalid Unicode. Code actions
stay cheap, say why they are missing, and never block other requests."""

from __future__ import annotations

import asyncio

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcException

from lsp_helpers import FAKE_SERVER, actions_at, open_doc, start, stop, wait_model


@pytest.fixture
async def client(demo_repo):
    client, _, _ = await start(FAKE_SERVER, demo_repo)
    await wait_model(client)
    yield client, demo_repo
    await stop(client)


async def test_a_huge_file_gets_no_actions_and_one_reason(client):
    client, root = client
    path = root / "huge.py"
    text = "".join(f"def f{n}(a):\n    return a * {n}\n\n\n" for n in range(40_000))
    assert len(text) > 1_000_000
    uri = open_doc(client, path, text=text)
    for _ in range(2):
        assert await actions_at(client, uri, 100) == []
    warnings = [m.message for m in client.messages if "no actions for huge.py" in m.message]
    assert len(warnings) == 1 and "million characters" in warnings[0]


async def test_lone_surrogates_are_refused_with_a_reason_not_an_internal_error(client):
    client, root = client
    uri = open_doc(client, root / "odd.py", text="def f(a):\n    return '\ud800'\n")
    assert await actions_at(client, uri, 0) == []
    assert any("lone surrogates" in m.message for m in client.messages)


async def test_code_actions_on_a_large_file_do_not_hold_up_other_requests(client):
    client, root = client
    text = "".join(f"def f{n}(a, b):\n    x = a + b\n    return x * {n}\n\n\n"
                   for n in range(9_000))  # under the limit: parsed, off the event loop
    uri = open_doc(client, root / "large.py", text=text)
    done: list[str] = []
    listed = asyncio.ensure_future(actions_at(client, uri, 20_000))
    listed.add_done_callback(lambda _: done.append("codeAction"))
    await asyncio.sleep(0)  # the code action request goes out first
    status = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="hearth.status"))
    done.append("status")
    assert status["model"] == "ready"
    titles = [a.title for a in await listed]
    # Sent second, answered first: the parse did not hold up the event loop.
    assert done == ["status", "codeAction"]
    assert "Hearth: Generate docstring" in titles


async def test_a_commit_message_only_for_repositories_inside_the_workspace(client, tmp_path):
    client, _ = client
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with pytest.raises(JsonRpcException, match="outside the workspace folders"):
        await client.workspace_execute_command_async(types.ExecuteCommandParams(
            command="hearth.generateCommitMessage", arguments=[{"repo": str(elsewhere)}]))


async def test_a_huge_symbol_query_is_a_clear_error(client):
    client, _ = client
    with pytest.raises(JsonRpcException, match="at most 1000 are searched"):
        await client.workspace_symbol_async(types.WorkspaceSymbolParams(query="x" * 1_000_000))


async def test_documenting_lone_surrogates_is_refused_with_a_reason(client):
    client, root = client
    uri = open_doc(client, root / "odd2.py", text="def f(a):\n    return '\ud800'\n")
    for command, args in (("hearth.generateDocstring", {"uri": uri, "line": 0}),
                          ("hearth.documentFile", {"uri": uri})):
        with pytest.raises(JsonRpcException, match="lone surrogates"):
            await client.workspace_execute_command_async(types.ExecuteCommandParams(
                command=command, arguments=[args]))


async def test_a_nul_byte_in_a_repository_path_is_invalid_params(client):
    client, _ = client
    with pytest.raises(JsonRpcException, match="'repo' must be"):
        await client.workspace_execute_command_async(types.ExecuteCommandParams(
            command="hearth.generateCommitMessage", arguments=[{"repo": "/tmp/a\x00b"}]))


OTHER = "import os\n\n\n\n\n\n\n\n\ndef delete_everything(path):\n    os.remove(path)\n"


async def test_a_file_closed_and_opened_again_mid_docstring_gets_no_edit(demo_repo):
    # VS Code starts a reopened file's versions at 1 again: the docstring written for the
    # old text, at the old version, landed in another function of the new text.
    env = {"FAKE_ENGINE_DEFAULT": "Convert a price to cents.", "FAKE_ENGINE_DELAY": "0.3"}
    client, _, _ = await start(FAKE_SERVER, demo_repo, env=env)
    try:
        await wait_model(client)
        path = demo_repo / "inventory" / "pricing.py"
        uri = open_doc(client, path, version=1)
        asked = asyncio.ensure_future(client.workspace_execute_command_async(
            types.ExecuteCommandParams(command="hearth.generateDocstring",
                                       arguments=[{"uri": uri, "line": 9}])))
        await asyncio.sleep(0.5)  # writing
        client.text_document_did_close(types.DidCloseTextDocumentParams(
            text_document=types.TextDocumentIdentifier(uri=uri)))
        open_doc(client, path, text=OTHER, version=1)
        with pytest.raises(JsonRpcException) as refused:
            await asyncio.wait_for(asked, 30)
        assert refused.value.code == types.LSPErrorCodes.ContentModified
        assert client.applied_edits == []
    finally:
        await stop(client)


@pytest.mark.parametrize("args", [[1], ["file:///elsewhere"], [["x"]], [{"url": "file:///x"}]])
async def test_a_malformed_trust_request_trusts_nothing(client, args):
    # A bare URI string, or an object with a misspelt key, read as "no uri": every folder.
    client, root = client
    with pytest.raises(JsonRpcException) as refused:
        await client.workspace_execute_command_async(types.ExecuteCommandParams(
            command="hearth.trustFolder", arguments=args))
    assert refused.value.code == -32602  # (before anything was trusted)
