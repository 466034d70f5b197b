"""The one module that knows every feature: it makes the server and registers them.

A feature module (``features/*.py``) offers ``KINDS`` (its code action kinds),
``actions(ls, doc, params)`` (cheap: no model), ``COMMANDS`` (name -> handler) and,
where it cares, ``resolve``, ``on_save``, ``on_change`` and ``on_close``. Adding a
task is a folder under ``server/tasks/``, a module here in ``features/`` and one
line in ``FEATURES``.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from types import ModuleType
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams
from pygls.uris import to_fs_path

from ..settings import SPECS
from ..trust import is_trusted, set_trusted, trust_for_session
from .common import no_actions_reason, resolve_command_action
from .features import commit, completion, docs, review, testgen, workspace
from .server import HearthServer

log = logging.getLogger("hearth")

FEATURES: tuple[ModuleType, ...] = (docs, testgen, review, commit, workspace, completion)

# The code action list in this order: quick fixes, then the symbol's own actions
# (Neovim numbers the menu: the docstring is 1), then the file's. Kinds not named
# here come last.
ACTION_ORDER = [types.CodeActionKind.QuickFix, docs.DOCSTRING_KIND, testgen.TESTS_KIND,
                review.SYMBOL_REVIEW_KIND, review.REVIEW_KIND, docs.DOCUMENT_FILE_KIND]


def create_server(**kwargs: Any) -> HearthServer:
    server = HearthServer(**kwargs)
    register(server)
    return server


def register(ls: HearthServer) -> None:
    ls.feature(types.INITIALIZE)(initialize)
    ls.feature(types.INITIALIZED)(initialized)
    ls.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)(did_change_configuration)
    ls.feature(types.SHUTDOWN)(shutdown)
    ls.feature(types.TEXT_DOCUMENT_CODE_ACTION, types.CodeActionOptions(
        code_action_kinds=[k for f in FEATURES for k in f.KINDS],
        resolve_provider=True))(code_action)
    ls.feature(types.CODE_ACTION_RESOLVE)(code_action_resolve)
    for feature in FEATURES:
        for name, handler in feature.COMMANDS.items():
            ls.command(name)(handler)
    ls.command(CMD_TRUST)(command_trust)
    ls.feature(types.WINDOW_WORK_DONE_PROGRESS_CANCEL)(progress_cancel)
    ls.feature(types.TEXT_DOCUMENT_DID_CHANGE)(did_change)
    ls.feature(types.TEXT_DOCUMENT_DID_CLOSE)(did_close)
    ls.feature(types.TEXT_DOCUMENT_DID_SAVE)(did_save)
    ls.feature(types.WORKSPACE_SYMBOL)(workspace.workspace_symbol)
    ls.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION,
               types.InlineCompletionOptions())(completion.inline_completion)
    ls.feature(types.TEXT_DOCUMENT_COMPLETION,
               types.CompletionOptions(resolve_provider=False))(completion.completion)
    ls.feature(types.WORKSPACE_DID_CHANGE_WATCHED_FILES)(did_change_watched_files)
    ls.feature(types.WORKSPACE_DID_CHANGE_WORKSPACE_FOLDERS)(did_change_workspace_folders)


def _hooks(name: str) -> list[Any]:
    return [getattr(f, name) for f in FEATURES if hasattr(f, name)]


# ------------------------------------------------------------------- lifecycle


def initialize(ls: HearthServer, params: types.InitializeParams) -> None:
    # Answer at once: the model loads in the background after `initialized`.
    uris = [f.uri for f in params.workspace_folders or []] or (
        [params.root_uri] if params.root_uri else [])
    roots = [Path(p) for p in map(to_fs_path, uris) if p]
    if not roots and params.root_path:
        roots = [Path(params.root_path)]
    options = params.initialization_options
    ls.sources.initialization_options = options
    if isinstance(options, dict) and options.get("workspaceTrusted") is True:
        trust_for_session(roots)  # VS Code's own workspace trust, for this session
    ls.set_folders(list(dict.fromkeys(roots)))
    ls.apply_settings()


async def initialized(ls: HearthServer, params: types.InitializedParams) -> None:
    ls.client_log.loop = asyncio.get_running_loop()
    await _pull_configuration(ls)
    ls.apply_settings()
    ls.start_index()
    ls.watch_user_config()
    await _watch_files(ls)
    await ls.load_model()


async def _watch_files(ls: HearthServer) -> None:
    """Ask the client to report file changes (it sees edits outside the editor too).

    The server's own watchdog observer covers clients that cannot do this;
    a change reported twice costs one hash comparison.
    """
    caps = ls.client_capabilities.workspace
    watched = caps.did_change_watched_files if caps else None
    indexed = any(f.index is not None for f in ls.folders.values())
    if not indexed or not (watched and watched.dynamic_registration):
        return
    options = types.DidChangeWatchedFilesRegistrationOptions(
        watchers=[types.FileSystemWatcher(glob_pattern="**/*")])
    try:
        await ls.client_register_capability_async(types.RegistrationParams(registrations=[
            types.Registration(id="hearth-watched-files",
                               method=types.WORKSPACE_DID_CHANGE_WATCHED_FILES,
                               register_options=options)]))
    except Exception as exc:  # the index still has its own watcher
        log.info("client did not register file watchers: %s", exc)


async def _pull_configuration(ls: HearthServer) -> None:
    caps = ls.client_capabilities.workspace
    if not (caps and caps.configuration):
        return
    try:
        result = await ls.workspace_configuration_async(types.ConfigurationParams(
            items=[types.ConfigurationItem(section="hearth")]))
    except Exception as exc:  # a client that fails here must not stop the server
        log.warning("workspace/configuration failed: %s", exc)
        return
    if result and isinstance(result[0], dict):
        ls.sources.client_configuration = result[0]


async def did_change_configuration(ls: HearthServer,
                                   params: types.DidChangeConfigurationParams) -> None:
    pushed = params.settings
    if isinstance(pushed, dict) and pushed:
        ls.sources.client_configuration = pushed.get("hearth", pushed)
    else:  # the "pull" model: the notification only says something changed
        await _pull_configuration(ls)
    changed = ls.apply_settings()
    for hook in _hooks("on_settings"):
        hook(ls)
    log.info("settings changed: %s", ", ".join(
        SPECS[k].key if k in SPECS else ".".join(k) for k in sorted(changed)) or "none")
    if changed:  # a new model.*, or a route that now names the local model: load_model
        await ls.load_model()  # does nothing when the loaded model is still the one


def shutdown(ls: HearthServer, params: None) -> None:
    for hook in _hooks("on_shutdown"):
        hook(ls)
    ls.worker.shutdown()
    ls.stop_index()


def progress_cancel(ls: HearthServer, params: types.WorkDoneProgressCancelParams) -> None:
    ls.progress_cancelled(params.token)


CMD_TRUST = "hearth.trustFolder"


async def command_trust(ls: HearthServer, *args: Any) -> dict[str, Any]:
    """`hearth.trustFolder` [{uri?, persist?, trusted?}]: the user trusts a workspace folder
    (every folder without ``uri``), for this session or (``persist``) in the trust file;
    its `.hearth.toml` and prompt overrides then apply in full."""
    params = args[0] if args and args[0] is not None else {}
    if not isinstance(params, dict) or set(params) - {"uri", "persist", "trusted"}:
        # Not "every folder": a client's mistake ({"url": ...}, a bare URI string).
        raise JsonRpcInvalidParams('expected [{"uri"?: folder URI, "persist"?: bool, '
                                   '"trusted"?: bool}]')
    uri = params.get("uri")
    if uri is not None and not isinstance(uri, str):
        raise JsonRpcInvalidParams("'uri' must be a folder URI")
    folders = [f.root for f in ls.folders.values()] if uri is None else [
        f.root for f in ls.folders.values() if f.root == _uri_path(uri)]
    if not folders:
        raise JsonRpcInvalidParams(f"{uri or 'no folder'} is not a workspace folder")
    trusted = params.get("trusted", True) is not False
    if params.get("persist"):
        for root in folders:
            set_trusted(root, trusted, ls.environ)
    elif trusted:
        trust_for_session(folders)
    else:
        raise JsonRpcInvalidParams("untrusting is persistent: pass persist: true")
    if ls.apply_settings():
        await ls.load_model()
    return {"trusted": [str(r) for r in folders if is_trusted(r, ls.environ)]}


# ----------------------------------------------------------------- code actions


async def code_action(ls: HearthServer,
                      params: types.CodeActionParams) -> list[types.CodeAction]:
    """Cheap: parse the file and offer actions. The model runs only on resolve/command.
    The parsing runs off the event loop, so a large file never holds up other requests."""
    doc = ls.get_document(params.text_document.uri)
    ls.check_position(doc, params.range.start)
    ls.check_position(doc, params.range.end)
    source = doc.source
    refused = no_actions_reason(source)
    if refused:
        ls.say_once(("no-actions", doc.uri), f"Hearth: no actions for {doc.uri.rsplit('/', 1)[-1]}: "
                    f"{refused}")
        return []

    def collect() -> list[types.CodeAction]:
        found = []
        for feature in FEATURES:
            try:
                found.extend(feature.actions(ls, doc, params))
            except Exception as exc:  # one feature's failure leaves the others' actions
                log.warning("%s actions failed on %s: %s", feature.__name__.rsplit(".", 1)[-1],
                            doc.uri, exc)
        return found

    found = await asyncio.to_thread(collect)
    rank = {kind: n for n, kind in enumerate(ACTION_ORDER)}
    return sorted(found, key=lambda a: rank.get(a.kind or "", len(rank)))




async def code_action_resolve(ls: HearthServer, action: types.CodeAction) -> types.CodeAction:
    if resolve_command_action(action):  # the command runs the model, not the resolve
        return action
    return await docs.resolve(ls, action)


# ------------------------------------------------------------- document events


def _uri_path(uri: str) -> Path | None:
    """The file system path of a file URI; None for other URIs and for paths the file
    system cannot be asked about (JSON allows lone surrogates in strings)."""
    fs = to_fs_path(uri)
    if not fs:
        return None
    try:
        fs.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return Path(fs)


def did_save(ls: HearthServer, params: types.DidSaveTextDocumentParams) -> None:
    uri = params.text_document.uri
    path = _uri_path(uri)
    if path is not None:
        ls.files_changed([path])
    for hook in _hooks("on_save"):
        hook(ls, uri)


def did_change(ls: HearthServer, params: types.DidChangeTextDocumentParams) -> None:
    for hook in _hooks("on_change"):
        hook(ls, params)


def did_close(ls: HearthServer, params: types.DidCloseTextDocumentParams) -> None:
    for hook in _hooks("on_close"):
        hook(ls, params.text_document.uri)


def did_change_watched_files(ls: HearthServer, params: types.DidChangeWatchedFilesParams) -> None:
    ls.files_changed([p for p in (_uri_path(c.uri) for c in params.changes) if p is not None])


def did_change_workspace_folders(ls: HearthServer,
                                 params: types.DidChangeWorkspaceFoldersParams) -> None:
    """Each folder has its own root, index and `.hearth.toml`."""
    for removed in params.event.removed:
        path = _uri_path(removed.uri)
        if path is not None:
            ls.remove_folder(path)
    for added in params.event.added:
        path = _uri_path(added.uri)
        if path is not None:
            ls.add_folder(path)
