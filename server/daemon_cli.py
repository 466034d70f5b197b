"""`hearth daemon`: run, list or stop the shared-model daemon (see daemon.py).

Clients with ``model.shared = true`` start it on demand, detached, as
``python -m hearth_lsp.server.daemon_cli --model-json ...``; by hand,
``hearth daemon`` runs it in the foreground for the model of the current
workspace's settings.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

# How long `--stop` waits for a daemon to exit: its generation stops at the next token,
# its worker is given 5 s (daemon.py), then the process exits.
STOP_WAIT_S = 20.0


def add_daemon_parser(sub: Any) -> None:
    daemon = sub.add_parser(
        "daemon", help="one warm model shared by every editor window, the CLI and the git "
        "hook (started on demand when model.shared is on)")
    daemon.add_argument("--root", help="workspace whose settings choose the model "
                        "(default: current directory)")
    daemon.add_argument("--idle-s", type=int, metavar="S",
                        help="exit after S seconds without a request (default: "
                        "model.daemonIdleS)")
    action = daemon.add_mutually_exclusive_group()
    action.add_argument("--status", action="store_true",
                        help="list the running daemons: model, pid, loads, queue, "
                        "embedding models")
    action.add_argument("--stop", action="store_true", help="stop every running daemon")
    daemon.add_argument("--json", action="store_true", help="with --status: a JSON list")
    daemon.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1); one that is not "
                        "loopback needs --allow-remote")
    daemon.add_argument("--port", type=int, default=0,
                        help="port to listen on (default: a free one, in the state file)")
    daemon.add_argument("--allow-remote", action="store_true",
                        help="let --host be an address reachable from other machines "
                        "(requests still need the token; plain HTTP)")
    daemon.add_argument("--model-json", help=argparse.SUPPRESS)  # from a client
    daemon.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    daemon.set_defaults(func=cmd_daemon)


def _running(cache: Path) -> list[tuple[Path, Any, dict[str, Any] | None]]:
    from .daemon_files import daemon_dir, pid_alive, read_state
    from .engine.daemon_client import _answers

    found = []
    for path in sorted(daemon_dir(cache).glob("*.json")):
        state = read_state(path)
        if state is None:
            continue
        info = _answers(state) if pid_alive(state.pid) else None
        found.append((path, state, info))
    return found


def cmd_daemon(args: argparse.Namespace, make_engine: Any = None) -> int:
    """``make_engine(model_settings, cache)``: the engine to serve (tests); default llama.cpp."""
    from . import logs
    from .settings import SettingsSources, cache_dir

    logs.setup_stderr(args.log_level or os.environ.get("HEARTH_LOG_LEVEL", "info"))
    if not (args.status or args.stop):
        from .daemon import RemoteBindRefused, check_bind

        try:
            check_bind(args.host, args.allow_remote)
        except RemoteBindRefused as exc:
            print(f"hearth daemon: refused: {exc}", file=sys.stderr)
            return 2
    cache = cache_dir()
    if args.status:
        return _status(cache, args.json)
    if args.stop:
        return _stop(cache)
    from .daemon import model_settings, serve

    root = Path(args.root or ".").resolve()
    resolved = SettingsSources(root=root).resolve()
    for problem in resolved.problems:
        print(f"hearth daemon: invalid setting: {problem}", file=sys.stderr)
    settings = resolved.settings
    model = settings.model
    if args.model_json:
        try:
            given = json.loads(args.model_json)
            if not isinstance(given, dict):
                raise ValueError("not an object")
            model = model_settings(given, model)
        except (ValueError, TypeError) as exc:
            print(f"hearth daemon: --model-json: {exc}", file=sys.stderr)
            return 2
    idle = args.idle_s if args.idle_s is not None else model.daemon_idle_s
    return serve(model, cache, idle_s=max(1, idle), make_engine=make_engine, host=args.host,
                 port=args.port, allow_remote=args.allow_remote)


def _status(cache: Path, as_json: bool) -> int:
    rows = []
    for path, state, info in _running(cache):
        model = (info or {}).get("model") or {}
        rows.append({"pid": state.pid, "url": state.url, "key": state.key,
                     "answers": info is not None, "state": (info or {}).get("state"),
                     "model": model.get("name"), "path": model.get("path"),
                     "loads": (info or {}).get("loads"), "queue": (info or {}).get("queue"),
                     "clients": (info or {}).get("clients"),
                     "embedders": (info or {}).get("embedders") or [], "stateFile": str(path)})
    if as_json:
        print(json.dumps(rows))
        return 0
    if not rows:
        print("no hearth daemon runs")
    for row in rows:
        if not row["answers"]:
            print(f"pid {row['pid']}: not answering (stale {row['stateFile']})")
            continue
        embedders = f", embeddings: {', '.join(row['embedders'])}" if row["embedders"] else ""
        print(f"pid {row['pid']} at {row['url']}: {row['state']}, {row['model']} "
              f"({row['path']}), {row['loads']} load(s), {row['queue']} queued{embedders}")
    return 0


def _stop(cache: Path) -> int:
    """SIGTERM to every daemon that answers, then wait for each to exit: its state file
    goes at once, but the process lives on while its generation and server stop, and
    holds the model's memory (and its lock) until then."""
    from .daemon_files import pid_alive

    stopping = []
    for path, state, info in _running(cache):
        if info is None or info.get("pid") != state.pid:
            path.unlink(missing_ok=True)  # stale: nothing of ours answers there
            continue
        try:
            os.kill(state.pid, signal.SIGTERM)
        except ProcessLookupError:  # it exited meanwhile
            continue
        stopping.append(state.pid)
    deadline = time.monotonic() + STOP_WAIT_S
    while any(pid_alive(pid) for pid in stopping) and time.monotonic() < deadline:
        time.sleep(0.05)
    code = 0
    for pid in stopping:
        if pid_alive(pid):
            print(f"pid {pid} still runs {STOP_WAIT_S:g} s after SIGTERM (inside a generation "
                  f"that does not stop?): `kill -9 {pid}` ends it", file=sys.stderr)
            code = 1
        else:
            print(f"stopped pid {pid}")
    if not stopping:
        print("no hearth daemon runs")
    return code


def main(argv: list[str] | None = None, make_engine: Any = None) -> int:
    parser = argparse.ArgumentParser(prog="hearth daemon")
    sub = parser.add_subparsers(dest="command")
    add_daemon_parser(sub)
    args = parser.parse_args(["daemon", *(sys.argv[1:] if argv is None else argv)])
    try:
        return int(cmd_daemon(args, make_engine) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
