"""Open threads: unfinished work seen in assistant sessions, for the recall brief and the repo brief.

Two kinds, read from the session turns in the store (``capture.sessions``), each line citing its turn:

* asked and not finished: the last turn of a session that ended (it is only written then) whose
  prompt got no answer from the assistant (a closing "thanks" or "ok" it did nothing with aside);
* failures left unresolved: a command that failed and did not pass later in the same session
  (a subagent's turns count as their main session's). "The same command" is the same program and
  first argument of the command's last step (``cd x && pytest -q tests/a.py`` is ``pytest -q``), so
  a later passing ``pytest -q`` settles a failing ``pytest -q tests/a.py``; only the latest failure
  of a command is reported. Commands are ordered by when they ran (a subagent runs inside a turn of
  its main session).
"""

from __future__ import annotations

import json
import re
import sqlite3
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from .render import Citation, Line, Section

__all__ = ["Thread", "open_threads", "threads_section", "MAX_TURNS", "CACHE_KEY"]

MAX_TURNS = 5000  # the latest session turns read (a bounded, cheap scan)
_SPLIT = re.compile(r"&&|\|\||;|\n")
_ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
CACHE_KEY = "threads_cache"  # state: {"gen", "version", "threads"}, valid while sessions_gen is unchanged
_CACHE_VERSION = 1  # bump when what a Thread holds or how threads are found changes
_MEMO: dict[tuple[str, str], list[Thread]] = {}  # this process: (store file, generation) → threads


@dataclass
class Thread:
    id: int  # the episode of the turn cited
    ts: float
    kind: str  # "unanswered" | "failed"
    session: str
    turn: str
    title: str
    command: str = ""
    error: str = ""
    files: list[str] = field(default_factory=list)

    def line(self) -> Line:
        date = datetime.fromtimestamp(self.ts, UTC).strftime("%Y-%m-%d")
        title = " ".join(self.title.split())
        title = title if len(title) <= 90 else title[:89].rstrip() + "…"
        if self.kind == "unanswered":
            text = f"Asked and not finished: “{title}” (the session ended before an answer)"
        else:
            cmd = " ".join(self.command.split())
            cmd = cmd if len(cmd) <= 80 else cmd[:79].rstrip() + "…"
            err = next((ln.strip() for ln in self.error.splitlines() if ln.strip()), "")
            err = err if len(err) <= 80 else err[:79].rstrip() + "…"
            text = f"`{cmd.replace('`', chr(39))}` failed" + (f" ({err})" if err else "") + \
                f" and did not pass later in that session, working on “{title}”"
        return Line(text, [Citation("session", str(self.id), label=f"session {date} {self.turn[:8]}")])


def command_key(command: str) -> str:
    """What makes two commands "the same" here: the program and first argument of the last step."""
    steps = [s.strip() for s in _SPLIT.split(command) if s.strip()]
    step = steps[-1] if steps else command
    words = [w for w in step.split("|", 1)[0].split()]
    while words and (_ENV.match(words[0]) or words[0] in ("sudo", "time", "env", "command", "exec")):
        words.pop(0)
    return " ".join(words[:2])


_PLEASANTRY = re.compile(r"^\W*(thanks?( you)?|thx|ty|ok(ay)?|bye|great|cool|nice|perfect|good|lgtm|done|yes|no|yep|"
                         r"nope|sure|got it|k)\b", re.I)


def _unanswered(r: sqlite3.Row, data: dict[str, object]) -> bool:
    """The last turn of an ended session, the user's, with no answer: a question left open. A closing
    "thanks" or "ok" that the assistant did nothing with is not one."""
    if not data.get("open") or data.get("answered") or not data.get("by_user", True) or data.get("subagent"):
        return False
    title = (r["title"] or "").strip()
    if data.get("commands") or r["has_files"]:
        return True
    return len(title.split()) >= 3 and not _PLEASANTRY.match(title)


def open_threads(db: sqlite3.Connection, *, since: float | None = None) -> list[Thread]:
    """Every open thread of the sessions in the store (citing a turn since ``since``), newest first.

    Reading every turn costs tens of milliseconds on a store with thousands of them, and each recall
    and session brief asks, so the result is cached: in this process and in the store's ``state``
    (for the next hook's process), under the ``sessions_gen`` counter that triggers move on at every
    change to a session turn or its files (migration m008). A stale cache is never read."""
    threads = _cached(db)
    return threads if since is None else [t for t in threads if t.ts >= since]


def _cached(db: sqlite3.Connection) -> list[Thread]:
    from ..store.state import read_json
    from ..store.tx import transaction

    row = db.execute("SELECT value FROM state WHERE key = 'sessions_gen'").fetchone()
    if row is None:  # a store without the counter: nothing to key a cache on
        return _compute(db)
    gen = str(row[0])
    name = next((str(r[2]) for r in db.execute("PRAGMA database_list") if r[1] == "main"), "")
    memo = _MEMO.get((name, gen))
    if memo is not None:
        return list(memo)
    threads: list[Thread] | None = None
    data = read_json(db, CACHE_KEY)
    if data is not None and data.get("gen") == gen and data.get("version") == _CACHE_VERSION:
        try:
            threads = [Thread(**t) for t in data["threads"]]
        except (TypeError, KeyError):
            threads = None
    if threads is None:
        threads = _compute(db)
        if not db.in_transaction:
            value = json.dumps({"gen": gen, "version": _CACHE_VERSION, "threads": [asdict(t) for t in threads]})
            try:
                with transaction(db):
                    now = db.execute("SELECT value FROM state WHERE key = 'sessions_gen'").fetchone()
                    if now is not None and str(now[0]) == gen:  # nothing changed while computing
                        db.execute("INSERT INTO state (key, value) VALUES (?, ?) ON CONFLICT(key)"
                                   " DO UPDATE SET value = excluded.value", (CACHE_KEY, value))
            except sqlite3.Error:
                pass  # a read-only or busy store: the next caller computes again
    if name:
        if len(_MEMO) > 8:
            _MEMO.clear()
        _MEMO[(name, gen)] = threads
    return list(threads)


def _compute(db: sqlite3.Connection) -> list[Thread]:
    rows = db.execute(
        "SELECT id, ts, source, title, data, EXISTS (SELECT 1 FROM episode_files f WHERE f.episode_id = e.id)"
        " AS has_files FROM episodes e WHERE kind = 'session' AND valid_to IS NULL"
        " ORDER BY ts DESC, id DESC LIMIT ?", (MAX_TURNS,)).fetchall()
    by_session: dict[str, list[tuple[sqlite3.Row, dict[str, object]]]] = {}
    for r in reversed(rows):  # oldest first
        try:
            data = json.loads(r["data"])
        except (TypeError, ValueError):
            continue
        if not isinstance(data, dict):
            continue
        by_session.setdefault(f"{data.get('tool')}:{data.get('session')}", []).append((r, data))
    out: list[Thread] = []
    for session, turns in by_session.items():
        # Every command of the session in the order it ran (a subagent's run inside a main turn).
        runs: list[tuple[float, int, int, str, dict[str, object], sqlite3.Row, str]] = []
        for order, (r, data) in enumerate(turns):
            turn = str(data.get("turn") or r["source"].rsplit(":", 1)[-1])
            if _unanswered(r, data):
                out.append(Thread(r["id"], r["ts"], "unanswered", session, turn, r["title"] or ""))
            commands = data.get("commands")
            for i, c in enumerate(commands if isinstance(commands, list) else []):
                if not isinstance(c, dict) or not isinstance(c.get("command"), str):
                    continue
                key = command_key(c["command"])
                if key:
                    at = c.get("ts")
                    runs.append((float(at) if isinstance(at, (int, float)) and at else float(r["ts"]), order, i,
                                 key, c, r, turn))
        last: dict[str, Thread | None] = {}
        for _, _, _, key, c, r, turn in sorted(runs, key=lambda x: x[:3]):
            last[key] = Thread(r["id"], r["ts"], "failed", session, turn, r["title"] or "", command=str(c["command"]),
                               error=str(c.get("error") or "")) if c.get("failed") else None  # passed: settled
        out.extend(t for t in last.values() if t is not None)
    if out:
        ids = sorted({t.id for t in out})
        files: dict[int, list[str]] = {}
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            for eid, path in db.execute(
                    f"SELECT episode_id, path FROM episode_files WHERE episode_id IN ({','.join('?' * len(chunk))})"
                    " ORDER BY status, path", chunk):
                files.setdefault(eid, []).append(path)
        for t in out:
            t.files = files.get(t.id, [])
    out.sort(key=lambda t: (-t.ts, -t.id, t.kind))
    return out


def threads_section(threads: list[Thread], limit: int = 6) -> Section:
    sec = Section("Open threads")
    seen: set[str] = set()
    for t in threads:
        line = t.line()
        if line.text in seen:
            continue
        seen.add(line.text)
        sec.lines.append(line)
        if len(sec.lines) >= limit:
            break
    return sec
