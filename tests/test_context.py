"""Symbol neighbours and token-budgeted context assembly on a small repository."""

from __future__ import annotations

import pytest

from hearth_lsp.indexer.context import assemble, chunk_at, neighbours, render_context
from hearth_lsp.indexer.workspace import WorkspaceIndex


def words(text: str) -> int:  # a stand-in tokenizer: exact budgets are easy to reason about
    return len(text.split())


@pytest.fixture
def index(tmp_path):
    root = tmp_path / "shop"
    root.mkdir()
    (root / "money.py").write_text(
        "def parse_price(text):\n    return int(text.replace('.', ''))\n\n\n"
        "def format_price(cents):\n    return f'{cents / 100:.2f}'\n")
    (root / "cart.py").write_text(
        "from money import parse_price, format_price\n\n\n"
        "def cart_total(lines):\n"
        "    total = sum(parse_price(p) for p in lines)\n"
        "    return format_price(total)\n")
    (root / "checkout.py").write_text(
        "from cart import cart_total\n\n\n"
        "def checkout(lines):\n    print(cart_total(lines))\n")
    idx = WorkspaceIndex(root, tmp_path / "cache")
    idx.update()
    yield idx
    idx.close()


def test_neighbours_are_the_definitions_used_then_the_callers(index):
    anchor = chunk_at(index.store, "cart.py", 4)
    assert anchor is not None and anchor.symbol == "cart_total"
    found = [(n.relation, n.chunk.symbol, n.chunk.path) for n in neighbours(index.store, anchor)]
    assert found == [("definition", "parse_price", "money.py"),
                     ("definition", "format_price", "money.py"),
                     ("caller", "checkout", "checkout.py")]


def test_assembly_fills_the_budget_with_the_most_relevant_first(index):
    anchor = chunk_at(index.store, "cart.py", 3)
    everything = assemble(index.store, 10_000, words, anchor=anchor)
    assert [p.symbol for p in everything] == ["parse_price", "checkout", "format_price"]
    assert all(p.path != "cart.py" or p.symbol != "cart_total" for p in everything)
    first = everything[0]
    assert (first.path, first.start_line, first.end_line, first.reason) == (
        "money.py", 1, 2, "definition")
    # A budget that holds only the first piece gets the first piece only.
    tight = assemble(index.store, first.tokens, words, anchor=anchor)
    assert [p.symbol for p in tight] == ["parse_price"]
    assert sum(p.tokens for p in everything) <= 10_000
    assert render_context(tight).startswith("# money.py:1-2 (parse_price)\ndef parse_price")


def test_a_search_ranking_joins_the_neighbours(index):
    ranked = [r_id for (r_id, _) in index.store.lexical("format price", 10)]
    pieces = assemble(index.store, 10_000, words, ranked=ranked)
    assert pieces[0].symbol == "format_price" and pieces[0].reason == "search"
    assert assemble(index.store, 0, words, ranked=ranked) == []


def test_cli_context_prints_located_pieces(index, tmp_path, capsys, monkeypatch):
    import json

    from hearth_lsp.server.cli import main

    root = index.root
    index.close()  # the CLI takes the writer lock itself
    monkeypatch.chdir(root)
    assert main(["context", "cart.py:5", "--budget", "40", "--json"]) == 0
    pieces = json.loads(capsys.readouterr().out)
    assert [(p["path"], p["symbol"], p["reason"]) for p in pieces][:1] == [
        ("money.py", "parse_price", "definition")]
    assert sum(p["tokens"] for p in pieces) <= 40
    assert main(["context", "cart.py:x"]) == 2
    assert "FILE:LINE" in capsys.readouterr().err
