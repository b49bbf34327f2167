"""Recall on a repository with a known story: a module renamed, a bug fixed twice in one file, a
decision reversed. The right file comes first, the right commits are cited, the budget holds,
an unrelated question gets "no memory", and no citation points at something that does not exist."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import commit_file, git, lmm, lmm_json, module_environment

FILES = {
    "src/auth/login.py": "def login(user, password):\n    return check_password(user, password)\n\n"
                         "def reset_password(user):\n    send_reset_email(user)\n",
    "src/billing/invoice.py": "def invoice_total(lines):\n    total = sum(l.amount for l in lines)\n    return round(total, 2)\n",
    "src/cache/db_cache.py": "class DatabaseCache:\n    def get(self, key):\n        return self.table.get(key)\n",
    "src/upload/client.py": "class UploadClient:\n    def upload(self, blob):\n        return self.session.post(blob)\n",
    "docs/guide.md": "# Guide\n\nHow to run the service locally.\n",
}


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    base = tmp_path_factory.mktemp("story")
    with module_environment(base):
        yield _tell_story(base / "repo")


def _tell_story(repo: Path) -> Path:
    repo.mkdir()
    git(repo, "init", "-q")
    for path, text in FILES.items():
        commit_file(repo, path, text, f"Add {path}")
    commit_file(repo, "src/auth/login.py", FILES["src/auth/login.py"] + "\ndef expire_reset_token(token):\n    token.expire()\n",
                "Expire password reset tokens after use")
    commit_file(repo, "src/billing/invoice.py", FILES["src/billing/invoice.py"].replace("round(total, 2)", "round(total + 0.0, 2)"),
                "Fix rounding in invoice totals")
    commit_file(repo, "src/cache/redis_cache.py", "class RedisCache:\n    def get(self, key):\n        return self.redis.get(key)\n",
                "Use redis for the session cache\n\nDatabase lookups were slow under load.")
    commit_file(repo, "src/upload/client.py", FILES["src/upload/client.py"] + "\n    def retry(self):\n        pass\n",
                "Add retry backoff to upload client")
    git(repo, "mv", "src/auth", "src/identity")
    git(repo, "commit", "-q", "-m", "Move auth package to identity")
    git(repo, "rm", "-q", "src/cache/redis_cache.py")
    (repo / "src/cache/db_cache.py").write_text(FILES["src/cache/db_cache.py"] + "\n    def warm(self):\n        pass\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "Drop redis: sessions go back to the database cache\n\nRedis added ops burden for little gain.")
    commit_file(repo, "src/billing/invoice.py", FILES["src/billing/invoice.py"].replace("round(total, 2)", "round(total, 2) or 0"),
                "Fix invoice total rounding for refunds")
    lmm("init", "--repo", str(repo), "--no-hooks")
    return repo


@pytest.fixture(autouse=True)
def isolated() -> None:  # the module fixture above owns the environment; override conftest's
    return None


def sha_of(repo: Path, subject: str) -> str:
    return git(repo, "log", "--format=%H", f"--grep=^{re.escape(subject)}$", "-n", "1").strip()


def cited_refs(brief: str) -> list[str]:
    return re.findall(r"`([^`]+)`", " ".join(line.split(" (", 1)[-1] for line in brief.splitlines() if line.startswith("- ")))


def assert_citations_exist(repo: Path, brief: str) -> None:
    for line in brief.splitlines():
        if not line.startswith("- "):
            continue
        m = re.search(r"\(([^()]*)\)$", line)
        assert m, f"uncited line printed: {line}"
        for ref in re.findall(r"`([^`]+)`", m.group(1)):
            if re.fullmatch(r"[0-9a-f]{7,40}", ref):
                assert subprocess.run(["git", "cat-file", "-e", ref + "^{commit}"], cwd=repo).returncode == 0, ref
            elif ref.startswith("note "):
                continue
            else:
                path, _, ln = ref.partition(":")
                f = repo / path
                assert f.is_file(), f"cited file does not exist: {ref}"
                if ln:
                    assert 1 <= int(ln) <= len(f.read_text().splitlines()) + 1, ref


@pytest.mark.parametrize("fast", [False, True], ids=["full", "fast"])
def test_bug_fixed_twice_ranks_the_file_first_and_cites_both_fixes(story: Path, fast: bool) -> None:
    args = ["recall", "--repo", str(story), "invoice total rounding"] + (["--fast"] if fast else [])
    out = lmm_json(*args)
    assert out["files"][0]["path"] == "src/billing/invoice.py"  # type: ignore[index]
    assert out["files"][0]["why"]  # type: ignore[index]
    shas = {c["sha"] for c in out["commits"]}  # type: ignore[index]
    assert {sha_of(story, "Fix rounding in invoice totals"), sha_of(story, "Fix invoice total rounding for refunds")} <= shas
    assert "What tends to break" in out["brief"] and "2 fixes" in out["brief"]  # type: ignore[index]
    assert_citations_exist(story, out["brief"])  # type: ignore[arg-type]
    assert out["facts"] == [] and out["query"] == "invoice total rounding"  # type: ignore[index]


def test_renamed_module_is_found_under_its_current_name(story: Path) -> None:
    out = lmm_json("recall", "--repo", str(story), "password reset tokens")
    assert out["files"][0]["path"] == "src/identity/login.py"  # type: ignore[index]
    assert sha_of(story, "Expire password reset tokens after use") in {c["sha"] for c in out["commits"]}  # type: ignore[index]
    assert not any(f["path"].startswith("src/auth/") for f in out["files"])  # type: ignore[index]


def test_reversed_decision_is_told_with_its_reason(story: Path) -> None:
    out = lmm_json("recall", "--repo", str(story), "why did we drop redis")
    drop = sha_of(story, "Drop redis: sessions go back to the database cache")
    assert out["commits"][0]["sha"] == drop  # type: ignore[index]
    assert "Redis added ops burden" in out["brief"]  # type: ignore[index]
    assert out["files"][0]["path"] == "src/cache/db_cache.py"  # type: ignore[index]  # the redis file is gone
    assert_citations_exist(story, out["brief"])  # type: ignore[arg-type]


def test_unrelated_question_gets_no_memory(story: Path) -> None:
    out = lmm_json("recall", "--repo", str(story), "quantum chromodynamics lattice gauge")
    assert out["files"] == [] and out["commits"] == []  # type: ignore[index]
    assert out["brief"].startswith("No memory of that")  # type: ignore[index]
    assert "No memory of that" in lmm("recall", "--repo", str(story), "quantum chromodynamics lattice gauge").stdout


@pytest.mark.parametrize("budget", [60, 150, 400])
def test_budget_is_honoured_with_a_real_tokenizer(story: Path, budget: int) -> None:
    from lmm_cli.brief.tokens import count_tokens

    out = lmm_json("recall", "--repo", str(story), "invoice rounding upload retry cache", "--budget", str(budget))
    assert out["tokens"] <= budget and count_tokens(out["brief"]) <= budget  # type: ignore[index,arg-type]
    assert out["brief"].count("\n- ") >= 1  # type: ignore[union-attr]  # still says something useful
    assert_citations_exist(story, out["brief"])  # type: ignore[arg-type]


def test_bad_recall_input(story: Path) -> None:
    p = lmm("recall", "--repo", str(story), "  ", check=False)
    assert p.returncode == 2 and p.stderr.startswith("lmm: recall needs a query")
    p = lmm("recall", "--repo", str(story), "x", "--budget", "3", check=False)
    assert p.returncode == 2 and "--budget" in p.stderr


def test_brief_write_is_idempotent_and_keeps_human_text(story: Path, tmp_path: Path) -> None:
    target = tmp_path / "CLAUDE.md"
    target.write_text("# My notes\n\nKeep this line.\n")
    lmm("brief", "--repo", str(story), "--write", str(target))
    first = target.read_bytes()
    assert first.startswith(b"# My notes\n\nKeep this line.\n") and b"<!-- lmm:begin" in first
    out = lmm_json("brief", "--repo", str(story), "--write", str(target))
    assert out["changed"] is False and target.read_bytes() == first  # type: ignore[index]
    target.write_bytes(first + b"\nMore human text after.\n")
    lmm("brief", "--repo", str(story), "--write", str(target))
    assert target.read_bytes().endswith(b"\nMore human text after.\n")
    text = lmm("brief", "--repo", str(story), "--budget", "500").stdout
    assert_citations_exist(story, text)


def test_the_channels_are_the_same_whether_the_history_sql_runs_beside_the_encoder_or_not(
        story: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With two cores the history channel's SQL runs on a second connection, on a thread of its own,
    while the query is encoded. What recall finds must not depend on it, and a write this
    connection has not committed yet (which the second connection cannot see) must still count."""
    import os

    from lmm_cli.address.dense import stored_encoder
    from lmm_cli.address.recall import Recaller
    from lmm_cli.store.episodes import Episode, FileChange, insert_episode
    from lmm_cli.workspace import open_workspace

    repo = _tell_story(tmp_path / "repo")  # the same story, embedded (the module's store is not)
    lmm("ingest", "--repo", str(repo), embed=True)
    ws = open_workspace(repo)
    db = ws.connect()
    try:
        encoder = stored_encoder(db, ws.config().models.encoder)
        assert encoder is not None
        queries = ["invoice total rounding", "why was redis dropped", "login password reset", "upload retry"]
        beside = Recaller(db, repo, encoder=encoder)
        assert beside._side_db() is not None  # the two-thread path is the one taken here
        two = [beside.channel_scores(q) for q in queries]
        monkeypatch.setattr(os, "cpu_count", lambda: 1)
        one = [Recaller(db, repo, encoder=encoder).channel_scores(q) for q in queries]
        for (ch2, ev2), (ch1, ev1) in zip(two, one):
            assert ch2 == ch1 and ch2["history"] and ch2["dense"]
            assert {k: s for k, (s, _row) in ev2.episodes.items()} == {k: s for k, (s, _row) in ev1.episodes.items()}
        monkeypatch.undo()

        db.execute("BEGIN IMMEDIATE")
        try:
            eid = insert_episode(db, Episode(
                kind="note", source="note:uncommitted", ts=2e9, title="the zebra quota lives in the invoice module",
                body="", files=[FileChange(path="src/billing/invoice.py", status="N", added=None, deleted=None)],
                provenance={"capture": "test"}))
            ch, ev = Recaller(db, repo, encoder=encoder).channel_scores("zebra quota")
            assert eid in ev.episodes and ev.episodes[eid][0] > 0 and "src/billing/invoice.py" in ch["history"]
        finally:
            db.execute("ROLLBACK")
    finally:
        db.close()
