"""Period-end projection of daily spend, with an uncertainty band.

The model is classical decomposition, small enough to check by hand:

1. **Weekly pattern.** Each day's spend is divided by the centred 7-day moving
   average around it; a weekday's factor is the mean of its ratios, scaled so the
   seven factors average 1. It needs two weeks of history; before that the week
   is taken as flat.
2. **Trend.** A least-squares line through the deseasonalised spend of the last
   ``window`` days (with fewer than ``min_trend_days`` days, a flat level: a line
   through a few noisy days extrapolates wildly).
3. **Projection.** The line times the weekday factor for each day left in the
   period, never below zero, added to the spend so far.
4. **Band.** The prediction interval of that sum under the model: the residual
   variance around the line for each remaining day, plus the uncertainty of the
   line itself, at ``level`` (normal quantile).

The arithmetic is `Decimal`, like every other sum of money in Tokenomy. The spend
so far is exact; the projected part is an estimate and is rounded to micro-dollars.
Days between the first and the last observed day that have no entry count as
zero spend.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from statistics import NormalDist

from ..records import UsageRecord
from .tally import scope_of, tally

__all__ = ["Forecast", "daily_spend", "forecast", "month_bounds", "scope_of"]

_ZERO = Decimal(0)
_ONE = Decimal(1)
_MICRO = Decimal("0.000001")
_FLAT_WEEK = (_ONE,) * 7


@dataclass(frozen=True, slots=True)
class Forecast:
    """Spend projected to the end of a period (``until``, inclusive).

    ``projected_total`` = ``actual_to_date`` + the sum of ``daily_path``, which
    holds the projected spend of each day after the last observed one.
    ``low``/``high`` bound the period's total at ``level``.
    """

    projected_total: Decimal
    low: Decimal
    high: Decimal
    actual_to_date: Decimal
    daily_path: tuple[tuple[date, Decimal], ...]
    period_start: date
    until: date
    last_observed: date | None
    level: float
    weekday_factors: tuple[Decimal, ...]  # Monday first
    trend_per_day: Decimal  # change of the deseasonalised daily spend, USD per day

    def crossing_date(self, budget: Decimal) -> date | None:
        """The first day the projected running total reaches ``budget``; None if
        it stays below it until the period ends."""
        running = self.actual_to_date
        if running >= budget:
            return self.last_observed or self.period_start
        for day, spend in self.daily_path:
            running += spend
            if running >= budget:
                return day
        return None


def month_bounds(day: date) -> tuple[date, date]:
    """The first and last day of ``day``'s calendar month."""
    first = day.replace(day=1)
    nxt = (first + timedelta(days=32)).replace(day=1)
    return first, nxt - timedelta(days=1)


def forecast(
    daily: Iterable[tuple[date, Decimal]],
    *,
    until: date,
    period_start: date | None = None,
    level: float = 0.8,
    window: int = 56,
    min_trend_days: int = 14,
    partial: date | None = None,
) -> Forecast:
    """Project the spend of the period ``period_start``..``until`` (both inclusive).

    ``daily`` is (day, spend) history, in any order; repeated days are summed.
    History before ``period_start`` is used to fit the model but not counted in
    the total. ``period_start`` defaults to the first day of ``until``'s month.

    ``partial`` names a day still under way (today): its spend so far counts, but
    it is left out of the fit, and the path holds what the model expects on top
    of it for the rest of that day.
    """
    if not 0 < level < 1:
        raise ValueError("level must be between 0 and 1")
    if window < 1:
        raise ValueError("window must be at least one day")
    start = period_start or until.replace(day=1)
    spend: defaultdict[date, Decimal] = defaultdict(Decimal)
    for day, amount in daily:
        spend[day] += Decimal(amount)
    so_far = _ZERO
    if partial is not None and partial in spend and len(spend) > 1:
        so_far = spend.pop(partial)
    if not spend:
        zeros = tuple((start + timedelta(i), _ZERO) for i in range((until - start).days + 1))
        return Forecast(_ZERO, _ZERO, _ZERO, _ZERO, zeros, start, until, None, level,
                        _FLAT_WEEK, _ZERO)  # fmt: skip

    first, last = min(spend), max(spend)
    days = [first + timedelta(i) for i in range((last - first).days + 1)]
    ys = [spend.get(d, _ZERO) for d in days]
    actual = sum((v for d, v in spend.items() if start <= d <= until), _ZERO)
    if partial is not None and start <= partial <= until:
        actual += so_far

    days_w, ys_w = days[-window:], ys[-window:]
    factors = _weekday_factors(days_w, ys_w)
    points = [
        (Decimal((d - last).days), y / factors[d.weekday()])
        for d, y in zip(days_w, ys_w, strict=True)
        if factors[d.weekday()] > 0
    ]
    a, b, sigma2, inv = _fit(points, trend=len(points) >= min_trend_days)

    begin = max(last + timedelta(1), start)
    future = [begin + timedelta(i) for i in range((until - begin).days + 1)]
    path: list[tuple[date, Decimal]] = []
    sum_s2 = c0 = c1 = _ZERO
    for d in future:
        s = factors[d.weekday()]
        t = Decimal((d - last).days)
        expected = s * (a + b * t) - (so_far if d == partial else _ZERO)
        path.append((d, max(_ZERO, expected).quantize(_MICRO)))
        sum_s2 += s * s
        c0 += s
        c1 += s * t
    rest = sum((v for _, v in path), _ZERO)
    var = sigma2 * (sum_s2 + c0 * (inv[0] * c0 + inv[1] * c1) + c1 * (inv[1] * c0 + inv[2] * c1))
    z = Decimal(repr(NormalDist().inv_cdf((1 + level) / 2)))
    half = (z * var.sqrt()).quantize(_MICRO) if var > 0 else _ZERO
    return Forecast(
        projected_total=actual + rest,
        low=actual + max(_ZERO, rest - half),
        high=actual + rest + half,
        actual_to_date=actual,
        daily_path=tuple(path),
        period_start=start,
        until=until,
        last_observed=last,
        level=level,
        weekday_factors=factors,
        trend_per_day=b.quantize(_MICRO),
    )


def _weekday_factors(days: Sequence[date], ys: Sequence[Decimal]) -> tuple[Decimal, ...]:
    n = len(ys)
    if n < 14:
        return _FLAT_WEEK
    sums = [_ZERO] * 7
    counts = [0] * 7
    for i in range(3, n - 3):
        ma = sum(ys[i - 3 : i + 4], _ZERO) / 7
        if ma > 0:
            wd = days[i].weekday()
            sums[wd] += ys[i] / ma
            counts[wd] += 1
    if not all(counts):
        return _FLAT_WEEK
    raw = [s / c for s, c in zip(sums, counts, strict=True)]
    mean = sum(raw, _ZERO) / 7
    if mean <= 0:
        return _FLAT_WEEK
    return tuple(r / mean for r in raw)


# (a, b, residual variance, the inverse of X'X as (i00, i01, i11)).
_Fit = tuple[Decimal, Decimal, Decimal, tuple[Decimal, Decimal, Decimal]]


def _fit(points: Sequence[tuple[Decimal, Decimal]], *, trend: bool) -> _Fit:
    """Least squares for d = a + b t; without ``trend``, the mean level only."""
    n = len(points)
    if n == 0:
        return _ZERO, _ZERO, _ZERO, (_ZERO, _ZERO, _ZERO)
    ds = [d for _, d in points]
    mean = sum(ds, _ZERO) / n
    if not trend or n < 3:
        if n < 3:  # too little to estimate the noise: assume one typical day of it
            return mean, _ZERO, mean * mean, (_ONE / n, _ZERO, _ZERO)
        var = sum(((d - mean) ** 2 for d in ds), _ZERO) / (n - 1)
        return mean, _ZERO, var, (_ONE / n, _ZERO, _ZERO)
    ts = [t for t, _ in points]
    st = sum(ts, _ZERO)
    stt = sum((t * t for t in ts), _ZERO)
    t_mean = st / n
    sxx = stt - st * t_mean
    b = sum(((t - t_mean) * (d - mean) for t, d in points), _ZERO) / sxx
    a = mean - b * t_mean
    sse = sum(((d - a - b * t) ** 2 for t, d in points), _ZERO)
    det = n * stt - st * st
    return a, b, sse / (n - 2), (stt / det, -st / det, Decimal(n) / det)


def daily_spend(
    records: Iterable[UsageRecord], *, tz: str = "UTC", by: str | None = None
) -> dict[str, list[tuple[date, Decimal]]]:
    """Spend per calendar day (in ``tz``) for each value of ``by``, oldest first.

    Records whose price is unknown carry no money and are left out.
    """
    return tally(records, tz=tz, by=[by]).series(by)
