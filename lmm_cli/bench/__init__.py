"""Benchmarks that run from the package: ``python -m lmm_cli.bench.localize`` (time-travel file localisation).

``baselines`` holds the comparison systems (BM25 over contents, BM25 over path + commit messages,
dense chunks, a repo-map PageRank); ``localize`` holds the harness (held-out commits as queries,
a worktree at the cut, metrics, the markdown table). Nothing here is imported by lmm itself.
"""

from __future__ import annotations

__all__ = ["baselines", "localize"]
