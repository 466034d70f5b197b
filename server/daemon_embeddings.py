"""The shared daemon's embedding model, so that a window on the daemon holds none.

An editor window that indexes its workspace embeds every chunk, and each search's
query, with a sentence-transformers model: in the window's own process that is torch
plus the model, ~440 MB resident and ~7 s to load here, in every window. With
``model.shared`` the daemon holds it once for all of them (and for any other tool on
the machine that speaks OpenAI's embeddings API):

- ``POST /v1/embeddings``: OpenAI's request (``input``: a string or a list of them,
  ``model``, ``encoding_format``: ``float`` or ``base64``) and answer; each item also
  carries ``tokens`` (what the model read of that text: texts are cut where it stops
  reading, as in-process) and the request may carry Hearth's ``priority`` (a
  background one waits while a user's generation runs, as the index does in-process).
- ``POST /hearth/embedder``: ``{"model": ...}`` -> the model's name, dimension and
  input limit, loading it if need be (a window asks once, before it embeds).

``model`` is left out (or names the bundled all-MiniLM-L6-v2, or a model already
loaded) for the bundled model, or is the absolute path of a sentence-transformers
folder (``index.embeddingModel``). ``backend`` (optional, default "auto") is how it
runs (``index.embeddingBackend``: torch, onnx, onnx-int8). Loaded on first use; at most
MAX_MODELS (model, backend) pairs at once.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..indexer.embeddings import BACKENDS, BUNDLED_PACKAGE, TextEmbedder

log = logging.getLogger("hearth.daemon")

# OpenAI's own limit on inputs per request.
MAX_INPUTS = 2048
# Embedding models held at once (each ~100-450 MB); the least recently used goes.
MAX_MODELS = 2
BUNDLED_NAMES = {"", BUNDLED_PACKAGE, BUNDLED_PACKAGE.replace("_", "-"), "all-minilm-l6-v2",
                 "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"}

Loader = Callable[[Path | None, str], TextEmbedder]  # (folder, backend)


def parse_backend(value: Any) -> str:
    if value is None:
        return "auto"
    if value not in BACKENDS:
        raise EmbeddingRequestError(f"backend must be one of {', '.join(BACKENDS)}, "
                                    f"not {value!r}")
    return str(value)


class EmbeddingRequestError(ValueError):
    """The request is malformed; the message says how (answered with 400)."""


class EmbeddingUnavailable(RuntimeError):
    """The embedding model cannot be loaded; the message says why (answered with 503)."""


def parse_input(body: dict[str, Any]) -> tuple[list[str], str]:
    """(texts, encoding_format) of an embeddings request, or EmbeddingRequestError."""
    given = body.get("input")
    texts = [given] if isinstance(given, str) else given
    if not isinstance(texts, list) or not texts:
        raise EmbeddingRequestError("input must be a string or a non-empty list of strings")
    if not all(isinstance(t, str) for t in texts):
        raise EmbeddingRequestError("input must hold strings (token arrays are not taken)")
    if len(texts) > MAX_INPUTS:
        raise EmbeddingRequestError(f"input has {len(texts)} texts; at most {MAX_INPUTS} "
                                    "per request")
    encoding = body.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        raise EmbeddingRequestError(f"encoding_format {encoding!r}: use float or base64")
    return texts, encoding


def answer(name: str, vectors: Any, counts: Sequence[int], encoding: str) -> dict[str, Any]:
    """OpenAI's embeddings answer (base64: the float32 vector's little-endian bytes)."""
    data = []
    for i, (vector, count) in enumerate(zip(vectors, counts, strict=True)):
        value = vector.astype("<f4")
        data.append({"object": "embedding", "index": i, "tokens": int(count),
                     "embedding": base64.b64encode(value.tobytes()).decode("ascii")
                     if encoding == "base64" else [float(x) for x in value]})
    total = int(sum(counts))
    return {"object": "list", "model": name, "data": data,
            "usage": {"prompt_tokens": total, "total_tokens": total}}


class Embeddings:
    """The daemon's embedding models, loaded on first use; one encode at a time (a
    fast tokenizer is not safe across threads, and two encodes only share the cores)."""

    def __init__(self, load: Loader) -> None:
        self._load = load
        # (the folder, "" for the bundled model; the backend) -> the model loaded
        self._models: OrderedDict[tuple[str, str], TextEmbedder] = OrderedDict()
        self._load_lock = threading.Lock()
        self._use_lock = threading.Lock()
        self.loads = 0

    def names(self) -> list[str]:
        return [m.name for m in list(self._models.values())]

    def folder_of(self, model: Any) -> Path | None:
        """The folder ``model`` names (None: the bundled model)."""
        if model is None or (isinstance(model, str) and model.strip() in BUNDLED_NAMES):
            return None
        if not isinstance(model, str):
            raise EmbeddingRequestError("model must be a string")
        for (folder, _), loaded in list(self._models.items()):
            if model == loaded.name:
                return Path(folder) if folder else None
        path = Path(model).expanduser()
        if not path.is_absolute():
            raise EmbeddingRequestError(
                f"unknown embedding model {model!r}: leave model out for the bundled "
                "all-MiniLM-L6-v2, or send the absolute path of a sentence-transformers folder")
        if not path.is_dir():
            raise EmbeddingRequestError(f"embedding model {model!r}: no such folder")
        return path.resolve()

    def get(self, model: Any, backend: Any = None) -> TextEmbedder:
        folder = self.folder_of(model)
        backend = parse_backend(backend)
        key = (str(folder) if folder else "", backend)
        with self._load_lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
            started = time.perf_counter()
            try:
                embedder = self._load(folder, backend)
            except Exception as exc:  # missing package, not a model folder, torch errors
                raise EmbeddingUnavailable(f"the embedding model could not be loaded: {exc}") \
                    from exc
            self.loads += 1
            log.info("embedding model %s loaded in %.2f s", embedder.name,
                     time.perf_counter() - started)
            self._models[key] = embedder
            while len(self._models) > MAX_MODELS:
                _, dropped = self._models.popitem(last=False)
                log.info("embedding model %s unloaded (at most %d at once)", dropped.name,
                         MAX_MODELS)
            return embedder

    def describe(self, model: Any, backend: Any = None) -> dict[str, Any]:
        embedder = self.get(model, backend)
        return {"name": embedder.name, "maxTokens": embedder.max_tokens,
                "dimension": int(getattr(embedder, "dimension", 0) or 0)}

    def embed(self, model: Any, texts: list[str], backend: Any = None
              ) -> tuple[str, Any, list[int]]:
        """(the model's name, vectors, token counts) of ``texts``."""
        embedder = self.get(model, backend)
        with self._use_lock:
            vectors, counts = embedder.embed_counted(texts)
        return embedder.name, vectors, list(counts)


__all__ = ["EmbeddingRequestError", "EmbeddingUnavailable", "Embeddings", "answer",
           "parse_input"]
