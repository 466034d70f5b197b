"""'Document file': placement per language, validation, and the CLI."""

from __future__ import annotations

import json

import pytest

from hearth_lsp.server import cli
from hearth_lsp.server.engine.fake import FakeEngine
from hearth_lsp.server.tasks.docs import file_summary as filedoc

PY = "#!/usr/bin/env python3\nimport os\n\n\ndef list_prices(folder):\n    return os.listdir(folder)\n"
GO = "package prices\n\nfunc ListPrices() []int {\n\treturn nil\n}\n"
TS = "export function listPrices(): number[] {\n  return [];\n}\n"
RUST = "pub fn list_prices() -> Vec<u32> {\n    vec![]\n}\n"


@pytest.mark.parametrize("language, path, source, expected_head", [
    ("python", "prices.py", PY, '#!/usr/bin/env python3\n"""Lists the prices in a folder."""\n\n'
                                "import os\n"),
    ("go", "prices.go", GO, "// Package prices lists the prices in a folder.\npackage prices\n"),
    ("typescript", "prices.ts", TS, "/**\n * @file Lists the prices in a folder.\n */\n\nexport"),
    ("rust", "prices.rs", RUST, "//! Lists the prices in a folder.\n\npub fn"),
])
def test_file_summaries_go_at_the_top_in_each_convention(language, path, source,
                                                         expected_head):
    target = filedoc.find_target(source, path, language)
    summary = filedoc.check_summary("Lists the prices in a folder", target, path)
    after = filedoc.apply(source, target, filedoc.render_summary(summary, target))
    assert after.startswith(expected_head)
    filedoc.validate(source, after, target)
    again = filedoc.find_target(after, path, language)
    assert again.existing is not None  # now it offers "Regenerate"


@pytest.mark.parametrize("raw, error", [
    ("Does stuff.", "says nothing"),
    ("def list_prices(folder): return os.listdir(folder)", "repeats code"),
    ("Manages the user accounts of the shop.", "nothing the file defines"),
])
def test_bad_summaries_are_refused(raw, error):
    target = filedoc.find_target(PY, "prices.py", "python")
    with pytest.raises(filedoc.FileDocError, match=error):
        filedoc.check_summary(raw, target, "prices.py")


def test_cli_documents_a_file(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "prices.py").write_text(PY)
    engine = FakeEngine(responses=["Lists the prices kept in a folder"])
    args = cli.build_parser().parse_args(["docstring", "prices.py", "--write", "--json"])
    assert cli.cmd_docstring(args, factory=lambda s, c: engine) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["summary"] == "Lists the prices kept in a folder." and out["written"]
    assert '"""Lists the prices kept in a folder."""' in (tmp_path / "prices.py").read_text()
    assert engine.grammars[0] == filedoc.GRAMMAR
