"""The operations behind the CLI, the background jobs and (next) the MCP server and assistant hooks.

Each takes a Workspace and returns plain data; printing is the caller's business. Bad arguments
raise ``BadArgument`` (exit 2 at the CLI edge), other user-fixable problems an ``LmmError`` with a
one-line fix-it message. Capture (git parsing, redaction) is imported only by the operations that
capture, so `status` and `log` start fast.
"""

from __future__ import annotations

import json
import math
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
from .capture.sessions.model import LMM_MARK
from .errors import BadArgument
from .integrations import githooks as hooks_mod
from .store.brief_cache import SESSION_BUDGET
from .store.db import DB_FILE, carry_over
from .store.lock import CaptureLock, lock_is_held
from .store.migrations import MIGRATIONS, schema_version
from .workspace import Workspace

__all__ = ["init", "ingest", "capture_sessions", "after_capture", "status", "log", "parse_since", "build", "recall",
           "brief", "tune", "train", "adapters", "adapters_rollback", "remember", "forget", "feedback", "Memory",
           "integrate", "session_context",
           "prompt_context", "record_activity", "refresh_session_brief",
           "make_session_context", "LMM_MARK"]

Stages = Callable[[str, int, int], None]  # (stage, done, total): progress of long work
MAX_ROWS = 2**63 - 1


def _rebuild(ws: Workspace) -> str | None:
    """Move an existing store database aside (never delete it) so init starts fresh; init then
    carries over what git cannot give back (``store.db.carry_over``)."""
    if not ws.db_path.exists():
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside = ws.dir / f"{DB_FILE}.aside-{stamp}"
    n = 1
    while aside.exists():  # two rebuilds within a second keep both old files
        aside = ws.dir / f"{DB_FILE}.aside-{stamp}-{n}"
        n += 1
    for suffix in ("", "-wal", "-shm"):
        src = ws.dir / (DB_FILE + suffix)
        if src.exists():
            os.replace(src, ws.dir / (aside.name + suffix))
    return str(aside)


def init(ws: Workspace, *, hooks: bool = True, backfill: bool = True, rebuild: bool = False,
         embed: bool = True, wait: bool = False, stages: Stages | None = None) -> dict[str, Any]:
    """Create the store, capture the history, build the code index, install the hooks.

    Embedding (``embed``) is handed to a detached background job (``jobs.embed``: then the fusion
    fit and the first training round) unless ``wait`` or LMM_AUTO_EMBED=0: then it runs here, with
    ``stages`` reporting progress, as the fit does after it (in the background, as before)."""
    from .capture.ingest import IngestResult, capture_history

    background = embed and not wait and auto_embed_enabled()

    moved = _rebuild(ws) if rebuild else None
    already = ws.initialised
    db = ws.create()
    try:
        hook_states = hooks_mod.install(ws) if hooks else []
        result = IngestResult(shallow=ws.repo.shallow)
        built: dict[str, Any] = {}
        carried: dict[str, Any] | None = None
        rescanned = None
        if backfill or moved:
            with CaptureLock(ws.dir).acquire_or_raise():
                rescanned = _rescan(db)  # a store redacted under older rules is re-redacted first
                if backfill:
                    result = capture_history(ws, db, capture="backfill", progress=(
                        lambda d, t: stages("capturing history", d, t)) if stages else None)
                if moved:  # after the backfill: recaptured commits get back what was learned about them
                    carried = carry_over(Path(moved), db)
                if backfill:
                    built = after_capture(ws, db, embed=embed and not background, progress=stages, tune=False,
                                          foreground=not background)["index"]
        embedding = _plan_embedding(ws, db) if background and backfill else None
        head = ws.repo.head()
        out = {
            "repo": str(ws.repo.root),
            "store": str(ws.dir),
            "already_initialised": already,
            "moved_aside": moved,
            "carried": carried,
            "empty": head is None,
            "ingest": result.as_dict(),
            "hooks": [h.as_dict() for h in hook_states],
            "hooks_manual": hooks_manual(ws),
            "index": built,
            "episodes": db.execute("SELECT count(*) FROM episodes").fetchone()[0],
            "rescanned": rescanned,
        }
    finally:
        db.close()
    drain(ws, wait=5.0, after=_after_drain)  # events hooks queued while we held the lock
    if embedding is not None:  # the background job fits recall's weights once the vectors are there
        embedding["pid"] = start_embedding(ws)
        embedding["daemon"] = daemon_running(ws)
        out["tuning_started"] = False
    else:
        out["tuning_started"] = _maybe_tune(ws)
    out["embedding"] = embedding
    return out


def auto_embed_enabled() -> bool:
    """Whether first embeddings go to a background job (LMM_AUTO_EMBED=0: in the foreground)."""
    return os.environ.get("LMM_AUTO_EMBED", "").strip() != "0"


def daemon_running(ws: Workspace) -> bool:
    """Whether `lmm daemon` runs for this store: it then embeds, fits and trains, and captures
    never start detached jobs of their own for that."""
    return lock_is_held(ws.dir, "daemon")


def _plan_embedding(ws: Workspace, db: sqlite3.Connection) -> dict[str, Any] | None:
    """Record what the background embedding has to do (``address.build.EMBED_STATE``); None when
    every text has its vector already."""
    from .address.build import embedding_counts, record_embedding
    from .embed.encoder import load_encoder

    encoder = load_encoder(ws.config().models.encoder)  # an unusable model fails init here, as before
    have, total = embedding_counts(db, encoder.id)
    if have >= total:
        return None
    record_embedding(db, model=encoder.id, done=have, total=total, started=time.time(), finished=None,
                     phase="embedding", pid=None, error=None)
    return {"background": True, "done": have, "total": total, "pid": None}


def embedding_pending(db: sqlite3.Connection) -> bool:
    """Whether a background embedding was planned and has not finished."""
    from .address.build import embedding_state

    st = embedding_state(db)
    return st is not None and not st.get("finished")


def start_embedding(ws: Workspace) -> int | None:
    """Start ``jobs.embed`` detached, unless `lmm daemon` runs (it embeds), one runs already, or
    LMM_AUTO_EMBED=0; its pid, or None. Never raises."""
    import subprocess
    import sys

    try:
        if daemon_running(ws) or lock_is_held(ws.dir, "embed") or not auto_embed_enabled():
            return None
        ws.logs.mkdir(exist_ok=True)
        p = subprocess.Popen([sys.executable, "-m", "lmm_cli.jobs.embed", str(ws.dir)],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True, close_fds=True, cwd=str(ws.dir))
        return p.pid
    except Exception:  # noqa: BLE001 - embedding is resumed by the next capture
        return None


def hooks_manual(ws: Workspace) -> str | None:
    """When the hooks folder is tracked by git: the line to add by hand (lmm changes nothing there)."""
    rel = hooks_mod.tracked_hooks_dir(ws)
    return hooks_mod.manual_instructions(rel) if rel is not None else None


def _rescan(db: sqlite3.Connection) -> dict[str, Any] | None:
    """Re-redact a store whose text was redacted under older rules (the caller holds the capture
    lock); None when it is current."""
    from .capture.rescan import rescan_if_needed

    done = rescan_if_needed(db)
    return done.as_dict() if done else None


def _after_drain(ws: Workspace, db: sqlite3.Connection, result: DrainResult) -> None:
    after_capture(ws, db, new_commits=result.commits)


def after_capture(ws: Workspace, db: sqlite3.Connection, *, embed: bool | None = None,
                  progress: Stages | None = None, new_commits: int = 1, tune: bool = True,
                  foreground: bool = False) -> dict[str, Any]:
    """What follows every capture (init, ingest, the hook-woken drainer): bring the indexes up to
    date — incremental, only what changed is re-read or embedded — then, when commits arrived and a
    fit of recall's weights is due, start one in the background.

    ``embed``: None keeps the store as it is (embeddings only where it has them already, so
    `init --no-embed` stays that way). While the background embedding of a new store is unfinished
    it is left to that job (restarted here if it died), unless ``foreground``."""
    from .address.build import embedding_counts, record_embedding

    pending = embedding_pending(db)
    if embed is not False and pending and not foreground and auto_embed_enabled():
        embed = False
        start_embedding(ws)
    if embed is None:
        embed = db.execute("SELECT 1 FROM vectors LIMIT 1").fetchone() is not None
    index = build(ws, db, embed=embed, progress=progress)
    if embed and pending and index.get("encoder"):  # embedded here, to the end: nothing is left for the job
        have, total = embedding_counts(db, index["encoder"])
        record_embedding(db, done=have, total=total, finished=time.time(), phase="done")
    _refresh_salience(db)  # after the index build: centrality reads the fresh code_rank
    refresh_session_brief(ws, db)
    # While the first embedding runs, its job fits and trains once the vectors are all there.
    started = bool(tune and new_commits) and not embedding_pending(db) and _start_tune_if_due(ws, db)
    if not embedding_pending(db):
        _start_train_if_due(ws, db)
    _refresh_aider(ws, db)
    return {"index": index, "tuning_started": started}


def _refresh_salience(db: sqlite3.Connection, episode_ids: list[int] | None = None) -> int:
    """Score what is new or changed for the salience gate (``model.salience.refresh``: incremental,
    ~2 s for 6k commits from scratch, milliseconds after). Never fails the capture it follows: a
    failure is recorded in ``state`` (``salience.error``) and the next capture tries again."""
    from .model.salience import refresh

    try:
        return refresh(db, episode_ids=episode_ids)
    except Exception as e:  # noqa: BLE001 - salience weighs learning; capture must not depend on it
        try:
            db.execute("INSERT INTO state (key, value) VALUES ('salience.error', ?) ON CONFLICT(key)"
                       " DO UPDATE SET value = excluded.value", (f"{type(e).__name__}: {e}"[:500],))
        except sqlite3.Error:
            pass
        return 0


def refresh_session_brief(ws: Workspace, db: sqlite3.Connection) -> bool:
    """Make the session brief now, when the one kept is no longer true, so that the next session's
    SessionStart hook finds it ready (``store.brief_cache``); True when made. Every capture calls it,
    and `lmm daemon` at each look at what is due (a new day, a config file edited). Never raises:
    without it the hook makes the brief itself, as it did before."""
    try:
        return _session_brief(ws, db, SESSION_BUDGET)[1]
    except Exception:  # noqa: BLE001 - a brief made ahead is an optimisation; capture must not depend on it
        return False


def _refresh_aider(ws: Workspace, db: sqlite3.Connection) -> bool:
    """Rewrite aider's conventions file with the current session brief, when this repository has
    the aider integration and the brief is no longer what the file says; True when rewritten. Cheap
    when there is nothing to do: the brief is the one kept in the store while it is still true
    (``store.brief_cache``: the memory, the day and what it read of the working tree). The file is
    written atomically, and only while it is still lmm's (a file deleted or taken over by the user
    is left alone). Never raises: the file is a convenience."""
    from .integrations import aider
    from .integrations.merge import Manifest, read_text, write_text

    try:
        manifest = ws.dir / "integrations.json"
        if not manifest.is_file() or aider.CONVENTIONS not in Manifest(manifest).tool("aider").get("files", {}):
            return False
        path = ws.repo.root / aider.CONVENTIONS
        have = read_text(path)
        if have is None or LMM_MARK not in have:
            return False
        text = aider.conventions_text(LMM_MARK, _session_brief(ws, db, AIDER_BRIEF)[0])
        if text == have:
            return False
        write_text(path, text)
        return True
    except Exception:  # noqa: BLE001 - a stale conventions file is better than a failed capture
        return False


def _start_tune_if_due(ws: Workspace, db: sqlite3.Connection) -> bool:
    """Start ``jobs.tune`` detached when a fit is due. Never raises: fitting is an optimisation."""
    import subprocess
    import sys

    from .model.fusion import due

    try:
        if daemon_running(ws) or not due(ws, db):  # a daemon fits when it is due
            return False
        ws.logs.mkdir(exist_ok=True)
        subprocess.Popen([sys.executable, "-m", "lmm_cli.jobs.tune", str(ws.dir)],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True, close_fds=True, cwd=str(ws.dir))
        return True
    except Exception:  # noqa: BLE001
        return False


def _start_train_if_due(ws: Workspace, db: sqlite3.Connection) -> bool:
    """Start ``jobs.train`` detached when a training round is due (``model.rounds.round_due``),
    unless `lmm daemon` runs (it trains). Never raises: the adapter is an optimisation."""
    try:
        from .model.rounds import round_due, start_training

        if daemon_running(ws) or not round_due(ws, db):
            return False
        return start_training(ws) is not None
    except Exception:  # noqa: BLE001
        return False


def _maybe_tune(ws: Workspace) -> bool:
    db = ws.connect()
    try:
        return not embedding_pending(db) and _start_tune_if_due(ws, db)
    finally:
        db.close()


def ingest(ws: Workspace, *, embed: bool = True, stages: Stages | None = None,
           sessions: bool = False) -> dict[str, Any]:
    """Capture new history now; ``sessions``: also this repository's assistant sessions (every
    supported assistant's transcripts, from where the last capture stopped)."""
    from .capture.ingest import capture_history

    db = ws.connect()
    try:
        with CaptureLock(ws.dir).acquire_or_raise():
            rescanned = _rescan(db)  # a store redacted under older rules is re-redacted first
            result = capture_history(ws, db, capture="ingest",
                                     progress=(lambda d, t: stages("capturing history", d, t)) if stages else None)
            captured = _capture_sessions(ws, db) if sessions else None
            built = after_capture(ws, db, embed=embed, progress=stages, tune=False)["index"]
    finally:
        db.close()
    drained = drain(ws, wait=5.0, after=_after_drain)
    out = result.as_dict()
    out["sessions"] = captured
    out["index"] = built
    out["events"] = drained.events
    out["rescanned"] = rescanned
    out["empty"] = ws.repo.head() is None
    out["tuning_started"] = _maybe_tune(ws)
    return out


def _capture_sessions(ws: Workspace, db: sqlite3.Connection, transcripts: list[str] | None = None,
                      final: bool = False) -> dict[str, Any]:
    from .capture.sessions.ingest import capture_sessions as capture

    return capture(ws, db, transcripts=transcripts, final=final).as_dict()


def capture_sessions(ws: Workspace, *, transcripts: list[str] | None = None, final: bool = False,
                     wait: float | None = None) -> dict[str, Any]:
    """Capture this repository's assistant sessions (``capture.sessions.ingest``): the given
    transcripts, or every one found; ``final``: those sessions are over (their last turns are
    written too). Under the capture lock (``wait``: seconds to wait for it, default
    LMM_LOCK_TIMEOUT), then the indexes are brought up to date so new turns are searchable."""
    db = ws.connect()
    try:
        with CaptureLock(ws.dir).acquire_or_raise(wait):
            out = _capture_sessions(ws, db, transcripts, final)
            if out["turns"] or out["corrections"] or out.get("memory"):
                out["index"] = after_capture(ws, db, new_commits=0)["index"]
    finally:
        db.close()
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
        partial = db.execute("SELECT value FROM state WHERE key = 'partial_clone'").fetchone()
        unavailable = db.execute("SELECT value FROM state WHERE key = 'unavailable_files'").fetchone()
        from .model.fusion import last_tuning, tuning_running
        from .model.ranker import in_use as ranker_in_use

        fusion = {
            "weights": "tuned" if db.execute("SELECT 1 FROM state WHERE key = 'fusion_weights'").fetchone() else "default",
            "last_tune": last_tuning(db),
            "tuning_now": tuning_running(ws.dir),
            "ranker": ranker_in_use(ws.dir),  # the learned ranker recall uses, or None
        }
        background = background_state(ws, db)
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
        "partial_clone": bool(partial),
        "unavailable_files": int(unavailable[0]) if unavailable else 0,
        "hooks": {"dir": str(ws.repo.hooks_dir), "states": [h.as_dict() for h in hooks_mod.hook_status(ws)],
                  "manual": hooks_manual(ws)},
        "queue": {"pending": len(pending), "bad": len(list(bad_dir.iterdir())) if bad_dir.exists() else 0},
        "drainer": {"running": lock_is_held(ws.dir)},
        "fusion": fusion,
        "background": background,
    }


def _state_json(db: sqlite3.Connection, key: str) -> dict[str, Any] | None:
    row = db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
    try:
        out = json.loads(row[0]) if row else None
    except (TypeError, ValueError):
        return None
    return out if isinstance(out, dict) else None


def background_state(ws: Workspace, db: sqlite3.Connection) -> dict[str, Any]:
    """What runs or ran in the background, for `lmm status`: the first embedding (done, total,
    percent, whether its job or the daemon is at it now), the daemon (``jobs.daemon`` records what
    it does in ``state``), and the training rounds (``adapters.last_round``)."""
    from .address.build import embedding_state

    emb = embedding_state(db)
    daemon = _state_json(db, "daemon") or {}
    alive = daemon_running(ws)
    if emb is not None:
        total = int(emb.get("total") or 0)
        done = int(emb.get("done") or 0)
        running = lock_is_held(ws.dir, "embed")
        if running:  # the lock's holder: the background job, or the daemon
            try:
                emb["pid"] = int((ws.dir / "embed.pid").read_text().split()[0])
            except (OSError, ValueError, IndexError):
                pass
        emb = {**emb, "percent": 100 if total == 0 else min(100, int(100 * done / total)), "running": running}
    return {
        "embedding": emb,
        "daemon": {**daemon, "running": alive} if alive else {"running": False},
        "training": {"running": lock_is_held(ws.dir, "train"), "last_round": _state_json(db, "adapters.last_round")},
    }


def warming(db: sqlite3.Connection) -> list[dict[str, Any]]:
    """The recall channels still warming up (the dense one while the first embedding runs), each
    with a one-line note; recall uses what exists meanwhile."""
    from .address.build import embedding_state

    st = embedding_state(db)
    if st is None or st.get("finished"):
        return []
    total = int(st.get("total") or 0)
    pct = 0 if total == 0 else min(99, int(100 * int(st.get("done") or 0) / total))
    return [{"channel": "dense", "percent": pct, "done": st.get("done"), "total": total,
             "note": f"dense channel warming up: {pct}% embedded"}]


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
        include_superseded: bool = False, salience: bool = False) -> list[dict[str, Any]]:
    """Recent episodes, newest first. ``salience``: each with why the salience gate weighed it as it
    did (``salience_reasons``: factor, weight, text; ``surprise``), scoring first what is not scored."""
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
        if salience:
            _refresh_salience(db)  # a store that predates the gate, or a capture not followed up yet
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
            if salience:
                from .model.salience import reasons_of

                why = db.execute("SELECT reasons, surprise FROM salience WHERE episode_id = ?", (r["id"],)).fetchone()
                out[-1]["salience_reasons"] = reasons_of(why[0]) if why else []
                out[-1]["surprise"] = why[1] if why else None
        from .privacy.output import clean_data

        return clean_data(out)  # no secret a store written by an older lmm kept, no control characters
    finally:
        db.close()


def build(ws: Workspace, db: sqlite3.Connection, *, embed: bool = True, progress: Stages | None = None) -> dict[str, Any]:
    """Refresh the code index, the reference-graph ranks and (unless ``embed`` is off) embeddings."""
    from .address.build import refresh

    return refresh(ws, db, embed=embed, progress=progress)


def _check_recall_args(query: str, budget: int, k: int) -> str:
    query = " ".join(query.split())
    if not query:
        raise BadArgument("recall needs a query, e.g. lmm recall \"auth module\"")
    if budget < 50:
        raise BadArgument(f"--budget must be at least 50 tokens, got {budget}")
    if k < 1:
        raise BadArgument(f"-k must be at least 1, got {k}")
    return query


def _answer(ws: Workspace, db: sqlite3.Connection, recaller: Any, query: str, *, budget: int, k: int,
            via: str) -> dict[str, Any]:
    """Recall with ``recaller``, render the brief, log the recall (its id is what feedback cites) and
    return the answer cleaned of secrets and control characters."""
    from .brief.recall_brief import recall_brief
    from .privacy.output import clean_data

    rec = recaller.recall(query, k_files=k)
    brief, tokens = recall_brief(db, ws.repo.root, rec, budget=budget, memo=recaller.memo)
    out = rec.as_dict()
    out["facts"] = []
    out["brief"] = brief
    out["tokens"] = tokens
    out["dense"] = recaller.encoder is not None
    out["adapter"] = getattr(recaller.encoder, "adapter_version", None)
    out["warming"] = warming(db)
    out["recall_id"] = _log_recall(db, query, out, via)
    return clean_data(out)  # no secret a store written by an older lmm kept, no control characters


def _log_recall(db: sqlite3.Connection, query: str, out: dict[str, Any], via: str) -> int | None:
    """Record what recall answered; None when the store cannot be written (recall still answers)."""
    from .privacy.redact import redact
    from .store.db import transaction

    try:
        with transaction(db):
            cur = db.execute(
                "INSERT INTO recalls (ts, via, query, files, commits) VALUES (?, ?, ?, ?, ?)",
                (time.time(), via, redact(query[:2000]), json.dumps([f["path"] for f in out.get("files", [])]),
                 json.dumps([c["sha"] for c in out.get("commits", [])])))
        return cur.lastrowid
    except sqlite3.Error:
        return None


def _ensure_indexed(ws: Workspace, db: sqlite3.Connection) -> None:
    if db.execute("SELECT 1 FROM code_files LIMIT 1").fetchone() is None:
        build(ws, db, embed=False)  # first recall on a store indexed before the code index existed


def query_encoder(ws: Workspace, base: Any) -> Any:
    """The encoder recall asks with: ``base`` with this repository's active adapter
    (``model.adapters``; its vector meets the code in the adapter's channel), or ``base`` itself
    (none active, or it cannot be read; None stays None)."""
    if base is None:
        return None
    from .model.adapters import load_query_encoder

    return load_query_encoder(ws.dir, base)


def _active_mark(ws: Workspace) -> str | None:
    """What the adapters' ACTIVE file says now (None: no file), to see a switch cheaply."""
    try:
        return (ws.dir / "adapters" / "ACTIVE").read_text(encoding="utf-8").strip()
    except OSError:
        return None


def recall(ws: Workspace, query: str, *, budget: int, fast: bool = False, k: int = 10,
           via: str = "cli") -> dict[str, Any]:
    from .address.dense import stored_encoder
    from .address.recall import Recaller

    query = _check_recall_args(query, budget, k)
    db = ws.connect()
    try:
        _ensure_indexed(ws, db)
        encoder = None if fast else query_encoder(ws, stored_encoder(db, ws.config().models.encoder))
        return _answer(ws, db, Recaller(db, ws.repo.root, encoder=encoder), query, budget=budget, k=k, via=via)
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
    from .privacy.output import clean_output

    markdown = clean_output(res.markdown)  # no secret a store written by an older lmm kept, no control characters
    out: dict[str, Any] = {"brief": markdown, "tokens": res.tokens}
    if write is not None:
        target = write if write.is_absolute() else Path.cwd() / write
        out["written"] = str(target)
        out["changed"] = write_section(target, markdown)
    return out


def tune(ws: Workspace, *, holdout: int | None = None, embed: bool | None = None,
         say: Callable[[str], None] | None = None, progress: Stages | None = None) -> dict[str, Any]:
    """Fit recall's fusion weights to this repository's history now (``model.fusion.tune_store``);
    the recorded outcome, whatever it was."""
    from .model.fusion import tune_store

    if holdout is not None and holdout < 2:
        raise BadArgument(f"--holdout must be at least 2, got {holdout}")
    return tune_store(ws, holdout=holdout, embed=embed, say=say, progress=progress)


def train(ws: Workspace, *, forms: str | None = None, accelerate: bool = False,
          say: Callable[[str], None] | None = None, progress: Stages | None = None) -> dict[str, Any]:
    """One training round of this repository's query adapter now (``model.rounds.run_round``):
    the recorded outcome, promoted or not."""
    from .model.rounds import parse_forms, run_round

    ws.connect().close()  # not initialised → a clear error
    parse_forms(forms)  # a bad --form is a usage error before any work
    return run_round(ws, forms=forms, accelerate=accelerate, progress=progress, say=say, foreground=True)


def adapters(ws: Workspace) -> dict[str, Any]:
    """The adapter versions on disk (oldest first), which is active, and the last round's outcome."""
    from .model.adapters import list_versions, version_dict
    from .model.rounds import last_round, round_dir, training_running

    db = ws.connect()
    try:
        last = last_round(db)
    finally:
        db.close()
    versions = []
    for v in list_versions(ws.dir):
        d = version_dict(v)
        d["promoted"] = bool(v.extra.get("promoted"))
        d["verdict"] = v.extra.get("verdict")
        versions.append(d)
    active = next((v["name"] for v in versions if v["active"]), None)
    return {"store": str(ws.dir), "active": active, "versions": versions, "last_round": last,
            "training_now": training_running(ws.dir), "unfinished_round": (round_dir(ws.dir) / "plan.json").is_file()}


def adapters_rollback(ws: Workspace, version: str | None = None) -> dict[str, Any]:
    """Make the previously active adapter version (or ``version``; "base" or "none": no adapter)
    active again, at once."""
    from .model.adapters import activate, active_version, rollback

    ws.connect().close()
    before = active_version(ws.dir)
    if version is not None and version.strip().lower() in ("base", "none"):
        activate(ws.dir, None)
        now = None
    else:
        now = rollback(ws.dir, version.strip() if version else None)
    return {"before": before.name if before else None, "active": now.name if now else None}


def remember(ws: Workspace, text: str, *, files: list[str] | None = None, kind: str = "note",
             via: str = "cli") -> Any:
    """Store a note (redacted; the files it names, or ``files``, are linked). Idempotent on the same text."""
    from .capture.notes import remember as capture_note

    db = ws.connect()
    try:
        res = capture_note(ws, db, text, capture=via, files=files, kind=kind)
        _refresh_salience(db)  # the note, and any commit it cites by sha, weigh more from now on
        return res
    finally:
        db.close()


# Episodes git can give back are never forgotten one by one: forgetting a commit is rewriting history.
_FORGETTABLE = ("note", "session")


def forget(ws: Workspace, query_or_id: str, *, foreground: bool = False) -> dict[str, Any]:
    """Delete notes and sessions for good, from the store and every index: the episode with this id
    or source, or else every note and session whose text matches all the words given. Adapter
    versions that trained on them are dropped and a retrain starts from the newest one that never
    saw them (``model.rounds.forget_sources``; ``foreground``: the retrain runs here)."""
    from .address.dense import text_hash
    from .address.recall import episode_text, fts_query
    from .model.pairs import QUERY_SUFFIX, query_text
    from .store.db import transaction
    from .store.episodes import fts_doc
    from .text import query_terms

    what = query_or_id.strip()
    if not what:
        raise BadArgument("forget needs an id (as `lmm log` shows it) or words that the note says")
    db = ws.connect()
    try:
        kinds = ",".join(f"'{k}'" for k in _FORGETTABLE)
        rows = []
        if what.isdigit():
            rows = db.execute(f"SELECT id, kind, source, title, body FROM episodes WHERE id = ? AND kind IN ({kinds})",
                              (int(what),)).fetchall()
        if not rows:
            rows = db.execute(f"SELECT id, kind, source, title, body FROM episodes WHERE source = ? AND kind IN ({kinds})",
                              (what,)).fetchall()
        if not rows and not what.isdigit():
            terms = query_terms(what)
            if terms:
                match = fts_query(terms).replace(" OR ", " AND ")
                rows = db.execute(
                    f"SELECT e.id, e.kind, e.source, e.title, e.body FROM episodes_fts JOIN episodes e"
                    f" ON e.id = episodes_fts.rowid WHERE episodes_fts MATCH ? AND e.kind IN ({kinds})",
                    (match,)).fetchall()
        removed = []
        with transaction(db):
            for r in rows:
                doc = fts_doc(db, r["id"])
                db.execute("INSERT INTO episodes_fts (episodes_fts, rowid, title, body, paths, symbols, diff, terms)"
                           " VALUES ('delete', ?, ?, ?, ?, ?, ?, ?)", (r["id"], *doc))
                db.execute("DELETE FROM vectors WHERE hash = ?", (text_hash(episode_text(r["title"], r["body"])),))
                db.execute("DELETE FROM vectors WHERE hash = ? AND model LIKE ?",  # its training query's vector
                           (text_hash(query_text(r["kind"], r["title"], r["body"])), f"%{QUERY_SUFFIX}"))
                db.execute("DELETE FROM episodes WHERE id = ?", (r["id"],))  # files and symbols cascade
                removed.append({"id": r["id"], "kind": r["kind"], "source": r["source"], "title": r["title"]})
    finally:
        db.close()
    from .privacy.output import clean_data

    adapters: dict[str, Any] = {"dropped": [], "active": None, "retrain": None}
    if removed:
        from .model.rounds import forget_sources

        adapters = forget_sources(ws, [f"ep:{r['id']}" for r in removed], foreground=foreground)
    return clean_data({"removed": removed, "adapters": adapters})


def feedback(ws: Workspace, recall_id: str | int, *, useful: bool, note: str | None = None,
             via: str = "cli") -> dict[str, Any]:
    """Record whether a recall helped: the utility signal later learning uses."""
    from .privacy.redact import redact
    from .store.db import transaction

    try:
        rid = int(str(recall_id).strip())
    except ValueError:
        raise BadArgument(f"recall_id: {recall_id!r} is not a recall id (recall returns one)") from None
    db = ws.connect()
    try:
        if db.execute("SELECT 1 FROM recalls WHERE id = ?", (rid,)).fetchone() is None:
            raise BadArgument(f"recall_id: no recall {rid} in this repository's memory")
        with transaction(db):
            cur = db.execute("INSERT INTO feedback (recall_id, ts, via, useful, note) VALUES (?, ?, ?, ?, ?)",
                             (rid, time.time(), via, int(bool(useful)), redact((note or "").strip()[:2000])))
        _refresh_salience(db)  # the commits and files the recall listed are rescored
        return {"feedback_id": cur.lastrowid, "recall_id": rid, "useful": bool(useful)}
    finally:
        db.close()


class Memory:
    """One repository's memory held open for a long-lived caller (the MCP server): the encoder and
    recall's lookups stay loaded between calls and are reloaded when another process has changed
    the store (SQLite's ``data_version``). The repository is resolved at each call until it is
    initialised, so a server started before `lmm init` starts working once the store exists.

    The MCP server runs each tool call on a worker thread: calls are serialised by a lock, and the
    connection they share is opened for use across threads."""

    def __init__(self, root: Path, *, via: str = "mcp") -> None:
        import threading

        self.root = root
        self.via = via
        self._lock = threading.RLock()
        self._ws: Workspace | None = None
        self._db: sqlite3.Connection | None = None
        self._recaller: Any = None
        self._version: int | None = None
        self._encoder: Any = None
        self._active: str | None = None  # the adapters' ACTIVE file as last read

    def workspace(self) -> Workspace:
        with self._lock:
            if self._ws is None:
                from .workspace import open_workspace

                ws = open_workspace(self.root)
                ws.connect().close()  # not initialised → NotInitialised, and try again next call
                self._ws = ws
            return self._ws

    def _warm(self) -> tuple[Workspace, sqlite3.Connection, Any]:
        from .address.dense import stored_encoder
        from .address.recall import Recaller
        from .repo import keep_object_checker

        ws = self.workspace()
        keep_object_checker(ws.repo.root, ws.repo.common_dir)  # one git answers every recall's commit check
        if self._db is None:
            self._db = ws.connect(shared=True)
        db = self._db
        version = db.execute("PRAGMA data_version").fetchone()[0]
        active = _active_mark(ws)
        if active != self._active:  # another adapter version was activated (a round, a rollback)
            if self._recaller is not None:
                self._recaller.close()
            self._encoder, self._active, self._recaller = None, active, None
        if self._recaller is None or version != self._version:
            _ensure_indexed(ws, db)
            if self._encoder is None:
                self._encoder = query_encoder(ws, stored_encoder(db, ws.config().models.encoder))
                if self._encoder is not None:
                    from .embed.encoder import keep_one_blas_thread

                    keep_one_blas_thread()  # recall's SQL has the other core (see Recaller.channel_scores)
            if self._recaller is not None:
                self._recaller.close()  # its second connection; the shared one stays
            self._recaller = Recaller(db, ws.repo.root, encoder=self._encoder)
            self._version = db.execute("PRAGMA data_version").fetchone()[0]
        return ws, db, self._recaller

    def recall(self, query: str, *, budget: int = 800, k: int = 8) -> dict[str, Any]:
        query = _check_recall_args(query, budget, k)
        with self._lock:
            ws, db, recaller = self._warm()
            out = _answer(ws, db, recaller, query, budget=budget, k=k, via=self.via)
            self._version = db.execute("PRAGMA data_version").fetchone()[0]  # our own log row is no change
            return out

    def remember(self, text: str, *, files: list[str] | None = None, kind: str = "note") -> dict[str, Any]:
        with self._lock:
            res = remember(self.workspace(), text, files=files, kind=kind, via=self.via)
            return {"id": res.id, "source": res.source, "new": res.new, "files": res.files, "redacted": res.redacted}

    def forget(self, query_or_id: str) -> dict[str, Any]:
        with self._lock:
            return forget(self.workspace(), query_or_id)

    def feedback(self, recall_id: str, *, useful: bool, note: str | None = None) -> dict[str, Any]:
        with self._lock:
            return feedback(self.workspace(), recall_id, useful=useful, note=note, via=self.via)

    def status(self) -> dict[str, Any]:
        from .privacy.output import clean_data

        with self._lock:
            out: dict[str, Any] = clean_data(status(self.workspace()))
            return out

    def session_brief(self, budget: int = SESSION_BUDGET) -> str:
        """The brief a session starts with (the same one the SessionStart hook injects)."""
        with self._lock:
            return session_context(self.workspace(), budget=budget) or "No memory of this repository yet."

    def close(self) -> None:
        from .repo import drop_object_checker

        with self._lock:
            if self._recaller is not None:
                self._recaller.close()
                self._recaller = None
            if self._db is not None:
                self._db.close()
                self._db = None
            if self._ws is not None:
                drop_object_checker(self._ws.repo.root)


def install_hooks(ws: Workspace) -> list[Any]:
    """Install lmm's git hooks beside whatever is there (idempotent)."""
    ws.connect().close()  # not initialised → a clear error, not hooks pointing at nothing
    return hooks_mod.install(ws)


def uninstall_hooks(ws: Workspace) -> list[Any]:
    """Take lmm's git hooks out, leaving the hooks folder as it was before. The memory is kept."""
    return hooks_mod.uninstall(ws)


def hook_states(ws: Workspace) -> list[Any]:
    return hooks_mod.hook_status(ws)


# -- assistants: `lmm integrate` and what the assistants' hooks call --------------------------------

ASSISTANTS = ("claude", "codex", "cursor", "aider")
AIDER_BRIEF = 1500  # tokens of session brief in aider's conventions file
_NEXT = {
    "claude": "Claude Code asks once to approve the `lmm` server of .mcp.json; the hooks run from the next session",
    "claude-plugin": "in Claude Code: /plugin marketplace add {dir}, then /plugin install lmm@lmm",
    "codex": ("Codex runs the project's hooks once the project is trusted and you have reviewed lmm's hooks "
              "(/hooks in Codex); the MCP server serves every repository"),
    "cursor": "enable the `lmm` MCP server in Cursor's settings (Tools & MCP)",
    "aider": "aider reads .aider.lmm.md at its next start; lmm refreshes it after every capture",
}


def integrate(ws: Workspace, tool: str, *, plugin: Path | None = None, remove: bool = False) -> dict[str, Any]:
    """Connect an assistant to this repository's memory (``integrations.<tool>``), or with ``remove``
    take out exactly what an earlier run added: the files are as they were before (a file lmm
    created is deleted). Idempotent; ``integrations.json`` in the store records what was done."""
    from .integrations import aider, claude, codex, cursor
    from .integrations.merge import Manifest, apply_changes, undo_changes

    if tool not in ASSISTANTS:
        raise BadArgument(f"unknown assistant {tool!r}; choose one of {', '.join(ASSISTANTS)}")
    if plugin is not None and tool != "claude":
        raise BadArgument("--plugin makes a Claude Code plugin: use it with `lmm integrate claude`")
    ws.connect().close()  # not initialised → a clear error, not hooks pointing at no memory
    name = "claude-plugin" if plugin is not None else tool
    manifest = Manifest(ws.dir / "integrations.json")
    entry = manifest.tool(name)
    root = ws.repo.root
    if remove:
        report = undo_changes(entry.get("files", {}), root, kinds={"aider-read": aider.undo_read})
        manifest.set_tool(name, None)
        manifest.save()
        return {"tool": name, "removed": True, "files": report, "next": None}
    if plugin is not None:
        folder = plugin if plugin.is_absolute() else Path.cwd() / plugin
        changes = claude.plugin_changes(folder)
    elif tool == "claude":
        changes = claude.project_changes(root)
    elif tool == "codex":
        changes = codex.changes(root)
    elif tool == "cursor":
        changes = cursor.changes(root)
    else:
        changes = aider.changes(root, LMM_MARK, session_context(ws, budget=AIDER_BRIEF))
    records = dict(entry.get("files", {}))
    try:
        report = apply_changes(changes, root, records)
    finally:  # what was written is recorded, even when a later file stops the run
        manifest.set_tool(name, {"files": records})
        manifest.save()
    hint = _NEXT[name].format(dir=plugin)
    return {"tool": name, "removed": False, "files": report, "next": hint}


# The session brief leaves out the repository overview (layout, central modules): measured, overviews
# do not help agents; what does is specific: commands, conventions, fragile files, open threads, notes.
_OVERVIEW = ("Layout", "Central modules")


def session_context(ws: Workspace, *, budget: int = SESSION_BUDGET) -> str:
    """What an assistant session starts with: the repo brief's specific sections, within ``budget``
    tokens, every line cited; "" when the memory has nothing to say.

    Kept in the store once made (``store.brief_cache``) and served from there while it is still
    what making it again would say; every capture makes it ahead of the next session
    (``after_capture``)."""
    db = ws.connect()
    try:
        return _session_brief(ws, db, budget)[0]
    finally:
        db.close()


def _session_brief(ws: Workspace, db: sqlite3.Connection, budget: int) -> tuple[str, bool]:
    """The session brief at ``budget`` tokens, and whether it was made now (False: the one kept)."""
    from .store.brief_cache import fetch, session_name

    kept = fetch(db, ws.repo.root, ws.repo.common_dir, name=session_name(budget))
    return (kept, False) if kept is not None else (make_session_context(ws, db, budget), True)


def make_session_context(ws: Workspace, db: sqlite3.Connection, budget: int = SESSION_BUDGET) -> str:
    """The session brief made now (not read from the store), and kept there for the next to ask."""
    from .brief.render import render
    from .brief.repo import repo_brief
    from .brief.tokens import count_tokens
    from .privacy.output import clean_output
    from .store.brief_cache import keep, memory_key, session_name

    if db.execute("SELECT 1 FROM code_files LIMIT 1").fetchone() is None:
        build(ws, db, embed=False)
    key = memory_key(db)  # before it is made: a change meanwhile leaves what is kept stale, not wrong
    every = repo_brief(db, ws.repo.root, budget=1_000_000)  # each line verified once, here
    specific = [s for s in every.sections if s.title not in _OVERVIEW]
    markdown, _, printed = render(f"What lmm remembers of {ws.repo.root.name}", specific, budget=budget,
                                  count=count_tokens, verify=lambda c: True, empty="")
    out = clean_output(markdown) if printed else ""
    if key is not None:
        cites = [c for s in printed for ln in s.lines for c in ln.cites]
        files = [c for c in cites if c.kind == "file"]
        keep(db, ws.repo.root, ws.repo.common_dir, name=session_name(budget), key=key, markdown=out,
             files=[*every.read, *(c.ref for c in files if c.line is not None)],
             present=[c.ref for c in files if c.line is None], on_disk=every.on_disk,
             commits=[c.ref for c in cites if c.kind == "commit"])
    return out


# Words that say how to work or how the chat goes, not what the work is about: "thanks", "run the
# tests", "fix it", "let's go on". A prompt made only of these gets no recall.
CHATTER = frozenset("""
thanks thank thx ty ok okay yes yeah yep yup no nope please pls sure great good nice cool perfect awesome fine
looks look lgtm hmm hi hello hey continue go ahead proceed again try retry do did done run rerun runs test tests
testing tested suite fix fixes fixed fail fails failed failing error errors broken work works working make write
add remove delete update change changes changed commit push pull merge rebase undo revert explain think mean show
tell help code file files function functions method methods class type types hint hints docstring docstrings
comment comments lint linter format formatting refactor clean cleaner cleanup simplify faster slower better
improve now then first next last step everything something anything wrong right let lets go going keep hold
move stop today tomorrow later wait sorry ask asked question answer same other another one thing things way
still just also really actually maybe probably instead lunch break back sounds reasonable sense idea approach
summary summarize diff version bump changelog job
""".split())
SPECIFIC = 1.2  # the lexical bar a prompt's evidence must clear to be injected (see prompt_context)
DENSE_GATE = 0.55  # the dense one: best cosine of the prompt to a chunk, commit or note
_MAX_SUBJECT_TERMS = 24


def _specificity(db: sqlite3.Connection, terms: list[str]) -> float:
    """How specifically the memory knows what ``terms`` are about: the best single code chunk,
    commit or note holding at least two of them, scored by the summed IDF of the terms it holds
    (a word in a quarter or more of the documents says nothing and is left out), in units of the
    IDF of a word found once (ln N). 1.0 is one word that occurs in one document only; common words
    need several in the same place."""
    from .address.recall import fts_query

    corpora = (
        ("SELECT count(*) FROM code_chunks", "SELECT rowid FROM code_fts WHERE code_fts MATCH ?"),
        ("SELECT count(*) FROM episodes WHERE kind IN ('commit', 'note', 'session') AND valid_to IS NULL",
         "SELECT e.id FROM episodes_fts JOIN episodes e ON e.id = episodes_fts.rowid WHERE episodes_fts MATCH ?"
         " AND e.kind IN ('commit', 'note', 'session') AND e.valid_to IS NULL"),
    )
    best = 0.0
    for count_sql, match_sql in corpora:
        n = db.execute(count_sql).fetchone()[0]
        if n < 2:
            continue
        mass: dict[int, float] = {}
        hits: dict[int, int] = {}
        for t in terms[:_MAX_SUBJECT_TERMS]:
            ids = [r[0] for r in db.execute(match_sql + f" LIMIT {n // 4 + 1}", (fts_query([t]),))]
            if not ids or len(ids) > n // 4:
                continue
            idf = math.log(n / len(ids))
            for i in ids:
                mass[i] = mass.get(i, 0.0) + idf
                hits[i] = hits.get(i, 0) + 1
        top = max((m for i, m in mass.items() if hits[i] >= 2), default=0.0)
        best = max(best, top / math.log(n))
    return best


def prompt_context(ws: Workspace, prompt: str, *, budget: int = 600) -> dict[str, Any]:
    """A recall for an assistant's prompt, to inject only when it is about something the memory knows.

    Silence (``inject`` false) unless the prompt has subject words (what is left without
    ``CHATTER``: "thanks" and "run the tests" have none) and then one of:

    - it names a file, a code name or a commit the memory has (the ``mentions`` channel);
    - with embeddings in the store: the prompt's best cosine similarity to a code chunk, commit or
      note reaches ``DENSE_GATE`` (the numpy encoder loads in ~0.3 s, so this stays fast);
    - without them: its subject words meet in one chunk, commit or note specifically enough
      (``_specificity`` ≥ ``SPECIFIC``).

    Measured with 30 prompts a user types between tasks ("nice work, ship it", "it still doesn't
    work"; not used to pick ``CHATTER`` or ``SPECIFIC``) and 10 about each repository's code ("the
    multipart parser drops the last field"). ``DENSE_GATE`` lies between starlette's chat (≤ 0.46)
    and code (≥ 0.63); on click, held out, it injects 3/30 chat prompts (up to 0.67: click's docs
    talk about changes and instructions) and answers 10/10. The lexical gate: 1/30 on each, and
    8/10 (starlette), 7/10 (click). A prompt missed costs little: the assistant can still call the
    `recall` tool."""
    from .address.dense import stored_encoder
    from .address.recall import DENSE_RELEVANT, Recaller
    from .text import query_terms

    out: dict[str, Any] = {"inject": False, "why": "", "specificity": None, "dense": None, "brief": "",
                           "recall_id": None}
    words = " ".join(prompt.split())[:8000]
    if not [t for t in query_terms(words) if t not in CHATTER]:
        out["why"] = "the prompt names nothing to recall"
        return out
    db = ws.connect()
    try:
        _ensure_indexed(ws, db)
        try:
            encoder = query_encoder(ws, stored_encoder(db, ws.config().models.encoder))
        except Exception:  # noqa: BLE001 - no encoder here (a broken install): the lexical gate decides
            encoder = None
        recaller = Recaller(db, ws.repo.root, encoder=encoder)
        ch, ev = recaller.channel_scores(words)
        named = bool(ch["mentions"])
        relevant = bool(ch["lexical"] or ch["names"] or ch["history"] or named or ev.dense_best >= DENSE_RELEVANT)
        if encoder is not None:
            out["dense"] = round(ev.dense_best, 3)
            specific = ev.dense_best >= DENSE_GATE
        else:
            out["specificity"] = round(_specificity(db, [t for t in query_terms(words) if t not in CHATTER]), 3)
            specific = out["specificity"] >= SPECIFIC
        if not relevant:
            out["why"] = "no memory of that"
        elif not (named or specific):
            out["why"] = "nothing specific enough"
        else:
            ans = _answer(ws, db, recaller, words, budget=budget, k=5, via="hook")
            if ans["files"] or ans["commits"] or ans["notes"]:
                out.update(inject=True, why="the prompt names it" if named else "specific evidence",
                           brief=ans["brief"], recall_id=ans["recall_id"], files=[f["path"] for f in ans["files"]])
            else:
                out["why"] = "no memory of that"
    finally:
        db.close()
    return out


def record_activity(ws: Workspace, paths: list[str], *, via: str) -> list[str]:
    """Note that these repository files were just edited (``store.activity``; recall's working set
    reads it), leaving out those ``.lmmignore`` matches. Returns the paths recorded."""
    from .privacy.ignore import IgnoreRules
    from .store.activity import record

    rules = IgnoreRules.load(ws.repo.root)
    keep = [p for p in dict.fromkeys(paths) if p and not rules.ignored(p)]
    if keep:
        db = ws.connect()
        try:
            record(db, keep, via)
        finally:
            db.close()
    return keep
