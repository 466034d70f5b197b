"""The workspace index and the model through LSP: `workspace/symbol`, search, reindex,
status and reload. No code actions."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
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
MAX_QUERY_CHARS = 1000  # a symbol name or a search, not a document

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


def _index_status(index: IndexService | None, off: str | None = None) -> dict[str, Any]:
    if index is not None:
        return index.status()
    return {"state": "off"} if off is None else {"state": "off", "reason": off}


def command_status(ls: HearthServer, *args: Any) -> dict[str, Any]:
    # The state before the engine: a load sets the engine, then "ready", so a "ready"
    # read first has its engine (read the other way round, a load finishing between
    # the two reads gave "ready" without info, and `hearth demo` failed on it).
    state, error = ls.worker.state, ls.worker.error
    engine = ls.worker.engine
    running = ls.worker.running()
    first = ls.folders.get(ls.root) if ls.root is not None else None
    return {
        "index": _index_status(ls.index, first.index_off if first else None),  # the first
        "folders": [{"root": str(f.root), "index": _index_status(f.index, f.index_off)}
                    for f in ls.folders.values()],
        "model": state,
        "error": error,
        "info": None if engine is None else {
            "name": engine.info.name, "path": engine.info.path,
            "contextLength": engine.info.context_length,
            "chatTemplate": bool(engine.info.chat_template), "where": engine.info.where,
            "warnings": engine.info.warnings},
        "running": running.kind if running else None,
        "pending": ls.worker.pending(),
        # Which backend each task goes to, and how each backend is doing.
        "routes": {f.name: getattr(ls.settings.routes, f.name)
                   for f in dataclasses.fields(ls.settings.routes)},
        "backends": ls.backends.status(),
        "lastAnswer": ls.last_answer,
    }


async def command_reload(ls: HearthServer, *args: Any) -> dict[str, Any]:
    ls.apply_settings()  # config files edited outside the editor (hearth models use)
    ls._loaded_model = None
    await ls.load_model()
    return command_status(ls)


def _indexes(ls: HearthServer) -> list[tuple[Path, IndexService]]:
    found = [(f.root, f.index) for f in ls.folders.values() if f.index is not None]
    if not found:
        raise RequestFailed("the workspace index is off (index.enabled) or there is no "
                            "workspace folder")
    return found


async def command_search(ls: HearthServer, *args: Any) -> list[dict[str, Any]]:
    """`hearth.search` [{query, k?, path?, language?}] -> results as `hearth search --json`."""
    params = args[0] if args else None
    if not isinstance(params, dict) or not isinstance(params.get("query"), str):
        raise JsonRpcInvalidParams("expected [{\"query\": string, \"k\"?: int}]")
    if len(params["query"]) > MAX_QUERY_CHARS:
        raise JsonRpcInvalidParams(f"the query has {len(params['query'])} characters; at most "
                                   f"{MAX_QUERY_CHARS} are searched")
    k = params.get("k", 10)
    if not isinstance(k, int) or not 1 <= k <= 200:
        raise JsonRpcInvalidParams("'k' must be an integer from 1 to 200")
    indexes = _indexes(ls)
    found: list[tuple[float, dict[str, Any]]] = []
    for root, index in indexes:
        try:
            results = await asyncio.to_thread(index.search, params["query"], k,
                                              params.get("path"), params.get("language"))
        except IndexNotReady as exc:
            raise RequestFailed(str(exc)) from exc
        for r in results:  # several folders: each result says whose it is
            item = r.as_dict() if len(indexes) == 1 else {**r.as_dict(), "root": str(root)}
            found.append((r.score, item))
    found.sort(key=lambda pair: -pair[0])
    return [item for _, item in found[:k]]


def command_reindex(ls: HearthServer, *args: Any) -> dict[str, Any]:
    params = args[0] if args and isinstance(args[0], dict) else {}
    indexes = _indexes(ls)
    for _, index in indexes:
        index.reindex(rebuild=bool(params.get("rebuild")))
    return indexes[0][1].status()


async def workspace_symbol(ls: HearthServer,
                           params: types.WorkspaceSymbolParams) -> list[types.WorkspaceSymbol]:
    if len(params.query) > MAX_QUERY_CHARS:
        raise JsonRpcInvalidParams(f"the query has {len(params.query)} characters; at most "
                                   f"{MAX_QUERY_CHARS} are searched")
    out: list[types.WorkspaceSymbol] = []
    for folder in list(ls.folders.values()):
        if folder.index is None:
            continue
        rows = await asyncio.to_thread(folder.index.symbols, params.query)
        out.extend(types.WorkspaceSymbol(
            name=name, kind=symbol_kind(kind),
            location=types.Location(uri=(folder.root / path).as_uri(), range=types.Range(
                start=types.Position(line=line, character=col),
                end=types.Position(line=line, character=end_col))))
            for name, kind, path, line, col, end_col in rows)
    return out


COMMANDS = {CMD_STATUS: command_status, CMD_RELOAD: command_reload,
            CMD_SEARCH: command_search, CMD_REINDEX: command_reindex}
