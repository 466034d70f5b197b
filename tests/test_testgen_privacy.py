"""The tests task and privacy.localOnly: what a remote model server is sent (the
existing tests, the failures fed back to be fixed). The model server is a scripted
engine behind a route entry configured as one (the routing, not HTTP, is tested)."""

from __future__ import annotations

import sys

import pytest

from hearth_lsp.server.engine.fake import FakeEngine
from hearth_lsp.server.engine.router import Backend
from hearth_lsp.server.engine.worker import GenerationWorker
from hearth_lsp.server.settings import BackendSettings, Settings
from hearth_lsp.server.tasks.runner import TaskRun
from hearth_lsp.server.tasks.testgen.run import generate_tests

APP = "from private.rates import rate\n\n\ndef total(x):\n    return x * rate(x)\n"
RATES = ("def rate(x):\n    if x > 0:\n        raise ValueError('PRIVATE_MARKER: no rate for %s' % x)\n"
         "    return 1\n")
WRONG = "total_one():\n    assert total(1) == 2\n"
RIGHT = "total_zero():\n    assert total(0) == 0\n"


class ServerEngine(FakeEngine):
    """A model server's engine: it takes the chat turns; what it is sent is recorded."""

    def generate(self, prompt, sampling, stop, should_stop, on_piece, grammar=None,
                 start=None, messages=None, json_schema=None):
        sent = "\n".join(m.content for m in messages) if messages else prompt
        return super().generate(sent, sampling, stop, should_stop, on_piece, grammar, start)


@pytest.fixture
def workspace(tmp_path):
    (tmp_path / "private").mkdir()
    (tmp_path / "private" / "__init__.py").write_text("")
    (tmp_path / "private" / "rates.py").write_text(RATES)
    (tmp_path / "app.py").write_text(APP)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_app.py").write_text(
        "# FIXTURE_MARKER: a customer's card\nfrom app import total\n")
    return tmp_path


async def generate_for(root, local_only: list[str], remote: list[str], local: list[str], *,
                    with_local: bool = True, **local_engine):
    engines = {"team": ServerEngine.scripted(remote), "local": FakeEngine.scripted(local, **local_engine)}
    workers = {}
    for name, engine in engines.items():
        workers[name] = GenerationWorker()
        workers[name].load(lambda engine=engine: engine)
    route = [Backend("team", workers["team"], BackendSettings(name="team",
                                                              url="http://127.0.0.1:9/v1"))]
    if with_local:
        route.append(Backend("local", workers["local"]))
    settings = Settings()
    settings.cache.enabled, settings.privacy.local_only = False, local_only
    settings.tests.python = sys.executable
    try:
        result = await generate_tests(TaskRun(workers["team"], route=route), settings,
                                      root=root, rel="app.py", source=APP, line=3)
    finally:
        for worker in workers.values():
            worker.shutdown()
    return result, engines


async def test_failures_that_quote_a_local_only_file_are_fixed_by_the_local_model(workspace):
    result, engines = await generate_for(workspace, ["private/"], [WRONG], [RIGHT])
    [sent] = engines["team"].prompts
    assert "FIXTURE_MARKER" in sent and "PRIVATE_MARKER" not in sent
    [repair] = engines["local"].prompts  # the traceback quotes private/rates.py
    assert "PRIVATE_MARKER" in repair and "test_total_one" in repair
    assert [t.name for t in result.passing] == ["test_total_zero"]
    # Rendered for the model that answers: the local one may take no chat turns.
    _, engines = await generate_for(workspace, ["private/"], [WRONG], [RIGHT],
                                    chat_template=None)
    assert engines["local"].prompts[0].startswith("# Code under test, from module app:")


async def test_without_a_local_model_they_are_not_sent_back_and_say_why(workspace):
    result, engines = await generate_for(workspace, ["private/"], [WRONG, RIGHT], [],
                                      with_local=False)
    assert len(engines["team"].prompts) == 1
    assert any("not sent back to be fixed: the failures quote private/rates.py" in w
               for w in result.warnings)


async def test_a_local_only_test_file_keeps_the_task_local(workspace):
    _, engines = await generate_for(workspace, ["tests/"], [RIGHT], [RIGHT])
    assert engines["team"].prompts == [] and "FIXTURE_MARKER" in engines["local"].prompts[0]
