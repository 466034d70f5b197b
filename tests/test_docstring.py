"""Docstring domain logic: finding, prompting, cleaning, placing, validating."""

from __future__ import annotations

import ast

import pytest

from hearth_lsp.server.chat_format import ChatTemplateError, Message, render_chat
from hearth_lsp.server.tasks.docs import python as ds

SRC = '''import math


class Shape:
    """A shape."""

    @staticmethod
    def area(r: float) -> float:
        # comment right under the signature
        return math.pi * r ** 2

    async def grow(self, by, *more, scale=1, **opts):
        """Already documented."""
        return by


def outer(a, b=2, /, c=3, *, d):
    def inner(x): return x * 2
    return inner(a)
'''


def names(source):
    return [f.qualname for f in ds.list_functions(source)]


def test_finds_functions_methods_and_nested_functions():
    assert names(SRC) == ["Shape.area", "Shape.grow", "outer", "outer.inner"]
    assert ds.find_function(SRC, 6).qualname == "Shape.area"  # on the decorator
    assert ds.find_function(SRC, 9).qualname == "Shape.area"  # in the body
    assert ds.find_function(SRC, 17).qualname == "outer.inner"
    assert ds.find_function(SRC, 0) is None
    assert ds.find_function("def broken(:\n", 0) is None


def test_params_cover_every_kind():
    grow = ds.find_function(SRC, 11)
    assert grow.params == ("self", "by", "*more", "scale", "**opts")
    assert ds.find_function(SRC, 16).params == ("a", "b", "c", "d")
    assert grow.has_docstring and not ds.find_function(SRC, 7).has_docstring


def test_insert_goes_under_the_signature_before_comments():
    fn = ds.find_function(SRC, 7)
    edit = ds.docstring_edit(SRC, fn, "Return the area of a circle.")
    new = ds.apply_edit(SRC, edit)
    ds.validate(SRC, new, fn, "Return the area of a circle.")
    lines = new.splitlines()
    assert lines[8] == '        """Return the area of a circle."""'
    assert lines[9] == "        # comment right under the signature"


def test_multiline_docstring_is_indented_and_parses():
    fn = ds.find_function(SRC, 16)
    text = "Add things.\n\nArgs:\n    a: the first thing.\n    d: the last thing."
    new = ds.apply_edit(SRC, ds.docstring_edit(SRC, fn, text))
    ds.validate(SRC, new, fn, text)
    tree = ast.parse(new)
    outer = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "outer")
    assert ast.get_docstring(outer) == text
    assert '    """Add things.\n\n    Args:\n        a: the first thing.\n        d: the last thing.\n    """' in new


def test_one_line_function_body_moves_to_its_own_line():
    fn = ds.find_function(SRC, 17)
    new = ds.apply_edit(SRC, ds.docstring_edit(SRC, fn, "Double x."))
    ds.validate(SRC, new, fn, "Double x.")
    assert '    def inner(x):\n        """Double x."""\n        return x * 2\n' in new


def test_regenerate_replaces_the_existing_docstring_only():
    fn = ds.find_function(SRC, 11)
    new = ds.apply_edit(SRC, ds.docstring_edit(SRC, fn, "Grow the shape."))
    ds.validate(SRC, new, fn, "Grow the shape.")
    assert "Already documented" not in new and new.count('"""Grow the shape."""') == 1


def test_quotes_and_backslashes_are_escaped():
    fn = ds.find_function(SRC, 7)
    text = 'Match \\d+ and """quotes""".'
    new = ds.apply_edit(SRC, ds.docstring_edit(SRC, fn, text))
    ds.validate(SRC, new, fn, text)


def test_non_ascii_source_positions():
    src = 'def café(ñ):\n    return "日本語"\n'
    fn = ds.find_function(src, 0)
    new = ds.apply_edit(src, ds.docstring_edit(src, fn, "Serve coffee ☕."))
    assert new == 'def café(ñ):\n    """Serve coffee ☕."""\n    return "日本語"\n'


def test_validation_rejects_code_changes_and_broken_files():
    fn = ds.find_function(SRC, 7)
    changed = SRC.replace("math.pi * r ** 2", "0")
    with pytest.raises(ds.DocstringError, match="change code"):
        ds.validate(SRC, changed, fn, "x")
    with pytest.raises(ds.DocstringError, match="break the file"):
        ds.validate(SRC, SRC + "\ndef (:\n", fn, "x")
    with pytest.raises(ds.DocstringError, match="did not land"):
        ds.validate(SRC, SRC, fn, "x")


@pytest.mark.parametrize("raw, expected", [
    ("Return the area of a circle.", "Return the area of a circle."),
    ('```python\n"""Return the area."""\n```', "Return the area."),
    ('Here is the docstring:\n"""\nCompute it.\n\nArgs:\n    r: the radius in metres.\n"""\nmore chat',
     "Compute it.\n\nArgs:\n    r: the radius in metres."),
    ("Sure! Compute it.\ndef area(r):\n    return 1", "Compute it."),
    ("Compute it.\nCompute it.\nCompute it.", "Compute it."),
    ("   \n\n", ""),
    ("Compute it.<|im_end|>garbage", "Compute it."),
])
def test_clean_output(raw, expected):
    fn = ds.find_function(SRC, 7)
    assert ds.clean_output(raw, fn, ["<|im_end|>"]) == expected


TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
            "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def test_chat_prompt_puts_stable_parts_first_for_prefix_reuse():
    a = ds.build_prompt(SRC, ds.find_function(SRC, 7), path="s.py", chat_template=TEMPLATE)
    b = ds.build_prompt(SRC, ds.find_function(SRC, 16), path="s.py", chat_template=TEMPLATE)
    assert a.chat and a.text.endswith('<|im_start|>assistant\n"""')
    common = 0
    while a.text[common] == b.text[common]:
        common += 1
    # Everything up to the function that changes is shared: instructions and the whole file.
    assert a.text[:common].count("class Shape") == 1 and "def outer" in a.text[:common]
    assert "Write the docstring for `Shape.area`" in a.text
    assert "<|im_end|>" in a.stop and '"""' in a.stop


def test_completion_prompt_continues_the_file_inside_quotes():
    p = ds.build_prompt(SRC, ds.find_function(SRC, 16), path="s.py", chat_template=None)
    assert not p.chat
    assert p.text.endswith('def outer(a, b=2, /, c=3, *, d):\n    """')
    assert '"""' in p.stop
    one_liner = ds.build_prompt(SRC, ds.find_function(SRC, 17), path="s.py", chat_template=None)
    assert one_liner.text.endswith('    def inner(x):\n        """')


def test_long_files_are_cut_to_the_context_budget():
    big = "X = 1\n" * 20000 + SRC
    fn = ds.find_function(big, 20016)
    p = ds.build_prompt(big, fn, path="big.py", chat_template=TEMPLATE, context_tokens=2048)
    assert len(p.text) < 2048 * ds.CHARS_PER_TOKEN
    assert "def outer" in p.text and "import math" in p.text and "# ..." in p.text


# A file much larger than the context: the target is a method far down, using a
# helper defined near the top and another method of its class.
FILLER = "".join(f"def filler_{n}(x):\n    \"\"\"Filler {n}.\"\"\"\n    return x + {n}\n\n\n"
                 for n in range(400))
BIG = ('"""A big module."""\n\nimport math\nfrom os import path\n\n\n'
       "def _scale(value, factor):\n    \"\"\"Multiply value by factor.\"\"\"\n"
       "    return value * factor\n\n\n" + FILLER +
       "class Circle:\n    \"\"\"A circle.\"\"\"\n\n    unit = 'cm'\n\n"
       "    def __init__(self, radius):\n        self.radius = radius\n\n"
       "    def diameter(self):\n        \"\"\"Twice the radius.\"\"\"\n"
       "        return 2 * self.radius\n\n" + FILLER.replace("def ", "    def ")
       .replace("\n    \"\"\"", "\n        \"\"\"").replace("\n    return", "\n        return") +
       "    def area(self, factor=1.0):\n"
       "        return _scale(math.pi * (self.diameter() / 2) ** 2, factor)\n\n\n"
       + FILLER.replace("filler_", "tail_"))


def test_completion_prompt_keeps_the_function_in_a_large_file():
    fn = next(f for f in ds.list_functions(BIG) if f.qualname == "Circle.area")
    p = ds.build_prompt(BIG, fn, path="big.py", chat_template=None, context_tokens=2048)
    assert len(BIG) > 10 * 2048 * ds.CHARS_PER_TOKEN
    assert len(p.text) < 2048 * ds.CHARS_PER_TOKEN
    # The continuation ends at the target's signature, inside its docstring...
    assert p.text.endswith('    def area(self, factor=1.0):\n        """')
    # ...after its class header and the definitions it uses, not the head of the file.
    assert "class Circle:" in p.text and "def _scale(value, factor):" in p.text
    assert "def diameter(self):" in p.text and "import math" in p.text
    assert "truncated" not in p.text and "# ..." not in p.text
    assert p.text.index("class Circle:") < p.text.index("def diameter") < \
        p.text.index("def area")


def test_context_lines_choose_what_the_function_uses():
    fn = next(f for f in ds.list_functions(BIG) if f.qualname == "Circle.area")
    lines = BIG.splitlines()
    chosen = [lines[n] for n in ds.context_lines(BIG, fn, 600)]
    assert "class Circle:" in chosen and "def _scale(value, factor):" in chosen
    assert "    def diameter(self):" in chosen
    assert not any(line.startswith("def tail_") for line in chosen)  # used first
    assert sum(len(x) + 1 for x in chosen) <= 600 + len("class Circle:    \"\"\"A circle.\"\"\"")
    assert not any(fn.start_line <= n <= fn.end_line for n in ds.context_lines(BIG, fn, 600))


def test_completion_prompt_of_a_method_in_a_small_file_is_the_file_head():
    fn = ds.find_function(SRC, 7)
    p = ds.build_prompt(SRC, fn, path="s.py", chat_template=None)
    assert p.text == SRC[:SRC.index("    def area(r: float) -> float:")] + \
        '    def area(r: float) -> float:\n        """'


def test_prompt_templates_can_be_overridden_per_workspace(tmp_path):
    from hearth_lsp.server.trust import set_trusted

    override = tmp_path / ".hearth" / "prompts" / "docstring.system.txt"
    override.parent.mkdir(parents=True)
    override.write_text("CUSTOM INSTRUCTIONS")

    def prompt() -> str:
        return ds.build_prompt(SRC, ds.find_function(SRC, 7), path="s.py",
                               chat_template=TEMPLATE, root=tmp_path).text

    assert "CUSTOM INSTRUCTIONS" not in prompt()  # only in a folder the user trusts
    set_trusted(tmp_path, True)
    try:
        assert "CUSTOM INSTRUCTIONS" in prompt()
    finally:
        set_trusted(tmp_path, False)


def test_chat_template_errors_are_clear():
    bad = "{{ raise_exception('System role not supported') }}"
    with pytest.raises(ChatTemplateError, match="System role not supported"):
        render_chat(bad, [Message("user", "hi")])


@pytest.mark.parametrize("source, style", [
    ('def f(a):\n    """Do.\n\n    Args:\n        a: x\n    """\n', "google"),
    ('def f(a):\n    """Do.\n\n    Parameters\n    ----------\n    a : int\n    """\n', "numpy"),
    ('def f(a):\n    """Do.\n\n    :param a: x\n    """\n', "sphinx"),
    ("def f(a):\n    return a\n", "google"),
])
def test_the_files_docstring_style_is_detected(source, style):
    assert ds.detect_style(source) == style


@pytest.mark.parametrize("text, error", [
    ("Add them.\n\nArgs:\n    a: first\n    b: second", None),
    ("Add them.\n\nParameters\n----------\na : int\n    first\nb : int\n\nReturns\n-------\nint",
     None),
    ("Add them.\n\n:param a: first\n:param int b: second\n:returns: sum", None),
    ("Add them.\n\nArgs:\n    a: first\n    c: invented", "invented: c; missing: b"),
    ("Add them.", "documents none of the parameters"),
])
def test_documented_parameters_must_be_the_real_ones(text, error):
    fn = ds.find_function("def add(self, a, b):\n    return a + b\n", 0)
    if error is None:
        ds.check_params(text, fn)
    else:
        with pytest.raises(ds.DocstringError, match=error):
            ds.check_params(text, fn)


def test_missing_parameters_are_written_from_a_constrained_answer():
    src = "def add(self, a, *rest):\n    def inner():\n        return 1\n    return a\n"
    fn = ds.find_function(src, 0)
    assert ds.real_params(fn) == ("a", "*rest") and ds.returns_value(src, fn)
    assert not ds.returns_value("def f(x):\n    def g():\n        return 1\n    print(x)\n",
                                ds.find_function("def f(x):\n    pass\n", 0))
    grammar = ds.params_grammar(("a", "*rest"), True)
    assert '\\"a\\":' in grammar and '\\"rest\\":' in grammar
    described, returned = ds.parse_params_answer(
        '{"params": {"a": "the first value.", "rest": "more values"}, "returns": "the sum"}',
        ("a", "*rest"))
    assert described == {"a": "the first value", "*rest": "more values"} and returned == "the sum"
    with pytest.raises(ds.DocstringError, match="code, not prose"):
        ds.parse_params_answer('{"params": {"a": "int32(10)", "rest": "x y"}}', ("a", "*rest"))
    with pytest.raises(ds.DocstringError, match="are not"):
        ds.parse_params_answer('{"params": {"b": "a thing"}}', ("a", "*rest"))
    assert ds.render_sections("numpy", {"a": "the first"}, "the sum") == (
        "Parameters\n----------\na\n    the first.\n\nReturns\n-------\n    the sum.")
    assert ds.render_sections("sphinx", {"a": "the first"}, "") == ":param a: the first."
    full = "Add them.\n\n" + ds.render_sections("google", described, returned)
    ds.check_params(full, fn)
    assert ds.summary_part(full) == "Add them."


def test_a_copied_module_docstring_is_recognised():
    src = '"""Prices in cents."""\n\n\ndef f(x):\n    return x\n'
    assert ds.copies_another_docstring(src, "Prices in cents.\n\nArgs:\n    x: y")
    assert not ds.copies_another_docstring(src, "Return x unchanged.")
