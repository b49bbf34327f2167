"""``Recaller(as_of=ts)``: recall as the memory stood at a moment — what training rounds judge a
candidate adapter with, on commits the recall had not seen yet. Real repository, real store."""

from __future__ import annotations

from pathlib import Path

from lmm_cli.address.recall import Recaller
from lmm_cli.workspace import open_workspace

from conftest import commit_file, git, lmm

DAY = 86_400
T0 = 1_700_000_000


def test_recall_as_of_a_moment_does_not_see_later_commits(tmp_path: Path) -> None:
    repo = tmp_path / "r"
    repo.mkdir()
    git(repo, "init", "-q")
    commit_file(repo, "src/ledger.py", "def post_entry(book):\n    return book\n", "Add the ledger", ts=T0)
    commit_file(repo, "src/report.py", "def render(rows):\n    return rows\n", "Add the report", ts=T0 + DAY)
    late = commit_file(repo, "src/report.py", "def render(rows):\n    return sorted(rows)\n",
                       "Quarterly reconciliation sorts report rows", ts=T0 + 5 * DAY)
    commit_file(repo, "src/ledger.py", "def post_entry(book):\n    return list(book)\n",
                "Ledger copies the book", ts=T0 + 6 * DAY)
    lmm("init", "--repo", str(repo), "--no-hooks")
    ws = open_workspace(repo)
    db = ws.connect()
    try:
        query = "quarterly reconciliation"
        now = Recaller(db, repo)
        then = Recaller(db, repo, as_of=T0 + 5 * DAY)  # the moment before the reconciliation commit
        ch_now, _ = now.channel_scores(query)
        ch_then, _ = then.channel_scores(query)
        assert "src/report.py" in ch_now["history"]  # today, the commit that said it is found …
        assert ch_then["history"] == {}  # … but not before it was made
        named = f"what did {late[:10]} change"
        assert "src/report.py" in now.channel_scores(named)[0]["mentions"]
        assert then.channel_scores(named)[0]["mentions"] == {}
        # The latest commits before the moment make the working set: the report, not the ledger's copy.
        assert max(then.priors()["recency"], key=then.priors()["recency"].__getitem__) == "src/report.py"
        assert max(now.priors()["recency"], key=now.priors()["recency"].__getitem__) == "src/ledger.py"
        # Reusing the query-only channels of an earlier call gives the same scores.
        again, _ = then.channel_scores(query, reuse=ch_then)
        assert again == ch_then
    finally:
        db.close()
