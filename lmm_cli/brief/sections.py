"""The brief's other sections: layout, central modules, hot spots, recent direction, notes."""

from __future__ import annotations

import json
from collections import Counter, defaultdict

from ..address.intent import is_test as _is_test
from ..text import split_identifier
from .reading import (
    _CODE_LANGS,
    _DULL,
    _LOCKFILES,
    _NOT_HOT,
    _REVERT,
    _VERB_KIND,
    _WORD,
    HOT_DAYS,
    RECENT_DAYS,
    RECENT_MAX,
    RECENT_MIN,
    RepoView,
    _commit,
    _date,
    _file,
    _is_fix,
    _is_revert,
    _lang_of,
    _plural,
    _subject,
)
from .render import Citation, Line, Section

# ---------------------------------------------------------------------------------------------
# Layout and the central modules


def layout_section(r: RepoView) -> Section:
    sec = Section("Layout")
    rank = r.rank()
    by_top: dict[str, list[str]] = defaultdict(list)
    for p in r.files:
        if "/" in p:
            by_top[p.split("/", 1)[0]].append(p)
    symbol_counts: dict[str, int] = {}
    if r.indexed and not rank:
        symbol_counts = {row[0]: row[1] for row in r.db.execute(
            "SELECT path, count(*) FROM code_symbols GROUP BY path")}

    def centrality(p: str) -> tuple[float, int, bool, int, str]:
        return (-rank.get(p, 0.0), -symbol_counts.get(p, 0), _lang_of(p, r.files[p]) not in _CODE_LANGS,
                p.count("/"), p)

    for top, paths in sorted(by_top.items(), key=lambda kv: (-len(kv[1]), kv[0]))[:8]:
        langs = Counter(lg for p in paths if (lg := _lang_of(p, r.files[p])) and lg != "text")
        total = sum(langs.values())
        main = [lg for lg, c in langs.most_common(3) if c / total >= 0.1][:2] if total else []
        subs = Counter(p.split("/")[1] for p in paths if p.count("/") >= 2)
        text = f"`{top}/`: {_plural(len(paths), 'file')}"
        if main:
            text += ", " + ", ".join(main)
        if len(subs) >= 2:
            text += "; " + ", ".join(s for s, _ in subs.most_common(4)) + (", …" if len(subs) > 4 else "")
        central = next((p for p in sorted(paths, key=centrality) if r.exists(p)), None)
        if central:
            sec.lines.append(Line(text, [_file(central)]))
    return sec


def central_section(r: RepoView) -> Section:
    """The files the rest of the code uses most (PageRank over code_refs), with their main symbols.

    Files with the same name ranked alike (``error.rs`` in every crate) make one line."""
    sec = Section("Central modules")
    rank = r.rank()
    if not rank:
        return sec
    used_by = {row[0]: row[1] for row in r.db.execute(
        "SELECT dst, count(DISTINCT src) FROM code_refs WHERE src != dst GROUP BY dst")}
    ranked = sorted((p for p in rank if p in r.files and not _is_test(p)), key=lambda p: (-rank[p], p))[:60]
    chosen: dict[str, list[str]] = {}  # basename -> [shown path, alike paths…]
    for p in ranked:
        base = p.rsplit("/", 1)[-1]
        if base in chosen:
            chosen[base].append(p)
        elif len(chosen) < 8 and r.exists(p):
            chosen[base] = [p]
    for base, (p, *alike) in chosen.items():
        syms = r.db.execute(
            """SELECT s.name, min(s.start_line) AS line,
                      (SELECT count(*) FROM code_idents i WHERE i.ident = s.name AND i.path != s.path) AS uses
               FROM code_symbols s WHERE s.path = ? AND s.parent IS NULL
               GROUP BY s.name ORDER BY uses DESC, line LIMIT 4""", (p,)).fetchall()
        notes = []
        if used_by.get(p):
            notes.append(f"used by {_plural(used_by[p], 'file')}")
        if alike:
            notes.append(f"{len(alike)} more `{base}` like it")
        text = f"`{p}`" + (f" ({'; '.join(notes)})" if notes else "")
        if syms:
            text += ": " + ", ".join(f"`{s[0]}`" for s in syms)
            sec.lines.append(Line(text, [_file(p, int(syms[0][1]))]))
        else:
            sec.lines.append(Line(text, [_file(p)]))
    return sec




# ---------------------------------------------------------------------------------------------
# Hot spots


def hot_spots_section(r: RepoView) -> Section:
    sec = Section("Hot spots")
    if not r.has_commits:
        return sec
    since, window = r.window(HOT_DAYS)
    # Fixes (1) and reverts (2) are told by their subjects: SQL's LIKE narrows, the regular
    # expressions decide, and the flags go back to SQL as one JSON object for the per-file aggregate.
    flags: dict[int, int] = {}
    for eid, sha, title in r.db.execute(
            """SELECT id, source, title FROM episodes WHERE kind = 'commit' AND valid_to IS NULL
               AND (title LIKE '%fix%' OR title LIKE '%bug%' OR title LIKE '%regression%'
                    OR title LIKE '%crash%' OR title LIKE '%revert%')"""):
        if sha in r.gone:
            continue
        if _is_revert(title):
            flags[eid] = 2
        elif _is_fix(title):
            flags[eid] = 1
    flags_json = json.dumps(flags)
    rows = r.db.execute(
        """WITH g AS (SELECT CAST(key AS INTEGER) AS id, value AS flag FROM json_each(?)),
                c AS (SELECT e.id, e.ts >= ? AS recent, coalesce(g.flag, 0) AS flag
                      FROM episodes e LEFT JOIN g ON g.id = e.id
                      WHERE e.kind = 'commit' AND e.valid_to IS NULL
                        AND e.source NOT IN (SELECT value FROM json_each(?)))
           SELECT f.path, count(*), sum(c.flag = 1), sum(c.flag = 2), sum(c.recent),
                  sum(c.recent AND c.flag = 1), sum(c.recent AND c.flag = 2)
           FROM episode_files f JOIN c ON c.id = f.episode_id
           GROUP BY f.path""", (flags_json, since, r.gone_json())).fetchall()
    stats: dict[str, tuple[int, ...]] = {}
    for path, *counts in rows:
        base = path.rsplit("/", 1)[-1]
        if path in r.files and base not in _LOCKFILES and not _NOT_HOT.match(base):
            stats[path] = tuple(int(c or 0) for c in counts)
    by_fix = sorted((p for p, s in stats.items() if s[1] + s[2] >= 2),
                    key=lambda p: (-(stats[p][1] + stats[p][2]), -stats[p][0], p))
    by_churn = sorted((p for p, s in stats.items() if s[0] >= 3), key=lambda p: (-stats[p][0], p))
    by_recent = sorted((p for p, s in stats.items() if s[3] >= 2),
                       key=lambda p: (-(stats[p][3] + stats[p][4] + stats[p][5]), -stats[p][0], p))
    # The most fixed, the most changed and the busiest lately, taken in turns.
    order: list[str] = []
    lists = [iter(by_fix), iter(by_churn), iter(by_recent)]
    while lists and len(order) < 8:
        for it in list(lists):
            p = next((p for p in it if p not in order and r.exists(p)), None)
            if p is None:
                lists.remove(it)
            elif len(order) < 8:
                order.append(p)
    for path in order:
        n, fixes, reverts, recent, recent_fixes, recent_reverts = stats[path]
        parts = [_plural(n, "commit")]
        if fixes:
            parts.append(_plural(fixes, "fix"))
        if reverts:
            parts.append(_plural(reverts, "revert"))
        text = f"`{path}`: " + ", ".join(parts)
        if recent:
            lately = [_plural(recent, "commit")] + ([_plural(recent_fixes, "fix")] if recent_fixes else []) + (
                [_plural(recent_reverts, "revert")] if recent_reverts else [])
            text += f" ({window}: {', '.join(lately)})"
        # Cite the latest fixes and reverts of the file, or else its latest commits.
        shas = r.db.execute(
            """SELECT e.id, e.source FROM episode_files f JOIN episodes e ON e.id = f.episode_id
               WHERE f.path = ? AND +e.kind = 'commit' AND e.valid_to IS NULL
               ORDER BY e.ts DESC, e.id DESC""", (path,)).fetchall()
        shas = [(eid, sha) for eid, sha in shas if sha not in r.gone]
        if fixes or reverts:
            cites = [sha for eid, sha in shas if eid in flags][:3]
        else:
            cites = [sha for _, sha in shas[:2]]
        sec.lines.append(Line(text, [_commit(s) for s in cites]))
    return sec


# ---------------------------------------------------------------------------------------------
# Recent direction


def _folder(path: str) -> str:
    parts = path.split("/")[:-1]
    return "/".join(parts[:2]) + "/" if parts else "/"


def recent_section(r: RepoView) -> Section:
    sec = Section("Recent direction")
    if not r.has_commits:
        return sec
    rows = r.db.execute(
        "SELECT id, source, ts, title FROM episodes WHERE +kind = 'commit' AND valid_to IS NULL"
        " ORDER BY ts DESC, id DESC LIMIT ?", (RECENT_MAX,)).fetchall()
    rows = [row for row in rows if row[1] not in r.gone]
    cutoff, _ = r.window(RECENT_DAYS)
    window = [row for i, row in enumerate(rows) if i < RECENT_MIN or row[2] >= cutoff]
    if not window:
        return sec
    first, last = window[-1][2], window[0][2]
    span = f"{_date(first)} → {_date(last)}" if _date(first) != _date(last) else _date(last)
    kinds: Counter[str] = Counter()
    words: Counter[str] = Counter()
    word_commit: dict[str, str] = {}
    for _, sha, _, title in window:
        kind, _, rest = _subject(title)
        if kind is None:  # a plain subject: its verb says the kind
            kind = "revert" if _REVERT.match(title) else _VERB_KIND.get(
                rest.split(" ", 1)[0].lower().strip(":,."), "other")
        kinds[{"doc": "docs", "tests": "test"}.get(kind, kind)] += 1
        seen: set[str] = set()
        for m in _WORD.finditer(rest):
            for part in (split_identifier(m.group(0)) or [m.group(0).lower()]):
                if len(part) >= 3 and part not in _DULL and not part.isdigit() and part not in seen:
                    seen.add(part)
                    words[part] += 1
                    word_commit.setdefault(part, sha)
    mix = ", ".join(f"{c} {k}" for k, c in kinds.most_common(5)) if set(kinds) != {"other"} else ""
    sec.lines.append(Line(f"Last {_plural(len(window), 'commit')} ({span})" + (f": {mix}" if mix else ""),
                          [_commit(window[0][1])] + ([_commit(window[1][1])] if len(window) > 1 else [])))
    ids = [row[0] for row in window]
    qs = ",".join("?" * len(ids))
    files = r.db.execute(
        f"SELECT f.episode_id, f.path, f.status FROM episode_files f WHERE f.episode_id IN ({qs})", ids).fetchall()
    sha_of = {row[0]: row[1] for row in window}
    order = {row[0]: i for i, row in enumerate(window)}
    folders: dict[str, set[int]] = defaultdict(set)
    added: dict[str, int] = {}
    for eid, path, status in files:
        folders[_folder(path)].add(eid)
        if status in ("A", "C") and r.exists(path):
            if path not in added or order[eid] < order[added[path]]:
                added[path] = eid
    top = sorted(folders.items(), key=lambda kv: (-len(kv[1]), kv[0]))[:4]
    if top:
        text = "Most touched: " + ", ".join(
            f"{'top-level files' if f == '/' else f'`{f}`'} ({len(e)})" for f, e in top)
        cites = [_commit(sha_of[min(e, key=order.__getitem__)]) for _, e in top]
        sec.lines.append(Line(text, list(dict.fromkeys(cites))[:4]))
    common = [(w, c) for w, c in words.most_common(8) if c >= 2][:6]
    if common:
        text = "Recurring subjects: " + ", ".join(f"{w} ({c})" for w, c in common)
        cites = list(dict.fromkeys(_commit(word_commit[w]) for w, _ in common[:2]))
        sec.lines.append(Line(text, cites))
    if added:
        new = sorted(added, key=lambda p: (_is_test(p), order[added[p]], p))
        dirs = Counter(_folder(p) for p in new)
        shown = ", ".join(f"`{p}`" for p in new[:4])
        text = f"New files: {shown}" + (f" and {len(new) - 4} more" if len(new) > 4 else "")
        if len(new) > 4:
            text += " (most in " + ", ".join(
                "the top level" if d == "/" else f"`{d}`" for d, _ in dirs.most_common(2)) + ")"
        cites = list(dict.fromkeys(_commit(sha_of[added[p]]) for p in new[:4]))[:3]
        sec.lines.append(Line(text, cites))
    return sec


# ---------------------------------------------------------------------------------------------
# Notes


def notes_section(r: RepoView) -> Section:
    sec = Section("Notes")
    for eid, ts, title, body in r.db.execute(
            "SELECT id, ts, title, body FROM episodes WHERE kind = 'note' AND valid_to IS NULL"
            " ORDER BY ts DESC, id DESC LIMIT 8"):
        text = " ".join((title or "").split())
        if len(text) > 200:
            text = text[:199].rstrip() + "…"
        elif body and body.strip():
            text += " …"
        if text:
            sec.lines.append(Line(text, [Citation("note", str(eid), label=f"note {eid}, {_date(ts)}")]))
    return sec
