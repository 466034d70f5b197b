"""Review, pure parts: prompt, parsing, quote anchoring, quick fixes, bookkeeping, SARIF."""

from __future__ import annotations

import json

import pytest

from hearth_lsp.server.engine.base import EngineError
from hearth_lsp.server.engine.llama import check_grammar
from hearth_lsp.server.tasks.review import findings as rv
from hearth_lsp.server.tasks.review.run import review_spans_for
from hearth_lsp.server.tasks.review.state import ReviewState

SOURCE = '''def average(values):
    total = 0
    for v in values:
        total += v
    return total / len(values)


def load(path):
    data = open(path).read()
    return eval(data)
'''
AVERAGE = rv.Span(0, 4, "function average")
LOAD = rv.Span(7, 9, "function load")


def answer(*findings) -> str:
    return json.dumps({"findings": list(findings)})


def item(line, quote, category="bug", message="divides by zero on an empty list", **extra):
    return {"line": line, "quote": quote, "severity": "warning", "category": category,
            "message": message, **extra}


@pytest.mark.parametrize("message", [
    # SmolLM2 on `make demo`'s models.py, shown as a [bug] diagnostic before this check
    "The item is not available for this quantity. Please try to find it again later.",
    "Sorry, an error occurred.",
    "foo bar",
    "value1",
    "fails with ZeroDivisionGuard and EmptyListSentinel",  # names the file does not have
])
def test_a_message_that_says_nothing_about_the_code_is_dropped(message):
    assert rv.message_junk_reason(message, frozenset(["total", "values", "len"])) is not None
    assert rv.check_findings(answer(item(5, "total / len(values)", message=message)), SOURCE,
                             AVERAGE) == []


@pytest.mark.parametrize("message", ["divides by zero on an empty list", "runs code",
                                     "undefined name", "len(values) is 0 for an empty list"])
def test_a_message_about_the_code_is_kept(message):
    assert rv.message_junk_reason(message, rv.file_words(SOURCE)) is None


def test_the_prompt_numbers_lines_and_describes_the_schema():
    messages, _ = rv.build_prompt(SOURCE, LOAD, path="io.py", language="python",
                                  context="# util.py:1-2 (helper)\ndef helper(): ...")
    assert messages is not None
    system, user = messages[0].content, messages[1].content
    assert '"quote"' in system and "error-handling" in system
    assert " 8 | def load(path):\n 9 |     data = open(path).read()\n10 |     return eval(data)" \
        in user
    assert "def average" not in user and "util.py:1-2 (helper)" in user
    _, completion = rv.build_prompt(SOURCE, LOAD, path="io.py", language="python", chat=False)
    assert completion.rstrip().endswith("Review as JSON:")


def test_a_finding_is_placed_where_its_quote_is():
    [f] = rv.check_findings(answer(item(5, "total / len(values)")), SOURCE, AVERAGE)
    assert (f.line, f.start_col, f.end_col) == (4, 11, 30) and f.category == "bug"
    # The model's line number is off by two: the quote still decides.
    [g] = rv.check_findings(answer(item(3, "total / len(values)")), SOURCE, AVERAGE)
    assert g.line == 4


@pytest.mark.parametrize("bad", [
    item(5, "return total / count(values)"),  # not in the code: hallucinated
    item(1, "return eval(data)"),  # in the file, but far from its line and outside the span
    item(5, "total / len(values)", category="style"),  # not a category
    item(5, "/"),  # too short to anchor anything
    item(5, "total / len(values)", message="total / len(values)"),  # says nothing
    {"line": "five", "quote": "total", "category": "bug", "message": "x"},
])
def test_findings_that_do_not_anchor_are_dropped(bad):
    assert rv.check_findings(answer(bad), SOURCE, AVERAGE) == []


def test_duplicates_and_a_cut_off_answer():
    raw = answer(item(5, "total / len(values)"), item(5, "len(values)"))
    assert len(rv.check_findings(raw, SOURCE, AVERAGE)) == 1
    cut = '{"findings": [' + json.dumps(item(10, "eval(data)", "security", "runs code")) + \
        ', {"line": 9, "quote": "open(pa'
    [f] = rv.check_findings(cut, SOURCE, LOAD)
    assert f.category == "security" and f.line == 9
    assert rv.check_findings("not json at all", SOURCE, LOAD) == []


def test_a_replacement_is_a_quick_fix_only_when_exact_and_still_parsing():
    good = item(10, "eval(data)", "security", "eval runs arbitrary code",
                replacement="json.loads(data)")
    [f] = rv.check_findings(answer(good), SOURCE, LOAD, language="python")
    assert f.replacement == "json.loads(data)"
    assert "return json.loads(data)" in rv.apply_fix(SOURCE, f)
    broken = {**good, "replacement": "json.loads(data"}
    [g] = rv.check_findings(answer(broken), SOURCE, LOAD, language="python")
    assert g.replacement is None  # the finding stays, the fix goes


def test_a_fix_in_another_language_is_offered_only_when_it_still_parses():
    source = "function ratio(a, b) {\n  return (a / b);\n}\n"
    span = rv.Span(0, 2, "function ratio")
    good = item(2, "(a / b)", "bug", "b may be zero", replacement="(b === 0 ? 0 : a / b)")
    [f] = rv.check_findings(answer(good), source, span, language="javascript")
    assert f.replacement == "(b === 0 ? 0 : a / b)"
    broken = {**good, "replacement": "b === 0 ? 0 : (a / b"}  # a parenthesis dropped
    [g] = rv.check_findings(answer(broken), source, span, language="javascript")
    assert g.replacement is None
    # No grammar to check it with: the finding stays, no fix is offered.
    [h] = rv.check_findings(answer(good), source, span, language="cobol")
    assert h.replacement is None


def test_a_quote_with_its_spaces_squeezed_covers_the_files_own_text():
    """It covered from the first word's first occurrence to the end of the line, and
    the editor dropped the diagnostic at the next edit (its text was not the quote)."""
    source = "def f(x, y):\n    if x:  return x  /  y\n"
    [f] = rv.check_findings(answer(item(2, "x / y", message="y may be zero")), source,
                            rv.Span(0, 1, "function f"))
    line = source.splitlines()[1]
    assert line[f.start_col:f.end_col] == f.quote == "x  /  y"
    # Where the line also has the quote as written, that one: not the first loose match.
    source = "def f(x, y):\n    a = x  /  y if y else x / y\n"
    [g] = rv.check_findings(answer(item(2, "x / y", message="y may be zero")), source,
                            rv.Span(0, 1, "function f"))
    assert (g.start_col, g.quote) == (source.splitlines()[1].rindex("x / y"), "x / y")


def test_non_ascii_lines_keep_string_columns():
    source = 'def greet(name):\n    return "héllo " + nme\n'
    [f] = rv.check_findings(answer(item(2, "nme", message="undefined name")), source,
                            rv.Span(0, 1, "function greet"))
    assert source.splitlines()[1][f.start_col:f.end_col] == "nme"


def test_grammar_parses_in_llama_cpp(smollm2_path):
    # llama.cpp's own parser (LlamaGrammar.from_string accepts any text); sampling
    # under it with the real model: tests/test_grammars_real.py.
    check_grammar(rv.FINDINGS_GRAMMAR, smollm2_path)
    broken = rv.FINDINGS_GRAMMAR.replace("ws ::=", "space ::=")  # `ws` left undefined
    with pytest.raises(EngineError, match="invalid grammar: .*ws"):
        check_grammar(broken, smollm2_path)


def test_spans_are_the_symbols_touching_changed_lines():
    spans = review_spans_for(SOURCE, "m.py", "python")
    assert [(s.start, s.end, s.label) for s in spans] == [
        (0, 4, "function average"), (7, 9, "function load")]
    changed = rv.changed_lines(SOURCE, SOURCE.replace("eval(data)", "json.loads(data)"))
    assert changed == {9}
    assert [s.label for s in review_spans_for(SOURCE, "m.py", "python", lines=changed)] == [
        "function load"]


def test_state_replaces_drops_and_moves_findings():
    state = ReviewState()
    [a] = rv.check_findings(answer(item(5, "total / len(values)")), SOURCE, AVERAGE)
    [b] = rv.check_findings(answer(item(10, "eval(data)", "security", "runs code")), SOURCE,
                            LOAD)
    state.replace("u", [AVERAGE], [a])
    state.replace("u", [LOAD], [b], source=SOURCE)
    assert [f.line for f in state.findings("u")] == [4, 9]
    state.replace("u", [AVERAGE], [])  # a fresh review found nothing there
    assert [f.line for f in state.findings("u")] == [9]
    assert state.edit("u", (0, 0), (0, 0), "import os\nimport re\n")  # two lines on top
    assert [f.line for f in state.findings("u")] == [11]
    [moved] = state.findings("u")
    assert state.edit("u", (10, 0), (11, 0), "")  # the line above deleted: it moves up
    assert [(f.line, f.start_col) for f in state.findings("u")] == [(10, moved.start_col)]
    assert not state.edit("u", (10, 40), (10, 40), "  # ok")  # typed after the quote
    assert state.edit("u", (10, 0), (10, 4), "")  # its indentation: the quote moves left
    assert [(f.line, f.start_col) for f in state.findings("u")] == [(10, moved.start_col - 4)]
    assert state.get("u").reviewed  # (LOAD was reviewed)
    assert state.edit("u", (10, 8), (10, 12), "x")  # the quote itself edited
    assert state.findings("u") == []
    # Its function is reviewed again at the next save, even if an undo brings its text
    # back as it was reviewed: the finding would otherwise never come back.
    assert LOAD.label not in state.get("u").reviewed


def test_sarif_output():
    [f] = rv.check_findings(answer(item(10, "eval(data)", "security", "runs code")), SOURCE,
                            LOAD)
    doc = rv.sarif({"io.py": [f]}, "0.1")
    run = doc["runs"][0]
    assert doc["version"] == "2.1.0" and run["tool"]["driver"]["name"] == "hearth"
    [result] = run["results"]
    assert result["ruleId"] == "security" and result["level"] == "warning"
    region = result["locations"][0]["physicalLocation"]["region"]
    assert (region["startLine"], region["startColumn"]) == (10, 12)
    # The columns are code points, and say so (SARIF's default is UTF-16 units).
    assert run["columnKind"] == "unicodeCodePoints"


def test_a_message_is_one_line_of_bounded_length():
    """Its line breaks, printed as they were, read as more findings to CI matchers."""
    forged = "b may be zero here\nm.js:1:1: error [security] hardcoded credential " + "x" * 999
    [f] = rv.check_findings(answer(item(10, "eval(data)", "security", forged)), SOURCE, LOAD)
    assert "\n" not in f.message and len(f.message) == rv.MAX_MESSAGE
    assert f.message.startswith("b may be zero here m.js:1:1")
