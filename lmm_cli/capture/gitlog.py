"""Stream commits out of ``git log -p`` and parse them into redacted, size-capped records.

One ``git log --no-walk=unsorted --stdin`` process serves a whole backfill: the shas to capture go in
on stdin (oldest first) and commits come out as they are parsed, so memory stays flat however long
the history. Per file we keep the change stats (counted over the whole diff), the status and rename,
and the hunk text up to the configured caps, redacted before it is cut. Binary files are noted, not
stored; secret files keep their name and stats only; paths matched by ``.lmmignore`` are dropped.

Left out on purpose: merge diffs (a merge's changes are already in the commits it joins) and
word-level diffs.
"""

from __future__ import annotations

import os
import queue
import re
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..config import CaptureConfig
from ..privacy.ignore import IgnoreRules
from ..privacy.redact import is_secret_file, redact, trim_cut
from ..repo import GitError, popen_git, run_git
from ..store.episodes import FileChange

__all__ = ["RawCommit", "iter_commits", "read_commits", "write_attributes", "symbol_of", "MissingObjects",
           "Unavailable", "is_partial_clone"]

_PUMP_CHUNKS = 64  # up to 64 MiB of git output buffered ahead of the parser
_MARK = b"\x1e\x1eLMM "
_END = b"\x00\x1f"
_FORMAT = "%x1e%x1eLMM %H%x00%P%x00%an%x00%ae%x00%at%x00%cn%x00%ce%x00%ct%x00%B%x00%x1f"

# Git's built-in funcname drivers make hunk headers name the enclosing function (methods included),
# which the default heuristic ("a line starting with a letter") does not. Unknown names fall back.
_DRIVERS = {
    "python": "*.py *.pyi",
    "golang": "*.go",
    "rust": "*.rs",
    "java": "*.java",
    "kotlin": "*.kt *.kts",
    "csharp": "*.cs",
    "cpp": "*.c *.h *.cc *.cpp *.cxx *.hh *.hpp *.hxx *.m *.mm",
    "ruby": "*.rb",
    "php": "*.php",
    "bash": "*.sh *.bash",
    "css": "*.css *.scss",
    "html": "*.html *.htm",
    "elixir": "*.ex *.exs",
    "perl": "*.pl *.pm",
}
CODE_EXTENSIONS = frozenset(
    ".py .pyi .go .rs .java .kt .kts .cs .c .h .cc .cpp .cxx .hh .hpp .hxx .m .mm .rb .php .sh .bash "
    ".js .jsx .mjs .cjs .ts .tsx .swift .scala .ex .exs .pl .pm .lua .dart .vue .svelte .zig".split()
)
_KEYWORD_SYMBOL = re.compile(
    r"\b(?:def|class|func|fn|function|struct|enum|trait|interface|type|impl|module|mod|namespace|object)"
    r"\s+(?:\([^)]*\)\s*)?(?:<[^>]*>\s*)?([A-Za-z_$][\w$]*)"
)
_CALL_SYMBOL = re.compile(r"([A-Za-z_$~][\w$]*(?:::[A-Za-z_~][\w]*)*)\s*\(")
_NOT_SYMBOLS = frozenset("if for while switch return catch sizeof elif with new await typeof".split())


@dataclass
class RawCommit:
    sha: str
    parents: list[str]
    author: str
    author_email: str
    author_time: int
    committer: str
    committer_email: str
    commit_time: int
    message: str
    files: list[FileChange] = field(default_factory=list)
    symbols: list[tuple[str, str, str]] = field(default_factory=list)


def symbol_of(context: str) -> str | None:
    """The name a hunk header's context line defines: ``def refresh(self):`` → ``refresh``."""
    m = _KEYWORD_SYMBOL.search(context)
    if m:
        return m.group(1)
    for m in _CALL_SYMBOL.finditer(context):
        name = m.group(1).split("::")[-1]
        if name not in _NOT_SYMBOLS:
            return name
    return None


def _unquote(raw: bytes) -> str:
    """A path as git printed it: C-quoted ("a\\303\\251.txt") when it holds odd characters."""
    raw = raw.rstrip(b"\n")
    if len(raw) >= 2 and raw[:1] == b'"' and raw[-1:] == b'"':
        out = bytearray()
        body, i = raw[1:-1], 0
        simple = {ord("n"): 10, ord("t"): 9, ord("r"): 13, ord("a"): 7, ord("b"): 8, ord("f"): 12, ord("v"): 11}
        while i < len(body):
            c = body[i]
            if c == 0x5C and i + 1 < len(body):  # backslash
                n = body[i + 1]
                if 0x30 <= n <= 0x37 and i + 4 <= len(body):
                    out.append(int(body[i + 1:i + 4], 8) & 0xFF)
                    i += 4
                    continue
                out.append(simple.get(n, n))
                i += 2
                continue
            out.append(c)
            i += 1
        raw = bytes(out)
    return raw.decode("utf-8", "backslashreplace")


def _strip_prefix(path: str, prefix: str) -> str:
    return path[len(prefix):] if path.startswith(prefix) else path


def _header_paths(line: bytes) -> tuple[str, str]:
    """Paths from ``diff --git a/X b/Y``; only used when no ---/+++/rename line names them."""
    rest = line[len(b"diff --git "):].rstrip(b"\n")
    if rest.startswith(b'"'):
        end = rest.index(b'"', 1)
        while rest[end - 1:end] == b"\\":
            end = rest.index(b'"', end + 1)
        a, b = rest[:end + 1], rest[end + 2:]
        return _strip_prefix(_unquote(a), "a/"), _strip_prefix(_unquote(b), "b/")
    # Same path on both sides (no rename): "a/" + P + " b/" + P, so len = 5 + 2 * len(P).
    n = (len(rest) - 5) // 2
    same = _unquote(rest[2:2 + n])
    return same, same


_CONTEXT = re.compile(rb"^@@ -[0-9,]+ \+[0-9,]+ @@ ?(.*)$", re.M)
# git prints at most 80 bytes of a hunk header's function line, cutting through whatever is there
# (``def connect(token="ghp_8fK``): a context this long is treated as cut, its unfinished tail dropped.
_FUNCLINE_CUT = 76
_HEADER_LINE = re.compile(r"(\n@@ -[0-9,]+ \+[0-9,]+ @@ ?)([^\n]{19,})")


def _trim_header(m: re.Match[str]) -> str:
    ctx = m.group(2)
    return m.group(0) if len(ctx.encode("utf-8")) < _FUNCLINE_CUT else m.group(1) + trim_cut(ctx)


class _File:
    __slots__ = ("old", "new", "status", "binary", "added", "deleted", "text", "more", "contexts", "unavailable")

    def __init__(self, old: str, new: str) -> None:
        self.old, self.new, self.status = old, new, "M"
        self.binary = False
        self.unavailable = False  # its content is not in this repository (a partial clone, a lost blob)
        self.added = self.deleted = 0
        self.text = b""  # the start of the hunks, raw
        self.more = False  # the hunks went on past what we kept
        self.contexts: list[str] = []


class _Parser:
    """Parses whole commit records with bytes operations (split, count, find), not line by line:
    a backfill pushes every line of history through here, and per-line Python was the bottleneck.

    Within a file's hunks every line starts with ' ', '+', '-' or '\\', so "\n+" counts added
    lines, "\n-" deleted ones, and "\ndiff --git " can only be the start of the next file."""

    def __init__(self, cfg: CaptureConfig, ignore: IgnoreRules) -> None:
        self.cfg = cfg
        self.ignore = ignore
        self.keep = 2 * cfg.max_file_diff_bytes  # raw slack: redaction may shrink the text
        n = cfg.max_line_chars
        self._long = re.compile(rf"[^\n]{{{n + 1},}}")
        # Cut a long line, then drop the partial token at the cut so no fragment of a secret survives.
        self._cut = lambda m: trim_cut(m.group(0)[:n]) + " [cut]"

    def _file(self, chunk: bytes) -> _File:
        nl = chunk.find(b"\n")
        first = chunk if nl < 0 else chunk[:nl]
        f = _File(*_header_paths(b"diff --git " + first))
        if nl < 0:
            return f
        hunk_at = chunk.find(b"\n@@ ", nl)
        head = chunk[nl + 1:] if hunk_at < 0 else chunk[nl + 1:hunk_at]
        for line in head.split(b"\n"):
            if line.startswith(b"--- "):
                if line[4:] != b"/dev/null":
                    f.old = _strip_prefix(_unquote(line[4:]), "a/")
            elif line.startswith(b"+++ "):
                if line[4:] != b"/dev/null":
                    f.new = _strip_prefix(_unquote(line[4:]), "b/")
            elif line.startswith(b"new file mode"):
                f.status = "A"
            elif line.startswith(b"deleted file mode"):
                f.status = "D"
            elif line.startswith(b"rename from "):
                f.status, f.old = "R", _unquote(line[12:])
            elif line.startswith(b"rename to "):
                f.new = _unquote(line[10:])
            elif line.startswith(b"copy from "):
                f.status, f.old = "C", _unquote(line[10:])
            elif line.startswith(b"copy to "):
                f.new = _unquote(line[8:])
            elif line.startswith(b"Binary files ") or line.startswith(b"GIT binary patch"):
                f.binary = True
        if hunk_at >= 0:
            body = chunk[hunk_at:]  # "\n@@ …": every line, the first included, follows a newline
            f.added = body.count(b"\n+")
            f.deleted = body.count(b"\n-")
            seen: dict[str, None] = {}
            for ctx in _CONTEXT.findall(body):
                if ctx.strip():
                    line = ctx.decode("utf-8", "replace")
                    seen[(trim_cut(line) if len(ctx) >= _FUNCLINE_CUT else line).strip()] = None
            f.contexts = list(seen)
            if len(body) - 1 > self.keep:
                cut = body.rfind(b"\n", 1, self.keep + 1)
                f.text, f.more = body[1:cut if cut > 0 else self.keep + 1], True
            else:
                f.text = body[1:].rstrip(b"\n")
        return f

    def finish_commit(self, c: RawCommit, files: list[_File]) -> None:
        budget = self.cfg.max_commit_diff_bytes
        for f in files:
            path = f.new if f.status != "D" else f.old
            old = f.old if f.status in ("R", "C") else None
            if self.ignore and (self.ignore.ignored(path) or (old is not None and self.ignore.ignored(old))):
                continue
            secret = is_secret_file(path) or (old is not None and is_secret_file(old))
            hunks: str | None = None
            truncated = f.more
            if not secret and not f.binary and f.text and budget > 0:
                text = f.text.decode("utf-8", "replace")
                if len(text) > self.cfg.max_line_chars:
                    text = self._long.sub(self._cut, text)
                if _HEADER_LINE.search(text):  # a hunk header whose function line git may have cut
                    text = _HEADER_LINE.sub(_trim_header, "\n" + text)[1:]
                text = redact(text)
                cap = min(self.cfg.max_file_diff_bytes, budget)
                data = text.encode("utf-8")
                if len(data) > cap:
                    cut = data.rfind(b"\n", 0, cap + 1)
                    text = data[: max(cut, 0)].decode("utf-8", "ignore")
                    truncated = True
                hunks = text or None
                budget -= len(text.encode("utf-8")) if len(data) > cap else len(data)
            elif not secret and f.text:
                truncated = True  # over the commit's budget: stats only
            if f.unavailable:
                truncated = True  # no content here: no stats, no hunks
            c.files.append(FileChange(
                path=redact(path), old_path=redact(old) if old else None, status=f.status,
                added=None if f.binary or f.unavailable else f.added,
                deleted=None if f.binary or f.unavailable else f.deleted,
                binary=f.binary, secret=secret, hunks=hunks, truncated=truncated,
            ))
            if not secret and os.path.splitext(path)[1].lower() in CODE_EXTENSIONS:
                for ctx in f.contexts:
                    ctx = redact(ctx)
                    name = symbol_of(ctx)
                    if name:
                        c.symbols.append((redact(path), name, ctx[:200]))

    def record(self, rec: bytes) -> RawCommit:
        end = rec.find(_END)
        parts = rec[len(_MARK):end].split(b"\x00")
        sha, parents, an, ae, at, cn, ce, ct, msg = parts[:9]
        def d(b: bytes) -> str:
            return b.decode("utf-8", "replace")

        c = RawCommit(
            sha=d(sha), parents=d(parents).split(), author=d(an), author_email=d(ae),
            author_time=int(at or 0), committer=d(cn), committer_email=d(ce), commit_time=int(ct or 0),
            message=d(msg),
        )
        chunks = rec[end + len(_END):].split(b"\ndiff --git ")
        self.finish_commit(c, [self._file(ch) for ch in chunks[1:]])
        return c

    def parse(self, chunks: Iterable[bytes], complete: Callable[[], bool] | None = None) -> Iterator[RawCommit]:
        """Commit records, split on the marker that starts each one. A record is held whole in
        memory while it is parsed (a commit with a huge diff costs that much memory, briefly).
        ``complete()``, asked once the stream ends, says whether the last record is whole (git may
        have died half way through its diff)."""
        buf = bytearray()
        for data in chunks:
            scan_from = max(1, len(buf) - len(_MARK))
            buf += data
            pos = 0
            while (nxt := buf.find(_MARK, max(pos + 1, scan_from))) >= 0:
                if buf.startswith(_MARK, pos):
                    yield self.record(bytes(buf[pos:nxt]))
                pos = nxt
            if pos:
                del buf[:pos]
        if buf.startswith(_MARK) and (complete is None or complete()):
            yield self.record(bytes(buf))


def write_attributes(dest: Path) -> Path:
    """A gitattributes file that turns on git's funcname drivers, followed by the user's own global
    attributes (later lines win, so theirs still apply). Passed as ``core.attributesFile``."""
    lines = [f"{pat} diff={drv}" for drv, pats in _DRIVERS.items() for pat in pats.split()]
    user = run_git(dest.parent, "config", "--global", "--path", "core.attributesFile",
                   check=False).decode().strip()
    if not user:
        xdg = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
        user = os.path.join(xdg, "git", "attributes")
    try:
        lines.append(Path(user).read_text(encoding="utf-8", errors="replace"))
    except OSError:
        pass
    text = "\n".join(lines) + "\n"
    try:
        if dest.read_text(encoding="utf-8") == text:
            return dest
    except OSError:
        pass
    tmp = dest.with_name(dest.name + f".{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, dest)
    return dest


class MissingObjects(GitError):
    """git could not read an object a diff needs (a partial clone's blob it may not fetch, a lost
    blob): ``object`` is the one it named."""

    def __init__(self, msg: str, obj: str) -> None:
        super().__init__(msg)
        self.object = obj


_MISSING = re.compile(r"(?:unable to read|could not fetch|bad object|missing blob object|"
                      r"not a valid object name)\s+'?([0-9a-f]{40,64})")


def iter_commits(
    root: Path, shas: list[str], cfg: CaptureConfig, ignore: IgnoreRules, attributes: Path,
    paths: list[str] | None = None,
) -> Iterator[RawCommit]:
    """Parse the given commits, in the order given. Commits git cannot find are skipped. ``paths``:
    only the changes to these files. Raises ``MissingObjects`` (after the commits parsed whole)
    when git dies on an object it cannot read."""
    if not shas:
        return
    cmd = [
        "-c", "core.quotepath=off", "-c", f"core.attributesFile={attributes}",
        "-c", "diff.external=", "-c", "log.showSignature=false",
        "log", "--no-walk=unsorted", "--stdin", "--ignore-missing", "-p", "-M", "--no-color",
        "--no-ext-diff", "--no-textconv", "--src-prefix=a/", "--dst-prefix=b/", "--encoding=UTF-8",
        "--diff-merges=off", "--submodule=short", f"--format={_FORMAT}",
    ]
    if paths:
        cmd += ["--", *(f":(literal){p}" for p in paths)]
    errfile = tempfile.TemporaryFile()
    proc = popen_git(root, *cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errfile, bufsize=0)
    assert proc.stdin and proc.stdout
    stdin, stdout = proc.stdin, proc.stdout

    def feed() -> None:  # a thread, so a long sha list cannot deadlock against git's output
        try:
            stdin.write(("\n".join(shas) + "\n").encode())
            stdin.close()
        except (BrokenPipeError, ValueError):
            pass

    # git and the parser run side by side: a pump thread keeps git's pipe drained while the parser
    # works, instead of git stalling whenever the 64 KiB pipe is full (that serialised the two).
    chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=_PUMP_CHUNKS)
    stop = threading.Event()

    def pump() -> None:
        fd = stdout.fileno()
        try:
            while not stop.is_set():
                data = os.read(fd, 1 << 20)
                if not data:
                    break
                while not stop.is_set():
                    try:
                        chunks.put(data, timeout=0.1)
                        break
                    except queue.Full:
                        continue
        except OSError:
            pass
        finally:
            while True:
                try:
                    chunks.put(None, timeout=0.1)
                    break
                except queue.Full:
                    if stop.is_set():
                        break

    def drain_chunks() -> Iterator[bytes]:
        while (data := chunks.get()) is not None:
            yield data

    feeder = threading.Thread(target=feed, daemon=True)
    pumper = threading.Thread(target=pump, daemon=True)
    feeder.start()
    pumper.start()
    try:
        yield from _Parser(cfg, ignore).parse(drain_chunks(), complete=lambda: proc.wait() == 0)
    finally:
        stop.set()
        if proc.poll() is None:
            proc.kill()  # the consumer stopped early (interrupt): don't leave git writing to no one
        proc.wait()
        pumper.join(timeout=5)
        feeder.join(timeout=5)
        stdout.close()
        errfile.seek(0)
        err = errfile.read()
        errfile.close()
    if proc.returncode not in (0, -9):
        text = err.decode("utf-8", "replace")
        msg = text.strip().splitlines()
        line = f"git log failed: {msg[-1] if msg else 'exit ' + str(proc.returncode)}"
        missing = _MISSING.search(text)
        if missing:
            raise MissingObjects(line, missing.group(1))
        raise GitError(line)


# --------------------------------------------------------------------------- missing objects


def is_partial_clone(root: Path, common_dir: Path) -> bool:
    """A partial clone (``git clone --filter=…``): git would fetch what it lacks from a remote."""
    try:
        if any(n.endswith(".promisor") for n in os.listdir(common_dir / "objects" / "pack")):
            return True
    except OSError:
        pass
    out = run_git(root, "config", "--get-regexp", r"^(extensions\.partialclone|remote\..*\.promisor)$", check=False)
    return any(line.split()[-1:] != [b"false"] for line in out.splitlines())


_ZERO = re.compile(r"^0+$")


@dataclass
class _RawFile:
    status: str
    path: str
    blobs: list[str]  # the blobs its diff reads


def _scan(root: Path, shas: list[str]) -> tuple[dict[str, tuple[RawCommit, list[_RawFile]]], set[str]]:
    """For ``shas``: each commit's metadata and changed files with their blob ids (``git log --raw``:
    trees only, no blob is read), and the objects among them this repository does not have
    (``git rev-list --missing=print``, which never fetches)."""
    cmd = ["-c", "core.quotepath=off", "log", "--no-walk=unsorted", "--stdin", "--ignore-missing", "--raw",
           "--no-renames", "--no-abbrev", "-z", "--encoding=UTF-8", "--diff-merges=off", f"--format={_FORMAT}"]
    out = run_git(root, *cmd, input=("\n".join(shas) + "\n").encode())
    commits: dict[str, tuple[RawCommit, list[_RawFile]]] = {}
    for rec in out.split(_MARK)[1:]:
        end = rec.find(_END)
        sha, parents, an, ae, at, cn, ce, ct, msg = rec[:end].split(b"\x00")[:9]

        def d(b: bytes) -> str:
            return b.decode("utf-8", "replace")

        c = RawCommit(sha=d(sha), parents=d(parents).split(), author=d(an), author_email=d(ae),
                      author_time=int(at or 0), committer=d(cn), committer_email=d(ce),
                      commit_time=int(ct or 0), message=d(msg))
        toks = rec[end + len(_END):].lstrip(b"\x00\n").split(b"\x00")
        files: list[_RawFile] = []
        for meta, path in zip(toks[0::2], toks[1::2]):
            parts = meta.lstrip(b"\n").decode("ascii", "replace").lstrip(":").split()
            if len(parts) < 5:
                continue
            old_mode, new_mode, old, new, status = parts[:5]
            blobs = [b for m, b in ((old_mode, old), (new_mode, new))
                     if not _ZERO.match(b) and m[:3] in ("100", "120")]
            files.append(_RawFile(status[0], path.decode("utf-8", "backslashreplace"), blobs))
        commits[c.sha] = (c, files)
    # The trees of these commits and of their parents hold every blob their diffs read: list them
    # (--no-walk: not the whole history behind them), the missing ones marked "?".
    trees = list(dict.fromkeys([*shas, *(p for c, _ in commits.values() for p in c.parents)]))
    listed = run_git(root, "rev-list", "--objects", "--missing=print", "--no-object-names", "--no-walk",
                     "--ignore-missing", "--stdin", input=("\n".join(trees) + "\n").encode(), check=False)
    missing = {line[1:].decode() for line in listed.splitlines() if line.startswith(b"?")}
    return commits, missing


@dataclass
class Unavailable:
    """What ``read_commits`` could not read: file versions whose content is not here."""

    partial_clone: bool = False
    files: int = 0
    commits: int = 0


def read_commits(
    root: Path, common_dir: Path, shas: list[str], cfg: CaptureConfig, ignore: IgnoreRules, attributes: Path,
    report: Unavailable | None = None,
) -> Iterator[RawCommit]:
    """``iter_commits`` that survives missing objects: a commit whose diff needs a blob this
    repository does not have (a partial clone, a blob lost from a damaged repository) is recorded
    from its tree diff instead — every changed file by name and status, the unavailable ones without
    stats or hunks (``added``/``deleted`` NULL, ``binary`` 0, ``truncated`` 1), the others with their
    diff. Nothing is ever fetched: in a partial clone the commits needing missing blobs are found
    first (``git rev-list --missing=print``), and git runs with every transport refused
    (``repo.git_env``). Commits come out in the order given."""
    report = report if report is not None else Unavailable()
    pending = list(shas)
    scanned: dict[str, tuple[RawCommit, list[_RawFile]]] = {}
    missing: set[str] = set()
    unreadable: set[str] = set()
    if pending and is_partial_clone(root, common_dir):
        report.partial_clone = True
        scanned, missing = _scan(root, pending)
        unreadable = {s for s, (_, files) in scanned.items() if any(b in missing for f in files for b in f.blobs)}
    while pending:
        idx = 0
        try:
            for c in iter_commits(root, [s for s in pending if s not in unreadable], cfg, ignore, attributes):
                while idx < len(pending) and pending[idx] != c.sha:
                    if pending[idx] in unreadable:
                        yield from _fallback(root, pending[idx], scanned, missing, cfg, ignore, attributes, report)
                    idx += 1
                yield c
                idx += 1
            for s in pending[idx:]:
                if s in unreadable:
                    yield from _fallback(root, s, scanned, missing, cfg, ignore, attributes, report)
            return
        except MissingObjects as e:
            # Not foreseen (no partial clone, or an object gone since the scan): scan what is left,
            # starting with the commit git died on, and go on.
            pending = pending[idx:]
            more, gone = _scan(root, [s for s in pending if s not in scanned])
            scanned.update(more)
            missing |= gone | {e.object}
            before = len(unreadable)
            unreadable |= {s for s in pending if s in scanned
                           and any(b in missing for f in scanned[s][1] for b in f.blobs)}
            if len(unreadable) == before:  # git names an object no diff of ours reads: give up
                raise


def _fallback(root: Path, sha: str, scanned: dict[str, tuple[RawCommit, list[_RawFile]]], missing: set[str],
              cfg: CaptureConfig, ignore: IgnoreRules, attributes: Path, report: Unavailable) -> Iterator[RawCommit]:
    """A commit whose diff needs missing blobs: its readable files diffed (one git log limited to
    them), the rest by name only."""
    if sha not in scanned:
        return
    base, files = scanned[sha]
    readable = [f.path for f in files if not any(b in missing for b in f.blobs)]
    diffed: dict[str, FileChange] = {}
    symbols: list[tuple[str, str, str]] = []
    if readable:
        try:
            for c in iter_commits(root, [sha], cfg, ignore, attributes, paths=readable):
                diffed = {f.path: f for f in c.files}
                symbols = c.symbols
        except MissingObjects:
            diffed = {}
    parser = _Parser(cfg, ignore)
    c = RawCommit(sha=base.sha, parents=base.parents, author=base.author, author_email=base.author_email,
                  author_time=base.author_time, committer=base.committer, committer_email=base.committer_email,
                  commit_time=base.commit_time, message=base.message)
    covered = set(diffed) | {f.old_path for f in diffed.values() if f.old_path}
    rest: list[_File] = []
    for f in files:
        if f.path in covered:
            continue
        x = _File(f.path, f.path)
        x.status = f.status if f.status in "ADMT" else "M"
        x.unavailable = True
        rest.append(x)
    parser.finish_commit(c, rest)
    unavailable = len(c.files)
    c.files = [*diffed.values(), *c.files]
    c.symbols = symbols
    if unavailable:
        report.files += unavailable
        report.commits += 1
    yield c
