"""RouteLLM's router metrics, from their definitions.

A router ranks prompts by how much they need the strong model. Sending the top
k of n prompts to the strong model (and the rest to the weak one) gives a point
on the *quality vs strong-call-share curve*:

- quality(k) = mean over prompts of the score of the model that served it;
- PGR(k) = (quality(k) - q_weak) / (q_strong - q_weak), the performance gap recovered;
- APGR = the area under PGR over strong share 0..1 (trapezoids over k = 0..n);
  a random router's expected APGR is 0.5;
- CPT(x) = the smallest strong share whose PGR reaches x.

Prompts with tied router scores are served in random order; the curve uses the
expected value over that order (gains are spread evenly inside a tie), so a
constant router is the random router.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class Curve:
    share: list[float]  # k / n, k = 0..n
    quality: list[float]
    q_weak: float
    q_strong: float

    @property
    def pgr(self) -> list[float]:
        gap = self.q_strong - self.q_weak
        if gap == 0:
            return [1.0 for _ in self.quality]
        return [(q - self.q_weak) / gap for q in self.quality]

    def apgr(self) -> float:
        p, s = self.pgr, self.share
        return sum((p[i] + p[i - 1]) / 2 * (s[i] - s[i - 1]) for i in range(1, len(s)))

    def cpt(self, target_pgr: float) -> float:
        """Smallest strong share reaching `target_pgr` of the gap (1.0 if never)."""
        for s, p in zip(self.share, self.pgr, strict=True):
            if p >= target_pgr - 1e-12:
                return s
        return 1.0

    def share_for_quality(self, ratio: float) -> float:
        """Smallest strong share whose quality reaches `ratio` times the strong model's."""
        for s, q in zip(self.share, self.quality, strict=True):
            if q >= ratio * self.q_strong - 1e-12:
                return s
        return 1.0

    def quality_at(self, share: float) -> float:
        k = round(share * (len(self.share) - 1))
        return self.quality[k]


def _tie_groups(strongness: Sequence[float]) -> list[list[int]]:
    order = sorted(range(len(strongness)), key=lambda i: -strongness[i])
    groups: list[list[int]] = []
    for i in order:
        if groups and strongness[groups[-1][0]] == strongness[i]:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def _cumulative(strongness: Sequence[float], delta: Sequence[float]) -> list[float]:
    """out[k] = expected sum of `delta` over the k prompts ranked most strong-needing."""
    out = [0.0]
    for group in _tie_groups(strongness):
        mean = sum(delta[i] for i in group) / len(group)
        for _ in group:
            out.append(out[-1] + mean)
    return out


def curve(strongness: Sequence[float], weak: Sequence[float], strong: Sequence[float]) -> Curve:
    """The quality curve of a router whose higher `strongness` means 'send to strong'."""
    n = len(weak)
    if n == 0 or not (len(strongness) == len(strong) == n):
        raise ValueError("need one router score and one weak and strong score per prompt")
    gain = _cumulative(strongness, [s - w for s, w in zip(strong, weak, strict=True)])
    base = sum(weak)
    return Curve(
        share=[k / n for k in range(n + 1)],
        quality=[(base + g) / n for g in gain],
        q_weak=base / n,
        q_strong=sum(strong) / n,
    )


def cost_at(
    strongness: Sequence[float],
    weak_cost: Sequence[Decimal],
    strong_cost: Sequence[Decimal],
    share: float,
) -> Decimal:
    """Expected total cost when the top `share` of prompts go to the strong model."""
    n = len(weak_cost)
    k = round(share * n)
    total = sum(weak_cost, Decimal(0))
    taken = 0
    for group in _tie_groups(strongness):
        if taken >= k:
            break
        take = min(len(group), k - taken)
        extra = sum((strong_cost[i] - weak_cost[i] for i in group), Decimal(0))
        total += extra * take / len(group)
        taken += take
    return total
