"""Review over LSP with a scripted engine: actions, diagnostics, quick fixes, review on save."""

from __future__ import annotations

import asyncio
import json
import subprocess

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcException

from lsp_helpers import (
    FAKE_SERVER,
    actions_at,
    apply,
    open_doc,
    progress_titles,
    start,
    stop,
    wait_model,
    wait_until,
)

CODE = '''def label(name):
    greeting = "🙂 hello " + nme
    return greeting


def ratio(a, b):
    return a / b
'''


def finding(line, quote, category="bug", message="`nme` is not defined", **extra):
    return {"line": line, "quote": quote, "severity": "error", "category": category,
            "message": message, **extra}


def answer(*items):
    return json.dumps({"findings": list(items)})


@pytest.fixture
async def session(demo_repo, request):
    answers = getattr(request, "param", [])
    path = demo_repo / "labels.py"
    path.write_text(CODE)
    subprocess.run(["git", "add", "-A"], cwd=demo_repo, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@l", "commit", "-qm", "l"],
                   cwd=demo_repo, check=True)
    client, _, _ = await start(FAKE_SERVER, demo_repo, env={
        "FAKE_ENGINE_RESPONSES": json.dumps(answers),
        "FAKE_ENGINE_DEFAULT": answer()})
    await wait_model(client)
    uri = open_doc(client, path)
    yield client, uri, path
    await stop(client)


async def review(client, **args):
    return await client.workspace_execute_command_async(types.ExecuteCommandParams(
        command="hearth.review", arguments=[args]))


async def test_review_actions_are_offered_for_a_function_and_the_file(session):
    client, uri, _ = session
    actions = {a.title: a for a in await actions_at(client, uri, 1)}
    assert "Hearth: Review file" in actions
    action = actions["Hearth: Review function label"]
    assert action.command is None  # this client resolves commands lazily
    resolved = await client.code_action_resolve_async(action)
    assert resolved.command.command == "hearth.review"
    assert list(resolved.command.arguments) == [{"uri": uri, "scope": "symbol", "line": 1}]
    only_source = await actions_at(client, uri, 1, only=[types.CodeActionKind.Source])
    assert [a.title for a in only_source] == ["Hearth: Review file", "Hearth: Document file"]


@pytest.mark.parametrize("session", [[answer(
    finding(2, "nme"),
    finding(2, "greeting.upper()", message="invented code"),  # not there: dropped
)]], indirect=True)
async def test_findings_become_diagnostics_at_utf16_columns(session):
    client, uri, _ = session
    result = await review(client, uri=uri, scope="symbol", line=0)
    assert result == {"findings": 1, "reviewed": ["function label"], "notReviewed": [],
                      "summary": "Hearth: 1 finding (function label)"}
    await wait_until(lambda: client.diagnostics.get(uri))
    [diag] = client.diagnostics[uri]
    # "🙂" is two UTF-16 units: the column is one more than the Python index (28).
    assert (diag.range.start.line, diag.range.start.character, diag.range.end.character) == \
        (1, 29, 32)
    assert (diag.source, diag.code, diag.severity) == (
        "hearth", "bug", types.DiagnosticSeverity.Error)


@pytest.mark.parametrize("session", [["Sure! It greets the user."]], indirect=True)
async def test_an_answer_that_is_no_review_says_the_function_was_not_reviewed(session):
    client, uri, _ = session
    result = await review(client, uri=uri, scope="symbol", line=0)
    assert result["summary"] == ("Hearth: 0 findings (nothing reviewed); not reviewed: "
                                 "function label (the model's answer was no review)")
    assert (result["reviewed"], result["notReviewed"]) == ([], ["function label"])
    await wait_until(lambda: any(t == "Hearth: review" and m for t, m in
                                 progress_titles(client)))
    [(_, message)] = [(t, m) for t, m in progress_titles(client) if t == "Hearth: review"]
    assert message == ("0 findings; not reviewed: function label (the model's answer was no "
                       "review)")


@pytest.mark.parametrize("session", [[answer(), answer(  # one answer per function
    finding(7, "a / b", "error-handling", "b may be zero", replacement="a / b if b else 0.0"),
)]], indirect=True)
async def test_a_replacement_is_a_quick_fix_and_editing_the_line_clears_it(session):
    client, uri, path = session
    await review(client, uri=uri, scope="file")
    await wait_until(lambda: client.diagnostics.get(uri))
    [diag] = client.diagnostics[uri]
    fixes = await client.text_document_code_action_async(types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(uri=uri), range=diag.range,
        context=types.CodeActionContext(diagnostics=[diag],
                                        only=[types.CodeActionKind.QuickFix])))
    [fix] = fixes
    assert fix.kind == types.CodeActionKind.QuickFix
    assert "return a / b if b else 0.0" in apply(CODE, fix.edit, uri)
    # The user edits that line: the diagnostic goes.
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
        content_changes=[types.TextDocumentContentChangePartial(
            range=types.Range(start=types.Position(line=6, character=4),
                              end=types.Position(line=6, character=16)),
            text="return a / b if b else 0.0")]))
    await wait_until(lambda: len(client.diagnostics[uri]) == 0)


@pytest.mark.parametrize("session", [[answer(finding(7, "a / b", message="b may be zero"))]],
                         indirect=True)
async def test_review_on_save_looks_at_the_changed_function_only(session):
    client, uri, path = session
    text = CODE.replace("return a / b", "return a / b  # ratio")
    path.write_text(text)
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
        content_changes=[types.TextDocumentContentChangeWholeDocument(text=text)]))
    client.text_document_did_save(types.DidSaveTextDocumentParams(
        text_document=types.TextDocumentIdentifier(uri=uri)))
    await wait_until(lambda: client.diagnostics.get(uri))
    [diag] = client.diagnostics[uri]
    assert diag.range.start.line == 6 and diag.message == "b may be zero"
    titles = [t for t, _ in __import__("lsp_helpers").progress_titles(client)]
    assert titles.count("Hearth: review") == 1  # one symbol changed: one review


async def test_bad_review_requests_are_errors(session):
    client, uri, _ = session
    with pytest.raises(JsonRpcException, match="'scope' must be"):
        await review(client, uri=uri, scope="everything")
    with pytest.raises(JsonRpcException, match="'line' must be"):
        await review(client, uri=uri, scope="symbol", line=99)
    with pytest.raises(JsonRpcException, match="unknown document"):
        await review(client, uri="file:///nope.py", scope="file")


THREE = '''def one(a):
    return a + 1


def two(b):
    return b * 2


def three(c):
    return c - 3
'''


async def test_functions_left_out_by_the_cap_are_reviewed_on_the_next_save(demo_repo):
    """`changed` on save with review.maxSymbols = 1: the first save reviews one of the
    two changed functions; the next save (no edit) reviews the other, not nothing."""
    path = demo_repo / "three.py"
    path.write_text(THREE)
    subprocess.run(["git", "add", "-A"], cwd=demo_repo, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@l", "commit", "-qm", "3"],
                   cwd=demo_repo, check=True)
    client, _, _ = await start(FAKE_SERVER, demo_repo, env={
        "FAKE_ENGINE_DEFAULT": answer(), "HEARTH_REVIEW_MAX_SYMBOLS": "1"})
    try:
        await wait_model(client)
        uri = open_doc(client, path)
        text = THREE.replace("a + 1", "a + 10").replace("c - 3", "c - 30")
        path.write_text(text)
        client.text_document_did_change(types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
            content_changes=[types.TextDocumentContentChangeWholeDocument(text=text)]))

        def reviewed() -> list[str]:  # "function one (1/1)" reported by each review
            return [r.message.split(" (")[0] for reports in client.progress_reports.values()
                    for r in reports if isinstance(r, types.WorkDoneProgressReport)
                    and (r.message or "").startswith("function ")]

        def finished() -> int:
            return len([m for t, m in __import__("lsp_helpers").progress_titles(client)
                        if t == "Hearth: review" and m])

        for saves in (1, 2):
            client.text_document_did_save(types.DidSaveTextDocumentParams(
                text_document=types.TextDocumentIdentifier(uri=uri)))
            await wait_until(lambda n=saves: finished() == n)
        assert reviewed() == ["function one", "function three"]
    finally:
        await stop(client)


async def test_a_line_break_only_python_sees_moves_no_finding(demo_repo):
    """A U+2028 in a comment is no line end for the editor: the server's copy of the
    buffer follows the editor's edits below it, and the finding and its fix stay on
    the line the editor shows (pygls split there, edited the line above, and the
    review never found the quoted code)."""
    text = "# notes\u2028 pasted\n" + CODE
    path = demo_repo / "labels.py"
    path.write_text(text)
    fix = finding(8, "a / c", "error-handling", "c may be zero", replacement="a / c if c else 0.0")
    client, _, _ = await start(FAKE_SERVER, demo_repo, env={
        "FAKE_ENGINE_RESPONSES": json.dumps([answer(), answer(fix)]),
        "FAKE_ENGINE_DEFAULT": answer()})
    try:
        await wait_model(client)
        uri = open_doc(client, path, text=text)
        client.text_document_did_change(types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
            content_changes=[types.TextDocumentContentChangePartial(
                range=types.Range(start=types.Position(line=7, character=15),
                                  end=types.Position(line=7, character=16)), text="c")]))
        edited = text.replace("a / b", "a / c")
        result = await review(client, uri=uri, scope="file")
        assert result["findings"] == 1
        await wait_until(lambda: client.diagnostics.get(uri))
        [diag] = client.diagnostics[uri]
        assert (diag.range.start.line, diag.range.start.character) == (7, 11)
        [action] = await client.text_document_code_action_async(types.CodeActionParams(
            text_document=types.TextDocumentIdentifier(uri=uri), range=diag.range,
            context=types.CodeActionContext(diagnostics=[diag],
                                            only=[types.CodeActionKind.QuickFix])))
        assert apply(edited, action.edit, uri) == edited.replace("a / c", "a / c if c else 0.0")
    finally:
        await stop(client)


def _save(client, uri):
    client.text_document_did_save(types.DidSaveTextDocumentParams(
        text_document=types.TextDocumentIdentifier(uri=uri)))


def _change(client, uri, version, line, character, text):
    here = types.Position(line=line, character=character)
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
        content_changes=[types.TextDocumentContentChangePartial(
            range=types.Range(start=here, end=here), text=text)]))


def _reviews_ended(client) -> list[str]:
    return [m for t, m in progress_titles(client) if t == "Hearth: review" and m]



def _review_started(client) -> bool:
    return any(isinstance(r, types.WorkDoneProgressBegin) and r.title == "Hearth: review"
               for rs in client.progress_reports.values() for r in rs)


async def _slow_session(demo_repo):
    """labels.py open, a model slow enough to act while it reviews (one finding: ratio's)."""
    (demo_repo / "labels.py").write_text(CODE)
    client, _, _ = await start(FAKE_SERVER, demo_repo, env={
        "FAKE_ENGINE_DEFAULT": answer(finding(7, "a / b", message="b may be zero")),
        "FAKE_ENGINE_DELAY": "0.05"})
    await wait_model(client)
    return client, open_doc(client, demo_repo / "labels.py")

@pytest.mark.parametrize("session", [[answer(finding(2, "nme")), answer(),  # label, ratio
                                      "Sure! It greets the user."]], indirect=True)
async def test_an_answer_on_save_that_is_no_review_keeps_the_findings(session):
    """It replaced the function's findings with none, and recorded it as reviewed: the
    finding was gone for good (the next save did not review it again)."""
    client, uri, _ = session
    await review(client, uri=uri, scope="file")
    await wait_until(lambda: client.diagnostics.get(uri))
    _change(client, uri, 2, 2, 19, "  # out")  # label's last line, not the flagged one
    _save(client, uri)
    await wait_until(lambda: len(_reviews_ended(client)) == 2)
    assert "not reviewed: function label" in _reviews_ended(client)[1]
    assert [d.message for d in client.diagnostics[uri]] == ["`nme` is not defined"]


async def test_a_save_does_not_cancel_the_review_the_user_asked_for(demo_repo):
    (demo_repo / "labels.py").write_text(CODE)
    for args in (["add", "-A"], ["-c", "user.name=t", "-c", "user.email=t@l", "commit",
                                 "-qm", "l"]):
        subprocess.run(["git", *args], cwd=demo_repo, check=True)
    # Not committed: a save reviews ratio (it differs from HEAD and was never reviewed).
    (demo_repo / "labels.py").write_text(CODE.replace("return a / b", "return a / b  # r"))
    client, _, _ = await start(FAKE_SERVER, demo_repo, env={
        "FAKE_ENGINE_DEFAULT": answer(), "FAKE_ENGINE_DELAY": "0.05"})
    try:
        await wait_model(client)
        uri = open_doc(client, demo_repo / "labels.py")
        pending = asyncio.ensure_future(review(client, uri=uri, scope="file"))
        await wait_until(lambda: _review_started(client))
        _save(client, uri)  # ratio to review on save, beside the user's review of the file
        result = await pending
        assert result["reviewed"] == ["function label", "function ratio"]
    finally:
        await stop(client)


async def test_a_local_only_file_on_a_route_of_model_servers_says_why_it_is_not_reviewed(
        demo_repo, tmp_path):
    """The refusal escaped the save's background task: nothing said, on every save."""
    (demo_repo / "private").mkdir()
    path = demo_repo / "private" / "p.py"
    path.write_text("def f(x):\n    return x\n")
    config = tmp_path / "config.toml"
    config.write_text('[privacy]\nlocalOnly = ["private/"]\n\n[backends.team]\n'
                      'url = "http://127.0.0.1:9/v1"\n\n[routes]\nreview = ["team"]\n')
    client, _, _ = await start(FAKE_SERVER, demo_repo, env={
        "HEARTH_CONFIG_FILE": str(config), "FAKE_ENGINE_DEFAULT": answer()})
    try:
        await wait_model(client)
        uri = open_doc(client, path)
        _change(client, uri, 2, 1, 12, " + 1")
        _save(client, uri)
        await wait_until(lambda: [m for m in client.messages if "no review on save" in m.message])
        [shown] = [m.message for m in client.messages if "no review on save" in m.message]
        assert "p.py: private/p.py is local-only (privacy.localOnly)" in shown
    finally:
        await stop(client)


async def test_turning_review_on_save_off_stops_the_one_running(demo_repo):
    client, uri = await _slow_session(demo_repo)
    try:
        _change(client, uri, 2, 6, 16, "  # ratio")
        _save(client, uri)
        await wait_until(lambda: _review_started(client))
        client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
            settings={"hearth": {"review": {"onSave": "off"}}}))
        await wait_until(lambda: _reviews_ended(client))
        assert _reviews_ended(client) == ["cancelled"] and not client.diagnostics.get(uri)
    finally:
        await stop(client)


async def test_a_review_no_backend_answered_does_not_say_who_answered(demo_repo, tmp_path):
    (demo_repo / "labels.py").write_text(CODE)
    config = tmp_path / "config.toml"
    config.write_text('[backends.team]\nurl = "http://127.0.0.1:9/v1"\n\n'
                      '[routes]\nreview = ["team"]\n')
    client, _, _ = await start(FAKE_SERVER, demo_repo, env={
        "HEARTH_CONFIG_FILE": str(config), "FAKE_ENGINE_DEFAULT": answer()})
    try:
        await wait_model(client)
        uri = open_doc(client, demo_repo / "labels.py")
        with pytest.raises(JsonRpcException, match="team"):
            await review(client, uri=uri, scope="file")
        await wait_until(lambda: _reviews_ended(client))
        [ended] = _reviews_ended(client)
        assert "team" in ended and "answered by" not in ended
    finally:
        await stop(client)


async def test_a_review_on_save_the_user_typed_through_says_it_was_not_shown(demo_repo):
    """Its progress said "1 finding" and nothing appeared (the text had changed)."""
    client, uri = await _slow_session(demo_repo)
    try:
        _save(client, uri)
        await wait_until(lambda: _review_started(client))
        _change(client, uri, 2, 0, 0, "# typing\n")
        await wait_until(lambda: _reviews_ended(client))
        assert _reviews_ended(client) == ["not shown: the document changed during the review"]
        assert not client.diagnostics.get(uri)
    finally:
        await stop(client)


async def test_a_review_the_user_asked_for_and_typed_through_is_refused(demo_repo):
    client, uri = await _slow_session(demo_repo)
    try:
        pending = asyncio.ensure_future(review(client, uri=uri, scope="file"))
        await wait_until(lambda: _review_started(client))
        _change(client, uri, 2, 0, 0, "# typing\n")
        with pytest.raises(JsonRpcException, match="changed during the review"):
            await pending
        assert not client.diagnostics.get(uri)
    finally:
        await stop(client)
