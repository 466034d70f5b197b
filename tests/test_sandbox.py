"""The test sandbox: generated tests cannot hang, write outside, reach the network or
take the run down with them."""

from __future__ import annotations

import os
import sys
import textwrap
import threading
import time

import pytest

from hearth_lsp.server.tasks.testgen.sandbox import SandboxError, run_tests

CODE = "def double(x):\n    return x * 2\n"


@pytest.fixture
def project(tmp_path):
    root = tmp_path / "proj"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "calc.py").write_text(CODE)
    return root


FILES = ["pkg/__init__.py", "pkg/calc.py"]


def run(project, tests: str, **kwargs):
    source = "from pkg.calc import double\n\n" + textwrap.dedent(tests)
    return run_tests(project, FILES, "tests/test_calc.py", source, python=sys.executable,
                     **kwargs)


def test_passing_and_failing_tests_are_told_apart(project):
    result = run(project, """
        def test_double():
            assert double(2) == 4

        def test_wrong():
            assert double(2) == 5
    """)
    assert result.outcomes["test_double"].passed
    assert not result.outcomes["test_wrong"].passed
    assert "assert 4 == 5" in result.outcomes["test_wrong"].message


def test_the_code_under_test_can_be_the_unsaved_buffer(project):
    result = run(project, "def test_triple():\n    assert double(2) == 6\n",
                 overrides={"pkg/calc.py": "def double(x):\n    return x * 3\n"})
    assert result.outcomes["test_triple"].passed
    assert (project / "pkg" / "calc.py").read_text() == CODE


def test_a_test_that_sleeps_forever_is_stopped(project):
    result = run(project, """
        import time

        def test_sleeps():
            time.sleep(3600)

        def test_fine():
            assert double(1) == 2
    """, test_timeout=2)
    assert not result.outcomes["test_sleeps"].passed
    assert "longer than 2 s" in result.outcomes["test_sleeps"].message
    assert result.outcomes["test_fine"].passed


def test_writing_outside_the_copy_is_refused(project, tmp_path):
    outside = tmp_path / "outside.txt"
    result = run(project, f"""
        def test_writes_outside():
            open({str(outside)!r}, "w").write("x")

        def test_writes_inside(tmp_path):
            (tmp_path / "ok.txt").write_text("fine")
            open("relative.txt", "w").write("lands in the copy")
    """)
    assert not outside.exists()
    assert "writing outside the sandbox" in result.outcomes["test_writes_outside"].message
    assert result.outcomes["test_writes_inside"].passed
    assert not (project / "relative.txt").exists()


def test_no_network_and_no_subprocesses(project):
    result = run(project, """
        import socket, subprocess

        def test_socket():
            socket.create_connection(("127.0.0.1", 9), timeout=1)

        def test_subprocess():
            subprocess.run(["true"])
    """)
    assert "no network" in result.outcomes["test_socket"].message
    assert "not allowed" in result.outcomes["test_subprocess"].message


def test_a_test_that_exits_the_interpreter_keeps_the_earlier_results(project):
    result = run(project, """
        import os

        def test_first():
            assert double(3) == 6

        def test_exits():
            os._exit(0)
    """)
    assert result.outcomes["test_first"].passed
    assert "test_exits" not in result.outcomes or not result.outcomes["test_exits"].passed


def test_a_python_without_pytest_is_a_clear_error(project, tmp_path):
    with pytest.raises(SandboxError, match="cannot run|pytest is not installed"):
        run_tests(project, FILES, "tests/test_x.py", "", python=str(tmp_path / "no-python"))


def _alive_named(name: str) -> list[int]:
    """Live (not zombie) processes whose name is ``name``."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except (OSError, ValueError):
            continue
        comm, state = stat[stat.find("(") + 1:stat.rfind(")")], stat[stat.rfind(")") + 2]
        if comm == name and state != "Z":
            found.append(int(entry))
    return found


def test_a_cancel_kills_a_process_that_left_the_session(project):
    # A generated test forks (through ctypes, around the audit hook) a child that
    # starts a session of its own and would outlive the run: killing the run's
    # process group alone misses it. The cancel must kill it too.
    name = f"orphan{os.getpid() % 100000}"
    callbacks = []

    def on_cancel(kill):
        callbacks.append(kill)
        return lambda: None

    def cancel_when_forked():
        deadline = time.monotonic() + 120
        while not _alive_named(name) and time.monotonic() < deadline:
            time.sleep(0.05)
        callbacks[0]()

    canceller = threading.Thread(target=cancel_when_forked, daemon=True)
    canceller.start()
    run(project, f"""
        import ctypes, time

        def test_leaves_a_child():
            libc = ctypes.CDLL(None)
            if libc.fork() == 0:
                libc.setsid()
                libc.prctl(15, b"{name}", 0, 0, 0)  # PR_SET_NAME
                libc.sleep(3600)
                libc._exit(0)
            time.sleep(3600)
    """, use_bwrap=False, test_timeout=3600, on_cancel=on_cancel)
    canceller.join()
    deadline = time.monotonic() + 10
    while (left := _alive_named(name)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left, f"the forked child outlived the cancel: {left}"



def test_without_bwrap_the_hook_stops_moves_links_forks_and_signals_out_of_the_copy(
        project, tmp_path):
    # No bubblewrap (macOS, a Linux without it): the audit hook is the wall for writes.
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim.txt"
    victim.write_text("mine")
    result = run(project, f"""
        import os

        def test_replace_a_file_outside():
            open("payload", "w").write("x")
            os.replace("payload", {str(victim)!r})

        def test_hard_link_a_file_outside_in():
            os.link({str(victim)!r}, "linked")

        def test_link_out():
            os.symlink("payload", {str(outside / "link")!r})

        def test_forkpty():
            pid, _ = os.forkpty()
            if pid == 0:
                os._exit(0)

        def test_signal_another_process():
            os.kill(os.getpid() + 1, 0)  # (its parent is out of sight in a PID namespace)
    """, use_bwrap=False)
    assert victim.read_text() == "mine" and [p.name for p in outside.iterdir()] == ["victim.txt"]
    assert len(result.outcomes) == 5
    for name, outcome in result.outcomes.items():
        assert not outcome.passed and "hearth sandbox" in outcome.message, name


def test_a_parametrized_test_is_one_test_that_passes_when_every_case_does(project):
    result = run(project, """
        import pytest

        @pytest.mark.parametrize("x, want", [(1, 2), (2, 4)])
        def test_double(x, want):
            assert double(x) == want

        @pytest.mark.parametrize("x, want", [(1, 2), (2, 5)])
        def test_one_case_wrong(x, want):
            assert double(x) == want
    """)
    assert set(result.outcomes) == {"test_double", "test_one_case_wrong"}
    assert result.outcomes["test_double"].passed
    assert not result.outcomes["test_one_case_wrong"].passed
    assert "assert 4 == 5" in result.outcomes["test_one_case_wrong"].message


def test_a_class_test_is_not_the_file_test_of_the_same_name(project):
    result = run(project, """
        class TestCalc:
            def test_double(self):
                assert double(2) == 5  # the user's known failure

        def test_double():
            assert double(2) == 4
    """)
    assert result.outcomes["test_double"].passed
    assert not result.outcomes["TestCalc::test_double"].passed


def test_only_the_selected_tests_run(project):
    result = run(project, """
        def test_theirs():
            assert double(2) == 5

        def test_new():
            assert double(2) == 4
    """, select=["test_new"])
    assert list(result.outcomes) == ["test_new"] and result.outcomes["test_new"].passed


def test_a_test_stuck_in_c_code_fails_alone_and_the_others_still_run(project):
    # SIGALRM is handled between Python bytecodes; a sum over a huge range never gets
    # back to one, so only the run's timeout used to stop it, losing the tests after.
    result = run(project, """
        def test_first():
            assert double(1) == 2

        def test_stuck():
            assert sum(range(10**13)) > 0

        def test_after():
            assert double(3) == 6
    """, select=["test_first", "test_stuck", "test_after"], test_timeout=1, run_timeout=90)
    assert not result.error
    assert result.outcomes["test_first"].passed and result.outcomes["test_after"].passed
    assert "inside code the time limit cannot interrupt" in result.outcomes["test_stuck"].message


def test_what_a_failing_test_prints_stays_out_of_the_servers_memory(project):
    # pytest reports a failing test's output; through a pipe, all of it came into
    # Hearth's process (100 MB printed: +190 MB here).
    import tracemalloc

    tracemalloc.start()
    try:
        result = run(project, """
            def test_loud():
                for _ in range(50):
                    print("x" * (1 << 20))
                assert double(2) == 5

            def test_after():
                assert double(3) == 6
        """)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert not result.outcomes["test_loud"].passed and result.outcomes["test_after"].passed
    assert peak < 8 << 20, f"{peak >> 20} MiB held while the tests ran"


def test_links_a_test_puts_in_place_of_the_runs_files_are_not_followed(project, tmp_path):
    """The sandbox folder is the tests' to write: Hearth read its output log and results
    file there by name, after the run, following a link a test had put in their place
    (to a key of the user's, /proc/self/environ) into the message shown to the user and
    the model."""
    secret = tmp_path / "id_ed25519"
    secret.write_text("-----CANARY-KEY-----\n" * 20)
    result = run(project, f"""
        import ctypes, glob, os, sys

        def test_plant():
            libc = ctypes.CDLL(None)
            folder = os.path.dirname(os.environ["HEARTH_SANDBOX_RESULTS"])
            for path in glob.glob(folder + "/*"):
                if os.path.isfile(path):
                    libc.unlink(path.encode())
                    libc.symlink({str(secret)!r}.encode(), path.encode())
            os._exit(3)
    """, select=["test_plant"])
    assert "test_plant" not in result.outcomes and "exit 3" in result.error
    assert "CANARY" not in result.output + result.error


def test_a_record_a_test_writes_that_is_not_the_plugins_is_skipped(project):
    # It raised out of the run (JSONDecodeError, KeyError), and while the run went on
    # (the stuck-test check reads the records) left its processes running.
    result = run(project, """
        import sys

        def test_scribble():
            out = next(m for n, m in sys.modules.items() if n.startswith("hearth_sandbox_"))._OUT
            out.write('not json\\n{}\\n[1]\\n{"test": "x", "when": "call"}\\n')
            out.flush()
            assert double(1) == 2

        def test_after():
            assert double(2) == 4
    """)
    assert result.outcomes["test_scribble"].passed and result.outcomes["test_after"].passed


def test_a_repository_file_cannot_take_the_plugins_place(project):
    # `python -m pytest` puts the copy first on sys.path, and the plugin had a fixed name:
    # a repository's hearth_sandbox_plugin.py was loaded instead, and reported anything.
    (project / "hearth_sandbox_plugin.py").write_text(
        "def pytest_runtest_logreport(report):\n    report.outcome = 'passed'\n")
    result = run_tests(project, [*FILES, "hearth_sandbox_plugin.py"], "tests/test_calc.py",
                       "from pkg.calc import double\n\n\ndef test_wrong():\n"
                       "    assert double(2) == 5\n", python=sys.executable)
    assert not result.outcomes["test_wrong"].passed
