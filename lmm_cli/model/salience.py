"""The salience gate: how much each episode should count when lmm learns from it, and why.

Every episode gets a value in [0, 1] and a short list of reasons (``Reason``: factor, signed weight,
a human text such as "revert: undoes a1b2c3d" or "lockfile churn only"). The value is the sum of a
base for the episode's kind and the weights of the factors that apply, clipped:

* **kind**: reverts, fixes, decisions, user corrections and notes weigh more; merges, formatting,
  lockfile, generated-file, version-bump, dependency-bump, changelog-only, docs-only, CI-only,
  whitespace-only and bot commits weigh less. Read from the subject and body and from the files
  touched and their diff stats (``episode_files``).
* **size**: lines changed and files touched, log-scaled; a huge change (a sweep over the tree, a
  generated dump) counts *against*, never for: mechanical changes are big, not important.
* **centrality** of the files touched: their PageRank position in ``code_rank`` (top 1/5/10%).
* **explicit importance**: notes (``lmm remember``, corrections, decisions), a note that cites the
  commit by sha, recalls judged useful (``lmm feedback``) that listed the commit or its files.
* **surprise**: the active adapter's loss on the episode's pairs relative to the repository's
  typical loss (``record_surprise``, called by the training rounds).

One contract is kept for the readers that were there before the gate: for commits,
``episodes.salience >= FIX_FLOOR`` (0.7) means "a fix or a revert" — recall's fixes prior and the
recall brief's breakage lines select on it. So a fix or revert is floored at 0.7 and every other
commit is capped just below it (``ROUTINE_CAP``); a "fix" that only reformats or bumps versions is
not a fix. Within those bands the other factors order the commits.

``refresh`` writes ``episodes.salience`` (what pairs, recall and the brief read) and the
``salience`` table (value, reasons, surprise, when, scorer version; migration m007). It is
incremental: only episodes not scored yet, scored by an older scorer, or whose inputs changed
(the centrality bucket of a file they touch, new feedback or a new note citing them) are rescored.
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
import statistics
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ..address.intent import sha_mentions
from ..store.tx import transaction

__all__ = ["Reason", "EpisodeFacts", "FileStat", "Context", "score_episode", "refresh", "record_surprise",
           "reasons_of", "VERSION", "FIX_FLOOR", "ROUTINE_CAP"]

VERSION = 1              # bump when the scoring changes: a refresh rescores what an older scorer wrote
FIX_FLOOR = 0.7          # commits at or above this are fixes or reverts (recall's fixes prior reads it)
ROUTINE_CAP = 0.69       # every other commit stays below
LOW, HIGH = 0.02, 1.0
MIN_CENTRAL_FILES = 20   # below this many indexed files, "top 5%" says nothing
TYPICAL_KEY = "salience.typical_loss"
CONTEXT_KEY = "salience.context"
BATCH = 500


class Reason(NamedTuple):
    """One factor of an episode's salience: ``weight`` is what it added (or took away)."""

    factor: str
    weight: float
    text: str

    def as_dict(self) -> dict[str, Any]:
        return {"factor": self.factor, "weight": round(self.weight, 3), "text": self.text}


@dataclass
class FileStat:
    path: str
    status: str = "M"
    added: int | None = 0
    deleted: int | None = 0
    binary: bool = False
    hunks: str | None = None   # loaded only when the whitespace check needs it
    truncated: bool = False


@dataclass
class EpisodeFacts:
    """What the scorer reads of one episode (a row of ``episodes`` and its ``episode_files``)."""

    id: int
    kind: str
    source: str
    title: str
    body: str = ""
    author: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    ts: float = 0.0
    files: list[FileStat] = field(default_factory=list)


@dataclass
class Context:
    """What the scorer reads of the rest of the store: centrality, explicit importance, surprise."""

    central: dict[str, float] = field(default_factory=dict)   # path → fraction of files ranked above it
    resolve: dict[str, str] = field(default_factory=dict)     # an older path → the current one (suffix match)
    cited_by_note: dict[str, str] = field(default_factory=dict)   # commit sha → the first note citing it
    useful_commit: dict[str, tuple[int, int]] = field(default_factory=dict)   # sha → (useful, not useful)
    useful_file: dict[str, int] = field(default_factory=dict)  # path → useful recalls that listed it
    corrected: set[tuple[str, float]] = field(default_factory=set)  # (session id, ts) of corrected turns
    surprise: dict[int, float] = field(default_factory=dict)   # episode id → loss ÷ typical loss
    sha_prefix: dict[str, str] = field(default_factory=dict)   # short sha (7) → full sha, for reverts


# -- what an episode is about ----------------------------------------------------------------------

_REVERT = re.compile(r"^revert\b|\bthis reverts commit\b", re.I | re.M)
_REVERTS_SHA = re.compile(r"this reverts commit ([0-9a-f]{7,64})", re.I)
_FIX = re.compile(r"\b(fix(e[sd])?|bug(fix)?|hotfix|regression|crash(es|ed)?|broken|patch(ed)?)\b", re.I)
_SECURITY = re.compile(r"\b(security|cve-\d{4}-\d+|vulnerab\w*|xss|csrf|injection)\b", re.I)
_BREAKING = re.compile(r"\bbreaking[ -]change\b|^\w+(\([^)]*\))?!:", re.I | re.M)
_FORMAT = re.compile(
    r"^(style(\([^)]*\))?:|(apply|run|ran|re-?run)?\s*(re)?format(ted|ting)?\b|(apply|run|ran)?\s*(black|prettier|isort|"
    r"autopep8|yapf|ruff format|clang-format|gofmt|rustfmt)\b|pep ?8\b|(fix(ed)?|clean(ed)? ?up|remove[ds]?|strip)?\s*"
    r"(trailing )?(whitespace|white space|indentation|trailing spaces?)\b|(apply|applied)?\s*code style\b|"
    r"\[pre-commit\.ci\] auto fixes|lint(ing)?( fixes)?$|flake8\b)", re.I)
_VERSION_BUMP = re.compile(
    r"^(bump(ed)?( the)? version|version bump|bump(ed)? to v?\d|bump v?\d|(new )?release:? v?\d|releas(e|ed|ing) "
    r"(version )?v?\d|prepare(d)?( for)? (the )?(release|v?\d)|preparing( for)? (release|v?\d)|set version|"
    r"start(ing)? version|back to dev|update version( number)?|increment version|this is v?\d|"
    r"v?\d+(\.\d+)+( release(d)?)?$|\d+(\.\d+)+ (release|development|dev)\b|cut v?\d|tag v?\d)", re.I)
_DEP_BUMP = re.compile(
    r"^(\[\w+\] )?(bump \S+ from \S+ to \S+|bump the \S+ group\b|"
    r"(chore|build|deps)(\((deps|deps-dev|dependencies)\))?: (bump|update)|"
    r"\[pre-commit\.ci\] pre-commit autoupdate|pre-commit autoupdate|update (the )?(pinned |dev |test )?"
    r"(dependencies|deps|requirements|requirement files)|upgrade (dependencies|deps|requirements)|"
    r"update (pre-commit|dependabot|renovate)|pin (dependencies|requirements))", re.I)
_LOCKFILE = re.compile(
    r"(^|/)(package-lock\.json|npm-shrinkwrap\.json|yarn\.lock|pnpm-lock\.yaml|bun\.lockb?|poetry\.lock|uv\.lock|"
    r"pdm\.lock|Pipfile\.lock|Cargo\.lock|go\.sum|composer\.lock|Gemfile\.lock|mix\.lock|pubspec\.lock|"
    r"Podfile\.lock|flake\.lock|packages\.lock\.json|gradle\.lockfile|conda-lock\.yml)$|(^|/)requirements/[^/]+\.txt$",
    re.I)
_GENERATED = re.compile(
    r"(^|/)(dist|build|_build|vendor|node_modules|generated|gen|__generated__|site-packages)/|\.min\.(js|css)$|"
    r"_pb2(_grpc)?\.pyi?$|\.pb\.(go|cc|h)$|\.generated\.|\.g\.dart$|\.snap$|\.js\.map$|\.css\.map$", re.I)
_CHANGELOG = re.compile(r"(^|/)(changes|changelog|history|news|release[-_ ]?notes|whatsnew)(\.[a-z]{1,4})?$", re.I)
_VERSION_FILE = re.compile(
    r"(^|/)(version(\.py|\.txt|\.json)?|_?_version_?_?\.py|__about__\.py|__init__\.py|setup\.py|setup\.cfg|"
    r"pyproject\.toml|package\.json|Cargo\.toml|pom\.xml|build\.gradle|[^/]+\.gemspec|[^/]+\.podspec|"
    r"Chart\.yaml|mix\.exs|VERSION)$", re.I)
_VERSION_LINE = re.compile(r"""^[+-]\s*["']?(__version__|version|release)["']?\s*[=:]\s*["']?v?\d+\.\d+""",
                           re.I | re.M)
_INDENTED = re.compile(r"\.(py|pyi|pyx|ya?ml|coffee|haml|pug|jade|sass|styl|nim|fs|hs|elm)$|(^|/)Makefile$", re.I)
_DOCS = re.compile(r"(^|/)docs?/|\.(md|rst|txt|adoc)$|(^|/)(readme|authors|contributors|license|copying)(\.\w+)?$",
                   re.I)
_CI = re.compile(r"(^|/)(\.github|\.circleci|\.gitlab|\.buildkite|\.azure-pipelines)/|(^|/)(\.travis\.yml|"
                 r"appveyor\.yml|\.gitlab-ci\.yml|azure-pipelines\.yml|tox\.ini|\.pre-commit-config\.yaml|"
                 r"\.readthedocs\.ya?ml|Jenkinsfile|codecov\.ya?ml|\.coveragerc)$", re.I)
_TYPO = re.compile(r"\b(typos?|spelling|misspel\w*|grammar|wording|rephrase\w*)\b", re.I)
_BOT = re.compile(r"\[bot\]|\bdependabot\b|\brenovate\b|\bpre-commit-ci\b|\bgithub-actions\b", re.I)

# Bases by episode kind (notes by their data.kind): where an episode starts before its factors. A
# routine commit or turn is 0.5, the neutral value capture gave everything before the gate (and what
# the training rounds count as "salient"): churn goes below it, what matters above.
BASE = {"commit": 0.5, "merge": 0.25, "session": 0.5, "rewrite": 0.15, "checkout": 0.1}
# (Notes keep the values capture gives them: a user's correction is the strongest signal there is.)
NOTE_BASE = {"correction": (1.0, "user correction"), "decision": (0.9, "decision (lmm remember)"),
             "warning": (0.9, "warning (lmm remember)"), "convention": (0.9, "convention (lmm remember)"),
             "note": (0.85, "note (lmm remember)"), "claude-memory": (0.8, "assistant memory file")}
HUGE_LINES, HUGE_FILES = 3000, 60    # a sweep or a dump: counts against
BROAD_LINES, BROAD_FILES = 1000, 25  # wide enough to be mostly mechanical: neither size nor centrality counts


def _lines(files: Sequence[FileStat]) -> int:
    return sum((f.added or 0) + (f.deleted or 0) for f in files)


def _only(files: Sequence[FileStat], pattern: re.Pattern[str]) -> bool:
    return bool(files) and all(pattern.search(f.path) for f in files)


def whitespace_only(files: Sequence[FileStat]) -> bool:
    """Whether every changed line of the diff differs from a removed one only in whitespace (the
    stored hunks, which capture may have truncated; a binary file or missing hunks says no)."""
    changed = False
    for f in files:
        if f.binary or not f.hunks or f.truncated:
            return False
        # Where indentation is syntax, only trailing whitespace and blank lines are cosmetic.
        indented = bool(_INDENTED.search(f.path))
        # Block by block (a run of -/+ lines between context lines): what a block removes it must
        # add back, in order, up to whitespace; a line moved elsewhere is a change.
        minus: list[str] = []
        plus: list[str] = []
        for line in [*f.hunks.splitlines(), " "]:
            if line.startswith(("+", "-")) and not line.startswith(("+++", "---")):
                text = line[1:].rstrip() if indented else "".join(line[1:].split())
                if text.strip():
                    (plus if line[0] == "+" else minus).append(text)
                continue
            if plus != minus:
                return False
            minus, plus = [], []
        changed = changed or bool(f.added or f.deleted)
    return changed


def _short(text: str, n: int = 50) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[:n - 1].rstrip() + "…"


def _churn(ep: EpisodeFacts, message: str) -> list[Reason]:
    """Routine churn: what this commit only does, if it does nothing else (first match wins)."""
    title, files = ep.title.strip(), ep.files
    lines = _lines(files)
    if _DEP_BUMP.search(title):
        return [Reason("kind", -0.25, "dependency bump")]
    if _only(files, _LOCKFILE):
        return [Reason("kind", -0.3, "lockfile churn only")]
    if _only(files, _GENERATED):
        return [Reason("kind", -0.3, "generated files only")]
    version_files = bool(files) and all(_VERSION_FILE.search(f.path) or _CHANGELOG.search(f.path) for f in files)
    if _VERSION_BUMP.search(title) and (not files or version_files or lines <= 40):
        return [Reason("kind", -0.25, "version bump")]
    if version_files and lines <= 12 and any(_VERSION_LINE.search(f.hunks or "") for f in files):
        return [Reason("kind", -0.25, "version bump")]
    if _only(files, _CHANGELOG):
        return [Reason("kind", -0.2, "changelog only")]
    if _FORMAT.search(title):
        return [Reason("kind", -0.25, "formatting only")]
    if _TYPO.search(title):
        return [Reason("kind", -0.15, "typo or wording fix")]
    if files and lines <= 400 and whitespace_only(files):
        return [Reason("kind", -0.25, "whitespace changes only")]
    return []


def _size(ep: EpisodeFacts) -> list[Reason]:
    files = [f for f in ep.files if f.status not in ("N", "V")]
    if not files:
        return []
    lines, n = _lines(files), len(files)
    what = f"{lines:,} line{'s' if lines != 1 else ''} in {n} file{'s' if n != 1 else ''}"
    if lines > HUGE_LINES or n > HUGE_FILES:
        return [Reason("size", -0.1, f"huge change ({what}): likely mechanical")]
    if lines > BROAD_LINES or n > BROAD_FILES:
        return [Reason("size", -0.05, f"broad change ({what}): partly mechanical")]
    if lines <= 2 and n == 1:
        return [Reason("size", -0.03, f"tiny change ({what})")]
    # log-scaled, and bounded: 10 lines ~ 0, 100 ~ +0.04, 300 and more +0.06. Bigger is not better.
    w = round(max(-0.03, min(0.06, 0.04 * (math.log10(1 + lines) - 1.0))), 3)
    if abs(w) < 0.02:
        return []
    return [Reason("size", w, f"{'substantial' if w > 0 else 'small'} change ({what})")]


def _current(ctx: Context, path: str) -> str | None:
    if path in ctx.central:
        return path
    return ctx.resolve.get(path)


def _centrality(ep: EpisodeFacts, ctx: Context) -> list[Reason]:
    if not ctx.central or len(ep.files) > BROAD_FILES or _lines(ep.files) > BROAD_LINES:
        return []
    best: tuple[float, str] | None = None
    for f in ep.files:
        if f.status == "V":  # read, not changed
            continue
        cur = _current(ctx, f.path)
        if cur is None:
            continue
        q = ctx.central[cur]
        if best is None or q < best[0]:
            best = (q, cur)
    if best is None:
        return []
    q, path = best
    for cut, w in ((0.01, 0.15), (0.05, 0.1), (0.10, 0.05)):
        if q < cut:
            return [Reason("centrality", w, f"touches central file {path} (top {round(cut * 100)}%)")]
    return []


def _explicit(ep: EpisodeFacts, ctx: Context) -> list[Reason]:
    out: list[Reason] = []
    if ep.kind in ("commit", "merge"):
        note = ctx.cited_by_note.get(ep.source)
        if note is not None:
            out.append(Reason("explicit", 0.15, f"cited by a note: “{_short(note, 40)}”"))
        good, bad = ctx.useful_commit.get(ep.source, (0, 0))
        if good:
            out.append(Reason("feedback", min(0.25, 0.12 * good),
                              f"listed by {good} recall{'s' if good != 1 else ''} judged useful"))
        elif bad:
            out.append(Reason("feedback", -0.05, f"listed by {bad} recall{'s' if bad != 1 else ''} judged not useful"))
    hits = [(ctx.useful_file[c], c) for f in ep.files if (c := _current(ctx, f.path) or f.path) in ctx.useful_file]
    if hits and not ctx.useful_commit.get(ep.source, (0, 0))[0]:
        n, path = max(hits)
        out.append(Reason("feedback", min(0.08, 0.04 * n), f"touches {path}, which a useful recall listed"))
    return out


def _surprise(ep: EpisodeFacts, ctx: Context) -> list[Reason]:
    r = ctx.surprise.get(ep.id)
    if r is None:
        return []
    if r >= 1.5:
        return [Reason("surprise", round(0.2 * min(1.0, (r - 1.0) / 1.5), 3),
                       f"surprising to the adapter: loss {r:.1f}× typical")]
    if r <= 0.5:
        return [Reason("surprise", -0.05, f"already known to the adapter: loss {r:.1f}× typical")]
    return []


def score_episode(ep: EpisodeFacts, ctx: Context | None = None) -> tuple[float, list[Reason]]:
    """Salience of one episode in [0, 1] and its reasons, strongest first. Pure: everything it
    reads is in ``ep`` and ``ctx``; ``refresh`` builds those from the store."""
    ctx = ctx or Context()
    reasons: list[Reason] = []
    message = ep.title + ("\n" + ep.body if ep.body else "")
    fix_like = False
    if ep.kind == "commit":
        base = BASE["commit"]
        churn = _churn(ep, message)
        if _REVERT.search(message):
            m = _REVERTS_SHA.search(message)
            target = m.group(1)[:7] if m else None
            reasons.append(Reason("kind", 0.35, f"revert: undoes {target}" if target else "revert"))
            fix_like = True
        elif _FIX.search(ep.title) and not churn:
            word = _FIX.search(ep.title)
            reasons.append(Reason("kind", 0.27, f"fix: the subject says “{word.group(0) if word else 'fix'}”"))
            fix_like = True
        reasons += churn if not fix_like else []
        if _SECURITY.search(message) and not churn:
            reasons.append(Reason("kind", 0.1, "security-related"))
        if _BREAKING.search(message) and not churn:
            reasons.append(Reason("kind", 0.08, "breaking change"))
        if ep.author and _BOT.search(ep.author):
            reasons.append(Reason("kind", -0.1, f"made by a bot ({_short(ep.author, 30)})"))
        if ep.files and _only(ep.files, _DOCS) and not churn:
            reasons.append(Reason("kind", -0.08, "documentation only"))
        elif ep.files and _only(ep.files, _CI) and not churn:
            reasons.append(Reason("kind", -0.1, "CI and tooling configuration only"))
        reasons += _size(ep) + _centrality(ep, ctx)
    elif ep.kind == "merge":
        base = BASE["merge"]
        reasons.append(Reason("kind", 0.0, "merge: repeats the commits it joins"))
    elif ep.kind == "note":
        base, text = NOTE_BASE.get(str(ep.data.get("kind") or "note"), NOTE_BASE["note"])
        reasons.append(Reason("explicit", 0.0, text))  # the files a note names: it is about them, not central
    elif ep.kind == "session":
        base = BASE["session"]
        commands = ep.data.get("commands") or []
        failed = sum(1 for c in commands if isinstance(c, dict) and c.get("failed"))
        if (str(ep.data.get("session")), ep.ts) in ctx.corrected:
            reasons.append(Reason("kind", 0.4, "the user corrected the assistant here"))
        if failed:
            reasons.append(Reason("kind", 0.15, f"{failed} command{'s' if failed != 1 else ''} failed"))
        edited = [f for f in ep.files if f.status == "E"]
        if edited:
            reasons += _centrality(EpisodeFacts(ep.id, ep.kind, ep.source, ep.title, files=edited), ctx)
        elif not failed:
            reasons.append(Reason("kind", -0.05, "edited no files"))
    else:
        base = BASE.get(ep.kind, 0.4)
        reasons.append(Reason("kind", 0.0, f"{ep.kind}: bookkeeping"))
    if ep.kind != "merge":
        reasons += _explicit(ep, ctx)
    reasons += _surprise(ep, ctx)
    value = base + sum(r.weight for r in reasons)
    if ep.kind == "session" and ep.data.get("by_user") is False:
        value = min(value, 0.3)
        reasons.append(Reason("kind", 0.0, "not typed by the user (capped at 0.3)"))
    if ep.kind == "commit":
        value = max(value, FIX_FLOOR) if fix_like else min(value, ROUTINE_CAP)
    value = round(max(LOW, min(HIGH, value)), 3)
    reasons.sort(key=lambda r: -abs(r.weight))
    return value, reasons


def reasons_of(raw: str | None) -> list[dict[str, Any]]:
    """The stored reasons (the ``salience.reasons`` JSON) as a list of dicts; [] when unreadable."""
    try:
        out = json.loads(raw or "[]")
    except ValueError:
        return []
    return [r for r in out if isinstance(r, dict)] if isinstance(out, list) else []


# -- the store ------------------------------------------------------------------------------------

def _central(db: sqlite3.Connection) -> dict[str, float]:
    rows = db.execute("SELECT path, rank FROM code_rank ORDER BY rank DESC").fetchall()
    n = len(rows)
    if n < MIN_CENTRAL_FILES:
        return {}
    out: dict[str, float] = {}
    above = 0
    prev: float | None = None
    for i, (path, rank) in enumerate(rows):
        if prev is None or rank < prev:
            above, prev = i, rank
        out[path] = above / n
    return out


def _resolver(central: Iterable[str]) -> dict[str, str]:
    """Older paths → current ones by unique suffix (``werkzeug/x.py`` → ``src/werkzeug/x.py``)."""
    seen: dict[str, str | None] = {}
    for p in central:
        parts = p.split("/")
        for i in range(1, len(parts) - 1):  # tails of two or more parts: a bare file name is too weak
            tail = "/".join(parts[i:])
            seen[tail] = None if tail in seen and seen[tail] != p else p
    return {k: v for k, v in seen.items() if v is not None and k not in central}


def _bucket(q: float | None) -> int:
    if q is None:
        return 0
    return 3 if q < 0.01 else 2 if q < 0.05 else 1 if q < 0.10 else 0


def _state(db: sqlite3.Connection, key: str) -> str | None:
    row = db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
    return row[0] if row else None


def _set_state(db: sqlite3.Connection, key: str, value: str) -> None:
    db.execute("INSERT INTO state (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
               (key, value))


def _json_list(raw: str | None) -> list[Any]:
    try:
        v = json.loads(raw or "[]")
    except ValueError:
        return []
    return v if isinstance(v, list) else []


def _context(db: sqlite3.Connection) -> Context:
    ctx = Context()
    ctx.central = _central(db)
    ctx.resolve = _resolver(ctx.central)
    good: dict[str, int] = defaultdict(int)
    bad: dict[str, int] = defaultdict(int)
    for useful, commits, files in db.execute(
            "SELECT f.useful, r.commits, r.files FROM feedback f JOIN recalls r ON r.id = f.recall_id"):
        for sha in _json_list(commits):
            if isinstance(sha, str):
                (good if useful else bad)[sha] += 1
        if useful:
            for p in _json_list(files)[:3]:  # the top of the answer: what the recall was about
                if isinstance(p, str):
                    ctx.useful_file[p] = ctx.useful_file.get(p, 0) + 1
    ctx.useful_commit = {s: (good.get(s, 0), bad.get(s, 0)) for s in set(good) | set(bad)}
    # Notes citing commits by sha (7+ hex digits that are a stored commit's prefix).
    notes = db.execute("SELECT title, body FROM episodes WHERE kind = 'note' ORDER BY ts").fetchall()
    # The hex words recall reads as commit ids, all-digit and all-letter ones too (a sha's first 8
    # digits are all digits one time in 40): the store decides. A word names a commit only when it is
    # the unique prefix of one stored commit, which a number or a word like "defaced" is one time in
    # millions on a repository of thousands of commits.
    prefixes = {m for t, b in notes for m in sha_mentions(f"{t}\n{b}")}
    for p in sorted(prefixes):
        row = db.execute("SELECT source FROM episodes WHERE kind IN ('commit', 'merge') AND source >= ? AND source < ?"
                         " LIMIT 2", (p, p + "g")).fetchall()
        if len(row) == 1:
            sha = row[0][0]
            ctx.cited_by_note.setdefault(sha, next(t for t, b in notes if p in f"{t}\n{b}"))
    for session, ts in db.execute("SELECT json_extract(data, '$.session'), ts FROM episodes WHERE kind = 'note'"
                                  " AND json_extract(data, '$.kind') = 'correction'"):
        if session is not None:
            ctx.corrected.add((str(session), float(ts)))
    ctx.surprise = {eid: s for eid, s in db.execute("SELECT episode_id, surprise FROM salience"
                                                     " WHERE surprise IS NOT NULL")}
    return ctx


def _facts(db: sqlite3.Connection, ids: Sequence[int]) -> list[EpisodeFacts]:
    out: list[EpisodeFacts] = []
    for i in range(0, len(ids), BATCH):
        chunk = list(ids[i:i + BATCH])
        q = ",".join("?" * len(chunk))
        eps = {r[0]: EpisodeFacts(id=r[0], kind=r[1], source=r[2], title=r[3] or "", body=r[4] or "", author=r[5],
                                  data=_json_dict(r[6]), ts=float(r[7]))
               for r in db.execute(f"SELECT id, kind, source, title, body, author, data, ts FROM episodes"
                                   f" WHERE id IN ({q})", chunk)}
        for eid, path, status, added, deleted, binary in db.execute(
                f"SELECT episode_id, path, status, added, deleted, binary FROM episode_files WHERE episode_id IN ({q})"
                " ORDER BY episode_id, path", chunk):
            if eid in eps:
                eps[eid].files.append(FileStat(path, status, added, deleted, bool(binary)))
        # The whitespace check reads the diff text, but only of the small commits it can decide.
        need = [e.id for e in eps.values() if e.kind == "commit" and e.files and _lines(e.files) <= 400]
        for j in range(0, len(need), BATCH):
            sub = need[j:j + BATCH]
            for eid, path, hunks, truncated in db.execute(
                    f"SELECT episode_id, path, hunks, truncated FROM episode_files"
                    f" WHERE episode_id IN ({','.join('?' * len(sub))})", sub):
                for f in eps[eid].files:
                    if f.path == path:
                        f.hunks, f.truncated = hunks, bool(truncated)
        out += eps.values()
    return out


def _json_dict(raw: str | None) -> dict[str, Any]:
    try:
        v = json.loads(raw or "{}")
    except ValueError:
        return {}
    return v if isinstance(v, dict) else {}


def _fingerprint(ctx: Context, db: sqlite3.Connection) -> dict[str, Any]:
    """What the incremental refresh compares with the last run's: files' centrality buckets, the
    last feedback row, and which commits notes cite."""
    return {"central": {p: b for p, q in ctx.central.items() if (b := _bucket(q))},
            "feedback": db.execute("SELECT coalesce(max(id), 0) FROM feedback").fetchone()[0],
            "cited": sorted(ctx.cited_by_note),
            "version": VERSION}


def _changed(db: sqlite3.Connection, ctx: Context, fp: dict[str, Any]) -> set[int]:
    """Episodes whose inputs changed since the last refresh (besides the unscored and outdated)."""
    raw = _state(db, CONTEXT_KEY)
    try:
        old = json.loads(raw) if raw else None
    except ValueError:
        old = None
    if not isinstance(old, dict) or old.get("version") != VERSION:
        return set()  # first run or a new scorer: everything is rescored by version anyway
    ids: set[int] = set()
    before, now = old.get("central") or {}, fp["central"]
    paths = {p for p in set(before) | set(now) if before.get(p) != now.get(p)}
    # The episodes that touched those files, under their current name or an older one.
    names = set(paths) | {old_p for old_p, cur in ctx.resolve.items() if cur in paths}
    ids |= _touching(db, names)
    last = int(old.get("feedback") or 0)
    if fp["feedback"] > last:
        shas: set[str] = set()
        files: set[str] = set()
        for commits, fl in db.execute("SELECT r.commits, r.files FROM feedback f JOIN recalls r ON r.id = f.recall_id"
                                      " WHERE f.id > ?", (last,)):
            shas |= {s for s in _json_list(commits) if isinstance(s, str)}
            files |= {p for p in _json_list(fl)[:3] if isinstance(p, str)}
        ids |= _by_source(db, shas) | _touching(db, files | {o for o, c in ctx.resolve.items() if c in files})
    cited = set(old.get("cited") or []) ^ set(fp["cited"])
    ids |= _by_source(db, cited)
    return ids


def _touching(db: sqlite3.Connection, paths: Iterable[str]) -> set[int]:
    out: set[int] = set()
    items = sorted(paths)
    for i in range(0, len(items), BATCH):
        chunk = items[i:i + BATCH]
        out |= {r[0] for r in db.execute(
            f"SELECT DISTINCT episode_id FROM episode_files WHERE path IN ({','.join('?' * len(chunk))})", chunk)}
    return out


def _by_source(db: sqlite3.Connection, sources: Iterable[str]) -> set[int]:
    out: set[int] = set()
    items = sorted(sources)
    for i in range(0, len(items), BATCH):
        chunk = items[i:i + BATCH]
        out |= {r[0] for r in db.execute(
            f"SELECT id FROM episodes WHERE source IN ({','.join('?' * len(chunk))})", chunk)}
    return out


def refresh(db: sqlite3.Connection, *, episode_ids: Iterable[int] | None = None) -> int:
    """Score episodes and store the result (``episodes.salience`` and the ``salience`` table);
    returns how many were scored. By default only what needs it: episodes never scored, scored by
    an older scorer, or whose inputs changed since the last refresh; ``episode_ids``: exactly
    those (and what changed). Idempotent: a second run with nothing new scores nothing."""
    ctx = _context(db)
    fp = _fingerprint(ctx, db)
    todo: set[int] = set(episode_ids) if episode_ids is not None else set()
    todo |= {r[0] for r in db.execute(
        "SELECT e.id FROM episodes e LEFT JOIN salience s ON s.episode_id = e.id"
        " WHERE s.episode_id IS NULL OR s.version != ?", (VERSION,))}
    todo |= _changed(db, ctx, fp)
    facts = _facts(db, sorted(todo))
    now = time.time()
    rows = []
    for ep in facts:
        value, reasons = score_episode(ep, ctx)
        rows.append((ep.id, value, json.dumps([r.as_dict() for r in reasons], ensure_ascii=False),
                     ctx.surprise.get(ep.id), now, VERSION))
    mark = json.dumps(fp, sort_keys=True)
    if not rows and _state(db, CONTEXT_KEY) == mark:
        return 0  # nothing to write: a read (`lmm log --salience`) stays a read
    with transaction(db):
        db.executemany(
            "INSERT INTO salience (episode_id, value, reasons, surprise, scored_at, version) VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT(episode_id) DO UPDATE SET value = excluded.value, reasons = excluded.reasons,"
            " surprise = excluded.surprise, scored_at = excluded.scored_at, version = excluded.version", rows)
        db.executemany("UPDATE episodes SET salience = ? WHERE id = ? AND salience != ?",
                       [(r[1], r[0], r[1]) for r in rows])
        _set_state(db, CONTEXT_KEY, mark)
    return len(rows)


def record_surprise(db: sqlite3.Connection, losses: dict[int, float]) -> None:
    """Record the active adapter's loss on each episode's pairs (``{episode_id: mean loss}``, from a
    training round) as surprise — the loss relative to the repository's typical loss — and rescore
    those episodes. The typical loss is the median of this batch when it has 8 or more episodes
    (the same adapter measured them all), else the last such median (else this batch's)."""
    clean = {int(k): float(v) for k, v in losses.items() if v is not None and math.isfinite(float(v)) and v >= 0}
    if not clean:
        return
    typical: float | None = None
    if len(clean) >= 8:
        typical = statistics.median(clean.values())
    else:
        raw = _state(db, TYPICAL_KEY)
        try:
            typical = float(raw) if raw else None
        except ValueError:
            typical = None
        typical = typical or statistics.median(clean.values())
    if typical <= 0:
        return
    known = {r[0] for r in db.execute("SELECT id FROM episodes")} & set(clean)
    with transaction(db):
        if len(clean) >= 8:
            _set_state(db, TYPICAL_KEY, repr(typical))
        now = time.time()
        for eid in sorted(known):
            ratio = round(clean[eid] / typical, 3)
            db.execute("INSERT INTO salience (episode_id, value, reasons, surprise, scored_at, version)"
                       " SELECT id, salience, '[]', ?, ?, 0 FROM episodes WHERE id = ?"
                       " ON CONFLICT(episode_id) DO UPDATE SET surprise = excluded.surprise", (ratio, now, eid))
    refresh(db, episode_ids=known)
