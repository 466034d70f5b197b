"""Retrieval quality: Recall@5 and MRR for lexical, dense and hybrid search.

    .venv/bin/python bench/retrieval.py [--package jinja2] [--max-queries 300]

Fixture: the Python files of a package from this venv's site-packages with
every docstring removed; each query is the first sentence of a function's
docstring, and the right answer is that function's chunk. Lexical search
cannot lean on the docstring's own words, so this measures what a user's
plain-English question finds. Rewrites the "retrieval" section of
docs/benchmarks.md. Not a test.
"""

from __future__ import annotations

import argparse
import ast
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

from hearth_lsp.indexer.embeddings import Embedder  # noqa: E402
from hearth_lsp.indexer.workspace import PROSE_LEXICAL_WEIGHT, WorkspaceIndex  # noqa: E402

from report import machine_description, write_section  # noqa: E402

SITE = Path(np.__file__).resolve().parent.parent
_SENTENCE = re.compile(r"^(.+?[.!?])(\s|$)", re.S)


def strip_docstrings(source: str) -> tuple[str, dict[str, str]]:
    """The source without docstrings, and {qualified function name: first sentence}."""
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    found: dict[str, str] = {}
    cuts: list[tuple[int, int, str]] = []

    def visit(node: ast.AST, scope: list[str]) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                doc = ast.get_docstring(child)
                body0 = child.body[0]
                name = ".".join([*scope, child.name])
                if doc and isinstance(body0, ast.Expr):
                    if not isinstance(child, ast.ClassDef):
                        first = " ".join(doc.split("\n\n")[0].split())
                        m = _SENTENCE.match(first)
                        sentence = (m.group(1) if m else first).strip()
                        if len(sentence.split()) >= 4:
                            found[name] = sentence
                    indent = lines[body0.lineno - 1][: body0.col_offset]
                    cuts.append((body0.lineno - 1, body0.end_lineno or body0.lineno,
                                 f"{indent}...\n"))
                visit(child, [*scope, child.name])

    module_doc = tree.body[0] if tree.body and isinstance(tree.body[0], ast.Expr) and \
        isinstance(getattr(tree.body[0], "value", None), ast.Constant) and \
        isinstance(tree.body[0].value.value, str) else None
    if module_doc is not None:
        cuts.append((module_doc.lineno - 1, module_doc.end_lineno or module_doc.lineno, ""))
    visit(tree, [])
    for start, end, replacement in sorted(cuts, reverse=True):
        lines[start:end] = [replacement]
    return "".join(lines), found


def build_fixture(package: str, dest: Path) -> dict[tuple[str, str], str]:
    answers: dict[tuple[str, str], str] = {}
    src = SITE / package
    for path in sorted(src.rglob("*.py")):
        rel = path.relative_to(src.parent).as_posix()
        try:
            stripped, found = strip_docstrings(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError):
            continue
        out = dest / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(stripped, encoding="utf-8")
        for name, sentence in found.items():
            answers[(rel, name)] = sentence
    return answers


def evaluate(idx: WorkspaceIndex, queries: list[tuple[tuple[str, str], str]], mode: str,
             embedder: Embedder | None, vectors, weight: float | None = None) -> dict[str, float]:
    hits5, rr, ms = 0, 0.0, []
    for (path, name), sentence in queries:
        t0 = time.perf_counter()
        ranked = idx.ranked(sentence, 100, embedder, vectors, mode, weight)
        results = idx._results(ranked, 10, None, None)
        ms.append((time.perf_counter() - t0) * 1000)
        rank = next((i for i, r in enumerate(results, 1)
                     if r.path == path and r.symbol == name), None)
        if rank is not None:
            rr += 1 / rank
            hits5 += rank <= 5
    n = len(queries)
    return {"recall5": hits5 / n, "mrr": rr / n, "ms": sorted(ms)[len(ms) // 2]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--package", action="append",
                        help="site-packages folder(s) to use (default: jinja2, pygls)")
    parser.add_argument("--max-queries", type=int, default=300)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    packages = args.package or ["jinja2", "pygls"]

    tmp = Path(tempfile.mkdtemp(prefix="hearth-retrieval-"))
    corpus = tmp / "corpus"
    answers: dict[tuple[str, str], str] = {}
    for package in packages:
        answers.update(build_fixture(package, corpus))
    idx = WorkspaceIndex(corpus, tmp / "cache")
    idx.update()
    chunk_keys = {(p, s) for p, s in idx.store.db.execute("SELECT path, symbol FROM chunks")}
    queries = [(k, q) for k, q in sorted(answers.items()) if k in chunk_keys]
    step = max(1, len(queries) // args.max_queries)
    queries = queries[::step][: args.max_queries]
    embedder = Embedder(batch_size=64)
    vectors = idx.open_vectors(embedder)
    est = idx.embed_pending(embedder, vectors, batch=64)
    counts = idx.store.counts()
    print(f"{counts['files']} files, {counts['chunks']} chunks, {len(queries)} queries; "
          f"embedded in {est.seconds:.0f} s", flush=True)
    rows = []
    runs = [("lexical", "lexical", None), ("dense", "dense", None),
            (f"hybrid (default: lexical weight {PROSE_LEXICAL_WEIGHT} for prose)", "hybrid", None)]
    runs += [(f"hybrid, lexical weight {w}", "hybrid", w) for w in (1.0, 0.5, 0.1)]
    for label, mode, weight in runs:
        r = evaluate(idx, queries, mode, embedder, vectors, weight)
        print(f"{label:50} Recall@5 {r['recall5']:.3f}  MRR@10 {r['mrr']:.3f}  "
              f"p50 {r['ms']:.1f} ms", flush=True)
        rows.append(f"| {label} | {r['recall5']:.3f} | {r['mrr']:.3f} | {r['ms']:.1f} ms |")
    idx.close()
    lines = [
        f"Fixture: {counts['files']} Python files of {', '.join(packages)} (site-packages) with "
        f"every docstring removed, {counts['chunks']} chunks; {len(queries)} queries, each the "
        "first sentence of a removed function docstring; the answer is that function's chunk.",
        "", "| search | Recall@5 | MRR@10 | p50 query |", "|---|---|---|---|", *rows]
    if not args.no_write:
        write_section("retrieval", "## Retrieval quality: `bench/retrieval.py`\n\n"
                      + machine_description() + "\n\n" + "\n".join(lines))
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
