"""The promotion rule: when a fitted candidate replaces what is in use.

One rule for every fit lmm makes of itself (recall's fusion weights now, the repository adapters
next): a candidate is fitted on earlier history only and scored, beside the version in use, on
history that came after it. It is promoted only if it does at least as well there, on the objective
both were fitted for. Where a slice of older history is given (what must not be forgotten), it
must not do worse on that one either. Anything else keeps the version in use — for a repository
where learning does not help, that is the base, so lmm is never worse than it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["Verdict", "score", "judge", "TOLERANCE"]

TOLERANCE = 1e-12  # float noise, not a margin: a tie keeps the candidate (it was fitted on more)


def score(metrics: Mapping[str, float]) -> float:
    """The objective a fit is judged on: the mean of MRR and Hit@5. MRR alone rewards lifting a
    few first places at the price of answers falling out of the top five, which is what a brief
    shows."""
    return 0.5 * (metrics["mrr"] + metrics["hit5"])


@dataclass(frozen=True)
class Verdict:
    promote: bool
    reason: str


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
