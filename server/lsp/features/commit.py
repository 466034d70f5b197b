"""`hearth.generateCommitMessage`: a validated message for the staged changes.

The server never commits: it returns the message and the client puts it where
the user writes one (VS Code's Source Control box, a `gitcommit` buffer).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams
from pygls.uris import to_fs_path

from ...tasks.commit.gitdiff import staged_since, toplevel
from ...tasks.commit.run import generate_commit_message
from ..common import RequestFailed, call_soon, failures_reported
from ..server import HearthServer

CMD_COMMIT_MESSAGE = "hearth.generateCommitMessage"
KINDS: list[str] = []


def _encodable(text: str) -> bool:
    """A path the file system can be asked about (JSON allows lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


async def command_commit_message(ls: HearthServer, *args: Any) -> dict[str, Any]:
    """[{repo?: path or file URI}] -> {message, notices, staged, summarised, fromStructure, source,
    files}."""
    params = args[0] if args else {}
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise JsonRpcInvalidParams('expected [{"repo"?: string}]')
    repo_arg = params.get("repo")
    if repo_arg is not None and (not isinstance(repo_arg, str) or "\0" in repo_arg
                                 or not _encodable(repo_arg)):
        raise JsonRpcInvalidParams("'repo' must be a path or a file URI")
    if repo_arg:
        repo = Path(to_fs_path(repo_arg) or repo_arg) if repo_arg.startswith("file:") \
            else Path(repo_arg)
    elif ls.root is not None:
        repo = ls.root
    else:
        raise JsonRpcInvalidParams("no workspace folder: open a folder first")
    try:
        repo = repo.resolve()
    except (OSError, ValueError) as exc:  # a NUL decoded from %00
        raise JsonRpcInvalidParams(f"'repo' cannot be used: {exc}") from None
    if ls.folder_of(str(repo)) is None:  # the model must not read other repositories
        raise RequestFailed(f"{repo} is outside the workspace folders; Hearth writes commit "
                            "messages only for repositories inside them")
    top = await asyncio.to_thread(toplevel, repo)
    if top is not None and ls.folder_of(str(top)) is None:
        # A workspace inside a larger repository (a monorepo's folder, a home kept in
        # git): the staged diff is the whole repository's, files outside the folder too.
        raise RequestFailed(f"the repository holding {repo} is {top}, larger than the "
                            "workspace folder: its staged changes reach outside it; open "
                            f"{top} as the workspace to write its commit message")
    loop = asyncio.get_running_loop()

    async with ls.task("Hearth: commit message", ("commit", str(repo)), route="commit",
                       uri=repo.as_uri()) as report:
        assert report.run is not None
        settings = ls.settings_of(repo.as_uri())
        with failures_reported(report):
            # The model file's size, known before its load ends: with a small model
            # (commit.fromStructure "auto") Hearth's own subject needs no model at all.
            result = await generate_commit_message(
                report.run, settings, repo, root=ls.root_of(repo.as_uri()),
                progress=lambda message: call_soon(loop, report, message),
                model_bytes=ls.model_bytes(settings, "commit"))
        report.end(f"done in {result.seconds:.1f} s")
    moved = await asyncio.to_thread(staged_since, result.changes)
    if moved:
        result.notices.append(moved)
        ls.show(f"Hearth: {moved}", types.MessageType.Warning)
    return {"message": result.message, "notices": result.notices,
            "staged": result.changes.staged, "summarised": result.summarised,
            "fromStructure": result.from_structure, "source": result.source,
            "repo": str(result.changes.repo),
            "files": [{"path": f.path, "status": f.status, "leftOut": f.left_out or None}
                      for f in result.changes.files]}


def actions(ls: HearthServer, doc: Any, params: Any) -> list:
    return []  # a commit message is asked for from the Source Control view, not the code


COMMANDS = {CMD_COMMIT_MESSAGE: command_commit_message}
