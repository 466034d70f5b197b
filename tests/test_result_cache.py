"""The answer cache: repeated requests are instant, the cache is bounded and clearable."""

from __future__ import annotations

from hearth_lsp.server import cli
from hearth_lsp.server.engine.fake import FakeEngine
from hearth_lsp.server.result_cache import ResultCache


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


def test_a_repeated_cli_request_does_not_run_the_model(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HEARTH_CACHE_ENABLED", "true")
    monkeypatch.setenv("HEARTH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.py").write_text("def shout(text):\n    return text.upper()\n")
    engines = []

    def factory(settings, cache):
        engines.append(FakeEngine(responses=["Shout it.\n\nArgs:\n    text: what to shout"]))
        return engines[-1]

    for _ in range(2):
        args = cli.build_parser().parse_args(["docstring", "m.py::shout"])
        assert cli.cmd_docstring(args, factory=factory) == 0
    assert capsys.readouterr().out.count("Shout it.") == 2
    assert len(engines[0].prompts) == 1 and engines[1].prompts == []  # answered from the cache
    assert cli.main(["cache", "info"]) == 0 and "1 cached answers" in capsys.readouterr().out
    assert cli.main(["cache", "clear"]) == 0 and "removed 1" in capsys.readouterr().out
