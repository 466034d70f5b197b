"""`hearth.generateTests` over LSP with a scripted engine and the real sandbox."""

from __future__ import annotations

import asyncio
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


async def test_a_test_file_changed_on_disk_while_the_tests_ran_is_not_overwritten(demo_repo):
    """The file is not open: the edit (no version) replaced the text read at the start,
    and the editor applied it to the file as it then was: the user's new tests, written
    meanwhile by another tool or editor, were lost, and "1 passing test added" said."""
    from lsp_helpers import wait_until

    def running() -> bool:  # the sandbox is running the new test
        return any(isinstance(r, types.WorkDoneProgressReport)
                   and (r.message or "").startswith("running ")
                   for reports in client.progress_reports.values() for r in reports)

    client, uri = await session(demo_repo, ["apply_discount_quarter():\n"
                                            "    assert apply_discount(1000, 25) == 750\n"])
    try:
        test_path = demo_repo / "tests" / "test_pricing.py"
        pending = asyncio.ensure_future(generate(client, uri))
        await wait_until(running)
        theirs = test_path.read_text() + "\n\ndef test_written_meanwhile():\n    assert True\n"
        test_path.write_text(theirs)  # while the sandbox runs the new test
        with pytest.raises(JsonRpcException, match="changed while the tests were written"):
            await pending
        assert client.applied_edits == [] and test_path.read_text() == theirs
    finally:
        await stop(client)


async def test_two_tests_tasks_for_one_test_file_do_not_undo_each_other(demo_repo):
    """inventory/pricing.py and shop/pricing.py both get tests/test_pricing.py: each task
    replaced the text it had read with its own merge, and the second undid the first
    (its import lost, an assert left inside another test)."""
    (demo_repo / "shop").mkdir()
    (demo_repo / "shop" / "__init__.py").write_text("")
    (demo_repo / "shop" / "pricing.py").write_text("def shop_total(xs):\n    return sum(xs)\n")
    answer = ("apply_discount_quarter():\n    assert apply_discount(1000, 25) == 750\n\n\n"
              "def test_shop_total_two():\n    assert shop_total([1, 2]) == 3\n")
    client, uri = await session(demo_repo, [answer, answer, answer])
    try:
        other = open_doc(client, demo_repo / "shop" / "pricing.py")
        outcomes = await asyncio.gather(generate(client, uri), generate(client, other, line=0),
                                        return_exceptions=True)
        applied = [o for o in outcomes if isinstance(o, dict) and o["applied"]]
        refused = [o for o in outcomes if isinstance(o, JsonRpcException)]
        assert len(applied) == 1 and len(client.applied_edits) == 1
        assert len(refused) == 1 and "changed while the tests were written" in str(refused[0])
        # Once the editor has saved (or closed) the file, its disk text is the file again.
        test_uri = (demo_repo / "tests" / "test_pricing.py").as_uri()
        client.text_document_did_save(types.DidSaveTextDocumentParams(
            text_document=types.TextDocumentIdentifier(uri=test_uri)))
        assert (await generate(client, uri))["applied"] is True
    finally:
        await stop(client)


async def test_tests_are_not_inserted_when_the_code_changed_while_they_ran(demo_repo):
    """They passed against the code as it was; run against the code in the editor, the
    inserted test failed (docstrings were refused in this case, tests were not)."""
    from lsp_helpers import wait_until

    client, uri = await session(demo_repo, ["apply_discount_quarter():\n"
                                            "    assert apply_discount(1000, 25) == 750\n"])
    try:
        pending = asyncio.ensure_future(generate(client, uri))
        await wait_until(lambda: any(isinstance(r, types.WorkDoneProgressReport)
                                     and (r.message or "").startswith("running ")
                                     for rs in client.progress_reports.values() for r in rs))
        source = (demo_repo / "inventory" / "pricing.py").read_text()
        client.text_document_did_change(types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
            content_changes=[types.TextDocumentContentChangeWholeDocument(
                text=source.replace("100 - percent", "100 + percent"))]))
        with pytest.raises(JsonRpcException, match="pricing.py changed .* while the tests were"):
            await pending
        assert client.applied_edits == []
    finally:
        await stop(client)
