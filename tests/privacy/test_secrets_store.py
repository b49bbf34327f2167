"""End to end: secrets planted in commit messages, diffs, file names, notes and rewrites never
reach a byte of the store folder — whether captured by the backfill or by the hooks."""

from __future__ import annotations

from pathlib import Path

from conftest import (
    commit_file,
    git,
    lmm,
    lmm_json,
    make_repo,
    store_dir,
    wait_for_drain,
)
from secrets_corpus import CORPUS, FILENAME_SAFE

ENV_ONLY = "envfile-value-q8Zt3"  # no rule matches this: only "secret files keep no content" hides it
IGNORED_CONTENT = "ignored-content-w4Kp9"
IGNORED_NAME = "ignored-name-m2Jx7"


def plant(repo: Path, tag: str) -> None:
    body = "\n".join(text for _, _, text in CORPUS) + "\n"
    (repo / tag).mkdir()
    (repo / tag / "settings.py").write_text(body)
    for i, value in enumerate(FILENAME_SAFE):
        (repo / tag / f"{value}.txt").write_text(f"file {i}\n")
    (repo / tag / ".env").write_text(f"APP_MODE={ENV_ONLY}\n")
    (repo / "private").mkdir(exist_ok=True)
    (repo / "private" / f"{IGNORED_NAME}-{tag}.txt").write_text(IGNORED_CONTENT + "\n")
    git(repo, "add", "-A")
    message = f"Configure {tag}\n\n" + body
    git(repo, "commit", "-q", "-F", "-", input=message)


def store_bytes(store: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(store.rglob("*")) if p.is_file())


def test_no_planted_secret_reaches_the_store(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", commits=1)
    commit_file(repo, ".lmmignore", "private/\n", "Ignore private notes")
    plant(repo, "backfilled")
    lmm("init", "--repo", str(repo))
    plant(repo, "hooked")  # captured by the post-commit hook and the background drainer
    secret_message = "Rotate keys\n\n" + "\n".join(t for _, _, t in CORPUS[:10])
    git(repo, "commit", "-q", "--amend", "-F", "-", input=secret_message)  # post-rewrite path too
    wait_for_drain(repo)
    for _, value, text in CORPUS[:5]:
        lmm("remember", "--repo", str(repo), f"remember this: {text}")

    store = store_dir(repo)
    data = store_bytes(store)
    leaked = sorted({kind for kind, value, _ in CORPUS if value.encode() in data})
    assert not leaked, f"secrets found in the store: {leaked}"
    assert ENV_ONLY.encode() not in data
    assert IGNORED_CONTENT.encode() not in data and IGNORED_NAME.encode() not in data

    # And the capture really happened: the commits, the redacted text and the file names are there.
    entries = lmm_json("log", "--repo", str(repo), "-n", "50", "--all")
    titles = {e["title"] for e in entries}  # type: ignore[union-attr,index]
    assert {"Configure backfilled", "Configure hooked", "Rotate keys"} <= titles
    files = {f["path"]: f for e in entries for f in e["files"]}  # type: ignore[union-attr,index]
    assert files["backfilled/.env"]["secret"] == 1 and files["hooked/.env"]["secret"] == 1
    assert "backfilled/settings.py" in files and not any(p.startswith("private/") for p in files)
    assert sum(1 for p in files if p.startswith("hooked/[REDACTED:")) == len(FILENAME_SAFE)
    assert data.count(b"[REDACTED:") >= 2 * len(CORPUS)
