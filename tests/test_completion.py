"""Inline completion's pure parts: the FIM table, the prompt window, the quality rules,
reuse of a generation, and the session's scheduling (with a scripted generator)."""

from __future__ import annotations

import asyncio
import struct

import pytest

from hearth_lsp.server.engine.base import Completion
from hearth_lsp.server.engine.worker import GenerationWorker
from hearth_lsp.server.gguf_info import find_tokens
from hearth_lsp.server.settings import Settings
from hearth_lsp.server.tasks.completion.model import format_of, same_model
from hearth_lsp.server.tasks.completion.prompt import (
    FIM_FORMATS,
    FIM_TOKENS,
    WINDOW_STEP_LINES,
    build_prompt,
    detect_format,
)
from hearth_lsp.server.tasks.completion.quality import (
    clean_suggestion,
    finished,
    may_continue,
    typed_through,
)
from hearth_lsp.server.tasks.completion.run import CompletionRequest
from hearth_lsp.server.tasks.completion.session import CompletionSession
from hearth_lsp.server.tasks.runner import TaskCancelled, TaskRun

# ------------------------------------------------------------------ FIM table

VOCABS = {
    # family: (the FIM token strings of its real vocabulary, its GGUF general.name)
    "qwen2.5-coder": ({"<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", "<|fim_pad|>",
                       "<|repo_name|>", "<|file_sep|>", "<|endoftext|>"},
                      "Qwen2.5 Coder 1.5B Instruct"),
    "starcoder2": ({"<fim_prefix>", "<fim_suffix>", "<fim_middle>", "<fim_pad>", "<file_sep>",
                    "<|endoftext|>"}, "starcoder2-3b"),
    "codellama": ({"▁<PRE>", "▁<SUF>", "▁<MID>", "▁<EOT>"}, "CodeLlama 7b hf"),
    "deepseek-coder": ({"<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>", "<|EOT|>"},
                       "deepseek-coder-1.3b-base"),
    "codegemma": ({"<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>",
                   "<|file_separator|>"}, "codegemma-2b"),
    "codestral": ({"[PREFIX]", "[SUFFIX]", "[MIDDLE]"}, "Codestral 22B v0.1"),
}


@pytest.mark.parametrize("family", sorted(VOCABS))
def test_each_family_is_detected_from_its_token_strings(family):
    vocab, name = VOCABS[family]
    fmt = detect_format(vocab, name)
    assert fmt is not None and fmt.family == family


def test_general_models_sharing_a_coders_vocabulary_complete_by_prefix():
    # Qwen2.5 (not Coder) and Gemma ship the FIM tokens but never learned the format.
    assert detect_format(VOCABS["qwen2.5-coder"][0], "Qwen2.5 1.5B Instruct") is None
    assert detect_format(VOCABS["codegemma"][0], "gemma-2b") is None
    assert detect_format({"<bos>", "<eos>", "<start_of_turn>"}, "Gemma 3 270m") is None
    assert detect_format(set(), "") is None


def test_fim_prompts_have_each_familys_layout():
    by = {f.family: f for f in FIM_FORMATS}
    pre, suf = "def f(x):\n    return ", "\n\nprint(f(2))\n"

    def render(family):
        return build_prompt(pre, suf, fmt=by[family], budget_tokens=512).text

    assert render("qwen2.5-coder") == f"<|fim_prefix|>{pre}<|fim_suffix|>{suf}<|fim_middle|>"
    assert render("starcoder2") == f"<fim_prefix>{pre}<fim_suffix>{suf}<fim_middle>"
    assert render("codellama") == f"▁<PRE> {pre}▁<SUF>{suf}▁<MID>"
    assert render("deepseek-coder") == f"<｜fim▁begin｜>{pre}<｜fim▁hole｜>{suf}<｜fim▁end｜>"
    assert render("codegemma") == f"<|fim_prefix|>{pre}<|fim_suffix|>{suf}<|fim_middle|>"
    assert render("codestral") == f"[SUFFIX]{suf}[PREFIX]{pre}"
    assert "<|file_separator|>" in by["codegemma"].stops
    assert "<|fim_pad|>" in by["qwen2.5-coder"].stops


def _gguf(path, name: str, tokens: list[str]) -> None:
    """A header-only GGUF file: a name and a vocabulary, no tensors."""
    def string(s: str) -> bytes:
        b = s.encode()
        return struct.pack("<Q", len(b)) + b
    kv = [string("general.architecture") + struct.pack("<I", 8) + string("qwen2"),
          string("general.name") + struct.pack("<I", 8) + string(name),
          string("tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 8, len(tokens))
          + b"".join(string(t) for t in tokens)]
    data = b"GGUF" + struct.pack("<IQQ", 3, 0, len(kv)) + b"".join(kv)
    path.write_bytes(data + b"\0" * (-len(data) % 32))  # the (empty) data is aligned


def test_the_format_is_read_from_the_gguf_vocabulary(tmp_path):
    coder = tmp_path / "coder.gguf"
    _gguf(coder, "Qwen2.5 Coder 0.5B", ["a", "<|fim_prefix|>", "<|fim_suffix|>",
                                         "<|fim_middle|>", "<|fim_pad|>", "b"])
    assert find_tokens(coder, FIM_TOKENS) == {"<|fim_prefix|>", "<|fim_suffix|>",
                                              "<|fim_middle|>", "<|fim_pad|>"}
    assert format_of(str(coder)).family == "qwen2.5-coder"
    plain = tmp_path / "plain.gguf"
    _gguf(plain, "Qwen2.5 Coder 0.5B", ["a", "b", "<|endoftext|>"])
    assert format_of(str(plain)) is None
    assert format_of(str(tmp_path / "missing.gguf")) is None


def test_completion_shares_the_task_worker_only_for_the_same_file():
    s = Settings()
    assert same_model(s)  # gemma3-270m, the default, for the tasks and for completion
    s.model.preset = "smollm2"
    assert not same_model(s)
    s.completion.preset = "smollm2"
    assert same_model(s)
    s.model.path = s.completion.path = "/m/a.gguf"
    assert same_model(s)
    s.completion.path = "/m/b.gguf"
    assert not same_model(s)


# ---------------------------------------------------------------- the window


def test_prefix_only_prompt_names_the_file_and_ends_at_the_cursor():
    p = build_prompt("import os\n\ndef f():\n    ret", "urn 1\n", fmt=None, budget_tokens=512,
                     path="pkg/a.py", language="python")
    assert p.text == "# pkg/a.py\nimport os\n\ndef f():\n    ret"
    assert not p.fim and p.suffix == ""


def test_the_window_keeps_its_start_while_typing_so_the_kv_cache_carries_over():
    lines = [f"x{n} = {n}" for n in range(400)]
    prefix = "\n".join(lines) + "\n"
    first = build_prompt(prefix, "", fmt=None, budget_tokens=400)
    typed = build_prompt(prefix + "y = x1", "", fmt=None, budget_tokens=400)
    assert first.window_start == typed.window_start > 0
    assert typed.text.startswith(first.text)
    assert len(first.text) <= 400 * 3
    start_line = prefix[: first.window_start].count("\n")
    assert start_line % WINDOW_STEP_LINES == 0


def test_fim_suffix_is_cut_at_a_line_within_its_share():
    fmt = detect_format(*VOCABS["starcoder2"])
    suffix = "".join(f"line {n}\n" for n in range(1000))
    p = build_prompt("a = ", suffix, fmt=fmt, budget_tokens=300)
    assert p.suffix.endswith("\n") and suffix.startswith(p.suffix)
    assert len(p.suffix) <= 300 * 3 // 4


# ------------------------------------------------------------ quality rules


def clean(raw, prefix, suffix="", multiline=True):
    return clean_suggestion(raw, prefix=prefix, suffix=suffix, multiline=multiline)


def test_stops_at_the_end_of_the_block_by_indentation():
    prefix = "def total(xs):\n    "
    raw = "s = 0\n    for x in xs:\n        s += x\n    return s\n\ndef other():\n    pass\n"
    assert clean(raw, prefix, "\n") == "s = 0\n    for x in xs:\n        s += x\n    return s"


def test_a_block_opened_on_the_cursor_line_ends_at_its_dedent():
    assert clean("\n    return a + b\nprint(1)\n", "def add(a, b):", "\n") == \
        "\n    return a + b"
    js = clean(" {\n  return 1;\n}\nfoo();", "function f()", "\n")
    assert js == " {\n  return 1;\n}"


def test_single_line_mode_and_mid_line_cursors_get_one_line():
    assert clean("a + b\n    x = 1", "    return ", "\n", multiline=False) == "a + b"
    assert clean("a, b)\nz = 2", "f(", ")\n") == "a, b"


def test_never_closes_what_the_editor_already_closed():
    assert clean("b)", "x = foo(a, ", ")\n") == "b"
    assert clean("b) + c", "x = foo(a, ", ")\n") == "b"
    assert clean("b)", "x = foo(a, ", "\n") == "b)"  # nothing closes it yet: keep
    assert clean('hello")', 'print("', '")\n') == "hello"
    assert clean("1]", "xs = [0, ", "]") == "1"


def test_a_closer_that_matches_nothing_ends_the_suggestion():
    assert clean("a + b)\n", "    return ", "\n") == "a + b"
    assert clean("x(1]", "y = ", "\n") == "x(1"


def test_never_repeats_the_lines_after_the_cursor():
    prefix = "def f(x):\n    y = x * 2\n    "
    suffix = "\n    return y\n"
    assert clean("z = y + 1\n    return y\n", prefix, suffix) == "z = y + 1"


def test_a_suggestion_that_only_retypes_the_suffix_is_empty():
    assert clean("return y", "def f(y):\n    ", "return y\n") == ""
    assert clean(")", "foo(a", ")") == ""
    # Several lines whose first is the document's next line: they duplicate it.
    prefix, suffix = "def f(x):\n    ", "\n    y = x * 2\n    return y\n"
    assert clean("y = x * 2\n    y += 1\n    return y\n", prefix, suffix) == ""
    assert clean("urn y\n    z = 1\n", "def f(x):\n    y = x * 2\n    ret",
                 "\n    return y\n") == ""


def test_the_colon_after_the_cursor_is_not_typed_again():
    assert clean("items:\n    pass\n", "def f(items):\n    for item in ", ":\n") == "items"
    assert clean(" > 0:", "while x", ":\n") == " > 0"


def test_junk_is_empty_rather_than_shown():
    assert clean("<|fim_pad|><|endoftext|>", "x = ") == ""
    assert clean("   \n\n", "x = ") == ""
    assert clean("token = '<redacted:api-key>'", "x = ") == ""
    assert clean("1\x00\x01", "x = ") == ""
    assert clean("1<|endoftext|>garbage", "x = ") == "1"
    assert clean("```python\nx = 1\n```", "") == ""
    # a decoding loop is cut before the third identical line
    assert clean("pass\n    pass\n    pass\n    pass", "def f():\n    ", "\n") == \
        "pass\n    pass"
    # copying the line above is not a suggestion, alone or at the head of several
    assert clean("self.value = value", "    self.value = value\n    ", "\n") == ""
    assert clean("self.value = value\n    self.value = value\n",
                 "def f(self, value):\n    self.value = value\n    ", "\n") == ""
    # ... nor a line of one that copies the line before it: the suggestion ends there
    # (typed through, that copy was refused at the cursor, and asked for again at each
    # keystroke); short lines may repeat (`pass`, above)
    loop = "e:\n        log(self.wrapped.info())\n        log(self.wrapped.info())\n        x = 1"
    assert clean(loop, "try:\n    run()\nexcept Exception as ", "\n") == \
        "e:\n        log(self.wrapped.info())"
    assert clean("y = f(a, b)\n    y = f(a, b)", "def g(a, b):\n    ", "\n") == "y = f(a, b)"
    assert clean("items:\n        for item in items:\n            print(item)",
                 "def f(items):\n    for item in ", "\n") == "items:"  # the cursor's whole line


def test_characters_a_reader_cannot_see_are_never_shown():
    # Trojan Source: a bidi override makes code read differently from how it runs.
    assert clean("user.role == 'user' \u202e && 'admin'\u202c", "ok = ") == ""
    assert clean("'\u202e'", "s = '\u202e'\nt = ") == ""  # even where the file has one
    for hidden in ("\u200b", "\x7f", "\x85", "\u2028", "\ufeff"):
        assert clean(f"user.is{hidden}admin", "ok = ") == "", repr(hidden)
    # A joiner the code already uses (an emoji sequence in a string) is its own text.
    family = "\U0001f468\u200d\U0001f469"
    assert clean(f"'{family}'", f"a = '{family}'\nb = ") == f"'{family}'"


def test_finished_says_when_more_tokens_cannot_change_the_suggestion():
    assert not finished("a + b", prefix="    return ", suffix="\n")
    assert finished("a + b\n", prefix="    return ", suffix="", multiline=False)
    assert not finished("\n    return a", prefix="def f(a):", suffix="\n")
    assert finished("\n    return a\nprint", prefix="def f(a):", suffix="\n")


def test_finished_once_the_model_writes_out_the_code_after_the_cursor():
    # A base model, mid-function, writes the line at the cursor and then the lines
    # that already follow it: clean_suggestion cuts those, so decoding on is waste.
    prefix, suffix = "def total(items):\n    s = 0\n    ", "\n    for x in items:\n        s += x\n"
    assert not finished("s = sum(items)\n    for x in it", prefix=prefix, suffix=suffix)
    raw = "s = sum(items)\n    for x in items:\n"
    assert finished(raw, prefix=prefix, suffix=suffix)
    assert clean_suggestion(raw + "        s += x\n    return s", prefix=prefix,
                            suffix=suffix) == clean_suggestion(raw, prefix=prefix,
                                                               suffix=suffix) == "s = sum(items)"
    # a fence or a third identical line in a row ends it too
    assert finished("x = 1\n    ```\n", prefix="def f():\n    ", suffix="\n")
    assert not finished("x = 1\n    y = 2\n", prefix="def f():\n    ", suffix="\n")
    assert finished("pass\n    pass\n    pass\n", prefix="def f():\n    ", suffix="\n")
    assert not finished("pass\n    pass\n", prefix="def f():\n    ", suffix="\n")
    assert finished("y = f(a, b)\n    y = f(a, b)\n", prefix="def g(a, b):\n    ", suffix="\n")


def test_typing_through_a_suggestion_reuses_it():
    assert typed_through("x = ", "\n", "foo(1)", "x = fo", "\n") == "o(1)"
    assert typed_through("x = ", "\n", "foo(1)", "x = ba", "\n") is None
    assert typed_through("x = ", "\n", "foo(1)", "x = fo", ")\n") is None  # suffix changed
    assert may_continue("x = ", "\n", "fo", "x = foo(", "\n")  # typed ahead of it
    assert not may_continue("x = ", "\n", "fo", "x = fa", "\n")


# ------------------------------------------------------------------ session


class Script:
    """A generator standing in for the model: answers, piece by piece, with a delay."""

    def __init__(self, answer: str, delay: float = 0.0):
        self.answer, self.delay, self.calls = answer, delay, 0
        self.cancelled = 0

    async def __call__(self, run: TaskRun, request: CompletionRequest, on_piece):
        self.calls += 1
        for piece in self.answer:
            if run.token.cancelled:
                self.cancelled += 1
                raise TaskCancelled("completion was cancelled")
            on_piece(piece)
            await asyncio.sleep(self.delay)
        if run.token.cancelled:
            raise TaskCancelled("completion was cancelled")
        return Completion(self.answer, 1, len(self.answer), 0.0, 0.0, "stop")


def req(prefix, suffix="\n"):
    return CompletionRequest(prefix=prefix, suffix=suffix)


def new_run():
    return TaskRun(GenerationWorker())


async def test_a_finished_generation_answers_the_same_prefix_and_typing_through_it():
    session, script = CompletionSession(), Script("foo(1)\nbar()\n")
    first = await session.suggest("a", req("x = "), new_run=new_run, generate=script)
    assert (first.text, first.source) == ("foo(1)", "generated")
    again = await session.suggest("a", req("x = "), new_run=new_run, generate=script)
    typed = await session.suggest("a", req("x = foo"), new_run=new_run, generate=script)
    assert (again.text, again.source) == ("foo(1)", "cache")
    assert (typed.text, typed.source) == ("(1)", "cache")
    assert script.calls == 1 and session.stats.reused == 2


async def test_the_generation_stops_at_the_end_of_the_line():
    session, script = CompletionSession(), Script("foo(1)\nbar()\nbaz()\n" * 5)
    found = await session.suggest("a", req("x = "), new_run=new_run, generate=script)
    assert found.text == "foo(1)"
    assert script.cancelled == 1 and session.stats.stopped_early == 1


async def test_what_a_generation_stopped_early_had_begun_of_the_next_line_is_never_shown():
    """Stopped one token into the next line ("total_pri"), it was cached with that
    fragment; typing through the suggestion then showed the fragment."""
    session = CompletionSession()
    # (A piece may hold the end of a line and the start of the next: here "\n\ntotal_pri".)
    script = Script(["a + b", "\n\ntotal_pri", "ce = compute_total(cart)\n"])
    prefix = "def add(a, b):\n    return "
    first = await session.suggest("a", req(prefix), new_run=new_run, generate=script)
    assert first.text == "a + b" and session.stats.stopped_early == 1
    after = await session.suggest("a", req(prefix + "a + b\n\n"), new_run=new_run,
                                  generate=Script("print(add(1, 2))\n"))
    assert (after.text, after.source) == ("print(add(1, 2))", "generated")


async def test_typing_what_the_running_generation_writes_waits_for_it():
    session, script = CompletionSession(), Script("foo(1)\n", delay=0.02)
    first = asyncio.ensure_future(session.suggest("a", req("x = "), new_run=new_run,
                                                  generate=script))
    await asyncio.sleep(0.05)  # a piece or two out
    second = await session.suggest("a", req("x = f"), new_run=new_run, generate=script)
    assert (second.text, second.source) == ("oo(1)", "running")
    assert (await first).text == "foo(1)"
    assert script.calls == 1


async def test_an_edit_that_contradicts_the_running_generation_cancels_it():
    session, script = CompletionSession(), Script("foo(1)\n", delay=0.05)
    first = asyncio.ensure_future(session.suggest("a", req("x = "), new_run=new_run,
                                                  generate=script))
    await asyncio.sleep(0.07)
    session.edited("a", "x = f\n")  # agrees: keeps running
    assert session.stats.cancelled_by_edit == 0
    session.edited("a", "x = b\n")
    assert session.stats.cancelled_by_edit == 1
    assert (await first).text == ""
    assert script.cancelled == 1


async def test_a_newer_request_during_the_debounce_wins():
    session, script = CompletionSession(), Script("1\n")
    older = asyncio.ensure_future(session.suggest("a", req("x = "), new_run=new_run,
                                                  generate=script, debounce_s=0.1))
    await asyncio.sleep(0.02)
    newer = await session.suggest("a", req("y = "), new_run=new_run, generate=script,
                                  debounce_s=0.1)
    assert (await older).reason == "superseded"
    assert newer.text == "1" and script.calls == 1


async def test_a_cancelled_request_leaves_its_generation_for_the_next_one():
    session, script = CompletionSession(), Script("foo(1)\n", delay=0.02)
    first = asyncio.ensure_future(session.suggest("a", req("x = "), new_run=new_run,
                                                  generate=script))
    await asyncio.sleep(0.03)
    first.cancel()  # $/cancelRequest: the user typed on
    await asyncio.sleep(0.01)
    second = await session.suggest("a", req("x = fo"), new_run=new_run, generate=script)
    assert second.text == "o(1)" and script.calls == 1


async def test_nothing_suggested_before_a_key_does_not_answer_for_after_it():
    """A generation that ends with nothing at "x = " says nothing about "x = f": the
    request made after the key gets a generation of its own (the editor asks again
    only at the next key, so an empty answer here would leave no ghost text at all)."""
    session, release, prompts = CompletionSession(), asyncio.Event(), []

    async def generate(run, request, on_piece):
        prompts.append(request.prefix)
        if request.prefix == "x = ":
            await release.wait()  # still running, nothing written, when "f" is typed
            return Completion("", 1, 0, 0.0, 0.0, "stop")
        on_piece("oo(1)\n")
        return Completion("oo(1)\n", 1, 1, 0.0, 0.0, "stop")

    first = asyncio.ensure_future(session.suggest("a", req("x = "), new_run=new_run,
                                                  generate=generate))
    while not prompts:
        await asyncio.sleep(0)
    second = asyncio.ensure_future(session.suggest("a", req("x = f"), new_run=new_run,
                                                   generate=generate))
    for _ in range(3):  # the second request is now waiting for the first generation
        await asyncio.sleep(0)
    release.set()
    assert (await first).text == ""
    found = await second
    assert (found.text, found.source) == ("oo(1)", "generated")
    assert prompts == ["x = ", "x = f"]


# ------------------------------------------------------------ repository context

from hearth_lsp.server.tasks.completion.prompt import (  # noqa: E402
    Definition,
    definition_head,
    identifiers_near,
    pick_definitions,
    render_definitions,
)


def test_names_near_the_cursor_nearest_first_without_the_word_being_typed():
    prefix = ("import os\n\ndef total(order):\n"
              "    items = load_items(order, 'ignored_name')  # comment_name\n"
              "    return sum_prices(items, discou")
    names = identifiers_near(prefix, ")\n\nafter_call()\n")
    # the cursor's line right to left, then the lines above upwards, then below
    assert names[:2] == ["items", "sum_prices"]
    assert names.index("load_items") < names.index("total") < names.index("after_call")
    assert "discou" not in names  # being typed: not a name yet
    assert "ignored_name" not in names and "comment_name" not in names
    assert "return" not in names and "def" not in names


def test_a_definition_head_spans_an_open_signature_and_checks_the_name():
    lines = ["class Cart:\n", "    def add(self, item,\n", "            qty=1) -> None:\n",
             "        self.items.append(item)\n"]
    assert definition_head(lines, 1, "add") == "def add(self, item, qty=1) -> None:"
    black = ["def prompt(\n", "    text: str,\n", "    default: str | None = None,\n",
             ") -> str:\n", "    pass\n"]
    assert definition_head(black, 0, "prompt") == \
        "def prompt(text: str, default: str | None = None) -> str:"
    assert definition_head(black, 0, "prompt", max_chars=20) == "def prompt(text: ..."
    assert definition_head(["function f(a, b) {", "  return a"], 0, "f") == "function f(a, b)"
    assert definition_head(lines, 3, "add") is None  # moved since it was indexed
    assert definition_head(lines, 9, "add") is None


def _index(rows):
    def lookup(name):  # the index answers names containing the query, exact first
        return [r for r in rows if name in r[0]]
    return lookup


FILES = {
    "shop/cart.py": ["def add_item(cart, item, qty=1):", "    pass",
                     "def secret_total(cart):", "    pass"],
    "shop/util.py": ["def helper(x):", "    pass"],
    "private/keys.py": ["def helper(x, key):", "    pass"],
    "m.py": ["from shop.cart import add_item", "", "def helper(y):", "    return y", ""],
}


def test_definitions_are_exact_names_current_file_first_and_never_refused_files():
    rows = [("add_item", "function", "shop/cart.py", 0, 4, 12),
            ("add_item_fast", "function", "shop/cart.py", 7, 4, 17),
            ("helper", "function", "shop/util.py", 0, 4, 10),
            ("helper", "function", "private/keys.py", 0, 4, 10),
            ("helper", "function", "m.py", 2, 4, 10)]
    read_paths = []

    def read(path):
        read_paths.append(path)
        return FILES.get(path)

    defs = pick_definitions(["add_item", "helper"], _index(rows), read,
                            allowed=lambda p: not p.startswith("private/"), current="m.py")
    assert [(d.name, d.path) for d in defs] == [("add_item", "shop/cart.py"),
                                                ("helper", "m.py"), ("helper", "shop/util.py")]
    assert defs[0].text == "def add_item(cart, item, qty=1):"
    assert "private/keys.py" not in read_paths  # a local-only file is never even read
    # a name defined in many places says nothing about this spot
    many = [("run", "function", f"p{i}.py", 0, 0, 3) for i in range(9)]
    assert pick_definitions(["run"], _index(many), lambda p: ["def run():"]) == []


def test_definitions_render_as_comments_in_a_stable_order_within_the_budget():
    a = Definition("add_item", "shop/cart.py", 0, "def add_item(cart, item, qty=1):")
    b = Definition("helper", "shop/util.py", 0, "def helper(x):")
    c = Definition("secret_total", "shop/cart.py", 2, "def secret_total(cart):")
    text = render_definitions([b, a, c], language="python", budget_tokens=200)
    assert text.splitlines() == [
        "# Definitions used here, from the workspace:", "# shop/cart.py:",
        "# def add_item(cart, item, qty=1):", "# def secret_total(cart):", "# shop/util.py:",
        "# def helper(x):", ""]
    # the nearest-first order decides what fits, not where it is written
    assert render_definitions([c, b, a], language="python", budget_tokens=200) == text
    assert render_definitions([b, a, c], language="go", budget_tokens=200).startswith(
        "// Definitions")
    small = render_definitions([b, a, c], language="python", budget_tokens=30)
    assert "helper" in small and "add_item" not in small
    assert render_definitions([a], language=None, budget_tokens=200) == ""


def test_definitions_come_first_and_none_the_window_already_shows():
    shown_def = Definition("helper", "m.py", 2, "def helper(y):")
    other = Definition("add_item", "shop/cart.py", 0, "def add_item(cart, item, qty=1):")
    prefix = "\n".join(FILES["m.py"][:4]) + "\nx = add_item(helper(1), "
    for fmt in (None, FIM_FORMATS[0]):
        prompt = build_prompt(prefix, ")\n", fmt=fmt, budget_tokens=512, path="m.py",
                              language="python", definitions=[shown_def, other])
        assert "def add_item(cart, item, qty=1):" in prompt.context
        assert "helper" not in prompt.context  # in the window already: not twice
        body = prompt.text.split(prompt.context, 1)
        assert body[0] in ("", fmt.prefix if fmt else "")  # the very start of the prompt
        assert body[1].index("# m.py") < body[1].index("x = add_item(")


def test_the_context_is_the_same_while_typing_and_the_definitions_do_not_change():
    defs = [Definition("add_item", "shop/cart.py", 0, "def add_item(cart, item, qty=1):")]
    line = "x = add_item(cart, 'book', qty"
    texts = [build_prompt("import os\n" + line[:k], "\n", fmt=None, budget_tokens=512,
                          path="m.py", language="python", definitions=defs).text
             for k in range(len(line) - 8, len(line) + 1)]
    first = texts[0].split("# m.py")[0]
    assert first and all(t.startswith(first) for t in texts)


def test_repository_context_from_an_index_leaves_local_only_files_out_with_model_servers(
        tmp_path):
    from types import SimpleNamespace

    from hearth_lsp.server.settings import BackendSettings
    from hearth_lsp.server.tasks.completion.context import repo_definitions

    (tmp_path / "pricing.py").write_text("def apply_discount(cents, percent):\n    pass\n")
    (tmp_path / "secret.py").write_text("def api_token(user):\n    pass\n")
    rows = [("apply_discount", "function", "pricing.py", 0, 4, 18),
            ("api_token", "function", "secret.py", 0, 4, 13)]
    index = SimpleNamespace(root=tmp_path, symbols=lambda name, limit: [
        r for r in rows if name in r[0]][:limit])
    request = CompletionRequest("x = apply_discount(api_token(user), ", ")\n", path="m.py",
                                language="python")
    settings = Settings()
    settings.privacy.local_only = ["secret.py"]
    local = repo_definitions(index, request, "m.py", settings)
    assert [d.text for d in local] == ["def api_token(user):",
                                       "def apply_discount(cents, percent):"]
    # with a model server configured, the prompt may leave: the local-only file is not read
    settings.backends = {"team": BackendSettings("team", "http://127.0.0.1:9/v1")}
    shared = repo_definitions(index, request, "m.py", settings)
    assert [d.path for d in shared] == ["pricing.py"]
    # The server's judge of each file, when it gives one (a folder inside has its own).
    judged = repo_definitions(index, request, "m.py", settings,
                              private=lambda path: path == "pricing.py")
    assert [d.path for d in judged] == ["secret.py"]


from hearth_lsp.server.tasks.completion.prompt import (  # noqa: E402
    Snippet,
    best_snippet,
    lines_above,
    render_snippet,
    snippet_query,
)

SIMILAR = ["def load(path):", "    with open(path) as f:", "        data = json.load(f)",
           "    return Config(**data)", "", "def save(cfg, path):",
           "    with open(path, 'w') as f:", "        json.dump(asdict(cfg), f)"]


def test_the_lines_above_and_their_names_leave_out_the_line_being_typed():
    prefix = "import json\n\ndef read(path):\n    with open(path) as f:\n        data = js"
    above = lines_above(prefix, n=3)
    assert above == ["", "def read(path):", "    with open(path) as f:"]
    assert lines_above(prefix + "on.lo", n=3) == above  # stable while the line is typed
    # names nearest line first, each once, no keywords or short names
    assert snippet_query(above) == "open path read"
    assert snippet_query(["x = 1  # a comment_name", "'in_a_string'"]) == ""


def test_the_most_similar_window_of_the_candidates_is_chosen():
    above = ["def read(path):", "    with open(path) as f:", "        data = json.load(f)"]
    unrelated = ["class Point:", "    x: int", "    y: int"]
    found = best_snippet(above, [("geo.py", unrelated, 0, 3), ("io.py", SIMILAR, 0, 8)],
                         window=3)
    assert found == Snippet("io.py", 0, tuple(SIMILAR[:3]), found.similarity)
    assert found.similarity > 0.5
    # only windows that start inside a candidate's range (its chunk) are looked at
    later = best_snippet(above, [("io.py", SIMILAR, 5, 8)], window=3)
    assert later is not None and later.line == 5
    assert best_snippet(above, [("geo.py", unrelated, 0, 3)]) is None  # nothing alike
    assert best_snippet([], [("io.py", SIMILAR, 0, 8)]) is None


def test_the_snippet_shown_before_stays_while_it_is_nearly_as_good():
    above = ["def read(path):", "    with open(path) as f:", "        data = json.load(f)"]
    best = best_snippet(above, [("io.py", SIMILAR, 0, 8)], window=3)
    before = Snippet("old.py", 4, ("def read(path):", "    with open(path) as f:"), 0.9)
    kept = best_snippet(above, [("io.py", SIMILAR, 0, 8)], window=3, keep=before)
    assert best is not None and best.path == "io.py"
    assert kept is not None and (kept.path, kept.line) == ("old.py", 4)  # the prompt's start
    assert kept.similarity < best.similarity  # rescored against the lines above now
    assert best_snippet(above, [("io.py", SIMILAR, 0, 8)], window=3, keep=before,
                        keep_share=1.0) == best
    gone = Snippet("old.py", 4, ("class Point:", "    x: int"), 0.9)  # nothing alike now
    assert best_snippet(above, [("io.py", SIMILAR, 0, 8)], window=3, keep=gone) == best
    assert best_snippet(above, [], keep=gone) is None


def test_each_document_keeps_its_last_snippet_and_the_least_recent_documents_go_first():
    from hearth_lsp.server.tasks.completion.context import RecentSnippets

    def snip(n: int) -> Snippet:
        return Snippet(f"s{n}.py", n, (f"def f{n}():",), 0.5)

    recent = RecentSnippets(size=2)
    recent.remember("a", snip(1))
    recent.remember("b", snip(2))
    recent.remember("a", snip(3))  # a new line in a: a's snippet now, a used last
    assert recent.get("a") == snip(3) and recent.get("b") == snip(2)
    recent.remember("c", snip(4))  # a third document: b was used least recently
    assert recent.get("b") is None and recent.get("a") == snip(3) and len(recent) == 2
    recent.remember("a", None)  # nothing alike any more: the old one is not kept
    assert recent.get("a") is None and recent.get("c") == snip(4) and len(recent) == 1


def test_a_snippet_renders_as_whole_commented_lines_within_its_budget():
    snippet = Snippet("pkg/io.py", 0, tuple(SIMILAR[:5]), 0.6)
    text = render_snippet(snippet, language="python", budget_chars=500)
    assert text.splitlines() == ["# Similar code in pkg/io.py:", "# def load(path):",
                                 "#     with open(path) as f:", "#         data = json.load(f)",
                                 "#     return Config(**data)", ""]  # no blank line kept
    small = render_snippet(snippet, language="python", budget_chars=60)
    assert small.splitlines() == ["# Similar code in pkg/io.py:", "# def load(path):", ""]
    assert render_snippet(snippet, language="python", budget_chars=20) == ""
    assert render_snippet(snippet, language=None, budget_chars=500) == ""
    assert render_snippet(snippet, language="go", budget_chars=500).startswith("// Similar")


def test_the_snippet_comes_first_and_the_definitions_get_what_it_leaves():
    snippet = Snippet("pkg/io.py", 0, tuple(SIMILAR[:4]), 0.6)
    defs = [Definition("add_item", "shop/cart.py", 0, "def add_item(cart, item, qty=1):")]
    prefix = "def read(path):\n    with open(path) as f:\n        data = "
    for fmt in (None, FIM_FORMATS[0]):
        prompt = build_prompt(prefix, "\n", fmt=fmt, budget_tokens=512, path="m.py",
                              language="python", definitions=defs, snippet=snippet)
        assert prompt.context.startswith("# Similar code in pkg/io.py:\n# def load(path):")
        assert "# def add_item(cart, item, qty=1):" in prompt.context
        assert prompt.text.index(prompt.context) <= len(fmt.prefix if fmt else "")
    # a budget the snippet fills leaves the definitions out
    tight = build_prompt(prefix, "\n", fmt=None, budget_tokens=512, path="m.py",
                         language="python", definitions=defs, snippet=snippet,
                         context_tokens=40)
    assert "Similar code" in tight.context and "add_item" not in tight.context


def test_a_snippet_comes_from_other_files_the_index_finds_and_never_a_local_only_one(
        tmp_path):
    from types import SimpleNamespace

    from hearth_lsp.server.index_service import IndexNotReady
    from hearth_lsp.server.settings import BackendSettings
    from hearth_lsp.server.tasks.completion.context import repo_snippet, with_repo_context

    (tmp_path / "io.py").write_text("\n".join(SIMILAR) + "\n")
    (tmp_path / "secret.py").write_text("\n".join(SIMILAR) + "\n")
    (tmp_path / "m.py").write_text("\n".join(SIMILAR) + "\n")
    hits = [SimpleNamespace(path=p, start_line=1, end_line=8)
            for p in ("m.py", "secret.py", "io.py")]
    asked = []

    def search(query, k, dense):
        asked.append((query, dense))
        return hits

    index = SimpleNamespace(root=tmp_path, search=search)
    request = CompletionRequest("def read(path):\n    with open(path) as f:\n        da", "\n",
                                path="m.py", language="python")
    settings = Settings()
    settings.privacy.local_only = ["secret.py"]
    found = repo_snippet(index, request, "m.py", settings)
    assert found is not None and found.path == "secret.py"  # m.py is the document itself
    assert asked == [("open path read", False)]  # the lexical index alone: no embedding
    settings.backends = {"team": BackendSettings("team", "http://127.0.0.1:9/v1")}
    assert repo_snippet(index, request, "m.py", settings).path == "io.py"
    # nor does the local-only file's snippet, remembered from before, stay
    assert repo_snippet(index, request, "m.py", settings, keep=found).path == "io.py"
    before = Snippet("old.py", 0, ("def read(path):", "    with open(path) as f:"), 0.5)
    assert repo_snippet(index, request, "m.py", settings, keep=before).path == "old.py"
    assert repo_snippet(index, request, "m.py", settings, keep=before,
                        private=lambda path: path in ("io.py", "old.py")).path == "secret.py"
    with_context = with_repo_context(SimpleNamespace(root=tmp_path, search=search,
                                                     symbols=lambda name, limit: []),
                                     request, "m.py", settings,
                                     private=lambda path: path == "io.py")
    assert with_context.snippet.path == "secret.py"

    def not_ready(query, k, dense):
        raise IndexNotReady("still being built")

    assert repo_snippet(SimpleNamespace(root=tmp_path, search=not_ready), request, "m.py",
                        settings) is None


class Gated(Script):
    """Writes ``first``, then waits for ``gate`` before the rest: a generation still
    running when the request's time is up, whatever the machine's speed."""

    def __init__(self, first: str, rest: str):
        super().__init__(first + rest)
        self.first, self.rest, self.gate = first, rest, asyncio.Event()

    async def __call__(self, run, request, on_piece):
        self.calls += 1
        for piece in self.first:
            on_piece(piece)
        await self.gate.wait()
        for piece in self.rest:
            on_piece(piece)
        return Completion(self.answer, 1, len(self.answer), 0.0, 0.0, "stop")


async def test_past_the_time_limit_the_whole_words_so_far_and_the_rest_on_accept():
    session, script = CompletionSession(), Gated("return self.na", "me\n")
    first = await session.suggest("a", req("    "), new_run=new_run, generate=script,
                                  answer_within_s=0.01)
    assert (first.text, first.source) == ("return self.", "partial")  # not half a name
    assert session.stats.partial == 1
    script.gate.set()
    accepted = await session.suggest("a", req("    return self."), new_run=new_run,
                                     generate=script, answer_within_s=0.01)
    assert accepted.text == "name" and script.calls == 1  # the same generation, finished


async def test_without_a_time_limit_the_whole_suggestion():
    session, script = CompletionSession(), Gated("return self.na", "me\n")
    pending = asyncio.ensure_future(session.suggest("a", req("    "), new_run=new_run,
                                                    generate=script))
    await asyncio.sleep(0.05)
    assert not pending.done()
    script.gate.set()
    assert (await pending).text == "return self.name"


async def test_nothing_whole_yet_waits_for_the_first_word():
    session, script = CompletionSession(), Gated("retu", "rn 1\n")
    pending = asyncio.ensure_future(session.suggest("a", req("    "), new_run=new_run,
                                                    generate=script, answer_within_s=0.01))
    await asyncio.sleep(0.1)
    assert not pending.done()  # "retu" is not a word to show
    script.gate.set()
    assert (await pending).text == "return 1"


async def test_a_whole_line_is_shown_at_once_and_the_block_after_it_on_accept():
    # The block goes on (gated), the time limit is far: the line shows without either.
    session = CompletionSession()
    script = Gated("for item in items:\n        total +=", " item\n    return total\n")
    first = await asyncio.wait_for(session.suggest(
        "a", req("def f(items):\n    total = 0\n    "), new_run=new_run, generate=script,
        answer_within_s=60), 5)
    assert (first.text, first.source) == ("for item in items:", "partial")
    script.gate.set()
    accepted = await session.suggest("a", req("def f(items):\n    total = 0\n    for item in "
                                              "items:"), new_run=new_run, generate=script,
                                     answer_within_s=60)
    assert accepted.text == "\n        total += item" and script.calls == 1


async def test_without_a_time_limit_a_block_shows_whole():
    session = CompletionSession()
    script = Gated("for item in items:\n        total +=", " item\n    return total\n")
    pending = asyncio.ensure_future(session.suggest(
        "a", req("def f(items):\n    total = 0\n    "), new_run=new_run, generate=script))
    await asyncio.sleep(0.05)
    assert not pending.done()
    script.gate.set()
    assert (await pending).text == "for item in items:\n        total += item"
