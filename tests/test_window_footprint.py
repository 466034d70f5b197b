"""What an editor window on the shared daemon imports.

A window that sends its prompts to the daemon (model.shared) holds no model, no
embedding model and no vector index when the index is off, so the libraries
behind those must not be imported by building the server: each one is several
megabytes in every window (bench/daemon.py measures the total). The check runs in
a fresh interpreter, since this test process has imported everything already.
"""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = {
    "numpy": "vectors: only the index and the local engine use it",
    "rich": "httpx's command-line client, which Hearth never runs",
    "click": "httpx's command-line client",
    "pygments": "httpx's command-line client",
    "llama_cpp": "the local engine",
    "torch": "the embedding model",
    "chromadb": "the vector store",
}
# Modules, not packages: the daemon's own server (a client only reads its state files).
HEAVY_MODULES = {
    "hearth_lsp.server.daemon": "the daemon itself (daemon_files finds and starts it)",
    "http.server": "the daemon's HTTP server",
    "hearth_lsp.server.daemon_embeddings": "the daemon's embedding service",
}

SCRIPT = """
import json, sys
from hearth_lsp.server.lsp.app import create_server
from hearth_lsp.server.engine.daemon_client import shared_engine_factory
create_server()
print(json.dumps(sorted(sys.modules)))
"""


def test_a_window_on_the_daemon_imports_no_model_or_vector_libraries():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                         check=True, timeout=120).stdout
    modules = set(json.loads(out.splitlines()[-1]))
    imported = {name.split(".")[0] for name in modules}
    assert "httpx" in imported  # the client it does need (a check that the script ran)
    loaded = {name: why for name, why in HEAVY.items() if name in imported}
    loaded |= {name: why for name, why in HEAVY_MODULES.items() if name in modules}
    assert not loaded, f"imported by a window that needs none of them: {loaded}"
