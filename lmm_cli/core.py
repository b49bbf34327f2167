"""The operations behind the CLI (and, later, the MCP server): init, ingest, status, log.

Each takes a Workspace and returns plain data; printing is the caller's business. Capture (git
parsing, redaction) is imported only by the operations that capture, so `status` and `log` start fast.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import time
from datetime import datetime, timezone
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .capture import hooks as hooks_mod
from .capture import queue as q
from .capture.drain import drain
from .capture.lock import CaptureLock, lock_is_held
from .errors import BadInput
from .store.db import DB_FILE
from .store.migrations import MIGRATIONS, schema_version
from .workspace import Workspace

__all__ = ["init", "ingest", "status", "log", "parse_since", "build", "recall", "brief"]

Stages = Callable[[str, int, int], None]  # (stage, done, total): progress of long work


def _rebuild(ws: Workspace) -> str | None:
    """Move an existing store database aside (never delete it) so init starts fresh."""
    if not ws.db_path.exists():
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside = ws.dir / f"{DB_FILE}.aside-{stamp}"
    for suffix in ("", "-wal", "-shm"):
        src = ws.dir / (DB_FILE + suffix)
        if src.exists():
            os.replace(src, ws.dir / (aside.name + suffix))
    return str(aside)


def init(ws: Workspace, *, hooks: bool = True, backfill: bool = True, rebuild: bool = False,
         embed: bool = True, stages: Stages | None = None) -> dict[str, Any]:
    from .capture.ingest import IngestResult, capture_history

    moved = _rebuild(ws) if rebuild else None
    already = ws.initialised
    db = ws.create()
    try:
        hook_states = hooks_mod.install(ws) if hooks else []
        result = IngestResult(shallow=ws.repo.shallow)
        built: dict[str, Any] = {}
        if backfill:
            with CaptureLock(ws.dir).acquire_or_raise():
                result = capture_history(ws, db, capture="backfill",
                                         progress=(lambda d, t: stages("capturing history", d, t)) if stages else None)
                built = build(ws, db, embed=embed, progress=stages)
        head = ws.repo.head()
        out = {
            "repo": str(ws.repo.root),
            "store": str(ws.dir),
            "already_initialised": already,
            "moved_aside": moved,
            "empty": head is None,
            "ingest": result.as_dict(),
            "hooks": [h.as_dict() for h in hook_states],
            "index": built,
            "episodes": db.execute("SELECT count(*) FROM episodes").fetchone()[0],
        }
    finally:
        db.close()
    drain(ws, wait=5.0)  # events hooks queued while we held the lock
    out["tuning_started"] = _maybe_tune(ws)
    return out


def _maybe_tune(ws: Workspace) -> bool:
    """Start the background fit of recall's weights if one is due (see bench/autotune.py)."""
    from .bench.autotune import maybe_start

    db = ws.connect()
    try:
        return maybe_start(ws, db)
    finally:
        db.close()


def ingest(ws: Workspace, *, embed: bool = True, stages: Stages | None = None) -> dict[str, Any]:
    from .capture.ingest import capture_history

    db = ws.connect()
    try:
        with CaptureLock(ws.dir).acquire_or_raise():
            result = capture_history(ws, db, capture="ingest",
                                     progress=(lambda d, t: stages("capturing history", d, t)) if stages else None)
            built = build(ws, db, embed=embed, progress=stages)
    finally:
        db.close()
    drained = drain(ws, wait=5.0)
    out = result.as_dict()
    out["index"] = built
    out["events"] = drained.events
    out["empty"] = ws.repo.head() is None
    out["tuning_started"] = _maybe_tune(ws)
    return out


def _dir_size(path: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return total


def status(ws: Workspace) -> dict[str, Any]:
    db = ws.connect()
    try:
        by_kind = {r[0]: r[1] for r in db.execute("SELECT kind, count(*) FROM episodes GROUP BY kind ORDER BY kind")}
        by_tier = {r[0]: r[1] for r in db.execute("SELECT tier, count(*) FROM episodes GROUP BY tier ORDER BY tier")}
        superseded = db.execute("SELECT count(*) FROM episodes WHERE valid_to IS NOT NULL").fetchone()[0]
        last = db.execute(
            "SELECT kind, source, title, captured_at FROM episodes ORDER BY captured_at DESC, id DESC LIMIT 1"
        ).fetchone()
        newest = db.execute("SELECT max(ts) FROM episodes WHERE kind IN ('commit', 'merge')").fetchone()[0]
        version = schema_version(db)
        row = db.execute("SELECT value FROM state WHERE key = 'last_ingest'").fetchone()
        last_ingest = row[0] if row else None
        from .bench.autotune import last_tuning, tuning_running

        fusion = {
            "weights": "tuned" if db.execute("SELECT 1 FROM state WHERE key = 'fusion_weights'").fetchone() else "default",
            "last_tune": last_tuning(db),
            "tuning_now": tuning_running(ws.dir),
        }
    finally:
        db.close()
    pending = q.pending(ws.queue)
    bad_dir = ws.queue / "bad"
    return {
        "repo": str(ws.repo.root),
        "store": str(ws.dir),
        "store_bytes": _dir_size(ws.dir),
        "schema": {"version": version, "latest": len(MIGRATIONS)},
        "episodes": sum(by_kind.values()),
        "by_kind": by_kind,
        "by_tier": by_tier,
        "superseded": superseded,
        "last_capture": None if last is None else {
            "kind": last["kind"], "source": last["source"], "title": last["title"], "at": last["captured_at"]},
        "newest_commit_ts": newest,
        "last_ingest": float(last_ingest) if last_ingest else None,
        "shallow": ws.repo.shallow,
        "hooks": {"dir": str(ws.repo.hooks_dir), "states": [h.as_dict() for h in hooks_mod.hook_status(ws)]},
        "queue": {"pending": len(pending), "bad": len(list(bad_dir.iterdir())) if bad_dir.exists() else 0},
        "drainer": {"running": lock_is_held(ws.dir)},
        "fusion": fusion,
    }


_RELATIVE = re.compile(r"^\s*(\d+)\s*(s|sec|secs|seconds?|m|min|mins|minutes?|h|hours?|d|days?|w|weeks?|mo|months?|y|years?)\s*(ago)?\s*$", re.I)


def parse_since(text: str, now: float | None = None) -> float:
    """``2026-01-31``, ``2026-01-31T12:00``, ``3d``, ``2 weeks`` or ``2 weeks ago`` → unix seconds."""
    now = time.time() if now is None else now
    m = _RELATIVE.match(text)
    if m:
        n, unit = int(m.group(1)), m.group(2).lower()
        seconds = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "mo": 2592000, "y": 31536000}
        key = "mo" if unit.startswith("mo") else ("m" if unit.startswith("mi") or unit == "m" else unit[0])
        return now - n * seconds[key]
    try:
        dt = datetime.fromisoformat(text.strip())
    except ValueError:
        raise BadInput(f"--since: cannot read {text!r}; use a date (2026-01-31) or an age (3d, 2 weeks)") from None
    if dt.tzinfo is None:
        dt = dt.astimezone()  # a bare date means local time, as git reads it
    return dt.timestamp()


def log(ws: Workspace, *, limit: int = 20, kinds: list[str] | None = None, since: float | None = None,
        include_superseded: bool = False) -> list[dict[str, Any]]:
    if limit <= 0:
        raise BadInput(f"-n must be a positive number, got {limit}")
    db = ws.connect()
    try:
        where, args = [], []
        if kinds:
            where.append(f"kind IN ({','.join('?' * len(kinds))})")
            args += kinds
        if since is not None:
            where.append("ts >= ?")
            args.append(since)
        if not include_superseded:
            where.append("valid_to IS NULL")
        sql = "SELECT * FROM episodes" + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY ts DESC, id DESC LIMIT ?"
        rows = db.execute(sql, (*args, limit)).fetchall()
        out = []
        for r in rows:
            files = db.execute(
                "SELECT path, old_path, status, added, deleted, binary, secret, truncated FROM episode_files"
                " WHERE episode_id = ? ORDER BY path", (r["id"],)).fetchall()
            symbols = [s[0] for s in db.execute(
                "SELECT DISTINCT symbol FROM episode_symbols WHERE episode_id = ? ORDER BY symbol", (r["id"],))]
            out.append({
                "id": r["id"], "kind": r["kind"], "source": r["source"],
                "ts": r["ts"], "date": datetime.fromtimestamp(r["ts"], timezone.utc).isoformat(timespec="seconds"),
                "author": r["author"], "title": r["title"], "body": r["body"],
                "tier": r["tier"], "salience": r["salience"], "strength": r["strength"],
                "superseded_by": r["superseded_by"], "valid_to": r["valid_to"],
                "data": json.loads(r["data"]), "provenance": json.loads(r["provenance"]),
                "files": [dict(f) for f in files], "symbols": symbols,
            })
        return out
    finally:
        db.close()


def build(ws: Workspace, db: sqlite3.Connection, *, embed: bool = True, progress: Stages | None = None) -> dict[str, Any]:
    """Refresh the code index, the reference-graph ranks and (unless ``embed`` is off) embeddings."""
    from .address.build import build_indexes
    from .capture.ignore import IgnoreRules

    encoder = None
    if embed:
        from .model.encoder import load_encoder

        name = ws.config().models.encoder
        encoder = load_encoder(name)
        # A first build embeds thousands of texts: torch (sentence-transformers) does that about
        # twice as fast as the numpy path, which is worth its seconds of import only then.
        if db.execute("SELECT 1 FROM vectors WHERE model = ? LIMIT 1", (encoder.id,)).fetchone() is None:
            encoder = load_encoder(name, fast=False)
    return build_indexes(db, ws.repo.root, ignore=IgnoreRules.load(ws.repo.root), encoder=encoder, embed=embed,
                         progress=progress).as_dict()


def _encoder_for(db: sqlite3.Connection, name: str | None = None) -> Any:
    """The encoder whose vectors this store holds, or None when there are none (dense is skipped)."""
    from .model.encoder import PACKAGED, load_encoder

    encoder = load_encoder(name or PACKAGED)
    has = db.execute("SELECT 1 FROM vectors WHERE model = ? LIMIT 1", (encoder.id,)).fetchone()
    return encoder if has else None


def recall(ws: Workspace, query: str, *, budget: int, fast: bool = False, k: int = 10) -> dict[str, Any]:
    from .address.recall import Recaller
    from .brief.recall_brief import recall_brief

    query = " ".join(query.split())
    if not query:
        raise BadInput("recall needs a query, e.g. lmm recall \"auth module\"")
    if budget < 50:
        raise BadInput(f"--budget must be at least 50 tokens, got {budget}")
    db = ws.connect()
    try:
        if db.execute("SELECT 1 FROM code_files LIMIT 1").fetchone() is None:
            build(ws, db, embed=False)  # first recall on a store indexed before the code index existed
        encoder = None if fast else _encoder_for(db, ws.config().models.encoder)
        rec = Recaller(db, ws.repo.root, encoder=encoder).recall(query, k_files=k)
        brief, tokens = recall_brief(db, ws.repo.root, rec, budget=budget)
        out = rec.as_dict()
        out["facts"] = []
        out["brief"] = brief
        out["tokens"] = tokens
        out["dense"] = encoder is not None
        return out
    finally:
        db.close()


def brief(ws: Workspace, *, budget: int = 2000, write: Path | None = None) -> dict[str, Any]:
    from .brief.repo import repo_brief, write_section

    if budget < 100:
        raise BadInput(f"--budget must be at least 100 tokens, got {budget}")
    db = ws.connect()
    try:
        if db.execute("SELECT 1 FROM code_files LIMIT 1").fetchone() is None:
            build(ws, db, embed=False)
        res = repo_brief(db, ws.repo.root, budget=budget)
    finally:
        db.close()
    out: dict[str, Any] = {"brief": res.markdown, "tokens": res.tokens}
    if write is not None:
        target = write if write.is_absolute() else Path.cwd() / write
        out["written"] = str(target)
        out["changed"] = write_section(target, res.markdown)
    return out
