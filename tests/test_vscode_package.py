"""The VS Code extension's settings schema mirrors the server's settings."""

from __future__ import annotations

import json
from pathlib import Path

from hearth_lsp.server.settings import vscode_properties, vscode_restricted

PACKAGE = Path(__file__).resolve().parent.parent / "clients" / "vscode" / "package.json"


def test_package_json_settings_are_the_servers():
    props = json.loads(PACKAGE.read_text())["contributes"]["configuration"]["properties"]
    client_only = {"hearth.serverPath", "hearth.pythonPath"}
    assert {k: v for k, v in props.items() if k not in client_only} == vscode_properties(), (
        "regenerate with: hearth config --vscode-schema (into contributes.configuration)")
    assert client_only <= set(props)


def test_an_untrusted_workspace_cannot_set_where_code_goes_or_what_runs():
    """A cloned repository's .vscode/settings.json set hearth.backends and
    hearth.routes.* (not restricted): code went to its server, its apiKeyCommand ran."""
    package = json.loads(PACKAGE.read_text())
    restricted = package["capabilities"]["untrustedWorkspaces"]["restrictedConfigurations"]
    assert restricted == vscode_restricted(), "regenerate from settings.vscode_restricted()"
    assert {"hearth.backends", "hearth.routes.completion", "hearth.tests.python",
            "hearth.privacy.localOnly", "hearth.tests.requireIsolation"} <= set(restricted)


def test_every_palette_command_is_registered_by_the_extension():
    package = json.loads(PACKAGE.read_text())
    source = (PACKAGE.parent / "src" / "extension.ts").read_text()
    for command in package["contributes"]["commands"]:
        assert f"'{command['command']}'" in source, command["command"]
