"""Canary secrets planted in a workspace never reach a prompt, the index or the answer
cache, whatever task runs — over LSP and from the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from lsprotocol import types

from hearth_lsp.server import cli
from hearth_lsp.server.engine.fake import FakeEngine

from lsp_helpers import FAKE_SERVER, open_doc, progress_titles, start, stop, wait_model, wait_until

pytestmark = pytest.mark.slow  # indexes the workspace, runs the sandbox

ENV_VALUE = "canary-env-7Hq2Lp9x"
CANARIES = {
    "env": ENV_VALUE,
    "yaml": "Canary#Yaml9x7Q",
    "comment": "ghp_CanaryCommentCanaryComment0123456789",
    "literal": "sk-proj-CanaryLiteralCanaryLiteral01",
    "diff": "AKIAQ3EGRZ7CANARYDIF",
}


def plant(root: Path) -> None:
    (root / ".env").write_text(f"SERVICE_TOKEN={ENV_VALUE}\n")
    (root / "config").mkdir()
    (root / "config" / "settings.yaml").write_text(
        f'database:\n  user: shop\n  password: "{CANARIES["yaml"]}"\n')
    pricing = root / "inventory" / "pricing.py"
    pricing.write_text(pricing.read_text().replace(
        "def apply_discount(", f'# token: {CANARIES["comment"]}\n'
        f'API_KEY = "{CANARIES["literal"]}"\nSERVICE = "{ENV_VALUE}"\n\n\n'
        "def apply_discount("))


def assert_clean(*blobs: bytes | str, where: str) -> None:
    for blob in blobs:
        text = blob.decode("utf-8", "replace") if isinstance(blob, bytes) else blob
        leaked = [name for name, value in CANARIES.items() if value in text]
        assert not leaked, f"{leaked} reached {where}"


async def test_no_canary_reaches_a_prompt_the_index_the_cache_or_the_log(demo_repo, tmp_path):
    plant(demo_repo)
    subprocess.run(["git", "add", "-A"], cwd=demo_repo, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@l", "commit", "-qm", "c"],
                   cwd=demo_repo, check=True)
    # A staged change that adds a key and touches the .env file.
    models = demo_repo / "inventory" / "models.py"
    models.write_text(models.read_text() + f'\nAWS_KEY = "{CANARIES["diff"]}"\n')
    (demo_repo / ".env").write_text(f"SERVICE_TOKEN={ENV_VALUE}\nOTHER=1\n")
    subprocess.run(["git", "add", "-A"], cwd=demo_repo, check=True)
    record, cache = tmp_path / "prompts.jsonl", tmp_path / "cache"
    client, _, _ = await start(FAKE_SERVER, demo_repo, env={
        "HEARTH_INDEX_ENABLED": "true", "HEARTH_INDEX_EMBEDDINGS": "false",
        "HEARTH_CACHE_DIR": str(cache), "HEARTH_CACHE_ENABLED": "true",
        "HEARTH_TESTS_PYTHON": sys.executable, "FAKE_ENGINE_RECORD": str(record),
        "FAKE_ENGINE_RESPONSES": json.dumps([
            json.dumps({"findings": []}),
            "Apply a percentage discount.\n\nArgs:\n    cents: the price in cents\n"
            "    percent: the discount in percent\n\nReturns:\n    The discounted price.",
            "apply_discount_quarter():\n    assert apply_discount(1000, 25) == 750\n",
            "feat(inventory): add AWS_KEY to the models"])})
    try:
        await wait_model(client)
        await wait_until(lambda: any(t == "Hearth: Indexing workspace" and m
                                     for t, m in progress_titles(client)), timeout=120)
        uri = open_doc(client, demo_repo / "inventory" / "pricing.py")
        line = next(n for n, text in enumerate((demo_repo / "inventory" / "pricing.py")
                                               .read_text().splitlines())
                    if text.startswith("def apply_discount"))

        async def command(name: str, args: dict | None = None):
            return await client.workspace_execute_command_async(types.ExecuteCommandParams(
                command=name, arguments=[args] if args is not None else []))

        await command("hearth.review", {"uri": uri, "scope": "symbol", "line": line})
        await command("hearth.generateDocstring", {"uri": uri, "line": line})
        await command("hearth.generateTests", {"uri": uri, "line": line})
        result = await command("hearth.generateCommitMessage")
        assert any(f["path"] == ".env" and f["leftOut"] for f in result["files"])
        assert_clean(json.dumps(result), where="the commit message result")
        for hit in await command("hearth.search", {"query": "password token key"}):
            assert_clean(json.dumps(hit), where="search results")
    finally:
        await stop(client)
    prompts = record.read_text()
    assert prompts.count("\n") >= 4  # review, docstring, tests, commit
    assert_clean(prompts, where="a prompt")
    for store in [*cache.rglob("*.sqlite"), *cache.rglob("*.sqlite-wal")]:
        assert_clean(store.read_bytes(), where=f"the store {store.name}")


def test_the_cli_redacts_its_prompts_too(tmp_path, monkeypatch, capsys):
    (tmp_path / ".env").write_text(f"SERVICE_TOKEN={ENV_VALUE}\n")
    (tmp_path / "m.py").write_text(f'def login(user):\n    return connect(user, "{ENV_VALUE}")\n')
    monkeypatch.chdir(tmp_path)
    engine = FakeEngine(responses=["Log the user in.\n\nArgs:\n    user: who logs in"])
    args = cli.build_parser().parse_args(["docstring", "m.py::login"])
    assert cli.cmd_docstring(args, factory=lambda settings, cache: engine) == 0
    assert engine.prompts and all(ENV_VALUE not in p for p in engine.prompts)
