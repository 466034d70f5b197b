"""How a generated test run is walled off from the machine, and what is not.

With bubblewrap (`bwrap`, Debian's `bubblewrap`) the run sees only the system's
read-only directories, the interpreter's own prefix (read-only) and the sandbox
folder (the project copy, writable); no home, no other files, no network, its
own PID namespace, and it dies with Hearth. Processes are capped by a pids
cgroup (when Hearth runs as root, where RLIMIT_NPROC does not apply) or by
RLIMIT_NPROC (otherwise); memory, CPU time and file size by rlimits.

Without bwrap, the run gets a network namespace where `unshare -rn` works and
the limits, and ``missing`` names what is not isolated, for the user to see.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

MAX_PROCESSES = 256  # a test suite needs a handful; a fork bomb needs more
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
SYSTEM_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime",
                "/etc/nsswitch.conf", "/etc/passwd", "/etc/group", "/etc/hosts",
                "/etc/alternatives")


@dataclass
class Isolation:
    prefix: list[str]  # the command runs as prefix + [python, ...]
    python: str = ""  # the interpreter to run (inside the walls: not a launcher)
    limits: list[Callable[[], None]] = field(default_factory=list)  # run in the child
    missing: list[str] = field(default_factory=list)  # what is not isolated, in words
    cleanups: list[Callable[[], None]] = field(default_factory=list)
    kills: list[Callable[[], None]] = field(default_factory=list)  # kill every process left

    def preexec(self) -> None:
        for limit in self.limits:
            limit()

    def kill(self) -> None:
        for kill in self.kills:
            with contextlib.suppress(OSError):
                kill()

    def close(self) -> None:
        for cleanup in self.cleanups:
            with contextlib.suppress(OSError):
                cleanup()


@functools.cache
def bwrap() -> str | None:
    """bwrap, if it can make namespaces here (containers may forbid it)."""
    exe = shutil.which("bwrap")
    if exe is None or sys.platform != "linux":
        return None
    try:
        probe = subprocess.run([exe, "--ro-bind", "/", "/", "--unshare-all", "--die-with-parent",
                                "true"], capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return exe if probe.returncode == 0 else None


@functools.cache
def _die_with_parent_hook() -> Callable[[], None]:
    """For the child, before exec: killed when Hearth goes (as bwrap's --die-with-parent).
    unshare's --kill-child then takes the namespace with it; from inside it, Hearth is
    out of sight (the test plugin's watch for its parent sees pid 0). The C function is
    looked up here, in the parent: the child only calls it."""
    import ctypes

    try:
        prctl = ctypes.CDLL(None).prctl
    except (OSError, AttributeError):
        return lambda: None

    def die_with_parent() -> None:
        prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    return die_with_parent


@functools.cache
def _unshare_net() -> list[str]:
    """`unshare -rn` when unprivileged user namespaces work here (Linux), with a PID
    namespace of its own where it can have one: the run's first process is its PID 1,
    and when it ends every process it left (a double fork, `setsid`) ends with it."""
    exe = shutil.which("unshare")
    if exe is None or sys.platform != "linux":
        return []
    for prefix in ([exe, "-rn", "--pid", "--fork", "--kill-child", "--mount-proc"],
                   [exe, "-rn"]):
        try:
            if subprocess.run([*prefix, "true"], capture_output=True,
                              timeout=5).returncode == 0:
                return prefix
        except (OSError, subprocess.SubprocessError):
            return []
    return []


@functools.cache
def interpreter(python: str) -> tuple[str, tuple[str, ...]]:
    """The interpreter's own executable (not a launcher such as a pyenv shim, which
    could not run inside the walls) and what it needs to see: its prefixes, its
    executable's folder and the package folders on its sys.path.

    Not any other folder of its sys.path: the server's PYTHONPATH, or an editable
    install's `.pth` naming a project root (the workspace's own, with its `.env` and
    keys, which the copy leaves out), would show them to the tests. Never a folder
    holding the home folder."""
    exe = shutil.which(python) or python
    # (the run sets its own PYTHONPATH: the server's is not the tests')
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    try:
        out = subprocess.run([exe, "-c", "import json, sys; print(json.dumps([sys.executable, "
                              "sys.prefix, sys.base_prefix, sys.exec_prefix, "
                              "sys.base_exec_prefix, *sys.path]))"], capture_output=True,
                             text=True, timeout=30, check=True, env=env).stdout
        found = json.loads(out)
        real, prefixes, paths = (found[0] or exe), found[1:5], [p for p in found[5:] if p]
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        real, prefixes, paths = exe, [], []
    prefixes = [os.path.realpath(p) for p in [*prefixes, os.path.dirname(real),
                                              os.path.dirname(os.path.realpath(real))]
                if p and os.path.isabs(p)]
    packages = [p for p in map(os.path.realpath, paths) if os.path.isabs(p) and (
        os.path.basename(p) in ("site-packages", "dist-packages")
        or any(p.startswith(prefix + os.sep) for prefix in prefixes))]
    home = os.path.realpath(os.path.expanduser("~"))
    roots: list[str] = []
    for path in sorted({*prefixes, *packages}, key=len):
        if os.path.isdir(path) and not any(path == r or path.startswith(r + os.sep)
                                           for r in roots) and path != "/" and not (
                home == path or home.startswith(path + os.sep)):
            roots.append(path)
    return real, tuple(roots)


def _bwrap_prefix(exe: str, python: str, sandbox: Path, cwd: Path) -> list[str]:
    cmd = [exe, "--die-with-parent", "--new-session", "--unshare-all"]
    if os.geteuid() == 0:  # do not run generated code as root, even in a namespace
        cmd += ["--unshare-user", "--uid", "65534", "--gid", "65534"]
    # A fresh /tmp first: binds below may live under the real one.
    cmd += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    for path in SYSTEM_DIRS:
        cmd += ["--ro-bind-try", path, path]
    for path in SYSTEM_FILES:
        cmd += ["--ro-bind-try", path, path]
    for path in interpreter(python)[1]:
        cmd += ["--ro-bind", path, path]
    cmd += ["--bind", str(sandbox), str(sandbox), "--chdir", str(cwd)]
    return cmd


Hooks = tuple[Callable[[], None], Callable[[], None], Callable[[], None]]  # join, remove, kill


def owner_gone(name: str) -> bool:
    """Whether the Hearth whose pid is the second part of ``name`` (``hearth-x-PID-...``)
    has gone: what it left (a project copy, a cgroup) is nobody's."""
    pid = name.split("-")[2] if name.count("-") >= 3 else ""
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # another user's Hearth, alive
        pass
    return False


def _pids_cgroup(limit: int) -> Hooks | None:
    """A pids cgroup capping the run's processes (root, writable cgroupfs), else None."""
    for base in (Path("/sys/fs/cgroup/pids"), Path("/sys/fs/cgroup")):
        if (base / "cgroup.procs").exists() and os.access(base, os.W_OK):
            for old in base.glob("hearth-sandbox-*-*"):  # a killed Hearth's, empty by now
                if owner_gone(old.name):
                    with contextlib.suppress(OSError):
                        old.rmdir()
            made = _make_group(base / f"hearth-sandbox-{os.getpid()}-{uuid.uuid4().hex[:8]}",
                               limit)
            if made is not None:
                return made
    return None


def _make_group(group: Path, limit: int) -> Hooks | None:
    try:
        group.mkdir()
        (group / "pids.max").write_text(str(limit))
    except OSError:
        with contextlib.suppress(OSError):
            group.rmdir()
        return None
    procs = str(group / "cgroup.procs")

    def join() -> None:  # in the child, before exec
        with open(procs, "w") as fh:
            fh.write(str(os.getpid()))

    def remove() -> None:  # the killed processes may take a moment to go
        for _ in range(50):
            try:
                group.rmdir()
                return
            except OSError:
                time.sleep(0.05)

    def kill() -> None:  # every process in the group, whatever its session or namespace
        if (group / "cgroup.kill").exists():
            (group / "cgroup.kill").write_text("1")
            return
        for _ in range(20):  # cgroup v1: no cgroup.kill; new forks are capped by pids.max
            pids = [int(p) for p in Path(procs).read_text().split()]
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.01)

    return join, remove, kill


def _nproc_limit(limit: int) -> Callable[[], None]:
    """RLIMIT_NPROC counts all of the user's processes: allow ``limit`` more."""
    uid = os.getuid()
    mine = 0
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    if entry.stat().st_uid == uid:
                        mine += 1

    def apply() -> None:
        import resource

        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NPROC, (mine + limit, mine + limit))

    return apply


def isolation(python: str, sandbox: Path, cwd: Path, *, use_bwrap: bool = True) -> Isolation:
    """The walls for one run of ``python`` in ``sandbox``, starting in ``cwd``."""
    exe = bwrap() if use_bwrap else None
    if exe is not None:
        iso = Isolation(_bwrap_prefix(exe, python, sandbox, cwd), interpreter(python)[0])
    else:
        net = _unshare_net()
        # In a PID namespace (and its own /proc) Hearth's process is out of sight, and
        # what a test leaves running ends with the run.
        iso = Isolation(net, python, limits=[_die_with_parent_hook()] if "--pid" in net else [],
                        missing=[
            "the file system (bubblewrap is not installed or cannot run here): tests run as "
            "you and can read, change and delete your files" + (
                "" if "--pid" in net else ", read Hearth's environment and leave processes "
                "running")])
        if not net:
            iso.missing.append("the network (no network namespace here)")
    if os.geteuid() == 0:
        cgroup = _pids_cgroup(MAX_PROCESSES)
        if cgroup is not None:
            iso.limits.append(cgroup[0])
            iso.cleanups.append(cgroup[1])
            iso.kills.append(cgroup[2])
        else:
            iso.missing.append("the number of processes (no writable pids cgroup)")
    else:
        iso.limits.append(_nproc_limit(MAX_PROCESSES))
    return iso
