"""The outcome lines every editor shows after a review or a test generation."""

# Imported as a module: pytest would collect a bare `tests_summary` as a test.
from hearth_lsp.server.tasks.review.run import review_summary
from hearth_lsp.server.tasks.runner import count
from hearth_lsp.server.tasks.testgen import run as testgen_run


def test_counts_read_as_english():
    assert count(1, "finding") == "1 finding"
    assert count(0, "finding") == "0 findings"
    assert count(3, "passing test") == "3 passing tests"


def test_review_summary_names_what_was_reviewed():
    assert review_summary(1, ["function parse_price"]) == "Hearth: 1 finding (function parse_price)"
    assert review_summary(0, []) == "Hearth: 0 findings (nothing to review)"


def test_tests_summary_says_where_passing_tests_went_or_that_the_edit_was_refused():
    assert testgen_run.tests_summary(applied=True, test_file="tests/test_a.py", passing=1, failing=2) == (
        "Hearth: 1 passing test added to tests/test_a.py; 2 failing left out")
    assert testgen_run.tests_summary(applied=False, test_file="tests/test_a.py", passing=2, failing=0) == (
        "Hearth: 2 passing tests not added: the editor did not apply the edit to "
        "tests/test_a.py; 0 failing left out")
    assert testgen_run.tests_summary(applied=False, test_file="tests/test_a.py", passing=0, failing=1) == (
        "Hearth: 0 passing tests added; 1 failing left out")
