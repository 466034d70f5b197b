"""JSON-RPC fuzzing of `hearth serve` (the scripted FakeEngine of tests/fake_server.py).

    .venv/bin/python bench/fuzz.py [--messages 100000] [--servers 4] [--seed 0]

Sends fuzzed LSP messages (wrong types for every param, huge numbers, deep
nesting, unknown methods, unopened documents, out-of-range, negative and
mid-surrogate positions, lone surrogates, garbage answers to the server's own
requests) to a few server processes one after the other, then fuzzed framing
(bad headers, lengths and bodies) on a separate connection, and checks that
every request is answered (a result or a JSON-RPC error), that no process dies
and that each still answers `hearth.status` at the end. Prints the figures and
rewrites the "Fuzzing" section of docs/reliability.md. Not a test: the same
generator runs, bounded, in tests/test_fuzz.py (there driven by hypothesis).

The generator draws every choice through a ``Draw`` (``RandomDraw`` here, a
hypothesis-backed one in the test), so the test shrinks nothing but reports the
exact messages that went unanswered.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol, TypeVar

REPO = Path(__file__).resolve().parent.parent
FAKE_SERVER = [sys.executable, str(REPO / "tests" / "fake_server.py")]
DOC = REPO / "docs" / "reliability.md"
T = TypeVar("T")

# ------------------------------------------------------------------ drawing


class Draw(Protocol):
    """Where every random choice of the generator comes from."""

    def integer(self, lo: int, hi: int) -> int: ...

    def choice(self, options: Sequence[T]) -> T: ...

    def text(self, max_size: int) -> str: ...

    def binary(self, max_size: int) -> bytes: ...

    def json(self) -> Any: ...


# Characters that break naive code: astral (two UTF-16 units), lone surrogates, NUL,
# line separators editors and Python disagree on, bidi overrides, a BOM.
ODD_CHARS = ["😀", "𝔘", "\ud800", "\udfff", "\x00", "\r", "\n", "\r\n", "\u2028", "\u0085",
             "\u202e", "\ufeff", "\t", "é", "\\", '"', "'", "`", "${", "%", "%2", "%20", "/"]
EDGE_INTS = [0, -1, 1, 2**31 - 1, 2**31, -(2**31) - 1, 2**32, 2**53 + 1, 2**63, 2**64,
             -(2**63), 10**100, -(10**100)]
EDGE_FLOATS = [0.5, -0.0, 1e308, -1e308, 5e-324, 1e-7]  # NaN and Infinity are not JSON:
# they are bad_frame's
PROTOCOL_KEYS = ["jsonrpc", "id", "method", "params", "result", "error", "uri", "line",
                 "textDocument", "range", "command", "arguments", "data", "query", "scope"]


class RandomDraw:
    """Draws from a seeded ``random.Random`` (fast: for the long runs)."""

    def __init__(self, rng: random.Random):
        self.rng = rng

    def integer(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)

    def choice(self, options: Sequence[T]) -> T:
        return self.rng.choice(options)

    def text(self, max_size: int) -> str:
        size = min(max_size, int(self.rng.expovariate(1 / 12)))
        out = []
        for _ in range(size):
            r = self.rng.random()
            if r < 0.6:
                out.append(chr(self.rng.randint(0x20, 0x7E)))
            elif r < 0.8:
                out.append(self.rng.choice(ODD_CHARS))
            else:
                code = self.rng.choice([0xFF, 0xFFFF, 0x10FFFF])
                out.append(chr(self.rng.randint(0, code)))
        return "".join(out)

    def binary(self, max_size: int) -> bytes:
        return self.rng.randbytes(self.rng.randint(0, max_size))

    def json(self, depth: int = 0) -> Any:
        r = self.rng.random()
        if depth > 3 or r < 0.55:
            return self.rng.choice([
                None, True, False, self.rng.choice(EDGE_INTS), self.rng.randint(-5, 50),
                self.rng.choice(EDGE_FLOATS), self.text(20), "", "file:///", "hearth.status"])
        if r < 0.75:
            return [self.json(depth + 1) for _ in range(self.rng.randint(0, 4))]
        keys = [self.rng.choice(PROTOCOL_KEYS) if self.rng.random() < 0.5 else self.text(8)
                for _ in range(self.rng.randint(0, 4))]
        return {k: self.json(depth + 1) for k in keys}


# ---------------------------------------------------------------- documents

PY = '''"""Prices."""

import re


class Cart:
    """A cart."""

    def total(self, items, tax=0.2):
        return sum(items) * (1 + tax)


def apply_discount(cents: int, percent: float) -> int:
    if not 0 <= percent <= 100:
        raise ValueError("percent")
    return round(cents * (100 - percent) / 100)
'''
PY_ASTRAL = 'def shout(s="😀𝔘"):\n    """😀"""\n    return s * 2  # 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 😀😀\n\n\nx = "😀"\n'
JS = "/** A. */\nexport function add(a, b) {\n  return a + b;\n}\n\nclass K { m(x) { return x; } }\n"
GO = "package main\n\n// Add adds.\nfunc Add(a int, b int) int {\n\treturn a + b\n}\n"
RUST = "/// Adds.\npub fn add(a: i32, b: i32) -> i32 {\n    a + b\n}\n"
C = "#include <stdio.h>\nint add(int a, int b) { return a + b; }\n"
CRLF = "def f(a):\r\n    return a\r\n\r\ndef g(b):\r\n    return b\r\n"
TEMPLATES = [PY, PY_ASTRAL, JS, GO, RUST, C, CRLF, "", "\n\n\n", "def (:\n  ))) broken\n"]
LANGUAGES = ["python", "javascript", "typescript", "go", "rust", "c", "cpp", "java",
             "plaintext", "", "😀", "PYTHON"]
COMMANDS = ["hearth.status", "hearth.review", "hearth.generateDocstring", "hearth.generateTests",
            "hearth.documentFile", "hearth.generateCommitMessage", "hearth.search",
            "hearth.reindex", "hearth.reloadModel", "hearth.nope", "", "status"]
# Methods the server handles, and some it does not.
HANDLED = ["textDocument/didOpen", "textDocument/didChange", "textDocument/didClose",
           "textDocument/didSave", "textDocument/codeAction", "codeAction/resolve",
           "workspace/executeCommand", "workspace/symbol", "workspace/didChangeConfiguration",
           "workspace/didChangeWatchedFiles", "workspace/didChangeWorkspaceFolders",
           "window/workDoneProgress/cancel", "$/cancelRequest", "$/setTrace", "initialized"]
UNHANDLED = ["textDocument/hover", "textDocument/completion", "textDocument/definition",
             "workspace/willRenameFiles", "textDocument/semanticTokens/full", "$/progress",
             "$/unknown", "foo", "", "textDocument/", "/", "😀", "rpc.discover"]
# Requests whose answer must come, and notifications (no answer)
NOTIFICATIONS = {"textDocument/didOpen", "textDocument/didChange", "textDocument/didClose",
                 "textDocument/didSave", "workspace/didChangeConfiguration",
                 "workspace/didChangeWatchedFiles", "workspace/didChangeWorkspaceFolders",
                 "window/workDoneProgress/cancel", "$/cancelRequest", "$/setTrace",
                 "initialized", "exit"}


def utf16_len(s: str) -> int:
    return len(s.encode("utf-16-le", "surrogatepass")) // 2


@dataclass
class Message:
    """One message to send: ``body`` is any JSON value (a dict, mostly); ``id`` is set
    when an answer is owed (a request with an integer or string id)."""

    kind: str
    body: Any
    id: int | str | None = None


class Fuzzer:
    """Makes fuzzed LSP messages for a server whose workspace folder is ``root``.

    It keeps what it opened (to aim some positions inside real lines) and the ids
    it used (to cancel some of them); ids are never reused.
    """

    # The first of each list of choices (and the lowest number) is what hypothesis draws
    # most, and all along in some examples: it must be cheap (no 600 KB document).
    KINDS = (["codeAction"] * 10 + ["didOpen"] * 6 + ["badOpen"] * 3 + ["didChange"] * 6
             + ["didClose"] + ["didSave"] * 2 + ["resolve"] * 5 + ["command"] * 9
             + ["symbol"] * 3 + ["cancel"] * 4 + ["unknown"] * 3 + ["garbageParams"] * 6
             + ["envelope"] * 3 + ["response"] * 2 + ["misc"] * 3)

    def __init__(self, root: Path, draw: Draw | None = None):
        self.root = root
        self.draw: Draw = draw or RandomDraw(random.Random(0))
        self.ids = itertools.count(1)
        self.used: list[int | str] = []
        names = ["pkg/m0.py", "pkg/m1.py", "pkg/m2.py", "pkg/m3.py", "web/app.js",
                 "main.go", "lib.rs", "x.c", "notes.txt", "a b/sp ace.py", "ü/é.py"]
        self.uris = [(root / n).as_uri() for n in names] + [
            "untitled:Untitled-1", "file:///", "file://host/share/x.py", "http://example/x.py",
            "file:///tmp/%ZZ.py", "file:///etc/passwd", (root / "pkg" / "missing.py").as_uri()]
        self.texts: dict[str, str] = {}  # what the fuzzer last opened at each uri
        self.sane = False  # this message keeps to the right types (see message())

    def forget(self) -> None:
        """Forget what was opened and which ids were used: from here on, what is drawn
        depends on the draws alone (hypothesis checks that each example does)."""
        self.texts.clear()
        self.used.clear()

    # -------------------------------------------------------------- values

    def next_id(self) -> int | str:
        n = next(self.ids)
        msg_id: int | str = n if self.draw.integer(0, 4) else f"s{n}"
        self.used.append(msg_id)
        del self.used[:-50]
        return msg_id

    def any_value(self) -> Any:
        d = self.draw
        return d.choice([lambda: d.json(), lambda: d.choice(EDGE_INTS),
                         lambda: d.text(40), lambda: None, lambda: [], lambda: {},
                         lambda: d.choice(EDGE_FLOATS), lambda: nest(d.integer(1, 150))])()

    def maybe(self, value: Any) -> Any:
        """``value``, or (in an insane message, one time in six) something of the wrong
        type."""
        return self.any_value() if not self.sane and self.draw.integer(0, 5) == 0 else value

    def uri(self) -> Any:
        d = self.draw
        r = d.integer(0, 19)
        if r < 12 and self.texts:
            return d.choice(sorted(self.texts))
        if r < 17:
            return d.choice(self.uris)
        return self.maybe(d.text(30))  # a uri that is no uri

    def doc_text(self) -> str:
        d = self.draw
        r = d.integer(0, 299)
        if r == 150:
            return "x = 1\n" * 100_000  # 600 KB: over the size where actions stop
        if r > 280:
            return d.text(400)
        base = d.choice(TEMPLATES)
        if r < 100:
            at = d.integer(0, len(base))
            return base[:at] + d.text(30) + base[at:]
        return base

    def position(self, uri: Any) -> Any:
        d = self.draw
        lines = self.texts.get(uri, "").splitlines() if isinstance(uri, str) else []
        n = len(lines)
        r = d.integer(0, 9 if not self.sane else 5)
        if r < 4:  # inside (or just past) the text
            line = d.integer(0, n)
            width = utf16_len(lines[line]) if line < n else 0
            pos: Any = {"line": line, "character": d.integer(0, width + 2)}
        elif r == 4:  # in the middle of a surrogate pair
            astral = [(i, ln) for i, ln in enumerate(lines) if any(ord(c) > 0xFFFF for c in ln)]
            if astral:
                i, ln = d.choice(astral)
                k = next(j for j, c in enumerate(ln) if ord(c) > 0xFFFF)
                pos = {"line": i, "character": utf16_len(ln[:k]) + 1}
            else:
                pos = {"line": 0, "character": 1}
        elif r == 5:
            pos = {"line": n + d.integer(1, 10_000), "character": d.integer(0, 5)}
        elif r == 6:
            pos = {"line": -d.integer(1, 2**31), "character": -d.integer(0, 3)}
        elif r == 7:
            pos = {"line": d.choice(EDGE_INTS), "character": d.choice(EDGE_INTS)}
        elif r == 8:
            pos = {"line": self.maybe(0), "character": self.maybe(0)}
        else:
            pos = self.any_value()
        return pos

    def range(self, uri: Any) -> Any:
        start, end = self.position(uri), self.position(uri)
        r = self.draw.integer(0, 9)
        if r == 0 and not self.sane:
            return {"start": start}
        if r == 1 and not self.sane:
            return self.any_value()
        return {"start": start, "end": end}

    def doc_id(self, versioned: bool = False) -> Any:
        out: dict[str, Any] = {"uri": self.uri()}
        if versioned:
            out["version"] = self.maybe(self.draw.integer(-3, 2**31 - 1))
        return self.maybe(out)

    def diagnostic(self, uri: Any) -> Any:
        d = self.draw
        return self.maybe({
            "range": self.range(uri), "message": self.maybe(d.text(30)),
            "source": d.choice(["hearth", "other", None]), "code": self.maybe("bug"),
            "severity": self.maybe(d.integer(1, 4)),
            "data": self.maybe({"quote": self.maybe(d.text(10)),
                                "replacement": self.maybe(d.text(10))})})

    # ------------------------------------------------------------ messages

    def request(self, kind: str, method: str, params: Any) -> Message:
        msg_id = self.next_id()
        return Message(kind, {"jsonrpc": "2.0", "id": msg_id, "method": method,
                              "params": params}, msg_id)

    @staticmethod
    def notify(kind: str, method: str, params: Any) -> Message:
        return Message(kind, {"jsonrpc": "2.0", "method": method, "params": params})

    def message(self) -> Message:
        # Half the messages are well-typed (hostile values, right types): they get past
        # pygls' checks into the handlers. The others put wrong types anywhere.
        self.sane = self.draw.integer(0, 1) == 0
        return getattr(self, "m_" + self.draw.choice(self.KINDS))()

    def m_didOpen(self) -> Message:
        d = self.draw
        uri = d.choice(self.uris[:11]) if d.integer(0, 3) else d.choice(self.uris)
        text = self.doc_text()
        self.texts[uri] = text
        return self.notify("didOpen", "textDocument/didOpen", {"textDocument": {
            "uri": uri, "languageId": d.choice(LANGUAGES), "version": d.integer(0, 100),
            "text": text}})

    def m_badOpen(self) -> Message:
        d = self.draw
        item = {"uri": self.maybe(self.uri()), "languageId": self.maybe("python"),
                "version": self.maybe(1), "text": self.maybe(PY)}
        if d.integer(0, 2) == 0:
            del item[d.choice(sorted(item))]
        return self.notify("badOpen", "textDocument/didOpen",
                           self.maybe({"textDocument": self.maybe(item)}))

    def m_didChange(self) -> Message:
        d = self.draw
        doc = self.doc_id(versioned=True)
        uri = doc.get("uri") if isinstance(doc, dict) else None
        changes = []
        for _ in range(d.integer(0, 3)):
            if d.integer(0, 4) == 0:
                change: Any = {"text": self.maybe(self.doc_text())}
            else:
                change = {"range": self.range(uri), "text": self.maybe(d.text(20))}
                if d.integer(0, 3) == 0:
                    change["rangeLength"] = d.choice(EDGE_INTS)
            changes.append(self.maybe(change) if d.integer(0, 6) == 0 else change)
        return self.notify("didChange", "textDocument/didChange", {
            "textDocument": doc, "contentChanges": self.maybe(changes)})

    def m_didClose(self) -> Message:
        uri = self.uri()
        if self.draw.integer(0, 1):
            self.texts.pop(uri, None) if isinstance(uri, str) else None
        return self.notify("didClose", "textDocument/didClose", {"textDocument": {"uri": uri}})

    def m_didSave(self) -> Message:
        params: dict[str, Any] = {"textDocument": self.doc_id()}
        if self.draw.integer(0, 2) == 0:
            params["text"] = self.maybe(self.doc_text())
        return self.notify("didSave", "textDocument/didSave", params)

    def m_codeAction(self) -> Message:
        d = self.draw
        uri = self.uri()
        only = self.maybe(d.choice([None, ["quickfix"], ["refactor"], ["source.hearth.review"],
                                    ["refactor.rewrite.hearth.docstring", "😀"], []]))
        context: dict[str, Any] = {"diagnostics": [self.diagnostic(uri)
                                                   for _ in range(d.integer(0, 3))]}
        if only is not None:
            context["only"] = only
        if d.integer(0, 3) == 0:
            context["triggerKind"] = self.maybe(d.integer(0, 3))
        return self.request("codeAction", "textDocument/codeAction", {
            "textDocument": self.maybe({"uri": uri}), "range": self.range(uri),
            "context": self.maybe(context)})

    def m_resolve(self) -> Message:
        d = self.draw
        uri = self.uri()
        data = d.choice([
            lambda: {"task": "docstring", "uri": uri, "version": self.maybe(d.integer(0, 9)),
                     "line": self.maybe(d.integer(-2, 40)), "regenerate": self.maybe(False)},
            lambda: {"command": self.maybe("hearth.review"), "uri": uri,
                     "scope": self.maybe("file")},
            lambda: {"command": d.choice(COMMANDS)},
            lambda: self.any_value()])()
        action: Any = {"title": self.maybe("Hearth: Generate docstring"),
                       "kind": self.maybe("refactor.rewrite.hearth.docstring"), "data": data}
        return self.request("resolve", "codeAction/resolve", self.maybe(action))

    def command_args(self, command: str) -> Any:
        d = self.draw
        uri = self.uri()
        arg: dict[str, Any] = {
            "hearth.review": lambda: {"uri": uri, "scope": self.maybe(
                d.choice(["file", "symbol", "selection", "nope"])),
                "line": self.maybe(d.integer(-1, 40)), "start": self.maybe(d.integer(-1, 40)),
                "end": self.maybe(d.integer(-1, 40))},
            "hearth.generateDocstring": lambda: {"uri": uri, "line": self.maybe(d.integer(-1, 40)),
                                                 "regenerate": self.maybe(True)},
            "hearth.generateTests": lambda: {"uri": uri, "line": self.maybe(d.integer(-1, 40))},
            "hearth.documentFile": lambda: {"uri": uri, "regenerate": self.maybe(False)},
            "hearth.generateCommitMessage": lambda: {"repo": self.maybe(d.choice([
                str(self.root), self.root.as_uri(), "/", "", "file:///nonexistent",
                "a\x00b", str(self.root / "pkg")]))},
            "hearth.search": lambda: {"query": self.maybe(d.text(40)), "k": self.maybe(
                d.choice([1, 0, -1, 10, 201, 2**63])), "path": self.maybe(None),
                "language": self.maybe(None)},
            "hearth.reindex": lambda: {"rebuild": self.maybe(False)},
        }.get(command, lambda: self.any_value())()
        r = d.integer(0, 9)
        if r == 0:
            return self.any_value()  # not a list
        if r == 1:
            return []
        if r == 2:
            return [self.maybe(arg), self.any_value()]
        return [self.maybe(arg) if r == 3 else arg]

    def m_command(self) -> Message:
        d = self.draw
        command = d.choice(COMMANDS)
        params: dict[str, Any] = {"command": self.maybe(command)}
        if d.integer(0, 5):
            params["arguments"] = self.command_args(command)
        return self.request("command", "workspace/executeCommand", params)

    def m_symbol(self) -> Message:
        d = self.draw
        query = d.choice([lambda: d.text(30), lambda: "x" * 1001, lambda: "",
                          lambda: self.any_value()])()
        return self.request("symbol", "workspace/symbol", {"query": query})

    def m_cancel(self) -> Message:
        d = self.draw
        target = d.choice(self.used) if self.used and d.integer(0, 2) else self.any_value()
        return self.notify("cancel", "$/cancelRequest", self.maybe({"id": target}))

    def m_unknown(self) -> Message:
        method = self.draw.choice(UNHANDLED + [self.draw.text(20)])
        if self.draw.integer(0, 1):
            return self.request("unknown", method, self.any_value())
        return self.notify("unknown", method, self.any_value())

    def m_garbageParams(self) -> Message:
        d = self.draw
        method = d.choice(HANDLED + ["workspace/executeCommand", "textDocument/codeAction",
                                     "workspace/symbol", "codeAction/resolve"])
        params = self.any_value()
        if method in NOTIFICATIONS:
            return self.notify("garbageParams", method, params)
        return self.request("garbageParams", method, params)

    def m_envelope(self) -> Message:
        """Broken JSON-RPC envelopes: no answer is owed, the server just lives on."""
        d = self.draw
        good = {"jsonrpc": "2.0", "id": next(self.ids), "method": "workspace/symbol",
                "params": {"query": "x"}}
        variants = [
            lambda: {k: v for k, v in good.items() if k != "jsonrpc"},
            lambda: {**good, "jsonrpc": self.maybe("1.0")},
            lambda: {**good, "id": d.choice([None, 1.5, [], {}, True, -0.0])},
            lambda: {**good, "method": self.any_value()},
            lambda: {**good, "result": self.any_value()},
            lambda: {"jsonrpc": "2.0"},
            lambda: [good, good],  # a JSON-RPC batch: not LSP
            lambda: [],
            lambda: self.any_value(),
            lambda: {"jsonrpc": "2.0", "method": "workspace/symbol",
                     "params": {"query": "x", "nested": {"jsonrpc": "2.0", "id": 7,
                                                         "method": "initialize",
                                                         "params": self.any_value()}}},
        ]
        return Message("envelope", d.choice(variants)())

    def m_response(self) -> Message:
        """A client "answer" to a request the server never sent."""
        d = self.draw
        msg_id = d.choice([d.integer(-5, 10_000), d.text(10), None])
        body: dict[str, Any] = {"jsonrpc": "2.0", "id": msg_id}
        if d.integer(0, 1):
            body["result"] = self.any_value()
        else:
            body["error"] = self.maybe({"code": self.maybe(-32603),
                                        "message": self.maybe("no")})
        return Message("response", body)

    def m_misc(self) -> Message:
        d = self.draw
        which = d.integer(0, 5)
        if which == 0:
            return self.notify("misc", "workspace/didChangeConfiguration",
                               {"settings": self.maybe(d.choice([
                                   {}, None, {"hearth": self.any_value()},
                                   {"hearth": {"review": {"onSave": self.maybe("off")},
                                               "log": {"level": self.maybe("debug")}}}]))})
        if which == 1:
            return self.notify("misc", "workspace/didChangeWatchedFiles", {"changes": [
                {"uri": self.uri(), "type": self.maybe(d.integer(1, 3))}
                for _ in range(d.integer(0, 3))]})
        if which == 2:
            return self.notify("misc", "window/workDoneProgress/cancel",
                               {"token": self.maybe(f"hearth/{d.integer(0, 50)}")})
        if which == 3:
            folder = {"uri": self.maybe(d.choice(["file:///nonexistent-hearth-fuzz",
                                                  "untitled:x", ""])), "name": "x"}
            return self.notify("misc", "workspace/didChangeWorkspaceFolders", {"event": {
                "added": self.maybe([folder]), "removed": self.maybe([folder])}})
        if which == 4:
            return self.notify("misc", "$/setTrace", {"value": self.maybe("verbose")})
        return self.request("misc", "workspace/executeCommand", {"command": "hearth.status"})


def nest(depth: int) -> Any:
    value: Any = 0
    for n in range(depth):
        value = [value] if n % 2 else {"a": value}
    return value


# ----------------------------------------------------------------- framing

def frame(body: bytes, header: bytes = b"Content-Length: %d\r\n\r\n") -> bytes:
    return (header % len(body) if b"%d" in header else header) + body


HEADERS = [b"Content-Length: %d\r\n\r\n", b"content-length: %d\r\n\r\n",
           b"Content-Length: %d\n\n", b"CONTENT-LENGTH:    %d   \r\n\r\n",
           b"Content-Type: application/vscode-jsonrpc; charset=utf-8\r\nContent-Length: %d\r\n\r\n",
           b"X-Junk: 1\r\nContent-Length: %d\r\nX-More: 2\r\n\r\n"]


def bad_frame(d: Draw, fuzzer: Fuzzer) -> bytes:
    """One broken piece of framing, after which a well-framed request must be read.
    (What is drawn never depends on the length of the body, which its id changes.)"""
    body = json.dumps(fuzzer.message().body).encode()
    cases = [
        lambda: b"Content-Length: %d\r\n\r\n{}" % d.choice([2**64, 99_999_999_999, 10**12 - 1]),
        lambda: b"Content-Length: " + b"9" * d.integer(13, 5000) + b"\r\n\r\n{}",
        lambda: frame(d.binary(200)),
        lambda: frame(body[: len(body) * d.integer(0, 999) // 1000]),  # cut, framed right
        lambda: frame(body + d.binary(20)),
        lambda: frame(body.decode().encode("utf-16")),
        lambda: frame(b"\xef\xbb\xbf" + body),
        lambda: frame(b"\xff\xfe\xfd" + body[3:]),
        lambda: frame(b"[" * d.integer(1, 200_000) + b"]" * d.integer(0, 10)),
        lambda: frame(b"1" * d.integer(4000, 6000)),
        lambda: frame(d.choice([b"null", b"5", b'"x"', b"[]", b"true", b"{}", b"[{}]"])),
        lambda: frame(body.replace(b'"jsonrpc"', b'"x": %s, "jsonrpc"' % d.choice(
            [b"NaN", b"Infinity", b"-Infinity"]), 1)),  # what Python reads, and JSON is not
        lambda: b"Content-Length: 0\r\n\r\n",
        lambda: b"Content-Length: %s\r\n\r\n" % d.choice([b"abc", b"-5", b"5.5", b"", b"0x10",
                                                          b"\xff\xfe", b"1e3"]),
        lambda: b"Content-Length: %d\r\n" % len(body),  # no blank line: the next header wins
        lambda: d.binary(300).replace(b"\n", b" ").replace(b":", b" ") + b"\r\n",
        lambda: b"\r\n" * d.integer(1, 20),
        lambda: (b"Content-Length: %d\r\n\r\n" % (len(body) * d.integer(0, 999) // 1000))
        + body + b"\r\n",  # too short: the rest is garbage to skip
        lambda: frame(body, d.choice(HEADERS)),  # a well-framed fuzzed message
        lambda: b"Content-Type: text/plain\r\n\r\n" + body,  # no length at all
    ]
    return d.choice(cases)()


# ----------------------------------------------------------------- the client


def key(msg_id: Any) -> tuple[str, Any]:
    """A dict key that tells 1 from "1" (and survives ids that are lists or objects)."""
    if isinstance(msg_id, (list, dict)):
        return (type(msg_id).__name__, json.dumps(msg_id))
    return (type(msg_id).__name__, msg_id)


def dumps(body: Any) -> bytes:
    return json.dumps(body).encode()  # ensure_ascii: lone surrogates travel as \\udXXX


@dataclass
class Stats:
    sent: int = 0
    requests: int = 0
    answered: int = 0
    results: int = 0
    errors: Counter = field(default_factory=Counter)
    unanswered: list[Any] = field(default_factory=list)
    internal: list[tuple[Any, str]] = field(default_factory=list)  # InternalError answers
    internal_causes: Counter = field(default_factory=Counter)  # by the error's message
    kinds: Counter = field(default_factory=Counter)
    max_wait_s: float = 0.0


class Session:
    """A server process on stdio: a thread reads every message it writes (answering
    its requests, some with garbage) while the test writes; stderr goes to a file."""

    def __init__(self, command: Sequence[str], env: dict[str, str], stderr: IO[bytes],
                 cwd: Path | None = None, answers_seed: int = 0):
        self.proc = subprocess.Popen(list(command), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=stderr, env=env, cwd=cwd)
        self.stderr = stderr
        self.rng = random.Random(answers_seed)  # garbage answers to the server's requests
        self.garbage_answers = True
        # Answers the server's requests instead (a body, or None to leave one unanswered).
        self.answer_with: Callable[[dict], dict | None] | None = None
        self.write_lock = threading.Lock()
        self.cond = threading.Condition()
        self.responses: dict[tuple[str, Any], dict] = {}
        self.answered_at: dict[tuple[str, Any], float] = {}
        self.duplicates: list[Any] = []
        self.notifications: Counter = Counter()
        self.server_requests: Counter = Counter()
        self.messages: list[dict] = []  # window/showMessage and logMessage params
        self.closed = False
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    # -------------------------------------------------------------- writing

    def send_bytes(self, data: bytes) -> bool:
        assert self.proc.stdin is not None
        with self.write_lock:
            try:
                self.proc.stdin.write(data)
                self.proc.stdin.flush()
                return True
            except (BrokenPipeError, OSError, ValueError):
                return False

    def send(self, body: Any, header: bytes = b"Content-Length: %d\r\n\r\n") -> bool:
        return self.send_bytes(frame(dumps(body), header))

    def request(self, method: str, params: Any, msg_id: int | str, timeout: float = 60) -> dict:
        self.send({"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params})
        missing = self.wait([msg_id], timeout)
        if missing:
            raise AssertionError(f"no answer to {method} ({msg_id}) in {timeout:.0f} s; "
                                 f"alive: {self.alive()}\n{self.stderr_tail()}")
        return self.responses[key(msg_id)]

    # -------------------------------------------------------------- reading

    def wait(self, ids: Iterable[Any], timeout: float) -> list[Any]:
        """Wait (at most ``timeout`` seconds) for answers to ``ids``; returns the missing."""
        wanted = {key(i): i for i in ids}
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                missing = [i for k, i in wanted.items() if k not in self.responses]
                left = deadline - time.monotonic()
                if not missing or left <= 0 or self.closed:
                    return missing
                self.cond.wait(min(left, 0.5))

    def _read(self) -> None:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        buffer = b""
        while True:
            try:
                chunk = os.read(fd, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                with self.cond:
                    self.closed = True
                    self.cond.notify_all()
                return
            buffer += chunk
            while True:
                end = buffer.find(b"\r\n\r\n")
                if end < 0:
                    break
                match = re.search(rb"Content-Length: (\d+)", buffer[:end])
                assert match, f"a header without Content-Length from the server: {buffer[:end]!r}"
                length = int(match.group(1))
                if len(buffer) < end + 4 + length:
                    break
                body = buffer[end + 4:end + 4 + length]
                buffer = buffer[end + 4 + length:]
                self._dispatch(json.loads(body))

    def _dispatch(self, message: dict) -> None:
        if "method" in message and "id" in message:
            self.server_requests[message["method"]] += 1
            self._answer(message)
        elif "method" in message:
            self.notifications[message["method"]] += 1
            if message["method"] in ("window/showMessage", "window/logMessage"):
                self.messages.append(message.get("params") or {})
                del self.messages[:-2000]
        else:
            k = key(message.get("id"))
            with self.cond:
                if k in self.responses:
                    self.duplicates.append(message.get("id"))
                self.responses[k] = message
                self.answered_at[k] = time.monotonic()
                self.cond.notify_all()

    def _answer(self, request: dict) -> None:
        if self.answer_with is not None:
            chosen = self.answer_with(request)
            if chosen is not None:
                self.send(chosen)
            return
        method, rng = request["method"], self.rng
        result: Any = None
        if method == "workspace/applyEdit":
            result = {"applied": rng.random() < 0.5}
        elif method == "workspace/configuration":
            result = [{} for _ in (request.get("params") or {}).get("items", [])]
        body: dict[str, Any] = {"jsonrpc": "2.0", "id": request["id"], "result": result}
        if self.garbage_answers and rng.random() < 0.2:
            garbage = RandomDraw(rng).json()
            body = rng.choice([
                {"jsonrpc": "2.0", "id": request["id"], "result": garbage},
                {"jsonrpc": "2.0", "id": request["id"],
                 "error": {"code": -32603, "message": "the client failed"}},
                {"jsonrpc": "2.0", "id": request["id"], "error": garbage}])
        self.send(body)

    # ------------------------------------------------------------- process

    def proc_status(self) -> dict[str, int]:
        """VmRSS (KiB), Threads and open file descriptors of the server process."""
        out: dict[str, int] = {}
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                name, _, value = line.partition(":")
                if name in ("VmRSS", "Threads"):
                    out[name] = int(value.split()[0])
            out["fds"] = len(os.listdir(f"/proc/{self.pid}/fd"))
        except (OSError, ValueError):
            pass
        return out

    def stderr_text(self) -> str:
        self.stderr.flush()
        return Path(self.stderr.name).read_text(encoding="utf-8", errors="replace") \
            if isinstance(self.stderr.name, str) else ""

    def stderr_tail(self, n: int = 40) -> str:
        return "\n".join(self.stderr_text().splitlines()[-n:])

    def close(self, timeout: float = 30) -> int | None:
        """shutdown, then exit; returns the exit code (None: killed after ``timeout``)."""
        if self.alive():
            self.send({"jsonrpc": "2.0", "id": "shutdown", "method": "shutdown"})
            self.wait(["shutdown"], timeout)
            self.send({"jsonrpc": "2.0", "method": "exit"})
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None
        finally:
            self.reader.join(5)


def initialize(session: Session, root: Path, timeout: float = 60) -> dict:
    answer = session.request("initialize", {
        "processId": None, "rootUri": root.as_uri(),
        "capabilities": {
            "window": {"workDoneProgress": True},
            "workspace": {"applyEdit": True, "configuration": True,
                          "didChangeWatchedFiles": {"dynamicRegistration": True}},
            "textDocument": {"codeAction": {"dataSupport": True, "resolveSupport": {
                "properties": ["edit", "command"]}}}}}, "init", timeout)
    session.send({"jsonrpc": "2.0", "method": "initialized", "params": {}})
    return answer


def status(session: Session, msg_id: str, timeout: float = 60) -> dict:
    return session.request("workspace/executeCommand", {"command": "hearth.status"}, msg_id,
                           timeout)


def run_batch(session: Session, messages: Sequence[Message], stats: Stats,
              timeout: float = 60) -> list[Message]:
    """Send ``messages`` back to back, then wait (bounded) for every answer owed.
    Returns the messages left unanswered."""
    started = time.monotonic()
    for m in messages:
        if not session.send(m.body):
            break
        stats.sent += 1
        stats.kinds[m.kind] += 1
    owed = [m for m in messages if m.id is not None]
    stats.requests += len(owed)
    missing = set(map(key, session.wait([m.id for m in owed], timeout)))
    for m in owed:
        k = key(m.id)
        if k in missing:
            stats.unanswered.append(m.body)
            continue
        answer = session.responses[k]
        stats.answered += 1
        stats.max_wait_s = max(stats.max_wait_s, session.answered_at[k] - started)
        if "error" in answer:
            code = answer["error"].get("code")
            stats.errors[code] += 1
            if code == -32603:  # with pygls' traceback
                error = answer["error"]
                stats.internal_causes[cause(m.body, str(error.get("message")))] += 1
                if len(stats.internal) < 50:
                    stats.internal.append((m.body, f"{error.get('message')}\n{error.get('data')}"))
        else:
            stats.results += 1
    return [m for m in owed if key(m.id) in missing]


def elide(message: str) -> str:
    """Without the character and position an error names (to count errors by kind)."""
    message = re.sub(r"'\\[ux][0-9a-f]+'", "…", message)
    return re.sub(r"\b(position|line|column) \d+", r"\1 …", message)


def cause(body: Any, message: str) -> str:
    """An InternalError by what was asked and the error, positions and characters elided."""
    params = body.get("params") if isinstance(body, dict) else None
    command = params.get("command") if isinstance(params, dict) else None
    what = command if isinstance(command, str) else str(body.get("method"))
    message = elide(message.split("\n")[0])
    return f"{what}: {message}"[:120]


def well_formed(answer: dict) -> bool:
    if answer.get("jsonrpc") != "2.0" or ("result" in answer) == ("error" in answer):
        return False
    error = answer.get("error")
    return error is None or (isinstance(error.get("code"), int)
                             and isinstance(error.get("message"), str))


TRACEBACK = "Traceback (most recent call last)"
_RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ ")


def tracebacks(log: str) -> list[str]:
    """Each log record that carries a traceback, whole (a record with chained or
    grouped exceptions, several "Traceback" lines, is one)."""
    out: list[str] = []
    record: list[str] = []
    has = False
    for line in log.splitlines() + ["2000-01-01 00:00:00,000 end"]:
        if _RECORD.match(line):
            if has:
                out.append("\n".join(record))
            record, has = [_RECORD.sub("", line)], False
        else:
            record.append(line)
            has = has or TRACEBACK in line
    return out


def traceback_records(log: str) -> Counter:
    """Records with a traceback by their first line (quoted ids elided): where they
    come from."""
    out: Counter = Counter()
    for t in tracebacks(log):
        lines = [line for line in t.splitlines() if line.strip()]
        first = re.sub(r'"[^"]*"', '"…"', lines[0])[:90]
        last = elide(lines[-1].strip())[:90]
        out[f"{first} … {last}"] += 1
    return out


def workspace(root: Path) -> Path:
    """A small workspace folder (not a git repository) with a few files on disk."""
    (root / "pkg").mkdir(parents=True, exist_ok=True)
    (root / "pkg" / "m0.py").write_text(PY, encoding="utf-8")
    (root / "pkg" / "m1.py").write_text(PY_ASTRAL, encoding="utf-8")
    return root


def server_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, "HEARTH_INDEX_ENABLED": "false", "HEARTH_CACHE_ENABLED": "false",
            **(extra or {})}


# ------------------------------------------------------------------ the run


@dataclass
class RunFigures:
    stats: Stats
    framing: Stats
    deaths: int = 0
    tracebacks: int = 0
    traceback_sources: Counter = field(default_factory=Counter)
    rss_kib: list[tuple[int, int]] = field(default_factory=list)  # (after init, at the end)
    rss_series: list[list[int]] = field(default_factory=list)  # every 5,000 messages (KiB)
    duplicates: int = 0
    malformed: int = 0
    servers: int = 0
    seconds: float = 0.0
    exit_codes: list[int | None] = field(default_factory=list)


def fuzz_server(n_messages: int, seed: int, figures: RunFigures, tmp: Path,
                batch: int = 60, garbage_answers: bool = True) -> None:
    root = workspace(tmp / f"ws{seed}")
    log_path = tmp / f"server{seed}.log"
    with open(log_path, "w+b") as err:
        session = Session(FAKE_SERVER, server_env(), err, cwd=tmp, answers_seed=seed)
        session.garbage_answers = garbage_answers
        figures.servers += 1
        initialize(session, root)
        status(session, "first")
        before = session.proc_status().get("VmRSS", 0)
        fuzzer = Fuzzer(root, RandomDraw(random.Random(seed)))
        sent = 0
        series = [before]
        while sent < n_messages and session.alive():
            messages = [fuzzer.message() for _ in range(min(batch, n_messages - sent))]
            run_batch(session, messages, figures.stats)
            sent += len(messages)
            if sent // 5000 != (sent - len(messages)) // 5000:
                series.append(session.proc_status().get("VmRSS", 0))
                print(f"  {figures.stats.sent} messages, {figures.stats.answered} answered, "
                      f"rss {series[-1] // 1024} MiB", flush=True)
        figures.rss_series.append(series)
        alive = session.alive()
        if alive:
            status(session, "last")
        after = session.proc_status().get("VmRSS", 0)
        figures.rss_kib.append((before, after))
        figures.deaths += 0 if alive else 1
        figures.duplicates += len(session.duplicates)
        if session.duplicates:
            print("answered twice:", session.duplicates[:10])
        figures.malformed += sum(not well_formed(a) for a in session.responses.values())
        figures.exit_codes.append(session.close())
        log = session.stderr_text()
    figures.tracebacks += log.count(TRACEBACK)
    figures.traceback_sources.update(traceback_records(log))


def fuzz_framing(n_frames: int, seed: int, figures: RunFigures, tmp: Path) -> None:
    root = workspace(tmp / f"wsf{seed}")
    with open(tmp / f"framing{seed}.log", "w+b") as err:
        session = Session(FAKE_SERVER, server_env(), err, cwd=tmp, answers_seed=seed)
        figures.servers += 1
        initialize(session, root)
        draw = RandomDraw(random.Random(seed))
        fuzzer = Fuzzer(root, draw)
        stats = figures.framing
        for n in range(n_frames):
            if not session.alive():
                break
            data = bad_frame(draw, fuzzer)
            probe = f"probe{n}"
            good = frame(dumps({"jsonrpc": "2.0", "id": probe, "method": "workspace/executeCommand",
                                "params": {"command": "hearth.status"}}), draw.choice(HEADERS))
            session.send_bytes(data + good)
            stats.sent += 1
            stats.requests += 1
            if session.wait([probe], 30):
                stats.unanswered.append(repr(data[:200]))
            else:
                stats.answered += 1
        alive = session.alive()
        figures.deaths += 0 if alive else 1
        figures.exit_codes.append(session.close())
        log = session.stderr_text()
    figures.tracebacks += log.count(TRACEBACK)
    figures.traceback_sources.update(traceback_records(log))


def load_average() -> str:
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "unknown"


def commit() -> str:
    """The commit measured (and whether server/ or bench/ had changes on top)."""
    try:
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--",
                                "server", "indexer", "bench"],
                               capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown commit"
    return f"commit {head}" + (" with uncommitted changes in server/, indexer/ or bench/"
                               if dirty else "")


def machine(description: str) -> str:
    """bench/report.py's machine description, with the commit measured."""
    description = description.rstrip(".")
    if not description.startswith("Machine"):
        description = f"Machine: {description}"
    return description if "commit" in description else f"{description}; {commit()}"


def write_doc_section(name: str, body: str, doc: Path = DOC) -> None:
    """Replace the text between ``<!-- name:start -->`` and ``<!-- name:end -->`` in
    docs/reliability.md (creating the file or the section), leaving the rest alone."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = doc.read_text(encoding="utf-8") if doc.exists() else (
        "# Reliability\n\nHow Hearth's server was fuzzed, soaked and broken on purpose, "
        "and what it did. Each section is written by the script it names; the figures "
        "are its own, from its last run.\n")
    block = f"{start}\n{body.strip()}\n{end}"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        text = before + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--servers", type=int, default=4, help="processes, one after another")
    parser.add_argument("--frames", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--note", default="", help="a line for the doc (e.g. the machine's load)")
    parser.add_argument("--no-doc", action="store_true")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "bench"))
    from report import machine_description

    figures = RunFigures(Stats(), Stats())
    load = load_average()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="hearth-fuzz-") as tmp:
        per = -(-args.messages // args.servers)
        for n in range(args.servers):
            print(f"server {n + 1}/{args.servers}: {per} messages", flush=True)
            fuzz_server(per, args.seed + n, figures, Path(tmp))
        print(f"framing: {args.frames} broken frames", flush=True)
        fuzz_framing(args.frames, args.seed + 1000, figures, Path(tmp))
    figures.seconds = time.perf_counter() - started
    s, f = figures.stats, figures.framing
    errors = ", ".join(f"{code} × {n:,}" for code, n in sorted(s.errors.items(), key=str))
    internal = ", ".join(f"{n:,} × `{cause}`" for cause, n in s.internal_causes.most_common()) \
        or "none"
    series = "; ".join(" → ".join(str(k // 1024) for k in one) for one in figures.rss_series)
    rss = "; ".join(f"{a // 1024} → {b // 1024} MiB" for a, b in figures.rss_kib)
    sources = "\n".join(f"| {n:,} | `{src.replace('|', '/')}` |"
                        for src, n in figures.traceback_sources.most_common(8))
    summary = {
        "messages": s.sent, "requests": s.requests, "answered": s.answered,
        "unanswered": len(s.unanswered), "results": s.results, "errors": dict(s.errors),
        "framing": {"frames": f.sent, "answered": f.answered, "unanswered": len(f.unanswered)},
        "deaths": figures.deaths, "tracebacks": figures.tracebacks,
        "duplicates": figures.duplicates, "malformed": figures.malformed, "rss_kib": figures.rss_kib,
        "exit_codes": figures.exit_codes, "seconds": round(figures.seconds, 1)}
    print(json.dumps(summary, indent=1))
    for body in s.unanswered[:5] + f.unanswered[:5]:
        print("unanswered:", str(body)[:300])
    if args.no_doc:
        return
    body = f"""## Fuzzing

`bench/fuzz.py` (seed {args.seed}) sent **{s.sent:,} fuzzed JSON-RPC messages** to
{args.servers} `hearth serve` processes one after the other (the scripted engine of
`tests/fake_server.py`, index off), {per:,} each, in batches of 60 sent back to back;
then **{f.sent:,} broken frames** on another connection, each followed by a
well-framed `hearth.status`. Messages: wrong types for every param, huge and
negative numbers, deep nesting, unknown methods, unopened documents, out-of-range,
negative and mid-surrogate positions, lone surrogates, broken envelopes, answers
to requests never sent, `$/cancelRequest` for random ids, and garbage answers
(one in five) to the server's own requests. The same generator runs in the suite
(`tests/test_fuzz.py`: 2,520 messages and 320 broken frames, drawn by
hypothesis, or by a seeded `random.Random` where hypothesis is not installed).

| figure | value |
|---|---|
| messages sent | {s.sent:,} ({s.requests:,} requests owed an answer) |
| requests answered | {s.answered:,} ({s.results:,} results, {sum(s.errors.values()):,} JSON-RPC errors) |
| unanswered | {len(s.unanswered):,} |
| errors by code | {errors or "none"} |
| broken frames followed by an answered request | {f.answered:,} of {f.sent:,} |
| deaths | {figures.deaths} (of {figures.servers} processes) |
| duplicate or malformed answers | {figures.duplicates} duplicates, {figures.malformed} malformed |
| exit codes after shutdown/exit | {", ".join(map(str, figures.exit_codes))} |
| "Traceback" lines in the servers' stderr | {figures.tracebacks:,} (in {sum(figures.traceback_sources.values()):,} log records) |
| RSS after initialize → at the end, per process | {rss} |
| RSS every 5,000 messages, per process (MiB) | {series} |
| longest wait for a batch's answers | {s.max_wait_s:.2f} s |
| wall time | {figures.seconds:.0f} s |

InternalError answers (a handler that broke), by cause: {internal}.

Log records with a traceback, by their first line:

| tracebacks | logged by |
|---|---|
{sources or "| 0 | — |"}

Error codes: -32600 InvalidRequest, -32601 MethodNotFound, -32602 InvalidParams,
-32603 InternalError, -32800 RequestCancelled, -32801 ContentModified, -32803
RequestFailed.

What fuzzing found, each fixed with a test that failed before (the figures above
are with the fixes):

- A malformed answer to one of the server's own requests (say `"error": 5` to
  `window/workDoneProgress/create`) was dropped by pygls, and the handler awaiting
  it, with the editor's request, waited forever. It now fails that request only.
- An answer that borrowed the id of a running request was handed to that request's
  handler: the request was answered with the client's "result", then raised.
- Objects inside the params with a `"jsonrpc"` key were read, and answered, as
  messages of their own (json.loads' object_hook structured every nested object).
- Bodies that are JSON but no JSON-RPC 2.0 object (a batch, a number), ids that are
  lists, objects or floats, methods that are not strings, and `$/cancelRequest` for
  an object id each raised inside pygls (a traceback; an id that is a list even made
  a second, malformed answer). They cost one line now, and a request among them is
  answered InvalidRequest. So are NaN/Infinity (not JSON; the server echoed them
  back) and nesting past 100 levels: a `codeAction/resolve` whose data nested ~300
  deep could not be serialised back (RecursionError in the converter) and was never
  answered.
- Expected JSON-RPC errors (unknown document, bad params, a refused task) were
  logged as tracebacks: 1,800 for 600 messages. One line each now, with the reason.
- pygls kept the future of every didOpen/didChange/didClose and of every command's
  handler for good (one entry per keystroke: RSS grew from 66 to 123 MiB in 25,000
  messages), and the result type of every request of the server's answered with an
  error.
- A document whose URI is percent-encoded (any path with a space or a non-ASCII
  character, as VS Code sends it) was an "unknown document" to every request: pygls
  keeps documents by the unquoted URI.
- `hearth.generateCommitMessage` with a NUL byte in `repo` (ValueError from
  `Path.resolve`), and `hearth.documentFile`, `hearth.generateDocstring` and the
  docstring resolve on a document with lone surrogates (UnicodeEncodeError from
  `ast.parse` and before tree-sitter) were InternalErrors.
- Review on save with a didChange right after the didSave computed its spans from
  the saved text and reviewed the edited one: the background task died with an
  IndexError.

`tests/test_fuzz.py` tolerates no InternalError and no traceback.

{machine(machine_description())}; load average {load} at the start.
{args.note}
"""
    write_doc_section("fuzz", body)
    print(f"wrote the fuzz section of {DOC}")


if __name__ == "__main__":
    main()
