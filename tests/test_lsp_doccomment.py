"""Doc comments over LSP (a TypeScript file, scripted engine): action, resolve, validation."""

from __future__ import annotations

import json

import pytest
from lsprotocol import types

from lsp_helpers import (
    FAKE_SERVER,
    actions_at,
    apply,
    open_doc,
    start,
    stop,
    wait_model,
    wait_until,
)

TS = "export function total(items: number[], tax = 0.2): number {\n" \
     "  return items.reduce((a, b) => a + b, 0) * (1 + tax);\n}\n"
# Two content words a description at least: "the amounts" alone is refused as too short.
GOOD = {"summary": "Sum the items and add tax", "params": {"items": "the amounts to sum",
                                                           "tax": "the tax rate"},
        "returns": "the total with tax"}


@pytest.fixture
async def ts_session(demo_repo):
    path = demo_repo / "total.ts"
    path.write_text(TS)
    answers = [json.dumps(GOOD), json.dumps({**GOOD, "params": {"items": "x", "rate": "y"}})]
    client, _, _ = await start(FAKE_SERVER, demo_repo,
                               env={"FAKE_ENGINE_RESPONSES": json.dumps(answers)})
    await wait_model(client)
    uri = open_doc(client, path, language="typescript")
    yield client, uri
    await stop(client)


async def test_a_jsdoc_comment_is_generated_validated_and_placed(ts_session):
    client, uri = ts_session
    [action] = [a for a in await actions_at(client, uri, 1) if "doc comment" in a.title]
    assert action.title == "Hearth: Generate doc comment"
    resolved = await client.code_action_resolve_async(action)
    assert apply(TS, resolved.edit, uri) == (
        "/**\n * Sum the items and add tax.\n *\n * @param items the amounts to sum\n"
        " * @param tax the tax rate\n * @returns the total with tax\n */\n" + TS)
    # The second scripted answer invents a parameter: refused, nothing offered as right,
    # and the user is told why.
    refused = await client.code_action_resolve_async(action)
    assert refused.edit is None
    await wait_until(lambda: any("not the real ones" in m.message for m in client.messages))


async def test_document_file_puts_a_summary_at_the_top(demo_repo):
    path = demo_repo / "total.ts"
    path.write_text(TS)
    client, _, _ = await start(FAKE_SERVER, demo_repo, env={
        "FAKE_ENGINE_RESPONSES": json.dumps(["Computes the total of the items with tax"])})
    try:
        await wait_model(client)
        uri = open_doc(client, path, language="typescript")
        [action] = [a for a in await actions_at(client, uri, 0, only=["source"])
                    if a.title == "Hearth: Document file"]
        resolved = await client.code_action_resolve_async(action)
        result = await client.workspace_execute_command_async(types.ExecuteCommandParams(
            command=resolved.command.command, arguments=list(resolved.command.arguments)))
        assert result == {"applied": True,
                          "summary": "Computes the total of the items with tax."}
        [edit] = client.applied_edits
        assert apply(TS, edit.edit, uri).startswith(
            "/**\n * @file Computes the total of the items with tax.\n */\n\nexport function")
    finally:
        await stop(client)
