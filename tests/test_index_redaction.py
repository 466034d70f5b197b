"""Phase 1 redacts each chunk with a plan made from its whole file (Redactor.for_text):
it must redact exactly what the plain pass does."""

from __future__ import annotations

import base64
import random

import pytest

from hearth_lsp.indexer.chunker import chunk_file
from hearth_lsp.indexer.secrets import Redactor
from hearth_lsp.indexer.store import unpack_text
from hearth_lsp.indexer.workspace import WorkspaceIndex

SOURCE = '''"""Settings, with secrets planted in several shapes."""
API_KEY = "a8f7d6s5a4s3d2f1"
DB_URL = "postgres://admin:hunter2222@db.local/app"
ANTHROPIC = "sk-ant-0123456789abcdefghijklmnop"
AWS = "AKIAABCDEFGHIJKLMNOP"
PLAIN = "nothing to see here"


def connect(password="Zq8!r7Tt0pLm4"):
    """Connects."""
    token: "q8w7e6r5t4y3u2x1"
    return password


class Client:
    def auth(self):
        self.client_secret = "0a9s8d7f6g5h4j3k"
        return "secret_value = 'k3j4h5g6f7d8s9a0'"
'''


@pytest.mark.parametrize("source", [SOURCE, SOURCE + "# caf\u00e9\n"], ids=["ascii", "unicode"])
def test_the_files_plan_redacts_each_chunk_as_the_plain_pass_does(source):
    redactor = Redactor({"hunter2222"})
    chunks = chunk_file("app/settings.py", "python", source.encode()).chunks
    plan = redactor.for_text(source)
    pieces = [piece for c in chunks for piece in (c.text, c.signature, c.doc)]
    assert [plan(p) for p in pieces] == [redactor(p) for p in pieces]
    redacted = "\n".join(plan(p) for p in pieces)
    for secret in ("a8f7d6s5a4s3d2f1", "hunter2222", "sk-ant-0123", "AKIAABCDEFGHIJKLMNOP",
                   "Zq8!r7Tt0pLm4", "q8w7e6r5t4y3u2x1", "0a9s8d7f6g5h4j3k", "k3j4h5g6f7d8s9a0"):
        assert secret not in redacted, secret
    assert "nothing to see here" in redacted


def test_a_file_without_secret_shapes_is_left_as_it_is():
    text = "def add(a, b):\n    return a + b\n"
    plan = Redactor().for_text(text)
    assert plan(text) == text


def stored(idx, path: str) -> list[tuple[int, int, str]]:
    return [(start, end, unpack_text(text)) for start, end, text in idx.store.db.execute(
        "SELECT start_line, end_line, text FROM chunks WHERE path = ? ORDER BY start_line",
        (path,))]


def test_a_env_file_added_later_redacts_what_was_indexed_before_it(tmp_path):
    # The values were read once per process, and a file indexed before the .env came was
    # never read again: the password stayed in the store and the search found it.
    root = tmp_path / "ws"
    root.mkdir()
    (root / "db.py").write_text("def connect():\n    return login('admin', 'hunter2hunter2')\n")
    idx = WorkspaceIndex(root, tmp_path / "cache")
    try:
        idx.update(workers=1)
        assert "hunter2hunter2" in stored(idx, "db.py")[0][2]  # not a secret yet
        (root / ".env").write_text("DB_PASSWORD=hunter2hunter2\n")
        (root / "new.py").write_text("greeting = 'hunter2hunter2'\n")  # by its value alone
        idx.update_paths(["new.py"])  # a save: read with the values as they are now
        assert "hunter2hunter2" not in stored(idx, "new.py")[0][2]
        idx.update(workers=1)  # every file read again: the values changed
        assert "<redacted:env>" in stored(idx, "db.py")[0][2]
        assert idx.search("hunter2hunter2") == []
        assert idx.update(workers=1).changed == 0  # once
        # A .env in a folder below: found again when a changed path is one (a save does
        # not walk the tree for them: up to ~20 ms on a large one).
        (root / "config").mkdir()
        (root / "config" / ".env").write_text("API_TOKEN=nested7value7\n")
        (root / "api.py").write_text("region = 'nested7value7'\n")
        idx.update_paths(["api.py", "config/.env"])
        assert "nested7value7" not in stored(idx, "api.py")[0][2]
    finally:
        idx.close()


def test_a_private_key_cut_by_a_chunk_s_edge_leaves_no_line_behind(tmp_path):
    # Each chunk was redacted alone: the key's lines after the BEGIN line, in the next
    # chunk, stayed. The file is redacted whole first, its lines where they were.
    random.seed(1)
    body = [base64.b64encode(random.randbytes(48)).decode() for _ in range(26)]
    lines = [f"Setup step {i}: run the thing." for i in range(40)] + ["```"] + [
        "-----BEGIN RSA PRIVATE KEY-----", *body, "-----END RSA PRIVATE KEY-----"] + [
        "```"] + [f"More notes {i}." for i in range(20)]
    root = tmp_path / "ws"
    root.mkdir()
    (root / "DEPLOY.md").write_text("\n".join(lines) + "\n")
    idx = WorkspaceIndex(root, tmp_path / "cache")
    try:
        idx.update(workers=1)
        chunks = stored(idx, "DEPLOY.md")
        assert len(chunks) > 1
        assert not any(line in text for line in body for _, _, text in chunks)
        last = lines.index("More notes 19.")
        [(start, end, text)] = [c for c in chunks if "More notes 19." in c[2]]
        assert start <= last <= end  # (0-based) the lines after the key did not move
        assert text.splitlines()[last - start] == "More notes 19."
    finally:
        idx.close()
