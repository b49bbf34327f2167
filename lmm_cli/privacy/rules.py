"""The redaction rule table: every kind of secret lmm knows, with the filters that keep ordinary code
from being mistaken for one. The scanner that runs them is ``redact``; what each rule catches and
deliberately leaves out is described there."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Rule", "RULES"]


@dataclass(frozen=True)
class Rule:
    """One kind of secret.

    ``group`` names the regex group holding the secret (0 = whole match); only
    that span is replaced. The extra fields tune the scanner, not the meaning:
    ``keywords`` are case-sensitive literals, at least one of which must occur
    on a line for the rule to run there (case variants are listed explicitly);
    ``anchor`` is a prefilter regex (each ``|`` branch starting with a plain
    character) for formats whose keywords have no rare character to anchor
    on; a rule with an anchor and no keywords runs on every line the
    prefilter keeps. ``skip`` vetoes a match (placeholders, code);
    ``multiline`` rules run over the whole text instead of one line.
    """

    name: str
    pattern: re.Pattern[str]
    group: int | str
    description: str
    keywords: tuple[str, ...] = ()
    anchor: str = ""
    skip: Callable[[re.Match[str]], bool] | None = None
    multiline: bool = False


# --------------------------------------------------------------------------
# False-positive filters (used by the context/generic rules only)
# --------------------------------------------------------------------------

# Values that are obviously not a real secret. Lower-case, compared after strip().
_PLACEHOLDER_WORDS = frozenset(
    """
    password passwd pass pwd pw secret secrets token tokens key apikey api_key api-key
    credential credentials auth bearer basic digest negotiate
    changeme change_me change-me changeit placeholder example sample dummy fake mock
    test testing tbd todo fixme redacted hidden masked secret_here empty default
    required optional none null nil undefined true false yes no on off
    string str value values your yours
    and or to is the with if for when not of in
    """.split()
)

_PLACEHOLDER_RE = re.compile(
    r"""(?x)
      \$\{[^}]*\}             # ${VAR}, ${VAR:-x}
    | \$\{\{.*\}\}            # ${{ secrets.X }}
    | \{\{.*\}\}              # {{ jinja }}
    | (?:\{[\w.:\[\]'"!]*\})+ # {name}, {0}, {} ... format fields only
    | \$\(.*\)                # $(command)
    | \$[A-Za-z_][\w]*        # $VAR
    | %[A-Za-z_]\w*%          # %VAR% (Windows)
    | %\(\w+\)[sdr]|%[sdr]    # printf-style
    | [:@][A-Za-z_]\w*        # SQL bind parameters :token / @token
    | \*[A-Za-z_][\w-]*       # YAML alias *db_password
    | <[^<>]*>                # <your-key>
    | \[REDACTED:[\w-]+\]     # our own marker: redaction is idempotent
    | [xX*\u2022.#?_-]{3,}    # xxx, ***, ..., ###, masks
    | [^A-Za-z0-9]+           # punctuation only: ?, -, "..."
    | (?i:your)[\w\- ]*       # your_api_key, YOUR-TOKEN-HERE
    | (?i:[\w-]*[_-]here)     # token_here, api-key-here
    | (?i:change[_-]?me[\w-]*)
    | (?i:(?:dummy|fake|mock|test|example|sample|placeholder)[_-]?
           (?:pass(?:word)?|secret|token|key|api[_-]?key|value|credentials?)?)
    """
)

# Bare words that are code or config literals, never a secret.
_LITERAL_WORDS = frozenset(
    "none null nil undefined true false yes no on off nan inf required optional".split()
)
# Type names that follow ``password:`` in annotations and schemas.
_TYPE_NAMES = frozenset(
    """str bytes string String int bool boolean float number Number object Object any Any
    Optional Union Secret SecretStr SecretBytes SecretString Text text char dict Dict list List
    Password Token""".split()
)
_IDENT_RE = re.compile(r"[A-Za-z_$][\w$]*")
_DOTTED_RE = re.compile(r"[A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)+")
_CAMEL_HUMP_RE = re.compile(r"[a-z0-9][A-Z]")
_SECRETISH = ("pass", "pwd", "secret", "token", "key", "cred", "auth")
# Prose markers: a quoted value with these words is a label or a sentence.
_PROSE_WORDS = frozenset(
    "your enter the please must is are was be for of to a an this that with from use".split()
)
_PLAIN_WORD_RE = re.compile(r"[a-z]{1,12}")
# Words that follow a flag in prose ("the --password option"), not passwords.
_PROSE_FOLLOWERS = frozenset(
    """and or option options flag flags argument arguments parameter parameters is are
    to the a an with for when if not of in on as via must can will should may was be
    from instead only also then but so that which this these those it""".split()
)
_NUMBER_RE = re.compile(r"-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
# Names built from words, one of them secret-ish: next_token, NextToken, role-secret-key.
_WORDY_NAME_RE = re.compile(r"[A-Za-z]+(?:[_\-.][A-Za-z]+)*")
_PATH_RE = re.compile(r"(?:~|\.\.?)?/[a-z0-9_.\-]+(?:/[a-z0-9_.\-]+)*/?")
# "scheme://" then userinfo up to the match: the key is a URL's user name.
_URL_USERINFO_RE = re.compile(r"://[^\s/@:]*\Z")
_APOSTROPHE_RE = re.compile(r"(?<=[A-Za-z])'(?=[A-Za-z])")
# After a bare value, these mean "end of the value", not "more expression".
_VALUE_END = ("#", "//", ";", "&", "'", '"', "`", "\r", "<!--", "|")


def _is_placeholder(value: str) -> bool:
    v = value.strip()
    while v.endswith(("\\n", "\\r", "\\t")):  # 'secret\n' typed into a prompt
        v = v[:-2]
    if not v:
        return True
    if v.lower() in _PLACEHOLDER_WORDS:
        return True
    if "${" in v or "{{" in v or "#{" in v:  # templated: the literal part is not the secret
        return True
    return _PLACEHOLDER_RE.fullmatch(v) is not None


def _is_prose(value: str) -> bool:
    words = value.split()
    if len(words) < 3:
        return False
    return any(w.strip(".,:;!?()").lower() in _PROSE_WORDS for w in words)


def _names_a_secret(value: str) -> bool:
    """``token=access_token``, ``password: dbPassword``: a variable, not a literal."""
    low = value.lower()
    if not any(s in low for s in _SECRETISH):
        return False
    return (
        "_" in value
        or "-" in value
        or _CAMEL_HUMP_RE.search(value) is not None
        or low in _PLACEHOLDER_WORDS
    )


def _looks_random(value: str, min_len: int) -> bool:
    # Identifier-shaped values mixing letters and digits are tokens, not names.
    return (
        len(value) >= min_len
        and "_" not in value
        and any(c.isdigit() for c in value)
        and any(c.isalpha() for c in value)
    )


def _closes_a_string(line: str, quote_pos: int) -> bool:
    """True when the quote at ``quote_pos`` ends a string opened earlier on the
    line (``prompt='Password: ', ...``), i.e. the key sat inside a literal.
    Apostrophes between letters (``don't``) are not quotes."""
    q = line[quote_pos]
    # Only the statement around the key matters; a bounded window keeps long
    # minified lines with many matches linear.
    lo = max(0, quote_pos - 256)
    count = line.count(q, lo, quote_pos)
    if q == "'":
        count -= len(_APOSTROPHE_RE.findall(line, lo, quote_pos + 1))
    return count % 2 == 1


def _rest_is_expression(line: str, end: int) -> bool:
    """Something other than a comment or terminator follows the value."""
    rest = line[end : end + 8].lstrip(" \t")
    if rest[:1] == "'" and rest[1:2].isalpha():
        return True  # an apostrophe: the value is a word in a sentence (don't)
    return bool(rest) and not rest.startswith(_VALUE_END)


def _is_literal_value(value: str) -> bool | None:
    """Shared checks for a bare value: True = a literal (redact), False = not a
    secret, None = an identifier, which depends on where it stands."""
    if value.isdigit():
        return len(value) >= 6  # counts and limits (max_token: 4096), not PINs
    if _DOTTED_RE.fullmatch(value):
        return False  # attribute access: self.token, settings.SECRET_KEY
    if _IDENT_RE.fullmatch(value) is None:
        return True  # has characters no identifier has
    if value.lower() in _LITERAL_WORDS or value in _TYPE_NAMES or _names_a_secret(value):
        return False
    return None


def _skip_assignment(m: re.Match[str]) -> bool:
    """Veto for ``<secret-ish name> <op> <value>`` matches: keep code and
    placeholders, redact literals."""
    value = m.group("secret")
    line = m.string
    if _is_placeholder(value) or value.startswith("arn:"):  # ARNs name things
        return True
    if m.group("op") == ":" and _URL_USERINFO_RE.search(line, max(0, m.start() - 256), m.start()):
        return True  # https://x-access-token:...@host is url-password's job
    if m.group("q"):
        if _closes_a_string(line, m.start("q")):
            return True
        if line[m.start("q") - 1 : m.start("q")] in ("f", "F") and "{" in value:
            return True  # f-string: f"{registry_id}-auth-token"
        if value.isdigit() and len(value) < 6:
            return True  # next_token = "100"
        if _WORDY_NAME_RE.fullmatch(value) and _names_a_secret(value):
            return True  # "input_token": "next_token", X = "FORCE_CHANGE_PASSWORD"
        return _is_prose(value) or _PATH_RE.fullmatch(value) is not None
    if m.group("kq") and _NUMBER_RE.fullmatch(value):
        return True  # JSON number: "lastModifiedSecret": 1556311319.069
    literal = _is_literal_value(value)
    if literal is False:
        return True
    op = m.group("op")
    spaced = line[m.start("op") - 1 : m.start("op")] in (" ", "\t") or line[
        m.end("op") : m.end("op") + 1
    ] in (" ", "\t")
    if literal:
        if op == ":" and value.startswith("!"):
            return True  # YAML tag: password: !vault |
        if op == ":" and not m.group("kq") and line[m.end("op") : m.end("op") + 1] not in (" ", "\t"):
            return not _looks_random(value, 12)  # arn:...:secret:prod/db-*, not YAML
        # `token = 1*tchar <grammar>`: more words after a spaced value are code/prose.
        return spaced and op != ":" and _rest_is_expression(line, m.end("secret"))
    # A bare identifier.
    if _looks_random(value, 12):
        return False  # ?token=AbCd0123EfGh4567), not a name
    key = m.group(0)[: m.start("kq") - m.start()].lower().replace("_", "").replace("-", "")
    if key.endswith(value.lower().replace("_", "")):
        return True  # self._authkey = authkey
    end = m.end("secret")
    after = line[end : end + 1]
    if after in ("(", "["):
        return True  # token = fetch(...), password = env[...]
    if op == "=>":
        return True  # PHP/Ruby hash with a constant or variable
    if op == ":":
        # YAML `password: hunter2` is config (YAML needs the space); a quoted key
        # with a bare value is a dict/JSON literal holding a variable; without
        # the space it is a path or ARN segment (passwd:uid, secret:name); more
        # words after it are a sentence ("password: don't share it").
        return (
            bool(m.group("kq"))
            or line[m.end("op") : m.end("op") + 1] not in (" ", "\t")
            or _rest_is_expression(line, end)
        )
    if spaced or op == ":=":
        # `token = tok`, `token := f()` are code, unless the value is clearly not a name.
        return not _looks_random(value, 8)
    # KEY=value without spaces: env, shell, properties, logfmt, connection
    # strings -- unless it is a keyword argument (f(password=pw, ...)).
    rest = line[end : end + 8].lstrip(" \t")
    return rest[:1] in (",", ")", "]", "}") or (rest[:1] == "'" and rest[1:2].isalpha())


# A name, not a token: Marker, next_marker, DefaultClusterParameters.Marker.
_NAMEISH_RE = re.compile(r"[A-Za-z][A-Za-z_.]{0,31}")


def _skip_token_assignment(m: re.Match[str]) -> bool:
    # Tokens and keys are never a plain word ("input_token": "Marker"); a
    # password may well be one (letmein), so the password rule keeps them.
    return _NAMEISH_RE.fullmatch(m.group("secret")) is not None or _skip_assignment(m)


def _skip_value(m: re.Match[str]) -> bool:
    """Veto for a bare value next to a secret-ish flag or header."""
    value = m.group("secret")
    if _is_placeholder(value):
        return True
    if "q" in m.re.groupindex and m.group("q"):
        return _closes_a_string(m.string, m.start("q")) or _is_prose(value)
    literal = _is_literal_value(value)
    if literal is not None:
        return not literal
    if _looks_random(value, 16):
        return False
    return _rest_is_expression(m.string, m.end("secret"))


def _skip_header(m: re.Match[str]) -> bool:
    value = m.group("secret")
    if _is_placeholder(value) or value.lower() == "authorization":
        return True
    if (
        not m.group("q")
        and not m.group("scheme")
        and (m.group("op") == "=" or m.group("kq"))
        and _IDENT_RE.fullmatch(value)
        and not _looks_random(value, 16)
    ):
        return True  # headers["Authorization"] = auth_header: a variable
    if m.string[m.end("secret") : m.end("secret") + 1] in ("(", "[", ",", ")"):
        return True  # authorization=request.headers.get(...), f(authorization=auth)
    # self.token / request.headers: code, not a credential (real ones carry digits)
    return _DOTTED_RE.fullmatch(value) is not None and not any(c.isdigit() for c in value)


_PK_END_RE = re.compile(r"-{4,5} ?END[A-Z0-9 ]{0,40}PRIVATE KEY")
_B64_RUN_RE = re.compile(r"[A-Za-z0-9+/]{16}")


def _skip_private_key(m: re.Match[str]) -> bool:
    # A BEGIN line with no END and no key body after it is a marker in code or
    # docs (_START = b"-----BEGIN OPENSSH PRIVATE KEY-----"), not a key.
    text = m.group(0)
    return _PK_END_RE.search(text) is None and _B64_RUN_RE.search(text, text.index("BEGIN")) is None


def _skip_placeholder(m: re.Match[str]) -> bool:
    return _is_placeholder(m.group("secret"))


def _skip_cli(m: re.Match[str]) -> bool:
    value = m.group("secret")
    if value.startswith("-"):  # the next flag, e.g. --password --other
        return True
    if not m.group("q") and value.lower() in _PROSE_FOLLOWERS:
        return True  # prose: "via the --username and --password options"
    return _skip_value(m)


def _skip_sql(m: re.Match[str]) -> bool:
    # "a library identified by 'name'": lower-case keyword + plain word is prose;
    # SQL says IDENTIFIED BY, or quotes something that is not a dictionary word.
    if _skip_placeholder(m):
        return True
    keyword = m.group(0)[: m.start("secret") - m.start()]
    return keyword.islower() and _PLAIN_WORD_RE.fullmatch(m.group("secret")) is not None


# --------------------------------------------------------------------------
# Pattern building blocks
# --------------------------------------------------------------------------

# Prefilter shape for prefix_ + long alphanumeric tokens whose prefix has no
# rare character to anchor on.
_UNDERSCORE_TOKEN = r"_[A-Za-z0-9]{34}"  # hf_ 34+, ntn_ 40+, sbp_ 40

_L = r"(?<![A-Za-z0-9])"  # left edge: '_' is allowed so file names like x_ghp_... still match
_R = r"(?![A-Za-z0-9])"

# A value after an assignment-ish operator: a quoted string (the secret is the
# inside, so the quotes survive) or a bare token. ``q`` tells the filter which.
_VALUE = (
    r"(?:[rRbBuUfF]{1,2}(?=[\"'`]))?"
    r"(?P<q>[\"'`]?)"
    r"(?P<secret>"
    # quoted: must close on the same line, else the quote was a closing one
    r"(?<=\")(?:\\.|[^\"\\\n])+(?=\")"
    r"|(?<=')(?:\\.|[^'\\\n])+(?=')"
    r"|(?<=`)(?:\\.|[^`\\\n])+(?=`)"
    r"|(?<![\"'`])(?:\$\{[^}\s]*\}|<[^<>\s]*>|[^\s\"'`,;&()\[\]{}<>|]+)"
    r")"
)

# key ... operator. The key must END with the secret word (password_hash is not a
# password); an optional closing quote/bracket/markdown emphasis, an optional
# type annotation (``password: str = "x"``), then = := => or : (never ==).
_KEY_TAIL = (
    r"(?![A-Za-z])(?P<kq>[\"'`]?)\]?[*_]{0,2}[ \t]*"
    r"(?::[ \t]*[\w\[\], |.]{1,80}?[ \t]*(?==(?![=>])))?"
    r"(?P<op>:=|=>|=(?![=~])|:(?![:/]))[ \t]*"
)


def _stems(*words: str) -> str:
    """Match one of ``words`` at an identifier boundary: after a non-letter
    (``DB_PASSWORD``, ``"password"``) or at a camelCase hump (``dbPassword``),
    but not inside a word (``compass``, ``bypass``, ``itoken``). Each word is
    a regex starting with a plain lower-case letter."""
    if not all(w[0].isalpha() and w[0].islower() for w in words):
        raise ValueError(f"stems must start with a lower-case letter: {words}")
    plain = "|".join(words)
    camel = "|".join(f"(?-i:{w[0].upper()}){w[1:]}" for w in words)
    return rf"(?:(?<![A-Za-z])(?i:{plain})|(?<=[a-z0-9])(?i:{camel}))"


def _prefixed(prefixes: str, core: str) -> list[str]:
    """``core`` alone and glued to each prefix (``authtoken``): a separator
    (``auth_token``) is already covered by ``core`` at a boundary."""
    return [core] + [p + core for p in prefixes.split()]


def _assignment(*words: str) -> str:
    return _stems(*words) + _KEY_TAIL + _VALUE


_PK_BEGIN = r"-{4,5} ?BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)? ?-{4,5}"
_PK_END = r"-{4,5} ?END[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)? ?-{4,5}"
# One line of a key body when END is missing: optional diff marker and
# indentation, optional quotes, then only base64 / escaped newlines / armor
# headers up to the end of the line. Anything else ends the block.
_PK_LINE = (
    r"\r?\n[+\- ]{0,2}[ \t]*[\"']?"
    r"(?:(?:Proc-Type|DEK-Info|Version|Comment|Hash|Charset):[^\r\n]*"
    r"|[A-Za-z0-9+/=]*(?:\\[rn][A-Za-z0-9+/=]*)*)"  # unrolled: one charset loop per run
    r"[\"']?[ \t]*[,+\\]?[ \t]*(?=\r?\n|\Z)"
)
_PRIVATE_KEY = (
    _PK_BEGIN
    + r"(?:"
    # Complete block. Bounded and stopping at another BEGIN, so a truncated key
    # cannot swallow everything up to some later key's END.
    + r"(?:(?!-{4,5} ?BEGIN)[\s\S]){0,16384}?"
    + _PK_END
    + r"|"
    # Truncated block (no END): same-line body (JSON-escaped keys live on one
    # line with literal \n), then whole lines that look like key body.
    + r"[A-Za-z0-9+/=]*(?:(?:\\[rn]|[ \t](?=[A-Za-z0-9+/=]{16}))[A-Za-z0-9+/=]*)*"
    + r"(?:[\"'][ \t]*[,+\\]?[ \t]*(?=\r?\n|\Z))?"
    + r"(?:"
    + _PK_LINE
    + r")*"
    + r")"
)


def _cases(*words: str) -> tuple[str, ...]:
    """Keywords are case-sensitive; spell out lower, Capitalised and UPPER."""
    out: list[str] = []
    for w in words:
        for v in (w, w[0].upper() + w[1:], w.upper()):
            if v not in out:
                out.append(v)
    return tuple(out)


def _rule(
    name: str,
    regex: str,
    description: str,
    *,
    group: int | str = 0,
    keywords: tuple[str, ...] = (),
    anchor: str = "",
    skip: Callable[[re.Match[str]], bool] | None = None,
    multiline: bool = False,
) -> Rule:
    return Rule(name, re.compile(regex), group, description, keywords, anchor, skip, multiline)


# Specific formats first: when two rules find the same span, the earlier one
# names it, so ``TOKEN = "ghp_..."`` says github-token, not token-assignment.
RULES: tuple[Rule, ...] = (
    _rule(
        "private-key",
        _PRIVATE_KEY,
        "PEM/OpenSSH/PGP private key block, also truncated, JSON-escaped or diff-prefixed",
        keywords=("PRIVATE KEY",),
        skip=_skip_private_key,
        multiline=True,
    ),
    _rule(
        "aws-access-key-id",
        _L + r"(?:AKIA|ASIA)[A-Z2-7]{16}" + _R,
        "AWS access key id (long-term AKIA, temporary ASIA)",
        keywords=("AKIA", "ASIA"),
    ),
    _rule(
        "aws-secret-access-key",
        r"(?i:aws[\w.\-]{0,30}?secret|secret_?access_?key)[\w.\-]{0,20}?[\"'`]?\]?[ \t]*(?::=|=>|=|:)"
        r"[ \t]*[\"'`]?(?P<secret>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])",
        "AWS secret access key (40 base64 chars next to an aws...secret name)",
        group="secret",
        keywords=_cases("secret"),
    ),
    _rule(
        "gcp-api-key",
        _L + r"AIza[0-9A-Za-z_\-]{35}",
        "Google Cloud / Firebase API key",
        keywords=("AIza",),
    ),
    _rule(
        "gcp-oauth-client-secret",
        _L + r"GOCSPX-[A-Za-z0-9_\-]{28}",
        "Google OAuth client secret",
        keywords=("GOCSPX-",),
    ),
    _rule(
        "google-oauth-access-token",
        _L + r"ya29\.[A-Za-z0-9_\-]{30,}",
        "Google OAuth access token",
        keywords=("ya29.",),
    ),
    _rule(
        "github-token",
        _L + r"gh[pousr]_[A-Za-z0-9]{36,251}" + _R,
        "GitHub classic PAT, OAuth, user-to-server, server-to-server and refresh tokens",
        keywords=("ghp_", "gho_", "ghu_", "ghs_", "ghr_"),
    ),
    _rule(
        "github-fine-grained-pat",
        _L + r"github_pat_[A-Za-z0-9_]{22,255}",
        "GitHub fine-grained personal access token",
        keywords=("github_pat_",),
    ),
    _rule(
        "gitlab-token",
        _L + r"gl(?:pat|dt|rt|ptt|ft|imt|agent|oas|cbt|soat|ffct)-[A-Za-z0-9_\-]{20,}",
        "GitLab personal/deploy/runner/... tokens",
        keywords=(
            "glpat-", "gldt-", "glrt-", "glptt-", "glft-", "glimt-",
            "glagent-", "gloas-", "glcbt-", "glsoat-", "glffct-",
        ),
    ),
    _rule(
        "bitbucket-app-password",
        _L + r"ATBB[A-Za-z0-9_=.\-]{32,}",
        "Bitbucket app password",
        keywords=("ATBB",),
    ),
    _rule(
        "atlassian-api-token",
        _L + r"ATATT3[A-Za-z0-9_=\-]{100,}",
        "Atlassian (Jira/Confluence) API token",
        keywords=("ATATT3",),
    ),
    _rule(
        "slack-token",
        _L
        + r"(?:xox[abposr]-[0-9A-Za-z\-]{10,}|xoxe(?:\.xox[bp])?-[0-9]-[A-Za-z0-9]{50,}"
        r"|xapp-[0-9]-[A-Za-z0-9\-]{10,})",
        "Slack bot/user/app/config tokens",
        keywords=("xox", "xapp-"),
    ),
    _rule(
        "slack-webhook-url",
        r"hooks\.slack\.com/(?:services|workflows|triggers)/(?P<secret>[A-Za-z0-9+/_\-]{20,})",
        "Slack incoming-webhook URL (the path is the credential; the host stays)",
        group="secret",
        keywords=("hooks.slack.com",),
    ),
    _rule(
        "discord-webhook-url",
        r"discord(?:app)?\.com/api/webhooks/[0-9]{17,20}/(?P<secret>[A-Za-z0-9_\-]{60,80})",
        "Discord webhook URL token",
        group="secret",
        keywords=("discord",),
    ),
    _rule(
        "discord-bot-token",
        r"(?<![A-Za-z0-9_\-])(?:M[TDjz]|N[DTjz]|O[DT])[A-Za-z0-9_\-]{21,25}\.[A-Za-z0-9_\-]{6}"
        r"\.[A-Za-z0-9_\-]{27,38}(?![A-Za-z0-9_\-])",
        "Discord bot token (base64 user id . timestamp . hmac)",
        # No literal prefix: anchor on the shape (each branch starts with a literal).
        anchor=r"M[TDjz][\w\-]{21,25}\.[\w\-]{6}\.|N[DTjz][\w\-]{21,25}\.[\w\-]{6}\."
        r"|O[DT][\w\-]{21,25}\.[\w\-]{6}\.",
    ),
    _rule(
        "telegram-bot-token",
        r"(?<![0-9])[0-9]{8,10}:AA[A-Za-z0-9_\-]{33}",
        "Telegram bot token",
        keywords=(":AA",),
    ),
    _rule(
        "stripe-secret-key",
        _L + r"[sr]k_(?:live|test)_[A-Za-z0-9]{16,247}" + _R,
        "Stripe secret and restricted keys (live and test)",
        keywords=("sk_live_", "sk_test_", "rk_live_", "rk_test_"),
    ),
    _rule(
        "stripe-webhook-secret",
        _L + r"whsec_[A-Za-z0-9+/=]{24,}",
        "Stripe webhook signing secret",
        keywords=("whsec_",),
    ),
    _rule(
        "anthropic-api-key",
        _L + r"sk-ant-[A-Za-z0-9_\-]{20,}",
        "Anthropic API key",
        keywords=("sk-ant-",),
    ),
    _rule(
        "openai-api-key",
        _L + r"sk-(?:(?:proj|svcacct|admin)-[A-Za-z0-9_\-]{20,}|[A-Za-z0-9]{32,})",
        "OpenAI API key (legacy sk-..., project sk-proj-..., service account) and look-alikes",
        keywords=("sk-",),
    ),
    _rule(
        "groq-api-key",
        _L + r"gsk_[A-Za-z0-9]{48,}" + _R,
        "Groq API key",
        keywords=("gsk_",),
    ),
    _rule(
        "replicate-api-token",
        _L + r"r8_[A-Za-z0-9]{37}" + _R,
        "Replicate API token",
        keywords=("r8_",),
    ),
    _rule(
        "twilio-api-key",
        _L + r"SK[0-9a-f]{32}" + _R,
        "Twilio API key SID (SK + 32 hex)",
        anchor=r"SK[0-9a-f]{32}",
    ),
    _rule(
        "twilio-account-sid",
        r"(?i:twilio|account_?sid)[^\n]{0,60}?" + _L + r"(?P<secret>AC[0-9a-f]{32})" + _R,
        "Twilio account SID (AC + 32 hex) next to a twilio/account_sid name",
        group="secret",
        keywords=_cases("twilio", "account_sid", "accountSid", "AccountSid"),
    ),
    _rule(
        "sendgrid-api-key",
        _L + r"SG\.[A-Za-z0-9_\-]{22}\.[A-Za-z0-9_\-]{43}",
        "SendGrid API key",
        keywords=("SG.",),
    ),
    _rule(
        "mailgun-api-key",
        r"(?<![A-Za-z0-9_\-])key-[0-9a-f]{32}" + _R,
        "Mailgun API key",
        keywords=("key-",),
    ),
    _rule(
        "mailchimp-api-key",
        _L + r"[0-9a-f]{32}-us[0-9]{1,2}" + _R,
        "Mailchimp API key (32 hex + datacenter)",
        keywords=("-us",),
    ),
    _rule(
        "npm-token",
        _L + r"npm_[A-Za-z0-9]{36}" + _R,
        "npm access token",
        keywords=("npm_",),
    ),
    _rule(
        "pypi-token",
        _L + r"pypi-AgE[A-Za-z0-9_\-]{50,}",
        "PyPI / TestPyPI API token (macaroon)",
        keywords=("pypi-",),
    ),
    _rule(
        "rubygems-api-key",
        _L + r"rubygems_[0-9a-f]{48}" + _R,
        "RubyGems API key",
        keywords=("rubygems_",),
    ),
    _rule(
        "dockerhub-pat",
        _L + r"dckr_(?:pat|oat)_[A-Za-z0-9_\-]{27,}",
        "Docker Hub personal / organisation access token",
        keywords=("dckr_",),
    ),
    _rule(
        "huggingface-token",
        _L + r"hf_[A-Za-z0-9]{34,}" + _R,
        "Hugging Face access token",
        keywords=("hf_",),
        anchor=_UNDERSCORE_TOKEN,
    ),
    _rule(
        "shopify-token",
        _L + r"shp(?:at|ss|ca|pa)_[a-fA-F0-9]{32}" + _R,
        "Shopify access tokens and shared secrets",
        keywords=("shpat_", "shpss_", "shpca_", "shppa_"),
    ),
    _rule(
        "square-token",
        _L + r"(?:sq0(?:atp|csp)-[A-Za-z0-9_\-]{22,43}|EAAA[A-Za-z0-9_+\-]{60,})",
        "Square access token / OAuth secret",
        keywords=("sq0atp-", "sq0csp-", "EAAA"),
    ),
    _rule(
        "digitalocean-token",
        _L + r"do[opr]_v1_[a-f0-9]{64}" + _R,
        "DigitalOcean personal/OAuth/refresh token",
        keywords=("dop_v1_", "doo_v1_", "dor_v1_"),
    ),
    _rule(
        "databricks-token",
        _L + r"dapi[a-f0-9]{32}(?:-[0-9]+)?" + _R,
        "Databricks personal access token",
        keywords=("dapi",),
        anchor=r"pi[a-f0-9]{32}",
    ),
    _rule(
        "vault-token",
        _L + r"hv[sbr]\.[A-Za-z0-9_\-]{24,}",
        "HashiCorp Vault service/batch/recovery token",
        keywords=("hvs.", "hvb.", "hvr."),
    ),
    _rule(
        "grafana-token",
        _L + r"(?:glc_[A-Za-z0-9+/_=\-]{32,}|glsa_[A-Za-z0-9]{32}_[a-f0-9]{8})",
        "Grafana Cloud / service-account token",
        keywords=("glc_", "glsa_"),
    ),
    _rule(
        "newrelic-key",
        _L + r"NR(?:AK|JS|II|AA)-[A-Za-z0-9]{19,32}" + _R,
        "New Relic user/browser/ingest keys",
        keywords=("NRAK-", "NRJS-", "NRII-", "NRAA-"),
    ),
    _rule(
        "linear-api-key",
        _L + r"lin_(?:api|oauth)_[A-Za-z0-9]{40}" + _R,
        "Linear API key",
        keywords=("lin_api_", "lin_oauth_"),
    ),
    _rule(
        "notion-token",
        _L + r"(?:ntn_[A-Za-z0-9]{40,}|secret_[A-Za-z0-9]{43})" + _R,
        "Notion integration token (ntn_..., legacy secret_ + 43)",
        keywords=("ntn_", "secret_"),
        anchor=_UNDERSCORE_TOKEN,
    ),
    _rule(
        "planetscale-token",
        _L + r"pscale_(?:tkn|pw|oauth)_[A-Za-z0-9_.\-]{32,64}",
        "PlanetScale token / password",
        keywords=("pscale_",),
    ),
    _rule(
        "pulumi-token",
        _L + r"pul-[a-f0-9]{40}" + _R,
        "Pulumi access token",
        keywords=("pul-",),
    ),
    _rule(
        "terraform-cloud-token",
        _L + r"[A-Za-z0-9]{14}\.atlasv1\.[A-Za-z0-9_=\-]{60,70}",
        "Terraform Cloud / Enterprise API token",
        keywords=(".atlasv1.",),
    ),
    _rule(
        "doppler-token",
        _L + r"dp\.(?:pt|st|sa|ct|scim|audit)\.[A-Za-z0-9]{40,44}" + _R,
        "Doppler token",
        keywords=("dp.pt.", "dp.st.", "dp.sa.", "dp.ct.", "dp.scim.", "dp.audit."),
    ),
    _rule(
        "postman-api-key",
        _L + r"PMAK-[a-f0-9]{24}-[a-f0-9]{34}" + _R,
        "Postman API key",
        keywords=("PMAK-",),
    ),
    _rule(
        "sentry-token",
        _L + r"sntry[us]_[A-Za-z0-9_+/=]{40,}",
        "Sentry user / organisation auth token",
        keywords=("sntrys_", "sntryu_"),
    ),
    _rule(
        "supabase-token",
        _L + r"(?:sbp_[a-f0-9]{40}|sb_secret_[A-Za-z0-9_\-]{20,})" + _R,
        "Supabase access token / secret key",
        keywords=("sbp_", "sb_secret_"),
        anchor=_UNDERSCORE_TOKEN,
    ),
    _rule(
        "age-secret-key",
        r"AGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58}",
        "age encryption secret key",
        keywords=("AGE-SECRET-KEY-1",),
    ),
    _rule(
        "azure-account-key",
        r"(?i:AccountKey|SharedAccessKey)[ \t]*=[ \t]*(?P<secret>[A-Za-z0-9+/]{20,}={0,2})",
        "Azure storage / Service Bus key in a connection string",
        group="secret",
        keywords=("AccountKey", "SharedAccessKey", "accountkey", "sharedaccesskey"),
    ),
    _rule(
        "azure-sas-signature",
        r"[?&;]sig=(?P<secret>[A-Za-z0-9%+/=]{16,})",
        "Azure shared-access-signature sig= parameter",
        group="secret",
        keywords=("&sig=", "?sig=", ";sig="),
    ),
    _rule(
        "azure-ad-client-secret",
        r"(?<![A-Za-z0-9_~.\-])[A-Za-z0-9_~.\-]{3}[0-9]Q~[A-Za-z0-9_~.\-]{31,34}(?![A-Za-z0-9_~.\-])",
        "Microsoft Entra (Azure AD) application client secret",
        keywords=("Q~",),
    ),
    _rule(
        "jwt",
        _L + r"eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]*",
        "JSON Web Token (header.payload.signature)",
        keywords=("eyJ",),
    ),
    _rule(
        "docker-config-auth",
        r"\"auth\"[ \t]*:[ \t]*\"(?P<secret>[A-Za-z0-9+/]{8,}={0,2})\"",
        'Docker config.json registry "auth" (base64 user:password)',
        group="secret",
        keywords=('"auth":',),
    ),
    _rule(
        "authorization-header",
        r"(?<![A-Za-z])(?i:authorization)(?P<kq>[\"'`]?)\]?[ \t]*(?P<op>[:=])[ \t]*(?P<q>[\"'`]?)"
        r"(?:(?P<scheme>(?i:bearer|basic|token|bot|digest|negotiate|apikey|sso-key|key"
        r"|aws4-hmac-sha256))[ \t]+)?"
        r"(?P<secret>[A-Za-z0-9._~+/=:\-]{8,})",
        "Authorization header value (Bearer/Basic/Token ...)",
        group="secret",
        keywords=_cases("authorization"),
        skip=_skip_header,
    ),
    _rule(
        "bearer-token",
        r"(?<![A-Za-z])(?i:bearer)[ \t]+"
        r"(?P<secret>(?=[A-Za-z0-9._~+/\-]*[0-9])[A-Za-z0-9._~+/\-]{16,}=*)",
        "Bearer token outside an Authorization header (curl, docs)",
        group="secret",
        keywords=("Bearer", "BEARER"),  # lower-case "bearer x" is caught via authorization
        skip=_skip_placeholder,
    ),
    _rule(
        "url-password",
        r"://(?P<user>[^\s:/@?#'\"`<>\[\]]*):(?P<secret>[^\s/?#'\"`<>]+)@",
        "password in a URL's user-info (scheme, user and host stay)",
        group="secret",
        keywords=("://",),
        skip=_skip_placeholder,
    ),
    _rule(
        "netrc-password",
        r"(?<![\w-])(?:machine|login)[ \t]+\S+[ \t]+(?:login[ \t]+\S+[ \t]+)?"
        r"password[ \t]+(?P<secret>[^\s'\"]+)",
        ".netrc-style 'machine h login u password p'",
        group="secret",
        keywords=("password",),
        skip=_skip_placeholder,
    ),
    _rule(
        "sql-password",
        r"(?i:identified[ \t]+by(?:[ \t]+password)?|password)[ \t]+'(?P<secret>[^'\n]+)'",
        "SQL CREATE/ALTER USER ... IDENTIFIED BY / PASSWORD 'x'",
        group="secret",
        keywords=_cases("identified by '", "password"),
        skip=_skip_sql,
    ),
    _rule(
        "cli-secret-flag",
        r"(?<![\w-])--?(?i:password|passwd|pass|pwd|token|api-key|apikey|api_key|secret|client-secret"
        r"|auth-token|access-token|storepass|keypass|srcstorepass|deststorepass)(?![\w-])(?:=|[ \t]+)"
        + _VALUE,
        "secret passed on a command line: --password x, --token=x, -storepass x",
        group="secret",
        keywords=("-pass", "-pwd", "-token", "-api", "-secret", "storepass", "keypass"),
        skip=_skip_cli,
    ),
    _rule(
        "cli-user-password",
        r"(?i:curl|wget)\b[^\n]{0,200}?(?<![\w-])(?:-u|--user|--http-user)(?:[ \t]+|=)[\"']?"
        r"(?P<user>[^\s:'\"]+):(?P<secret>[^\s'\"]+)",
        "curl -u user:password",
        group="secret",
        keywords=("curl", "wget"),
        skip=_skip_placeholder,
    ),
    _rule(
        "mysql-cli-password",
        r"(?i:mysql|mysqldump|mysqladmin|mariadb)\b[^\n]{0,200}?(?<=[ \t])-p(?P<secret>[^\s'\"]+)",
        "mysql -pPASSWORD (password glued to -p)",
        group="secret",
        keywords=_cases("mysql", "mariadb"),
        skip=_skip_placeholder,
    ),
    _rule(
        "xml-secret-element",
        r"<(?P<tag>(?i:password|passwd|pwd|secret|token|apikey|api[_-]key|accesskey|secretkey"
        r"|clientsecret|client[_-]secret|auth[_-]?token|accesstoken|access[_-]token))>"
        r"(?P<secret>[^<\n]+)</(?P=tag)>",
        "<password>x</password> and friends (Maven settings.xml, app configs)",
        group="secret",
        keywords=("</",),
        skip=_skip_placeholder,
    ),
    # Generic assignments last: they only name what no specific rule knows.
    _rule(
        "password-assignment",
        _assignment(r"pass(?:word|wd|phrase|code)?", r"pwd", r"pw"),
        "password = ..., PASSWORD: ..., DB_PASS=..., \"password\": \"...\"",
        group="secret",
        keywords=_cases("pass", "pw"),
        skip=_skip_assignment,
    ),
    _rule(
        "secret-assignment",
        _assignment(
            *_prefixed(
                "client app consumer shared webhook signing jwt session cookie api",
                r"secret(?:[_\-]?key(?:[_\-]?base)?)?",
            ),
            r"private[_\-]?key",
            r"credentials?",
        ),
        "secret = ..., client_secret: ..., SECRET_KEY=..., private_key = ...",
        group="secret",
        keywords=_cases("secret", "private", "credential"),
        skip=_skip_token_assignment,
    ),
    _rule(
        "token-assignment",
        _assignment(
            *_prefixed(
                "access auth refresh api bot bearer id identity session personal oauth", "token"
            )
        ),
        "token = ..., auth_token: ..., ACCESS_TOKEN=..., _authToken=...",
        group="secret",
        keywords=_cases("token"),
        skip=_skip_token_assignment,
    ),
    _rule(
        "api-key-assignment",
        _assignment(
            *(
                p + r"[_\-]?key"
                for p in (
                    "api access secret signing encryption master app client consumer account "
                    "license subscription service auth admin write read ingest private deploy"
                ).split()
            )
        ),
        "api_key = ..., apiKey: ..., X-API-Key: ..., ACCESS_KEY=...",
        group="secret",
        keywords=_cases("key"),
        skip=_skip_token_assignment,
    ),
)
