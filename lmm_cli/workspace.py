"""A workspace: one repository, its store folder, and the files in it.

Everything lmm keeps for a repository lives in one folder (``.git/lmm/`` or under ``$LMM_HOME``):

    lmm.db          the episodic log (SQLite, WAL)
    config.toml     settings (copied from the template at init)
    repo.json       where the repository is, for the hook-started drainer
    hook.sh         the script git hooks source (queue an event, wake the drainer)
    hooks.json      what `lmm hooks install` changed, so uninstall can undo it exactly
    queue/          events appended by hooks, deleted once captured
    logs/drain.log  what background drainers did (no captured text, ever)
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from .config import CONFIG_FILE, Config, load_config
from .errors import NotInitialised, StoreUnwritable
from .repo import Repo, discover, store_dir_for
from .store.db import DB_FILE, connect

__all__ = ["Workspace", "open_workspace", "data_file"]


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
    hook_script = property(lambda self: self.dir / "hook.sh")
    manifest = property(lambda self: self.dir / "hooks.json")
    attributes = property(lambda self: self.dir / "diff.attributes")

    @property
    def initialised(self) -> bool:
        return self.db_path.exists()

    def config(self) -> Config:
        return load_config(self.config_path)

    def connect(self) -> sqlite3.Connection:
        if not self.initialised:
            raise NotInitialised(str(self.repo.root))
        return connect(self.dir)

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
        return connect(self.dir, create=True)

    def write_repo_json(self) -> None:
        info = {"root": str(self.repo.root), "common_dir": str(self.repo.common_dir)}
        path = self.dir / "repo.json"
        tmp = path.with_name(f"repo.json.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)


def open_workspace(path: Path | str | None = None) -> Workspace:
    repo = discover(path)
    return Workspace(repo=repo, dir=store_dir_for(repo))


def workspace_from_store(store_dir: Path) -> Workspace:
    """The workspace a hook-started drainer serves, from the ``repo.json`` init wrote."""
    info = json.loads((store_dir / "repo.json").read_text(encoding="utf-8"))
    from .repo import Repo as _Repo

    root = Path(info["root"])
    common = Path(info["common_dir"])
    repo = _Repo(root=root, common_dir=common, hooks_dir=common / "hooks", shallow=False)
    return Workspace(repo=repo, dir=store_dir)
