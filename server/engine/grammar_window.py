"""A GBNF grammar checked on the likeliest tokens first, the vocabulary only if needed.

llama.cpp's grammar sampler checks every token of the vocabulary at every step. With
Gemma 3's 262k tokens that made decoding under a commit-message grammar 3.5-4.5x
slower than without one (12-17 against 56 tokens/s on this project's 2-core machine):
a commit message's two attempts took ~10 s of the git hook's time.

The samplers after the grammar keep at most ``top_k`` tokens (one when greedy), and
only tokens the grammar allows: the ``top_k`` likeliest allowed tokens after the
repetition penalty. So the grammar is asked about the ``WINDOW`` likeliest tokens
first; when at least that many of them are allowed and would still beat every token
outside the window even if the penalty hit them and spared the others, they are the
same tokens a whole-vocabulary check leaves, and everything outside is masked. Only
at a step where that does not hold (the first letters of a fixed keyword, say) is the
whole vocabulary checked, as llama.cpp does at every step. The tokens sampled are
the same as under llama.cpp's grammar (test_grammars_real.py compares them).

Runs as a logits processor of llama-cpp-python's sampler chain (before its penalties
and top-k). It holds its own grammar sampler and advances it with each sampled token.
"""

from __future__ import annotations

import ctypes
from collections import OrderedDict
from typing import Any

import numpy as np

# About this many of the likeliest tokens are checked first (a check per token).
WINDOW = 256
# Every this-many-th logit is read to find the window's threshold.
SAMPLE_STRIDE = 32
# llama_token_data: (id int32, logit float, p float), as llama.h lays it out.
_TOKEN_DATA = np.dtype([("id", np.intc), ("logit", np.single), ("p", np.single)], align=True)


def _penalised(logit: np.ndarray | float, penalty: float) -> np.ndarray | float:
    """A logit after llama.cpp's repetition penalty (positive ones divided by it,
    the others multiplied): increasing in the logit, as the bounds below need."""
    return np.where(np.asarray(logit) > 0, np.divide(logit, penalty),
                    np.multiply(logit, penalty))


def tokens_needed(temperature: float, top_k: int) -> int:
    """How many allowed tokens the samplers after the grammar can choose among: 1 when
    greedy, ``top_k`` when sampling from the top k; 0 when they may take any token (no
    top-k), so the whole vocabulary is always checked."""
    if temperature == 0:
        return 1
    if temperature < 0 or top_k <= 0 or top_k > WINDOW:
        return 0
    return top_k


class AllowedCache:
    """The tokens a grammar allows after given tokens, kept from steps that checked the
    whole vocabulary: the same grammar after the same tokens allows the same ones.

    Such steps are a commit message's first ones, where a keyword's letters are not
    among the likeliest tokens: checking Gemma 3's 262k tokens took 20-90 ms a step
    here, in each of a message's two attempts, with the same grammar for every
    repository of a style. Only restrictive steps are kept (at most MAX_IDS tokens
    allowed), the latest MAX_ENTRIES of them."""

    MAX_ENTRIES = 256
    MAX_IDS = 16384  # 64 KiB of ids: the cache holds at most 16 MiB

    def __init__(self) -> None:
        self._entries: OrderedDict[tuple[str, tuple[int, ...]], np.ndarray] = OrderedDict()
        self.hits = 0

    def get(self, key: tuple[str, tuple[int, ...]]) -> np.ndarray | None:
        ids = self._entries.get(key)
        if ids is not None:
            self._entries.move_to_end(key)
            self.hits += 1
        return ids

    def put(self, key: tuple[str, tuple[int, ...]], ids: np.ndarray) -> None:
        if len(ids) <= self.MAX_IDS:
            self._entries[key] = ids
            self._entries.move_to_end(key)
            while len(self._entries) > self.MAX_ENTRIES:
                self._entries.popitem(last=False)


class GrammarWindow:
    """One generation's grammar (``llama_cpp``: the module; ``vocab``: the loaded model's
    llama_vocab pointer; ``prompt_tokens``: where the sampled tokens begin in the ids
    the processor is given; ``eos``: the token that ends it). close() frees llama.cpp's
    grammar."""

    def __init__(self, llama_cpp: Any, vocab: Any, grammar: str, prompt_tokens: int,
                 needed: int, eos: int, repeat_penalty: float = 1.0,
                 penalty_last_n: int = 64, cache: AllowedCache | None = None) -> None:
        self._lib = llama_cpp
        self._grammar, self._start, self._cache = grammar, prompt_tokens, cache
        self._sampler = llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode("utf-8"),
                                                             b"root")
        if not self._sampler:  # the engine parsed it before: not expected
            raise ValueError("llama.cpp could not parse the grammar")
        self._accepted = prompt_tokens
        self._needed = needed
        self._eos = eos
        self._penalty = repeat_penalty if repeat_penalty > 0 else 1.0
        self._last_n = penalty_last_n
        self._buffers: dict[int, tuple[Any, np.ndarray]] = {}
        self.steps = 0
        self.whole_vocabulary = 0  # steps that needed every token checked
        # Set when a sampled token is one the grammar refuses (only the end is allowed
        # after it, and the engine reports this).
        self.broken: str | None = None

    def _check(self, ids: np.ndarray, logits: np.ndarray) -> np.ndarray:
        """``logits`` with -inf where the grammar refuses the token in ``ids``."""
        size = len(ids)
        found = self._buffers.get(size)
        if found is None:
            data = (self._lib.llama_token_data * size)()
            found = self._buffers[size] = (data, np.frombuffer(data, dtype=_TOKEN_DATA))
        data, view = found
        view["id"] = ids
        view["logit"] = logits
        view["p"] = 0.0
        candidates = self._lib.llama_token_data_array(data=data, size=size, selected=-1,
                                                      sorted=False)
        self._lib.llama_sampler_apply(self._sampler, ctypes.byref(candidates))
        return view["logit"].copy()

    def _accept(self, input_ids: Any) -> bool:
        """Advance the grammar over the tokens sampled since the last step."""
        for token in input_ids[self._accepted:]:
            token = int(token)
            # Asked first: llama.cpp aborts the process on a token its grammar refuses.
            allowed = self._check(np.array([token], dtype=np.intc),
                                  np.zeros(1, dtype=np.single))
            if not np.isfinite(allowed[0]):
                self.broken = f"token {token} was sampled against the grammar"
                return False
            self._lib.llama_sampler_accept(self._sampler, token)
        self._accepted = len(input_ids)
        return True

    def __call__(self, input_ids: Any, scores: np.ndarray) -> np.ndarray:
        if self.broken is not None or not self._accept(input_ids):
            scores[:] = -np.inf  # nothing more: the end of the text is all that is left
            scores[self._eos] = 0.0
            return scores
        self.steps += 1
        n = len(scores)
        key = (self._grammar, tuple(int(t) for t in input_ids[self._start:]))
        known = self._cache.get(key) if self._cache is not None else None
        if known is not None:
            kept = scores[known]
            scores[:] = -np.inf
            scores[known] = kept
            return scores
        if self._needed and n > WINDOW * 4:
            # About WINDOW of the likeliest: those at or above a threshold read from a
            # sample of the logits (a full partition of 262k logits took 4 ms a step).
            logits = np.ascontiguousarray(scores)
            sample = logits[::SAMPLE_STRIDE]
            k = WINDOW // SAMPLE_STRIDE
            threshold = float(np.partition(sample, len(sample) - k)[len(sample) - k])
            ids = np.flatnonzero(logits >= threshold).astype(np.intc)
            if len(ids) <= WINDOW * 4:  # else the logits are too flat for a window
                checked = self._check(ids, logits[ids])
                finite = np.isfinite(checked)
                allowed = checked[finite]
                # Every token outside is below the threshold: the best it can become,
                # against the worst an allowed one inside can (the penalty reaches only
                # the tokens of the last ``penalty_last_n``; these ids hold them).
                best_outside = max(threshold, float(_penalised(threshold, self._penalty)))
                recent = np.isin(ids[finite], np.asarray(input_ids[-self._last_n:]))
                worst = np.where(recent, np.minimum(allowed, _penalised(allowed, self._penalty)),
                                 allowed)
                if np.count_nonzero(worst >= best_outside) >= self._needed:
                    scores[:] = -np.inf
                    scores[ids] = checked
                    return scores
        self.whole_vocabulary += 1
        # The grammar's own verdict (on finite stand-ins: a token another processor
        # masked may still be one the grammar allows), then the mask.
        allowed = np.isfinite(self._check(np.arange(n, dtype=np.intc),
                                          np.zeros(n, dtype=np.single)))
        scores[~allowed] = -np.inf
        if self._cache is not None:
            self._cache.put(key, np.flatnonzero(allowed))
        return scores

    def close(self) -> None:
        if self._sampler:
            self._lib.llama_sampler_free(self._sampler)
            self._sampler = None
        self._buffers.clear()


__all__ = ["WINDOW", "AllowedCache", "GrammarWindow", "tokens_needed"]
