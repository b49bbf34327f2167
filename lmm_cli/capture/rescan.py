"""Re-redaction of a store written under older redaction rules.

Redaction happens before anything is written, so a rule learnt later does nothing for what is
already stored. Each store records in ``state`` the version of the rules its text was redacted
with (``privacy.rules_version``; migration m004 sets it to 0 for stores that predate the record).
When it is older than ``privacy.rules.RULES_VERSION``, :func:`rescan_if_needed` re-redacts every
stored text with the current rules, once, under the capture lock, before the next capture:

* episodes: title, body (notes in note mode, as ``lmm remember`` would now write them), author
  fields, and every string inside the ``data`` and ``provenance`` JSON; a note's ``source`` (a
  hash of its text) is recomputed, since a hash of a short password can be reversed by guessing;
* episode_files: path, old path and hunks; episode_symbols: path, symbol and context;
* the episode index (contentless FTS5, which keeps the indexed words): rebuilt from the rows;
* ``state`` values (fit outcomes, counters): every string, JSON or not;
* the code index (code_files/symbols/chunks/idents and code_fts/file_fts): derived from the working
  tree, so when any of it holds a secret it is emptied and the version key cleared, and the index
  run that follows every capture rebuilds it with today's rules.

Old bytes must not survive in the file: the pass runs with ``PRAGMA secure_delete = ON`` (freed
pages and cells are zeroed) and ends with a ``wal_checkpoint(TRUNCATE)``, so the old page images
leave the WAL too (unless a reader pins them at that moment; SQLite's next checkpoint does it then).
Everything happens in one transaction: a pass that is interrupted leaves the store as it was, to be
redone next time. Running it again on a store already at the current version does nothing.

A new table that stores free text must be added here (``tests/privacy/test_rescan.py`` fails for a
TEXT column of a table this module does not know).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from ..privacy.redact import RULES_VERSION, redact, redact_note
from ..store.episodes import fts_doc
from ..store.tx import transaction

__all__ = ["RULES_KEY", "RescanResult", "rescan_if_needed", "stored_rules_version", "TEXT_COLUMNS"]

RULES_KEY = "privacy.rules_version"
BATCH = 500

# Every table column that holds free text, and how the pass treats it. Columns of other tables
# hold ids, hashes, numbers or vectors. ("code" tables are emptied, not rewritten.)
TEXT_COLUMNS: dict[str, tuple[str, ...]] = {
    "episodes": ("title", "body", "author", "author_email", "data", "provenance", "source"),
    "episode_files": ("path", "old_path", "hunks"),
    "episode_symbols": ("path", "symbol", "context"),
    "code_files": ("path",),
    "code_symbols": ("path", "name", "parent", "signature"),
    "code_chunks": ("path", "symbol", "text"),
    "code_idents": ("path", "ident"),
    "code_refs": ("src", "dst"),
    "code_rank": ("path",),
    "state": ("value",),  # small: outcomes of fits, counters; walked anyway, as JSON where it is JSON
    "recalls": ("via", "query", "files", "commits"),
    "feedback": ("via", "note"),
    "activity": ("path", "via"),
    "salience": ("reasons",),  # the salience gate's reasons quote paths and note titles (m007)
}
# Tables of plain redacted text (JSON where it is JSON), re-redacted column by column.
_PLAIN_TABLES = {"recalls": ("query", "files"), "feedback": ("note",), "salience": ("reasons",)}
_CODE_TABLES = ("code_refs", "code_rank", "code_idents", "code_chunks", "code_symbols", "code_files")
_CODE_INDEX_VERSION_KEY = "code_index.version"  # address.code_index re-reads every file without it


@dataclass
class RescanResult:
    from_version: int
    to_version: int
    episodes: int = 0  # episodes whose text changed
    files: int = 0  # episode_files rows changed (or merged into a twin their new path collided with)
    symbols: int = 0
    code_index_cleared: bool = False
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def stored_rules_version(db: sqlite3.Connection) -> int:
    """The rules version the store's text was redacted with (a store that never recorded it, 0)."""
    row = db.execute("SELECT value FROM state WHERE key = ?", (RULES_KEY,)).fetchone()
    try:
        return int(row[0]) if row else 0
    except ValueError:
        return 0


def _redact_json(raw: str, fn: Callable[[str], str]) -> str:
    try:
        value = json.loads(raw)
    except ValueError:
        return fn(raw)

    def walk(v: Any) -> Any:
        if isinstance(v, str):
            return fn(v)
        if isinstance(v, list):
            return [walk(x) for x in v]
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items()}
        return v

    new = walk(value)
    return raw if new == value else json.dumps(new, ensure_ascii=False)


def _batches(db: sqlite3.Connection, sql: str) -> Any:
    """Rows of ``sql`` (which selects rowid first and has a ``rowid > ?`` bound) in rowid batches,
    so a long table is never held in memory and rows can be updated while walking."""
    last = -1
    while True:
        rows = db.execute(sql + " ORDER BY rowid LIMIT ?", (last, BATCH)).fetchall()
        if not rows:
            return
        yield from rows
        last = rows[-1][0]


def _episodes(db: sqlite3.Connection, out: RescanResult, changed: set[int]) -> None:
    sql = ("SELECT rowid, kind, source, title, body, author, author_email, data, provenance FROM episodes"
           " WHERE rowid > ?")
    for rid, kind, source, title, body, author, email, data, prov in _batches(db, sql):
        fn = redact_note if kind == "note" else redact
        new = (fn(title), fn(body), redact(author) if author else author, redact(email) if email else email,
               _redact_json(data, redact), _redact_json(prov, redact))
        new_source = source
        if kind == "note":
            text = new[0] + ("\n" + new[1] if new[1] else "")
            new_source = "note:" + hashlib.sha256(text.encode()).hexdigest()[:16]
        if new == (title, body, author, email, data, prov) and new_source == source:
            continue
        if new_source != source and db.execute(
                "SELECT 1 FROM episodes WHERE kind = ? AND source = ?", (kind, new_source)).fetchone():
            db.execute("DELETE FROM episodes WHERE rowid = ?", (rid,))  # the same note, already stored
        else:
            db.execute(
                "UPDATE episodes SET title = ?, body = ?, author = ?, author_email = ?, data = ?, provenance = ?,"
                " source = ? WHERE rowid = ?", (*new, new_source, rid))
        changed.add(rid)
        out.episodes += 1


def _episode_files(db: sqlite3.Connection, out: RescanResult, changed: set[int]) -> None:
    sql = "SELECT rowid, episode_id, path, old_path, hunks FROM episode_files WHERE rowid > ?"
    for rid, eid, path, old, hunks in _batches(db, sql):
        new = (redact(path), redact(old) if old else old, redact(hunks) if hunks else hunks)
        if new == (path, old, hunks):
            continue
        cur = db.execute("UPDATE OR IGNORE episode_files SET path = ?, old_path = ?, hunks = ? WHERE rowid = ?",
                         (*new, rid))
        if cur.rowcount == 0:  # two paths that redact to the same name: keep the first, as capture does
            db.execute("DELETE FROM episode_files WHERE rowid = ?", (rid,))
        changed.add(eid)
        out.files += 1


def _episode_symbols(db: sqlite3.Connection, out: RescanResult, changed: set[int]) -> None:
    sql = "SELECT rowid, episode_id, path, symbol, context FROM episode_symbols WHERE rowid > ?"
    for rid, eid, path, symbol, context in _batches(db, sql):
        new = (redact(path), redact(symbol), redact(context))
        if new == (path, symbol, context):
            continue
        cur = db.execute("UPDATE OR IGNORE episode_symbols SET path = ?, symbol = ?, context = ? WHERE rowid = ?",
                         (*new, rid))
        if cur.rowcount == 0:
            db.execute("DELETE FROM episode_symbols WHERE rowid = ?", (rid,))
        changed.add(eid)
        out.symbols += 1


def _state(db: sqlite3.Connection) -> None:
    for key, value in db.execute("SELECT key, value FROM state").fetchall():
        new = _redact_json(value, redact)
        if new != value:
            db.execute("UPDATE state SET value = ? WHERE key = ?", (new, key))


def _plain(db: sqlite3.Connection) -> None:
    for table, columns in _PLAIN_TABLES.items():
        if not _has_table(db, table):
            continue
        for row in _batches(db, f"SELECT rowid, {', '.join(columns)} FROM {table} WHERE rowid > ?"):
            new = tuple(_redact_json(v, redact) if v else v for v in row[1:])
            if new != tuple(row[1:]):
                sets = ", ".join(f"{c} = ?" for c in columns)
                db.execute(f"UPDATE {table} SET {sets} WHERE rowid = ?", (*new, row[0]))


def _rebuild_episode_index(db: sqlite3.Connection) -> None:
    """Refill the contentless episode index from the rows. Deleting entries one by one needs the
    exact old values; 'delete-all' drops every old segment, old secret words included."""
    db.execute("INSERT INTO episodes_fts (episodes_fts) VALUES ('delete-all')")
    for (eid,) in _batches(db, "SELECT rowid FROM episodes WHERE rowid > ?"):
        db.execute(
            "INSERT INTO episodes_fts (rowid, title, body, paths, symbols, diff, terms) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (eid, *fts_doc(db, eid)))


def _code_index_holds_a_secret(db: sqlite3.Connection) -> bool:
    for table, columns in TEXT_COLUMNS.items():
        if table not in _CODE_TABLES or not _has_table(db, table):
            continue
        cols = [c for c in columns if _has_column(db, table, c)]
        if not cols:
            continue
        for row in _batches(db, f"SELECT rowid, {', '.join(cols)} FROM {table} WHERE rowid > ?"):
            if any(v and redact(v) != v for v in row[1:]):
                return True
    return False


def _clear_code_index(db: sqlite3.Connection) -> None:
    for fts in ("code_fts", "file_fts"):
        if _has_table(db, fts):
            db.execute(f"INSERT INTO {fts} ({fts}) VALUES ('delete-all')")
    for table in _CODE_TABLES:
        if _has_table(db, table):
            db.execute(f"DELETE FROM {table}")
    db.execute("DELETE FROM state WHERE key = ?", (_CODE_INDEX_VERSION_KEY,))


def _has_table(db: sqlite3.Connection, name: str) -> bool:
    return db.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (name,)).fetchone() is not None


def _has_column(db: sqlite3.Connection, table: str, column: str) -> bool:
    return any(r[1] == column for r in db.execute(f"PRAGMA table_info({table})"))


def rescan_if_needed(db: sqlite3.Connection) -> RescanResult | None:
    """Re-redact the store when its text was redacted under older rules; None when it is current.
    The caller holds the capture lock (no capture writes meanwhile)."""
    found = stored_rules_version(db)
    if found >= RULES_VERSION:
        return None
    t0 = time.monotonic()
    out = RescanResult(from_version=found, to_version=RULES_VERSION)
    secure = db.execute("PRAGMA secure_delete").fetchone()[0]
    db.execute("PRAGMA secure_delete = ON")
    try:
        with transaction(db):
            if stored_rules_version(db) >= RULES_VERSION:  # another process did it meanwhile
                return None
            changed: set[int] = set()
            _episodes(db, out, changed)
            _episode_files(db, out, changed)
            _episode_symbols(db, out, changed)
            _state(db)
            _plain(db)
            if changed:
                _rebuild_episode_index(db)
            if _code_index_holds_a_secret(db):
                _clear_code_index(db)
                out.code_index_cleared = True
            db.execute("INSERT INTO state (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                       (RULES_KEY, str(RULES_VERSION)))
    finally:
        db.execute(f"PRAGMA secure_delete = {int(secure)}")
    if out.episodes or out.files or out.symbols or out.code_index_cleared:
        try:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            pass  # a busy reader: SQLite's next automatic checkpoint moves the pages
    out.seconds = round(time.monotonic() - t0, 3)
    return out
