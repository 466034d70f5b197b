"""The answer cache: repeated requests are instant, the cache is bounded and clearable."""

from __future__ import annotations

import pytest

from hearth_lsp.server import cli
from hearth_lsp.server.engine.fake import FakeEngine
from hearth_lsp.server.result_cache import ResultCache, checks_epoch

SHOUT = "Shout it.\n\nArgs:\n    text: what to shout"


@pytest.fixture
def shout(tmp_path, monkeypatch):
    """A workspace with `m.py::shout`, the cache on, and a factory whose engines (listed)
    answer SHOUT."""
    monkeypatch.setenv("HEARTH_CACHE_ENABLED", "true")
    monkeypatch.setenv("HEARTH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.py").write_text("def shout(text):\n    return text.upper()\n")
    engines: list[FakeEngine] = []

    def factory(settings, cache):
        engines.append(FakeEngine(responses=[SHOUT]))
        return engines[-1]

    return factory, engines


def test_bounded_least_recently_used_first(tmp_path):
    cache = ResultCache(tmp_path / "r.sqlite", max_entries=4)
    keys = [cache.key("review", prompt=f"p{i}") for i in range(5)]
    assert len(set(keys)) == 5 and cache.key("review", prompt="p0") == keys[0]
    for i, key in enumerate(keys[:4]):
        cache.put(key, "review", f"answer {i}")
    assert cache.get(keys[0]) == "answer 0"  # used: it stays
    cache.put(keys[4], "review", "answer 4")  # over the bound: the oldest unused go
    assert cache.get(keys[0]) == "answer 0" and cache.get(keys[4]) == "answer 4"
    assert cache.stats()["entries"] <= 4
    entries = cache.stats()["entries"]
    assert cache.clear() == entries and cache.stats()["entries"] == 0


def test_a_damaged_cache_starts_again(tmp_path):
    path = tmp_path / "r.sqlite"
    path.write_bytes(b"not sqlite" * 100)
    cache = ResultCache(path)
    cache.put("k", "x", "v")
    assert cache.get("k") == "v"


def test_a_repeated_cli_request_does_not_run_the_model(shout, capsys):
    factory, engines = shout
    for _ in range(2):
        args = cli.build_parser().parse_args(["docstring", "m.py::shout"])
        assert cli.cmd_docstring(args, factory=factory) == 0
    assert capsys.readouterr().out.count("Shout it.") == 2
    assert len(engines[0].prompts) == 1 and engines[1].prompts == []  # answered from the cache
    assert cli.main(["cache", "info"]) == 0 and "1 cached answers" in capsys.readouterr().out
    assert cli.main(["cache", "clear"]) == 0 and "removed 1" in capsys.readouterr().out


def _docstring(tmp_path, capsys, factory, *extra):
    args = cli.build_parser().parse_args(["docstring", "m.py::shout", *extra])
    code = cli.cmd_docstring(args, factory=factory)
    return code, capsys.readouterr()


def test_a_refused_answer_is_not_replayed(tmp_path, capsys, monkeypatch):
    """A docstring that failed validation must not come back from the cache: asking
    again really asks the model again (and can succeed)."""
    monkeypatch.setenv("HEARTH_CACHE_ENABLED", "true")
    monkeypatch.setenv("HEARTH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.py").write_text("def shout(text):\n    return text.upper()\n")
    answers = iter([
        # A placeholder summary: refused.
        ["This is a docstring.\n\nArgs:\n    text: what to shout"],
        ["Shout it.\n\nArgs:\n    text: what to shout"],
    ])
    engines = []

    def factory(settings, cache):
        engines.append(FakeEngine(responses=next(answers)))
        return engines[-1]

    code, out = _docstring(tmp_path, capsys, factory)
    assert code == 1 and "hearth docstring:" in out.err
    code, out = _docstring(tmp_path, capsys, factory)
    assert code == 0 and "Shout it." in out.out
    assert engines[1].prompts, "the second request was answered from the cache"


def test_a_cached_answer_that_todays_checks_refuse_is_dropped_and_the_model_asked(
        shout, tmp_path, capsys):
    """An answer kept by an earlier version, whose checks were fewer, is not shown as a
    refusal: it leaves the cache and the model answers as if it had never been kept
    (`make demo` refused parse_price twice from the cache, never asking the model)."""
    factory, engines = shout
    code, out = _docstring(tmp_path, capsys, factory)
    assert code == 0 and len(engines[0].prompts) == 1
    # What an earlier version kept for the same prompt, refused today (a placeholder).
    cache = ResultCache(tmp_path / "cache" / "results.sqlite")
    [key] = [row[0] for row in cache._open().execute("SELECT key FROM results")]
    cache.put(key, "docstring", "This is a docstring.\n\nArgs:\n    text: what to shout")
    cache.close()
    code, out = _docstring(tmp_path, capsys, factory)
    assert code == 0 and "Shout it." in out.out
    assert len(engines[1].prompts) == 1, "the model was not asked"
    assert engines[1].grammars == [None]  # its first attempt, not the constrained re-ask
    cache = ResultCache(tmp_path / "cache" / "results.sqlite")
    assert cache.get(key) == SHOUT  # kept anew
    cache.close()


def test_the_checks_are_part_of_the_key(shout, tmp_path, capsys, monkeypatch):
    """A new version's checks start a new epoch: nothing an older one kept is replayed."""
    from hearth_lsp.server.tasks import runner

    factory, engines = shout
    _docstring(tmp_path, capsys, factory)
    monkeypatch.setattr(runner, "checks_epoch", lambda: "a later version")
    code, out = _docstring(tmp_path, capsys, factory)
    assert code == 0 and len(engines[1].prompts) == 1


def test_the_epoch_follows_the_task_code(tmp_path):
    (tmp_path / "tasks" / "docs").mkdir(parents=True)
    (tmp_path / "cleaning.py").write_text("JUNK = ()\n")
    (tmp_path / "tasks" / "docs" / "python.py").write_text("def check(): pass\n")
    epoch = checks_epoch.__wrapped__
    first = epoch(tmp_path)
    assert epoch(tmp_path) == first
    (tmp_path / "tasks" / "docs" / "python.py").write_text("def check(): raise Junk\n")
    assert epoch(tmp_path) != first
    (tmp_path / "cleaning.py").write_text("JUNK = ('foo',)\n")
    assert len({first, epoch(tmp_path)}) == 2


def test_regenerate_samples_anew_instead_of_replaying(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HEARTH_CACHE_ENABLED", "true")
    monkeypatch.setenv("HEARTH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.py").write_text(
        'def shout(text):\n    """Old.\n\n    Args:\n        text: old words\n    """\n'
        "    return text.upper()\n")
    engines = []

    def factory(settings, cache):
        engines.append(FakeEngine(responses=["Shout the text.\n\nArgs:\n    text: what to shout"]))
        return engines[-1]

    for _ in range(2):
        code, out = _docstring(tmp_path, capsys, factory, "--regenerate")
        assert code == 0 and "Shout the text." in out.out
    assert engines[1].prompts, "Regenerate was answered from the cache"


def test_a_smaller_cache_limit_takes_effect_without_a_restart(tmp_path):
    cache = ResultCache(tmp_path / "r.sqlite", max_bytes=1 << 20)
    for i in range(10):
        cache.put(cache.key("x", prompt=str(i)), "x", "v" * 1000)
    assert cache.stats()["entries"] == 10
    cache.resize(3000)
    assert cache.stats()["bytes"] <= 3000 and cache.stats()["entries"] >= 1


def test_the_server_applies_a_new_cache_limit_at_once(tmp_path, monkeypatch):
    from hearth_lsp.server.lsp.app import create_server

    monkeypatch.setenv("HEARTH_CACHE_ENABLED", "true")
    monkeypatch.setenv("HEARTH_CACHE_DIR", str(tmp_path / "cache"))
    server = create_server(engine_factory=lambda settings, cache: FakeEngine())
    server.apply_settings()
    assert server.worker.results.max_bytes == 50 << 20
    server.sources.client_configuration = {"cache": {"maxMb": 2}}
    server.apply_settings()
    assert server.worker.results.max_bytes == 2 << 20


def test_clearing_a_cache_that_cannot_be_written_says_why(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HEARTH_CACHE_DIR", str(tmp_path / "cache"))

    def refuse(self):
        raise RuntimeError(f"the answer cache {self.path} cannot be written (read-only)")

    monkeypatch.setattr(ResultCache, "clear", refuse)
    assert cli.main(["cache", "clear"]) == 1
    assert "hearth cache: the answer cache" in capsys.readouterr().err


def test_the_cache_and_the_index_are_their_owners_alone(tmp_path):
    """Answers and chunks quote the user's code: under a umask of 022 they were 0644 in
    0755 folders, readable by every user of the machine."""
    import os
    import stat

    from hearth_lsp.indexer.workspace import WorkspaceIndex

    (tmp_path / "ws").mkdir()
    (tmp_path / "ws" / "a.py").write_text("def f():\n    return 1\n")
    (tmp_path / "cache" / "index").mkdir(parents=True, mode=0o755)  # an older Hearth's
    (tmp_path / "cache" / "old.sqlite").touch(mode=0o644)
    before = os.umask(0o022)
    try:
        index = WorkspaceIndex(tmp_path / "ws", tmp_path / "cache")
        index.update(workers=1)
        index.close()
        ResultCache(tmp_path / "cache" / "results.sqlite")
        ResultCache(tmp_path / "cache" / "old.sqlite")
    finally:
        os.umask(before)

    def mode(path):
        return stat.S_IMODE(path.stat().st_mode)
    assert mode(tmp_path / "cache" / "index") == 0o700
    assert {mode(p) for p in (tmp_path / "cache" / "index").iterdir()} == {0o700}
    assert mode(tmp_path / "cache" / "results.sqlite") == 0o600
    assert mode(tmp_path / "cache" / "old.sqlite") == 0o600
