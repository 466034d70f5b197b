"""Settings: layers, precedence, spelling, validation."""

from __future__ import annotations

from hearth_lsp.server.settings import (
    SPECS,
    SettingsSources,
    as_dict,
    env_layer,
    flatten,
    resolve,
    to_camel,
    to_snake,
)


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_defaults_come_from_nowhere(tmp_path):
    resolved = SettingsSources(root=tmp_path, environ={}).resolve()
    assert resolved.settings.model.preset == "gemma3-270m"
    assert resolved.settings.docstring.max_tokens == 160
    assert set(resolved.sources.values()) == {"default"}
    assert resolved.problems == []


def test_precedence_lowest_to_highest(tmp_path):
    # (The workspace's numbers are lower than the user's: an untrusted .hearth.toml
    # may not raise them, test_trust.py.)
    user = write(tmp_path / "user.toml", "[model]\ncontext_length = 2000\nthreads = 2\n"
                 "batch_size = 128\ngpu_layers = 0\n[docstring]\ntemperature = 0.5\n")
    write(tmp_path / "ws" / ".hearth.toml",
          "[model]\ncontextLength = 1000\nthreads = 1\nbatchSize = 64\n")
    environ = {"HEARTH_CONFIG_FILE": str(user), "HEARTH_MODEL_THREADS": "3",
               "HEARTH_MODEL_BATCH_SIZE": "256"}
    sources = SettingsSources(root=tmp_path / "ws", environ=environ,
                              initialization_options={"model": {"batchSize": 512}},
                              client_configuration={"model": {"gpuLayers": 7}})
    r = sources.resolve()
    m = r.settings.model
    assert (m.context_length, m.threads, m.batch_size, m.gpu_layers) == (1000, 3, 512, 7)
    assert r.settings.docstring.temperature == 0.5
    assert r.sources["model.contextLength"] == ".hearth.toml"
    assert r.sources["model.threads"] == "environment"
    assert r.sources["model.batchSize"] == "initializationOptions"
    assert r.sources["model.gpuLayers"] == "workspace/configuration"
    assert r.sources["docstring.temperature"] == "user config"


def test_editor_configuration_wins_over_initialization_options():
    r = resolve([flatten({"docstring": {"maxTokens": 10}}, "initializationOptions"),
                 flatten({"hearth": {"docstring": {"maxTokens": 20}}}, "workspace/configuration")])
    assert r.settings.docstring.max_tokens == 20


def test_all_spellings_and_dotted_keys():
    r = resolve([flatten({"model.gpu-layers": 3, "docstring": {"top_k": 5, "topP": 0.5}}, "x")])
    assert r.settings.model.gpu_layers == 3
    assert (r.settings.docstring.top_k, r.settings.docstring.top_p) == (5, 0.5)


def test_invalid_values_are_reported_by_key_and_layer_and_lower_layer_kept():
    r = resolve([flatten({"model": {"threads": 4}}, "low"),
                 flatten({"model": {"threads": 0, "preset": "gpt-9", "contextLength": "big"},
                          "docstring": {"temperature": True}}, "high")])
    assert r.settings.model.threads == 4
    assert r.settings.model.preset == "gemma3-270m"
    assert r.settings.model.context_length == 4096
    assert r.settings.docstring.temperature == 0.1
    text = "\n".join(r.problems)
    assert "high: model.threads: must be at least 1" in text
    assert "model.preset: expected one of smollm2, gemma3-270m" in text
    assert "model.contextLength: expected an integer" in text
    assert "docstring.temperature: expected a number" in text


def test_unknown_keys_and_sections_are_problems_not_crashes():
    r = resolve([flatten({"model": {"colour": 1}, "nosuch": {"a": 1}, "flat": 2}, "editor")])
    assert any("unknown setting model.colour" in p for p in r.problems)
    assert any("unknown section 'nosuch'" in p for p in r.problems)
    assert any("unknown setting 'flat'" in p for p in r.problems)
    assert resolve([flatten(["not", "a", "dict"], "editor")]).problems  # type: ignore[arg-type]


def test_the_clients_own_keys_in_the_hearth_section_are_not_problems():
    # VS Code's whole `hearth` section also holds how to start the server.
    r = resolve([flatten({"hearth": {"serverPath": "/bin/hearth", "pythonPath": None,
                                     "review": {"onSave": "off"}}}, "editor")])
    assert r.problems == []
    assert r.settings.review.on_save == "off"


def test_environment_values_are_parsed():
    layer = env_layer({"HEARTH_MODEL_GPU_LAYERS": "none", "HEARTH_DOCSTRING_STOP": "a,b",
                       "HEARTH_DOCSTRING_TEMPERATURE": "0.7", "HEARTH_CACHE_DIR": "/x",
                       "HEARTH_BOGUS": "1", "PATH": "/bin"})
    r = resolve([layer])
    assert r.settings.model.gpu_layers is None
    assert r.settings.docstring.stop == ["a", "b"]
    assert r.settings.docstring.temperature == 0.7
    assert r.problems == ["environment: unknown setting variable HEARTH_BOGUS"]
    bad = resolve([env_layer({"HEARTH_MODEL_THREADS": "many"})])
    assert "expected an integer" in bad.problems[0]


def test_nan_and_infinity_are_not_numbers_a_setting_takes():
    layer = flatten({"completion": {"temperature": float("nan")},
                     "review": {"minP": float("inf")}}, "editor")
    r = resolve([layer])
    assert [p.split(": ", 2)[1] for p in r.problems] == ["completion.temperature",
                                                         "review.minP"]
    assert r.settings.completion.temperature == SPECS["completion", "temperature"].default
    assert "expected a finite number, got nan" in r.problems[0]


def test_values_past_reason_are_problems_quoted_short():
    deep = env_layer({"HEARTH_INDEX_EXCLUDE": "[" * 5000 + "]" * 5000})
    huge = flatten({"review": {"onSave": "x" * 300_000}}, "editor")
    r = resolve([deep, huge])
    assert [p.split(": ", 2)[1] for p in r.problems] == ["index.exclude", "review.onSave"]
    assert "nested too deep" in r.problems[0]
    assert len(r.problems[1]) < 400


def test_broken_toml_is_a_problem(tmp_path):
    write(tmp_path / ".hearth.toml", "[model\npreset=")
    r = SettingsSources(root=tmp_path, environ={"HEARTH_CONFIG_FILE": str(tmp_path / "none")}).resolve()
    assert r.problems and "cannot read" in r.problems[0]
    assert r.settings.model.preset == "gemma3-270m"
    # Valid TOML nested past Python's recursion limit: a problem, not a RecursionError
    # out of `hearth config`, every command and the LSP initialize.
    write(tmp_path / ".hearth.toml", "x = " + "[" * 3000 + "]" * 3000 + "\n")
    r = SettingsSources(root=tmp_path, environ={"HEARTH_CONFIG_FILE": str(tmp_path / "none")}).resolve()
    assert r.problems == [f".hearth.toml: cannot read {tmp_path / '.hearth.toml'}: nested too deep"]


def test_changed_keys_and_reload_flags():
    a = resolve([])
    b = resolve([flatten({"model": {"path": "/m.gguf"}, "docstring": {"seed": 3}}, "x")])
    changed = b.changed_keys(a)
    assert changed == {("model", "path"), ("docstring", "seed")}
    assert SPECS[("model", "path")].reload and not SPECS[("docstring", "seed")].reload


def test_key_spelling_helpers_round_trip():
    for _section, name in SPECS:
        assert to_snake(to_camel(name)) == name
    assert as_dict(resolve([]).settings)["model"]["gpuLayers"] is None


def test_a_settings_old_values_read_as_its_new_ones(tmp_path):
    # commit.fromStructure was true/false before it had `first` and `auto`: a user's
    # file or variable with the old value keeps its meaning, not a problem.
    user = write(tmp_path / "user.toml", "[commit]\nfromStructure = false\n")
    r = SettingsSources(root=tmp_path, environ={"HEARTH_CONFIG_FILE": str(user)}).resolve()
    assert r.settings.commit.from_structure == "off" and r.problems == []
    r = resolve([env_layer({"HEARTH_COMMIT_FROM_STRUCTURE": "true"})])
    assert r.settings.commit.from_structure == "fallback" and r.problems == []
    bad = resolve([flatten({"commit": {"fromStructure": 1}}, "x")])
    assert bad.settings.commit.from_structure == "auto" and "expected a string" in bad.problems[0]


def test_a_settings_file_that_is_no_regular_file_or_too_big_is_a_problem(tmp_path):
    # A repository's `.hearth.toml` may be a link to /dev/zero (read until memory runs
    # out) or a FIFO (opening it waits for a writer): named, never read.
    import os

    user = write(tmp_path / "config.toml", "[docstring]\nmax_tokens = 99\n")
    environ = {"HEARTH_CONFIG_FILE": str(user)}
    ws = tmp_path / "ws"
    ws.mkdir()
    toml = ws / ".hearth.toml"
    for make, reason in ((lambda: toml.symlink_to("/dev/zero"), "not a regular file"),
                         (lambda: os.mkfifo(toml), "not a regular file"),
                         (lambda: toml.write_text("#" * (1 << 20) + "\n"), "larger than 1 MiB")):
        make()
        r = SettingsSources(root=ws, environ=environ).resolve()
        assert [p for p in r.problems if reason in p and str(toml) in p], r.problems
        assert r.settings.docstring.max_tokens == 99  # the other layers still apply
        toml.unlink()
