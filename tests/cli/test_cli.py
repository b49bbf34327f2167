"""The command line as a user meets it: help with an example everywhere, --json, one-line errors
with exit 1 for bad input and 2 for bad usage, and a fast start that imports nothing heavy."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import commit_file, git, lmm, lmm_json, make_repo, store_dir


def _commands() -> list[list[str]]:
    """Every command of the real typer app, subcommands included: a new command cannot skip its help."""
    import typer

    from lmm_cli.cli import app

    out: list[list[str]] = []

    def walk(cmd: object, path: list[str]) -> None:
        subs = getattr(cmd, "commands", None)  # a group (typer vendors its own click: no isinstance)
        if subs:
            for name, sub in sorted(subs.items()):
                walk(sub, [*path, name])
        else:
            out.append(path)

    walk(typer.main.get_command(app), [])
    return out


COMMANDS = _commands()


def test_the_walk_finds_the_commands() -> None:
    assert {"init", "recall", "tune"} <= {c[0] for c in COMMANDS} and ["hooks", "install"] in COMMANDS


@pytest.mark.parametrize("cmd", COMMANDS, ids=" ".join)
def test_every_command_has_help_with_an_example_and_json(cmd: list[str]) -> None:
    out = lmm(*cmd, "--help").stdout
    assert "Example" in out and "lmm " in out
    if cmd == ["hook"]:  # run by an assistant: the repository comes from its payload, the output is for the model
        return
    assert "--repo" in out
    if cmd != ["mcp"]:  # the MCP server's stdout is the protocol: it has no other output to format
        assert "--json" in out


def one_line_error(p: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    assert p.returncode == code, (p.returncode, p.stdout, p.stderr)
    assert "Traceback" not in p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lmm: "), p.stderr
    for n in needles:
        assert n in lines[0]


def test_not_a_repository(tmp_path: Path) -> None:
    one_line_error(lmm("status", "--repo", str(tmp_path), check=False), 1, "not a git repository")
    one_line_error(lmm("init", "--repo", str(tmp_path / "nope"), check=False), 1, "no such directory")


def test_bare_repository(tmp_path: Path) -> None:
    bare = tmp_path / "b.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    one_line_error(lmm("init", "--repo", str(bare), check=False), 1, "bare repository", "git clone")


def test_not_initialised(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r")
    one_line_error(lmm("log", "--repo", str(repo), check=False), 1, "lmm init")


def test_store_from_a_newer_lmm(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r")
    lmm("init", "--repo", str(repo), "--no-hooks")
    db = sqlite3.connect(store_dir(repo) / "lmm.db")
    db.execute("PRAGMA user_version = 999")
    db.commit()
    db.close()
    one_line_error(lmm("status", "--repo", str(repo), check=False), 1, "newer lmm", "upgrade")


def test_corrupt_store_then_rebuild(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", commits=4)
    lmm("init", "--repo", str(repo), "--no-hooks")
    store = store_dir(repo)
    for suffix in ("-wal", "-shm"):
        (store / f"lmm.db{suffix}").unlink(missing_ok=True)
    (store / "lmm.db").write_bytes(b"this is not a database at all" * 100)
    one_line_error(lmm("status", "--repo", str(repo), check=False), 1, "unreadable", "--rebuild")
    out = lmm_json("init", "--repo", str(repo), "--no-hooks", "--rebuild")
    assert out["ingest"]["new"] == 4 and out["moved_aside"]  # type: ignore[index]
    assert Path(out["moved_aside"]).read_bytes().startswith(b"this is not")  # type: ignore[index]  # kept, not deleted


def test_locked_store(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r")
    lmm("init", "--repo", str(repo), "--no-hooks")
    holder = sqlite3.connect(store_dir(repo) / "lmm.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        p = lmm("remember", "--repo", str(repo), "a note while locked", check=False, env={"LMM_LOCK_TIMEOUT": "0.5"})
        one_line_error(p, 1, "locked")
        assert lmm_json("status", "--repo", str(repo))["episodes"] == 3  # type: ignore[index]  # reads still work
    finally:
        holder.execute("ROLLBACK")
    # The capture lock: another capture in progress.
    import fcntl

    fd = os.open(store_dir(repo) / "drain.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        one_line_error(lmm("ingest", "--repo", str(repo), check=False, env={"LMM_LOCK_TIMEOUT": "0.5"}), 1, "locked")
    finally:
        os.close(fd)


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r")
    lmm("init", "--repo", str(repo), "--no-hooks")
    assert lmm("log", "--repo", str(repo), "-n", "many", check=False).returncode == 2
    assert lmm("frobnicate", check=False).returncode == 2
    one_line_error(lmm("log", "--repo", str(repo), "--since", "last tuesdayish", check=False), 2, "--since")
    one_line_error(lmm("log", "--repo", str(repo), "-n", "0", check=False), 2, "-n")


def test_bad_config_names_the_key(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r")
    lmm("init", "--repo", str(repo), "--no-hooks")
    (store_dir(repo) / "config.toml").write_text("[capture]\nmax_file_diff_bytes = -3\n")
    one_line_error(lmm("ingest", "--repo", str(repo), check=False), 1, "capture.max_file_diff_bytes", "-3")
    (store_dir(repo) / "config.toml").write_text("[capture]\nmax_file_bytes = 3\n")
    one_line_error(lmm("ingest", "--repo", str(repo), check=False), 1, "unknown key capture.max_file_bytes")
    (store_dir(repo) / "config.toml").write_text("[recall]\nauto_tune = \"yes\"\n")
    one_line_error(lmm("tune", "--repo", str(repo), check=False), 1, "recall.auto_tune", "'yes'")
    (store_dir(repo) / "config.toml").write_text("[recall]\ntune_holdout = 1\n")
    one_line_error(lmm("tune", "--repo", str(repo), check=False), 1, "recall.tune_holdout")


def test_remember_links_files_and_is_idempotent(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r")
    commit_file(repo, "src/auth/keyring.py", "def store():\n    pass\n", "Add keyring")
    lmm("init", "--repo", str(repo), "--no-hooks")
    note = "we keep auth tokens in the OS keyring (keyring.py), never in files"
    first = lmm_json("remember", "--repo", str(repo), note)
    again = lmm_json("remember", "--repo", str(repo), note)
    assert first["new"] is True and again["new"] is False and first["id"] == again["id"]  # type: ignore[index]
    assert first["files"] == ["src/auth/keyring.py"]  # type: ignore[index]
    notes = lmm_json("log", "--repo", str(repo), "--kind", "note")
    assert [n["title"] for n in notes] == [note]  # type: ignore[union-attr,index]
    one_line_error(lmm("remember", "--repo", str(repo), "   ", check=False), 2, "nothing to remember")
    p = lmm("remember", "--repo", str(repo), "-", input="from stdin\nsecond line\n")
    assert "remembered" in p.stdout


def test_log_filters_and_text_output(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", commits=5)
    lmm("init", "--repo", str(repo), "--no-hooks")
    lmm("remember", "--repo", str(repo), "release branches are cut on Mondays")
    out = lmm("log", "--repo", str(repo), "-n", "3").stdout.splitlines()
    assert len(out) == 3 and "note" in out[0] and "release branches" in out[0]
    assert len(lmm_json("log", "--repo", str(repo), "--kind", "commit")) == 5  # type: ignore[arg-type]
    assert lmm_json("log", "--repo", str(repo), "--since", "2099-01-01") == []
    assert "no episodes match" in lmm("log", "--repo", str(repo), "--since", "2099-01-01").stdout


def test_status_reports_what_is_remembered(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", commits=2)
    lmm("init", "--repo", str(repo))
    st = lmm_json("status", "--repo", str(repo))
    assert st["by_kind"] == {"commit": 2} and st["by_tier"] == {"episodic": 2}  # type: ignore[index]
    assert [h["state"] for h in st["hooks"]["states"]] == ["installed"] * 4  # type: ignore[index]
    assert st["store_bytes"] > 0 and st["last_capture"]["kind"] == "commit"  # type: ignore[index]
    text = lmm("status", "--repo", str(repo)).stdout
    assert "2 commit" in text and "post-commit" in text


def _sentinels(where: Path, names: list[str], hit: Path) -> dict[str, str]:
    where.mkdir()
    for name in names:
        (where / f"{name}.py").write_text(f"open({str(hit)!r}, 'a').write({name!r} + '\\n')\n")
    return {**os.environ, "PYTHONPATH": str(where)}


def test_cli_start_and_hook_path_import_nothing_heavy(tmp_path: Path) -> None:
    """`lmm --help` imports no ML or parsing stack at all; the drainer a hook starts refreshes the
    code index (tree-sitter) and embeddings (numpy) but never loads torch & co. Sentinel modules
    that record their import make this hold whether or not the real packages are installed."""
    hit = tmp_path / "imported.txt"
    heavy = ["torch", "transformers", "peft", "sentence_transformers"]
    env = _sentinels(tmp_path / "all", heavy + ["tree_sitter", "numpy", "git"], hit)
    p = subprocess.run([sys.executable, "-m", "lmm_cli", "--help"], env=env, capture_output=True, text=True)
    assert p.returncode == 0
    assert not hit.exists(), f"lmm --help imported: {hit.read_text()}"

    env = _sentinels(tmp_path / "ml", heavy, hit)
    repo = make_repo(tmp_path / "r")
    lmm("init", "--repo", str(repo), "--no-hooks", embed=True)
    store = store_dir(repo)
    commit_file(repo, "src/new_module.py", "def fresh_function():\n    return 1\n", "Add a fresh module")
    (store / "queue" / "ev.1.0.q").write_text(
        f"lmm-event-1\npost-commit\n{repo}\n{git(repo, 'rev-parse', 'HEAD').strip()}\nrefs/heads/main\nend\n")
    p = subprocess.run([sys.executable, "-m", "lmm_cli.jobs.drain", str(store)], env=env)
    assert p.returncode == 0
    assert lmm_json("status", "--repo", str(repo))["queue"]["pending"] == 0  # type: ignore[index]  # it did run
    assert not hit.exists(), f"the drainer imported: {hit.read_text()}"
    log = (store / "logs" / "drain.log").read_text()
    assert "after-error" not in log and "crash" not in log, log
    # …and refreshed the code index and the embeddings without them.
    db = sqlite3.connect(store / "lmm.db")
    assert db.execute("SELECT count(*) FROM code_symbols WHERE name = 'fresh_function'").fetchone()[0] == 1
    fresh = db.execute("SELECT count(*) FROM code_chunks c JOIN vectors v ON v.hash = c.hash"
                       " WHERE c.path = 'src/new_module.py'").fetchone()[0]
    assert fresh >= 1  # the new module's chunk was embedded, by numpy alone
    # The probe is real: importing one of them does record it.
    subprocess.run([sys.executable, "-c", "import torch"], env=env, check=True)
    assert hit.read_text() == "torch\n"


def test_json_output_is_one_object(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r")
    for cmd in (["init", "--no-hooks"], ["ingest"], ["status"], ["hooks", "status"]):
        obj = json.loads(lmm(*cmd, "--repo", str(repo), "--json").stdout)
        assert isinstance(obj, dict)
