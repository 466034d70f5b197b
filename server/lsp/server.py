"""The language server object: state, settings, the model's life cycle, progress and
cancellation. It imports no feature: ``app.create_server()`` makes a server and
registers every feature on it (there is no module-level server).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from collections.abc import Callable, Hashable, Mapping
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
from ..settings import Resolved, Settings, SettingsSources, cache_dir
from ..tasks.review.state import ReviewState
from ..tasks.runner import CancelToken, TaskRun

log = logging.getLogger("hearth")


class HearthProtocol(LanguageServerProtocol):
    """pygls drops a request whose params do not fit its method without answering;
    an editor would wait forever. Answer it with InvalidParams instead.

    `$/cancelRequest` also reaches the task: pygls runs a command's handler as a
    task of its own and only cancels the outer future, so the request would be
    answered "cancelled" while the model kept working.
    """

    def _handle_cancel_notification(self, msg_id: Any) -> None:
        server = self._server
        token = server.request_tokens.get(msg_id) if isinstance(server, HearthServer) else None
        if token is not None:
            token.cancel()
        super()._handle_cancel_notification(msg_id)

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
        # Cancellation: request id -> the task's token ($/cancelRequest), progress token
        # -> the task's token (the progress bar's cancel), task key -> the running task's
        # token (a newer request for the same thing replaces it).
        self.request_tokens: dict[Any, CancelToken] = {}
        self.progress_tokens: dict[str, CancelToken] = {}
        self.task_tokens: dict[Hashable, CancelToken] = {}
        self.client_log = logs.ClientLogHandler(self._send_log)
        logging.getLogger().addHandler(self.client_log)

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
        elif self.worker.results is not None:  # cache.maxMb takes effect at once
            self.worker.results.resize(self.settings.cache.max_mb << 20)
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

    def work_progress(self, title: str) -> Progress:
        """Progress for work that cannot be cancelled (loading the model)."""
        return Progress(self, title)

    def task(self, title: str, key: Hashable, *, priority: Priority = Priority.USER,
             fresh: bool = False) -> Progress:
        """Progress and a TaskRun for one task. Its CancelToken is fed by
        `$/cancelRequest` for the request being handled, the progress bar's cancel,
        and a newer task with the same ``key`` (which replaces this one)."""
        return Progress(self, title, TaskRun(self.worker, key, priority, fresh))

    def progress_cancelled(self, token: Any) -> None:
        """`window/workDoneProgress/cancel` for one of our tasks."""
        cancel = self.progress_tokens.get(str(token))
        if cancel is not None:
            cancel.cancel()

    def cancel_task(self, key: Hashable) -> None:
        """Cancel the running task with ``key`` (e.g. a review on save, when the
        document is saved again or closed)."""
        token = self.task_tokens.get(key)
        if token is not None:
            token.cancel()

    @staticmethod
    def check_position(doc: TextDocument, position: types.Position) -> None:
        if position.line < 0 or position.character < 0:
            raise JsonRpcInvalidParams(
                f"position {position.line}:{position.character} is negative")
        if position.line > len(doc.lines):
            raise JsonRpcInvalidParams(
                f"line {position.line} is outside {doc.uri} ({len(doc.lines)} lines)")

    # Where a document belongs: its workspace root, settings and index.
    def root_of(self, uri: str) -> Path | None:
        return self.root

    def settings_of(self, uri: str) -> Settings:
        return self.settings

    def context_fn(self, uri: str) -> Callable[[str, int, int], str] | None:
        """Retrieved context for prompts about ``uri`` (None without an index)."""
        index = self.index
        return None if index is None else index.context_text

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
    """Work-done progress as an async context: begin on enter, end on exit; for a
    task, also its TaskRun and the ways to cancel it (see HearthServer.task).

    Without client support for progress it reports nothing, but the task still
    runs and can still be cancelled.
    """

    def __init__(self, server: HearthServer, title: str, run: TaskRun | None = None):
        self.server, self.title = server, title
        self.run: TaskRun | None = run
        self.token: str | None = None
        self._end_message: str | None = None
        self._request: Any = None

    async def __aenter__(self) -> Progress:
        server, run = self.server, self.run
        if run is not None:
            server.cancel_task(run.key)  # a newer request for the same thing wins
            server.task_tokens[run.key] = run.token
            self._request = server.protocol.msg_id
            if self._request is not None:
                server.request_tokens[self._request] = run.token
        if not server.supports_progress():
            return self
        token = f"hearth/{next(server._tokens)}"
        try:
            await server.work_done_progress.create_async(token)
        except Exception as exc:  # the client refused: carry on without progress
            log.debug("progress not created: %s", exc)
            return self
        self.token = token
        if run is not None:
            server.progress_tokens[token] = run.token
        server.work_done_progress.begin(token, types.WorkDoneProgressBegin(
            title=self.title, cancellable=run is not None))
        return self

    def __call__(self, message: str, percentage: int | None = None) -> None:
        if self.token is not None:
            self.server.work_done_progress.report(
                self.token, types.WorkDoneProgressReport(message=message, percentage=percentage))

    def end(self, message: str) -> None:
        self._end_message = message

    async def __aexit__(self, *exc: object) -> None:
        server, run = self.server, self.run
        if run is not None:
            if server.task_tokens.get(run.key) is run.token:
                del server.task_tokens[run.key]
            if self._request is not None:
                server.request_tokens.pop(self._request, None)
        if self.token is not None:
            server.progress_tokens.pop(self.token, None)
            server.work_done_progress.end(
                self.token, types.WorkDoneProgressEnd(message=self._end_message))
            server.work_done_progress.tokens.pop(self.token, None)
