"""Redaction rules, secret-file names and .lmmignore."""

from __future__ import annotations

import pathlib
import re

import pytest

from lmm_cli.privacy.ignore import IgnoreRules
from lmm_cli.privacy.redact import RULES, Rule, is_secret_file, redact, redact_with_hits

from secrets_corpus import (  # tests/ is on sys.path (rootdir conftest)
    CORPUS,
    FILENAME_SAFE,
    KINDS,
)

RULE_NAMES = [r.name for r in RULES]


def _ids(entries: list[tuple[str, str, str]]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for kind, _, _ in entries:
        seen[kind] = seen.get(kind, 0) + 1
        out.append(f"{kind}-{seen[kind]}")
    return out


# --------------------------------------------------------------------------
# The rule table and the corpus cover each other
# --------------------------------------------------------------------------


def test_every_rule_is_exercised_by_the_corpus() -> None:
    # Adding a rule without a corpus entry (and so without a test) fails here.
    assert set(RULE_NAMES) - KINDS == set()


def test_every_corpus_kind_is_a_rule() -> None:
    assert KINDS - set(RULE_NAMES) == set()


def test_corpus_is_broad() -> None:
    assert len(KINDS) >= 30


def test_rule_table_is_well_formed() -> None:
    assert len(RULE_NAMES) == len(set(RULE_NAMES))
    for rule in RULES:
        assert isinstance(rule, Rule)
        assert re.fullmatch(r"[a-z0-9]+(?:-[a-z0-9]+)*", rule.name), rule.name
        assert rule.description
        assert isinstance(rule.pattern, re.Pattern)
        if isinstance(rule.group, str):
            assert rule.group in rule.pattern.groupindex, rule.name
        else:
            assert 0 <= rule.group <= rule.pattern.groups, rule.name
        assert rule.keywords or rule.anchor, f"{rule.name}: the prefilter would never run it"


def test_prefilter_never_hides_a_keyword() -> None:
    # The prefilter reports non-overlapping literals; a literal hidden inside or
    # across another must still lead to its keyword being checked. Exercise
    # every keyword alone, glued to every other, and with a shared character.
    from lmm_cli.privacy import redact as r

    keywords = sorted(r._RULES_BY_KEYWORD)
    for a in keywords:
        for b in keywords:
            for line in (a, f" {a} ", a + b, a[:-1] + b if a[-1:] == b[:1] else a):
                candidates = {
                    k for lit in r._TRIGGER.findall(line) for k in r._KEYWORDS_BY_LITERAL.get(lit, ())
                }
                for k in (a, b):
                    if k in line:
                        assert k in candidates, (line, k)


# --------------------------------------------------------------------------
# One test per corpus entry (so per rule)
# --------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "secret", "text"), CORPUS, ids=_ids(CORPUS))
def test_corpus_secret_is_redacted(kind: str, secret: str, text: str) -> None:
    out, hits = redact_with_hits(text)
    assert secret not in out
    assert f"[REDACTED:{kind}]" in out
    assert kind in hits


@pytest.mark.parametrize(("kind", "secret", "text"), CORPUS, ids=_ids(CORPUS))
def test_corpus_secret_is_redacted_in_a_diff(kind: str, secret: str, text: str) -> None:
    # As an added file in `git show`: every line carries a '+' marker.
    diff = "diff --git a/f b/f\n@@ -0,0 +1 @@\n" + "\n".join("+" + line for line in text.split("\n"))
    out = redact(diff)
    assert secret not in out
    assert f"[REDACTED:{kind}]" in out


@pytest.mark.parametrize(("kind", "secret", "text"), CORPUS, ids=_ids(CORPUS))
def test_redaction_is_idempotent(kind: str, secret: str, text: str) -> None:
    once = redact(text)
    assert redact(once) == once


@pytest.mark.parametrize("secret", FILENAME_SAFE)
def test_secret_in_a_file_name_is_redacted(secret: str) -> None:
    assert "/" not in secret and "\x00" not in secret
    assert len(secret.encode()) < 200
    for path in (
        secret,
        secret + ".txt",
        "notes_" + secret + ".md",
        "dir/" + secret + "-backup.json",
        "a b/" + secret,
    ):
        assert secret not in redact(path), path


def test_many_secrets_in_one_text() -> None:
    text = "\n".join(line for _, _, line in CORPUS)
    out, hits = redact_with_hits(text)
    for kind, secret, _ in CORPUS:
        assert secret not in out, kind
    assert len(hits) >= len(CORPUS) - 5  # a few entries share a value/line shape


# --------------------------------------------------------------------------
# Only the secret span goes; the rest of the line still reads
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('password = "hunter2-Blue"', 'password = "[REDACTED:password-assignment]"'),
        ("PASSWORD: hunter2-Blue", "PASSWORD: [REDACTED:password-assignment]"),
        ('"api_key": "abcd1234efgh5678"', '"api_key": "[REDACTED:api-key-assignment]"'),
        ("DB_PASS=xyz123", "DB_PASS=[REDACTED:password-assignment]"),
        ("mysql --password s3cret-Pw", "mysql --password [REDACTED:cli-secret-flag]"),
        (
            "postgres://admin:Sup3rS3cret@db.example.com:5432/app",
            "postgres://admin:[REDACTED:url-password]@db.example.com:5432/app",
        ),
        (
            "Authorization: Bearer abcdef1234567890abcd",
            "Authorization: Bearer [REDACTED:authorization-header]",
        ),
        ("token: 'tok-9f8e7d6c'  # rotated", "token: '[REDACTED:token-assignment]'  # rotated"),
        ("Password=abc;Server=db", "Password=[REDACTED:password-assignment];Server=db"),
        (
            "https://x.example/cb?code=1&access_token=AbCdEf0123456789xyz&state=1",
            "https://x.example/cb?code=1&access_token=[REDACTED:token-assignment]&state=1",
        ),
        (
            "DEBUG login user=bob password=hunter2 ip=10.0.0.1",
            "DEBUG login user=bob password=[REDACTED:password-assignment] ip=10.0.0.1",
        ),
        ("  - POSTGRES_PASSWORD=postgres", "  - POSTGRES_PASSWORD=[REDACTED:password-assignment]"),
        ('password = "x"', 'password = "[REDACTED:password-assignment]"'),
        ("--password x", "--password [REDACTED:cli-secret-flag]"),
        (
            "résumé: clé AKIAZ7Q3MX4LBN2TYR5W ✓",
            "résumé: clé [REDACTED:aws-access-key-id] ✓",
        ),
    ],
)
def test_context_is_preserved(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_lines_without_secrets_are_untouched_in_a_multiline_text() -> None:
    text = "def f():\n    x = 1\n    password = 'Zq9-Pw-77x'\n    return x\n"
    out = redact(text)
    assert out == "def f():\n    x = 1\n    password = '[REDACTED:password-assignment]'\n    return x\n"


def test_hits_are_in_text_order_with_duplicates() -> None:
    text = "a=AKIAZ7Q3MX4LBN2TYR5W b=AKIAZ7Q3MX4LBN2TYR5X\npassword: Zq9-Pw-77x"
    out, hits = redact_with_hits(text)
    assert hits == ["aws-access-key-id", "aws-access-key-id", "password-assignment"]
    assert out.count("[REDACTED:") == 3


def test_empty_and_plain_text() -> None:
    assert redact_with_hits("") == ("", [])
    plain = "nothing to see here\n" * 50
    assert redact_with_hits(plain) == (plain, [])


# --------------------------------------------------------------------------
# False positives: ordinary code and history stay byte-identical
# --------------------------------------------------------------------------

NOT_SECRETS = [
    # git SHAs, UUIDs, hashes
    "commit 3f786850e387550fdab836ed7e6dc881de23001b",
    "Merge: 3f78685 0e387550",
    "id = 123e4567-e89b-12d3-a456-426614174000",
    "sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "cache-key-d41d8cd98f00b204e9800998ecf8427e",
    "integrity sha512-Yx0w2mCz2Wz7tYlHcA1d6d4ZmU8hQ1c4lU9V1k6o4Zc7y8Qk3wDqf3mG5pY2bVb0aLtVv2qYb6f3Qz8c1e9g==",
    # code reading a secret from somewhere
    "password = None",
    'password = os.environ["X"]',
    'password = os.getenv("DB_PASSWORD")',
    "token = get_token()",
    "token = await fetch_token(session)",
    "password: str",
    "def login(user: str, password: str) -> None:",
    "def f(password: str = None, token: Optional[str] = None):",
    "api_key: str | None = None",
    'if password == "":',
    "if token != expected_token:",
    "self.password = password",
    "self.token = token",
    "connect(user=user, password=pw)",
    "f(password=pw, retries=3)",
    "password = pw",
    "client = Client(api_key=api_key, token=token)",
    "secret = secrets.token_hex(16)",
    "token = tokens[0]",
    "for token in tokens:",
    "max_tokens: 4096",
    "password = getpass.getpass()",
    "password: z.string().min(8),",
    "password: String,",
    "token := os.Getenv(\"TOKEN\")",
    "const token = localStorage.getItem('token');",
    "{ password: hashedPassword }",
    "x = {\"token\": tok}",
    "'password' => $pass,",
    ":password => ENV['PW']",
    "password = input('pw: ')",
    "def unix_getpass(prompt='Password: ', stream=None):",
    'print("Token: " + repr(tt))',
    'headers["Authorization"] = "Bearer " + token',
    '"Authorization": f"Bearer {token}"',
    '"authorization": request.headers.get("x")',
    # placeholders and templates
    'api_key = "<your-key>"',
    'api_key = "your_api_key_here"',
    'token = "${VAR}"',
    'password: "${{ secrets.DB_PASSWORD }}"',
    "token: {{ vault_token }}",
    'PASSWORD="${PASSWORD:-default}"',
    "PASSWORD=$(cat /run/secrets/pw)",
    "export TOKEN=$GITHUB_TOKEN",
    'password = "xxx"',
    'password = "********"',
    'password = "changeme"',
    'password = "password"',
    'password = ""',
    "password: !vault |",
    "password: *db_password",
    "password: ENC(abcdef)",
    "<password>${env.DB_PASSWORD}</password>",
    "https://user:password@host/",
    "postgres://user:${DB_PASS}@db/app",
    "curl -u $USER:$TOKEN https://x",
    "Authorization: Bearer <token>",
    "Authorization: Bearer $TOKEN",
    "--password PASSWORD",
    "usage: tool [--password PASSWORD] [--token TOKEN]",
    "credentials can be given via the --username and --password options",
    '"""Load a library identified by \'name\'."""',
    '"input_token": "next_marker",',
    '"lastModifiedSecret": 1556311319.069,',
    '"encryptionKey": "arn:aws:kms:us-west-2:111122223333:alias/aws/s3",',
    "request.headers['Authorization'] = auth_header",
    "{'Authorization': auth_token}",
    '_SK_START = b"-----BEGIN OPENSSH PRIVATE KEY-----"',
    'service_key = f"{cluster.name}:{service_name}"',
    "docker login --password-stdin",
    'password_hash = "x"',
    'TOKEN_URL = "https://oauth2.googleapis.com/token"',
    'token_type = "bearer"',
    '"password": "Enter your password"',
    "private_key_id: abc",
    # words that merely contain a keyword
    'monkey = "banana"',
    'compass = "north"',
    'bypass = "yes1234"',
    'passenger = "x"',
    'keyboard = "qwerty"',
    'tokenizer = "bpe"',
    'key = "name"',
    'sort_key = "abc"',
    "It's the password: don't share it",
    # URLs and git remotes without credentials
    "git@github.com:org/repo.git",
    "ssh://git@github.com:22/org/repo",
    "http://localhost:8080/path?x=1",
    "https://[::1]:8443/",
    # keys that are not private
    "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA\n-----END PUBLIC KEY-----",
    "-----BEGIN CERTIFICATE-----\nMIIDdzCCAl+gAwIBAgIEAgAAuTANBgkqhkiG9w0BAQUF\n-----END CERTIFICATE-----",
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl user@host",
    # our own marker: redaction is idempotent
    'password = "[REDACTED:password-assignment]"',
]


@pytest.mark.parametrize("text", NOT_SECRETS)
def test_not_a_secret(text: str) -> None:
    assert redact(text) == text


# --------------------------------------------------------------------------
# Private keys
# --------------------------------------------------------------------------

_BODY = [
    "MIIEowIBAAKCAQEAx7Qzx7Qzx7Qzx7Qzx7Qzx7Qzx7Qzx7Qzx7Qzx7Qzx7Qzx7Qz",
    "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAb9Ab9Ab9Ab9Ab9Ab9Ab9Ab9Ab9/Ab9+",
    "Zm9vYmFyYmF6cXV4+/==",
]
_BEGIN = "-----BEGIN RSA PRIVATE KEY-----"
_END = "-----END RSA PRIVATE KEY-----"


def _assert_key_gone(out: str) -> None:
    for line in _BODY:
        assert line not in out
    assert "[REDACTED:private-key]" in out


def test_private_key_block() -> None:
    text = "before\n" + _BEGIN + "\n" + "\n".join(_BODY) + "\n" + _END + "\nafter"
    out = redact(text)
    _assert_key_gone(out)
    assert out == "before\n[REDACTED:private-key]\nafter"


def test_private_key_truncated_without_end_line() -> None:
    out = redact("key:\n" + _BEGIN + "\n" + "\n".join(_BODY[:2]))
    _assert_key_gone(out)


def test_truncated_private_key_stops_at_code() -> None:
    out = redact(_BEGIN + "\n" + "\n".join(_BODY[:2]) + "\n    return load(path)\n")
    _assert_key_gone(out)
    assert out.endswith("\n    return load(path)\n")


def test_private_key_json_escaped_on_one_line() -> None:
    key = "-----BEGIN PRIVATE KEY-----\\n" + "\\n".join(_BODY) + "\\n-----END PRIVATE KEY-----\\n"
    text = '{"type": "service_account", "private_key": "' + key + '", "client_id": "123"}'
    out = redact(text)
    _assert_key_gone(out)
    assert out.startswith('{"type": "service_account", "private_key": "[REDACTED:private-key]"')
    assert out.endswith('"client_id": "123"}')


def test_private_key_json_escaped_and_truncated() -> None:
    out = redact('{"private_key": "-----BEGIN PRIVATE KEY-----\\n' + "\\n".join(_BODY[:2]))
    _assert_key_gone(out)


@pytest.mark.parametrize("marker", ["+", "-", " "])
def test_private_key_in_a_diff(marker: str) -> None:
    lines = [_BEGIN, *_BODY, _END]
    text = "@@ -1,5 +1,5 @@\n" + "\n".join(marker + line for line in lines) + "\n" + marker + "after"
    out = redact(text)
    _assert_key_gone(out)
    assert out.endswith("\n" + marker + "after")


def test_private_key_in_a_diff_truncated() -> None:
    out = redact("@@ -0,0 +1,9 @@\n+" + _BEGIN + "\n" + "\n".join("+" + b for b in _BODY[:2]) + "\n")
    _assert_key_gone(out)


@pytest.mark.parametrize(
    "kind", ["RSA", "EC", "DSA", "OPENSSH", "ENCRYPTED", "PGP", ""]
)
def test_private_key_kinds(kind: str) -> None:
    label = (kind + " " if kind else "") + "PRIVATE KEY" + (" BLOCK" if kind == "PGP" else "")
    text = f"-----BEGIN {label}-----\n" + "\n".join(_BODY) + f"\n-----END {label}-----\n"
    _assert_key_gone(redact(text))


def test_private_key_with_pem_headers_and_crlf() -> None:
    text = (
        _BEGIN + "\r\nProc-Type: 4,ENCRYPTED\r\nDEK-Info: AES-128-CBC,0123456789ABCDEF\r\n\r\n"
        + "\r\n".join(_BODY) + "\r\n"
    )
    _assert_key_gone(redact(text))


def test_private_key_in_yaml_and_python_strings() -> None:
    yaml_text = "tls:\n  key: |\n    " + _BEGIN + "\n    " + "\n    ".join(_BODY) + "\n    " + _END + "\nnext: 1"
    out = redact(yaml_text)
    _assert_key_gone(out)
    assert out.endswith("\nnext: 1")
    py_text = 'KEY = (\n    "' + _BEGIN + '\\n"\n' + "".join(f'    "{b}\\n"\n' for b in _BODY) + ")\n"
    _assert_key_gone(redact(py_text))


# --------------------------------------------------------------------------
# Secret files are recognised by name
# --------------------------------------------------------------------------

SECRET_FILES = [
    ".env",
    "app/.env",
    ".env.local",
    ".env.production",
    # Templates too: they are recorded by name only, and they often end up
    # holding real values; losing their content in memory costs little.
    ".env.example",
    "prod.env",
    ".envrc",
    "certs/server.pem",
    "tls/private.key",
    "KEYS/Server.KEY",
    "id_rsa",
    "home/.ssh/id_rsa",
    "id_dsa",
    "id_ecdsa",
    "id_ed25519",
    "id_ed25519_sk",
    "id_rsa.old",
    "store.p12",
    "cert.pfx",
    "release.jks",
    "android/app/upload.keystore",
    "vault.kdbx",
    "AuthKey_ABC123.p8",
    "putty.ppk",
    ".netrc",
    "_netrc",
    ".git-credentials",
    ".pypirc",
    ".npmrc",
    ".pgpass",
    ".my.cnf",
    ".htpasswd",
    ".aws/credentials",
    "credentials.json",
    "client_secret_1234.apps.googleusercontent.com.json",
    "service-account.json",
    "service-account-prod.json",
    "service_account_key.json",
    "infra/prod.tfvars",
    "terraform.tfstate",
    "terraform.tfstate.backup",
    "config/secrets.yml",
    "secrets.yaml",
    ".streamlit/secrets.toml",
    "windows\\path\\id_rsa",
]

NOT_SECRET_FILES = [
    "id_rsa.pub",
    "home/.ssh/id_ed25519.pub",
    "keyboard.py",
    "monkey.py",
    "tokenizer.py",
    "key.py",
    "keys.py",
    "secrets.py",  # the stdlib module name: code, not data
    "env.py",
    "environment.yml",
    ".venv",
    "src/.venv/lib/site.py",
    "README.md",
    "certificate.crt",
    "credentials.py",
    "password_reset.html",
    "token_test.go",
    ".gitignore",
    "",
]


@pytest.mark.parametrize("path", SECRET_FILES)
def test_is_secret_file(path: str) -> None:
    assert is_secret_file(path)


@pytest.mark.parametrize("path", NOT_SECRET_FILES)
def test_is_not_secret_file(path: str) -> None:
    assert not is_secret_file(path)


# --------------------------------------------------------------------------
# .lmmignore
# --------------------------------------------------------------------------


def test_ignore_rules_gitignore_semantics() -> None:
    rules = IgnoreRules.from_lines(
        [
            "# generated output",
            "",
            "build/",
            "*.log",
            "!keep.log",
            "/root_only.txt",
            "docs/**/*.md",
            "!docs/README.md",
        ]
    )
    assert rules
    assert rules.ignored("build/out.o")
    assert rules.ignored("src/build/deep/x.py")  # directory pattern at any depth
    assert not rules.ignored("build.py")
    assert rules.ignored("a.log") and rules.ignored("logs/b.log")
    assert not rules.ignored("keep.log") and not rules.ignored("sub/keep.log")  # negation
    assert rules.ignored("root_only.txt") and not rules.ignored("sub/root_only.txt")
    assert rules.ignored("docs/guide/intro.md")
    assert not rules.ignored("docs/README.md")
    assert not rules.ignored("src/main.py")
    assert not rules.ignored("# generated output")  # comments are not patterns


def test_ignore_rules_skip_a_bad_pattern() -> None:
    rules = IgnoreRules.from_lines(["[z-a]", "bad\\", "!", "*.tmp"])
    assert rules
    assert rules.ignored("x.tmp")
    assert not rules.ignored("x.py")
    assert "[z-a]" in rules.skipped


def test_ignore_rules_empty() -> None:
    assert not IgnoreRules.from_lines([])
    assert not IgnoreRules.from_lines(["# only a comment", "", "   "])
    assert not IgnoreRules.from_lines([]).ignored("anything.py")


def test_ignore_rules_load(tmp_path: pathlib.Path) -> None:
    assert not IgnoreRules.load(tmp_path)  # missing file matches nothing
    (tmp_path / ".lmmignore").write_text("vendor/\n*.min.js\r\n!keep.min.js\n", encoding="utf-8")
    rules = IgnoreRules.load(tmp_path)
    assert rules
    assert rules.ignored("vendor/lib/a.js")
    assert rules.ignored("static/app.min.js")
    assert not rules.ignored("keep.min.js")
    assert not rules.ignored("src/app.js")


def test_ignore_rules_unreadable_file(tmp_path: pathlib.Path) -> None:
    (tmp_path / ".lmmignore").mkdir()  # a directory where the file should be
    assert not IgnoreRules.load(tmp_path)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / ".lmmignore").write_bytes(b"\xff\xfe junk\n*.bin\n")  # undecodable bytes on one line
    assert IgnoreRules.load(tmp_path / "other").ignored("x.bin")
