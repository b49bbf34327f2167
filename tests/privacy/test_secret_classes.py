"""The classes of secret of issue 9, one by one, and the ordinary text each must leave alone:
credentials in prose, env-style names with any prefix, entropy-gated ``*key`` values, bare vendor
tokens, lines cut short (git's 80-byte hunk-header context), private-key bodies whose BEGIN line is
elsewhere, notes, and the output pass (redaction plus terminal control characters)."""

from __future__ import annotations

import random
import string

import pytest

from lmm_cli.privacy.output import clean_data, clean_output, strip_controls, training_text
from lmm_cli.privacy.redact import (
    RULES_VERSION,
    find_secrets,
    redact,
    redact_cut,
    redact_note,
    redact_note_with_hits,
    trim_cut,
)

from secrets_corpus import CUT_HEADERS, NOTES, PLANTED

_rng = random.Random(9)


def _tok(n: int = 32) -> str:
    while True:
        s = "".join(_rng.choice(string.ascii_letters + string.digits) for _ in range(n))
        if any(c.isdigit() for c in s) and any(c.isupper() for c in s) and any(c.islower() for c in s):
            return s


def _pw() -> str:
    return "Pw" + _tok(10) + "!" + str(_rng.randint(10, 99))


# --------------------------------------------------------------------------
# Credentials in prose
# --------------------------------------------------------------------------

PW, TOK = _pw(), _tok()


@pytest.mark.parametrize(
    "text",
    [
        f"staging db password is {PW} until Friday",
        f"the admin password is {PW}",
        f"The admin password was {PW}.",
        f"aws secret key: {TOK}",
        f"auth token {TOK}",
        f"the password for the admin account is {PW}",
        f"root password changed to {PW} after the incident",
        f"reset the deploy key to {TOK}",
        f"api key = {TOK} (rotate monthly)",
        f"wifi password: {PW} - ask IT",
        f"bot token is '{TOK}'",
        f"db_password is {PW} on the replica",
        f"- new client secret is {TOK}",
        f"the password is now {PW}",
    ],
)
def test_prose_credentials_are_redacted(text: str) -> None:
    secret = PW if PW in text else TOK
    out = redact(text)
    assert secret not in out, out
    assert "[REDACTED:" in out


@pytest.mark.parametrize("text", ["the password is *{v}*", "the password is {v}\\nnext line", 'msg = "the password is {v}"'])
def test_prose_values_in_markup_and_strings(text: str) -> None:
    value = "Tr0ub4dor&3" + _tok(4)
    assert value not in redact(text.format(v=value))


def test_a_backslash_inside_a_password_does_not_cut_it_short() -> None:
    value = "Pa55\\word!" + _tok(4)
    assert "word!" not in redact(f"the password is {value}")


def test_a_quoted_passphrase_in_prose_goes_whole() -> None:
    phrase = "correct horse battery " + "".join(_rng.choice(string.ascii_lowercase) for _ in range(8))
    out = redact(f'the vault password is "{phrase}"')
    assert phrase not in out and "horse" not in out


PROSE_NOT_SECRETS = [
    "the password is required",
    "the password is stored in the OS keyring",
    "the token is invalid",
    "if token is not None:",
    "assert password is None",
    "the token is a JWT signed with RS256",
    "the api key is read from the environment",
    "the secret is out",
    "passwords are hashed with argon2id",
    "the password is hashed with bcrypt",
    "the token expires after 3600 seconds",
    "the token is 32 bytes long",
    "the key is the user id",  # a bare "key": of a dict, a cache, a map
    "access token is sent as a bearer header",
    "the token is v2",
    "the secret key is SECRET_KEY in settings.py",
    "auth token TTL is 15m",
    "the password is in 1Password",
    "token budget: 2000",
    "password reset flow: send_reset_email(user)",
    "the session token is cookie_name_v2 by default",
    "It's the password: don't share it",
    "secret = secrets.token_hex(16)",
    "password = getpass.getpass()",
    "token: Optional[str] = None",
    "the credentials are in ~/.aws/credentials",
    "tokens are cached per user",
    "the token endpoint is https://auth.example.com/oauth/token",
    "the password field is named password_confirmation",
    "our API key is sk-... (see vault)",
    "use the token you got from `lmm login`",
    "Token refresh happens every 5m",
    'git commit -m "Fix token refresh\\n\\nTokens came back with whitespace."',  # escaped newlines end a value
    "which replaces each secret *span* with a marker",  # markdown emphasis
]


@pytest.mark.parametrize("text", PROSE_NOT_SECRETS)
def test_prose_that_holds_no_secret_is_left_alone(text: str) -> None:
    assert redact(text) == text


# --------------------------------------------------------------------------
# Env-style assignments, any prefix, any format
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "template",
    [
        "OPENAI_KEY={v}",
        "SENDGRID_KEY={v}",
        "export PGPASSWORD={v}",
        "DD_API_KEY={v}",
        "GITHUBTOKEN={v}",
        "PAYMENTS_SECRET={v}",
        "MYSQL_PWD={v}",
        "SMTP_PASS={v}",
        "  MAPS_KEY: {v}",  # YAML
        '  "WEBHOOK_SECRET": "{v}",',  # JSON
        'algolia_admin_key = "{v}"',  # TOML
        "      - SMTP_PASSWORD={v}",  # docker-compose
        "ENV SLACKTOKEN={v}",  # Dockerfile
        "ADMIN_PASS ?= {v}",  # Makefile
        "stripeKey: '{v}',",  # JS object
        "openai.key = {v}",  # .properties
        "set -gx CLIENTSECRET {v}".replace(" {v}", "={v}"),
    ],
)
def test_env_style_names_with_any_prefix(template: str) -> None:
    value = _tok(36)
    out = redact(template.format(v=value))
    assert value not in out, out


ENV_NOT_SECRETS = [
    'PRIMARY_KEY = "id"',
    'SORT_KEY = "created_at"',
    'CACHE_KEY = "user_profile_v2"',
    'cache_key = f"user:{user_id}"',
    'i18n_key = "page.title.v2"',
    "key = tokens[0]",
    'partition_key = "tenant_id"',
    'FOREIGN_KEY_CHECKS = "0"',
    'HOTKEY = "ctrl+shift+p"',
    "SECRET_KEY = os.environ['SECRET_KEY']",
    "GITHUB_TOKEN=${{ secrets.GITHUB_TOKEN }}",
    "PGPASSWORD=$PGPASSWORD",
    'storage_key = "uploads/avatars/default.png"',
    'RESET_TOKEN = "reset_token"',
    'CSRF_TOKEN = "csrftoken"',
    'NEXT_TOKEN = "NextToken"',
    'api_key_header = "X-API-Key"',
    "key: value",
    'keyboard = "qwerty"',
    'monkey_key = "banana"',
    "KEY_LENGTH=32",
    'ssh_key_path = "~/.ssh/id_ed25519"',
    'secret_key_ref = "arn:aws:secretsmanager:us-east-1:123456789012:secret:db"',
    'tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))',
]


@pytest.mark.parametrize("text", ENV_NOT_SECRETS)
def test_key_names_holding_no_secret_are_left_alone(text: str) -> None:
    assert redact(text) == text


# --------------------------------------------------------------------------
# Bare vendor tokens, no assignment around them
# --------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "value", "text"), [p for p in PLANTED if p[2].startswith("token ")],
                         ids=lambda x: x if isinstance(x, str) and len(x) < 40 else None)
def test_bare_vendor_tokens(kind: str, value: str, text: str) -> None:
    out = redact(f"see {value} here")
    assert value not in out
    assert find_secrets(value), "recognised with no context at all"


# --------------------------------------------------------------------------
# Lines cut short: git's 80-byte hunk-header context
# --------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "value", "line"), CUT_HEADERS, ids=[k for k, _, _ in CUT_HEADERS])
def test_a_secret_cut_by_git_at_80_bytes_leaves_nothing(kind: str, value: str, line: str) -> None:
    cut = line.encode()[:80].decode("utf-8", "ignore")
    visible = next(value[:n] for n in range(len(value), 0, -1) if value[:n] in cut)
    assert len(visible) >= 8, "the corpus cuts inside the value"
    out = redact_cut(cut)
    assert visible not in out
    assert value[:6] not in out or kind == "cut-passphrase"  # ("correct"): the prefix is a word


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('def connect(host, token="ghp_8fK', 'def connect(host, token="'),
        ("def unlock(vault, passphrase='correct horse", "def unlock(vault, passphrase='"),
        ("PASSWORD=hunter2-lo", ""),
        ("def f(self, it's_ok, x", "def f(self, it's_ok, "),  # an apostrophe is not a quote
        ("class Handler(BaseHandler):", "class Handler("),  # it assumes the line was cut: the name stays
        ("def very_long_function_name(self, argument_one, argument_tw", "def very_long_function_name(self, argument_one, "),
    ],
)
def test_trim_cut(line: str, expected: str) -> None:
    assert trim_cut(line) == expected


# --------------------------------------------------------------------------
# Private-key bodies whose BEGIN line is outside the text
# --------------------------------------------------------------------------

_BODY = ["".join(_rng.choice(string.ascii_letters + string.digits + "+/") for _ in range(64)) for _ in range(5)]


@pytest.mark.parametrize("marker", [" ", "+", "-"])
def test_key_body_above_an_end_line_without_begin(marker: str) -> None:
    hunk = ("@@ -20,8 +20,9 @@ def load():\n" + "".join(marker + b + "\n" for b in _BODY)
            + marker + "-----END RSA PRIVATE KEY-----\n+appended = True\n")
    out = redact(hunk)
    for b in _BODY:
        assert b not in out
    assert "[REDACTED:private-key-body]" in out
    assert out.startswith("@@ -20,8 +20,9 @@ def load():\n")
    assert out.endswith("-----END RSA PRIVATE KEY-----\n+appended = True\n")


def test_key_body_json_escaped_before_end() -> None:
    text = '"key": "' + "\\n".join(_BODY) + '\\n-----END PRIVATE KEY-----\\n"'
    out = redact(text)
    assert not any(b in out for b in _BODY)


@pytest.mark.parametrize(
    "text",
    [
        '_END = b"-----END OPENSSH PRIVATE KEY-----"',
        "if line.startswith('-----END RSA PRIVATE KEY-----'):\n    break",
        "x = 1\n-----END RSA PRIVATE KEY-----",  # no body above
    ],
)
def test_an_end_line_alone_is_not_a_key(text: str) -> None:
    assert redact(text) == text


# --------------------------------------------------------------------------
# Notes
# --------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "value", "text"), NOTES, ids=[k for k, _, _ in NOTES])
def test_notes_keep_no_secret(kind: str, value: str, text: str) -> None:
    out, hits = redact_note_with_hits(text)
    assert value not in out
    assert hits


def test_a_plain_word_password_goes_in_a_note_but_not_in_a_commit() -> None:
    text = "the staging admin password is swordfish"
    assert redact_note(text) == "the staging admin password is [REDACTED:prose-secret]"
    assert redact(text) == text  # a commit saying "the password is hashed": words are not secrets there


@pytest.mark.parametrize(
    "text",
    [
        "we keep auth tokens in the OS keyring, never in files",
        "the password is stored in vault, never in the repo",
        "the token is rotated weekly by the deploy job",
        "api key lives in 1Password under 'staging'",
        "passwords must be at least 12 characters",
    ],
)
def test_notes_without_secrets_are_kept(text: str) -> None:
    assert redact_note(text) == text


# --------------------------------------------------------------------------
# The output pass
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("\x1b[31mred\x1b[0m title", "red title"),
        ("bell\x07 here", "bell here"),
        ("a\x1b]0;retitled\x07b", "ab"),
        ("a\x1b]8;;https://evil.example\x1b\\link\x1b]8;;\x1b\\b", "alinkb"),
        ("x\x1b]0;unterminated\nnext line", "x\nnext line"),
        ("over\rwrite", "overwrite"),
        ("crlf\r\nkept", "crlf\nkept"),
        ("tab\tand\nnewline", "tab\tand\nnewline"),
        ("c1 \x9b2J csi", "c1  csi"),
        ("del\x7f nul\x00 vt\x0b ff\x0c", "del nul vt ff"),
        ("bidi \u202eevil\u202c", "bidi evil"),
        ("ünïcödé ✓ stays", "ünïcödé ✓ stays"),
    ],
)
def test_strip_controls(raw: str, clean: str) -> None:
    assert strip_controls(raw) == clean
    assert clean_output(raw) == clean


def test_clean_output_redacts_after_stripping() -> None:
    token = "gh" + "p_" + _tok(36)
    split = token[:10] + "\x1b[0m" + token[10:]  # a control sequence cannot hide a token
    assert token[10:] not in clean_output(split)
    assert training_text("token " + token) == "token [REDACTED:github-token]"


def test_clean_data_walks_everything() -> None:
    token = "gh" + "p_" + _tok(36)
    data = {"title": "\x1b[2Jx " + token, "n": 3, "files": [{"path": token + ".txt"}], "t": ("a\x07",), "none": None}
    out = clean_data(data)
    assert out == {"title": "x [REDACTED:github-token]", "n": 3, "files": [{"path": "[REDACTED:github-token].txt"}],
                   "t": ("a",), "none": None}


def test_rules_version_is_recorded() -> None:
    assert isinstance(RULES_VERSION, int) and RULES_VERSION >= 1


@pytest.mark.parametrize(
    "text",
    [
        "row = db.execute(\"SELECT value FROM state WHERE key = 'fusion_weights'\").fetchone()",
        "SELECT * FROM kv WHERE key = 'a1b2c3'",
        "the cache key is user_42",
    ],
)
def test_a_bare_key_word_needs_a_machine_made_value(text: str) -> None:
    assert redact(text) == text
    assert redact_note(text) == text


def test_a_note_redacted_twice_keeps_one_clean_marker() -> None:
    from lmm_cli.privacy.redact import redact_note

    assert redact_note("the staging password is swordfish2024 until Friday") == \
        "the staging password is [REDACTED:prose-secret] until Friday"
    assert redact_note("the admin password is swordfish") == "the admin password is [REDACTED:prose-secret]"
