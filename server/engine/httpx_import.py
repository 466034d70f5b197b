"""httpx, without its command-line client.

httpx's ``__init__`` imports ``httpx._main`` (its CLI) whenever click, rich and
pygments are installed, as they are here beside chromadb: about 6 MB more in
every process that only wants an HTTP client, and each editor window on the
shared daemon is such a process. A ``None`` entry in ``sys.modules`` makes that
import fail, and httpx then defines a stub ``main`` instead; Hearth never calls it.
"""

from __future__ import annotations

import sys

sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

import httpx  # noqa: E402


def verify(url: str) -> bool:
    """httpx's ``verify`` for a server at ``url``: certificates are checked over HTTPS;
    a plain-HTTP server (the shared daemon, a llama-server on this machine) has none,
    and loading the CA bundle anyway costs each editor window 1.7 MB. (Redirects are
    not followed, so a plain-HTTP client never reaches an HTTPS server.)"""
    return url.lower().startswith("https:")


__all__ = ["httpx", "verify"]
