"""The `lmm` command line: parse, call the core, print. Nothing else lives here.

Errors from the core (``LmmError``) become one line on stderr and exit 1; usage errors exit 2.
Every command takes ``--repo PATH`` and ``--json``.
"""

from __future__ import annotations

import functools
import json
import os
import sqlite3
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, TypeVar

import typer

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

from . import __version__
from .errors import LmmError

app = typer.Typer(
    name="lmm",
    help="A local long-term memory of this repository for coding assistants.\n\n"
    "Start with `lmm init` inside a git repository.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="markdown",
    context_settings={"help_option_names": ["-h", "--help"]},
)
hooks_app = typer.Typer(help="Install, remove or inspect lmm's git hooks.", no_args_is_help=True,
                        rich_markup_mode="markdown")
app.add_typer(hooks_app, name="hooks")
bench_app = typer.Typer(help="Measure lmm on this repository's own history.", no_args_is_help=True,
                        rich_markup_mode="markdown")
app.add_typer(bench_app, name="bench")
daemon_app = typer.Typer(help="A background process per repository that watches, captures, embeds, fits and trains "
                              "at low priority.\n\nExample: `lmm daemon start`, then `lmm daemon status`.",
                         no_args_is_help=True, rich_markup_mode="markdown")
app.add_typer(daemon_app, name="daemon")

RepoOpt = typer.Option(None, "--repo", help="The repository (default: the one enclosing the current directory).",
                       show_default=False)
JsonOpt = typer.Option(False, "--json", help="Print one JSON object for machines instead of text.")

F = TypeVar("F", bound=Callable[..., Any])


def _stderr() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def _stdout() -> Console:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


def handled(fn: F) -> F:
    """Turn domain errors into a one-line message and their exit code (1; 2 for a bad argument);
    Ctrl-C into exit 130."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except LmmError as e:
            print(f"lmm: {e}", file=sys.stderr)
            raise typer.Exit(e.exit_code) from None
        except sqlite3.Error as e:  # raised mid-transaction, after connect() vouched for the store
            from .store.db import translate

            err = translate(e, None)
            if not isinstance(err, LmmError):
                raise
            print(f"lmm: {err}", file=sys.stderr)
            raise typer.Exit(err.exit_code) from None
        except OSError as e:  # a full disk or a read-only folder met outside the store's own checks
            from .errors import from_os_error

            err2 = from_os_error(e)
            if err2 is None:
                raise
            print(f"lmm: {err2}", file=sys.stderr)
            raise typer.Exit(err2.exit_code) from None
        except KeyboardInterrupt:
            print("lmm: interrupted; what was captured is kept (run `lmm ingest` to continue)", file=sys.stderr)
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def _emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


def _workspace(repo: Optional[Path]):  # type: ignore[no-untyped-def]
    from .workspace import open_workspace

    return open_workspace(repo)


class _Bar:
    """Rich progress bars on stderr, one per stage, shown only on a terminal. Called as
    ``bar(stage, done, total)``."""

    def __init__(self) -> None:
        self.progress: Progress | None = None
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> _Bar:
        if sys.stderr.isatty():
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self.progress = Progress(TextColumn("{task.description:<18}"), BarColumn(), MofNCompleteColumn(),
                                     TimeRemainingColumn(), console=_stderr(), transient=True)
            self.progress.start()
        return self

    def __call__(self, stage: str, done: int, total: int) -> None:
        if self.progress is None:
            return
        if stage not in self.tasks:
            self.tasks[stage] = self.progress.add_task(stage, total=total)
        self.progress.update(self.tasks[stage], completed=done, total=total)

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def _version(value: bool) -> None:
    if value:
        print(f"lmm {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                      help="Print the version and exit.")) -> None:
    """A local long-term memory of this repository for coding assistants."""


@app.command()
@handled
def init(
    repo: Optional[Path] = RepoOpt,
    no_hooks: bool = typer.Option(False, "--no-hooks", help="Do not install git hooks."),
    no_backfill: bool = typer.Option(False, "--no-backfill", help="Do not capture the existing history now."),
    rebuild: bool = typer.Option(False, "--rebuild", help="Move the existing store aside and start again."),
    no_embed: bool = typer.Option(False, "--no-embed", help="Skip sentence embeddings (recall then uses no dense channel)."),
    wait: bool = typer.Option(False, "--wait", help="Embed now, in the foreground with a progress bar, instead of "
                                                    "in the background (for scripts that need the dense channel at once)."),
    as_json: bool = JsonOpt,
) -> None:
    """Create this repository's memory, capture its history, and install the git hooks.

    Returns once recall works (lexical, names and history channels, the code index); the sentence
    embeddings, then the fit of recall's weights, then the first training round follow in the
    background at low priority (`lmm status` shows how far; recall says what is still warming up).
    Safe to run again: it captures only what is new and refreshes the hooks.

    Example: `lmm init` (or `lmm init --wait`, `lmm init --repo ~/src/app --no-hooks`)
    """
    from . import core

    ws = _workspace(repo)
    with _Bar() as bar:
        out = core.init(ws, hooks=not no_hooks, backfill=not no_backfill, rebuild=rebuild, embed=not no_embed,
                        wait=wait, stages=bar)
    if as_json:
        _emit_json(out)
        return
    ing = out["ingest"]
    lines = [f"lmm remembers {out['repo']}"]
    if out["moved_aside"]:
        lines.append(f"  old store moved aside to {out['moved_aside']} (kept)")
        c = out.get("carried") or {}
        kept = ", ".join(f"{n:,} {k}" for k, n in sorted((c.get("episodes") or {}).items()))
        lines.append("  carried over what git cannot give back: " + (kept or "nothing to carry")
                     + (f"; {c['rewrites']:,} rewrite links" if c.get("rewrites") else ""))
        if c.get("unreadable"):
            lines.append("  some of the old store could not be read (damaged pages); the rest was carried over")
    if out["empty"]:
        lines.append("  no commits yet: lmm will capture from your first commit")
    else:
        lines.append(f"  {ing['new']:,} commits captured ({ing['merges']:,} merges), "
                     f"{ing['known']:,} already known, in {ing['seconds']:.1f}s")
    if ing["shallow"]:
        lines.append("  shallow clone: only the history that exists here was captured; "
                     "run `git fetch --unshallow` then `lmm ingest` for the rest")
    lines.extend(_unavailable_lines(ing))
    if out.get("hooks_manual"):
        lines.append(f"  git hooks not installed: {out['hooks_manual']}")
    elif out["hooks"]:
        lines.append(f"  git hooks installed in {ws.repo.hooks_dir}: " + ", ".join(h["name"] for h in out["hooks"]))
    else:
        lines.append("  git hooks not installed (run `lmm hooks install` to capture commits as they happen)")
    idx = out.get("index") or {}
    if idx:
        lines.append(f"  code index: {idx['files']:,} files, {idx['symbols']:,} symbols, {idx['chunks']:,} chunks"
                     + (f"; {idx['embedded']:,} new embeddings" if idx.get("encoder") else "; no embeddings"))
    emb = out.get("embedding")
    if emb:
        who = "the daemon" if emb.get("daemon") else (f"pid {emb['pid']}" if emb.get("pid") else "the next capture")
        lines.append(f"  embedding {emb['total'] - emb['done']:,} texts in the background ({who}), then fitting recall"
                     " to this history; recall works now with its lexical, names and history channels"
                     " (`lmm status` shows progress)")
    if out.get("tuning_started"):
        lines.append("  fitting recall to this repository's history in the background (`lmm status` shows when done)")
    lines.append(f"  store: {out['store']}")
    print("\n".join(lines))


@app.command()
@handled
def ingest(
    repo: Optional[Path] = RepoOpt,
    no_embed: bool = typer.Option(False, "--no-embed", help="Skip sentence embeddings."),
    sessions: bool = typer.Option(False, "--sessions",
                                  help="Also capture this repository's past and current assistant sessions "
                                       "(Claude Code, Codex CLI, aider transcripts)."),
    as_json: bool = JsonOpt,
) -> None:
    """Capture new history (and any queued hook events) now. Resumes an interrupted backfill.

    Example: `lmm ingest --sessions`
    """
    from . import core

    ws = _workspace(repo)
    with _Bar() as bar:
        out = core.ingest(ws, embed=not no_embed, stages=bar, sessions=sessions)
    if as_json:
        _emit_json(out)
        return
    msg = f"{out['new']:,} new commits captured, {out['events']} hook events, in {out['seconds']:.1f}s"
    print(msg + (" (shallow clone: older history is not available here)" if out["shallow"] else ""))
    if out.get("sessions") is not None:
        ss = out["sessions"]
        line = (f"{ss['turns']:,} new turns from {ss['sessions']:,} assistant sessions, {ss['corrections']:,} corrections"
                f" ({ss['files']:,} transcripts of this repository, {ss['read']:,} read)")
        if ss["skipped"]:
            line += f"; {ss['skipped']:,} unreadable transcripts skipped"
        print(line)
    if out.get("older"):
        print(f"  {out['older']:,} of them older than what was captured (history arrived: unshallow, a fetch, grafts)")
    for line in _unavailable_lines(out):
        print(line)


def _unavailable_lines(ing: dict[str, Any]) -> list[str]:
    """One line, once, about content this repository does not have (nothing is ever fetched)."""
    u = ing.get("unavailable") or {}
    if not u.get("files"):
        return []
    where = "partial clone" if u.get("partial_clone") else "missing objects"
    return [f"  {where}: {u['files']:,} changed files in {u['commits']:,} commits have no content here; "
            "recorded by name and status only (lmm never fetches)"]


@app.command()
@handled
def recall(
    query: list[str] = typer.Argument(..., help="What you are about to work on, in words.", show_default=False),
    repo: Optional[Path] = RepoOpt,
    budget: int = typer.Option(1000, "--budget", "-b", help="Most tokens the brief may use."),
    fast: bool = typer.Option(False, "--fast", help="Lexical and history channels only: no model is loaded."),
    k: int = typer.Option(10, "-k", help="How many files to rank."),
    as_json: bool = JsonOpt,
) -> None:
    """What matters for a task: where to look, what happened and why, what tends to break — cited.

    Example: `lmm recall "why did we drop redis" --budget 800`
    """
    from . import core

    out = core.recall(_workspace(repo), " ".join(query), budget=budget, fast=fast, k=k)
    if as_json:
        _emit_json(out)
        return
    sys.stdout.write(out["brief"])
    for w in out.get("warming") or []:
        sys.stdout.write(f"\n_{w['note']}; recall uses what is embedded so far and its other channels meanwhile._\n")


@app.command("brief")
@handled
def brief_cmd(
    repo: Optional[Path] = RepoOpt,
    budget: int = typer.Option(2000, "--budget", "-b", help="Most tokens the brief may use."),
    write: Optional[Path] = typer.Option(None, "--write", help="Keep lmm's section of this file (e.g. CLAUDE.md) up to "
                                                               "date; text outside lmm's markers is left alone."),
    as_json: bool = JsonOpt,
) -> None:
    """The repository-wide brief: layout, central modules, conventions, hot spots, recent direction.

    Example: `lmm brief --write CLAUDE.md`
    """
    from . import core

    out = core.brief(_workspace(repo), budget=budget, write=write)
    if as_json:
        _emit_json(out)
        return
    if write is not None:
        print(f"{'updated' if out['changed'] else 'unchanged'}: {out['written']} ({out['tokens']} tokens)")
        return
    sys.stdout.write(out["brief"])


@app.command()
@handled
def status(repo: Optional[Path] = RepoOpt, as_json: bool = JsonOpt) -> None:
    """What is remembered: counts by kind and tier, last capture, hooks, store size.

    Example: `lmm status --json`
    """
    from . import core

    out = core.status(_workspace(repo))
    if as_json:
        _emit_json(out)
        return
    kinds = ", ".join(f"{n:,} {k}" for k, n in out["by_kind"].items()) or "nothing yet"
    tiers = ", ".join(f"{n:,} {t}" for t, n in out["by_tier"].items()) or "-"
    hooks = out["hooks"]["states"]
    ok = [h["name"] for h in hooks if h["state"] == "installed"]
    bad = [f"{h['name']} ({h['state']})" for h in hooks if h["state"] != "installed"]
    last = out["last_capture"]
    lines = [
        f"repository  {out['repo']}",
        f"store       {out['store']} ({_mb(out['store_bytes'])}, schema {out['schema']['version']})",
        f"episodes    {out['episodes']:,}: {kinds}",
        f"tiers       {tiers}" + (f"; {out['superseded']:,} superseded by rewrites" if out["superseded"] else ""),
        "last        " + ("-" if not last else
                          f"{datetime.fromtimestamp(last['at']).strftime('%Y-%m-%d %H:%M')} {last['kind']} "
                          f"{last['source'][:12]} {last['title'][:60]}"),
        "hooks       " + (", ".join(ok) if ok else "none") + (f"; not installed: {', '.join(bad)}" if bad else ""),
        f"queue       {out['queue']['pending']} pending" + (f", {out['queue']['bad']} unreadable" if out["queue"]["bad"] else "")
        + ("; a drainer is capturing now" if out["drainer"]["running"] else ""),
    ]
    lines.append("recall      " + _fusion_line(out["fusion"]))
    if out["fusion"].get("ranker"):
        lines.append("ranker      " + _ranker_line(out["fusion"]["ranker"]))
    lines.extend(_background_lines(out.get("background") or {}))
    if out["shallow"]:
        lines.append("note        shallow clone: history before the cut is not available")
    if out.get("unavailable_files"):
        lines.append(f"note        {'partial clone' if out.get('partial_clone') else 'missing objects'}: "
                     f"{out['unavailable_files']:,} file versions recorded without content (lmm never fetches)")
    if out["hooks"].get("manual") and bad:
        lines.append(f"note        hooks: {out['hooks']['manual']}")
    print("\n".join(lines))


def _background_lines(b: dict[str, Any]) -> list[str]:
    """`lmm status`'s lines about the background: the first embedding, the daemon, training."""
    lines = []
    e = b.get("embedding")
    if e:
        fig = f"{e.get('done', 0):,} of {e.get('total', 0):,} texts ({e['percent']}%)"
        d = b.get("daemon") or {}
        if not e.get("finished"):
            if e.get("running"):
                who = "the daemon" if d.get("running") and d.get("pid") == e.get("pid") else "background"
                lines.append(f"embedding   {fig}, {who} pid {e.get('pid')}")
            else:
                why = f" ({e['error']})" if e.get("error") else ""
                lines.append(f"embedding   {fig}, not running{why}: the next capture or `lmm daemon start` resumes it")
        else:
            took = e["finished"] - e["started"] if e.get("started") else None
            phase = {"fitting": "; fitting recall's weights now", "training": "; training round now"}.get(
                e.get("phase", ""), "") if (e.get("pid") or d.get("running")) else ""
            lines.append(f"embedding   done: {e.get('total', 0):,} texts" + (f" in {took:.0f}s" if took else "") + phase)
    d = b.get("daemon") or {}
    if d.get("running"):
        lines.append(f"daemon      pid {d.get('pid')}, {d.get('doing') or 'idle'}")
    t = b.get("training") or {}
    last = t.get("last_round")
    if t.get("running") or last:
        what = (last or {}).get("status") or (last or {}).get("outcome") or ""
        if last and last.get("back_to_base"):
            what += f", back to the base model from {last['back_to_base']}"
        when = datetime.fromtimestamp(last["at"]).strftime("%Y-%m-%d %H:%M") if last and last.get("at") else ""
        lines.append("training    " + (f"last round {when}: {what}" if last else "no round finished yet")
                     + ("; a round runs now" if t.get("running") else ""))
    return lines


def _ranker_line(r: dict[str, Any]) -> str:
    """The learned ranker recall uses, in one line, with its figures beside the linear fusion."""
    when = datetime.fromtimestamp(r["created"]).strftime("%Y-%m-%d") if r.get("created") else "?"
    late = r.get("late") or {}
    fig = ""
    if late.get("linear") and late.get("ranker"):
        a, b = late["linear"], late["ranker"]
        fig = (f"; on the later {late.get('queries', '?')}: Hit@5 {a['hit5']:.3f} → {b['hit5']:.3f}, "
               f"MRR {a['mrr']:.3f} → {b['mrr']:.3f} beside the linear fusion")
    return (f"learned ranker {r['version']} re-orders the top files (fitted {when} on "
            f"{r.get('fit_queries') or '?'} held-out commits{fig})")


def _fusion_line(f: dict[str, Any]) -> str:
    """How recall's weights came to be, in one line."""
    t = f.get("last_tune") or {}
    when = datetime.fromtimestamp(t["at"]).strftime("%Y-%m-%d") if t.get("at") else ""
    now = "; tuning now in the background" if f.get("tuning_now") else ""
    status = t.get("status")
    if status in ("saved", "kept-defaults"):
        late = t["late"]
        d, u = late["default"], late["tuned"]
        fig = (f"on the later {late['queries']}: Hit@5 {d['hit5']:.3f} → {u['hit5']:.3f}, "
               f"MRR {d['mrr']:.3f} → {u['mrr']:.3f}")
        if status == "saved":
            return f"weights fitted to this repository {when} on {t['queries']} held-out commits ({fig}){now}"
        return f"default weights: the fit of {when} did not beat them on later commits ({fig}){now}"
    if status == "too-short":
        return f"default weights (history too short to tune, {when}: {t.get('reason', '')}){now}"
    if status == "failed":
        return f"{f['weights']} weights (the tune of {when} failed: {t.get('reason', '')}; see logs/tune.log){now}"
    if f["weights"] == "tuned":
        return f"tuned weights (from `lmm bench localize --tune`){now}"
    return "default weights (not tuned yet: `lmm tune`)" + now


@app.command("log")
@handled
def log_cmd(
    repo: Optional[Path] = RepoOpt,
    n: int = typer.Option(20, "-n", "--number", help="How many episodes to show."),
    kind: Optional[list[str]] = typer.Option(
        None, "--kind", "-k", help="Only this kind (commit, merge, rewrite, checkout, note, session); repeatable."),
    since: Optional[str] = typer.Option(None, "--since", help="Only episodes since a date (2026-01-31) or age (3d, 2 weeks)."),
    all_: bool = typer.Option(False, "--all", help="Include commits superseded by an amend or rebase."),
    salience: bool = typer.Option(False, "--salience", help="Show each episode's salience (how much it counts when "
                                  "lmm learns) and the reasons for it."),
    as_json: bool = JsonOpt,
) -> None:
    """Recent episodes, newest first.

    Example: `lmm log -n 20 --kind commit --since "2 weeks"`, or `lmm log --salience` for why each
    one was judged important or not
    """
    from . import core

    ws = _workspace(repo)
    rows = core.log(ws, limit=n, kinds=kind or None, since=core.parse_since(since) if since else None,
                    include_superseded=all_, salience=salience)
    if as_json:
        _emit_json(rows)
        return
    if not rows:
        print("no episodes match")
        return
    from rich.markup import escape

    console = _stdout()
    for r in rows:
        when = datetime.fromtimestamp(r["ts"]).strftime("%Y-%m-%d %H:%M")
        ref = r["source"][:8] if r["kind"] in ("commit", "merge") else r["source"].split(":")[-1][:8]
        extra = ""
        if r["files"]:
            extra = f" [dim]({len(r['files'])} file{'s' if len(r['files']) != 1 else ''})[/dim]"
        if r["superseded_by"]:
            extra += f" [dim]superseded by {r['superseded_by'][:8]}[/dim]"
        value = ""
        if salience:
            v = float(r["salience"])
            value = f"[bold]{v:.2f}[/bold] " if v >= 0.7 else f"[dim]{v:.2f}[/dim] " if v < 0.3 else f"{v:.2f} "
        console.print(f"[dim]{when}[/dim] {r['kind']:<8} [yellow]{ref}[/yellow] {value}{escape(r['title'])}{extra}")
        if salience:
            console.print(f"{'':>31}[dim]↳ {escape(_salience_why(r.get('salience_reasons') or []))}[/dim]")


def _salience_why(reasons: list[dict[str, Any]], top: int = 3) -> str:
    """The strongest reasons of a salience, one line: "revert: undoes a1b2c3d (+0.35); …"."""
    shown = [r for r in reasons if r.get("weight")][:top]
    if not shown:
        plain = [str(r.get("text", "")) for r in reasons if r.get("text")]
        return plain[0] if plain else "routine: nothing raised or lowered it"
    return "; ".join(f"{r.get('text', '')} ({float(r['weight']):+.2f})" for r in shown)


@app.command()
@handled
def remember(
    text: list[str] = typer.Argument(..., help="The note. Quote it, or pass '-' to read it from stdin.",
                                     show_default=False),
    repo: Optional[Path] = RepoOpt,
    kind: str = typer.Option("note", "--kind", help="note, decision, convention, correction or warning."),
    file: Optional[list[str]] = typer.Option(None, "--file", "-f", help="A file the note is about; repeatable."),
    as_json: bool = JsonOpt,
) -> None:
    """Remember a note about this repository: a decision, a convention, a warning.

    Example: `lmm remember "we keep auth tokens in the OS keyring, never in files" --kind decision`
    """
    from . import core

    note = sys.stdin.read() if text == ["-"] else " ".join(text)
    res = core.remember(_workspace(repo), note, files=file or [], kind=kind)
    if as_json:
        _emit_json({"id": res.id, "source": res.source, "new": res.new, "files": res.files, "redacted": res.redacted})
        return
    msg = "remembered" if res.new else "already remembered"
    if res.files:
        msg += f" (about {', '.join(res.files)})"
    if res.redacted:
        msg += "; a secret in it was redacted"
    print(msg)


@app.command()
@handled
def forget(
    what: list[str] = typer.Argument(..., help="An episode id or source (as `lmm log --json` shows it), "
                                               "or words the notes and sessions to forget contain.",
                                     show_default=False),
    repo: Optional[Path] = RepoOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Delete notes and sessions for good, from the store and every index. Commits are not
    forgotten: git has them.

    Example: `lmm forget "staging password"` (or `lmm forget 42`)
    """
    from . import core

    out = core.forget(_workspace(repo), " ".join(what))
    if as_json:
        _emit_json(out)
        return
    if not out["removed"]:
        print("nothing matched: no note or session was forgotten")
        return
    for r in out["removed"]:
        print(f"forgot {r['kind']} {r['id']}: {r['title'][:80]}")
    ad = out.get("adapters") or {}
    if ad.get("dropped"):
        retrain = {"started": "; retraining without it in the background", "off": "; run `lmm train` to retrain"}
        print(f"dropped adapter versions that learned from it: {', '.join(ad['dropped'])}; "
              f"active now: {ad.get('active') or 'the base model'}" + retrain.get(str(ad.get("retrain")), ""))


@app.command()
@handled
def watch(repo: Optional[Path] = RepoOpt, as_json: bool = JsonOpt) -> None:
    """Keep the memory up to date while you work, until Ctrl-C.

    New turns in Claude Code, Codex and aider transcripts reach the store within seconds, and the
    files you edit in the working tree feed recall's working set. One watcher per repository.
    With `--json`, one JSON line per capture.

    Example: `lmm watch` (or, in the background, `lmm watch --json >> watch.log &`)
    """
    from .errors import NotInitialised

    ws = _workspace(repo)
    if not ws.initialised:
        raise NotInitialised(str(ws.repo.root))
    # The watcher is a job (above the core): run it in this process, which it replaces, so signals reach it.
    args = [sys.executable, "-m", "lmm_cli.jobs.watch", str(ws.dir), *(["--json"] if as_json else [])]
    sys.stdout.flush()
    os.execv(sys.executable, args)


def _daemon(cmd: str, repo: Optional[Path], as_json: bool) -> None:
    """Hand over to ``jobs.daemon CMD`` (a job, above the core), which this process becomes."""
    from .errors import NotInitialised

    ws = _workspace(repo)
    if not ws.initialised:
        raise NotInitialised(str(ws.repo.root))
    sys.stdout.flush()
    os.execv(sys.executable, [sys.executable, "-m", "lmm_cli.jobs.daemon", cmd, str(ws.dir),
                              *(["--json"] if as_json else [])])


@daemon_app.command("start")
@handled
def daemon_start(repo: Optional[Path] = RepoOpt, as_json: bool = JsonOpt) -> None:
    """Start this repository's daemon, detached, at low priority (nice 15, two threads).

    It watches transcripts and edited files (as `lmm watch`), captures hook events, embeds what is
    not embedded yet, refits recall's weights when due and runs training rounds when the repository
    is quiet. While it runs, commits no longer start background jobs of their own. One per
    repository: when one runs already, this says so and exits 0.

    Example: `lmm daemon start` (or `lmm daemon start --json`)
    """
    _daemon("start", repo, as_json)


@daemon_app.command("status")
@handled
def daemon_status(repo: Optional[Path] = RepoOpt, as_json: bool = JsonOpt) -> None:
    """Whether the daemon runs: pid, uptime, what it is doing, the last round's and fit's outcome.

    Example: `lmm daemon status --json`
    """
    _daemon("status", repo, as_json)


@daemon_app.command("stop")
@handled
def daemon_stop(repo: Optional[Path] = RepoOpt, as_json: bool = JsonOpt) -> None:
    """Stop the daemon cleanly (a round in progress resumes next time). Nothing running is fine.

    Example: `lmm daemon stop`
    """
    _daemon("stop", repo, as_json)


@app.command()
@handled
def mcp(repo: Optional[Path] = RepoOpt) -> None:
    """Serve this repository's memory to an assistant over MCP (stdio): the tools recall, remember,
    forget, feedback and status, and the session brief as a resource. Assistants start it; see
    `lmm integrate`.

    Example: `claude mcp add --scope local lmm -- lmm mcp` (the repository: --repo, else
    $CLAUDE_PROJECT_DIR, else the working directory)
    """
    from .serve.mcp import serve

    serve(str(repo) if repo else None)


@app.command()
@handled
def integrate(
    tool: str = typer.Argument(..., help="claude, codex, cursor or aider.", show_default=False),
    repo: Optional[Path] = RepoOpt,
    plugin: Optional[Path] = typer.Option(None, "--plugin", help="claude only: write a Claude Code plugin (and a local "
                                                                 "marketplace) into this folder instead of the project's "
                                                                 "settings.", show_default=False),
    remove: bool = typer.Option(False, "--remove", help="Take out exactly what lmm added: the files are as before."),
    as_json: bool = JsonOpt,
) -> None:
    """Connect an assistant to this repository's memory: MCP server, hooks, rules.

    claude: hooks in .claude/settings.json (session brief, prompt recall, transcript capture) and the
    MCP server in .mcp.json. codex: the MCP server in $CODEX_HOME/config.toml, hooks in
    .codex/hooks.json, a section of AGENTS.md. cursor: .cursor/mcp.json, .cursor/rules/lmm.mdc,
    .cursor/hooks.json. aider: .aider.lmm.md, read from .aider.conf.yml. Your settings are kept;
    running it again changes nothing; `--remove` gives the files back byte for byte.

    Example: `lmm integrate claude` (or `lmm integrate claude --plugin ~/lmm-plugin`, `lmm integrate codex --remove`)
    """
    from . import core

    out = core.integrate(_workspace(repo), tool.lower(), plugin=plugin, remove=remove)
    if as_json:
        _emit_json(out)
        return
    for f in out["files"]:
        print(f"{f['status']:<10} {f['file']}")
    if not out["files"]:
        print(f"lmm was not integrated with {out['tool']}: nothing to remove")
    if out.get("next"):
        print(f"next: {out['next']}")


@app.command()
def hook(event: str = typer.Argument(..., help="session-start, user-prompt-submit, pre-compact, session-end, stop "
                                                "or after-file-edit (also as the assistant names it: SessionStart…).",
                                     show_default=False)) -> None:
    """Run one assistant hook: reads the assistant's JSON on stdin, prints context for the model
    (SessionStart: the session brief; UserPromptSubmit: a recall, only when the prompt is about
    something lmm knows) or starts the transcript capture. Always exits 0 and never prints an
    error; problems go to logs/hooks.log in the store. `lmm integrate` installs these.

    Example: `echo '{"cwd": ".", "prompt": "retry logic in the upload client"}' | lmm hook user-prompt-submit`
    """
    from .serve.hooks import main as hook_main

    raise typer.Exit(hook_main(event))


@hooks_app.command("install")
@handled
def hooks_install(repo: Optional[Path] = RepoOpt, as_json: bool = JsonOpt) -> None:
    """Install lmm's post-commit, post-merge, post-rewrite and post-checkout hooks (idempotent).

    Existing hooks are kept and still run.

    Example: `lmm hooks install`
    """
    from . import core

    ws = _workspace(repo)
    states = core.install_hooks(ws)
    manual = core.hooks_manual(ws)
    if as_json:
        _emit_json({"dir": str(ws.repo.hooks_dir), "hooks": [s.as_dict() for s in states], "manual": manual})
        return
    if manual and any(s.state != "installed" for s in states):
        print(f"hooks not installed: {manual}")
        return
    print(f"hooks installed in {ws.repo.hooks_dir}: " + ", ".join(f"{s.name} ({s.mode})" for s in states))


@hooks_app.command("uninstall")
@handled
def hooks_uninstall(repo: Optional[Path] = RepoOpt, as_json: bool = JsonOpt) -> None:
    """Remove lmm's hooks, leaving the hooks folder exactly as it was before. The memory is kept.

    Example: `lmm hooks uninstall`
    """
    from . import core

    ws = _workspace(repo)
    states = core.uninstall_hooks(ws)
    if as_json:
        _emit_json({"dir": str(ws.repo.hooks_dir), "hooks": [s.as_dict() for s in states]})
        return
    removed = [s.name for s in states if s.state == "removed"]
    print(("removed lmm from " + ", ".join(removed)) if removed else "lmm's hooks were not installed")


@hooks_app.command("status")
@handled
def hooks_status(repo: Optional[Path] = RepoOpt, as_json: bool = JsonOpt) -> None:
    """Show whether each lmm hook is installed.

    Example: `lmm hooks status --json`
    """
    from . import core

    ws = _workspace(repo)
    states = core.hook_states(ws)
    manual = core.hooks_manual(ws)
    if as_json:
        _emit_json({"dir": str(ws.repo.hooks_dir), "hooks": [s.as_dict() for s in states], "manual": manual})
        return
    for s in states:
        print(f"{s.name:<14} {s.state}" + (f" ({s.mode})" if s.mode else ""))
    if manual and any(s.state != "installed" for s in states):
        print(manual)


@bench_app.command("localize")
@handled
def bench_localize(
    repo: Optional[Path] = RepoOpt,
    holdout: int = typer.Option(100, "--holdout", help="How many of the latest non-merge commits to hold out as queries."),
    baselines: str = typer.Option("bm25,history,dense,repomap", "--baselines",
                                  help="Comma-separated baselines to run beside lmm (bm25, history, dense, repomap)."),
    no_embed: bool = typer.Option(False, "--no-embed", help="lmm without its dense channel (and no dense baseline)."),
    tune_: bool = typer.Option(False, "--tune",
                               help="Save the weights fitted on all held-out commits into this repository's store."),
    adapter: str = typer.Option("", "--adapter",
                                help="Also train the repository adapter at the cut (linear, lora, or linear,lora) "
                                     "and score recall with and without it, under fusion weights fitted at the cut "
                                     "as the background fits them."),
    as_json: bool = JsonOpt,
) -> None:
    """Time travel: cut the history before the last N commits, rebuild memory from what existed
    then, and ask each held-out commit's message which files it changed. lmm and the baselines,
    same run, one table.

    Example: `lmm bench localize --holdout 100 --tune`, or `lmm bench localize --holdout 150 --adapter linear`
    """
    from .bench.compare import bench_localize, report_markdown, tune_refused

    ws = _workspace(repo)
    names = [b.strip() for b in baselines.split(",") if b.strip()]
    say = (lambda m: print(m, file=sys.stderr, flush=True)) if sys.stderr.isatty() or not as_json else None
    forms = [f.strip() for f in adapter.split(",") if f.strip()]
    rep = bench_localize(ws, holdout=holdout, baselines=names, embed=not no_embed, tune=tune_, say=say, adapter=forms)
    if as_json:
        from dataclasses import asdict

        out = {**rep, "rows": [asdict(r) for r in rep["rows"]],
               "split": {**rep["split"], "rows": [asdict(r) for r in rep["split"]["rows"]]}}
        if rep.get("adapter") and "rows" in rep["adapter"]:
            out["adapter"] = {**rep["adapter"], "rows": [asdict(r) for r in rep["adapter"]["rows"]]}
        _emit_json(out)
    else:
        sys.stdout.write(report_markdown(rep))
        if rep["saved_weights"]:
            print("\nsaved the tuned weights: `lmm recall` now uses them")
        elif tune_ and rep["tuned"]:
            print("\nkept the default weights: the weights fitted on the early half did worse on the later half")
    if tune_ and not rep["tuned"]:
        raise tune_refused(rep)


@app.command()
@handled
def tune(
    repo: Optional[Path] = RepoOpt,
    holdout: Optional[int] = typer.Option(None, "--holdout", show_default=False,
                                          help="Latest non-merge commits to ask about (default: recall.tune_holdout "
                                               "in the config, 300; at most half the history)."),
    no_embed: bool = typer.Option(False, "--no-embed", help="Leave the dense channel out (faster; its weight stays)."),
    as_json: bool = JsonOpt,
) -> None:
    """Fit recall's fusion weights to this repository's own history, now.

    Replays the latest commits: a memory is built from the history before them, each commit's
    message asks which files it changed, and weights are fitted to rank those files first. The fit
    is kept only if weights fitted on the earlier half also beat the defaults on the later half.
    lmm runs this in the background after `lmm init` and every 500 new commits.

    Example: `lmm tune` (or `lmm tune --holdout 150 --no-embed`)
    """
    from . import core
    from .errors import HistoryTooShort

    ws = _workspace(repo)
    say = (lambda m: print(m, file=sys.stderr, flush=True)) if sys.stderr.isatty() or not as_json else None
    with _Bar() as bar:
        out = core.tune(ws, holdout=holdout, embed=False if no_embed else None, say=say, progress=bar)
    if as_json:
        _emit_json(out)
    else:
        fusion = core.status(ws)["fusion"]
        print(_fusion_line(fusion))
        rk = out.get("ranker") or {}
        if fusion.get("ranker"):
            print(_ranker_line(fusion["ranker"]))
        elif rk.get("status") in ("kept-linear", "failed", "too-short"):
            why = f"the fit on the early half was {rk['reason']}" if rk["status"] == "kept-linear" else rk.get("reason", "")
            print(f"no learned ranker, the linear fusion ranks ({why})")
    if out["status"] == "too-short":
        raise HistoryTooShort(f"not tuned: {out['reason']}")


adapters_app = typer.Typer(rich_markup_mode="markdown")  # its help: adapters_cmd's docstring
app.add_typer(adapters_app, name="adapters")


def _wide() -> Console:
    """stdout for a table: at least 150 columns when it is not a terminal (a pipe, a log)."""
    console = _stdout()
    if not sys.stdout.isatty():
        console.width = max(console.width, 150)
    return console


def _fig(m: Optional[dict[str, Any]], key: str) -> str:
    return "-" if not m or not m.get("n") else f"{m[key]:.3f}"


def _round_tables(out: dict[str, Any]) -> dict[str, Any] | None:
    """Print a round's tables (dense ranking; whole recall; the base model's challenge) and return
    the base model's challenge where it put the version in use aside."""
    from rich.table import Table

    sc = out["scores"]
    table = Table(title=f"dense file ranking: recent {out['counts']['recent']} queries, older {out['counts']['older']}")
    for col in ("", "recent Hit@5", "recent MRR", "recent R@10", "older Hit@5", "older MRR", "older R@10", "loss"):
        table.add_column(col, justify="left" if not col else "right")
    names = {"base": "base model", "incumbent": f"in use ({out['incumbent'] or 'base'})"}
    for key in ("base", "incumbent", *out["candidates"]):
        r, o = sc["recent"].get(key), sc["older"].get(key)
        label = names.get(key, f"{key} {out['candidates'].get(key, '')}")
        table.add_row(label, _fig(r, "hit5"), _fig(r, "mrr"), _fig(r, "recall"), _fig(o, "hit5"), _fig(o, "mrr"),
                      _fig(o, "recall"), f"{sc['loss'].get(key, float('nan')):.3f}")
    _wide().print(table)
    fused = sc.get("fused") or {}
    if "candidate" in fused:
        n = fused["candidate"]["n"]
        by = fused.get("ranked_by")
        whole = Table(title=f"whole recall, as it stood before the recent {n} commits"
                            + (f", re-ordered by its {by}" if by and by.startswith("learned ranker") else ""))
        for col in ("", "Hit@5", "MRR", "R@10"):
            whole.add_column(col, justify="left" if not col else "right")
        in_use = (f"{names['incumbent']}, adapter weight ×{fused.get('incumbent_dense_scale', 1.0):g}"
                  if out.get("incumbent") else names["incumbent"])
        cand = f"{out['best']}, adapter weight ×{fused.get('dense_scale', 1.0):g}"
        for key, label in (("base", "base model"), ("incumbent", in_use), ("candidate", cand)):
            whole.add_row(label, _fig(fused[key], "hit5"), _fig(fused[key], "mrr"), _fig(fused[key], "recall"))
        _wide().print(whole)
    back: dict[str, Any] | None = sc.get("back_to_base")
    if back:
        print(f"base model {_fig(back['base'], 'hit5')} Hit@5 / {_fig(back['base'], 'mrr')} MRR against "
              f"{back['from']} in use {_fig(back['in_use'], 'hit5')} / {_fig(back['in_use'], 'mrr')}, in the whole recall")
    return back


@app.command("train")
@handled
def train_cmd(
    repo: Optional[Path] = RepoOpt,
    form: Optional[str] = typer.Option(None, "--form", show_default=False,
                                       help="linear, lora or both (default: train.forms in the config: linear)."),
    accelerate: bool = typer.Option(False, "--accelerate",
                                    help="Run the training loop through Hugging Face accelerate (a GPU where there is one)."),
    as_json: bool = JsonOpt,
) -> None:
    """Train this repository's query adapter now: one round, in the foreground.

    Pairs come from the history (a commit's message → the files it changed, a note → the files it
    names, a prompt → the files edited, a useful recall → its files). The newest queries and an older
    probe slice are held out; the candidate, trained from the active version, becomes active only if
    it ranks files at least as well as the version in use on both, and the whole recall (as it
    stood before the recent commits) is clearly better with it (`[train] judge` in the config). The
    adapter ranks as a channel of its own beside the dense channel; the round also fits how much
    weight recall should give it (its "adapter weight", a multiple of the dense channel's), on
    queries other than those it is judged on.
    Every candidate is kept as a version (`lmm adapters`). lmm runs rounds in the background as
    history arrives. Run again with nothing changed (the same pairs, versions and recall), it says so
    instead of training the same candidate twice.

    Example: `lmm train` (or `lmm train --form both --json`)
    """
    from . import core

    ws = _workspace(repo)
    say = (lambda m: print(m, file=sys.stderr, flush=True)) if sys.stderr.isatty() or not as_json else None
    with _Bar() as bar:
        out = core.train(ws, forms=form, accelerate=accelerate, say=say, progress=bar)
    if as_json:
        _emit_json(out)
        return
    last = out.get("last") if out["status"] == "unchanged" else None
    if isinstance(last, dict) and last.get("status") in ("promoted", "refused") and last.get("scores"):
        _round_tables(last)  # the round it would repeat, as it was shown then
    if out["status"] not in ("promoted", "refused"):
        print(f"no round: {out['reason']}")
        return
    back = _round_tables(out)
    if out["status"] == "promoted":
        print(f"{out['active']} is active: {out['reason']} ({out['seconds']:.0f}s)")
    elif back:
        print(f"the candidate is {out['reason']}; back to the base model ({back['from']} put aside, "
              f"`lmm adapters rollback` restores it): {back['reason']} ({out['seconds']:.0f}s)")
    else:
        print(f"kept {out['incumbent'] or 'the base model'}: the candidate is {out['reason']} ({out['seconds']:.0f}s)")


@adapters_app.callback(invoke_without_command=True)
@handled
def adapters_cmd(ctx: typer.Context, repo: Optional[Path] = RepoOpt, as_json: bool = JsonOpt) -> None:
    """The adapter versions: when, which form, on what data, held-out scores, size, which is active,
    and why a refused one was refused.

    Example: `lmm adapters` (or `lmm adapters rollback`, `lmm adapters rollback v0003`)
    """
    if ctx.invoked_subcommand is not None:
        return
    from . import core

    out = core.adapters(_workspace(repo))
    if as_json:
        _emit_json(out)
        return
    if not out["versions"]:
        last = out.get("last_round") or {}
        print("no adapter trained yet" + (f" (last round: {last.get('status')}: {last.get('reason', '')})" if last else
                                          ": `lmm train` runs a round"))
        return
    from rich.markup import escape
    from rich.table import Table

    table = Table()
    for col in ("version", "created", "form", "trained on", "recent Hit@5", "older Hit@5", "adapter weight", "size",
                "status"):
        table.add_column(col)
    aside = (out.get("last_round") or {}).get("back_to_base")
    for v in out["versions"]:
        rec, old = v["scores"].get("recent") or {}, v["scores"].get("older") or {}
        w = v.get("window") or {}
        data = f"{v['pairs']:,} pairs ({w.get('new', 0):,} new, {w.get('replay', 0):,} replayed)"
        status = "[bold green]active[/]" if v["active"] else (
            ("promoted, put aside by the last round" if v["name"] == aside else "promoted") if v["promoted"] else
            f"refused: {escape(str(v.get('verdict') or ''))}")
        table.add_row(v["name"], datetime.fromtimestamp(v["created"]).strftime("%Y-%m-%d %H:%M"), v["form"], data,
                      f"{_fig(rec.get('incumbent'), 'hit5')} → {_fig(rec.get('candidate'), 'hit5')}",
                      f"{_fig(old.get('incumbent'), 'hit5')} → {_fig(old.get('candidate'), 'hit5')}",
                      f"×{v.get('dense_scale', 1.0):g}", f"{v['size_bytes'] / 1024:.0f} KB", status)
    _wide().print(table)
    if out["active"] is None:
        print("active: the base model (no adapter)" + (
            f"; the last round put {aside} aside: {out['last_round']['scores']['back_to_base']['reason']}"
            if aside else ""))
    if out["training_now"]:
        print("a training round is running now")


@adapters_app.command("rollback")
@handled
def adapters_rollback(
    version: Optional[str] = typer.Argument(None, help="The version to go back to (default: the one active before "
                                                         "the current one); `base` for no adapter.", show_default=False),
    repo: Optional[Path] = RepoOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Go back to the previously active adapter version (or a named one), at once.

    Example: `lmm adapters rollback` (or `lmm adapters rollback v0002`, `lmm adapters rollback base`)
    """
    from . import core

    out = core.adapters_rollback(_workspace(repo), version)
    if as_json:
        _emit_json(out)
        return
    print(f"active: {out['active'] or 'the base model'} (was {out['before'] or 'the base model'})")


def run() -> None:
    """The CLI (``lmm_cli.entry.run`` is the command's entry point: it sends hooks past this)."""
    app()
