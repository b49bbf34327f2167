"""Secret redaction: the last step before any text reaches the store.

Every piece of captured text (commit messages, diffs, notes, file paths) goes
through :func:`redact`, which replaces each secret *span* with
``[REDACTED:<rule name>]`` and leaves everything around it alone, so
``password = "hunter2"`` becomes ``password = "[REDACTED:password-assignment]"``
and the line still reads. Files whose *name* says they hold secrets (``.env``,
``id_rsa``, ``*.pem`` ...) are recognised by :func:`is_secret_file`; callers
record such files by name only and never read their contents.

How it works
    All rules live in one table, :data:`RULES`. Scanning 20 MB of history must
    cost almost nothing for ordinary code, so one combined regex of short
    literal anchors taken from the rules' keywords (``AKIA``, ``ghp_``,
    ``pass``, ``ken`` of token, ``://`` ...) runs over the text first; only
    lines it hits are handed to the rules whose own keywords occur there.
    Private-key rules are the multi-line ones: they run over the whole text,
    so callers should pass whole messages / hunks / files, not single lines,
    for a key body to be caught together with its ``BEGIN`` (or ``END``) line.
    When rules change, ``RULES_VERSION`` is bumped and stores redacted under
    older rules are re-redacted on their next capture (``capture/rescan.py``).

Classes of secret
    * Formats that name themselves: a prefix table kept level with gitleaks'
      and detect-secrets' rule sets (``ghp_``, ``AKIA``, ``npm_``, ``xoxb-``,
      ``sk-ant-``, ``glpat-``, ``dop_v1_``, ``pplx-``, ...), recognised bare,
      with no assignment around them, and always redacted.
    * Assignments to a secret-sounding name in code and config (shell, YAML,
      TOML, JSON, ``.env``, Makefile ``?=``): ``password``/``secret``/``token``
      and ``*_api_key``-style names take any literal; env-style names glued to
      any prefix (``PGPASSWORD``, ``GITHUBTOKEN``, ``MYSQL_PWD``) too; any
      other ``*key`` name (``OPENAI_KEY``, ``sendgridKey``) only a value that
      looks machine-made (16+ characters, letters and digits mixed within a
      part, entropy >= 3 bits/char), since ``sort_key = "created_at"`` is code.
    * Credentials in prose (``prose-secret``): a secret word, a connector and
      a value, "the staging db password is X until Friday", "aws secret key:
      X", "auth token X", "reset the deploy key to X". The value must look
      like a password or token (a digit or symbol with letters, a long digit
      run, a random-looking string); words, names, versions, units and paths
      stay. Notes (:func:`redact_note`) are stricter: any non-prose word after
      the connector goes.
    * Lines cut short by someone else keep nothing of the value they were cut
      in: :func:`trim_cut` / :func:`redact_cut` (git's 80-byte hunk-header
      context, capture's line cap).
    * Private keys: whole blocks, truncated blocks, JSON-escaped, in diffs, and
      body lines above an ``END`` line whose ``BEGIN`` is outside the hunk.

What it deliberately leaves out
    * No free-standing entropy scanning: git SHAs, UUIDs, content hashes and
      base64 test data would all look like secrets. Entropy only gates values
      next to a secret word (``*key`` names, prose). Unknown token formats
      are otherwise caught only when assigned to a secret-sounding name
      (``*_token = ...``, ``api_key: ...``); there, any literal counts, UUIDs
      included (many API keys are UUIDs).
    * Structured token formats (``ghp_...``, ``AKIA...``) are always redacted,
      placeholder-looking or not (``AKIAIOSFODNN7EXAMPLE`` goes too): a false
      positive there costs a few characters of history, a miss costs a leak.
      A few prefixes of only common letters are left to the assignment rules
      because a keyword like ``sl.`` or ``sat.`` would send every other line
      down the slow path (Dropbox ``sl.``, Harness ``sat.``, SettleMint, Fly
      ``fo1_``).
    * Generic assignments leave alone what is not a literal or not real:
      ``None``/``null``/``true``, numbers under six digits, type annotations
      (``password: str``), calls, subscripts and attribute access
      (``os.environ["X"]``, ``get_token()``, ``self.token``), variables named
      like the secret (``password=password``, ``token=access_token``),
      ``password = pw`` (spaced ``=`` with a bare name is code; ``PASSWORD=pw``
      is env/logfmt config and is redacted), keyword arguments
      (``f(password=pw)``), JSON numbers, ARNs, f-strings and templates
      (``${VAR}``, ``{{ x }}``, ``$VAR``, ``%s``), placeholders (``<your-key>``,
      ``xxx``, ``***``, ``changeme``, ``your_api_key``, ``example``, ``test``,
      ``password``), prose (``"Enter your password"``, ``the --password
      option``), and, for tokens/keys/secrets but not passwords, plain names
      (``"input_token": "next_marker"``): a token is never a word, a password
      may be one (``letmein`` is redacted).
    * Known misses, accepted: unquoted INI passwords that look like a name
      (``password = hunter2``; ``hunter2`` could be a variable), a plain-word
      password in a commit's prose ("the password is swordfish": words after
      "the password is" are usually "required", "hashed"...; notes do catch
      it), unquoted YAML values with spaces, ``pass:word`` without the YAML
      space, YAML block scalars and strings split across lines under a generic
      key, ``ENV PASSWORD value`` without ``=``, Kubernetes ``Secret`` data,
      and a diff hunk lying wholly inside a private key (neither ``BEGIN`` nor
      ``END`` in it: base64 lines alone are not told from other base64).
    * Known over-redactions, accepted: the text between a ``BEGIN``/``END``
      private-key pair in documentation, base64-looking lines right after a
      truncated key, a bare name assigned in env style (``PASSWORD=pw``).
"""

from __future__ import annotations

import math
import re
from typing import Any

from .files import is_secret_file
from .rules import PROSE_CONNECTOR, PROSE_KEY, PROSE_KEYWORDS, PROSE_VALUE, RULES, RULES_VERSION, Rule, _skip_prose

__all__ = ["Rule", "RULES", "RULES_VERSION", "redact", "redact_with_hits", "redact_cut", "redact_note",
           "redact_note_with_hits", "trim_cut", "find_secrets", "is_secret_file"]


# --------------------------------------------------------------------------
# The scanner
# --------------------------------------------------------------------------

# ASCII characters from most to least frequent in source code (measured on the
# CPython standard library). Used only to pick cheap anchors for the prefilter.
_CHAR_RANK = (
    " etsarino\nlcd,pf_um.()\"h:g='yb0x1-2vwk[]TE*SA3#N45>IC`R6P8q97DLF\\M+O/zGj{}BWUVHK|<%@XQZYJ!?;~^$&"
)


def _char_cost(ch: str) -> float:
    i = _CHAR_RANK.find(ch)
    rank = len(_CHAR_RANK) if i < 0 else i
    return 1.0 / (rank + 3) ** 2  # roughly proportional to frequency


def _literal_cost(lit: str) -> float:
    """How often ``lit`` is expected in code: the product of its characters' frequencies."""
    return math.prod(_char_cost(c) for c in lit)


def _anchors(keywords: set[str], free: set[str]) -> set[str]:
    """The pieces of the keywords that the prefilter looks for.

    Each keyword contributes 2-4 of its characters starting at a character
    chosen so that, across all keywords, the set of first characters is cheap:
    the regex engine only tries a match where one of them occurs. The hardest
    keywords (whose cheapest character is still common, like ``pass``) pick
    first; the rest reuse what is already chosen where they can, so ``token``,
    ``sk-`` and ``dckr_`` all start at their ``k``. ``free`` characters are
    already paid for by shape anchors.
    """

    def positions(kw: str) -> range:
        # Literals of 3+ characters where the keyword allows: "pi" or "n_"
        # would fire on half the lines of ordinary code.
        if len(kw) <= 2:
            return range(1)
        return range(2) if len(kw) == 3 else range(len(kw) - 2)

    def options(kw: str) -> set[str]:
        return {kw[i] for i in positions(kw)}

    chosen = set(free)
    for kw in sorted(keywords, key=lambda k: (-min(map(_char_cost, options(k))), k)):
        if not options(kw) & chosen:
            chosen.add(min(sorted(options(kw)), key=_char_cost))
    out: set[str] = set()
    for kw in keywords:
        # Among the chosen first characters, the literal least likely to occur (each hit sends
        # its line down the slow path): "curl" rather than "url", "hori" rather than "auth".
        i = min(
            (i for i in positions(kw) if kw[i] in chosen),
            key=lambda i: (_literal_cost(kw[i : i + 4]), _char_cost(kw[i])),
        )
        out.add(kw[i : i + 4])
    return out


def _trigger_regex(literals: set[str], shapes: list[str]) -> str:
    """One alternation matching any literal (as a trie) or any shape regex.

    Every top-level branch starts with one literal character, so the engine
    tests a single character set per position and enters the branches only
    where one of those characters occurs; the branches are ordered most
    frequent character first because they are tried in order.
    """
    trie: dict[str, Any] = {}
    for word in literals:
        node = trie
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}

    def build(node: dict[str, Any]) -> str:
        alts = [re.escape(ch) + build(child) for ch, child in sorted(node.items()) if ch]
        if not alts:
            return ""
        body = alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"
        return "(?:" + body + ")?" if "" in node else body

    rests: dict[str, list[str]] = {}
    for ch, child in trie.items():
        rests.setdefault(ch, []).append(build(child))
    for shape in shapes:
        rests.setdefault(shape[0], []).append(shape[1:])
    branches = []
    for ch in sorted(rests, key=lambda c: (-_char_cost(c), c)):
        alts = rests[ch]
        branches.append(re.escape(ch) + (alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"))
    return "|".join(branches)


# Rules with an anchor regex are checked (by keyword, if they have any) on every
# line the prefilter keeps; the others only where one of their literals was seen.
_ANCHORED_RULES: tuple[tuple[int, Rule], ...] = tuple(
    (i, r) for i, r in enumerate(RULES) if r.anchor
)
_ALWAYS_RULES = tuple(i for i, r in _ANCHORED_RULES if not r.keywords)
# Their shapes, searched on a kept line before running them (cheap, exact).
_SHAPE_GATE = re.compile(
    "|".join(f"(?:{r.anchor})" for _, r in _ANCHORED_RULES if not r.keywords) or r"(?!)"
)
_GATED_RULES = tuple((i, r) for i, r in _ANCHORED_RULES if r.keywords)
# One search tells whether any gated anchored rule's keyword is on the line.
_ANCHORED_GATE = re.compile(
    "|".join(sorted({re.escape(k) for _, r in _GATED_RULES for k in r.keywords}))
)
_RULES_BY_KEYWORD: dict[str, list[int]] = {}
for _i, _r in enumerate(RULES):
    if not _r.anchor:
        for _k in _r.keywords:
            _RULES_BY_KEYWORD.setdefault(_k, []).append(_i)
# Anchor regexes are alternatives (split on top-level "|") starting with a plain character.
_ANCHOR_ALTERNATIVES = sorted({alt for r in RULES if r.anchor for alt in r.anchor.split("|")})
_ANCHOR_LITERALS = _anchors(
    set(_RULES_BY_KEYWORD), free={alt[0] for alt in _ANCHOR_ALTERNATIVES}
)


_LITERALS_BY_PREFIX: dict[str, set[str]] = {}
for _lit in _ANCHOR_LITERALS:
    for _n in range(1, len(_lit) + 1):
        _LITERALS_BY_PREFIX.setdefault(_lit[:_n], set()).add(_lit)


def _hidden_by(lit: str) -> set[str]:
    """Literals a left-to-right, non-overlapping scan can miss when it reports
    ``lit``: those inside it, and those starting inside it and running past its
    end. Their keywords are checked whenever ``lit`` is seen."""
    hidden = {other for other in _ANCHOR_LITERALS if other in lit}
    for i in range(1, len(lit)):
        hidden |= _LITERALS_BY_PREFIX.get(lit[i:], set())
    return hidden


# literal -> keywords worth checking (with `in`) on a line where it was seen
_KEYWORDS_CONTAINING = {
    lit: {k for k in _RULES_BY_KEYWORD if lit in k} for lit in _ANCHOR_LITERALS
}
_KEYWORDS_BY_LITERAL: dict[str, tuple[str, ...]] = {
    lit: tuple(sorted(set().union(*(_KEYWORDS_CONTAINING[h] for h in _hidden_by(lit)))))
    for lit in _ANCHOR_LITERALS
}
del _i, _r, _k, _n, _lit, _KEYWORDS_CONTAINING

# One alternation, every branch starting with a literal character: the engine
# tests one character set per position and only enters the branches at the few
# per cent of positions holding such a character.
_TRIGGER = re.compile(_trigger_regex(_ANCHOR_LITERALS, _ANCHOR_ALTERNATIVES))
_trigger_search = _TRIGGER.search  # bound once: redact() is called per line in backfills
_literal_findall = re.compile(_trigger_regex(_ANCHOR_LITERALS, [])).findall


def _collect(
    rule_index: int, rule: Rule, text: str, offset: int, out: list[tuple[int, int, int]]
) -> None:
    for m in rule.pattern.finditer(text):
        if rule.span is not None:
            found = rule.span(m)
            if found is None:
                continue
            start, end = found
        else:
            start, end = m.span(rule.group)
        if start < 0 or start == end:
            continue
        if rule.skip is not None and rule.skip(m):
            continue
        out.append((offset + start, offset + end, rule_index))


def _find_spans(text: str, first: re.Match[str]) -> list[tuple[int, int, int]]:
    """Spans (start, end, rule index) of every secret; ``first`` is the
    prefilter's first hit in ``text``."""
    spans: list[tuple[int, int, int]] = []
    multiline: set[int] = set()
    n = len(text)
    search = _TRIGGER.search
    findall = _TRIGGER.findall
    m: re.Match[str] | None = first
    while m is not None:
        start = text.rfind("\n", 0, m.start()) + 1
        end = text.find("\n", m.end())
        if end < 0:
            end = n
        line = text[start:end]
        due: set[int] = set()
        # Each keyword is looked for once per line (a minified line can repeat
        # a literal thousands of times); literals hidden by overlaps are
        # covered by _KEYWORDS_BY_LITERAL.
        seen = set(findall(line))
        if not seen <= _KEYWORDS_BY_LITERAL.keys():
            # A shape anchor (_[A-Za-z0-9]{34}...) matched and may have swallowed a literal
            # (notes_4b1d…): look for the literals alone too.
            seen.update(_literal_findall(line))
        for k in {k for lit in seen for k in _KEYWORDS_BY_LITERAL.get(lit, ())}:
            if k in line:
                due.update(_RULES_BY_KEYWORD[k])
        if _ALWAYS_RULES and _SHAPE_GATE.search(line):
            due.update(_ALWAYS_RULES)
        if _ANCHORED_GATE.search(line):
            for i, rule in _GATED_RULES:
                if any(k in line for k in rule.keywords):
                    due.add(i)
        for i in due:
            rule = RULES[i]
            if rule.multiline:
                multiline.add(i)
            else:
                _collect(i, rule, line, start, spans)
        m = search(text, end + 1) if end < n else None
    for i in multiline:
        _collect(i, RULES[i], text, 0, spans)
    return spans


def _merge(spans: list[tuple[int, int, int]]) -> list[list[int]]:
    """Earliest start wins; at the same start the earlier rule in RULES names the
    span. Overlaps are merged (never partially kept) so no fragment leaks."""
    spans.sort(key=lambda s: (s[0], s[2]))
    merged: list[list[int]] = []
    for start, end, idx in spans:
        if merged and start < merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1][1] = end
            continue
        merged.append([start, end, idx])
    return merged


def find_secrets(text: str) -> list[tuple[int, int, str]]:
    """The secret spans of ``text`` as ``(start, end, rule name)``, merged and in text order:
    exactly what :func:`redact` replaces (for benchmarks and tools that mark rather than cut)."""
    first = _trigger_search(text)
    if first is None:
        return []
    return [(a, b, RULES[i].name) for a, b, i in _merge(_find_spans(text, first))]


def redact_with_hits(text: str) -> tuple[str, list[str]]:
    """Redact ``text``; also return the names of the rules that fired, in text
    order, one per marker written (duplicates allowed)."""
    first = _trigger_search(text)
    if first is None:  # the common case: nothing that could be a secret
        return text, []
    spans = _find_spans(text, first)
    if not spans:
        return text, []
    merged = _merge(spans)
    out: list[str] = []
    hits: list[str] = []
    last = 0
    for start, end, idx in merged:
        name = RULES[idx].name
        out.append(text[last:start])
        out.append(f"[REDACTED:{name}]")
        hits.append(name)
        last = end
    out.append(text[last:])
    return "".join(out), hits


def redact(text: str) -> str:
    """Replace every secret span in ``text`` with ``[REDACTED:<rule name>]``."""
    if _trigger_search(text) is None:  # fast path: one C-level scan, no allocations
        return text
    return redact_with_hits(text)[0]


# --------------------------------------------------------------------------
# Lines cut short, and notes
# --------------------------------------------------------------------------

# The run of characters a cut line ends with: the token the cut went through.
_TAIL_RUN = re.compile(r"[^\s(\[{,;\"'`]+\Z")
_APOSTROPHE = re.compile(r"(?<=[A-Za-z])'(?=[A-Za-z])")


def trim_cut(line: str) -> str:
    """``line`` without the value it was cut in the middle of.

    For a line cut short by someone else (git prints at most 80 bytes of a hunk header's function
    line; capture cuts lines longer than ``max_line_chars``): half a token is still a secret, and
    no rule recognises half a token. An unclosed quoted string is dropped from its opening quote
    (``token="ghp_8fK`` → ``token="``, and a passphrase cut after two words goes whole), then the
    run of non-space characters the line ends with (``PASSWORD=hunter2-lo`` → nothing).
    """
    cut = len(line)
    for q in ('"', "'", "`"):
        n = line.count(q)
        if q == "'" and n:
            n -= len(_APOSTROPHE.findall(line))  # don't, it's: not quotes
        if n % 2:
            cut = min(cut, line.rfind(q) + 1)
    return _TAIL_RUN.sub("", line[:cut])


def redact_cut(line: str) -> str:
    """Redact a line that was cut short: :func:`trim_cut`, then :func:`redact`."""
    return redact(trim_cut(line))


_NOTE_PROSE = re.compile(PROSE_KEY + PROSE_CONNECTOR + PROSE_VALUE)
_NOTE_TRIGGER = re.compile("|".join(re.escape(k) for k in PROSE_KEYWORDS))


def redact_note_with_hits(text: str) -> tuple[str, list[str]]:
    """Redact a note a person wrote (``lmm remember``, the MCP ``remember`` tool); also return the
    kinds of secret taken out.

    Everything :func:`redact` does, and more in prose: after "the staging password is", "aws secret
    key:" or "auth token" any word that is not prose goes (``swordfish`` too), where commit
    messages and code keep the stricter shape test (a digit or symbol, or a random-looking token).
    A person writing a note next to the word "password" is far more likely to be writing one down.
    """
    out, hits = redact_with_hits(text)
    if _NOTE_TRIGGER.search(out) is None:
        return out, hits
    spans = [m.span("secret") for m in _NOTE_PROSE.finditer(out)
             if not _skip_prose(m, note=True) and not _inside_marker(out, *m.span("secret"))]
    for start, end in reversed(spans):
        out = out[:start] + "[REDACTED:prose-secret]" + out[end:]
    return out, hits + ["prose-secret"] * len(spans)


_MARKER = re.compile(r"\[REDACTED:[a-z0-9-]+\]")


def _inside_marker(text: str, start: int, end: int) -> bool:
    """The span overlaps a ``[REDACTED:…]`` the first pass wrote: already gone, not a new secret."""
    return any(m.start() < end and start < m.end() for m in _MARKER.finditer(text, max(0, start - 40), end + 40))


def redact_note(text: str) -> str:
    """:func:`redact_note_with_hits` without the kinds."""
    return redact_note_with_hits(text)[0]
