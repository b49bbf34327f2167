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


# =============================================================================
# Issue 9: every planted value, in every position, against every byte of the store and every
# output (recall text and --json, brief, log --json)
# =============================================================================

import json  # noqa: E402
import re  # noqa: E402
import sqlite3  # noqa: E402

from secrets_corpus import ALL_VALUES, CUT_HEADERS, NOTES, PLANTED  # noqa: E402

FILE_CAP = 6000  # under capture's 8 KiB of diff text per file, so nothing is cut away unseen


def _single_line_texts() -> list[str]:
    texts = [t for _, _, t in CORPUS + PLANTED if "\n" not in t]
    return list(dict.fromkeys(texts))


def _chunks(texts: list[str], cap: int = FILE_CAP) -> list[list[str]]:
    out: list[list[str]] = [[]]
    size = 0
    for t in texts:
        if size + len(t) > cap and out[-1]:
            out.append([])
            size = 0
        out[-1].append(t)
        size += len(t) + 20
    return out


def _commit(repo: Path, message: str, *, allow_empty: bool = False) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", *(["--allow-empty"] if allow_empty else []), "-F", "-", input=message)


def _visible(value: str, text: str) -> str:
    """What of ``value`` a text cut short still holds (the longest prefix of 8+ characters)."""
    for n in range(len(value), 7, -1):
        if value[:n] in text:
            return value[:n]
    return ""


def _plant_everywhere(repo: Path) -> dict[str, int]:
    """Commit every corpus value in every position capture reads; returns how many of each."""
    positions: dict[str, int] = {}
    singles = _single_line_texts()
    # 1. commit subjects
    for t in singles:
        _commit(repo, t + "\n", allow_empty=True)
    positions["subject"] = len(singles)
    # 2. a commit body holding every text, multi-line ones included
    everything = [t for _, _, t in CORPUS + PLANTED]
    _commit(repo, "Configure services\n\n" + "\n".join(everything) + "\n", allow_empty=True)
    positions["body"] = len(everything)
    # 3. added diff lines: files small enough to be kept whole
    for i, chunk in enumerate(_chunks(everything)):
        (repo / "added").mkdir(exist_ok=True)
        (repo / "added" / f"config{i}.py").write_text("\n".join(chunk) + "\n")
    _commit(repo, "Add configuration")
    positions["added line"] = len(everything)
    # 4. context lines and 5. hunk headers: written as binary first (a NUL byte: git shows no
    # diff), then made text, then changed next to them, so they appear only as context lines and
    # as the function line git prints (cut at 80 bytes) in hunk headers.
    ctx_dir, hdr_dir = repo / "context", repo / "headers"
    ctx_dir.mkdir()
    hdr_dir.mkdir()
    ctx_files: dict[Path, list[str]] = {}
    for i, chunk in enumerate(_chunks(everything, cap=FILE_CAP - 1500)):
        ctx_files[ctx_dir / f"ctx{i}.txt"] = chunk
    headers = {hdr_dir / "cut.py": [line for k, _, line in CUT_HEADERS if line.startswith("def ")],
               hdr_dir / "cut.js": [line for k, _, line in CUT_HEADERS if not line.startswith("def ")]}

    def context_text(chunk: list[str], n: int) -> str:
        out = []
        for j, t in enumerate(chunk):
            out += [f"marker_{j} = {n}", t]
        return "\n".join(out + [f"marker_end = {n}"]) + "\n"

    def header_text(lines: list[str], n: int) -> str:
        out = []
        for j, line in enumerate(lines):
            out += [line] + [f"    step_{j}_{k} = {k}" for k in range(12)] + [f"    changed_{j} = {n}", ""]
        return "\n".join(out)

    for n, prefix in ((0, "\0"), (1, ""), (2, "")):
        for f, chunk in ctx_files.items():
            f.write_text(prefix + context_text(chunk, n))
        for f, lines in headers.items():
            f.write_text(prefix + header_text(lines, n))
        _commit(repo, f"Context step {n}")
    positions["context line"] = len(everything)
    positions["hunk header"] = len(CUT_HEADERS)
    # 6. file names
    (repo / "named").mkdir()
    for value in FILENAME_SAFE:
        (repo / "named" / f"{value}.txt").write_text("x\n")
    _commit(repo, "Add named files")
    positions["file name"] = len(FILENAME_SAFE)
    return positions


def _db_bytes(store: Path) -> bytes:
    db = sqlite3.connect(store / "lmm.db")
    try:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()
    return store_bytes(store)


def _outputs(repo: Path) -> dict[str, str]:
    r = str(repo)
    out: dict[str, str] = {}
    for q in ("configure services credentials token password key", "connect unlock deploy callModel",
              "staging admin password", "named files"):
        out[f"recall {q}"] = lmm("recall", "--repo", r, "--fast", q).stdout
        out[f"recall --json {q}"] = lmm("recall", "--repo", r, "--fast", "--json", q).stdout
    out["brief"] = lmm("brief", "--repo", r).stdout
    out["brief --json"] = lmm("brief", "--repo", r, "--json").stdout
    out["log --json"] = lmm("log", "--repo", r, "--json", "--all", "-n", "100000").stdout
    out["log"] = lmm("log", "--repo", r, "--all", "-n", "100000").stdout
    return out


def test_every_planted_value_in_every_position_stays_out_of_store_and_outputs(tmp_path: Path) -> None:
    kinds = {k for k, _ in ALL_VALUES}
    assert len(ALL_VALUES) >= 100 and len(kinds) >= 40

    repo = make_repo(tmp_path / "r", commits=1)
    positions = _plant_everywhere(repo)
    lmm("init", "--repo", str(repo))
    # 7. branch names (the post-checkout hook records them), 8. notes
    branches = FILENAME_SAFE[:8]
    for value in branches:
        git(repo, "checkout", "-q", "-b", f"feature/{value}")
    git(repo, "checkout", "-q", "main")
    positions["branch name"] = len(branches)
    for _, _, text in NOTES:
        lmm("remember", "--repo", str(repo), text)
    lmm("remember", "--repo", str(repo), "\n".join(t for k, _, t in PLANTED if k == "prose"))
    positions["note"] = len(NOTES) + sum(1 for k, _, _ in PLANTED if k == "prose")
    wait_for_drain(repo)
    assert len(positions) >= 6

    store = store_dir(repo)
    data = _db_bytes(store)
    outputs = _outputs(repo)
    cut = {v: line.encode()[:80].decode("utf-8", "ignore") for _, v, line in CUT_HEADERS}
    leaks = []
    for kind, value in ALL_VALUES:
        needles = {value} | ({_visible(value, cut[value])} if value in cut else set())
        for needle in needles:
            if needle.encode() in data or needle.lower().encode() in data:  # FTS5 keeps words lower-cased
                leaks.append(f"{kind}: {needle[:24]}... in the store")
            leaks += [f"{kind}: {needle[:24]}... in `lmm {name}`" for name, text in outputs.items() if needle in text]
    assert not leaks, "\n".join(leaks)

    # The positions were really captured, redacted rather than dropped.
    db = sqlite3.connect(store / "lmm.db")
    try:
        hunks = "\n".join(h for (h,) in db.execute("SELECT hunks FROM episode_files WHERE hunks IS NOT NULL"))
        titles = [t for (t,) in db.execute("SELECT title FROM episodes WHERE kind = 'commit'")]
        notes = db.execute("SELECT count(*) FROM episodes WHERE kind = 'note'").fetchone()[0]
        checkouts = [t for (t,) in db.execute("SELECT title FROM episodes WHERE kind = 'checkout'")]
        truncated = db.execute("SELECT count(*) FROM episode_files WHERE truncated = 1").fetchone()[0]
    finally:
        db.close()
    assert truncated == 0, "a planted file was cut: its secrets were never seen"
    assert sum("[REDACTED:" in t for t in titles) >= len(_single_line_texts()) - 5
    for start in ("def connect(host, port", "def unlock(vault", "function deploy(", "async function callModel("):
        assert re.search(r"^@@ -[0-9,]+ \+[0-9,]+ @@ " + re.escape(start), hunks, re.M), start  # a hunk header
    assert len(re.findall(r"^ .*\[REDACTED:", hunks, re.M)) >= len(_single_line_texts()) // 2, \
        "the texts appear as context lines, redacted"
    assert "[REDACTED:private-key-body]" in hunks  # a key whose BEGIN line the hunk does not show
    assert notes == len(NOTES) + 1
    assert sum(1 for t in checkouts if t.startswith("checkout feature/[REDACTED:")) == len(branches)
    assert "[REDACTED:" in outputs["log --json"]
    entries = json.loads(outputs["log --json"])
    assert {e["kind"] for e in entries} >= {"commit", "note", "checkout"}
