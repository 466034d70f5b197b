"""`hearth daemon` serving a scripted FakeEngine, for exact tests of the shared model.

Clients start it instead of the real daemon when HEARTHD_SCRIPT names this file.
FAKE_ENGINE_RESPONSES (a JSON list), FAKE_ENGINE_DEFAULT (times FAKE_ENGINE_REPEAT),
FAKE_ENGINE_DELAY (seconds per piece) as in fake_server.py; FAKE_ENGINE_RECORD: a file
that gets one JSON line per generation (the prompt, and the priority of its job);
FAKE_DAEMON_FAIL: the load fails with this message. Everything else (HTTP, token,
queue, priorities, cancellation, idle exit) is the real daemon.
"""

from __future__ import annotations

import json
import os
import sys

from hearth_lsp.server.daemon_cli import main
from hearth_lsp.server.engine.fake import FakeEngine


def make_engine(model, cache):
    if os.environ.get("FAKE_DAEMON_FAIL"):
        raise RuntimeError(os.environ["FAKE_DAEMON_FAIL"])
    engine = FakeEngine(responses=json.loads(os.environ.get("FAKE_ENGINE_RESPONSES", "[]")),
                        default=os.environ.get("FAKE_ENGINE_DEFAULT", "")
                        * int(os.environ.get("FAKE_ENGINE_REPEAT", "1")),
                        piece_delay_s=float(os.environ.get("FAKE_ENGINE_DELAY", "0")))
    engine.info.path = model.path or "<fake>"
    record = os.environ.get("FAKE_ENGINE_RECORD")
    if record:
        generate = engine.generate

        def recorded(prompt, *args, **kwargs):
            with open(record, "a", encoding="utf-8") as fh:
                fh.write(json.dumps({"prompt": prompt, "pid": os.getpid()}) + "\n")
            return generate(prompt, *args, **kwargs)

        engine.generate = recorded  # type: ignore[method-assign]
    return engine


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:], make_engine=make_engine))
