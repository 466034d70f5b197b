"""Redaction: every credential shape is replaced; ordinary code is left alone."""

from __future__ import annotations

import pytest

from hearth_lsp.indexer.secrets import Redactor, env_values, is_secret_file

# Canaries in every shape Hearth promises to catch (made up; none is a real credential).
CANARIES = {
    "aws": 'AWS_ACCESS_KEY_ID = "AKIAQ3EGRZ7CANARY0AB"',
    "github": "token: ghp_CanaryCanaryCanaryCanary0123456789ab",
    "gitlab": "GITLAB=glpat-Canary_Canary-Canary1234",
    "slack": "hook = 'xoxb-1234567890-canary-canary'",
    "stripe": "stripe.api_key = 'sk_live_CanaryCanary12345678'",
    "openai": "client = OpenAI(api_key='sk-proj-CanaryCanaryCanary0123456789')",
    "google": 'maps = "AIzaSyCanaryCanaryCanaryCanary012345678"',
    "jwt": "auth = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJjYW5hcnkifQ.c2lnbmF0dXJlY2FuYXJ5'",
    "url": 'DATABASE_URL = "postgres://admin:Canary-Pa55word@db.internal:5432/app"',
    "assigned": 'self.client_secret = "q8Zr2Lx7Vc9Nw4Tk"',
    "dict": '{"password": "Xy7#pQ2!mN9@vL4"}',
    "env-style": "API_TOKEN=9fK2xQ7LmZ4vB8nW3cR6",
    "key-block": "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAACANARY\n"
                 "-----END OPENSSH PRIVATE KEY-----",
}
SECRETS = {
    "aws": "AKIAQ3EGRZ7CANARY0AB", "github": "ghp_CanaryCanaryCanaryCanary0123456789ab",
    "gitlab": "glpat-Canary_Canary-Canary1234", "slack": "xoxb-1234567890-canary-canary",
    "stripe": "sk_live_CanaryCanary12345678", "openai": "sk-proj-CanaryCanaryCanary0123456789",
    "google": "AIzaSyCanaryCanaryCanaryCanary012345678",
    "jwt": "eyJzdWIiOiJjYW5hcnkifQ", "url": "Canary-Pa55word", "assigned": "q8Zr2Lx7Vc9Nw4Tk",
    "dict": "Xy7#pQ2!mN9@vL4", "env-style": "9fK2xQ7LmZ4vB8nW3cR6", "key-block": "b3BlbnNzaC1rZXktdjEAAAAACANARY",
}


@pytest.mark.parametrize("kind", list(CANARIES))
def test_each_credential_shape_is_redacted(kind):
    text, count = Redactor().redact(f"# config\n{CANARIES[kind]}\nprint('done')\n")
    assert SECRETS[kind] not in text and count >= 1
    assert "<redacted:" in text and "print('done')" in text


ORDINARY = [
    "password = get_password(user)",
    "token = request.headers['Authorization']",
    "def check_password(password: str) -> bool:",
    "api_key = os.environ['API_KEY']",
    "SECRET_KEY = settings.SECRET_KEY",
    'secret_name = "database_password"',
    "url = 'https://example.com/path:8080'",
    "for token in tokens:",
]


@pytest.mark.parametrize("line", ORDINARY)
def test_ordinary_code_is_left_alone(line):
    assert Redactor().redact(line) == (line, 0)


def test_values_from_env_files_are_redacted_anywhere(tmp_path):
    (tmp_path / ".env").write_text("# local\nSERVICE_PASSWORD='hunter2-canary'\nDEBUG=true\n"
                                   "export SHORT=abc\n")
    (tmp_path / ".env.example").write_text("SERVICE_PASSWORD=changeme-please\n")
    values = env_values(tmp_path)
    assert values == {"hunter2-canary"}
    text, count = Redactor.for_workspace(tmp_path).redact("login('admin', 'hunter2-canary')")
    assert "hunter2-canary" not in text and count == 1


@pytest.mark.parametrize("name, secret", [
    (".env", True), (".env.production", True), ("prod.env", True), ("server.pem", True),
    ("id_rsa", True), ("id_ed25519.pub", True), ("credentials.json", True),
    ("gcp-credentials-prod.json", True), (".npmrc", True), (".pypirc", True),
    ("cert.p12", True), (".env.example", False), ("environment.py", False),
    ("keys.py", False), ("README.md", False),
])
def test_secret_files_by_name(name, secret):
    assert is_secret_file(f"some/dir/{name}") is secret


def test_log_records_are_redacted_before_any_handler(caplog):
    import io
    import logging

    from hearth_lsp.server import logs

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(logs.RedactingFilter())
    logger = logging.getLogger("hearth.test-redaction")
    logger.addHandler(handler)
    logs.remember_secrets({"canary-env-value-42"})
    try:
        logger.warning("connecting with %s and %s", "canary-env-value-42",
                       "ghp_CanaryLogCanaryLogCanaryLog0123456789")
        try:
            raise ValueError("bad key sk-proj-CanaryTracebackCanary0123456")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert "connecting with <redacted:env> and <redacted:github-token>" in text
    assert "ValueError: bad key <redacted:api-key>" in text
    assert "canary" not in text.lower().replace("<redacted", "")
