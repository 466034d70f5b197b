"""The in-process engine: one ``llama_cpp.Llama`` kept warm.

Only the generation worker's thread calls into it. llama-cpp-python keeps the
tokens it evaluated last and reuses the longest matching prefix of the next
prompt from the KV cache, which is why prompt builders put stable text first.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..gguf_info import read_gguf
from ..settings import ModelSettings, SamplingSettings
from .base import Completion, EngineError, ModelInfo, ModelUnavailable

log = logging.getLogger(__name__)


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


class LlamaEngine:
    def __init__(self, path: Path, model: ModelSettings):
        try:
            import llama_cpp
        except ImportError as exc:  # pragma: no cover - a broken install
            raise ModelUnavailable(f"llama-cpp-python is not importable ({exc}); "
                                   "run `make setup` or `pip install llama-cpp-python`") from exc
        self._llama_cpp = llama_cpp
        self._grammars: dict[str, object] = {}
        self._masks: dict[str, Any] = {}
        header = read_gguf(path)  # clear errors for missing/truncated/non-GGUF files
        threads = model.threads or default_threads()
        wanted = model.gpu_layers
        if wanted is None:
            wanted = -1 if gpu_offload_supported() else 0
        warnings: list[str] = []
        if wanted != 0 and not gpu_offload_supported():
            warnings.append(f"model.gpuLayers={wanted} but this llama-cpp-python build has "
                            "no GPU support; running on CPU")
            wanted = 0
        started = time.perf_counter()
        try:
            self.llm = self._load(path, model, wanted, threads)
        except (ValueError, RuntimeError, OSError) as exc:
            if wanted == 0:
                raise ModelUnavailable(f"llama.cpp could not load {path}: {exc}") from exc
            warnings.append(f"GPU offload failed ({exc}); falling back to CPU")
            wanted = 0
            self.llm = self._load(path, model, 0, threads)
        for w in warnings:
            log.warning("%s", w)
        self.load_s = time.perf_counter() - started
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

    def _load(self, path: Path, model: ModelSettings, gpu_layers: int, threads: int):
        try:
            return self._llama_cpp.Llama(
                model_path=str(path), n_ctx=model.context_length, n_batch=model.batch_size,
                n_gpu_layers=gpu_layers, n_threads=threads, n_threads_batch=threads,
                verbose=False)
        except Exception as exc:
            raise ModelUnavailable(f"llama.cpp could not load {path}: {exc}") from exc

    def _arm_abort(self, on: bool) -> bool:
        ctx = self.llm._ctx.ctx
        self._llama_cpp.llama_set_abort_callback(ctx, self._abort_cb if on else self._no_abort, None)
        return on

    def _grammar(self, text: str):
        compiled = self._grammars.get(text)
        if compiled is None:
            try:
                compiled = self._llama_cpp.LlamaGrammar.from_string(text, verbose=False)
            except ValueError as exc:
                raise EngineError(f"invalid grammar: {exc}") from exc
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
        return len(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def generate(self, prompt: str, sampling: SamplingSettings, stop: list[str],
                 should_stop: Callable[[], bool], on_piece: Callable[[str], None],
                 grammar: str | None = None, start: str | None = None) -> Completion:
        started = time.perf_counter()
        n_ctx = self.llm.n_ctx()
        prompt_tokens = len(self.llm.tokenize(prompt.encode("utf-8"), add_bos=True,
                                              special=True))
        room = n_ctx - prompt_tokens
        if room < 8:
            raise EngineError(f"the prompt is {prompt_tokens} tokens but the context holds "
                              f"{n_ctx}; raise model.contextLength or shorten the input")
        max_tokens = min(sampling.max_tokens, room)
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
            grammar=self._grammar(grammar) if grammar else None,
            logits_processor=self._llama_cpp.LogitsProcessorList(
                [self._first_token_filter(start, prompt_tokens)]) if start else None)
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
