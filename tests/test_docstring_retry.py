"""A docstring whose summary is refused is asked for once more, its first word
constrained to a verb; a summary that passes the first time is never constrained
(a constraint distorts what the model meant). Scripted engine: no model needed."""

from __future__ import annotations

import pytest
from test_commit_structure import DenseEngine

from hearth_lsp.server.engine.fake import FakeEngine
from hearth_lsp.server.engine.worker import GenerationWorker
from hearth_lsp.server.settings import Settings
from hearth_lsp.server.tasks.docs import python as docstring
from hearth_lsp.server.tasks.docs.run import generate_docstring
from hearth_lsp.server.tasks.runner import TaskRun

SOURCE = "def tau():\n    print(6.28)\n"
PROPERTY = "class C:\n    @property\n    def tau(self):\n        print(6.28)\n"


async def document(answers: list[str] | FakeEngine, source: str = SOURCE, line: int = 0):
    engine = answers if isinstance(answers, FakeEngine) else FakeEngine.scripted(answers)
    worker = GenerationWorker()
    worker.load(lambda: engine)
    settings = Settings()
    settings.cache.enabled = False
    try:
        return engine, await generate_docstring(TaskRun(worker), settings, source=source,
                                                path="circle.py", line=line)
    finally:
        worker.shutdown()


async def test_a_refused_summary_is_asked_again_beginning_with_a_verb():
    engine, result = await document(["Python docstring for `tau`.", "Print tau."])
    assert result.text == "Print tau."
    assert engine.grammars[0] is None
    assert engine.grammars[1] == docstring.summary_grammar(docstring.list_functions(SOURCE)[0])


async def test_the_re_ask_does_not_begin_as_the_refused_answer_did():
    # SmolLM2 in `make demo` copied a neighbour's "Sorts the items ..." for two more
    # methods, the re-ask beginning with "Sorts" again.
    source = ('def order(items):\n    """Sorts the items by price."""\n    return items\n\n\n'
              + SOURCE)
    engine, result = await document(["Sorts the items by price.", "Print tau."], source,
                                    line=5)
    assert result.text == "Print tau."
    assert '"Sorts"' not in engine.grammars[1] and '"sort"' not in engine.grammars[1]
    assert '"Print"' in engine.grammars[1] and '"Returns"' in engine.grammars[1]


async def test_a_dunder_is_not_asked_again():
    source = "class C:\n    def __len__(self):\n        return 1\n"
    with pytest.raises(docstring.DocstringError, match="placeholder"):
        await document(["Python docstring for `__len__`.", "The length."], source, line=1)


async def test_a_summary_that_passes_is_not_constrained():
    engine, result = await document(["Show the circle constant."])
    assert result.text == "Show the circle constant." and engine.grammars == [None]


async def test_the_second_refusal_is_the_answer():
    with pytest.raises(docstring.DocstringError, match="placeholder"):
        await document(["Python docstring for `tau`.", "Docstring for `tau`."])


async def test_a_property_is_asked_again_beginning_with_a_noun_phrase():
    engine, result = await document(["Python docstring for `tau`.", "The circle constant."],
                                    PROPERTY, line=2)
    assert result.text == "The circle constant."
    assert engine.grammars[0] is None
    assert engine.grammars[1] == docstring.summary_grammar(docstring.list_functions(PROPERTY)[0])
    assert '"The"' in engine.grammars[1]


async def test_a_file_denser_than_the_estimate_gets_a_smaller_share_of_the_prompt():
    # Text like "→" takes more tokens than characters / 3: the model's own count
    # decides how much of the file goes in, and the prompt fits its context.
    notes = "".join(f"# step {i}: → ≤ × → ≤ × → ≤ × → ≤ × → ≤ ×\n" for i in range(400))
    source = notes + SOURCE

    engine, result = await document(DenseEngine(["Show the circle constant."], 2048),
                                    source, line=400)
    assert result.text == "Show the circle constant."
    assert engine.count_tokens(engine.prompts[0]) <= 2048 - Settings().docstring.max_tokens
    assert "def tau():" in engine.prompts[0]  # the function itself is always there
