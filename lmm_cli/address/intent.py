"""What a task says about *where* to look, beyond its words.

People name things directly: "extract validate_worker from plan.py", "Revert \"feat: add plan
export\"", "why did 3f2a9c1 break login", "add tests for reconcileSearch", "docs: clarify the
queue limits". Bag-of-words retrieval blurs each of these — ``plan.py`` becomes the common words
``plan`` and ``py`` — so recall reads them here first:

- **mentions**: file names and paths written in the task (``plan.py``, ``src/auth/login.py``),
  code identifiers written as code (``retry_profile``, ``renderLease``, ``Cache::get``, ``flush()``)
  and the files that define them,
  commit ids (7–40 hex digits) and quoted commit subjects (git's ``Revert "…"``), each resolved
  against the store; a name shared by several files (``lib.rs``) counts for each of them less.
- **intent**: a task about tests points at the test files of the files it is about (a test file
  is paired with its subject by name: ``test_x.py``, ``x_test.go``, ``X.test.ts``, ``XTest.java``
  …); a task about documentation points at documentation files.

Pure functions of strings; ``Recaller`` does the lookups.
"""

from __future__ import annotations

import re
from functools import lru_cache

__all__ = ["TEST_DIRS", "TEST_NAMES", "DOC_EXTS", "is_test", "is_doc", "subject_key", "path_mentions",
           "identifier_mentions",
           "sha_mentions", "quoted_subjects", "wants_tests", "wants_docs"]

TEST_DIRS = frozenset({"tests", "test", "__tests__", "spec", "specs", "testing", "e2e", "integration_tests"})
TEST_NAMES: list[tuple[str, re.Pattern[str]]] = [
    ("test_*.py", re.compile(r"^test_.+\.py$")),
    ("*_test.py", re.compile(r"^.+_test\.py$")),
    ("*_test.go", re.compile(r"^.+_test\.go$")),
    ("*.test.ts", re.compile(r"^.+\.test\.[cm]?tsx?$")),
    ("*.spec.ts", re.compile(r"^.+\.spec\.[cm]?tsx?$")),
    ("*.test.js", re.compile(r"^.+\.test\.[cm]?jsx?$")),
    ("*.spec.js", re.compile(r"^.+\.spec\.[cm]?jsx?$")),
    ("*Test.java", re.compile(r"^.+Tests?\.(java|kt|scala)$")),
    ("*_spec.rb", re.compile(r"^.+_spec\.rb$")),
    ("*_test.rb", re.compile(r"^.+_test\.rb$")),
    ("*Tests.cs", re.compile(r"^.+Tests?\.cs$")),
    ("*_test.exs", re.compile(r"^.+_test\.exs$")),
]
_TEST_NAME = re.compile("|".join(f"(?:{rx.pattern})" for _, rx in TEST_NAMES))
_CODE_EXT = re.compile(
    r"\.(py|pyi|[cm]?[jt]sx?|go|rs|java|kt|scala|c|h|cc|cpp|cxx|hpp|hh|cs|rb|php|swift|m|mm|ex|exs|erl|"
    r"hs|ml|clj|dart|lua|sh|zig|vue|svelte)$", re.I)
DOC_EXTS = (".md", ".rst", ".adoc", ".txt", ".mdx")
_DOC_DIRS = frozenset({"docs", "doc", "documentation", "adr", "adrs", "wiki"})


@lru_cache(maxsize=1 << 16)
def is_test(path: str) -> bool:
    """A test file: by its name (``test_x.py``, ``x_test.go``, ``X.spec.ts`` …) or a code file in a
    test folder (``tests/``, ``__tests__/``, ``spec/`` …)."""
    parts = path.split("/")
    if _TEST_NAME.match(parts[-1]):
        return True
    return any(p in TEST_DIRS for p in parts[:-1]) and bool(_CODE_EXT.search(parts[-1]))


def is_doc(path: str) -> bool:
    low = path.lower()
    return low.endswith(DOC_EXTS) or any(p in _DOC_DIRS for p in low.split("/")[:-1])


_TEST_AFFIX = re.compile(r"^(?:test_|[tT]est(?=[A-Z]))|(?:_test|_spec|\.test|\.spec|Tests?|_tests?)$")


@lru_cache(maxsize=1 << 16)
def subject_key(path: str) -> str:
    """The subject a file is named for, shared by a source file and its tests:
    ``src/auth/login.py``, ``tests/auth/test_login.py`` and ``web/Login.test.ts`` → ``login``."""
    name = path.rsplit("/", 1)[-1]
    stem = name.split(".", 1)[0] if not name.startswith(".") else name  # x.test.ts → x
    stem = _TEST_AFFIX.sub("", stem)
    return stem.replace("_", "").replace("-", "").lower()


# A file name or path as people write one: a dotted extension that starts with a letter (so
# versions like 4.23.11 are not names), optionally with folders; backticks and quotes around it
# do not matter.
_PATHLIKE = re.compile(r"(?<![\w/.-])((?:[\w.-]+/)*[\w-][\w.-]*\.[A-Za-z][A-Za-z0-9]{0,9})(?![\w/])")
_SHA = re.compile(r"(?<![0-9A-Za-z])([0-9a-f]{7,40})(?![0-9A-Za-z])")
_QUOTED = re.compile(r"\"([^\"\n]{6,200})\"|“([^”\n]{6,200})”")


def path_mentions(query: str) -> list[str]:
    """File names and paths written in the task, lower-cased, in order, without duplicates."""
    out: dict[str, None] = {}
    for m in _PATHLIKE.finditer(query):
        tok = m.group(1).strip(".").lower()
        if "." in tok:
            out[tok] = None
    return list(out)


_IDENTLIKE = re.compile(r"(?<![\w.$/-])([A-Za-z_$][\w$]*(?:(?:::|\.)[A-Za-z_$][\w$]*)*)(\(\))?")


def identifier_mentions(query: str) -> list[str]:
    """Names written as code: snake_case, camelCase or PascalCase compounds, ``a.b``/``a::b`` paths
    (their last part) and anything followed by ``()``. Plain words are left to the lexical channels."""
    out: dict[str, None] = {}
    for m in _IDENTLIKE.finditer(query):
        full, call = m.group(1), m.group(2)
        name = re.split(r"::|\.", full)[-1]
        if len(name) < 3:
            continue
        compound = ("_" in name.strip("_") or re.search(r"[a-z][A-Z]", name) is not None
                    or re.fullmatch(r"(?:[A-Z][a-z0-9]+){2,}", name) is not None)
        if compound or call or full != name:
            if full != name and "." in full and not (compound or call) and name.islower():
                continue  # "e.g" or "node.js" style: a file or an abbreviation, not a member
            out[name] = None
    return list(out)


def sha_mentions(query: str) -> list[str]:
    """Hex words of 7–40 digits that could be commit ids, the likeliest first: those with a digit
    and a letter, then all-digit and all-letter ones (``12345678`` is a real prefix one time in 40,
    ``defaced`` one time in a thousand). The store decides: a word names a commit only when it is a
    unique prefix of one, so a number or a word that is not an id costs a lookup and nothing else."""
    mixed: dict[str, None] = {}
    plain: dict[str, None] = {}
    for m in _SHA.finditer(query):
        h = m.group(1)
        (mixed if re.search(r"[0-9]", h) and re.search(r"[a-f]", h) else plain)[h] = None
    return list(mixed) + [h for h in plain if h not in mixed]


def quoted_subjects(query: str) -> list[str]:
    """Quoted texts of two words or more: candidates for a commit subject the task names (the
    innermost subject of git's ``Revert "Revert "…""`` included)."""
    out: dict[str, None] = {}
    for m in _QUOTED.finditer(query):
        text = (m.group(1) or m.group(2) or "").strip()
        while text.lower().startswith("revert "):
            text = text[7:].strip().strip('"').strip()
        if len(re.findall(r"\w+", text)) >= 2:
            out[text] = None
    # git nests reverts with unescaped quotes: Revert "Revert "subject"" — take the inner subject too
    inner = re.match(r'^\s*revert\s+"(?:revert\s+")+(.+?)"+\s*$', query.splitlines()[0] if query else "", re.I)
    if inner and len(re.findall(r"\w+", inner.group(1))) >= 2:
        out[inner.group(1).strip()] = None
    return list(out)


_TESTS_WORDS = re.compile(
    r"\b(tests?|testing|tested|unit[- ]?tests?|specs?|coverage|cover|covers|covering|fixtures?|"
    r"assert(ion)?s?|flaky|pytest|jest|vitest|junit)\b", re.I)
_TESTS_PREFIX = re.compile(r"^\s*tests?(\([^)]*\))?!?:", re.I)
_DOCS_WORDS = re.compile(
    r"\b(docs?|documentation|document|documents|documented|readme|changelog|adr|runbook|guide|"
    r"tutorial|docstrings?)\b", re.I)
_DOCS_PREFIX = re.compile(r"^\s*docs?(\([^)]*\))?!?:", re.I)


def wants_tests(query: str) -> bool:
    """The task is about tests: ``add tests for X``, ``test: cover Y``, ``flaky upload test``."""
    first = query.strip().splitlines()[0] if query.strip() else ""
    return bool(_TESTS_PREFIX.match(first) or _TESTS_WORDS.search(first))


def wants_docs(query: str) -> bool:
    """The task is about documentation: ``docs: clarify …``, ``document the storage setup``."""
    first = query.strip().splitlines()[0] if query.strip() else ""
    return bool(_DOCS_PREFIX.match(first) or _DOCS_WORDS.search(first))
