"""The commit grammars follow the tokenizers of both bundled models: every token a
model naturally begins a type, a subject or a bullet with (a leading space, a
capital letter) is admitted by llama.cpp's own grammar sampler. Masking them is
what made SmolLM2 write subjects beginning "ir…" and "xt…" (issue 11).

Only the vocabularies are loaded (vocab_only), not the weights.
"""

from __future__ import annotations

import ctypes
from typing import Any

import pytest

from hearth_lsp.server.tasks.commit import message as cm

llama_cpp = pytest.importorskip("llama_cpp")

_loaded: dict[str, Any] = {}


def vocabulary(preset: str) -> Any:
    if preset not in _loaded:
        from hearth_lsp.server.models import resolve_model_path
        from hearth_lsp.server.settings import ModelSettings

        from conftest import shared_cache

        path = resolve_model_path(ModelSettings(preset=preset), shared_cache())
        llama_cpp.llama_backend_init()
        params = llama_cpp.llama_model_default_params()
        params.vocab_only = True
        model = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
        assert model, f"cannot read the vocabulary of {path}"
        _loaded[preset] = (model, llama_cpp.llama_model_get_vocab(model))  # kept alive
    return _loaded[preset][1]


def tokenize(vocab: Any, text: str) -> list[int]:
    data = text.encode()
    buf = (llama_cpp.llama_token * 128)()
    n = llama_cpp.llama_tokenize(vocab, data, len(data), buf, 128, False, True)
    assert n > 0
    return list(buf[:n])


def admitted(vocab: Any, grammar: str, prefix: str, candidates: list[str]) -> dict[str, bool]:
    """For each candidate: whether its first token may follow ``prefix`` (itself
    tokenized as the model would) under ``grammar``."""
    sampler = llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")
    assert sampler
    try:
        for token in tokenize(vocab, prefix) if prefix else []:
            # llama.cpp aborts on accepting a token its grammar masks: ask first.
            if not _allowed(sampler, [token])[0]:
                return dict.fromkeys(candidates, False)
            llama_cpp.llama_sampler_accept(sampler, token)
        allowed = _allowed(sampler, [tokenize(vocab, c)[0] for c in candidates])
        return dict(zip(candidates, allowed, strict=True))
    finally:
        llama_cpp.llama_sampler_free(sampler)


def _allowed(sampler: Any, tokens: list[int]) -> list[bool]:
    data = (llama_cpp.llama_token_data * len(tokens))()
    for i, token in enumerate(tokens):
        data[i].id, data[i].logit, data[i].p = token, 0.0, 0.0
    array = llama_cpp.llama_token_data_array(data, len(tokens), -1, False)
    llama_cpp.llama_sampler_apply(sampler, ctypes.byref(array))
    return [data[i].logit != float("-inf") for i in range(len(tokens))]


SUBJECT_STARTS = [" Add", "Add", " add", "add", " Fix", " Update", "Update", " Remove",
                  " Skip", " `"]


@pytest.mark.parametrize("preset", ["smollm2", "gemma3-270m"])
@pytest.mark.parametrize("prefix", ["fix:", "fix: ", "Fix:", "refactor(app):"])
def test_every_natural_subject_start_is_admitted(preset, prefix):
    got = admitted(vocabulary(preset), cm.CONVENTIONAL_GRAMMAR, prefix, SUBJECT_STARTS)
    if prefix.endswith(" "):  # after the space, a second one is not natural
        got = {k: v for k, v in got.items() if not k.startswith(" ")}
    assert all(got.values()), {k: v for k, v in got.items() if not v}


@pytest.mark.parametrize("preset", ["smollm2", "gemma3-270m"])
def test_types_start_in_either_case_with_or_without_a_space(preset):
    got = admitted(vocabulary(preset), cm.CONVENTIONAL_GRAMMAR, "",
                   ["fix", "Fix", " fix", "feat", "Feat", "docs", "Refactor"])
    assert all(got.values()), got
    assert not any(admitted(vocabulary(preset), cm.CONVENTIONAL_GRAMMAR, "",
                            ["Hello", "The", "#"]).values())  # still a grammar


@pytest.mark.parametrize("preset", ["smollm2", "gemma3-270m"])
def test_plain_subjects_and_bullets_start_naturally(preset):
    vocab = vocabulary(preset)
    assert all(admitted(vocab, cm.PLAIN_GRAMMAR, "", SUBJECT_STARTS).values())
    got = admitted(vocab, cm.CONVENTIONAL_GRAMMAR, "fix: skip missing values\n\n-",
                   [" Add", " add", " Keep", "`"])
    assert all(got.values()), got


@pytest.mark.parametrize("preset", ["smollm2", "gemma3-270m"])
def test_a_code_fence_cannot_open_the_subject_but_a_quoted_name_can(preset):
    # Gemma began subjects with "```bash" (bench/quality.py): a fence is not a word start.
    vocab = vocabulary(preset)
    assert not any(admitted(vocab, cm.CONVENTIONAL_GRAMMAR, "fix: ", ["```"]).values())
    assert all(admitted(vocab, cm.CONVENTIONAL_GRAMMAR, "fix: `", ["total", "_v"]).values())


@pytest.mark.parametrize("preset", ["smollm2", "gemma3-270m"])
def test_a_scoped_subject_starts_with_a_changed_area_as_the_model_writes_it(preset):
    from hearth_lsp.server.tasks.commit.gitdiff import FileDiff

    files = [FileDiff("server/sandbox.py", "M", "@@ -1 +1 @@\n-a\n+b\n", 1, 1)]
    grammar = cm.grammar("scoped", files, ["LSP: x", "sandbox: y"])
    vocab = vocabulary(preset)
    assert all(admitted(vocab, grammar, "", ["sandbox", " sandbox", "server", " server"]).values())
    assert not any(admitted(vocab, grammar, "", ["Here", " Here", "fix", "-"]).values())
    got = admitted(vocab, grammar, "sandbox:", SUBJECT_STARTS)
    assert all(got.values()), {k: v for k, v in got.items() if not v}
