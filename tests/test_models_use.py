"""`hearth models use NAME|PATH [--workspace]`: the setting written into the user
config or the workspace's .hearth.toml, the rest of the file kept as it was."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from models_helpers import run_models, tiny_gguf

from hearth_lsp.server.models_cli import ConfigError, set_model_setting
from hearth_lsp.server.settings import SettingsSources, toml_layer, user_config_path
from hearth_lsp.server.trust import set_trusted


def tiny(path: Path) -> Path:
    return tiny_gguf(path, name="Tiny", context=512)


run = run_models


USER_CONFIG = """\
# my Hearth settings
[model]
preset = "gemma3-270m"   # the base model
gpuLayers = 0

[review]
onSave = "changed"  # keep
"""


def test_a_table_is_edited_in_place_with_comments_kept():
    text = set_model_setting(USER_CONFIG, {"path": "/m/coder.gguf"})
    assert text == USER_CONFIG.replace('gpuLayers = 0\n',
                                       'gpuLayers = 0\npath = "/m/coder.gguf"\n')
    text = set_model_setting(text, {"preset": "smollm2"}, drop=("path",))
    assert text == USER_CONFIG.replace('"gemma3-270m"', '"smollm2"')


def test_dotted_keys_and_the_editor_wrapper():
    text = set_model_setting('"model.path" = "/old.gguf"\nmodel.threads = 4\n',
                             {"path": "/new.gguf"})
    assert "/old.gguf" not in text and "threads = 4" in text
    import tomllib

    assert tomllib.loads(text)["model"] == {"threads": 4, "path": "/new.gguf"}
    wrapped = set_model_setting('[hearth.model]\npreset = "gemma3-270m"\n',
                                {"preset": "smollm2"})
    assert tomllib.loads(wrapped) == {"hearth": {"model": {"preset": "smollm2"}}}


def test_an_empty_file_and_bad_toml():
    import tomllib

    assert tomllib.loads(set_model_setting("", {"preset": "smollm2"})) == {
        "model": {"preset": "smollm2"}}
    with pytest.raises(ConfigError):
        set_model_setting("[model\npreset = 1\n", {"preset": "smollm2"})
    with pytest.raises(ConfigError, match="not a table"):
        set_model_setting('model = "smollm2"\n', {"preset": "smollm2"})


@pytest.fixture
def home(tmp_path, monkeypatch):
    """Nothing but the bundled models to find; the config file in tmp_path."""
    for var in ("OLLAMA_MODELS", "HF_HUB_CACHE", "HF_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HEARTH_CONFIG_FILE", str(tmp_path / "conf" / "config.toml"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_use_a_bundled_preset_writes_the_user_config(home):
    config = user_config_path()
    config.parent.mkdir()
    config.write_text(USER_CONFIG.replace("gpuLayers = 0\n", 'gpuLayers = 0\npath = "/x.gguf"\n'))
    code, out = run(["models", "use", "smollm2"])
    assert code == 0, out
    assert config.read_text() == USER_CONFIG.replace('"gemma3-270m"', '"smollm2"')
    assert f'model.preset = "smollm2" written to {config}' in out
    assert "when the server restarts" in out
    model = SettingsSources(root=home).resolve().settings.model
    assert (model.preset, model.path) == ("smollm2", None)


def test_use_a_file_writes_its_absolute_path(home):
    local = tiny(home / "models" / "mine.gguf")
    code, out = run(["models", "use", "models/mine.gguf"])  # relative to the cwd
    assert code == 0, out
    layer = toml_layer(user_config_path(), "user config")
    assert layer.values[("model", "path")] == str(local.resolve())
    assert SettingsSources(root=home).resolve().settings.model.path == str(local.resolve())


def test_the_bundled_file_by_its_path_is_the_preset(home, smollm2_path):
    link = home / "smol.gguf"
    os.symlink(smollm2_path, link)
    code, out = run(["models", "use", str(link)])
    assert code == 0, out
    assert toml_layer(user_config_path(), "u").values == {("model", "preset"): "smollm2"}


def test_a_linked_config_is_written_through_and_stays_a_link(home, capsys):
    dotfiles = home / "dotfiles" / "hearth.toml"
    dotfiles.parent.mkdir()
    dotfiles.write_text(USER_CONFIG)
    config = user_config_path()
    config.parent.mkdir()
    config.symlink_to(dotfiles)
    assert run(["models", "use", "smollm2"])[0] == 0
    assert config.is_symlink() and 'preset = "smollm2"' in dotfiles.read_text()
    dotfiles.write_bytes(b"# caf\xe9\n[model]\n")  # Latin-1: refused, kept as it is
    code, _ = run(["models", "use", "gemma3-270m"])
    assert code == 1 and "is not valid TOML (not UTF-8" in capsys.readouterr().err
    assert dotfiles.read_bytes() == b"# caf\xe9\n[model]\n"


def test_an_existing_files_mode_is_kept(home):
    config = user_config_path()
    config.parent.mkdir()
    config.write_text("[model]\n")
    config.chmod(0o600)
    assert run(["models", "use", "smollm2"])[0] == 0
    assert config.stat().st_mode & 0o777 == 0o600


def test_use_workspace_in_a_trusted_folder(home):
    model = tiny(home / "m" / "team.gguf")
    ws = home / "ws"
    ws.mkdir()
    (ws / ".hearth.toml").write_text("# team settings\n[review]\nonSave = \"off\"\n")
    set_trusted(ws, True)
    code, out = run(["models", "use", str(model), "--workspace", "--root", str(ws)])
    assert code == 0, out
    text = (ws / ".hearth.toml").read_text()
    assert text == f'# team settings\n[review]\nonSave = "off"\n\n[model]\npath = "{model}"\n'
    assert not user_config_path().exists()  # the user config is untouched
    resolved = SettingsSources(root=ws).resolve()
    assert resolved.sources["model.path"] == ".hearth.toml"


def test_use_workspace_in_an_untrusted_folder_says_it_does_not_apply(home):
    model = tiny(home / "m" / "team.gguf")
    ws = home / "ws"
    ws.mkdir()
    code, out = run(["models", "use", str(model), "--workspace", "--root", str(ws)])
    assert code == 0
    assert "is not a trusted folder" in out and f"hearth trust {ws}" in out


def test_a_higher_layer_that_still_wins_is_named(home, monkeypatch, smollm2_path):
    monkeypatch.setenv("HEARTH_MODEL_PATH", str(smollm2_path))
    code, out = run(["models", "use", "smollm2"])
    assert code == 0
    assert "still replaces the preset" in out and "environment" in out


def test_unknown_names_problems_and_bad_toml_write_nothing(home, capsys):
    code, _ = run(["models", "use", "no-such-model"])
    assert code == 1 and "no model named 'no-such-model'" in capsys.readouterr().err
    bad = home / "bad.gguf"
    bad.write_bytes(b"PK\x03\x04 not a model" * 10)
    code, _ = run(["models", "use", str(bad)])
    assert code == 1 and "cannot be used" in capsys.readouterr().err
    assert not user_config_path().exists()
    code, _ = run(["models", "use", "smollm2", "--workspace", "--root", str(home / "gone")])
    assert code == 1 and "gone is not a folder" in capsys.readouterr().err
    assert not (home / "gone").exists()
    user_config_path().parent.mkdir()
    user_config_path().write_text("[model\n")
    code, _ = run(["models", "use", "smollm2"])
    assert code == 1 and "not valid TOML" in capsys.readouterr().err
    assert user_config_path().read_text() == "[model\n"


def test_two_windows_assembling_the_gemma_preset_at_once_both_get_it_whole(tmp_path):
    """The first start of two editor windows: both assemble the bundled Gemma into the
    cache. With one temporary name, the second's open truncated the file the first was
    writing, and one of them failed its checksum."""
    import threading

    from hearth_lsp.server.models import _gemma_path

    got: list[object] = []

    def start() -> None:
        try:
            got.append(_gemma_path(tmp_path))
        except Exception as exc:  # noqa: BLE001 - the test reports it
            got.append(exc)

    threads = [threading.Thread(target=start) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    target = tmp_path / "models" / "gemma-3-270m-q4_k_m.gguf"
    assert got == [target, target]
    assert [p.name for p in target.parent.iterdir()] == [target.name]  # no .partial left
