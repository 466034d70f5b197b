"""Run generated tests where they cannot hurt: a copy of the project, walls, limits.

Generated code is untrusted. Each run gets:
- a temporary copy of the project's files (secrets by name left out), with HOME
  and TMPDIR pointing inside it;
- walls (isolation.py): under bubblewrap only the system's read-only folders,
  the interpreter's prefix and the copy are visible, with no network, its own
  PID namespace and a process cap; without bwrap, network and PID namespaces where the
  OS allows it and a warning naming what is not isolated;
- memory, CPU-time and file-size limits (setrlimit);
- a per-test time limit (SIGALRM; a test stuck where it cannot reach, in C code,
  has its process killed and the other tests run again without it) and a timeout
  for the whole run; on timeout or
  cancel the process group is killed (and with it the namespace);
- an audit hook that refuses sockets, subprocesses and writes outside the copy
  (defence in depth, not a boundary: ctypes goes around it);
- results written test by test by a small pytest plugin, so a test that kills
  the interpreter (`os._exit`) still leaves the others' results.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import textwrap
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ....indexer.secrets import is_secret_file
from ..runner import Refusal
from .isolation import isolation, owner_gone

TEST_TIMEOUT_S = 10
RUN_TIMEOUT_S = 120
# A test still running this long after its time limit is stuck where SIGALRM cannot
# reach (C code): its process is killed.
STUCK_GRACE_S = 3
# The end of a run's output kept for messages (the start when it is short).
OUTPUT_TAIL = 16 << 10
# Most of a run's results file read (a record is ~2 KB; a test may write its own).
MAX_RESULTS_BYTES = 8 << 20
MEMORY_BYTES = 2 << 30
MAX_COPY_BYTES = 200 << 20

# Loaded into the test process through `-p hearth_sandbox_<random>` (a name no file of
# the repository can take in advance).
PLUGIN = textwrap.dedent('''
    import json, os, signal, sys, time

    _SANDBOX = os.path.realpath(os.environ["HEARTH_SANDBOX_DIR"])
    _RESULTS = os.environ["HEARTH_SANDBOX_RESULTS"]
    _LIMIT = int(os.environ.get("HEARTH_SANDBOX_TEST_TIMEOUT", "10"))
    _WRITE = ("w", "a", "x", "+")
    _PY = os.path.realpath(sys.prefix)

    def _inside(path):
        try:
            real = os.path.realpath(os.fsdecode(path))
        except (TypeError, ValueError):
            return True  # a file descriptor
        return real == _SANDBOX or real.startswith(_SANDBOX + os.sep) or real == os.devnull

    def _audit(event, args):
        if event == "open":
            path, mode = args[0], args[1]
            flags = args[2] if len(args) > 2 else 0
            writing = (isinstance(mode, str) and any(c in mode for c in _WRITE)) or (
                isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
            if writing and path is not None and not _inside(path):
                raise PermissionError(f"hearth sandbox: writing outside the sandbox: {path}")
        elif event in ("os.remove", "os.rmdir", "os.mkdir", "shutil.rmtree", "os.chmod",
                       "os.chown", "os.chflags", "os.truncate", "os.utime", "os.setxattr",
                       "os.removexattr"):
            if args and not _inside(args[0]):
                raise PermissionError(f"hearth sandbox: {event} outside the sandbox: {args[0]}")
        elif event in ("os.rename", "os.link", "os.symlink"):
            # (source, destination): a file moved or linked out of the copy, or a file
            # outside hard-linked into it (then written through); a symbolic link's
            # target is checked when it is opened, by its real path.
            for path in args[1:2] if event == "os.symlink" else args[:2]:
                if not _inside(path):
                    raise PermissionError(f"hearth sandbox: {event} outside the sandbox: {path}")
        elif event == "os.kill" and args[0] not in (0, os.getpid()) or (
                event == "os.killpg" and args[0] != os.getpgrp()):
            raise PermissionError("hearth sandbox: signals to other processes are not allowed")
        elif event in ("socket.connect", "socket.bind", "socket.getaddrinfo",
                       "socket.sendto"):
            raise PermissionError("hearth sandbox: no network for generated tests")
        elif event in ("subprocess.Popen", "os.system", "os.exec", "os.posix_spawn",
                       "os.spawn", "os.fork", "os.forkpty"):
            raise PermissionError(f"hearth sandbox: {event} is not allowed in generated tests")

    def _alarm(signum, frame):
        raise TimeoutError(f"hearth sandbox: the test ran longer than {_LIMIT} s")

    _OUT = None

    def _orphaned(parent):
        # Hearth was killed (kill -9 leaves no one to stop this run): the whole run goes.
        import time
        while os.getppid() == parent:
            time.sleep(0.2)
        os.killpg(os.getpgrp(), signal.SIGKILL)

    def pytest_configure(config):
        global _OUT
        _OUT = open(_RESULTS, "a", encoding="utf-8")  # opened before the hook forbids it
        import threading
        threading.Thread(target=_orphaned, args=(os.getppid(),), daemon=True).start()
        sys.addaudithook(_audit)

    def pytest_runtest_setup(item):
        # Hearth watches for a start with no end: a test SIGALRM cannot interrupt.
        _OUT.write(json.dumps({"test": item.nodeid.split("::", 1)[-1], "when": "start",
                               "at": time.time()}) + "\\n")
        _OUT.flush()
        signal.signal(signal.SIGALRM, _alarm)
        signal.alarm(_LIMIT)

    def pytest_runtest_teardown(item):
        signal.alarm(0)

    def pytest_runtest_logreport(report):
        if report.when == "call" or report.outcome != "passed":
            # The test's id within its file: a class's test_a is not the file's test_a.
            _OUT.write(json.dumps({"test": report.nodeid.split("::", 1)[-1], "when": report.when,
                                   "outcome": report.outcome,
                                   "message": report.longreprtext[-2000:]}) + "\\n")
            _OUT.flush()
''')


@dataclass
class TestOutcome:
    name: str
    passed: bool
    message: str = ""


@dataclass
class RunResult:
    outcomes: dict[str, TestOutcome] = field(default_factory=dict)
    error: str = ""  # the run itself failed (collection error, timeout, crash)
    output: str = ""
    warnings: list[str] = field(default_factory=list)  # walls the run went without


class SandboxError(Refusal):
    pass


def copy_project(root: Path, dest: Path, files: list[str]) -> None:
    total = 0
    for rel in files:
        if is_secret_file(rel):  # tests have no business reading credentials
            continue
        src = root / rel
        try:
            size = src.stat().st_size
        except OSError:
            continue
        total += size
        if total > MAX_COPY_BYTES:
            raise SandboxError(f"the project is larger than {MAX_COPY_BYTES >> 20} MB to copy "
                               "for a test run")
        out = dest / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, out)


def _limits() -> None:  # runs in the child before exec
    import resource

    os.setsid()
    for limit, value in ((resource.RLIMIT_AS, MEMORY_BYTES), (resource.RLIMIT_CPU, RUN_TIMEOUT_S),
                         (resource.RLIMIT_FSIZE, 64 << 20)):
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(limit, (value, value))


def _remove_orphaned_copies() -> None:
    """Project copies left by a Hearth that was killed (`hearth-tests-<pid>-*` whose
    process is gone): each is a whole copy of someone's project."""
    for folder in Path(tempfile.gettempdir()).glob("hearth-tests-*-*"):
        if owner_gone(folder.name):
            shutil.rmtree(folder, ignore_errors=True)


def _descendants(root: int) -> list[int]:
    """The pids below ``root`` in the process tree (children first found, deepest last)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as fh:
                    stat = fh.read()
            except OSError:
                continue
            # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
            fields = stat[stat.rfind(b")") + 2:].split()
            if len(fields) > 1:
                children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def run_tests(root: Path, files: list[str], test_rel: str, test_source: str, *,
              python: str, overrides: dict[str, str] | None = None,
              test_timeout: int = TEST_TIMEOUT_S, run_timeout: int = RUN_TIMEOUT_S,
              on_cancel: Callable[[Callable[[], None]], Callable[[], None]] | None = None,
              require_isolation: bool = False, use_bwrap: bool = True,
              select: list[str] | None = None) -> RunResult:
    """Copy the project, write ``test_source`` at ``test_rel`` in the copy, run pytest there.

    ``select`` names the file's tests to run (top-level functions); the file's other
    tests are not run: a slow or hanging one of the user's would cost the new ones
    their time, and the outcomes are the new ones' only.

    ``overrides`` maps relative paths to the text to use instead of the disk's
    (the editor's unsaved buffer of the code under test). ``on_cancel`` registers
    a callback that kills the run's process group (a task's CancelToken.on_cancel)
    and returns its unregister. ``require_isolation``: refuse to run rather than run
    with a wall missing (``RunResult.warnings`` names the missing ones otherwise).
    """
    if shutil.which(python) is None:
        raise SandboxError(f"cannot run {python}: not found (set tests.python)")
    _remove_orphaned_copies()
    with tempfile.TemporaryDirectory(prefix=f"hearth-tests-{os.getpid()}-") as tmp:
        work = Path(tmp) / "project"
        work.mkdir()
        copy_project(root, work, files)
        for rel, text in (overrides or {}).items():
            (work / rel).parent.mkdir(parents=True, exist_ok=True)
            (work / rel).write_text(text, encoding="utf-8")
        target = work / test_rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(test_source, encoding="utf-8")
        plugin_dir = Path(tmp) / "plugin"
        plugin_dir.mkdir()
        plugin = f"hearth_sandbox_{uuid.uuid4().hex}"
        (plugin_dir / f"{plugin}.py").write_text(PLUGIN)
        home = work / ".home"
        home.mkdir()
        paths = [str(plugin_dir), str(work)] + ([str(work / "src")] if (work / "src").is_dir()
                                                else [])
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
               "TMPDIR": str(work / ".tmp"), "PYTHONPATH": os.pathsep.join(paths),
               "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0",
               # `-m pytest` puts the working folder (the copy) first on sys.path: a
               # file of the repository's would be imported before the plugin or pytest.
               "PYTHONSAFEPATH": "1",
               "HEARTH_SANDBOX_DIR": str(work),
               "HEARTH_SANDBOX_TEST_TIMEOUT": str(test_timeout), "LANG": "C.UTF-8"}
        (work / ".tmp").mkdir()
        base = ["-p", plugin, "-q", "-p", "no:cacheprovider", "--no-header",
                "-rN", "--rootdir", str(work), "-o", "addopts="]
        result = RunResult()
        deadline = time.monotonic() + run_timeout
        pending = list(select) if select else None
        for n in itertools.count():
            targets = [f"{test_rel}::{name}" for name in pending] if pending else [test_rel]
            ran = _run_once(python, Path(tmp), work, env, base + targets,
                            Path(tmp) / f"results-{n}.jsonl",  # each run's records afresh
                            deadline=deadline, stuck_after=test_timeout + STUCK_GRACE_S,
                            on_cancel=on_cancel, require_isolation=require_isolation,
                            use_bwrap=use_bwrap)
            result.output = (result.output + ran.output)[-4000:]
            result.warnings = ran.warnings
            _read_outcomes(ran.records, result.outcomes)
            if ran.stuck is not None:
                # SIGALRM reaches only Python code: a test inside C code (a sum over
                # range(10**11)) held the whole run until its timeout, and the tests
                # after it were lost. It fails; the others run again without it.
                name = ran.stuck.split("[", 1)[0]
                result.outcomes[name] = TestOutcome(name, False, (
                    f"hearth sandbox: the test ran longer than {test_timeout} s inside code "
                    "the time limit cannot interrupt, and was stopped"))
                pending = [n for n in pending or [] if n not in result.outcomes]
                if pending and time.monotonic() < deadline:
                    continue
            break
        output = result.output
        if ran.timed_out:
            result.error = f"the test run took longer than {run_timeout} s and was stopped"
        elif "No module named pytest" in output:
            raise SandboxError(f"pytest is not installed for {python}; install it there or set "
                               "tests.python")
        elif ran.returncode not in (0, 1) and not result.outcomes:
            result.error = f"the test run failed (exit {ran.returncode}): {output[-800:]}"
        return result


@dataclass
class _Ran:
    output: str
    returncode: int | None
    warnings: list[str]
    timed_out: bool = False
    stuck: str | None = None  # the test that outlived its limit inside C code
    records: list[dict] = field(default_factory=list)  # the plugin's, well-formed ones


def _run_once(python: str, sandbox: Path, work: Path, env: dict[str, str], args: list[str],
              results: Path, *, deadline: float, stuck_after: float,
              on_cancel: Callable[[Callable[[], None]], Callable[[], None]] | None,
              require_isolation: bool, use_bwrap: bool) -> _Ran:
    """One pytest process in its walls, until it ends, the deadline passes or a test
    is stuck for ``stuck_after`` seconds (then the process group is killed).

    The run's output and its results file are read through files this process opened
    before the run: the sandbox folder is the tests' to write, and a test that put a
    link in their place (to ~/.ssh/id_rsa, /proc/self/environ, /dev/zero) would have
    had Hearth read it into the message shown to the user and the model."""
    results.unlink(missing_ok=True)  # (a link planted by an earlier run's test)
    try:
        records_fd = os.open(results, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                             | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise SandboxError(f"cannot create the test run's results file: {exc}") from exc
    env = {**env, "HEARTH_SANDBOX_RESULTS": str(results)}
    try:
        return _run_walled(python, sandbox, work, env, args, records_fd, deadline=deadline,
                           stuck_after=stuck_after, on_cancel=on_cancel,
                           require_isolation=require_isolation, use_bwrap=use_bwrap)
    finally:
        os.close(records_fd)


def _run_walled(python: str, sandbox: Path, work: Path, env: dict[str, str], args: list[str],
                records_fd: int, *, deadline: float, stuck_after: float,
                on_cancel: Callable[[Callable[[], None]], Callable[[], None]] | None,
                require_isolation: bool, use_bwrap: bool) -> _Ran:
    walls = isolation(python, sandbox, work, use_bwrap=use_bwrap)
    if walls.missing and require_isolation:
        walls.close()
        raise SandboxError("generated tests were not run: the sandbox cannot isolate "
                           + "; ".join(walls.missing) + " (tests.requireIsolation)")
    cmd = [*walls.prefix, walls.python, "-m", "pytest", *args]

    def limits() -> None:  # in the child, before exec
        _limits()
        walls.preexec()

    # The output goes to a file, of which the end is read: through a pipe, a test that
    # printed 100 MB and failed put 100 MB into this process (pytest reports what a
    # failing test printed). The child's file-size limit bounds it.
    # Unnamed: nothing in the sandbox can put a link in its place. (Closed below.)
    sink = tempfile.TemporaryFile()  # noqa: SIM115
    try:
        # stdin is not inherited: the server's is the editor's LSP channel (pytest
        # points fd 0 at /dev/null for tests, but not for the interpreter's start).
        proc = subprocess.Popen(cmd, cwd=work, env=env, stdin=subprocess.DEVNULL,
                                stdout=sink, stderr=subprocess.STDOUT, preexec_fn=limits)
    except OSError as exc:
        sink.close()
        walls.close()
        raise SandboxError(f"cannot run {python}: {exc}") from exc

    def kill() -> None:
        # bwrap's sandboxed command runs in a session of its own (--new-session) and
        # is killed with the namespace when bwrap dies (--die-with-parent), but that
        # hand-over can be lost under load: kill the process tree as well, and the
        # pids cgroup's every member where there is one.
        for pid in [*_descendants(proc.pid), proc.pid]:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        walls.kill()

    unregister = on_cancel(kill) if on_cancel is not None else (lambda: None)
    ran = _Ran("", None, list(walls.missing))
    try:
        while True:
            try:
                proc.wait(timeout=max(0.0, min(1.0, deadline - time.monotonic())))
                break
            except subprocess.TimeoutExpired:
                ran.timed_out = time.monotonic() >= deadline
                ran.stuck = None if ran.timed_out else _stuck(records_fd, stuck_after)
                if not (ran.timed_out or ran.stuck):
                    continue
            kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
            break
    finally:
        if proc.poll() is None:  # left early (an error while waiting): the run goes too
            kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
        unregister()
        walls.kill()  # whatever a test left running (the cgroup must be empty to go)
        walls.close()
        with sink:
            sink.seek(max(0, sink.seek(0, os.SEEK_END) - OUTPUT_TAIL))
            tail = sink.read()
    ran.output, ran.returncode = tail.decode("utf-8", "replace"), proc.returncode
    ran.records = _records(records_fd)
    return ran


def _records(fd: int) -> list[dict]:
    """The well-formed records of the results file open at ``fd``, read from its start
    (at most MAX_RESULTS_BYTES). A test can write to it: anything else is skipped."""
    raw = os.pread(fd, min(os.fstat(fd).st_size, MAX_RESULTS_BYTES), 0)
    out = []
    for line in raw.decode("utf-8", "replace").splitlines():
        with contextlib.suppress(ValueError, RecursionError):
            item = json.loads(line)
            if isinstance(item, dict) and isinstance(item.get("test"), str) and (
                    item.get("when") == "start" and isinstance(item.get("at"), (int, float))
                    or item.get("when") in ("setup", "call", "teardown")
                    and isinstance(item.get("outcome"), str)
                    and isinstance(item.get("message"), str)):
                out.append(item)
    return out


def _stuck(fd: int, after: float) -> str | None:
    """The test that started more than ``after`` seconds ago and has not ended."""
    records = _records(fd)
    last = records[-1] if records else None
    if last is not None and last["when"] == "start" and time.time() - last["at"] > after:
        return str(last["test"])
    return None


def _read_outcomes(records: list[dict], outcomes: dict[str, TestOutcome]) -> None:
    for item in records:
        if item["when"] == "start":
            continue
        name = item["test"].split("[", 1)[0]  # each case of a parametrized test
        passed = item["outcome"] == "passed"
        old = outcomes.get(name)
        if old is None or old.passed:  # a failing phase wins
            outcomes[name] = TestOutcome(name, passed, item["message"])
