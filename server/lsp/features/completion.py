"""Inline completion through LSP: `textDocument/inlineCompletion` (ghost text) and,
when `completion.items` is on, `textDocument/completion` for editors without it.

The server keeps one CompletionModel (the completion worker: the task worker when
both settings name the same model, else its own, loaded on the first request) and
one CompletionSession (debounce, reuse of running and finished generations,
cancellation on a contradicting edit). This module only converts.
"""

from __future__ import annotations

import asyncio
import logging
import re
import weakref
from dataclasses import asdict
from typing import Any
from urllib.parse import unquote

from lsprotocol import types
from pygls.workspace import TextDocument

from ....indexer.languages import language_of
from ...engine.router import Backend
from ...engine.worker import Priority
from ...settings import LOCAL, Settings
from ...tasks.completion import run as completion_run
from ...tasks.completion.context import FileLines, RecentSnippets, with_repo_context
from ...tasks.completion.model import CompletionModel
from ...tasks.completion.run import CompletionRequest
from ...tasks.completion.session import CompletionSession, Suggestion
from ...tasks.runner import TaskRun
from ..common import no_actions_reason
from ..server import HearthServer

log = logging.getLogger(__name__)

KINDS: list[str] = []
CMD_STATS = "hearth.completionStats"
_WORD = re.compile(r"\w*$")


class _State:
    def __init__(self, ls: HearthServer) -> None:
        self.model = CompletionModel(ls.engine_factory, ls.cache)
        self.session = CompletionSession()
        self.files = FileLines()
        self.snippets = RecentSnippets()


_states: weakref.WeakKeyDictionary[HearthServer, _State] = weakref.WeakKeyDictionary()


def state(ls: HearthServer) -> _State:
    found = _states.get(ls)
    if found is None:
        found = _states[ls] = _State(ls)
    return found


def actions(ls: HearthServer, doc: TextDocument, params: types.CodeActionParams) -> list:
    return []


async def suggest(ls: HearthServer, doc: TextDocument, position: types.Position,
                  settings: Settings, *, multiline: bool) -> Suggestion:
    """The cleaned suggestion at ``position`` (checked: HearthServer.check_position;
    text "" when there is none)."""
    if no_actions_reason(doc.source):
        return Suggestion("", "none", "document refused")
    source = doc.source
    offset = doc.offset_at_position(position)
    request = CompletionRequest(prefix=source[:offset], suffix=source[offset:],
                                path=ls.document_path(doc),
                                language=language_of(doc.uri, doc.language_id),
                                multiline=multiline)
    st = state(ls)
    worker = st.model.worker(settings, ls.worker)
    folder = ls.folder_of(doc.uri)
    redactor = folder.redactor if folder is not None else None
    sampling = settings.completion

    # routes.completion: a model server, or "local" = the completion worker (its own
    # model, not the task model that "local" means for the other routes).
    route = [b if b.remote else Backend(LOCAL, worker)
             for b in ls.backends.route(settings, "completion")]
    rel = ls.document_path(doc)
    private = ls.local_reason(doc.uri, settings)

    def new_run() -> TaskRun:
        run = TaskRun(worker, ("completion", doc.uri), Priority.COMPLETION, redactor=redactor,
                      route=route, on_notice=lambda text: log.info("completion: %s", text))
        if private:
            run.keep_local(private)
        return run

    index = folder.index if folder is not None else None
    private_files = ls.private_files(folder) if folder is not None else None

    async def generate(run: TaskRun, req: CompletionRequest, on_piece: Any):
        if index is not None:  # after the debounce: only for a request that generates
            try:
                req = await asyncio.to_thread(
                    with_repo_context, index, req, rel, settings, st.files,
                    st.snippets.get(doc.uri), private=private_files)
                st.snippets.remember(doc.uri, req.snippet)
            except Exception:  # noqa: BLE001 - a completion goes without context, not fails
                log.debug("completion: no repository context", exc_info=True)
        return await completion_run.generate(run, st.model.format, req, sampling, on_piece)

    found = await st.session.suggest(doc.uri, request, new_run=new_run, generate=generate,
                                     debounce_s=sampling.debounce_ms / 1000,
                                     answer_within_s=sampling.answer_within_ms / 1000)
    log.debug("completion at %s:%d:%d: %s %r %s", doc.uri.rsplit("/", 1)[-1], position.line,
              position.character, found.source, found.text[:60], found.reason)
    return found


async def inline_completion(ls: HearthServer, params: types.InlineCompletionParams
                            ) -> types.InlineCompletionList | None:
    doc = ls.get_document(params.text_document.uri)
    settings = ls.settings_of(doc.uri)
    if not settings.completion.enabled:
        return None
    position = ls.check_position(doc, params.position)
    version = doc.version
    found = await suggest(ls, doc, position, settings, multiline=settings.completion.multiline)
    if not found.text or not ls.still_open(doc, version):
        # (an edit came meanwhile: the position is the old text's; the next request
        # is for the new one)
        return types.InlineCompletionList(items=[])
    here = types.Range(start=position, end=position)
    return types.InlineCompletionList(items=[
        types.InlineCompletionItem(insert_text=found.text, range=here)])


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


async def completion(ls: HearthServer, params: types.CompletionParams
                     ) -> types.CompletionList | None:
    """The suggestion as one completion item (`completion.items`), replacing the word
    before the cursor with itself plus the suggestion's first line."""
    doc = ls.get_document(params.text_document.uri)
    settings = ls.settings_of(doc.uri)
    if not (settings.completion.enabled and settings.completion.items):
        return None
    position = ls.check_position(doc, params.position)
    version = doc.version
    found = await suggest(ls, doc, position, settings, multiline=False)
    if not found.text or not ls.still_open(doc, version):
        return types.CompletionList(is_incomplete=True, items=[])
    line = doc.lines[position.line] if position.line < len(doc.lines) else ""
    before = line[: doc.offset_at_position(position)
                  - doc.offset_at_position(types.Position(line=position.line, character=0))]
    match = _WORD.search(before)
    word = match.group(0) if match else ""
    start = types.Position(line=position.line, character=position.character - _utf16_len(word))
    text = word + found.text
    label = text.strip().split("\n", 1)[0] or text.strip()
    item = types.CompletionItem(
        label=label, kind=types.CompletionItemKind.Text, detail="Hearth",
        filter_text=text, sort_text="0",
        text_edit=types.TextEdit(range=types.Range(start=start, end=position),
                                 new_text=text))
    return types.CompletionList(is_incomplete=True, items=[item])


def on_change(ls: HearthServer, params: types.DidChangeTextDocumentParams) -> None:
    """An edit that contradicts the running generation stops it at once."""
    st = _states.get(ls)
    if st is None:
        return
    doc = ls.open_document(params.text_document.uri)
    if doc is not None:
        st.session.edited(doc.uri, doc.source)


def on_close(ls: HearthServer, uri: str) -> None:
    st = _states.get(ls)
    if st is not None:
        st.session.forget(unquote(uri))


def on_shutdown(ls: HearthServer) -> None:
    st = _states.pop(ls, None)
    if st is not None:
        for gen in list(st.session.running.values()):
            gen.cancel()
        st.model.close()


async def command_stats(ls: HearthServer, *args: Any) -> dict[str, Any]:
    """`hearth.completionStats`: what the completion session did, and its model."""
    st = state(ls)
    stats = st.session.stats
    return {**asdict(stats), "reused": stats.reused, "model": st.model.status()}


COMMANDS = {CMD_STATS: command_stats}

__all__ = ["COMMANDS", "KINDS", "actions", "completion", "inline_completion", "on_change",
           "on_close", "on_shutdown", "suggest"]
