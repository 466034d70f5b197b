"""Every grammar Hearth ships, sampled under by the real bundled model.

`LlamaGrammar.from_string` accepts any text; llama.cpp parses a grammar only when
sampling starts. Each test here builds the task's own prompt, samples greedily
under the task's grammar with SmolLM2 and checks the answer has the grammar's
shape (JSON that loads with exactly the expected keys, the commit header, ...):
a grammar that does not parse, or that lets through what the task cannot read,
fails here. The model's words are never asserted on.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import pkgutil
import re
from pathlib import Path

import pytest

from hearth_lsp.server import tasks
from hearth_lsp.server.engine.llama import LlamaEngine
from hearth_lsp.server.engine.worker import GenerationWorker
from hearth_lsp.server.prompts import task_prompt
from hearth_lsp.server.settings import ModelSettings, SamplingSettings, Settings
from hearth_lsp.server.tasks.commit import message as cm
from hearth_lsp.server.tasks.commit.gitdiff import Changes, FileDiff
from hearth_lsp.server.tasks.docs import comments as dc
from hearth_lsp.server.tasks.docs import file_summary as fd
from hearth_lsp.server.tasks.docs import python as py
from hearth_lsp.server.tasks.review import findings as rv
from hearth_lsp.server.tasks.runner import prompt_text, stops

pytestmark = pytest.mark.slow

# The module-level grammars tested below (grammars built per target are tested
# through the functions that build them).
TESTED = {"FINDINGS_GRAMMAR", "CONVENTIONAL_GRAMMAR", "PLAIN_GRAMMAR", "SUMMARY_GRAMMAR",
          "GRAMMAR"}


@pytest.fixture(scope="module")
def worker(smollm2_path):
    w = GenerationWorker()
    w.load(lambda: LlamaEngine(smollm2_path, ModelSettings())).future.result(60)
    yield w
    w.shutdown()


def sample(worker, messages, text, grammar, sampling: SamplingSettings, *extra_stops) -> str:
    """The task's prompt through the chat template, sampled greedily under ``grammar``.

    ``max_tokens`` is far above what these answers take: a cut-off answer ("length")
    would not have the grammar's shape, and fails the test.
    """
    info = worker.engine.info
    greedy = dataclasses.replace(sampling, temperature=0.0, seed=1)
    done = worker.submit("grammar", prompt_text(info, messages, text), greedy,
                         stop=stops(info, *extra_stops), grammar=grammar).future.result(300)
    assert done.finish_reason == "stop", (done.finish_reason, done.text)
    return done.text


def test_every_module_level_grammar_is_tested_here():
    shipped = set()
    for module in pkgutil.walk_packages(tasks.__path__, tasks.__name__ + "."):
        names = vars(importlib.import_module(module.name))
        shipped |= {name for name, value in names.items()
                    if name.endswith("GRAMMAR") and isinstance(value, str)}
    assert shipped == TESTED


# ------------------------------------------------------------------ review

REVIEWED = """def average(xs):
    total = 0
    for x in xs:
        total += x
    return total / len(xs)


def load(path):
    data = open(path).read()
    return eval(data)
"""


def test_review_findings_grammar(worker):
    span = rv.Span(7, 9, "function load")
    messages, text = rv.build_prompt(REVIEWED, span, path="m.py", language="python")
    sampling = dataclasses.replace(Settings().review, max_tokens=1500)
    raw = sample(worker, messages, text, rv.FINDINGS_GRAMMAR, sampling)
    answer = json.loads(raw)
    assert list(answer) == ["findings"] and len(answer["findings"]) <= rv.MAX_FINDINGS
    for finding in answer["findings"]:
        keys = list(finding)
        assert keys[:5] == ["line", "quote", "severity", "category", "message"], keys
        assert keys[5:] in ([], ["replacement"])
        assert isinstance(finding["line"], int) and finding["line"] >= 1
        assert finding["severity"] in rv.SEVERITIES and finding["category"] in rv.CATEGORIES
        assert all(isinstance(finding[k], str) and finding[k] for k in keys[1:])
    assert rv.parse_findings(raw) == answer["findings"]


# ------------------------------------------------------------------ commit

APP = FileDiff("src/app.py", "M", "diff --git a/src/app.py b/src/app.py\n"
               "--- a/src/app.py\n+++ b/src/app.py\n"
               "@@ -1,2 +1,2 @@ def total(xs):\n"
               "-    return sum(xs)\n+    return sum(x for x in xs if x is not None)\n", 1, 1)
TYPES = "|".join(t for ty in cm.TYPES for t in (ty, ty.capitalize()))
BODY = r"(\n\n(- ?[a-zA-Z`][^\n]{6,90}\n){1,5})?"
CONVENTIONAL = re.compile(rf" ?({TYPES})(\([A-Za-z0-9_./-]{{1,20}}\))?: ?(?:[A-Za-z]|`[A-Za-z_])[^\n]{{5,56}}"
                          + BODY)
PLAIN = re.compile(r" ?(?:[A-Za-z]|`[A-Za-z_])[^\n]{5,66}" + BODY)


@pytest.mark.parametrize("style, grammar, shape", [
    ("conventional", cm.CONVENTIONAL_GRAMMAR, CONVENTIONAL),
    ("plain", cm.PLAIN_GRAMMAR, PLAIN),
])
def test_commit_message_grammars(worker, style, grammar, shape):
    changes = Changes(Path("."), True, [APP], "main")
    messages, text = cm.build_prompt(changes, APP.patch, style=style, chat=True)
    sampling = dataclasses.replace(Settings().commit, max_tokens=600)
    raw = sample(worker, messages, text, grammar, sampling, "\n\n\n")
    assert shape.fullmatch(raw), raw
    assert len(raw.splitlines()[0]) <= cm.MAX_HEADER


def test_commit_summary_grammar(worker):
    messages, text = cm.summary_prompt(APP, APP.patch, chat=True)
    raw = sample(worker, messages, text, cm.SUMMARY_GRAMMAR,
                 SamplingSettings(max_tokens=200), "\n")
    assert re.fullmatch(r"[A-Za-z][^\n]{4,100}", raw), raw


# ------------------------------------------------------- docstrings, doc comments

TS = """export class Cart {
  total(items: Item[], tax = 0.2, ...rest: number[]): number {
    return items.length * tax;
  }
}
"""
GO = "package shop\n\nfunc Total(a, b int, names ...string) (int, error) {\n\treturn a + b, nil\n}\n"
RUST = "pub fn area(w: f64, h: f64) -> f64 {\n    w * h\n}\n"
JAVA = "class A {\n    public void log(String msg) {\n        System.out.println(msg);\n    }\n}\n"
C = "static int *find(const char *name, size_t n) {\n    return 0;\n}\n"


def check_fields(raw: str, params: tuple[str, ...], returns: bool, *, summary: bool) -> None:
    answer = json.loads(raw)
    expected = (["summary"] if summary else []) + (["params"] if params else []) + (
        ["returns"] if returns else [])
    assert list(answer) == expected, raw
    if params:
        assert list(answer["params"]) == [p.lstrip("*") for p in params]
    texts = ([answer["summary"]] if summary else []) + list(answer.get("params", {}).values()) + (
        [answer["returns"]] if returns else [])
    for value in texts:  # they go inside comments
        assert isinstance(value, str) and value and "\n" not in value and "*/" not in value
    if summary:
        assert answer["summary"][0].isupper()


@pytest.mark.parametrize("language, source, line", [
    ("typescript", TS, 1), ("go", GO, 2), ("rust", RUST, 0), ("java", JAVA, 1), ("c", C, 0),
])
def test_doc_comment_grammar(worker, language, source, line):
    target = dc.find_target(source, language, line)
    assert target is not None
    messages, text = dc.build_prompt(source, target, path=f"x.{language}", chat=True)
    sampling = dataclasses.replace(Settings().docstring, max_tokens=800)
    raw = sample(worker, messages, text, dc.grammar(target), sampling)
    check_fields(raw, target.params, target.returns, summary=True)
    # The task's own reader takes the shape (it may still refuse the words).
    try:
        content = dc.parse_answer(raw, target)
    except dc.DocCommentError as exc:
        assert "not JSON" not in str(exc) and "not the real ones" not in str(exc), exc
    else:
        assert list(content.params) == [p.lstrip("*") for p in target.params]


PY = '''def parse_price(text, currency="EUR", *args, **kwargs):
    """Parse a price."""
    return int(text.replace(currency, "")) * 100
'''


@pytest.mark.parametrize("params, returns", [(("text", "currency", "*args", "**kwargs"), True),
                                             (("path",), False)])
def test_docstring_params_grammar(worker, params, returns):
    shape: dict = {"params": {p.lstrip("*"): "..." for p in params}}
    if returns:
        shape["returns"] = "..."
    messages, text = task_prompt("docstring.params", None, chat=True, qualname="parse_price",
                                 path="m.py", summary="Parse a price.", function=PY,
                                 shape=json.dumps(shape))
    sampling = dataclasses.replace(Settings().docstring, max_tokens=800)
    raw = sample(worker, messages, text, py.params_grammar(params, returns), sampling)
    check_fields(raw, params, returns, summary=False)
    # The task's own reader takes the shape (it may still refuse the words).
    try:
        described, _ = py.parse_params_answer(raw, params)
    except py.DocstringError as exc:
        assert "not JSON" not in str(exc) and "are not" not in str(exc), exc
    else:
        assert list(described) == list(params)


def test_file_summary_grammar(worker):
    source = REVIEWED
    target = fd.find_target(source, "m.py", "python")
    messages, text = fd.build_prompt(source, target, path="m.py", chat=True)
    sampling = dataclasses.replace(Settings().docstring, max_tokens=300)
    raw = sample(worker, messages, text, fd.GRAMMAR, sampling, "\n")
    assert re.fullmatch(r'[A-Z][^\n*/"]{15,240}\.', raw), raw


# ------------------------------------------------- the grammar on the likeliest tokens


@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_the_grammar_window_samples_what_llama_cpps_grammar_samples(worker, temperature):
    """server/engine/grammar_window.py asks the grammar about the likeliest tokens and
    the whole vocabulary only when it must: the same tokens as llama.cpp's grammar on
    every token (greedy, and sampled from the top 40 with a seed), in a fraction of
    the checks."""
    changes = Changes(Path("."), True, [APP], "main")
    messages, text = cm.build_prompt(changes, APP.patch, style="conventional", chat=True)
    info = worker.engine.info
    prompt = prompt_text(info, messages, text)
    sampling = dataclasses.replace(Settings().commit, temperature=temperature, seed=7,
                                   max_tokens=80)

    def run(window: bool):
        worker.engine.grammar_window = window
        try:
            done = worker.submit("grammar", prompt, sampling, stop=stops(info, "\n\n\n"),
                                 grammar=cm.CONVENTIONAL_GRAMMAR).future.result(300)
        finally:
            worker.engine.grammar_window = True
        return done.text, worker.engine.last_grammar

    _, first = run(True)  # the prompt in the KV cache: the runs compared below start alike
    whole, none = run(False)
    hits = worker.engine.allowed.hits
    windowed, used = run(True)
    assert none is None and used is not None
    assert windowed == whole
    # The first run's steps that checked every token (greedy: the likeliest is
    # seldom refused) were not checked again (grammar_window.AllowedCache), and the
    # tokens are still llama.cpp's.
    assert first is not None and used.whole_vocabulary < max(1, first.whole_vocabulary)
    assert first.whole_vocabulary == 0 or worker.engine.allowed.hits > hits
    assert CONVENTIONAL.match(windowed), windowed
    assert used.steps >= 5 and used.whole_vocabulary < used.steps / 2
