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
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import HooksError, StoreUnwritable
from ..workspace import Workspace

__all__ = ["HOOKS", "install", "uninstall", "hook_status", "tracked_hooks_dir", "manual_instructions", "MANUAL_LINE",
           "BEGIN", "END"]

HOOKS = ("post-commit", "post-merge", "post-rewrite", "post-checkout")
BEGIN = "# >>> lmm >>> managed by lmm; `lmm hooks uninstall` removes this block"
END = "# <<< lmm <<<"
_BLOCK = re.compile(r"^# >>> lmm >>>.*\n(?:.*\n)*?# <<< lmm <<<\n", re.M)
_SHELL = re.compile(rb"^#!\s*(?:/usr/bin/env\s+(?:-S\s+)?)?(?:\S*/)?(?:sh|bash|dash|zsh|ksh|mksh|ash|busybox\s+sh)(?:\s|$)")
ORIG_SUFFIX = ".lmm-orig"
_UNWRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)


# The block finds the hook script from the repository it runs in, never from an absolute path: the
# same text serves every clone, a moved repository and a copy (each reaches its own
# <git common dir>/lmm/hook.sh), and a hooks folder shared by several repositories. Its one git call
# also gives hook.sh the commit and branch, so a commit still costs git a single extra process.
_REV_PARSE = "git rev-parse --path-format=absolute --git-common-dir HEAD --symbolic-full-name HEAD"


def _block(hook: str) -> str:
    return (f"{BEGIN}\n"
            f"__lmm_hook={hook}; __lmm_r=$({_REV_PARSE} 2>/dev/null) || :\n"
            "__lmm_g=${__lmm_r%%\"\n\"*}; if [ -r \"$__lmm_g/lmm/hook.sh\" ]; then . \"$__lmm_g/lmm/hook.sh\"; fi\n"
            f"unset __lmm_hook __lmm_r __lmm_g\n{END}\n")


# What to add by hand to a hook in a hooks folder git tracks (husky v8's .husky/, a repository's
# githooks/): no absolute path, so it works in every clone, and harmless where lmm is not set up.
MANUAL_LINE = ('command . "$(git rev-parse --path-format=absolute --git-common-dir)/lmm/hook.sh" '
               "2>/dev/null || :")


def write_hook_script(ws: Workspace) -> None:
    """Fill in the hook template for this store and this Python."""
    ws.write_hook_script()


def tracked_hooks_dir(ws: Workspace) -> str | None:
    """The hooks folder relative to the work tree when git tracks files in it (husky v8's ``.husky``):
    lmm must not edit those files, nor add files there that would show up as changes."""
    root = ws.repo.root.resolve()
    try:
        rel = ws.repo.hooks_dir.resolve().relative_to(root)
    except ValueError:
        return None
    if not rel.parts or rel.parts[0] == ".git":
        return None
    out = ws.repo.git("ls-files", "-z", "--", f":(literal){rel.as_posix()}", check=False)
    return rel.as_posix() if out.strip(b"\0") else None


def manual_instructions(rel: str) -> str:
    hooks = ", ".join(f"{rel}/{h}" for h in HOOKS)
    return (f"{rel} is tracked by git, so lmm does not change it; add this line to {hooks} "
            f"(create the missing ones, executable): {MANUAL_LINE}")


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
    if ws.dir != ws.local and (ws.dir / "hook.sh").exists():
        (ws.dir / "hook.sh").unlink()  # where lmm before 0.2 kept it under LMM_HOME
    hooks_dir = ws.repo.hooks_dir
    m = _load_manifest(ws)
    tracked = tracked_hooks_dir(ws)
    if tracked is not None:
        # Never edit tracked files: the hook script is ready, the user adds one line by hand.
        if m.get("hooks"):  # put back what an earlier install changed (here: tracked files)
            _uninstall(ws)
            write_hook_script(ws)
        _save_manifest(ws, {"hooks_dir": str(hooks_dir), "hooks": {}, "manual": tracked})
        return hook_status(ws)
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
        block = _block(hook)
        entry = entries.get(hook)
        if path.is_symlink() or not path.exists():
            if path.is_symlink() or (entry and entry.get("mode") == "wrapped"):
                mode = "wrapped"
            else:
                mode = "created"
        else:
            data = path.read_bytes()
            text = data.decode("utf-8", "surrogateescape")
            if _BLOCK.search(text):  # ours already: refresh the block in place (a wrapper: all of it)
                if (entry or {}).get("mode") == "wrapped":
                    new = _wrapper(hook).encode()
                else:
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
            _atomic_write(path, _wrapper(hook).encode(), 0o755)
            entries[hook] = {"mode": "wrapped"}
        out.append(HookState(hook, "installed", entries[hook]["mode"]))
    _save_manifest(ws, m)
    return out


def _wrapper(hook: str) -> str:
    """A hook that runs lmm's block, then the original moved beside it (found from the hook's own
    path, so the pair still works after the repository moves)."""
    orig = f'"${{0%/*}}/{hook}{ORIG_SUFFIX}"'
    return "#!/bin/sh\n" + _block(hook) + f"if [ -x {orig} ]; then exec {orig} \"$@\"; fi\n"


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
    """Each hook: installed (lmm's current block, or the hand-added line, and the hook script is
    there), stale (an older block, or the script is missing), missing, or manual (a tracked hooks
    folder where the line still has to be added by hand: see ``manual_instructions``)."""
    out = []
    entries = _load_manifest(ws).get("hooks", {})
    tracked = tracked_hooks_dir(ws)
    for hook in HOOKS:
        path = ws.repo.hooks_dir / hook
        mode = entries.get(hook, {}).get("mode")
        try:
            text = path.read_bytes().decode("utf-8", "surrogateescape")
        except OSError:
            text = ""
        m = _BLOCK.search(text)
        script = ws.hook_script.exists()
        if tracked is not None and not m:
            has_line = "/lmm/hook.sh" in text and os.access(path, os.X_OK)
            out.append(HookState(hook, "installed" if has_line and script else "manual", "manual"))
        elif not m:
            out.append(HookState(hook, "missing", mode))
        elif m.group(0) != _block(hook) or not os.access(path, os.X_OK) or not script:
            out.append(HookState(hook, "stale", mode))
        else:
            out.append(HookState(hook, "installed", mode))
    return out
