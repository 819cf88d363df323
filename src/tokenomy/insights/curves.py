"""A simulation's spend over time, for its plots, in memory that does not grow with traffic.

`Curves` is told each request's cost in every series (the baseline, then each
policy's result) as the simulation reads the request. Per series it keeps the
spend per UTC day of the requests that have a time, and the running total over
the requests in order, sampled at most `POINTS` times: at every request while
there are fewer, then at every second one, every fourth, and so on. What it
holds grows with days and series, never with the number of requests.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal

__all__ = ["POINTS", "Curve", "Curves"]

POINTS = 2048
_ZERO = Decimal(0)


@dataclass(slots=True)
class Curve:
    """One series: spend per UTC day, and the running total at sampled requests."""

    daily: dict[date, Decimal] = field(default_factory=dict)
    points: list[tuple[int, Decimal]] = field(default_factory=list)  # (requests, spend so far)
    total: Decimal = _ZERO  # the known spend of every request so far


@dataclass(slots=True)
class Curves:
    series: list[Curve]
    requests: int = 0
    timed: bool = True  # every request so far had a time
    stride: int = 1  # a point every ``stride`` requests

    @classmethod
    def of(cls, n: int) -> Curves:
        return cls([Curve() for _ in range(n)])

    def add(self, ts: float | None, costs: Sequence[Decimal | None]) -> None:
        """One request: its time (None: the log has none) and its cost in each
        series (None: unknown, which adds nothing known)."""
        self.requests += 1
        day: date | None = None
        if ts is None:
            self.timed = False
        else:
            day = datetime.fromtimestamp(ts, UTC).date()
        sample = self.requests % self.stride == 0
        for curve, cost in zip(self.series, costs, strict=True):
            amount = cost or _ZERO
            curve.total += amount
            if day is not None:
                curve.daily[day] = curve.daily.get(day, _ZERO) + amount
            if sample:
                curve.points.append((self.requests, curve.total))
        if sample and len(self.series[0].points) > POINTS:
            for curve in self.series:
                curve.points = curve.points[1::2]
            self.stride *= 2

    def cumulative(self, i: int) -> list[tuple[int, Decimal]]:
        """Series ``i``'s running total at the sampled requests and at the last one."""
        curve = self.series[i]
        points = list(curve.points)
        if self.requests and (not points or points[-1][0] != self.requests):
            points.append((self.requests, curve.total))
        return points
