"""The promotion rule: when a fitted candidate replaces what is in use.

One rule for every fit lmm makes of itself (recall's fusion weights now, the repository adapters
next): a candidate is fitted on earlier history only and scored, beside the version in use, on
history that came after it. It is promoted only if it does at least as well there, on the objective
both were fitted for. Where a slice of older history is given (what must not be forgotten), it
must not do worse on that one either. Anything else keeps the version in use — for a repository
where learning does not help, that is the base, so lmm is never worse than it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["Verdict", "score", "judge", "TOLERANCE", "per_query", "paired_gain", "clear_gain", "MARGIN_SE"]

TOLERANCE = 1e-12  # float noise, not a margin: a tie keeps the candidate (it was fitted on more)
# How many standard errors a paired per-query gain must reach where the judge has each query's
# score (``clear_gain``): one, so that a difference the same queries would show by chance (a few of
# them up, a few down) keeps the version in use.
MARGIN_SE = 1.0


def score(metrics: Mapping[str, float]) -> float:
    """The objective a fit is judged on: the mean of MRR and Hit@5. MRR alone rewards lifting a
    few first places at the price of answers falling out of the top five, which is what a brief
    shows."""
    return 0.5 * (metrics["mrr"] + metrics["hit5"])


@dataclass(frozen=True)
class Verdict:
    promote: bool
    reason: str


def per_query(first: int) -> float:
    """One query's part of ``score``: the mean of its reciprocal rank and its Hit@5, from the rank
    of its first right answer (0: none in the ranking)."""
    if first <= 0:
        return 0.0
    return 0.5 * (1.0 / first + (1.0 if first <= 5 else 0.0))


def paired_gain(incumbent: Sequence[float], candidate: Sequence[float]) -> tuple[float, float]:
    """The mean per-query gain of ``candidate`` over ``incumbent`` (the same queries, in order)
    and its standard error."""
    d = [c - i for i, c in zip(incumbent, candidate)]
    n = len(d)
    if n == 0:
        return 0.0, 0.0
    mean = sum(d) / n
    if n == 1:
        return mean, 0.0
    var = sum((x - mean) ** 2 for x in d) / (n - 1)
    return mean, math.sqrt(var / n)


def clear_gain(incumbent: Sequence[float], candidate: Sequence[float], what: str, *,
               margin: float = MARGIN_SE) -> Verdict:
    """Promote only on a gain that chance would not give: the candidate's mean per-query score on
    the same queries at least ``margin`` standard errors above the incumbent's, and above it at
    all (a tie keeps the version in use, where nothing says the change helps)."""
    gain, se = paired_gain(incumbent, candidate)
    shown = f"{gain:+.3f} ± {se:.3f} per query over {len(incumbent)}"
    if gain <= TOLERANCE or gain < margin * se - TOLERANCE:
        return Verdict(False, f"not clearly better {what} ({shown})")
    return Verdict(True, f"clearly better {what} ({shown})")


def judge(later_incumbent: Mapping[str, float], later_candidate: Mapping[str, float], *,
          older_incumbent: Mapping[str, float] | None = None,
          older_candidate: Mapping[str, float] | None = None) -> Verdict:
    """Promote ``candidate`` over ``incumbent`` when, on the history after the candidate's training
    data (and on an older slice, where both scores are given), it scores at least as well."""
    new, old = score(later_candidate), score(later_incumbent)
    if new < old - TOLERANCE:
        return Verdict(False, f"worse on later history ({new:.3f} < {old:.3f})")
    if older_incumbent is not None and older_candidate is not None:
        kept, before = score(older_candidate), score(older_incumbent)
        if kept < before - TOLERANCE:
            return Verdict(False, f"forgets older history ({kept:.3f} < {before:.3f})")
    return Verdict(True, f"at least as good on later history ({new:.3f} ≥ {old:.3f})")
