"""Every citation true, on real git repositories: no commit git no longer has, symbol lines that name
the definition, a brief for a task pasted as a 100 KB issue, and one line per printed line whatever a
commit subject holds."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from lmm_cli.address.recall import MAX_TERMS, Recaller, missing_commits
from lmm_cli.brief.recall_brief import ECHO_CHARS, echo, recall_brief
from lmm_cli.brief.render import Citation, Line, Section, Verifier, one_line, render
from lmm_cli.brief.repo import repo_brief

from conftest import commit_file, git, lmm, lmm_json


def connect(repo: Path) -> sqlite3.Connection:
    from lmm_cli.workspace import open_workspace

    return open_workspace(repo).connect()


def short_shas(text: str) -> set[str]:
    return set(re.findall(r"`([0-9a-f]{7})`", text))


def assert_true_citations(repo: Path, brief: str) -> None:
    """Every printed line is cited, and every citation names what exists now: a commit git has, a
    file in the tree and a line in it, a note."""
    for line in brief.splitlines():
        assert line == "" or line.startswith(("# ", "## ", "- ", "No memory")), repr(line)
        if not line.startswith("- "):
            continue
        m = re.search(r"\(([^()]*)\)$", line)
        assert m, f"uncited line printed: {line}"
        for ref in re.findall(r"`([^`]+)`", m.group(1)):
            if re.fullmatch(r"[0-9a-f]{7,40}", ref):
                ok = subprocess.run(["git", "cat-file", "-e", ref + "^{commit}"], cwd=repo, capture_output=True)
                assert ok.returncode == 0, f"cites a commit git does not have: {ref} in {line}"
            elif not ref.startswith("note "):
                path, _, ln = ref.partition(":")
                assert (repo / path).is_file(), ref
                if ln:
                    assert 1 <= int(ln) <= len((repo / path).read_text().splitlines()), ref


# --------------------------------------------------------------------------------------------
# 1. Commits reset away and pruned are never cited


PARSER = "def parse_header(line):\n    return line.split(':', 1)\n"


def _forget(repo: Path, n: int) -> list[str]:
    """``git reset --hard HEAD~n`` and prune: the n commits are gone from git. Their shas."""
    gone = git(repo, "rev-list", f"HEAD~{n}..HEAD").split()
    git(repo, "reset", "-q", "--hard", f"HEAD~{n}")
    git(repo, "reflog", "expire", "--expire=now", "--all")
    git(repo, "gc", "-q", "--prune=now")
    for sha in gone:
        assert git(repo, "cat-file", "-e", sha, check=False) == "" and subprocess.run(
            ["git", "cat-file", "-e", sha], cwd=repo).returncode != 0
    return gone


@pytest.fixture
def pruned(tmp_path: Path) -> dict:
    """A parser fixed four times; the last two fixes (and a feature) were reset away and pruned after
    lmm captured them. No hook tells lmm of a reset: the store still has them."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    commit_file(repo, "src/parser.py", PARSER, "Add header parser")
    commit_file(repo, "src/other.py", "def other():\n    return 1\n", "Add other module")
    kept = [commit_file(repo, "src/parser.py", PARSER + f"# fix {i}\n", f"Fix crash in header parser ({i})")
            for i in range(2)]
    commit_file(repo, "src/parser.py", PARSER + "# fix 0\n# fix 1\n# tabs\n", "Fix header parser for tabs")
    commit_file(repo, "src/parser.py", PARSER + "# fix 0\n# fix 1\n# tabs\n# crlf\n", "Fix header parser for crlf")
    commit_file(repo, "src/parser.py", PARSER + "# fix 0\n# fix 1\n# tabs\n# crlf\n# folded\n",
                "Parse folded header lines")
    lmm("init", "--repo", str(repo), "--no-hooks")
    gone = _forget(repo, 3)
    return {"repo": repo, "gone": gone, "kept": kept}


def test_recall_never_cites_a_pruned_commit(pruned: dict) -> None:
    repo, gone = pruned["repo"], pruned["gone"]
    out = lmm_json("recall", "--repo", str(repo), "header parser crash tabs crlf folded")
    assert isinstance(out, dict)
    brief = out["brief"]
    assert not short_shas(brief) & {s[:7] for s in gone}, brief
    assert not {c["sha"] for c in out["commits"]} & set(gone)
    assert not any(s[:7] in w for f in out["files"] for w in f["why"] for s in gone)
    # Replaced, not just dropped: the fixes git still has are told and counted instead.
    assert {s[:7] for s in pruned["kept"]} <= short_shas(brief), brief
    assert "2 fixes" in brief and "tabs" not in brief.split("## What tends to break")[-1], brief
    assert_true_citations(repo, brief)
    assert_true_citations(repo, lmm("recall", "--repo", str(repo), "--fast", "parse folded header lines").stdout)


def test_repo_brief_never_cites_a_pruned_commit(pruned: dict) -> None:
    repo, gone = pruned["repo"], pruned["gone"]
    text = lmm("brief", "--repo", str(repo)).stdout
    assert not short_shas(text) & {s[:7] for s in gone}, text
    assert "## Hot spots" in text and "## Recent direction" in text, text
    hot = next(ln for ln in text.split("## Hot spots")[1].splitlines() if ln.startswith("- `src/parser.py`"))
    assert "3 commits, 2 fixes" in hot, hot  # the three pruned commits are not counted either
    recent = text.split("## Recent direction")[1]
    assert "Last 4 commits" in recent, recent
    assert_true_citations(repo, text)


def test_one_question_to_git_for_all_the_commits_a_brief_cites(pruned: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    import lmm_cli.address.recall as rc

    calls: list[tuple[str, ...]] = []
    real = rc.run_git

    def spy(cwd: Path, *args: str, **kw: object) -> bytes:
        calls.append(args)
        return real(cwd, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(rc, "run_git", spy)
    repo = pruned["repo"]
    db = connect(repo)
    try:
        res = repo_brief(db, repo)
        # Commits the first draft cited were gone: the sections were made once more without them,
        # which asked git about the few commits cited instead (one more batch).
        asked = [a for a in calls if a[0] == "cat-file"]
        assert 1 <= len(asked) <= 2 and all(a == ("cat-file", "--batch-check") for a in asked)
        assert not short_shas(res.markdown) & {s[:7] for s in pruned["gone"]}
        calls.clear()
        rec = Recaller(db, repo).recall("header parser crash")
        assert [a[0] for a in calls if a[0] == "cat-file"] == ["cat-file"]  # all the commits it read
        calls.clear()
        text, _ = recall_brief(db, repo, rec)
        # at most one more, for the commits it cites that the recall did not already ask git about
        assert len([a[0] for a in calls if a[0] == "cat-file"]) <= 1
        assert_true_citations(repo, text)
    finally:
        db.close()


def test_missing_commits_and_the_verifier(pruned: dict, tmp_path: Path) -> None:
    repo, gone, kept = pruned["repo"], pruned["gone"], pruned["kept"]
    assert missing_commits(repo, [*kept, *gone, "not-a-sha"]) == {*gone, "not-a-sha"}
    assert missing_commits(repo, []) == set()
    blob = git(repo, "rev-parse", "HEAD:src/parser.py").strip()
    assert missing_commits(repo, [blob]) == {blob}  # an object, but no commit
    plain = tmp_path / "plain"
    plain.mkdir()
    assert missing_commits(plain, kept) == set(kept)  # git cannot answer: nothing is taken as there
    db = connect(repo)
    try:
        v = Verifier(db, repo)
        assert v.check_commits([*kept, gone[0]]) == {gone[0]}
        assert v.ok(Citation("commit", kept[0])) and not v.ok(Citation("commit", gone[0]))
        assert v.ok(Citation("commit", gone[1])) is False  # not in the batch: asked on its own
    finally:
        db.close()


@pytest.mark.parametrize("how", ["gc", "prune"])
def test_a_warm_memory_stops_citing_a_commit_pruned_while_it_runs(tmp_path: Path, how: str) -> None:
    """The MCP server keeps one ``git cat-file`` answering for every recall. A commit reset away and
    pruned while it runs must drop out of the next brief: packed (a gc rewrites the packs, so the
    answering git is started again) and loose (``git prune`` deletes the object file, which git
    looks up afresh at each question)."""
    from lmm_cli.core import Memory
    from lmm_cli.repo import object_checker

    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    commit_file(repo, "src/parser.py", PARSER, "Add header parser")
    commit_file(repo, "src/parser.py", PARSER + "# fix 0\n", "Fix crash in header parser on empty lines")
    last = commit_file(repo, "src/parser.py", PARSER + "# fix 0\n# tabs\n", "Fix header parser crash on tabs")
    lmm("init", "--repo", str(repo), "--no-hooks")
    if how == "gc":
        git(repo, "gc", "-q")  # every commit in a pack, which the answering git then holds open
    memory = Memory(repo)
    try:
        before = memory.recall("header parser crash", budget=600)
        assert last[:7] in short_shas(before["brief"]) and "2 fixes" in before["brief"], before["brief"]
        assert object_checker(repo) is not None  # the long-lived git answered
        git(repo, "reset", "-q", "--hard", "HEAD~1")
        git(repo, "reflog", "expire", "--expire=now", "--all")
        if how == "gc":
            git(repo, "gc", "-q", "--prune=now")
        else:
            git(repo, "prune", "--expire=now")
        assert subprocess.run(["git", "cat-file", "-e", last], cwd=repo, capture_output=True).returncode != 0
        after = memory.recall("header parser crash", budget=600)
        assert last[:7] not in short_shas(after["brief"]), after["brief"]
        assert last not in {c["sha"] for c in after["commits"]}
        assert "1 fix" in after["brief"] and "2 fixes" not in after["brief"], after["brief"]
        assert_true_citations(repo, after["brief"])
    finally:
        memory.close()
    assert object_checker(repo) is None  # closed with the memory: no git left behind


# --------------------------------------------------------------------------------------------
# 2. Symbol lines name the definition line

APP = '''\
"""Upload handling."""

import functools


def retrying(fn):
    @functools.wraps(fn)
    def wrapper(*a):
        return fn(*a)
    return wrapper


# Uploads a blob, retrying on 503.
@retrying
@functools.lru_cache(maxsize=None)
def upload_blob(blob):
    return send_upload(blob)


class UploadClient:
    """Talks to the upload server."""

    @property
    def upload_endpoint(self):
        return "/upload"

    @staticmethod
    def upload_retry_delay(attempt):
        return 2 ** attempt
'''

# A long function: more than one chunk (a chunk holds at most 4,000 characters).
LONG = "def upload_everything(items):\n" + "".join(
    f"    upload_step_{i} = send_upload(items[{i}])  # step {i} of the upload pipeline\n" for i in range(120)
) + "    return True\n"

# A decorator list longer than a chunk: its first pieces end above the def line.
PARAMETRIZED = "import pytest\n\n\n@pytest.mark.parametrize(\n    \"case\",\n    [\n" + "".join(
    f"        \"upload_case_{i}_with_a_rather_long_name_for_the_parametrized_upload_test\",\n" for i in range(90)
) + "    ],\n)\ndef test_upload_cases(case):\n    assert case\n"

RUST_IMPL = '''\
use std::fmt;

/// Shows an upload (the type is defined in another file).
#[cfg(feature = "display")]
impl fmt::Display for Upload {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "upload display of {}", self.name)
    }
}
'''

RUST = '''\
/// Sends an upload.
#[inline]
#[must_use]
pub fn send_upload(blob: &[u8]) -> usize {
    blob.len()
}

#[cfg(test)]
mod tests {
    /// Upload of nothing.
    #[test]
    fn upload_empty() {
        assert_eq!(super::send_upload(&[]), 0);
    }
}
'''


def definition_line(repo: Path, path: str, line: int, name: str) -> bool:
    text = (repo / path).read_text().splitlines()[line - 1].strip()
    return name in text and not text.startswith(("@", "#", "/", "*"))


def test_symbol_lines_name_the_definition(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    commit_file(repo, "src/upload.py", APP, "Add upload client with retries")
    commit_file(repo, "src/pipeline.py", LONG, "Add the upload pipeline")
    commit_file(repo, "src/send.rs", RUST, "Add send_upload in Rust")
    commit_file(repo, "src/show.rs", RUST_IMPL, "Show uploads")
    commit_file(repo, "tests/test_cases.py", PARAMETRIZED, "Test upload cases")
    lmm("init", "--repo", str(repo), "--no-hooks")
    refs = 0
    for q in ("upload retry delay endpoint", "upload blob retrying", "upload step 97 pipeline", "send upload empty",
              "upload_step_110", "upload display formatter", "upload case 3 rather long name"):
        out = lmm_json("recall", "--repo", str(repo), "--fast", q)
        assert isinstance(out, dict)
        for f in out["files"]:
            for s in f["symbols"]:
                assert definition_line(repo, f["path"], s["line"], s["name"]), (q, f["path"], s)
                refs += 1
        for line in out["brief"].splitlines():
            m = re.match(r"- `([^`]+)` — ", line)
            for name, no in re.findall(r"`([^`]+)` \(L(\d+)\)", line) if m else []:
                assert m is not None and definition_line(repo, m.group(1), int(no), name), line
                refs += 1
        assert_true_citations(repo, out["brief"])
    assert refs >= 15
    # The long function's later pieces cite its def line, not the line their piece starts on.
    out = lmm_json("recall", "--repo", str(repo), "--fast", "upload_step_110")
    pipeline = next(f for f in out["files"] if f["path"] == "src/pipeline.py")  # type: ignore[union-attr,index]
    assert {"name": "upload_everything", "line": 1} in pipeline["symbols"]
    out = lmm_json("recall", "--repo", str(repo), "--fast", "upload_case_5_with_a_rather_long_name_for_the_parametrized_upload_test")
    cases = next(f for f in out["files"] if f["path"] == "tests/test_cases.py")  # type: ignore[union-attr,index]
    assert cases["symbols"][0] == {"name": "test_upload_cases", "line": PARAMETRIZED.splitlines().index(
        "def test_upload_cases(case):") + 1}
    out = lmm_json("recall", "--repo", str(repo), "--fast", "upload display formatter")
    show = next(f for f in out["files"] if f["path"] == "src/show.rs")  # type: ignore[union-attr,index]
    assert {"name": "Upload", "line": 5} in show["symbols"]  # the impl line, past its doc comment and #[cfg]
    brief = lmm("brief", "--repo", str(repo)).stdout
    for m in re.finditer(r"^- `([^`]+)`[^\n]*?: `([^`]+)`[^\n]*\(`[^`:]+:(\d+)`\)$", brief.split("## Central modules")[-1]
                         .split("\n## ")[0], re.M):
        assert definition_line(repo, m.group(1), int(m.group(3)), m.group(2)), m.group(0)


# --------------------------------------------------------------------------------------------
# 3. A long task still gets a brief, quickly

ISSUE_TITLE = "Uploads retry forever when the server answers 503"


def long_issue(size: int) -> str:
    body = [ISSUE_TITLE, "", "Steps: call upload_blob with a large blob while the server is down.", ""]
    i = 0
    while sum(len(x) + 1 for x in body) < size:
        body.append(f'  File "/usr/lib/python3/site-packages/framework/module_{i % 97}.py", line {i}, '
                    f"in handler_{i % 89}: retry budget exhausted after attempt {i}; headers were X-Trace-{i}")
        i += 1
    return "\n".join(body)[:size]


@pytest.fixture
def uploads(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    commit_file(repo, "src/upload.py", APP, "Add upload client with retries")
    commit_file(repo, "src/other.py", "def unrelated():\n    return 0\n", "Add other module")
    commit_file(repo, "src/upload.py", APP + "\n# stop after 5 attempts\n", "Fix uploads retrying forever on 503")
    lmm("init", "--repo", str(repo), "--no-hooks")
    return repo


def test_a_long_task_still_gets_a_brief(uploads: Path) -> None:
    t0 = time.perf_counter()
    lmm("recall", "--repo", str(uploads), "--fast", ISSUE_TITLE)
    short = time.perf_counter() - t0
    for size in (2_000, 20_000, 100_000):
        task = long_issue(size)
        t0 = time.perf_counter()
        out = lmm_json("recall", "--repo", str(uploads), "--fast", task)
        took = time.perf_counter() - t0
        assert isinstance(out, dict)
        brief = out["brief"]
        assert out["files"] and out["files"][0]["path"] == "src/upload.py"
        assert "## Where to look" in brief and "`src/upload.py`" in brief, brief[:500]
        title = brief.splitlines()[0]
        assert title.startswith(f"# lmm recall: {ISSUE_TITLE}") and title.endswith("…"), title
        assert len(title) <= len("# lmm recall: ") + ECHO_CHARS + 2
        assert out["tokens"] <= 1000
        assert_true_citations(uploads, brief)
        assert took < short + 3.0, f"{size} bytes took {took:.2f}s, a short task {short:.2f}s"


def test_a_long_task_is_read_within_bounds(uploads: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, int] = {}
    real = Recaller._lexical

    def spy(self: Recaller, terms: list[str], phrases: list[str], ev: object) -> dict[str, float]:
        seen["terms"], seen["phrases"] = len(terms), len(phrases)
        return real(self, terms, phrases, ev)  # type: ignore[arg-type]

    monkeypatch.setattr(Recaller, "_lexical", spy)
    db = connect(uploads)
    try:
        t0 = time.perf_counter()
        rec = Recaller(db, uploads).recall(long_issue(100_000))
        took = time.perf_counter() - t0
        assert 0 < seen["terms"] <= MAX_TERMS and seen["phrases"] <= 8
        assert rec.files and rec.files[0].path == "src/upload.py"
        assert took < 2.0, took
    finally:
        db.close()


def test_echo_is_bounded() -> None:
    assert echo("auth module") == "auth module"
    assert echo("  Fix the parser\nLong body…\n") == "Fix the parser …"
    long = " ".join(f"word{i}" for i in range(500))
    e = echo(long)
    assert e.endswith(" …") and len(e.split()) == 25 and len(e) <= ECHO_CHARS + 2
    assert echo("x" * 5000) == "x" * ECHO_CHARS + " …"
    assert echo("a\x1b[31mred\x07b") == "a [31mred b"
    assert echo("first\rsecond") == "first …"  # a carriage return ends a line too


# --------------------------------------------------------------------------------------------
# 4. Control characters in what a brief quotes never break its lines


def test_control_characters_never_break_a_line(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    commit_file(repo, "src/upload.py", APP, "Add upload client with retries")
    msg = tmp_path / "msg"
    msg.write_bytes(b"Fix upload retry\rEVIL\x1b[2K overwritten\x07 \xe2\x80\xae reversed\n\n"
                    b"Retry loop\rhidden \x1b]0;title\x07 ran forever.\n")
    (repo / "src/upload.py").write_text(APP + "\n# bounded\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--cleanup=verbatim", "-F", str(msg))
    lmm("init", "--repo", str(repo), "--no-hooks")
    db = connect(repo)
    try:
        rec = Recaller(db, repo).recall("upload retry forever\x1b[31m\rEVIL")
        assert any("\r" in c.subject for c in rec.commits)  # the store keeps the subject as written
        text, _ = recall_brief(db, repo, rec)
        res = repo_brief(db, repo)
    finally:
        db.close()
    for out in (text, res.markdown, lmm("recall", "--repo", str(repo), "upload retry forever").stdout):
        for line in out.splitlines():
            assert not re.search("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]", line), repr(line)
            assert line == "" or line.startswith(("# ", "## ", "- ")), repr(line)
    assert "Fix upload retry EVIL [2K overwritten" in text and "— Retry loop (" in text, text


def test_render_keeps_every_line_one_line() -> None:
    sec = Section("Odd\ntitle", [Line("a\r\nb\x1b[1mc\u2028d", [Citation("file", "x\ny.py", 3)])])
    text, _, _ = render("t\ri\x07tle", [sec], budget=500, count=len, verify=lambda c: True, empty="none")
    assert text == "# t i tle\n\n## Odd title\n- a b [1mc d (`x y.py:3`)\n"
    assert one_line("plain `code` — fine") == "plain `code` — fine"


def test_the_title_never_takes_more_than_a_third_of_the_budget() -> None:
    sec = Section("S", [Line("x" * 20, [Citation("file", "a.py")])])
    title = "lmm recall: " + " ".join(f"w{i}" for i in range(40))
    text, used, printed = render(title, [sec], budget=120, count=len, verify=lambda c: True, empty="none")
    head = text.splitlines()[0]
    assert printed and used <= 120 and len(head) + 1 <= 40 and head.endswith(" …"), text
    assert head.startswith("# lmm recall: w0 w1")
