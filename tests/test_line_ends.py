"""Lines end where the editor, git and the parsers end them: at "\\n", "\\r\\n" and "\\r".

A form feed (GNU-style section breaks) or a U+2028 pasted into a comment made
`str.splitlines()` see one more line than the editor: review findings, docstrings,
quick fixes and chunks then pointed one line below the code meant.
"""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st
from lsprotocol import types
from pygls.workspace import Workspace

from hearth_lsp.indexer.chunker import chunk_file
from hearth_lsp.indexer.lines import split_lines
from hearth_lsp.server.lsp.documents import as_lsp_workspace
from hearth_lsp.server.lsp.edits import apply_text_edits
from hearth_lsp.server.tasks.commit.gitdiff import FileDiff
from hearth_lsp.server.tasks.commit.structure import file_facts
from hearth_lsp.server.tasks.docs import comments, file_summary
from hearth_lsp.server.tasks.docs import python as docs
from hearth_lsp.server.tasks.review.findings import Span, apply_fix, check_findings

# A form feed on a line of its own and a U+2028 inside a comment: one line each.
SOURCE = ('import math\n'
          '\x0c\n'
          '# a note\u2028 pasted from a web page\n'
          'def area(r):\n'
          '    return math.pi * r ** 2\n'
          '\n'
          '\n'
          'def ratio(a, b):\n'
          '    return a / b\n')
RATIO_RETURN = 8  # 0-based: the editor's line of "return a / b"


def _reference(text: str, keepends: bool) -> list[str]:
    """str.splitlines() with the other breaks hidden from it."""
    hidden = {"\x0b": "\ue000", "\x0c": "\ue001", "\x1c": "\ue002", "\x1d": "\ue003",
              "\x1e": "\ue004", "\x85": "\ue005", "\u2028": "\ue006", "\u2029": "\ue007"}
    for k, v in hidden.items():
        text = text.replace(k, v)
    back = {v: k for k, v in hidden.items()}
    return ["".join(back.get(c, c) for c in line) for line in text.splitlines(keepends)]


@given(st.text(alphabet="ab \n\r\x0b\x0c\x1c\x85\u2028\u2029", max_size=30), st.booleans())
def test_split_lines_breaks_only_at_the_lsp_line_ends(text, keepends):
    assert split_lines(text, keepends) == _reference(text, keepends)
    if keepends:
        assert "".join(split_lines(text, True)) == text


def test_a_docstring_goes_under_the_function_below_a_form_feed():
    fn = docs.find_function(SOURCE, 3)
    assert fn is not None and fn.name == "area"
    new = docs.apply_edit(SOURCE, docs.docstring_edit(SOURCE, fn, "The area of a circle."))
    assert new == SOURCE.replace("def area(r):\n", 'def area(r):\n    """The area of a circle."""\n')


def test_a_review_finding_and_its_quick_fix_land_on_the_quoted_line():
    raw = json.dumps({"findings": [{
        "line": RATIO_RETURN + 1, "quote": "a / b", "severity": "warning",
        "category": "error-handling", "message": "b may be zero",
        "replacement": "a / b if b else 0.0"}]})
    [finding] = check_findings(raw, SOURCE, Span(7, 8, "function ratio"), language="python")
    assert finding.line == RATIO_RETURN
    assert apply_fix(SOURCE, finding) == SOURCE.replace("a / b", "a / b if b else 0.0")


def test_chunks_start_and_end_on_the_editors_lines():
    chunks = {c.symbol: c for c in chunk_file("geo.py", "python", SOURCE.encode()).chunks}
    assert (chunks["ratio"].start_line, chunks["ratio"].end_line) == (7, 8)
    assert chunks["ratio"].text == "def ratio(a, b):\n    return a / b"


def test_text_edits_count_lines_as_the_editor_does():
    at = types.Position(line=RATIO_RETURN, character=11)
    edit = types.TextEdit(range=types.Range(start=at, end=at), new_text="(")
    assert apply_text_edits(SOURCE, [edit]) == SOURCE.replace("return a", "return (a")


def test_the_servers_copy_of_a_buffer_follows_incremental_changes():
    """pygls's own documents split at U+2028: the edit went to the line above."""
    workspace = as_lsp_workspace(Workspace(None, types.TextDocumentSyncKind.Incremental))
    workspace.put_text_document(types.TextDocumentItem(
        uri="file:///geo.py", language_id="python", version=1, text=SOURCE))
    doc = workspace.get_text_document("file:///geo.py")
    at = types.Range(start=types.Position(line=RATIO_RETURN, character=15),
                     end=types.Position(line=RATIO_RETURN, character=16))
    doc.apply_change(types.TextDocumentContentChangePartial(range=at, text="c"))
    assert doc.source == SOURCE.replace("a / b\n", "a / c\n")
    assert len(doc.lines) == 9 and doc.lines[RATIO_RETURN] == "    return a / c\n"


def test_a_form_feed_in_a_changed_line_does_not_cut_the_patch():
    """The text after the form feed was read as a line of its own: a context line
    closing the triple-quoted string, and the new method went unseen."""
    patch = ("@@ -1,4 +1,6 @@\n"
             " class Shape:\n"
             "     def area(self):\n"
             "+        note = \'\'\'\x0c\'\'\'\n"
             "+        return 1\n"
             "+    def grow(self):\n"
             "+        pass\n")
    found = file_facts(FileDiff("geo.py", "M", patch))
    assert [(f.action, f.name) for f in found] == [("add", "grow"), ("change", "area")]


CRLF_PY = "import os\r\n\r\n\r\ndef list_prices(folder):\r\n    return os.listdir(folder)\r\n"
CRLF_TS = "export function total(items: number[], tax: number): number {\r\n  return 0;\r\n}\r\n"


def test_a_docstring_in_a_crlf_file_is_written_with_crlf():
    fn = docs.find_function(CRLF_PY, 3)
    text = "List the prices.\n\nArgs:\n    folder: where they are."
    after = docs.apply_edit(CRLF_PY, docs.docstring_edit(CRLF_PY, fn, text))
    assert "\n" not in after.replace("\r\n", "")  # not a mix of both
    assert '    """List the prices.\r\n\r\n    Args:\r\n' in after
    replaced = docs.find_function(after, 3)  # and replacing it keeps them too
    again = docs.apply_edit(after, docs.docstring_edit(after, replaced, "One line.\nTwo."))
    assert "\n" not in again.replace("\r\n", "")


def test_a_doc_comment_and_a_file_summary_in_a_crlf_file_are_written_with_crlf():
    target = comments.find_target(CRLF_TS, "typescript", 0)
    content = comments.DocContent("Compute the total.", {p: f"the {p}" for p in target.params},
                                  "the result")
    comment = comments.render_comment(content, target)
    after = comments.apply_edit(CRLF_TS, comments.comment_edit(CRLF_TS, target, comment))
    assert after.startswith("/**\r\n * Compute the total.\r\n")
    assert "\n" not in after.replace("\r\n", "")
    comments.validate(CRLF_TS, after, target, comment)
    head = file_summary.find_target(CRLF_PY, "prices.py", "python")
    summary = file_summary.check_summary("Lists the prices in a folder", head, "prices.py")
    after = file_summary.apply(CRLF_PY, head, file_summary.render_summary(summary, head))
    assert after.startswith('"""Lists the prices in a folder."""\r\n\r\nimport os\r\n')
    assert "\n" not in after.replace("\r\n", "")


def test_tests_merged_into_a_crlf_test_file_keep_its_line_ends():
    """With an import to add, the whole file was joined with "\\n": every line of the
    user's CRLF file changed; without one, the new tests came in LF (a mix)."""
    from hearth_lsp.server.tasks.testgen import cases

    case = cases.TestCase("test_a", "def test_a():\n    assert double(1) == 2\n",
                          ("import pytest",))
    existing = "from pkg.a import double\r\n\r\n\r\ndef test_old():\r\n    assert double(0) == 0\r\n"
    merged = cases.merge(existing, [case], "from pkg.a import double")
    assert merged == ("from pkg.a import double\r\nimport pytest\r\n\r\n\r\ndef test_old():\r\n"
                      "    assert double(0) == 0\r\n\r\n\r\ndef test_a():\r\n"
                      "    assert double(1) == 2\r\n")
    no_import = cases.TestCase("test_b", "def test_b():\n    assert double(2) == 4\n", ())
    assert "\n" not in cases.merge(existing, [no_import], "from pkg.a import double").replace(
        "\r\n", "")
