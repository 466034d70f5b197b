"""Review through LSP: code actions, `hearth.review`, review on save, diagnostics, quick fixes.

Findings arrive as `textDocument/publishDiagnostics` (source `hearth`, the
category as code), tied to the document version they were computed for. A
newer save cancels the running review of that document; an edit removes the
diagnostics on the lines it touched.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcContentModified, JsonRpcInvalidParams
from pygls.uris import to_fs_path
from pygls.workspace import TextDocument
from pygls.workspace.position_codec import ServerTextPosition

from ....indexer.languages import language_of
from ...engine.base import EngineError
from ...engine.worker import Priority
from ...tasks.commit.gitdiff import head_text
from ...tasks.review import findings as review
from ...tasks.review.run import review_code, review_spans_for, review_summary
from ...tasks.review.state import spans_to_review
from ...tasks.runner import Refusal, TaskCancelled, count
from ..common import (
    RequestFailed,
    call_soon,
    check_usable,
    command_action,
    no_actions_reason,
    wants_kind,
)
from ..edits import versioned_edit
from ..server import HearthServer

log = logging.getLogger("hearth")

CMD_REVIEW = "hearth.review"
REVIEW_KIND = types.CodeActionKind.Source + ".hearth.review"
SYMBOL_REVIEW_KIND = types.CodeActionKind.Refactor + ".hearth.review"
KINDS = [REVIEW_KIND, SYMBOL_REVIEW_KIND, types.CodeActionKind.QuickFix]
SOURCE = "hearth"
_SEVERITY = {"error": types.DiagnosticSeverity.Error, "warning": types.DiagnosticSeverity.Warning,
             "info": types.DiagnosticSeverity.Information}


# ----------------------------------------------------------------- actions


def actions(ls: HearthServer, doc: TextDocument,
            params: types.CodeActionParams) -> list[types.CodeAction]:
    return [*quick_fixes(ls, doc, params), *review_actions(ls, doc, params)]


def review_actions(ls: HearthServer, doc: TextDocument,
                   params: types.CodeActionParams) -> list[types.CodeAction]:
    """Cheap: "Review <symbol>" / "Review selection" / "Review file" (run as a command)."""
    lang = language_of(to_fs_path(doc.uri) or doc.uri, doc.language_id)
    if lang is None:
        return []
    out = []
    rng = params.range
    line = rng.start.line
    if wants_kind(params.context.only, SYMBOL_REVIEW_KIND):
        spans = review_spans_for(doc.source, doc.uri, lang, lines={line}, limit=50)
        inner = min(spans, key=lambda s: s.end - s.start) if spans else None
        if rng.end.line > rng.start.line:  # a selection of whole lines
            args = {"uri": doc.uri, "scope": "selection", "start": rng.start.line,
                    "end": rng.end.line - (1 if rng.end.character == 0 else 0)}
            out.append(_action(ls, "Hearth: Review selection", SYMBOL_REVIEW_KIND, args))
        elif inner is not None:
            args = {"uri": doc.uri, "scope": "symbol", "line": line}
            out.append(_action(ls, f"Hearth: Review {inner.label}", SYMBOL_REVIEW_KIND, args))
    if wants_kind(params.context.only, REVIEW_KIND):
        out.append(_action(ls, "Hearth: Review file", REVIEW_KIND, {"uri": doc.uri, "scope": "file"}))
    return out


def quick_fixes(ls: HearthServer, doc: TextDocument,
                params: types.CodeActionParams) -> list[types.CodeAction]:
    """A finding with an exact replacement becomes a quick fix, if the code is unchanged."""
    if not wants_kind(params.context.only, types.CodeActionKind.QuickFix):
        return []
    out = []
    lines = doc.lines
    for diag in params.context.diagnostics:
        data = diag.data if isinstance(diag.data, dict) else None
        if diag.source != SOURCE or not data or not isinstance(data.get("replacement"), str):
            continue
        start = doc.position_codec.position_from_client_units(lines, diag.range.start)
        end = doc.position_codec.position_from_client_units(lines, diag.range.end)
        if start.line >= len(lines) or lines[start.line][start.character:end.character] != \
                data.get("quote"):
            continue  # the code moved on since the review
        out.append(types.CodeAction(
            title=f"Hearth: replace with `{data['replacement'][:60]}`",
            kind=types.CodeActionKind.QuickFix, diagnostics=[diag], is_preferred=True,
            edit=versioned_edit(doc, diag.range.start, diag.range.end, data["replacement"])))
    return out


def _action(ls: HearthServer, title: str, kind: str, args: dict) -> types.CodeAction:
    return command_action(ls, title, kind, CMD_REVIEW, args)



# ----------------------------------------------------------------- command


async def command_review(ls: HearthServer, *args: Any) -> dict[str, Any]:
    """`hearth.review` [{uri, scope: symbol|selection|file, line?, start?, end?}]."""
    data = args[0] if args else None
    if not isinstance(data, dict):
        raise JsonRpcInvalidParams('expected [{"uri": ..., "scope": "symbol"|"selection"|"file"}]')
    doc = ls.get_document(data.get("uri"))
    source, version = doc.source, doc.version
    check_usable(doc.uri, source, "review")
    lang = language_of(to_fs_path(doc.uri) or doc.uri, doc.language_id)
    scope = data.get("scope", "file")
    n_lines = max(1, len(doc.lines))
    # The parse runs in a thread: its Python half lets other requests through.
    if scope == "file":
        spans = await asyncio.to_thread(review_spans_for, source, doc.uri, lang,
                                        limit=ls.settings_of(doc.uri).review.max_symbols)
    elif scope == "symbol":
        line = data.get("line")
        if not isinstance(line, int) or not 0 <= line < n_lines:
            raise JsonRpcInvalidParams(f"'line' must be an integer from 0 to {n_lines - 1}")
        found = await asyncio.to_thread(review_spans_for, source, doc.uri, lang,
                                        lines={line}, limit=50)
        if not found:
            raise RequestFailed(f"no function or definition at line {line + 1}")
        spans = [min(found, key=lambda s: s.end - s.start)]
    elif scope == "selection":
        start, end = data.get("start"), data.get("end")
        if not (isinstance(start, int) and isinstance(end, int) and 0 <= start <= end < n_lines):
            raise JsonRpcInvalidParams(f"'start' and 'end' must be lines from 0 to {n_lines - 1}")
        spans = [review.Span(start, end, f"lines {start + 1}-{end + 1}")]
    else:
        raise JsonRpcInvalidParams("'scope' must be symbol, selection or file")
    if not ls.still_open(doc, version):  # edited while it was parsed: spans of older text
        raise JsonRpcContentModified(f"{doc.uri} changed while Hearth read it; review again")
    findings, unreviewed = await run_review(ls, doc, spans, interactive=True) if spans \
        else (0, [])
    reviewed = [s.label for s in spans if s.label not in unreviewed]
    return {"findings": findings, "reviewed": reviewed, "notReviewed": unreviewed,
            "summary": review_summary(findings, reviewed, unreviewed)}


async def run_review(ls: HearthServer, doc: TextDocument, spans: list[review.Span], *,
                     interactive: bool) -> tuple[int, list[str]]:
    """Review ``spans`` of ``doc`` and publish; a newer review of the doc cancels this one.
    A review on save (not ``interactive``) runs below the user's own actions. The
    findings published, and the spans not reviewed (the model's answer was no review)."""
    source, version, uri = doc.source, doc.version, doc.uri
    lang = language_of(to_fs_path(uri) or uri, doc.language_id)
    loop = asyncio.get_running_loop()
    path = ls.document_path(doc)
    priority = Priority.USER if interactive else Priority.SAVE
    # A save's review and the user's own have keys of their own: a save never cancels
    # the review the user asked for (a newer save replaces an older save's).
    key = ("review", uri) if interactive else ("review-save", uri)
    async with ls.task("Hearth: review", key, route="review", priority=priority,
                       uri=uri) as report:
        assert report.run is not None
        try:
            results = await review_code(
                report.run, ls.settings_of(uri), source=source, path=path, language=lang,
                spans=spans, root=ls.root_of(uri), context=ls.context_fn(uri),
                progress=lambda m: call_soon(loop, report, m))
        except TaskCancelled:
            report.end("cancelled")
            if interactive:
                raise RequestFailed("the review was cancelled") from None
            return 0, []
        except EngineError as exc:
            report.end(str(exc))
            if interactive:
                raise RequestFailed(f"model unavailable: {exc}") from exc
            log.warning("review on save skipped: %s", exc)
            return 0, []
        except Refusal as exc:  # e.g. a local-only file on a route of model servers only
            report.end(str(exc))
            if interactive:
                raise RequestFailed(str(exc)) from None
            ls.say_once(("no-review", uri, str(exc)), f"Hearth: no review on save for "
                        f"{uri.rsplit('/', 1)[-1]}: {exc}")
            return 0, []
        findings = [f for r in results for f in r.findings]
        dropped = sum(r.dropped for r in results)
        unusable = [r.span.label for r in results if r.unusable]
        current = ls.open_document(uri)
        changed = current is None or current.version != version
        if changed and not interactive:
            # (its functions are not recorded as reviewed: the next save reviews them)
            report.end("not shown: the document changed during the review")
            return 0, unusable
        report.end(count(len(findings), "finding")
                   + (f" ({dropped} dropped by the checks)" if dropped else "")
                   + (f"; not reviewed: {', '.join(unusable)} (the model's answer was no "
                      "review)" if unusable else ""))
    if changed:  # (the user's own review: nothing can change it after the check above)
        raise JsonRpcContentModified(f"{uri} changed during the review; review it again")
    # A span whose answer was no review keeps its findings and is tried again at the
    # next save: it is not recorded as reviewed.
    ls.reviews.replace(uri, [s for s in spans if s.label not in unusable], findings,
                       source=source)
    publish(ls, uri)
    return len(findings), unusable


# ------------------------------------------------------------- diagnostics


def publish(ls: HearthServer, uri: str) -> None:
    doc = ls.open_document(uri)
    if doc is None:
        return
    diagnostics = [to_diagnostic(doc, f) for f in ls.reviews.findings(uri)
                   if f.line < len(doc.lines)]
    ls.text_document_publish_diagnostics(types.PublishDiagnosticsParams(
        uri=uri, version=doc.version, diagnostics=diagnostics))


def to_diagnostic(doc: TextDocument, f: review.Finding) -> types.Diagnostic:
    start = doc.position_codec.position_to_client_units(doc.lines,
                                                        ServerTextPosition(f.line, f.start_col))
    end = doc.position_codec.position_to_client_units(doc.lines,
                                                      ServerTextPosition(f.line, f.end_col))
    data: dict[str, Any] = {"quote": f.quote}
    if f.replacement is not None:
        data["replacement"] = f.replacement
    return types.Diagnostic(range=types.Range(start=start, end=end), message=f.message,
                            severity=_SEVERITY[f.severity], source=SOURCE, code=f.category,
                            data=data)


def document_changed(ls: HearthServer, params: types.DidChangeTextDocumentParams) -> None:
    """Drop findings on edited lines, move the ones below, then check every quote."""
    uri = params.text_document.uri
    if not ls.reviews.findings(uri):
        return
    changed = False
    for change in params.content_changes:
        rng = getattr(change, "range", None)
        if rng is not None:
            changed |= ls.reviews.edit(uri, (rng.start.line, rng.start.character),
                                       (rng.end.line, rng.end.character), change.text)
    doc = ls.open_document(uri)
    if doc is not None:  # whole-document changes, or anything the above missed
        lines = doc.lines
        state = ls.reviews.get(uri)
        still = [f for f in state.findings
                 if f.line < len(lines) and lines[f.line][f.start_col:f.end_col] == f.quote]
        changed |= len(still) != len(state.findings)
        state.findings = still
    if changed:
        publish(ls, uri)


# ------------------------------------------------------------------ on save


def on_save(ls: HearthServer, uri: str) -> None:
    """Start a background review per `review.onSave`; the save itself returns at once."""
    doc = ls.open_document(uri)
    if ls.settings_of(uri).review.on_save == "off" or doc is None:
        return
    # (a newer save's review, when it has anything to review, replaces the one still
    # running for this document: run_review's key)
    state = ls.reviews.get(uri)
    state.saves += 1
    task = asyncio.ensure_future(_review_saved(ls, doc, state.saves))
    ls.background.add(task)
    task.add_done_callback(ls.background.discard)


async def _review_saved(ls: HearthServer, doc: TextDocument, save: int) -> None:
    uri, source, version = doc.uri, doc.source, doc.version
    lang = language_of(to_fs_path(uri) or uri, doc.language_id)
    if lang is None:
        return
    refused = no_actions_reason(source)
    if refused:  # as for code actions: one message, no parse of a huge file
        ls.say_once(("no-review", uri), f"Hearth: no review on save for "
                    f"{uri.rsplit('/', 1)[-1]}: {refused}")
        return
    settings = ls.settings_of(uri).review
    if settings.on_save == "file":
        spans = await asyncio.to_thread(review_spans_for, source, uri, lang,
                                        limit=settings.max_symbols)
    else:
        state = ls.reviews.get(uri)
        every = await asyncio.to_thread(review_spans_for, source, uri, lang, limit=10_000)
        head = None
        if any(s.label not in state.reviewed for s in every):  # git runs off the event loop
            path = to_fs_path(uri)
            head = await asyncio.to_thread(head_text, Path(path)) if path else None
        spans = spans_to_review(source, every, state.reviewed, head)[:settings.max_symbols]
    if not ls.still_open(doc, version):  # edited while git ran: spans of an older text
        return
    if spans and ls.reviews.get(uri).saves == save:  # a newer save has its own review
        await run_review(ls, doc, spans, interactive=False)


def on_change(ls: HearthServer, params: types.DidChangeTextDocumentParams) -> None:
    document_changed(ls, params)


def on_settings(ls: HearthServer) -> None:
    """review.onSave turned off: a review on save still running stops."""
    for uri in list(ls.workspace.text_documents):
        if ls.settings_of(uri).review.on_save == "off":
            ls.cancel_task(("review-save", uri))


def on_close(ls: HearthServer, uri: str) -> None:
    ls.cancel_task(("review", uri))
    ls.cancel_task(("review-save", uri))
    if ls.reviews.findings(uri):
        ls.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=uri,
                                                                           diagnostics=[]))
    ls.reviews.close(uri)


COMMANDS = {CMD_REVIEW: command_review}
