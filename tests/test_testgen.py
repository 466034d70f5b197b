"""Test generation, pure parts: layout, module names, what is kept, the merge."""

from __future__ import annotations

from hearth_lsp.server.tasks.testgen import cases as tg


def test_module_names_follow_packages_and_src_layouts():
    files = {"inventory/__init__.py", "inventory/pricing.py", "src/shop/__init__.py",
             "src/shop/cart/__init__.py", "src/shop/cart/lines.py", "tool.py"}
    assert tg.module_name("inventory/pricing.py", files) == "inventory.pricing"
    assert tg.module_name("src/shop/cart/lines.py", files) == "shop.cart.lines"
    assert tg.module_name("tool.py", files) == "tool"


def test_layout_follows_the_projects_habits():
    assert tg.find_layout("pkg/a.py", {"pkg/__init__.py", "pkg/a.py"}) == tg.Layout(
        "tests/test_a.py", "pkg.a", False)
    files = {"pkg/__init__.py", "pkg/a.py", "pkg/b.py", "pkg/b_test.py", "pkg/c_test.py"}
    assert tg.find_layout("pkg/a.py", files).test_path == "pkg/a_test.py"
    files = {"m.py", "test/test_x.py", "test/test_m.py"}
    assert tg.find_layout("m.py", files) == tg.Layout("test/test_m.py", "m", True)


def test_only_real_tests_of_the_function_are_kept():
    raw = ("double_two():\n    assert double(2) == 4\n\n\n"
           "def test_nothing():\n    double(2)\n\n\n"  # asserts nothing
           "def test_other():\n    assert triple(1) == 3\n\n\n"  # not this function
           "def test_copy():\n    assert double(1) == 2\n\n\n"  # the file has this one
           "def test_raises():\n    with pytest.raises(TypeError):\n        double(None)\n\n\n"
           "import os\nimport pytest\n\n"
           "def test_cut_off():\n    assert double(")
    existing = "def test_existing():\n    assert double(1) == 2\n"
    cases = tg.parse_tests("def test_" + raw, taken={"test_raises"}, calls="double",
                           existing=existing)
    assert [c.name for c in cases] == ["test_double_two", "test_raises_2"]
    assert cases[1].source.startswith("def test_raises_2():")
    assert cases[0].imports == ("import pytest",)  # os is not on the allowed list


def test_merge_appends_and_adds_only_missing_imports():
    case = tg.TestCase("test_a", "def test_a():\n    assert double(1) == 2\n", ("import pytest",))
    fresh = tg.merge(None, [case], "from pkg.a import double")
    assert fresh == ("import pytest\nfrom pkg.a import double\n\n\n"
                     "def test_a():\n    assert double(1) == 2\n")
    existing = "from pkg.a import double, triple\n\n\ndef test_old():\n    assert triple(1) == 3\n"
    merged = tg.merge(existing, [case], "from pkg.a import double")
    assert merged.splitlines()[:2] == ["from pkg.a import double, triple", "import pytest"]
    assert merged.endswith("def test_a():\n    assert double(1) == 2\n")
    assert merged.count("from pkg.a import") == 1


def test_merge_reads_imports_in_parentheses_as_black_writes_them():
    """The missing import went after the last line starting with `from`: inside the
    parentheses, and every generated test failed on the broken file."""
    case = tg.TestCase("test_t", "def test_t():\n    assert triple(2) == 6\n", ("import pytest",))
    existing = ("from pkg.calc import (\n    double,\n    triple,\n)\n\n\n"
                "def test_double():\n    assert double(2) == 4\n")
    merged = tg.merge(existing, [case], "from pkg.calc import triple")
    assert merged.startswith("from pkg.calc import (\n    double,\n    triple,\n)\n"
                             "import pytest\n\n\ndef test_double():")
    assert merged.count("from pkg.calc import") == 1  # triple was already imported
    compile(merged, "test_calc.py", "exec")
    aliased = "from pkg.calc import triple as t\n\n\ndef test_t0():\n    assert t(0) == 0\n"
    assert "from pkg.calc import triple\n" in tg.merge(aliased, [case], "from pkg.calc import triple")


def test_a_module_a_test_uses_without_importing_it_is_imported():
    """Small models write `pytest.raises` and forget `import pytest`: a NameError."""
    raw = ("def test_none():\n    with pytest.raises(TypeError):\n        triple(None)\n"
           "    assert math.isclose(triple(0.1), 0.3)\n")
    [case] = tg.parse_tests(raw, calls="triple")
    assert case.imports == ("import math", "import pytest")
    [case] = tg.parse_tests("import pytest\n\n\n" + raw, calls="triple")
    assert case.imports == ("import pytest", "import math")
