"""Soak: one `hearth serve` for a long session, watched for leaks and slow answers.

    .venv/bin/python bench/soak.py [--actions 1000] [--reindex 100] [--seed 0]

One server (a scripted engine, the workspace index on with embeddings off) on a
copy of examples/demo-workspace in a temporary git repository gets ``--actions``
editor actions: docstring code actions resolved, `hearth.review` of a function
or the file, `hearth.search`, and edits saved (didChange, the file written,
didSave); and ``--reindex`` re-index cycles: `hearth.reindex` until the index
is ready again, or a new function written on disk outside the editor until a
search finds it. RSS (VmRSS), threads and open file descriptors of the server
are read from /proc after a warm-up (a tenth of the run) and then every 100
actions. Prints the figures and rewrites the "Soak" section of
docs/reliability.md (the fuzz section and any other are left alone).

The engine answers from the prompt (a docstring naming the function's real
parameters; one review finding quoting a real line), so the success paths run,
and it forgets its prompts: tests' FakeEngine keeps every one, which a soak
would measure as a leak of the server.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "examples" / "demo-workspace"
sys.path.insert(0, str(REPO / "bench"))

import fuzz  # noqa: E402

# Every answer within its bound (seconds): generous, for a shared 2-core machine.
BOUNDS = {"codeAction": 10.0, "resolve": 30.0, "review": 30.0, "search": 10.0, "status": 10.0,
          "reindex": 60.0, "outside edit": 30.0, "save": 10.0}
QUERIES = ["price", "parse price text", "discount percent", "Inventory stock", "format cents",
           "low stock threshold", "remove sku quantity", "total value", "ValueError", "Item"]


# ------------------------------------------------------------------ the engine


def answer(prompt: str) -> str:
    """A plausible answer from the prompt alone: what the scripted model says."""
    if '"findings"' in prompt:  # a review: one finding on a line of the listing
        listed = re.findall(r"^\s*(\d+) \| (.*\breturn\b.*)$", prompt, re.MULTILINE)
        if not listed:
            return '{"findings": []}'
        line, _ = listed[-1]
        return json.dumps({"findings": [{
            "line": int(line), "quote": "return", "severity": "info",
            "category": "maintainability", "message": "a stand-in finding of the soak's model"}]})
    defs = re.findall(r"def (\w+)\(([^)]*)\)", prompt)
    if defs:  # a docstring for the last function shown (the one asked about)
        name, params = defs[-1]
        try:
            args = ast.parse(f"def f({params}): pass").body[0].args  # type: ignore[attr-defined]
        except SyntaxError:
            return "Do the thing."
        names = [a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]
                 if a.arg not in ("self", "cls")]
        for star in (args.vararg, args.kwarg):
            if star is not None:
                names.append(star.arg)
        words = name.replace("_", " ")
        lines = [f"Compute {words} for the inventory."]
        if names:
            lines += ["", "Args:", *(f"    {n}: the {n.replace('_', ' ')}." for n in names)]
        return "\n".join(lines)
    return "Do the thing."


def serve() -> None:
    """`hearth serve` on stdio with the soak's scripted engine."""
    from hearth_lsp.server import logs
    from hearth_lsp.server.engine.fake import FakeEngine
    from hearth_lsp.server.lsp.app import create_server

    class Forget(list):
        def append(self, _item: Any) -> None:  # FakeEngine records every prompt
            pass

    class Answers(list):
        def __bool__(self) -> bool:
            return True

        def pop(self, _index: Any = -1) -> Any:
            return answer

    def factory(settings: Any, cache: Any) -> FakeEngine:
        engine = FakeEngine(responses=Answers())
        engine.prompts, engine.grammars, engine.starts = Forget(), Forget(), Forget()
        engine.info.path = "<soak>"
        return engine

    logs.setup_stderr("info")
    server = create_server(engine_factory=factory)
    server.start_io(stdin=sys.stdin.buffer, stdout=sys.stdout.buffer)


# ------------------------------------------------------------------ the client


def demo_repo(root: Path) -> Path:
    dest = root / "demo-workspace"
    shutil.copytree(DEMO, dest, ignore=shutil.ignore_patterns(
        "__pycache__", ".pytest_cache", ".benchmarks"))
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@localhost", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@localhost", "PATH": "/usr/bin:/bin"}
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "init"]):
        subprocess.run(cmd, cwd=dest, env=env, check=True, capture_output=True)
    return dest


class Soak:
    def __init__(self, session: fuzz.Session, root: Path, rng: random.Random):
        self.s, self.root, self.rng = session, root, rng
        self.ids = iter(range(1, 10**9))
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.outcomes: dict[str, Counter] = defaultdict(Counter)
        self.over: list[tuple[str, float]] = []  # answers past their bound
        self.unanswered: list[str] = []
        self.docs: dict[str, tuple[Path, str, int]] = {}  # uri -> (path, text, version)
        self.saves = 0

    def request(self, kind: str, method: str, params: Any) -> dict | None:
        msg_id = next(self.ids)
        started = time.monotonic()
        self.s.send({"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params})
        bound = BOUNDS[kind]
        missing = self.s.wait([msg_id], bound * 2)  # past the bound: late; past twice: lost
        if missing:
            self.unanswered.append(f"{kind} {method} {str(params)[:200]}")
            self.over.append((kind, bound * 2))
            return None
        took = self.s.answered_at[fuzz.key(msg_id)] - started
        self.latency[kind].append(took)
        if took > bound:
            self.over.append((kind, took))
        answer = self.s.responses[fuzz.key(msg_id)]
        error = answer.get("error")
        self.outcomes[kind]["ok" if error is None else f"error {error.get('code')}"] += 1
        return answer

    def command(self, kind: str, command: str, *args: Any) -> dict | None:
        return self.request(kind, "workspace/executeCommand",
                            {"command": command, "arguments": list(args)})

    def status(self) -> dict:
        answer = self.command("status", "hearth.status")
        return answer.get("result") or {} if answer else {}

    def wait_index(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (self.status().get("index") or {}).get("state") == "ready":
                return True
            time.sleep(0.1)
        return False

    # -------------------------------------------------------------- documents

    def open_all(self) -> None:
        for path in sorted(self.root.rglob("*.py")):
            uri = path.as_uri()
            text = path.read_text(encoding="utf-8")
            self.docs[uri] = (path, text, 1)
            self.s.send({"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {
                "textDocument": {"uri": uri, "languageId": "python", "version": 1,
                                 "text": text}}})

    def function_lines(self, uri: str) -> list[int]:
        text = self.docs[uri][1]
        return [n for n, line in enumerate(text.splitlines()) if line.lstrip().startswith("def ")]

    def pick(self) -> tuple[str, int]:
        uri = self.rng.choice([u for u in self.docs if self.function_lines(u)])
        return uri, self.rng.choice(self.function_lines(uri))

    # ---------------------------------------------------------------- actions

    def docstring(self) -> None:
        uri, line = self.pick()
        here = {"line": line, "character": 4}
        listed = self.request("codeAction", "textDocument/codeAction", {
            "textDocument": {"uri": uri}, "range": {"start": here, "end": here},
            "context": {"diagnostics": [], "only": ["refactor.rewrite.hearth.docstring"]}})
        actions = (listed or {}).get("result") or []
        action = next((a for a in actions if a.get("kind", "").endswith("hearth.docstring")), None)
        if action is None:
            self.outcomes["resolve"]["no action offered"] += 1
            return
        resolved = self.request("resolve", "codeAction/resolve", action)
        if resolved and "result" in resolved and "edit" not in resolved["result"]:
            self.outcomes["resolve"]["refused by validation"] += 1

    def review(self) -> None:
        uri, line = self.pick()
        if self.rng.random() < 0.7:
            self.command("review", "hearth.review", {"uri": uri, "scope": "symbol", "line": line})
        else:
            self.command("review", "hearth.review", {"uri": uri, "scope": "file"})

    def search(self) -> None:
        self.command("search", "hearth.search", {"query": self.rng.choice(QUERIES), "k": 5})

    def save(self) -> None:
        """An edit in the editor (a comment line added, or the last one taken away),
        written to disk and saved; then a status request (the save's own latency)."""
        uri = self.rng.choice(sorted(self.docs))
        path, text, version = self.docs[uri]
        self.saves += 1
        marker = "# soak edit"
        text = text[: text.rindex(marker)] if marker in text else f"{text}{marker} {self.saves}\n"
        version += 1
        self.docs[uri] = (path, text, version)
        self.s.send({"jsonrpc": "2.0", "method": "textDocument/didChange", "params": {
            "textDocument": {"uri": uri, "version": version},
            "contentChanges": [{"text": text}]}})
        path.write_text(text, encoding="utf-8")
        self.s.send({"jsonrpc": "2.0", "method": "textDocument/didSave",
                     "params": {"textDocument": {"uri": uri}}})
        self.command("save", "hearth.status")

    def reindex_cycle(self, n: int) -> None:
        started = time.monotonic()
        if n % 2 == 0:
            self.command("status", "hearth.reindex", {})
            kind, ok = "reindex", self.wait_index(BOUNDS["reindex"] * 2)
        else:  # a new function written outside the editor, until a search finds it
            name = f"soak_made_outside_{n}"
            folder = self.root / "soak"
            folder.mkdir(exist_ok=True)
            (folder / f"outside_{n % 5}.py").write_text(
                f"def {name}(amount):\n    return amount * {n}\n", encoding="utf-8")
            kind, ok = "outside edit", False
            deadline = started + BOUNDS[kind] * 2
            while time.monotonic() < deadline and not ok:
                found = self.command("search", "hearth.search", {"query": name, "k": 3})
                ok = any(name in json.dumps(r) for r in ((found or {}).get("result") or []))
                if not ok:
                    time.sleep(0.1)
        took = time.monotonic() - started
        self.latency[kind].append(took)
        self.outcomes[kind]["ok" if ok else "not in time"] += 1
        if not ok or took > BOUNDS[kind]:
            self.over.append((kind, took))

    def act(self) -> None:
        r = self.rng.random()
        if r < 0.35:
            self.docstring()
        elif r < 0.60:
            self.review()
        elif r < 0.85:
            self.search()
        else:
            self.save()


def server_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEARTH_")}
    env.update(HEARTH_CONFIG_FILE=str(tmp / "no-config.toml"), HEARTH_CACHE_DIR=str(tmp / "cache"),
               HEARTH_INDEX_ENABLED="true", HEARTH_INDEX_EMBEDDINGS="false")
    return env


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))] if values else 0.0


def main() -> None:
    if sys.argv[1:2] == ["--serve"]:
        serve()
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--actions", type=int, default=1000)
    parser.add_argument("--reindex", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--note", default="", help="a line for the doc (e.g. the machine's load)")
    parser.add_argument("--no-doc", action="store_true")
    args = parser.parse_args()
    from report import machine_description

    load = fuzz.load_average()
    rng = random.Random(args.seed)
    started = time.perf_counter()
    samples: list[tuple[int, dict[str, int]]] = []
    with tempfile.TemporaryDirectory(prefix="hearth-soak-") as tmp_name:
        tmp = Path(tmp_name)
        root = demo_repo(tmp)
        with open(tmp / "server.log", "w+b") as err:
            session = fuzz.Session([sys.executable, str(Path(__file__).resolve()), "--serve"],
                                   server_env(tmp), err, cwd=tmp)
            session.garbage_answers = False
            session.answer_with = lambda request: {  # an editor that applies every edit
                "jsonrpc": "2.0", "id": request["id"],
                "result": {"applied": True} if request["method"] == "workspace/applyEdit"
                else [{}] if request["method"] == "workspace/configuration" else None}
            soak = Soak(session, root, rng)
            fuzz.initialize(session, root)
            assert soak.wait_index(120), f"the index never got ready:\n{session.stderr_tail()}"
            soak.open_all()
            every = max(1, args.actions // max(1, args.reindex))
            warm = args.actions // 10
            cycles = 0
            for n in range(args.actions):
                if n == warm:
                    samples.append((n, session.proc_status()))
                soak.act()
                if (n + 1) % every == 0 and cycles < args.reindex:
                    soak.reindex_cycle(cycles)
                    cycles += 1
                if (n + 1) % 100 == 0:
                    samples.append((n + 1, session.proc_status()))
                    print(f"{n + 1} actions, {cycles} re-index cycles: {samples[-1]}", flush=True)
                if not session.alive():
                    break
            while cycles < args.reindex and session.alive():
                soak.reindex_cycle(cycles)
                cycles += 1
            alive = session.alive()
            final = soak.status() if alive else {}
            end = session.proc_status()
            samples.append((args.actions, end))
            notifications = dict(session.notifications)
            exit_code = session.close()
            log = session.stderr_text()
    seconds = time.perf_counter() - started

    after_warm = samples[0][1]
    growth = (end.get("VmRSS", 0) - after_warm.get("VmRSS", 0)) / max(1, after_warm.get("VmRSS", 1))
    rows = []
    for kind in ["codeAction", "resolve", "review", "search", "save", "status", "reindex",
                 "outside edit"]:
        lat = soak.latency.get(kind, [])
        if not lat:
            continue
        outcome = ", ".join(f"{k} {v:,}" for k, v in soak.outcomes[kind].most_common())
        rows.append(f"| {kind} | {len(lat):,} | {statistics.median(lat) * 1000:.0f} ms | "
                    f"{pct(lat, 0.99) * 1000:.0f} ms | {max(lat) * 1000:.0f} ms | "
                    f"{BOUNDS[kind]:.0f} s | {outcome} |")
    series = " → ".join(f"{s.get('VmRSS', 0) / 1024:.1f}" for _, s in samples)
    fds = " → ".join(str(s.get("fds", "?")) for _, s in samples)
    threads = " → ".join(str(s.get("Threads", "?")) for _, s in samples)
    tracebacks = fuzz.traceback_records(log)
    summary = {"actions": args.actions, "reindex": args.reindex, "alive": alive,
               "exit": exit_code, "rss_growth_pct": round(growth * 100, 2),
               "after_warm": after_warm, "end": end, "over_bound": soak.over[:10],
               "unanswered": soak.unanswered[:10], "tracebacks": dict(tracebacks),
               "max_ms": {k: round(max(v) * 1000) for k, v in soak.latency.items()},
               "outcomes": {k: dict(v) for k, v in soak.outcomes.items()},
               "index": (final.get("index") or {}).get("state"), "seconds": round(seconds),
               "notifications": notifications}
    print(json.dumps(summary, indent=1))
    if args.no_doc:
        return
    body = f"""## Soak

`bench/soak.py` (seed {args.seed}) ran one `hearth serve` (a scripted engine that
answers from the prompt: docstrings naming the real parameters, one review finding
quoting a real line; the workspace index on, embeddings off) on a copy of
`examples/demo-workspace` in a temporary git repository: **{args.actions:,} editor
actions** (35% docstring code actions resolved, 25% `hearth.review` of a function
or the file, 25% `hearth.search`, 15% an edit saved: didChange, the file written,
didSave) and **{args.reindex} re-index cycles** (every other one `hearth.reindex`
until the index is ready again, the others a new function written on disk outside
the editor until `hearth.search` finds it), in {seconds:.0f} s.

| figure | after warm-up ({samples[0][0]} actions) | at the end | |
|---|---|---|---|
| RSS (VmRSS) | {after_warm.get('VmRSS', 0) / 1024:.1f} MiB | {end.get('VmRSS', 0) / 1024:.1f} MiB | **{growth * 100:+.1f}%** (target < 5%) |
| open file descriptors | {after_warm.get('fds')} | {end.get('fds')} | |
| threads | {after_warm.get('Threads')} | {end.get('Threads')} | |

Every 100 actions, RSS in MiB: {series}; file descriptors: {fds}; threads: {threads}.

| answer | count | median | p99 | max | bound | outcomes |
|---|---|---|---|---|---|---|
{chr(10).join(rows)}

Answers past their bound: {len(soak.over)}; unanswered: {len(soak.unanswered)}; the
process {"lived" if alive else "DIED"} and exited {exit_code} after shutdown/exit; index
state at the end: {(final.get("index") or {}).get("state")}; log records with a
traceback: {sum(tracebacks.values())}{": " + ", ".join(f"{v} × `{k}`" for k, v in tracebacks.items()) if tracebacks else ""}.
Notifications from the server: {", ".join(f"{k} {v:,}" for k, v in sorted(notifications.items()))}.

{fuzz.machine(machine_description())}; load average {load} at the start.
{args.note}
"""
    fuzz.write_doc_section("soak", body)
    print(f"wrote the soak section of {fuzz.DOC}")


if __name__ == "__main__":
    main()
