"""The language server object: state, settings and the model's life cycle.

Handlers live in ``handlers.py`` and stay thin; this class holds what they
share. There is no module-level server: ``create_server()`` makes one.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol
from pygls.uris import to_fs_path
from pygls.workspace import TextDocument

from .. import __version__, logs
from ..engine.worker import GenerationWorker, Job, Priority
from ..index_service import IndexService
from ..local import EngineFactory, llama_engine_factory, open_result_cache
from ..models import preset_uses_chat
from ..review_state import ReviewState
from ..settings import Resolved, Settings, SettingsSources, cache_dir

log = logging.getLogger("hearth")



class HearthProtocol(LanguageServerProtocol):
    """pygls drops a request whose params do not fit its method without answering;
    an editor would wait forever. Answer it with InvalidParams instead."""

    def structure_message(self, data: dict[str, Any]):
        try:
            return super().structure_message(data)
        except JsonRpcException as exc:
            if "id" in data and "method" in data:
                self._send_response(data["id"], None, JsonRpcInvalidParams(
                    f"invalid params for {data['method']}").to_response_error())
            log.warning("dropped a malformed message: %s", exc)
            return _Ignored()


class _Ignored:
    jsonrpc = "ignored"  # handle_message skips messages that are not JSON-RPC 2.0


class HearthServer(LanguageServer):
    def __init__(self, engine_factory: EngineFactory = llama_engine_factory,
                 environ: Mapping[str, str] | None = None):
        super().__init__("hearth", __version__,
                         text_document_sync_kind=types.TextDocumentSyncKind.Incremental,
                         protocol_cls=HearthProtocol)
        self.environ = dict(os.environ if environ is None else environ)
        self.sources = SettingsSources(environ=self.environ)
        self.resolved: Resolved = self.sources.resolve()
        self.cache = cache_dir(self.environ)
        self.engine_factory = engine_factory
        self.worker = GenerationWorker()
        self._reported: set[str] = set()
        self._loaded_model: tuple[Any, ...] | None = None
        self._tokens = itertools.count(1)
        self.index: IndexService | None = None
        self.reviews = ReviewState()  # findings per document, for diagnostics
        self.background: set[asyncio.Future] = set()  # reviews on save, kept referenced
        self._index_progress: dict[str, str] = {}  # phase title -> progress token
        self.client_log = logs.ClientLogHandler(self._send_log)
        logging.getLogger().addHandler(self.client_log)
        from .handlers import register

        register(self)

    # ---------------------------------------------------------------- settings

    @property
    def settings(self) -> Settings:
        return self.resolved.settings

    @property
    def root(self) -> Path | None:
        return self.sources.root

    def apply_settings(self) -> set[tuple[str, str]]:
        """Recompute settings from every layer; report new problems; return changed keys."""
        old = self.resolved
        self.resolved = self.sources.resolve()
        if self.settings.cache.enabled != (self.worker.results is not None):
            self.worker.results = open_result_cache(self.settings, self.cache)
        logs.set_level(self.settings.log.level)
        for problem in self.resolved.problems:
            if problem not in self._reported:
                self._reported.add(problem)
                log.warning("invalid setting: %s", problem)
                self.show(f"Hearth settings: {problem}", types.MessageType.Warning)
        return self.resolved.changed_keys(old)

    def model_key(self) -> tuple[Any, ...]:
        m = self.settings.model
        return (m.preset, m.path, m.gpu_layers, m.context_length, m.threads, m.batch_size)

    # ------------------------------------------------------------------- model

    def chat_mode(self) -> bool | None:
        return preset_uses_chat(self.settings.model)

    async def load_model(self) -> None:
        """(Re)load the model on the worker thread, with `$/progress` around it."""
        key = self.model_key()
        if key == self._loaded_model and self.worker.state in ("ready", "loading"):
            return
        self._loaded_model = key
        settings, cache = self.settings, self.cache
        job: Job = self.worker.load(lambda: self.engine_factory(settings, cache))
        async with self.work_progress("Loading model") as report:
            report(f"{settings.model.path or settings.model.preset}")
            try:
                info = await asyncio.wrap_future(job.future)
            except Exception as exc:
                self.show(f"Hearth: model not loaded: {exc}", types.MessageType.Error)
                report.end(f"failed: {exc}")
                return
            load_s = getattr(self.worker.engine, "load_s", 0.0)
            log.info("model ready: %s (loaded in %.2f s)", info.describe(), load_s)
            report.end(f"ready: {info.name} on {info.where}")

    # ------------------------------------------------------------------- index

    def start_index(self) -> None:
        """Index the workspace in the background (phase 1, then embeddings)."""
        if self.index is not None or self.root is None or not self.settings.index.enabled:
            return
        loop = asyncio.get_running_loop()
        running = self.worker.running

        def busy() -> bool:
            job = running()
            return job is not None and job.priority <= Priority.USER

        def report(phase: str, message: str, pct: int | None) -> None:
            loop.call_soon_threadsafe(self._index_report, phase, message, pct)

        def open_paths() -> list[Path]:  # embedded first: what the user is looking at
            return [Path(doc.path) for doc in list(self.workspace.text_documents.values())]

        self.index = IndexService(self.root, self.cache, self.settings.index,
                                  embed=self.settings.index.embeddings, report=report, busy=busy,
                                  open_paths=open_paths)
        self.index.start()
        self._start_watcher()

    def _start_watcher(self) -> None:
        assert self.index is not None and self.root is not None
        try:
            from ...indexer.watch import Watcher

            self.watcher = Watcher(self.root, self.index.files_changed, ignore=(self.cache,))
            self.watcher.start()
        except Exception as exc:  # e.g. inotify limits: editor events still work
            log.warning("not watching %s for outside changes: %s", self.root, exc)

    def _index_report(self, phase: str, message: str, percentage: int | None) -> None:
        """Index progress from the index thread, as `$/progress` (on the loop)."""
        if not self.supports_progress():
            return
        wp = self.work_done_progress
        if phase == "":  # the current phase ended
            for title, token in list(self._index_progress.items()):
                wp.end(token, types.WorkDoneProgressEnd(message=message))
                self._index_progress.pop(title)
            return
        for title, token in list(self._index_progress.items()):
            if title != phase:  # a new phase ends the previous one
                wp.end(token, types.WorkDoneProgressEnd())
                self._index_progress.pop(title)
        if phase not in self._index_progress:
            token = self._index_progress[phase] = f"hearth/{next(self._tokens)}"
            wp.create(token)
            wp.begin(token, types.WorkDoneProgressBegin(title=f"Hearth: {phase}",
                                                        message=message, percentage=0))
        else:
            wp.report(self._index_progress[phase], types.WorkDoneProgressReport(
                message=message, percentage=percentage))

    def stop_index(self) -> None:
        watcher = getattr(self, "watcher", None)
        if watcher is not None:
            watcher.stop()
        if self.index is not None:
            self.index.stop()
            self.index = None

    # --------------------------------------------------------------- client I/O

    def _send_log(self, kind: int, message: str) -> None:
        if self.protocol.writer is None:
            return
        self.window_log_message(types.LogMessageParams(type=types.MessageType(kind),
                                                       message=message))

    def show(self, message: str, kind: types.MessageType = types.MessageType.Info) -> None:
        if self.protocol.writer is not None:
            self.window_show_message(types.ShowMessageParams(type=kind, message=message))

    def supports_progress(self) -> bool:
        window = self.client_capabilities.window if self.protocol.client_capabilities else None
        return bool(window and window.work_done_progress)

    def work_progress(self, title: str, *, cancel_key: object = None) -> Progress:
        """Progress for a task; the client's cancel stops the worker's jobs with `cancel_key`."""
        def cancel() -> None:
            self.worker.cancel_where(lambda job: job.key == cancel_key)

        return Progress(self, title, None if cancel_key is None else cancel)

    def get_document(self, uri: Any) -> TextDocument:
        """An open document, or a clear JSON-RPC error."""
        if not isinstance(uri, str) or not uri:
            raise JsonRpcInvalidParams("a document uri (string) is required")
        doc = self.workspace.text_documents.get(uri)
        if doc is None:
            raise JsonRpcInvalidParams(f"unknown document {uri}: open it (didOpen) first")
        return doc

    def document_path(self, doc: TextDocument) -> str:
        path = to_fs_path(doc.uri) or doc.uri
        if self.root is not None:
            try:
                return str(Path(path).relative_to(self.root))
            except ValueError:
                pass
        return path


class Progress:
    """Work-done progress as an async context: begin on enter, end on exit.

    Without client support it does nothing. A cancel from the client calls
    ``cancel`` (which stops the generation between two tokens).
    """

    def __init__(self, server: HearthServer, title: str,
                 cancel: Callable[[], None] | None = None):
        self.server, self.title, self.cancel = server, title, cancel
        self.token: str | None = None
        self._end_message: str | None = None

    async def __aenter__(self) -> Progress:
        if not self.server.supports_progress():
            return self
        token = f"hearth/{next(self.server._tokens)}"
        try:
            await self.server.work_done_progress.create_async(token)
        except Exception as exc:  # the client refused: carry on without progress
            log.debug("progress not created: %s", exc)
            return self
        self.token = token
        self.server.work_done_progress.begin(token, types.WorkDoneProgressBegin(
            title=self.title, cancellable=self.cancel is not None))
        future = self.server.work_done_progress.tokens.get(token)
        if future is not None and self.cancel is not None:
            cancel = self.cancel
            future.add_done_callback(lambda f: cancel() if f.cancelled() else None)
        return self

    def __call__(self, message: str, percentage: int | None = None) -> None:
        if self.token is not None:
            self.server.work_done_progress.report(
                self.token, types.WorkDoneProgressReport(message=message, percentage=percentage))

    def end(self, message: str) -> None:
        self._end_message = message

    async def __aexit__(self, *exc: object) -> None:
        if self.token is not None:
            self.server.work_done_progress.end(
                self.token, types.WorkDoneProgressEnd(message=self._end_message))
            self.server.work_done_progress.tokens.pop(self.token, None)


def create_server(**kwargs: Any) -> HearthServer:
    return HearthServer(**kwargs)
