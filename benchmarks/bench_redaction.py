"""Redaction: leaks on the planted corpus, and false positives on ordinary code, against detect-secrets.

    python benchmarks/bench_redaction.py [REPO ...] [--top 15] [--json]

(a) Leaks: every planted value of ``tests/privacy/secrets_corpus.py`` (CORPUS, the rule-per-kind
    corpus, and PLANTED, the values planted end to end: prose, env-style names, cut hunk headers,
    key bodies without their BEGIN line) is run through each scanner; a value leaks when it, or for
    a text cut short the part of it that is there, survives in the output.
(b) False positives: every tracked text file of this repository and of each REPO given is scanned
    whole; the figure is the fraction of identifier tokens (``[A-Za-z_][A-Za-z0-9_]*``) that fall
    inside a redacted span. The repositories are assumed to hold no live secret, so every redacted
    token counts as wrong; the worst offenders are listed (rule, example) so that a reader can judge
    the ones that are test fixtures.

The same two figures are printed for detect-secrets (Yelp's maintained scanner, default plugins and
filters, through ``scan_file``: each corpus text is written to a file, once as ``.py`` and once as
``.yaml`` since its keyword rules depend on the file type, and the union is taken), when it is importable. It is not a dependency of lmm; to compare, install it beside the benchmark:

    pip install --target /tmp/dslib detect-secrets && PYTHONPATH=/tmp/dslib python benchmarks/bench_redaction.py

Real repositories to try: ``git clone -q ../shared/repos/werkzeug.bundle /tmp/werkzeug`` (and click,
starlette, fd, koa, cobra). The benchmark runs with none of them (this repository alone).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "privacy"))

from lmm_cli.privacy.files import is_secret_file  # noqa: E402
from lmm_cli.privacy.redact import find_secrets, redact_cut  # noqa: E402

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_FILE_BYTES = 1 << 20
Span = tuple[int, int, str]
Scanner = Callable[[str], list[Span]]


# --------------------------------------------------------------------------
# The scanners, as "text -> spans"
# --------------------------------------------------------------------------


def ours(text: str) -> list[Span]:
    return find_secrets(text)


def _detect_secrets() -> tuple[Scanner, Callable[[Path, str], list[Span]]] | None:
    try:
        from detect_secrets.core.scan import scan_file
        from detect_secrets.settings import default_settings
    except ImportError:
        return None

    def spans_in_line(line: str, offset: int, values: Iterable[tuple[str, str]]) -> list[Span]:
        out = []
        for value, kind in values:
            if not value:
                continue
            at = line.find(value)
            while at >= 0:
                out.append((offset + at, offset + at + len(value), kind))
                at = line.find(value, at + 1)
        return out

    def on_text(text: str) -> list[Span]:
        # detect-secrets scans files; its keyword rules depend on the file's type (quotes required
        # in code, not in config). A text of unknown kind is scanned as both, and the union kept.
        out: list[Span] = []
        with tempfile.TemporaryDirectory() as d:
            for suffix in (".py", ".yaml"):
                f = Path(d) / ("text" + suffix)
                f.write_text(text, encoding="utf-8")
                out += on_file(f, text)
        return out

    def on_file(path: Path, text: str) -> list[Span]:
        lines = text.split("\n")
        starts = [0]
        for line in lines:
            starts.append(starts[-1] + len(line) + 1)
        out: list[Span] = []
        with default_settings():
            by_line: dict[int, list[tuple[str, str]]] = defaultdict(list)
            for s in scan_file(str(path)):
                by_line[s.line_number - 1].append((s.secret_value or "", s.type))
            for n, values in by_line.items():
                if 0 <= n < len(lines):
                    out += spans_in_line(lines[n], starts[n], values)
        return out

    return on_text, on_file


# --------------------------------------------------------------------------
# (a) Leaks on the planted corpus
# --------------------------------------------------------------------------


def _masked(text: str, spans: list[Span]) -> str:
    out, last = [], 0
    for a, b, _ in sorted(spans):
        if a < last:
            a = last
        if b <= a:
            continue
        out += [text[last:a], "\x00"]
        last = b
    out.append(text[last:])
    return "".join(out)


def _visible_part(value: str, text: str) -> str:
    """What of ``value`` the text holds: all of it, or the longest prefix left by a cut."""
    if value in text:
        return value
    for n in range(len(value) - 1, 5, -1):
        if value[:n] in text:
            return value[:n]
    return ""


def corpus() -> list[tuple[str, str, str, bool]]:
    """(kind, value, text, cut): ``cut`` texts were cut by git at 80 bytes (hunk-header context)."""
    import secrets_corpus as sc

    items = [(k, v, t, False) for k, v, t in sc.CORPUS]
    items += [(k, v, t, False) for k, v, t in sc.PLANTED]
    items += [(k, v, line[:80], True) for k, v, line in sc.CUT_HEADERS]
    return items


def leaks(scan: Scanner, items: list[tuple[str, str, str, bool]], *, ours_cut: bool) -> tuple[int, list[str]]:
    missed = []
    for kind, value, text, cut in items:
        part = _visible_part(value, text)
        if not part:
            continue
        if cut and ours_cut:
            out = redact_cut(text)  # what capture does with a hunk-header context git cut short
        else:
            out = _masked(text, scan(text))
        if part in out:
            missed.append(f"{kind}: {text[:90]!r}")
    return len(missed), missed


# --------------------------------------------------------------------------
# (b) False positives on ordinary code
# --------------------------------------------------------------------------


def tracked_files(repo: Path, exclude: list[str] | None = None) -> list[Path]:
    out = subprocess.run(["git", "-C", str(repo), "ls-files", "-z"], capture_output=True, check=True).stdout
    files = []
    for raw in out.split(b"\0"):
        if not raw:
            continue
        rel = raw.decode("utf-8", "replace")
        p = repo / rel
        if is_secret_file(rel) or not p.is_file() or p.is_symlink():
            continue  # lmm never reads secret files
        if exclude and any(fnmatch.fnmatch(rel, pat) for pat in exclude):
            continue
        files.append(p)
    return files


def read_text(p: Path) -> str | None:
    try:
        data = p.read_bytes()
    except OSError:
        return None
    if len(data) > MAX_FILE_BYTES or b"\0" in data[:8192]:
        return None
    return data.decode("utf-8", "replace")


class FpStats:
    def __init__(self) -> None:
        self.tokens = 0
        self.wrong = 0
        self.bytes = 0
        self.seconds = 0.0
        self.by_rule: Counter[str] = Counter()
        self.examples: dict[str, list[str]] = defaultdict(list)

    def add(self, rel: str, text: str, spans: list[Span], seconds: float) -> None:
        self.seconds += seconds
        self.bytes += len(text.encode("utf-8", "replace"))
        idents = [(m.start(), m.end()) for m in _IDENT.finditer(text)]
        self.tokens += len(idents)
        if not spans:
            return
        spans = sorted(spans)
        j = 0
        hit_per_span: Counter[int] = Counter()
        for a, b in idents:
            while j < len(spans) and spans[j][1] <= a:
                j += 1
            k = j
            while k < len(spans) and spans[k][0] < b:
                if spans[k][1] > a:
                    hit_per_span[k] += 1
                    break
                k += 1
            else:
                continue
            self.wrong += 1
        for k, n in hit_per_span.items():
            a, b, rule = spans[k]
            self.by_rule[rule] += n
            if len(self.examples[rule]) < 3:
                line_no = text.count("\n", 0, a) + 1
                start = text.rfind("\n", 0, a) + 1
                end = text.find("\n", b)
                line = text[start:end if end >= 0 else len(text)].strip()
                self.examples[rule].append(f"{rel}:{line_no}: {line[:110]}")

    @property
    def rate(self) -> float:
        return self.wrong / self.tokens if self.tokens else 0.0


def false_positives(repos: list[Path], on_file: Callable[[Path, str], list[Span]],
                    exclude: list[str] | None = None) -> dict[str, FpStats]:
    out: dict[str, FpStats] = {}
    for repo in repos:
        stats = FpStats()
        for p in tracked_files(repo, exclude):
            text = read_text(p)
            if text is None:
                continue
            t = time.perf_counter()
            spans = on_file(p, text)
            stats.add(str(p.relative_to(repo)), text, spans, time.perf_counter() - t)
        out[str(repo)] = stats
    return out


# --------------------------------------------------------------------------


def _report(name: str, items: list[tuple[str, str, str, bool]], leak: tuple[int, list[str]],
            fps: dict[str, FpStats], top: int) -> dict[str, Any]:
    n_leaks, missed = leak
    tokens = sum(s.tokens for s in fps.values())
    wrong = sum(s.wrong for s in fps.values())
    mb = sum(s.bytes for s in fps.values()) / 1e6
    secs = sum(s.seconds for s in fps.values())
    print(f"\n== {name}")
    print(f"  (a) leaks: {n_leaks} of {len(items)} planted values ({len({k for k, *_ in items})} kinds)")
    for m in missed[:top]:
        print(f"      missed {m}")
    print(f"  (b) false positives: {wrong} of {tokens} identifier tokens = {100 * wrong / max(tokens, 1):.4f}%"
          f"  ({mb:.1f} MB in {secs:.2f}s, {mb / max(secs, 1e-9):.1f} MB/s)")
    for repo, s in fps.items():
        print(f"      {Path(repo).name:<12} {s.wrong:>6} / {s.tokens:<8} = {100 * s.rate:.4f}%")
    by_rule: Counter[str] = Counter()
    examples: dict[str, list[str]] = defaultdict(list)
    for s in fps.values():
        by_rule.update(s.by_rule)
        for r, ex in s.examples.items():
            examples[r] += [f"{Path(repo).name}/{e}" for repo, st in fps.items() if st is s for e in ex]
    if by_rule:
        print("      worst offenders (rule: tokens, examples):")
        for rule, n in by_rule.most_common(top):
            print(f"        {rule}: {n}")
            for e in examples[rule][:2]:
                print(f"            {e}")
    return {
        "leaks": n_leaks, "planted": len(items), "missed": missed,
        "fp_tokens": wrong, "tokens": tokens, "fp_rate": wrong / max(tokens, 1),
        "seconds": secs, "megabytes": mb,
        "per_repo": {r: {"wrong": s.wrong, "tokens": s.tokens, "rate": s.rate} for r, s in fps.items()},
        "worst": [{"rule": r, "tokens": n, "examples": examples[r][:3]} for r, n in by_rule.most_common(top)],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("repos", nargs="*", type=Path, help="more git repositories to measure false positives on")
    ap.add_argument("--top", type=int, default=12, help="offenders and misses to list")
    ap.add_argument("--json", action="store_true", help="also print the figures as one JSON object")
    ap.add_argument("--no-self", action="store_true", help="leave this repository out of (b)")
    ap.add_argument("--exclude", action="append", default=[], metavar="GLOB",
                    help="leave files matching GLOB (relative to their repository) out of (b); repeatable. "
                         "E.g. --exclude 'tests/privacy/*' --exclude 'lmm_cli/privacy/*': lmm's own secret corpus "
                         "and rule docs are fake secrets by design")
    args = ap.parse_args(argv)

    repos = ([] if args.no_self else [ROOT]) + [r.resolve() for r in args.repos if (r / ".git").exists()]
    for r in args.repos:
        if not (r / ".git").exists():
            print(f"skipping {r}: not a git repository")
    items = corpus()
    result: dict[str, Any] = {"repos": [str(r) for r in repos]}

    def our_file(_p: Path, text: str) -> list[Span]:
        return ours(text)

    result["lmm"] = _report("lmm (lmm_cli/privacy)", items, leaks(ours, items, ours_cut=True),
                            false_positives(repos, our_file, args.exclude), args.top)
    ds = _detect_secrets()
    if ds is None:
        print("\n== detect-secrets: not installed "
              "(pip install --target /tmp/dslib detect-secrets; PYTHONPATH=/tmp/dslib python benchmarks/bench_redaction.py)")
        result["detect_secrets"] = "not installed"
    else:
        on_text, on_file = ds
        result["detect_secrets"] = _report("detect-secrets (default plugins and filters)", items,
                                           leaks(on_text, items, ours_cut=False),
                                           false_positives(repos, on_file, args.exclude), args.top)
    if args.json:
        print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
