"""tests/fake_server.py's scripted server, plus a record of every generation.

FAKE_ENGINE_LOG: a file that gets one JSON line when a generation starts
({"event": "start", "n", "grammar", "prompt"}) and one when it ends
({"event": "end", "n", "finish", "tokens"}), so a test in another process can
tell which generations ran and how each ended.

FAKE_ENGINE_HOLD_S: after the first generation has finished (its "end" line is
written), wait this long before handing its result back: a cancel sent then
lands between two generations of one task, where no generation can see it.
Everything else as fake_server.py.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import time

import fake_server

from hearth_lsp.server import logs
from hearth_lsp.server.lsp.app import create_server

_count = itertools.count(1)


def record(item: dict) -> None:
    path = os.environ.get("FAKE_ENGINE_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps(item) + "\n")


def factory(settings, cache):
    engine = fake_server.factory(settings, cache)
    generate = engine.generate

    def recorded(prompt, sampling, stop, should_stop, on_piece, grammar=None, start=None):
        n = next(_count)
        record({"event": "start", "n": n, "grammar": grammar is not None,
                "prompt": prompt[-300:]})
        done = generate(prompt, sampling, stop, should_stop, on_piece, grammar, start)
        record({"event": "end", "n": n, "finish": done.finish_reason,
                "tokens": done.completion_tokens})
        if n == 1:
            time.sleep(float(os.environ.get("FAKE_ENGINE_HOLD_S", "0")))
        return done

    engine.generate = recorded  # type: ignore[method-assign]
    return engine


if __name__ == "__main__":
    logs.setup_stderr("debug")
    server = create_server(engine_factory=factory)
    server.start_io(stdin=sys.stdin.buffer, stdout=sys.stdout.buffer)
