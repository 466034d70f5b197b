"""Start Hearth under pytest-lsp's client, the way an editor does."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

from hearth_lsp.server.lsp.edits import apply_text_edits, edits_for

HERE = Path(__file__).resolve().parent
REAL_SERVER = [sys.executable, "-m", "hearth_lsp.server", "serve"]
FAKE_SERVER = [sys.executable, str(HERE / "fake_server.py")]


def capabilities(*, configuration: bool = True, resolve: bool = True) -> types.ClientCapabilities:
    return types.ClientCapabilities(
        window=types.WindowClientCapabilities(work_done_progress=True),
        workspace=types.WorkspaceClientCapabilities(
            configuration=configuration, apply_edit=True,
            did_change_configuration=types.DidChangeConfigurationClientCapabilities(),
            did_change_watched_files=types.DidChangeWatchedFilesClientCapabilities(
                dynamic_registration=True)),
        text_document=types.TextDocumentClientCapabilities(
            code_action=types.CodeActionClientCapabilities(
                data_support=True,
                resolve_support=types.ClientCodeActionResolveOptions(
                    properties=["edit", "command"] if resolve else []))))


async def start(command: list[str], root: Path, *, env: dict[str, str] | None = None,
                init_options: Any = None, configuration: dict[str, Any] | None = None,
                resolve: bool = True) -> tuple[LanguageClient, types.InitializeResult, float]:
    """Start, initialize; returns the client, the result and the initialize round trip (s)."""
    # The workspace index (and its embedding model) only where a test asks for it.
    config = ClientServerConfig(server_command=command, server_env={
        **os.environ, "HEARTH_INDEX_ENABLED": "false", **(env or {})})
    client = await config.start()
    assert isinstance(client, LanguageClient)
    client.applied_edits: list[types.ApplyWorkspaceEditParams] = []  # type: ignore[misc]
    client.registrations: list[types.Registration] = []  # type: ignore[misc]

    @client.feature(types.CLIENT_REGISTER_CAPABILITY)
    def _register(params: types.RegistrationParams):
        client.registrations.extend(params.registrations)  # type: ignore[attr-defined]

    @client.feature(types.WORKSPACE_APPLY_EDIT)
    def _apply(params: types.ApplyWorkspaceEditParams):
        client.applied_edits.append(params)  # type: ignore[attr-defined]
        return types.ApplyWorkspaceEditResult(applied=True)

    if configuration is not None:
        client.set_configuration(configuration, section="hearth")
    started = time.perf_counter()
    result = await client.initialize_session(types.InitializeParams(
        capabilities=capabilities(configuration=configuration is not None, resolve=resolve),
        root_uri=root.as_uri(), initialization_options=init_options))
    return client, result, time.perf_counter() - started


async def stop(client: LanguageClient) -> None:
    await client.shutdown_session()
    await client.stop()


async def wait_model(client: LanguageClient, want=("ready", "error"), timeout=300) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status = await client.workspace_execute_command_async(
            types.ExecuteCommandParams(command="hearth.status"))
        if status["model"] in want:
            return status
        assert time.monotonic() < deadline, f"model still {status['model']}"
        await asyncio.sleep(0.05)


def open_doc(client: LanguageClient, path: Path, language: str = "python",
             text: str | None = None, version: int = 1) -> str:
    uri = path.as_uri()
    client.text_document_did_open(types.DidOpenTextDocumentParams(types.TextDocumentItem(
        uri=uri, language_id=language, version=version,
        text=path.read_text(encoding="utf-8") if text is None else text)))
    return uri


async def actions_at(client: LanguageClient, uri: str, line: int, character: int = 0,
                     only: list[str] | None = None) -> list[types.CodeAction]:
    here = types.Position(line=line, character=character)
    result = await client.text_document_code_action_async(types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(uri=uri),
        range=types.Range(start=here, end=here),
        context=types.CodeActionContext(diagnostics=[], only=only)))
    return [a for a in result or [] if isinstance(a, types.CodeAction)]


def apply(text: str, edit: types.WorkspaceEdit, uri: str) -> str:
    return apply_text_edits(text, edits_for(edit, uri))


def progress_titles(client: LanguageClient) -> list[tuple[str, str | None]]:
    """(title, end message) for every finished progress the server reported."""
    out = []
    for reports in client.progress_reports.values():
        begin = next((r for r in reports if isinstance(r, types.WorkDoneProgressBegin)), None)
        end = next((r for r in reports if isinstance(r, types.WorkDoneProgressEnd)), None)
        if begin is not None:
            out.append((begin.title, end.message if end else None))
    return out


async def wait_until(predicate, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)
