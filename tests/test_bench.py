"""``lmm bench localize``: held-out queries and gold sets, message cleaning, metrics, the worktree at
the cut, and the four baselines — on a small real repository with a known story."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import commit_file, git
from lmm_cli.address.terms import query_terms
from lmm_cli.bench import baselines as B
from lmm_cli.bench import localize as L

INVOICE = '''"""Invoices: lines, tax and totals."""

from decimal import Decimal, ROUND_HALF_UP


class Invoice:
    def __init__(self, customer, lines):
        self.customer = customer
        self.lines = lines


def compute_invoice_total(invoice: Invoice) -> Decimal:
    total = sum((line.amount for line in invoice.lines), Decimal(0))
    return total.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def invoice_tax_line(invoice: Invoice, rate: Decimal) -> Decimal:
    return compute_invoice_total(invoice) * rate
'''

LEDGER = '''"""The ledger records posted invoices."""

from billing.invoice import Invoice, compute_invoice_total


def post_to_ledger(ledger, invoice: Invoice):
    ledger.append((invoice.customer, compute_invoice_total(invoice)))
'''

TOKENS = '''"""Login sessions and their bearer tokens."""

import secrets
import time


class SessionStore:
    def __init__(self):
        self.sessions = {}

    def open_session(self, user):
        token = secrets.token_hex(16)
        self.sessions[token] = (user, time.time())
        return token


def refresh_session_token(store: SessionStore, token: str) -> str:
    user, _ = store.sessions.pop(token)
    return store.open_session(user)
'''

STRINGS = '''def slugify(text):
    return "-".join(text.lower().split())


def truncate_words(text, n):
    return " ".join(text.split()[:n])
'''

NOTES = "# Release notes\n\n" + "".join(f"- item {i}: something happened in release {i}\n" for i in range(40))


def _edit(repo: Path, path: str, append: str, message: str) -> str:
    p = repo / path
    return commit_file(repo, path, p.read_text() + append, message)


@dataclass
class Story:
    repo: Path
    cut: str
    h1: str  # modifies billing/invoice.py
    h2: str  # only creates billing/payments.py: no gold
    h3: str  # renames docs/old_notes.md away, modifies auth/session.py
    h4: str  # modifies auth/session.py and billing/payments.py (created after the cut)
    merge: str
    side: str


@pytest.fixture
def story(tmp_path: Path) -> Story:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    commit_file(repo, "billing/invoice.py", INVOICE, "Add invoices with totals")
    commit_file(repo, "auth/tokens.py", TOKENS, "Add login sessions and tokens")
    commit_file(repo, "util/strings.py", STRINGS, "Add string helpers")
    commit_file(repo, "docs/old_notes.md", NOTES, "Add release notes")
    commit_file(repo, "billing/ledger.py", LEDGER, "Post invoices to the ledger")
    _edit(repo, "billing/invoice.py", "\n\ndef void_invoice(invoice):\n    invoice.lines = []\n",
          "invoice: allow voiding an invoice")
    _edit(repo, "auth/tokens.py", "\n\ndef expire_stale(store, ttl):\n    return [t for t in store.sessions]\n",
          "Expire stale bearer tokens after the ttl")
    git(repo, "mv", "auth/tokens.py", "auth/session.py")
    git(repo, "commit", "-q", "-m", "Move the tokens module to auth/session.py")
    cut = _edit(repo, "billing/invoice.py", "\n# rounding: half up, to the cent\n",
                "invoice totals: document the rounding")
    # ---- held out from here
    h1 = _edit(repo, "billing/invoice.py", "\n# totals exclude voided lines\n",
               "Fix invoice total rounding (#42)\n\nSee https://example.com/issue/42\n\n"
               "Signed-off-by: A Dev <a@example.com>\nChange-Id: I0123456789abcdef")
    h2 = commit_file(repo, "billing/payments.py", "def pay(invoice):\n    return True\n", "Add payments")
    git(repo, "mv", "docs/old_notes.md", "docs/release_notes.md")
    (repo / "auth/session.py").write_text((repo / "auth/session.py").read_text() + "\n# sessions are per device\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "Rename the release notes; note per-device sessions")
    h3 = git(repo, "rev-parse", "HEAD").strip()
    git(repo, "checkout", "-q", "-b", "feature")
    side = _edit(repo, "util/strings.py", "\n# side branch\n", "strings: comment")
    git(repo, "checkout", "-q", "main")
    git(repo, "merge", "-q", "--no-ff", "-m", "Merge branch 'feature'", "feature")
    merge = git(repo, "rev-parse", "HEAD").strip()
    (repo / "auth/session.py").write_text((repo / "auth/session.py").read_text() + "\n# refresh on expiry\n")
    (repo / "billing/payments.py").write_text("def pay(invoice):\n    return False\n")
    git(repo, "commit", "-q", "-am", "Refresh the session token on expiry\n\nCo-authored-by: B <b@example.com>")
    h4 = git(repo, "rev-parse", "HEAD").strip()
    return Story(repo, cut, h1, h2, h3, h4, merge, side)


# --------------------------------------------------------------------------- held_out


def test_held_out_picks_first_parent_non_merge_commits_and_gold(story: Story) -> None:
    cut, queries = L.held_out(story.repo, 4)
    assert cut == story.cut
    assert [q.sha for q in queries] == [story.h1, story.h3, story.h4]  # oldest first; h2 dropped
    gold = {q.sha: q.gold for q in queries}
    assert gold[story.h1] == {"billing/invoice.py"}
    assert gold[story.h3] == {"docs/old_notes.md", "auth/session.py"}  # the old path of a rename is gold
    assert gold[story.h4] == {"auth/session.py"}  # payments.py was created after the cut: not gold
    assert queries[0].text == "Fix invoice total rounding"
    assert queries[2].text == "Refresh the session token on expiry"
    full = L.held_out_full(story.repo, 4)
    assert full.dropped_no_gold == [story.h2] and full.commits == 4


def test_held_out_renamed_after_cut_maps_back(story: Story) -> None:
    # a commit after the cut modifying a file under the name it got after the cut counts it under
    # its name at the cut
    repo = story.repo
    git(repo, "mv", "billing/ledger.py", "billing/books.py")
    git(repo, "commit", "-q", "-m", "Rename ledger to books")
    h5 = _edit(repo, "billing/books.py", "\n# posted daily\n", "Post the ledger daily")
    _, queries = L.held_out(repo, 6)
    gold = {q.sha: q.gold for q in queries}
    assert gold[h5] == {"billing/ledger.py"}


def test_held_out_longer_than_history_drops_the_root(story: Story) -> None:
    count = int(git(story.repo, "rev-list", "--count", "--first-parent", "--no-merges", "HEAD"))
    full = L.held_out_full(story.repo, 1000)
    assert full.commits == count - 1
    root = git(story.repo, "rev-list", "--max-parents=0", "HEAD").strip()
    assert full.cut == root


def test_history_before_and_files_at(story: Story) -> None:
    hist = L.history_before(story.repo, story.cut)
    assert hist[-1].sha == story.cut and len(hist) == 9
    assert hist[0].message == "Add invoices with totals" and hist[0].files == ["billing/invoice.py"]
    move = next(h for h in hist if h.message.startswith("Move the tokens"))
    assert move.renames == [("auth/tokens.py", "auth/session.py")] and move.files == ["auth/session.py"]
    files = L.files_at(story.repo, story.cut)
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
    assert L.clean_message(msg) == want


# --------------------------------------------------------------------------- metrics


def test_evaluate_metrics_on_a_hand_computed_example() -> None:
    queries = [
        L.Query("1", "q1", {"a"}),
        L.Query("2", "q2", {"b", "x"}),
        L.Query("3", "q3", {"z"}),
        L.Query("4", "q4", {"e"}),
        L.Query("5", "q5", {"deep"}),
    ]
    out = {
        "q1": ["a", "b", "c"],                                          # first gold at 1
        "q2": ["c", "c", "d", "b", "e", "f", "g", "h", "i", "j", "k", "x"],  # dup c counts once: b at 3, x at 11
        "q3": ["a", "b"],                                               # none
        "q4": ["p1", "p2", "p3", "p4", "p5", "e"],                      # at 6
        "q5": [f"f{i}" for i in range(150)] + ["deep"],                 # beyond depth 100: a miss
    }
    row = L.evaluate("fake", lambda q: out[q], queries, k=10, depth=100)
    assert row.n == 5
    assert row.first_rank == [1, 3, 0, 6, 0]
    assert row.hit1 == pytest.approx(1 / 5)
    assert row.hit5 == pytest.approx(2 / 5)
    assert row.hit10 == pytest.approx(3 / 5)
    assert row.recall == pytest.approx((1 + 0.5 + 0 + 1 + 0) / 5)
    assert row.mrr == pytest.approx((1 + 1 / 3 + 0 + 1 / 6 + 0) / 5)
    assert row.p50_ms >= 0 and row.p95_ms >= row.p50_ms


def test_percentile() -> None:
    assert L.percentile([1.0, 2.0, 3.0, 4.0], 50) == pytest.approx(2.5)
    assert L.percentile([float(i) for i in range(1, 101)], 95) == pytest.approx(95.05)
    assert L.percentile([], 50) == 0.0


def test_tune_split_keeps_time_order() -> None:
    qs = [L.Query(str(i), f"q{i}", {"a"}) for i in range(7)]
    early, late = L.tune_split(qs, 0.5)
    assert [q.sha for q in early] + [q.sha for q in late] == [str(i) for i in range(7)]
    assert len(early) == 4 and len(late) == 3  # round(3.5) = 4


# --------------------------------------------------------------------------- worktree


def test_worktree_at_is_removed_even_when_the_body_raises(story: Story) -> None:
    seen: list[Path] = []
    with pytest.raises(RuntimeError, match="boom"):
        with L.worktree_at(story.repo, story.cut) as wt:
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
    with L.worktree_at(story.repo, story.cut):
        pass
    assert not marker.exists()


# --------------------------------------------------------------------------- run + markdown


class Recorder:
    name = "recorder"

    def build(self, root: Path, files: list[str], history: list[B.HistoryCommit]) -> None:
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

        def build(self, root: Path, files: list[str], history: list[B.HistoryCommit]) -> None:
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
        B.HistoryCommit("1", "add", ["a/old.py", "b.py"]),
        B.HistoryCommit("2", "edit old", ["a/old.py"]),
        B.HistoryCommit("3", "move", ["a/new.py"], [("a/old.py", "a/new.py")]),
        B.HistoryCommit("4", "edit new", ["a/new.py"]),
        B.HistoryCommit("5", "merge", []),
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
    hist = L.history_before(story.repo, story.cut)
    files = L.files_at(story.repo, story.cut)
    with L.worktree_at(story.repo, story.cut) as root:
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
