"""A small real repository with a known story, shared by the replay and the benchmark tests: a few
modules, a rename, a cut, then held-out commits whose gold files are known."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from conftest import commit_file, git

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


def edit(repo: Path, path: str, append: str, message: str) -> str:
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


def make_story(tmp_path: Path) -> Story:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    commit_file(repo, "billing/invoice.py", INVOICE, "Add invoices with totals")
    commit_file(repo, "auth/tokens.py", TOKENS, "Add login sessions and tokens")
    commit_file(repo, "util/strings.py", STRINGS, "Add string helpers")
    commit_file(repo, "docs/old_notes.md", NOTES, "Add release notes")
    commit_file(repo, "billing/ledger.py", LEDGER, "Post invoices to the ledger")
    edit(repo, "billing/invoice.py", "\n\ndef void_invoice(invoice):\n    invoice.lines = []\n",
          "invoice: allow voiding an invoice")
    edit(repo, "auth/tokens.py", "\n\ndef expire_stale(store, ttl):\n    return [t for t in store.sessions]\n",
          "Expire stale bearer tokens after the ttl")
    git(repo, "mv", "auth/tokens.py", "auth/session.py")
    git(repo, "commit", "-q", "-m", "Move the tokens module to auth/session.py")
    cut = edit(repo, "billing/invoice.py", "\n# rounding: half up, to the cent\n",
                "invoice totals: document the rounding")
    # ---- held out from here
    h1 = edit(repo, "billing/invoice.py", "\n# totals exclude voided lines\n",
               "Fix invoice total rounding (#42)\n\nSee https://example.com/issue/42\n\n"
               "Signed-off-by: A Dev <a@example.com>\nChange-Id: I0123456789abcdef")
    h2 = commit_file(repo, "billing/payments.py", "def pay(invoice):\n    return True\n", "Add payments")
    git(repo, "mv", "docs/old_notes.md", "docs/release_notes.md")
    (repo / "auth/session.py").write_text((repo / "auth/session.py").read_text() + "\n# sessions are per device\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "Rename the release notes; note per-device sessions")
    h3 = git(repo, "rev-parse", "HEAD").strip()
    git(repo, "checkout", "-q", "-b", "feature")
    side = edit(repo, "util/strings.py", "\n# side branch\n", "strings: comment")
    git(repo, "checkout", "-q", "main")
    git(repo, "merge", "-q", "--no-ff", "-m", "Merge branch 'feature'", "feature")
    merge = git(repo, "rev-parse", "HEAD").strip()
    (repo / "auth/session.py").write_text((repo / "auth/session.py").read_text() + "\n# refresh on expiry\n")
    (repo / "billing/payments.py").write_text("def pay(invoice):\n    return False\n")
    git(repo, "commit", "-q", "-am", "Refresh the session token on expiry\n\nCo-authored-by: B <b@example.com>")
    h4 = git(repo, "rev-parse", "HEAD").strip()
    return Story(repo, cut, h1, h2, h3, h4, merge, side)
