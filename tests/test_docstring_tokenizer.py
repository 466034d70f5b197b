"""The docstring summary grammar follows the tokenizers of both bundled models:
a summary may begin with a verb the way each model writes one (a space, a new
line, either case, "Return" or "Returns"), and may not begin with the chatter the
models otherwise open with ("Python docstring for `f`", "This is a docstring")."""

from __future__ import annotations

import pytest
from test_commit_tokenizer import admitted, vocabulary

from hearth_lsp.server.tasks.docs import python as docstring

FUNCTION = docstring.list_functions("def area(r):\n    return 3.14 * r * r\n")[0]
VERB_STARTS = ["Return", " Return", "Returns", " Returns", "return", "Compute", " Convert",
               "Get", "Check", "Create", "\n"]
CHATTER = ["Python", " Python", "This", " This", "Docstring", "The", "#", "`"]  # ("A" begins "Add")


@pytest.mark.parametrize("preset", ["smollm2", "gemma3-270m"])
def test_a_summary_can_begin_with_a_verb_as_the_model_writes_it(preset):
    got = admitted(vocabulary(preset), docstring.summary_grammar(FUNCTION), "", VERB_STARTS)
    assert all(got.values()), {k: v for k, v in got.items() if not v}


@pytest.mark.parametrize("preset", ["smollm2", "gemma3-270m"])
def test_a_summary_cannot_begin_with_chatter(preset):
    got = admitted(vocabulary(preset), docstring.summary_grammar(FUNCTION), "", CHATTER)
    assert not any(got.values()), {k: v for k, v in got.items() if v}


@pytest.mark.parametrize("preset", ["smollm2", "gemma3-270m"])
def test_after_the_verb_the_text_is_free(preset):
    grammar = docstring.summary_grammar(FUNCTION)
    got = admitted(vocabulary(preset), grammar, "Return the area", [" of", ".", "\n", " (",
                                                                    " `r`"])
    assert all(got.values()), got


PROPERTY = docstring.list_functions(
    "class Dirs:\n    @property\n    def user_runtime_path(self):\n        return 1\n")[0]


@pytest.mark.parametrize("preset", ["smollm2", "gemma3-270m"])
def test_a_property_summary_begins_a_noun_phrase_as_the_model_writes_it(preset):
    # The chatter that got platformdirs' properties refused ("Docstring for
    # `PlatformDirsABC.user_config_dir`", "Python docstring for the ...") stays out.
    grammar = docstring.summary_grammar(PROPERTY)
    got = admitted(vocabulary(preset), grammar, "", ["The", " The", "Runtime", " runtime",
                                                     "Whether", "Return", " A", "\n"])
    assert all(got.values()), {k: v for k, v in got.items() if not v}
    got = admitted(vocabulary(preset), grammar, "", ["Python", " Python", "Docstring", "This",
                                                     "#", "`"])
    assert not any(got.values()), {k: v for k, v in got.items() if v}


def test_which_functions_get_which_constraint():
    source = ("class C:\n    @property\n    def size(self):\n        return 1\n\n"
              "    @functools.cached_property\n    def name(self):\n        return 'c'\n\n"
              "    def __len__(self):\n        return 1\n\n    def grow(self):\n        pass\n")
    got = {f.name: docstring.summary_grammar(f) for f in docstring.list_functions(source)}
    assert got["__len__"] is None
    assert '"The"' in got["size"] and '"Size"' in got["size"] and '"Name"' in got["name"]
    assert '"The"' not in got["grow"] and '"Return"' in got["grow"]
