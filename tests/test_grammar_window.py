"""The grammar checked on the likeliest tokens first (server/engine/grammar_window.py).

Faked: llama.cpp's grammar sampler (a Python rule over token ids stands in for it,
through llama_cpp's own ctypes structures), so each step's choice can be compared
with checking the whole vocabulary. The real grammar, with the bundled model, is
compared in test_grammars_real.py.
"""

from __future__ import annotations

import ctypes

import llama_cpp
import numpy as np
import pytest

from hearth_lsp.server.engine.grammar_window import (
    WINDOW,
    AllowedCache,
    GrammarWindow,
    tokens_needed,
)

VOCAB = 4000
EOS = 1


class FakeGrammar:
    """llama_cpp's sampler functions for one rule: ``allowed(token, accepted)``."""

    llama_token_data = llama_cpp.llama_token_data
    llama_token_data_array = llama_cpp.llama_token_data_array

    def __init__(self, allowed):
        self.allowed, self.accepted, self.checked, self.freed = allowed, [], 0, False

    def llama_sampler_init_grammar(self, vocab, text, root):
        return 1

    def llama_sampler_apply(self, sampler, ref):
        array = ref._obj
        data = ctypes.cast(array.data, ctypes.POINTER(llama_cpp.llama_token_data * array.size))
        for item in data.contents:
            self.checked += 1
            if not self.allowed(item.id, self.accepted):
                item.logit = -np.inf

    def llama_sampler_accept(self, sampler, token):
        self.accepted.append(token)

    def llama_sampler_free(self, sampler):
        self.freed = True


def whole_vocabulary(scores, fake, needed, penalty=1.0, penalised=()):
    """The ``needed`` tokens the samplers keep when every token is checked: the
    allowed ones, best first after the repetition penalty."""
    after = scores.copy()
    for t in penalised:
        after[t] = after[t] / penalty if after[t] > 0 else after[t] * penalty
    allowed = [t for t in range(len(scores)) if fake.allowed(t, fake.accepted)]
    return sorted(allowed, key=lambda t: -after[t])[:needed]


def kept(out, needed, penalty=1.0, penalised=()):
    after = out.copy()
    for t in penalised:
        after[t] = after[t] / penalty if after[t] > 0 else after[t] * penalty
    finite = [t for t in range(len(out)) if np.isfinite(out[t])]
    return sorted(finite, key=lambda t: -after[t])[:needed]


def scores_for(seed=0):
    return np.random.default_rng(seed).normal(0, 3, VOCAB).astype(np.single)


def window(fake, needed, penalty=1.0, prompt=3):
    return GrammarWindow(fake, None, "root ::= x", prompt, needed, EOS, penalty)


def test_enough_allowed_among_the_likeliest_checks_only_them():
    fake = FakeGrammar(lambda t, _: t % 3 != 0)
    w = window(fake, needed=40)
    scores = scores_for()
    expected = whole_vocabulary(scores, fake, 40)
    out = w(np.arange(3), scores.copy())
    assert kept(out, 40) == expected
    assert w.whole_vocabulary == 0 and fake.checked <= 2 * WINDOW  # not the 4000
    assert np.count_nonzero(np.isfinite(out)) <= 2 * WINDOW


def test_too_few_allowed_among_the_likeliest_checks_every_token():
    fake = FakeGrammar(lambda t, _: t % 50 == 0)  # ~5 of the window's 256
    w = window(fake, needed=40)
    scores = scores_for(1)
    out = w(np.arange(3), scores.copy())
    assert kept(out, 40) == whole_vocabulary(scores, fake, 40)
    assert w.whole_vocabulary == 1 and fake.checked > VOCAB


def test_a_step_that_checked_every_token_is_not_checked_again():
    """The same grammar after the same tokens allows the same ones: a second window
    (a re-ask, the next commit message) takes them from the cache."""
    cache = AllowedCache()
    rule = FakeGrammar(lambda t, accepted: t % 50 == len(accepted))  # few, by position
    scores = scores_for(1)
    masked = scores.copy()
    masked[[0, 50, 100]] = -np.inf  # another processor's mask (a first-token rule)
    first = GrammarWindow(rule, None, "root ::= x", 3, 40, EOS, cache=cache)
    out = first(np.arange(3), masked)
    assert first.whole_vocabulary == 1 and np.isneginf(out[[0, 50, 100]]).all()
    fake = FakeGrammar(rule.allowed)
    again = GrammarWindow(fake, None, "root ::= x", 3, 40, EOS, cache=cache)
    out = again(np.arange(3), scores.copy())
    assert again.whole_vocabulary == 0 and fake.checked == 0 and cache.hits == 1
    # The grammar's verdict was kept, not the other processor's mask.
    assert kept(out, 40) == whole_vocabulary(scores, fake, 40)
    # After another token, or with another grammar, the grammar is asked again.
    after = GrammarWindow(fake, None, "root ::= x", 3, 40, EOS, cache=cache)
    after(np.array([0, 1, 2, 50]), scores.copy())  # 50: one the grammar allowed
    assert after.broken is None and after.whole_vocabulary == 1 and cache.hits == 1
    other = GrammarWindow(FakeGrammar(rule.allowed), None, "root ::= y", 3, 40, EOS,
                          cache=cache)
    other(np.arange(3), scores.copy())
    assert other.whole_vocabulary == 1 and cache.hits == 1


def test_the_cache_keeps_only_restrictive_steps_and_the_latest():
    cache = AllowedCache()
    cache.put(("g", ()), np.arange(AllowedCache.MAX_IDS + 1))
    assert cache.get(("g", ())) is None
    for n in range(AllowedCache.MAX_ENTRIES):
        cache.put(("g", (n,)), np.arange(3))
    assert cache.get(("g", (0,))) is not None  # used: now the latest
    cache.put(("g", (-1,)), np.arange(3))
    assert cache.get(("g", (1,))) is None and cache.get(("g", (0,))) is not None


def test_logits_too_flat_for_a_window_check_every_token():
    fake = FakeGrammar(lambda t, _: t % 2 == 0)
    w = window(fake, needed=40)
    out = w(np.arange(3), np.ones(VOCAB, dtype=np.single))
    assert w.whole_vocabulary == 1 and fake.checked == VOCAB
    assert np.count_nonzero(np.isfinite(out)) == VOCAB // 2


def written(tokens, penalty):
    """A window whose text so far (the prompt) ends with ``tokens``: the repetition
    penalty reaches them."""
    fake = FakeGrammar(lambda t, _: True)
    history = np.asarray(tokens, dtype=np.intc)
    return fake, history, GrammarWindow(fake, None, "root ::= x", len(history), 40, EOS,
                                        penalty, penalty_last_n=len(history))


def test_a_penalty_that_could_reorder_the_tail_checks_every_token():
    """The window's allowed tokens would all lose to an outside token if the penalty
    hit them, and it can (they were just written): the whole vocabulary decides, and
    the choice is the same as llama.cpp's."""
    scores = np.linspace(10.0, 9.0, VOCAB).astype(np.single)  # close together
    penalised = list(range(WINDOW))
    fake, history, w = written(penalised, 1.5)
    out = w(history, scores.copy())
    assert w.whole_vocabulary == 1
    assert kept(out, 40, 1.5, penalised) == whole_vocabulary(scores, fake, 40, 1.5, penalised)
    peaked = scores_for(6)
    peaked[:50] += 30.0  # fifty tokens far above the rest: penalised or not, they win
    fake2, history2, w2 = written(penalised, 1.5)
    out2 = w2(history2, peaked.copy())
    assert w2.whole_vocabulary == 0
    assert kept(out2, 40, 1.5, penalised) == whole_vocabulary(peaked, fake2, 40, 1.5, penalised)


def test_the_penalty_is_reckoned_only_for_the_tokens_it_can_reach():
    """The same close logits, the penalty on tokens outside the window only: the
    window decides, and still as llama.cpp would."""
    scores = np.linspace(10.0, 9.0, VOCAB).astype(np.single)
    penalised = list(range(VOCAB - 64, VOCAB))
    fake, history, w = written(penalised, 1.5)
    out = w(history, scores.copy())
    assert w.whole_vocabulary == 0
    assert kept(out, 40, 1.5, penalised) == whole_vocabulary(scores, fake, 40, 1.5, penalised)


def test_each_sampled_token_advances_the_grammar_once():
    fake = FakeGrammar(lambda t, accepted: t != 7 or not accepted)
    w = window(fake, needed=1)
    w(np.array([5, 5, 5]), scores_for(2))  # the prompt: nothing accepted
    assert fake.accepted == []
    w(np.array([5, 5, 5, 9]), scores_for(3))
    w(np.array([5, 5, 5, 9, 11]), scores_for(4))
    assert fake.accepted == [9, 11]
    w.close()
    assert fake.freed


def test_a_token_the_grammar_refuses_ends_the_text_instead_of_crashing():
    """llama.cpp aborts the process when its grammar accepts a token it refuses."""
    fake = FakeGrammar(lambda t, _: t != 13)
    w = window(fake, needed=1)
    out = w(np.array([0, 0, 0, 13]), scores_for(5))
    assert fake.accepted == [] and w.broken and "13" in w.broken
    assert np.isfinite(out).nonzero()[0].tolist() == [EOS]


@pytest.mark.parametrize("temperature, top_k, needed", [
    (0.0, 40, 1), (0.2, 40, 40), (0.8, 0, 0), (-1.0, 40, 0), (0.5, WINDOW + 1, 0)])
def test_how_many_tokens_the_samplers_after_it_can_choose(temperature, top_k, needed):
    assert tokens_needed(temperature, top_k) == needed
