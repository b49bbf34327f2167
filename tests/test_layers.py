"""The layout holds: imports run one way down the stages of the data's path, with no cycles.

Every module's imports (top-level and deferred, read with ``ast``) are checked against one table of
allowed stage-to-stage edges. A failure names the file, the line and the imported name.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "lmm_cli"

# Stages, lowest first, and what each may import besides itself. Top-level modules are stages of
# their own. Read it as the design diagram: capture → store → address → model → brief → core.
FOUNDATION = {"errors", "config", "text", "repo"}
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "text": set(),
    "config": {"errors"},
    "repo": {"errors"},
    "privacy": {"errors", "text"},
    "store": {"errors", "text"},
    "workspace": {"errors", "config", "repo", "store"},
    "capture": FOUNDATION | {"privacy", "store", "workspace"},
    "embed": {"errors"},
    "address": FOUNDATION | {"privacy", "store", "workspace", "embed"},
    "model": FOUNDATION | {"privacy", "store", "workspace", "capture", "embed", "address"},
    "brief": FOUNDATION | {"privacy", "store", "embed", "address", "model"},
    "integrations": FOUNDATION | {"store", "workspace"},
    "core": FOUNDATION | {"privacy", "store", "workspace", "capture", "embed", "address", "model", "brief",
                          "integrations"},
    "jobs": FOUNDATION | {"privacy", "store", "workspace", "capture", "embed", "address", "model", "core"},
    # What assistants reach: the MCP server (and, next, the assistant hook handlers). Above the core.
    "serve": FOUNDATION | {"package", "privacy", "store", "workspace", "core"},
    # The benchmark compares lmm with baselines; lmm itself never imports it (only the CLI does).
    "bench": FOUNDATION | {"privacy", "store", "workspace", "embed", "address", "model"},
    "cli": FOUNDATION | {"package", "privacy", "store", "workspace", "capture", "address", "model", "brief",
                         "integrations", "core", "bench", "serve"},
}


def stage_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "package"
    if parts[1] in ("__main__", "entry"):  # the command's entry points: the CLI's stage
        return "cli"
    return parts[1]


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported lmm module) for every import in the file, deferred ones included."""
    mod = module_name(path)
    package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("lmm_cli"):
                continue
            if node.module is None or target in ("lmm_cli",):  # `from . import x`: x may be a module
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    known = (PKG.parent / Path(*sub.split("."))).with_suffix(".py").exists() or \
                        (PKG.parent / Path(*sub.split("."))).is_dir()
                    out.append((node.lineno, sub if known else target))
            else:
                out.append((node.lineno, target))
        elif isinstance(node, ast.Import):
            out.extend((node.lineno, a.name) for a in node.names if a.name.startswith("lmm_cli"))
    return out


MODULES = sorted(PKG.rglob("*.py"))


def test_every_stage_is_in_the_table() -> None:
    stages = {stage_of(module_name(p)) for p in MODULES} - {"package"}
    assert stages <= set(ALLOWED), f"stages missing from ALLOWED: {sorted(stages - set(ALLOWED))}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PKG.parent)))
def test_imports_follow_the_stages(path: Path) -> None:
    src = stage_of(module_name(path))
    bad = []
    for line, target in imports(path):
        dst = stage_of(target)
        if dst != src and dst not in ALLOWED.get(src, set()):
            bad.append(f"{path.relative_to(PKG.parent)}:{line} imports {target} ({src} → {dst} is not allowed)")
    assert not bad, "\n".join(bad)


def test_no_import_cycles() -> None:
    graph: dict[str, set[str]] = {}
    for p in MODULES:
        mod = module_name(p)
        deps = set()
        for _, target in imports(p):
            # `from lmm_cli.store.db import x` depends on the module itself, and on packages on the way
            if target != mod:
                deps.add(target)
        graph[mod] = {d for d in deps if d in {module_name(q) for q in MODULES}}
    for pkg in [m for m in graph if (PKG.parent / Path(*m.split("."))).is_dir()]:
        graph[pkg] = {d for d in graph[pkg] if not d.startswith(pkg + ".")}  # a package's docstring-only __init__
    seen: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(m: str) -> None:
        seen[m] = 1
        stack.append(m)
        for d in sorted(graph.get(m, ())):
            if seen.get(d) == 1:
                cycles.append(stack[stack.index(d):] + [d])
            elif d not in seen:
                visit(d)
        stack.pop()
        seen[m] = 2

    for m in sorted(graph):
        if m not in seen:
            visit(m)
    assert not cycles, "import cycles:\n" + "\n".join(" → ".join(c) for c in cycles)


def test_git_runs_only_through_repo() -> None:
    """Every git process gets git_env() (no hook variables): only lmm_cli/repo.py starts git."""
    bad = []
    for p in MODULES:
        if p.name == "repo.py" and p.parent == PKG:
            continue
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if isinstance(node, ast.List) and node.elts and isinstance(node.elts[0], ast.Constant) \
                    and node.elts[0].value == "git":
                bad.append(f"{p.relative_to(PKG.parent)}:{node.lineno} builds a git command line; use repo.run_git")
    assert not bad, "\n".join(bad)


def test_transactions_go_through_the_helper() -> None:
    bad = []
    for p in MODULES:
        if p.name == "tx.py":
            continue
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "execute" \
                    and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str) \
                    and node.args[0].value.strip().upper().split(" ")[0] in ("BEGIN", "COMMIT", "ROLLBACK"):
                bad.append(f"{p.relative_to(PKG.parent)}:{node.lineno} writes {node.args[0].value!r}; "
                           "use store.tx.transaction")
    assert not bad, "\n".join(bad)
