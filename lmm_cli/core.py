"""The operations behind the CLI, the background jobs and (next) the MCP server and assistant hooks.

Each takes a Workspace and returns plain data; printing is the caller's business. Bad arguments
raise ``BadArgument`` (exit 2 at the CLI edge), other user-fixable problems an ``LmmError`` with a
one-line fix-it message. Capture (git parsing, redaction) is imported only by the operations that
capture, so `status` and `log` start fast.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .capture import queue as q
from .capture.drain import DrainResult, drain
from .errors import BadArgument
from .integrations import githooks as hooks_mod
from .store.db import DB_FILE
from .store.lock import CaptureLock, lock_is_held
from .store.migrations import MIGRATIONS, schema_version
from .workspace import Workspace

__all__ = ["init", "ingest", "after_capture", "status", "log", "parse_since", "build", "recall", "brief", "tune"]

Stages = Callable[[str, int, int], None]  # (stage, done, total): progress of long work
MAX_ROWS = 2**63 - 1


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
                built = after_capture(ws, db, embed=embed, progress=stages, tune=False)["index"]
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
    drain(ws, wait=5.0, after=_after_drain)  # events hooks queued while we held the lock
    out["tuning_started"] = _maybe_tune(ws)
    return out


def _after_drain(ws: Workspace, db: sqlite3.Connection, result: DrainResult) -> None:
    after_capture(ws, db, new_commits=result.commits)


def after_capture(ws: Workspace, db: sqlite3.Connection, *, embed: bool | None = None,
                  progress: Stages | None = None, new_commits: int = 1, tune: bool = True) -> dict[str, Any]:
    """What follows every capture (init, ingest, the hook-woken drainer): bring the indexes up to
    date — incremental, only what changed is re-read or embedded — then, when commits arrived and a
    fit of recall's weights is due, start one in the background.

    ``embed``: None keeps the store as it is (embeddings only where it has them already, so
    `init --no-embed` stays that way)."""
    if embed is None:
        embed = db.execute("SELECT 1 FROM vectors LIMIT 1").fetchone() is not None
    index = build(ws, db, embed=embed, progress=progress)
    started = bool(tune and new_commits) and _start_tune_if_due(ws, db)
    return {"index": index, "tuning_started": started}


def _start_tune_if_due(ws: Workspace, db: sqlite3.Connection) -> bool:
    """Start ``jobs.tune`` detached when a fit is due. Never raises: fitting is an optimisation."""
    import subprocess
    import sys

    from .model.fusion import due

    try:
        if not due(ws, db):
            return False
        ws.logs.mkdir(exist_ok=True)
        subprocess.Popen([sys.executable, "-m", "lmm_cli.jobs.tune", str(ws.dir)],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True, close_fds=True, cwd=str(ws.dir))
        return True
    except Exception:  # noqa: BLE001
        return False


def _maybe_tune(ws: Workspace) -> bool:
    db = ws.connect()
    try:
        return _start_tune_if_due(ws, db)
    finally:
        db.close()


def ingest(ws: Workspace, *, embed: bool = True, stages: Stages | None = None) -> dict[str, Any]:
    from .capture.ingest import capture_history

    db = ws.connect()
    try:
        with CaptureLock(ws.dir).acquire_or_raise():
            result = capture_history(ws, db, capture="ingest",
                                     progress=(lambda d, t: stages("capturing history", d, t)) if stages else None)
            built = after_capture(ws, db, embed=embed, progress=stages, tune=False)["index"]
    finally:
        db.close()
    drained = drain(ws, wait=5.0, after=_after_drain)
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
        from .model.fusion import last_tuning, tuning_running

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


_RELATIVE = re.compile(
    r"^\s*(\d+)\s*(s|sec|secs|seconds?|m|min|mins|minutes?|h|hours?|d|days?|w|weeks?|mo|months?|y|years?)\s*(ago)?\s*$", re.I)


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
        raise BadArgument(f"--since: cannot read {text!r}; use a date (2026-01-31) or an age (3d, 2 weeks)") from None
    if dt.tzinfo is None:
        dt = dt.astimezone()  # a bare date means local time, as git reads it
    return dt.timestamp()


def log(ws: Workspace, *, limit: int = 20, kinds: list[str] | None = None, since: float | None = None,
        include_superseded: bool = False) -> list[dict[str, Any]]:
    if limit <= 0:
        raise BadArgument(f"-n must be a positive number, got {limit}")
    limit = min(limit, MAX_ROWS)  # "as many as there are": SQLite's integers stop at 2**63 - 1
    db = ws.connect()
    try:
        where: list[str] = []
        args: list[Any] = []
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
                "ts": r["ts"], "date": datetime.fromtimestamp(r["ts"], UTC).isoformat(timespec="seconds"),
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
    from .address.build import refresh

    return refresh(ws, db, embed=embed, progress=progress)


def recall(ws: Workspace, query: str, *, budget: int, fast: bool = False, k: int = 10) -> dict[str, Any]:
    from .address.dense import stored_encoder
    from .address.recall import Recaller
    from .brief.recall_brief import recall_brief

    query = " ".join(query.split())
    if not query:
        raise BadArgument("recall needs a query, e.g. lmm recall \"auth module\"")
    if budget < 50:
        raise BadArgument(f"--budget must be at least 50 tokens, got {budget}")
    if k < 1:
        raise BadArgument(f"-k must be at least 1, got {k}")
    db = ws.connect()
    try:
        if db.execute("SELECT 1 FROM code_files LIMIT 1").fetchone() is None:
            build(ws, db, embed=False)  # first recall on a store indexed before the code index existed
        encoder = None if fast else stored_encoder(db, ws.config().models.encoder)
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
        raise BadArgument(f"--budget must be at least 100 tokens, got {budget}")
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


def tune(ws: Workspace, *, holdout: int | None = None, embed: bool | None = None,
         say: Callable[[str], None] | None = None, progress: Stages | None = None) -> dict[str, Any]:
    """Fit recall's fusion weights to this repository's history now (``model.fusion.tune_store``);
    the recorded outcome, whatever it was."""
    from .model.fusion import tune_store

    if holdout is not None and holdout < 2:
        raise BadArgument(f"--holdout must be at least 2, got {holdout}")
    return tune_store(ws, holdout=holdout, embed=embed, say=say, progress=progress)


def remember(ws: Workspace, text: str) -> Any:
    """Store a note (redacted; the files it names are linked). Idempotent on the same text."""
    from .capture.notes import remember as capture_note

    db = ws.connect()
    try:
        return capture_note(ws, db, text)
    finally:
        db.close()


def install_hooks(ws: Workspace) -> list[Any]:
    """Install lmm's git hooks beside whatever is there (idempotent)."""
    ws.connect().close()  # not initialised → a clear error, not hooks pointing at nothing
    return hooks_mod.install(ws)


def uninstall_hooks(ws: Workspace) -> list[Any]:
    """Take lmm's git hooks out, leaving the hooks folder as it was before. The memory is kept."""
    return hooks_mod.uninstall(ws)


def hook_states(ws: Workspace) -> list[Any]:
    return hooks_mod.hook_status(ws)
