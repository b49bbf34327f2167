"""Code-aware terms: split identifiers the way people talk about them.

``refreshToken``, ``refresh_token`` and ``RefreshTokenError`` all yield ``refresh`` and ``token``,
so a query in words finds code in identifiers and the reverse. SQLite's FTS5 tokenizers cannot do
this, so indexed text carries an extra ``terms`` column made here, and queries go through
``query_terms``. Stemming is left to FTS5's porter tokenizer.
"""

from __future__ import annotations

import re
from functools import lru_cache

__all__ = ["split_identifier", "code_terms", "query_terms", "query_phrases", "STOPWORDS", "LMM_MARK"]

# Every text lmm injects into an assistant's context starts with this line (see the assistant hooks).
# It comes back in transcripts (hook output is recorded); capturing it would feed memory its own echo.
LMM_MARK = "<!-- lmm -->"

_IDENT = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")
_PARTS = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")
_WORD = re.compile(r"[A-Za-z0-9_$]+")

STOPWORDS = frozenset("""
a about above after again all also an and any are as at be because been before being below between both
but by can could did do does doing done down during each either else few for from further had has have
having he her here hers him his how i if in into is it its itself just me more most my no nor not now of
off on once only or other our out over own same she should so some such than that the their them then
there these they this those through to too under until up very was we were what when where which while
who whom why will with would you your
""".split())


@lru_cache(maxsize=1 << 18)  # identifiers repeat across commits and chunks: split each once
def _split(word: str) -> tuple[str, ...]:
    return tuple(p.lower() for p in _PARTS.findall(word))


def split_identifier(word: str) -> list[str]:
    """``parseHTTPResponse_v2`` → ``['parse', 'http', 'response', 'v2']``; a plain word → itself."""
    return list(_split(word))


def code_terms(text: str) -> str:
    """The split parts of every compound identifier in ``text`` (plain words are indexed already).

    Deterministic (sorted): the contentless index deletes an entry by re-sending the same text."""
    out: list[str] = []
    for w in sorted(set(_IDENT.findall(text))):
        if w.islower() and "_" not in w and "$" not in w:
            continue  # a plain word: nothing to split
        parts = _split(w)
        if len(parts) > 1:
            out.extend(parts)
    return " ".join(out)


def query_terms(query: str) -> list[str]:
    """Distinct lower-case terms of a query: words, identifiers and their parts, minus stopwords."""
    out: dict[str, None] = {}
    for m in _WORD.finditer(query):
        w = m.group(0)
        lw = w.lower().strip("_$")
        if len(lw) > 1 and lw not in STOPWORDS:
            out[lw] = None
        for p in split_identifier(w):
            if len(p) > 1 and p not in STOPWORDS:
                out[p] = None
    return list(out)


def query_phrases(query: str, limit: int = 8) -> list[str]:
    """Adjacent pairs of content words, as written: ``"Clarify queue limits"`` → ``clarify queue``,
    ``queue limits``.

    Searched as FTS5 phrases beside the single terms, they reward text where the words stand
    together (a heading "Queue limits", a subject "Document queue limits") over text that merely
    has both somewhere. A stopword or punctuation other than spaces between two words breaks the
    pair; snake_case is one word here (the tokenizer splits it into a phrase of its own)."""
    out: dict[str, None] = {}
    prev: re.Match[str] | None = None
    for m in _WORD.finditer(query):
        w = m.group(0).lower().strip("_$")
        ok = len(w) > 1 and w not in STOPWORDS
        if ok and prev is not None and query[prev.end():m.start()].strip() == "":
            out[prev.group(0).lower().strip("_$") + " " + w] = None
            if len(out) >= limit:
                break
        prev = m if ok else None
    return list(out)
