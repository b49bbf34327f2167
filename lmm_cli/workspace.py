"""A workspace: one repository, its store folder, and the files in it.

Everything lmm keeps for a repository lives in one folder (``.git/lmm/`` or under ``$LMM_HOME``):

    lmm.db          the episodic log (SQLite, WAL)
    config.toml     settings (copied from the template at init)
    repo.json       the repository this store belongs to (its work tree and git common dir)
    hooks.json      what `lmm hooks install` changed, so uninstall can undo it exactly
    queue/          events appended by hooks, deleted once captured
    logs/drain.log  what background drainers did (no captured text, ever)

and in the repository's git common dir, ``lmm/`` (the store itself when ``LMM_HOME`` is not set):

    hook.sh         the script git hooks source (queue an event, wake the drainer)
    store.json      with ``LMM_HOME``: where the store is, so a moved repository finds it again

A store belongs to one repository, recorded in ``repo.json``. A repository that was moved (``mv``)
or copied (``cp -a``) no longer matches that record; the first lmm command or hook-started drainer
that runs in it settles the matter (``settle``): a moved repository takes its store along (under
``LMM_HOME`` the folder is renamed to the new path's key), a copy gets a store of its own (the copied
``.git/lmm/``, or a copy of the original's store under ``LMM_HOME``), and nothing of the other
repository's store or hooks is touched.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sqlite3
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import CONFIG_FILE, Config, load_config
from .errors import NotARepository, NotInitialised, StoreUnwritable
from .repo import GitError, Repo, discover, store_dir_for
from .store.db import DB_FILE, connect, copy_database
from .store.lock import lock_is_held

__all__ = ["Workspace", "open_workspace", "first_workspace", "workspace_from_store", "settle", "data_file",
           "LOCAL_DIR"]

LOCAL_DIR = "lmm"  # in the git common dir: the store itself, or (LMM_HOME) hook.sh and store.json


def data_file(kind: str, name: str) -> Path:
    """A file shipped under ``hooks/`` or ``templates/``: in the wheel, or beside the source tree."""
    here = Path(__file__).resolve().parent
    for base in (here / "_data" / kind, here.parent / kind):
        if (base / name).exists():
            return base / name
    raise FileNotFoundError(f"lmm is missing its {kind}/{name}; reinstall lmm")


@dataclass(frozen=True)
class Workspace:
    repo: Repo
    dir: Path

    db_path = property(lambda self: self.dir / DB_FILE)
    queue = property(lambda self: self.dir / "queue")
    logs = property(lambda self: self.dir / "logs")
    config_path = property(lambda self: self.dir / CONFIG_FILE)
    manifest = property(lambda self: self.dir / "hooks.json")
    attributes = property(lambda self: self.dir / "diff.attributes")
    # In the git common dir, whatever the store's location: hooks find it from the repository they
    # run in, so they never need an absolute path (and a moved or copied repository finds its own).
    local = property(lambda self: self.repo.common_dir / LOCAL_DIR)
    hook_script = property(lambda self: self.repo.common_dir / LOCAL_DIR / "hook.sh")
    pointer = property(lambda self: self.repo.common_dir / LOCAL_DIR / "store.json")

    @property
    def initialised(self) -> bool:
        return self.db_path.exists()

    def config(self) -> Config:
        return load_config(self.config_path)

    def connect(self, *, shared: bool = False) -> sqlite3.Connection:
        if not self.initialised:
            raise NotInitialised(str(self.repo.root))
        return connect(self.dir, shared=shared)

    def create(self) -> sqlite3.Connection:
        """Create the store folder (idempotent) and return a connection to a migrated store."""
        try:
            for d in (self.dir, self.queue, self.logs):
                d.mkdir(parents=True, exist_ok=True)
            if not self.config_path.exists():
                shutil.copyfile(data_file("templates", "config.toml"), self.config_path)
            self.write_repo_json()
        except (FileExistsError, NotADirectoryError) as e:
            raise StoreUnwritable(str(self.dir), f"{e.filename} is a file, not a folder") from None
        except OSError as e:
            raise StoreUnwritable(str(self.dir), e.strerror or str(e)) from None
        try:
            self.write_pointer()
        except OSError:
            pass  # a read-only git dir: only finding the store again after a move needs it
        return connect(self.dir, create=True)

    def write_repo_json(self, **extra: Any) -> None:
        info = {"root": str(self.repo.root), "common_dir": str(self.repo.common_dir), **extra}
        _write_json(self.dir / "repo.json", info)

    def write_pointer(self) -> None:
        """Under ``LMM_HOME``: record in the git common dir where the store is (and prepare the folder
        a hook queues into when it finds itself in a moved or copied repository)."""
        if self.dir == self.local:
            return
        (self.local / "queue").mkdir(parents=True, exist_ok=True)
        _write_json(self.pointer, {"store": str(self.dir), "home": str(self.dir.parent.parent),
                                   "common_dir": str(self.repo.common_dir)})

    def write_hook_script(self) -> None:
        """Fill in the hook template (``hooks/lmm-hook.sh``) for this repository, store and Python."""
        text = data_file("hooks", "lmm-hook.sh").read_text(encoding="utf-8")
        values = {
            "@OWNER@": shlex.quote(_git_common_dir(self.repo)),
            "@STORE@": shlex.quote(str(self.dir)),
            "@PYTHON@": shlex.quote(sys.executable),
        }
        for k, v in values.items():
            text = text.replace(k, v)
        self.local.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.hook_script, text)


def _git_common_dir(repo: Repo) -> str:
    """The common dir exactly as the hook will see it (``git rev-parse --path-format=absolute``)."""
    try:
        out = repo.git("rev-parse", "--path-format=absolute", "--git-common-dir").decode("utf-8", "surrogateescape")
        return out.strip() or str(repo.common_dir)
    except GitError:
        return str(repo.common_dir)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _write_json(path: Path, obj: dict[str, Any]) -> None:
    _atomic_write(path, json.dumps(obj, indent=2) + "\n")


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        out = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return out if isinstance(out, dict) else None


def _same_dir(a: str | Path | None, b: str | Path) -> bool:
    if not a:
        return False
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(a).resolve() == Path(b).resolve()


def _is_git_dir(path: str | Path | None) -> bool:
    if not path:
        return False
    p = Path(path)
    return (p / "HEAD").is_file() and (p / "objects").is_dir()


def _under(path: Path, base: Path) -> Path | None:
    """``path`` relative to ``base`` when it lies inside it."""
    try:
        return path.relative_to(base)
    except ValueError:
        return None


# --------------------------------------------------------------------------- moved and copied repositories


def settle(ws: Workspace) -> Workspace:
    """Make sure ``ws.dir`` is this repository's own store, after a move or a copy (see the module's
    docstring). Cheap when nothing changed: one small file is read."""
    _settle(ws)
    if ws.dir != ws.local and ws.initialised:  # events a hook queued in <git dir>/lmm meanwhile
        _hand_over(ws.local / "queue", ws.queue)
    return ws


def _settle(ws: Workspace) -> None:
    if ws.db_path.exists():
        info = _read_json(ws.dir / "repo.json")
        if info is not None and not _same_dir(info.get("common_dir"), ws.repo.common_dir):
            _claim(ws, info)
        return
    if ws.dir == ws.local:
        return
    # LMM_HOME: the store is keyed by the repository's path, so a moved or copied repository
    # computes a new key. The pointer in its git dir says where its store was.
    ptr = _read_json(ws.pointer)
    old = Path(ptr["store"]) if ptr and ptr.get("store") else None
    if old is None or old == ws.dir or not (old / DB_FILE).exists():
        return
    info = _read_json(old / "repo.json") or {}
    if _same_dir(info.get("common_dir"), ws.repo.common_dir):
        return  # the store is this repository's, kept under another LMM_HOME: leave it there
    if _is_git_dir(info.get("common_dir")):
        _copy_store(old, ws)  # the original still exists: this is a copy, which gets its own store
        _claim(ws, info, copied=True)
    else:
        _adopt_store(old, ws)  # the repository moved: its store moves with it
        _claim(ws, info, copied=False)


def _claim(ws: Workspace, info: dict[str, Any], copied: bool | None = None) -> None:
    """Record that the store in ``ws.dir`` now belongs to ``ws.repo``, and move what named the old
    repository (the hooks manifest, the hook script) to the new one."""
    old_common = info.get("common_dir")
    old_root = info.get("root")
    if copied is None:
        copied = _is_git_dir(old_common)
    try:
        ws.write_repo_json(**{"copied_from" if copied else "moved_from": old_root or old_common, "since": time.time()})
        _translate_manifest(ws, old_root, old_common)
        # A pidfile copied along names the original's drainer: it is not ours.
        for name in ("drain", "tune"):
            pid = ws.dir / f"{name}.pid"
            if pid.exists() and not lock_is_held(ws.dir, name):
                pid.unlink(missing_ok=True)
        if ws.hook_script.exists() or (ws.manifest.exists()):
            ws.write_hook_script()
        ws.write_pointer()
    except OSError:
        pass  # a read-only store: the hooks keep queueing into <git dir>/lmm; a writable run settles it


def _translate_manifest(ws: Workspace, old_root: str | None, old_common: str | None) -> None:
    """The hooks folder the manifest names moves with the repository when it lay inside it; one
    outside (a shared core.hooksPath) stays."""
    m = _read_json(ws.manifest)
    if not m or not m.get("hooks_dir"):
        return
    hooks = Path(m["hooks_dir"])
    for base, new in ((old_common, ws.repo.common_dir), (old_root, ws.repo.root)):
        rel = _under(hooks, Path(base)) if base else None
        if rel is not None:
            m["hooks_dir"] = str(new / rel)
            _write_json(ws.manifest, m)
            return


def _copy_store(old: Path, ws: Workspace) -> None:
    """A store of its own for a copied repository: the original's memory as it is now (its database,
    config and hooks manifest); never its queue, locks or logs."""
    tmp = ws.dir.with_name(f".{ws.dir.name}.{os.getpid()}.tmp")
    try:
        tmp.mkdir(parents=True)
        for name in ("config.toml", "hooks.json"):
            if (old / name).exists():
                shutil.copyfile(old / name, tmp / name)
        for d in ("queue", "logs"):
            (tmp / d).mkdir()
        copy_database(old, tmp)
        try:
            os.rename(tmp, ws.dir)
        except OSError:
            if not (ws.dir / DB_FILE).exists():
                raise
    except OSError as e:
        raise StoreUnwritable(str(ws.dir), e.strerror or str(e)) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _adopt_store(old: Path, ws: Workspace) -> None:
    """Move a moved repository's store to the folder its new path keys."""
    try:
        ws.dir.parent.mkdir(parents=True, exist_ok=True)
        os.rename(old, ws.dir)
    except OSError:
        if not (ws.dir / DB_FILE).exists():
            _copy_store(old, ws)  # another file system, or a race with another lmm process


# --------------------------------------------------------------------------- finding a workspace


def open_workspace(path: Path | str | None = None) -> Workspace:
    repo = discover(path)
    return settle(Workspace(repo=repo, dir=store_dir_for(repo)))


def first_workspace(places: Iterable[str | None]) -> Workspace | None:
    """The workspace of the first of ``places`` that is a folder (an assistant hook's candidates:
    the session's working directory, ``CLAUDE_PROJECT_DIR``, the process's own); None when there
    is none, or when its repository has no initialised store. Not a repository: NotARepository."""
    for where in places:
        if where and Path(where).is_dir():
            ws = open_workspace(Path(where))
            return ws if ws.initialised else None
    return None


def _event_dirs(queue: Path) -> list[str]:
    """The working directories hooks recorded in queued events (line 3 of each): where the
    repository is now, even when the store's record is out of date."""
    out: list[str] = []
    try:
        names = sorted(os.listdir(queue), reverse=True)
    except OSError:
        return out
    for name in names[:20]:
        if not (name.startswith("ev.") and name.endswith(".q")):
            continue
        try:
            with open(queue / name, encoding="utf-8", errors="surrogateescape") as f:
                lines = [f.readline() for _ in range(3)]
        except OSError:
            continue
        if lines[0].strip() == "lmm-event-1" and lines[2].strip():
            out.append(lines[2].rstrip("\n"))
    return out


def _find_repo(git_dir: Path, hints: list[str | None]) -> Repo | None:
    """The repository whose git common dir is ``git_dir``, discovered from one of ``hints``."""
    seen: set[str] = set()
    for h in hints:
        if not h or h in seen or not Path(h).is_dir():
            continue
        seen.add(h)
        try:
            repo = discover(h)
        except Exception:  # noqa: BLE001 - not a repository (any more): try the next hint
            continue
        if _same_dir(repo.common_dir, git_dir):
            return repo
    return None


def workspace_from_store(store_dir: Path) -> Workspace:
    """The workspace a background job (the hook-started drainer, a tune) serves, from its store
    folder, settling a moved or copied repository on the way.

    ``store_dir`` is a store, or the ``<git common dir>/lmm`` folder a hook queued into after finding
    itself in a moved or copied repository whose store lives under ``LMM_HOME``: that store is found
    (adopted or copied, see ``settle``) and the queued events are handed to it."""
    store_dir = Path(store_dir).absolute()
    info = _read_json(store_dir / "repo.json") or {}
    git_dir = store_dir.parent if store_dir.name == LOCAL_DIR and _is_git_dir(store_dir.parent) else None
    if git_dir is None:  # a store under LMM_HOME, where its record says the repository is
        root = info.get("root")
        repo = _find_repo(Path(info.get("common_dir") or "/nonexistent"), [root])
        if repo is None:
            raise NotARepository(f"{root} (recorded by the store at {store_dir})")
        return Workspace(repo=repo, dir=store_dir)
    # In a git dir: the store belongs to the repository around it, wherever that is now.
    hints = [info.get("root"), *_event_dirs(store_dir / "queue"),
             str(git_dir.parent) if git_dir.name == ".git" else None]
    repo = _find_repo(git_dir, hints)
    if repo is None:
        raise NotARepository(f"the repository of {git_dir}")
    if (store_dir / DB_FILE).exists():
        return settle(Workspace(repo=repo, dir=store_dir))
    ptr = _read_json(store_dir / "store.json") or {}
    home = ptr.get("home") or os.environ.get("LMM_HOME") or ""
    return settle(Workspace(repo=repo, dir=store_dir_for(repo, home=home)))


def _hand_over(src: Path, dst: Path) -> None:
    """Move complete events from the local queue into the store's (an event a hook is still
    writing stays for the next drainer)."""
    try:
        names = os.listdir(src)
    except OSError:
        return
    if not names:
        return
    dst.mkdir(parents=True, exist_ok=True)
    for name in sorted(names):
        if not (name.startswith("ev.") and name.endswith(".q")):
            continue
        p = src / name
        try:
            if not p.read_bytes().endswith(b"\nend\n"):
                continue
            stem = name[:-2]
            target = dst / name
            if target.exists():  # the same pid queued there too: keep both
                target = dst / f"ev.{stem[3:]}.{time.time_ns()}.q"
            if (src / f"{stem}.in").exists():
                os.replace(src / f"{stem}.in", target.with_name(target.name[:-2] + ".in"))
            os.replace(p, target)
        except OSError:
            continue
