"""The shared-model daemon's files and keys: which daemon serves a model configuration,
where its state file (port, token, pid; user-only) and locks are, and reading them.

Apart from daemon.py so that a client (an editor window, the CLI, the git hook) finds
and starts the daemon without importing its HTTP server and embedding service.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from . import __version__
from .settings import ModelSettings

# The fields of model.* that choose what the daemon loads (and so which daemon).
MODEL_FIELDS = ("preset", "path", "gpu_layers", "context_length", "threads", "batch_size")

try:  # POSIX; elsewhere two daemons may race (the loser's state file is not used)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


def model_config(model: ModelSettings) -> dict[str, Any]:
    """What the daemon is asked to load, as plain JSON (a path made absolute)."""
    out = {name: getattr(model, name) for name in MODEL_FIELDS}
    if out["path"]:
        out["path"] = str(Path(out["path"]).expanduser().resolve())
    return out


def model_settings(config: dict[str, Any], base: ModelSettings | None = None) -> ModelSettings:
    known = {k: v for k, v in config.items() if k in MODEL_FIELDS}
    return dataclasses.replace(base or ModelSettings(), **known)


def daemon_key(model: ModelSettings) -> str:
    """The name of the daemon for this model configuration."""
    text = json.dumps({"version": __version__, **model_config(model)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def daemon_dir(cache: Path) -> Path:
    folder = cache / "daemon"
    folder.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        folder.chmod(0o700)
    return folder


@dataclass(frozen=True)
class DaemonFiles:
    state: Path  # port, token, pid (0600)
    lock: Path  # held by the running daemon
    spawn: Path  # held by a client while it starts one
    log: Path  # the daemon's stderr
    trace: Path  # one JSON line per job (0600; no prompt text)

    @classmethod
    def of(cls, cache: Path, key: str) -> DaemonFiles:
        folder = daemon_dir(cache)
        return cls(folder / f"{key}.json", folder / f"{key}.lock", folder / f"{key}.spawn",
                   folder / f"{key}.log", folder / f"{key}.trace.jsonl")


# The daemon's log (its stderr) is moved to `.log.1` past this size; one older file kept.
LOG_MAX_BYTES = 4 << 20


def rotate_log(path: Path, fd: int = 2, max_bytes: int | None = None) -> bool:
    """When ``fd`` (the daemon's stderr, which the client that started it opened on
    ``path``) is that file and has passed ``max_bytes``: the file becomes ``path.1`` and
    ``fd`` goes on in a new one at ``path``. A daemon runs for days while a window is
    open, and each cancelled ghost text is a line. False when nothing was done (a daemon
    run by hand writes to its terminal). ``max_bytes``: LOG_MAX_BYTES unless given."""
    max_bytes = LOG_MAX_BYTES if max_bytes is None else max_bytes
    try:
        written, on_disk = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    if (written.st_dev, written.st_ino) != (on_disk.st_dev, on_disk.st_ino) \
            or written.st_size <= max_bytes:
        return False
    try:
        os.replace(path, path.with_name(path.name + ".1"))
        new = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    except OSError:  # a full or read-only disk: go on writing where it was
        return False
    try:
        os.dup2(new, fd)
    finally:
        os.close(new)
    return True


@dataclass(frozen=True)
class DaemonState:
    url: str  # http://127.0.0.1:PORT/v1
    token: str
    pid: int
    key: str
    version: str = ""

    @property
    def root(self) -> str:
        return self.url.removesuffix("/v1")


def read_state(path: Path) -> DaemonState | None:
    """The state file's content, or None when it is missing or not whole."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        state = DaemonState(url=str(data["url"]), token=str(data["token"]),
                            pid=int(data["pid"]), key=str(data["key"]),
                            version=str(data.get("version", "")))
    except (OSError, ValueError, KeyError, TypeError, OverflowError):
        return None
    # Not one the daemon wrote (it writes them whole and atomically): a pid past what
    # the OS has, a URL httpx cannot use, took --status, --stop and every client down.
    try:
        parts = urlsplit(state.url)
        usable = parts.scheme in ("http", "https") and bool(parts.hostname) and \
            parts.port is not None  # (.port raises ValueError past 65535)
    except ValueError:
        usable = False
    return state if usable and 0 < state.pid < 2**31 else None


def write_private(path: Path, text: str) -> None:
    """Write ``text`` so that only the user can read it, replacing the file atomically."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, text.encode("utf-8"))
    finally:
        os.close(fd)
    os.replace(tmp, path)


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def file_lock(path: Path, *, blocking: bool = True) -> Iterator[bool]:
    """An exclusive flock on ``path``; yields whether it was taken (always, if blocking)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if fcntl is None:
            yield True
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
