"""`hearth daemon`: one warm model for every editor window, the CLI and the git hook.

One process owns the model and the one priority queue (a GenerationWorker) and
serves them on 127.0.0.1 over an OpenAI-compatible streaming HTTP API:

- ``GET /v1/models``: the model.
- ``POST /v1/completions``: a completion-style text prompt, streamed as server-sent
  events (or one JSON answer with ``"stream": false``). Hearth's extensions:
  ``grammar`` (GBNF), ``start`` (a regex the first token must match) and
  ``priority`` (1-5 or a name: completion, user, save, hook, background; default
  user). A running save, hook or background job stops for a more urgent one at the
  next token and runs again after it.
- ``POST /extras/tokenize/count``: ``{"input": text}`` -> ``{"count": n}``.
- ``POST /v1/embeddings`` and ``POST /hearth/embedder``: the embedding model, for
  windows' indexes (daemon_embeddings.py).
- ``GET /hearth/info``: the state (loading, ready, error), the ModelInfo (chat
  template, bos/eos, context length: clients render prompts exactly as for a model
  of their own), the pid, how many loads, the queue.
- ``GET /metrics``: Prometheus text format (prometheus-client): latency per task
  (a histogram: p50/p95/p99 by ``histogram_quantile``), time to the first token,
  tokens in and out, jobs by outcome, the queue depth, model loads, refused requests.

Each finished job also gets a line in ``<key>.trace.jsonl`` next to the state file
(task, priority, model, the prompt's sha256, tokens, timings, outcome: never the
prompt's text nor the token), rotated to ``.1`` past TRACE_MAX_BYTES.

Every request needs the token (``Authorization: Bearer``) that the daemon writes,
with its port, to a state file only the user can read (0600). A client that closes
its connection cancels its job, queued or running: the worker stops between tokens.

There is one daemon per model configuration (preset, path, context, GPU layers,
threads, batch size and Hearth's version): its files are named by a hash of it, so a
window whose model settings change simply uses (or starts) the daemon for the new
ones, and the old one exits after ``model.daemonIdleS`` without requests. A lock
held for the daemon's whole life makes a second one for the same model exit at once.

The HTTP server is the standard library's (a thread per connection): no web
framework to install, and a request's thread simply waits on its job's pieces.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import dataclasses
import hashlib
import hmac
import json
import logging
import math
import os
import queue
import re
import secrets
import select
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from ..indexer.embeddings import Embedder  # torch only when a model is made
from . import __version__
from .daemon_embeddings import (
    EmbeddingRequestError,
    Embeddings,
    EmbeddingUnavailable,
    Loader,
    answer,
    parse_input,
)
from .daemon_files import (
    MODEL_FIELDS,
    DaemonFiles,
    DaemonState,
    daemon_key,
    file_lock,
    model_config,
    model_settings,
    pid_alive,
    read_state,
    rotate_log,
    write_private,
)
from .engine.base import Engine
from .engine.worker import GenerationWorker, Job, Priority
from .settings import ModelSettings, SamplingSettings

log = logging.getLogger("hearth.daemon")

PRIORITY_NAMES = {"completion": Priority.COMPLETION, "user": Priority.USER,
                  "save": Priority.SAVE, "hook": Priority.HOOK,
                  "background": Priority.BACKGROUND}
# How often a waiting request looks whether its client is still there.
POLL_S = 0.05
# A running job its client left stops at its next token; its trace line waits this long
# for that, to count the tokens it did generate (a client that stops a refused answer
# early, as the commit task does, is most of the hook's jobs).
ACCOUNT_WAIT_S = 2.0
# The longest a daemon starting waits for one that is stopping to let go of the lock.
STOPPING_WAIT_S = 15.0
MAX_BODY = 16 << 20
# The body of a request without the token is drained up to this size, never more.
REFUSED_DRAIN_MAX = 64 << 10
# Task names as /metrics labels: this many, each a word of letters, digits and dashes.
MAX_TASK_LABELS = 32
_TASK_LABEL = re.compile(r"[a-z][a-z0-9_-]{0,39}")
# The longest a background embedding request waits for users' generations to finish.
USERS_FIRST_MAX_S = 60.0
# The job trace (JSONL) is rotated past this size: one older file is kept.
TRACE_MAX_BYTES = 4 << 20
CLIENTS_KEPT = 64  # the client names /hearth/info lists
# Latency buckets (seconds) for everything from ghost text to a long background job.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0,
                   300.0, 600.0)
OUTCOMES = ("completed", "cancelled", "failed")

EngineMaker = Callable[[ModelSettings, Path], Engine]

class RemoteBindRefused(ValueError):
    """A non-loopback address to listen on, without ``allow_remote``."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address, or ``localhost``) is reachable from this machine only."""
    import ipaddress

    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False  # another name: it may resolve to anything


def check_bind(host: str, allow_remote: bool) -> None:
    """Refuse to listen beyond this machine unless asked to explicitly."""
    if not is_loopback(host) and not allow_remote:
        raise RemoteBindRefused(
            f"{host} is not a loopback address: the daemon would serve the model (and "
            "take requests carrying its token in plain HTTP) beyond this machine. Pass "
            "--allow-remote to do so anyway")


def parse_priority(value: Any) -> Priority:
    """A request's ``priority``: a number (1-5) or a name; USER when absent."""
    if value is None:
        return Priority.USER
    if isinstance(value, str):
        named = PRIORITY_NAMES.get(value.strip().lower())
        if named is not None:
            return named
        if not value.strip().isdigit():
            raise ValueError(f"priority {value!r}: use a number 1-5 or one of "
                             f"{', '.join(PRIORITY_NAMES)}")
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"priority {value!r}: use a number 1-5 or a name")
    return Priority(min(max(value, Priority.COMPLETION), Priority.BACKGROUND))


def sampling_from(body: dict[str, Any]) -> SamplingSettings:
    """The sampling of an OpenAI-style request (missing fields: Hearth's defaults)."""
    base = SamplingSettings()
    values: dict[str, Any] = {}
    for name, kind in (("temperature", float), ("top_p", float), ("min_p", float),
                       ("repeat_penalty", float), ("top_k", int), ("max_tokens", int),
                       ("seed", int)):
        if body.get(name) is not None:
            try:
                values[name] = kind(body[name])
            except (TypeError, ValueError, OverflowError):  # int(1e999)
                raise ValueError(f"{name} must be a number, got {body[name]!r}") from None
            if not math.isfinite(values[name]) or (values[name] < 0 and name != "seed"):
                raise ValueError(f"{name} must be a finite number of 0 or more, "
                                 f"got {body[name]!r}")
    if "repetition_penalty" in body and "repeat_penalty" not in values:
        with contextlib.suppress(TypeError, ValueError):
            values["repeat_penalty"] = float(body["repetition_penalty"])
    if values.get("max_tokens", 1) < 1:
        raise ValueError("max_tokens must be at least 1")
    for name in ("top_p", "min_p"):
        if values.get(name, 0) > 1:
            raise ValueError(f"{name} must be between 0 and 1, got {values[name]!r}")
    return dataclasses.replace(base, **values)


def stops_from(body: dict[str, Any]) -> list[str]:
    stop = body.get("stop")
    if stop is None:
        return []
    if isinstance(stop, str):
        return [stop]
    if isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        return list(stop)
    raise ValueError("stop must be a string or a list of strings")


# ------------------------------------------------------------ metrics and trace

class Metrics:
    """The daemon's Prometheus metrics, in a registry of its own (several daemons may
    run in one test process)."""

    def __init__(self, daemon: Daemon) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.latency = Histogram(
            "hearth_daemon_job_seconds", "Time from a job's request to its answer (queue "
            "wait included), by task", ["task"], buckets=LATENCY_BUCKETS, registry=r)
        self.first_token = Histogram(
            "hearth_daemon_first_token_seconds", "Time from a job's request to its first "
            "token, by task", ["task"], buckets=LATENCY_BUCKETS, registry=r)
        self.queue_wait = Histogram(
            "hearth_daemon_queue_wait_seconds", "Time a job waited in the queue, by task",
            ["task"], buckets=LATENCY_BUCKETS, registry=r)
        self.tokens_in = Counter("hearth_daemon_prompt_tokens", "Prompt tokens read, by task",
                                 ["task"], registry=r)
        self.tokens_out = Counter("hearth_daemon_completion_tokens",
                                  "Tokens generated, by task (a job that yielded to a more "
                                  "urgent one generates its first tokens again: counted "
                                  "each time)", ["task"], registry=r)
        self.tasks: set[str] = set()
        self.jobs = Counter("hearth_daemon_jobs", "Jobs finished, by task and outcome "
                            "(completed, cancelled, failed)", ["task", "outcome"], registry=r)
        self.refused = Counter("hearth_daemon_refused_requests",
                               "Requests refused for a missing or wrong token", registry=r)
        queue_depth = Gauge("hearth_daemon_queue_depth", "Jobs waiting in the queue",
                            registry=r)
        queue_depth.set_function(lambda: daemon.worker.pending())
        loads = Gauge("hearth_daemon_model_loads", "Model loads since the daemon started",
                      registry=r)
        loads.set_function(lambda: daemon.loads)

    def record(self, task: str, outcome: str, latency_s: float, queue_s: float | None,
               first_token_s: float | None, tokens_in: int, tokens_out: int) -> None:
        # A task is a label: each new one is a series kept for good, and clients name
        # them, so the names are few and short (1000 made-up names grew /metrics 5 MiB).
        if task not in self.tasks:
            if len(self.tasks) >= MAX_TASK_LABELS - 1 or not _TASK_LABEL.fullmatch(task):
                task = "other"
            self.tasks.add(task)
        self.latency.labels(task).observe(latency_s)
        if queue_s is not None:
            self.queue_wait.labels(task).observe(queue_s)
        if first_token_s is not None:
            self.first_token.labels(task).observe(first_token_s)
        self.tokens_in.labels(task).inc(tokens_in)
        self.tokens_out.labels(task).inc(tokens_out)
        self.jobs.labels(task, outcome).inc()

    def exposition(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class Trace:
    """One JSON line per job, in a file only the user can read, rotated to ``.1`` when
    it would pass ``max_bytes``. Callers hand it no prompt text: its hash only."""

    def __init__(self, path: Path, max_bytes: int = TRACE_MAX_BYTES) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._lock = threading.Lock()

    def write(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record, sort_keys=True) + "\n").encode()
        with self._lock:
            try:
                size = self.path.stat().st_size
            except OSError:
                size = 0
            try:
                if size and size + len(line) > self.max_bytes:
                    os.replace(self.path, self.path.with_name(self.path.name + ".1"))
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                try:
                    os.write(fd, line)
                finally:
                    os.close(fd)
            except OSError as exc:  # a full disk must not fail the job
                log.warning("job trace %s: %s", self.path, exc)


def prompt_hash(prompt: str) -> str:
    return hashlib.sha256(prompt.encode("utf-8", "surrogatepass")).hexdigest()


# -------------------------------------------------------------------- the daemon

class Daemon:
    """The model, its worker, the HTTP server and the idle clock."""

    def __init__(self, model: ModelSettings, cache: Path, make_engine: EngineMaker, *,
                 idle_s: float = 900.0, host: str = "127.0.0.1", port: int = 0,
                 token: str | None = None, write_state: bool = True,
                 allow_remote: bool = False, load_embedder: Loader | None = None) -> None:
        """``load_embedder(folder, backend)``: an embedding model for the embeddings
        endpoints (default: loaded here, its ONNX export kept in ``cache``)."""
        check_bind(host, allow_remote)
        self.model = model
        self.cache = cache
        self.key = daemon_key(model)
        self.files = DaemonFiles.of(cache, self.key)
        self.idle_s = idle_s
        self.token = token or secrets.token_urlsafe(32)
        self.write_state = write_state
        self.worker = GenerationWorker("hearth-daemon-generation")
        self._make_engine = make_engine
        self.embeddings = Embeddings(load_embedder or Embedder.loader(cache))
        self.loads = 0
        self.counts = {"requests": 0, "completed": 0, "cancelled": 0, "refused": 0}
        # The names (X-Hearth-Client) of the last CLIENTS_KEPT clients, most recent last:
        # every hook and CLI run is a new process, and a new name.
        self.clients: collections.OrderedDict[str, None] = collections.OrderedDict()
        self.refs: dict[str, Job] = {}  # running and queued jobs by their client's "ref"
        self._lock = threading.Lock()
        self._active = 0
        self._last = time.monotonic()
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self.started = time.time()
        server = _Server6 if ":" in host else _Server
        self.httpd = server((host.strip("[]"), port), _Handler)
        self.httpd.daemon = self
        self.port = int(self.httpd.server_address[1])
        # Clients on this machine reach a wildcard bind on loopback.
        shown = {"0.0.0.0": "127.0.0.1", "::": "[::1]", "[::]": "[::1]"}.get(
            host, f"[{host.strip('[]')}]" if ":" in host else host)
        self.url = f"http://{shown}:{self.port}/v1"
        if not is_loopback(host):
            log.warning("listening on %s beyond this machine (--allow-remote): every request "
                        "still needs the token, but travels in plain HTTP", host)
        self._threads: list[threading.Thread] = []
        self.log_fd = 2  # its stderr: the log file a client opened for it (rotate_log)
        self.metrics = Metrics(self)
        self.trace = Trace(self.files.trace)

    # ---- life cycle ----------------------------------------------------------

    def reload(self) -> None:
        """Load the model again when it is not loaded (its load failed: the file may be
        fixed since): once, however many clients ask at the same moment, and never
        under a loaded model, which the worker would free while other requests use it."""
        with self._lock:
            if self.worker.state in ("error", "empty"):
                self.load()  # the worker is "loading" before this returns

    def load(self) -> Job:
        def factory() -> Engine:
            self.loads += 1
            started = time.perf_counter()
            engine = self._make_engine(self.model, self.cache)
            log.info("model loaded in %.2f s: %s", time.perf_counter() - started,
                     engine.info.describe())
            return engine

        return self.worker.load(factory)

    def start(self) -> None:
        """Serve (threads) and load the model; the state file is written once listening."""
        serve = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                 name="hearth-daemon-http", daemon=True)
        serve.start()
        idle = threading.Thread(target=self._idle_watch, name="hearth-daemon-idle", daemon=True)
        idle.start()
        self._threads = [serve, idle]
        self.load()
        if self.write_state:
            write_private(self.files.state, json.dumps({
                "url": self.url, "token": self.token, "pid": os.getpid(), "key": self.key,
                "version": __version__, "model": model_config(self.model),
                "started": self.started}))
        log.info("hearth daemon %s (pid %d) listening on %s", self.key, os.getpid(), self.url)

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Until the daemon has stopped (idle, a signal, stop())."""
        return self._stopped.wait(timeout)

    def stop(self, reason: str = "stopped") -> None:
        if self._stopping.is_set():
            return
        log.info("hearth daemon %s: %s", self.key, reason)
        self._stopping.set()
        if self.write_state:
            state = read_state(self.files.state)
            if state is not None and state.pid == os.getpid() and state.token == self.token:
                with contextlib.suppress(OSError):
                    self.files.state.unlink()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.worker.shutdown()
        self._stopped.set()

    def _idle_watch(self) -> None:
        step = min(1.0, max(0.05, self.idle_s / 20))
        while not self._stopping.wait(step):
            rotate_log(self.files.log, self.log_fd)
            with self._lock:
                quiet = self._active == 0 and time.monotonic() - self._last >= self.idle_s
            if quiet and self.worker.running() is None:
                self.stop(f"no request for {self.idle_s:g} s; exiting")
                return

    def count(self, what: str) -> None:
        """One more of ``what`` in ``counts`` (from the request threads, together)."""
        with self._lock:
            self.counts[what] += 1

    def seen(self, client: str) -> None:
        with self._lock:
            self.clients[client[:64]] = None
            self.clients.move_to_end(client[:64])
            while len(self.clients) > CLIENTS_KEPT:
                self.clients.popitem(last=False)

    @contextlib.contextmanager
    def busy(self) -> Iterator[None]:
        with self._lock:
            self._active += 1
            self.counts["requests"] += 1
        try:
            yield
        finally:
            with self._lock:
                self._active -= 1
                self._last = time.monotonic()

    # ---- what the endpoints say ----------------------------------------------

    def info(self) -> dict[str, Any]:
        engine = self.worker.engine
        running = self.worker.running()
        with self._lock:
            counts, clients = dict(self.counts), list(self.clients)
        out: dict[str, Any] = {
            "hearth": __version__, "pid": os.getpid(), "key": self.key, "state": self.worker.state,
            "error": self.worker.error, "loads": self.loads, "idleS": self.idle_s,
            "model": dataclasses.asdict(engine.info) if engine is not None else None,
            "settings": model_config(self.model), "queue": self.worker.pending(),
            "running": ({"kind": running.kind, "priority": int(running.priority)}
                        if running is not None and running.load is None else None),
            "counts": counts, "clients": clients,
            "embedders": self.embeddings.names(), "embeddingLoads": self.embeddings.loads,
            "uptimeS": round(time.time() - self.started, 3)}
        return out


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = False
    daemon: Daemon


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Gone(Exception):
    """The client closed its connection."""


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = f"hearth-daemon/{__version__}"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        log.debug("%s " + format, self.address_string(), *args)

    # ---- plumbing ------------------------------------------------------------

    @property
    def daemon(self) -> Daemon:
        return self.server.daemon

    def _send_json(self, status: int, data: Any) -> None:
        raw = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _error(self, status: int, message: str, kind: str = "invalid_request_error") -> None:
        self._send_json(status, {"error": {"message": message, "type": kind}})

    def _authorized(self) -> bool:
        given = self.headers.get("Authorization", "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(
                token.strip().encode(), self.daemon.token.encode()):
            client = self.headers.get("X-Hearth-Client")
            if client:
                self.daemon.seen(client)
            return True
        self.daemon.count("refused")
        self.daemon.metrics.refused.inc()
        log.warning("refused %s %s: %s", self.command, self.path,
                    "no token" if not given else "wrong token")
        # The body of a client without the token is not read (it could send any amount):
        # a small one is drained so that the client reads the answer, not a reset, and
        # the connection closes after the answer.
        self.close_connection = True
        length = self.headers.get("Content-Length", "")
        if length.isdigit() and int(length) <= REFUSED_DRAIN_MAX:
            with contextlib.suppress(OSError):
                self.rfile.read(int(length))
        self._error(401, "this is Hearth's model daemon: send the token from its state file "
                    "as 'Authorization: Bearer TOKEN'", "authentication_error")
        return False

    def _body(self) -> dict[str, Any]:
        length = (self.headers.get("Content-Length") or "0").strip()
        if not length.isdigit() or int(length) > MAX_BODY:
            # The body stays unread: its bytes must not be taken for the next request.
            self.close_connection = True
            raise ValueError(f"the request body is larger than {MAX_BODY >> 20} MiB"
                             if length.isdigit() else f"Content-Length {length!r}")
        raw = self.rfile.read(int(length)) if int(length) else b""
        if not raw:
            return {}
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise ValueError("the request body must be a JSON object")
        return data

    def _client_gone(self) -> bool:
        """Whether the client closed the connection (readable with nothing to read)."""
        sock = self.connection
        try:
            readable, _, _ = select.select([sock], [], [], 0)
            if not readable:
                return False
            return sock.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    # ---- routes --------------------------------------------------------------

    def _refuse_when_stopping(self) -> bool:
        """A kept-alive connection outlives the listening socket: answer 503 once stopping."""
        if not self.daemon.stopping:
            return False
        self.close_connection = True
        self._error(503, "the daemon is stopping", "server_error")
        return True

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self._refuse_when_stopping() or not self._authorized():
            return
        with self.daemon.busy():
            path = self.path.split("?", 1)[0].rstrip("/")
            if path == "/hearth/info":
                self._send_json(200, self.daemon.info())
            elif path == "/v1/models":
                engine = self.daemon.worker.engine
                name = engine.info.name if engine is not None else "loading"
                meta = {"n_ctx": engine.info.context_length,
                        "n_ctx_train": engine.info.trained_context_length} if engine else {}
                self._send_json(200, {"object": "list", "data": [
                    {"id": name, "object": "model", "owned_by": "hearth", "meta": meta}]})
            elif path == "/health":
                self._send_json(200, {"status": self.daemon.worker.state})
            elif path == "/metrics":
                raw, content_type = self.daemon.metrics.exposition()
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)
            else:
                self._error(404, f"no such endpoint: GET {path}")

    def do_POST(self) -> None:  # noqa: N802
        if self._refuse_when_stopping() or not self._authorized():
            return
        with self.daemon.busy():
            path = self.path.split("?", 1)[0].rstrip("/")
            try:
                body = self._body()
            except (ValueError, UnicodeDecodeError) as exc:
                self._error(400, f"bad request: {exc}")
                return
            except RecursionError:
                self._error(400, "bad request: the JSON is nested too deep")
                return
            if path == "/v1/completions":
                self._completions(body)
            elif path == "/extras/tokenize/count":
                self._count(body)
            elif path in ("/v1/embeddings", "/hearth/embedder"):
                self._embeddings(body, describe=path == "/hearth/embedder")
            elif path == "/hearth/enough":
                # A client stopped reading a job because it had all it needed: the job
                # stops at its next token and is done, not cancelled, when it leaves.
                job = self.daemon.refs.get(str(body.get("ref")))
                if job is not None:
                    job.enough()
                self._send_json(200, {"found": job is not None})
            elif path == "/hearth/reload":
                self.daemon.reload()
                self._send_json(200, {"state": self.daemon.worker.state})
            elif path == "/v1/chat/completions":
                self._error(404, "this daemon takes text prompts at /v1/completions (Hearth "
                            "renders chat templates itself: GET /hearth/info gives the model's)")
            else:
                self._error(404, f"no such endpoint: POST {path}")

    def _other_model(self, asked: Any) -> str | None:
        """Why a request naming a model is not answered: another tool on the machine
        asking for "gpt-4o" must not get this model's text as if it were that one's
        (as vLLM and Ollama answer). No name (Hearth's own clients), or the loaded
        model's name or file name: served."""
        if asked is None or asked == "":
            return None
        engine = self.daemon.worker.engine
        if engine is None:
            return None  # loading: the job waits for the model and the answer says which
        info = engine.info
        if isinstance(asked, str) and asked in (info.name, Path(info.path).name,
                                                Path(info.path).stem):
            return None
        return (f"the model {str(asked)[:80]!r} is not served here: this daemon serves "
                f"{info.name!r} (GET /v1/models)")

    def _count(self, body: dict[str, Any]) -> None:
        engine = self.daemon.worker.engine
        text = body.get("input", body.get("content", ""))
        if engine is None:
            self._error(503, f"no model: {self.daemon.worker.error or 'loading'}", "server_error")
        elif not isinstance(text, str):
            self._error(400, "input must be a string")
        else:
            self._send_json(200, {"count": engine.count_tokens(text)})

    def _embeddings(self, body: dict[str, Any], *, describe: bool) -> None:
        daemon = self.daemon
        received = time.perf_counter()
        try:
            if describe:
                self._send_json(200, daemon.embeddings.describe(body.get("model"),
                                                                body.get("backend")))
                return
            texts, encoding = parse_input(body)
            try:
                priority = parse_priority(body.get("priority"))
            except ValueError as exc:
                raise EmbeddingRequestError(str(exc)) from None
            if priority > Priority.USER and not self._users_first():
                return
            name, vectors, counts = daemon.embeddings.embed(body.get("model"), texts,
                                                            body.get("backend"))
        except EmbeddingRequestError as exc:
            self._error(400, str(exc))
            return
        except EmbeddingUnavailable as exc:
            self._error(503, str(exc), "server_error")
            return
        except Exception as exc:  # noqa: BLE001 - the daemon stays up for the others
            log.exception("embeddings")
            daemon.metrics.record("embeddings", "failed", time.perf_counter() - received,
                                  None, None, 0, 0)
            self._error(500, f"embedding failed: {exc}", "server_error")
            return
        daemon.metrics.record("embeddings", "completed", time.perf_counter() - received,
                              None, None, sum(counts), 0)
        self._send_json(200, answer(name, vectors, counts, encoding))

    def _users_first(self) -> bool:
        """A background embedding (an index's) waits, up to USERS_FIRST_MAX_S, while a
        generation a user waits for runs or is queued: on these cores the two would
        share the time. False when the client left meanwhile."""
        worker, deadline = self.daemon.worker, time.monotonic() + USERS_FIRST_MAX_S

        def user_waits() -> bool:
            job = worker.running()
            return (job is not None and job.load is None and job.priority <= Priority.USER) \
                or worker.completion_waiting()

        while user_waits() and time.monotonic() < deadline:
            if self._client_gone() or self.daemon.stopping:
                return False
            time.sleep(POLL_S)
        return True

    def _completions(self, body: dict[str, Any]) -> None:
        daemon = self.daemon
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
            prompt = prompt[0]
        if not isinstance(prompt, str) or not prompt:
            self._error(400, "prompt must be a string, not empty")
            return
        refused = self._other_model(body.get("model"))
        if refused:
            self._error(404, refused, "model_not_found")
            return
        try:
            sampling = sampling_from(body)
            stop = stops_from(body)
            priority = parse_priority(body.get("priority"))
        except ValueError as exc:
            self._error(400, str(exc))
            return
        grammar = body.get("grammar") if isinstance(body.get("grammar"), str) else None
        start = body.get("start") if isinstance(body.get("start"), str) else None
        if start:
            try:
                re.compile(start)
            except re.error as exc:
                self._error(400, f"start is not a regular expression: {exc}")
                return
        stream = body.get("stream", False) is True
        pieces: queue.Queue[str | None] = queue.Queue()
        kind = str(body.get("kind") or "request")[:40]
        received = time.perf_counter()
        job = daemon.worker.submit(kind, prompt, sampling,
                                   stop=stop, priority=priority, grammar=grammar or None,
                                   start=start or None, on_piece=pieces.put)
        # None once the job is done: the answer's end goes out at once, not at the next
        # poll (up to POLL_S later, on every request).
        job.future.add_done_callback(lambda _done: pieces.put(None))
        ref = body["ref"][:64] if isinstance(body.get("ref"), str) else None
        if ref:
            daemon.refs[ref] = job
        created = int(time.time())
        ident = f"cmpl-{daemon.key[:6]}-{job.id}"
        model = daemon.worker.engine.info.name if daemon.worker.engine else "hearth"
        try:
            if stream:
                self._stream(job, pieces, ident, created, model)
            else:
                self._single(job, pieces, ident, created, model)
        except _Gone:
            # (A finished job's answer just was not read; a running one told it had
            # enough ends at its next token, which may come after this poll.)
            if not job.future.done() and not (job.enough_event.is_set()
                                              and job.started_at is not None):
                job.cancel()
                log.info("job %d (%s): the client went away; cancelled", job.id,
                         priority.name)
        except (BrokenPipeError, ConnectionResetError, OSError):
            if not job.future.done():
                job.cancel()
                log.info("job %d: the connection broke; cancelled", job.id)
        finally:
            if ref:
                daemon.refs.pop(ref, None)
            if job.cancelled or job.enough_event.is_set():
                with contextlib.suppress(concurrent.futures.TimeoutError,
                                         concurrent.futures.CancelledError):
                    job.future.exception(timeout=ACCOUNT_WAIT_S)
            if job.cancelled:
                daemon.count("cancelled")
            elif job.future.done() and not job.future.cancelled() \
                    and job.future.exception() is None:
                daemon.count("completed")
            self._account(job, prompt, model, received)

    def _account(self, job: Job, prompt: str, model: str, received: float) -> None:
        """The job's metrics and its trace line (no prompt text: its sha256).
        ``received``: perf_counter() when its request came."""
        latency_s = time.perf_counter() - received
        daemon = self.daemon
        result = None
        error = None
        if job.future.done() and not job.future.cancelled():
            exc = job.future.exception()
            if exc is None:
                result = job.future.result()
            else:
                error = type(exc).__name__
        if job.cancelled or (result is not None and result.finish_reason == "cancelled"):
            outcome = "cancelled"
        elif result is not None:
            outcome = "completed"
        else:
            outcome = "failed"
        tokens_in = result.prompt_tokens if result is not None else 0
        tokens_out = result.completion_tokens if result is not None else 0
        # Before its (last) run began: the queue, and an earlier run that yielded.
        before_s = max(0.0, latency_s - result.total_s) if result is not None else None
        if job.first_piece_at is not None:  # the client's first token, in whichever run
            first_s: float | None = job.first_piece_at - received
        else:  # no text (a token of none, a stop at once)
            first_s = (before_s + result.first_token_s) if result is not None and before_s \
                is not None and result.completion_tokens else None
        # In the queue before it first ran (the wait a more urgent job should not have).
        queue_s = job.started_at - job.submitted_at if job.started_at is not None \
            else before_s
        try:
            daemon.metrics.record(job.kind, outcome, latency_s, queue_s, first_s,
                                  tokens_in, tokens_out + job.yielded_tokens)
        except Exception:  # noqa: BLE001 - metrics must never fail a job
            log.exception("metrics")
        record: dict[str, Any] = {
            "ts": round(time.time(), 3), "job": job.id, "task": job.kind,
            "priority": job.priority.name.lower(), "model": model,
            "prompt_sha256": prompt_hash(prompt), "prompt_chars": len(prompt),
            "tokens_in": tokens_in, "tokens_out": tokens_out, "outcome": outcome,
            "latency_s": round(latency_s, 4),
            "queue_s": round(queue_s, 4) if queue_s is not None else None,
            "first_token_s": round(first_s, 4) if first_s is not None else None,
            "generate_s": round(result.total_s, 4) if result is not None else None,
            "restarts": job.restarts, "tokens_yielded": job.yielded_tokens,
            "finish": result.finish_reason if result is not None else None,
            "grammar": job.grammar is not None}
        if error:
            record["error"] = error  # the type only: a message may quote the prompt
        daemon.trace.write(record)

    def _wait(self, job: Job, pieces: queue.Queue[str | None]) -> Iterator[str]:
        """The job's pieces as they come, until it is done; _Gone when the client leaves
        (looked at every POLL_S: while the job waits in the queue, and while its pieces
        come faster than that, which a request that does not stream never sends on)."""
        looked = time.monotonic()
        while True:
            try:
                piece: str | None = pieces.get(timeout=POLL_S)
            except queue.Empty:
                piece = None
            if piece is not None:
                yield piece
                if time.monotonic() - looked < POLL_S:
                    continue
                looked = time.monotonic()
                if self._client_gone() or self.daemon.stopping:
                    raise _Gone
                continue
            if job.future.done():
                while not pieces.empty():
                    left = pieces.get_nowait()
                    if left is not None:
                        yield left
                return
            if self._client_gone() or self.daemon.stopping:
                raise _Gone

    def _failure(self, job: Job) -> str | None:
        if job.future.cancelled():
            return "cancelled"
        exc = job.future.exception()
        return None if exc is None else (str(exc) or type(exc).__name__)

    def _single(self, job: Job, pieces: queue.Queue[str | None], ident: str, created: int,
                model: str) -> None:
        for _ in self._wait(job, pieces):
            pass
        failure = self._failure(job)
        if failure is not None:
            self._error(503 if "no model" in failure or "loading" in failure else 500,
                        failure, "server_error")
            return
        result = job.future.result()
        self._send_json(200, {
            "id": ident, "object": "text_completion", "created": created, "model": model,
            "choices": [{"index": 0, "text": result.text, "logprobs": None,
                         "finish_reason": "length" if result.finish_reason == "length"
                         else "stop"}],
            "usage": {"prompt_tokens": result.prompt_tokens,
                      "completion_tokens": result.completion_tokens,
                      "total_tokens": result.prompt_tokens + result.completion_tokens}})

    def _stream(self, job: Job, pieces: queue.Queue[str | None], ident: str, created: int,
                model: str) -> None:
        started = False

        def event(data: Any) -> None:
            nonlocal started
            if not started:
                started = True
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
            text = data if isinstance(data, str) else json.dumps(data)
            self.wfile.write(f"data: {text}\n\n".encode())
            self.wfile.flush()

        def chunk(text: str, finish: str | None) -> dict[str, Any]:
            return {"id": ident, "object": "text_completion", "created": created,
                    "model": model, "choices": [{"index": 0, "text": text, "logprobs": None,
                                                 "finish_reason": finish}]}

        for piece in self._wait(job, pieces):
            event(chunk(piece, None))
        failure = self._failure(job)
        if failure is not None:
            if not started:  # nothing streamed: a plain error the client reports as such
                self._error(503 if "no model" in failure else 500, failure, "server_error")
            else:
                event({"error": {"message": failure, "type": "server_error"}})
            return
        result = job.future.result()
        last = chunk("", "length" if result.finish_reason == "length" else "stop")
        last["usage"] = {"prompt_tokens": result.prompt_tokens,
                         "completion_tokens": result.completion_tokens,
                         "total_tokens": result.prompt_tokens + result.completion_tokens}
        event(last)
        event("[DONE]")


# ------------------------------------------------------------------ running it

def llama_engine(model: ModelSettings, cache: Path) -> Engine:
    from .engine.llama import LlamaEngine  # llama_cpp only in the daemon
    from .models import resolve_model_path

    return LlamaEngine(resolve_model_path(model, cache), model)


def serve(model: ModelSettings, cache: Path, *, idle_s: float,
          make_engine: EngineMaker | None = None, host: str = "127.0.0.1", port: int = 0,
          allow_remote: bool = False) -> int:
    """Run the daemon for ``model`` until it has been idle ``idle_s`` (or a signal).

    Exit status 0, also when a daemon for this model already runs (it says so).
    A ``host`` that is not loopback needs ``allow_remote`` (RemoteBindRefused)."""
    check_bind(host, allow_remote)
    files = DaemonFiles.of(cache, daemon_key(model))
    # A daemon that is stopping has removed its state file but holds the lock until its
    # generation and server have stopped: this one waits for it rather than leave the
    # client that started it with no daemon at all.
    deadline = time.monotonic() + STOPPING_WAIT_S
    while True:
        with file_lock(files.lock, blocking=False) as mine:
            if mine:
                return _serve_locked(model, cache, idle_s=idle_s, host=host, port=port,
                                     allow_remote=allow_remote, make_engine=make_engine)
            state = read_state(files.state)
            if (state is not None and pid_alive(state.pid)) or time.monotonic() > deadline:
                where = f" (pid {state.pid}, {state.url})" if state else (
                    f" (it holds {files.lock} and has not stopped within "
                    f"{STOPPING_WAIT_S:g} s)")
                log.info("a hearth daemon for this model already runs%s", where)
                return 0
        time.sleep(0.1)


def _serve_locked(model: ModelSettings, cache: Path, *, idle_s: float, host: str, port: int,
                  allow_remote: bool, make_engine: EngineMaker | None) -> int:
    import signal

    try:
        daemon = Daemon(model, cache, make_engine or llama_engine, idle_s=idle_s, host=host,
                        port=port, allow_remote=allow_remote)
    except (OSError, OverflowError) as exc:  # a port in use, or out of range
        print(f"hearth daemon: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        return 2

    def on_signal(signum: int, _frame: Any) -> None:
        threading.Thread(target=daemon.stop, args=(f"signal {signum}",), daemon=True).start()

    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(ValueError):  # not the main thread
            signal.signal(sig, on_signal)
    daemon.start()
    daemon.wait()
    return 0


__all__ = ["Daemon", "DaemonFiles", "DaemonState", "MODEL_FIELDS", "Metrics",
           "RemoteBindRefused", "Trace", "check_bind", "daemon_key", "is_loopback", "file_lock", "model_config", "model_settings", "parse_priority",
           "pid_alive", "prompt_hash", "read_state", "serve", "write_private"]
