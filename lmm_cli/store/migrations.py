"""Schema migrations: ordered functions, each applied once in its own transaction and recorded.

``PRAGMA user_version`` holds how many have run, so a store written by a newer lmm (more migrations
than this one knows) is refused instead of being misread. Append new migrations; never edit old ones, and
never import live code from one: a migration that needs a helper carries a frozen copy of it.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Callable

from .tx import transaction

__all__ = ["MIGRATIONS", "migrate", "schema_version"]

Migration = Callable[[sqlite3.Connection], None]
MIGRATIONS: list[Migration] = []


def migration(fn: Migration) -> Migration:
    MIGRATIONS.append(fn)
    return fn


@migration
def m001_episodes(db: sqlite3.Connection) -> None:
    db.execute("""
        CREATE TABLE episodes (
            id            INTEGER PRIMARY KEY,
            kind          TEXT NOT NULL,      -- commit, merge, rewrite, checkout, note; later: turn, file
            source        TEXT NOT NULL,      -- what it came from: a sha, an event id, a session id
            ts            REAL NOT NULL,      -- when it happened, unix seconds (commits: committer date)
            author        TEXT,
            author_email  TEXT,
            title         TEXT NOT NULL DEFAULT '',
            body          TEXT NOT NULL DEFAULT '',
            data          TEXT NOT NULL DEFAULT '{}',   -- kind-specific JSON (parents, dates, branch…)
            tier          TEXT NOT NULL DEFAULT 'episodic'
                          CHECK (tier IN ('sensory', 'episodic', 'semantic', 'archival')),
            salience      REAL NOT NULL DEFAULT 0.5,
            strength      REAL NOT NULL DEFAULT 1.0,
            decay_rate    REAL NOT NULL DEFAULT 0.01,   -- per day
            recall_count  INTEGER NOT NULL DEFAULT 0,
            last_recalled REAL,
            confidence    REAL NOT NULL DEFAULT 1.0,
            valid_from    REAL NOT NULL,
            valid_to      REAL,                          -- set when superseded; never deleted
            superseded_by TEXT,
            provenance    TEXT NOT NULL DEFAULT '{}',    -- JSON: how and from what it was captured
            captured_at   REAL NOT NULL,
            UNIQUE (kind, source)
        )""")
    db.execute("CREATE INDEX episodes_ts ON episodes(ts)")
    db.execute("CREATE INDEX episodes_source ON episodes(source)")
    db.execute("""
        CREATE TABLE episode_files (
            episode_id INTEGER NOT NULL REFERENCES episodes(id) ON DELETE CASCADE,
            path       TEXT NOT NULL,
            old_path   TEXT,                 -- renames and copies
            status     TEXT NOT NULL,        -- A added, M modified, D deleted, R renamed, C copied, N named
            added      INTEGER,              -- NULL for binary files
            deleted    INTEGER,
            binary     INTEGER NOT NULL DEFAULT 0,
            secret     INTEGER NOT NULL DEFAULT 0,   -- a secret file: name and stats only
            hunks      TEXT,                 -- redacted diff text, truncated to the configured caps
            truncated  INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (episode_id, path)
        )""")
    db.execute("CREATE INDEX episode_files_path ON episode_files(path)")
    db.execute("""
        CREATE TABLE episode_symbols (
            episode_id INTEGER NOT NULL REFERENCES episodes(id) ON DELETE CASCADE,
            path       TEXT NOT NULL,
            symbol     TEXT NOT NULL,
            context    TEXT NOT NULL,        -- the function/class line git printed in the hunk header
            PRIMARY KEY (episode_id, path, symbol)
        )""")
    db.execute("CREATE INDEX episode_symbols_symbol ON episode_symbols(symbol)")
    db.execute("""
        CREATE TABLE commit_parents (
            sha    TEXT NOT NULL,
            parent TEXT NOT NULL,
            idx    INTEGER NOT NULL,
            PRIMARY KEY (sha, idx)
        )""")
    db.execute("CREATE INDEX commit_parents_parent ON commit_parents(parent)")
    db.execute("""
        CREATE TABLE rewrites (
            old_sha TEXT NOT NULL,
            new_sha TEXT NOT NULL,
            kind    TEXT NOT NULL,           -- amend or rebase
            ts      REAL NOT NULL,
            PRIMARY KEY (old_sha, new_sha)
        )""")
    # Commits whose whole ancestry is captured: `git rev-list … --not <tips>` lists only what is new.
    db.execute("CREATE TABLE tips (sha TEXT PRIMARY KEY, ts REAL NOT NULL)")
    db.execute("CREATE TABLE state (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    # Contentless: the text lives in episodes/episode_files; the index alone is stored here.
    db.execute("""
        CREATE VIRTUAL TABLE episodes_fts USING fts5(
            title, body, paths, symbols, diff, content='', detail=column,
            tokenize='unicode61 remove_diacritics 2'
        )""")


def schema_version(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def migrate(db: sqlite3.Connection) -> int:
    """Apply the migrations this store lacks; returns how many ran. Caller checks 'too new' first."""
    ran = 0
    db.execute(
        "CREATE TABLE IF NOT EXISTS _migrations (id INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
    )
    while True:
        version = schema_version(db)
        if version >= len(MIGRATIONS):
            return ran
        fn = MIGRATIONS[version]
        with transaction(db):
            if schema_version(db) != version:  # another process migrated meanwhile
                continue
            fn(db)
            db.execute(
                "INSERT INTO _migrations (id, name, applied_at) VALUES (?, ?, ?)",
                (version + 1, fn.__name__, time.time()),
            )
            db.execute(f"PRAGMA user_version = {version + 1}")
        ran += 1


# Frozen for m002: the episode index text and the code-aware terms as they were when m002 was
# written. Live code may change how it tokenises; what an old migration does must not.
_M002_IDENT = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")
_M002_PARTS = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")


def _m002_code_terms(text: str) -> str:
    out: list[str] = []
    for w in sorted(set(_M002_IDENT.findall(text))):
        if w.islower() and "_" not in w and "$" not in w:
            continue
        parts = [p.lower() for p in _M002_PARTS.findall(w)]
        if len(parts) > 1:
            out.extend(parts)
    return " ".join(out)


def _m002_fts_doc(db: sqlite3.Connection, eid: int) -> tuple[str, str, str, str, str, str]:
    title, body = db.execute("SELECT title, body FROM episodes WHERE id = ?", (eid,)).fetchone()
    files = db.execute(
        "SELECT path, old_path, hunks FROM episode_files WHERE episode_id = ? ORDER BY path", (eid,)
    ).fetchall()
    symbols = [r[0] for r in db.execute(
        "SELECT symbol FROM episode_symbols WHERE episode_id = ? ORDER BY path, symbol", (eid,))]
    paths = " ".join(p if not old else f"{old} {p}" for p, old, _ in files)
    diff = "\n".join(h for _, _, h in files if h)
    sym = " ".join(symbols)
    return title, body, paths, sym, diff, _m002_code_terms(" ".join((title, body, paths, sym, diff)))


@migration
def m002_code_index_and_vectors(db: sqlite3.Connection) -> None:
    """The addressing layer's indexes: the working tree's structure, and embedding vectors."""
    db.execute("""
        CREATE TABLE code_files (
            path       TEXT PRIMARY KEY,
            hash       TEXT NOT NULL,        -- content hash (git blob id): unchanged files are not re-parsed
            lang       TEXT,                 -- tree-sitter language, or NULL when chunked by lines
            size       INTEGER NOT NULL,
            lines      INTEGER NOT NULL,
            indexed_at REAL NOT NULL
        )""")
    db.execute("""
        CREATE TABLE code_symbols (
            id         INTEGER PRIMARY KEY,
            path       TEXT NOT NULL REFERENCES code_files(path) ON DELETE CASCADE,
            name       TEXT NOT NULL,
            kind       TEXT NOT NULL,        -- function, method, class, struct, interface, enum, trait, …
            parent     TEXT,                 -- enclosing class/impl for methods
            start_line INTEGER NOT NULL,     -- 1-based, inclusive
            end_line   INTEGER NOT NULL,
            signature  TEXT NOT NULL         -- the definition's first line, redacted, trimmed
        )""")
    db.execute("CREATE INDEX code_symbols_path ON code_symbols(path)")
    db.execute("CREATE INDEX code_symbols_name ON code_symbols(name)")
    db.execute("""
        CREATE TABLE code_chunks (
            id         INTEGER PRIMARY KEY,
            path       TEXT NOT NULL REFERENCES code_files(path) ON DELETE CASCADE,
            start_line INTEGER NOT NULL,
            end_line   INTEGER NOT NULL,
            symbol     TEXT,                 -- the symbol this chunk is, if it is one
            text       TEXT NOT NULL,        -- redacted
            hash       TEXT NOT NULL         -- of text: the key of its embedding
        )""")
    db.execute("CREATE INDEX code_chunks_path ON code_chunks(path)")
    # Identifiers each file uses; with code_symbols they give the file reference graph.
    db.execute("""
        CREATE TABLE code_idents (
            path  TEXT NOT NULL REFERENCES code_files(path) ON DELETE CASCADE,
            ident TEXT NOT NULL,
            count INTEGER NOT NULL,
            PRIMARY KEY (path, ident)
        )""")
    db.execute("CREATE INDEX code_idents_ident ON code_idents(ident)")
    db.execute("""
        CREATE TABLE code_refs (
            src    TEXT NOT NULL,            -- the file that uses a name
            dst    TEXT NOT NULL,            -- the file that defines it
            weight REAL NOT NULL,
            PRIMARY KEY (src, dst)
        )""")
    db.execute("CREATE INDEX code_refs_dst ON code_refs(dst)")
    # Lexical index over chunks (rowid = code_chunks.id); `terms` holds code-aware splits
    # (refreshToken → refresh token), which FTS5's tokenizer cannot do itself.
    db.execute("""
        CREATE VIRTUAL TABLE code_fts USING fts5(
            path, symbol, text, terms, content='',
            tokenize='porter unicode61 remove_diacritics 2'
        )""")
    # Episodes get the same code-aware terms column: the index is rebuilt with it. (Not
    # detail=column as in m001: with content='' that makes bm25() return 0 for every row.)
    db.execute("DROP TABLE episodes_fts")
    db.execute("""
        CREATE VIRTUAL TABLE episodes_fts USING fts5(
            title, body, paths, symbols, diff, terms, content='',
            tokenize='porter unicode61 remove_diacritics 2'
        )""")
    for (eid,) in db.execute("SELECT id FROM episodes").fetchall():
        db.execute(
            "INSERT INTO episodes_fts (rowid, title, body, paths, symbols, diff, terms) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (eid, *_m002_fts_doc(db, eid)),
        )
    # Query-independent file priors, recomputed after each index run: PageRank centrality over
    # code_refs, and how many files use each file.
    db.execute("""
        CREATE TABLE code_rank (
            path    TEXT PRIMARY KEY,
            rank    REAL NOT NULL,
            used_by INTEGER NOT NULL
        )""")
    # Embeddings, keyed by the text's hash and the model: unchanged text is never embedded twice.
    db.execute("""
        CREATE TABLE vectors (
            model TEXT NOT NULL,             -- encoder id (and adapter version, later)
            hash  TEXT NOT NULL,             -- sha1 of the embedded text
            dim   INTEGER NOT NULL,
            vec   BLOB NOT NULL,             -- float16, L2-normalised
            PRIMARY KEY (model, hash)
        )""")


@migration
def m003_file_names_index(db: sqlite3.Connection) -> None:
    """A lexical index with one entry per file: its path and the names it defines (rowid =
    code_files.rowid). Asking which file *defines* what the task names is a different question
    from which chunk mentions it, and often the better one."""
    db.execute("""
        CREATE VIRTUAL TABLE file_fts USING fts5(
            path, names, terms, content='', tokenize='porter unicode61 remove_diacritics 2'
        )""")


@migration
def m004_privacy_rules_version(db: sqlite3.Connection) -> None:
    """Record which redaction rules the store's text was redacted with: 0, "before this record".

    Only the record: the rules are live code, which a migration must not import. The capture that
    next opens the store (``capture/rescan.py``, under the capture lock) sees a version older than
    its own ``RULES_VERSION`` and re-redacts everything stored, then records its version."""
    db.execute("INSERT OR IGNORE INTO state (key, value) VALUES ('privacy.rules_version', '0')")


@migration
def m005_recalls_and_feedback(db: sqlite3.Connection) -> None:
    """What recall answered, and whether it helped: the utility signal later learning uses.

    Each recall (from the shell, the MCP tool or an assistant hook) gets a row with the ranked files
    and commits it returned; ``feedback`` rows point at it. Text here is redacted like the rest."""
    db.execute("""
        CREATE TABLE recalls (
            id      INTEGER PRIMARY KEY,
            ts      REAL NOT NULL,
            via     TEXT NOT NULL,               -- cli, mcp, hook
            query   TEXT NOT NULL,               -- redacted, cut to 2,000 characters
            files   TEXT NOT NULL DEFAULT '[]',  -- JSON: the ranked paths
            commits TEXT NOT NULL DEFAULT '[]'   -- JSON: the shas listed
        )""")
    db.execute("CREATE INDEX recalls_ts ON recalls(ts)")
    db.execute("""
        CREATE TABLE feedback (
            id        INTEGER PRIMARY KEY,
            recall_id INTEGER NOT NULL REFERENCES recalls(id) ON DELETE CASCADE,
            ts        REAL NOT NULL,
            via       TEXT NOT NULL,
            useful    INTEGER NOT NULL,          -- 1 helped, 0 did not
            note      TEXT NOT NULL DEFAULT ''   -- redacted
        )""")
    db.execute("CREATE INDEX feedback_recall ON feedback(recall_id)")


@migration
def m006_activity(db: sqlite3.Connection) -> None:
    """What is active now: the repository files edited lately, one row per file with its latest time.

    A short-lived signal, not history: ``lmm watch`` (the working tree) and the Cursor
    ``afterFileEdit`` hook write it, recall's working-set channel reads the last half hour of it,
    and rows older than a day are pruned as new ones come. Paths are repository paths."""
    db.execute("""
        CREATE TABLE activity (
            path TEXT PRIMARY KEY,
            ts   REAL NOT NULL,                  -- the latest edit seen (unix seconds)
            via  TEXT NOT NULL,                  -- watch, cursor
            n    INTEGER NOT NULL DEFAULT 1      -- edits seen since the row was made
        )""")
    db.execute("CREATE INDEX activity_ts ON activity(ts)")


@migration
def m007_salience(db: sqlite3.Connection) -> None:
    """Why each episode matters as much as it does: the salience gate's value and its reasons.

    ``episodes.salience`` stays the number the rest of lmm reads (pair weights, recall's fixes
    prior); this table says how it was reached. ``reasons`` is a JSON list of
    ``{"factor", "weight", "text"}``; ``surprise`` is the adapter's loss on the episode's pairs
    relative to the repository's typical loss (NULL until a training round measured it);
    ``version`` the scorer's version, so a newer scorer rescores what an older one wrote. Rows are
    filled by ``model.salience.refresh`` after the next capture (this migration scores nothing)."""
    db.execute("""
        CREATE TABLE salience (
            episode_id INTEGER PRIMARY KEY REFERENCES episodes(id) ON DELETE CASCADE,
            value      REAL NOT NULL,
            reasons    TEXT NOT NULL DEFAULT '[]',   -- JSON: [{"factor", "weight", "text"}, …]
            surprise   REAL,                          -- loss ÷ typical loss; NULL: not measured
            scored_at  REAL NOT NULL,
            version    INTEGER NOT NULL
        )""")


@migration
def m008_sessions_generation(db: sqlite3.Connection) -> None:
    """A counter in ``state`` (``sessions_gen``) that every change to a session turn moves on.

    What is computed from all session turns at once (the open threads) is cached under it and is
    valid exactly while the counter is unchanged, whatever wrote the change: capture, forget, a
    redaction rescan, a rebuild. Triggers rather than each writer remembering to count: a writer
    added later cannot forget. A file of an episode added or removed counts as well (the threads
    name their files); a commit's file costs one primary-key lookup."""
    bump = ("INSERT INTO state (key, value) VALUES ('sessions_gen', '1') ON CONFLICT(key) DO UPDATE"
            " SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT)")
    db.execute(f"CREATE TRIGGER sessions_gen_insert AFTER INSERT ON episodes WHEN NEW.kind = 'session'"
               f" BEGIN {bump}; END")
    db.execute(f"CREATE TRIGGER sessions_gen_update AFTER UPDATE ON episodes"
               f" WHEN OLD.kind = 'session' OR NEW.kind = 'session' BEGIN {bump}; END")
    db.execute(f"CREATE TRIGGER sessions_gen_delete AFTER DELETE ON episodes WHEN OLD.kind = 'session'"
               f" BEGIN {bump}; END")
    db.execute(f"CREATE TRIGGER sessions_gen_file_insert AFTER INSERT ON episode_files"
               f" WHEN (SELECT kind FROM episodes WHERE id = NEW.episode_id) = 'session' BEGIN {bump}; END")
    db.execute(f"CREATE TRIGGER sessions_gen_file_delete AFTER DELETE ON episode_files BEGIN {bump}; END")
    # A random start: a store made again at the same path (a rebuild) never repeats a generation
    # that a process may still hold a cache for.
    db.execute("INSERT OR REPLACE INTO state (key, value) VALUES ('sessions_gen',"
               " CAST(abs(random() % 1000000000000) AS TEXT))")



@migration
def m009_sessions_generation_columns(db: sqlite3.Connection) -> None:
    """m008's update trigger fires only for the columns a cache keyed on ``sessions_gen`` reads
    (kind, source, ts, title, data, valid_to): a salience rescore, a recall count or, later, decay
    touches every episode and would otherwise throw the open threads away each time."""
    bump = ("INSERT INTO state (key, value) VALUES ('sessions_gen', '1') ON CONFLICT(key) DO UPDATE"
            " SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT)")
    db.execute("DROP TRIGGER IF EXISTS sessions_gen_update")
    db.execute(f"CREATE TRIGGER sessions_gen_update AFTER UPDATE OF kind, source, ts, title, data, valid_to"
               f" ON episodes WHEN OLD.kind = 'session' OR NEW.kind = 'session' BEGIN {bump}; END")


@migration
def m010_memory_generation(db: sqlite3.Connection) -> None:
    """A counter in ``state`` (``memory_gen``) that every update or delete of an episode (in the
    columns a brief reads), an episode's file or an indexed file moves on.

    With the newest rowid of each of those tables (an insert always makes a new one: a rowid is only
    used again after the row holding the highest was deleted, and a delete moves the counter on) it
    says whether anything a repo brief is made of changed (``store.brief_cache``). Inserts fire no
    trigger: capture, which inserts by the thousand, pays nothing for it."""
    bump = ("INSERT INTO state (key, value) VALUES ('memory_gen', '1') ON CONFLICT(key) DO UPDATE"
            " SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT)")
    db.execute(f"CREATE TRIGGER memory_gen_update AFTER UPDATE OF kind, source, ts, author, author_email, title,"
               f" body, data, tier, valid_to ON episodes BEGIN {bump}; END")
    db.execute(f"CREATE TRIGGER memory_gen_delete AFTER DELETE ON episodes BEGIN {bump}; END")
    db.execute(f"CREATE TRIGGER memory_gen_file_update AFTER UPDATE ON episode_files BEGIN {bump}; END")
    db.execute(f"CREATE TRIGGER memory_gen_file_delete AFTER DELETE ON episode_files BEGIN {bump}; END")
    db.execute(f"CREATE TRIGGER memory_gen_code_update AFTER UPDATE ON code_files BEGIN {bump}; END")
    db.execute(f"CREATE TRIGGER memory_gen_code_delete AFTER DELETE ON code_files BEGIN {bump}; END")
    # A random start, as m008's: a store made again at the same path never repeats a generation.
    db.execute("INSERT OR REPLACE INTO state (key, value) VALUES ('memory_gen',"
               " CAST(abs(random() % 1000000000000) AS TEXT))")
