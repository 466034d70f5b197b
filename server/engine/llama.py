"""The in-process engine: one ``llama_cpp.Llama`` kept warm.

Only the generation worker's thread calls into it. llama-cpp-python keeps the
tokens it evaluated last and reuses the longest matching prefix of the next
prompt from the KV cache, which is why prompt builders put stable text first.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import logging
import os
import re
import struct
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..gguf_info import GGUFError, GGUFInfo, read_gguf
from ..settings import ModelSettings, SamplingSettings
from .base import Completion, EngineError, ModelInfo, ModelUnavailable
from .grammar_window import AllowedCache, GrammarWindow, tokens_needed

log = logging.getLogger(__name__)
# llama.cpp's own log lines (model loading, KV cache layout, warnings) as Python
# debug records: `hearth --log-level debug` shows them, nothing else does.
native_log = logging.getLogger(__name__ + ".native")


class _NativeLog:
    """Receives llama.cpp's log callback and hands complete lines to ``native_log``.

    llama-cpp-python installs a callback of its own that prints to stderr by a
    stale level table (llama.cpp's WARN lines such as `llama_kv_cache_iswa: ...`
    reached the CLI's stderr); this one replaces it for the whole process.
    Lines arrive in pieces (GGML_LOG_LEVEL_CONT), from any thread: each thread
    keeps its own partial line.
    """

    def __init__(self) -> None:
        self._local = threading.local()
        self._callback: Any = None  # the ctypes callback, kept alive while installed
        # The last lines, whatever the log level: why a load failed (out of memory) is
        # only said here; llama-cpp-python's exception just says it failed.
        self.recent: collections.deque[str] = collections.deque(maxlen=200)
        self.count = 0  # lines received in all
        # Called with each complete line too (`hearth models quantize`'s progress).
        self.listeners: list[Callable[[str], None]] = []

    def since(self, mark: int) -> list[str]:
        """The lines received after `count` was `mark` (the last 200 at most)."""
        n = min(self.count - mark, len(self.recent))
        return list(self.recent)[len(self.recent) - n:] if n > 0 else []

    def install(self, llama_cpp: Any) -> None:
        if self._callback is not None:
            return

        def receive(_level: int, text: bytes | None, _data: Any) -> None:
            with contextlib.suppress(Exception):  # nothing may cross back into C
                self._receive(text.decode("utf-8", "replace") if text else "")

        self._callback = llama_cpp.llama_log_callback(receive)
        llama_cpp.llama_log_set(self._callback, ctypes.c_void_p(0))

    def _receive(self, text: str) -> None:
        pending = getattr(self._local, "pending", "") + text
        *lines, self._local.pending = pending.split("\n")
        for line in lines:
            if line.strip():
                self.recent.append(line.rstrip())
                self.count += 1
                for listener in list(self.listeners):
                    listener(line.rstrip())
                native_log.debug("%s", line.rstrip())


_native = _NativeLog()


def route_native_logs() -> None:
    """Send llama.cpp's log lines to Python logging (debug) instead of stderr."""
    import llama_cpp

    _native.install(llama_cpp)


_stderr_lock = threading.Lock()


@contextlib.contextmanager
def _stderr_captured() -> Iterator[list[str]]:
    """What native code writes to file descriptor 2 meanwhile, instead of the terminal.

    llama.cpp prints a grammar's parse error with fprintf(stderr), not through its
    log callback: this turns it into the EngineError's message. Output other
    threads write to stderr in that moment is passed on afterwards, not lost.
    """
    out: list[str] = []
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no usable stderr: capture nothing
        yield out
        return
    with _stderr_lock, tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield out
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            out.append(sink.read().decode("utf-8", "replace"))


def grammar_problem(text: str, vocab: Any) -> str | None:
    """None when llama.cpp's GBNF parser accepts ``text``, else what is wrong with it.

    ``vocab`` is a loaded model's llama_vocab pointer: llama.cpp builds a grammar
    against a vocabulary, and a grammar it cannot parse gives a NULL sampler.
    """
    import llama_cpp

    with _stderr_captured() as printed:
        sampler = llama_cpp.llama_sampler_init_grammar(vocab, text.encode("utf-8"), b"root")
    if sampler:
        llama_cpp.llama_sampler_free(sampler)
        if printed and printed[0]:  # another thread's output, not ours: pass it on
            with contextlib.suppress(OSError, ValueError):
                sys.stderr.write(printed[0])
        return None
    detail = " ".join(line.strip() for line in "".join(printed).splitlines()
                      if line.strip() and "error" in line)
    return (f"invalid grammar: {detail or 'llama.cpp could not parse it'}"
            f" (grammar starts {text.strip()[:60]!r})")


_vocabularies: dict[str, Any] = {}


def _utf8(text: str) -> bytes:
    """``text`` as UTF-8, a lone surrogate (JSON's "\\ud800", from an editor or a
    daemon's client) as "?": llama.cpp takes bytes, and .encode() raised."""
    return text.encode("utf-8", "replace")


def check_grammar(text: str, model_path: Path) -> None:
    """Raise EngineError unless llama.cpp parses the GBNF ``text``.

    Loads only the vocabulary of ``model_path`` (tens of milliseconds, once per
    file), not the weights: a check for tests and tools, outside any engine.
    """
    import llama_cpp

    route_native_logs()
    key = str(model_path)
    vocab = _vocabularies.get(key)
    if vocab is None:
        llama_cpp.llama_backend_init()
        params = llama_cpp.llama_model_default_params()
        params.vocab_only = True
        model = llama_cpp.llama_model_load_from_file(key.encode("utf-8"), params)
        if not model:
            raise EngineError(f"llama.cpp could not read the vocabulary of {model_path}")
        # The model stays loaded (a vocabulary: a few MB) for the process's life.
        vocab = _vocabularies[key] = (model, llama_cpp.llama_model_get_vocab(model))
    problem = grammar_problem(text, vocab[1])
    if problem is not None:
        raise EngineError(problem)


def gpu_offload_supported() -> bool:
    try:
        import llama_cpp
    except ImportError:
        return False
    return bool(llama_cpp.llama_supports_gpu_offload())


def default_threads() -> int:
    # llama-cpp-python defaults to half the logical CPUs; on a 2-core machine that
    # halves decode speed. Hearth's own threads are idle while the model decodes.
    return max(1, os.cpu_count() or 1)


# ------------------------------------------------------------- GPU layers

_BLOCK = re.compile(r"blk\.(\d+)\.")


@dataclass
class LayerSizes:
    """What offloading each part of a model to the GPU costs, in bytes."""

    blocks: list[int]  # weights of each repeating layer (blk.N.*), in order
    output: int  # the output head llama.cpp offloads after every layer (output.weight,
    # or the token embeddings it is tied to, which llama.cpp then copies to the GPU)
    kv_per_layer: int  # f16 K and V for the context, per layer
    compute: int  # llama.cpp's scratch buffer for one batch (an estimate)

    @classmethod
    def of(cls, info: GGUFInfo, table: dict[str, tuple[int, tuple[int, ...]]],
           n_ctx: int, n_batch: int) -> LayerSizes:
        from ..catalog import _int, kv_cache_bytes

        layers = info.block_count or 0
        blocks = [0] * layers
        for name, (nbytes, _shape) in table.items():
            m = _BLOCK.match(name)
            if m and int(m.group(1)) < layers:
                blocks[int(m.group(1))] += nbytes
        head = table.get("output.weight") or table.get("token_embd.weight") or (0, ())
        output = head[0] + sum(b for n, (b, _) in table.items()
                               if n.startswith("output") and n != "output.weight")
        vocab = max(head[1]) if head[1] else 32000
        md, arch = info.metadata, info.architecture
        embd = _int(md.get(f"{arch}.embedding_length")) or 4096
        heads = _int(md.get(f"{arch}.attention.head_count")) or 32
        kv = kv_cache_bytes(info, n_ctx) // layers if layers else 0
        # The logits of a batch, the activations, and the attention scores when
        # flash attention is off: an upper bound of llama.cpp's compute buffer.
        compute = n_batch * 4 * (vocab + 16 * embd + min(n_ctx, 8192) * heads)
        return cls(blocks, output, kv, compute)

    def needed(self, layers: int) -> int:
        """GPU memory for `layers` (llama.cpp's n_gpu_layers: the last N repeating
        layers, and the output head once N exceeds them), without the reserve."""
        n = len(self.blocks)
        on_gpu = min(max(layers, 0), n)
        need = sum(self.blocks[n - on_gpu:]) + on_gpu * self.kv_per_layer
        if layers > n:
            need += self.output
        return need + (self.compute if layers > 0 else 0)


# The CUDA context, cuBLAS workspaces and fragmentation: not in nvidia-smi's free
# figure, which was read before this process touched the GPU. Per GPU.
GPU_RESERVE = 512 * 1024 * 1024


def fit_gpu_layers(sizes: LayerSizes, free_vram: int, gpus: int = 1,
                   reserve: int = GPU_RESERVE) -> int:
    """The most layers (n_gpu_layers) that fit in `free_vram` bytes: -1 when the whole
    model does (every layer and the output head), 0 when none does."""
    budget = free_vram - reserve * max(1, gpus)
    n = len(sizes.blocks)
    if n == 0:
        return -1 if budget > sizes.needed(1) else 0
    if sizes.needed(n + 1) <= budget:
        return -1
    best = 0
    for layers in range(1, n + 1):
        if sizes.needed(layers) > budget:
            break
        best = layers
    return best


def free_vram() -> tuple[int, int] | None:
    """(free bytes on all NVIDIA GPUs together, how many GPUs) from nvidia-smi; None
    when it cannot say (no NVIDIA GPU, Metal, Vulkan: then every layer is tried)."""
    from ..catalog import nvidia_gpus

    gpus, _note = nvidia_gpus()
    if not gpus:
        return None
    return sum(g.vram_free for g in gpus), len(gpus)


def _gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB"


def auto_gpu_layers(path: Path, info: GGUFInfo, model: ModelSettings) -> tuple[int, str | None]:
    """model.gpuLayers unset on a build that offloads: as many layers as free VRAM
    holds, and a note when that is not all of them."""
    vram = free_vram()
    if vram is None:
        return -1, None
    try:
        sizes = LayerSizes.of(info, info.tensors, model.context_length, model.batch_size)
    except (OSError, GGUFError, struct.error) as exc:
        return -1, f"could not size the model's layers ({exc}); offloading all of them"
    free, gpus = vram
    layers = fit_gpu_layers(sizes, free, gpus)
    total = len(sizes.blocks)
    if layers < 0:
        return -1, None
    per_layer = (sum(sizes.blocks) / total if total else 0) + sizes.kv_per_layer
    if layers == 0:
        return 0, (f"model.gpuLayers unset: no layer fits in the {_gb(free)} of free GPU "
                   f"memory (about {_gb(per_layer)} a layer at {model.context_length} tokens "
                   "of context, plus a reserve); running on CPU")
    return layers, (f"model.gpuLayers unset: {min(layers, total)} of {total} layers fit in "
                    f"the {_gb(free)} of free GPU memory (about {_gb(per_layer)} a layer at "
                    f"{model.context_length} tokens of context); the rest run on the CPU")


def fallback_layers(wanted: int, total: int) -> list[int]:
    """What to try when loading with `wanted` GPU layers runs out of memory: half as
    many, then the CPU. -1 (all) counts as every layer and the output head."""
    if wanted == 0:
        return [0]
    start = total + 1 if wanted < 0 or wanted > total else wanted
    plan = [wanted]
    half = min(start, total) // 2
    if 0 < half < start:
        plan.append(half)
    plan.append(0)
    return plan


def _load_failure(exc: BaseException, lines: list[str]) -> str:
    """The exception, and what llama.cpp logged about memory while it failed."""
    why = [ln.strip() for ln in lines
           if re.search(r"out of memory|failed to allocate|alloc.*failed|cudaMalloc", ln, re.I)]
    text = str(exc.__cause__ or exc)  # llama-cpp-python's, not our wrapping
    if why:
        text += f": {why[-1][:200]}"
    return text


def _file_identity(path: Path) -> tuple[int, int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


class LlamaEngine:
    def __init__(self, path: Path, model: ModelSettings):
        try:
            import llama_cpp
        except ImportError as exc:  # pragma: no cover - a broken install
            raise ModelUnavailable(f"llama-cpp-python is not importable ({exc}); "
                                   "run `make setup` or `pip install llama-cpp-python`") from exc
        self._llama_cpp = llama_cpp
        route_native_logs()
        self._grammars: dict[str, object] = {}
        # False: llama.cpp's grammar sampler on every token at every step (benchmarks
        # and tests compare the two); last_grammar: the last generation's window.
        self.grammar_window = True
        self.last_grammar: GrammarWindow | None = None
        self._masks: dict[str, Any] = {}
        self.allowed = AllowedCache()  # grammar steps that checked every token, kept
        header = read_gguf(path)  # clear errors for missing/truncated/non-GGUF files
        threads = model.threads or default_threads()
        wanted = model.gpu_layers
        offload = gpu_offload_supported()
        warnings: list[str] = []
        if wanted is None:
            wanted, note = auto_gpu_layers(path, header, model) if offload else (0, None)
            if note:
                warnings.append(note)
        if wanted != 0 and not offload:
            warnings.append(f"model.gpuLayers={wanted} but this llama-cpp-python build has "
                            "no GPU support; running on CPU")
            wanted = 0
        started = time.perf_counter()
        self.llm, wanted = self._load_fitting(path, model, wanted, threads,
                                              header.block_count or 0, warnings)
        for w in warnings:
            log.warning("%s", w)
        self.load_s = time.perf_counter() - started
        self._identity = _file_identity(path)
        self._told_changed = False
        # Prompt processing runs a whole batch (up to n_batch tokens, seconds on a
        # CPU) inside one llama_decode call, where no between-token check can stop
        # it. llama.cpp's abort callback is polled between graph nodes: armed while
        # the prompt is evaluated, disarmed once tokens are sampled.
        self._should_stop: Callable[[], bool] = lambda: False
        self._abort_cb = llama_cpp.ggml_abort_callback(lambda _data: bool(self._should_stop()))
        self._no_abort = llama_cpp.ggml_abort_callback()  # NULL: nothing polled per node
        self.info = ModelInfo(
            name=header.name, path=str(path), file_size=header.file_size,
            architecture=header.architecture, context_length=self.llm.n_ctx(),
            trained_context_length=header.context_length,
            chat_template=header.chat_template, bos_token=header.bos_token,
            eos_token=header.eos_token, gpu_layers=wanted,
            total_layers=header.block_count, threads=threads, warnings=warnings)

    def _load_fitting(self, path: Path, model: ModelSettings, wanted: int, threads: int,
                      total: int, warnings: list[str]) -> tuple[Any, int]:
        """Load with `wanted` GPU layers; when that fails (out of memory), with half as
        many, then on the CPU. Each fallback is a warning that says why."""
        plan = fallback_layers(wanted, total)
        for i, layers in enumerate(plan):
            mark = _native.count
            try:
                return self._load(path, model, layers, threads), layers
            except (ValueError, RuntimeError, OSError) as exc:
                if i == len(plan) - 1:
                    if layers == 0 and i == 0:
                        raise
                    raise ModelUnavailable(f"llama.cpp could not load {path}, not even on the "
                                           f"CPU: {exc}") from exc
                lines = _native.since(mark)
                shown = "all" if layers < 0 else str(layers)
                then = (f"trying {plan[i + 1]} layers" if plan[i + 1] else "running on CPU")
                warnings.append(f"loading with {shown} of {total} layers on the GPU failed "
                                f"({_load_failure(exc, lines)}); {then}")
        raise AssertionError("unreachable")  # pragma: no cover

    def _load(self, path: Path, model: ModelSettings, gpu_layers: int, threads: int):
        try:
            # Read into memory, not mmapped: a model file truncated or replaced on disk
            # (a download, an update) must not take the server down with SIGBUS; the
            # loaded copy keeps answering and identity_changed() says so.
            return self._llama_cpp.Llama(
                model_path=str(path), n_ctx=model.context_length, n_batch=model.batch_size,
                n_gpu_layers=gpu_layers, n_threads=threads, n_threads_batch=threads,
                use_mmap=False, verbose=False)
        except Exception as exc:
            raise ModelUnavailable(f"llama.cpp could not load {path}: {exc}") from exc

    def _check_file(self) -> None:
        """Once: the model file on disk is no longer the one loaded."""
        if not self._told_changed and _file_identity(Path(self.info.path)) != self._identity:
            self._told_changed = True
            log.warning("the model file %s changed on disk since it was loaded (truncated or "
                        "replaced); the loaded copy keeps answering. Reload the model (Hearth: "
                        "Reload model, hearth.reloadModel) to use the file as it is now",
                        self.info.path)

    def _arm_abort(self, on: bool) -> bool:
        ctx = self.llm._ctx.ctx
        self._llama_cpp.llama_set_abort_callback(ctx, self._abort_cb if on else self._no_abort, None)
        return on

    def _grammar(self, text: str):
        """The grammar for ``text``, checked by llama.cpp's own parser.

        ``LlamaGrammar.from_string`` only stores the text; llama.cpp parses it when
        the sampler is built, mid-generation, and an invalid grammar there gives a
        NULL sampler that crashes the process (SIGSEGV). Parse it here first.
        """
        compiled = self._grammars.get(text)
        if compiled is None:
            problem = grammar_problem(text, self.llm._model.vocab)
            if problem is not None:
                raise EngineError(problem)
            compiled = self._llama_cpp.LlamaGrammar.from_string(text, verbose=False)
            self._grammars[text] = compiled
        return compiled

    def _first_token_filter(self, pattern: str, prompt_tokens: int):
        """Mask the first step's logits to tokens whose text matches ``pattern``.

        A full grammar costs a check per candidate token at every step (measured
        here: decode 2-8x slower); constraining only the first token is free after it.
        """
        allowed = self._masks.get(pattern)
        if allowed is None:
            import numpy as np

            rx = re.compile(pattern)
            allowed = np.zeros(self.llm.n_vocab(), dtype=bool)
            for token in range(len(allowed)):
                piece = self.llm.detokenize([token], special=False).decode("utf-8", "ignore")
                allowed[token] = bool(piece) and rx.match(piece) is not None
            self._masks[pattern] = allowed

        def first_only(input_ids, scores):
            if len(input_ids) == prompt_tokens:
                scores[~allowed] = -float("inf")
            return scores

        return first_only

    def count_tokens(self, text: str) -> int:
        return len(self.llm.tokenize(_utf8(text), add_bos=False, special=True))

    def generate(self, prompt: str, sampling: SamplingSettings, stop: list[str],
                 should_stop: Callable[[], bool], on_piece: Callable[[str], None],
                 grammar: str | None = None, start: str | None = None) -> Completion:
        started = time.perf_counter()
        self._check_file()
        n_ctx = self.llm.n_ctx()
        prompt = _utf8(prompt).decode("utf-8")
        prompt_tokens = len(self.llm.tokenize(prompt.encode("utf-8"), add_bos=True,
                                              special=True))
        room = n_ctx - prompt_tokens
        if room < 8:
            raise EngineError(f"the prompt is {prompt_tokens} tokens but the context holds "
                              f"{n_ctx}; raise model.contextLength or shorten the input")
        max_tokens = min(sampling.max_tokens, room)
        # Before anything runs: an invalid grammar is an EngineError, never a crash.
        compiled = self._grammar(grammar) if grammar else None
        first_token = self._first_token_filter(start, prompt_tokens) if start else None
        # The grammar on the likeliest tokens first (grammar_window.py) when the
        # samplers after it keep a few tokens; else llama.cpp's, on every token.
        needed = tokens_needed(sampling.temperature, sampling.top_k)
        window = None
        if grammar and needed and self.grammar_window:
            window = GrammarWindow(self._llama_cpp, self.llm._model.vocab, grammar,
                                   prompt_tokens, needed, self.llm.token_eos(),
                                   sampling.repeat_penalty, self.llm.last_n_tokens_size,
                                   self.allowed)
            compiled = None
        self.last_grammar = window
        processors = [p for p in (first_token, window) if p is not None]
        # Checked by llama.cpp after every sampled token: the cancellation point.
        cancelled = False
        armed = False

        def stop_now(_ids, _logits) -> bool:
            nonlocal cancelled, armed
            if armed:
                armed = self._arm_abort(False)
            cancelled = cancelled or should_stop()
            return cancelled

        self._should_stop = should_stop
        armed = self._arm_abort(True)

        stream = self.llm.create_completion(
            prompt, max_tokens=max_tokens, temperature=sampling.temperature,
            top_k=sampling.top_k, top_p=sampling.top_p, min_p=sampling.min_p,
            repeat_penalty=sampling.repeat_penalty,
            seed=None if sampling.seed < 0 else sampling.seed,
            stop=[s for s in [*stop, *sampling.stop] if s] or None, stream=True,
            stopping_criteria=self._llama_cpp.StoppingCriteriaList([stop_now]),
            grammar=compiled,
            logits_processor=self._llama_cpp.LogitsProcessorList(processors)
            if processors else None)
        pieces: list[str] = []
        first = 0.0
        finish = "stop"
        n = 0
        try:
            for chunk in stream:  # type: ignore[union-attr]
                choice = chunk["choices"][0]
                text = choice.get("text") or ""
                if text:
                    if not pieces:
                        first = time.perf_counter() - started
                    pieces.append(text)
                    n += 1
                    on_piece(text)
                if choice.get("finish_reason"):
                    finish = choice["finish_reason"]
                if should_stop():
                    cancelled = True
                    break
        except RuntimeError as exc:  # llama_decode aborted by the callback, or failed
            if not should_stop():
                raise EngineError(f"llama.cpp failed: {exc}") from exc
            cancelled = True
        finally:
            self._arm_abort(False)
            if window is not None:
                window.close()
        if window is not None and window.broken:
            raise EngineError(f"llama.cpp sampled outside the grammar ({window.broken})")
        if cancelled:
            finish = "cancelled"
        # Pieces can hold several tokens (text held back while matching stops).
        n = max(n, self.llm.n_tokens - prompt_tokens)
        return Completion("".join(pieces), prompt_tokens, n, first,
                          time.perf_counter() - started, finish)

    def close(self) -> None:
        llm = getattr(self, "llm", None)
        if llm is not None:
            llm.close()
            self.llm = None
