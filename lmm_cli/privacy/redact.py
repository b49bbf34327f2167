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
    Private-key blocks are the one multi-line rule: it runs over the whole
    text, so callers should pass whole messages / hunks / files, not single
    lines, for a key body to be caught together with its ``BEGIN`` line.

What it deliberately leaves out
    * No entropy scanning: git SHAs, UUIDs, content hashes and base64 test data
      would all look like secrets. Unknown token formats are caught only when
      assigned to a secret-sounding name (``*_token = ...``, ``api_key: ...``);
      there, any literal counts, UUIDs included (many API keys are UUIDs).
    * Structured token formats (``ghp_...``, ``AKIA...``) are always redacted,
      placeholder-looking or not (``AKIAIOSFODNN7EXAMPLE`` goes too): a false
      positive there costs a few characters of history, a miss costs a leak.
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
    * Known misses, accepted: unquoted INI/Makefile passwords that look like a
      name (``password = hunter2``; ``hunter2`` could be a variable), unquoted
      YAML values with spaces, ``pass:word`` without the YAML space, YAML block
      scalars and strings split across lines under a generic key, ``ENV
      PASSWORD value`` without ``=``, all-capitals keys without separator
      (``DBPASSWORD``), Kubernetes ``Secret`` data, and a diff hunk that starts
      inside a private key after its ``BEGIN`` line (git's context lines
      normally include it).
    * Known over-redactions, accepted: the text between a ``BEGIN``/``END``
      private-key pair in documentation, base64-looking lines right after a
      truncated key, a bare name assigned in env style (``PASSWORD=pw``).
"""

from __future__ import annotations

import re
from typing import Any

from .files import is_secret_file
from .rules import RULES, Rule

__all__ = ["Rule", "RULES", "redact", "redact_with_hits", "is_secret_file"]


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
        # The rarest chosen character; at equal cost the longer literal.
        i = min(
            (i for i in positions(kw) if kw[i] in chosen),
            key=lambda i: (_char_cost(kw[i]), -min(len(kw) - i, 4)),
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


def _collect(
    rule_index: int, rule: Rule, text: str, offset: int, out: list[tuple[int, int, int]]
) -> None:
    for m in rule.pattern.finditer(text):
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


def redact_with_hits(text: str) -> tuple[str, list[str]]:
    """Redact ``text``; also return the names of the rules that fired, in text
    order, one per marker written (duplicates allowed)."""
    first = _trigger_search(text)
    if first is None:  # the common case: nothing that could be a secret
        return text, []
    spans = _find_spans(text, first)
    if not spans:
        return text, []
    # Earliest start wins; at the same start the earlier rule in RULES names the
    # span. Overlaps are merged (never partially kept) so no fragment leaks.
    spans.sort(key=lambda s: (s[0], s[2]))
    merged: list[list[int]] = []
    for start, end, idx in spans:
        if merged and start < merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1][1] = end
            continue
        merged.append([start, end, idx])
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
