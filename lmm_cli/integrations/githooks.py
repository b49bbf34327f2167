"""Install lmm into the git hooks folder git really uses, next to whatever is already there.

- No hook yet: lmm writes a small ``#!/bin/sh`` hook holding only its block.
- A shell hook (sh, bash, zsh, …, e.g. the pre-commit framework's or husky's): lmm inserts its
  block right after the shebang line. The script keeps its name and folder, which those tools rely
  on (``$(dirname "$0")``), and runs exactly as before after the block.
- Anything else (a Python hook, a binary, a symlink, a hook that is not executable): lmm moves it
  to ``<hook>.lmm-orig`` and writes a wrapper that runs the block, then the original.

``hooks.json`` in the store records what was done; uninstall removes the block (or moves the
original back) so the folder is byte-for-byte what it was. Install is idempotent: a second run
rewrites the block in place.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shlex
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import HooksError, StoreUnwritable
from ..workspace import Workspace, data_file

__all__ = ["HOOKS", "install", "uninstall", "hook_status", "BEGIN", "END"]

HOOKS = ("post-commit", "post-merge", "post-rewrite", "post-checkout")
BEGIN = "# >>> lmm >>> managed by lmm; `lmm hooks uninstall` removes this block"
END = "# <<< lmm <<<"
_BLOCK = re.compile(r"^# >>> lmm >>>.*\n(?:.*\n)*?# <<< lmm <<<\n", re.M)
_SHELL = re.compile(rb"^#!\s*(?:/usr/bin/env\s+(?:-S\s+)?)?(?:\S*/)?(?:sh|bash|dash|zsh|ksh|mksh|ash|busybox\s+sh)(?:\s|$)")
ORIG_SUFFIX = ".lmm-orig"
_UNWRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)


def _block(ws: Workspace, hook: str) -> str:
    return (f"{BEGIN}\n__lmm_hook={hook}; if [ -r {shlex.quote(str(ws.hook_script))} ]; then "
            f". {shlex.quote(str(ws.hook_script))}; fi; unset __lmm_hook\n{END}\n")


def write_hook_script(ws: Workspace) -> None:
    """Fill in the hook template for this store and this Python."""
    text = data_file("hooks", "lmm-hook.sh").read_text(encoding="utf-8")
    values = {
        "@QUEUE@": shlex.quote(str(ws.queue)),
        "@PIDFILE@": shlex.quote(str(ws.dir / "drain.pid")),
        "@PYTHON@": shlex.quote(sys.executable),
        "@STORE@": shlex.quote(str(ws.dir)),
    }
    for k, v in values.items():
        text = text.replace(k, v)
    _atomic_write(ws.hook_script, text.encode(), 0o644)


def _atomic_write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.lmm-tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _load_manifest(ws: Workspace) -> dict[str, Any]:
    try:
        return json.loads(ws.manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"hooks": {}}


def _save_manifest(ws: Workspace, m: dict[str, Any]) -> None:
    _atomic_write(ws.manifest, (json.dumps(m, indent=2) + "\n").encode(), 0o644)


@dataclass
class HookState:
    name: str
    state: str  # installed | missing | stale (points at another store or lost its block)
    mode: str | None  # created | block | wrapped

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "state": self.state, "mode": self.mode}


def _store_writable(ws: Workspace) -> None:
    """Install and uninstall change the store too (hook.sh, hooks.json): check it first, so that a
    read-only store fails before any hook is touched, not half way."""
    if ws.dir.exists() and not os.access(ws.dir, os.W_OK):
        raise StoreUnwritable(str(ws.dir), "read-only")


def install(ws: Workspace) -> list[HookState]:
    """Install lmm's block into each hook (idempotent); ``HooksError`` when the folder is not writable
    or a file is in the way."""
    _store_writable(ws)
    try:
        return _install(ws)
    except OSError as e:
        if e.errno not in _UNWRITABLE:
            raise
        raise HooksError(f"cannot write git hooks in {ws.repo.hooks_dir} ({e.strerror}); make it writable, or run "
                         "`lmm init --no-hooks` to remember without them") from None


def uninstall(ws: Workspace) -> list[HookState]:
    """Take lmm's block out of each hook, leaving the folder as it was before install."""
    _store_writable(ws)
    try:
        return _uninstall(ws)
    except OSError as e:
        if e.errno not in _UNWRITABLE:
            raise
        raise HooksError(f"cannot change git hooks in {ws.repo.hooks_dir} or the store ({e.strerror}); "
                         "make them writable and run `lmm hooks uninstall` again") from None


def _install(ws: Workspace) -> list[HookState]:
    write_hook_script(ws)
    hooks_dir = ws.repo.hooks_dir
    m = _load_manifest(ws)
    if m.get("hooks_dir") not in (None, str(hooks_dir)) and m.get("hooks"):
        # core.hooksPath changed since the last install: take lmm out of the old folder first.
        _uninstall(ws)
        m = _load_manifest(ws)
    if not hooks_dir.exists():
        hooks_dir.mkdir(parents=True)
        m["created_dir"] = True
    m["hooks_dir"] = str(hooks_dir)
    entries: dict[str, Any] = m.setdefault("hooks", {})
    out = []
    for hook in HOOKS:
        path = hooks_dir / hook
        block = _block(ws, hook)
        entry = entries.get(hook)
        if path.is_symlink() or not path.exists():
            if path.is_symlink() or (entry and entry.get("mode") == "wrapped"):
                mode = "wrapped"
            else:
                mode = "created"
        else:
            data = path.read_bytes()
            text = data.decode("utf-8", "surrogateescape")
            if _BLOCK.search(text):  # ours already: refresh the block in place
                new = _BLOCK.sub(block.replace("\\", "\\\\"), text, count=1).encode("utf-8", "surrogateescape")
                if new != data:
                    _atomic_write(path, new, stat.S_IMODE(path.stat().st_mode))
                out.append(HookState(hook, "installed", (entry or {}).get("mode", "block")))
                continue
            executable = os.access(path, os.X_OK)
            mode = "block" if (_SHELL.match(data) and executable) else "wrapped"
        if mode == "created":
            _atomic_write(path, ("#!/bin/sh\n" + block).encode(), 0o755)
            entries[hook] = {"mode": "created"}
        elif mode == "block":
            data = path.read_bytes()
            first, nl, rest = data.partition(b"\n")
            new = first + b"\n" + block.encode() + rest if nl else first + b"\n" + block.encode()
            entries[hook] = {"mode": "block", "sha256": _sha(data), "had_newline": bool(nl)}
            _atomic_write(path, new, stat.S_IMODE(path.stat().st_mode))
        else:
            orig = path.with_name(hook + ORIG_SUFFIX)
            if path.exists() or path.is_symlink():
                if orig.exists() or orig.is_symlink():
                    raise HooksError(f"{orig} is in the way: lmm moves an existing {hook} hook there to run it "
                                     "after its own; move that file away (or delete it if it is a leftover) "
                                     "and run `lmm hooks install` again")
                os.replace(path, orig)
            wrapper = ("#!/bin/sh\n" + block +
                       f"if [ -x {shlex.quote(str(orig))} ]; then exec {shlex.quote(str(orig))} \"$@\"; fi\n")
            _atomic_write(path, wrapper.encode(), 0o755)
            entries[hook] = {"mode": "wrapped"}
        out.append(HookState(hook, "installed", entries[hook]["mode"]))
    _save_manifest(ws, m)
    return out


def _uninstall(ws: Workspace) -> list[HookState]:
    m = _load_manifest(ws)
    hooks_dir = Path(m.get("hooks_dir") or ws.repo.hooks_dir)
    entries: dict[str, Any] = m.get("hooks", {})
    out = []
    for hook in HOOKS:
        path = hooks_dir / hook
        entry = entries.pop(hook, None)
        mode = entry.get("mode") if entry else None
        if mode == "wrapped":
            orig = path.with_name(hook + ORIG_SUFFIX)
            if orig.exists() or orig.is_symlink():
                os.replace(orig, path)
            elif path.exists():
                path.unlink()
            out.append(HookState(hook, "removed", mode))
            continue
        if not path.exists() or path.is_symlink():
            out.append(HookState(hook, "missing", mode))
            continue
        data = path.read_bytes()
        text = data.decode("utf-8", "surrogateescape")
        if not _BLOCK.search(text):
            out.append(HookState(hook, "missing", mode))
            continue
        rest = _BLOCK.sub("", text, count=1)
        if mode == "block" and entry and not entry.get("had_newline", True) and rest.endswith("\n"):
            rest = rest[:-1]
        if rest.strip() in ("#!/bin/sh", "") and mode in ("created", None):
            path.unlink()
        else:
            _atomic_write(path, rest.encode("utf-8", "surrogateescape"), stat.S_IMODE(path.stat().st_mode))
        out.append(HookState(hook, "removed", mode))
    if m.get("created_dir") and hooks_dir.exists() and not any(hooks_dir.iterdir()):
        hooks_dir.rmdir()
    for leftover in (ws.manifest, ws.hook_script):
        try:
            leftover.unlink()
        except FileNotFoundError:
            pass
    return out


def hook_status(ws: Workspace) -> list[HookState]:
    out = []
    entries = _load_manifest(ws).get("hooks", {})
    for hook in HOOKS:
        path = ws.repo.hooks_dir / hook
        mode = entries.get(hook, {}).get("mode")
        try:
            text = path.read_bytes().decode("utf-8", "surrogateescape")
        except OSError:
            out.append(HookState(hook, "missing", mode))
            continue
        m = _BLOCK.search(text)
        if not m:
            out.append(HookState(hook, "missing", mode))
        elif str(ws.hook_script) not in m.group(0) and shlex.quote(str(ws.hook_script)) not in m.group(0):
            out.append(HookState(hook, "stale", mode))
        elif not os.access(path, os.X_OK) or not ws.hook_script.exists():
            out.append(HookState(hook, "stale", mode))
        else:
            out.append(HookState(hook, "installed", mode))
    return out
