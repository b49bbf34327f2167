"""Files nearly every commit touches (a changelog, a lockfile) are no answer to a task: replay
leaves them out of its gold, and the brief states them as a convention instead."""

from __future__ import annotations

from pathlib import Path

from conftest import git, lmm, lmm_json


def commit(repo: Path, files: dict[str, str], message: str) -> str:
    for path, text in files.items():
        f = repo / path
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD").strip()


def changelog_repo(path: Path, commits: int = 40) -> tuple[Path, list[str]]:
    """A repository where every commit also adds a line to CHANGES.rst; every fifth commit
    touches nothing else (a release note). Returns the repository and its commits, oldest first."""
    path.mkdir(parents=True)
    git(path, "init", "-q")
    log = ["Changes", "======="]
    shas = []
    for i in range(commits):
        log.append(f"- change {i}")
        files = {"CHANGES.rst": "\n".join(log) + "\n"}
        if i % 5 != 4:
            mod = f"src/pkg/mod{i % 4}.py"
            files[mod] = f"def handler_{i % 4}(value):\n    return value + {i}\n"
            message = f"Fix the handler in mod{i % 4} for value {i}"
        else:
            message = f"Note release {i} in the changelog"
        shas.append(commit(path, files, message))
    return path, shas


def test_the_changelog_is_always_touched_and_code_is_not(tmp_path: Path) -> None:
    from lmm_cli.model.churn import always_touched, chronic
    from lmm_cli.workspace import open_workspace

    repo, _ = changelog_repo(tmp_path / "repo")
    lmm("init", "--repo", str(repo), "--no-hooks")
    db = open_workspace(repo).connect()
    try:
        found = chronic(db)
        assert always_touched(db) == {"CHANGES.rst"}
    finally:
        db.close()
    assert found[0].path == "CHANGES.rst" and found[0].touches == 40 and found[0].of == 40


def test_shares_names_and_renames() -> None:
    from lmm_cli.model.churn import always_touched_in

    # The central file of a small library, in 30% of the commits, is what tasks are about: kept.
    sets = [{"core.py", f"m{i}.py"} if i % 10 < 3 else {f"m{i}.py"} for i in range(100)]
    assert always_touched_in(sets) == set()
    # A generated file in 60% of them is not, whatever its name…
    sets = [{"gen/schema.json", f"m{i}.py"} if i % 10 < 6 else {f"m{i}.py"} for i in range(100)]
    assert always_touched_in(sets) == {"gen/schema.json"}
    # … and a lockfile or a changelog needs far less, followed through its renames.
    sets = [({"uv.lock"} if i % 10 == 0 else set()) | ({"CHANGES" if i < 50 else "CHANGES.rst"} if i % 5 == 0 else set())
            | {f"m{i}.py"} for i in range(100)]
    assert always_touched_in(sets, [("CHANGES", "CHANGES.rst")]) == {"uv.lock", "CHANGES.rst"}
    assert always_touched_in(sets, [("CHANGES", "CHANGES.rst")], window=40) == {"CHANGES.rst"}  # 4 lockfile bumps: too few


def test_replay_gold_leaves_the_changelog_out_and_reads_it_from_before_the_cut(tmp_path: Path) -> None:
    from lmm_cli.model.replay import held_out_full

    repo, shas = changelog_repo(tmp_path / "repo")
    before = held_out_full(repo, 10, leave_out_chronic=False)
    assert all("CHANGES.rst" in q.gold for q in before.queries) and len(before.queries) == 10
    held = held_out_full(repo, 10)
    assert held.chronic == ["CHANGES.rst"]
    assert [q.sha for q in held.queries] == [s for i, s in enumerate(shas[-10:]) if (30 + i) % 5 != 4]
    assert all(q.gold and "CHANGES.rst" not in q.gold for q in held.queries)
    assert held.dropped_chronic == [shas[34], shas[39]]  # the release notes touched nothing else

    # Only the history before the cut decides: a changelog started after it is an answer like any file.
    late = tmp_path / "late"
    late.mkdir()
    git(late, "init", "-q")
    for i in range(30):
        commit(late, {f"src/m{i % 3}.py": f"x = {i}\n"}, f"Change m{i % 3} to {i}")
    for i in range(10):
        commit(late, {f"src/m{i % 3}.py": f"x = {100 + i}\n", "NEWS": f"{i}\n" * (i + 1)}, f"Change m{i % 3} again")
    held = held_out_full(late, 9)
    assert held.chronic == []
    assert sum("NEWS" in q.gold for q in held.queries) == 9  # NEWS was made at the cut; each of the 9 changed it


def test_the_brief_states_the_changelog_as_a_convention_with_a_citation(tmp_path: Path) -> None:
    repo, shas = changelog_repo(tmp_path / "repo")
    lmm("init", "--repo", str(repo), "--no-hooks")
    brief = lmm_json("brief", "--repo", str(repo))["brief"]  # type: ignore[index]
    line = next(ln for ln in brief.splitlines() if "commits also update" in ln)
    assert line.startswith("- Most commits also update `CHANGES.rst` (100% of the last 40)")
    assert f"`{shas[-1][:7]}`" in line and "`CHANGES.rst`," in line.split("(", 2)[-1]
