"""Inline completion over LSP with a scripted engine: ghost text, the quality rules,
reuse, cancellation by an edit, debounce, FIM detection from the model file, and
completion items. The server is a real child process; only the model is scripted."""

from __future__ import annotations

import asyncio
import json

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from test_completion import _gguf

from lsp_helpers import FAKE_SERVER, open_doc, start, stop, wait_model

ANSWER = "a + b\n\ndef other():\n    pass\n"


def inline_params(uri: str, line: int, character: int) -> types.InlineCompletionParams:
    return types.InlineCompletionParams(
        context=types.InlineCompletionContext(
            trigger_kind=types.InlineCompletionTriggerKind.Automatic),
        text_document=types.TextDocumentIdentifier(uri=uri),
        position=types.Position(line=line, character=character))


async def ghost(client, uri: str, line: int, character: int) -> list[str]:
    result = await client.text_document_inline_completion_async(
        inline_params(uri, line, character))
    items = result.items if isinstance(result, types.InlineCompletionList) else result or []
    for item in items:
        assert item.range.start == item.range.end == types.Position(line=line,
                                                                    character=character)
    return [i.insert_text for i in items]


async def stats(client) -> dict:
    return await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="hearth.completionStats"))


def prompts(record) -> list[str]:
    if not record.exists():
        return []
    return [json.loads(line) for line in record.read_text().splitlines()]


def edit(client, uri: str, version: int, line: int, character: int, text: str) -> None:
    here = types.Position(line=line, character=character)
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
        content_changes=[types.TextDocumentContentChangePartial(
            range=types.Range(start=here, end=here), text=text)]))


async def session(root, tmp_path, *, answer=ANSWER, delay=0.0, options=None, env=None):
    record = tmp_path / "prompts.jsonl"
    env = {"FAKE_ENGINE_DEFAULT": answer, "FAKE_ENGINE_RECORD": str(record),
           "FAKE_ENGINE_DELAY": str(delay), **(env or {})}
    # No time limit unless a test sets one: the whole scripted suggestion, however
    # loaded the machine (the limit has its own tests).
    opts = {"completion": {"debounceMs": 0, "answerWithinMs": 0}}
    for section, values in (options or {}).items():
        opts.setdefault(section, {}).update(values)
    client, result, _ = await start(FAKE_SERVER, root, env=env, init_options=opts)
    await wait_model(client)
    return client, result, record


async def test_ghost_text_from_the_completion_model_ends_with_the_block(demo_repo, tmp_path):
    client, result, record = await session(demo_repo, tmp_path,
                                           options={"model": {"preset": "smollm2"}})
    try:
        assert result.capabilities.inline_completion_provider is not None
        uri = open_doc(client, demo_repo / "m.py", text="import os\n\ndef add(a, b):\n    return \n")
        assert await ghost(client, uri, 3, 11) == ["a + b"]
        [prompt] = prompts(record)
        # Gemma (the completion preset) has no FIM tokens: the file's prefix, under its name.
        assert prompt == "# m.py\nimport os\n\ndef add(a, b):\n    return "
        seen = await stats(client)
        assert seen["model"]["worker"] == "own"  # not the task model (smollm2 here)
        assert seen["generated"] == 1
    finally:
        await stop(client)


async def test_the_text_after_the_cursor_is_never_repeated(demo_repo, tmp_path):
    client, _, _ = await session(demo_repo, tmp_path, answer="b) + c\n")
    try:
        uri = open_doc(client, demo_repo / "m.py", text="x = foo(a, )\n")
        assert await ghost(client, uri, 0, 11) == ["b"]
        uri2 = open_doc(client, demo_repo / "n.py", text="def f(b):\n    return \n    b)\n")
        # the suggestion is what follows already: nothing to show
        assert await ghost(client, uri2, 1, 11) == []
    finally:
        await stop(client)


async def test_typing_through_a_suggestion_reuses_it_without_the_model(demo_repo, tmp_path):
    client, _, record = await session(demo_repo, tmp_path)
    try:
        uri = open_doc(client, demo_repo / "m.py", text="def add(a, b):\n    return \n")
        assert await ghost(client, uri, 1, 11) == ["a + b"]
        edit(client, uri, 2, 1, 11, "a +")
        assert await ghost(client, uri, 1, 14) == [" b"]
        edit(client, uri, 3, 1, 14, " x")  # diverges: a new generation
        assert await ghost(client, uri, 1, 16) == ["a + b"]
        assert len(prompts(record)) == 2
        seen = await stats(client)
        assert (seen["from_cache"], seen["generated"]) == (1, 2)
    finally:
        await stop(client)


async def test_an_edit_that_contradicts_the_running_generation_cancels_it(demo_repo, tmp_path):
    slow = "a" + " +b" * 200
    client, _, _ = await session(demo_repo, tmp_path, answer=slow, delay=0.05,
                                 options={"completion": {"maxTokens": 400}})
    try:
        uri = open_doc(client, demo_repo / "m.py", text="x = \n")
        pending = asyncio.ensure_future(ghost(client, uri, 0, 4))
        await asyncio.sleep(1.0)  # generating
        edit(client, uri, 2, 0, 4, "zzz")
        assert await asyncio.wait_for(pending, 5) == []
        seen = await stats(client)
        assert seen["cancelled_by_edit"] == 1
    finally:
        await stop(client)


async def test_past_the_time_limit_the_first_words_and_the_rest_on_accept(demo_repo, tmp_path):
    slow = "total +" + " b +" * 30 + " c\n"
    client, _, _ = await session(demo_repo, tmp_path, answer=slow, delay=0.05,
                                 options={"completion": {"answerWithinMs": 200}})
    try:
        uri = open_doc(client, demo_repo / "m.py", text="x = \n")
        first = await asyncio.wait_for(ghost(client, uri, 0, 4), 30)
        assert len(first) == 1 and slow.startswith(first[0]) and first[0] != slow.strip()
        seen = await stats(client)
        assert seen["partial"] == 1 and seen["generated"] == 1
    finally:
        await stop(client)


async def test_a_newer_request_during_the_debounce_wins(demo_repo, tmp_path):
    client, _, record = await session(demo_repo, tmp_path,
                                      options={"completion": {"debounceMs": 400}})
    try:
        uri = open_doc(client, demo_repo / "m.py", text="def add(a, b):\n    return \n")
        older = asyncio.ensure_future(ghost(client, uri, 1, 4))
        await asyncio.sleep(0.1)
        assert await ghost(client, uri, 1, 11) == ["a + b"]
        assert await older == []
        assert len(prompts(record)) == 1
        assert (await stats(client))["superseded"] == 1
    finally:
        await stop(client)


async def test_an_edit_during_the_debounce_makes_the_answer_empty(demo_repo, tmp_path):
    # An undo while the request waited: the suggestion for the old text came back with
    # the old text's position (past the end of the line now), as a client that does not
    # cancel such requests would show it.
    client, _, _ = await session(demo_repo, tmp_path,
                                 options={"completion": {"debounceMs": 400}})
    try:
        uri = open_doc(client, demo_repo / "m.py", text="def add(a, b):\n    return \n")
        pending = asyncio.ensure_future(ghost(client, uri, 1, 11))
        await asyncio.sleep(0.1)
        client.text_document_did_change(types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
            content_changes=[types.TextDocumentContentChangePartial(range=types.Range(
                start=types.Position(line=1, character=4),
                end=types.Position(line=1, character=11)), text="")]))
        assert await pending == []
    finally:
        await stop(client)


async def test_fill_in_the_middle_for_a_model_file_with_fim_tokens(demo_repo, tmp_path):
    coder = tmp_path / "qwen2.5-coder.gguf"
    _gguf(coder, "Qwen2.5 Coder 0.5B", ["<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>",
                                         "<|fim_pad|>", "<|endoftext|>"])
    client, _, record = await session(demo_repo, tmp_path, answer="a + b<|endoftext|>",
                                      options={"completion": {"path": str(coder)}})
    try:
        uri = open_doc(client, demo_repo / "m.py", text="def add(a, b):\n    return \n\nx = 1\n")
        assert await ghost(client, uri, 1, 11) == ["a + b"]
        [prompt] = prompts(record)
        assert prompt == ("<|fim_prefix|># m.py\ndef add(a, b):\n    return "
                          "<|fim_suffix|>\n\nx = 1\n<|fim_middle|>")
    finally:
        await stop(client)


async def test_the_same_model_shares_the_task_worker(demo_repo, tmp_path):
    client, _, _ = await session(demo_repo, tmp_path)  # gemma3-270m for both, the defaults
    try:
        uri = open_doc(client, demo_repo / "m.py", text="def add(a, b):\n    return \n")
        assert await ghost(client, uri, 1, 11) == ["a + b"]
        assert (await stats(client))["model"]["worker"] == "shared"
    finally:
        await stop(client)


@pytest.mark.parametrize("items", [False, True])
async def test_completion_items_only_when_turned_on(demo_repo, tmp_path, items):
    client, _, _ = await session(demo_repo, tmp_path, answer="ult(a, b)\n",
                                 options={"completion": {"items": items}})
    try:
        uri = open_doc(client, demo_repo / "m.py", text="def f(a, b):\n    return res\n")
        result = await client.text_document_completion_async(types.CompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=types.Position(line=1, character=14)))
        if not items:
            assert result is None
            return
        [item] = result.items
        assert item.text_edit.new_text == "result(a, b)"
        assert item.text_edit.range.start == types.Position(line=1, character=11)
        assert item.label == "result(a, b)"
    finally:
        await stop(client)


async def test_turned_off_it_answers_nothing(demo_repo, tmp_path):
    client, _, record = await session(demo_repo, tmp_path,
                                      options={"completion": {"enabled": False}})
    try:
        uri = open_doc(client, demo_repo / "m.py", text="x = \n")
        result = await client.text_document_inline_completion_async(inline_params(uri, 0, 4))
        assert result is None and prompts(record) == []
    finally:
        await stop(client)


async def test_similar_code_and_definitions_from_the_index_come_first(
        demo_repo, tmp_path):
    from test_faults_lsp import wait_index

    client, _, record = await session(demo_repo, tmp_path, answer="10)\n", env={
        "HEARTH_INDEX_ENABLED": "true", "HEARTH_INDEX_EMBEDDINGS": "false",
        "HEARTH_CACHE_DIR": str(tmp_path / "cache")})
    try:
        await wait_index(client, want=("ready",), timeout=60)
        text = ("from inventory.pricing import apply_discount\n\n"
                "def sale(item):\n    return apply_discount(item.price_cents, \n")
        uri = open_doc(client, demo_repo / "shop.py", text=text)
        assert await ghost(client, uri, 3, 44) == ["10)"]
        [prompt] = prompts(record)
        context, rest = prompt.split("# shop.py\n", 1)
        # as comments, before the file itself: code of another file that uses the same
        # names as the lines above the cursor, then the signature from a third
        assert context.startswith("# Similar code in tests/test_pricing.py:\n"
                                  "# import pytest\n"
                                  "# from inventory.pricing import apply_discount,")
        assert "\n# Definitions used here, from the workspace:\n# inventory/pricing.py:\n" \
            "# def apply_discount(cents: int, percent: float) -> int:\n" in context
        assert rest.startswith("from inventory.pricing import apply_discount")
    finally:
        await stop(client)


async def test_a_cursor_past_the_end_of_its_line_is_at_the_line_s_end(demo_repo, tmp_path):
    # LSP: a character past the line's length means its end. pygls moved it to the last
    # character, before it: the prompt lost the line's last letter and the suggestion
    # went in before it ("return a" + "b + c" -> "return b + ca").
    client, _, record = await session(demo_repo, tmp_path, answer=" + c",
                                      options={"model": {"preset": "smollm2"}})
    try:
        uri = open_doc(client, demo_repo / "m.py", text="def add(a, b):\n    return a")
        result = await client.text_document_inline_completion_async(inline_params(uri, 1, 50))
        [item] = result.items
        assert item.range.start == item.range.end == types.Position(line=1, character=12)
        assert prompts(record)[-1].rstrip().endswith("return a")
    finally:
        await stop(client)


async def test_a_cursor_between_the_halves_of_an_emoji_is_refused(demo_repo, tmp_path):
    # UTF-16 positions: 😀 is two units; text put between them splits it in two.
    client, _, record = await session(demo_repo, tmp_path, answer="x",
                                      options={"model": {"preset": "smollm2"}})
    try:
        uri = open_doc(client, demo_repo / "m.py", text="s = '\U0001f600'\n")
        with pytest.raises(JsonRpcException, match="inside a character"):
            await client.text_document_inline_completion_async(inline_params(uri, 0, 6))
        [item] = (await client.text_document_inline_completion_async(
            inline_params(uri, 0, 7))).items  # after it: fine
        assert item.range.start == types.Position(line=0, character=7)
    finally:
        await stop(client)
