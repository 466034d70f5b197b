"""Phase 1 redacts each chunk with a plan made from its whole file (Redactor.for_text):
it must redact exactly what the plain pass does."""

from __future__ import annotations

import pytest

from hearth_lsp.indexer.chunker import chunk_file
from hearth_lsp.indexer.secrets import Redactor

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
