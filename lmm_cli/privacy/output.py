"""Defence in depth for everything lmm prints or hands to another program.

Capture redacts before anything is written, but a store written by an older lmm, a rule learnt
later, or text no rule knows can still hold a secret; and a commit subject can hold terminal
control sequences (``ESC ]0;…BEL`` retitles a terminal, ``ESC [2J`` clears it, a lone ``CR``
rewrites the line being read). :func:`clean_output` is the last step before text leaves lmm: the
CLI, the MCP server and the assistant hooks all get what ``core.recall``, ``core.brief`` and
``core.log`` return, and those pass every string through it (:func:`clean_data`).
:func:`training_text` is the same pass for text a model will be trained on.
"""

from __future__ import annotations

import re
from typing import Any

from .redact import redact

__all__ = ["clean_output", "clean_data", "strip_controls", "training_text"]

# Whole escape sequences first (so "ESC[31m" leaves nothing behind, not "[31m"): CSI, OSC/DCS/SOS/
# PM/APC strings up to their terminator (BEL or ST) or the line's end, and two-character escapes. Then
# any other C0 control but \t and \n, DEL, C1 controls, a CR not followed by LF, and the Unicode
# bidi overrides that make text read differently from what it is ("Trojan Source").
_CONTROLS = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"
    r"|\x1b[\]PX^_][^\x07\x1b\x9c\n]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[ -/]*[0-~]?"
    r"|[\x9d\x90\x98\x9e\x9f][^\x07\x1b\x9c\n]*(?:\x07|\x1b\\|\x9c)?"
    r"|\r(?!\n)"
    r"|[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]"
)
_HAS_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def strip_controls(text: str) -> str:
    """``text`` without terminal control characters; ``\\n`` and ``\\t`` stay, ``\\r\\n`` becomes
    ``\\n``."""
    if _HAS_CONTROL.search(text) is None:  # the common case: one C-level scan
        return text
    return _CONTROLS.sub("", text.replace("\r\n", "\n"))


def clean_output(text: str) -> str:
    """Text safe to print or return: control characters stripped, then secrets redacted (in that
    order, so a control character cannot split a token and hide it from the rules)."""
    return redact(strip_controls(text))


def training_text(text: str) -> str:
    """Text safe to train a model on: the same pass as :func:`clean_output`. The trainer (model
    stage) must run every example through this, whatever store it was read from: a store captured
    by an older lmm is re-redacted on its next capture, not before."""
    return clean_output(text)


def clean_data(value: Any) -> Any:
    """``value`` with every string in it (dict keys and values, list and tuple items, nested)
    passed through :func:`clean_output`; other values are returned as they are."""
    if isinstance(value, str):
        return clean_output(value)
    if isinstance(value, dict):
        return {clean_data(k) if isinstance(k, str) else k: clean_data(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clean_data(v) for v in value]
    if isinstance(value, tuple):
        return tuple(clean_data(v) for v in value)
    return value
