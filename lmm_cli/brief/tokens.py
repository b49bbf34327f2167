"""Token counts for brief budgets, from a real tokenizer.

The packaged all-MiniLM-L6-v2's ``tokenizer.json`` (WordPiece, uncased), through the ``tokenizers``
library: loaded once, lazily (~20-40 ms), with no torch import. Its counts are close to, and for
code somewhat above, those of the tokenizers coding assistants use, which is the safe side for a
budget. Special tokens ([CLS], [SEP]) are not counted.

Without the packaged model (not installed), counts fall back to a rough regex estimate rather than
failing a brief.

A brief counts every candidate line (the warm MCP recall, dozens a call), and the library spends
about 80 µs on each however short. For plain text (ASCII, and the dashes and quotes briefs use)
the count is taken word by word: BERT's pre-tokenizer splits at whitespace and makes each
punctuation character a word, and WordPiece then works on each word alone, so the text's count is
the sum of its words' counts, and a word's count, asked of the tokenizer once, is remembered. The
same tokenizer decides every count; only the splitting into words is ours, and only where the
tokenizer is that BERT pipeline.
"""

from __future__ import annotations

import re
import threading
from typing import Any

__all__ = ["count_tokens", "truncate_to_tokens"]

_LOCK = threading.Lock()
_TOKENIZER: Any = None  # a tokenizers.Tokenizer, or False when none could be loaded
_ROUGH = re.compile(r"[A-Za-z]{1,8}|\d{1,4}|[^\sA-Za-z\d]")  # the fallback's idea of a token
# Word by word (see above): text of printable ASCII, tabs and newlines (and below); its words.
# The dashes, curly quotes, bullet and ellipsis briefs are written with are punctuation to BERT too.
_PUNCT = "!-/:-@\\[-`{-~\u2013\u2014\u2018\u2019\u201c\u201d\u2022\u2026\u00b7"
_NOT_PLAIN = re.compile(f"[^ -~\t\n{_PUNCT}]")
_WORDS = re.compile(f"[A-Za-z0-9]+|[{_PUNCT}]")
_WORD_TOKENS: dict[str, int] = {}
_WORD_CACHE = 1 << 16  # words remembered at most; then the cache starts again
_BY_WORD = False  # whether the loaded tokenizer is BERT's pipeline (normaliser, pre-tokenizer, WordPiece)
_ADDED: re.Pattern[str] | None = None  # its added tokens ("[SEP]"…), which it matches before any split


def _tokenizer() -> Any:
    global _TOKENIZER, _BY_WORD, _ADDED
    if _TOKENIZER is None:
        with _LOCK:
            if _TOKENIZER is None:
                try:
                    from tokenizers import Tokenizer

                    from ..embed.encoder import packaged_path

                    tok = Tokenizer.from_file(str(packaged_path() / "tokenizer.json"))
                    tok.no_padding()  # the file asks for padding and truncation at 128: not here
                    tok.no_truncation()
                    _BY_WORD = (type(tok.normalizer).__name__, type(tok.pre_tokenizer).__name__,
                                type(tok.model).__name__) == ("BertNormalizer", "BertPreTokenizer", "WordPiece")
                    added = [t.content for t in tok.get_added_tokens_decoder().values() if t.content]
                    _ADDED = re.compile("|".join(map(re.escape, added)), re.I) if added else None
                    _TOKENIZER = tok
                except Exception:  # noqa: BLE001 - no model, no tokenizers: estimate instead
                    _TOKENIZER = False
    return _TOKENIZER


def count_tokens(text: str) -> int:
    """How many tokens ``text`` is."""
    if not text:
        return 0
    tok = _tokenizer()
    if tok is False:
        return len(_ROUGH.findall(text))
    if not _BY_WORD or _NOT_PLAIN.search(text) is not None or (_ADDED is not None and _ADDED.search(text)):
        return len(tok.encode(text, add_special_tokens=False).ids)
    n = 0
    known = _WORD_TOKENS
    for word in _WORDS.findall(text):
        c = known.get(word)
        if c is None:
            c = len(tok.encode(word, add_special_tokens=False).ids)
            if len(known) >= _WORD_CACHE:
                known.clear()
            known[word] = c
        n += c
    return n


def truncate_to_tokens(text: str, n: int) -> str:
    """The longest prefix of ``text`` that is at most ``n`` tokens: whole tokens, original text
    (case and spacing as given), cut at the end of the n-th token."""
    if n <= 0 or not text:
        return ""
    tok = _tokenizer()
    if tok is False:
        matches = list(_ROUGH.finditer(text))
        return text if len(matches) <= n else text[: matches[n - 1].end()]
    # A long text: tokenise a prefix cut at whitespace first. Tokens never span whitespace, so the
    # prefix's tokens are the text's first tokens; when there are n of them, that settles it.
    limit = 16 * n + 64
    if len(text) > 2 * limit:
        cut = max(text.rfind(c, 0, limit) for c in " \n\t")
        if cut > 0:
            enc = tok.encode(text[:cut], add_special_tokens=False)
            if len(enc.offsets) >= n:
                return text[: enc.offsets[n - 1][1]]
    enc = tok.encode(text, add_special_tokens=False)
    if len(enc.offsets) <= n:
        return text
    return text[: enc.offsets[n - 1][1]]
