"""`lmm integrate`: each assistant's files get lmm's part beside what the user has, a second run changes
nothing, and `--remove` gives back the files byte for byte (a file lmm created is deleted). The real
Claude Code and Codex CLIs read what lmm wrote: the plugin validates, and the MCP server is listed
and, for Claude Code, health-checked as connected."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from assistants import Clients, assistant_env, clients

from conftest import ROOT, git, lmm, make_repo

MARK = "<!-- lmm -->"


@pytest.fixture(scope="session")
def assistant_clients() -> Clients:
    """The real Claude Code and Codex CLIs, installed from npm once (``tests/assistants.py``)."""
    return clients()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    r = make_repo(tmp_path / "r", commits=3)
    lmm("init", "--repo", str(r), "--no-hooks")
    return r


def files_of(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (the git dir left out), by relative path."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and ".git" not in p.relative_to(folder).parts}


def integrate(repo: Path, *args: str, env: dict[str, str] | None = None) -> dict:
    out = json.loads(lmm("integrate", *args, "--repo", str(repo), "--json", env=env).stdout)
    assert isinstance(out, dict)
    return out


def statuses(out: dict) -> dict[str, str]:
    return {Path(f["file"]).name: f["status"] for f in out["files"]}


def no_machine_paths(text: str) -> None:
    """A file that may be committed names no path of this machine: not this checkout, not this Python."""
    assert str(ROOT) not in text and sys.executable not in text and str(Path(sys.executable).parent) not in text


# -- Claude Code: project settings ---------------------------------------------------------------

def test_claude_fresh_project_round_trip(repo: Path) -> None:
    before = files_of(repo)
    out = integrate(repo, "claude")
    assert statuses(out) == {"settings.json": "created", ".mcp.json": "created"}
    settings = json.loads((repo / ".claude" / "settings.json").read_text())
    commands = {ev: [h["command"] for g in groups for h in g["hooks"]] for ev, groups in settings["hooks"].items()}
    assert set(commands) == {"SessionStart", "UserPromptSubmit", "PreCompact", "SessionEnd"}
    assert all("lmm hook " in c[0] for c in commands.values())
    assert settings["hooks"]["SessionStart"][0]["matcher"] == "startup|resume|clear|compact"
    mcp = json.loads((repo / ".mcp.json").read_text())
    assert mcp == {"mcpServers": {"lmm": {"type": "stdio", "command": "lmm", "args": ["mcp"]}}}
    for f in (repo / ".claude" / "settings.json", repo / ".mcp.json"):
        no_machine_paths(f.read_text())

    after = files_of(repo)
    again = integrate(repo, "claude")
    assert set(statuses(again).values()) == {"unchanged"} and files_of(repo) == after

    gone = integrate(repo, "claude", "--remove")
    assert set(statuses(gone).values()) == {"deleted"}
    assert files_of(repo) == before and not (repo / ".claude").exists()
    assert git(repo, "status", "--porcelain") == ""


USER_SETTINGS = """{
    "permissions": {
        "allow": ["Bash(npm run test:*)"],
        "deny": []
    },
    "hooks": {
        "SessionStart": [
            {"matcher": "startup", "hooks": [{"type": "command", "command": "echo hello from the user"}]}
        ],
        "Stop": [{"hooks": [{"type": "command", "command": "notify-send done"}]}]
    },
    "env": {"FOO": "1"}
}
"""
USER_MCP = '{\n\t"mcpServers": {\n\t\t"github": {"command": "gh-mcp", "args": []}\n\t}\n}'  # tabs, no final newline


def test_claude_merges_with_user_settings_and_mcp_json(repo: Path) -> None:
    (repo / ".claude").mkdir()
    (repo / ".claude" / "settings.json").write_text(USER_SETTINGS)
    (repo / ".mcp.json").write_text(USER_MCP)
    (repo / ".claude" / "settings.local.json").write_text('{"model": "opus"}\n')
    before = files_of(repo)

    out = integrate(repo, "claude")
    assert statuses(out) == {"settings.json": "updated", ".mcp.json": "updated"}
    text = (repo / ".claude" / "settings.json").read_text()
    settings = json.loads(text)
    # The user's settings are all there, and their text is untouched: lmm's entries were inserted.
    assert settings["permissions"] == {"allow": ["Bash(npm run test:*)"], "deny": []} and settings["env"] == {"FOO": "1"}
    assert settings["hooks"]["SessionStart"][0]["hooks"][0]["command"] == "echo hello from the user"
    assert "lmm hook session-start" in settings["hooks"]["SessionStart"][1]["hooks"][0]["command"]
    assert settings["hooks"]["Stop"] == [{"hooks": [{"type": "command", "command": "notify-send done"}]}]
    assert 'notify-send done"}]}]' in text and '    "env": {"FOO": "1"}\n}\n' in text
    assert '            {\n                "hooks": [' in text  # lmm's entries in the file's own 4-space indent
    mcp_text = (repo / ".mcp.json").read_text()
    assert json.loads(mcp_text)["mcpServers"]["github"] == {"command": "gh-mcp", "args": []}
    assert '\t\t"lmm": {' in mcp_text and not mcp_text.endswith("\n")  # tabs kept, no newline added
    assert (repo / ".claude" / "settings.local.json").read_text() == '{"model": "opus"}\n'

    after = files_of(repo)
    integrate(repo, "claude")
    assert files_of(repo) == after

    integrate(repo, "claude", "--remove")
    assert files_of(repo) == before


def test_claude_remove_keeps_what_the_user_added_since(repo: Path) -> None:
    settings = repo / ".claude" / "settings.json"
    settings.parent.mkdir()
    settings.write_text(USER_SETTINGS)
    integrate(repo, "claude")
    # The user adds a hook of their own after lmm's, and a setting at the end.
    data = settings.read_text()
    data = data.replace('"Stop": [', '"Stop": [{"hooks": [{"type": "command", "command": "say stop"}]}, ', 1)
    data = data.replace('"env": {"FOO": "1"}', '"env": {"FOO": "1"},\n    "model": "sonnet"', 1)
    settings.write_text(data)
    integrate(repo, "claude", "--remove")
    expected = USER_SETTINGS.replace('"Stop": [', '"Stop": [{"hooks": [{"type": "command", "command": "say stop"}]}, ', 1)
    expected = expected.replace('"env": {"FOO": "1"}', '"env": {"FOO": "1"},\n    "model": "sonnet"', 1)
    assert settings.read_text() == expected


def test_claude_keeps_an_lmm_server_the_user_wrote(repo: Path) -> None:
    mine = '{"mcpServers": {"lmm": {"command": "/opt/lmm/bin/lmm", "args": ["mcp", "--repo", "."]}}}\n'
    (repo / ".mcp.json").write_text(mine)
    out = integrate(repo, "claude")
    assert "kept" in statuses(out)[".mcp.json"] or statuses(out)[".mcp.json"].startswith("unchanged")
    assert (repo / ".mcp.json").read_text() == mine
    integrate(repo, "claude", "--remove")
    assert (repo / ".mcp.json").read_text() == mine


def test_a_file_that_is_not_json_is_left_alone(repo: Path) -> None:
    settings = repo / ".claude" / "settings.json"
    settings.parent.mkdir()
    settings.write_text("{ this is not json\n")
    p = lmm("integrate", "claude", "--repo", str(repo), check=False)
    assert p.returncode == 1 and "not valid JSON" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    assert settings.read_text() == "{ this is not json\n"
    assert not (repo / ".mcp.json").exists()


def test_integrate_needs_the_memory_first(tmp_path: Path) -> None:
    r = make_repo(tmp_path / "bare", commits=1)
    before = files_of(r)
    p = lmm("integrate", "claude", "--repo", str(r), check=False)
    assert p.returncode == 1 and "lmm init" in p.stderr
    assert files_of(r) == before
    p = lmm("integrate", "vim", "--repo", str(r), check=False)
    assert p.returncode == 2 and "claude, codex, cursor, aider" in p.stderr


# -- Claude Code: plugin ------------------------------------------------------------------------------

def test_plugin_validates_and_installs_in_the_real_claude(repo: Path, tmp_path: Path, assistant_clients: Clients) -> None:
    c = assistant_clients
    plugin = tmp_path / "plugins" / "lmm"
    out = integrate(repo, "claude", "--plugin", str(plugin))
    assert sorted(files_of(plugin)) == [".claude-plugin/marketplace.json", ".claude-plugin/plugin.json", ".mcp.json",
                                        "hooks/hooks.json"]
    hooks = json.loads((plugin / "hooks" / "hooks.json").read_text())["hooks"]
    assert set(hooks) == {"SessionStart", "UserPromptSubmit", "PreCompact", "SessionEnd"}
    for f in files_of(plugin).values():
        no_machine_paths(f.decode())
    env = assistant_env(tmp_path / "home")

    def claude(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(c.claude), *args], env=env, capture_output=True, text=True, timeout=120)

    for target in (plugin, plugin / ".claude-plugin" / "plugin.json"):  # the marketplace, then the plugin
        v = claude("plugin", "validate", "--strict", str(target))
        assert v.returncode == 0 and "Validation passed" in v.stdout, v.stdout + v.stderr
    assert claude("plugin", "marketplace", "add", str(plugin)).returncode == 0
    installed = claude("plugin", "install", "lmm@lmm")
    assert installed.returncode == 0, installed.stdout + installed.stderr
    details = claude("plugin", "details", "lmm")
    assert "SessionStart, UserPromptSubmit, PreCompact, SessionEnd" in details.stdout, details.stdout
    assert "MCP servers (1)" in details.stdout

    assert integrate(repo, "claude", "--plugin", str(plugin)) == {**out, "files": [
        {**f, "status": "unchanged"} for f in out["files"]]}
    integrate(repo, "claude", "--plugin", str(plugin), "--remove")
    assert not plugin.exists() and (tmp_path / "plugins").is_dir() is False


# -- Claude Code and Codex: the MCP server, as the real clients see it ------------------------------------

def test_claude_mcp_list_shows_lmm_connected(repo: Path, tmp_path: Path, assistant_clients: Clients) -> None:
    c = assistant_clients
    env = assistant_env(tmp_path / "home")
    add = subprocess.run([str(c.claude), "mcp", "add", "--scope", "local", "lmm", "--", "lmm", "mcp"], cwd=repo, env=env,
                         capture_output=True, text=True, timeout=60)
    assert add.returncode == 0, add.stdout + add.stderr
    listed = subprocess.run([str(c.claude), "mcp", "list"], cwd=repo, env=env, capture_output=True, text=True, timeout=120)
    line = next((ln for ln in listed.stdout.splitlines() if ln.startswith("lmm:")), "")
    assert "lmm mcp" in line and "Connected" in line, listed.stdout + listed.stderr


def test_codex_round_trip_and_mcp_list(repo: Path, tmp_path: Path, assistant_clients: Clients) -> None:
    c = assistant_clients
    env = assistant_env(tmp_path / "home")
    codex_home = Path(env["CODEX_HOME"])
    codex_home.mkdir(parents=True)
    config = codex_home / "config.toml"
    config.write_text('model = "o3"\n\n[mcp_servers.docs]\ncommand = "docs-mcp"')  # no final newline
    (repo / "AGENTS.md").write_text("# Agents\n\nRun `make test` before committing.\n")
    before, config_before = files_of(repo), config.read_bytes()

    out = integrate(repo, "codex", env=env)
    assert statuses(out) == {"config.toml": "updated", "hooks.json": "created", "AGENTS.md": "updated"}
    cfg = tomllib.loads(config.read_text())
    assert cfg["mcp_servers"]["docs"] == {"command": "docs-mcp"}
    assert cfg["mcp_servers"]["lmm"]["args"] == ["mcp"] and Path(cfg["mcp_servers"]["lmm"]["command"]).name == "lmm"
    agents = (repo / "AGENTS.md").read_text()
    assert agents.startswith("# Agents\n\nRun `make test` before committing.\n\n<!-- lmm:agents:begin")
    assert "`recall`" in agents and "`remember`" in agents
    hooks = json.loads((repo / ".codex" / "hooks.json").read_text())["hooks"]
    assert set(hooks) == {"SessionStart", "UserPromptSubmit", "PreCompact", "Stop", "SessionEnd"}
    for f in (repo / "AGENTS.md", repo / ".codex" / "hooks.json"):
        no_machine_paths(f.read_text())

    listed = subprocess.run([str(c.codex), "mcp", "list", "--json"], cwd=repo, env=env, capture_output=True, text=True,
                            timeout=60)
    assert listed.returncode == 0, listed.stderr
    servers = {s["name"]: s for s in json.loads(listed.stdout)}
    assert set(servers) == {"lmm", "docs"}
    assert servers["lmm"]["transport"]["command"] == cfg["mcp_servers"]["lmm"]["command"]
    # The AGENTS.md section reaches what Codex puts before the model.
    prompt = subprocess.run([str(c.codex), "debug", "prompt-input", "hello"], cwd=repo, env=env, capture_output=True,
                            text=True, timeout=60)
    assert "## Memory (lmm)" in prompt.stdout and "Run `make test` before committing." in prompt.stdout

    after = (files_of(repo), config.read_bytes())
    lmm("integrate", "codex", "--repo", str(repo), env=env)
    assert (files_of(repo), config.read_bytes()) == after

    lmm("integrate", "codex", "--remove", "--repo", str(repo), env=env)
    assert files_of(repo) == before and config.read_bytes() == config_before and not (repo / ".codex").exists()


def test_codex_leaves_the_users_own_server_and_disabled_hooks_alone(repo: Path, tmp_path: Path) -> None:
    env = assistant_env(tmp_path / "home")
    codex_home = Path(env["CODEX_HOME"])
    codex_home.mkdir(parents=True)
    mine = '[features]\nhooks = false\n\n[mcp_servers.lmm]\ncommand = "lmm"\nargs = ["mcp"]\n'
    (codex_home / "config.toml").write_text(mine)
    out = integrate(repo, "codex", env=env)
    assert statuses(out)["config.toml"].startswith("left alone") and "hooks.json" not in statuses(out)
    assert not (repo / ".codex").exists()
    lmm("integrate", "codex", "--remove", "--repo", str(repo), env=env)
    assert (codex_home / "config.toml").read_text() == mine and not (repo / "AGENTS.md").exists()


# -- Cursor and aider ---------------------------------------------------------------------------------

def test_cursor_round_trip(repo: Path) -> None:
    yaml = pytest.importorskip("yaml")
    (repo / ".cursor").mkdir()
    (repo / ".cursor" / "mcp.json").write_text('{"mcpServers": {"db": {"command": "db-mcp"}}}\n')
    before = files_of(repo)
    out = integrate(repo, "cursor")
    assert statuses(out) == {"mcp.json": "updated", "lmm.mdc": "created", "hooks.json": "created"}
    assert json.loads((repo / ".cursor" / "mcp.json").read_text())["mcpServers"] == {
        "db": {"command": "db-mcp"}, "lmm": {"command": "lmm", "args": ["mcp"]}}
    rule = (repo / ".cursor" / "rules" / "lmm.mdc").read_text()
    front, body = rule.split("---\n")[1], rule.split("---\n", 2)[2]
    meta = yaml.safe_load(front)
    assert meta["alwaysApply"] is True and "lmm" in meta["description"]
    assert body.startswith(MARK) and "`recall`" in body
    hooks = json.loads((repo / ".cursor" / "hooks.json").read_text())
    assert hooks["version"] == 1 and "lmm hook after-file-edit" in hooks["hooks"]["afterFileEdit"][0]["command"]
    after = files_of(repo)
    integrate(repo, "cursor")
    assert files_of(repo) == after
    integrate(repo, "cursor", "--remove")
    assert files_of(repo) == before


@pytest.mark.parametrize("conf", [
    None,
    "model: gpt-5\nauto-commits: false",
    "read:\n  - CONVENTIONS.md\nmodel: gpt-5\n",
    "read: [CONVENTIONS.md]  # the team's\n",
    "read: CONVENTIONS.md\r\nmap-tokens: 1024\r\n",
], ids=["none", "no-read", "block-list", "flow-list", "one-file-crlf"])
def test_aider_round_trip(repo: Path, conf: str | None) -> None:
    yaml = pytest.importorskip("yaml")
    if conf is not None:
        (repo / ".aider.conf.yml").write_bytes(conf.encode())
    before = files_of(repo)
    integrate(repo, "aider")
    data = yaml.safe_load((repo / ".aider.conf.yml").read_text())
    read = data["read"] if isinstance(data["read"], list) else [data["read"]]
    assert ".aider.lmm.md" in read and (conf is None or "CONVENTIONS.md" not in conf or "CONVENTIONS.md" in read)
    conventions = (repo / ".aider.lmm.md").read_text()
    assert conventions.startswith(MARK) and "lmm recall" in conventions and "Recent direction" in conventions
    after = files_of(repo)
    integrate(repo, "aider")
    assert files_of(repo) == after
    integrate(repo, "aider", "--remove")
    assert files_of(repo) == before


def test_every_assistant_at_once_then_none(repo: Path, tmp_path: Path) -> None:
    env = assistant_env(tmp_path / "home")
    before = files_of(repo)
    for tool in ("claude", "codex", "cursor", "aider"):
        lmm("integrate", tool, "--repo", str(repo), env=env)
    for tool in ("aider", "claude", "cursor", "codex"):  # another order than the one they came in
        lmm("integrate", tool, "--remove", "--repo", str(repo), env=env)
    assert files_of(repo) == before
    assert not (Path(env["CODEX_HOME"]) / "config.toml").exists()
    assert lmm("integrate", "claude", "--remove", "--repo", str(repo)).stdout.startswith("lmm was not integrated")


# -- the text editor underneath ---------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    "{}", "{ }\n", "{}\r\n", '{"a":1,"hooks":{}}', '{\r\n\t"hooks": {\r\n\t\t"Stop": []\r\n\t}\r\n}\r\n',
    '{\n  "hooks": {\n    "SessionStart": [\n      {"hooks": [{"type": "command", "command": "mine"}]}\n    ]\n  }\n}\n',
    '{"mcpServers": {"lmm": {"command": "x"}}, "z": [1, 2, {"a": "\\u00e9\\"}"}]}',
], ids=["empty", "empty-space", "empty-crlf", "minified", "tabs-crlf", "user-hook", "escapes"])
def test_json_edits_undo_to_the_same_bytes(text: str) -> None:
    from lmm_cli.integrations.merge import JsonEdit

    def ours(x: object) -> bool:
        return "lmm hook " in json.dumps(x)

    group = {"hooks": [{"type": "command", "command": "lmm hook session-start"}]}
    ed = JsonEdit(text, "settings.json")
    ed.ensure_item(["hooks", "SessionStart"], group, ours)
    ed.ensure_item(["hooks", "Stop"], group, ours)
    status = ed.ensure_member(["mcpServers"], "lmm", {"command": "lmm", "args": ["mcp"]})
    value = json.loads(ed.text)
    assert group in value["hooks"]["SessionStart"] and group in value["hooks"]["Stop"]
    assert ("\r\n" in ed.text) == ("\r\n" in text)
    again = JsonEdit(ed.text, "settings.json")
    assert again.ensure_item(["hooks", "SessionStart"], group, ours) == "same" and again.text == ed.text
    undo = JsonEdit(ed.text, "settings.json")
    undo.inners = ed.inners
    undo.remove_items(["hooks", "SessionStart"], ours)
    undo.remove_items(["hooks", "Stop"], ours)
    if status == "added":
        undo.remove_member(["mcpServers"], "lmm")
    undo.prune(ed.created)
    assert undo.text == text
