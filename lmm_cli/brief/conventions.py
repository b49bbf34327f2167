"""The brief's Conventions section: the commit style of the history, where the tests live, the files
most commits also update (a changelog, a lockfile), and the tooling the config files in the tree set
up (pyproject, package.json, Makefile, pre-commit, CI)."""

from __future__ import annotations

import json
import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable

from ..address.intent import TEST_DIRS as _TEST_DIRS
from ..address.intent import TEST_NAMES as _TEST_NAMES
from ..address.intent import is_test as _is_test
from .reading import (
    _CI_FILES,
    _CI_TOOLS,
    _CONFIG_FILES,
    _ISSUE,
    _JS_TOOLS,
    _PY_KEYS,
    _PY_TOOLS,
    _REVERT,
    _SUBCOMMAND,
    _WITH_SUBCOMMANDS,
    STYLE_SAMPLE,
    RepoView,
    _commit,
    _file,
    _imperative,
    _plural,
    _subject,
)
from .render import Citation, Line, Section

# ---------------------------------------------------------------------------------------------
# Conventions


def _commit_style(r: RepoView) -> list[Line]:
    rows = r.db.execute(
        "SELECT source, title, body, ts FROM episodes WHERE +kind = 'commit' AND valid_to IS NULL"
        " ORDER BY ts DESC, id DESC LIMIT ?", (STYLE_SAMPLE,)).fetchall()
    rows = [row for row in rows if row[1] and row[0] not in r.gone]
    if not rows:
        return []
    n = len(rows)
    types: Counter[str] = Counter()
    scopes: Counter[str] = Counter()
    conv_examples: dict[str, str] = {}
    plain_examples: list[str] = []
    lengths: list[int] = []
    imperative = capital = bodies = issues = 0
    body_example = None
    for sha, title, body, _ in rows:
        kind, scope, rest = _subject(title)
        lengths.append(len(title))
        if kind:
            types[kind] += 1
            if scope:
                scopes[scope.lower()] += 1
            conv_examples.setdefault(kind, sha)
        elif not _REVERT.match(title) and len(plain_examples) < 2:
            plain_examples.append(sha)
        first = rest.split(" ", 1)[0] if rest else ""
        if first and _imperative(first):
            imperative += 1
        if rest[:1].isupper():
            capital += 1
        if body and body.strip():
            bodies += 1
            if body_example is None:
                body_example = sha
        if _ISSUE.search(title) or (body and _ISSUE.search(body)):
            issues += 1
    conv = sum(types.values())
    share = conv / n
    sample = f"the last {n:,}" if n >= STYLE_SAMPLE else f"all {n:,}"
    top_types = [t for t, _ in types.most_common(4)]
    examples = [conv_examples[t] for t in top_types[:3]]
    if share >= 0.6:
        text = f"Conventional commits ({share:.0%} of {sample} commits): " + ", ".join(f"`{t}:`" for t in top_types)
    elif share >= 0.15:
        text = (f"Mixed commit style: {share:.0%} of {sample} commits use conventional prefixes ("
                + ", ".join(f"`{t}:`" for t in top_types) + "), the rest plain subjects")
        examples = examples[:2] + plain_examples[:1]
    else:
        text = f"Plain commit subjects, no conventional-commit prefixes ({sample} commits)"
        examples = plain_examples[:2] or [rows[0][0]]
    if conv and scopes:
        text += "; scopes like " + ", ".join(f"`{s}`" for s, _ in scopes.most_common(3))
    out = [Line(text, [_commit(s) for s in dict.fromkeys(examples)][:3])]

    lengths.sort()
    median = int(statistics.median(lengths))
    p90 = lengths[min(len(lengths) - 1, int(len(lengths) * 0.9))]
    parts = [f"subjects ~{median} chars (90% ≤ {p90})"]
    if imperative / n >= 0.5:
        parts.append(f"imperative mood ({imperative / n:.0%})")
    else:
        parts.append(f"imperative mood in only {imperative / n:.0%}")
    case = "capitalised" if capital / n >= 0.6 else ("lower-case" if capital / n <= 0.4 else "mixed case")
    parts.append(case + (" after the prefix" if share >= 0.6 else ""))
    parts.append(f"bodies in {bodies / n:.0%}")
    if issues / n >= 0.1:
        parts.append(f"issue references in {issues / n:.0%}")
    cites = [rows[0][0]] + ([body_example] if body_example and body_example != rows[0][0] else [])
    out.append(Line("Commit messages: " + ", ".join(parts), [_commit(s) for s in cites]))
    return out


def _tests(r: RepoView) -> list[Line]:
    tests = [p for p in r.files if _is_test(p)]
    if not tests:
        return []
    homes: Counter[str] = Counter()
    names: Counter[str] = Counter()
    beside = 0
    for p in tests:
        parts = p.split("/")
        for i, part in enumerate(parts[:-1]):
            if part in _TEST_DIRS:
                homes["/".join(parts[: i + 1]) + "/"] += 1
                break
        else:
            beside += 1
        for label, rx in _TEST_NAMES:
            if rx.match(parts[-1]):
                names[label] += 1
                break
    text = f"Tests: {_plural(len(tests), 'file')}"
    where = [f"`{h}` ({c})" if len(homes) > 1 or beside else f"`{h}`" for h, c in homes.most_common(3)]
    if len(homes) > 3:
        where.append(f"{len(homes) - 3} more test folders")
    if beside:
        where.append(f"{beside} beside the code")
    text += " in " + ", ".join(where)
    if names:
        text += "; named " + ", ".join(f"`{lb}`" for lb, _ in names.most_common(3))
    # The latest commits' files: how many commits touch tests, and an example test file (the
    # one changed most recently shows the live convention).
    rows = r.db.execute(
        """WITH c AS (SELECT id, ts FROM episodes WHERE +kind = 'commit' AND valid_to IS NULL
                        AND source NOT IN (SELECT value FROM json_each(?))
                      ORDER BY ts DESC, id DESC LIMIT ?)
           SELECT c.id, f.path FROM c LEFT JOIN episode_files f ON f.episode_id = c.id
           ORDER BY c.ts DESC, c.id DESC""", (r.gone_json(), STYLE_SAMPLE)).fetchall()
    commits: set[int] = set()
    touching: set[int] = set()
    example = None
    for eid, path in rows:
        commits.add(eid)
        if path and _is_test(path):
            touching.add(eid)
            if example is None and r.exists(path):
                example = path
    if example is None:
        example = next((p for p in sorted(tests) if r.exists(p)), None)
    if example is None:
        return []
    cites = [_file(example)]
    conftest = sorted((p for p in r.files if p.rsplit("/", 1)[-1] == "conftest.py" and r.exists(p)),
                      key=lambda p: (p.count("/"), p))
    if conftest:
        text += f"; shared fixtures in `{conftest[0]}`"
        cites.append(_file(conftest[0]))
    if commits:
        text += f"; {len(touching) / len(commits):.0%} of commits touch tests"
    return [Line(text, cites)]


def _chronic(r: RepoView) -> list[Line]:
    """Files most commits also update — a changelog, a lockfile, a version file (``model.churn``):
    a convention to follow, stated here rather than offered as the answer to every task. Cites the
    files and the latest commit that updated the first one."""
    from ..model.churn import chronic

    found = [c for c in chronic(r.db) if r.exists(c.path)][:3]
    if not found:
        return []
    first = found[0]
    parts = [f"`{first.path}` ({first.share:.0%} of the last {first.of:,})"] + [
        f"`{c.path}` ({c.share:.0%})" for c in found[1:]]
    names = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    text = f"{'Most' if first.share >= 0.5 else 'Many'} commits also update {names}"
    cites = [_file(c.path) for c in found]
    row = r.db.execute(
        "SELECT e.source FROM episodes e JOIN episode_files f ON f.episode_id = e.id WHERE f.path = ?"
        " AND +e.kind = 'commit' AND e.valid_to IS NULL AND e.source NOT IN (SELECT value FROM json_each(?))"
        " ORDER BY e.ts DESC, e.id DESC LIMIT 1", (first.path, r.gone_json())).fetchone()
    if row:
        cites.append(_commit(row[0]))
    return [Line(text, cites)]


def _section_lines(lines: list[str], start: int) -> Iterable[tuple[int, str]]:
    """(line number, text) of a TOML/INI section's body, from the line after its header."""
    for i in range(start, len(lines)):
        if lines[i].lstrip().startswith("["):
            return
        yield i + 1, lines[i]


def _pyproject(r: RepoView, rel: str) -> list[Line]:
    lines = r.read(rel)
    if lines is None:
        return []
    out: list[Line] = []
    tools: dict[str, tuple[int, list[str]]] = {}
    name = requires = backend = None
    for i, line in enumerate(lines):
        m = re.match(r"\s*\[\[?tool\.([A-Za-z0-9_-]+)", line)
        if m:
            tool = m.group(1)
            first, settings = tools.setdefault(tool, (i + 1, []))
            for _, body in _section_lines(lines, i + 1):
                km = re.match(r"\s*([A-Za-z0-9_-]+)\s*=\s*(.+?)\s*$", body)
                if (km and km.group(1) in _PY_KEYS and len(km.group(2)) <= 40 and "`" not in km.group(2)
                        and len(settings) < 2):
                    settings.append(f"{km.group(1)} = {km.group(2)}")
            continue
        if re.match(r"\s*\[project\]", line):
            for ln, body in _section_lines(lines, i + 1):
                if re.match(r"\s*name\s*=", body) and name is None:
                    name = ln
                elif re.match(r"\s*requires-python\s*=", body):
                    requires = (ln, body.split("=", 1)[1].strip().strip("\"'"))
        if re.match(r"\s*\[build-system\]", line):
            for ln, body in _section_lines(lines, i + 1):
                if re.match(r"\s*build-backend\s*=", body):
                    backend = (ln, body.split("=", 1)[1].strip().strip("\"'"))
    if tools:
        named = []
        cites: list[Citation] = []
        for tool, (ln, settings) in tools.items():
            label = _PY_TOOLS.get(tool, tool)
            named.append(label + (f" (`{'`, `'.join(settings)}`)" if settings else ""))
            if len(cites) < 4:
                cites.append(_file(rel, ln))
        out.append(Line(f"`{rel}` configures " + ", ".join(named), cites))
    if name or requires or backend:
        parts = []
        cites = []
        if requires:
            parts.append(f"Python {requires[1]}")
            cites.append(_file(rel, requires[0]))
        if backend:
            parts.append(f"build backend `{backend[1]}`")
            cites.append(_file(rel, backend[0]))
        if not cites and name:
            cites.append(_file(rel, name))
        if parts:
            out.append(Line("Python project: " + ", ".join(parts), cites))
    return out


def _package_json(r: RepoView, rel: str) -> list[Line]:
    lines = r.read(rel)
    if lines is None:
        return []
    try:
        data = json.loads("\n".join(lines))
    except ValueError:
        return []
    if not isinstance(data, dict):
        return []

    def line_of(key: str) -> int | None:
        for i, line in enumerate(lines):
            if re.match(rf'\s*"{re.escape(key)}"\s*:', line):
                return i + 1
        return None

    out: list[Line] = []
    scripts = data.get("scripts") if isinstance(data.get("scripts"), dict) else {}
    folder = rel.rsplit("/", 1)[0] + "/" if "/" in rel else ""
    manager = None
    pm = data.get("packageManager")
    if isinstance(pm, str):
        manager = pm.split("@", 1)[0]
    else:
        for lock, mgr in (("pnpm-lock.yaml", "pnpm"), ("yarn.lock", "yarn"), ("bun.lockb", "bun"),
                          ("package-lock.json", "npm")):
            if r.is_file(folder + lock):
                manager = mgr
                break
    deps: dict[str, object] = {}
    for key in ("dependencies", "devDependencies"):
        if isinstance(data.get(key), dict):
            deps.update(data[key])
    used = [label for dep, label in _JS_TOOLS.items() if dep in deps]
    text = f"`{rel}`"
    cites: list[Citation] = []
    if scripts:
        text += " scripts: " + ", ".join(f"`{s}`" for s in list(scripts)[:8])
        ln = line_of("scripts")
        cites.append(_file(rel, ln))
    if manager:
        text += f" (run with {manager})"
    if used:
        text += "; uses " + ", ".join(used[:8])
        ln = line_of("devDependencies") or line_of("dependencies")
        cites.append(_file(rel, ln))
    if isinstance(data.get("workspaces"), (list, dict)):
        text += "; workspaces"
        cites.append(_file(rel, line_of("workspaces")))
    if cites:
        out.append(Line(text, cites))
    return out


def _targets(r: RepoView, rel: str, kind: str) -> list[Line]:
    lines = r.read(rel)
    if lines is None:
        return []
    rx = (re.compile(r"^([A-Za-z0-9][\w.-]*)\s*:(?![=:])") if kind == "make"
          else re.compile(r"^@?([A-Za-z_][\w-]*)(?:\s+[^:=]*)?:(?![=])"))
    found: list[tuple[int, str]] = []
    for i, line in enumerate(lines):
        m = rx.match(line)
        if m and m.group(1) not in {t for _, t in found}:
            found.append((i + 1, m.group(1)))
    if not found:
        return []
    found.sort(key=lambda lt: (lt[1] not in _WELL_KNOWN_TARGETS, lt[0]))
    shown = ", ".join(f"`{t}`" for _, t in found[:6]) + (f" and {len(found) - 6} more" if len(found) > 6 else "")
    what = "Makefile targets" if kind == "make" else "just recipes"
    return [Line(f"{what}: {shown}", [_file(rel, found[0][0])])]


_WELL_KNOWN_TARGETS = frozenset("""all build test tests check lint fmt format typecheck install dev run serve start
    clean docs release bench ci setup deps coverage e2e""".split())


def _precommit(r: RepoView, rel: str) -> list[Line]:
    lines = r.read(rel)
    if lines is None:
        return []
    hooks: list[tuple[int, str]] = []
    for i, line in enumerate(lines):
        m = re.match(r"\s*-\s*id:\s*['\"]?([\w.-]+)", line)
        if m and m.group(1) not in {h for _, h in hooks}:
            hooks.append((i + 1, m.group(1)))
    if not hooks:
        return []
    shown = ", ".join(f"`{h}`" for _, h in hooks[:8]) + (f" and {len(hooks) - 8} more" if len(hooks) > 8 else "")
    return [Line(f"pre-commit hooks: {shown}", [_file(rel, hooks[0][0])])]


def _ci_commands(lines: list[str]) -> list[tuple[int, str]]:
    """(line, text) of the commands a CI file runs: ``run:``/``script:`` values and their blocks."""
    out: list[tuple[int, str]] = []
    block_indent: int | None = None
    for i, line in enumerate(lines):
        indent = len(line) - len(line.lstrip())
        if block_indent is not None:
            if line.strip() and indent <= block_indent:
                block_indent = None
            elif line.strip():
                out.append((i + 1, line.strip()))
                continue
        m = re.match(r"^(\s*)(?:-\s+)?(run|script|before_script|after_script|command|commands|sh)\s*:\s*(.*)$", line)
        if m:
            rest = m.group(3).strip()
            if rest in ("", "|", ">", "|-", ">-", "|+"):
                block_indent = len(m.group(1))
            else:
                out.append((i + 1, rest))
    return out


def _ci(r: RepoView, rel: str, system: str) -> list[Line]:
    lines = r.read(rel)
    if lines is None:
        return []
    name = None
    for line in lines:
        m = re.match(r"name:\s*['\"]?(.+?)['\"]?\s*$", line)
        if m:
            name = m.group(1)
            break
    tools: dict[str, int] = {}
    for ln, cmd in _ci_commands(lines) if rel != "Jenkinsfile" else enumerate(lines, 1):
        for m in _CI_TOOLS.finditer(cmd):
            tool = m.group(1)
            sub = _SUBCOMMAND.match(cmd, m.end()) if tool in _WITH_SUBCOMMANDS else None
            tools.setdefault(f"{tool} {sub.group(1)}" if sub else tool, ln)
    label = f"`{rel}`" + (f" ({name})" if name and len(name) <= 40 else "")
    if tools:
        first = min(tools.values())
        text = f"CI, {system}: {label} runs " + ", ".join(f"`{t}`" for t in list(tools)[:8])
        return [Line(text, [_file(rel, first)])]
    return [Line(f"CI, {system}: {label}", [_file(rel)])]


def _go_mod(r: RepoView, rel: str) -> list[Line]:
    lines = r.read(rel)
    if not lines:
        return []
    module = go = None
    for i, line in enumerate(lines):
        if line.startswith("module ") and module is None:
            module = (i + 1, line.split(None, 1)[1].strip())
        elif line.startswith("go ") and go is None:
            go = (i + 1, line.split(None, 1)[1].strip())
    if not module:
        return []
    text = f"Go module `{module[1]}`" + (f", go {go[1]}" if go else "")
    return [Line(text, [_file(rel, module[0])])]


def _cargo(r: RepoView, rel: str) -> list[Line]:
    lines = r.read(rel)
    if not lines:
        return []
    for i, line in enumerate(lines):
        if re.match(r"\s*\[workspace\]", line):
            members: list[str] = []
            inside = False
            for _, body in _section_lines(lines, i + 1):
                if re.match(r"\s*members\s*=", body):
                    inside = True
                    body = body.split("=", 1)[1]
                if inside:
                    members += re.findall(r"\"([^\"]+)\"", body.split("#", 1)[0])
                    if "]" in body:
                        break
            text = "Rust workspace (Cargo)" + (": " + ", ".join(f"`{m}`" for m in members[:5]) if members else "")
            return [Line(text, [_file(rel, i + 1)])]
        if re.match(r"\s*\[package\]", line):
            return [Line("Rust crate (Cargo)", [_file(rel, i + 1)])]
    return []


def _ini_sections(r: RepoView, rel: str) -> list[Line]:
    lines = r.read(rel)
    if lines is None:
        return []
    found: list[tuple[int, str]] = []
    for i, line in enumerate(lines):
        m = re.match(r"\s*\[(tool:pytest|pytest|flake8|mypy|isort|coverage:run|testenv|tox|pycodestyle)[\]:]", line)
        if m:
            found.append((i + 1, m.group(1).replace("tool:", "").replace("coverage:run", "coverage")))
    if not found:
        return []
    return [Line(f"`{rel}` configures " + ", ".join(dict.fromkeys(t for _, t in found)),
                 [_file(rel, ln) for ln, _ in found[:3]])]


def _tooling(r: RepoView) -> list[Line]:
    root = r.root
    out: list[Line] = []
    if r.is_file("pyproject.toml"):
        out += _pyproject(r, "pyproject.toml")
    if r.is_file("package.json"):
        out += _package_json(r, "package.json")
    wf = root / ".github" / "workflows"
    r.read_paths.add(".github/workflows")  # the folder is listed: a workflow added or removed changes what is said
    if wf.is_dir():
        flows = sorted(p.name for p in wf.iterdir() if p.suffix in (".yml", ".yaml") and p.is_file())
        for name in flows[:4]:
            out += _ci(r, f".github/workflows/{name}", "GitHub Actions")
        if len(flows) > 4:
            rest = flows[4:]
            out.append(Line("More GitHub Actions workflows: " + ", ".join(f"`{n}`" for n in rest[:6]),
                            [_file(f".github/workflows/{n}") for n in rest[:6]]))
    systems = {".gitlab-ci.yml": "GitLab", ".circleci/config.yml": "CircleCI", "azure-pipelines.yml": "Azure",
               ".travis.yml": "Travis", "bitbucket-pipelines.yml": "Bitbucket", "Jenkinsfile": "Jenkins",
               ".buildkite/pipeline.yml": "Buildkite"}
    for name in _CI_FILES:
        if r.is_file(name):
            out += _ci(r, name, systems[name])
    for name, kind in (("Makefile", "make"), ("GNUmakefile", "make"), ("justfile", "just"), ("Justfile", "just")):
        if r.is_file(name):
            out += _targets(r, name, kind)
    for name in (".pre-commit-config.yaml", ".pre-commit-config.yml"):
        if r.is_file(name):
            out += _precommit(r, name)
    for name in ("setup.cfg", "tox.ini"):
        if r.is_file(name):
            out += _ini_sections(r, name)
    if r.is_file("go.mod"):
        out += _go_mod(r, "go.mod")
    if r.is_file("Cargo.toml"):
        out += _cargo(r, "Cargo.toml")
    others = [n for n in _CONFIG_FILES if r.is_file(n)]
    if others:
        out.append(Line("Other config: " + ", ".join(f"`{n}`" for n in others[:10]),
                        [_file(n) for n in others[:10]]))
    # Sub-projects: manifests one or two folders down (a monorepo's packages and services).
    nested: dict[str, list[str]] = defaultdict(list)
    for p in r.files:
        depth = p.count("/")
        base = p.rsplit("/", 1)[-1]
        if 1 <= depth <= 3 and base in ("package.json", "pyproject.toml", "go.mod", "Cargo.toml", "pom.xml",
                                        "build.gradle", "build.gradle.kts") and "node_modules/" not in p:
            nested[base].append(p)
    if nested:
        parts = [f"{len(v)} `{k}`" for k, v in sorted(nested.items(), key=lambda kv: (-len(kv[1]), kv[0]))]
        cites = [_file(v[0]) for _, v in sorted(nested.items(), key=lambda kv: (-len(kv[1]), kv[0]))[:3]]
        dirs = Counter(p.split("/", 1)[0] for v in nested.values() for p in v)
        text = "Sub-projects: " + ", ".join(parts) + " under " + ", ".join(f"`{d}/`" for d, _ in dirs.most_common(4))
        out.append(Line(text, cites))
    return out


def conventions_section(r: RepoView) -> Section:
    style = _commit_style(r)
    lines = style[:1] + _tests(r) + _chronic(r) + style[1:] + _tooling(r)
    return Section("Conventions", lines)
