"""`hearth models compare A B ... --out DIR`: each model through bench/tasks.py's
evaluate() in a child process, then a markdown table and a plot in the report folder.

The real evaluation takes minutes per model on 2 cores, so these tests use results
recorded from bench/tasks.py's output shape, and a stand-in bench folder whose
tasks.py answers at once: what is under test is the plumbing (the model given to
the evaluation, --limit, a failing model) and the report.
"""

from __future__ import annotations

import json

import pytest
from models_helpers import run_models, tiny_gguf

from hearth_lsp.server.models_cli import (
    compare_scores,
    compare_table,
    write_compare_report,
)

# What bench/tasks.py's evaluate() returned for the two bundled models (rounded),
# plus the case counts `hearth models compare` adds.
RECORDED = [
    {"model": "smollm2", "where": "CPU (2 threads)",
     "review": {"kept": 3, "dropped": 9, "found": 1, "on_target": 1, "elsewhere": 2,
                "clean_per_fn": 0.17, "s_per_fn": 2.1},
     "docstrings": {"ok": 9, "total": 12, "rouge": 0.31, "baseline": 0.22, "s_per_fn": 1.4,
                    "samples": []},
     "tests": {"functions": 4, "generated": 10, "kept": 6, "failing": 4, "rerun_passed": 6,
               "collected": 6, "s_per_fn": 8.0},
     "commit": {"diffs": 5, "made": 4, "named": 3, "rouge": 0.4, "typed": 1, "typed_total": 3,
                "s_per_msg": 1.9, "messages": []},
     "cases": {"bugs": 6, "clean": 6, "test_functions": 4, "diffs": 5}},
    {"model": "gemma3-270m", "where": "CPU (2 threads)",
     "review": {"kept": 0, "dropped": 4, "found": 0, "on_target": 0, "elsewhere": 0,
                "clean_per_fn": 0.0, "s_per_fn": 3.5},
     "docstrings": {"ok": 5, "total": 12, "rouge": 0.2, "baseline": 0.22, "s_per_fn": 2.6,
                    "samples": []},
     "tests": {"functions": 4, "generated": 4, "kept": 1, "failing": 3, "rerun_passed": 1,
               "collected": 1, "s_per_fn": 12.0},
     "commit": {"diffs": 5, "made": 2, "named": 1, "rouge": 0.25, "typed": 0,
                "typed_total": 3, "s_per_msg": 3.0, "messages": []},
     "cases": {"bugs": 6, "clean": 6, "test_functions": 4, "diffs": 5}},
]


def test_the_table_has_one_row_per_model_with_bench_figures():
    table = compare_table(RECORDED + [{"model": "broken", "error": "the evaluation failed"}])
    rows = [ln for ln in table.splitlines() if ln.startswith("| ")]
    assert len(rows) == 3  # header + two models
    assert rows[1].startswith("| smollm2 | CPU (2 threads) | 1/6 | 1 / 2 | 0.17 | 9/12 | "
                              "0.31 (0.22) | 10 / 6 / 4 | 6/6 | 4/5 | 3/4 | 0.40 | 1/3 |")
    assert rows[2].startswith("| gemma3-270m |")
    assert all(r.count("|") == rows[0].count("|") for r in rows)  # a well-formed table
    assert "- **broken**: the evaluation failed" in table


def test_scores_are_shares():
    s = compare_scores(RECORDED[0])
    assert s["review: planted bugs found"] == pytest.approx(1 / 6)
    assert s["docstrings passing"] == 0.75 and s["tests kept"] == 0.6
    assert all(0 <= v <= 1 for v in s.values())
    assert compare_scores(RECORDED[1])["kept tests passing again"] == 1.0


def test_the_report_folder(tmp_path):
    pytest.importorskip("matplotlib")
    written = write_compare_report(RECORDED, tmp_path / "report", note="a note")
    assert written["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = written["markdown"].read_text()
    assert md.startswith("# Model comparison\n\na note\n\n| model |")
    assert "![scores by model](scores.png)" in md
    assert json.loads(written["json"].read_text()) == RECORDED


def test_no_plot_without_results(tmp_path):
    written = write_compare_report([{"model": "x", "error": "boom"}], tmp_path)
    assert "plot" not in written and not (tmp_path / "scores.png").exists()
    assert "(no plot: no model was evaluated)" in written["markdown"].read_text()


# A bench folder whose tasks.py has bench/tasks.py's names and answers at once.
FAKE_TASKS = '''
import os
from dataclasses import dataclass, field

BUGS = {"a": {1}, "b": {2}, "c": {3}}
CLEAN = ["x", "y", "z"]
TEST_FUNCTIONS = ["f", "g", "h"]
DIFFS = [1, 2, 3]


@dataclass
class Model:
    preset: str = "smollm2"
    path: str | None = None


@dataclass
class Settings:
    model: Model = field(default_factory=Model)


async def evaluate(preset, docs, seed, tmp):
    settings = Settings()
    settings.model.preset = preset
    if settings.model.path and "broken" in settings.model.path:
        raise SystemExit("llama.cpp could not load it")
    return {"where": f"{settings.model.preset}|{settings.model.path}|{docs}|{seed}",
            "review": {"kept": 0, "dropped": 0, "found": len(BUGS), "on_target": 0,
                       "elsewhere": 0, "clean_per_fn": 0.0, "s_per_fn": 0.1},
            "docstrings": {"ok": docs, "total": docs, "rouge": 0.5, "baseline": 0.1,
                           "s_per_fn": 0.1, "samples": []},
            "tests": {"functions": len(TEST_FUNCTIONS), "generated": 1, "kept": 1,
                      "failing": 0, "rerun_passed": 1, "collected": 1, "s_per_fn": 0.1},
            "commit": {"diffs": len(DIFFS), "made": len(DIFFS), "named": 0, "rouge": 0.0,
                       "typed": 0, "typed_total": 0, "s_per_msg": 0.1, "messages": []}}
'''


tiny = tiny_gguf
run = run_models


@pytest.fixture
def bench(tmp_path, monkeypatch):
    for var in ("OLLAMA_MODELS", "HF_HUB_CACHE", "HF_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    folder = tmp_path / "bench"
    folder.mkdir()
    (folder / "tasks.py").write_text(FAKE_TASKS)
    return folder


def test_each_model_goes_through_the_evaluation(tmp_path, bench):
    mine = tiny(tmp_path / "models" / "mine.gguf")
    out_dir = tmp_path / "report"
    code, out = run(["models", "compare", "smollm2", str(mine), "--bench", str(bench),
                     "--out", str(out_dir), "--limit", "2", "--docstrings", "5",
                     "--seed", "7"])
    assert code == 0, out
    results = json.loads((out_dir / "results.json").read_text())
    assert [r["model"] for r in results] == ["smollm2", "mine.gguf"]
    # A bundled model is its preset; a file replaces the preset as model.path does.
    assert results[0]["where"] == "smollm2|None|2|7"  # --limit caps the docstrings too
    assert results[1]["where"] == f"smollm2|{mine}|2|7"
    assert results[0]["cases"] == {"bugs": 2, "clean": 2, "test_functions": 2, "diffs": 2}
    assert results[0]["review"]["found"] == 2
    md = (out_dir / "report.md").read_text()
    assert "at most 2 cases per task" in md and "| mine.gguf |" in md
    assert "| smollm2 |" in out and "written: " in out


def test_a_model_that_fails_is_reported_and_the_others_kept(tmp_path, bench, capsys):
    broken = tiny(tmp_path / "models" / "broken.gguf")
    code, out = run(["models", "compare", "smollm2", str(broken), "--bench", str(bench),
                     "--out", str(tmp_path / "r")])
    assert code == 1
    md = (tmp_path / "r" / "report.md").read_text()
    assert "| smollm2 |" in md
    assert "- **broken.gguf**: the evaluation failed (exit 1): llama.cpp could not load it" in md


def test_unknown_models_and_a_missing_bench_folder(tmp_path, bench, capsys):
    code, _ = run(["models", "compare", "nope", "--bench", str(bench),
                   "--out", str(tmp_path / "r")])
    assert code == 1 and "no model named 'nope'" in capsys.readouterr().err
    code, _ = run(["models", "compare", "smollm2", "--bench", str(tmp_path / "none")])
    assert code == 1 and "no bench/tasks.py" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
