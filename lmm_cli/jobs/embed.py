"""The store's first embedding, in the background: ``python -m lmm_cli.jobs.embed STORE_DIR``.

`lmm init` captures the history and builds the code index (recall works from then on, with its
lexical, names and history channels), then starts this detached and returns. It embeds every text
the dense channel searches that has no vector yet, then fits recall's fusion weights when a fit is
due (``model.fusion``), then runs the first training round when one is due (``model.rounds``, where
that module exists). Progress goes to the store's ``state`` table (``address.build.EMBED_STATE``:
done and total texts, phase, pid) for `lmm status` and recall's warming-up note.

Low priority (nice 15), a bounded number of threads (``THREADS``, set before torch loads), one at a
time per store (the ``embed`` lock), resumable: each batch of vectors is committed as it is made, so
a killed run loses at most one batch and the next run (the next capture starts it, or `lmm daemon`)
goes on from there. Texts that arrive while it runs are embedded before it moves on. Logs to
``logs/embed.log``; always exits 0. ``lmm daemon`` runs the same ``work`` in its own process.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import LmmError
from ..store.lock import CaptureLock
from ..workspace import Workspace, workspace_from_store
from ._run import log, start

__all__ = ["main", "work", "embed_pending", "limit_threads", "THREADS", "LOCK_NAME", "Stopped"]

THREADS = 2  # CPU threads of a background job (LMM_JOB_THREADS overrides): the user's machine stays theirs
LOCK_NAME = "embed"  # embed.lock: one background embedding per store
_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
                "VECLIB_MAXIMUM_THREADS", "RAYON_NUM_THREADS")


class Stopped(KeyboardInterrupt):
    """Asked to stop (SIGTERM, or the daemon's stop): unwinds like Ctrl-C, so every ``finally`` runs."""


def limit_threads(n: int | None = None) -> int:
    """Bound the threads of the numeric libraries, before they load (OpenMP, MKL, OpenBLAS, the
    tokenizers' pool), and torch's if it is already loaded. Returns the bound."""
    if n is None:
        try:
            n = max(1, int(os.environ.get("LMM_JOB_THREADS", THREADS)))
        except ValueError:
            n = THREADS
    for var in _THREAD_VARS:
        os.environ[var] = str(n)
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            torch.set_num_threads(n)
        except Exception:  # noqa: BLE001 - a torch that refuses keeps its own
            pass
    return n


Say = Callable[[str], None]


def _check(stop: threading.Event | None) -> None:
    if stop is not None and stop.is_set():
        raise Stopped()


def embed_pending(ws: Workspace, *, say: Say | None = None, stop: threading.Event | None = None) -> dict[str, Any]:
    """Embed every text the dense channel searches that has no vector yet, recording progress per
    batch; again while new texts arrived meanwhile. Returns {embedded, total, seconds}."""
    from ..address.build import embedding_counts, embedding_items, record_embedding
    from ..address.dense import embed_missing
    from ..embed.encoder import load_encoder

    say = say or (lambda _m: None)
    t0 = time.monotonic()
    db = ws.connect()
    try:
        name = ws.config().models.encoder
        encoder = load_encoder(name)  # the numpy path: its id, and a cheap look at what is missing
        have, total = embedding_counts(db, encoder.id)
        record_embedding(db, model=encoder.id, done=have, total=total, pid=os.getpid(), phase="embedding",
                         finished=None, error=None, **({} if have < total else {"finished": time.time()}))
        embedded = 0
        if have < total:
            _check(stop)
            limit_threads()
            bulk = load_encoder(name, fast=False)  # sentence-transformers: about twice as fast in bulk
            limit_threads()  # torch is loaded now: bound its own pool too
            say(f"embedding {total - have} of {total} texts with {bulk.id}")
            while True:
                def progress(done: int, _todo: int, base: int = have, of: int = total) -> None:
                    record_embedding(db, done=base + done, total=of)
                    _check(stop)

                n = embed_missing(db, bulk, embedding_items(db), progress=progress)
                embedded += n
                have, total = embedding_counts(db, encoder.id)
                if n == 0 or have >= total:
                    break
                say(f"{total - have} texts arrived meanwhile; embedding them")
        record_embedding(db, done=have, total=total, finished=time.time())
        seconds = round(time.monotonic() - t0, 1)
        say(f"embedded {embedded} texts in {seconds}s ({have} of {total} have vectors)")
        return {"embedded": embedded, "total": total, "seconds": seconds}
    finally:
        db.close()


def _rounds() -> Any:
    """``model.rounds`` when it exists (None before it lands, or when it is broken)."""
    import importlib

    try:  # by name: the module is being written beside this one, and may not be there yet
        rounds = importlib.import_module("lmm_cli.model.rounds")
    except ImportError:
        return None
    return rounds if hasattr(rounds, "round_due") and hasattr(rounds, "run_round") else None


def fit_if_due(ws: Workspace, say: Say, starting: Callable[[], None] | None = None) -> dict[str, Any] | None:
    """Fit recall's fusion weights when a fit is due (``model.fusion.due``); the outcome, or None.
    ``starting()`` is called once it is known to be due."""
    from ..model.fusion import TuneBusy, due, record_failure, tune_store

    db = ws.connect()
    try:
        if not due(ws, db):
            return None
    finally:
        db.close()
    if starting is not None:
        starting()
    say("fitting recall's weights")
    try:
        out: dict[str, Any] = tune_store(ws, say=say)
    except TuneBusy:
        say("fit busy: another tune is running")
        return None
    except KeyboardInterrupt:
        raise
    except Exception as e:  # noqa: BLE001 - recorded, so the next capture does not retry at once
        say(f"fit error {type(e).__name__}: {str(e)[:300]}")
        record_failure(ws, f"{type(e).__name__}: {str(e)[:200]}")
        return None
    say(f"fit {out.get('status')} queries={out.get('queries', 0)}")
    return out


def train_if_due(ws: Workspace, say: Say, starting: Callable[[], None] | None = None) -> dict[str, Any] | None:
    """Run one training round when ``model.rounds.round_due`` says so; its outcome, or None.
    ``starting()`` is called once it is known to be due."""
    rounds = _rounds()
    if rounds is None:
        return None
    db = ws.connect()
    try:
        if not rounds.round_due(ws, db):
            return None
    finally:
        db.close()
    if starting is not None:
        starting()
    say("training round")
    out: dict[str, Any] = rounds.run_round(ws, say=say)
    say(f"round {out.get('status', out.get('outcome', 'done'))}")
    return out


def work(ws: Workspace, *, say: Say | None = None, stop: threading.Event | None = None,
         fit: bool = True, train: bool = True) -> dict[str, Any]:
    """Embed what is missing, then (``fit``) the fusion fit and (``train``) a training round when
    due, recording each phase. The caller holds the ``embed`` lock."""
    from ..address.build import record_embedding

    say = say or (lambda _m: None)
    out: dict[str, Any] = {"embedding": embed_pending(ws, say=say, stop=stop)}
    for phase, run, on in (("fitting", fit_if_due, fit), ("training", train_if_due, train)):
        _check(stop)
        if not on:
            continue

        def starting(phase: str = phase) -> None:
            db = ws.connect()
            try:
                record_embedding(db, phase=phase)
            finally:
                db.close()

        try:
            out[phase] = run(ws, say, starting)
        except KeyboardInterrupt:
            raise
        except Exception as e:  # noqa: BLE001 - one phase failing leaves the others their turn
            say(f"{phase} error {type(e).__name__}: {str(e)[:300]} {traceback.format_exc(limit=3)!r}")
            out[phase] = {"status": "failed", "reason": f"{type(e).__name__}: {str(e)[:200]}"}
    db = ws.connect()
    try:
        record_embedding(db, phase="done", pid=None)
    finally:
        db.close()
    return out


def _record_error(ws: Workspace, msg: str) -> None:
    from ..address.build import record_embedding

    try:
        db = ws.connect()
        try:
            record_embedding(db, error=msg, pid=None)
        finally:
            db.close()
    except Exception:  # noqa: BLE001
        pass


def main(argv: list[str] | None = None) -> int:
    limit_threads()  # before anything loads numpy or torch
    store = start(argv, nice=15)
    if store is None:
        return 0

    def say(msg: str) -> None:
        log(store, "embed", msg)

    def terminate(signum: int, _frame: Any) -> None:
        raise Stopped()

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, terminate)
    lock = CaptureLock(Path(store), LOCK_NAME)
    try:
        if not lock.acquire():
            say("busy: another embedding job is running")
            return 0
    except LmmError as e:
        say(f"no lock: {e}")
        return 0
    try:
        ws = workspace_from_store(store)
    except (OSError, ValueError, KeyError, LmmError) as e:  # the repository is gone or moved meanwhile
        say(f"no repository: {type(e).__name__}: {str(e)[:200]}")
        lock.release()
        return 0
    say("start")
    try:
        work(ws, say=say)
        say("end")
    except KeyboardInterrupt:
        say("stopped by a signal; what was embedded is kept, the next run goes on from there")
        _record_error(ws, "stopped")
    except Exception as e:  # noqa: BLE001 - a background job never fails; the log and status say why
        say(f"error {type(e).__name__}: {str(e)[:300]} {traceback.format_exc(limit=3)!r}")
        _record_error(ws, f"{type(e).__name__}: {str(e)[:200]}")
    finally:
        lock.release()
    return 0


if __name__ == "__main__":
    sys.exit(main())
