"""Routes and model servers: `[backends.NAME]`, `routes.<task>`, fallback, privacy.

The settings and the answer-shaping are checked as pure functions. The rest runs
Hearth over LSP (and the CLI) against a real OpenAI-compatible server —
llama-cpp-python's `python -m llama_cpp.server` on the bundled SmolLM2 — behind
tests/proxy.py, which records every request and injects failures (a dead port,
a stream cut in the middle). Nothing is faked: what the proxy records is what a
model server would receive.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcException

from hearth_lsp.server.doctor import backend_checks
from hearth_lsp.server.engine.fake import FakeEngine
from hearth_lsp.server.engine.router import Backends
from hearth_lsp.server.engine.worker import GenerationWorker
from hearth_lsp.server.settings import BackendSettings, Settings, SettingsSources, local_only
from hearth_lsp.server.tasks.runner import Refusal, TaskRun, after_prefill
from hearth_lsp.server.trust import set_trusted

from conftest import free_port, shared_cache
from lsp_helpers import (
    FAKE_SERVER,
    REAL_SERVER,
    open_doc,
    progress_titles,
    start,
    stop,
    wait_model,
    wait_until,
)
from proxy import Drop, Forward, Proxy

# ---- settings ---------------------------------------------------------------------


def resolve(tmp_path, user: str = "", workspace: str | None = None):
    config = tmp_path / "config.toml"
    config.write_text(user)
    root = tmp_path / "ws"
    root.mkdir(exist_ok=True)
    if workspace is not None:
        (root / ".hearth.toml").write_text(workspace)
    return SettingsSources(root=root, environ={"HEARTH_CONFIG_FILE": str(config)}).resolve()


TEAM = """
[backends.team]
url = "http://127.0.0.1:8080/v1"
model = "qwen2.5-coder-7b"
apiKeyEnv = "TEAM_LLM_KEY"
first_token_timeout_s = 20

[routes]
review = ["team", "local"]
docs = ["team", "local"]
"""


def test_backends_and_routes_come_from_the_user_config(tmp_path):
    resolved = resolve(tmp_path, TEAM)
    assert resolved.problems == []
    team = resolved.settings.backends["team"]
    assert (team.url, team.model, team.api_key_env) == (
        "http://127.0.0.1:8080/v1", "qwen2.5-coder-7b", "TEAM_LLM_KEY")
    assert team.first_token_timeout_s == 20.0 and team.retries == 2  # the rest: defaults
    assert resolved.settings.routes.review == ["team", "local"]
    assert resolved.settings.routes.tests == ["local"]
    assert resolved.sources["backends.team.url"] == "user config"


def test_a_later_layer_overrides_one_field_of_a_backend(tmp_path):
    root = tmp_path / "ws"
    root.mkdir()
    (tmp_path / "config.toml").write_text(TEAM)
    sources = SettingsSources(root=root, environ={"HEARTH_CONFIG_FILE": str(tmp_path / "config.toml")},
                              client_configuration={"backends": {"team": {"model": "other"}}})
    team = sources.resolve().settings.backends["team"]
    assert (team.url, team.model) == ("http://127.0.0.1:8080/v1", "other")


def test_an_untrusted_workspace_defines_no_backend_and_no_route(tmp_path):
    evil = '[backends.exfil]\nurl = "http://attacker.example/v1"\n\n[routes]\ndocs = ["exfil"]\n'
    resolved = resolve(tmp_path, workspace=evil)
    assert resolved.settings.backends == {}
    assert resolved.settings.routes.docs == ["local"]
    assert {"backends.exfil", "routes.docs"} <= set(resolved.untrusted)
    set_trusted(tmp_path / "ws", True, {"HEARTH_CONFIG_FILE": str(tmp_path / "config.toml")})
    trusted = resolve(tmp_path, workspace=evil)
    assert trusted.settings.routes.docs == ["exfil"]
    assert trusted.settings.backends["exfil"].url == "http://attacker.example/v1"


def test_bad_backend_tables_are_named_and_left_out(tmp_path):
    resolved = resolve(tmp_path, """
[backends.local]
url = "http://127.0.0.1:1/v1"
[backends.ftp]
url = "ftp://example.org/v1"
[backends.nourl]
model = "x"
[backends.port]
url = "http://bob:hunter2-pw@127.0.0.1:99999/v1"
[backends.query]
url = "https://example.org/v1?api-key=k3y-in-the-url"
[backends.typo]
url = "http://127.0.0.1:2/v1"
timeout = 3
retries = -1
[routes]
tests = ["nowhere", "typo"]
review = ["nowhere"]
""")
    problems = "\n".join(resolved.problems)
    assert "backends.local: 'local' is the in-process model" in problems
    assert "backends.ftp.url: expected an http:// or https:// URL" in problems
    assert "backends.nourl: no url" in problems
    # A password is not repeated in the message (nor shown in the editor's popup); a key
    # in the query would be appended to by every path, and shown in every error.
    assert "backends.port.url: 'http://***@127.0.0.1:99999/v1' is not a usable URL" in problems
    assert "backends.query.url: 'https://example.org/v1' is followed by a query or fragment: " \
        "give the server's base URL, and a key in apiKeyEnv or apiKeyCommand" in problems
    assert "hunter2" not in problems and "k3y" not in problems
    assert "backends.typo.timeout: unknown setting" in problems
    assert "backends.typo.retries: expected a whole number" in problems
    assert "routes.tests: no backend 'nowhere'" in problems
    assert set(resolved.settings.backends) == {"typo"}
    assert resolved.settings.routes.tests == ["typo"]
    assert resolved.settings.routes.review == ["local"]  # nothing left: the local model


# ---- privacy.localOnly -------------------------------------------------------------


def test_local_only_files_are_the_patterns_and_every_secret_file(tmp_path):
    settings = resolve(tmp_path, '[privacy]\nlocal_only = ["billing/", "*.sql"]\n').settings
    assert local_only(settings, ["billing/charge.py", "db/schema.sql", "app/.env.prod",
                                 "deploy/id_rsa", "app/main.py"]) == [
        "billing/charge.py", "db/schema.sql", "app/.env.prod", "deploy/id_rsa"]


async def test_a_local_only_task_keeps_to_the_local_model_or_is_refused():
    worker = GenerationWorker()
    worker.load(lambda: FakeEngine.scripted(["local answer"]))
    settings = Settings()
    settings.backends["team"] = BackendSettings(name="team", url="http://127.0.0.1:9/v1")
    settings.routes.docs = ["team", "local"]
    backends = Backends(worker)
    try:
        run = TaskRun(worker, route=backends.route(settings, "docs"))
        run.keep_local("billing/charge.py is local-only (privacy.localOnly)")
        assert [b.name for b in run.route] == ["local"]
        assert (await run.ready()).name == "fake" and run.backend == "local"

        settings.routes.docs = ["team"]
        only_remote = TaskRun(worker, route=backends.route(settings, "docs"))
        only_remote.keep_local("billing/charge.py is local-only (privacy.localOnly)")
        with pytest.raises(Refusal, match="local-only .*names only model servers"):
            await only_remote.ready()
    finally:
        worker.shutdown()
        backends.shutdown()


# ---- a chat server's answer, as the local model would have continued ------------------


@pytest.mark.parametrize("answer, prefill, stop, expected", [
    ('"""Add two numbers."""', '"""', ['"""'], "Add two numbers."),
    ('```python\n"""Add two numbers.\n"""\n```', '"""', ['"""', "```"], "Add two numbers.\n"),
    ("Add two numbers.", '"""', ['"""'], "Add two numbers."),
    ("import pytest\n\ndef test_add():\n    assert add(1, 2) == 3\n```", "def test_", ["```"],
     "add():\n    assert add(1, 2) == 3\n"),
    ("fix: keep the sign", "", ["\n\n\n"], "fix: keep the sign"),
])
def test_after_prefill(answer, prefill, stop, expected):
    assert after_prefill(answer, prefill, stop) == expected


# ---- over LSP, against a real model server ------------------------------------------

TASKS = ("docs", "review", "tests", "commit", "completion")


def options(url: str, route: list[str], **backend) -> dict:
    # breakerResetS: long enough that a slow local answer on a busy machine does not
    # let the failed backend be tried again within one test.
    return {"backends": {"team": {"url": url, "retries": 0, "breakerFailures": 1,
                                  "breakerResetS": 900, "connectTimeoutS": 2, **backend}},
            "routes": {task: route for task in TASKS},
            # Short answers: what is checked is where they come from, not their length.
            "docstring": {"temperature": 0.0, "seed": 1, "maxTokens": 80},
            "review": {"maxTokens": 120}, "tests": {"maxTokens": 160, "repair": False},
            "commit": {"maxTokens": 40}, "cache": {"enabled": False}}


async def command(client, name: str, **params):
    return await client.workspace_execute_command_async(types.ExecuteCommandParams(
        command=name, arguments=[params]))


async def outcome(client, name: str, **params) -> tuple[dict | None, str | None]:
    """(the result, None) or (None, the refusal's message): never anything else."""
    try:
        return await command(client, name, **params), None
    except JsonRpcException as exc:
        return None, str(exc)


def ended(client, title: str) -> list[str]:
    return [end or "" for t, end in progress_titles(client) if t.startswith(title)]


@pytest.fixture
def proxy(llama_server):
    with Proxy(llama_server) as p:
        yield p


@pytest.mark.slow
async def test_every_task_runs_on_the_model_server(demo_repo, proxy):
    client, _, _ = await start(REAL_SERVER, demo_repo, init_options=options(proxy.url, ["team"]),
                               env={"HEARTH_TESTS_PYTHON": sys.executable})
    try:
        uri = open_doc(client, demo_repo / "inventory" / "pricing.py")
        doc, refused = await outcome(client, "hearth.generateDocstring", uri=uri, line=23)
        assert doc is not None or "model unavailable" not in (refused or ""), refused
        chats = proxy.posts("/chat/completions")
        assert chats, "the docstring did not go to the model server"
        sent = chats[0].json()
        assert sent["model"] == "smollm2" and sent["stream"] is True
        assert [m["role"] for m in sent["messages"]] == ["system", "user"]
        assert "def apply_discount" in sent["messages"][1]["content"]
        assert any("answered by 'team'" in e for e in ended(client, "Hearth: docstring"))

        review, refused = await outcome(client, "hearth.review", uri=uri, scope="symbol",
                                        line=23)
        assert review is not None, refused  # a review with no finding is still a review
        asked = proxy.posts("/chat/completions")[len(chats):]
        assert asked and "grammar" in asked[0].json()  # llama-cpp-python takes GBNF

        before = len(proxy.posts("/chat/completions"))
        tests, refused = await outcome(client, "hearth.generateTests", uri=uri, line=23)
        assert tests is not None or "model unavailable" not in (refused or ""), refused
        assert len(proxy.posts("/chat/completions")) > before

        pricing = demo_repo / "inventory" / "pricing.py"
        pricing.write_text(pricing.read_text().replace("cents // 100", "abs(cents) // 100"))
        subprocess.run(["git", "add", "-A"], cwd=demo_repo, check=True)
        before = len(proxy.posts("/chat/completions"))
        message, refused = await outcome(client, "hearth.generateCommitMessage")
        assert message is not None or "model unavailable" not in (refused or ""), refused
        assert len(proxy.posts("/chat/completions")) > before

        status = await command(client, "hearth.status")
        backends = {b["name"]: b for b in status["backends"]}
        assert backends["team"]["state"] == "ready" and backends["team"]["model"] == "smollm2"
        # No route names the local model: it was never loaded.
        assert backends["local"]["state"] == "empty" and status["routes"]["docs"] == ["team"]
    finally:
        await stop(client)


@pytest.mark.slow
async def test_a_dead_server_falls_back_to_the_local_model_with_a_notice(demo_repo):
    dead = Proxy(handler=lambda seen: Drop()).start()  # accepts, then hangs up at once
    try:
        client, _, _ = await start(REAL_SERVER, demo_repo,
                                   init_options=options(dead.url, ["team", "local"]))
        try:
            uri = open_doc(client, demo_repo / "inventory" / "pricing.py")
            doc, refused = await outcome(client, "hearth.generateDocstring", uri=uri, line=23)
            assert doc is not None or "model unavailable" not in (refused or ""), refused
            assert any("answered by 'local'" in e for e in ended(client, "Hearth: docstring"))
            await wait_until(lambda: any("using 'local'" in m.message and "team" in m.message
                                         for m in client.messages), timeout=10)
            tried = len(dead.requests)
            assert tried >= 1
            # Within breakerResetS the dead server is skipped without a new attempt.
            await outcome(client, "hearth.generateDocstring", uri=uri, line=17)
            assert len(dead.requests) == tried
            status = await command(client, "hearth.status")
            team = next(b for b in status["backends"] if b["name"] == "team")
            assert team["state"] == "error" and "team" in team["error"]
            last = status["lastAnswer"]
            assert last["backend"] == "local" and last["fellBack"] is True
            assert "team" in last["notices"][-1]
        finally:
            await stop(client)
    finally:
        dead.stop()


@pytest.mark.slow
async def test_a_stream_cut_in_the_middle_moves_the_task_to_the_next_backend(demo_repo, proxy):
    cut = {"done": False}

    def handler(seen):
        if seen.path.endswith("/chat/completions") and not cut["done"]:
            cut["done"] = True
            return Forward(cut_after=700)  # the first answer dies after a few pieces
        return None

    proxy.handler = handler
    client, _, _ = await start(REAL_SERVER, demo_repo,
                               init_options=options(proxy.url, ["team", "local"]))
    try:
        uri = open_doc(client, demo_repo / "inventory" / "pricing.py")
        doc, refused = await outcome(client, "hearth.generateDocstring", uri=uri, line=23)
        assert cut["done"]
        assert doc is not None or "model unavailable" not in (refused or ""), refused
        assert any("answered by 'local'" in e for e in ended(client, "Hearth: docstring"))
        # The server is still up and answers.
        assert (await command(client, "hearth.status"))["model"] == "ready"
    finally:
        await stop(client)


@pytest.mark.slow
async def test_no_secret_of_the_workspace_reaches_the_model_server(demo_repo, proxy):
    canary = "hx-canary-5c1f0e9d8b7a6f4e3d2c"
    (demo_repo / ".env").write_text(f"PAYMENT_API_TOKEN={canary}\n")
    pricing = demo_repo / "inventory" / "pricing.py"
    pricing.write_text(pricing.read_text().replace(
        "def apply_discount", f"# staging token: {canary}\ndef apply_discount"))
    opts = options(proxy.url, ["team"])
    opts["cache"] = {"enabled": True}  # answers go to the cache: it must not hold the canary
    opts["log"] = {"level": "debug"}  # every prompt and answer is logged
    client, _, _ = await start(REAL_SERVER, demo_repo, init_options=opts,
                               env={"HEARTH_CACHE_ENABLED": "true"})
    try:
        uri = open_doc(client, pricing)
        await outcome(client, "hearth.generateDocstring", uri=uri, line=24)
        await outcome(client, "hearth.review", uri=uri, scope="file")
        subprocess.run(["git", "add", "-A"], cwd=demo_repo, check=True)
        await outcome(client, "hearth.generateCommitMessage")
        posted = proxy.posts("/completions")
        assert len(posted) >= 3
        for seen in posted:
            assert canary not in seen.body.decode(), seen.path
        assert any("<redacted:env>" in seen.body.decode() for seen in posted)
        said = [m.message for m in [*client.messages, *client.log_messages]]
        assert said and not any(canary in m for m in said)
        stored = list(shared_cache().glob("results.sqlite*"))  # with its -wal, if any
        assert stored and not any(canary.encode() in f.read_bytes() for f in stored)
    finally:
        await stop(client)


@pytest.mark.slow
async def test_a_local_only_file_never_goes_to_the_model_server(demo_repo, proxy):
    opts = options(proxy.url, ["team", "local"])
    opts["privacy"] = {"localOnly": ["inventory/pricing.py"]}
    client, _, _ = await start(REAL_SERVER, demo_repo, init_options=opts)
    try:
        uri = open_doc(client, demo_repo / "inventory" / "pricing.py")
        doc, refused = await outcome(client, "hearth.generateDocstring", uri=uri, line=23)
        assert doc is not None or "model unavailable" not in (refused or ""), refused
        assert proxy.posts("/completions") == []
        other = open_doc(client, demo_repo / "inventory" / "models.py")
        await outcome(client, "hearth.generateDocstring", uri=other, line=23)
        assert proxy.posts("/completions"), "the other file's task should use the server"
    finally:
        await stop(client)


@pytest.mark.slow
def test_the_cli_follows_the_routes(demo_repo, proxy, tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(f'[backends.team]\nurl = "{proxy.url}"\n\n[routes]\ndocs = ["team"]\n')
    done = subprocess.run(
        [sys.executable, "-m", "hearth_lsp.server", "docstring",
         "inventory/pricing.py::apply_discount"],
        cwd=demo_repo, env={**os.environ, "HEARTH_CONFIG_FILE": str(config)},
        capture_output=True, text=True, timeout=300)
    assert proxy.posts("/chat/completions"), done.stderr
    if done.returncode == 0:
        assert "answered by backend 'team'" in done.stderr
    else:  # refused: the reason is the model's answer, not a missing model
        assert "hearth docstring:" in done.stderr and "no model" not in done.stderr


@pytest.mark.slow
def test_an_unreachable_server_in_the_cli_is_one_clear_line(demo_repo, tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(f'[backends.team]\nurl = "http://127.0.0.1:{free_port()}/v1"\n'
                      'retries = 0\n\n[routes]\ndocs = ["team"]\n')
    done = subprocess.run(
        [sys.executable, "-m", "hearth_lsp.server", "docstring",
         "inventory/pricing.py::apply_discount"],
        cwd=demo_repo, env={**os.environ, "HEARTH_CONFIG_FILE": str(config)},
        capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "backend 'team'" in done.stderr and "Traceback" not in done.stderr, done.stderr
    said = [line for line in done.stderr.splitlines() if line.startswith("hearth docstring:")]
    assert len(said) == 1 and "cannot connect" in said[0], done.stderr


def test_doctor_names_an_unreachable_backend_and_the_routes_it_leaves_empty():
    settings = Settings()
    settings.backends["team"] = BackendSettings(name="team", retries=0,
                                                url=f"http://127.0.0.1:{free_port()}/v1")
    settings.routes.review = ["team"]
    settings.routes.docs = ["team", "local"]
    checks = {c.name: c for c in backend_checks(settings)}
    assert "review -> team" in checks["routes"].detail
    assert "docs -> team then local" in checks["routes"].detail
    team = checks["backend team"]
    assert team.status == "FAIL" and "cannot connect" in team.detail
    assert "only backend of routes.review" in team.detail


@pytest.mark.slow
def test_doctor_describes_a_live_backend(llama_server):
    settings = Settings()
    host, port = llama_server
    settings.backends["team"] = BackendSettings(name="team", url=f"http://{host}:{port}/v1")
    team = next(c for c in backend_checks(settings) if c.name == "backend team")
    assert team.status == "ok", team.detail
    assert "smollm2 on llama-cpp-python" in team.detail and "structured output: grammar" in team.detail


@pytest.mark.slow
async def test_inline_completion_follows_its_route_to_the_model_server(demo_repo, proxy):
    opts = options(proxy.url, ["team"])
    opts["completion"] = {"debounceMs": 0, "maxTokens": 12}
    client, _, _ = await start(REAL_SERVER, demo_repo, init_options=opts)
    try:
        text = "def area(width, height):\n    return "
        path = demo_repo / "geometry.py"
        path.write_text(text)
        uri = open_doc(client, path, text=text)
        await client.text_document_inline_completion_async(types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=types.Position(line=1, character=11),
            context=types.InlineCompletionContext(
                trigger_kind=types.InlineCompletionTriggerKind.Invoked)))
        [sent] = [s.json() for s in proxy.posts("/v1/completions")]
        assert sent["prompt"].endswith(text) and sent["max_tokens"] == 12
        status = await command(client, "hearth.status")
        assert next(b for b in status["backends"] if b["name"] == "local")["state"] == "empty"
    finally:
        await stop(client)


async def test_backends_and_routes_change_while_the_server_runs(demo_repo):
    client, _, _ = await start(FAKE_SERVER, demo_repo, env={
        "FAKE_ENGINE_RESPONSES": json.dumps([])})
    try:
        await wait_model(client)
        url = f"http://127.0.0.1:{free_port()}/v1"
        client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
            settings={"hearth": {"backends": {"team": {"url": url}},
                                 "routes": {"review": ["team", "local"]}}}))

        async def routes() -> dict:
            return (await command(client, "hearth.status"))["routes"]

        for _ in range(100):
            if (await routes())["review"] == ["team", "local"]:
                break
            await asyncio.sleep(0.05)
        assert (await routes())["review"] == ["team", "local"]
        client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
            settings={"hearth": {"routes": {"review": ["local"]}}}))
        for _ in range(100):
            if (await routes())["review"] == ["local"]:
                break
            await asyncio.sleep(0.05)
        status = await command(client, "hearth.status")
        assert status["routes"]["review"] == ["local"] and status["model"] == "ready"
        assert [b["name"] for b in status["backends"]] == ["local"]  # team's worker closed
        said = [m.message for m in [*client.messages, *client.log_messages]]
        assert not any("Traceback" in m or "KeyError" in m for m in said), said
    finally:
        await stop(client)


async def test_settings_files_edited_outside_the_editor_are_read_again(demo_repo, tmp_path):
    config = tmp_path / "user" / "config.toml"
    config.parent.mkdir()
    config.write_text("")
    set_trusted(demo_repo, True, {"HEARTH_CONFIG_FILE": str(config)})  # the trust file is beside it
    client, _, _ = await start(FAKE_SERVER, demo_repo, env={
        "FAKE_ENGINE_RESPONSES": json.dumps([]), "HEARTH_CONFIG_FILE": str(config)})

    async def review_route() -> list[str]:
        return (await command(client, "hearth.status"))["routes"]["review"]

    async def becomes(want: list[str]) -> None:
        for _ in range(200):
            if await review_route() == want:
                return
            await asyncio.sleep(0.05)
        assert await review_route() == want

    try:
        await wait_model(client)
        workspace = demo_repo / ".hearth.toml"
        workspace.write_text('[backends.team]\nurl = "http://127.0.0.1:9/v1"\n\n'
                             '[routes]\nreview = ["team", "local"]\n')
        client.workspace_did_change_watched_files(types.DidChangeWatchedFilesParams(changes=[
            types.FileEvent(uri=workspace.as_uri(), type=types.FileChangeType.Created)]))
        await becomes(["team", "local"])
        workspace.unlink()
        # The user config is outside the workspace: the server watches it itself.
        config.write_text('[backends.gpu]\nurl = "http://127.0.0.1:9/v1"\n\n'
                          '[routes]\nreview = ["gpu"]\n')
        await becomes(["gpu"])
    finally:
        await stop(client)


def test_a_task_on_a_file_no_folder_vouches_for_stays_local(tmp_path):
    """A document outside every folder, a link into a local-only folder, a secret file
    and a non-file view (`fugitive://`) went to the route's model server: the
    local-only check ran only for files inside a folder, by the path as given."""
    from hearth_lsp.server.lsp.server import HearthServer

    ws, out = tmp_path / "ws", tmp_path / "out"
    (ws / "billing").mkdir(parents=True)
    out.mkdir()
    (ws / "billing" / "charge.py").write_text("x = 1\n")
    (tmp_path / "link").symlink_to(ws / "billing")
    server = HearthServer()
    server.set_folders([ws])
    settings = Settings()
    settings.privacy.local_only = ["billing/**"]
    reason = {name: server.local_reason(uri, settings) for name, uri in {
        "inside": (ws / "billing" / "charge.py").as_uri(),
        "link": (tmp_path / "link" / "charge.py").as_uri(),
        "outside": (out / "plain.py").as_uri(),
        "secret": (out / "secrets.py").as_uri(),
        "view": f"fugitive://{ws}/.git//0/billing/charge.py",
        "ordinary": (ws / "main.py").as_uri(),
        "by its folder": (ws / ".ssh" / "config").as_uri(),
        "a name that only begins like the folder's": (tmp_path / "ws-old" / "main.py").as_uri(),
    }.items()}
    assert reason["inside"] == "billing/charge.py is local-only (privacy.localOnly)"
    assert reason["link"] and reason["outside"] and reason["view"]
    assert reason["secret"] == "secrets.py is a secret file"
    assert reason["ordinary"] is None
    assert reason["by its folder"] == "config is a secret file"
    assert "is outside the workspace folders" in reason["a name that only begins like the folder's"]


def test_a_nested_folder_s_local_only_patterns_are_matched_from_its_own_root(tmp_path):
    """A folder opened inside another (a monorepo and one of its packages): the task's
    settings are the inner folder's, and its patterns name paths from the inner root."""
    from hearth_lsp.server.lsp.server import HearthServer

    outer = tmp_path / "mono"
    inner = outer / "packages" / "pay"
    (inner / "keys").mkdir(parents=True)
    server = HearthServer()
    server.set_folders([outer, inner])
    settings = Settings()
    settings.privacy.local_only = ["keys/**"]
    uri = (inner / "keys" / "sign.py").as_uri()
    assert server.local_reason(uri, settings) == "keys/sign.py is local-only (privacy.localOnly)"
    assert server.local_reason((outer / "keys.py").as_uri(), settings) is None
    # The outer folder's own patterns still hold for the files of the inner one.
    (outer / ".hearth.toml").write_text('[privacy]\nlocalOnly = ["packages/pay/vault/**"]\n')
    server.set_folders([outer, inner])
    assert server.local_reason((inner / "vault" / "a.py").as_uri(), Settings()) == \
        "packages/pay/vault/a.py is local-only (privacy.localOnly)"
    assert server.local_reason((inner / "main.py").as_uri(), Settings()) is None


async def test_a_prompt_is_counted_with_its_secrets_already_replaced():
    """A model server counts by its tokenize endpoint: the prompt in clear reached it
    there, while the generation request had the secret replaced."""
    from hearth_lsp.indexer.secrets import Redactor

    engine = FakeEngine()
    worker = GenerationWorker()
    worker.load(lambda: engine)
    try:
        run = TaskRun(worker, redactor=Redactor({"canary-env-7Hq2Lp9x"}))
        await run.ready()
        await run.count_tokens('TOKEN = "canary-env-7Hq2Lp9x"  # ghp_CanaryCanaryCanary0123456789ab')
        [counted] = engine.counted
        assert "canary-env" not in counted and "ghp_" not in counted
    finally:
        worker.shutdown()


def test_retrieved_context_keeps_the_local_only_files_of_a_folder_inside_the_workspace(
        tmp_path):
    """Retrieval for a file of the outer folder judged the pieces by the outer folder's
    patterns only: the inner folder's local-only code went to the model server."""
    from hearth_lsp.indexer.workspace import WorkspaceIndex
    from hearth_lsp.server.lsp.server import HearthServer

    ws = tmp_path / "ws"
    (ws / "sub" / "internal").mkdir(parents=True)
    (ws / "sub" / ".hearth.toml").write_text('[privacy]\nlocalOnly = ["internal/"]\n')
    (ws / "sub" / "internal" / "fees.py").write_text(
        "def card_fee(cents):\n    return cents * 37 // 1000  # FEE_MARKER\n")
    (ws / "sub" / "public.py").write_text("def shipping_fee(cents):\n    return 499\n")
    (ws / "app.py").write_text("def checkout(cents):\n    return cents + card_fee(cents) "
                               "+ shipping_fee(cents)\n")
    server = HearthServer()
    server.set_folders([ws, ws / "sub"])
    outer = server.folders[ws]
    outer.settings.backends["team"] = BackendSettings(name="team", url="http://127.0.0.1:9/v1")
    index = WorkspaceIndex(ws, tmp_path / "cache")
    try:
        index.update(workers=1)
        outer.index = index
        context = server.context_fn((ws / "app.py").as_uri())
        assert context is not None
        text = context("app.py", 1, 400)
        assert "shipping_fee" in text and "FEE_MARKER" not in text
        outer.settings.backends.clear()  # no model server: the context stays whole
        assert "FEE_MARKER" in context("app.py", 1, 400)
    finally:
        outer.index = None
        index.close()
