"""Token counts for brief budgets, from a real tokenizer.

The packaged all-MiniLM-L6-v2's ``tokenizer.json`` (WordPiece, uncased), through the ``tokenizers``
library: loaded once, lazily (~20-40 ms), with no torch import. Its counts are close to, and for
code somewhat above, those of the tokenizers coding assistants use, which is the safe side for a
budget. Special tokens ([CLS], [SEP]) are not counted.

Without the packaged model (not installed), counts fall back to a rough regex estimate rather than
failing a brief.
"""

from __future__ import annotations

import re
import threading
from typing import Any

__all__ = ["count_tokens", "truncate_to_tokens"]

_LOCK = threading.Lock()
_TOKENIZER: Any = None  # a tokenizers.Tokenizer, or False when none could be loaded
_ROUGH = re.compile(r"[A-Za-z]{1,8}|\d{1,4}|[^\sA-Za-z\d]")  # the fallback's idea of a token


def _tokenizer() -> Any:
    global _TOKENIZER
    if _TOKENIZER is None:
        with _LOCK:
            if _TOKENIZER is None:
                try:
                    from tokenizers import Tokenizer

                    from ..embed.encoder import packaged_path

                    tok = Tokenizer.from_file(str(packaged_path() / "tokenizer.json"))
                    tok.no_padding()  # the file asks for padding and truncation at 128: not here
                    tok.no_truncation()
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
    return len(tok.encode(text, add_special_tokens=False).ids)


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
