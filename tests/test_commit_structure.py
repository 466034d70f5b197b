# ruff: noqa: F811 - the repo fixture, imported from test_commit_message, is taken by name
"""What a diff does, read from its structure, and the subject written from it when
every answer of the model is refused (commit.fromStructure). Pure functions and a
scripted engine: no model needed."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import pytest
from test_commit_message import repo  # noqa: F401 - a fixture, taken by name

from hearth_lsp.server.engine.fake import FakeEngine
from hearth_lsp.server.engine.worker import GenerationWorker
from hearth_lsp.server.settings import Settings
from hearth_lsp.server.tasks.commit import gitdiff
from hearth_lsp.server.tasks.commit import message as cm
from hearth_lsp.server.tasks.commit import structure as st
from hearth_lsp.server.tasks.commit.gitdiff import Changes, FileDiff
from hearth_lsp.server.tasks.commit.run import generate_commit_message
from hearth_lsp.server.tasks.runner import TaskRun

# The demo's change: two docstrings and a test (hearth demo, session 6).
MODELS = FileDiff("inventory/models.py", "M", """\
diff --git a/inventory/models.py b/inventory/models.py
--- a/inventory/models.py
+++ b/inventory/models.py
@@ -35,5 +35,6 @@ class Inventory:
         return self.stock[sku]
     def total_value(self) -> int:
+        \"\"\"Returns the total value of all items.\"\"\"
         return sum(self.items[sku].price * q for sku, q in self.stock.items())
""", 1, 0)
PRICING = FileDiff("inventory/pricing.py", "M", """\
@@ -20,5 +20,9 @@ def parse_price(text: str) -> int:
 def apply_discount(cents: int, percent: float) -> int:
+    \"\"\"Apply a discount
+    to an amount of money.
+    \"\"\"
     return round(cents * (100 - percent) / 100)
""", 3, 0)
TESTS = FileDiff("tests/test_pricing.py", "M", """\
@@ -10,3 +10,7 @@ def test_format_price():
     assert format_price(250) == "2.50"
+
+
+def test_apply_discount_half_2():
+    assert apply_discount(100, 50) == 50
""", 4, 0)
REWORK = FileDiff("app/cart.py", "M", """\
@@ -1,8 +1,9 @@
-def total(items):
+def total(items, tax=0):
     return sum(i.price for i in items)
@@ -12,4 +13,8 @@ class Cart:
     def add(self, item):
-        self.items.append(item)
+        if item not in self.items:
+            self.items.append(item)
+
+def legacy_total(items):
+    return 0
-def old_helper():
-    pass
""", 6, 4)


def test_the_demos_change_in_its_own_terms():
    assert st.facts([MODELS, PRICING, TESTS]) == [
        st.Fact("document", "total_value", "inventory/models.py"),
        st.Fact("document", "apply_discount", "inventory/pricing.py"),
        st.Fact("test", "test_apply_discount_half_2", "tests/test_pricing.py")]


def test_added_removed_and_changed_definitions():
    assert {(f.action, f.name) for f in st.facts([REWORK])} == {
        ("add", "legacy_total"), ("remove", "old_helper"), ("change", "total"), ("change", "add")}


@pytest.mark.parametrize("style, expected", [
    ("conventional", "chore: document total_value and apply_discount, add a test"),
    ("scoped", "inventory: document total_value and apply_discount, add a test"),
    ("plain", "Document total_value and apply_discount, add test_apply_discount_half_2"),
])
def test_the_subject_names_what_fits_and_counts_the_rest(style, expected):
    assert st.structural_message([MODELS, PRICING, TESTS], style, cm.MAX_HEADER) == expected


def test_fewer_names_before_a_count():
    # "server: change 4 definitions" told the reader nothing a name would have.
    changed = [st.Fact("change", n, "server/index.py")
               for n in ("WorkspaceIndex", "read_changes", "embed_batch", "query_vectors")]
    assert st.subject(changed, 60) == "change WorkspaceIndex, read_changes, embed_batch and 1 more"
    assert st.subject(changed, 46) == "change WorkspaceIndex, read_changes and 2 more"
    assert st.subject(changed, 35) == "change WorkspaceIndex and 3 more"
    assert st.subject(changed, 25) == "change 4 definitions"


def test_a_name_or_a_file_before_counts_that_say_nothing():
    # bench/quality.py's tuning half (session 20): "add 4 definitions, change a
    # definition, document a definition" was all the room allowed, and the validator
    # refused it as about nothing in the diff: the user got no message at all.
    where = "server/tasks/commit/gitdiff.py"
    found = [st.Fact("add", n, where) for n in ("read_staged_changes_once",
                                                 "past_commit_examples", "headline_of_subject",
                                                 "trim_patch_to_room")]
    found += [st.Fact("change", "generate_commit_message_from_diff", where),
              st.Fact("document", "summarise_large_files", where)]
    assert st.subject(found, 72) == \
        "add read_staged_changes_once, past_commit_examples and 2 more"
    # Names too long for any room: the count says which file.
    long = [st.Fact("test", "test_tests_are_merged_into_the_unsaved_test_file_in_the_editor",
                    "tests/test_merge.py"),
            st.Fact("test", "test_a_second_test_with_a_name_as_long_as_the_first", "tests/"
                    "test_merge.py")]
    assert st.subject(long, 72) == "add 2 tests to test_merge.py"
    assert st.subject(long, 20) == "add 2 tests"  # the file does not fit either
    assert st.subject([*long, st.Fact("remove", "an_old_helper_with_a_long_name",
                                      "a/b.py")], 50) == \
        "remove an_old_helper_with_a_long_name, add 2 tests"  # a name before a file
    for subject in ("add read_staged_changes_once, past_commit_examples and 2 more",
                    "add 2 tests to test_merge.py"):
        files = [FileDiff(f.path, "M", f"@@ -1 +1,2 @@\n+def {f.name}():\n", 1, 0)
                 for f in (found if "read" in subject else long)]
        assert cm.validate(subject, Changes(Path("."), True, files, "main"), "plain") == \
            subject[0].upper() + subject[1:]


def test_the_type_claims_no_more_than_the_structure_shows():
    assert st.structural_message([MODELS], "conventional", 72) == "docs: document total_value"
    assert st.structural_message([TESTS], "conventional", 72) == \
        "test: add test_apply_discount_half_2"
    assert st.structural_message([REWORK], "conventional", 72).startswith("chore: ")


def test_files_without_definitions_are_named_by_file():
    readme = FileDiff("README.md", "M", "@@ -1 +1 @@\n-Old\n+New words\n", 1, 1)
    logo = FileDiff("logo.png", "A", "", 0, 0, left_out="binary")
    assert st.structural_message([readme, logo], "plain", 72) == "Add logo.png, change README.md"


# ---------------------------------------------------------------- the task's fallback


@pytest.fixture
def staged(repo):  # test_commit_message's repository, a docstring added and staged
    (repo / "app.py").write_text('def total(xs):\n    """Add them up."""\n    return sum(xs)\n')
    subprocess.run(["git", "-C", str(repo), "add", "app.py"], check=True, capture_output=True)
    return repo


class DenseEngine(FakeEngine):
    """The scripted engine with a given context and a tokenizer far denser than
    characters / 3 (a token per byte, as arrows or CJK can be)."""

    def __init__(self, answers: list[str], context_length: int) -> None:
        super().__init__(responses=list(answers))
        self.info = dataclasses.replace(self.info, context_length=context_length)

    def count_tokens(self, text: str) -> int:
        return len(text.encode())


async def commit_message(repo: Path, answers: list[str] | FakeEngine, *,
                         from_structure: str = "auto", author_words: str = "auto", **kwargs):
    engine = answers if isinstance(answers, FakeEngine) else FakeEngine.scripted(answers)
    worker = GenerationWorker()
    worker.load(lambda: engine)
    settings = Settings()
    settings.cache.enabled = False
    settings.commit.from_structure = from_structure
    settings.commit.author_words = author_words
    try:
        return await generate_commit_message(TaskRun(worker), settings, repo, **kwargs)
    finally:
        worker.shutdown()


JUNK = ["fix: xtl-1024", "A subject line of at most 72 characters"]


async def test_refused_answers_give_the_subject_from_the_structure_and_say_so(staged):
    result = await commit_message(staged, JUNK)
    assert result.message == "docs: document total" and result.from_structure
    assert any("written from the diff's structure" in n and "xtl-1024" in n
               for n in result.notices)


async def test_a_change_to_files_the_prompt_only_lists_is_named_by_them(repo):
    # b349f7a changed indexer/secrets.py alone: a secret file by its name, listed in
    # the prompt and never shown, so there was no structure to write from and the user
    # got a refusal. Its name (already in the prompt) still says what changed.
    (repo / "secrets.py").write_text("TOKEN_NAMES = ('key',)\n")
    (repo / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0binary")
    subprocess.run(["git", "-C", str(repo), "add", "."], check=True, capture_output=True)
    result = await commit_message(repo, JUNK)
    assert result.from_structure and result.message == "feat: add logo.png and secrets.py"


async def test_no_worked_example_is_a_commit_of_a_local_only_file(repo):
    # The repository's own small commits are shown to the model as examples: one that
    # changed a privacy.localOnly file went to the model server with the change.
    (repo / "private").mkdir()
    (repo / "private" / "algo.py").write_text("def sauce():\n    return 'MARKER_42'\n")
    for args in (["add", "-A"], ["commit", "-qm", "feat: add the pricing algorithm"]):
        subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)
    (repo / "app.py").write_text("def total(xs):\n    return sum(xs) or 0\n")
    subprocess.run(["git", "-C", str(repo), "add", "app.py"], check=True, capture_output=True)
    for private, shown in (([], True), (["private/**"], False)):
        engine = FakeEngine.scripted(["fix: count an empty list as zero"])
        worker = GenerationWorker()
        worker.load(lambda engine=engine: engine)
        settings = Settings()
        settings.cache.enabled, settings.commit.from_structure = False, "fallback"
        settings.commit.author_words, settings.privacy.local_only = "off", private
        try:
            await generate_commit_message(TaskRun(worker), settings, repo)
        finally:
            worker.shutdown()
        assert ("MARKER_42" in engine.prompts[0]) is shown


async def test_a_local_only_file_renamed_out_of_its_folder_keeps_the_task_local(
        repo, caplog):
    (repo / "private").mkdir()
    (repo / "private" / "algo.py").write_text("def sauce():\n    return 42\n")
    for args in (["add", "-A"], ["commit", "-qm", "Add the algorithm"],
                 ["mv", "private/algo.py", "algo.py"]):
        subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)
    engine = FakeEngine.scripted(["refactor: move the algorithm up"])
    worker = GenerationWorker()
    worker.load(lambda: engine)
    settings = Settings()
    settings.cache.enabled, settings.privacy.local_only = False, ["private/**"]
    caplog.set_level("INFO", logger="hearth_lsp.server.tasks.runner")
    try:
        await generate_commit_message(TaskRun(worker), settings, repo)
    finally:
        worker.shutdown()
    assert "the diff touches private/algo.py (privacy.localOnly): this task runs on the " \
        "local model only" in caplog.text


async def test_a_valid_answer_is_the_models(staged):
    result = await commit_message(staged, ["docs: explain what total returns"])
    assert result.message == "docs: explain what total returns" and result.source == "model"
    assert not result.from_structure


async def test_without_the_fallback_refused_answers_are_a_refusal(staged):
    with pytest.raises(cm.CommitMessageError, match="xtl-1024"):
        await commit_message(staged, JUNK, from_structure="off")


def test_one_added_function_makes_a_message_that_passes_the_checks():
    # bench/daemon.py's hook change: the structural message was refused as saying nothing.
    euros = FileDiff("inventory/pricing.py", "M", "@@ -30,3 +30,6 @@ def apply_discount(c):\n"
                     "     return c\n+\n+\n+def to_euros(cents):\n+    return cents / 100\n", 3, 0)
    message = st.structural_message([euros], "conventional", cm.MAX_HEADER)
    assert message == "feat: add to_euros"
    assert cm.validate(message, Changes(Path("."), True, [euros], "main")) == message


async def test_the_prompt_fits_the_context_with_the_examples_and_the_re_ask(staged):
    # bench/quality.py overflowed a 2048-token context on a re-ask once the worked
    # examples were in: every prompt, the second attempt's too, must fit.
    big = "".join(f"def helper_{i}(x):\n    return x * {i} + {i}\n" for i in range(32))
    (staged / "helpers.py").write_text(big)
    subprocess.run(["git", "-C", str(staged), "add", "helpers.py"], check=True)
    engine = FakeEngine.scripted(JUNK)
    engine.info = dataclasses.replace(engine.info, context_length=1024)
    await commit_message(staged, engine)
    chars_per_token = 3  # the task's own conservative measure
    assert len(engine.prompts) >= 2
    assert all(len(p) <= 1024 * chars_per_token for p in engine.prompts), \
        [len(p) for p in engine.prompts]


async def test_a_diff_denser_than_the_estimate_is_cut_by_the_tokenizers_count(staged):
    # Text like "→" or "≤" takes more tokens than characters / 3: the model's own count
    # decides, and the diff is cut (and said to be) rather than the context overflowed.
    (staged / "notes.py").write_text("".join(f"X = '{'→≤×' * 20}'  # {i}\n" for i in range(30)))
    subprocess.run(["git", "-C", str(staged), "add", "notes.py"], check=True)

    engine = DenseEngine(["docs: document total and the notes"], context_length=4096)
    result = await commit_message(staged, engine)
    room = 4096 - 2 * Settings().commit.max_tokens - 80
    assert all(engine.count_tokens(p) <= room for p in engine.prompts)
    assert any("cut to fit the model's context: notes.py" in n for n in result.notices)


def test_a_verb_the_structure_contradicts_is_refused():
    # bench/daemon.py's hook (session 20): Gemma's warmer re-ask "chore: change to_euros"
    # for a diff that adds to_euros was accepted, where the structure says "add".
    euros = FileDiff("inventory/pricing.py", "M", "@@ -30,3 +30,6 @@ def apply_discount(c):\n"
                     "     return c\n+\n+\n+def to_euros(cents):\n+    return cents / 100\n", 3, 0)
    changes = Changes(Path("."), True, [euros, REWORK], "main")
    for refused, why in (("chore: change to_euros", "which this change adds"),
                         ("chore: fix the to_euros", "which this change adds"),
                         ("chore: add old_helper", "which this change removes"),
                         ("chore: add legacy_total, update `to_euros` for cents",
                          "which this change adds")):
        with pytest.raises(cm.CommitMessageError, match=why):
            cm.validate(refused, changes)
    for fine in ("feat: add to_euros", "chore: remove old_helper", "chore: change total",
                 "chore: add legacy_total and a tax to total"):
        assert cm.validate(fine, changes) == fine
    assert st.contradiction("change to_euros", [MODELS]) is None  # nothing added there
    moved = [FileDiff("a.py", "M", "@@ -1,2 +1 @@\n-def helper():\n-    pass\n", 0, 2),
             FileDiff("b.py", "M", "@@ -1 +1,2 @@\n+def helper():\n+    pass\n", 2, 0)]
    assert st.contradiction("move helper to b.py", moved) is None


def test_a_name_whose_parts_are_short_still_grounds_the_subject():
    # bench/quality.py's tuning half (session 20): "add on_gpu, change 2 definitions"
    # was refused as about nothing in the diff (neither "on" nor "gpu" has 4 letters).
    f = FileDiff("tests/test_engine_real.py", "M", "@@ -40,3 +40,6 @@\n+def on_gpu(worker):\n"
                 "+    return worker.engine.info.gpu_layers != 0\n", 2, 0)
    changes = Changes(Path("."), True, [f], "main")
    assert cm.validate("Add on_gpu, change 2 definitions", changes, "plain") == \
        "Add on_gpu, change 2 definitions"
    with pytest.raises(cm.CommitMessageError, match="about nothing in the diff"):
        cm.validate("Add a helper, change 2 definitions", changes, "plain")


def test_a_change_to_a_file_without_definitions_is_named_by_the_file():
    # A document's change: "change benchmarks.md" says little, but it is true; the check
    # for a subject of fewer than two words counts a file's name as a word.
    f = FileDiff("docs/benchmarks.md", "M", "diff --git a/docs/benchmarks.md b/docs/"
                 "benchmarks.md\n@@ -1,2 +1,2 @@\n # Benchmarks\n-old figure\n+new figure\n", 1, 1)
    text = st.structural_message([f], "plain", 72)
    assert text == "Change benchmarks.md"
    assert cm.validate(text, Changes(Path("."), True, [f], "main"), "plain") == text


# ------------------------------------------------------------- the author's own words

# 6a14e8b of this repository: its subject is "One place says what a file is by its
# name (secret, lockfile, generated) ..."; from the structure alone Hearth wrote "Add
# name_reason, change skip_reason and 3 more, document a definition".
NAME_REASON = FileDiff("indexer/discovery.py", "M", '''\
@@ -95,6 +95,18 @@ def _inside(root: Path, path: Path) -> bool:
         return False
\x20
\x20
+def name_reason(name: str) -> str | None:
+    """What a file is by its name alone, when that keeps it out of the index and out of
+    prompts: "secret", "lockfile" or "generated" (None otherwise)."""
+    if is_secret_file(name):
+        return "secret"
+    return None
+
+
 def skip_reason(root: Path, rel: str, *, max_file_kb: int,
@@ -105,12 +117,9 @@ def skip_reason(root: Path, rel: str, *, max_file_kb: int,
     name = parts[-1]
-    if is_secret_file(name):
-        return "secret"
+    by_name = name_reason(name)  # the index and the commit prompts ask the same
+    if by_name:
+        return by_name
''', 11, 2)


@pytest.mark.parametrize("style, expected", [
    ("plain", "Add name_reason: what a file is by its name alone"),
    ("conventional", "chore: add name_reason: what a file is by its name alone"),
    ("scoped", "discovery: add name_reason — what a file is by its name alone"),
])
def test_a_new_definitions_docstring_says_what_the_change_does(style, expected):
    changes = Changes(Path("."), True, [NAME_REASON], "main")
    assert st.authored_message([NAME_REASON], style, cm.MAX_HEADER) == expected
    assert cm.validate(expected, changes, style) == expected
    assert st.structural_messages([NAME_REASON], style, cm.MAX_HEADER)[0] == expected
    assert len(st.structural_messages([NAME_REASON], style, cm.MAX_HEADER,
                                      authored=False)) == 1


def test_a_docstring_added_to_a_definition_says_what_it_does_not_what_changed():
    # The demo's change: "document total_value" says it; "document total_value:
    # returns the total value of all items" would describe the function instead.
    assert st.authored_message([MODELS, PRICING], "plain", 72) is None
    assert st.structural_messages([MODELS, PRICING], "plain", 72) == [
        "Document total_value and apply_discount"]


def test_which_words_are_the_authors_prose():
    f = FileDiff("src/cache.c", "M", '''\
@@ -1,4 +1,16 @@ int open_cache(const char *path)
+#define CACHE_LINES 64
+// TODO: remove this once the old format is gone for good
+# x = load(path, mode="r")
+/* ------------------------------------------------------------ */
+    int n = count(lines);  // lines read since the cache was last opened
+#include <stdio.h>
+    // A cache that cannot be opened says why
+    // instead of failing the task.
+    return n;
''', 9, 0)
    assert [(n.kind, n.name, n.text) for n in st.notes(f)] == [
        ("trailing", None, "lines read since the cache was last opened"),
        ("comment", None, "A cache that cannot be opened says why instead of failing "
                          "the task.")]  # (C's definitions are not read: no name)
    # A comment comes before one after code; said of the file, for want of a name.
    assert st.authored_message([f], "plain", 72) == \
        "Change cache.c: a cache that cannot be opened says why instead"
    go = FileDiff("cache.go", "M", "@@ -3,2 +3,4 @@ func openCache(path string) int {\n"
                  "+\t// A cache that cannot be opened says why\n+\treturn n\n", 2, 0)
    assert st.authored_message([go], "plain", 72) == \
        "Change openCache: a cache that cannot be opened says why"  # the function it is in
    # The code's words come before a test's, whatever their kinds.
    test = FileDiff("tests/test_cache.py", "M", '''\
@@ -1,2 +1,5 @@
+def test_an_unreadable_cache_is_reported():
+    """An unreadable cache is reported to the user, not raised."""
+    assert report(open_cache("/nonexistent"))
''', 3, 0)
    assert st.author_words([test, f], st.facts([test, f]))[0][0].name == "cache.c"
    pages = FileDiff("pages.py", "M", "@@ -1 +1,2 @@ def pages(total, count):\n"
                     "+    n = total // count  # the whole pages in the result\n", 1, 0)
    assert [n.text for n in st.notes(pages)] == ["the whole pages in the result"]
    assert st.author_words([test], st.facts([test])) == [(
        st.Fact("test", "test_an_unreadable_cache_is_reported", "tests/test_cache.py"),
        "an unreadable cache is reported to the user, not raised")]


def test_the_words_are_cut_at_a_clause_and_never_left_open():
    text = ("every this many texts embedded, the encoder's freed buffers go back to the "
            "system (a malloc_trim takes milliseconds)")
    assert st._cut(text, 200) == text
    assert st._cut(text, 60) == "every this many texts embedded"  # the last clause that fits
    # "the files of server/" would end open on a folder's slash, "the files of" on "of":
    # two words are left, too few to say anything.
    assert st._cut("the files of server/, indexer/ and bench/ that differ", 30) is None
    for room in range(10, 120):
        cut = st._cut(text, room)
        assert cut is None or (len(cut) <= room and cut.split()[-1] not in st._OPEN
                               and cut.count("(") == cut.count(")")
                               and not cut.endswith((",", ":", "/", "-"))), (room, cut)
    assert st._cut("a cache that opens", 8) is None  # fewer than three words left
    assert st._cut("pytest as it runs it (the variable set outside, before", 48) == \
        "pytest as it runs it"
    # A verb that wants its object is not an end either (a real cut read "... says").
    assert st._cut("a cache that cannot be opened or written says why (exit 1)", 46) == \
        "a cache that cannot be opened or written"


@pytest.fixture
def new_function(repo):  # test_commit_message's repository, a documented function added
    (repo / "app.py").write_text('def total(xs):\n    return sum(xs)\n\n\ndef mean(xs):\n'
                                 '    """The average of the values, or 0 for none."""\n'
                                 '    return sum(xs) / len(xs) if xs else 0\n')
    subprocess.run(["git", "-C", str(repo), "add", "app.py"], check=True, capture_output=True)
    return repo


AUTHORED = "feat: add mean: the average of the values, or 0 for none"


async def with_author_words(repo: Path, mode: str, answers: list[str], file_size: int = 0,
                            from_structure: str = "auto"):
    engine = FakeEngine.scripted(answers)
    engine.info = dataclasses.replace(engine.info, file_size=file_size)
    return await commit_message(repo, engine, author_words=mode,
                                from_structure=from_structure), engine


@pytest.mark.parametrize("mode, file_size", [("first", 0), ("auto", 250_000_000)])
async def test_the_authors_words_first_ask_no_model(new_function, mode, file_size):
    # "auto" with a model of the bundled models' size: their own subjects scored below
    # the author's words on bench/quality.py's tuning half.
    result, engine = await with_author_words(new_function, mode, ["feat: add a helper"],
                                             file_size)
    assert result.message == AUTHORED and engine.prompts == [] and result.source == "author"
    assert any("author's own words" in n for n in result.notices)


async def test_the_subject_the_caller_already_tried_is_not_tried_again(new_function):
    # `hearth commit-msg` tries Hearth's own subject before it starts a model, with the
    # model file's size; the task then goes straight to the model. With no size known
    # (a model server named by the route), it tries again once the model says its size.
    engine = FakeEngine.scripted(["feat: add mean of the values"])
    engine.info = dataclasses.replace(engine.info, file_size=250_000_000)
    result = await commit_message(new_function, engine, model_bytes=250_000_000,
                                  early_tried=True)
    assert result.message == "feat: add mean of the values" and engine.prompts
    engine = FakeEngine.scripted(["feat: add mean of the values"])
    engine.info = dataclasses.replace(engine.info, file_size=250_000_000)
    result = await commit_message(new_function, engine, model_bytes=0, early_tried=True)
    assert result.message == AUTHORED and engine.prompts == []


async def test_a_larger_model_or_a_server_answers_first(new_function):
    # A model server's size is unknown (0), a local model file may be large: the model's
    # valid answer is the message.
    for size in (0, 4_000_000_000):
        result, engine = await with_author_words(new_function, "auto",
                                                 ["feat: add mean of the values"], size)
        assert result.message == "feat: add mean of the values" and engine.prompts


@pytest.mark.parametrize("mode, file_size, author_words", [
    ("first", 0, "auto"), ("auto", 250_000_000, "auto"), ("auto", 250_000_000, "fallback")])
async def test_the_structure_first_asks_no_model(staged, mode, file_size, author_words):
    # "auto" with a model of the bundled models' size: bench/quality.py's tuning half
    # scored their accepted subjects below the structure's, and the held-back half had
    # none accepted. The author's words (none in this diff) would come before it.
    engine = FakeEngine.scripted(["docs: explain what total returns"])
    engine.info = dataclasses.replace(engine.info, file_size=file_size)
    result = await commit_message(staged, engine, from_structure=mode,
                                  author_words=author_words)
    assert result.message == "docs: document total" and result.source == "structure"
    assert engine.prompts == []
    assert any("before asking the model" in n for n in result.notices)


async def test_the_authors_words_come_before_the_structure(new_function):
    result, engine = await with_author_words(new_function, "first", [], 0, "first")
    assert result.message == AUTHORED and result.source == "author" and not engine.prompts
    result, engine = await with_author_words(new_function, "fallback", [], 0, "first")
    assert result.message == AUTHORED and result.source == "structure" and not engine.prompts
    result, engine = await with_author_words(new_function, "off", [], 0, "first")
    assert result.message == "feat: add mean" and not engine.prompts


async def test_refused_answers_give_the_authors_words_then_the_structure(new_function):
    result, _ = await with_author_words(new_function, "fallback", JUNK)
    assert result.message == AUTHORED and result.source == "structure"
    result, _ = await with_author_words(new_function, "off", JUNK)
    assert result.message == "feat: add mean" and result.source == "structure"


def test_a_documents_change_is_named_by_its_section():
    def doc(patch: str, path: str = "README.md") -> str | None:
        return st.structural_message([FileDiff(path, "M", patch, 1, 1)], "plain", 72)

    assert doc("@@ -10,4 +10,4 @@\n ## Install: `pip`\n \n-pip install old\n+pip install new\n") \
        == "Change the Install section of README.md"
    assert doc("@@ -1,3 +1,3 @@\n # Hearth\n-A server.\n+A language server.\n") == \
        "Change README.md"  # under the document's title: no section
    assert doc("@@ -10,3 +10,3 @@ ## Usage\n-old\n+new\n@@ -40,2 +40,2 @@\n ## Install\n-a\n+b\n") \
        == "Change the Usage and Install sections of README.md"
    assert doc("@@ -3,3 +3,3 @@\n-old\n+new\n") == "Change README.md"  # out of view
    assert doc("@@ -10,3 +10,3 @@ ## Installing on Linux\n-old\n+new\n@@ -40,2 +40,2 @@ "
               "## Configuring the editors\n-a\n+b\n") == "Change README.md"  # too long
    heading = FileDiff("README.md", "M", "@@ -3,2 +3,4 @@\n+## Models already on the machine\n"
                       "+Hearth finds them.\n", 2, 0)
    assert st.authored_message([heading], "plain", 72) is None  # a heading, not a comment
    # A change under the title as well (an intro's figures): the section is named.
    assert doc("@@ -1,6 +1,6 @@\n # Hearth\n-A server.\n+A language server.\n ## Install\n"
               "-a\n+b\n") == "Change the Install section of README.md"
    assert doc("@@ -55,4 +55,4 @@ ## Index\n-a\n+b\n@@ -90,4 +90,4 @@ ## Retrieval quality\n"
               "-a\n+b\n", "docs/benchmarks.md") == \
        "Change the Index and Retrieval quality sections"  # without the file: too long
    assert doc("@@ -1,5 +1,4 @@\n # Hearth\n-\n ## Install\n-a\n+b\n") == \
        "Change the Install section of README.md"  # a blank line is not a change of words
    assert doc("@@ -5,5 +5,5 @@\n Usage\n -----\n \n-old\n+new\n", "docs/guide.rst") == \
        "Change the Usage section of guide.rst"


def test_a_hunk_header_names_the_heading_above_it_as_gits_markdown_driver_would(repo):
    text = ("# Guide\n\nIntro.\n\n## Install\n\n```sh\n# not a heading\n```\n\n"
            + "".join(f"Line {n}.\n" for n in range(20)) + "\n### Linux\n\nUse apt.\n")
    (repo / "guide.md").write_text(text)
    subprocess.run(["git", "-C", str(repo), "add", "guide.md"], check=True)
    subprocess.run(["git", "-C", str(repo), "commit", "-qm", "guide"], check=True)
    (repo / "guide.md").write_text(text.replace("Line 15.", "Line fifteen.").replace(
        "Use apt.", "Use apt or dnf."))
    subprocess.run(["git", "-C", str(repo), "add", "guide.md"], check=True)
    [guide] = gitdiff.read_changes(repo).files
    # git's default names the last line starting with a letter ("Line 11."); the
    # fenced comment is no heading.
    assert [line for line in guide.patch.splitlines() if line.startswith("@@")] == [
        "@@ -23,7 +23,7 @@ ## Install", "@@ -31,4 +31,4 @@ ## Install"]
    assert st.structural_message([guide], "plain", 72) == \
        "Change the Install and Linux sections of guide.md"
    subprocess.run(["git", "-C", str(repo), "reset", "-q"], check=True)
    [unstaged] = gitdiff.read_changes(repo).files  # the file read from the tree
    assert unstaged.patch == guide.patch
    subprocess.run(["git", "-C", str(repo), "rm", "-qf", "guide.md"], check=True)
    [removed] = gitdiff.read_changes(repo).files  # nothing left to read the headings in
    assert removed.status == "D" and "@@ -1,34 +0,0 @@\n" in removed.patch
    assert gitdiff.section_headers("@@ -1,2 +1,2 @@ x\n-a\n+b\n", "a\nb\n") == \
        "@@ -1,2 +1,2 @@\n-a\n+b\n"  # no heading above: none named


def test_source_in_a_string_and_a_tests_own_helpers_are_not_facts():
    # The shape of a real commit (tests/test_lsp_review.py): a test's fixture source
    # in a string, the test's local helpers, after another test in the hunk's header.
    patch = ("@@ -40,3 +40,16 @@ def test_bad_requests_are_errors(client):\n"
             "     assert client.errors == 1\n"
             "\x20\n"
             "+THREE = \'\'\'def one(a):\n"
             "+    return a\n"
             "+def two(b):\n"
             "+    return b\n"
             "+\'\'\'\n"
             "+\n"
             "+\n"
             "+async def test_left_out_functions_are_reviewed_next(client):\n"
             "+    def reviewed() -> list[str]:\n"
             "+        return client.reviewed\n"
             "+\n"
             "+    assert reviewed() == []\n")
    f = FileDiff("tests/test_review.py", "M", patch, 13, 0)
    assert st.file_facts(f) == [st.Fact("test", "test_left_out_functions_are_reviewed_next",
                                        f.path)]
    # A class's methods are its own facts; a closing brace belongs to the function above.
    js = FileDiff("src/a.js", "M", "@@ -1,3 +1,9 @@ function old() {\n-  return 1;\n"
                  "+  return 2;\n }\n+class Cart {\n+  def total(self):\n+    pass\n"
                  "+function helper() {\n+  function inner() {}\n+}\n", 7, 1)
    assert [(x.action, x.name) for x in st.file_facts(js)] == [
        ("add", "Cart"), ("add", "total"), ("add", "helper"), ("change", "old")]


def test_the_best_words_that_fit():
    # A new definition's docstring before a changed one's, the file with more lines
    # added before the other; words that leave too little room give way to the next.
    changed = FileDiff("a.py", "M", '@@ -1,3 +1,3 @@\n def old(x):\n-    """Was this."""\n'
                       '+    """Now returns the value twice over."""\n', 1, 1)
    new = FileDiff("b.py", "M", "@@ -1 +1,6 @@\n"
                   "+def a_name_so_long_that_it_leaves_no_room_for_the_words_after_it(x):\n"
                   '+    """Doubles the value given to it."""\n'
                   "+def half(x):\n"
                   '+    """Halves the value given to it."""\n'
                   "+    return x / 2\n", 5, 0)
    more = dataclasses.replace(changed, added=9)
    assert st.authored_message([changed, new], "plain", 72) == \
        "Add half: halves the value given to it"
    assert [fact.name for fact, _ in st.author_words([more, new], st.facts([more, new]))] == \
        ["a_name_so_long_that_it_leaves_no_room_for_the_words_after_it", "half", "old"]
    two = dataclasses.replace(new, path="c.py")
    comments = [FileDiff(p, "M", f"@@ -1 +1,2 @@ def {n}():\n+    # {n} counts the lines it reads\n",
                         added, 0) for p, n, added in (("c.py", "few", 1), ("d.py", "many", 7))]
    assert st.author_words([*comments, two], st.facts([*comments, two]))[-2][0].name == "many"
    assert st._cut("the worker thread may stop early", 24) == "the worker thread"  # not "may"
    # A clause boundary that leaves an open parenthesis is passed for a word boundary.
    assert st._cut("the headings (Markdown, reStructuredText) of the sections a document's "
                   "patch changes", 58) == \
        "the headings (Markdown, reStructuredText) of the sections"
