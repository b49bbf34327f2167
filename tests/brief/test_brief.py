"""The repo-wide brief (`lmm brief`) on a real repository with a known story, and the marked
section `lmm brief --write` keeps in a file such as CLAUDE.md."""

from __future__ import annotations

import os
import re
import sqlite3
from pathlib import Path

import pytest

from lmm_cli.address.graph import pagerank
from lmm_cli.brief.repo import (
    EMPTY,
    MARK_BEGIN,
    MARK_END,
    BriefResult,
    repo_brief,
    write_section,
)
from lmm_cli.brief.tokens import count_tokens

from conftest import git

DAY = 86400
T0 = 1_700_000_000  # 2023-11-14

PYPROJECT = """\
[project]
name = "shop"
version = "0.1.0"
requires-python = ">=3.11"

[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[tool.pytest.ini_options]
testpaths = ["tests"]
addopts = "-q"

[tool.ruff]
line-length = 100
"""

CART = """\
class Cart:
    def __init__(self):
        self.items = []

    def add(self, sku, price):
        self.items.append((sku, price))


def total(cart):
    return sum(p for _, p in cart.items)
"""

PRICING = """\
from shop.cart import Cart, total


def price(cart: Cart, coupon=None):
    amount = total(cart)
    if coupon:
        amount -= coupon
    return amount
"""

CHECKOUT = """\
from shop.cart import Cart, total
from shop.pricing import price


def checkout(cart: Cart):
    return price(cart), total(cart)
"""


def commit(repo: Path, files: dict[str, str], message: str, day: float) -> str:
    for path, content in files.items():
        f = repo / path
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(content)
        git(repo, "add", "--", path)
    when = f"{int(T0 + day * DAY)} +0000"
    git(repo, "commit", "-q", "-m", message, env={"GIT_AUTHOR_DATE": when, "GIT_COMMITTER_DATE": when})
    return git(repo, "rev-parse", "HEAD").strip()


def open_store(repo: Path) -> sqlite3.Connection:
    from lmm_cli.workspace import open_workspace

    return open_workspace(repo).create()


def capture(repo: Path, db: sqlite3.Connection) -> None:
    from lmm_cli.capture.ingest import capture_history
    from lmm_cli.workspace import open_workspace

    capture_history(open_workspace(repo), db, capture="test")


def index(repo: Path, db: sqlite3.Connection) -> None:
    from lmm_cli.address.code_index import index_worktree

    index_worktree(db, repo)


@pytest.fixture
def shop(tmp_path: Path) -> dict:
    """A small shop whose pricing module was fixed three times (a fourth 'fix' was amended away)."""
    repo = tmp_path / "shop"
    repo.mkdir()
    git(repo, "init", "-q")
    s: dict = {"repo": repo}
    s["skeleton"] = commit(repo, {"pyproject.toml": PYPROJECT, "src/shop/__init__.py": "",
                                  "README.md": "# Shop\n"}, "feat: add project skeleton", 0)
    s["cart"] = commit(repo, {"src/shop/cart.py": CART}, "feat(cart): add cart model", 1)
    s["pricing"] = commit(repo, {"src/shop/pricing.py": PRICING}, "feat(pricing): add pricing rules", 2)
    s["tests"] = commit(repo, {"tests/test_pricing.py": "from shop.pricing import price\n\n\ndef test_price():\n"
                                                        "    assert price is not None\n",
                               "tests/conftest.py": "import pytest\n"}, "test: cover pricing rules", 3)
    s["fix1"] = commit(repo, {"src/shop/pricing.py": PRICING + "\n# empty carts cost nothing\n"},
                       "fix(pricing): handle empty cart", 10)
    s["docs"] = commit(repo, {"README.md": "# Shop\n\nPricing lives in src/shop/pricing.py.\n"},
                       "docs: describe the pricing model", 11)
    s["fix2"] = commit(repo, {"src/shop/pricing.py": PRICING + "\n# empty carts cost nothing\n# round half-up\n"},
                       "fix(pricing): round discounts half-up", 20)
    s["checkout"] = commit(repo, {"src/shop/checkout.py": CHECKOUT}, "feat(checkout): add checkout flow", 25)
    s["fix3"] = commit(repo, {"src/shop/pricing.py": PRICING + "\n# empty carts\n# round half-up\n# coupons\n"},
                       "fix: crash in pricing when the coupon expired\n\nExpired coupons were None.", 30)
    s["refactor"] = commit(repo, {"src/shop/cart.py": CART + "\n\ndef count(cart):\n    return len(cart.items)\n"},
                           "refactor(cart): add an item count", 31)
    test_cart = "from shop.cart import Cart\n\n\ndef test_cart():\n    assert Cart().items == []\n"
    s["test2"] = commit(repo, {"tests/test_cart.py": test_cart}, "test(cart): cover the cart", 32)
    db = open_store(repo)
    # A 'fix' that was amended into a feature: superseded, so it must count for nothing.
    s["amended"] = commit(repo, {"src/shop/pricing.py": PRICING + "\n# tiers\n"}, "fix(pricing): wrong tiers", 33)
    capture(repo, db)
    when = f"{int(T0 + 33 * DAY)} +0000"
    git(repo, "commit", "-q", "--amend", "-m", "feat(pricing): tiered discounts",
        env={"GIT_AUTHOR_DATE": when, "GIT_COMMITTER_DATE": when})
    s["tiers"] = git(repo, "rev-parse", "HEAD").strip()
    capture(repo, db)
    from lmm_cli.capture.ingest import record_rewrite

    db.execute("BEGIN IMMEDIATE")
    record_rewrite(db, "ev-amend", "amend", [(s["amended"], s["tiers"])], T0 + 33 * DAY)
    db.execute("COMMIT")
    from lmm_cli.capture.notes import remember
    from lmm_cli.workspace import open_workspace

    s["note"] = remember(open_workspace(repo), db, "Never round prices before applying coupons").id
    index(repo, db)
    s["db"] = db
    s["now"] = T0 + 35 * DAY
    yield s
    db.close()


def section(res: BriefResult, title: str) -> str:
    for sec in res.sections:
        if sec.title == title:
            return "\n".join(ln.markdown() for ln in sec.lines)
    raise AssertionError(f"no section {title!r} in:\n{res.markdown}")


def check_citations(res: BriefResult, repo: Path, db: sqlite3.Connection) -> int:
    """Every citation names something real: a commit git has, a file (and line) in the tree, a note."""
    reachable = set(git(repo, "rev-list", "--all").split())
    n = 0
    for sec in res.sections:
        for ln in sec.lines:
            assert ln.cites, ln
            for c in ln.cites:
                n += 1
                assert c.text() in res.markdown
                if c.kind == "commit":
                    assert c.ref in reachable, c
                elif c.kind == "file":
                    f = repo / c.ref
                    assert f.is_file(), c
                    if c.line is not None:
                        assert 1 <= c.line <= len(f.read_text().splitlines()), c
                else:
                    assert c.kind == "note", c
                    assert db.execute("SELECT kind FROM episodes WHERE id = ?", (int(c.ref),)).fetchone()[0] == "note"
    return n


def line_of(path: Path, text: str) -> int:
    return next(i for i, ln in enumerate(path.read_text().splitlines(), 1) if ln.startswith(text))


def test_brief_tells_the_story(shop: dict) -> None:
    repo, db = shop["repo"], shop["db"]
    res = repo_brief(db, repo, now=shop["now"])
    md = res.markdown
    assert md.startswith("# ")
    assert res.tokens == count_tokens(md) <= 2000
    assert check_citations(res, repo, db) >= 10

    # Hot spots: pricing.py first, with its three fixes, citing the fix commits, newest first.
    hot = section(res, "Hot spots")
    first = hot.splitlines()[0]
    assert first.startswith("- `src/shop/pricing.py`: 5 commits, 3 fixes (last 90 days: 5 commits, 3 fixes)"), hot
    cited = re.findall(r"`([0-9a-f]{7})`", first)
    assert cited == [shop["fix3"][:7], shop["fix2"][:7], shop["fix1"][:7]]
    assert shop["amended"][:7] not in md  # superseded: forgotten everywhere

    # Conventions: conventional commits, the test layout, pytest and ruff cited in pyproject.toml.
    conv = section(res, "Conventions")
    assert "Conventional commits (100% of all 12 commits)" in conv
    assert "`feat:`" in conv and "`fix:`" in conv and "`pricing`" in conv
    py = repo / "pyproject.toml"
    tool_line = next(ln for ln in conv.splitlines() if "configures" in ln)
    assert "pytest" in tool_line and "ruff" in tool_line
    assert f"`pyproject.toml:{line_of(py, '[tool.pytest.ini_options]')}`" in tool_line
    assert f"`pyproject.toml:{line_of(py, '[tool.ruff]')}`" in tool_line
    assert "`testpaths = [\"tests\"]`" in tool_line and "`line-length = 100`" in tool_line
    assert f"`pyproject.toml:{line_of(py, 'requires-python')}`" in conv
    tests_line = next(ln for ln in conv.splitlines() if ln.startswith("- Tests:"))
    assert "3 files in `tests/`;" in tests_line  # test_pricing.py, test_cart.py, conftest.py
    assert "`test_*.py`" in tests_line and "`tests/test_cart.py`" in tests_line  # the latest test file
    assert "shared fixtures in `tests/conftest.py`" in tests_line
    assert "bodies in 8%" in conv  # 1 of 12

    # Layout and the central modules: cart.py is what the rest uses.
    layout = section(res, "Layout")
    assert "`src/`: 4 files, Python" in layout and "`tests/`: 3 files, Python" in layout
    central = section(res, "Central modules")
    top = central.splitlines()[0]
    assert top.startswith("- `src/shop/cart.py` (used by 3 files)"), central  # pricing, checkout, test_cart
    assert f"`src/shop/cart.py:{line_of(repo / 'src/shop/cart.py', 'class Cart')}`" in top
    assert "`Cart`" in top and "`total`" in top

    # Recent direction: the last commits, the new files, and what they were about.
    recent = section(res, "Recent direction")
    assert "Last 12 commits" in recent
    assert "`src/shop/checkout.py`" in recent
    assert shop["tiers"][:7] in recent

    # Notes: the user's note, cited.
    notes = section(res, "Notes")
    assert "Never round prices before applying coupons" in notes
    assert f"`note {shop['note']}," in notes


def test_small_budget_keeps_the_best_of_each_section(shop: dict) -> None:
    repo, db = shop["repo"], shop["db"]
    full = repo_brief(db, repo, now=shop["now"])
    res = repo_brief(db, repo, budget=300, now=shop["now"])
    assert res.tokens <= 300 and res.tokens == count_tokens(res.markdown)
    assert len(res.markdown) < len(full.markdown)
    titles = [s.title for s in res.sections]
    assert "Layout" in titles and "Hot spots" in titles
    assert "src/shop/pricing.py" in section(res, "Hot spots")
    check_citations(res, repo, db)
    tiny = repo_brief(db, repo, budget=5, now=shop["now"])
    assert tiny.markdown == EMPTY + "\n" and tiny.sections == []


def test_brief_is_stable(shop: dict) -> None:
    a = repo_brief(shop["db"], shop["repo"], now=shop["now"])
    b = repo_brief(shop["db"], shop["repo"], now=shop["now"])
    assert a.markdown == b.markdown


def test_a_dormant_repository_still_shows_its_last_direction(shop: dict) -> None:
    res = repo_brief(shop["db"], shop["repo"], now=shop["now"] + 400 * DAY)
    hot = section(res, "Hot spots")
    assert "90 days to 2023-12-17" in hot  # the window ends at the newest commit
    assert "Last 12 commits" in section(res, "Recent direction")


def test_stale_citations_are_dropped(shop: dict) -> None:
    repo, db = shop["repo"], shop["db"]
    (repo / "tests" / "conftest.py").unlink()  # deleted after indexing: the index still has it
    res = repo_brief(db, repo, now=shop["now"])
    assert "tests/conftest.py" not in res.markdown
    check_citations(res, repo, db)


def test_empty_store_says_so(tmp_path: Path) -> None:
    repo = tmp_path / "empty"
    repo.mkdir()
    git(repo, "init", "-q")
    db = open_store(repo)
    capture(repo, db)
    res = repo_brief(db, repo)
    assert res.markdown == EMPTY + "\n"
    assert res.sections == [] and res.tokens == count_tokens(res.markdown)


def test_without_a_code_index_the_tree_comes_from_git(tmp_path: Path) -> None:
    repo = tmp_path / "plain"
    repo.mkdir()
    git(repo, "init", "-q")
    commit(repo, {"lib/a.py": "def a():\n    return 1\n", "lib/b.py": "def b():\n    return 2\n"},
           "Add the library", 0)
    sha = commit(repo, {"lib/a.py": "def a():\n    return 3\n"}, "Fix a returning the wrong value", 1)
    commit(repo, {"lib/a.py": "def a():\n    return 4\n"}, "Fix a again", 2)
    db = open_store(repo)
    capture(repo, db)
    res = repo_brief(db, repo, now=T0 + 3 * DAY)
    assert "`lib/`: 2 files, Python" in section(res, "Layout")
    assert "Plain commit subjects" in section(res, "Conventions")
    assert "imperative mood (100%)" in section(res, "Conventions")
    hot = section(res, "Hot spots")
    assert hot.startswith("- `lib/a.py`: 3 commits, 2 fixes") and sha[:7] in hot
    assert "Central modules" not in [s.title for s in res.sections]
    check_citations(res, repo, db)


def test_tooling_from_config_files(tmp_path: Path) -> None:
    repo = tmp_path / "web"
    repo.mkdir()
    git(repo, "init", "-q")
    files = {
        "package.json": '{\n  "name": "web",\n  "scripts": {\n    "build": "tsc",\n    "test": "vitest"\n  },\n'
                        '  "devDependencies": {\n    "typescript": "^5",\n    "vitest": "^1"\n  }\n}\n',
        "pnpm-lock.yaml": "lockfileVersion: 6\n",
        "Makefile": ".PHONY: all\nrelease-notes:\n\t./notes.sh\n\ntest:\n\tpnpm test\n\nlint:\n\tpnpm lint\n",
        ".pre-commit-config.yaml": "repos:\n  - repo: local\n    hooks:\n      - id: eslint\n      - id: prettier\n",
        ".github/workflows/ci.yml": "name: CI\non: [push]\njobs:\n  test:\n    runs-on: ubuntu-latest\n"
                                   "    steps:\n      - uses: actions/setup-go@v5\n      - run: pnpm install\n"
                                   "      - run: |\n          make test\n          go vet ./...\n",
        "go.mod": "module example.com/web\n\ngo 1.22\n",
        "tsconfig.json": "{}\n",
        "src/app.ts": "export function main(): number {\n  return 1\n}\n",
        "src/app.test.ts": "import { main } from './app'\n",
    }
    commit(repo, files, "chore: set up the tooling", 0)
    db = open_store(repo)
    capture(repo, db)
    index(repo, db)
    res = repo_brief(db, repo, now=T0 + DAY)
    conv = section(res, "Conventions")
    assert ("`package.json` scripts: `build`, `test` (run with pnpm); uses TypeScript, Vitest "
            "(`package.json:3`, `package.json:7`)") in conv
    assert "Makefile targets: `test`, `lint`, `release-notes` (`Makefile:5`)" in conv
    assert "pre-commit hooks: `eslint`, `prettier` (`.pre-commit-config.yaml:4`)" in conv
    assert ("CI, GitHub Actions: `.github/workflows/ci.yml` (CI) runs `pnpm install`, `make test`, `go vet` "
            "(`.github/workflows/ci.yml:8`)") in conv
    assert "Go module `example.com/web`, go 1.22 (`go.mod:1`)" in conv
    assert "Other config: `tsconfig.json`" in conv
    assert "named `*.test.ts`" in conv
    check_citations(res, repo, db)


def test_brief_on_a_long_history_finds_the_hot_spots(tmp_path: Path) -> None:
    """A 2,000-commit history (its speed is measured by benchmarks, not here)."""
    repo = tmp_path / "long"
    repo.mkdir()
    git(repo, "init", "-q")
    import subprocess

    lines = []
    for i in range(1, 2001):
        content = f"value = {i}\n".encode()
        msg = (f"fix(m{i % 7}): repair value {i}\n" if i % 5 == 0 else f"feat(m{i % 7}): change value {i}\n").encode()
        lines.append(b"commit refs/heads/main\n")
        lines.append(b"committer T <t@example.com> %d +0000\n" % (T0 + i * 600))
        lines.append(b"data %d\n%s" % (len(msg), msg))
        lines.append(b"M 100644 inline pkg/m%d/mod%d.py\ndata %d\n%s\n" % (i % 7, i % 50, len(content), content))
    subprocess.run(["git", "fast-import", "--quiet"], cwd=repo, input=b"".join(lines), check=True)
    git(repo, "reset", "-q", "--hard", "main")
    db = open_store(repo)
    capture(repo, db)
    index(repo, db)
    res = repo_brief(db, repo)
    assert "Hot spots" in [s.title for s in res.sections]
    hot = next(s for s in res.sections if s.title == "Hot spots")
    assert any("fix" in line.text for line in hot.lines)


def test_pagerank_flows_to_what_is_used() -> None:
    edges = [("a", "core", 1.0), ("b", "core", 1.0), ("c", "core", 2.0), ("core", "util", 1.0), ("c", "b", 1.0)]
    rank = pagerank(edges)
    assert abs(sum(rank.values()) - 1.0) < 1e-6
    assert max(rank, key=rank.__getitem__) == "util"  # all of core's rank flows on to util
    assert rank["core"] > rank["b"] > rank["a"]
    assert pagerank([]) == {}
    assert pagerank([("x", "x", 1.0)]) == {"x": 1.0}


# --- write_section -------------------------------------------------------------------------------


def test_write_section_creates_and_is_idempotent(tmp_path: Path) -> None:
    f = tmp_path / "CLAUDE.md"
    assert write_section(f, "# Brief\n- one\n") is True
    data = f.read_bytes()
    assert data == f"{MARK_BEGIN}\n# Brief\n- one\n{MARK_END}\n".encode()
    assert write_section(f, "# Brief\n- one\n") is False
    assert f.read_bytes() == data


def test_write_section_keeps_human_text(tmp_path: Path) -> None:
    f = tmp_path / "CLAUDE.md"
    before = "# Team rules\n\nUse tabs. Really.\n"
    f.write_bytes(before.encode())
    assert write_section(f, "# Brief\n- one\n")
    assert f.read_bytes() == f"{before}\n{MARK_BEGIN}\n# Brief\n- one\n{MARK_END}\n".encode()
    after = "\n## More rules\n\nNo tabs in YAML.   \n\n"  # trailing spaces and blank lines kept as they are
    f.write_bytes(f.read_bytes() + after.encode())
    assert write_section(f, "# Brief\n- two\n- three\n")
    assert f.read_bytes() == f"{before}\n{MARK_BEGIN}\n# Brief\n- two\n- three\n{MARK_END}\n{after}".encode()
    snapshot = f.read_bytes()
    assert write_section(f, "# Brief\n- two\n- three\n") is False
    assert f.read_bytes() == snapshot


def test_write_section_replaces_an_older_marker(tmp_path: Path) -> None:
    f = tmp_path / "AGENTS.md"
    f.write_text("top\n<!-- lmm:begin (an older wording) -->\nold brief\n<!-- lmm:end -->\nbottom\n")
    assert write_section(f, "new brief")
    assert f.read_text() == f"top\n{MARK_BEGIN}\nnew brief\n{MARK_END}\nbottom\n"


def test_write_section_without_trailing_newline(tmp_path: Path) -> None:
    f = tmp_path / "CLAUDE.md"
    f.write_bytes(b"no newline at the end")
    assert write_section(f, "x")
    assert f.read_bytes() == f"no newline at the end\n\n{MARK_BEGIN}\nx\n{MARK_END}\n".encode()
    assert write_section(f, "x") is False


def test_write_section_keeps_crlf(tmp_path: Path) -> None:
    f = tmp_path / "CLAUDE.md"
    f.write_bytes(b"# Rules\r\n\r\nBe kind.\r\n")
    assert write_section(f, "# Brief\n- one\n- two\n")
    data = f.read_bytes()
    assert data.startswith(b"# Rules\r\n\r\nBe kind.\r\n\r\n")
    assert re.search(rb"(?<!\r)\n", data) is None  # every newline is CRLF
    assert f"{MARK_BEGIN}\r\n# Brief\r\n- one\r\n- two\r\n{MARK_END}\r\n".encode() in data
    assert write_section(f, "# Brief\n- one\n- two\n") is False
    assert f.read_bytes() == data
    assert write_section(f, "# Brief\n- three\n")
    assert f.read_bytes() == (f"# Rules\r\n\r\nBe kind.\r\n\r\n{MARK_BEGIN}\r\n# Brief\r\n- three\r\n"
                              f"{MARK_END}\r\n").encode()


def test_write_section_keeps_the_file_mode(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    f = tmp_path / "d" / "CLAUDE.md"
    f.write_text("x\n")
    os.chmod(f, 0o640)
    write_section(f, "brief")
    assert f.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in f.parent.iterdir()] == ["CLAUDE.md"]  # no temporary file left behind


def test_a_written_brief_round_trips(shop: dict, tmp_path: Path) -> None:
    f = shop["repo"] / "CLAUDE.md"
    f.write_text("# Project notes\n\nAsk before touching pricing.\n")
    res = repo_brief(shop["db"], shop["repo"], now=shop["now"])
    assert write_section(f, res.markdown)
    assert write_section(f, repo_brief(shop["db"], shop["repo"], now=shop["now"]).markdown) is False
    text = f.read_text()
    assert text.startswith("# Project notes\n\nAsk before touching pricing.\n\n" + MARK_BEGIN + "\n# Repository brief")
    assert text.endswith(MARK_END + "\n")


def test_write_section_refuses_half_a_section(tmp_path: Path) -> None:
    from lmm_cli.errors import BadInput

    f = tmp_path / "CLAUDE.md"
    f.write_text(f"mine\n{MARK_BEGIN}\nold brief, its end marker deleted\nmore of mine\n")
    before = f.read_bytes()
    with pytest.raises(BadInput, match="without its"):
        write_section(f, "new")
    f.write_text(f"mine\n{MARK_END}\n")
    with pytest.raises(BadInput):
        write_section(f, "new")
    assert f.read_text() == f"mine\n{MARK_END}\n" and before != f.read_bytes()


def test_write_section_into_a_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    from lmm_cli.errors import BadInput

    with pytest.raises(BadInput, match="does not exist"):
        write_section(tmp_path / "nope" / "CLAUDE.md", "brief")
    assert not (tmp_path / "nope").exists()


def test_token_counts_are_the_tokenizers_own() -> None:
    """Budgets count with the packaged tokenizer; plain text is counted word by word (each word
    asked of the tokenizer once). The count must be the tokenizer's for any text: code, prose,
    brief lines with dashes and quotes, special tokens typed as text, accents, CJK, control
    characters, very long words."""
    import random

    from tokenizers import Tokenizer

    from lmm_cli.brief import tokens
    from lmm_cli.embed.encoder import packaged_path

    real = Tokenizer.from_file(str(packaged_path() / "tokenizer.json"))
    real.no_padding()
    real.no_truncation()
    root = Path(__file__).resolve().parents[2] / "lmm_cli"
    texts = [block for f in sorted(root.rglob("*.py")) for block in f.read_text().split("\n\n")]
    rng = random.Random(7)
    alphabet = [chr(c) for c in range(32, 127)] + list("\t\n—–“”‘’…•·éÅ日本\x01\r\u202e")
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 200))) for _ in range(2000)]
    texts += ["- `src/a.py` — why: “fixed” … twice (`abc1234`)", "x" * 150, "[SEP] and [cls] typed", "naïve café",
              "a" * 99 + " " + "b" * 100 + " " + "c" * 101, "tab\there\r\nthere"]
    wrong = [(t, tokens.count_tokens(t), len(real.encode(t, add_special_tokens=False).ids))
             for t in texts if tokens.count_tokens(t) != len(real.encode(t, add_special_tokens=False).ids)]
    assert tokens._BY_WORD and not wrong, wrong[:5]
    assert tokens.count_tokens("") == 0
