"""Priorities: what the user asked for runs before a review on save or the commit hook.

One worker owns the model and takes jobs by priority (load > user > save > hook >
background); these tests check that each task really submits at its own
priority, through the runner and through the LSP.
"""

from __future__ import annotations

import asyncio
import subprocess

from lsprotocol import types

from hearth_lsp.server.engine.fake import FakeEngine
from hearth_lsp.server.engine.worker import GenerationWorker, Priority, wait_for
from hearth_lsp.server.settings import SamplingSettings
from hearth_lsp.server.tasks.runner import TaskRun

from lsp_helpers import FAKE_SERVER, open_doc, progress_titles, start, stop, wait_model, wait_until


async def test_the_runner_submits_at_the_task_priority():
    engine = FakeEngine(default="one two three four five", piece_delay_s=0.05)
    worker = GenerationWorker()
    await wait_for(worker.load(lambda: engine))
    sampling = SamplingSettings()

    def generate(run: TaskRun, prompt: str):
        return asyncio.ensure_future(run.generate("t", prompt, sampling, stop=[], grammar=None))

    try:
        first = generate(TaskRun(worker, key="first"), "first")
        await wait_until(lambda: worker.running() is not None, timeout=10)
        saved = generate(TaskRun(worker, key="save", priority=Priority.SAVE), "save review")
        hook = generate(TaskRun(worker, key="hook", priority=Priority.HOOK), "hook")
        await wait_until(lambda: worker.pending() == 2, timeout=10)
        user = generate(TaskRun(worker, key="user"), "user action")
        await asyncio.gather(first, saved, hook, user)
        assert engine.prompts == ["first", "user action", "save review", "hook"]
    finally:
        worker.shutdown()


CODE = '''def first():
    return 1


def second():
    return 2


def third():
    return 3
'''


async def test_a_user_action_runs_before_a_queued_review_on_save(demo_repo):
    path = demo_repo / "numbers.py"
    path.write_text(CODE)
    subprocess.run(["git", "add", "-A"], cwd=demo_repo, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@l", "commit", "-qm", "n"],
                   cwd=demo_repo, check=True)
    words = " ".join(["Return", "the", "number", "this", "function", "stands", "for."] * 3)
    client, _, _ = await start(FAKE_SERVER, demo_repo, env={
        "FAKE_ENGINE_DEFAULT": words, "FAKE_ENGINE_DELAY": "0.05"})
    try:
        await wait_model(client)
        uri = open_doc(client, path)
        other = demo_repo / "other.py"
        other.write_text("def elsewhere():\n    return 0\n")
        other_uri = open_doc(client, other)

        def docstring(line: int, where: str = uri):
            return asyncio.ensure_future(client.workspace_execute_command_async(
                types.ExecuteCommandParams(command="hearth.generateDocstring",
                                           arguments=[{"uri": where, "line": line}])))

        async def status():
            return await client.workspace_execute_command_async(
                types.ExecuteCommandParams(command="hearth.status"))

        busy = docstring(0, other_uri)  # occupies the worker
        for _ in range(200):
            if (await status())["running"] == "docstring":
                break
            await asyncio.sleep(0.02)
        changed = CODE.replace("return 3", "return 3 + 0")
        client.text_document_did_change(types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
            content_changes=[types.TextDocumentContentChangeWholeDocument(text=changed)]))
        path.write_text(changed)
        client.text_document_did_save(types.DidSaveTextDocumentParams(
            text_document=types.TextDocumentIdentifier(uri=uri)))
        for _ in range(200):  # the review on save is queued behind the running docstring
            if (await status())["pending"] >= 1:
                break
            await asyncio.sleep(0.02)
        assert (await status())["pending"] >= 1, "the review on save was never queued"
        asked = docstring(4)  # the user's next action, queued after the review
        await busy
        result = await asked
        assert result["symbol"] == "second"
        reviews = [m for t, m in progress_titles(client) if t == "Hearth: review"]
        assert reviews in ([], [None]), f"the review on save ran first: {reviews}"
        await wait_until(lambda: [m for t, m in progress_titles(client)
                                  if t == "Hearth: review" and m], timeout=30)
    finally:
        await stop(client)
