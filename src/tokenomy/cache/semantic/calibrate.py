"""Error-bounded acceptance thresholds.

The operator's target is a *wrong-hit rate*: the share of served hits that are not
true duplicates, i.e. 1 - precision among accepted pairs. Given scores and labels
of held-out calibration pairs, `threshold_for` picks the lowest threshold whose
wrong-hit rate is at most the target *with 95% confidence*: the one-sided
Clopper-Pearson upper bound on the wrong-hit rate of the pairs at or above it
must be within the target. (vCache learns per-entry thresholds against a user
error bound; this is the global version of that idea.)

A few candidate thresholds (`POINTS`, spaced geometrically in the number of
calibration pairs they serve) are each tested at confidence
``1 - (1 - CONFIDENCE) / POINTS`` (Bonferroni), so choosing the best of them does
not inflate the error; the lowest passing threshold wins. Unlike a
strictest-first scan, this is not derailed by label noise among the very top
scores (QQP labels some identical questions "not duplicate"). Candidates are
chosen from the scores alone, never from the labels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

CONFIDENCE = 0.95


def _log_factorials(n: int) -> NDArray[np.float64]:
    import numpy as np

    return np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, n + 1, dtype=np.float64)))])


def _binom_cdf(k: int, n: int, p: float, logfact: NDArray[np.float64]) -> float:
    """P(X <= k) for X ~ Binomial(n, p), summed in log space."""
    import numpy as np

    if p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 1.0 if k >= n else 0.0
    i = np.arange(k + 1)
    terms = logfact[n] - logfact[i] - logfact[n - i] + i * math.log(p) + (n - i) * math.log1p(-p)
    top = float(terms.max())
    return min(1.0, math.exp(top) * float(np.exp(terms - top).sum()))


def upper_bound(errors: int, n: int, confidence: float = CONFIDENCE) -> float:
    """One-sided Clopper-Pearson upper bound on a rate seen as errors/n."""
    if n <= 0:
        return 1.0
    if errors >= n:
        return 1.0
    alpha = 1.0 - confidence
    logfact = _log_factorials(n)
    lo, hi = errors / n, 1.0
    for _ in range(60):  # bisection: the CDF falls as p rises
        mid = (lo + hi) / 2
        if _binom_cdf(errors, n, mid, logfact) > alpha:
            lo = mid
        else:
            hi = mid
    return hi


@dataclass(frozen=True)
class Calibrated:
    """The chosen threshold for one target and what it served on calibration data."""

    target: float
    threshold: float  # accept when score >= threshold; > 1 means never serve
    hits: int
    wrong: int
    upper: float  # the confidence bound on the wrong-hit rate at this threshold

    def as_dict(self) -> dict[str, float | int]:
        return {
            "target": self.target,
            "threshold": self.threshold,
            "hits": self.hits,
            "wrong": self.wrong,
            "upper": round(self.upper, 6),
        }


NEVER = 1.01  # a threshold no probability or cosine reaches


POINTS = 40


def threshold_for(
    scores: NDArray[np.floating],
    labels: NDArray[np.integer],
    target: float,
    *,
    confidence: float = CONFIDENCE,
    points: int = POINTS,
) -> Calibrated:
    """The lowest candidate threshold whose wrong-hit rate is bounded by ``target``
    (`NEVER` when none is)."""
    import numpy as np

    order = np.argsort(-scores, kind="stable")
    s = scores[order]
    wrong_cum = np.cumsum(1 - labels[order].astype(np.int64))
    each = 1.0 - (1.0 - confidence) / points
    # fewest hits that could pass with zero errors: (1 - target)^n <= 1 - each
    min_hits = math.ceil(math.log(1.0 - each) / math.log1p(-target)) if 0 < target < 1 else 1
    best = Calibrated(target, NEVER, 0, 0, 1.0)
    if len(s) < min_hits:
        return best
    counts = np.unique(np.geomspace(min_hits, len(s), points).round().astype(np.int64))
    for n in counts:
        thr = float(s[n - 1])  # the n-th best score; ties with it are served too
        hits = int(np.searchsorted(-s, -thr, side="right"))
        wrong = int(wrong_cum[hits - 1])
        ub = upper_bound(wrong, hits, each)
        if ub <= target and hits > best.hits:
            best = Calibrated(target, thr, hits, wrong, ub)
    return best
