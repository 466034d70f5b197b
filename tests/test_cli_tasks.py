"""`hearth review` and `hearth docstring` from the command line, with a scripted engine."""

from __future__ import annotations

import json

from hearth_lsp.server import cli
from hearth_lsp.server.engine.fake import FakeEngine

PY = '''def ratio(a, b):
    return a / b


def shout(text):
    return text.upper() + "!"
'''
GO = "package m\n\nfunc Sum(a int, b int) int {\n\treturn a + b\n}\n"


def run(command, argv, answers):
    engine = FakeEngine(responses=list(answers))
    args = cli.build_parser().parse_args(argv)
    return command(args, factory=lambda settings, cache: engine), engine


def finding(line, quote, **extra):
    return {"line": line, "quote": quote, "severity": "warning", "category": "bug",
            "message": "b may be zero", **extra}


def test_review_prints_anchored_findings_as_text_json_and_sarif(tmp_path, capsys,
                                                                 monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.py").write_text(PY)
    answers = [json.dumps({"findings": [finding(2, "a / b"), finding(2, "a // c")]}),
               json.dumps({"findings": []})]
    code, engine = run(cli.cmd_review, ["review", "m.py"], answers)
    out = capsys.readouterr()
    assert code == 0 and out.out == "m.py:2:12: warning [bug] b may be zero\n"
    assert "1 finding in 1 file" in out.err
    assert len(engine.prompts) == 2 and engine.grammars[0] is not None
    code, _ = run(cli.cmd_review, ["review", "m.py::ratio", "--json", "--fail-on", "warning"],
                  answers[:1])
    assert code == 1  # --fail-on
    [item] = json.loads(capsys.readouterr().out)
    assert (item["path"], item["line"], item["column"], item["category"]) == ("m.py", 2, 12,
                                                                              "bug")
    code, _ = run(cli.cmd_review, ["review", "m.py::ratio", "--format", "sarif"], answers[:1])
    sarif = json.loads(capsys.readouterr().out)
    assert sarif["runs"][0]["results"][0]["ruleId"] == "bug"


def test_an_answer_that_is_no_review_is_not_reported_as_a_clean_one(tmp_path, capsys,
                                                                   monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.py").write_text(PY)
    for answer, why in (("Sure! The function divides a by b.", "holds no JSON"),
                        ('{"findings": [{"line": 2, "quo', "was cut off before any finding"),
                        ("", "is empty"), ('{"verdict": "fine"}', "is JSON without a list")):
        code, _ = run(cli.cmd_review, ["review", "m.py::ratio", "--fail-on", "info"], [answer])
        err = capsys.readouterr().err
        assert code == 2, answer
        assert f"not reviewed: m.py: function ratio: the model's answer {why}" in err
    # An empty list, whole or cut off after it, is a review that found nothing.
    for answer in ('{"findings": []}', '{"findings": [], "no'):
        assert run(cli.cmd_review, ["review", "m.py::ratio", "--fail-on", "info"],
                   [answer])[0] == 0, answer
        assert "not reviewed" not in capsys.readouterr().err


def test_review_of_a_missing_symbol_or_file_is_a_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.py").write_text(PY)
    assert run(cli.cmd_review, ["review", "m.py::nothing"], [])[0] == 2
    assert "no symbol nothing" in capsys.readouterr().err
    assert run(cli.cmd_review, ["review", "gone.py"], [])[0] == 2
    assert "cannot read gone.py" in capsys.readouterr().err


def test_docstring_for_python_and_a_go_doc_comment(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.py").write_text(PY)
    # A summary without the parameters: a second, constrained answer describes them.
    code, engine = run(cli.cmd_docstring, ["docstring", "m.py::shout", "--write"],
                       ["Shout the text back in capitals.",
                        json.dumps({"params": {"text": "the words to shout"},
                                    "returns": "the words in capitals"})])
    assert code == 0
    assert '    """Shout the text back in capitals.\n\n    Args:\n        text: the words to ' \
        'shout.\n\n    Returns:\n        The words in capitals.\n    """' in \
        (tmp_path / "m.py").read_text()
    assert '\\"text\\":' in engine.grammars[1]
    (tmp_path / "add.go").write_text(GO)
    answer = {"summary": "Add two numbers", "params": {"a": "the first", "b": "the second"},
              "returns": "their sum"}
    code, _ = run(cli.cmd_docstring, ["docstring", "add.go::Sum", "--json"], [json.dumps(answer)])
    out = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert code == 0 and out["text"] == "// Sum adds two numbers.\n" and not out["written"]
    code, _ = run(cli.cmd_docstring, ["docstring", "add.go::Sub"], [])
    assert code == 2 and "no Sub in add.go" in capsys.readouterr().err
    # By name, with a doc comment that names it (as Go's do) or names a longer word.
    (tmp_path / "add.go").write_text("package m\n\n// Sum adds two integers.\n" + GO[11:])
    code, _ = run(cli.cmd_docstring, ["docstring", "add.go::Sum", "--regenerate", "--json"],
                  [json.dumps(answer)])
    assert code == 0 and json.loads(capsys.readouterr().out.splitlines()[-1])["text"]
    (tmp_path / "m.ts").write_text("/** Reads a payload. */\nexport function load(d: string) "
                                   "{\n  return d;\n}\n")
    code, _ = run(cli.cmd_docstring, ["docstring", "m.ts::load", "--regenerate", "--json"],
                  [json.dumps({"summary": "Read the data back", "params": {"d": "the raw payload to read"},
                               "returns": "the payload as read"})])
    assert code == 0, capsys.readouterr().err


def test_a_declaration_sharing_its_line_with_an_earlier_one_is_refused_by_name(
        tmp_path, capsys, monkeypatch):
    """One-line code: a comment above the line documents its first declaration, and
    `FILE::scale` wrote a comment describing `shift` above both."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.js").write_text("function shift(a) { return a + 1 } "
                                   "function scale(a) { return a * 2 }\n")
    answer = {"summary": "Shift a number up by one", "params": {"a": "the number to shift"},
              "returns": "the number plus one"}
    code, engine = run(cli.cmd_docstring, ["docstring", "m.js::scale"], [json.dumps(answer)])
    assert code == 2 and engine.prompts == []
    assert "scale shares line 1 of m.js with shift: a doc comment above it would document " \
        "shift" in capsys.readouterr().err
    code, _ = run(cli.cmd_docstring, ["docstring", "m.js::shift", "--json"], [json.dumps(answer)])
    assert code == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["text"].startswith(
        "/**\n * Shift a number up by one.")


def test_placeholder_parameters_leave_a_summary_only_docstring_and_say_why(
        tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.py").write_text(PY)
    code, _ = run(cli.cmd_docstring, ["docstring", "m.py::shout", "--write"],
                  ["Shout the text back in capitals.\n\nArgs:\n    text: foo",
                   json.dumps({"params": {"text": "foo bar"}, "returns": "Hello, World!"})])
    assert code == 0
    assert '    """Shout the text back in capitals."""\n' in (tmp_path / "m.py").read_text()
    err = capsys.readouterr().err
    assert "is a summary only: the model could not describe the parameters" in err
    assert "placeholder" in err


def test_tests_command_writes_only_passing_tests(tmp_path, capsys, monkeypatch):
    (tmp_path / "calc.py").write_text(PY)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HEARTH_TESTS_PYTHON", __import__("sys").executable)
    answer = ("ratio_half():\n    assert ratio(1, 2) == 0.5\n\n\n"
              "def test_ratio_wrong():\n    assert ratio(1, 4) == 2\n")
    code, _ = run(cli.cmd_tests, ["tests", "calc.py::ratio", "--write", "--json"],
                  [answer, "ratio_none():\n    assert ratio(2, 1) == 3\n"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["test_file"] == "tests/test_calc.py" and out["written"]
    assert [t["name"] for t in out["passing"]] == ["test_ratio_half"]
    assert [t["name"] for t in out["failing"]] == ["test_ratio_none"]
    written = (tmp_path / "tests" / "test_calc.py").read_text()
    assert written.startswith("from calc import ratio\n") and "test_ratio_wrong" not in written


def test_a_pass_written_by_a_test_left_out_does_not_keep_a_failing_test(
        tmp_path, capsys, monkeypatch):
    """The sandbox records a pass from inside the test process: a test that wrote one
    for another and then failed was left out of the edit, and the test it lied about
    was inserted. The kept tests run again, as they will be inserted."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "calc.py").write_text(PY)
    monkeypatch.setenv("HEARTH_TESTS_PYTHON", __import__("sys").executable)
    answer = ("ratio_forge():\n    import json, os, sys\n"
              "    out = next(m for n, m in sys.modules.items()\n"
              "               if n.startswith('hearth_sandbox_'))._OUT\n"
              "    out.write(json.dumps({'test': 'test_ratio_wrong', 'when': 'call',\n"
              "                          'outcome': 'passed', 'message': ''}) + '\\n')\n"
              "    out.flush()\n    assert ratio(1, 1) == 1\n    os._exit(0)\n\n\n"
              "def test_ratio_wrong():\n    assert ratio(1, 4) == 2\n")
    code, _ = run(cli.cmd_tests, ["tests", "calc.py::ratio", "--json"], [answer, "\n"])
    out = json.loads(capsys.readouterr().out)
    assert out["passing"] == []
    assert {t["name"]: t["message"].split(":")[0] for t in out["failing"]} == {
        "test_ratio_forge": "the test did not run",
        "test_ratio_wrong": "passed only beside tests that were left out"}


def test_a_test_file_that_leads_out_of_the_workspace_is_refused(tmp_path, capsys, monkeypatch):
    # A cloned repository's tests/test_calc.py is a link to a file of the user's: its text
    # would be the prompt's "existing tests", and the passing tests written into it.
    ws, private = tmp_path / "ws", tmp_path / "private.txt"
    (ws / "tests").mkdir(parents=True)
    (ws / "calc.py").write_text(PY)
    private.write_text("the user's own notes\n")
    (ws / "tests" / "test_calc.py").symlink_to(private)
    monkeypatch.chdir(ws)
    code, engine = run(cli.cmd_tests, ["tests", "calc.py::ratio", "--write"],
                       ["ratio_half():\n    assert ratio(1, 2) == 0.5\n"])
    assert code == 1 and engine.prompts == []
    assert "outside the workspace" in capsys.readouterr().err
    assert private.read_text() == "the user's own notes\n"


def test_a_new_test_file_in_a_folder_that_leads_out_of_the_workspace_is_refused(
        tmp_path, capsys, monkeypatch):
    ws, elsewhere = tmp_path / "ws", tmp_path / "users_other_project"
    ws.mkdir()
    elsewhere.mkdir()
    (ws / "calc.py").write_text(PY)
    (ws / "tests").symlink_to(elsewhere)
    monkeypatch.chdir(ws)
    code, engine = run(cli.cmd_tests, ["tests", "calc.py::ratio", "--write"],
                       ["ratio_half():\n    assert ratio(1, 2) == 0.5\n"])
    assert code == 1 and engine.prompts == []
    assert "outside the workspace: Hearth writes tests only inside it" in capsys.readouterr().err
    assert list(elsewhere.iterdir()) == []


def test_write_keeps_a_crlf_files_line_ends(tmp_path, capsys, monkeypatch):
    """Path.read_text turns CRLF into LF: `--write` turned every line of the user's
    file (the source, or the test file the tests went into) into LF."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HEARTH_TESTS_PYTHON", __import__("sys").executable)
    crlf = PY.replace("\n", "\r\n").encode()
    (tmp_path / "m.py").write_bytes(crlf)
    code, _ = run(cli.cmd_docstring, ["docstring", "m.py::shout", "--write"],
                  ["Shout the text back in capitals.",
                   json.dumps({"params": {"text": "the words to shout"},
                               "returns": "the words in capitals"})])
    written = (tmp_path / "m.py").read_bytes()
    assert code == 0 and b'"""Shout the text back' in written
    assert b"\n" not in written.replace(b"\r\n", b"")
    (tmp_path / "calc.py").write_text(PY)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_calc.py").write_bytes(
        b"from calc import ratio\r\n\r\n\r\ndef test_one():\r\n    assert ratio(1, 1) == 1\r\n")
    code, _ = run(cli.cmd_tests, ["tests", "calc.py::ratio", "--write"],
                  ["ratio_half():\n    assert ratio(1, 2) == 0.5\n"])
    written = (tmp_path / "tests" / "test_calc.py").read_bytes()
    assert code == 0 and b"def test_ratio_half():\r\n" in written
    assert b"\n" not in written.replace(b"\r\n", b"")


def test_tests_into_a_test_file_that_is_not_utf8_are_refused_clearly(tmp_path, capsys,
                                                                     monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "calc.py").write_text(PY)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_calc.py").write_bytes(
        b"# -*- coding: latin-1 -*-\nfrom calc import ratio\n# caf\xe9\n")
    code, engine = run(cli.cmd_tests, ["tests", "calc.py::ratio"], ["x"])
    assert code == 1 and engine.prompts == []
    assert "tests/test_calc.py is not UTF-8" in capsys.readouterr().err


def test_tests_into_a_test_file_that_does_not_compile_are_refused_before_the_model(
        tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "calc.py").write_text(PY)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_calc.py").write_text(
        "from calc import ratio\n\n\ndef test_broken(:\n    pass\n")
    code, engine = run(cli.cmd_tests, ["tests", "calc.py::ratio"], ["x"])
    assert code == 1 and engine.prompts == []
    assert "tests/test_calc.py does not compile (line 4: " in capsys.readouterr().err


def test_only_the_new_tests_run(
        tmp_path, capsys, monkeypatch):
    """The user's tests are not run: one that takes the interpreter down (or a slow one)
    would take the new ones with it."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HEARTH_TESTS_PYTHON", __import__("sys").executable)
    (tmp_path / "calc.py").write_text(PY)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_calc.py").write_text(
        "import os\n\nfrom calc import ratio\n\n\ndef test_crash():\n    os._exit(3)\n")
    code, _ = run(cli.cmd_tests, ["tests", "calc.py::ratio", "--json"],
                  ["ratio_half():\n    assert ratio(1, 2) == 0.5\n"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and [t["name"] for t in out["passing"]] == ["test_ratio_half"]


def test_tests_for_a_function_local_to_another_are_refused_with_the_way_out(
        tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "calc.py").write_text(
        "def outer():\n    def inner(x):\n        return x * 2\n    return inner\n")
    code, engine = run(cli.cmd_tests, ["tests", "calc.py::outer.inner"],
                       ["inner():\n    assert outer()(3) == 6\n"])
    assert code == 1 and engine.prompts == []
    assert "inner is local to outer(): a test reaches it only through outer()" in \
        capsys.readouterr().err
