"""Tasks that name things outright: a file name, an old path, a commit id, a quoted subject; and
tasks about tests or docs. Recall must read these before bag-of-words retrieval blurs them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lmm_cli.address.intent import (
    is_doc,
    is_test,
    path_mentions,
    quoted_subjects,
    sha_mentions,
    subject_key,
    wants_docs,
    wants_tests,
)
from lmm_cli.text import query_phrases

from conftest import commit_file, git, lmm, lmm_json, module_environment

# --------------------------------------------------------------------------- reading the task

def test_file_names_and_paths_are_read_from_the_task() -> None:
    assert path_mentions("feat: extract validate_worker from plan.py") == ["plan.py"]
    assert path_mentions("see `src/auth/Login.py` and Cargo.toml") == ["src/auth/login.py", "cargo.toml"]
    assert path_mentions("bump tracing to 4.23.11, v1.2 and 3.14") == []  # versions are not names


def test_commit_ids_with_a_digit_and_a_letter_come_before_plain_numbers_and_words() -> None:
    text = "This reverts commit 8cf0d4886bab62ae96d47d1ea5e339c4ddfc0e9f; see 1234567, deadbeef or abc1234"
    assert sha_mentions(text) == ["8cf0d4886bab62ae96d47d1ea5e339c4ddfc0e9f", "abc1234", "1234567", "deadbeef"]
    assert sha_mentions("bump to 4.23.11 and 123456") == []  # too short, or part of a version


def test_quoted_subjects_unwrap_git_reverts() -> None:
    assert quoted_subjects('Revert "feat: add plan export to settings"') == ["feat: add plan export to settings"]
    assert "feat: add plan export" in quoted_subjects('Revert "Revert "feat: add plan export""')
    assert quoted_subjects('say "hi" to it') == []  # one word is not a subject


@pytest.mark.parametrize("path,key,test", [
    ("src/uploads/session_service.py", "sessionservice", False),
    ("tests/uploads/test_session_service.py", "sessionservice", True),
    ("pkg/registry/layer_secret_test.go", "layersecret", True),
    ("packages/settings/test/SearchStore.test.ts", "searchstore", True),
    ("packages/settings/src/SearchStore.tsx", "searchstore", False),
    ("jvm/src/test/java/com/acme/MessageControllerTest.java", "messagecontroller", True),
    ("crates/protocol/tests/route_snapshot_test.rs", "routesnapshot", True),
    ("tests/fixtures/users.json", "users", False),  # data in a test folder is not a test
])
def test_test_files_pair_with_their_subject(path: str, key: str, test: bool) -> None:
    assert (subject_key(path), is_test(path)) == (key, test)


def test_adjacent_words_make_phrases() -> None:
    assert query_phrases("Clarify queue limits") == ["clarify queue", "queue limits"]
    assert query_phrases("why did we drop redis") == ["drop redis"]  # stopwords break a pair
    assert query_phrases("queue, limits") == []  # so does punctuation
    assert query_phrases("retry_profile handler") == ["retry_profile handler"]


def test_intent_words() -> None:
    assert wants_tests("Add tests for reconcileSearch") and wants_tests("test(api): cover retries")
    assert wants_tests("flaky upload test") and not wants_tests("Implement upload retries")
    assert wants_docs("docs: clarify queue limits") and wants_docs("Document storage setup")
    assert not wants_docs("Implement upload retries")
    assert is_doc("src/storage/README.md") and is_doc("docs/adr/0001-x.md") and not is_doc("src/a.py")


# --------------------------------------------------------------------------- recall on a repository

@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    base = tmp_path_factory.mktemp("intent")
    with module_environment(base):
        yield _build(base / "repo")


def _build(r: Path) -> Path:
    r.mkdir()
    git(r, "init", "-q")
    commit_file(r, "src/upload/client.py", "class UploadClient:\n    def send(self, blob):\n        return blob\n",
                "Add the upload client")
    commit_file(r, "src/search/client.py", "class SearchClient:\n    def find(self, words):\n        return words\n",
                "Add the search client")
    commit_file(r, "src/billing/invoice.py", "def invoice_total(lines):\n    return sum(lines)\n", "Add invoice totals")
    commit_file(r, "tests/billing/test_invoice.py",
                "from billing.invoice import invoice_total\n\ndef test_total():\n    assert invoice_total([1, 2]) == 3\n",
                "Check the sum of an invoice")
    commit_file(r, "src/net/backoff.py", "DELAYS = [1, 2, 4]\n", "Tune constants")
    commit_file(r, "src/billing/README.md", "# Billing\n\nInvoices are summed line by line.\n", "Explain billing")
    commit_file(r, "docs/workers.md", "# Workers\n\n## Queue limits\n\nA worker holds at most 50 jobs.\n",
                "Describe the workers")
    commit_file(r, "docs/scaling.md", "# Scaling\n\n## Queue depth, worker count and host limits\n\n"
                "Limits: raise the limits when the queue is long; the queue drains faster with more"
                " workers, within the limits of the host. Watch the queue.\n",
                "Describe scaling")
    commit_file(r, "src/legacy/old_name.py", "def legacy():\n    return 1\n", "Add the legacy helper")
    git(r, "mv", "src/legacy/old_name.py", "src/legacy/new_name.py")
    git(r, "commit", "-q", "-m", "Rename the legacy helper")
    lmm("init", "--repo", str(r), "--no-hooks")
    return r


@pytest.fixture(autouse=True)
def isolated() -> None:  # the module fixture owns the environment
    return None


def files_of(out: object) -> list[str]:
    return [f["path"] for f in out["files"]]  # type: ignore[index]


def test_a_named_file_comes_first_and_an_ambiguous_name_is_settled_by_the_other_words(repo: Path) -> None:
    out = lmm_json("recall", "--repo", str(repo), "--fast", "make client.py in upload stream the blob")
    assert files_of(out)[0] == "src/upload/client.py"
    assert "src/search/client.py" in files_of(out)[:3]
    assert any("names client.py" in w for w in out["files"][0]["why"])  # type: ignore[index]


def test_an_old_path_is_followed_to_the_file_now(repo: Path) -> None:
    out = lmm_json("recall", "--repo", str(repo), "--fast", "what happened to src/legacy/old_name.py")
    assert files_of(out)[0] == "src/legacy/new_name.py"
    assert "the task names src/legacy/old_name.py" in out["files"][0]["why"]  # type: ignore[index]


def test_a_commit_id_alone_finds_what_it_changed(repo: Path) -> None:
    sha = git(repo, "log", "--format=%H", "--grep=^Tune constants$").strip()
    out = lmm_json("recall", "--repo", str(repo), "--fast", f"what did {sha[:8]} do")
    assert files_of(out)[0] == "src/net/backoff.py"
    assert any(w.startswith(f"the task names commit {sha[:7]}") for w in out["files"][0]["why"])  # type: ignore[index]
    assert out["commits"][0]["sha"] == sha and out["commits"][0]["why"].startswith("named in the task")  # type: ignore[index]
    assert sha[:7] in out["brief"]  # type: ignore[index]


def test_a_revert_finds_the_files_of_the_commit_it_quotes(repo: Path) -> None:
    out = lmm_json("recall", "--repo", str(repo), "--fast", 'Revert "Tune constants"')
    assert files_of(out)[0] == "src/net/backoff.py"
    assert any("the task quotes “Tune constants”" in w for w in out["files"][0]["why"])  # type: ignore[index]


def test_a_task_about_tests_puts_the_test_file_first(repo: Path) -> None:
    plain = files_of(lmm_json("recall", "--repo", str(repo), "--fast", "invoice totals"))
    tests = lmm_json("recall", "--repo", str(repo), "--fast", "add tests for invoice totals")
    assert plain[0] == "src/billing/invoice.py"
    assert files_of(tests)[0] == "tests/billing/test_invoice.py"
    assert any("about tests" in w for w in tests["files"][0]["why"])  # type: ignore[index]


def test_a_task_about_docs_lifts_the_documentation(repo: Path) -> None:
    plain = files_of(lmm_json("recall", "--repo", str(repo), "--fast", "billing invoices summed"))
    docs = files_of(lmm_json("recall", "--repo", str(repo), "--fast", "docs: billing invoices summed"))
    assert docs[0] == "src/billing/README.md"
    assert plain.index("src/billing/README.md") >= docs.index("src/billing/README.md")


def test_words_that_stand_together_beat_the_same_words_apart(repo: Path) -> None:
    # docs/scaling.md says "queue" and "limits" more often, in a heading too; only docs/workers.md
    # has them side by side (its heading "Queue limits"). Fails when phrases are not searched.
    out = lmm_json("recall", "--repo", str(repo), "--fast", "queue limits")
    assert files_of(out)[:2] == ["docs/workers.md", "docs/scaling.md"]
