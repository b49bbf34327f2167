"""Assistant sessions → episodes: every finished turn of this repository's sessions, and each correction.

Transcripts are found where each assistant keeps them (Claude Code: ``claude.transcripts()``, which
honours ``CLAUDE_CONFIG_DIR``; Codex CLI: ``codex.transcripts()``, ``CODEX_HOME``; aider:
``.aider.chat.history.md`` at the root of the work tree and of every worktree). A transcript belongs
to this repository when the working directory its records name lies inside the repository's work
tree or one of its worktrees (subfolders included, symlinks resolved); transcripts of other
repositories are remembered only by a hash of their path, so they are not opened again.

Capture is incremental by file offset. Per transcript, ``state`` keeps (key
``sessions.offset:<tool>:<path>``) its size and mtime when last read and the offset to read on from:
the start of the last turn, which is still open (the assistant may add to it) until the session ends.
A file whose size and mtime did not change is not opened; a file that shrank (rotated, rewritten) is
read from 0. Episodes are idempotent by (kind, source), so reading a turn twice stores it once; a Claude Code
turn copied into another session (``--fork-session`` keeps the records' uuids) is stored once too,
under the session it was first captured from.

A finished turn becomes an episode of kind ``session`` (source ``<tool>:<session>:<turn>``): title the
prompt's first line, body the prompt, the assistant's last words and the commands that failed, files
the repository files it edited (status ``E``) and read (``V``) as repository paths, data the tool,
session, turn, branch, commands (command, failed, error, ts) and whether it was the session's last turn
(``open``). The last turn is written only when the session is over: ``final`` (SessionEnd,
PreCompact) or a transcript untouched for ``IDLE_FINAL`` seconds. Each correction the user made
("no, use X", "don't …", "always …") is also a note (data ``{"kind": "correction"}``, salience 1.0),
keyed like ``lmm remember`` keys notes, so the same correction said twice is stored once. Claude
Code's own memory files in the project folders of the transcripts accepted here become notes too
(``memory``).

Everything is redacted before it is written, as commits are: texts through ``redact``, and what the
user typed (prompts, corrections) through ``redact_note``, as notes are; paths matched by
``.lmmignore`` dropped, secret files kept by name. lmm's
own injected text never gets here: the readers drop hook attachments and everything after
``LMM_MARK``. A transcript that cannot be read (vanished, unreadable) is skipped and counted; it
never fails the capture.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...privacy.ignore import IgnoreRules
from ...privacy.redact import is_secret_file, redact, redact_cut, redact_note
from ...store.db import transaction
from ...store.episodes import Episode, EpisodeWriter, FileChange
from ...workspace import Workspace
from . import aider, claude, codex, memory
from .jsonl import complete_length
from .model import Session, Turn

__all__ = ["SessionsResult", "capture_sessions", "repo_roots", "STATE_PREFIX", "IDLE_FINAL", "tool_of"]

STATE_PREFIX = "sessions."
OURS = STATE_PREFIX + "offset:"   # + "<tool>:<real path>" → {"size", "mtime", "offset", "open", …}
OTHER = STATE_PREFIX + "other:"   # + "<tool>:<hash of the path>" → {"size", "mtime", "known", "roots"}
IDLE_FINAL = 3600.0  # a transcript untouched this long is a session that ended
MAX_PROMPT = 3000
MAX_ANSWER = 3000
MAX_COMMANDS = 40
_SURROGATE = re.compile("[\ud800-\udfff]")
CMD_CAP, ERR_CAP = 1000, 500  # where the readers cut a command and its error output
_RECORD_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.IGNORECASE)


@dataclass
class SessionsResult:
    files: int = 0        # transcripts of this repository
    read: int = 0         # of them, opened this time (new or changed)
    sessions: int = 0     # sessions that gave new turns
    turns: int = 0        # new turn episodes
    corrections: int = 0  # new correction notes
    memory: int = 0       # new notes from Claude Code's own memory files (``memory``)
    memory_files: int = 0  # of those files, read this time (new or changed)
    memory_retired: int = 0  # notes from those files superseded: their entry was deleted there
    skipped: int = 0      # transcripts that could not be read
    other: int = 0        # transcripts of other repositories, left alone
    pending: int = 0      # open turns left to the next capture (their session may go on)
    seconds: float = 0.0
    tools: dict[str, int] = field(default_factory=dict)  # new turns by assistant

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items()}
        out["seconds"] = round(self.seconds, 3)
        return out


@dataclass
class _Transcript:
    tool: str  # claude | codex | aider
    path: Path
    parent: str | None = None  # a Claude Code subagent's main session ("?" when unknown)


def tool_of(path: Path) -> str:
    """Which assistant wrote the transcript at ``path`` (by its name and place)."""
    if path.name == aider.HISTORY:
        return "aider"
    if path.name.startswith("rollout-"):
        return "codex"
    return "claude"


def _subagent_parent(path: Path) -> str | None:
    if path.parent.name == "subagents":
        return path.parent.parent.name
    if path.name.startswith("agent-"):
        return "?"
    return None


def repo_roots(ws: Workspace) -> list[str]:
    """The real paths of the repository's work tree and of all its worktrees, longest first (a
    worktree inside the main work tree is matched before it)."""
    roots = {os.path.realpath(ws.repo.root)}
    try:
        out = ws.repo.git("worktree", "list", "--porcelain", check=False)
    except Exception:  # noqa: BLE001 - without the list, the main work tree still counts
        out = b""
    for line in out.decode("utf-8", "surrogateescape").splitlines():
        if line.startswith("worktree "):
            roots.add(os.path.realpath(line[len("worktree "):]))
    return sorted(roots, key=lambda r: (-len(r), r))


def _inside(real: str, roots: Sequence[str]) -> str | None:
    """The root ``real`` (a real path) lies in, or None."""
    for r in roots:
        if real == r or real.startswith(r.rstrip(os.sep) + os.sep):
            return r
    return None


def _discover(roots: Sequence[str]) -> list[_Transcript]:
    found: list[_Transcript] = []
    try:
        found += [_Transcript("claude", p, parent) for p, parent in claude.transcripts()]
    except OSError:
        pass
    try:
        found += [_Transcript("codex", p) for p in codex.transcripts()]
    except OSError:
        pass
    for r in roots:
        p = Path(r) / aider.HISTORY
        if p.is_file():
            found.append(_Transcript("aider", p))
    return found


def _given(paths: Iterable[str | Path]) -> list[_Transcript]:
    out: list[_Transcript] = []
    for raw in paths:
        p = Path(raw).expanduser()
        tool = tool_of(p)
        out.append(_Transcript(tool, p, _subagent_parent(p) if tool == "claude" else None))
        if tool == "claude" and out[-1].parent is None:  # a main session: its subagents end with it
            sub = p.with_suffix("") / "subagents"
            try:
                out += [_Transcript("claude", s, p.stem) for s in sorted(sub.glob("*.jsonl"))]
            except OSError:
                pass
    return out


def _load_state(db: sqlite3.Connection) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for key, value in db.execute("SELECT key, value FROM state WHERE key >= ? AND key < ?",
                                 (STATE_PREFIX, STATE_PREFIX[:-1] + "/")):
        try:
            rec = json.loads(value)
        except (TypeError, ValueError):
            continue
        if isinstance(rec, dict):
            out[key] = rec
    return out


def _set_state(db: sqlite3.Connection, key: str, rec: dict[str, Any]) -> None:
    db.execute("INSERT INTO state (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
               (key, json.dumps(rec, sort_keys=True)))


def _first_cwd(t: _Transcript) -> str | None:
    if t.tool == "claude":
        return claude.first_cwd(t.path)
    if t.tool == "codex":
        return codex.first_cwd(t.path)
    return str(t.path.parent)  # aider: the history lives at the root of the work tree


def _cut(text: str, n: int) -> str:
    return text if len(text) <= n else text[:n].rstrip() + " …"


def _capped(text: str, cap: int) -> str:
    """Redact what a reader may have cut at ``cap`` characters: half a token is still a secret."""
    return redact_cut(text) if len(text) >= cap else redact(text)


class _Writer:
    """Turns the sessions read from one transcript into episodes (redacted)."""

    def __init__(self, ws: Workspace, roots: Sequence[str], ignore: IgnoreRules) -> None:
        self.ws = ws
        self.roots = roots
        self.ignore = ignore
        self._tracked: list[str] | None = None
        self._records: dict[str, set[str]] = {}  # tool → record ids of the turns stored (see ``copied``)
        # rel's answers: a session names the same few files again and again, and each answer asks
        # the file system about every folder on the way (realpath). One capture is seconds long.
        self._rel: dict[tuple[str, str | None], str | None] = {}
        self._clean: dict[str, tuple[str, bool]] = {}  # path → (redacted, a secret file's name)

    def copied(self, db: sqlite3.Connection, tool: str, turn_id: str) -> bool:
        """Whether the turn whose prompt has the record id ``turn_id`` is already stored, under any
        session. Claude Code keeps a record's uuid when it copies records into another session
        (``--fork-session``, a branched conversation): the copy is the same turn, and is not stored
        twice. Only record ids (uuids) count; ids made from a file offset are not unique."""
        if not _RECORD_ID.match(turn_id):
            return False
        ids = self._records.get(tool)
        if ids is None:
            prefix = tool + ":"
            ids = self._records[tool] = {
                src.rsplit(":", 1)[-1] for (src,) in db.execute(
                    "SELECT source FROM episodes WHERE kind = 'session' AND source >= ? AND source < ?",
                    (prefix, tool + ";"))}
        return turn_id in ids

    def stored(self, tool: str, turn_id: str) -> None:
        ids = self._records.get(tool)
        if ids is not None:
            ids.add(turn_id)

    def rel(self, path: str, base: str | None) -> str | None:
        """``path`` (absolute, or relative to ``base``) as a path of the repository; None outside it."""
        key = (path, None if os.path.isabs(path) else base)
        try:
            return self._rel[key]
        except KeyError:
            out = self._rel[key] = self._rel_of(path, base)
            return out

    def _rel_of(self, path: str, base: str | None) -> str | None:
        if not path or "\0" in path:
            return None
        if not os.path.isabs(path):
            if not base:
                return None
            path = os.path.join(base, path)
        real = os.path.realpath(path)
        root = _inside(real, self.roots)
        if root is None or real == root:
            return None
        rel = real[len(root.rstrip(os.sep)) + 1:].replace(os.sep, "/")
        if rel == ".git" or rel.startswith(".git/") or (self.ignore and self.ignore.ignored(rel)):
            return None
        return rel

    def files(self, turn: Turn, base: str | None) -> list[FileChange]:
        out: dict[str, FileChange] = {}
        for status, paths in (("E", turn.edited), ("V", turn.read)):
            for p in paths:
                rel = self.rel(p, base)
                if rel is None or rel in out:
                    continue
                clean = self._clean.get(rel)
                if clean is None:
                    clean = self._clean[rel] = (redact(rel), is_secret_file(rel))
                out[rel] = FileChange(path=clean[0], status=status, added=None, deleted=None, secret=clean[1])
        return list(out.values())

    def named(self, text: str) -> list[str]:
        """Files of the repository a correction names (as ``lmm remember`` links them)."""
        from ..notes import _named_files

        try:
            return [redact(p) for p in _named_files(self.ws, text)]
        except Exception:  # noqa: BLE001 - a note without links is still a note
            return []

    def turn_episode(self, t: Turn, s: Session, session_id: str, base: str | None, *,
                     subagent: str | None) -> Episode | None:
        # The user's words are redacted as notes are (a person writing next to "password" is likely
        # writing one down): a correction stored as a note must not survive in its turn either.
        prompt, answer = redact_note(t.prompt).strip(), redact(t.answer).strip()
        commands = [{"command": _capped(c.command, CMD_CAP), "failed": bool(c.failed),
                     "error": _capped(c.error, ERR_CAP) if c.failed else "", "ts": c.ts or t.ts}
                    for c in t.commands[:MAX_COMMANDS]]
        files = self.files(t, base)
        if not (prompt or answer or files or commands):
            return None
        head = next((ln.strip() for ln in prompt.splitlines() if ln.strip()), "")
        if not head:
            first = next((ln.strip() for ln in answer.splitlines() if ln.strip()), "")
            head = f"(continued) {first}" if first else "(continued)"
        body = [_cut(prompt, MAX_PROMPT)] if prompt else []
        if answer:
            body.append("Answer: " + _cut(answer, MAX_ANSWER))
        failed = [c for c in commands if c["failed"]]
        for c in failed[:5]:
            err = next((ln.strip() for ln in str(c["error"]).splitlines() if ln.strip()), "")
            body.append(f"Failed: `{_cut(str(c['command']), 200)}`" + (f": {_cut(err, 200)}" if err else ""))
        salience = 0.5
        if failed:
            salience = 0.7
        if t.corrections:
            salience = 0.9
        if not t.by_user:
            salience = min(salience, 0.3)
        data: dict[str, Any] = {
            "tool": s.tool, "session": session_id, "turn": t.id, "branch": redact(s.branch) if s.branch else None,
            "commands": commands, "open": bool(t.open), "answered": bool(answer), "by_user": t.by_user,
        }
        if subagent:
            data["subagent"] = subagent
        return Episode(kind="session", source=f"{s.tool}:{session_id}:{t.id}", ts=t.ts or s.started or time.time(),
                       title=head[:200], body="\n\n".join(body), data=data, files=files,
                       salience=salience, provenance={"capture": "session", "tool": s.tool})

    def correction_notes(self, t: Turn, session_id: str, tool: str, ts: float) -> list[Episode]:
        out = []
        for c in t.corrections:
            clean = redact_note(c).strip()
            if not clean:
                continue
            title, _, body = clean.partition("\n")
            named = self.named(clean)
            out.append(Episode(
                kind="note", source="note:" + hashlib.sha256(clean.encode()).hexdigest()[:16], ts=ts,
                title=title.strip()[:200], body=body.strip(),
                files=[FileChange(path=p, status="N", added=None, deleted=None) for p in named],
                data={"kind": "correction", "session": session_id, "tool": tool}, salience=1.0,
                provenance={"capture": "session", "files": named, "tool": tool}))
        return out


def _read(t: _Transcript, offset: int) -> list[Session]:
    if t.tool == "claude":
        return [claude.read(t.path, offset, sidechain=t.parent is not None)]
    if t.tool == "codex":
        return [codex.read(t.path, offset)]
    return aider.read(t.path, offset)


def _utf8(text: str) -> str:
    """``text`` as SQLite can store it: a lone surrogate (JSON's ``"\\udcff"``) becomes U+FFFD."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text)


def _sanitise(sessions: list[Session]) -> None:
    for s in sessions:
        s.id, s.title = _utf8(s.id), _utf8(s.title)
        s.cwd = _utf8(s.cwd) if s.cwd else s.cwd
        s.branch = _utf8(s.branch) if s.branch else s.branch
        for t in s.turns:
            t.id, t.prompt, t.answer = _utf8(t.id), _utf8(t.prompt), _utf8(t.answer)
            t.edited = [_utf8(p) for p in t.edited]
            t.read = [_utf8(p) for p in t.read]
            t.corrections = [_utf8(c) for c in t.corrections]
            for c in t.commands:
                c.command, c.error = _utf8(c.command), _utf8(c.error)


def capture_sessions(ws: Workspace, db: sqlite3.Connection, *, transcripts: Iterable[str | Path] | None = None,
                     final: bool = False, now: float | None = None) -> SessionsResult:
    """Capture this repository's assistant sessions: every transcript found (or ``transcripts``),
    from where the last capture stopped. ``final``: the sessions read are over, so their last turns
    are written too. The caller holds the capture lock."""
    t0 = time.monotonic()
    now = time.time() if now is None else now
    res = SessionsResult()
    roots = repo_roots(ws)
    fingerprint = hashlib.sha256("\0".join(roots).encode("utf-8", "surrogateescape")).hexdigest()[:12]
    found = _given(transcripts) if transcripts is not None else _discover(roots)
    state = _load_state(db)
    writer = _Writer(ws, roots, IgnoreRules.load(ws.repo.root))
    sessions_seen: set[str] = set()
    done: set[str] = set()
    projects: dict[str, Path] = {}  # Claude Code project folders of this repository (their memory is read)
    for t in found:
        real = os.path.realpath(t.path)
        if real in done:
            continue
        done.add(real)
        try:
            st = os.stat(real)
        except OSError:
            if transcripts is not None:
                res.skipped += 1  # named by the caller, and gone
            continue
        size, mtime = st.st_size, st.st_mtime
        ours_key = f"{OURS}{t.tool}:{real}"
        other_key = f"{OTHER}{t.tool}:{hashlib.sha256(real.encode('utf-8', 'surrogateescape')).hexdigest()[:20]}"
        rec = state.get(ours_key)
        if rec is None:
            other = state.get(other_key)
            if other and other.get("roots") == fingerprint and (
                    other.get("known") or (other.get("size") == size and other.get("mtime") == mtime)):
                res.other += 1
                continue
            try:
                cwd = _first_cwd(t)
            except OSError:
                res.skipped += 1
                with transaction(db):  # not tried again until it changes
                    _set_state(db, other_key, {"size": size, "mtime": mtime, "known": False, "roots": fingerprint})
                continue
            root = _inside(os.path.realpath(cwd), roots) if cwd and os.path.isabs(cwd) else None
            if root is None:
                res.other += 1
                with transaction(db):
                    _set_state(db, other_key, {"size": size, "mtime": mtime, "known": cwd is not None,
                                               "roots": fingerprint})
                continue
            rec = {"size": -1, "mtime": 0.0, "offset": 0, "open": False}
        res.files += 1
        if t.tool == "claude":
            folder = memory.project_folder(t.path)
            if folder is not None:
                projects.setdefault(os.path.realpath(folder), folder)
        fin = final or now - mtime >= IDLE_FINAL
        if rec.get("size") == size and rec.get("mtime") == mtime and not (rec.get("open") and fin):
            continue  # unchanged, and nothing waits on the session's end
        offset = int(rec.get("offset") or 0)
        if size < int(rec.get("size") or 0) or offset > size:
            offset = 0  # shrank: rotated or rewritten
        try:
            end = complete_length(Path(real))
            sessions = _read(t, offset)
            _sanitise(sessions)
        except (OSError, ValueError, UnicodeError, RecursionError, MemoryError):
            res.skipped += 1
            with transaction(db):  # not tried again until it changes
                _set_state(db, ours_key, {**rec, "size": size, "mtime": mtime, "bad": True})
            continue
        res.read += 1
        _write(db, writer, t, sessions, rec, key=ours_key, size=size, mtime=mtime, offset=offset, end=end, fin=fin,
               res=res, seen=sessions_seen)
    res.sessions = len(sessions_seen)
    mem = memory.capture_memory(db, projects.values(), named=writer.named)
    res.memory_files, res.memory, res.memory_retired = mem.read, mem.new, mem.retired
    res.seconds = time.monotonic() - t0
    return res


def _write(db: sqlite3.Connection, writer: _Writer, t: _Transcript, sessions: list[Session], rec: dict[str, Any],
           *, key: str, size: int, mtime: float, offset: int, end: int, fin: bool, res: SessionsResult,
           seen: set[str]) -> None:
    """Write the finished turns of ``sessions`` and the transcript's next state (``key``), in one
    transaction: the offset moves on only with the turns it moves past."""
    new = {k: v for k, v in rec.items() if k != "bad"}
    new.update(size=size, mtime=mtime, offset=max(end, offset), open=False)
    w = EpisodeWriter(db)
    with transaction(db):
        for s in sessions:
            if t.tool != "aider" and offset > 0:  # read from the middle: what the start said is in the state
                if t.tool == "codex" and rec.get("session"):
                    s.id = str(rec["session"])
                s.cwd = s.cwd or rec.get("cwd")
                s.branch = s.branch or rec.get("branch")
            if t.tool != "aider":  # kept redacted, as everything else (a cwd that needed it is not kept)
                new.update(session=redact(s.id), cwd=s.cwd if s.cwd and redact(s.cwd) == s.cwd else None,
                           branch=redact(s.branch) if s.branch else None)
            base = (os.path.realpath(s.cwd) if s.cwd else None) if t.tool != "aider" else str(t.path.parent)
            subagent = None
            session_id = s.id
            if t.parent is not None:  # a subagent's turns belong to its main session
                subagent = t.path.stem
                session_id = t.parent if t.parent != "?" else s.id
            for turn in s.turns:
                if turn.open and not fin:
                    new["open"] = True
                    res.pending += 1
                    # Read on from the open turn (aider: from its session's start, the reader's unit).
                    new["offset"] = s.offset if t.tool == "aider" else turn.offset
                    break
                if s.tool == "claude" and writer.copied(db, s.tool, turn.id):
                    continue  # a copy of a turn stored from another session (a fork), or stored already
                ep = writer.turn_episode(turn, s, session_id, base, subagent=subagent)
                if ep is not None and w.add(ep) is not None:
                    res.turns += 1
                    res.tools[s.tool] = res.tools.get(s.tool, 0) + 1
                    seen.add(f"{s.tool}:{session_id}")
                    writer.stored(s.tool, turn.id)
                for note in writer.correction_notes(turn, session_id, s.tool, ep.ts if ep else (turn.ts or s.started)):
                    if w.add(note) is not None:
                        res.corrections += 1
        if t.tool == "aider" and sessions and not new["open"]:
            # aider appends a session's later turns under its header: keep reading from its start.
            new["offset"] = sessions[-1].offset
        w.flush()
        _set_state(db, key, new)
