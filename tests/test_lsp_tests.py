"""`hearth.generateTests` over LSP with a scripted engine and the real sandbox."""

from __future__ import annotations

import json
import sys

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcException

from lsp_helpers import FAKE_SERVER, actions_at, open_doc, start, stop, wait_model

# The scripted model continues after the prompt's "def test_".
ANSWER = ("apply_discount_quarter():\n    assert apply_discount(1000, 25) == 750\n\n\n"
          "def test_apply_discount_rounding():\n    assert apply_discount(999, 50) == 1\n\n\n"
          "def test_unrelated():\n    assert 1 + 1 == 2\n")
FIXED = "apply_discount_rounding_fixed():\n    assert apply_discount(999, 50) == 500\n"


async def session(demo_repo, answers):
    client, _, _ = await start(FAKE_SERVER, demo_repo, env={
        "FAKE_ENGINE_RESPONSES": json.dumps(answers), "HEARTH_TESTS_PYTHON": sys.executable})
    await wait_model(client)
    uri = open_doc(client, demo_repo / "inventory" / "pricing.py")
    return client, uri


async def generate(client, uri, line=23):
    return await client.workspace_execute_command_async(types.ExecuteCommandParams(
        command="hearth.generateTests", arguments=[{"uri": uri, "line": line}]))


async def test_passing_tests_are_inserted_and_failing_ones_reported(demo_repo):
    client, uri = await session(demo_repo, [ANSWER, FIXED])
    try:
        titles = [a.title for a in await actions_at(client, uri, 23)]
        assert "Hearth: Generate tests for apply_discount" in titles
        result = await generate(client, uri)
        # Round 1: the quarter test passes, rounding fails (999 * 0.5 rounds to 500),
        # the unrelated one is dropped; round 2 fixes rounding.
        assert [t["name"] for t in result["passing"]] == [
            "test_apply_discount_quarter", "test_apply_discount_rounding_fixed"]
        assert result["failing"] == [] and result["applied"] is True
        assert result["summary"] == ("Hearth: 2 passing tests added to tests/test_pricing.py; "
                                     "0 failing left out")
        assert result["testFile"] == "tests/test_pricing.py"
        [edit] = client.applied_edits
        [change] = edit.edit.document_changes
        new_text = change.edits[0].new_text
        old_text = (demo_repo / "tests" / "test_pricing.py").read_text()
        assert new_text.startswith(old_text.rstrip())  # appended; imports already there
        assert "def test_apply_discount_quarter():" in new_text
        assert "test_unrelated" not in new_text
        assert new_text.count("from inventory.pricing import") == 1
    finally:
        await stop(client)


async def test_tests_that_never_pass_are_reported_not_inserted(demo_repo):
    wrong = "apply_discount_wrong():\n    assert apply_discount(1000, 10) == 1\n"
    client, uri = await session(demo_repo, [wrong, wrong])
    try:
        result = await generate(client, uri)
        assert result["passing"] == [] and result["applied"] is False
        [failure] = result["failing"]
        assert "assert 900 == 1" in failure["message"]
        assert client.applied_edits == []
    finally:
        await stop(client)


async def test_no_function_there_is_an_error(demo_repo):
    client, uri = await session(demo_repo, [])
    try:
        with pytest.raises(JsonRpcException, match="no Python function at line 2"):
            await generate(client, uri, line=1)
    finally:
        await stop(client)


async def test_tests_are_merged_into_the_unsaved_test_file_open_in_the_editor(demo_repo):
    client, uri = await session(demo_repo, [ANSWER, FIXED])
    try:
        test_path = demo_repo / "tests" / "test_pricing.py"
        on_disk = test_path.read_text()
        unsaved = on_disk.rstrip() + "\n\n\ndef test_written_but_not_saved():\n    assert True\n"
        test_uri = open_doc(client, test_path, text=unsaved, version=7)
        result = await generate(client, uri)
        assert result["applied"] is True and result["passing"]
        [edit] = client.applied_edits
        [change] = edit.edit.document_changes
        assert change.text_document.uri == test_uri and change.text_document.version == 7
        new_text = change.edits[0].new_text
        assert "def test_written_but_not_saved():" in new_text  # the user's edit survives
        assert "def test_apply_discount_quarter():" in new_text
        assert test_path.read_text() == on_disk  # nothing written behind the editor's back
    finally:
        await stop(client)
