"""Doc comments for the other languages: targets, grammar, rendering, placement, validation."""

from __future__ import annotations

import json

import pytest

from hearth_lsp.server.engine.base import EngineError
from hearth_lsp.server.engine.llama import check_grammar
from hearth_lsp.server.tasks.docs import comments as dc

TS = """import x from 'y';

export class Cart {
  @memo()
  total(items: Item[], tax = 0.2, ...rest: number[]): number {
    return items.length * tax;
  }
}

export function log(msg: string): void {
  console.log(msg);
}
"""
GO = """package shop

// Old doc.
func (c *Cart) Total(a, b int, names ...string) (int, error) {
\treturn a + b, nil
}
"""
RUST = "#[inline]\npub fn area(&self, w: f64, h: f64) -> f64 {\n    w * h\n}\n"
JAVA = ("class A {\n    @Override\n    public int add(int a, String b) {\n        return a;\n"
        "    }\n}\n")
C = "static int *find(const char *name, size_t n) {\n    return 0;\n}\n"
CPP = ("namespace ns {\nclass Box {\n public:\n  void grow(int by);\n"
       "  int size(int a) const { return a; }\n};\n}\n")


@pytest.mark.parametrize("language, source, line, expected", [
    ("typescript", TS, 4, ("Cart.total", "method", 3, ("items", "tax", "rest"), True, None)),
    ("typescript", TS, 10, ("log", "function", 9, ("msg",), False, None)),
    ("go", GO, 3, ("Total", "method", 3, ("a", "b", "names"), True, (2, 2))),
    ("rust", RUST, 1, ("area", "function", 0, ("w", "h"), True, None)),
    ("java", JAVA, 3, ("A.add", "method", 1, ("a", "b"), True, None)),
    ("c", C, 0, ("find", "function", 0, ("name", "n"), True, None)),
    # A function pointer's name is inside parentheses: it was left out of the doc.
    ("c", "void qsort2(void *base, int (*cmp)(const void *, const void *), int *(*get)(void)) "
     "{}\n", 0, ("qsort2", "function", 0, ("base", "cmp", "get"), False, None)),
    ("cpp", CPP, 4, ("ns.Box.size", "method", 4, ("a",), True, None)),
])
def test_targets(language, source, line, expected):
    t = dc.find_target(source, language, line)
    assert t is not None
    assert (t.qualname, t.kind, t.insert_line, t.params, t.returns, t.existing) == expected


def content_for(t: dc.DocTarget) -> dc.DocContent:
    return dc.DocContent("Compute the total.", {p: f"the {p}" for p in t.params},
                         "the result" if t.returns else "")


def test_jsdoc_goes_above_the_decorator_and_validates():
    t = dc.find_target(TS, "typescript", 4)
    comment = dc.render_comment(content_for(t), t)
    after = dc.apply_edit(TS, dc.comment_edit(TS, t, comment))
    assert after.splitlines()[3:12] == [
        "  /**", "   * Compute the total.", "   *", "   * @param items the items",
        "   * @param tax the tax", "   * @param rest the rest", "   * @returns the result",
        "   */", "  @memo()"]
    dc.validate(TS, after, t, comment)


@pytest.mark.parametrize("language, source, line, first_lines", [
    ("go", GO, 3, ["package shop", "", "// Total computes the total.", "func (c *Cart) Total("]),
    ("rust", RUST, 1, ["/// Compute the total.", "///", "/// # Arguments", "///",
                       "/// * `w` - the w"]),
    ("java", JAVA, 3, ["class A {", "    /**", "     * Compute the total."]),
    ("c", C, 0, ["/**", " * Compute the total.", " *", " * @param name the name"]),
])
def test_each_convention(language, source, line, first_lines):
    t = dc.find_target(source, language, line)
    comment = dc.render_comment(content_for(t), t)
    after = dc.apply_edit(source, dc.comment_edit(source, t, comment))
    assert after.startswith("\n".join(first_lines))
    dc.validate(source, after, t, comment)
    if t.existing:  # Go: the old comment was replaced, not stacked
        assert "Old doc" not in after


@pytest.mark.parametrize("language, source, line, insert, existing", [
    # A directive stays on the line above its code: the doc goes above it, and
    # regenerating never takes it for the doc comment (it deleted //go:noinline).
    ("go", "package m\n\n// Sum adds.\n//go:noinline\n//go:norace\nfunc Sum(a, b int) int {\n"
     "\treturn a + b\n}\n", 5, 3, (2, 2)),
    ("typescript", "/** Old. */\n// eslint-disable-next-line no-any\nexport function load(d: any) "
     "{\n  return d;\n}\n", 2, 1, (0, 0)),
    ("cpp", "// NOLINTNEXTLINE(naming)\nint Add_Two(int a) { return a; }\n", 1, 0, None),
    ("go", "package m\n\n//go:generate stringer\n// Sum adds.\nfunc Sum(a, b int) int {\n"
     "\treturn a + b\n}\n", 4, 4, (3, 3)),
    # A licence header right above is not the doc comment; only the nearest block is.
    ("javascript", "/** @license MIT */\n/** Adds. */\nexport function add(a, b) {\n"
     "  return a + b;\n}\n", 2, 2, (1, 1)),
    ("javascript", "/** @license MIT */\nexport function add(a, b) {\n  return a + b;\n}\n",
     1, 1, None),
    ("javascript", "/** First. */\n/** Second. */\nfunction add(a, b) {\n  return a + b;\n}\n",
     2, 2, (1, 1)),
    # Each language's other doc comment forms are its doc comment, replaced, not stacked.
    ("rust", "/** Old. */\npub fn area(w: f64) -> f64 {\n    w\n}\n", 1, 1, (0, 0)),
    ("rust", "//// A plain comment (four slashes).\npub fn area(w: f64) -> f64 {\n    w\n}\n", 1,
     1, None),
    ("cpp", "/// Old.\n/// More.\nint add(int a) { return a; }\n", 2, 2, (0, 1)),
    ("c", "/*! Old. */\nint add(int a) { return a; }\n", 1, 1, (0, 0)),
    # The trailing comment of the statement above is not a doc comment.
    ("go", "package m\n\nvar x = 1 // a note\nfunc Sum(a, b int) int {\n\treturn a + b\n}\n",
     4, 3, None),
])
def test_directives_licences_and_trailing_comments_are_not_the_doc_comment(
        language, source, line, insert, existing):
    t = dc.find_target(source, language, line)
    assert (t.insert_line, t.existing) == (insert, existing)
    comment = dc.render_comment(content_for(t), t)
    after = dc.apply_edit(source, dc.comment_edit(source, t, comment))
    dc.validate(source, after, t, comment)
    for kept in ("//go:noinline", "//go:norace", "// eslint-disable-next-line", "@license",
                 "//go:generate",
                 "// NOLINTNEXTLINE", "First.", "// a note"):
        assert (kept in source) == (kept in after), kept


def test_a_comments_end_in_the_answer_is_refused():
    """"*/" in a summary closed the block early: the rest of it became a plain comment
    (or code) and the file still parsed."""
    t = dc.find_target(C, "c", 0)
    for field in ("summary", "returns"):
        answer = {"summary": "Find the entry by its name in the table",
                  "params": {"name": "the name to look for", "n": "how many entries"},
                  "returns": "the entry found"}
        answer[field] += " */ /* see the notes below"
        with pytest.raises(dc.DocCommentError, match="comment's end or start"):
            dc.parse_answer(json.dumps(answer), t)


def test_the_answer_must_name_exactly_the_real_parameters():
    t = dc.find_target(TS, "typescript", 4)
    good = {"summary": "Add up the items with tax",
            "params": {"items": "the prices to add", "tax": "the rate to apply",
                       "rest": "further prices"}, "returns": "the total"}
    assert dc.parse_answer(json.dumps(good), t).summary == "Add up the items with tax."
    invented = {**good, "params": {"items": "the prices to add", "tax": "the rate to apply",
                                   "discount": "money off"}}
    with pytest.raises(dc.DocCommentError, match="not the real ones"):
        dc.parse_answer(json.dumps(invented), t)
    with pytest.raises(dc.DocCommentError, match="repeats the code"):
        dc.parse_answer(json.dumps({**good, "summary": "return items.length * tax;"}), t)
    with pytest.raises(dc.DocCommentError, match="not JSON"):
        dc.parse_answer("I think it adds things", t)


def test_validation_refuses_changed_code_and_wrong_params():
    t = dc.find_target(C, "c", 0)
    comment = dc.render_comment(content_for(t), t)
    after = dc.apply_edit(C, dc.comment_edit(C, t, comment))
    with pytest.raises(dc.DocCommentError, match="code itself would change"):
        dc.validate(C, after.replace("return 0", "return 1"), t, comment)
    with pytest.raises(dc.DocCommentError, match="differ from the real"):
        dc.validate(C, after.replace("@param n ", "@param count "), t,
                    comment.replace("@param n ", "@param count "))


def test_grammar_has_exactly_the_parameters_and_parses(smollm2_path):
    t = dc.find_target(TS, "typescript", 4)
    g = dc.grammar(t)
    assert '\\"items\\":' in g and '\\"rest\\":' in g and '\\"returns\\":' in g
    # llama.cpp's own parser (LlamaGrammar.from_string accepts any text); sampling
    # under these with the real model: tests/test_grammars_real.py.
    for target in (t, dc.find_target(TS, "typescript", 10), dc.find_target(RUST, "rust", 1)):
        check_grammar(dc.grammar(target), smollm2_path)
    with pytest.raises(EngineError, match="invalid grammar"):
        check_grammar(g.replace("sentence ::=", "sentences ::="), smollm2_path)


def test_copied_placeholders_and_echoed_prompts_are_refused():
    t = dc.find_target(TS, "typescript", 10)
    with pytest.raises(dc.DocCommentError, match="copies the example"):
        dc.parse_answer(json.dumps({"summary": "Log a message to the console",
                                    "params": {"msg": "What it does"}}), t)
    with pytest.raises(dc.DocCommentError, match="repeats the prompt"):
        dc.parse_answer(json.dumps({"summary": "The function log in src/log.ts logs",
                                    "params": {"msg": "the text"}}), t, "src/log.ts")


@pytest.mark.parametrize("summary, line", [
    ("The function `Total` adds a and b.", "// Total adds a and b."),
    ("Return the sum.", "// Total returns the sum."),
    ("Process the items in order.", "// Total processes the items in order."),
    ("Returns the sum.", "// Total returns the sum."),
    ("Apply the tax.", "// Total applies the tax."),
    ("The sum of a and b.", "// Total: The sum of a and b."),
])
def test_go_comments_start_with_the_name(summary, line):
    t = dc.find_target(GO, "go", 3)
    content = dc.DocContent(summary, {p: "x" for p in t.params}, "y")
    assert dc.render_comment(content, t) == line + "\n"


def test_junk_descriptions_and_summaries_are_refused():
    t = dc.find_target(TS, "typescript", 4)
    good = {"summary": "Add up the items with tax",
            "params": {"items": "the prices to add", "tax": "the rate to apply",
                       "rest": "further prices"}, "returns": "Result."}
    assert dc.parse_answer(json.dumps(good), t).returns == ""  # a placeholder return goes
    for params in ({**good["params"], "tax": "foo bar"}, {**good["params"], "items": "value1"},
                   {**good["params"], "rest": "the rate to apply"}):
        with pytest.raises(dc.DocCommentError, match="could not describe the parameters"):
            dc.parse_answer(json.dumps({**good, "params": params}), t)
    with pytest.raises(dc.DocCommentError, match="placeholder"):
        dc.parse_answer(json.dumps({**good, "summary": "This is a docstring."}), t)
