"""The redaction rule table: every kind of secret lmm knows, with the filters that keep ordinary code
from being mistaken for one. The scanner that runs them is ``redact``; what each rule catches and
deliberately leaves out is described there."""

from __future__ import annotations

import functools
import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Rule", "RULES", "RULES_VERSION"]

# The version of these rules. Every store records the version its text was redacted with, and text
# captured under an older one is re-redacted on the store's next capture (``capture/rescan.py``).
# BUMP IT whenever a rule or a filter changes so that it redacts something it did not before;
# a change that only redacts less needs no bump. 0: stores written before versions were
# recorded. 1: prose credentials, env-style names with any prefix, entropy-gated ``*key`` values,
# private-key bodies without their BEGIN line, the gitleaks/detect-secrets prefix table.
RULES_VERSION = 1


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
    ``multiline`` rules run over the whole text instead of one line;
    ``span``, when set, turns a match into the span to redact (or None to
    veto it), for secrets that lie before what the pattern can anchor on.
    """

    name: str
    regex: str
    group: int | str
    description: str
    keywords: tuple[str, ...] = ()
    anchor: str = ""
    skip: Callable[[re.Match[str]], bool] | None = None
    multiline: bool = False
    span: Callable[[re.Match[str]], tuple[int, int] | None] | None = None

    @functools.cached_property
    def pattern(self) -> re.Pattern[str]:
        """``regex`` compiled, on first use: compiling all the rules costs every process that
        imports them ~60 ms (each hook, each command), and most text wakes only a few of them."""
        return re.compile(self.regex)


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
    | \[[A-Z][A-Z_]*\]         # [UNK], [MASK], [PAD]: tokenizer specials
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
_NAME_BEFORE_RE = re.compile(r"[A-Za-z0-9_\-]*\Z")
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
    key = m.group(0)[: m.start("kq") - m.start()]
    if key.lower() == "key":  # matched from "key" backwards: the name is what stands before it
        key = _NAME_BEFORE_RE.search(line, max(0, m.start() - 64), m.start()).group(0) + key  # type: ignore[union-attr]
    key = key.lower().replace("_", "").replace("-", "")
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
# Entropy-gated and prose filters (issue 9): unknown formats near secret words
# --------------------------------------------------------------------------


def _entropy(value: str) -> float:
    """Shannon entropy in bits per character."""
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in Counter(value).values()) if n else 0.0


_TOKENISH_RE = re.compile(r"[A-Za-z0-9+/=_\-.~:]+")
# A part of a name: a word, a short number, or a word-ish with a version (v2, x86, utf8).
_NAME_PART_RE = re.compile(r"[A-Za-z]+|[0-9]{1,4}|[A-Za-z]{1,6}[0-9]{1,3}|")


def _random_token(value: str) -> bool:
    """``value`` looks like a machine-made token (an API key of unknown format), not a name,
    a path, a version or a word: 16+ characters without spaces, letters and digits mixed inside one
    part, and enough entropy. The gate for names that only *may* hold a secret (``*_key``)."""
    if not 16 <= len(value) <= 600 or _TOKENISH_RE.fullmatch(value) is None:
        return False
    if value.startswith(("arn:", "sha", "md5", "urn:")) or "::" in value:
        return False
    if not any(c.isdigit() for c in value) or not any(c.isalpha() for c in value):
        return False
    parts = re.split(r"[_\-.:/=]+", value)
    if all(_NAME_PART_RE.fullmatch(p) for p in parts):
        return False  # user_profile_v2, app.settings.2024, en-US
    return _entropy(value) >= 3.0


# Technical words with digits that follow "the token is …" in prose and are not secrets.
_TECH_WORD_RE = re.compile(
    r"(?i)(?:sha|md|crc|aes|rsa|dsa|ecdsa|hs|rs|es|ps|base|utf|ucs|http|tls|ssl|ipv|pkcs|ed|x|secp|curve"
    r"|argon|pbkdf|oauth|fido|u2f|rfc|cve|py|python|iso|win|x86|arm|amd|k8s|s3|ec2|gpt|llama|claude"
    r"|v|ver|version|build|rc|beta|alpha)[-_.]?[0-9]+[a-z0-9_.\-]*"
)
_UNIT_RE = re.compile(
    r"(?i)[0-9]+(?:[-_ ]?(?:bits?|bytes?|b|kb|kib|mb|mib|gb|chars?|characters|digits?|letters|words|days?|d"
    r"|hours?|hrs?|h|minutes?|mins?|m|seconds?|secs?|s|ms|weeks?|w|months?|mo|years?|y|x|px|em|rem|%))"
)
_VERSION_RE = re.compile(r"v?[0-9]+(?:[.\-][0-9]+)+[a-z0-9.\-+]*|[0-9]{4}-[0-9]{2}-[0-9]{2}\S*")
_EMAIL_RE = re.compile(r"[^@\s]+@[^@\s]+\.[A-Za-z]{2,}")
_SYMBOLS = frozenset("!@#$%^&*+=~?|<>\\")
# Words after "password is …" in prose that are not the password (note mode only needs them).
_PROSE_STOP = frozenset(
    """a an the in on at of to for from by with without into onto via per as is are was were be been being
    now still not never always only also just then there here this that these those it its same different
    one any some no none all every each other another new old our your my their his her correct incorrect
    wrong right valid invalid missing empty blank unset set stored saved kept hashed encrypted salted
    rotated expired revoked leaked compromised generated random required optional needed mandatory shared
    sent given read written passed provided configured managed handled checked verified ignored used
    long short weak strong secure insecure simple complex case sensitive too very quite rather enough
    available unavailable known unknown public private secret local global temporary permanent
    what which who where when how why because since while until unless if else""".split()
)
_PROSE_BEFORE_RE = re.compile(r"[A-Za-z]{2,}[ \t]+\Z")
# Words that make a compound with the secret word: "api key", "aws secret key", "auth_token".
_COMPOUND_BEFORE_RE = re.compile(
    r"(?i)(?<![A-Za-z0-9])(?:api|access|secret|private|auth|signing|encryption|master|admin|client|app|license"
    r"|deploy|account|subscription|service|ssh|bearer|bot|refresh|session|personal|oauth|github|gitlab|npm"
    r"|slack|pypi|discord|telegram|shared|webhook|jwt|db|database|root|user|wifi|vault)[ \t_\-]\Z"
)
_VERB_BEFORE_RE = re.compile(r"(?i)\b(?:set|reset|change|changed|rotate|rotated|update|updated)\b[^.;]{0,30}\Z")


def _secretish(value: str) -> bool:
    """The shape gate of the prose rule: ``value`` (the word after "the password is") looks like
    a password or a token, not like a word, a name, a number with a unit, a version or a path."""
    v = value.strip("*_~") if value[:1] in "*_~" and value[-1:] == value[:1] else value  # *emphasis*
    if not 6 <= len(v) <= 300 or _is_placeholder(v):
        return False
    low = v.lower()
    if low in _PLACEHOLDER_WORDS or low in _LITERAL_WORDS or v in _TYPE_NAMES or low in _PROSE_STOP:
        return False
    if "://" in v or v[0] in "([{<$%" or v[-1] in "(" or "()" in v or "${" in v:
        return False  # a URL (url-password's job), code, a template
    if _DOTTED_RE.fullmatch(v) or _EMAIL_RE.fullmatch(v):
        return False
    if _IDENT_RE.fullmatch(v) and _names_a_secret(v) and sum(c.isdigit() for c in v) <= 2:
        return False
    if _TECH_WORD_RE.fullmatch(v) or _UNIT_RE.fullmatch(v) or _VERSION_RE.fullmatch(v):
        return False
    if "/" in v and not (len(v) >= 20 and _entropy(v) >= 3.5 and "." not in v):
        return False  # a path, unless it is base64
    if v.isdigit():
        return len(v) >= 8
    has_alpha = any(c.isalpha() for c in v)
    has_digit = any(c.isdigit() for c in v)
    has_symbol = any(c in _SYMBOLS for c in v)
    if has_alpha and (has_digit or has_symbol):
        parts = re.split(r"[_\-.]+", v)
        words = [p for p in parts if p.isalpha() and len(p) > 1]
        if len(words) >= 2 and all(_NAME_PART_RE.fullmatch(p) for p in parts):
            return False  # access_token_v2, oauth2-proxy-config
        return True
    if v.isalpha():
        # Letters only: a word, unless long and random (case changing every few characters).
        humps = sum(1 for a, b in zip(v, v[1:]) if a.islower() != b.islower())
        return len(v) >= 20 and humps >= len(v) / 4 and _entropy(v) >= 3.5
    return False


def _note_secretish(value: str) -> bool:
    """Note mode: a person wrote "the staging password is swordfish". Any word that is not prose
    is the secret there; commits and code keep the strict shape gate."""
    if _secretish(value):
        return True
    low = value.lower().strip(".,;:!?")
    if len(low) < 4 or low in _PROSE_STOP or low in _PLACEHOLDER_WORDS or low in _LITERAL_WORDS:
        return False
    if _is_placeholder(value) or "://" in value or _EMAIL_RE.fullmatch(value):
        return False
    return not low.endswith(("ed", "ing", "ly", "able", "ible", "tion", "sion"))


def _skip_prose(m: re.Match[str], *, note: bool = False) -> bool:
    """Veto for "<secret word> <connector> <value>" in prose: keep words, names and code."""
    value = m.group("secret")
    line = m.string
    conn = m.group("conn").strip()
    before = max(0, m.start() - 40)
    compound = _COMPOUND_BEFORE_RE.search(line, before, m.start())
    if m.group("key").lower() == "key" and compound is None:
        # "the key is": of a dict, a cache, a map. Only "api key", "secret key"... count, or a
        # machine-made value after a word ("the openai key is 3kT9...").
        if _PROSE_BEFORE_RE.search(line, before, m.start()) is None or conn in ("", "to"):
            return True
        if m.group("q") and _closes_a_string(line, m.start("q")):
            return True
        return not _random_token(value)
    if conn in (":", "=", "->", "=>") and (compound is None or compound.group(0)[-1] not in " \t"):
        # A lone secret word with a symbol is an assignment (those rules judge code); it is prose
        # only after a word: "staging db password: hunter2", "the admin password = x".
        if _PROSE_BEFORE_RE.search(line, before, m.start()) is None:
            return True
    if conn == "to" and _VERB_BEFORE_RE.search(line, max(0, m.start() - 40), m.start()) is None:
        return True  # "the token to use", "password to the vault"
    if m.group("q"):
        if _closes_a_string(line, m.start("q")):
            return True  # "... the token is " + tok: the quote closed a literal
        if _is_placeholder(value) or _is_prose(value) or value.lower() in _PROSE_STOP:
            return True
        return len(value) < 6 and not note
    # Notes take any non-prose word, but only after a real connector ("is", ":", "to"):
    # "api key lives in 1Password" has none.
    return not (_note_secretish(value) if note and conn else _secretish(value))


def _skip_key_assignment(m: re.Match[str]) -> bool:
    """``<anything>_key = <value>``: a key name holds anything (sort_key, cache_key), so only a
    value that looks machine-made counts."""
    return not _random_token(m.group("secret")) or _skip_token_assignment(m)


def _skip_env_secret(m: re.Match[str]) -> bool:
    """``PGPASSWORD=…``, ``GITHUBTOKEN: …``: env-style names glued to the secret word."""
    name = m.group("name")
    if name.endswith(("PASSWORD", "PASSWD", "PASSPHRASE", "PASSCODE", "PWD", "PASS", "PW")):
        return _skip_assignment(m)
    return _skip_token_assignment(m)


# One line of a private-key body, walked back from an END line whose BEGIN is not in the text
# (a hunk showing the last lines of a key): optional diff marker, indentation and quotes, then
# base64 (JSON-escaped newlines allowed) or a PEM header.
_PK_BODY_LINE_RE = re.compile(
    r"[+\- ]?[ \t]*[\"']?(?P<content>(?:Proc-Type|DEK-Info|Version|Comment|Hash|Charset):[^\r\n]*"
    r"|[A-Za-z0-9+/=]*(?:\\[rn][A-Za-z0-9+/=]*)*)[\"']?[ \t]*[,+\\]?[ \t]*\r?"
)
_PK_ESCAPED_TAIL_RE = re.compile(r"(?:[A-Za-z0-9+/=]+\\[rn])+\Z")


def _private_key_tail_span(m: re.Match[str]) -> tuple[int, int] | None:
    """The key body lines above an END line, up to the first line that is not key body."""
    text = m.string
    line_start = text.rfind("\n", 0, m.start()) + 1
    start = end = -1
    strong = False
    same = _PK_ESCAPED_TAIL_RE.search(text, line_start, m.start())  # ...\nBASE64\n-----END on one line
    if same is not None:
        start, end = same.start(), m.start()
        strong = _B64_RUN_RE.search(same.group(0)) is not None
    pos = line_start
    while pos > 0:
        prev = text.rfind("\n", 0, pos - 1) + 1
        body = _PK_BODY_LINE_RE.fullmatch(text, prev, pos - 1)
        if body is None or "BEGIN" in text[prev:pos - 1]:
            break
        if end < 0:
            end = pos - 1 - (text[pos - 2:pos - 1] == "\r")
        start = body.start("content") if body.group("content") else prev
        strong = strong or _B64_RUN_RE.search(body.group("content")) is not None
        pos = prev
    return (start, end) if strong and start < end else None


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
    r"(?P<op>:=|=>|\?=|=(?![=~])|:(?![:/]))[ \t]*"  # ?= : Makefile
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


def _key_first(prefixes: list[str]) -> str:
    """``<prefix>[_-]?key`` at an identifier boundary, like ``_stems``, but matched from the
    ``key`` literal backwards: the regex engine then stops only at the few places holding "key"
    instead of trying every prefix at every position (ten times faster on real diffs). The match
    (and so ``m.start()``) begins at ``key``."""
    alts = []
    for p in prefixes:
        for sep in ("", "_", "-"):
            sep = re.escape(sep)
            alts.append(f"(?<=(?<![A-Za-z])(?i:{p}){sep}...)")
            alts.append(f"(?<=(?<=[a-z0-9])(?-i:{p[0].upper()})(?i:{p[1:]}){sep}...)")
    return r"(?:key|Key|KEY)(?:(?<=[A-Za-z]...)|(?<=[A-Za-z][_\-]...))(?:" + "|".join(alts) + ")"


def _prefixed(prefixes: str, core: str) -> list[str]:
    """``core`` alone and glued to each prefix (``authtoken``): a separator
    (``auth_token``) is already covered by ``core`` at a boundary."""
    return [core] + [p + core for p in prefixes.split()]


def _assignment(*words: str) -> str:
    return _stems(*words) + _KEY_TAIL + _VALUE


# A secret word in prose, a connector, and the value: "the staging db password is X until Friday",
# "aws secret key: X", "auth token X". The value's shape decides (``_secretish``).
PROSE_KEY = (
    # The secret word itself; what stands before it ("admin", "aws secret", "auth") is read by
    # _skip_prose. Starting at the word keeps the regex cheap on the many lines with "key".
    r"(?<![A-Za-z0-9.$/])(?P<key>(?i:pass(?:word|wd|phrase|code)|pwd|secret|token|key|credentials?))(?![\w\-])"
)
PROSE_CONNECTOR = (
    r"(?P<conn>(?:[ \t]+(?:for|of|on|in)(?:[ \t]+[\w.\-@]+){1,3}?)?"  # the password for the admin account
    r"[ \t]+(?:is|was|are|were|equals|became|becomes)"
    r"(?:[ \t]+(?:now|still|currently|just|simply|actually|literally))?"
    r"(?:[ \t]+(?:set|changed|reset|updated|rotated)[ \t]+to)?[ \t]*[:=]?"
    r"|[ \t]+(?:set|changed|reset|updated|rotated)[ \t]+to"
    r"|[ \t]+to(?=[ \t])"  # "reset the deploy key to X": the verb stands before the key
    r"|[ \t]*(?:->|=>|:|=)"
    r"|(?=[ \t]))[ \t]*"
)
PROSE_VALUE = (
    r"(?P<q>[\"'`]?)(?P<secret>"
    r"(?<=\")[^\"\n]+(?=\")|(?<=')[^'\n]+(?=')|(?<=`)[^`\n]+(?=`)"
    # bare: up to a space, a quote or an escaped newline ("...token refresh\\n\\nTokens...")
    r"|(?<![\"'`])(?:[^\s\"'`\\]|\\(?![nrt]))+?(?=[.,;:)\]]*(?:[\s\"'`]|\\[nrt]|$)))"
)
PROSE_KEYWORDS = ("pass", "Pass", "PASS", "pwd", "Pwd", "PWD", "secret", "Secret", "SECRET", "token", "Token", "TOKEN",
                  "key", "Key", "KEY", "credential", "Credential", "CREDENTIAL")

# Env-style names glued to the secret word, any prefix: PGPASSWORD, GITHUBTOKEN, MYSQL_PWD.
_ENV_SECRET_NAME = (
    r"(?<![\w$.\-])(?P<name>(?=[A-Z])[A-Z0-9_]*?"
    r"(?:PASSWORD|PASSWD|PASSPHRASE|PASSCODE|TOKEN|SECRET|CREDENTIALS?|BEARER|APIKEY|_PWD|_PASS|_PW|_AUTH))"
)
# Any name ending in key: OPENAI_KEY, sendgridKey, stripe.key, key.
_ANY_KEY_NAME = (  # matched from the "key" literal backwards (see _key_first)
    r"(?:key|Key|KEY)(?:(?<=[A-Za-z0-9_$][_\-.](?i:key))|(?<=[a-z0-9]Key)|(?<=[A-Z0-9]KEY)|(?<![\w$](?i:key)))"
)

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
    span: Callable[[re.Match[str]], tuple[int, int] | None] | None = None,
) -> Rule:
    return Rule(name, regex, group, description, keywords, anchor, skip, multiline, span)


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
        "private-key-body",
        _PK_END,
        "private-key body lines above an END line whose BEGIN is outside the text (a hunk appending after a key)",
        keywords=("PRIVATE KEY",),
        multiline=True,
        span=_private_key_tail_span,
    ),
    _rule(
        "aws-access-key-id",
        _L + r"(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z2-7]{16}" + _R,
        "AWS access key id (long-term AKIA, temporary ASIA, ABIA/ACCA/A3T)",
        keywords=("AKIA", "ASIA", "ABIA", "ACCA", "A3T"),
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
        _L + r"gl(?:pat|dt|rt|ptt|ft|imt|agent|oas|cbt|soat|ffct)-[A-Za-z0-9_\-]{20,}(?:\.[0-9a-z]{9})?",
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
        _L + r"[sr]k_(?:live|test|prod)_[A-Za-z0-9]{16,247}" + _R,
        "Stripe secret and restricted keys (live, test, prod)",
        keywords=("sk_live_", "sk_test_", "sk_prod_", "rk_live_", "rk_test_", "rk_prod_"),
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
        _L + r"sk-(?:(?:proj|svcacct|admin)-[A-Za-z0-9_\-]{20,}|[A-Za-z0-9]{32,}|[A-Za-z0-9_\-]*T3BlbkFJ[A-Za-z0-9_\-]+)",
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
    # ---- from gitleaks' and detect-secrets' rule sets, and newer vendors (issue 9) ----
    _rule(
        "onepassword-token",
        r"(?<![A-Za-z0-9])(?:A3-[A-Z0-9]{6}-(?:[A-Z0-9]{11}|[A-Z0-9]{6}-[A-Z0-9]{5})-[A-Z0-9]{5}-[A-Z0-9]{5}-[A-Z0-9]{5}"
        r"|ops_eyJ[A-Za-z0-9+/]{250,}={0,3})",
        "1Password secret key (A3-...) and service-account token (ops_eyJ...)",
        keywords=("A3-", "ops_eyJ"),
    ),
    _rule(
        "adobe-client-secret",
        _L + r"p8e-[A-Za-z0-9]{32}" + _R,
        "Adobe OAuth client secret",
        keywords=("p8e-",),
    ),
    _rule(
        "alibaba-access-key-id",
        _L + r"LTAI[A-Za-z0-9]{20}" + _R,
        "Alibaba Cloud AccessKey id",
        keywords=("LTAI",),
    ),
    _rule(
        "artifactory-token",
        _L + r"(?:AKCp[A-Za-z0-9]{69}|cmVmd[A-Za-z0-9]{59})" + _R,
        "JFrog Artifactory API key / reference token",
        keywords=("AKCp", "cmVmd"),
    ),
    _rule(
        "authress-key",
        _L + r"(?:sc|ext|scauth|authress)_[A-Za-z0-9]{5,30}\.[A-Za-z0-9]{4,6}\.acc[_\-][A-Za-z0-9\-]{10,32}"
        r"\.[A-Za-z0-9+/_=\-]{30,120}",
        "Authress service client access key",
        keywords=(".acc_", ".acc-"),
    ),
    _rule(
        "clickhouse-api-secret",
        _L + r"4b1d[A-Za-z0-9]{38}" + _R,
        "ClickHouse Cloud API secret key",
        keywords=("4b1d",),
    ),
    _rule(
        "clojars-token",
        _L + r"CLOJARS_[A-Za-z0-9]{60}" + _R,
        "Clojars deploy token",
        keywords=("CLOJARS_",),
    ),
    _rule(
        "cloudflare-origin-ca-key",
        _L + r"v1\.0-[a-f0-9]{24}-[a-f0-9]{146}" + _R,
        "Cloudflare Origin CA key",
        keywords=("v1.0-",),
    ),
    _rule(
        "duffel-token",
        _L + r"duffel_(?:test|live)_[A-Za-z0-9_\-=]{43}",
        "Duffel API token",
        keywords=("duffel_",),
        anchor=r"_test_[A-Za-z0-9_\-=]{43}|_live_[A-Za-z0-9_\-=]{43}",  # each | branch: a plain first character
    ),
    _rule(
        "dynatrace-token",
        _L + r"dt0c01\.[A-Za-z0-9]{24}\.[A-Za-z0-9]{64}" + _R,
        "Dynatrace API token",
        keywords=("dt0c01.",),
    ),
    _rule(
        "easypost-token",
        _L + r"EZ[AT]K[A-Za-z0-9]{54}" + _R,
        "EasyPost production / test API key",
        keywords=("EZAK", "EZTK"),
    ),
    _rule(
        "facebook-access-token",
        _L + r"EAA[MC][A-Za-z0-9]{100,}" + _R,
        "Facebook / Meta page or user access token",
        keywords=("EAAM", "EAAC"),
    ),
    _rule(
        "flutterwave-key",
        _L + r"FLW(?:SECK|PUBK)(?:_TEST)?-[A-Za-z0-9]{12,32}(?:-X)?" + _R,
        "Flutterwave secret / public key",
        keywords=("FLWSECK", "FLWPUBK"),
    ),
    _rule(
        "flyio-token",
        _L + r"(?:fm1[ar]_[A-Za-z0-9+/]{100,}={0,3}|fm2_[A-Za-z0-9+/]{100,}={0,3})",
        "Fly.io access token (macaroon; the older fo1_ org tokens are left to the assignment rules)",
        keywords=("fm1a_", "fm1r_", "fm2_"),
    ),
    _rule(
        "frameio-token",
        _L + r"fio-u-[A-Za-z0-9_\-=]{64}",
        "Frame.io API token",
        keywords=("fio-u-",),
    ),
    _rule(
        "gitlab-runner-registration-token",
        _L + r"GR1348941[A-Za-z0-9_\-]{20,}",
        "GitLab runner registration token",
        keywords=("GR1348941",),
    ),
    _rule(
        "gitlab-session-cookie",
        r"_gitlab_session=(?P<secret>[0-9a-z]{32})" + _R,
        "GitLab session cookie",
        group="secret",
        keywords=("_gitlab_session=",),
    ),
    _rule(
        "grafana-api-key",
        _L + r"eyJrIjoi[A-Za-z0-9]{70,400}={0,3}",
        "Grafana API key (base64 JSON starting {\"k\":)",
        keywords=("eyJrIjoi",),
    ),
    _rule(
        "harness-token",
        _L + r"pat\.[A-Za-z0-9_\-]{22}\.[A-Za-z0-9]{24}\.[A-Za-z0-9]{20}" + _R,
        "Harness personal access token (service-account sat. tokens: left to the assignment rules, "
        "a keyword of common letters would slow every line)",
        keywords=("pat.",),
    ),
    _rule(
        "heroku-api-key",
        _L + r"HRKU-AA[0-9A-Za-z_\-]{58}",
        "Heroku API key (v2 format)",
        keywords=("HRKU-",),
    ),
    _rule(
        "huggingface-org-token",
        _L + r"api_org_[A-Za-z]{34}" + _R,
        "Hugging Face organisation API token",
        keywords=("api_org_",),
    ),
    _rule(
        "infracost-token",
        _L + r"ico-[A-Za-z0-9]{32}" + _R,
        "Infracost API token",
        keywords=("ico-",),
    ),
    _rule(
        "intra42-secret",
        _L + r"s-s4t2(?:ud|af)-[a-f0-9]{64}" + _R,
        "42 Intra client secret",
        keywords=("s-s4t2",),
    ),
    _rule(
        "jwt-base64",
        _L + r"ZXlK[A-Za-z0-9+/_\-]{60,}={0,2}",
        "base64-encoded JSON Web Token (a JWT stored base64 again, as in Kubernetes secrets)",
        keywords=("ZXlK",),
    ),
    _rule(
        "maxmind-license-key",
        _L + r"[A-Za-z0-9]{6}_[A-Za-z0-9]{29}_mmk" + _R,
        "MaxMind license key",
        keywords=("_mmk",),
    ),
    _rule(
        "teams-webhook-url",
        r"webhook\.office\.com/webhookb2/(?P<secret>[A-Za-z0-9@/\-]{60,})",
        "Microsoft Teams incoming-webhook URL (the path is the credential)",
        group="secret",
        keywords=("webhook.office.com",),
    ),
    _rule(
        "octopus-deploy-key",
        _L + r"API-(?=[A-Z]*[0-9])[A-Z0-9]{26}" + _R,
        "Octopus Deploy API key",
        keywords=("API-",),
    ),
    _rule(
        "openrouter-api-key",
        _L + r"sk-or-v1-[a-f0-9]{64}" + _R,
        "OpenRouter API key",
        keywords=("sk-or-",),
    ),
    _rule(
        "openshift-token",
        r"sha256~[A-Za-z0-9_\-]{43}",
        "OpenShift user token",
        keywords=("256~",),
    ),
    _rule(
        "perplexity-api-key",
        _L + r"pplx-[A-Za-z0-9]{48}" + _R,
        "Perplexity API key",
        keywords=("pplx-",),
    ),
    _rule(
        "prefect-token",
        _L + r"pnu_[A-Za-z0-9]{36}" + _R,
        "Prefect API token",
        keywords=("pnu_",),
    ),
    _rule(
        "readme-token",
        _L + r"rdme_[a-z0-9]{70}" + _R,
        "ReadMe API token",
        keywords=("rdme_",),
        anchor=_UNDERSCORE_TOKEN,
    ),
    _rule(
        "scalingo-token",
        _L + r"tk-us-[A-Za-z0-9_\-]{48}",
        "Scalingo API token",
        keywords=("tk-us-",),
    ),
    _rule(
        "sendinblue-key",
        _L + r"x(?:keysib|smtpsib)-[a-f0-9]{64}-[A-Za-z0-9]{16}" + _R,
        "Brevo (Sendinblue) API / SMTP key",
        keywords=("xkeysib-", "xsmtpsib-"),
    ),
    _rule(
        "shippo-token",
        _L + r"shippo_(?:live|test)_[a-fA-F0-9]{40}" + _R,
        "Shippo API token",
        keywords=("shippo_",),
    ),
    _rule(
        "sourcegraph-token",
        _L + r"sgp_(?:(?:[a-fA-F0-9]{16}|local)_)?[a-fA-F0-9]{40}" + _R,
        "Sourcegraph access token",
        keywords=("sgp_",),
    ),
    _rule(
        "typeform-token",
        _L + r"tfp_[A-Za-z0-9_\-.=]{59}",
        "Typeform personal access token",
        keywords=("tfp_",),
        anchor=r"_[A-Za-z0-9_\-.=]{59}",
    ),
    _rule(
        "xai-api-key",
        _L + r"xai-[A-Za-z0-9]{80}" + _R,
        "xAI (Grok) API key",
        keywords=("xai-",),
    ),
    _rule(
        "langsmith-api-key",
        _L + r"lsv2_(?:pt|sk)_[a-f0-9]{32}_[a-f0-9]{10}" + _R,
        "LangSmith API key",
        keywords=("lsv2_",),
    ),
    _rule(
        "pinecone-api-key",
        _L + r"pcsk_[A-Za-z0-9_]{50,}",
        "Pinecone API key",
        keywords=("pcsk_",),
    ),
    _rule(
        "tailscale-key",
        _L + r"tskey-(?:api|auth|client|webhook|scim)-[A-Za-z0-9]+-[A-Za-z0-9]{10,}",
        "Tailscale API / auth key",
        keywords=("tskey-",),
    ),
    _rule(
        "deno-token",
        _L + r"dd[pw]_[A-Za-z0-9]{36}" + _R,
        "Deno Deploy access token",
        keywords=("ddp_", "ddw_"),
        anchor=_UNDERSCORE_TOKEN,
    ),
    _rule(
        "neon-api-key",
        _L + r"napi_[a-z0-9]{64}" + _R,
        "Neon API key",
        keywords=("napi_",),
    ),
    _rule(
        "figma-token",
        _L + r"figd_[A-Za-z0-9_\-]{40,}",
        "Figma personal access token",
        keywords=("figd_",),
    ),
    _rule(
        "netlify-token",
        _L + r"nfp_[A-Za-z0-9]{36,}" + _R,
        "Netlify personal access token",
        keywords=("nfp_",),
        anchor=_UNDERSCORE_TOKEN,
    ),
    _rule(
        "google-oauth-refresh-token",
        r"(?<![A-Za-z0-9/])1//0[A-Za-z0-9_\-]{40,}",
        "Google OAuth refresh token",
        keywords=("1//0",),
    ),
    _rule(
        "aws-session-token",
        _L + r"(?:IQoJb3JpZ2lu|FwoGZXIvYXdz)[A-Za-z0-9+/=]{100,}",
        "AWS STS session token",
        keywords=("IQoJb3JpZ2lu", "FwoGZXIvYXdz"),
    ),
    _rule(
        "fcm-server-key",
        _L + r"AAAA[A-Za-z0-9_\-]{7}:APA91b[A-Za-z0-9_\-]{100,}",
        "Firebase Cloud Messaging legacy server key",
        keywords=(":APA91b",),
    ),
    _rule(
        "braintree-token",
        r"access_token\$(?:production|sandbox)\$[0-9a-z]{16}\$[0-9a-f]{32}",
        "Braintree / PayPal access token",
        keywords=("access_token$",),
    ),
    _rule(
        "nuget-api-key",
        _L + r"oy2[a-z0-9]{43}" + _R,
        "NuGet API key",
        keywords=("oy2",),
    ),
    _rule(
        "sonarqube-token",
        _L + r"sq[pau]_[a-f0-9]{40}" + _R,
        "SonarQube / SonarCloud token",
        keywords=("sqp_", "sqa_", "squ_"),
    ),
    _rule(
        "contentful-token",
        _L + r"CFPAT-[A-Za-z0-9_\-]{43}",
        "Contentful personal access token",
        keywords=("CFPAT-",),
    ),
    _rule(
        "buildkite-token",
        _L + r"bkua_[a-f0-9]{40}" + _R,
        "Buildkite API access token",
        keywords=("bkua_",),
    ),
    _rule(
        "circleci-token",
        _L + r"CCIPAT_[A-Za-z0-9]{22}_[a-f0-9]{40}" + _R,
        "CircleCI personal API token",
        keywords=("CCIPAT_",),
    ),
    _rule(
        "mapbox-secret-token",
        _L + r"sk\.eyJ[A-Za-z0-9_\-]{20,}\.[A-Za-z0-9_\-]{20,}",
        "Mapbox secret access token",
        keywords=("sk.eyJ",),
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
        r"(?:(?P<scheme>(?i:bearer|basic|token|bot|digest|negotiate|apikey|sso-key|ssws|key"
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
        _key_first(
            "api access secret signing encryption master app client consumer account "
            "license subscription service auth admin write read ingest private deploy".split()
        )
        + _KEY_TAIL
        + _VALUE,
        "api_key = ..., apiKey: ..., X-API-Key: ..., ACCESS_KEY=...",
        group="secret",
        keywords=_cases("key"),
        skip=_skip_token_assignment,
    ),
    _rule(
        "env-secret-assignment",
        _ENV_SECRET_NAME + _KEY_TAIL + _VALUE,
        "env-style names with the secret word glued to any prefix: PGPASSWORD=..., GITHUBTOKEN: ..., MYSQL_PWD=...",
        group="secret",
        keywords=("PASS", "PW", "TOKEN", "SECRET", "CREDENTIAL", "BEARER", "_AUTH", "APIKEY"),
        skip=_skip_env_secret,
    ),
    _rule(
        "key-assignment",
        _ANY_KEY_NAME + _KEY_TAIL + _VALUE,
        "any *key name (OPENAI_KEY=, sendgridKey:, stripe.key =) holding a machine-made value (entropy-gated)",
        group="secret",
        keywords=_cases("key"),
        skip=_skip_key_assignment,
    ),
    _rule(
        "prose-secret",
        PROSE_KEY + PROSE_CONNECTOR + PROSE_VALUE,
        "a credential written in prose next to the word that names it: 'the admin password is X', 'auth token X'",
        group="secret",
        keywords=PROSE_KEYWORDS,
        skip=_skip_prose,
    ),
)
