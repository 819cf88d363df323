"""The gateway's alert watcher: the rules of `tokenomy.insights.alerts`, run on a timer.

Every ``alerts.interval`` seconds (default 300; 0 turns it off) a background task
reads the last ``baseline_days`` + 1 UTC days of spend from the daily rollups in
one scan, by every dimension it checks (a few rows, whatever the size of the
ledger), adds up the total and each scope's daily series from it, and checks:

- spend anomalies (today at least ``k`` x the typical day),
- month-end forecasts that cross a monthly dollar budget: those in
  ``alerts.budgets`` (``{"team=search": 500, "total": 2000}``), held to the
  spend of every row, and every monthly dollar budget of the caps on a single
  dimension or on everything, held to the spend of the rows charged to
  requests, as the caps count it (`tokenomy.ledger.charges`),
- models served today without a known price for the first time,

and sends each new alert as a log line and, with a ``webhook_url``, as
Slack-compatible JSON. Which alerts were sent is kept in the ledger's
``insight_alerts`` table: the insert that lands decides which replica sends,
so an alert goes out once however many gateways run.

A budget on a user or a key adds one scan of the wide rollup for that
dimension (a scan of several wide dimensions would return their every
combination); a budget's scope with no spend costs no scan of its own.

Days here are UTC days, as in the reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import decimal
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from ..config import decimal_number, http_url, number, section
from ..errors import ConfigError
from ..ledger.base import SQLStore
from ..ledger.migrations import Cursor
from ..ledger.rollups import MONEY, USAGE_COUNTS
from ..reports.model import NO_FILTER, Filters
from ..reports.query import FIELDS, Scan, scan
from .alerts import (
    Alert,
    AlertRules,
    budget_crossings,
    deliver,
    spend_anomalies,
    unpriced_alert,
)
from .forecast import month_bounds

log = logging.getLogger("tokenomy.alerts")

T = TypeVar("T")
DEFAULT_INTERVAL = 300.0


@dataclass(frozen=True, slots=True)
class WatchConfig:
    interval: float = DEFAULT_INTERVAL
    rules: AlertRules = field(default_factory=AlertRules)
    webhook_url: str | None = None


_KNOWN = {"interval", "k", "min_spend", "min_days", "baseline_days", "by", "budgets", "webhook_url"}
_ANOMALY_BY = ("org", "team", "model", "provider")
_USD = "a dollar amount"


def watch_config(raw: Mapping[str, Any], webhook_url: str | None) -> WatchConfig:
    """The ``alerts:`` settings section."""
    unknown = set(raw) - _KNOWN
    if unknown:
        raise ConfigError(f"alerts: unknown settings {sorted(unknown)}")
    defaults = AlertRules()
    by = raw.get("by", defaults.anomaly_by)
    if not isinstance(by, list | tuple) or not all(b in _ANOMALY_BY for b in by):
        raise ConfigError(f"alerts.by: expected a list of {', '.join(_ANOMALY_BY)}, got {by!r}")
    # A baseline of no days has no typical day (its median would raise), and one
    # reaching back past year 1 no first day (the watcher's every run would fail).
    baseline = number(
        raw.get("baseline_days", defaults.baseline_days), "alerts.baseline_days",
        whole=True, low=1, high=3660,  # ten years
    )  # fmt: skip
    budgets = section(raw, "budgets", "alerts.budgets")
    rules = AlertRules(
        k=decimal_number(raw.get("k", defaults.k), "alerts.k"),
        min_spend=decimal_number(
            raw.get("min_spend", defaults.min_spend), "alerts.min_spend", what=_USD
        ),
        min_days=int(number(raw.get("min_days", defaults.min_days), "alerts.min_days", whole=True)),
        baseline_days=int(baseline),
        anomaly_by=tuple(by),
        budgets={
            str(s): decimal_number(v, f"alerts.budgets.{s}", what=_USD) for s, v in budgets.items()
        },
    )
    return WatchConfig(
        number(raw.get("interval", DEFAULT_INTERVAL), "alerts.interval"),
        rules,
        http_url(raw.get("webhook_url"), "alerts.webhook_url") or webhook_url,
    )


class AlertClaims:
    """The ledger's record of sent alerts; a claim succeeds once per alert key."""

    def __init__(self, store: SQLStore) -> None:
        self.store = store
        p = store.dialect.param
        self._claim = (
            "INSERT INTO insight_alerts (alert_key, kind, scope, fired_at, text) "
            f"VALUES ({p}, {p}, {p}, {p}, {p}) ON CONFLICT DO NOTHING"
        )

    def claim(self, alert: Alert) -> bool:
        params = (alert.key, alert.kind, alert.scope, time.time(), alert.text)

        def run(cur: Cursor) -> bool:
            cur.execute(self._claim, params)
            return cur.rowcount == 1

        return self.store._write(run)

    def sent(self) -> list[tuple[str, str]]:
        sql = "SELECT alert_key, text FROM insight_alerts ORDER BY fired_at"
        return [tuple(r) for r in self.store._read(lambda cur: cur.execute(sql).fetchall())]


# What is summed from the coarse rollup, in one scan. The others a budget's
# scope can name, ``user`` and ``key``, are only in the wide rollup, where
# reading them together would return their every combination: each is read
# apart, and only when a budget names it (or a rule asks for it).
_COARSE = ("org", "team", "model", "provider")
_WIDE = ("user", "key")
# Where an entry of a scan (see `tokenomy.reports.query`) holds what is added here.
_DAY = FIELDS.index("day")
_UNPRICED = len(FIELDS) + USAGE_COUNTS.index("unpriced_requests")
_COST = len(FIELDS) + len(USAGE_COUNTS)

Daily = dict[date, Decimal]


@dataclass(slots=True)
class _Spend:
    """Spend per UTC day in total and per scope (``team=search``; ``(none)`` for
    requests without the value), and, per ``model|provider``, the first day it
    was served without a price."""

    total: Daily = field(default_factory=dict)
    scopes: dict[str, dict[str, Daily]] = field(default_factory=dict)  # by dimension
    unpriced: dict[str, date] = field(default_factory=dict)

    def series(self, by: str) -> dict[str, list[tuple[date, Decimal]]]:
        return {scope: sorted(days.items()) for scope, days in self.scopes[by].items()}


def _read_spend(
    store: SQLStore, dims: set[str], since: float, until: float, filters: Filters = NO_FILTER
) -> _Spend:
    """The spend of ``[since, until)`` by each of ``dims``: one scan for the total,
    the models and the coarse dimensions, and one for each other dimension."""
    coarse = ("day", *sorted({"model", "provider", *dims} & set(_COARSE), key=FIELDS.index))
    out = _Spend(scopes={by: {} for by in dims})
    with decimal.localcontext(MONEY):
        result = scan(store, since=since, until=until, filters=filters, dims=coarse)
        _add_up(result, [d for d in coarse[1:] if d in dims], out)
        out.unpriced = _first_unpriced(result)
        for by in sorted(dims - set(_COARSE)):
            scopes = out.scopes[by]
            each = scan(store, since=since, until=until, filters=filters, dims=("day", by))
            for g in each.group(("day", by)):
                per = scopes.setdefault(f"{by}={g.key[1] or '(none)'}", {})
                day = date.fromisoformat(str(g.key[0]))
                per[day] = per.get(day, Decimal(0)) + g.totals.cost_usd
    return out


def _add_up(result: Scan, dims: list[str], out: _Spend) -> None:
    """Add up a scan's cost per day into the total and by each of ``dims``.

    Every entry counts towards the total, whatever its values. A lever's
    savings on a bucket with no usage entry make a $0 day, as a report's group.
    """
    at = [(out.scopes[by], by, FIELDS.index(by)) for by in dims]
    rows = [(e, e[_COST]) for e in result.entries]
    rows += [(e, Decimal(0)) for e in result.savings]
    days: dict[Any, date] = {}
    for e, cost in rows:
        day = _day(e[_DAY], days)
        out.total[day] = out.total.get(day, Decimal(0)) + cost
        for scopes, by, i in at:
            per = scopes.setdefault(f"{by}={e[i] or '(none)'}", {})
            per[day] = per.get(day, Decimal(0)) + cost


def _first_unpriced(result: Scan) -> dict[str, date]:
    """Per ``model|provider``, the first day of the scan it had unpriced requests."""
    model, provider = FIELDS.index("model"), FIELDS.index("provider")
    first: dict[str, date] = {}
    days: dict[Any, date] = {}
    for e in result.entries:
        if e[_UNPRICED]:
            ident = f"{e[model] or '(none)'}|{e[provider] or ''}"
            day = _day(e[_DAY], days)
            first[ident] = min(day, first.get(ident, day))
    return first


def _day(ts: Any, days: dict[Any, date]) -> date:
    """The UTC day of a rollup's day start, converted once per scan."""
    day = days.get(ts)
    if day is None:
        day = days[ts] = datetime.fromtimestamp(ts, UTC).date()
    return day


def find_alerts(
    store: SQLStore,
    rules: AlertRules,
    *,
    now: float,
    budgets: Mapping[str, Decimal] | None = None,
) -> list[Alert]:
    """Every alert the rules raise for the UTC day of ``now`` (not de-duplicated)."""
    today = datetime.fromtimestamp(now, UTC).date()
    start, _ = month_bounds(today)
    first = min(today - timedelta(rules.baseline_days), start)
    since = datetime.combine(first, datetime.min.time(), UTC).timestamp()
    until = datetime.combine(today + timedelta(1), datetime.min.time(), UTC).timestamp()
    all_budgets = {**(budgets or {}), **rules.budgets}
    caps = {scope: b for scope, b in (budgets or {}).items() if scope not in rules.budgets}
    budgeted = {s.partition("=")[0] for s in all_budgets} & {*_COARSE, *_WIDE}
    spend = _read_spend(store, {*rules.anomaly_by, "model", *budgeted}, since, until)
    alerts: list[Alert] = []
    series: dict[str, list[tuple[date, Decimal]]] = {}
    for by in dict.fromkeys([*rules.anomaly_by, "model"]):  # the alerts' order: as configured
        per = spend.series(by)
        series.update(per)
        if by in rules.anomaly_by:
            alerts += spend_anomalies(per, today=today, rules=rules)
    if all_budgets:
        for by in sorted(budgeted):
            series.update(spend.series(by))
        if "total" in all_budgets:
            series["total"] = sorted(spend.total.items())
        if caps:
            series.update(_charged_series(store, caps, since, until))
        alerts += budget_crossings(series, all_budgets, today=today, level=rules.level)
    # An unpriced model seen before the window started is not new: look a day
    # further back than the window, through the whole ledger, only for those.
    for ident, day in sorted(spend.unpriced.items()):
        if day == today and not _unpriced_before(store, ident, since):
            model, _, provider = ident.partition("|")
            alerts.append(unpriced_alert(model, provider, ("first_day", today.isoformat())))
    return alerts


def _charged_series(
    store: SQLStore, scopes: Mapping[str, Decimal], since: float, until: float
) -> dict[str, list[tuple[date, Decimal]]]:
    """Each of ``scopes``' daily spend over the rows charged to requests: what the
    caps count against a budget, not the gateway's own calls."""
    dims = {s.partition("=")[0] for s in scopes} & {*_COARSE, *_WIDE}
    spend = _read_spend(store, dims, since, until, Filters(charged=True))
    out = {}
    for scope in scopes:
        by = scope.partition("=")[0]
        if scope == "total":
            out[scope] = sorted(spend.total.items())
        elif by in dims:
            out[scope] = spend.series(by).get(scope, [])
    return out


def _unpriced_before(store: SQLStore, ident: str, before: float) -> bool:
    model, _, provider = ident.partition("|")
    p = store.dialect.param
    sql = (
        "SELECT 1 FROM requests WHERE price_unknown = "
        f"{'TRUE' if store.dialect.name == 'postgres' else '1'} AND ts < {p} "
        # the model as `_spend` names it: "(none)" when there is none
        f"AND coalesce(nullif(coalesce(served_model, requested_model), ''), '(none)') = {p} "
        f"AND coalesce(provider, '') = {p} "
        "LIMIT 1"
    )
    row = store._read(lambda cur: cur.execute(sql, (before, model, provider)).fetchone())
    return row is not None


def cap_budgets(budgets: list[Any]) -> dict[str, Decimal]:
    """Monthly dollar budgets of the caps that a forecast can be held to: on
    everything, or on one named org, team, model, provider, user or key."""
    out: dict[str, Decimal] = {}
    for b in budgets:
        if b.period.kind != "monthly" or b.limit_usd is None:
            continue
        dims = b.scope.as_dict()
        if not dims:
            out["total"] = min(b.limit_usd, out.get("total", b.limit_usd))
        elif len(dims) == 1:
            (dim, value), *_ = dims.items()
            if value != "each" and not dim.startswith("tag:"):
                key = f"{dim}={value}"
                out[key] = min(b.limit_usd, out.get(key, b.limit_usd))
    return out


class AlertWatcher:
    """Runs `find_alerts` every ``interval`` seconds off the event loop."""

    def __init__(
        self,
        store: SQLStore,
        config: WatchConfig,
        *,
        budgets: Callable[[], list[Any]] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.config = config
        self.claims = AlertClaims(store)
        self.budgets = budgets
        self.clock = clock
        self._task: asyncio.Task[None] | None = None
        self._stopping = threading.Event()  # ends a run's webhook retries at shutdown

    def start(self) -> None:
        if self.config.interval > 0 and self._task is None:
            self._task = asyncio.create_task(self._loop(), name="tokenomy-alert-watcher")

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.interval)
            try:
                await asyncio.to_thread(self.run_once)
            except Exception:  # the watcher must outlive a bad run
                log.exception("alert check failed")

    def run_once(self) -> list[Alert]:
        """Check the rules now; send and return the alerts no replica has sent."""
        extra = cap_budgets(self.budgets()) if self.budgets is not None else {}
        found = find_alerts(self.store, self.config.rules, now=self.clock(), budgets=extra)
        fresh = [a for a in found if self.claims.claim(a)]
        deliver(fresh, webhook_url=self.config.webhook_url, stop=self._stopping)
        return fresh
