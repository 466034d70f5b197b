"""Faults around a running server (issue 16), each with the real server process: kill -9
mid-index, mid-generation and mid-sandbox; a damaged, full or read-only cache folder;
`.git/index.lock`; hostile files. Each test checks four things: the user is told
clearly (window/logMessage, showMessage, progress or status), the other features
keep working (hearth.status, a docstring), nothing is lost (the workspace's files
are untouched, the index complete), and the next start is consistent.

Waits are bounded; nothing is asserted about timings.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcException

from lsp_helpers import HERE, REAL_SERVER, actions_at, open_doc, start, stop, wait_model

# The scripted server of fake_server.py, with two hooks a test can arm from outside:
# FAULT_PAUSE_INDEX_AT=N stops the index thread before it stores the N-th file and
# FAULT_GEN_STARTED=FILE is written when a generation starts; both write the
# server's pid to FAULT_MARK, so the test knows the moment to kill it.
LAUNCHER = f"""
import os, sys, time
from pathlib import Path
sys.path.insert(0, {str(HERE)!r})
import fake_server
from hearth_lsp.indexer import workspace
from hearth_lsp.server import logs
from hearth_lsp.server.lsp.app import create_server

mark = os.environ.get("FAULT_MARK")
pause_at = int(os.environ.get("FAULT_PAUSE_INDEX_AT", "0"))
if pause_at:
    store_parsed = workspace.WorkspaceIndex._store_parsed
    seen = [0]

    def paused(self, parsed, stats, *rest):
        seen[0] += 1
        if seen[0] == pause_at:
            Path(mark).write_text(str(os.getpid()))
            time.sleep(3600)
        return store_parsed(self, parsed, stats, *rest)

    workspace.WorkspaceIndex._store_parsed = paused


def factory(settings, cache):
    engine = fake_server.factory(settings, cache)
    generate = engine.generate

    def marked(*args, **kwargs):
        if mark and os.environ.get("FAULT_GEN_MARK"):
            Path(mark).write_text(str(os.getpid()))
        return generate(*args, **kwargs)

    engine.generate = marked
    return engine


if __name__ == "__main__":  # the parsing pool's processes import this file too
    logs.setup_stderr("debug")
    server = create_server(engine_factory=factory)
    server.start_io(stdin=sys.stdin.buffer, stdout=sys.stdout.buffer)
"""

PARSE_PRICE = 9  # `def parse_price` in the demo's inventory/pricing.py (0-based)
DOC = "Convert a price to cents.\n\nArgs:\n    text: the price, e.g. '€12.50'."
FORMAT_DOC = ("Format cents as a price.\n\nArgs:\n    cents: the amount in cents.\n"
              "    currency: the currency symbol.")


@pytest.fixture
def fault_server(tmp_path) -> list[str]:
    script = tmp_path / "fault_server.py"
    script.write_text(LAUNCHER)
    return [sys.executable, str(script)]


def index_env(cache: Path, **extra: str) -> dict[str, str]:
    return {"HEARTH_INDEX_ENABLED": "true", "HEARTH_INDEX_EMBEDDINGS": "false",
            "HEARTH_CACHE_DIR": str(cache), **extra}


def snapshot(root: Path) -> dict[str, str]:
    """Every file of the workspace (but .git) by content hash: nothing lost, nothing added."""
    return {p.relative_to(root).as_posix(): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and ".git" not in p.parts}


def descendants(pid: int) -> set[int]:
    """Processes under ``pid`` now (from /proc), so they can be watched after it dies."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    out: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.add(child)
            todo.append(child)
    return out


def alive(pids: set[int]) -> set[int]:
    """Those of ``pids`` still running (zombies count as gone)."""
    out = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            out.add(pid)
    return out


async def status(client) -> dict:
    return await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="hearth.status"))


async def wait_index(client, want=("ready",), timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        st = (await status(client))["index"]
        if st["state"] in want:
            return st
        assert time.monotonic() < deadline, f"index still {st}"
        await asyncio.sleep(0.05)


async def wait_file(path: Path, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while not path.exists() or not path.read_text():
        assert time.monotonic() < deadline, f"{path} never appeared"
        await asyncio.sleep(0.02)
    return path.read_text()


async def kill9(client) -> None:
    """SIGKILL the server process, as `kill -9` does, and let the client go."""
    server = client._server
    os.kill(server.pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while server.returncode is None:  # not server.wait(): that also waits for its pipes
        assert time.monotonic() < deadline, "the server outlived SIGKILL"
        await asyncio.sleep(0.05)
    assert server.returncode == -signal.SIGKILL
    await asyncio.wait_for(client.stop(), 30)


async def search(client, query: str, k: int = 5) -> list[dict]:
    return await client.workspace_execute_command_async(types.ExecuteCommandParams(
        command="hearth.search", arguments=[{"query": query, "k": k}]))


async def docstring_works(client, root: Path) -> None:
    """The docstring feature answers (the scripted model's first answer is DOC)."""
    uri = open_doc(client, root / "inventory" / "pricing.py")
    await client.workspace_execute_command_async(types.ExecuteCommandParams(
        command="hearth.generateDocstring", arguments=[{"uri": uri, "line": PARSE_PRICE}]))
    edit = client.applied_edits[-1].edit
    [change] = edit.document_changes
    assert "Convert a price to cents." in change.edits[0].new_text


def logged(client, *words: str) -> list[str]:
    return [m.message for m in client.log_messages if all(w in m.message for w in words)]


def store_counts(cache: Path, root: Path) -> tuple[list, dict[str, int]]:
    """(integrity_check rows, row counts) of the workspace's index file, read directly."""
    from hearth_lsp.indexer.workspace import index_dir

    db = sqlite3.connect(index_dir(cache, root) / "index.sqlite")
    try:
        check = db.execute("PRAGMA integrity_check").fetchall()
        counts = {t: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                  for t in ("files", "chunks")}
    finally:
        db.close()
    return check, counts


# ------------------------------------------------------------------ kill -9


@pytest.mark.slow
async def test_kill_9_mid_index_the_next_start_checks_and_completes(demo_repo, tmp_path,
                                                                     fault_server):
    for i in range(400):  # beyond a commit batch (200 files): some are stored, some not
        (demo_repo / "gen" / f"mod_{i}.py").parent.mkdir(exist_ok=True)
        (demo_repo / "gen" / f"mod_{i}.py").write_text(
            f"def handler_{i}(event):\n    return event + {i}\n")
    before = snapshot(demo_repo)
    cache, mark = tmp_path / "cache", tmp_path / "paused"
    client, _, _ = await start(fault_server, demo_repo, env=index_env(
        cache, FAULT_PAUSE_INDEX_AT="300", FAULT_MARK=str(mark)))
    pid = int(await wait_file(mark))
    assert pid == client._server.pid
    workers = descendants(pid)  # the parsing pool
    await kill9(client)
    deadline = time.monotonic() + 30
    while alive(workers):  # the pool's processes go with the server
        assert time.monotonic() < deadline, f"left running: {alive(workers)}"
        await asyncio.sleep(0.1)
    assert snapshot(demo_repo) == before
    # What the killed server left: an intact store holding some of the files.
    check, counts = store_counts(cache, demo_repo)
    assert check == [("ok",)] and 0 < counts["files"] < 406

    client, _, _ = await start(fault_server, demo_repo, env=index_env(cache))
    try:
        st = await wait_index(client)
        assert st["files"] == 406 and st["error"] is None
        # Told: the index was not closed, so it was checked in full.
        [notice] = logged(client, "was not closed", "checked it in full: intact")
        assert [n for n in st["notices"] if n in notice]
        assert (await search(client, "handler_399"))[0]["symbol"] == "handler_399"
        assert (await status(client))["model"] == "ready"
    finally:
        await stop(client)
    # A clean stop: the next start has nothing to check in full.
    client, _, _ = await start(fault_server, demo_repo, env=index_env(cache))
    try:
        assert (await wait_index(client))["files"] == 406
        assert not logged(client, "was not closed")
    finally:
        await stop(client)
    assert snapshot(demo_repo) == before


async def test_kill_9_mid_generation_loses_nothing_and_caches_nothing(demo_repo, tmp_path,
                                                                      fault_server):
    """Killed while the model writes a docstring: no edit reached the file, no partial
    answer reached the answer cache, and the next start answers the same request whole,
    from the model (not from a cache)."""
    before = snapshot(demo_repo)
    cache, mark = tmp_path / "cache", tmp_path / "generating"
    env = index_env(cache, HEARTH_CACHE_ENABLED="true", FAKE_ENGINE_RESPONSES=json.dumps([DOC]),
                    FAKE_ENGINE_DELAY="1", FAULT_GEN_MARK="1", FAULT_MARK=str(mark))
    client, _, _ = await start(fault_server, demo_repo, env=env)
    await wait_index(client)
    uri = open_doc(client, demo_repo / "inventory" / "pricing.py")
    pending = asyncio.ensure_future(client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="hearth.generateDocstring",
                                   arguments=[{"uri": uri, "line": PARSE_PRICE}])))
    await wait_file(mark)
    await kill9(client)
    with pytest.raises(Exception):  # noqa: B017 - the editor sees its request fail
        await asyncio.wait_for(pending, 30)
    assert client.applied_edits == []
    assert snapshot(demo_repo) == before
    results = sqlite3.connect(cache / "results.sqlite")
    try:
        assert results.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert results.execute("SELECT count(*) FROM results").fetchone() == (0,)
    finally:
        results.close()
    check, _ = store_counts(cache, demo_repo)
    assert check == [("ok",)]

    mark.unlink()
    env.update(FAKE_ENGINE_DELAY="0")
    client, _, _ = await start(fault_server, demo_repo, env=env)
    try:
        await wait_model(client)
        await docstring_works(client, demo_repo)
        assert mark.exists()  # the model answered: nothing was replayed
        assert not logged(client, "answered from the result cache")
        assert (await wait_index(client))["error"] is None
        assert logged(client, "was not closed", "intact")  # the index was checked
    finally:
        await stop(client)
    assert snapshot(demo_repo) == before


# A generated test that says it started (a file in the sandbox's copy) and sleeps.
SLEEPY_TESTS = ("apply_discount_slowly():\n    import time\n"
                "    open('started', 'w').close()\n    time.sleep(60)\n"
                "    assert apply_discount(1000, 25) == 750\n")


QUICK_TEST = "apply_discount_quarter():\n    assert apply_discount(1000, 25) == 750\n"


def sandbox_processes(tmp: Path) -> set[int]:
    """Running processes of generated-test runs under ``tmp`` (their environment names
    the sandbox folder): this test's, not another test's running alongside."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                environ = (entry / "environ").read_bytes()
            except OSError:
                continue
            if f"HEARTH_SANDBOX_DIR={tmp}/".encode() in environ and alive({int(entry.name)}):
                found.add(int(entry.name))
    return found


def path_without_bwrap(tmp_path: Path) -> str:
    """A PATH with everything /usr/bin and /bin have but bwrap: the sandbox's fallback."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for folder in ("/usr/local/bin", "/usr/bin", "/bin"):
        for tool in Path(folder).iterdir() if Path(folder).is_dir() else []:
            if tool.name != "bwrap" and not (bin_dir / tool.name).exists():
                (bin_dir / tool.name).symlink_to(tool)
    return str(bin_dir)


@pytest.mark.parametrize("walls", ["bwrap", "no bwrap"])
async def test_kill_9_mid_sandbox_leaves_no_process_and_no_folder(demo_repo, tmp_path,
                                                                   fault_server, walls):
    if walls == "bwrap" and subprocess.run(["bwrap", "--ro-bind", "/", "/", "--unshare-all",
                                            "--die-with-parent", "true"],
                                           capture_output=True).returncode != 0:
        pytest.skip("bwrap cannot make namespaces here")
    before = snapshot(demo_repo)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {"FAKE_ENGINE_RESPONSES": json.dumps([SLEEPY_TESTS]),
           "HEARTH_TESTS_PYTHON": sys.executable, "HEARTH_TESTS_TIMEOUT_S": "120",
           "TMPDIR": str(tmp)}
    if walls == "no bwrap":
        env["PATH"] = path_without_bwrap(tmp_path)
    client, _, _ = await start(fault_server, demo_repo, env=env)
    await wait_model(client)
    uri = open_doc(client, demo_repo / "inventory" / "pricing.py")
    pending = asyncio.ensure_future(client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="hearth.generateTests",
                                   arguments=[{"uri": uri, "line": 23}])))
    deadline = time.monotonic() + 60
    while not list(tmp.glob("hearth-tests-*/project/started")):
        assert time.monotonic() < deadline, "the generated test never ran"
        await asyncio.sleep(0.05)
    assert sandbox_processes(tmp)
    await kill9(client)
    with pytest.raises(Exception):  # noqa: B017 - the editor sees its request fail
        await asyncio.wait_for(pending, 30)
    assert snapshot(demo_repo) == before and client.applied_edits == []
    # The run goes with the server (its test would sleep for a minute).
    deadline = time.monotonic() + 8
    while sandbox_processes(tmp):
        if time.monotonic() > deadline:
            for pid in sandbox_processes(tmp):  # this test's own: do not leave them
                os.kill(pid, signal.SIGKILL)
            pytest.fail("the sandbox's processes outlived the killed server")
        await asyncio.sleep(0.1)
    # The next start: tests are generated again, and no sandbox folder (a copy of the
    # project) is left behind in the temporary folder.
    client, _, _ = await start(fault_server, demo_repo, env={
        **env, "FAKE_ENGINE_RESPONSES": json.dumps([QUICK_TEST])})
    try:
        await wait_model(client)
        uri = open_doc(client, demo_repo / "inventory" / "pricing.py")
        result = await client.workspace_execute_command_async(types.ExecuteCommandParams(
            command="hearth.generateTests", arguments=[{"uri": uri, "line": 23}]))
        assert [t["name"] for t in result["passing"]] == ["test_apply_discount_quarter"]
        leftovers = [p.name for p in tmp.iterdir() if p.name.startswith("hearth-tests-")]
        assert leftovers == [], f"left behind: {leftovers}"
    finally:
        await stop(client)
    assert snapshot(demo_repo) == before  # the edit went to the client, not the disk


# --------------------------------------------------------- damaged, full, read-only


async def test_a_damaged_store_at_start_is_rebuilt_with_a_notice(demo_repo, tmp_path,
                                                                 fault_server):
    before = snapshot(demo_repo)
    cache = tmp_path / "cache"
    env = index_env(cache, FAKE_ENGINE_RESPONSES=json.dumps([DOC]))
    client, _, _ = await start(fault_server, demo_repo, env=env)
    try:
        assert (await wait_index(client))["files"] == 6
    finally:
        await stop(client)
    from hearth_lsp.indexer.workspace import index_dir

    path = index_dir(cache, demo_repo) / "index.sqlite"
    with open(path, "r+b") as fh:  # a third of the file, from page 2 on
        fh.seek(4096)
        fh.write(os.urandom(path.stat().st_size // 3))
    client, _, _ = await start(fault_server, demo_repo, env=env)
    try:
        st = await wait_index(client)
        assert st["files"] == 6 and st["error"] is None
        [notice] = logged(client, "is damaged", "rebuilding it")
        assert str(path) in notice and [n for n in st["notices"] if n in notice]
        # The indexing progress opened with it.
        begins = [r for reports in client.progress_reports.values() for r in reports
                  if isinstance(r, types.WorkDoneProgressBegin)
                  and r.title == "Hearth: Indexing workspace"]
        assert "is damaged" in begins[0].message
        assert "parse_price" in [r["symbol"] for r in await search(client, "parse_price", 3)]
        await docstring_works(client, demo_repo)
    finally:
        await stop(client)
    check, counts = store_counts(cache, demo_repo)
    assert check == [("ok",)] and counts["files"] == 6
    client, _, _ = await start(fault_server, demo_repo, env=env)
    try:
        assert (await wait_index(client))["notices"] == []
    finally:
        await stop(client)
    assert snapshot(demo_repo) == before


def mount_tmpfs(path: Path, size: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("a small tmpfs (a full disk) needs root to mount")
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                   check=True)


def make_read_only(path: Path) -> None:
    """A read-only remount when root (root ignores permission bits), chmod otherwise."""
    if os.geteuid() == 0:
        subprocess.run(["mount", "--bind", str(path), str(path)], check=True)
        subprocess.run(["mount", "-o", "remount,bind,ro", str(path)], check=True)
    else:
        for p in [path, *path.rglob("*")]:
            p.chmod(0o555 if p.is_dir() else 0o444)


def undo_read_only(path: Path) -> None:
    if os.geteuid() == 0:
        subprocess.run(["umount", "-l", str(path)], check=False)
    else:
        for p in [path, *path.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)


GENERATED = 600  # files added to the demo's 6


async def test_a_full_disk_while_indexing_and_caching(demo_repo, tmp_path, fault_server):
    """The cache folder is a 2 MB tmpfs: the index outgrows it and the answer cache cannot
    write. Each says so once; search answers from what was indexed; docstrings work; with
    room, the next start completes the index."""
    for i in range(GENERATED):  # enough to outgrow 2 MB of index
        (demo_repo / "gen").mkdir(exist_ok=True)
        (demo_repo / "gen" / f"mod_{i}.py").write_text("".join(
            f"def handler_{i}_{j}(event, context):\n    return event * {j}\n\n\n"
            for j in range(12)))
    before = snapshot(demo_repo)
    cache = tmp_path / "small"
    mount_tmpfs(cache, "2m")
    try:
        env = index_env(cache, HEARTH_CACHE_ENABLED="true",
                        FAKE_ENGINE_RESPONSES=json.dumps([DOC]))
        client, _, _ = await start(fault_server, demo_repo, env=env)
        try:
            st = await wait_index(client, ("error",))
            assert "is full" in st["error"] and 0 < st["files"] < GENERATED + 6
            assert logged(client, "indexing stopped", "is full", "Reindex")
            found = await search(client, "handler_0_1")
            assert found[0]["symbol"] == "handler_0_1"
            filler = cache / "filler"  # whatever room is left: gone
            with open(filler, "wb") as fh, contextlib.suppress(OSError):
                while True:
                    fh.write(b"\0" * 65536)
                    fh.flush()
            await docstring_works(client, demo_repo)  # its answer cannot be cached
            [warning] = logged(client, "answer cache", "cannot be written")
            assert "the disk is full" in warning
            assert (await status(client))["model"] == "ready"
        finally:
            await stop(client)
        roomy = tmp_path / "roomy"
        subprocess.run(["cp", "-a", str(cache / "index"), str(roomy / "index")] if
                       roomy.mkdir() is None else [], check=True)
    finally:
        subprocess.run(["umount", "-l", str(cache)], check=False)
    client, _, _ = await start(fault_server, demo_repo, env=index_env(roomy))
    try:
        st = await wait_index(client)
        assert st["files"] == GENERATED + 6 and st["error"] is None
        last = f"handler_{GENERATED - 1}_11"
        assert (await search(client, last))[0]["symbol"] == last
    finally:
        await stop(client)
    check, _ = store_counts(roomy, demo_repo)
    assert check == [("ok",)]
    assert snapshot(demo_repo) == before


async def test_a_read_only_cache_folder(demo_repo, tmp_path, fault_server):
    """A cache folder that cannot be written (a read-only mount, a full quota). Before, the
    answer cache failed `initialize` with an internal error: no editor could start Hearth.
    Now: one warning each for the index and the answer cache, the index is searched as it
    is, answers cached before are replayed, new ones are generated (not kept)."""
    before = snapshot(demo_repo)
    cache = tmp_path / "cache"
    env = index_env(cache, HEARTH_CACHE_ENABLED="true",
                    FAKE_ENGINE_RESPONSES=json.dumps([DOC, DOC]))
    client, _, _ = await start(fault_server, demo_repo, env=env)
    try:
        await wait_index(client)
        await docstring_works(client, demo_repo)  # cached
    finally:
        await stop(client)
    make_read_only(cache)
    try:
        client, _, _ = await start(fault_server, demo_repo, env={
            **env, "FAKE_ENGINE_RESPONSES": json.dumps([FORMAT_DOC])})
        try:
            st = await wait_index(client, ("readonly",))
            assert st["files"] == 6
            [notice] = logged(client, "cannot be written", "searching the index read-only")
            assert str(cache) in notice
            assert "parse_price" in [r["symbol"] for r in await search(client, "parse_price", 3)]
            symbols = await client.workspace_symbol_async(
                types.WorkspaceSymbolParams(query="parse_price"))
            assert symbols[0].name == "parse_price"
            await docstring_works(client, demo_repo)  # replayed from the read-only cache
            assert logged(client, "answered from the result cache")
            uri = (demo_repo / "inventory" / "pricing.py").as_uri()
            await client.workspace_execute_command_async(types.ExecuteCommandParams(
                command="hearth.generateDocstring", arguments=[{"uri": uri, "line": 17}]))
            [change] = client.applied_edits[-1].edit.document_changes
            assert "Format cents as a price." in change.edits[0].new_text  # from the model
            assert len(logged(client, "answer cache", "cannot be written", "read-only")) == 1
            assert (await status(client))["model"] == "ready"
        finally:
            await stop(client)
    finally:
        undo_read_only(cache)
    client, _, _ = await start(fault_server, demo_repo, env=env)
    try:
        st = await wait_index(client)
        assert st["files"] == 6 and st["notices"] == []
    finally:
        await stop(client)
    assert snapshot(demo_repo) == before


# ------------------------------------------------------------------------- git


def lock_git_index(repo: Path) -> Path:
    """Stage a change, then leave `.git/index.lock` as a running (or crashed) git does."""
    path = repo / "inventory" / "pricing.py"
    path.write_text(path.read_text().replace("cents // 100", "abs(cents) // 100"))
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    lock = repo / ".git" / "index.lock"
    lock.write_bytes(b"another git's half-written index")
    return lock


COMMIT = "fix(pricing): keep the sign of prices"


async def test_a_git_index_lock_left_by_another_git(demo_repo, tmp_path, fault_server):
    """`.git/index.lock` (a git running, or one that crashed): indexing, saves and the
    commit message still work, and Hearth never takes, changes or removes the lock."""
    lock = lock_git_index(demo_repo)
    git_index = (demo_repo / ".git" / "index").read_bytes()
    before = snapshot(demo_repo)
    client, _, _ = await start(fault_server, demo_repo, env=index_env(
        tmp_path / "cache", FAKE_ENGINE_RESPONSES=json.dumps([COMMIT, DOC])))
    try:
        st = await wait_index(client)
        assert st["files"] == 6 and st["error"] is None
        result = await client.workspace_execute_command_async(types.ExecuteCommandParams(
            command="hearth.generateCommitMessage", arguments=[]))
        assert result["message"] == COMMIT and result["staged"] is True
        # A save re-indexes the file as usual.
        extra = demo_repo / "inventory" / "extra.py"
        extra.write_text("def shipping_fee(kg):\n    return kg * 2\n")
        client.text_document_did_save(types.DidSaveTextDocumentParams(
            text_document=types.TextDocumentIdentifier(uri=extra.as_uri())))
        deadline = time.monotonic() + 30
        while "shipping_fee" not in [r["symbol"] for r in await search(client, "shipping_fee")]:
            assert time.monotonic() < deadline, "the saved file was not indexed"
            await asyncio.sleep(0.1)
        await docstring_works(client, demo_repo)
    finally:
        await stop(client)
    assert lock.read_bytes() == b"another git's half-written index"
    assert (demo_repo / ".git" / "index").read_bytes() == git_index
    extra.unlink()
    assert snapshot(demo_repo) == before


async def test_a_git_index_lock_is_named_with_the_commit_message(demo_repo, tmp_path,
                                                                 fault_server):
    lock_git_index(demo_repo)
    client, _, _ = await start(fault_server, demo_repo, env={
        "FAKE_ENGINE_RESPONSES": json.dumps([COMMIT])})
    try:
        await wait_model(client)
        result = await client.workspace_execute_command_async(types.ExecuteCommandParams(
            command="hearth.generateCommitMessage", arguments=[]))
        assert result["message"] == COMMIT
        assert [n for n in result["notices"] if "index.lock" in n], result["notices"]
    finally:
        await stop(client)


# -------------------------------------------------------------------- hostile files


def hostile_files(root: Path) -> dict[str, bytes]:
    big = "".join(f"def f{n}(a, b):\n    return a * b + {n}\n\n\n" for n in range(150_000))
    minified = "var a=1;" + ";".join(f"function f{n}(x){{return x+{n}}}" for n in range(45_000))
    files = {
        "big.py": big.encode()[: 5 << 20],  # 5 MB
        "nul.py": b"def ok(a):\n    return a\n\x00\x00\x00def after_nul(b):\n    return b\n",
        "latin1.py": "def caf\xe9(prix):\n    return '\xe9t\xe9'\n".encode("latin-1")
                     + b"\xff\xfe\xc3(\n",  # invalid UTF-8
        "bundle.js": minified.encode()[: 1 << 20],  # 1 MB, one line, not named .min.js
    }
    for name, data in files.items():
        (root / "hostile").mkdir(exist_ok=True)
        (root / "hostile" / name).write_bytes(data)
    return files


async def test_hostile_files_on_disk_and_in_the_editor(demo_repo, tmp_path, fault_server):
    """A 5 MB file, NUL bytes, invalid UTF-8 and a 1 MB single-line minified file, on
    disk (indexed or skipped, with the reason counted) and opened, edited and saved in
    the editor: each request answers, the huge ones say once why they get no actions,
    the other features keep working and the files are not touched."""
    files = hostile_files(demo_repo)
    before = snapshot(demo_repo)
    cache = tmp_path / "cache"
    # Every answer is DOC: reviews on save (on by default) take answers too.
    env = index_env(cache, FAKE_ENGINE_DEFAULT=DOC)
    client, _, _ = await start(fault_server, demo_repo, env=env)
    try:
        st = await wait_index(client)
        assert st["files"] == 7  # the demo's 6 and latin1.py (decoded with replacements)
        assert logged(client, "skipped: 2 too large, 1 binary")  # 5 MB and 1 MB; NUL bytes
        for name, data in files.items():
            path = demo_repo / "hostile" / name
            text = data.decode("utf-8", "replace")  # what an editor shows and sends
            uri = open_doc(client, path, "javascript" if name.endswith(".js") else "python",
                           text=text)
            for line in (0, 1, text.count("\n") // 2):
                await asyncio.wait_for(actions_at(client, uri, line), 60)
            if len(text) > 1 << 19:
                reasons = [m.message for m in client.messages if f"no actions for {name}"
                           in m.message]
                assert len(reasons) == 1, reasons
            # An edit at the end of the longest line, then a save.
            last = text.split("\n")[-1] if not text.endswith("\n") else ""
            end = types.Position(line=text.count("\n"), character=len(last.encode(
                "utf-16-le")) // 2)
            client.text_document_did_change(types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
                content_changes=[types.TextDocumentContentChangePartial(
                    range=types.Range(start=end, end=end), text="\n")]))
            if len(data) < 1 << 19:  # saving the huge ones: see the next test
                client.text_document_did_save(types.DidSaveTextDocumentParams(
                    text_document=types.TextDocumentIdentifier(uri=uri)))
            # The server keeps answering (a bound for a hang, not a timing).
            assert (await asyncio.wait_for(status(client), 60))["model"] == "ready"
        # The other features: symbols, search, a docstring.
        symbols = await client.workspace_symbol_async(types.WorkspaceSymbolParams(
            query="after_nul"))
        assert symbols == []  # a file with NUL bytes is binary: not indexed
        assert "caf" in (await search(client, "prix", 1))[0]["symbol"]
        await docstring_works(client, demo_repo)
        assert (await wait_index(client))["files"] == 7
    finally:
        await stop(client)
    assert not [m for m in client.log_messages if "Traceback" in m.message
                or m.type == types.MessageType.Error]
    assert snapshot(demo_repo) == before
    client, _, _ = await start(fault_server, demo_repo, env=env)
    try:
        st = await wait_index(client)
        assert st["files"] == 7 and st["notices"] == []
    finally:
        await stop(client)


async def test_saving_a_huge_or_minified_file_keeps_the_server_answering(
        demo_repo, tmp_path, fault_server):
    files = hostile_files(demo_repo)
    client, _, _ = await start(fault_server, demo_repo, env={"FAKE_ENGINE_DEFAULT": DOC})
    try:
        await wait_model(client)
        for name in ("bundle.js", "big.py"):
            uri = open_doc(client, demo_repo / "hostile" / name,
                           "javascript" if name.endswith(".js") else "python",
                           text=files[name].decode())
            client.text_document_did_save(types.DidSaveTextDocumentParams(
                text_document=types.TextDocumentIdentifier(uri=uri)))
        # One message each, like code actions, rather than a parse on the event loop.
        deadline = time.monotonic() + 10
        while len([m for m in client.messages if "no review on save" in m.message]) < 2:
            assert time.monotonic() < deadline, "no word on why these are not reviewed"
            await asyncio.sleep(0.05)
        assert (await asyncio.wait_for(status(client), 60))["model"] == "ready"
        await docstring_works(client, demo_repo)
    finally:
        # Not a clean stop: a server still parsing would answer `shutdown` a minute later.
        await kill9(client)


# ------------------------------------------------------------------- the model file


@pytest.fixture
def model_copy(tmp_path, smollm2_path) -> Path:
    copy = tmp_path / "models" / "smollm2.gguf"
    copy.parent.mkdir()
    shutil.copyfile(smollm2_path, copy)
    return copy


@pytest.mark.slow
@pytest.mark.parametrize("change", ["truncated", "replaced"])
async def test_the_model_file_changes_under_the_loaded_model(demo_repo, model_copy, change):
    client, _, _ = await start(REAL_SERVER, demo_repo, env={
        "HEARTH_MODEL_PATH": str(model_copy)})
    try:
        assert (await wait_model(client))["model"] == "ready"
        uri = open_doc(client, demo_repo / "inventory" / "pricing.py")
        if change == "truncated":  # in place: the pages llama.cpp mapped are gone
            with open(model_copy, "r+b") as fh:
                fh.truncate(model_copy.stat().st_size // 2)
        else:  # a new file under the name (a download, an update)
            new = model_copy.with_suffix(".new")
            new.write_bytes(b"GGUF" + os.urandom(1 << 20))
            os.replace(new, model_copy)
        with contextlib.suppress(JsonRpcException):  # a tiny model may write nothing good
            await asyncio.wait_for(client.workspace_execute_command_async(
                types.ExecuteCommandParams(command="hearth.generateDocstring",
                                           arguments=[{"uri": uri, "line": PARSE_PRICE}])),
                                   240)
        assert client._server.returncode is None, \
            f"the server died (exit {client._server.returncode})"
        assert (await status(client))["model"] == "ready"  # the loaded copy answers
        [warning] = logged(client, str(model_copy), "changed on disk")
        assert "Reload" in warning
    finally:
        if client._server.returncode is None:
            await stop(client)
        else:
            await client.stop()
    # The next start: a clear error naming the file; the rest of the server works.
    client, _, _ = await start(REAL_SERVER, demo_repo, env={
        "HEARTH_MODEL_PATH": str(model_copy)})
    try:
        st = await wait_model(client)
        assert st["model"] == "error" and str(model_copy) in st["error"]
        assert [m for m in client.messages if str(model_copy) in m.message]
    finally:
        await stop(client)
