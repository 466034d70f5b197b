"""`hearth serve` with a scripted FakeEngine, for exact end-to-end handler tests.

FAKE_ENGINE_RESPONSES: JSON list of answers, in order; FAKE_ENGINE_DEFAULT the
answer after those (FAKE_ENGINE_REPEAT times over); FAKE_ENGINE_DELAY seconds per piece (to test cancellation);
FAKE_ENGINE_CONTEXT the context length the model reports; FAKE_ENGINE_RECORD a file
that receives every prompt the model was given (one JSON string a line).
A `model.path` setting is still checked for real, so bad paths fail as they do
in production.
"""

from __future__ import annotations

import json
import os
import sys

from hearth_lsp.server import logs
from hearth_lsp.server.engine.fake import FakeEngine
from hearth_lsp.server.gguf_info import read_gguf
from hearth_lsp.server.lsp.app import create_server


def factory(settings, cache):
    if settings.model.path:
        read_gguf(settings.model.path)  # raises with the path and the fix
    engine = FakeEngine(responses=json.loads(os.environ.get("FAKE_ENGINE_RESPONSES", "[]")),
                        default=os.environ.get("FAKE_ENGINE_DEFAULT", "")
                        * int(os.environ.get("FAKE_ENGINE_REPEAT", "1")),
                        piece_delay_s=float(os.environ.get("FAKE_ENGINE_DELAY", "0")))
    engine.info.path = settings.model.path or "<fake>"
    engine.info.context_length = int(os.environ.get("FAKE_ENGINE_CONTEXT", "4096"))
    record = os.environ.get("FAKE_ENGINE_RECORD")
    if record:
        generate = engine.generate

        def recorded(prompt, *args, **kwargs):
            with open(record, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(prompt) + "\n")
            return generate(prompt, *args, **kwargs)

        engine.generate = recorded  # type: ignore[method-assign]
    return engine


if __name__ == "__main__":
    logs.setup_stderr("debug")
    server = create_server(engine_factory=factory)
    server.start_io(stdin=sys.stdin.buffer, stdout=sys.stdout.buffer)
