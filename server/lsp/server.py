"""The language server object: state, settings, the model's life cycle, progress and
cancellation. It imports no feature: ``app.create_server()`` makes a server and
registers every feature on it (there is no module-level server).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hmac
import itertools
import logging
import os
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable, Generator, Hashable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from lsprotocol import types
from pygls.exceptions import (
    JsonRpcException,
    JsonRpcInternalError,
    JsonRpcInvalidParams,
    JsonRpcInvalidRequest,
    JsonRpcServerNotInitialized,
)
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol
from pygls.protocol.language_server import lsp_method
from pygls.uris import to_fs_path
from pygls.workspace import TextDocument

from ...indexer.discovery import too_broad
from ...indexer.secrets import Redactor, is_env_file, is_secret_file
from .. import __version__, logs
from ..engine.router import Backends
from ..engine.shared_worker import SharedWorker
from ..engine.worker import GenerationWorker, Job, Priority
from ..index_service import IndexService
from ..local import (
    EngineFactory,
    engine_factory_for,
    llama_engine_factory,
    model_file_bytes,
    open_result_cache,
)
from ..models import preset_uses_chat
from ..settings import (
    WORKSPACE_FILE,
    Resolved,
    Settings,
    SettingsSources,
    cache_dir,
    local_only,
    user_config_path,
)
from ..tasks.review.state import ReviewState
from ..tasks.runner import CancelToken, TaskRun, shareable_context
from .documents import as_lsp_workspace
from .framing import handler_for, read_messages

log = logging.getLogger("hearth")
# Settings problems shown in one message; the rest are counted there, and logged.
SHOWN_PROBLEMS = 3


class HearthProtocol(LanguageServerProtocol):
    """pygls drops a request whose params do not fit its method without answering;
    an editor would wait forever. Answer it with InvalidParams instead.

    `$/cancelRequest` also reaches the task: pygls runs a command's handler as a
    task of its own and only cancels the outer future, so the request would be
    answered "cancelled" while the model kept working.

    A malformed answer to one of the server's own requests (progress, applyEdit,
    configuration) fails that request, so the handler awaiting it carries on;
    pygls dropped it and the handler, and the editor's request, waited forever.
    Expected protocol errors cost one log line each, not a traceback (see
    _OneLineErrors).
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._asked: set[Any] = set()  # ids of our requests to the client, not answered yet
        self._initialize_seen = False
        pygls_log = logging.getLogger("pygls.protocol.json_rpc")
        if not any(isinstance(f, _OneLineErrors) for f in pygls_log.filters):
            pygls_log.addFilter(_OneLineErrors())

    @property  # type: ignore[override]
    def _workspace(self) -> Any:
        return self.__dict__.get("_lsp_workspace")

    @_workspace.setter
    def _workspace(self, workspace: Any) -> None:
        # pygls sets this in its `initialize`; its documents then split lines as the
        # LSP does (see documents.py).
        self.__dict__["_lsp_workspace"] = as_lsp_workspace(workspace)

    def handle_message(self, msg: Any) -> None:
        """With a token required (`hearth serve --tcp --token-file`), nothing is handled
        until an `initialize` brings it: every other request is refused."""
        server = self._server
        if isinstance(server, HearthServer) and server.required_token and not server.authed:
            method, msg_id = getattr(msg, "method", None), getattr(msg, "id", None)
            options = getattr(getattr(msg, "params", None), "initialization_options", None)
            given = options.get("token") if isinstance(options, dict) else None
            if method == types.INITIALIZE and isinstance(given, str) and hmac.compare_digest(
                    given.encode(), server.required_token.encode()):
                server.authed = True
            else:
                log.warning("refused %s from a client without the token", method or "a message")
                if msg_id is not None and method is not None:
                    self._send_response(msg_id, None, JsonRpcInvalidRequest(
                        "this server needs a token: send it as initializationOptions.token "
                        "in initialize").to_response_error())
                return
        refusal = self._out_of_turn(msg)
        if refusal is not None:
            method, msg_id = getattr(msg, "method", None), msg.id
            log.warning("refused %s (id %r): %s", method, msg_id, refusal.message)
            self._send_response(msg_id, None, refusal.to_response_error())
            return
        super().handle_message(msg)

    def _out_of_turn(self, msg: Any) -> JsonRpcException | None:
        """The error for a request the life cycle does not allow now, or None. pygls
        answered a request before `initialize` with an internal error and a traceback,
        accepted a second `initialize` (moving the workspace to its root), and left
        every request after `shutdown` unanswered: the editor waited forever."""
        method, msg_id = getattr(msg, "method", None), getattr(msg, "id", None)
        if msg_id is None or method is None:  # a notification, or an answer to us
            return None
        if method == types.INITIALIZE:
            if self._initialize_seen:
                return JsonRpcInvalidRequest("the server is already initialized")
            self._initialize_seen = True
            return None
        if self._shutdown and method != types.EXIT:
            return JsonRpcInvalidRequest("the server is shutting down: only exit is allowed")
        if not self._initialize_seen:
            return JsonRpcServerNotInitialized(f"{method} before initialize")
        return None

    def _handle_cancel_notification(self, msg_id: Any) -> None:
        if not isinstance(msg_id, (int, str)):  # cattrs lets a list or an object through
            log.warning("dropped a $/cancelRequest for %.40r: not a request id", msg_id)
            return
        server = self._server
        if isinstance(server, HearthServer):
            token = server.request_tokens.get(msg_id)
            if token is not None:
                token.cancel()
            elif msg_id in self._request_futures:
                # The request's task has not taken a step yet (a request and its cancel
                # read together): its task cancels itself when it starts.
                server.cancelled_early[msg_id] = None
                while len(server.cancelled_early) > 256:  # ids of requests that had no task
                    server.cancelled_early.pop(next(iter(server.cancelled_early)))
        super()._handle_cancel_notification(msg_id)

    @lsp_method(types.WINDOW_WORK_DONE_PROGRESS_CANCEL)
    def lsp_work_done_progress_cancel(self, params: types.WorkDoneProgressCancelParams
                                      ) -> Generator[Any, Any, None]:
        """A token that is neither a string nor an integer is dropped with a log line:
        pygls looked it up in a dict, and a list raised a TypeError that reached the
        user as an "Error in server" popup."""
        if not isinstance(params.token, (int, str)):
            log.warning("dropped a window/workDoneProgress/cancel for %.40r: not a progress "
                        "token", params.token)
            return
        yield from super().lsp_work_done_progress_cancel(params)

    def _execute_handler(self, msg_id: Any, handler: Any, callback: Any,
                         args: Any = None, kwargs: Any = None) -> None:
        """pygls keeps the future of every handler it runs in `_request_futures`, and
        removes it only when it answers a request: a notification handled by one of its
        own generators (didOpen, didChange, didClose) and a command's handler, both run
        under a fresh uuid, stayed there for good (fuzzed, RSS grew 66 -> 123 MiB in
        25,000 messages). Every future leaves once it is done."""
        super()._execute_handler(msg_id, handler, callback, args, kwargs)
        future = self._request_futures.get(msg_id)
        if future is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a direct call): forget at once
            future.add_done_callback(lambda done: self._forget(msg_id, done))
            return
        # On the loop, later: a future can finish while pygls iterates the dict (shutdown
        # cancels them all), or on a worker thread (thread handlers).
        future.add_done_callback(
            lambda done: loop.call_soon_threadsafe(self._forget, msg_id, done))

    def _forget(self, msg_id: Any, done: Any) -> None:
        if self._request_futures.get(msg_id) is done:
            del self._request_futures[msg_id]
        if not done.cancelled():
            # Seen: pygls reads it, except from a command's handler whose request was
            # cancelled (answered "cancelled" already); asyncio would log it when freed.
            done.exception()

    def send_request(self, method: str, params: Any | None = None,
                     callback: Callable[[Any], None] | None = None,
                     msg_id: Any = None) -> Any:
        msg_id = str(uuid.uuid4()) if msg_id is None else msg_id
        self._asked.add(msg_id)
        return super().send_request(method, params, callback, msg_id)

    def _handle_response(self, msg_id: Any, result: Any = None, error: Any = None) -> None:
        """Only answers to our own requests: pygls would hand an answer that borrows the
        id of a request being handled to that request's task (and raise)."""
        if msg_id not in self._asked:
            log.warning("dropped an answer to %.40r, which the server never asked", msg_id)
            return
        self._asked.discard(msg_id)
        self._result_types.pop(msg_id, None)  # pygls leaves it there after an error
        super()._handle_response(msg_id, result, error)

    def structure_message(self, data: dict[str, Any]):
        try:
            return super().structure_message(data)
        except JsonRpcException as exc:
            why = _why(exc)
            raw = data.get("id")
            msg_id = raw if isinstance(raw, (int, str)) and not isinstance(raw, bool) else None
            if "method" in data:
                if msg_id is not None:  # a request (one with an unusable id cannot be answered)
                    self._send_response(msg_id, None, JsonRpcInvalidParams(
                        f"invalid params for {data['method']}: {why}").to_response_error())
                log.warning("dropped a malformed %.80s message: %s", data["method"], why)
            else:  # an answer: to one of our requests, fail that request (the handler
                # awaiting it would wait forever)
                future = None
                if msg_id is not None and msg_id in self._asked:
                    self._asked.discard(msg_id)
                    self._result_types.pop(msg_id, None)
                    future = self._request_futures.pop(msg_id, None)
                if future is not None and not future.done():
                    future.set_exception(JsonRpcInternalError(
                        f"the client's answer could not be read: {why}"))
                log.warning("dropped a malformed answer (id %.40r): %s", msg_id, why)
            return _Ignored()


class _Ignored:
    jsonrpc = "ignored"  # handle_message skips messages that are not JSON-RPC 2.0


def _why(exc: JsonRpcException) -> str:
    """What was wrong with a message pygls could not structure, in one line."""
    cause = exc.__cause__
    if cause is None:
        return str(exc)[:300]
    try:
        from cattrs import transform_error

        return "; ".join(transform_error(cause, path="message"))[:300]
    except Exception:  # not a cattrs error
        return f"{type(cause).__name__}: {cause}"[:300]


class _OneLineErrors(logging.Filter):
    """pygls logs a traceback for each JSON-RPC error it answers (an unknown document,
    bad params, a refused task) and for each message it cannot structure: fuzzed, 600
    messages made 1,800 tracebacks. These are one line each here (the message it
    could not structure is logged, with the reason, by HearthProtocol). Tracebacks
    stay for InternalError and for any other exception: a handler that broke."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and record.msg.startswith("Unable to deserialize"):
            return False
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, JsonRpcException) and not isinstance(exc, JsonRpcInternalError):
            message = f"{record.getMessage()}: {type(exc).__name__}: {exc}"
            record.msg, record.args = message[:500], ()
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


@dataclass
class Folder:
    """One workspace folder: its own root, `.hearth.toml` (settings), index and watcher."""

    root: Path
    sources: SettingsSources
    resolved: Resolved
    index: IndexService | None = None
    index_off: str | None = None  # why this folder is not indexed although index.enabled
    watcher: Any = None
    _redactor: Redactor | None = None

    @property
    def settings(self) -> Settings:
        return self.resolved.settings

    @property
    def redactor(self) -> Redactor:
        """Secrets of this folder (its `.env*` values, well-known shapes), read lazily."""
        if self._redactor is None:
            self._redactor = Redactor.for_workspace(self.root)
            logs.remember_secrets(self._redactor.values)  # the log hides them too
        return self._redactor

    def contains(self, path: Path) -> bool:
        return _under(str(path), str(self.root))

    @functools.cached_property
    def real_root(self) -> Path:
        """The root with its links resolved (once: asked at every completion)."""
        return self.root.resolve()

    @functools.cached_property
    def bases(self) -> tuple[str, ...]:
        """The root as given and as it really is, as strings."""
        return tuple(dict.fromkeys((str(self.root), str(self.real_root))))


def _under(path: str, base: str) -> bool:
    """Whether ``path`` is ``base`` or below it (absolute paths as strings)."""
    return path == base or path.startswith(base if base.endswith(os.sep) else base + os.sep)


class HearthServer(LanguageServer):
    def __init__(self, engine_factory: EngineFactory = llama_engine_factory,
                 environ: Mapping[str, str] | None = None, required_token: str | None = None):
        super().__init__("hearth", __version__,
                         text_document_sync_kind=types.TextDocumentSyncKind.Incremental,
                         protocol_cls=HearthProtocol)
        self.environ = dict(os.environ if environ is None else environ)
        self.required_token, self.authed = required_token, False
        self.sources = SettingsSources(environ=self.environ)
        self.resolved: Resolved = self.sources.resolve()
        self.cache = cache_dir(self.environ)
        self.engine_factory = engine_factory
        # The "local" model of the routes: in this process, or the shared daemon's
        # (model.shared), whose jobs SharedWorker hands on side by side.
        self.worker: GenerationWorker = SharedWorker()
        self.backends = Backends(self.worker)  # and the model servers of the routes
        self._reported: set[Hashable] = set()  # problems and notices already shown
        self._loaded_model: tuple[Any, ...] | None = None
        self._tokens = itertools.count(1)
        # Workspace folders by root; the first one's settings also choose the model.
        self.folders: dict[Path, Folder] = {}
        self.reviews = ReviewState()  # findings per document, for diagnostics
        self.background: set[asyncio.Future] = set()  # reviews on save, kept referenced
        self._index_progress: dict[str, str] = {}  # progress title -> progress token
        # The last task that reached a model: which backend answered, and why others
        # did not (hearth.status; editors show it next to the model's state).
        self.last_answer: dict[str, Any] | None = None
        self._config_watcher: Any = None
        # Cancellation: request id -> the task's token ($/cancelRequest), progress token
        # -> the task's token (the progress bar's cancel), task key -> the running task's
        # token (a newer request for the same thing replaces it).
        self.request_tokens: dict[Any, CancelToken] = {}
        self.progress_tokens: dict[str, CancelToken] = {}
        self.task_tokens: dict[Hashable, CancelToken] = {}
        self.cancelled_early: dict[Any, None] = {}  # request ids cancelled before their task ran
        self.client_log = logs.ClientLogHandler(self._send_log)
        logging.getLogger().addHandler(self.client_log)

    # ----------------------------------------------------------------- transport

    def start_io(self, stdin: Any = None, stdout: Any = None) -> None:
        """pygls' stdio loop with Hearth's forgiving reader (see framing.py)."""
        from pygls.io_ import StdinAsyncReader, StdoutWriter

        self._stop_event = threading.Event()
        reader = StdinAsyncReader(stdin or sys.stdin.buffer, self.thread_pool)
        self.protocol.set_writer(StdoutWriter(stdout or sys.stdout.buffer))
        try:
            asyncio.run(read_messages(self._stop_event, reader, handler_for(self.protocol)))
        except BrokenPipeError:
            log.error("the connection to the client is lost; shutting down")
        except (KeyboardInterrupt, SystemExit):
            pass
        finally:
            self.shutdown()

    def start_tcp(self, host: str, port: int) -> None:
        """pygls' TCP loop (one client) with Hearth's forgiving reader."""
        self._stop_event = stop = threading.Event()

        async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.protocol.set_writer(writer)  # type: ignore[arg-type]
            await read_messages(stop, reader, handler_for(self.protocol))
            self.shutdown()

        async def serve() -> None:
            self._server = await asyncio.start_server(connection, host, port)
            async with self._server:
                await self._server.serve_forever()

        try:
            asyncio.run(serve())
        except asyncio.CancelledError:
            log.debug("the TCP server was cancelled")

    # ---------------------------------------------------------------- settings

    @property
    def settings(self) -> Settings:
        return self.resolved.settings

    @property
    def root(self) -> Path | None:
        """The first workspace folder (None: no folder)."""
        return self.sources.root

    @property
    def index(self) -> IndexService | None:
        """The first folder's index (see folder_of for a document's own)."""
        folder = self.folders.get(self.root) if self.root is not None else None
        return folder.index if folder is not None else None

    def set_folders(self, roots: list[Path]) -> None:
        """The workspace folders at `initialize`; the first is the primary one."""
        self.sources.root = roots[0] if roots else None
        self.folders = {}
        for root in roots:
            self._add_folder(root)

    def _add_folder(self, root: Path) -> Folder:
        sources = self.sources if root == self.sources.root else dataclasses.replace(
            self.sources, root=root)
        folder = self.folders[root] = Folder(root, sources, sources.resolve())
        return folder

    def add_folder(self, root: Path) -> None:
        """`workspace/didChangeWorkspaceFolders`: a folder joined the workspace."""
        if root in self.folders:
            return
        if self.sources.root is None:
            self.sources.root = root
        self._add_folder(root)
        self.apply_settings()
        self.start_index()

    def remove_folder(self, root: Path) -> None:
        folder = self.folders.pop(root, None)
        if folder is None:
            return
        self._stop_folder_index(folder)
        if root == self.sources.root:  # the next folder becomes the primary one
            self.sources.root = next(iter(self.folders), None)
            if self.sources.root is not None:
                self.folders[self.sources.root].sources = self.sources
        self.apply_settings()

    def folder_of(self, uri: str) -> Folder | None:
        """The workspace folder holding ``uri`` (the innermost, when nested)."""
        path = to_fs_path(uri) if uri.startswith("file:") else uri
        if not path:
            return None
        p = Path(path)
        holding = [f for f in self.folders.values() if f.contains(p)]
        return max(holding, key=lambda f: len(f.root.parts)) if holding else None

    def apply_settings(self) -> set[tuple[str, str]]:
        """Recompute settings from every layer; report new problems; return changed keys."""
        old = self.resolved
        self.resolved = self.sources.resolve()
        for folder in self.folders.values():
            if folder.sources is not self.sources:  # the client's layers are shared
                folder.sources.initialization_options = self.sources.initialization_options
                folder.sources.client_configuration = self.sources.client_configuration
            folder.resolved = self.resolved if folder.sources is self.sources \
                else folder.sources.resolve()
        if self.settings.cache.enabled != (self.worker.results is not None):
            self.worker.results = open_result_cache(self.settings, self.cache)
            self.backends.share_results(self.worker.results)
        elif self.worker.results is not None:  # cache.maxMb takes effect at once
            self.worker.results.resize(self.settings.cache.max_mb << 20)
        self.backends.prune(self.all_settings())
        logs.set_level(self.settings.log.level)
        problems = [*self.resolved.problems, *(p for f in self.folders.values()
                                               if f.sources is not self.sources
                                               for p in f.resolved.problems)]
        for folder in self.folders.values():
            if folder.resolved.untrusted:
                keys = ", ".join(folder.resolved.untrusted)
                self.say_once(("untrusted", folder.root, keys),
                              f"Hearth ignored {keys} from {folder.root / WORKSPACE_FILE}: the "
                              f"folder is not trusted. Trust it with `hearth trust "
                              f"{folder.root}` (in VS Code, by trusting the workspace; in "
                              f"Neovim, :HearthTrust) to use them.")
        new = [p for p in dict.fromkeys(problems) if p not in self._reported]
        for problem in new:
            self._reported.add(problem)
            log.warning("invalid setting: %s", problem)
        # One message however many: a .hearth.toml of 2,000 unknown keys was 2,000
        # popups. The log has them all.
        if new:
            more = len(new) - SHOWN_PROBLEMS
            self.show("Hearth settings: " + "; ".join(new[:SHOWN_PROBLEMS])
                      + (f"; and {more} more (see the log)" if more > 0 else ""),
                      types.MessageType.Warning)
        return self.resolved.changed_keys(old)

    def all_settings(self) -> list[Settings]:
        return [self.settings, *(f.settings for f in self.folders.values())]

    def shutdown(self) -> None:
        if self._config_watcher is not None:
            self._config_watcher.stop()
        self.backends.shutdown()
        super().shutdown()

    def model_key(self) -> tuple[Any, ...]:
        m = self.settings.model
        return (m.preset, m.path, m.gpu_layers, m.context_length, m.threads, m.batch_size,
                m.shared)

    # ------------------------------------------------------------------- model

    def chat_mode(self) -> bool | None:
        return preset_uses_chat(self.settings.model)

    async def load_model(self) -> None:
        """(Re)load the model on the worker thread, with `$/progress` around it."""
        key = self.model_key()
        if key == self._loaded_model and self.worker.state in ("ready", "loading"):
            return
        if not self.backends.uses_local(self.all_settings()):
            log.info("no route names the local model (routes.*): not loading it")
            return
        self._loaded_model = key
        settings, cache = self.settings, self.cache
        factory = engine_factory_for(settings, self.engine_factory)  # model.shared: the daemon
        job: Job = self.worker.load(lambda: factory(settings, cache))
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
            for warning in info.warnings:  # e.g. fewer GPU layers than asked, and why
                self.say_once(("model warning", warning), f"Hearth: {warning}")
            engine: Any = self.worker.engine
            if hasattr(engine, "on_notice"):  # the shared daemon: a fallback mid-answer
                loop = asyncio.get_running_loop()
                engine.on_notice = lambda text: loop.call_soon_threadsafe(
                    self.say_once, ("model warning", text), f"Hearth: {text}")
            report.end(f"ready: {info.name} on {info.where}")

    # ------------------------------------------------------------------- index

    def start_index(self) -> None:
        """Index every workspace folder in the background (phase 1, then embeddings)."""
        for folder in list(self.folders.values()):
            if folder.index is None and folder.settings.index.enabled:
                folder.index_off = too_broad(folder.root)
                if folder.index_off is None:
                    self._start_folder_index(folder)
                else:
                    self.say_once(("index off", folder.root),
                                  f"Hearth: not indexing {folder.root}: {folder.index_off}. "
                                  "Open a project's folder for workspace search and context "
                                  "in prompts; the other features work without them.")

    def _start_folder_index(self, folder: Folder) -> None:
        loop = asyncio.get_running_loop()
        running = self.worker.running
        # With several folders, each one's progress says which it is.
        label = f" ({folder.root.name})" if len(self.folders) > 1 else ""

        def busy() -> bool:
            job = running()
            return job is not None and job.priority <= Priority.USER

        def report(phase: str, message: str, pct: int | None) -> None:
            loop.call_soon_threadsafe(self._index_report, phase and phase + label, message, pct,
                                      label)

        def open_paths() -> list[Path]:  # embedded first: what the user is looking at
            return [p for p in (Path(doc.path) for doc in
                                list(self.workspace.text_documents.values()))
                    if folder.contains(p)]

        settings = folder.settings.index
        folder.index = IndexService(folder.root, self.cache, settings, embed=settings.embeddings,
                                    report=report, busy=busy, open_paths=open_paths,
                                    load_embedder=self._shared_embedder(loop))
        folder.index.start()
        try:
            from ...indexer.watch import Watcher

            folder.watcher = Watcher(folder.root, folder.index.files_changed,
                                     ignore=(self.cache,))
            folder.watcher.start()
        except Exception as exc:  # e.g. inotify limits: editor events still work
            log.warning("not watching %s for outside changes: %s", folder.root, exc)

    def _shared_embedder(self, loop: asyncio.AbstractEventLoop) -> Any:
        """With the model on the shared daemon, the index's embedding model is the
        daemon's too (no torch in this window); None: loaded in this process."""
        model = self.settings.model
        if not (model.shared and self.backends.uses_local(self.all_settings())):
            return None
        from ..engine.daemon_embedder import shared_embedder

        def notice(text: str) -> None:
            loop.call_soon_threadsafe(self.say_once, ("index warning", text), f"Hearth: {text}")

        def load(folder: Path | None, backend: str) -> Any:
            return shared_embedder(model, self.cache, folder, backend=backend,
                                   on_notice=notice)

        return load

    def files_changed(self, paths: list[Path]) -> None:
        """Saves and file events: each folder's index re-reads its own files; a changed
        settings file (a folder's `.hearth.toml`, the user config) is read again."""
        config = user_config_path(self.environ)
        if any(p == config or (p.name == WORKSPACE_FILE and p.parent in self.folders)
               for p in paths):
            self._reload_settings_soon()
        for folder in self.folders.values():
            mine = [p for p in paths if folder.contains(p)]
            if any(is_env_file(p.name) for p in mine):
                folder._redactor = None  # read the new values on the next task
            if folder.index is not None and mine:
                folder.index.files_changed(mine)

    def _reload_settings_soon(self) -> None:
        async def reload() -> None:
            if self.apply_settings():
                await self.load_model()
        future = asyncio.ensure_future(reload())
        self.background.add(future)
        future.add_done_callback(self.background.discard)

    def watch_user_config(self) -> None:
        """Re-read settings when the user config file changes outside the editor (`hearth
        models use`, another editor): the client only watches the workspace."""
        config = user_config_path(self.environ)
        if not config.parent.is_dir():
            return
        loop = asyncio.get_running_loop()

        def changed(paths: list[Path]) -> None:
            if config.resolve() in [p.resolve() for p in paths]:
                loop.call_soon_threadsafe(self.files_changed, [config])
        try:
            from ...indexer.watch import Watcher

            # Only the folder itself: the config may sit in a big folder (HEARTH_CONFIG_FILE
            # in a home directory), and watching all below it would see every log write.
            self._config_watcher = Watcher(config.parent, changed, recursive=False)
            self._config_watcher.start()
        except Exception as exc:  # inotify limits: editor settings still apply
            log.debug("not watching %s: %s", config, exc)

    def _index_report(self, phase: str, message: str, percentage: int | None,
                      folder: str = "") -> None:
        """Index progress from an index thread, as `$/progress` (on the loop). ``folder``
        ends each phase title of that folder's index ("" with one folder)."""
        if not self.supports_progress():
            return
        wp = self.work_done_progress
        mine = [t for t in self._index_progress if t.endswith(folder)] if folder \
            else list(self._index_progress)
        if phase == "":  # the current phase ended
            for title in mine:
                wp.end(self._index_progress.pop(title), types.WorkDoneProgressEnd(
                    message=message))
            return
        for title in mine:
            if title != phase:  # a new phase ends the previous one
                wp.end(self._index_progress.pop(title), types.WorkDoneProgressEnd())
        if phase not in self._index_progress:
            token = self._index_progress[phase] = f"hearth/{next(self._tokens)}"
            wp.create(token)
            wp.begin(token, types.WorkDoneProgressBegin(title=f"Hearth: {phase}",
                                                        message=message, percentage=0))
        else:
            wp.report(self._index_progress[phase], types.WorkDoneProgressReport(
                message=message, percentage=percentage))

    def stop_index(self) -> None:
        for folder in self.folders.values():
            self._stop_folder_index(folder)

    @staticmethod
    def _stop_folder_index(folder: Folder) -> None:
        if folder.watcher is not None:
            folder.watcher.stop()
            folder.watcher = None
        if folder.index is not None:
            folder.index.stop()
            folder.index = None

    # --------------------------------------------------------------- client I/O

    def _send_log(self, kind: int, message: str) -> None:
        if self.protocol.writer is None:
            return
        self.window_log_message(types.LogMessageParams(type=types.MessageType(kind),
                                                       message=message))

    def say_once(self, key: Hashable, message: str) -> None:
        """A warning shown once per ``key`` (e.g. per document), not on every request."""
        if key not in self._reported:
            self._reported.add(key)
            log.warning("%s", message)
            self.show(message, types.MessageType.Warning)

    def show(self, message: str, kind: types.MessageType = types.MessageType.Info) -> None:
        if self.protocol.writer is not None:
            self.window_show_message(types.ShowMessageParams(type=kind, message=message))

    def supports_progress(self) -> bool:
        window = self.client_capabilities.window if self.protocol.client_capabilities else None
        return bool(window and window.work_done_progress)

    def work_progress(self, title: str) -> Progress:
        """Progress for work that cannot be cancelled (loading the model)."""
        return Progress(self, title)

    def task(self, title: str, key: Hashable, *, route: str, priority: Priority = Priority.USER,
             fresh: bool = False, uri: str | None = None) -> Progress:
        """Progress and a TaskRun for one task about ``uri``, on the backends of
        ``routes.<route>`` of the folder holding it. Its CancelToken is fed by
        `$/cancelRequest` for the request being handled, the progress bar's cancel,
        and a newer task with the same ``key`` (which replaces this one). Its prompts
        go through the redactor of the folder holding ``uri``."""
        folder = self.folder_of(uri) if uri else None
        redactor = folder.redactor if folder is not None else Redactor()
        settings = folder.settings if folder is not None else self.settings
        run = TaskRun(self.worker, key, priority, fresh, redactor=redactor,
                      route=self.backends.route(settings, route), on_notice=self.fallback_notice)
        why = self.local_reason(uri, settings) if uri else None
        if why:
            run.keep_local(why)
        return Progress(self, title, run)

    def local_reason(self, uri: str, settings: Settings) -> str | None:
        """Why a task about ``uri`` must not leave the machine, or None. By its name
        (a secret file), by privacy.localOnly, matched against the path as the editor
        gave it and as it really is (a link into a local-only folder), and for anything
        outside every workspace folder or not a file (`fugitive://`, `untitled:`): the
        settings of no folder say it may go. With folders nested, each holding folder's
        patterns count, from its own root (``settings`` stand for the innermost's)."""
        path = to_fs_path(uri) if uri.startswith("file:") else None
        if not path:
            return f"{uri.split(':', 1)[0]}: documents are not files of the workspace"
        given = Path(path)
        if is_secret_file(given):  # by its name, or a folder such as ~/.ssh
            return f"{given.name} is a secret file"
        try:
            real = given.resolve()
        except (OSError, RuntimeError, ValueError):
            return f"{given} cannot be resolved"
        if is_secret_file(real):
            return f"{given.name} leads to a secret file"
        # Strings, not pathlib: asked for each file of a completion's context.
        for candidate in (str(given), str(real)):
            holding = [(f, base) for f in self.folders.values() for base in f.bases
                       if _under(candidate, base)]
            if not holding:
                return f"{candidate} is outside the workspace folders"
            inner = max(len(base) for _, base in holding)  # the innermost folder's
            for folder, base in holding:
                rel = candidate[len(base):].lstrip(os.sep).replace(os.sep, "/")
                if rel and local_only(settings if len(base) == inner else folder.settings,
                                      [rel]):
                    return f"{rel} is local-only (privacy.localOnly)"
        return None

    def model_bytes(self, settings: Settings, route: str) -> int:
        """The size of the GGUF file the local model of ``routes.<route>`` (in the folder
        ``settings``) is loaded from, known without waiting for a load in progress; 0 when
        a model server comes first or a test's engine stands in for llama.cpp."""
        factory = None if self.engine_factory is llama_engine_factory else self.engine_factory
        return model_file_bytes(self.settings, self.cache, getattr(settings.routes, route),
                                factory)

    def fallback_notice(self, text: str) -> None:
        """A backend was skipped or failed and the next one of the route runs: shown
        once per kind of failure (the countdowns in it vary), logged every time."""
        self.say_once(("fallback", re.sub(r"\d+", "#", text)), f"Hearth: {text}")

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
    def check_position(doc: TextDocument, position: types.Position) -> types.Position:
        """``position``, or a clear error when it is not in ``doc``. A character past the
        end of its line is the line's end, as LSP says: a new Position (pygls moves one
        past the end to the line's last character, before it, and changes the
        request's own object)."""
        if position.line < 0 or position.character < 0:
            raise JsonRpcInvalidParams(
                f"position {position.line}:{position.character} is negative")
        HearthServer.check_line(doc, position.line)
        line = doc.lines[position.line] if position.line < len(doc.lines) else ""
        units = line.rstrip("\r\n").encode("utf-16-le", "surrogatepass")
        character = min(position.character, len(units) // 2)
        if character and 0xD800 <= int.from_bytes(units[2 * character - 2:2 * character],
                                                  "little") <= 0xDBFF:
            # Text put there would split the character in two (an emoji's halves).
            raise JsonRpcInvalidParams(
                f"position {position.line}:{position.character} is inside a character "
                "(between the two UTF-16 halves of a surrogate pair)")
        return types.Position(line=position.line, character=character)

    @staticmethod
    def check_line(doc: TextDocument, line: int) -> None:
        """A clear error when ``line`` (from a command's arguments, any size) is not a
        line of ``doc``; the one after the last is, as for an edit at the end."""
        if not 0 <= line <= len(doc.lines):
            raise JsonRpcInvalidParams(f"line {line} is outside {doc.uri} ({len(doc.lines)} lines)")

    def still_open(self, doc: TextDocument, version: int | None) -> bool:
        """Whether ``doc`` is still the document open under its URI, at ``version``. A
        file closed and opened again is another document, and VS Code starts its
        versions at 1 again: an edit for the old text would land on the new one."""
        return self.open_document(doc.uri) is doc and doc.version == version

    # Where a document belongs: its workspace folder's root, settings and index.
    def root_of(self, uri: str) -> Path | None:
        folder = self.folder_of(uri)
        return folder.root if folder is not None else None

    def settings_of(self, uri: str) -> Settings:
        folder = self.folder_of(uri)
        return folder.settings if folder is not None else self.settings

    def context_fn(self, uri: str) -> Callable[[str, int, int], str] | None:
        """Retrieved context for prompts about ``uri`` (None without an index)."""
        folder = self.folder_of(uri)
        index = folder.index if folder is not None else None
        if index is None or folder is None:
            return None
        return shareable_context(index, folder.settings, self.private_files(folder))

    def private_files(self, folder: Folder) -> Callable[[str], bool]:
        """Whether a file of ``folder`` (its path there) must stay local, judged as a
        task about it would be (a folder inside it has its own privacy.localOnly)."""
        def private(rel: str) -> bool:
            uri = (folder.root / rel).as_uri()
            return self.local_reason(uri, self.settings_of(uri)) is not None
        return private

    def open_document(self, uri: str) -> TextDocument | None:
        """The document open under ``uri``: pygls keeps them by the unquoted URI, and
        editors send `file:///my%20project/a.py`."""
        return self.workspace.text_documents.get(unquote(uri))

    def get_document(self, uri: Any) -> TextDocument:
        """An open document, or a clear JSON-RPC error."""
        if not isinstance(uri, str) or not uri:
            raise JsonRpcInvalidParams("a document uri (string) is required")
        doc = self.open_document(uri)
        if doc is None:
            raise JsonRpcInvalidParams(f"unknown document {uri}: open it (didOpen) first")
        return doc

    def document_path(self, doc: TextDocument) -> str:
        """The document's path relative to its workspace folder (else absolute)."""
        path = to_fs_path(doc.uri) or doc.uri
        root = self.root_of(doc.uri)
        return str(Path(path).relative_to(root)) if root is not None else path


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
                if self._request in server.cancelled_early:
                    del server.cancelled_early[self._request]
                    run.token.cancel()
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
        if run is not None and (run.notices or run.route):
            server.last_answer = {"title": self.title, "backend": run.backend,
                                  "fellBack": bool(run.notices), "notices": run.notices[-3:],
                                  "at": time.strftime("%H:%M:%S")}
        if self.token is not None:
            message = self._end_message
            if run is not None and message and run.answered and (
                    run.route and run.route[0].remote or run.notices):
                message += f" (answered by '{run.backend}')"
            server.progress_tokens.pop(self.token, None)
            server.work_done_progress.end(
                self.token, types.WorkDoneProgressEnd(message=message))
            server.work_done_progress.tokens.pop(self.token, None)
