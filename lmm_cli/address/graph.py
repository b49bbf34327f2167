"""PageRank: centrality over the file reference graph (an edge ``src → dst`` says src uses a name dst
defines, so rank flows to what is used). Pure Python: a few thousand files and edges take
milliseconds, and a hook's path must not import numpy.

The one implementation in lmm: the index build stores it (``code_rank``) and the repository brief
reads it from there. The ``RepoMap`` baseline in ``bench`` keeps its own, personalised variant: it
is the system being compared against, not a part of lmm."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

__all__ = ["pagerank"]


def pagerank(edges: Iterable[tuple[str, str, float]], nodes: Iterable[str] | None = None, *,
             damping: float = 0.85, iterations: int = 30) -> dict[str, float]:
    """Rank of every node after ``iterations`` power-iteration steps; a node without outgoing
    edges spreads its rank evenly over all nodes. ``nodes`` defaults to the edges' ends; an edge
    to a node outside ``nodes`` still counts in its source's out-weight but carries no rank."""
    out: dict[str, list[tuple[str, float]]] = defaultdict(list)
    for src, dst, w in edges:
        out[src].append((dst, w))
    if nodes is None:
        nodes = dict.fromkeys(p for src, edges_ in out.items() for p in (src, *(d for d, _ in edges_)))
    order = list(nodes)
    n = len(order)
    if n == 0:
        return {}
    rank = {p: 1.0 / n for p in order}
    totals = {src: sum(w for _, w in es) for src, es in out.items()}
    for _ in range(iterations):
        nxt = {p: (1.0 - damping) / n for p in order}
        dangling = sum(rank[p] for p in order if p not in out)
        for p in order:
            nxt[p] += damping * dangling / n
        for src, es in out.items():
            if src not in rank or totals[src] <= 0:
                continue
            share = damping * rank[src] / totals[src]
            for dst, w in es:
                if dst in nxt:
                    nxt[dst] += share * w
        rank = nxt
    return rank
