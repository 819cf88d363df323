"""What the dashboard shows, read from the ledger for each page.

One scan of the selected range, filtered and summed in SQL by day, the chosen
breakdown, model, provider and route, feeds every panel, each grouping it its
own way. Two more list the teams and models (the coarse rollup) and the tags
to filter by. The forecast reads its own window: this month so far plus eight
weeks of history; the top requests and the budgets read theirs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from ..ledger.base import SQLStore
from ..records import UsageRecord
from ..reports import DIMENSIONS, Filters, Group, Totals, check_dimension, scan, top_requests
from .state import StatePanel, balances, budgets, tables

try:  # the forecast is another feature of the same issue; the page works without it
    from ..insights.forecast import forecast as _forecast
except ImportError:  # pragma: no cover - depends on what is installed
    _forecast = None  # type: ignore[assignment]

log = logging.getLogger("tokenomy.dashboard")

BREAKDOWNS = tuple(d for d in DIMENSIONS if d != "day")
SERIES = 7  # the largest series in the spend chart; the rest are added up as "other"
SPENDERS = 15  # top spenders listed (the panel says of how many)
TOP = 10  # most expensive requests listed (the panel says of how many)
HISTORY_DAYS = 56
# The days a page can show: from the unix epoch to the last with a next day (the
# range ends at the next midnight), at most MAX_DAYS of them.
FIRST_DAY, LAST_DAY = date(1970, 1, 1), date(9999, 12, 30)
MAX_DAYS = 3660


@dataclass(frozen=True, slots=True)
class View:
    """The page's query string: an inclusive range of UTC days, and filters."""

    since: date
    until: date
    team: str | None = None
    model: str | None = None
    tag: str | None = None  # "key=value"
    by: str = "team"
    problems: tuple[str, ...] = ()

    @classmethod
    def parse(cls, query: Mapping[str, str], today: date) -> View:
        problems = []

        def day(name: str, default: date) -> date:
            raw = query.get(name, "").strip()
            if not raw:
                return default
            try:
                d = date.fromisoformat(raw)
            except ValueError:
                problems.append(f"{name}: {raw!r} is not a date (YYYY-MM-DD)")
                return default
            if not FIRST_DAY <= d <= LAST_DAY:
                problems.append(f"{name}: {raw!r} is not between {FIRST_DAY} and {LAST_DAY}")
                return default
            return d

        until = day("until", today)
        since = day("since", max(until - timedelta(days=29), FIRST_DAY))
        if since > until:
            problems.append("the start is after the end; showing the end day only")
            since = until
        if (until - since).days >= MAX_DAYS:  # one chart bar and one value per series a day
            since = until - timedelta(days=MAX_DAYS - 1)
            problems.append(f"a page shows at most {MAX_DAYS} days; showing those to {until}")
        by = query.get("by", "team")
        try:
            check_dimension(by)
        except ValueError:
            problems.append(f"cannot break down by {by!r}")
            by = "team"
        if by == "day":
            by = "team"
        tag = query.get("tag") or None
        if tag is not None and "=" not in tag:
            problems.append(f"tag filter {tag!r} is not key=value")
            tag = None
        return cls(since, until, query.get("team") or None, query.get("model") or None, tag,
                   by, tuple(problems))  # fmt: skip

    @property
    def filters(self) -> Filters:
        tags: tuple[tuple[str, str], ...] = ()
        if self.tag:
            k, _, v = self.tag.partition("=")
            tags = ((k, v),)
        return Filters(
            teams=(self.team,) if self.team else (),
            models=(self.model,) if self.model else (),
            tags=tags,
        )

    @property
    def bounds(self) -> tuple[float, float]:
        return _ts(self.since), _ts(self.until + timedelta(days=1))


@dataclass(slots=True)
class ForecastPanel:
    month: str
    projected: Decimal | None = None
    low: Decimal | None = None
    high: Decimal | None = None
    actual: Decimal | None = None
    chart: dict[str, Any] | None = None
    unavailable: str | None = None


@dataclass(slots=True)
class Dashboard:
    view: View
    total: Totals
    days: list[str]
    series: list[tuple[str, list[Decimal]]]
    spenders: list[Group]  # the SPENDERS largest
    top: list[UsageRecord]  # the TOP most expensive of total.priced_requests
    levers: list[tuple[str, Decimal]]
    unpriced: list[Group]
    routes: list[Group]
    budgets: StatePanel
    balances: StatePanel
    forecast: ForecastPanel
    options: dict[str, list[str]] = field(default_factory=dict)
    spender_groups: int = 0  # how many groups the spenders are the largest of
    top_cut: bool = False  # more priced requests than ``top`` lists


def _ts(d: date) -> float:
    return datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp()


def collect(store: SQLStore, view: View, now: float, *, tz: str = "UTC") -> Dashboard:
    lo, hi = view.bounds
    listed = scan(store, since=lo, until=hi, dims=("team", "model"))
    tags = scan(store, since=lo, until=hi, dims=("tag",))
    options = {
        "team": sorted(str(g.key[0]) for g in listed.group(("team",)) if g.key[0]),
        "model": sorted(str(g.key[0]) for g in listed.group(("model",)) if g.key[0]),
        "tag": sorted(str(g.key[0]) for g in tags.group(("tag",)) if g.key[0]),
    }
    sc = scan(store, since=lo, until=hi, filters=view.filters,
              dims=("day", view.by, "model", "provider", "route"))  # fmt: skip
    total = sc.total()
    days = [(view.since + timedelta(days=i)).isoformat()
            for i in range((view.until - view.since).days + 1)]  # fmt: skip
    # Series by key, not by label: a team (or user, tag...) may be called
    # "other" or "(none)", and must not be added to the rest or to the unset.
    ranked = [g.key[0] for g in sc.group((view.by,))]
    keep = ranked[:SERIES] if len(ranked) <= SERIES + 1 else ranked[: SERIES - 1]
    slot = {k: i for i, k in enumerate(keep)}
    names = [k or "(none)" for k in keep] + (["other"] if len(keep) < len(ranked) else [])
    index = {d: i for i, d in enumerate(days)}
    values = [[Decimal(0)] * len(days) for _ in names]
    for g in sc.group(("day", view.by), sort="key"):
        values[slot.get(g.key[1], len(keep))][index[str(g.key[0])]] += g.totals.cost_usd
    present = tables(store)
    # One more than shown: it tells whether the list is cut.
    top = top_requests(store, since=lo, until=hi, filters=view.filters, limit=TOP + 1,
                       matching=total.requests)  # fmt: skip
    return Dashboard(
        view=view,
        total=total,
        days=days,
        series=list(zip(names, values, strict=True)),
        spenders=sc.group((view.by,))[:SPENDERS],
        spender_groups=len(ranked),
        top=top[:TOP],
        top_cut=len(top) > TOP,
        levers=sorted(total.savings.items(), key=lambda kv: (-kv[1], kv[0])),
        unpriced=[g for g in sc.group(("model", "provider")) if g.totals.unpriced_requests],
        routes=sc.group(("route",)),
        budgets=budgets(store, present, now=now, tz=tz),
        balances=balances(store, present),
        forecast=month_forecast(store, view.filters, now),
        options=options,
    )


def month_forecast(store: SQLStore, filters: Filters, now: float) -> ForecastPanel:
    today = datetime.fromtimestamp(now, UTC).date()
    first = today.replace(day=1)
    last = (first + timedelta(days=32)).replace(day=1) - timedelta(days=1)
    panel = ForecastPanel(month=first.strftime("%B %Y"))
    if _forecast is None:
        panel.unavailable = "Forecast unavailable: the forecasting module is not in this build."
        return panel
    start = min(first, today - timedelta(days=HISTORY_DAYS))
    sc = scan(store, since=_ts(start), until=_ts(today + timedelta(days=1)), filters=filters,
              dims=("day",))  # fmt: skip
    daily = [(date.fromisoformat(str(g.key[0])), g.totals.cost_usd)
             for g in sc.group(("day",), sort="key")]  # fmt: skip
    try:
        fc = _forecast(daily, until=last, period_start=first)
    except Exception as exc:  # another feature's code: show the page, not a traceback
        log.warning("forecast failed: %s", exc)
        panel.unavailable = f"Forecast unavailable ({type(exc).__name__}: {exc})."
        return panel
    if not daily:
        panel.unavailable = "Forecast unavailable: no spend in the last eight weeks."
        return panel
    panel.projected, panel.low, panel.high = fc.projected_total, fc.low, fc.high
    panel.actual = fc.actual_to_date
    labels = [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]
    spent = dict(daily)
    actual: list[float | None] = []
    running = Decimal(0)
    observed = fc.last_observed or today
    for i in range(len(labels)):
        d = first + timedelta(days=i)
        running += spent.get(d, Decimal(0))
        actual.append(float(running) if d <= observed else None)
    projected: list[float | None] = [None] * len(labels)
    running = fc.actual_to_date
    if observed >= first:
        projected[(observed - first).days] = float(running)
    for d, amount in fc.daily_path:
        running += amount
        if first <= d <= last:
            projected[(d - first).days] = float(running)
    panel.chart = {"labels": labels, "actual": actual, "projected": projected,
                   "low": float(fc.low), "high": float(fc.high), "budget": None}  # fmt: skip
    return panel
