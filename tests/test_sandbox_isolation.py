"""The sandbox's walls, tested with what goes around Python's audit hook (ctypes):
a generated test cannot read files outside the copy, reach the network, fork
without bound or write a huge file. Needs bubblewrap (`make setup` installs it;
CI requires it)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from hearth_lsp.server.tasks.testgen import isolation
from hearth_lsp.server.tasks.testgen.sandbox import SandboxError, run_tests

if isolation.bwrap() is None:
    if os.environ.get("CI"):
        raise RuntimeError("bubblewrap is missing or cannot run: `apt-get install bubblewrap`")
    pytest.skip("bubblewrap is not installed or cannot run here", allow_module_level=True)

CODE = "def double(x):\n    return x * 2\n"
FILES = ["pkg/__init__.py", "pkg/calc.py"]


@pytest.fixture
def project(tmp_path):
    root = tmp_path / "proj"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "calc.py").write_text(CODE)
    (root / ".env").write_text("TOKEN=canary-in-the-project-env\n")
    return root


def run(project, tests: str, **kwargs):
    source = "import ctypes, os\nfrom pkg.calc import double\n\n" + textwrap.dedent(tests)
    return run_tests(project, [*FILES, ".env"], "tests/test_calc.py", source,
                     python=sys.executable, **kwargs)


def outcome(result, name):
    found = result.outcomes.get(name)
    assert found is not None, result.output
    return found


def test_files_outside_the_copy_are_invisible(project, tmp_path):
    secret = tmp_path / "outside" / "id_rsa"
    secret.parent.mkdir()
    secret.write_text("canary-private-key")
    result = run(project, f"""
        def test_read_outside():
            assert open({str(secret)!r}).read() == "canary-private-key"

        def test_read_the_real_project():
            assert open({str(project / "pkg" / "calc.py")!r}).read()

        def test_env_file_not_copied():
            assert os.path.exists(".env")

        def test_the_copy_works():
            assert double(2) == 4
    """)
    assert not outcome(result, "test_read_outside").passed
    assert not outcome(result, "test_read_the_real_project").passed  # only its copy
    assert not outcome(result, "test_env_file_not_copied").passed
    assert outcome(result, "test_the_copy_works").passed
    assert result.warnings == []


def test_only_the_interpreters_own_folders_are_shown_not_its_other_sys_path(
        project, tmp_path, monkeypatch):
    """An editable install's `.pth` names the real project (its .env, its keys, which the
    copy leaves out); the server's PYTHONPATH may name any folder of the user's: each
    folder of the interpreter's sys.path was shown to the tests, read-only."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "notes.txt").write_text("canary-on-the-servers-pythonpath")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    [site] = venv.glob("lib/python3*/site-packages")
    (site / "_proj_editable.pth").write_text(f"{project}\n")
    (site / "pytest_from_here.pth").write_text(  # this venv's pytest, for the run
        "".join(f"{p}\n" for p in sys.path if p.endswith("site-packages")))
    monkeypatch.setenv("PYTHONPATH", str(elsewhere))
    isolation.interpreter.cache_clear()
    try:
        result = run_tests(project, [*FILES, ".env"], "tests/test_calc.py", textwrap.dedent(f"""
            from pkg.calc import double

            def test_read_the_real_env():
                assert open({str(project / ".env")!r}).read()

            def test_read_the_pythonpath():
                assert open({str(elsewhere / "notes.txt")!r}).read()

            def test_the_copy_works():
                assert double(2) == 4
        """), python=str(venv / "bin" / "python"))
    finally:
        isolation.interpreter.cache_clear()
    assert not outcome(result, "test_read_the_real_env").passed
    assert not outcome(result, "test_read_the_pythonpath").passed
    assert outcome(result, "test_the_copy_works").passed


def test_no_network_even_through_ctypes(project):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    accepted: list[object] = []
    threading.Thread(target=lambda: accepted.append(server.accept()), daemon=True).start()
    try:
        result = run(project, f"""
            def test_connect():
                libc = ctypes.CDLL(None)
                fd = libc.socket(2, 1, 0)
                addr = (ctypes.c_ubyte * 16)(2, 0, {port >> 8}, {port & 255}, 127, 0, 0, 1)
                assert libc.connect(fd, addr, 16) == 0
        """)
        assert not outcome(result, "test_connect").passed
        assert accepted == []
    finally:
        server.close()


def test_a_fork_bomb_is_capped(project):
    result = run(project, """
        def test_fork_many():
            libc = ctypes.CDLL(None)
            children = 0
            for _ in range(1000):
                pid = libc.fork()
                if pid == 0:
                    libc.sleep(5)
                    libc._exit(0)
                if pid < 0:
                    break
                children += 1
            assert children == 1000
    """)
    assert not outcome(result, "test_fork_many").passed


def test_a_huge_write_fails(project):
    result = run(project, """
        def test_write_a_gigabyte():
            with open("big.bin", "wb") as fh:
                for _ in range(1024):
                    fh.write(b"x" * (1 << 20))
    """)
    assert not outcome(result, "test_write_a_gigabyte").passed


def test_without_bwrap_the_missing_walls_are_named_or_refused(project):
    result = run(project, """
        def test_double():
            assert double(2) == 4
    """, use_bwrap=False)
    assert outcome(result, "test_double").passed
    assert any("file system" in w for w in result.warnings)
    with pytest.raises(SandboxError, match="cannot isolate the file system"):
        run(project, "def test_x():\n    assert True\n", use_bwrap=False,
            require_isolation=True)


def test_without_bwrap_the_run_has_a_pid_namespace_where_the_os_allows_one(project):
    """What a test left running (a double fork, `setsid`) outlived the run, and a test
    could read Hearth's own environment from /proc: in a PID namespace of its own, the
    run's first process is PID 1 (all the rest end with it) and Hearth is out of sight."""
    probe = ["unshare", "-rn", "--pid", "--fork", "--kill-child", "--mount-proc", "true"]
    if shutil.which("unshare") is None or subprocess.run(probe).returncode != 0:
        pytest.skip("no unprivileged PID namespace here")
    result = run(project, f"""
        def test_pid_one():
            assert os.getpid() == 1

        def test_hearth_out_of_sight():
            assert not os.path.exists("/proc/{os.getpid()}/environ")
    """, use_bwrap=False)
    assert outcome(result, "test_pid_one").passed
    assert outcome(result, "test_hearth_out_of_sight").passed
    assert not any("leave processes running" in w for w in result.warnings)


def test_the_cgroups_a_killed_hearth_left_are_removed(project):
    base = Path("/sys/fs/cgroup/pids")
    if os.geteuid() != 0 or not os.access(base, os.W_OK):
        pytest.skip("needs root and a writable pids cgroup")
    gone = subprocess.Popen(["true"])
    gone.wait()  # its pid is free: the Hearth that made the group was killed
    left = base / f"hearth-sandbox-{gone.pid}-0123abcd"
    left.mkdir()
    mine = base / f"hearth-sandbox-{os.getpid()}-0123abcd"  # this process is alive
    mine.mkdir()
    try:
        run(project, "def test_x():\n    assert True\n")
        assert not left.exists() and mine.exists()
    finally:
        for group in (left, mine):
            if group.exists():
                group.rmdir()
