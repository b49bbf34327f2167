#!/usr/bin/env python3
"""Generate a deterministic git repository with a realistic shape, for lmm benchmarks.

What it produces
    A local git repository whose history looks like a mid-sized product monorepo
    worked on by a dozen people over about three years:

    * ~800-1,200 files at HEAD for 5,000 commits (fewer for shorter histories) in
      Python, TypeScript/JavaScript, Go, Rust, Java and C/C++, plus Markdown, YAML,
      TOML and JSON configuration, a few PNG files and test directories, organised in
      modules (``src/auth/``, ``services/api/``, ``web/components/billing/``,
      ``crates/parser/``, ``jvm/billing-service/...``, ``native/codec/`` ...);
    * code made of functions, classes and methods named from a domain vocabulary
      (session, token, invoice, upload, cache, retry, parser ...), with imports
      between files so that a reference graph exists;
    * a history of features, small multi-hunk edits, bug fixes concentrated on a few
      fragile files, renames and moves of files and whole directories (content kept
      nearly identical so git detects them), deletions, reverts
      (``Revert "<subject>"`` / ``This reverts commit <sha>.``), feature branches
      merged with two-parent merge commits (about 5% of commits), a few large
      commits (a vendored library, regenerated fixtures, an import-sorting sweep) and
      dependency bumps; subjects name the files and symbols they change, a fraction
      use conventional-commit prefixes and some carry a body with the reason;
    * local branches ``main`` (checked out, work tree clean) plus a couple of
      unmerged feature branches.

    The same ``--seed`` and ``--commits`` always give the same commit ids.

How it works
    One ``git fast-import`` process is fed the whole history (marks, inline blobs);
    revert messages get the real sha of the reverted commit through ``get-mark``.
    5,000 commits take about 7-10 s on a 2-core machine, checkout included.

Usage
    python benchmarks/genrepo.py OUT_DIR [--commits 5000] [--seed 1]

    OUT_DIR must not exist or be empty. From Python::

        from benchmarks.genrepo import generate      # or put benchmarks/ on sys.path
        generate(Path("/tmp/repo"), commits=5000, seed=1)

    The benchmarks (bench_backfill.py, bench_hook_overhead.py) use it when no
    ``--repo`` is given; to measure your own repository pass ``--repo PATH`` to them
    instead (they work on a clone and never modify it).

Stdlib only.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from string import Template
from typing import NamedTuple

__all__ = ["generate"]

# --------------------------------------------------------------------------- vocabulary

NOUNS = [
    "session", "token", "invoice", "upload", "cache", "retry", "parser", "user", "account",
    "payment", "webhook", "queue", "worker", "config", "report", "search", "index",
    "notification", "email", "audit", "permission", "role", "tenant", "subscription", "plan",
    "order", "cart", "inventory", "shipment", "metric", "event", "schedule", "job", "backup",
    "snapshot", "export", "storage", "bucket", "image", "thumbnail", "stream", "buffer",
    "connection", "pool", "client", "request", "response", "limit", "lock", "lease",
    "migration", "schema", "record", "ledger", "refund", "charge", "credit", "discount",
    "coupon", "tax", "currency", "price", "quote", "customer", "profile", "device", "login",
    "password", "scope", "grant", "key", "secret", "signature", "checksum", "manifest",
    "chunk", "segment", "batch", "cursor", "page", "filter", "query", "header", "cookie",
    "tag", "label", "comment", "draft", "template", "attachment", "channel", "message",
    "thread", "digest", "feed", "policy", "quota", "region", "endpoint", "route", "payload",
    "frame", "packet", "codec", "pixel", "layer", "node", "graph", "lexer", "span", "offset",
]
VERBS = [
    "get", "fetch", "load", "save", "create", "update", "delete", "validate", "parse",
    "render", "refresh", "expire", "retry", "flush", "compute", "build", "resolve",
    "normalize", "serialize", "encode", "decode", "sign", "verify", "dispatch", "handle",
    "schedule", "cancel", "apply", "merge", "split", "reconcile", "sync", "upload",
    "download", "enqueue", "drain", "evict", "invalidate", "prune", "rotate", "reset",
    "register", "lookup", "format", "collect", "emit", "track", "notify", "archive",
    "restore", "charge", "refund", "authorize", "revoke", "compress", "hash", "match",
    "rank", "paginate", "throttle", "acquire", "release", "persist", "prefetch",
]
CLASS_SUFFIX = [
    "Manager", "Service", "Client", "Store", "Repository", "Handler", "Controller",
    "Builder", "Cache", "Queue", "Worker", "Scheduler", "Resolver", "Validator", "Parser",
    "Registry", "Provider", "Adapter", "Policy", "Tracker",
]
ADJ = ["expired", "empty", "missing", "duplicate", "partial", "malformed", "stale",
       "negative", "oversized", "unicode", "concurrent", "zero-length", "unsigned", "nested"]
PROBLEMS = ["race", "leak", "off-by-one error", "double counting", "timeout handling",
            "null dereference", "overflow", "rounding error", "retry loop",
            "cache invalidation", "encoding bug", "deadlock", "panic", "infinite loop",
            "memory growth", "ordering bug"]
CONDITIONS = [
    "the upstream returned a 429", "two workers picked up the same job",
    "the {noun} expired mid-request", "the input was empty", "the cache was cold",
    "clocks were skewed between hosts", "the connection pool was exhausted",
    "a retry overlapped with the original request", "the {noun} contained non-ASCII text",
    "a deploy restarted the worker mid-batch", "the {noun} list was larger than one page",
]
BAD_OUTCOMES = ["be processed twice", "be dropped silently", "leak a connection",
                "return stale data", "block the event loop", "raise an unhandled exception",
                "overflow the buffer", "charge the customer twice", "hang until timeout",
                "log the secret in clear text"]
SCENARIOS = ["handles_empty_input", "rejects_expired_token", "retries_on_timeout",
             "returns_cached_value", "handles_unicode", "preserves_order", "is_idempotent",
             "handles_concurrent_calls", "rounds_half_up", "respects_limit",
             "propagates_errors", "skips_deleted_records"]

AUTHORS = [
    # name, email, tz, weight, active from, active to (fractions of the history)
    ("Alice Chen", "alice.chen@acme.io", "-0800", 9, 0.00, 1.00),
    ("Bob Martins", "bob@acme.io", "+0100", 7, 0.00, 0.80),
    ("Carlos Ruiz", "carlos.ruiz@acme.io", "-0500", 5, 0.05, 1.00),
    ("Dana Okafor", "dana.okafor@acme.io", "+0000", 6, 0.10, 1.00),
    ("Erik Johansson", "erik.j@acme.io", "+0100", 3, 0.00, 0.45),
    ("Fatima Zahra", "fatima@acme.io", "+0100", 4, 0.30, 1.00),
    ("Gao Wei", "gao.wei@acme.io", "+0800", 4, 0.20, 0.90),
    ("Hannah Schmidt", "hannah.schmidt@acme.io", "+0200", 3, 0.50, 1.00),
    ("Ivan Petrov", "ivan.petrov@gmail.com", "+0300", 1, 0.15, 0.60),
    ("José Álvarez", "jose.alvarez@acme.io", "+0100", 3, 0.40, 1.00),
    ("Kenji Tanaka", "kenji@acme.io", "+0900", 2, 0.60, 1.00),
    ("Mia Nguyen", "mia.nguyen@acme.io", "+0700", 2, 0.75, 1.00),
]
BOT = ("dependabot[bot]", "49699333+dependabot[bot]@users.noreply.github.com", "+0000")

DEPS = {
    "py": ["requests", "pydantic", "sqlalchemy", "fastapi", "uvicorn", "redis", "boto3",
           "httpx", "structlog", "celery", "alembic", "orjson"],
    "ts": ["react", "react-dom", "typescript", "vite", "zod", "axios", "@tanstack/react-query",
           "date-fns", "eslint", "vitest", "prettier", "clsx"],
    "go": ["github.com/stretchr/testify", "golang.org/x/sync", "github.com/go-chi/chi/v5",
           "go.uber.org/zap", "github.com/prometheus/client_golang", "google.golang.org/grpc"],
    "rs": ["serde", "tokio", "clap", "anyhow", "thiserror", "tracing", "bytes", "memchr"],
}

START_TS = 1609750800  # 2021-01-04 09:00 UTC
SPAN = 3 * 365 * 86400

LANG_OF_KIND = {"py": "py", "ts": "ts", "tsx": "ts", "js": "js", "go": "go", "rs": "rs",
                "java": "java", "c": "c", "h": "c", "cpp": "cpp", "hpp": "cpp"}
HEADER_KINDS = {"h", "hpp"}

LAYOUTS = {
    "py": [("src/{n}", "tests/{n}", None)],
    "go": [("services/{n}", None, None), ("pkg/{n}", None, None)],
    "ts": [("web/components/{n}", "web/__tests__/components/{n}", None),
           ("web/{n}", "web/__tests__/{n}", None),
           ("packages/{n}/src", "packages/{n}/test", "packages/{n}")],
    "js": [("tools/{n}", None, None), ("web/legacy/{n}", None, None)],
    "rs": [("crates/{n}/src", "crates/{n}/tests", "crates/{n}")],
    "java": [("jvm/{n}-service/src/main/java/com/acme/{n}",
              "jvm/{n}-service/src/test/java/com/acme/{n}", "jvm/{n}-service")],
    "c": [("native/{n}", "native/{n}/tests", None)],
    "cpp": [("native/{n}", "native/{n}/tests", None)],
}
MODULE_NAMES = {
    "py": ["core", "auth", "billing", "uploads", "cache", "search", "notifications", "reports",
           "utils", "scheduler", "storage", "webhooks", "audit", "accounts", "exports",
           "ingest", "metrics", "permissions", "payments", "emails", "analytics", "tenancy",
           "quotas", "pricing", "catalog", "sessions", "invoices", "feeds", "workflows"],
    "go": ["api", "queue", "worker", "gateway", "ratelimit", "health", "telemetry", "ledger",
           "backoff", "events", "cron", "notifier", "proxy", "locks", "registry"],
    "ts": ["common", "api", "hooks", "billing", "auth", "uploads", "dashboard", "settings",
           "store", "search", "layout", "reports", "notifications", "ui", "sdk", "forms",
           "charts", "admin"],
    "js": ["codegen", "release", "bundler", "legacy-admin", "migrate", "lint-rules"],
    "rs": ["parser", "storage", "cli", "index", "protocol", "compress", "diff", "watcher",
           "tokenizer", "wire"],
    "java": ["billing", "ledger", "notifications", "reporting", "inventory", "gateway",
             "pricing", "audit"],
    "c": ["codec", "crc", "ringbuf", "imaging", "lz", "hashmap"],
    "cpp": ["render", "geometry", "audio", "tracker", "mesh", "physics"],
}
MODULE_LANG_WEIGHTS = [("py", 30), ("ts", 22), ("go", 16), ("rs", 8), ("java", 9), ("js", 5),
                       ("c", 5), ("cpp", 5)]
LANG_FACTOR = {"py": 1.1, "ts": 1.2, "go": 1.2, "rs": 0.9, "java": 1.0, "js": 0.5, "c": 0.5, "cpp": 0.5}
KEYWORDS = {"if", "for", "while", "switch", "catch", "func", "fn", "return", "def", "with",
            "elif", "else", "match", "sizeof", "await", "new", "assert", "throw"}

# --------------------------------------------------------------------------- names


def words_of(name: str) -> list[str]:
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    return [w.lower() for w in re.split(r"[_\-\s.]+", s) if w]


def snake(ws: list[str]) -> str:
    return "_".join(ws)


def camel(ws: list[str]) -> str:
    return ws[0] + "".join(w.capitalize() for w in ws[1:])


def pascal(ws: list[str]) -> str:
    return "".join(w.capitalize() for w in ws)


def fn_name(lang: str, ws: list[str]) -> str:
    if lang in ("py", "rs", "c"):
        return snake(ws)
    if lang == "go":
        return pascal(ws)
    return camel(ws)


def var_name(lang: str, ws: list[str]) -> str:
    return snake(ws) if lang in ("py", "rs", "c") else camel(ws)


def stem_name(kind: str, ws: list[str]) -> str:
    if kind in ("java", "tsx"):
        return pascal(ws)
    if kind in ("ts", "js"):
        return camel(ws)
    return snake(ws)


# --------------------------------------------------------------------------- model


class Unit(NamedTuple):
    kind: str  # fn, class, const, test, dep, sec, line
    name: str
    lines: tuple


class F:
    """One file version. Immutable by convention; ``evolve`` makes a changed copy."""

    __slots__ = ("fid", "kind", "mod", "doc", "imports", "units", "head", "tail", "data",
                 "mode", "sep", "_rp", "_rb")

    def __init__(self, fid, kind, mod=None, doc="", imports=(), units=(), head=(), tail=(),
                 data=None, mode="100644", sep=1):
        self.fid, self.kind, self.mod, self.doc = fid, kind, mod, doc
        self.imports, self.units, self.head, self.tail = tuple(imports), tuple(units), tuple(head), tuple(tail)
        self.data, self.mode, self.sep = data, mode, sep
        self._rp = None
        self._rb = None

    def evolve(self, **kw) -> F:
        d = {k: getattr(self, k) for k in ("fid", "kind", "mod", "doc", "imports", "units",
                                            "head", "tail", "data", "mode", "sep")}
        d.update(kw)
        return F(**d)


class Module:
    def __init__(self, mid: int, lang: str, layout: tuple, name: str, hot: float):
        self.mid, self.lang, self.layout, self.name, self.hot = mid, lang, layout, name, hot

    def dirs(self, name: str | None = None) -> tuple:
        n = name or self.name
        return tuple(t.format(n=n) if t else None for t in self.layout)

    @property
    def src(self) -> str:
        return self.dirs()[0]

    @property
    def test(self) -> str | None:
        return self.dirs()[1]


class Tx:
    """The change set of one commit, on top of a parent state."""

    __slots__ = ("base", "state", "touched")

    def __init__(self, base: dict):
        self.base = base
        self.state = dict(base)
        self.touched: list[str] = []

    def put(self, path: str, f: F) -> None:
        self.state[path] = f
        self.touched.append(path)

    def rm(self, path: str) -> None:
        if path in self.state:
            del self.state[path]
            self.touched.append(path)

    def changes(self) -> list:
        seen, out = set(), []
        for p in self.touched:
            if p in seen:
                continue
            seen.add(p)
            b, a = self.base.get(p), self.state.get(p)
            if b is not a:
                out.append((p, b, a))
        return out


def is_test_path(p: str) -> bool:
    base = p.rsplit("/", 1)[-1]
    return ("/tests/" in p or "/test/" in p or "/__tests__/" in p or p.startswith("tests/")
            or base.startswith("test_") or base.endswith("_test.go") or ".test." in base
            or base.endswith("Test.java"))


# --------------------------------------------------------------------------- code synthesis

IND = {"py": "    ", "go": "\t", "rs": "    ", "java": "    ", "ts": "  ", "js": "  ",
       "c": "    ", "cpp": "    "}

STMTS = {
    "py": [
        (4, ["$v = $ref($a)"]),
        (2, ["if $a is None:", ">raise ValueError(\"$noun is required\")"]),
        (2, ["logger.debug(\"$verb $noun %s\", $a)"]),
        (1, ["for item in $a:", ">$ref(item)"]),
        (1, ["$v = getattr($a, \"$key\", $num)"]),
        (1, ["$v = min($num, len($a) * $num2)"]),
        (1, ["if not $a:", ">return None"]),
    ],
    "go": [
        (4, ["$v, err := $ref(ctx, $a)", "if err != nil {",
             ">return nil, fmt.Errorf(\"$verb $noun: %w\", err)", "}"]),
        (2, ["if $a == nil {", ">return nil, errors.New(\"$noun is nil\")", "}"]),
        (2, ["log.Printf(\"$verb $noun: %v\", $a)"]),
        (1, ["for _, item := range $a.Items {", ">_ = $ref(ctx, item)", "}"]),
        (1, ["$v := min($num, len($a.Items))"]),
        (1, ["$v := time.Duration($num) * time.Millisecond"]),
    ],
    "rs": [
        (4, ["let $v = $ref(&$a)?;"]),
        (2, ["if $a.is_empty() {", ">return Err(Error::Invalid(\"$noun\".into()));", "}"]),
        (2, ["tracing::debug!(\"$verb $noun {:?}\", $a);"]),
        (1, ["for item in $a.iter() {", ">$ref(item)?;", "}"]),
        (1, ["let $v = $a.len().min($num);"]),
        (1, ["let $v: u64 = $num;"]),
    ],
    "java": [
        (4, ["var $v = $ref($a);"]),
        (2, ["if ($a == null) {", ">throw new IllegalArgumentException(\"$noun must not be null\");", "}"]),
        (2, ["log.debug(\"$verb $noun {}\", $a);"]),
        (1, ["for (var item : $a.items()) {", ">$ref(item);", "}"]),
        (1, ["var $v = Math.min($num, $a.size());"]),
        (1, ["final int $v = $num;"]),
    ],
    "ts": [
        (4, ["const $v = await $ref($a);"]),
        (2, ["if (!$a) {", ">throw new Error(\"$noun is required\");", "}"]),
        (2, ["logger.debug(\"$verb $noun\", $a);"]),
        (1, ["for (const item of $a.items) {", ">await $ref(item);", "}"]),
        (1, ["const $v = Math.min($num, $a.items.length);"]),
        (1, ["const $v = $num;"]),
    ],
    "c": [
        (4, ["int $v = $ref($a);"]),
        (2, ["if ($a == NULL) {", ">return -EINVAL;", "}"]),
        (1, ["LOG_DEBUG(\"$verb $noun %p\", (void *)$a);"]),
        (1, ["for (size_t i = 0; i < $num; i++) {", ">$ref(&$a[i]);", "}"]),
        (1, ["size_t $v = $num;"]),
    ],
    "cpp": [
        (4, ["auto $v = $ref($a);"]),
        (2, ["if (!$a) {", ">throw std::invalid_argument(\"$noun\");", "}"]),
        (1, ["spdlog::debug(\"$verb $noun {}\", $a);"]),
        (1, ["for (const auto& item : $a) {", ">$ref(item);", "}"]),
        (1, ["constexpr int $v = $num;"]),
    ],
}
STMTS["js"] = STMTS["ts"]
GUARD = {lang: opts[1][1] for lang, opts in STMTS.items()}
RETURN = {"py": "return $a", "go": "return $a, nil", "rs": "Ok($a)", "java": "return $a;",
          "ts": "return $a;", "js": "return $a;", "c": "return $a;", "cpp": "return $a;"}
STD_REFS = {
    "py": ["json.dumps", "time.monotonic", "hashlib.sha256", "sorted", "dict"],
    "go": ["json.Marshal", "strings.TrimSpace", "sort.Strings"],
    "rs": ["serde_json::to_vec", "std::mem::take", "Vec::from"],
    "java": ["Objects.requireNonNull", "List.copyOf", "Optional.ofNullable"],
    "ts": ["JSON.stringify", "Object.freeze", "Promise.resolve"],
    "js": ["JSON.stringify", "Object.freeze", "Promise.resolve"],
    "c": ["memset", "strlen", "free"],
    "cpp": ["std::move", "std::size", "std::to_string"],
}
STD_HEAD = {
    "py": [["import logging"], ["import json", "import logging"], ["import logging", "import time"],
           ["import hashlib", "import logging"], ["import logging", "from dataclasses import dataclass"]],
    "go": [["context", "errors", "fmt", "log"], ["context", "encoding/json", "errors", "fmt", "log", "time"],
           ["context", "errors", "fmt", "log", "sort", "strings"]],
    "rs": [["use crate::error::Error;"], ["use crate::error::Error;", "use std::collections::HashMap;"],
           ["use crate::error::Error;", "use serde::{Deserialize, Serialize};"]],
    "java": [["import java.util.List;", "import org.slf4j.Logger;", "import org.slf4j.LoggerFactory;"],
             ["import java.util.List;", "import java.util.Objects;", "import java.util.Optional;",
              "import org.slf4j.Logger;", "import org.slf4j.LoggerFactory;"]],
    "ts": [["import { logger } from \"@acme/logging\";"],
           ["import { z } from \"zod\";", "import { logger } from \"@acme/logging\";"]],
    "js": [["const { logger } = require(\"./logging\");"], ["import { logger } from \"./logging.js\";"]],
    "c": [["#include <errno.h>", "#include <stddef.h>", "#include <stdint.h>"],
          ["#include <errno.h>", "#include <stdlib.h>", "#include <string.h>"]],
    "cpp": [["#include <stdexcept>", "#include <string>", "#include <vector>"],
            ["#include <memory>", "#include <stdexcept>", "#include <spdlog/spdlog.h>"]],
}


class Ctx:
    def __init__(self, vars_: list[str], refs: list[str]):
        self.vars = list(vars_) or ["value"]
        self.refs = list(refs) or ["helper"]


class Synth:
    """Per-language code text: functions, classes, tests, statements, imports."""

    def __init__(self, rng: random.Random):
        self.rng = rng

    # -- small pieces
    def noun(self) -> str:
        return self.rng.choice(NOUNS)

    def verb(self) -> str:
        return self.rng.choice(VERBS)

    def num(self) -> int:
        return self.rng.choice([2, 3, 5, 8, 10, 16, 30, 32, 50, 60, 64, 100, 128, 250, 500, 1000, 1024, 4096])

    def stmt(self, lang: str, ctx: Ctx, ind: str, tpl: list[str] | None = None) -> list[str]:
        r = self.rng
        if tpl is None:
            opts = STMTS[lang]
            tpl = r.choices([o[1] for o in opts], [o[0] for o in opts])[0]
        noun = self.noun()
        v = var_name(lang, [noun] if r.random() < 0.5 else [noun, r.choice(["id", "count", "ttl", "size", "result", "state"])])
        if v in ctx.vars:
            v = v + str(len(ctx.vars))
        subs = dict(v=v, a=r.choice(ctx.vars), ref=r.choice(ctx.refs), noun=noun, verb=self.verb(),
                    num=str(self.num()), num2=str(self.num()), key=snake([self.noun(), "id"]))
        out = []
        for t in tpl:
            depth = len(t) - len(t.lstrip(">"))
            out.append(ind + IND[lang] * depth + Template(t.lstrip(">")).safe_substitute(subs))
        if any("$v" in t for t in tpl):
            ctx.vars.append(v)
        return out

    def body(self, lang: str, ctx: Ctx, ind: str, lo: int = 2, hi: int = 6) -> list[str]:
        out = []
        for _ in range(self.rng.randint(lo, hi)):
            out += self.stmt(lang, ctx, ind)
        ret = Template(RETURN[lang]).safe_substitute(a=ctx.vars[-1])
        out.append(ind + ret)
        return out

    def params(self, lang: str, n: int) -> tuple[list[str], str]:
        nouns = self.rng.sample(NOUNS, n)
        names = [var_name(lang, [x]) for x in nouns]
        types = [pascal([x]) for x in nouns]
        if lang == "py":
            s = ", ".join(f"{a}: {t}" for a, t in zip(names, types))
        elif lang == "go":
            s = ", ".join(f"{a} *{t}" for a, t in zip(names, types))
        elif lang == "rs":
            s = ", ".join(f"{a}: &{t}" for a, t in zip(names, types))
        elif lang == "java":
            s = ", ".join(f"{t} {a}" for a, t in zip(names, types))
        elif lang == "ts":
            s = ", ".join(f"{a}: {t}" for a, t in zip(names, types))
        elif lang == "js":
            s = ", ".join(names)
        elif lang == "c":
            s = ", ".join(f"const {x}_t *{a}" for a, x in zip(names, nouns))
        else:
            s = ", ".join(f"const {t}& {a}" for a, t in zip(names, types))
        return names, s

    # -- units
    def function(self, lang: str, name: str, refs: list[str], level: int = 0,
                 method_of: str | None = None) -> list[str]:
        r = self.rng
        ws = words_of(name)
        names, ps = self.params(lang, r.randint(1, 3))
        ctx = Ctx(names, refs)
        ind0 = IND[lang] * level
        ind1 = ind0 + IND[lang]
        R = pascal([ws[-1]]) if ws[-1] in NOUNS else pascal([self.noun()])
        doc = f"{ws[0].capitalize()} the {' '.join(ws[1:]) or self.noun()}"
        if r.random() < 0.3:
            doc += f", retrying on transient {self.noun()} errors"
        if lang == "py":
            head = []
            if r.random() < 0.15:
                head.append(ind0 + r.choice(["@retry(max_attempts=3)", "@cached(ttl=60)", "@traced", "@staticmethod"]))
            self_ = "self, " if method_of and not head[-1:] == [ind0 + "@staticmethod"] else ""
            head.append(f"{ind0}def {name}({self_}{ps}) -> {R}:")
            return head + [f'{ind1}"""{doc}."""'] + self.body(lang, ctx, ind1)
        if lang == "go":
            recv = f"({method_of[0].lower()} *{method_of}) " if method_of else ""
            return ([f"// {name} {doc[0].lower()}{doc[1:]}.", f"func {recv}{name}(ctx context.Context, {ps}) (*{R}, error) {{"]
                    + self.body(lang, ctx, IND[lang]) + ["}"])
        if lang == "rs":
            self_ = "&self, " if method_of else ""
            return ([f"{ind0}/// {doc}.", f"{ind0}pub fn {name}({self_}{ps}) -> Result<{R}, Error> {{"]
                    + self.body(lang, ctx, ind1) + [ind0 + "}"])
        if lang == "java":
            ind0, ind1 = "    " * (level + 1), "    " * (level + 2)
            mods = r.choice(["public", "public", "public static", "private", "protected"])
            return ([f"{ind0}/** {doc}. */", f"{ind0}{mods} {R} {name}({ps}) {{"]
                    + self.body(lang, ctx, ind1) + [ind0 + "}"])
        if lang in ("ts", "js"):
            if method_of:
                head = [f"{ind0}async {name}({ps}){': Promise<' + R + '>' if lang == 'ts' else ''} {{"]
            else:
                head = [f"{ind0}/** {doc}. */",
                        f"{ind0}export async function {name}({ps}){': Promise<' + R + '>' if lang == 'ts' else ''} {{"]
            return head + self.body(lang, ctx, ind1) + [ind0 + "}"]
        if lang == "c":
            return [f"/* {doc}. */", f"int {name}({ps})", "{"] + self.body(lang, ctx, "    ") + ["}"]
        # cpp
        q = f"{method_of}::" if method_of else ""
        return [f"// {doc}.", f"{R} {q}{name}({ps}) {{"] + self.body(lang, ctx, "    ") + ["}"]

    def klass(self, lang: str, name: str, refs: list[str]) -> list[str]:
        r = self.rng
        base = words_of(name)[0]
        methods = [fn_name(lang, [v, base if r.random() < 0.5 else self.noun()])
                   for v in r.sample(VERBS, r.randint(2, 4))]
        if lang == "py":
            out = [f"class {name}:", f'    """{pascal([base])} {words_of(name)[-1]} for the {self.noun()} pipeline."""', "",
                   f"    def __init__(self, {base}_store, *, timeout: float = {self.num()}.0) -> None:",
                   f"        self._{base}_store = {base}_store", "        self._timeout = timeout",
                   "        self._lock = threading.Lock()"]
            for m in methods:
                out += [""] + self.function(lang, m, refs, level=1, method_of=name)
            return out
        if lang in ("ts", "js"):
            ctor = (f"  constructor(private readonly {base}Store: {pascal([base])}Store) {{}}" if lang == "ts"
                    else "  constructor(store) {\n    this.store = store;\n  }")
            out = [f"export class {name} {{"] + ctor.split("\n")
            for m in methods:
                out += [""] + self.function(lang, m, refs, level=1, method_of=name)
            return out + ["}"]
        if lang == "rs":
            out = ["#[derive(Debug, Clone)]", f"pub struct {name} {{",
                   f"    {base}_id: u64,", "    capacity: usize,", "}", "", f"impl {name} {{"]
            for i, m in enumerate(methods):
                out += ([""] if i else []) + self.function(lang, m, refs, level=1, method_of=name)
            return out + ["}"]
        if lang == "go":
            return [f"// {name} holds {base} state.", f"type {name} struct {{", "\tmu    sync.Mutex",
                    f"\t{camel([base])}ID string", "\tlimit int", "}"]
        if lang == "c":
            return [f"typedef struct {snake([base, 'state'])} {{", f"    uint32_t {base}_id;",
                    "    size_t capacity;", "    uint8_t *data;", f"}} {snake([base, 'state'])}_t;"]
        if lang == "cpp":
            out = [f"class {name} {{", "public:", f"    explicit {name}(std::size_t capacity);"]
            out += [f"    int {m}(int {base});" for m in methods]
            return out + ["", "private:", "    std::size_t capacity_;", f"    std::vector<int> {base}s_;", "};"]
        raise ValueError(lang)

    def const(self, lang: str, name: str) -> list[str]:
        v = self.num()
        return {"py": [f"{name.upper()} = {v}"], "go": [f"const {pascal(words_of(name))} = {v}"],
                "rs": [f"pub const {name.upper()}: usize = {v};"],
                "java": [f"    private static final int {name.upper()} = {v};"],
                "ts": [f"export const {name.upper()} = {v};"], "js": [f"export const {name.upper()} = {v};"],
                "c": [f"#define {name.upper()} {v}"], "cpp": [f"constexpr int k{pascal(words_of(name))} = {v};"],
                }[lang]

    def test(self, lang: str, target: str, ref: str) -> Unit:
        r = self.rng
        sc = r.choice(SCENARIOS)
        tw = words_of(target)
        num = self.num()
        if lang == "py":
            name = snake(["test"] + tw + [sc])
            lines = [f"def {name}():", f"    result = {ref}(make_{r.choice(NOUNS)}())",
                     r.choice(["    assert result is not None", f"    assert result == {num}",
                               f"    assert len(result) <= {num}"])]
        elif lang == "go":
            name = "Test" + pascal(tw + words_of(sc))
            lines = [f"func {name}(t *testing.T) {{", f"\tgot, err := {ref}(context.Background(), nil)",
                     "\tif err != nil {", "\t\tt.Fatalf(\"unexpected error: %v\", err)", "\t}",
                     "\tif got == nil {", f"\t\tt.Errorf(\"expected {tw[-1]}, got nil\")", "\t}", "}"]
        elif lang == "rs":
            name = snake(tw + [sc])
            lines = ["#[test]", f"fn {name}() {{", f"    let result = {ref}(&Default::default());",
                     "    assert!(result.is_ok());", "}"]
        elif lang == "java":
            name = camel(tw + words_of(sc))
            lines = ["    @Test", f"    void {name}() {{", f"        var result = {ref}(null);",
                     "        assertNotNull(result);", "    }"]
        elif lang in ("ts", "js"):
            name = " ".join(tw + words_of(sc))
            lines = [f"test(\"{name}\", async () => {{", f"  const result = await {ref}({{}});",
                     f"  expect(result).{r.choice(['toBeDefined()', f'toEqual({num})', 'not.toBeNull()'])};", "});"]
        else:
            name = snake(["test"] + tw + [sc])
            lines = [f"static void {name}(void)", "{", f"    assert({ref}(NULL) == -EINVAL);", "}"]
        return Unit("test", name, tuple(lines))


def header_line(line: str) -> bool:
    s = line.strip()
    return (not s or s.endswith(("{", ":", "}", "};", "});", "*/", '"""')) or s.startswith(
        ("def ", "class ", "func ", "fn ", "pub ", "impl ", "@", "#", "//", "/*", "*", "export ",
         "public", "private", "protected", "static ", "async ", "typedef", "type ", "test(",
         "int ", "void ", "constexpr", "explicit"))
        or s.startswith('"""') or s == "{" or s.startswith("} ") or s in ("public:", "private:"))


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _is_fn_header(line: str) -> bool:
    s = line.rstrip()
    if not s.endswith((":", "{")) and not s.lstrip().startswith(("int ", "static ", "void ")):
        return False
    return any(m.group(1) not in KEYWORDS for m in re.finditer(r"(\w+)\s*\(", s))


def stmt_indices(lines: tuple) -> list[int]:
    """Indices of top-level statements of a function or method body (not nested blocks,
    not returns): the places where an edit can insert, replace or delete a line."""
    out = []
    for i, ln in enumerate(lines):
        if i == 0 or header_line(ln) or ln.lstrip().startswith(("return", "Ok(")):
            continue
        ind = _indent(ln)
        j = i - 1
        while j >= 0 and (not lines[j].strip() or _indent(lines[j]) >= ind):
            j -= 1
        # C function bodies open with a lone "{" under the signature
        if j >= 0 and lines[j].strip() == "{" and j > 0:
            j -= 1
        if j >= 0 and _is_fn_header(lines[j]):
            out.append(i)
    return out


PARAM_RE = {
    "py": r"(\w+):", "go": r"(\w+) \*", "rs": r"(\w+): &", "java": r"\w+ (\w+)[,)]", "ts": r"(\w+):",
    "js": r"(\w+)[,)]", "c": r"\*(\w+)[,)]", "cpp": r"& (\w+)[,)]",
}
ASSIGN_RE = re.compile(r"^\s*(?:let |const |var |auto |int |size_t |final int |constexpr int )?(\w+)(?:, err)?(?::\s*\w+)?\s*:?=\s")


def visible_vars(lang: str, lines: list, upto: int) -> list[str]:
    """Parameters of the enclosing function plus variables assigned before ``upto``."""
    out: list[str] = []
    for k in range(upto - 1, -1, -1):
        if _is_fn_header(lines[k]):
            inner = lines[k][lines[k].find("(") + 1:]
            if lang == "go" and lines[k].startswith("func ("):
                inner = inner[inner.find("(") + 1:]
            out = [v for v in re.findall(PARAM_RE[lang], inner) if v not in ("self", "ctx")]
            for ln in lines[k + 1:upto]:
                m = ASSIGN_RE.match(ln)
                if m and m.group(1) not in ("self", "err", "_"):
                    out.append(m.group(1))
            break
    return out


def enclosing_symbol(unit: Unit, idx: int, lang: str) -> str:
    if unit.kind != "class":
        return unit.name
    for i in range(min(idx, len(unit.lines) - 1), 0, -1):
        ln = unit.lines[i]
        if ln.rstrip().endswith((":", "{")):
            for m in re.finditer(r"(\w+)\s*\(", ln):
                if m.group(1) not in KEYWORDS and m.group(1) != unit.name:
                    sep = "::" if lang in ("rs", "cpp") else "."
                    return f"{unit.name}{sep}{m.group(1)}"
    return unit.name


# --------------------------------------------------------------------------- rendering


def py_pkg(path: str) -> str:
    return path.rsplit("/", 1)[0].replace("/", ".").replace("-", "_")


def import_line(lang: str, src: str, dst: str) -> str | None:
    dstem = dst.rsplit("/", 1)[-1].split(".")[0]
    ddir = dst.rsplit("/", 1)[0] if "/" in dst else ""
    sdir = src.rsplit("/", 1)[0] if "/" in src else ""
    if lang == "py":
        return f"from {py_pkg(dst)} import {dstem}"
    if lang in ("ts", "js"):
        rel = os.path.relpath(ddir or ".", sdir or ".").replace(os.sep, "/")
        rel = "./" if rel == "." else (rel if rel.startswith(".") else "./" + rel) + "/"
        if dst.endswith(".tsx"):
            return f'import {{ {dstem} }} from "{rel}{dstem}";'
        return f'import * as {dstem} from "{rel}{dstem}";'
    if lang == "go":
        return None if ddir == sdir else f'"github.com/acme/platform/{ddir}"'
    if lang == "rs":
        parts = dst.split("/")
        crate = parts[1] if len(parts) > 2 and parts[0] == "crates" else "core"
        if dstem in ("lib", "main", "mod"):
            return None
        same = src.startswith(f"crates/{crate}/src/")
        return f"use {'crate' if same else crate.replace('-', '_')}::{dstem};"
    if lang == "java":
        if "java/" not in dst or ddir == sdir:
            return None
        return f"import {ddir.split('java/', 1)[1].replace('/', '.')}.{dstem};"
    if lang in ("c", "cpp"):
        return f'#include "{dst[7:] if dst.startswith("native/") else dst}"'
    return None


def ref_alias(lang: str, path: str, f: F, importer: str = "") -> list[str]:
    """Callable names ``importer`` can use to refer to the symbols of ``f`` at ``path``."""
    stem = path.rsplit("/", 1)[-1].split(".")[0]
    fns = [u.name for u in f.units if u.kind in ("fn", "class")][:6]
    if not fns:
        return []
    if lang == "py":
        return [f"{stem}.{n}" for n in fns]
    if lang in ("ts", "js"):
        return [n for n in fns] if path.endswith(".tsx") else [f"{stem}.{n}" for n in fns]
    if lang == "go":
        if importer.rsplit("/", 1)[0] == path.rsplit("/", 1)[0]:
            return fns
        pkg = path.rsplit("/", 2)[-2].replace("-", "")
        return [f"{pkg}.{n}" for n in fns]
    if lang == "rs":
        return [f"{stem}::{n}" for n in fns]
    if lang == "java":
        return [f"{stem}.{n}" for n in fns]
    return fns


def render(path: str, f: F) -> bytes:
    if f._rp == path:
        return f._rb
    if f.kind == "bin":
        out = f.data
    else:
        lang = LANG_OF_KIND.get(f.kind)
        lines = render_code(path, f, lang) if lang else render_text(f)
        out = ("\n".join(lines).rstrip("\n") + "\n").encode()
    f._rp, f._rb = path, out
    return out


def unit_block(units: tuple, sep: int) -> list[str]:
    out: list[str] = []
    for i, u in enumerate(units):
        if i:
            prev = units[i - 1]
            gap = 0 if (u.kind == "const" and prev.kind == "const") else sep
            out += [""] * gap
        out += list(u.lines)
    return out


def render_text(f: F) -> list[str]:
    out = list(f.head)
    if f.kind == "json":
        for i, u in enumerate(f.units):
            ls = list(u.lines)
            if i < len(f.units) - 1:
                ls[-1] += ","
            out += ls
    else:
        if f.head and f.units and f.sep:
            out += [""] * f.sep
        out += unit_block(f.units, f.sep)
    if f.tail:
        if f.units and f.sep and f.kind != "json":
            out.append("")
        out += list(f.tail)
    return out


def render_code(path: str, f: F, lang: str) -> list[str]:
    stem = path.rsplit("/", 1)[-1].split(".")[0]
    imports = [x for x in (import_line(lang, path, t) for t in f.imports) if x]
    imports = list(dict.fromkeys(imports))
    body = unit_block(f.units, 2 if lang == "py" else 1)
    if lang == "py":
        out = [f'"""{f.doc}."""', "", "from __future__ import annotations", ""] + list(f.head)
        if imports:
            out += [""] + imports
        if not is_test_path(path):
            out += ["", "logger = logging.getLogger(__name__)"]
        return out + ["", ""] + body
    if lang == "go":
        pkg = path.rsplit("/", 2)[-2].replace("-", "")
        std = list(f.head) + (["testing"] if path.endswith("_test.go") else [])
        out = [f"// Package {pkg} {f.doc[0].lower()}{f.doc[1:]}.", f"package {pkg}", "", "import ("]
        out += [f'\t"{s}"' for s in std] + ([""] + [f"\t{i}" for i in imports] if imports else []) + [")", ""]
        return out + body
    if lang == "rs":
        out = [f"//! {f.doc}.", ""] + list(f.head) + imports
        return out + [""] + body
    if lang == "java":
        pkg = path.rsplit("/", 1)[0].split("java/", 1)[-1].replace("/", ".")
        test = path.endswith("Test.java")
        out = [f"package {pkg};", ""] + list(f.head) + imports
        if test:
            out += ["import static org.junit.jupiter.api.Assertions.*;", "", "import org.junit.jupiter.api.Test;"]
        out += ["", f"/** {f.doc}. */", f"{'' if test else 'public '}class {stem} {{"]
        if not test:
            out += [f"    private static final Logger log = LoggerFactory.getLogger({stem}.class);", ""]
        return out + body + ["}"]
    if lang in ("ts", "js"):
        out = [f"// {f.doc}."] + list(f.head) + imports
        if path.endswith(".tsx"):
            out.insert(1, 'import React from "react";')
        return out + [""] + body
    # c / cpp
    out = [f"/* {f.doc}. */"]
    if f.kind in HEADER_KINDS:
        guard = re.sub(r"[^A-Z0-9]", "_", (path[7:] if path.startswith("native/") else path).upper())
        out += [f"#ifndef {guard}", f"#define {guard}", ""] + list(f.head) + imports + [""] + body + ["", f"#endif /* {guard} */"]
        return out
    return out + [""] + list(f.head) + imports + [""] + body


def png_bytes(rng: random.Random, w: int, h: int) -> bytes:
    c1, c2 = [rng.randrange(256) for _ in range(3)], [rng.randrange(256) for _ in range(3)]
    rows = []
    for y in range(h):
        row = bytearray(b"\x00")
        for x in range(w):
            t = (x + y) / (w + h)
            row += bytes(int(a + (b - a) * t) for a, b in zip(c1, c2))
        rows.append(bytes(row))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"".join(rows), 9)) + chunk(b"IEND", b""))


# --------------------------------------------------------------------------- the generator


class Branch:
    def __init__(self, name, mod, owner, base_mark, state, target):
        self.name, self.mod, self.owner = name, mod, owner
        self.tip = base_mark
        self.state = state
        self.target = target
        self.ncommits = 0
        self.subjects: list[str] = []


class Op(NamedTuple):
    kind: str       # conventional-commit type: feat fix refactor perf docs test chore ci build
    subject: str
    scope: str | None = None
    reason: bool = False   # eligible for a "why" body
    author: tuple | None = None
    body: str | None = None
    raw: bool = False      # subject must not be rewritten (revert, bot)


class Generator:
    def __init__(self, commits: int, seed: int):
        self.rng = random.Random(f"lmm-genrepo:{seed}")
        self.syn = Synth(self.rng)
        self.n = max(1, commits)
        self.modules: dict[int, Module] = {}
        self.fids = 0
        self.churn: dict[int, float] = {}
        self.fragile: dict[int, float] = {}
        self.main: dict[str, F] = {}
        self.main_tip: int | None = None
        self.branches: list[Branch] = []
        self.merged_refs: list[str] = []
        self.branch_names: set[str] = set()
        self.history: list[dict] = []
        self.mark = 0
        self.made = 0
        self.merges = 0
        self.t = START_TS
        self.pr = 100
        self.release = [1, 0, 0]
        self.proc: subprocess.Popen | None = None
        self.buf: list[bytes] = []

    # -- helpers
    def new_fid(self, churn: float | None = None) -> int:
        self.fids += 1
        self.churn[self.fids] = churn if churn is not None else self.rng.lognormvariate(0, 1.0)
        return self.fids

    def frac(self) -> float:
        return self.made / self.n

    def author(self) -> tuple:
        fr = self.frac()
        active = [a for a in AUTHORS if a[4] <= fr <= a[5]] or AUTHORS[:1]
        a = self.rng.choices(active, [x[3] for x in active])[0]
        email = a[1]
        if a[0] == "Bob Martins" and self.rng.random() < 0.2:
            email = "bob.martins@users.noreply.github.com"
        return (a[0], email, a[2])

    def tick(self) -> int:
        r = self.rng
        gap = SPAN / self.n * r.expovariate(1.0) * 0.9
        self.t += max(30, int(gap))
        hour = (self.t // 3600) % 24
        if hour < 7 and r.random() < 0.7:
            self.t += (7 - hour) * 3600 + r.randrange(3600)
        return self.t

    def locked(self) -> set:
        return {b.mod.mid for b in self.branches}

    def files_where(self, state: dict, pred: Callable[[str, F], bool]) -> list:
        return [(p, f) for p, f in state.items() if pred(p, f)]

    def pick_weighted(self, items: list, k: int = 1) -> list:
        """k distinct (path, F) pairs weighted by churn."""
        items = list(items)
        out = []
        for _ in range(min(k, len(items))):
            w = [self.churn.get(f.fid, 1.0) for _, f in items]
            i = self.rng.choices(range(len(items)), w)[0]
            out.append(items.pop(i))
        return out

    def mod_files(self, state: dict, mid: int, tests: bool | None = False, code_only: bool = True) -> list:
        return [(p, f) for p, f in state.items() if f.mod == mid
                and (not code_only or f.kind in LANG_OF_KIND)
                and (tests is None or is_test_path(p) == tests)]

    def refs_for(self, state: dict, path: str, f: F) -> list[str]:
        lang = LANG_OF_KIND[f.kind]
        refs = []
        for t in f.imports:
            tf = state.get(t)
            if tf is not None and tf.kind in LANG_OF_KIND:
                refs += ref_alias(lang, t, tf, path)
        refs += [u.name for u in f.units if u.kind == "fn"][:3]
        return refs + self.rng.sample(STD_REFS[lang], 1)

    # -- paths
    def free_path(self, state: dict, d: str, kind: str, ws: list[str]) -> str:
        ext = {"tsx": ".tsx"}.get(kind, "." + kind)
        stem = stem_name(kind, ws)
        if kind == "java" and not stem.endswith(tuple(CLASS_SUFFIX)):
            stem += self.rng.choice(CLASS_SUFFIX)
        p = f"{d}/{stem}{ext}"
        i = 2
        while p in state:
            p = f"{d}/{stem}{i}{ext}"
            i += 1
        return p

    def test_path_for(self, mod: Module, src_path: str) -> str | None:
        stem, ext = src_path.rsplit("/", 1)[-1].rsplit(".", 1)
        lang = mod.lang
        if lang == "go":
            return src_path[:-3] + "_test.go"
        if not mod.test:
            return None
        if lang == "py":
            return f"{mod.test}/test_{stem}.py"
        if lang in ("ts", "js"):
            return f"{mod.test}/{stem}.test.{'ts' if ext == 'tsx' else ext}"
        if lang == "rs":
            return f"{mod.test}/{stem}_test.rs"
        if lang == "java":
            return f"{mod.test}/{stem}Test.java"
        return f"{mod.test}/test_{stem}.{'c' if lang == 'c' else 'cpp'}"

    # -- module and file creation
    def new_module(self, state: dict, lang: str | None = None) -> Module:
        r = self.rng
        lang = lang or r.choices([x[0] for x in MODULE_LANG_WEIGHTS], [x[1] for x in MODULE_LANG_WEIGHTS])[0]
        used_dirs = [d for m in self.modules.values() for d in m.dirs() if d]
        used_dirs += [p.rsplit("/", 1)[0] for p in state]
        for _ in range(200):
            layout = r.choice(LAYOUTS[lang])
            taken = {m.name for m in self.modules.values() if m.lang == lang}
            pool = [n for n in MODULE_NAMES[lang] if n not in taken]
            if pool and r.random() < 0.9:
                name = r.choice(pool)
            else:
                base, extra = r.choice(MODULE_NAMES[lang]), self.syn.noun()
                name = f"{base}{extra}" if lang == "java" else f"{base}{'-' if lang == 'js' else '_'}{extra}"
            dirs = [t.format(n=name) for t in layout if t]
            if not any(u == d or u.startswith(d + "/") or d.startswith(u + "/") for d in dirs for u in used_dirs):
                break
        mid = len(self.modules) + 1
        m = Module(mid, lang, layout, name, r.lognormvariate(0, 0.9))
        self.modules[mid] = m
        return m

    def make_code_file(self, state: dict, mod: Module, kind: str | None = None, ws: list[str] | None = None,
                       test_of: tuple | None = None) -> tuple[str, F]:
        """A new source (or test, when ``test_of=(path, F)``) file in ``mod``."""
        r, syn, lang = self.rng, self.syn, mod.lang
        if test_of is not None:
            sp, sf = test_of
            path = self.test_path_for(mod, sp)
            kind = path.rsplit(".", 1)[-1]
            refs = ref_alias(lang, sp, sf) or ["helper"]
            targets = [u.name for u in sf.units if u.kind in ("fn", "class")] or ["helper"]
            units = [syn.test(lang, r.choice(targets), r.choice(refs)) for _ in range(r.randint(2, 5))]
            units = list({u.name: u for u in units}.values())
            head = {"py": ["import pytest"], "go": ["context"], "rs": [], "java": [],
                    "ts": ['import { expect, test } from "vitest";'], "js": ['import { expect, test } from "vitest";'],
                    "c": ["#include <assert.h>", "#include <errno.h>"], "cpp": ["#include <cassert>"]}[lang]
            doc = f"Tests for {sp.rsplit('/', 1)[-1]}"
            imports = [sp] if lang != "go" else []
            if lang in ("c", "cpp") and sp.endswith((".c", ".cpp")):
                hdr = sp.rsplit(".", 1)[0] + (".h" if lang == "c" else ".hpp")
                imports = [hdr] if hdr in state else []
            return path, F(self.new_fid(0.5), kind, mod.mid, doc, imports, units, head)
        if kind is None:
            kind = {"py": "py", "go": "go", "rs": "rs", "java": "java", "js": "js",
                    "ts": r.choice(["ts", "ts", "tsx"]), "c": r.choice(["c", "c", "h"]),
                    "cpp": r.choice(["cpp", "cpp", "hpp"])}[lang]
        ws = ws or ([self.syn.noun()] + ([r.choice(NOUNS + ["client", "store", "service", "utils", "types"])]
                                         if r.random() < 0.6 else []))
        if len(ws) > 1 and ws[0] == ws[1]:
            ws = ws[:1]
        path = self.free_path(state, mod.src, kind, ws)
        # imports: same module first, then other modules of the language
        same = [p for p, f in state.items() if f.mod == mod.mid and f.kind in LANG_OF_KIND and not is_test_path(p)]
        other = [p for p, f in state.items() if f.kind in LANG_OF_KIND and f.mod != mod.mid and f.mod is not None
                 and LANG_OF_KIND[f.kind] == lang and not is_test_path(p)]
        if lang in ("c", "cpp"):
            same = [p for p in same if p.endswith((".h", ".hpp"))]
            other = [p for p in other if p.endswith((".h", ".hpp"))]
        imports = r.sample(same, min(len(same), r.randint(0, 2))) + r.sample(other, min(len(other), r.randint(0, 2)))
        if lang in ("c", "cpp") and kind in ("c", "cpp"):
            hdr = path.rsplit(".", 1)[0] + (".h" if kind == "c" else ".hpp")
            if hdr in state:
                imports.insert(0, hdr)
        tmp = F(0, kind, mod.mid, "", imports, ())
        refs = self.refs_for(state, path, tmp)
        units = self.make_units(lang, kind, ws, refs, r.randint(2, 6))
        doc = f"{' '.join(ws).capitalize()} {r.choice(['helpers', 'support', 'logic', 'primitives', 'client', 'handling'])} for the {mod.name} module"
        head = r.choice(STD_HEAD[lang]) if kind not in ("h", "hpp") else (["#include <stddef.h>", "#include <stdint.h>"] if kind == "h" else ["#include <cstddef>", "#include <vector>"])
        if lang == "py" and any(u.kind == "class" for u in units):
            head = sorted(set(head) | {"import threading"})
        return path, F(self.new_fid(), kind, mod.mid, doc, imports, units, head)

    def make_units(self, lang: str, kind: str, ws: list[str], refs: list[str], n: int) -> list[Unit]:
        r, syn = self.rng, self.syn
        units: list[Unit] = []
        names: set = set()
        if kind in ("h", "hpp"):
            if kind == "h":
                units.append(Unit("class", snake([ws[0], "state"]), tuple(syn.klass("c", pascal(ws), refs))))
                for _ in range(n):
                    nm = snake(ws[:1] + [r.choice(VERBS), syn.noun()])
                    _, ps = syn.params("c", r.randint(1, 2))
                    units.append(Unit("fn", nm, (f"int {nm}({ps});",)))
            else:
                units.append(Unit("class", pascal(ws) + r.choice(CLASS_SUFFIX), tuple(syn.klass("cpp", pascal(ws) + "Impl", refs))))
            return units
        if r.random() < 0.4:
            units.append(Unit("const", snake(["default", syn.noun(), r.choice(["timeout", "limit", "size", "retries"])]), ()))
            units[-1] = units[-1]._replace(lines=tuple(syn.const(lang, units[-1].name)))
        if kind == "tsx":
            comp = pascal(ws)
            units.append(Unit("fn", comp, (
                f"export function {comp}(props: {comp}Props) {{",
                f"  const [{ws[0]}, set{pascal(ws[:1])}] = React.useState(props.initial{pascal(ws[:1])});",
                f"  if (!{ws[0]}) {{", "    return null;", "  }",
                f"  return <div className=\"{'-'.join(ws)}\">{{{ws[0]}.label}}</div>;", "}")))
            units.insert(0, Unit("type", comp + "Props", (f"export interface {comp}Props {{",
                                                          f"  initial{pascal(ws[:1])}: {pascal(ws[:1])};", "}")))
            n -= 1
        if lang in ("py", "ts", "js", "rs", "go", "cpp") and r.random() < 0.45:
            cname = pascal(ws[:1]) + r.choice(CLASS_SUFFIX)
            units.append(Unit("class", cname, tuple(syn.klass(lang, cname, refs))))
            names.add(cname)
            n -= 1
        if lang == "java":
            n += 1
        for _ in range(max(1, n)):
            nm = fn_name(lang, [r.choice(VERBS)] + ([ws[0]] if r.random() < 0.6 else [syn.noun()]))
            if nm in names:
                continue
            names.add(nm)
            units.append(Unit("fn", nm, tuple(syn.function(lang, nm, refs))))
        return units

    # -- generic edits
    def edit_unit(self, state: dict, path: str, f: F, op: str, ui: int | None = None) -> tuple[F, dict] | None:
        """Apply one small edit to ``f``. Returns the new F and a description."""
        r, syn = self.rng, self.syn
        lang = LANG_OF_KIND[f.kind]
        units = list(f.units)
        if f.kind in HEADER_KINDS:
            return self.edit_header(f)
        cands = [i for i, u in enumerate(units) if u.kind in ("fn", "class", "test") and stmt_indices(u.lines)]
        if op == "add_unit" or not cands:
            if f.kind == "tsx":
                return None
            ws = [r.choice(VERBS), syn.noun()]
            nm = fn_name(lang, ws)
            if any(u.name == nm for u in units):
                return None
            refs = self.refs_for(state, path, f)
            u = Unit("fn", nm, tuple(syn.function(lang, nm, refs)))
            units.insert(r.randint(0, len(units)), u)
            return f.evolve(units=tuple(units)), {"op": "add_unit", "sym": nm, "noun": ws[1], "verb": ws[0]}
        if ui is None:
            ui = r.choice(cands)
        elif ui not in cands:
            return None
        u = units[ui]
        lines = list(u.lines)
        idxs = stmt_indices(u.lines)
        if op == "remove_unit":
            if len([x for x in units if x.kind in ("fn", "class")]) < 3 or u.kind == "test":
                return None
            del units[ui]
            return f.evolve(units=tuple(units)), {"op": "remove_unit", "sym": u.name, "noun": words_of(u.name)[-1]}
        i = r.choice(idxs)
        sym = enclosing_symbol(u, i, lang)
        ind = re.match(r"\s*", lines[i]).group(0)
        ctx = Ctx(visible_vars(lang, lines, i) or [var_name(lang, [syn.noun()])], self.refs_for(state, path, f))
        desc = {"sym": sym, "noun": next((w for w in reversed(words_of(sym)) if w in NOUNS), syn.noun())}
        if op == "tweak":
            m = list(re.finditer(r"\b\d+\b", lines[i]))
            if m:
                mm = r.choice(m)
                old = int(mm.group(0))
                new = r.choice([x for x in (old * 2, old + 1, max(1, old // 2), old * 10, old - 1) if x != old and x >= 0] or [old + 1])
                lines[i] = lines[i][:mm.start()] + str(new) + lines[i][mm.end():]
                desc.update(op="tweak", old=old, new=new)
            else:
                w = [x for x in NOUNS if re.search(rf"\b{x}\b", lines[i])]
                if w:
                    lines[i] = re.sub(rf"\b{w[0]}\b", syn.noun(), lines[i], count=1)
                    desc.update(op="replace")
                else:
                    one = [t for w, t in STMTS[lang] if len(t) == 1]
                    lines[i] = syn.stmt(lang, ctx, ind, r.choice(one))[0]
                    desc.update(op="replace")
        elif op == "insert":
            lines[i:i] = syn.stmt(lang, ctx, ind)
            desc.update(op="insert")
        elif op == "guard":
            lines[i:i] = syn.stmt(lang, ctx, ind, GUARD[lang])
            desc.update(op="guard")
        elif op == "delete":
            simple = [j for j in idxs if j + 1 < len(lines) and len(re.match(r"\s*", lines[j + 1]).group(0)) <= len(re.match(r"\s*", lines[j]).group(0))
                      and not lines[j].strip().startswith(("return", "Ok("))]
            if len(idxs) < 3 or not simple:
                return None
            j = r.choice(simple)
            sym = enclosing_symbol(u, j, lang)
            del lines[j]
            desc.update(op="delete", sym=sym)
        elif op == "replace":
            one = [t for w, t in STMTS[lang] if len(t) == 1]
            lines[i] = syn.stmt(lang, ctx, ind, r.choice(one))[0]
            desc.update(op="replace")
        else:
            raise ValueError(op)
        units[ui] = u._replace(lines=tuple(lines))
        return f.evolve(units=tuple(units)), desc

    def edit_header(self, f: F) -> tuple[F, dict] | None:
        """Headers only gain declarations: a prototype (C) or a method declaration (C++)."""
        r, syn = self.rng, self.syn
        ws = [r.choice(VERBS), syn.noun()]
        units = list(f.units)
        if f.kind == "h":
            nm = snake([words_of(units[0].name)[0] if units else syn.noun()] + ws)
            if any(u.name == nm for u in units):
                return None
            _, ps = syn.params("c", r.randint(1, 2))
            units.append(Unit("fn", nm, (f"int {nm}({ps});",)))
            return f.evolve(units=tuple(units)), {"op": "add_unit", "sym": nm, "noun": ws[1], "verb": ws[0]}
        ci = next((i for i, u in enumerate(units) if u.kind == "class"), None)
        if ci is None:
            return None
        u = units[ci]
        nm = camel(ws)
        lines = list(u.lines)
        at = lines.index("") if "" in lines else len(lines) - 1
        lines.insert(at, f"    int {nm}(int {ws[1]});")
        units[ci] = u._replace(lines=tuple(lines))
        return f.evolve(units=tuple(units)), {"op": "add_unit", "sym": f"{u.name}::{nm}", "noun": ws[1], "verb": ws[0]}

    # -- message helpers
    def conventional(self, op: Op) -> str:
        s = op.subject
        if op.raw or self.rng.random() > 0.3:
            return s
        if op.kind == "fix" and s.startswith("Fix "):
            s = s[4:]
        low = s[0].lower() + s[1:] if not s[:2].isupper() else s
        scope = f"({op.scope})" if op.scope and self.rng.random() < 0.7 else ""
        return f"{op.kind}{scope}: {low}"

    def reason_body(self) -> str:
        r = self.rng
        noun = self.syn.noun()
        cond = r.choice(CONDITIONS).format(noun=noun)
        para = (f"The {noun} {r.choice(['handler', 'path', 'client', 'job', 'check'])} could "
                f"{r.choice(BAD_OUTCOMES)} when {cond}.")
        if r.random() < 0.6:
            para += " " + r.choice([
                f"Move the {self.syn.noun()} check before the {self.syn.verb()} so both paths see the same state.",
                "Keep the old behaviour behind a flag until the migration has run everywhere.",
                f"This matches what the {self.syn.noun()} service already does.",
                "Add a regression test that reproduces the original report.",
                f"Use a bounded {self.syn.noun()} queue instead of retrying inline."])
        trailers = []
        if r.random() < 0.3:
            trailers.append(f"Fixes #{r.randint(12, 2400)}")
        if r.random() < 0.05:
            a = r.choice(AUTHORS)
            trailers.append(f"Co-authored-by: {a[0]} <{a[1]}>")
        return para + ("\n\n" + "\n".join(trailers) if trailers else "")

    # -- fast-import stream
    def write(self, b: bytes) -> None:
        self.buf.append(b)
        if len(self.buf) > 512:
            self.flush()

    def flush(self) -> None:
        if self.buf:
            self.proc.stdin.write(b"".join(self.buf))
            self.buf = []

    def get_sha(self, mark: int) -> str:
        self.write(f"get-mark :{mark}\n".encode())
        self.flush()
        self.proc.stdin.flush()
        line = self.proc.stdout.readline().decode().strip()
        if not re.fullmatch(r"[0-9a-f]{40,64}", line):
            raise RuntimeError(f"fast-import get-mark answered {line!r}")
        return line

    def emit(self, ref: str, author: tuple, msg: str, parents: list, changes: list, committer: tuple | None = None) -> int:
        self.mark += 1
        when = self.tick()
        a_when = when - (0 if self.rng.random() < 0.8 else self.rng.randint(60, 2 * 86400))
        c = committer or author
        msg_b = msg.encode()
        out = [f"commit {ref}\nmark :{self.mark}\n".encode(),
               f"author {author[0]} <{author[1]}> {a_when} {author[2]}\n".encode(),
               f"committer {c[0]} <{c[1]}> {when} {c[2]}\n".encode(),
               f"data {len(msg_b)}\n".encode(), msg_b, b"\n"]
        if parents:
            out.append(f"from :{parents[0]}\n".encode())
            for p in parents[1:]:
                out.append(f"merge :{p}\n".encode())
        for p, _b, a in changes:
            if a is None:
                out.append(f"D {p}\n".encode())
        for p, _b, a in changes:
            if a is not None:
                data = render(p, a)
                out.append(f"M {a.mode} inline {p}\ndata {len(data)}\n".encode())
                out.append(data)
                out.append(b"\n")
        self.write(b"".join(out))
        self.made += 1
        return self.mark

    def message(self, op: Op) -> str:
        subject = self.conventional(op)
        body = op.body
        if body is None and op.reason and self.rng.random() < 0.55:
            body = self.reason_body()
        return subject + ("\n\n" + body if body else "") + "\n"

    # ======================================================================= operations
    # Each op works on a Tx whose base is the parent state, restricted to modules for
    # which ``allow(mid)`` is true, and returns an Op (or None when it does not apply).

    def op_edit(self, tx: Tx, allow) -> Op | None:
        r = self.rng
        cands = self.files_where(tx.state, lambda p, f: f.mod is not None and allow(f.mod)
                                 and f.kind in LANG_OF_KIND and not is_test_path(p))
        if not cands:
            return None
        (p0, f0), = self.pick_weighted(cands)
        k = r.choices([1, 2, 3, 4, 5], [50, 25, 13, 7, 5])[0]
        near = [(p, f) for p, f in cands if p != p0 and (f.mod == f0.mod or p0 in f.imports or p in f0.imports)]
        group = [(p0, f0)] + self.pick_weighted(near, k - 1)
        primary = None
        for p, f in group:
            nf = f
            for _ in range(r.choices([1, 2, 3], [55, 30, 15])[0]):
                op = r.choices(["tweak", "insert", "delete", "replace", "add_unit", "remove_unit"],
                               [25, 30, 12, 18, 10, 5])[0]
                res = self.edit_unit(tx.state, p, nf, op)
                if res:
                    nf, desc = res
                    if primary is None:
                        primary = (p, desc)
            if nf is not f:
                tx.put(p, nf)
        if primary is None:
            return None
        p, d = primary
        mod = self.modules[f0.mod]
        stem = p.rsplit("/", 1)[-1]
        sym, noun = d["sym"], d["noun"]
        subj = {
            "tweak": [f"Tune {noun} {r.choice(['timeout', 'limit', 'batch size', 'retry budget', 'buffer size'])} in {sym}",
                      f"Increase default {noun} {r.choice(['timeout', 'limit', 'page size'])} in {sym}",
                      f"Adjust {noun} thresholds in {stem}"],
            "insert": [f"Log {noun} {r.choice(VERBS)} failures in {sym}", f"Validate {noun} in {sym}",
                       f"Add retry backoff to {noun} {r.choice(['client', 'worker', 'upload', 'sync'])} in {sym}",
                       f"Improve {noun} handling in {sym}", f"Emit {noun} metrics from {sym}"],
            "delete": [f"Remove redundant {noun} check from {sym}", f"Simplify {sym}",
                       f"Drop unused {noun} lookup in {sym}"],
            "replace": [f"Refactor {sym} to reuse {noun} {r.choice(['helpers', 'cache', 'client'])}",
                        f"Use {self.syn.noun()} {r.choice(['ids', 'keys', 'snapshots'])} in {sym}",
                        f"Clean up {noun} handling in {stem}", f"Avoid redundant {noun} lookups in {sym}"],
            "add_unit": [f"Add {sym} helper to {stem}", f"Add {sym} to {mod.name}", f"Extract {sym} from {stem}"],
            "remove_unit": [f"Remove unused {sym}", f"Drop deprecated {sym} from {stem}"],
        }[d["op"]]
        kind = {"tweak": "perf", "insert": "feat", "delete": "refactor", "replace": "refactor",
                "add_unit": "feat", "remove_unit": "refactor"}[d["op"]]
        return Op(kind, r.choice(subj), mod.name, reason=r.random() < 0.45)

    def test_for(self, tx: Tx, p: str, f: F, sym: str | None = None) -> str | None:
        """Add a test unit for ``sym`` of (p, f) to its test file, creating it when missing."""
        mod = self.modules[f.mod]
        tp = self.test_path_for(mod, p)
        if tp is None:
            return None
        lang = mod.lang
        refs = ref_alias(lang, p, f) or [sym or "helper"]
        target = sym.split(".")[-1].split("::")[-1] if sym else self.rng.choice([u.name for u in f.units] or ["helper"])
        ref = next((x for x in refs if x.endswith(target)), self.rng.choice(refs))
        if tp in tx.state:
            tf = tx.state[tp]
            u = self.syn.test(lang, target, ref)
            if any(x.name == u.name for x in tf.units):
                return None
            tx.put(tp, tf.evolve(units=tf.units + (u,)))
        else:
            tp2, tf = self.make_code_file(tx.state, mod, test_of=(p, f))
            tx.put(tp2, tf)
        return tp

    def op_fix(self, tx: Tx, allow) -> Op | None:
        r = self.rng
        cands = self.files_where(tx.state, lambda p, f: f.mod is not None and allow(f.mod)
                                 and f.kind in LANG_OF_KIND and f.kind not in HEADER_KINDS and not is_test_path(p))
        if not cands:
            return None
        frag = [(p, f) for p, f in cands if f.fid in self.fragile]
        if frag and r.random() < 0.5:
            w = [self.fragile[f.fid] for _, f in frag]
            p, f = frag[r.choices(range(len(frag)), w)[0]]
        else:
            (p, f), = self.pick_weighted(cands)
            if r.random() < 0.04 and len(self.fragile) < 25:
                self.fragile[f.fid] = r.lognormvariate(0, 0.7)
        res = None
        for _ in range(4):
            res = self.edit_unit(tx.state, p, f, r.choices(["guard", "tweak", "replace", "insert"], [40, 30, 20, 10])[0])
            if res:
                break
        if not res:
            return None
        nf, d = res
        if r.random() < 0.3:
            res2 = self.edit_unit(tx.state, p, nf, r.choice(["tweak", "guard", "replace"]))
            if res2:
                nf = res2[0]
        tx.put(p, nf)
        if r.random() < 0.45:
            self.test_for(tx, p, nf, d["sym"])
        sym, noun = d["sym"], d["noun"]
        mod = self.modules[f.mod]
        subj = r.choice([
            f"Fix {noun} {r.choice(PROBLEMS)} in {sym}",
            f"Fix {noun} {r.choice(PROBLEMS)} in {sym}",
            f"Handle {r.choice(ADJ)} {noun} in {sym}",
            f"Guard against {r.choice(ADJ)} {noun} in {sym}",
            f"Fix crash when {noun} is {r.choice(['missing', 'empty', 'expired', 'None', 'too large'])} in {sym}",
            f"Fix {noun} {r.choice(VERBS)} {r.choice(PROBLEMS)} in {p.rsplit('/', 1)[-1]}",
        ])
        return Op("fix", subj, mod.name, reason=r.random() < 0.8)

    def pick_module(self, state: dict, allow, lang: str | None = None) -> Module | None:
        mods = [m for m in self.modules.values() if allow(m.mid) and (lang is None or m.lang == lang)]
        if not mods:
            return None
        counts: dict[int, int] = {}
        for f in state.values():
            if f.mod is not None:
                counts[f.mod] = counts.get(f.mod, 0) + 1
        live = [m for m in mods if counts.get(m.mid, 0) > 0]
        if not live:
            return None
        w = [m.hot * LANG_FACTOR[m.lang] * (3 + min(counts[m.mid], 12)) * min(1.0, 30 / counts[m.mid]) for m in live]
        return self.rng.choices(live, w)[0]

    def op_feature(self, tx: Tx, allow, mod: Module | None = None) -> Op | None:
        r = self.rng
        new_mod = False
        if mod is None:
            if r.random() < 0.07 or not self.modules:
                mod = self.new_module(tx.state)
                new_mod = True
            else:
                mod = self.pick_module(tx.state, allow)
        if mod is None:
            return None
        if not new_mod and r.random() < 0.5:
            # grow an existing file with a new function
            cands = [(p, f) for p, f in self.mod_files(tx.state, mod.mid) if f.kind not in ("h", "hpp", "tsx")]
            if cands:
                (p, f), = self.pick_weighted(cands)
                res = self.edit_unit(tx.state, p, f, "add_unit")
                if res:
                    tx.put(p, res[0])
                    if r.random() < 0.5:
                        self.test_for(tx, p, res[0], res[1]["sym"])
                    sym = res[1]["sym"]
                    return Op("feat", r.choice([f"Add {sym} to {p.rsplit('/', 1)[-1]}", f"Implement {sym}",
                                                f"Support {res[1]['noun']} {r.choice(VERBS)} via {sym}"]),
                              mod.name, reason=r.random() < 0.3)
        n = r.choices([1, 2, 3], [75, 20, 5])[0] + (2 if new_mod else 0)
        added = []
        ws0 = [self.syn.noun()]
        for i in range(n):
            ws = ws0 + [r.choice(["client", "store", "service", "types", "handler", "utils", self.syn.noun()])] if i else None
            p, f = self.make_code_file(tx.state, mod, ws=ws)
            tx.put(p, f)
            added.append((p, f))
            if mod.lang in ("c", "cpp") and p.endswith((".c", ".cpp")) and r.random() < 0.35:
                hp, hf = self.make_code_file(tx.state, mod, kind="h" if mod.lang == "c" else "hpp",
                                             ws=words_of(p.rsplit("/", 1)[-1].split(".")[0]))
                tx.put(hp, hf)
        if r.random() < 0.25:
            self.test_for(tx, *added[0])
        if r.random() < 0.03 or new_mod and r.random() < 0.3:
            self.readme(tx, mod)
        if mod.lang == "rs" and new_mod:
            self.cargo(tx, mod)
        # wire the new code into an existing file of the module
        if not new_mod and r.random() < 0.4:
            users = [(p, f) for p, f in self.mod_files(tx.state, mod.mid) if (p, f) not in added and f.kind not in ("h", "hpp")]
            if users:
                (up, uf), = self.pick_weighted(users)
                np_ = added[0][0]
                if mod.lang not in ("c", "cpp") or np_.endswith((".h", ".hpp")):
                    uf = uf.evolve(imports=uf.imports + (np_,))
                    res = self.edit_unit({**tx.state, up: uf}, up, uf, "insert")
                    tx.put(up, res[0] if res else uf)
        p, f = added[0]
        stem = p.rsplit("/", 1)[-1]
        main_sym = next((u.name for u in f.units if u.kind in ("class", "fn")), stem)
        noun = words_of(stem.split(".")[0])[0]
        if new_mod:
            subj = r.choice([f"Add {mod.name} module", f"Introduce {mod.name} {r.choice(['package', 'service', 'crate', 'module'])}",
                             f"Scaffold {mod.src}"])
        else:
            subj = r.choice([f"Add {main_sym}", f"Add {noun} {r.choice(['support', 'client', 'endpoint', 'handling', 'export'])} to {mod.name}",
                             f"Implement {noun} {r.choice(VERBS)} in {stem}", f"Add {stem}",
                             f"Support {r.choice(ADJ)} {noun}s in {main_sym}"])
        return Op("feat", subj, mod.name, reason=r.random() < 0.3)

    def op_test(self, tx: Tx, allow) -> Op | None:
        r = self.rng
        cands = self.files_where(tx.state, lambda p, f: f.mod is not None and allow(f.mod)
                                 and f.kind in LANG_OF_KIND and f.kind not in HEADER_KINDS and not is_test_path(p))
        if not cands:
            return None
        (p, f), = self.pick_weighted(cands)
        mod = self.modules[f.mod]
        tp = self.test_path_for(mod, p)
        if tp is None:
            return None
        if tp in tx.state and r.random() < 0.3:
            tf = tx.state[tp]
            res = self.edit_unit(tx.state, tp, tf, r.choice(["tweak", "replace", "insert"]))
            if not res:
                return None
            tx.put(tp, res[0])
            return Op("test", r.choice([f"Fix flaky {res[1]['sym']}", f"Tighten assertions in {res[1]['sym']}",
                                        f"Stabilise {tp.rsplit('/', 1)[-1]}"]), mod.name)
        syms = [u.name for u in f.units if u.kind in ("fn", "class")]
        sym = r.choice(syms) if syms else None
        if self.test_for(tx, p, f, sym) is None:
            return None
        sym = sym or p.rsplit("/", 1)[-1]
        return Op("test", r.choice([f"Add tests for {sym}", f"Cover {r.choice(ADJ)} {words_of(sym)[-1]} in {sym}",
                                    f"Add regression test for {sym}", f"Test {sym} {r.choice(SCENARIOS).replace('_', ' ')}"]),
                  mod.name)

    def readme(self, tx: Tx, mod: Module) -> str:
        p = f"{mod.dirs()[2] or mod.src}/README.md"
        if p in tx.state:
            f = tx.state[p]
            tx.put(p, f.evolve(units=f.units + (self.md_section(),)))
        else:
            tx.put(p, F(self.new_fid(0.3), "md", mod.mid, head=(f"# {mod.name}", "", self.sentence()),
                        units=(self.md_section(), self.md_section()), sep=1))
        return p

    def cargo(self, tx: Tx, mod: Module) -> None:
        p = f"{mod.dirs()[2]}/Cargo.toml"
        deps = self.rng.sample(DEPS["rs"], 3)
        tx.put(p, F(self.new_fid(0.3), "toml", mod.mid,
                    head=("[package]", f'name = "{mod.name}"', 'version = "0.1.0"', 'edition = "2021"', "", "[dependencies]"),
                    units=tuple(Unit("dep", d, (f'{d} = "{self.ver()}"',)) for d in deps), sep=0))
        lib = f"{mod.src}/lib.rs"
        if lib not in tx.state:
            mods = [q.rsplit("/", 1)[-1][:-3] for q in tx.state if q.startswith(mod.src + "/") and q.endswith(".rs")]
            tx.put(lib, F(self.new_fid(0.5), "rs", mod.mid, f"The {mod.name} crate",
                          units=(Unit("line", "mods", tuple(f"pub mod {m};" for m in mods) + ("pub mod error;",)),)))
            tx.put(f"{mod.src}/error.rs", F(self.new_fid(0.2), "rs", mod.mid, f"Errors of the {mod.name} crate",
                                            units=(Unit("class", "Error", ("#[derive(Debug, thiserror::Error)]", "pub enum Error {",
                                                                           "    #[error(\"invalid {0}\")]", "    Invalid(String),",
                                                                           "    #[error(\"truncated input at {0}\")]", "    Truncated(usize),", "}")),)))

    def ver(self) -> str:
        r = self.rng
        return f"{r.randint(0, 4)}.{r.randint(0, 30)}.{r.randint(0, 12)}"

    def sentence(self) -> str:
        r, s = self.rng, self.syn
        return r.choice([
            f"The {s.noun()} {r.choice(['service', 'module', 'worker', 'layer'])} is responsible for {s.verb()}ing {s.noun()}s before they reach the {s.noun()} store.",
            f"Every {s.noun()} carries a {s.noun()} id; {s.verb()} it before calling into the {s.noun()} client.",
            f"Retries use exponential backoff capped at {s.num()} seconds.",
            f"See `{s.noun()}_{s.noun()}` for the {s.noun()} lifecycle and how it interacts with the {s.noun()} cache.",
            f"Set `{s.noun().upper()}_{r.choice(['TIMEOUT', 'LIMIT', 'URL'])}` to override the default in development.",
            f"The {s.noun()} table is append-only; compaction runs nightly.",
        ])

    def md_section(self) -> Unit:
        r, s = self.rng, self.syn
        title = f"{s.noun().capitalize()} {r.choice(['lifecycle', 'configuration', 'failure modes', 'design', 'limits', 'migration', 'testing'])}"
        lines = [f"## {title}", ""] + [self.sentence() for _ in range(r.randint(1, 4))]
        if r.random() < 0.3:
            lines += ["", "```", f"{s.verb()} --{s.noun()} {s.num()}", "```"]
        return Unit("sec", title, tuple(lines))

    def op_docs(self, tx: Tx, allow) -> Op | None:
        r = self.rng
        docs = [(p, f) for p, f in tx.state.items() if f.kind == "md" and (f.mod is None or allow(f.mod)) and p != "CHANGELOG.md"]
        roll = r.random()
        if roll < 0.12:
            n = len([p for p in tx.state if p.startswith("docs/adr/")]) + 1
            slug = "-".join([self.syn.verb(), self.syn.noun(), r.choice(["strategy", "storage", "ownership", "format"])])
            p = f"docs/adr/{n:04d}-{slug}.md"
            tx.put(p, F(self.new_fid(0.2), "md", None, head=(f"# {n}. {slug.replace('-', ' ').capitalize()}", "", "Status: accepted"),
                        units=tuple(self.md_section() for _ in range(3))))
            return Op("docs", f"Add ADR {n:04d}: {slug.replace('-', ' ')}", None)
        if roll < 0.2:
            mods = [m for m in self.modules.values() if allow(m.mid) and any(f.mod == m.mid for f in tx.state.values())]
            if mods:
                m = r.choice(mods)
                p = self.readme(tx, m)
                return Op("docs", r.choice([f"Document {m.name} {r.choice(['setup', 'internals', 'configuration'])}",
                                            f"Update {p}"]), m.name)
        if roll < 0.23:
            pngs = [p for p, f in tx.state.items() if f.kind == "bin"]
            if pngs:
                p = r.choice(pngs)
                tx.put(p, tx.state[p].evolve(data=png_bytes(r, r.choice([32, 48, 64]), r.choice([32, 48]))))
                return Op("docs", f"Update {p.rsplit('/', 1)[-1]}", None)
        if not docs:
            return None
        (p, f), = self.pick_weighted(docs)
        units = list(f.units)
        if units and r.random() < 0.65:
            i = r.randrange(len(units))
            ls = list(units[i].lines)
            if r.random() < 0.5 and len(ls) > 2:
                ls[r.randrange(2, len(ls))] = self.sentence()
            else:
                ls.append(self.sentence())
            units[i] = units[i]._replace(lines=tuple(ls))
            title = units[i].name
        else:
            sec = self.md_section()
            units.append(sec)
            title = sec.name
        tx.put(p, f.evolve(units=tuple(units)))
        return Op("docs", r.choice([f"Document {title.lower()} in {p.rsplit('/', 1)[-1]}", f"Clarify {title.lower()}",
                                    f"Update {p}", f"Fix typo in {p.rsplit('/', 1)[-1]}"]),
                  None if f.mod is None else self.modules[f.mod].name)

    def op_chore(self, tx: Tx, allow) -> Op | None:
        r = self.rng
        roll = r.random()
        if roll < 0.55:
            manifests = [(p, f) for p, f in tx.state.items() if any(u.kind == "dep" for u in f.units)
                         and (f.mod is None or allow(f.mod))]
            if not manifests:
                return None
            p, f = r.choice(manifests)
            units = list(f.units)
            i = r.choice([j for j, u in enumerate(units) if u.kind == "dep"])
            line = units[i].lines[0]
            m = re.search(r"(\d+)\.(\d+)\.(\d+)", line)
            if not m:
                return None
            a, b, c = map(int, m.groups())
            new = f"{a}.{b}.{c + 1}" if r.random() < 0.6 else f"{a}.{b + 1}.0"
            old = m.group(0)
            units[i] = units[i]._replace(lines=(line[:m.start()] + new + line[m.end():],))
            tx.put(p, f.evolve(units=tuple(units)))
            dep = units[i].name
            if r.random() < 0.6:
                subj = f"Bump {dep} from {old} to {new}" + (f" in /{p.rsplit('/', 1)[0]}" if "/" in p else "")
                return Op("chore", subj, None, author=BOT, raw=True,
                          body=f"Bumps {dep} from {old} to {new}.\n\nSigned-off-by: dependabot[bot] <support@github.com>")
            return Op("chore", f"Bump {dep} to {new}", "deps")
        if roll < 0.7:
            if "CHANGELOG.md" not in tx.state:
                return None
            if r.random() < 0.3:
                self.release[1:] = [self.release[1] + 1, 0]
            else:
                self.release[2] += 1
            v = ".".join(map(str, self.release))
            cl = tx.state["CHANGELOG.md"]
            recent = [h["subject"] for h in self.history[-12:] if h["kind"] in ("feat", "fix")][:5] or ["Maintenance"]
            sec = Unit("sec", v, tuple([f"## v{v}", ""] + [f"- {s}" for s in recent]))
            tx.put("CHANGELOG.md", cl.evolve(units=(sec,) + cl.units))
            for mp in ("pyproject.toml", "web/package.json"):
                mf = tx.state.get(mp)
                if mf is not None:
                    tx.put(mp, mf.evolve(head=tuple(re.sub(r'"version": "[^"]+"|version = "[^"]+"',
                                                           lambda m: m.group(0).split('"')[0] + f'"{v}"', h)
                                                    for h in mf.head)))
            return Op("chore", f"Release v{v}", "release", raw=r.random() < 0.5)
        if roll < 0.85:
            cfgs = [(p, f) for p, f in tx.state.items() if f.kind == "yaml"]
            if not cfgs:
                return None
            p, f = r.choice(cfgs)
            units = list(f.units)
            i = r.randrange(len(units))
            ls = list(units[i].lines)
            j = r.randrange(1, len(ls)) if len(ls) > 1 else 0
            m = re.search(r"\d+", ls[j])
            if m:
                ls[j] = ls[j][:m.start()] + str(max(1, int(m.group(0)) * r.choice([2, 3]) // 2)) + ls[j][m.end():]
            else:
                ls.append(f"  {self.syn.noun()}_{r.choice(['timeout', 'limit', 'enabled'])}: {r.choice(['true', 'false', str(self.syn.num())])}")
            units[i] = units[i]._replace(lines=tuple(ls))
            tx.put(p, f.evolve(units=tuple(units)))
            kind = "ci" if p.startswith(".github") else "chore"
            return Op(kind, r.choice([f"Tune {units[i].name} settings in {p.rsplit('/', 1)[-1]}",
                                      f"Increase {units[i].name} {r.choice(['timeout', 'limits', 'workers'])} in {p}",
                                      f"Update {p}"]), None)
        # gitignore / editorconfig / Makefile style chores
        p = r.choice([".gitignore", "Makefile"])
        f = tx.state.get(p)
        if f is None:
            return None
        add = r.choice(["*.log", ".venv/", "dist/", "coverage/", "*.pyc", "target/", ".idea/", "node_modules/",
                        f"{self.syn.noun()}-cache/"]) if p == ".gitignore" else f"{self.syn.verb()}-{self.syn.noun()}:\n\t./scripts/{self.syn.verb()}.sh"
        if any(add in u.lines for u in f.units):
            return None
        tx.put(p, f.evolve(units=f.units + (Unit("line", add, tuple(add.split("\n"))),)))
        return Op("chore", f"Update {p}", None)

    def importers(self, state: dict, path: str) -> list:
        return [(p, f) for p, f in state.items() if path in f.imports]

    def move(self, tx: Tx, allow, old: str, new: str, new_mod: int | None = None) -> None:
        f = tx.state[old]
        if new_mod is not None and new_mod != f.mod:
            f = f.evolve(mod=new_mod)
        tx.rm(old)
        tx.put(new, f)
        for p, g in self.importers(tx.state, old):
            if g.mod is None or allow(g.mod):
                tx.put(p, g.evolve(imports=tuple(new if x == old else x for x in g.imports)))

    def op_rename(self, tx: Tx, allow) -> Op | None:
        r = self.rng
        roll = r.random()
        if roll < 0.18:
            # rename a whole module directory
            mods = [m for m in self.modules.values() if allow(m.mid) and m.lang != "rs"]
            live = [m for m in mods if 2 <= sum(1 for f in tx.state.values() if f.mod == m.mid) <= 40]
            if not live:
                return None
            m = r.choice(live)
            pool = [n for n in MODULE_NAMES[m.lang] if n != m.name
                    and not any(o.lang == m.lang and o.name == n for o in self.modules.values())]
            newname = r.choice(pool) if pool else m.name + ("_v2" if m.lang != "js" else "-v2")
            if m.lang == "java":
                newname = newname.replace("_", "")
            old_dirs, new_dirs = m.dirs(), m.dirs(newname)
            used = [d for o in self.modules.values() if o is not m for d in o.dirs() if d]
            if any(d and any(u == d or u.startswith(d + "/") or d.startswith(u + "/") for u in used) for d in new_dirs):
                return None
            if any(p.startswith(d + "/") for d in new_dirs if d for p in tx.state):
                return None
            moves = []
            for p, f in list(tx.state.items()):
                if f.mod != m.mid:
                    continue
                for od, nd in sorted(zip(old_dirs, new_dirs), key=lambda x: -len(x[0] or "")):
                    if od and p.startswith(od + "/"):
                        moves.append((p, nd + p[len(od):]))
                        break
            if not moves:
                return None
            for o, n in moves:
                self.move(tx, allow, o, n)
            m.name = newname
            od, nd = old_dirs[2] or old_dirs[0], new_dirs[2] or new_dirs[0]
            return Op("refactor", r.choice([f"Rename {od} to {nd}", f"Move {od} to {nd}", f"Rename {m.lang} module {od.rsplit('/', 1)[-1]} to {newname}"]),
                      newname, reason=r.random() < 0.4)
        cands = [(p, f) for p, f in tx.state.items() if f.mod is not None and allow(f.mod) and f.kind in LANG_OF_KIND
                 and not is_test_path(p) and not p.endswith(("lib.rs", "error.rs", "main.rs"))]
        if not cands:
            return None
        p, f = r.choice(cands)
        mod = self.modules[f.mod]
        stem, ext = p.rsplit("/", 1)[-1].rsplit(".", 1)
        if roll < 0.5:
            # move into another module of the same language
            others = [m for m in self.modules.values() if m.lang == mod.lang and m.mid != mod.mid and allow(m.mid)
                      and any(g.mod == m.mid for g in tx.state.values())]
            if not others:
                return None
            dst = r.choice(others)
            np_ = f"{dst.src}/{stem}.{ext}"
            if np_ in tx.state:
                return None
            self.move(tx, allow, p, np_, dst.mid)
            tp = self.test_path_for(mod, p)
            if tp and tp in tx.state and mod.lang != "go":
                ntp = self.test_path_for(dst, np_)
                if ntp and ntp not in tx.state:
                    self.move(tx, allow, tp, ntp, dst.mid)
            return Op("refactor", r.choice([f"Move {stem} into {dst.name}", f"Move {p} to {dst.src}",
                                            f"Relocate {stem} from {mod.name} to {dst.name}"]), dst.name, reason=r.random() < 0.4)
        # rename within its directory
        ws = words_of(stem)
        if r.random() < 0.5 and len(ws) > 1:
            nws = ws[:-1] + [r.choice(["client", "store", "service", "manager", "helpers", "core", self.syn.noun()])]
        else:
            nws = ws + [r.choice(["client", "store", "service", "manager", "helpers", "core"])]
        kind = f.kind
        np_ = f"{p.rsplit('/', 1)[0]}/{stem_name(kind, nws)}.{ext}"
        if np_ in tx.state or np_ == p:
            return None
        self.move(tx, allow, p, np_)
        tp = self.test_path_for(mod, p)
        if tp and tp in tx.state:
            ntp = self.test_path_for(mod, np_)
            if ntp and ntp not in tx.state:
                self.move(tx, allow, tp, ntp)
        return Op("refactor", r.choice([f"Rename {stem}.{ext} to {np_.rsplit('/', 1)[-1]}", f"Rename {stem} to {np_.rsplit('/', 1)[-1].rsplit('.', 1)[0]}"]),
                  mod.name, reason=r.random() < 0.3)

    def op_symbol_rename(self, tx: Tx, allow) -> Op | None:
        r = self.rng
        cands = [(p, f) for p, f in tx.state.items() if f.mod is not None and allow(f.mod) and f.kind in LANG_OF_KIND
                 and not is_test_path(p) and any(u.kind == "fn" and len(words_of(u.name)) >= 2 for u in f.units)]
        if not cands:
            return None
        (p, f), = self.pick_weighted(cands)
        lang = LANG_OF_KIND[f.kind]
        u = r.choice([u for u in f.units if u.kind == "fn" and len(words_of(u.name)) >= 2])
        ws = words_of(u.name)
        nws = [r.choice(VERBS)] + ws[1:] if r.random() < 0.5 else ws[:1] + [self.syn.noun()]
        new = fn_name(lang, nws)
        if new == u.name or any(x.name == new for x in f.units):
            return None
        pat = re.compile(rf"\b{re.escape(u.name)}\b")
        tx.put(p, f.evolve(units=tuple(x._replace(name=new if x is u else x.name,
                                                  lines=tuple(pat.sub(new, ln) for ln in x.lines)) for x in f.units)))
        n = 1
        for q, g in self.importers(tx.state, p):
            if g.mod is not None and not allow(g.mod):
                continue
            nu = tuple(x._replace(lines=tuple(pat.sub(new, ln) for ln in x.lines)) for x in g.units)
            if nu != g.units:
                tx.put(q, g.evolve(units=nu))
                n += 1
        return Op("refactor", r.choice([f"Rename {u.name} to {new}", f"Rename {u.name} to {new} for clarity"]),
                  self.modules[f.mod].name, reason=r.random() < 0.2)

    def op_delete(self, tx: Tx, allow) -> Op | None:
        r = self.rng
        roll = r.random()
        if roll < 0.12:
            counts: dict[int, int] = {}
            for f in tx.state.values():
                if f.mod is not None:
                    counts[f.mod] = counts.get(f.mod, 0) + 1
            small = [self.modules[m] for m, c in counts.items() if allow(m) and c <= 8 and len(counts) > 12]
            if not small:
                return None
            m = r.choice(small)
            for p, f in list(tx.state.items()):
                if f.mod == m.mid:
                    tx.rm(p)
                    self.fragile.pop(f.fid, None)
            for p, f in list(tx.state.items()):
                drop = [x for x in f.imports if x not in tx.state]
                if drop and (f.mod is None or allow(f.mod)) and any(x in tx.base and tx.base[x].mod == m.mid for x in drop):
                    tx.put(p, f.evolve(imports=tuple(x for x in f.imports if x not in drop)))
            return Op("chore", r.choice([f"Remove legacy {m.name} {m.lang} module", f"Delete unused {m.src}",
                                         f"Drop {m.name} package"]), m.name, reason=True)
        cands = [(p, f) for p, f in tx.state.items() if f.mod is not None and allow(f.mod) and f.kind in LANG_OF_KIND
                 and not is_test_path(p) and f.fid not in self.fragile and not p.endswith(("lib.rs", "error.rs"))]
        if len(cands) < 20:
            return None
        # prefer rarely changed files
        w = [1.0 / (0.2 + self.churn.get(f.fid, 1.0)) for _, f in cands]
        p, f = cands[r.choices(range(len(cands)), w)[0]]
        mod = self.modules[f.mod]
        victims = [p]
        tp = self.test_path_for(mod, p)
        if tp and tp in tx.state:
            victims.append(tp)
        for v in victims:
            tx.rm(v)
        for q, g in self.importers(tx.state, p):
            if g.mod is None or allow(g.mod):
                tx.put(q, g.evolve(imports=tuple(x for x in g.imports if x != p)))
        stem = p.rsplit("/", 1)[-1]
        return Op("refactor", r.choice([f"Remove unused {stem}", f"Delete dead {words_of(stem.split('.')[0])[0]} code in {mod.name}",
                                        f"Drop deprecated {stem}"]), mod.name, reason=r.random() < 0.4)

    def op_large(self, tx: Tx, allow) -> Op | None:
        r, s = self.rng, self.syn
        roll = r.random()
        if roll < 0.4:
            libs = ["miniz", "cjson", "xxhash", "sqlite-shim", "zstd-lite", "utf8proc", "lodash-es"]
            lib = r.choice(libs)
            d = f"third_party/{lib}"
            ext = "js" if lib == "lodash-es" else "c"
            p = f"{d}/{lib.replace('-', '_')}.{ext}"
            lang = "js" if ext == "js" else "c"
            if p in tx.state:
                f = tx.state[p]
                units = list(f.units)
                for i in r.sample(range(len(units)), max(1, len(units) // 3)):
                    res = self.edit_unit(tx.state, p, f.evolve(units=tuple(units)), r.choice(["tweak", "insert", "replace"]), i)
                    if res:
                        units = list(res[0].units)
                for _ in range(r.randint(5, 25)):
                    nm = snake([lib.split("-")[0][:4], r.choice(VERBS), s.noun()])
                    units.append(Unit("fn", nm, tuple(s.function(lang, nm, ["memcpy", "memset"]))))
                ver = self.ver()
                tx.put(p, f.evolve(units=tuple(units), doc=f"{lib} {ver} (vendored)"))
                return Op("chore", f"Update vendored {lib} to {ver}", "vendor", body=f"Upstream release {ver}; no local patches.")
            ver = self.ver()
            units = []
            for _ in range(r.randint(40, 90)):
                nm = snake([lib.split("-")[0][:4], r.choice(VERBS), s.noun()])
                units.append(Unit("fn", nm, tuple(s.function(lang, nm, ["memcpy", "memset", "malloc"]))))
            units = list({u.name: u for u in units}.values())
            tx.put(p, F(self.new_fid(0.1), ext, None, f"{lib} {ver} (vendored)", (), units,
                        ["#include <stdlib.h>", "#include <string.h>"] if ext == "c" else []))
            tx.put(f"{d}/LICENSE", F(self.new_fid(0.05), "txt", None, units=(Unit("line", "license", (
                "MIT License", "", f"Copyright (c) {r.randint(2012, 2021)} The {lib} authors", "",
                "Permission is hereby granted, free of charge, to any person obtaining a copy",
                "of this software and associated documentation files (the \"Software\"), to deal",
                "in the Software without restriction, including without limitation the rights",
                "to use, copy, modify, merge, publish, distribute, sublicense, and/or sell",
                "copies of the Software, and to permit persons to whom the Software is",
                "furnished to do so, subject to the following conditions:")),)))
            return Op("chore", f"Vendor {lib} {ver}", "vendor", body=f"Vendored from the {ver} release tarball to avoid a system dependency.")
        if roll < 0.7:
            name = f"{s.noun()}_{s.noun()}s"
            p = f"tests/fixtures/{name}.json"
            rows = []
            for i in range(r.randint(150, 500)):
                rows.append(Unit("line", str(i), (f'  {{"id": {i + 1}, "{s.noun()}": "{s.noun()}-{r.randrange(10**6)}", '
                                                  f'"amount": {r.randrange(10**5) / 100}, "status": "{r.choice(["ok", "pending", "failed"])}"}}',)))
            existing = [q for q in tx.state if q.startswith("tests/fixtures/")]
            if existing and r.random() < 0.5:
                p = r.choice(existing)
            tx.put(p, F(self.new_fid(0.1), "json", None, head=("[",), units=rows, tail=("]",)))
            return Op("test", f"Regenerate {p.rsplit('/', 1)[-1]} fixtures", None, reason=True)
        # sweeping import sort in one language
        lang = r.choice(["py", "ts", "go", "java"])
        n = 0
        for p, f in list(tx.state.items()):
            if f.kind in LANG_OF_KIND and LANG_OF_KIND[f.kind] == lang and f.mod is not None and allow(f.mod) and len(f.imports) > 1:
                srt = tuple(sorted(f.imports))
                if srt != f.imports:
                    tx.put(p, f.evolve(imports=srt))
                    n += 1
                elif r.random() < 0.15:
                    res = self.edit_unit(tx.state, p, f, "tweak")
                    if res:
                        tx.put(p, res[0])
                        n += 1
        if n < 5:
            return None
        tool = {"py": "isort", "ts": "eslint --fix", "go": "goimports", "java": "spotless"}[lang]
        return Op("style", f"Sort {lang} imports with {tool}", None, body=f"Mechanical change: `{tool}` over the whole tree. No behaviour change.")

    def op_revert(self, tx: Tx, allow) -> Op | None:
        for h in reversed(self.history[-25:]):
            if h.get("reverted") or h["kind"] in ("revert", "merge") or not h["changes"]:
                continue
            ok = all(tx.state.get(p) is a for p, b, a in h["changes"])
            ok = ok and all((a or b).mod is None or allow((a or b).mod) for p, b, a in h["changes"])
            if not ok or self.rng.random() < 0.5:
                continue
            for p, b, _a in h["changes"]:
                if b is None:
                    tx.rm(p)
                else:
                    tx.put(p, b)
            h["reverted"] = True
            sha = self.get_sha(h["mark"])
            reason = self.rng.choice(["", "", f"\n\nIt broke the {self.syn.noun()} {self.syn.noun()}s in staging.",
                                      "\n\nCauses a regression in production; reverting until we have a fix."])
            return Op("revert", f'Revert "{h["subject"]}"', None, raw=True, body=f"This reverts commit {sha}.{reason}")
        return None

    # ======================================================================= driver

    MAIN_OPS = [("edit", 31), ("fix", 19), ("feature", 15), ("test", 7), ("docs", 6), ("chore", 6),
                ("rename", 4.5), ("symbol_rename", 1.5), ("delete", 3.4), ("revert", 1.4), ("large", 0.6)]
    BRANCH_OPS = [("feature", 30), ("edit", 42), ("fix", 12), ("test", 16)]

    def run_op(self, base: dict, ops: list, allow, branch: Branch | None = None) -> tuple[Tx, Op]:
        for _ in range(50):
            name = self.rng.choices([o[0] for o in ops], [o[1] for o in ops])[0]
            tx = Tx(base)
            if name == "feature" and branch is not None:
                op = self.op_feature(tx, allow, branch.mod)
            else:
                op = getattr(self, "op_" + name)(tx, allow)
            if op is not None and tx.changes():
                return tx, op
        raise RuntimeError("no operation applies")

    def commit_main(self) -> None:
        locked = self.locked()
        def allow(mid: int) -> bool:
            return mid not in locked

        tx, op = self.run_op(self.main, self.MAIN_OPS, allow)
        author = op.author or self.author()
        committer = ("GitHub", "noreply@github.com", "+0000") if author is BOT else None
        msg = self.message(op)
        changes = tx.changes()
        mark = self.emit("refs/heads/main", author, msg, [self.main_tip] if self.main_tip else [], changes, committer)
        self.main, self.main_tip = tx.state, mark
        self.history.append({"mark": mark, "subject": msg.split("\n", 1)[0], "kind": op.kind, "changes": changes})

    def open_branch(self) -> None:
        r = self.rng
        locked = self.locked()
        mod = self.pick_module(self.main, lambda mid: mid not in locked)
        if mod is None or len(self.mod_files(self.main, mod.mid)) < 2:
            return
        noun = self.syn.noun()
        prefix = r.choices(["feature", "fix", "refactor", ""], [60, 20, 10, 10])[0]
        slug = f"{noun}-{r.choice(VERBS + ['support', 'cleanup', 'v2', 'backoff'])}"
        name = f"{prefix}/{slug}" if prefix else slug
        i = 2
        while name in self.branch_names:
            name = f"{prefix + '/' if prefix else ''}{slug}-{i}"
            i += 1
        self.branch_names.add(name)
        target = r.choices([1, 2, 3, 4, 5, 6, 8], [20, 22, 20, 14, 10, 8, 6])[0]
        owner = self.author()
        self.branches.append(Branch(name, mod, owner, self.main_tip, self.main, target))

    def commit_branch(self, b: Branch) -> None:
        mid = b.mod.mid
        tx, op = self.run_op(b.state, self.BRANCH_OPS, lambda m: m == mid, b)
        author = b.owner if self.rng.random() < 0.85 else self.author()
        msg = self.message(op)
        b.tip = self.emit(f"refs/heads/{b.name}", author, msg, [b.tip], tx.changes())
        b.state = tx.state
        b.ncommits += 1
        b.subjects.append(msg.split("\n", 1)[0])

    def merge_branch(self, b: Branch) -> None:
        r = self.rng
        mid = b.mod.mid
        tx = Tx(self.main)
        for p, f in self.main.items():
            if f.mod == mid and b.state.get(p) is not f:
                tx.rm(p)
        for p, f in b.state.items():
            if f.mod == mid and self.main.get(p) is not f:
                tx.put(p, f)
        changes = tx.changes()
        self.pr += r.randint(1, 4)
        login = b.owner[0].split()[0].lower()
        if r.random() < 0.7:
            msg = f"Merge pull request #{self.pr} from {login}/{b.name.replace('/', '-')}\n\n{b.subjects[0]}\n"
        else:
            msg = f"Merge branch '{b.name}'\n"
        merger = b.owner if r.random() < 0.5 else self.author()
        mark = self.emit("refs/heads/main", merger, msg, [self.main_tip, b.tip], changes)
        self.main, self.main_tip = tx.state, mark
        self.history.append({"mark": mark, "subject": msg.split("\n", 1)[0], "kind": "merge", "changes": changes})
        self.branches.remove(b)
        self.merged_refs.append(f"refs/heads/{b.name}")
        self.merges += 1

    def initial(self) -> None:
        r, s = self.rng, self.syn
        tx = Tx({})
        for lang, name in [("py", "core"), ("py", "auth"), ("py", "billing"), ("go", "api"), ("ts", "common"),
                           ("ts", "api"), ("rs", "parser"), ("java", "billing"), ("c", "codec"), ("cpp", "render"), ("js", "codegen")]:
            layout = LAYOUTS[lang][1] if (lang, name) == ("ts", "api") else LAYOUTS[lang][0]
            m = Module(len(self.modules) + 1, lang, layout, name, r.lognormvariate(0, 0.9))
            self.modules[m.mid] = m
            if lang == "rs":
                self.cargo(tx, m)
            for _ in range(r.randint(3, 5)):
                p, f = self.make_code_file(tx.state, m)
                tx.put(p, f)
            srcs = self.mod_files(tx.state, m.mid)
            for p, f in srcs[:2]:
                if f.kind not in HEADER_KINDS:
                    self.test_for(tx, p, f)
            if r.random() < 0.5:
                self.readme(tx, m)
        # a few fragile files: bugs will cluster there
        code = [f for p, f in tx.state.items() if f.kind in LANG_OF_KIND and not is_test_path(p) and f.kind not in HEADER_KINDS]
        for f in r.sample(code, min(5, len(code))):
            self.fragile[f.fid] = r.lognormvariate(0.5, 0.6)

        def put(p, kind, head=(), units=(), tail=(), sep=1, mode="100644", data=None):
            tx.put(p, F(self.new_fid(0.4), kind, None, head=head, units=units, tail=tail, sep=sep, mode=mode, data=data))

        put("README.md", "md", ("# Acme Platform", "", "Monorepo for the Acme billing, upload and search products."),
            tuple(self.md_section() for _ in range(4)))
        put("CHANGELOG.md", "md", ("# Changelog",), (Unit("sec", "1.0.0", ("## v1.0.0", "", "- Initial release")),))
        put("LICENSE", "txt", units=(Unit("line", "l", ("Copyright (c) 2021 Acme Corp.", "All rights reserved.")),))
        put(".gitignore", "txt", units=tuple(Unit("line", x, (x,)) for x in ["__pycache__/", "*.egg-info/", "node_modules/", "target/", "build/", ".env"]), sep=0)
        put(".editorconfig", "txt", units=(Unit("line", "ec", ("root = true", "", "[*]", "indent_style = space", "indent_size = 4", "", "[*.go]", "indent_style = tab")),))
        put("Makefile", "txt", units=(Unit("line", "all", (".PHONY: test lint", "", "test:", "\tpytest -q", "\tgo test ./...", "\tcargo test", "", "lint:", "\truff check src tests")),))
        put("pyproject.toml", "toml", ("[project]", 'name = "acme-platform"', 'version = "1.0.0"', 'requires-python = ">=3.10"', "dependencies = ["),
            tuple(Unit("dep", d, (f'    "{d}>={self.ver()}",',)) for d in r.sample(DEPS["py"], 7)),
            ("]", "", "[tool.pytest.ini_options]", 'testpaths = ["tests"]', "", "[tool.ruff]", "line-length = 100"), sep=0)
        put("web/package.json", "json", ("{", '  "name": "@acme/web",', '  "version": "1.0.0",', '  "private": true,',
                                          '  "scripts": { "build": "vite build", "test": "vitest run" },', '  "dependencies": {'),
            tuple(Unit("dep", d, (f'    "{d}": "^{self.ver()}"',)) for d in r.sample(DEPS["ts"], 8)), ("  }", "}"))
        put("web/tsconfig.json", "json", ("{", '  "compilerOptions": {'),
            tuple(Unit("opt", k, (f'    "{k}": {v}',)) for k, v in [("target", '"ES2022"'), ("module", '"ESNext"'), ("strict", "true"), ("jsx", '"react-jsx"'), ("skipLibCheck", "true")]),
            ("  }", "}"))
        put("go.mod", "txt", ("module github.com/acme/platform", "", "go 1.21", "", "require ("),
            tuple(Unit("dep", d, (f"\t{d} v{self.ver()}",)) for d in r.sample(DEPS["go"], 4)), (")",), sep=0)
        put("Cargo.toml", "toml", ("[workspace]", 'members = ["crates/*"]', 'resolver = "2"'), ())
        put("config/default.yaml", "yaml", (), tuple(Unit("cfg", k, (f"{k}:",) + tuple(f"  {s.noun()}_{x}: {s.num()}" for x in ("timeout", "limit", "workers")))
                                                     for k in ["server", "database", "cache", "queue", "uploads"]))
        put("config/production.yaml", "yaml", (), tuple(Unit("cfg", k, (f"{k}:",) + tuple(f"  {s.noun()}_{x}: {s.num()}" for x in ("timeout", "limit")))
                                                        for k in ["server", "database", "cache"]))
        put("docker-compose.yml", "yaml", ("version: \"3.9\"", "services:"),
            tuple(Unit("cfg", k, (f"  {k}:", f"    image: {k}:{r.randint(5, 16)}", f"    ports: [\"{r.randint(3000, 9000)}:{r.randint(3000, 9000)}\"]")) for k in ["postgres", "redis", "minio"]), sep=0)
        put(".github/workflows/ci.yml", "yaml", ("name: ci", "on: [push, pull_request]", "jobs:"),
            tuple(Unit("cfg", j, (f"  {j}:", "    runs-on: ubuntu-latest", "    timeout-minutes: 20", "    steps:", "      - uses: actions/checkout@v4", f"      - run: make {j}"))
                  for j in ["test", "lint"]), sep=0)
        put("docs/architecture.md", "md", ("# Architecture", ""), tuple(self.md_section() for _ in range(5)))
        put("docs/runbook.md", "md", ("# Runbook", ""), tuple(self.md_section() for _ in range(3)))
        put("scripts/deploy.sh", "txt", ("#!/usr/bin/env bash", "set -euo pipefail"),
            (Unit("line", "d", ('ENV="${1:-staging}"', 'echo "deploying to $ENV"', "make test", "./scripts/push.sh \"$ENV\"")),), mode="100755")
        put("web/public/logo.png", "bin", data=png_bytes(r, 48, 48))
        put("docs/images/architecture.png", "bin", data=png_bytes(r, 64, 40))
        put("assets/icon.png", "bin", data=png_bytes(r, 16, 16))
        author = AUTHORS[0][:2] + (AUTHORS[0][2],)
        self.main_tip = self.emit("refs/heads/main", author, "Initial commit\n", [], tx.changes())
        self.main = tx.state
        self.history.append({"mark": self.main_tip, "subject": "Initial commit", "kind": "init", "changes": []})

    def run(self, repo: Path) -> None:
        self.proc = subprocess.Popen(["git", "-C", str(repo), "fast-import", "--quiet", "--done"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        try:
            self.write(b"feature done\nfeature get-mark\n")
            self.initial()
            r = self.rng
            while self.made < self.n:
                remaining = self.n - self.made
                empty = [b for b in self.branches if b.ncommits == 0]
                if remaining <= len(empty):
                    self.commit_branch(empty[0])
                    continue
                if len(self.branches) < 2 and (remaining <= 12 or r.random() < 0.3):
                    self.open_branch()
                if self.branches and r.random() < 0.2:
                    b = r.choice(self.branches)
                    if b.ncommits >= b.target and remaining > 12:
                        self.merge_branch(b)
                    else:
                        self.commit_branch(b)
                else:
                    self.commit_main()
            self.write(b"done\n")
            self.flush()
            self.proc.stdin.close()
        finally:
            rc = self.proc.wait()
        if rc != 0:
            raise RuntimeError(f"git fast-import failed with exit code {rc}")


def generate(out_dir: Path, commits: int, seed: int = 1) -> Path:
    """Create a git repository of ``commits`` commits in ``out_dir``; return its path."""
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} exists and is not empty")
    out_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, GIT_CONFIG_NOSYSTEM="1")
    subprocess.run(["git", "init", "-q", "-b", "main", str(out_dir)], check=True, env=env)
    g = Generator(commits, seed)
    g.run(out_dir)
    if g.merged_refs:
        subprocess.run(["git", "-C", str(out_dir), "update-ref", "--stdin"], check=True,
                       input="".join(f"delete {ref}\n" for ref in g.merged_refs).encode())
    subprocess.run(["git", "-C", str(out_dir), "reset", "--hard", "-q", "main"], check=True)
    generate.last_stats = {"commits": g.made, "merges": g.merges, "files": len(g.main),
                           "unmerged_branches": [b.name for b in g.branches if b.ncommits]}
    return out_dir


generate.last_stats = {}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="Generate a deterministic git repository with a realistic history (for lmm benchmarks).",
        epilog="Example: python benchmarks/genrepo.py /tmp/bench-repo --commits 5000 --seed 1")
    ap.add_argument("out_dir", type=Path, help="directory to create (must not exist or be empty)")
    ap.add_argument("--commits", type=int, default=5000, help="number of commits to generate (default 5000)")
    ap.add_argument("--seed", type=int, default=1, help="random seed; same seed, same history (default 1)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    try:
        generate(args.out_dir, args.commits, args.seed)
    except (FileExistsError, RuntimeError, subprocess.CalledProcessError) as e:
        print(f"genrepo: {e}", file=sys.stderr)
        return 1
    st = generate.last_stats
    print(f"{args.out_dir}: {st['commits']} commits, {st['merges']} merges, {st['files']} files, "
          f"{len(st['unmerged_branches'])} unmerged branches, {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
