"""Replay: held-out queries and gold sets, message cleaning, metrics and the worktree at the cut — on
a small real repository with a known story."""

from __future__ import annotations

from pathlib import Path

import pytest

from lmm_cli.model import replay as R

from conftest import git
from stories import Story, edit, make_story


@pytest.fixture
def story(tmp_path: Path) -> Story:
    return make_story(tmp_path)


# --------------------------------------------------------------------------- held_out


def test_held_out_picks_first_parent_non_merge_commits_and_gold(story: Story) -> None:
    cut, queries = R.held_out(story.repo, 4)
    assert cut == story.cut
    assert [q.sha for q in queries] == [story.h1, story.h3, story.h4]  # oldest first; h2 dropped
    gold = {q.sha: q.gold for q in queries}
    assert gold[story.h1] == {"billing/invoice.py"}
    assert gold[story.h3] == {"docs/old_notes.md", "auth/session.py"}  # the old path of a rename is gold
    assert gold[story.h4] == {"auth/session.py"}  # payments.py was created after the cut: not gold
    assert queries[0].text == "Fix invoice total rounding"
    assert queries[2].text == "Refresh the session token on expiry"
    full = R.held_out_full(story.repo, 4)
    assert full.dropped_no_gold == [story.h2] and full.commits == 4


def test_held_out_renamed_after_cut_maps_back(story: Story) -> None:
    # a commit after the cut modifying a file under the name it got after the cut counts it under
    # its name at the cut
    repo = story.repo
    git(repo, "mv", "billing/ledger.py", "billing/books.py")
    git(repo, "commit", "-q", "-m", "Rename ledger to books")
    h5 = edit(repo, "billing/books.py", "\n# posted daily\n", "Post the ledger daily")
    _, queries = R.held_out(repo, 6)
    gold = {q.sha: q.gold for q in queries}
    assert gold[h5] == {"billing/ledger.py"}


def test_held_out_longer_than_history_drops_the_root(story: Story) -> None:
    count = int(git(story.repo, "rev-list", "--count", "--first-parent", "--no-merges", "HEAD"))
    full = R.held_out_full(story.repo, 1000)
    assert full.commits == count - 1
    root = git(story.repo, "rev-list", "--max-parents=0", "HEAD").strip()
    assert full.cut == root


def test_history_before_and_files_at(story: Story) -> None:
    hist = R.history_before(story.repo, story.cut)
    assert hist[-1].sha == story.cut and len(hist) == 9
    assert hist[0].message == "Add invoices with totals" and hist[0].files == ["billing/invoice.py"]
    move = next(h for h in hist if h.message.startswith("Move the tokens"))
    assert move.renames == [("auth/tokens.py", "auth/session.py")] and move.files == ["auth/session.py"]
    files = R.files_at(story.repo, story.cut)
    assert files == sorted(["billing/invoice.py", "billing/ledger.py", "auth/session.py", "util/strings.py",
                            "docs/old_notes.md"])


# --------------------------------------------------------------------------- clean_message


@pytest.mark.parametrize("msg, want", [
    ("Fix invoice total rounding (#42)\n\nSigned-off-by: A <a@b.c>\nChange-Id: I12ab", "Fix invoice total rounding"),
    ("Merge pull request #12 from acme/invoice-fix\n\nFix invoice rounding", "Fix invoice rounding"),
    ("session token: refresh on expiry\n\nFixes #45, closes acme/app#7.\n\nCo-authored-by: B <b@c.d>\n"
     "Reviewed-by: C <c@d.e>", "session token: refresh on expiry"),
    ("Bump parser (GH-77)\n\nSee https://github.com/acme/app/pull/77 for details.",
     "Bump parser\n\nSee for details."),
    ("Handle empty carts\n\nThe cart: fails when empty.", "Handle empty carts\n\nThe cart: fails when empty."),
    ("Tidy\n\nBug: 1234\nReviewed-on: https://review/1", "Tidy"),
    ("Port fix to 2.x\n\n(cherry picked from commit 0123456789abcdef0123456789abcdef01234567)", "Port fix to 2.x"),
])
def test_clean_message(msg: str, want: str) -> None:
    assert R.clean_message(msg) == want


# --------------------------------------------------------------------------- metrics


def test_evaluate_metrics_on_a_hand_computed_example() -> None:
    queries = [
        R.Query("1", "q1", {"a"}),
        R.Query("2", "q2", {"b", "x"}),
        R.Query("3", "q3", {"z"}),
        R.Query("4", "q4", {"e"}),
        R.Query("5", "q5", {"deep"}),
    ]
    out = {
        "q1": ["a", "b", "c"],                                          # first gold at 1
        "q2": ["c", "c", "d", "b", "e", "f", "g", "h", "i", "j", "k", "x"],  # dup c counts once: b at 3, x at 11
        "q3": ["a", "b"],                                               # none
        "q4": ["p1", "p2", "p3", "p4", "p5", "e"],                      # at 6
        "q5": [f"f{i}" for i in range(150)] + ["deep"],                 # beyond depth 100: a miss
    }
    row = R.evaluate("fake", lambda q: out[q], queries, k=10, depth=100)
    assert row.n == 5
    assert row.first_rank == [1, 3, 0, 6, 0]
    assert row.hit1 == pytest.approx(1 / 5)
    assert row.hit5 == pytest.approx(2 / 5)
    assert row.hit10 == pytest.approx(3 / 5)
    assert row.recall == pytest.approx((1 + 0.5 + 0 + 1 + 0) / 5)
    assert row.recalls == pytest.approx([1, 0.5, 0, 1, 0])
    assert row.mrr == pytest.approx((1 + 1 / 3 + 0 + 1 / 6 + 0) / 5)
    assert row.p50_ms >= 0 and row.p95_ms >= row.p50_ms


def test_percentile() -> None:
    assert R.percentile([1.0, 2.0, 3.0, 4.0], 50) == pytest.approx(2.5)
    assert R.percentile([float(i) for i in range(1, 101)], 95) == pytest.approx(95.05)
    assert R.percentile([], 50) == 0.0


def test_tune_split_keeps_time_order() -> None:
    qs = [R.Query(str(i), f"q{i}", {"a"}) for i in range(7)]
    early, late = R.tune_split(qs, 0.5)
    assert [q.sha for q in early] + [q.sha for q in late] == [str(i) for i in range(7)]
    assert len(early) == 4 and len(late) == 3  # round(3.5) = 4


# --------------------------------------------------------------------------- worktree


def test_worktree_at_is_removed_even_when_the_body_raises(story: Story) -> None:
    seen: list[Path] = []
    with pytest.raises(RuntimeError, match="boom"):
        with R.worktree_at(story.repo, story.cut) as wt:
            seen.append(wt)
            assert (wt / "docs/old_notes.md").is_file() and not (wt / "billing/payments.py").exists()
            assert git(wt, "rev-parse", "HEAD").strip() == story.cut
            raise RuntimeError("boom")
    assert not seen[0].exists() and not seen[0].parent.exists()
    assert len(git(story.repo, "worktree", "list", "--porcelain").split("\nworktree ")) == 1
    assert git(story.repo, "status", "--porcelain") == ""


def test_worktree_at_does_not_run_the_repositorys_hooks(story: Story) -> None:
    hook = story.repo / ".git/hooks/post-checkout"
    marker = story.repo.parent / "hook-ran"
    hook.write_text(f"#!/bin/sh\ntouch {marker}\n")
    hook.chmod(0o755)
    with R.worktree_at(story.repo, story.cut):
        pass
    assert not marker.exists()


