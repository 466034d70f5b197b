"""Decoding under a task's grammar: Hearth's engine against raw llama-cpp-python, in one run.

    .venv/bin/python bench/grammar.py [--repeats 3] [--no-write]

For each bundled model, each of three shipped grammars (the conventional commit
message, a file's summary for a large diff, review's findings) on the task's own
prompt for the demo workspace, with the task's own sampling (seeded): raw
llama-cpp-python with its grammar (llama.cpp checks every token of the vocabulary
at every step; bench/engine.py's Raw: the GGUF loaded as Hearth's engine loads it)
and Hearth's LlamaEngine (server/engine/grammar_window.py: the likeliest tokens
first), alternately, each after a quiet moment, the prompt already in both KV caches. Decode speed is the tokens sampled after the first over the time
after the first; each side counts its tokens as sampled. Whether both sides wrote
the same text is reported: the window should change the speed, not the answer.

Rewrites the "grammar" section of docs/benchmarks.md. Not a test.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

from engine import Raw  # noqa: E402

from hearth_lsp.server.engine.base import ModelInfo  # noqa: E402
from hearth_lsp.server.engine.llama import LlamaEngine  # noqa: E402
from hearth_lsp.server.models import PRESETS, resolve_model_path  # noqa: E402
from hearth_lsp.server.settings import ModelSettings, SamplingSettings, Settings, cache_dir  # noqa: E402
from hearth_lsp.server.tasks.commit import message as commit  # noqa: E402
from hearth_lsp.server.tasks.commit.gitdiff import Changes, FileDiff  # noqa: E402
from hearth_lsp.server.tasks.review import findings as review  # noqa: E402
from hearth_lsp.server.tasks.review.run import review_spans_for  # noqa: E402
from hearth_lsp.server.tasks.runner import prompt_text, stops  # noqa: E402

from report import NOISE, load_average, machine_description, quiet_moment, write_section  # noqa: E402

DEMO = REPO / "examples" / "demo-workspace" / "inventory"
PRICING = (DEMO / "pricing.py").read_text()
CHANGE = FileDiff("inventory/pricing.py", "M", (
    "diff --git a/inventory/pricing.py b/inventory/pricing.py\n"
    "--- a/inventory/pricing.py\n+++ b/inventory/pricing.py\n"
    "@@ -20,3 +20,7 @@ def apply_discount(price, percent):\n"
    "     return round(price * (1 - percent / 100), 2)\n+\n+\n"
    "+def to_euros(cents):\n+    return cents / 100\n"), 4, 0)


@dataclasses.dataclass
class Case:
    name: str
    prompt: str
    grammar: str
    sampling: SamplingSettings
    stop: list[str]


def cases(info: ModelInfo) -> list[Case]:
    chat = bool(info.chat_template)
    settings = Settings()
    changes = Changes(Path("."), True, [CHANGE], "main")
    messages, text = commit.build_prompt(changes, CHANGE.patch, style="conventional", chat=chat)
    summary_messages, summary_text = commit.summary_prompt(CHANGE, CHANGE.patch, chat=chat)
    span = review_spans_for(PRICING, "pricing.py", "python", limit=100)[0]
    review_messages, review_text = review.build_prompt(PRICING, span, path="pricing.py",
                                                       language="python", chat=chat)
    seeded = {"seed": 1}
    return [
        Case("commit message (conventional)", prompt_text(info, messages, text),
             commit.CONVENTIONAL_GRAMMAR, dataclasses.replace(settings.commit, **seeded),
             stops(info, "\n\n\n")),
        Case("a file's summary (large diffs)", prompt_text(info, summary_messages, summary_text),
             commit.SUMMARY_GRAMMAR, SamplingSettings(temperature=0.1, max_tokens=48, seed=1),
             stops(info, "\n")),
        Case("review findings (JSON)", prompt_text(info, review_messages, review_text),
             review.FINDINGS_GRAMMAR,
             dataclasses.replace(settings.review, max_tokens=160, **seeded), stops(info)),
    ]


def raw_run(raw: Raw, case: Case) -> tuple[float, int, str]:
    """llama-cpp-python with its own grammar."""
    done = raw.generate(case.prompt, case.stop, max_tokens=case.sampling.max_tokens,
                        grammar=case.grammar, sampling=case.sampling)
    return done.rate, done.tokens, done.text


def hearth_run(engine: LlamaEngine, case: Case) -> tuple[float, int, str, int, int]:
    done = engine.generate(case.prompt, case.sampling, case.stop, lambda: False,
                           lambda _p: None, grammar=case.grammar)
    window = engine.last_grammar
    n = done.completion_tokens
    rate = (n - 1) / (done.total_s - done.first_token_s) if n > 1 else 0.0
    return (rate, done.completion_tokens, done.text,
            window.steps if window else 0, window.whole_vocabulary if window else 0)


def measure(preset: str, repeats: int) -> dict:
    model = ModelSettings(preset=preset)
    path = resolve_model_path(model, cache_dir())
    engine = LlamaEngine(path, model)
    settings = Settings()
    settings.model = model
    raw = Raw(path, settings)
    rows = []
    for case in cases(engine.info):
        engine.generate(case.prompt, dataclasses.replace(case.sampling, max_tokens=2),
                        case.stop, lambda: False, lambda _p: None)  # the prompt in the KV cache
        raw.generate(case.prompt, case.stop, max_tokens=2, sampling=case.sampling)
        raw_rates, our_rates, same, steps, whole = [], [], 0, 0, 0
        r_tokens = 0
        for _ in range(repeats):
            quiet_moment(max_wait_s=10)
            r_rate, r_tokens, r_text = raw_run(raw, case)
            quiet_moment(max_wait_s=10)
            h_rate, _h_tokens, h_text, h_steps, h_whole = hearth_run(engine, case)
            raw_rates.append(r_rate)
            our_rates.append(h_rate)
            same += r_text == h_text
            steps += h_steps
            whole += h_whole
        rows.append({"case": case.name, "raw": statistics.median(raw_rates),
                     "hearth": statistics.median(our_rates), "same": same, "repeats": repeats,
                     "ratio": statistics.median(h / r for h, r in
                                                zip(our_rates, raw_rates, strict=True) if r),
                     "tokens": r_tokens, "steps": steps, "whole": whole})
        print(preset, rows[-1], flush=True)
    info, vocab = engine.info, engine.llm.n_vocab()
    engine.close()
    raw.llm.close()
    return {"preset": preset, "model": Path(info.path).name, "vocab": vocab,
            "where": info.where, "rows": rows}


def table(results: list[dict]) -> str:
    lines = ["| model (vocabulary) | grammar | llama-cpp-python's grammar | Hearth's | Hearth ÷ raw | "
             "same text | steps that checked every token |",
             "|---|---|---|---|---|---|---|"]
    for res in results:
        for row in res["rows"]:
            lines.append(
                f"| {res['preset']} ({res['vocab']}) | {row['case']} | {row['raw']:.1f} tok/s | "
                f"{row['hearth']:.1f} tok/s | **{row['ratio']:.2f}** | "
                f"{row['same']}/{row['repeats']} | {row['whole']} of {row['steps']} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    load_before = load_average()
    results = [measure(preset, args.repeats) for preset in PRESETS]
    body = (
        "## Decoding under a grammar: `bench/grammar.py`\n\n"
        f"{machine_description(model_where=results[0]['where'], load_before=load_before)}\n\n"
        f"{NOISE}\n\n"
        "Each bundled model, each grammar on its task's prompt for a change to the demo "
        "workspace's `pricing.py` (review: its first function), with the task's sampling "
        "and seed 1: raw llama-cpp-python with its grammar (llama.cpp checks every token "
        "of the vocabulary at every step) against Hearth's engine (the likeliest tokens "
        "first, `server/engine/grammar_window.py`), the same GGUF loaded by each, alternately, "
        f"{args.repeats} times each, the prompt already in the KV cache; decode speed after "
        "the first token, medians. \"Same text\": runs where both wrote the same answer. "
        "A step where fewer allowed tokens than the samplers keep are among the likeliest "
        "checks the whole vocabulary, as llama.cpp does, after the window's attempt (extra "
        "work, and no gain). A short findings answer "
        "(`{\"findings\": []}`) is such steps only.\n\n"
        f"{table(results)}\n")
    print(body)
    if not args.no_write:
        write_section("grammar", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
