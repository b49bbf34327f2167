"""The brief a recall prints: where to look, what happened, what tends to break — every line cited.

Open threads (unfinished work seen in assistant sessions) join once transcripts are captured.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from ..address.recall import Recall
from .render import Citation, Line, Section, Verifier, render

__all__ = ["recall_brief", "DEFAULT_BUDGET"]

DEFAULT_BUDGET = 1000


def _reason(body: str) -> str:
    for line in body.splitlines():
        line = line.strip()
        if line and not line.lower().startswith(("signed-off-by", "co-authored-by", "change-id", "this reverts")):
            return line[:160]
    return ""


def _breakage(db: sqlite3.Connection, path: str) -> Line | None:
    rows = db.execute(
        "SELECT e.source, e.title, e.ts FROM episode_files f JOIN episodes e ON e.id = f.episode_id"
        " WHERE f.path = ? AND e.kind = 'commit' AND e.valid_to IS NULL AND e.salience >= 0.7"
        " ORDER BY e.ts DESC", (path,)).fetchall()
    if not rows:
        return None
    reverts = sum(1 for r in rows if r["title"].lower().startswith("revert"))
    fixes = len(rows) - reverts
    parts = []
    if fixes:
        parts.append(f"{fixes} fix{'es' if fixes != 1 else ''}")
    if reverts:
        parts.append(f"{reverts} revert{'s' if reverts != 1 else ''}")
    latest = rows[0]
    text = f"`{path}`: {' and '.join(parts)}; latest “{latest['title'][:70]}”"
    return Line(text, [Citation("commit", r["source"]) for r in rows[:2]])


def recall_brief(db: sqlite3.Connection, root: Path, rec: Recall, *, budget: int = DEFAULT_BUDGET) -> tuple[str, int]:
    from .tokens import count_tokens

    where = Section("Where to look")
    for f in rec.files[:8]:
        syms = ", ".join(f"`{s['name']}` (L{s['line']})" for s in f.symbols[:3])
        reason = f.why[0] if f.why else "ranked by lmm"
        line = f"`{f.path}` — {reason}" + (f"; see {syms}" if syms else "")
        first = f.symbols[0]["line"] if f.symbols else None
        where.lines.append(Line(line, [Citation("file", f.path, first)]))
    happened = Section("What happened")
    for c in rec.commits:
        why = _reason(c.body)
        happened.lines.append(Line(f"{c.date} {c.subject}" + (f" — {why}" if why else ""), [Citation("commit", c.sha)]))
    for n in rec.notes:
        happened.lines.append(Line(f"{n.date} note: {' '.join(n.text.split())[:200]}",
                                   [Citation("note", str(n.id), label=f"note {n.date}")]))
    breaks = Section("What tends to break")
    for f in rec.files[:6]:
        broke = _breakage(db, f.path)
        if broke:
            breaks.lines.append(broke)
    text, tokens, _ = render(
        f"lmm recall: {rec.query}", [where, happened, breaks] if rec.relevant else [],
        budget=budget, count=count_tokens, verify=Verifier(db, root).ok,
        empty=f"No memory of that in {root.name}.",
    )
    return text, tokens
