"""The brief a recall prints: where to look, what happened, open threads, what tends to break — every line cited.

The title echoes the task, bounded (``echo``): a pasted issue of 100 KB still leaves the budget to
the answer. Commits git no longer has (reset away and pruned) are neither cited nor counted.

"What happened" quotes assistant session turns too (what was asked, what the assistant answered),
cited as ``session <date> <turn>``. "Open threads" are the unfinished work of captured sessions
(``threads``: a question the session ended on without an answer, a failure that never passed later)
that bears on this task: in a session recall matched, or on a file it ranks.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from ..address.recall import ADAPTER_REASON, Recall, SessionHit
from .render import Citation, Line, Section, Verifier, commits_cited, one_line, render
from .threads import open_threads, threads_section

__all__ = ["recall_brief", "echo", "DEFAULT_BUDGET", "ECHO_WORDS", "ECHO_CHARS"]

DEFAULT_BUDGET = 1000
ECHO_WORDS = 24  # the task as the title shows it: its first line, at most this many words…
ECHO_CHARS = 160  # …and characters


def echo(query: str) -> str:
    """The task as a brief's title shows it: its first non-blank line, control characters made
    spaces, cut to ``ECHO_WORDS`` words and ``ECHO_CHARS`` characters with an ellipsis."""
    lines = [ln for ln in query.splitlines() if ln.strip()]
    first = one_line(lines[0]) if lines else ""
    words = first.split()
    cut = len(lines) > 1 or len(words) > ECHO_WORDS
    text = " ".join(words[:ECHO_WORDS])
    if len(text) > ECHO_CHARS:
        text = text[:ECHO_CHARS].rsplit(" ", 1)[0] if " " in text[:ECHO_CHARS] else text[:ECHO_CHARS]
        cut = True
    return text.rstrip(" ,;:") + " …" if cut else text


def _reason(body: str) -> str:
    for line in body.splitlines():
        line = line.strip()
        if line and not line.lower().startswith(("signed-off-by", "co-authored-by", "change-id", "this reverts")):
            return line[:160]
    return ""


def _fixes(db: sqlite3.Connection, path: str) -> list[sqlite3.Row]:
    return db.execute(
        "SELECT e.source, e.title, e.ts FROM episode_files f JOIN episodes e ON e.id = f.episode_id"
        " WHERE f.path = ? AND +e.kind = 'commit' AND e.valid_to IS NULL AND e.salience >= 0.7"
        " ORDER BY e.ts DESC", (path,)).fetchall()


def _breakage(path: str, rows: list[sqlite3.Row]) -> Line | None:
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


def _session_line(sh: SessionHit) -> Line:
    asked = " ".join(sh.prompt.split())
    asked = asked if len(asked) <= 140 else asked[:139].rstrip() + "…"
    said = " ".join(sh.answer.split())
    said = said if len(said) <= 140 else said[:139].rstrip() + "…"
    return Line(f"{sh.date} asked {sh.tool}: “{asked}”" + (f" — it answered: {said}" if said else ""),
                [Citation("session", str(sh.id), label=f"session {sh.date} {sh.turn[:8]}")])


def _threads(db: sqlite3.Connection, rec: Recall) -> Section:
    """The open threads that bear on this recall: of a session it quotes, or on a file it ranks."""
    if db.execute("SELECT 1 FROM episodes WHERE kind = 'session' LIMIT 1").fetchone() is None:
        return Section("Open threads")
    turns = {s.id for s in rec.sessions}
    sessions = {str(r[0]) for r in db.execute(
        f"SELECT json_extract(data, '$.tool') || ':' || json_extract(data, '$.session') FROM episodes"
        f" WHERE id IN ({','.join('?' * len(turns))})", sorted(turns))} if turns else set()
    top = {f.path for f in rec.files[:5]}
    return threads_section([t for t in open_threads(db) if t.id in turns or t.session in sessions
                            or top.intersection(t.files)], limit=4)


def recall_brief(db: sqlite3.Connection, root: Path, rec: Recall, *, budget: int = DEFAULT_BUDGET,
                 memo: dict[tuple[str, str], Any] | None = None) -> tuple[str, int]:
    """The cited markdown brief for ``rec`` and its token count. ``memo``: the Recaller's, which
    keeps what does not depend on the query (a file's fixes) while the store is unchanged."""
    from .tokens import count_tokens

    def fixes_of(path: str) -> list[sqlite3.Row]:
        if memo is None:
            return _fixes(db, path)
        rows = memo.get(("fixes", path))
        if rows is None:
            rows = memo[("fixes", path)] = _fixes(db, path)
        return rows

    where = Section("Where to look")
    for f in rec.files[:8]:
        syms = ", ".join(f"`{one_line(s['name'])}` (L{s['line']})" for s in f.symbols[:3])
        # the strongest reason that names evidence; the adapter's only where it alone found the file
        reason = next((w for w in f.why if not w.startswith(ADAPTER_REASON)), f.why[0] if f.why else "ranked by lmm")
        line = f"`{f.path}` — {reason}" + (f"; see {syms}" if syms else "")
        first = f.symbols[0]["line"] if f.symbols else None
        where.lines.append(Line(line, [Citation("file", f.path, first)]))
    happened = Section("What happened")
    # Commits and session turns by how well they match the task (the same BM25 over episodes), notes after.
    turns = [(sh.score, _session_line(sh)) for sh in rec.sessions]
    for c in rec.commits:
        while turns and turns[0][0] > c.score:
            happened.lines.append(turns.pop(0)[1])
        why = _reason(c.body)
        happened.lines.append(Line(f"{c.date} {c.subject}" + (f" — {why}" if why else ""), [Citation("commit", c.sha)]))
    happened.lines.extend(line for _, line in turns)
    for n in rec.notes:
        happened.lines.append(Line(f"{n.date} note: {' '.join(n.text.split())[:200]}",
                                   [Citation("note", str(n.id), label=f"note {n.date}")]))
    threads = _threads(db, rec) if rec.relevant else Section("Open threads")
    fixes = {f.path: fixes_of(f.path) for f in rec.files[:6]}
    verifier = Verifier(db, root, known=rec.in_git)
    # One question to git for every commit this brief could cite; the fixes it no longer has are
    # left out of the counts and the citations.
    gone = verifier.check_commits([*commits_cited([happened]), *(r["source"] for rows in fixes.values() for r in rows)])
    breaks = Section("What tends to break")
    for path, rows in fixes.items():
        broke = _breakage(path, [r for r in rows if r["source"] not in gone])
        if broke:
            breaks.lines.append(broke)
    text, tokens, _ = render(
        f"lmm recall: {echo(rec.query)}", [where, happened, threads, breaks] if rec.relevant else [],
        budget=budget, count=count_tokens, verify=verifier.ok,
        empty=f"No memory of that in {root.name}.",
    )
    return text, tokens
