"""The workspace index and the model through LSP: `workspace/symbol`, search, reindex,
status and reload. No code actions."""

from __future__ import annotations

import asyncio
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams

from ...index_service import IndexNotReady, IndexService
from ..common import RequestFailed
from ..server import HearthServer

CMD_STATUS = "hearth.status"
CMD_RELOAD = "hearth.reloadModel"
CMD_SEARCH = "hearth.search"
CMD_REINDEX = "hearth.reindex"
KINDS: list[str] = []

# The index's definition kinds (indexer/chunker.py) as LSP symbol kinds; like
# rust-analyzer: an impl block is an Object, a type alias a TypeParameter.
SK = types.SymbolKind
SYMBOL_KINDS = {
    "function": SK.Function, "method": SK.Method, "class": SK.Class, "struct": SK.Struct,
    "enum": SK.Enum, "union": SK.Struct, "record": SK.Struct, "interface": SK.Interface,
    "trait": SK.Interface, "impl": SK.Object, "implementation": SK.Object,
    "module": SK.Module, "namespace": SK.Namespace, "constant": SK.Constant,
    "type": SK.TypeParameter, "macro": SK.Function, "field": SK.Field,
    "property": SK.Property, "constructor": SK.Constructor,
}


def symbol_kind(kind: str) -> types.SymbolKind:
    return SYMBOL_KINDS.get(kind, SK.Variable)


def actions(ls: HearthServer, doc: Any, params: Any) -> list:
    return []


def command_status(ls: HearthServer, *args: Any) -> dict[str, Any]:
    engine = ls.worker.engine
    running = ls.worker.running()
    index = ls.index
    return {
        "index": index.status() if index is not None else {"state": "off"},
        "model": ls.worker.state,
        "error": ls.worker.error,
        "info": None if engine is None else {
            "name": engine.info.name, "path": engine.info.path,
            "contextLength": engine.info.context_length,
            "chatTemplate": bool(engine.info.chat_template), "where": engine.info.where},
        "running": running.kind if running else None,
        "pending": ls.worker.pending(),
    }


async def command_reload(ls: HearthServer, *args: Any) -> dict[str, Any]:
    ls._loaded_model = None
    await ls.load_model()
    return command_status(ls)


def _index(ls: HearthServer, path: Any = None) -> IndexService:
    index = ls.index
    if index is None:
        raise RequestFailed("the workspace index is off (index.enabled) or there is no "
                            "workspace folder")
    return index


async def command_search(ls: HearthServer, *args: Any) -> list[dict[str, Any]]:
    """`hearth.search` [{query, k?, path?, language?}] -> results as `hearth search --json`."""
    params = args[0] if args else None
    if not isinstance(params, dict) or not isinstance(params.get("query"), str):
        raise JsonRpcInvalidParams("expected [{\"query\": string, \"k\"?: int}]")
    k = params.get("k", 10)
    if not isinstance(k, int) or not 1 <= k <= 200:
        raise JsonRpcInvalidParams("'k' must be an integer from 1 to 200")
    index = _index(ls)
    try:
        results = await asyncio.to_thread(index.search, params["query"], k, params.get("path"),
                                          params.get("language"))
    except IndexNotReady as exc:
        raise RequestFailed(str(exc)) from exc
    return [r.as_dict() for r in results]


def command_reindex(ls: HearthServer, *args: Any) -> dict[str, Any]:
    params = args[0] if args and isinstance(args[0], dict) else {}
    index = _index(ls)
    index.reindex(rebuild=bool(params.get("rebuild")))
    return index.status()


async def workspace_symbol(ls: HearthServer,
                           params: types.WorkspaceSymbolParams) -> list[types.WorkspaceSymbol]:
    if ls.index is None or ls.root is None:
        return []
    rows = await asyncio.to_thread(ls.index.symbols, params.query)
    root = ls.root
    return [types.WorkspaceSymbol(
        name=name, kind=symbol_kind(kind),
        location=types.Location(uri=(root / path).as_uri(), range=types.Range(
            start=types.Position(line=line, character=col),
            end=types.Position(line=line, character=end_col))))
        for name, kind, path, line, col, end_col in rows]


COMMANDS = {CMD_STATUS: command_status, CMD_RELOAD: command_reload,
            CMD_SEARCH: command_search, CMD_REINDEX: command_reindex}
