"""The shared daemon's embedding model as the index's embedder (``model.shared``).

A window on the daemon sends its chunks and its queries to the daemon's
``/v1/embeddings`` (server/daemon_embeddings.py) instead of loading torch and the
model itself. Vectors come back as base64 float32, so they are the bytes an
in-process encode gives; the model's name is the same as in-process, so the
index's vector cache and collection carry over between the two.

Like DaemonEngine: a daemon that is gone (idle-stopped, killed) is started again and
asked once more; when it cannot be and a ``fallback`` was given, the model is loaded
in this process (a log line and ``on_notice`` say so) and used from then on.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ...indexer.embeddings import Embedder, TextEmbedder
from ..daemon_files import DaemonState
from ..settings import ModelSettings
from .daemon_client import DaemonUnavailable, ensure_daemon
from .httpx_import import httpx, verify
from .remote import _server_message

log = logging.getLogger(__name__)

# A background batch may wait at the daemon for users' generations (up to a minute)
# and take a while on a busy CPU; a query is one short text.
TIMEOUT_S = 600.0


class EmbedderUnavailable(RuntimeError):
    """The daemon answered that its embedding model cannot be used; the message says why."""


class _Gone(Exception):
    pass


def embedder_notice(reason: BaseException | str) -> str:
    return (f"the shared model daemon does not answer for embeddings ({reason}); the "
            "embedding model is loaded in this process instead")


def _tell(notice: str, on_notice: Callable[[str], None] | None) -> None:
    log.warning("%s", notice)
    if on_notice is not None:
        with contextlib.suppress(Exception):
            on_notice(notice)


class DaemonEmbedder:
    """A TextEmbedder whose model the daemon for ``model`` holds; ``fallback``: the
    model in this process, once the daemon cannot be started again (default: loaded
    from ``folder``)."""

    thread_safe = True  # the daemon takes one encode at a time; a query need not wait here

    def __init__(self, model: ModelSettings, cache: Path, folder: Path | None, *,
                 backend: str = "auto",
                 fallback: Callable[[], TextEmbedder] | None = None,
                 on_notice: Callable[[str], None] | None = None) -> None:
        self._model, self._cache = model, cache
        self._name_of = str(folder.expanduser().resolve()) if folder else None
        self._backend = backend
        self._fallback = fallback or (lambda: Embedder(folder, backend=backend, cache=cache))
        self.on_notice = on_notice
        self._lock = threading.Lock()
        self._local_lock = threading.Lock()  # a model in this process: not thread-safe
        self.in_process: TextEmbedder | None = None
        self.state: DaemonState = ensure_daemon(model, cache, idle_s=model.daemon_idle_s)
        try:
            info = self._call("/hearth/embedder", {"model": self._name_of,
                                                   "backend": backend})
        except _Gone as exc:
            raise DaemonUnavailable(str(exc.args[0])) from None
        self.name: str = str(info["name"])
        self.max_tokens: int = int(info["maxTokens"])
        self.dimension: int = int(info.get("dimension") or 0)

    @property
    def where(self) -> str:
        if self.in_process is not None:
            return f"{getattr(self.in_process, 'where', 'in this process')} (the daemon is gone)"
        return f"at the shared daemon (pid {self.state.pid})"

    # ---- what the index calls ----------------------------------------------------

    def embed_counted(self, texts: Sequence[str]) -> tuple[Any, list[int]]:
        """Chunks being indexed: background work, which the daemon holds back while a
        user's generation runs."""
        if self.in_process is not None:
            with self._local_lock:
                return self.in_process.embed_counted(texts)
        return self._embed(texts, "background")

    def encode(self, texts: Sequence[str], counts: Sequence[int] | None = None) -> Any:
        """A search's query: the user waits for it."""
        if self.in_process is not None:
            with self._local_lock:
                return self.in_process.encode(texts, counts)
        return self._embed(texts, "user")[0]

    # ---- the daemon ----------------------------------------------------------------

    def _embed(self, texts: Sequence[str], priority: str) -> tuple[Any, list[int]]:
        import numpy as np

        body = {"model": self._name_of, "backend": self._backend, "input": list(texts),
                "encoding_format": "base64", "priority": priority}
        try:
            data = self._call("/v1/embeddings", body)
        except _Gone as exc:
            engine = self._go_local(exc.args[0])
            with self._local_lock:
                return engine.embed_counted(texts)
        items = sorted(data["data"], key=lambda item: item["index"])
        vectors = np.stack([np.frombuffer(base64.b64decode(item["embedding"]), dtype="<f4")
                            for item in items])
        return vectors.astype(np.float32), [int(item.get("tokens") or 0) for item in items]

    def _call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """The daemon's JSON answer; the daemon started again once when it is gone
        (then _Gone, or DaemonUnavailable before any fallback exists)."""
        failure: BaseException | None = None
        for attempt in range(2):
            state = self.state
            try:
                response = httpx.post(
                    f"{state.root}{path}", json=body, timeout=httpx.Timeout(TIMEOUT_S, connect=5.0),
                    headers={"Authorization": f"Bearer {state.token}",
                             "X-Hearth-Client": f"pid {os.getpid()}"},
                    trust_env=False, verify=verify(state.root))
            except httpx.TransportError as exc:
                failure = exc
            else:
                if response.status_code == 200:
                    return response.json()
                message = _server_message(response.content)
                if response.status_code != 503 or "stopping" not in message:
                    raise EmbedderUnavailable(f"the shared model daemon's embedding model "
                                              f"(HTTP {response.status_code}): {message}")
                failure = RuntimeError(message)
            if attempt == 0:
                log.warning("the shared model daemon (pid %d) is gone (%s); starting it again",
                            state.pid, failure)
                try:
                    with self._lock:
                        if self.state == state:
                            self.state = ensure_daemon(self._model, self._cache,
                                                       idle_s=self._model.daemon_idle_s)
                except DaemonUnavailable as exc:
                    failure = exc
                    break
        raise _Gone(failure)

    def _go_local(self, reason: BaseException) -> TextEmbedder:
        with self._lock:
            if self.in_process is not None:
                return self.in_process
            notice = embedder_notice(reason)
            self.in_process = self._fallback()
        _tell(notice, self.on_notice)
        return self.in_process


def shared_embedder(model: ModelSettings, cache: Path, folder: Path | None, *,
                    backend: str = "auto",
                    fallback: Callable[[], TextEmbedder] | None = None,
                    on_notice: Callable[[str], None] | None = None) -> TextEmbedder:
    """The daemon's embedding model (the daemon started if need be), or, when the daemon
    cannot be started or reached, the one in this process (``fallback``'s, default
    loaded from ``folder`` to run on ``backend``), with a notice."""
    local = fallback or (lambda: Embedder(folder, backend=backend, cache=cache))
    try:
        return DaemonEmbedder(model, cache, folder, backend=backend, fallback=local,
                              on_notice=on_notice)
    except DaemonUnavailable as exc:
        _tell(embedder_notice(exc), on_notice)
        return local()


__all__ = ["DaemonEmbedder", "EmbedderUnavailable", "embedder_notice", "shared_embedder"]
