"""Redaction: every credential shape is replaced; ordinary code is left alone."""

from __future__ import annotations

from pathlib import Path

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


# Shapes that leaked before (the privacy audit's r02 inputs): (line, what must go, the
# line as it must come out).
LEAKED = {
    "url-empty-user": ("redis://:R3disPassw0rd@cache:6379/0", "R3disPassw0rd",
                       "redis://:<redacted:password>@cache:6379/0"),
    "url-at-in-password": ("redis://:s3cr3t@pw@cache:6379/0", "s3cr3t",
                           "redis://:<redacted:password>@cache:6379/0"),
    "url-token-user": ("https://x0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b@github.com/org/repo.git",
                       "x0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b",
                       "https://<redacted:token>@github.com/org/repo.git"),
    "url-token-user-oauth": (
        "https://9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a1f0e:x-oauth-basic@github.com/o/r.git",
        "9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a1f0e",
        "https://<redacted:token>:<redacted:password>@github.com/o/r.git"),
    # The token shape first, and the URL rule must not take its placeholder apart.
    "url-github-token-user": ("https://ghp_CanaryCanaryCanaryCanary0123456789ab@github.com/x",
                              "ghp_Canary", "https://<redacted:github-token>@github.com/x"),
    "url-token-password": ("https://oauth2:glpat-Canary_Canary-Canary1234@gitlab.com/a",
                           "glpat-", "https://oauth2:<redacted:gitlab-token>@gitlab.com/a"),
    "slack-webhook": ("https://hooks.slack.com/services/T00000000/B00000000/"
                      "XXXXXXXXXXXXXXXXXXXXXXXX", "XXXXXXXX", "https://<redacted:slack-webhook>"),
    "bearer": ('headers = {"Authorization": "Bearer 8f14e45fceea167a5a36dedd4bea2543"}',
               "8f14e45fceea167a5a36dedd4bea2543",
               'headers = {"Authorization": "Bearer <redacted:token>"}'),
    "basic": ("Authorization: Basic Ym9iOlN1cDNyRG9ja2VyQ0FOQVJZ", "Ym9iOlN1cDNy",
              "Authorization: Basic <redacted:token>"),
    "azure": ("DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=Eby8vdM02xNOcqFlqUwJPLl"
              "mEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;EndpointSuffix=x",
              "Eby8vdM02x", "DefaultEndpointsProtocol=https;AccountName=acct;"
              "AccountKey=<redacted:azure-key>;EndpointSuffix=x"),
    "db-pass": ('DB_PASS = "Xq83hLm2Vn"', "Xq83hLm2Vn", 'DB_PASS = "<redacted:secret>"'),
    "passphrase": ('PASSPHRASE = "Xq83hLm2Vn91"', "Xq83hLm2Vn91",
                   'PASSPHRASE = "<redacted:secret>"'),
    "db-passwd": ('db_passwd = "Xq83hLm2Vn91"', "Xq83hLm2Vn91", 'db_passwd = "<redacted:secret>"'),
    "client-secret": ('client_secret = "Xq83hLm2Vn91"', "Xq83hLm2Vn91",
                      'client_secret = "<redacted:secret>"'),
    "private-key-name": ('private_key = "Xq83hLm2Vn91"', "Xq83hLm2Vn91",
                         'private_key = "<redacted:secret>"'),
    # Low entropy, but a password's name and not words.
    "password-low-entropy": ('password = "correcthorse1"', "correcthorse1",
                             'password = "<redacted:secret>"'),
    "comment": ("# token: 9f8e7d6c5b4a3f2e1d0c9b8a", "9f8e7d6c5b4a3f2e1d0c9b8a",
                "# token: <redacted:secret>"),
    "yaml": ("api_token: 9f8e7d6c5b4a3f2e1d0c9b8a", "9f8e7d6c5b4a3f2e1d0c9b8a",
             "api_token: <redacted:secret>"),
    "huggingface": ("hf_AbCdEfGhIjKlMnOpQrStUvWxYz01234567", "hf_AbCd",
                    "<redacted:huggingface-token>"),
    "sendgrid": ("SG.abcdefghijklmnopqrstuv.abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", "SG.abc",
                 "<redacted:sendgrid-key>"),
    "twilio": ("SK0123456789abcdef0123456789abcdef", "SK0123", "<redacted:twilio-key>"),
}


@pytest.mark.parametrize("kind", list(LEAKED))
def test_shapes_that_leaked_are_redacted(kind):
    line, secret, expected = LEAKED[kind]
    text = f"# config\n{line}\nprint('done')\n"
    out, count = Redactor().redact(text)
    assert secret not in out and count >= 1
    assert out == f"# config\n{expected}\nprint('done')\n"
    # The index's path (literals looked up once per file) gives the same.
    assert Redactor().for_text(text)(text) == out


ORDINARY = [
    "password = get_password(user)",
    "token = request.headers['Authorization']",
    "def check_password(password: str) -> bool:",
    "api_key = os.environ['API_KEY']",
    "SECRET_KEY = settings.SECRET_KEY",
    'secret_name = "database_password"',
    "url = 'https://example.com/path:8080'",
    "for token in tokens:",
    'primary_key = "id"',
    'sort_key = "created_at"',
    "token_count = 3",
    'password_field = "password"',
    'password = "%(password)s"',
    "url = 'https://user@github.com/x'",
    'passenger_id = "Xq83hLm2Vn91"',  # `pass` only as a word of its own
    'headers = {"Authorization": f"Bearer {token}"}',
    "Basic authentication is deprecated; use bearer tokens.",
    'model = "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"',
    'label = "DISK0123456789abcdef0123456789abcdef"',  # `SK` inside a word
]


@pytest.mark.parametrize("line", ORDINARY)
def test_ordinary_code_is_left_alone(line):
    assert Redactor().redact(line) == (line, 0)


def test_values_from_env_files_are_redacted_anywhere(tmp_path):
    (tmp_path / ".env").write_text("# local\nSERVICE_PASSWORD='hunter2-canary'\nDEBUG=true\n"
                                   "export SHORT=abc\nNODE_ENV=production\nLOG_LEVEL=warning\n"
                                   "ADMIN_PASSWORD=correcthorse\nSESSION_KEY=abcdefgh\n")
    (tmp_path / ".env.example").write_text("SERVICE_PASSWORD=changeme-please\n")
    values = env_values(tmp_path)
    # A plain word is a setting's value, unless its name is a secret's: "production" was
    # replaced in every prompt and index chunk.
    assert values == {"hunter2-canary", "correcthorse", "abcdefgh"}
    text, count = Redactor.for_workspace(tmp_path).redact("login('admin', 'hunter2-canary')")
    assert "hunter2-canary" not in text and count == 1


def test_values_from_env_files_in_subfolders(tmp_path):
    for rel, line in [("config/.env", "NESTED_KEY=nestedV4lue99"),
                      ("services/api/.env.local", "API_SECRET=apiL0calValue"),
                      ("a/b/c/.env", "DEEPEST=thirdLevel77"),
                      ("a/b/c/d/.env", "TOO_DEEP=fourthLevel88"),
                      ("node_modules/pkg/.env", "VENDORED=packageValue1"),
                      ("config/.env.example", "TEMPLATE=changeme-please")]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(line + "\n")
    assert env_values(tmp_path) == {"nestedV4lue99", "apiL0calValue", "thirdLevel77"}
    text, count = Redactor.for_workspace(tmp_path).redact("x = 'nestedV4lue99'")
    assert text == "x = '<redacted:env>'" and count == 1


@pytest.mark.parametrize("name, secret", [
    (".env", True), (".env.production", True), ("prod.env", True), ("server.pem", True),
    ("id_rsa", True), ("id_ed25519.pub", True), ("credentials.json", True),
    ("gcp-credentials-prod.json", True), (".npmrc", True), (".pypirc", True),
    ("cert.p12", True), (".env.example", False), ("environment.py", False),
    ("keys.py", False), ("README.md", False),
    (".pgpass", True), (".git-credentials", True), ("kubeconfig", True),
    ("terraform.tfvars", True), ("prod.auto.tfvars", True), ("prod.tfstate", True),
    ("terraform.tfstate.backup", True), (".vault-token", True), (".s3cfg", True),
    (".boto", True), ("key.ppk", True), (".my.cnf", True), ("service-account.json", True),
    ("gcp-service-account-prod.json", True), ("terraform.tfvars.example", False),
    ("main.tf", False), ("config.json", False), ("config", False),
])
def test_secret_files_by_name(name, secret):
    assert is_secret_file(f"some/dir/{name}") is secret


@pytest.mark.parametrize("path, secret", [
    (".aws/config", True), (".aws/credentials", True), ("home/.aws/sso/cache/x.json", True),
    (".kube/config", True), (".ssh/config", True), (".gnupg/pubring.kbx", True),
    (".docker/config.json", True), (Path(".kube/config"), True),
    (Path("/home/me/.aws/config"), True), (Path("/home/me/.docker/config.json"), True),
    # Ordinary files: a bare name, a top-level config, a project's own `.docker/`.
    ("config", False), ("config.json", False), ("src/config.json", False),
    (".docker/Dockerfile", False), ("docker/config.json", False), ("kube/config", False),
    (Path("config"), False), (Path("/srv/app/config.json"), False),
])
def test_secret_files_by_folder(path, secret):
    assert is_secret_file(path) is secret


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
