"""What the repository brief reads: the store and the working tree seen through one object
(``Repo``), the constants of its windows and patterns, and small formatting helpers."""

from __future__ import annotations

import json
import re
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from ..address.graph import pagerank
from ..text import STOPWORDS
from .render import Citation

DAY = 86400.0
HOT_DAYS = 90
RECENT_DAYS = 30
RECENT_MIN = 50  # commits "recent direction" looks at, at least
RECENT_MAX = 500
STYLE_SAMPLE = 1000  # commit style is read from the latest this many commits

# A commit counts as a fix when its subject says so; a revert is git's `Revert "…"` (or `revert:`).
_FIX = re.compile(r"\b(fix(es|ed|ing)?|bug(s|fix(es)?)?|regressions?|crash(es|ed|ing)?|hotfix(es)?)\b", re.I)
_REVERT = re.compile(r"^\s*revert\b", re.I)
_CONV = re.compile(
    r"^(feat|fix|docs|doc|style|refactor|perf|test|tests|build|ci|chore|revert|deps|release|security|wip)"
    r"(\(([^)\s]{1,40})\))?(!)?:\s*", re.I)
_ISSUE = re.compile(r"(?<![\w/])#\d+\b|\b[A-Z][A-Z0-9]+-\d+\b|\bgh-\d+\b")
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9_]*")

_EXT_LANG = {
    "py": "Python", "pyi": "Python", "ts": "TypeScript", "tsx": "TypeScript", "mts": "TypeScript",
    "cts": "TypeScript", "js": "JavaScript", "jsx": "JavaScript", "mjs": "JavaScript", "cjs": "JavaScript",
    "go": "Go", "rs": "Rust", "java": "Java", "kt": "Kotlin", "kts": "Kotlin", "scala": "Scala",
    "c": "C", "h": "C", "cc": "C++", "cpp": "C++", "cxx": "C++", "hpp": "C++", "hh": "C++", "hxx": "C++",
    "cs": "C#", "rb": "Ruby", "php": "PHP", "swift": "Swift", "m": "Objective-C", "mm": "Objective-C",
    "sh": "Shell", "bash": "Shell", "zsh": "Shell", "lua": "Lua", "ex": "Elixir", "exs": "Elixir",
    "erl": "Erlang", "hs": "Haskell", "ml": "OCaml", "clj": "Clojure", "dart": "Dart", "r": "R",
    "jl": "Julia", "zig": "Zig", "sql": "SQL", "vue": "Vue", "svelte": "Svelte",
    "md": "Markdown", "rst": "reStructuredText", "txt": "text", "yml": "YAML", "yaml": "YAML",
    "toml": "TOML", "json": "JSON", "html": "HTML", "css": "CSS", "scss": "CSS", "proto": "Protobuf",
    "tf": "Terraform", "ipynb": "Jupyter",
}
_LANG_NAMES = {
    "python": "Python", "typescript": "TypeScript", "tsx": "TypeScript", "javascript": "JavaScript",
    "go": "Go", "rust": "Rust", "java": "Java", "kotlin": "Kotlin", "c": "C", "cpp": "C++",
    "c_sharp": "C#", "csharp": "C#", "ruby": "Ruby", "php": "PHP", "swift": "Swift", "bash": "Shell",
    "scala": "Scala", "lua": "Lua", "elixir": "Elixir", "haskell": "Haskell", "ocaml": "OCaml",
}
_CODE_LANGS = set(_EXT_LANG.values()) - {"Markdown", "reStructuredText", "text", "YAML", "TOML", "JSON"}
_LOCKFILES = {"package-lock.json", "yarn.lock", "pnpm-lock.yaml", "Cargo.lock", "poetry.lock", "uv.lock",
              "go.sum", "Gemfile.lock", "composer.lock", "Pipfile.lock", "bun.lockb", "flake.lock"}
_NOT_HOT = re.compile(r"^(CHANGELOG|CHANGES|HISTORY|NEWS|RELEASE|CLAUDE\.md$|AGENTS\.md$|GEMINI\.md$)", re.I)

# Words that say little about *what* was worked on: generic verbs and commit-type words.
_DULL = STOPWORDS | {
    "add", "adds", "added", "fix", "fixes", "fixed", "update", "updates", "updated", "remove", "removes",
    "removed", "use", "make", "support", "handle", "implement", "refactor", "rename", "move", "bump", "test",
    "tests", "docs", "doc", "improve", "change", "changes", "clean", "cleanup", "avoid", "via", "new",
    "feat", "chore", "style", "perf", "build", "ci", "revert", "reverts", "merge", "wip", "when", "into",
    "more", "less", "default", "minor", "small", "code", "file", "files", "instead", "initial", "release",
    "version", "allow", "ensure", "don", "t", "s", "set", "get", "adjust", "tweak", "also", "log", "case",
    "cases", "missing", "error", "errors", "handling", "unused", "redundant", "clarity", "py", "ts", "go",
    "rs", "js", "md", "cover", "check", "prepare",
}
_VERB_KIND = {v: k for k, verbs in {
    "feat": "add adds added implement implements implemented introduce support supports create allow enable "
            "expose provide",
    "fix": "fix fixes fixed handle correct repair prevent avoid resolve guard",
    "refactor": "refactor rename move extract split simplify clean cleanup reorganize restructure inline tidy "
                "merge replace",
    "remove": "remove removes removed delete drop",
    "update": "update updates updated bump upgrade pin",
    "docs": "doc docs document readme",
    "test": "test tests cover",
    "perf": "speed optimize optimise cache",
}.items() for v in verbs.split()}
_IMPERATIVE_NOT = re.compile(r"(ed|ing)$|[^su]s$")  # Added, Adding, Adds; not Process, Focus, Address
_IMPERATIVE_TOO = frozenset("""embed feed speed need seed shed proceed exceed succeed bring ping string ring
    wing""".split())

_CONFIG_FILES = [  # presence-only configs worth naming, in the order they are listed
    "tsconfig.json", "eslint.config.js", "eslint.config.mjs", "eslint.config.cjs", "eslint.config.ts",
    ".eslintrc", ".eslintrc.js", ".eslintrc.cjs", ".eslintrc.json", ".eslintrc.yml", ".eslintrc.yaml",
    ".prettierrc", ".prettierrc.json", ".prettierrc.js", ".prettierrc.yml", "prettier.config.js",
    "biome.json", "jest.config.js", "jest.config.ts", "vitest.config.ts", "vitest.config.js",
    "ruff.toml", ".ruff.toml", "mypy.ini", ".flake8", "pytest.ini", "noxfile.py", ".pylintrc",
    ".golangci.yml", ".golangci.yaml", "rustfmt.toml", ".rustfmt.toml", "clippy.toml", "deny.toml",
    ".clang-format", ".clang-tidy", "CMakeLists.txt", "pom.xml", "build.gradle", "build.gradle.kts",
    ".editorconfig", "Dockerfile", "docker-compose.yml", "docker-compose.yaml", "compose.yaml",
    ".nvmrc", ".python-version", ".tool-versions", "renovate.json", ".github/dependabot.yml",
]
_CI_FILES = [".gitlab-ci.yml", ".circleci/config.yml", "azure-pipelines.yml", ".travis.yml",
             "bitbucket-pipelines.yml", "Jenkinsfile", ".buildkite/pipeline.yml"]
_CI_TOOLS = re.compile(
    r"(?<![\w/.-])(pytest|ruff|mypy|pyright|tox|nox|black|isort|flake8|pylint|uv|poetry|hatch|pip|npm|pnpm|"
    r"yarn|npx|bun|node|tsc|eslint|prettier|jest|vitest|playwright|go|golangci-lint|cargo|clippy|make|just|"
    r"gradle|\./gradlew|mvn|\./mvnw|bazel|cmake|ctest|docker|pre-commit|dotnet|bundle|rake|rspec|mix)(?![\w-])")
_WITH_SUBCOMMANDS = frozenset("""make just npm pnpm yarn bun npx go cargo uv poetry hatch tox nox dotnet mix
    bundle gradle ./gradlew mvn ./mvnw bazel docker pre-commit""".split())
_SUBCOMMAND = re.compile(r"\s+((?:run\s+)?[a-z][\w:.-]*)")
_PY_TOOLS = {
    "pytest": "pytest", "ruff": "ruff", "mypy": "mypy", "black": "black", "isort": "isort",
    "coverage": "coverage", "pyright": "pyright", "poetry": "Poetry", "hatch": "Hatch", "setuptools": "setuptools",
    "setuptools_scm": "setuptools-scm", "uv": "uv", "pdm": "PDM", "pylint": "pylint", "bandit": "bandit",
    "tox": "tox", "cibuildwheel": "cibuildwheel", "maturin": "maturin", "flit": "flit", "codespell": "codespell",
    "pydocstyle": "pydocstyle", "commitizen": "commitizen", "towncrier": "towncrier", "bumpversion": "bumpversion",
}
_PY_KEYS = {"testpaths", "addopts", "line-length", "target-version", "select", "strict", "python_version",
            "minversion", "markers", "asyncio_mode", "line_length", "profile"}
_JS_TOOLS = {
    "typescript": "TypeScript", "eslint": "ESLint", "prettier": "Prettier", "jest": "Jest", "vitest": "Vitest",
    "mocha": "Mocha", "webpack": "webpack", "vite": "Vite", "next": "Next.js", "react": "React", "vue": "Vue",
    "svelte": "Svelte", "turbo": "Turborepo", "lerna": "Lerna", "nx": "Nx", "@playwright/test": "Playwright",
    "cypress": "Cypress", "@biomejs/biome": "Biome", "esbuild": "esbuild", "rollup": "Rollup", "tsup": "tsup",
    "storybook": "Storybook", "husky": "husky", "lint-staged": "lint-staged",
}




# ---------------------------------------------------------------------------------------------
# small helpers


def _plural(n: int, word: str) -> str:
    if n == 1:
        return f"1 {word}"
    if word.endswith(("x", "s", "sh", "ch")):
        return f"{n:,} {word}es"
    return f"{n:,} {word}s"


def _date(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


def _commit(sha: str) -> Citation:
    return Citation("commit", sha)


def _file(path: str, line: int | None = None) -> Citation:
    return Citation("file", path, line)


def _lang_of(path: str, lang: str | None) -> str | None:
    if lang:
        return _LANG_NAMES.get(lang.lower(), lang[:1].upper() + lang[1:])
    name = path.rsplit("/", 1)[-1]
    if "." not in name:
        return None
    return _EXT_LANG.get(name.rsplit(".", 1)[-1].lower())


def _is_fix(title: str | None) -> int:
    return int(title is not None and not _REVERT.match(title) and _FIX.search(title) is not None)


def _is_revert(title: str | None) -> int:
    return int(title is not None and _REVERT.match(title) is not None)


def _imperative(word: str) -> bool:
    w = word.lower()
    return w.isalpha() and (w in _IMPERATIVE_TOO or not _IMPERATIVE_NOT.search(w))


def _subject(title: str) -> tuple[str | None, str | None, str]:
    """A subject's conventional type and scope (or None) and the rest of it."""
    m = _CONV.match(title)
    if not m:
        return None, None, title
    return m.group(1).lower(), m.group(3), title[m.end():]


def _read(root: Path, rel: str, limit: int = 512 * 1024) -> list[str] | None:
    p = root / rel
    try:
        if not p.is_file() or p.stat().st_size > limit:
            return None
        return p.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None


# ---------------------------------------------------------------------------------------------
# what the brief reads


class RepoView:
    def __init__(self, db: sqlite3.Connection, root: Path, now: float) -> None:
        self.db = db
        self.root = root
        self.now = now
        self.files: dict[str, str | None] = {
            r[0]: r[1] for r in db.execute("SELECT path, lang FROM code_files")}
        self.indexed = bool(self.files)
        if not self.indexed:
            self.files = {p: None for p in self._ls_files()}
        # `+kind`: walk the ts index from the newest end rather than every commit by kind.
        row = db.execute("SELECT ts FROM episodes WHERE +kind = 'commit' AND valid_to IS NULL"
                         " ORDER BY ts DESC LIMIT 1").fetchone()
        newest = row[0] if row else None
        self.newest = min(now, newest) if newest is not None else now
        self.has_commits = newest is not None
        self._rank: dict[str, float] | None = None
        self.on_disk: dict[str, bool] = {}  # paths asked about: a file in the working tree or not
        self.gone: set[str] = set()  # commits git no longer has: neither cited nor counted
        # What was read of the working tree (files, and folders listed; with ``on_disk``, what was
        # asked of it): a brief kept for later is true only while these are as they were
        # (``store.brief_cache``).
        self.read_paths: set[str] = set()

    def read(self, rel: str, limit: int = 512 * 1024) -> list[str] | None:
        """The lines of the working tree's file ``rel`` (None: not a file, or over ``limit`` bytes)."""
        self.read_paths.add(rel)
        return _read(self.root, rel, limit)

    def gone_json(self) -> str:
        """``gone`` for SQL: ``… NOT IN (SELECT value FROM json_each(?))``."""
        return json.dumps(sorted(self.gone))

    def _ls_files(self) -> list[str]:
        from ..repo import run_git

        try:
            out = run_git(self.root, "ls-files", "-z", check=False)
        except Exception:
            return []
        return [p for p in out.decode("utf-8", "surrogateescape").split("\0") if p]

    def is_file(self, path: str) -> bool:
        """A file in the working tree now (asked once, and recorded in ``on_disk``)."""
        ok = self.on_disk.get(path)
        if ok is None:
            ok = self.on_disk[path] = (self.root / path).is_file()
        return ok

    def exists(self, path: str) -> bool:
        """In the tree now: known to the index (or to git) and a file on disk (checked once)."""
        return path in self.files and self.is_file(path)

    def window(self, days: int) -> tuple[float, str]:
        """Where a window of ``days`` starts, and its name. It ends now, or at the newest commit
        when there was none in it: a dormant repository still shows where it was heading."""
        if self.now - self.newest < days * DAY:
            return self.now - days * DAY, f"last {days} days"
        return self.newest - days * DAY, f"{days} days to {_date(self.newest)}"

    def rank(self) -> dict[str, float]:
        if self._rank is None:
            # code_rank is refreshed with every index build; compute only for a store that predates it.
            stored = {p: r for p, r in self.db.execute("SELECT path, rank FROM code_rank")}
            self._rank = stored or pagerank(self.db.execute("SELECT src, dst, weight FROM code_refs").fetchall())
        return self._rank
