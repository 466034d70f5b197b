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

__all__ = ["httpx"]
