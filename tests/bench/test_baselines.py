"""The baselines' harness and the four baselines, on the same story."""

from __future__ import annotations

from pathlib import Path

import pytest

from lmm_cli.bench import baselines as B
from lmm_cli.bench import localize as L
from lmm_cli.model import replay as R
from lmm_cli.text import query_terms

from conftest import git
from stories import Story, make_story


@pytest.fixture
def story(tmp_path: Path) -> Story:
    return make_story(tmp_path)


# --------------------------------------------------------------------------- run + markdown


class Recorder:
    name = "recorder"

    def build(self, root: Path, files: list[str], history: list[R.HistoryCommit]) -> None:
        self.files = files
        self.history = history
        self.saw_notes = (root / "docs/old_notes.md").is_file()
        self.saw_payments = (root / "billing/payments.py").exists()

    def rank(self, query: str, k: int = 10) -> list[str]:
        return ["billing/invoice.py", "auth/session.py"][:k]


def test_run_builds_from_the_cut_only_and_prints_one_table(story: Story) -> None:
    rec = Recorder()
    report = L.run(story.repo, 4, [rec, B.BM25Contents()])
    assert report.cut == story.cut and report.queries == 3 and report.dropped_no_gold == 1
    assert rec.saw_notes and not rec.saw_payments
    assert "billing/payments.py" not in rec.files and rec.history[-1].sha == story.cut
    assert all(h.sha not in (story.h1, story.side) for h in rec.history)
    row = report.rows[0]
    assert row.name == "recorder" and row.first_rank == [1, 2, 2]
    assert row.hit1 == pytest.approx(1 / 3) and row.hit5 == 1.0
    table = L.markdown(report)
    lines = [ln for ln in table.splitlines() if ln.startswith("|")]
    assert lines[0].startswith("| System | Hit@1 | Hit@5 | Hit@10 | Recall@10 | MRR |")
    assert len(lines) == 2 + 2 and "| recorder | 0.333 |" in table and "BM25 contents" in table
    # the worktree is gone
    assert len(git(story.repo, "worktree", "list", "--porcelain").split("\nworktree ")) == 1


def test_run_keep_going_reports_a_failing_system(story: Story) -> None:
    class Broken:
        name = "broken"

        def build(self, root: Path, files: list[str], history: list[R.HistoryCommit]) -> None:
            raise ValueError("no index")

        def rank(self, query: str, k: int = 10) -> list[str]:
            return []

    report = L.run(story.repo, 4, {"broken": Broken()}, keep_going=True)
    assert report.rows[0].error == "ValueError: no index"
    assert "| broken | —" in L.markdown(report)
    with pytest.raises(ValueError):
        L.run(story.repo, 4, [Broken()])


def test_main_prints_the_table(story: Story, capsys: pytest.CaptureFixture[str]) -> None:
    assert L.main(["--repo", str(story.repo), "--holdout", "4", "--systems", "bm25,history", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "| BM25 contents |" in out and "| BM25 path+history |" in out and "3 queries" in out


# --------------------------------------------------------------------------- baselines


def test_doc_terms_tokenise_like_queries() -> None:
    text = "def refreshSessionToken(http_client): return parseHTTPResponse_v2(x) # the invoice"
    assert set(B.doc_terms(text)) == set(query_terms(text))
    assert B.doc_terms("token token refreshToken").count("token") == 3
    assert B.path_terms("web/CartView.tsx") == ["web", "cartview", "cart", "view", "tsx"]


def test_follow_renames_carries_a_files_commits_to_its_new_path() -> None:
    hist = [
        R.HistoryCommit("1", "add", ["a/old.py", "b.py"]),
        R.HistoryCommit("2", "edit old", ["a/old.py"]),
        R.HistoryCommit("3", "move", ["a/new.py"], [("a/old.py", "a/new.py")]),
        R.HistoryCommit("4", "edit new", ["a/new.py"]),
        R.HistoryCommit("5", "merge", []),
    ]
    got = B.follow_renames(hist, ["a/new.py", "b.py", "c.py"])
    assert got == {"a/new.py": [0, 1, 2, 3], "b.py": [0], "c.py": []}


def test_read_text_skips_binary_and_large_files(tmp_path: Path) -> None:
    (tmp_path / "bin.dat").write_bytes(b"\x89PNG\0\0data")
    (tmp_path / "big.txt").write_text("x" * (B.MAX_FILE_BYTES + 1))
    (tmp_path / "ok.py").write_text("print('hi')\n")
    assert B.read_text(tmp_path, "bin.dat") is None
    assert B.read_text(tmp_path, "big.txt") is None
    assert B.read_text(tmp_path, "missing.py") is None
    assert B.read_text(tmp_path, "ok.py") == "print('hi')\n"


@pytest.fixture(scope="module")
def encoder():  # the packaged model, loaded once for the module; nothing is downloaded
    try:
        return B.default_encoder()
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"packaged sentence encoder unavailable: {e}")


@pytest.fixture
def cut_tree(story: Story):
    hist = R.history_before(story.repo, story.cut)
    files = R.files_at(story.repo, story.cut)
    with R.worktree_at(story.repo, story.cut) as root:
        yield root, files, hist


OBVIOUS = [
    ("invoice total rounding", "billing/invoice.py"),
    ("refresh the session token of a login", "auth/session.py"),
]


@pytest.mark.parametrize("make", [B.BM25Contents, B.BM25PathHistory, B.RepoMap,
                                  lambda: B.RepoMap(damping=0.85)],
                         ids=["bm25-contents", "bm25-path-history", "repomap", "repomap-0.85"])
def test_baselines_rank_the_obvious_file_first(make, cut_tree) -> None:
    root, files, hist = cut_tree
    system = make()
    system.build(root, files, hist)
    for query, want in OBVIOUS:
        ranked = system.rank(query, 5)
        assert ranked[0] == want, (system.name, query, ranked)
        assert len(ranked) <= 5 and len(set(ranked)) == len(ranked)
        assert set(ranked) <= set(files)


def test_dense_chunks_ranks_the_obvious_file_first(encoder, cut_tree) -> None:
    root, files, hist = cut_tree
    system = B.DenseChunks(encoder)
    system.build(root, files, hist)
    for query, want in OBVIOUS:
        assert system.rank(query, 5)[0] == want, query
    assert len(system.rank("anything", 100)) == len(system.paths)  # every file with a chunk is ranked


def test_path_history_follows_renames(cut_tree) -> None:
    # "bearer" and "ttl" are only in the message of a commit made while the file was auth/tokens.py
    root, files, hist = cut_tree
    system = B.BM25PathHistory()
    system.build(root, files, hist)
    assert system.rank("expire stale bearer tokens ttl", 3)[0] == "auth/session.py"


def test_repomap_graph_and_tags(cut_tree) -> None:
    root, files, hist = cut_tree
    defs, refs = B.tags("python", (root / "billing/ledger.py").read_bytes())
    assert "post_to_ledger" in defs and refs["compute_invoice_total"] == 2 and "Invoice" in refs
    defs, _ = B.tags("python", (root / "billing/invoice.py").read_bytes())
    assert {"Invoice", "compute_invoice_total", "invoice_tax_line", "void_invoice"} <= set(defs)
    rm = B.RepoMap()
    rm.build(root, files, hist)
    assert rm.stats["edges"] >= 1  # ledger.py → invoice.py
    i, j = files.index("billing/ledger.py"), files.index("billing/invoice.py")
    assert (i, j) in set(zip(rm.src.tolist(), rm.dst.tolist()))
    # a query naming no file and no symbol still gets the plain PageRank order
    assert rm.rank("zzz qqq", 3)


def test_tags_in_other_languages() -> None:
    ts_src = b"export function chargeCard(card: Card) { return gateway.charge(card) }\n" \
             b"export const refundCard = (card: Card) => gateway.refund(card)\nclass Gateway {}\n"
    defs, refs = B.tags("typescript", ts_src)
    assert {"chargeCard", "refundCard", "Gateway"} <= set(defs) and "gateway" in refs and "card" not in defs
    go_src = b"package x\ntype Store struct{}\nfunc (s *Store) Put(k string) error { return put(k) }\n"
    defs, refs = B.tags("go", go_src)
    assert {"Store", "Put"} <= set(defs) and "put" in refs
    c_src = b"static int parse_header(const char *buf) { return check(buf); }\n"
    defs, refs = B.tags("c", c_src)
    assert "parse_header" in defs and "check" in refs
