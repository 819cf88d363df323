"""The gateway's alert watcher: the rules of `tokenomy.insights.alerts`, run on a timer.

Every ``alerts.interval`` seconds (default 300; 0 turns it off) a background task
reads the last ``baseline_days`` + 1 UTC days of spend per team and per model
from the daily rollups (a few rows, whatever the size of the ledger), checks:

- spend anomalies (today at least ``k`` x the typical day),
- month-end forecasts that cross a monthly dollar budget: those in
  ``alerts.budgets`` (``{"team=search": 500, "total": 2000}``) and every
  monthly dollar budget of the caps on a single dimension or on everything,
- models served today without a known price for the first time,

and sends each new alert as a log line and, with a ``webhook_url``, as
Slack-compatible JSON. Which alerts were sent is kept in the ledger's
``insight_alerts`` table: the insert that lands decides which replica sends,
so an alert goes out once however many gateways run.

Days here are UTC days, as in the reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from ..errors import ConfigError
from ..ledger.base import SQLStore
from ..ledger.migrations import Cursor
from ..reports.query import scan
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


def watch_config(raw: Mapping[str, Any], webhook_url: str | None) -> WatchConfig:
    """The ``alerts:`` settings section."""
    known = {
        "interval",
        "k",
        "min_spend",
        "min_days",
        "baseline_days",
        "by",
        "budgets",
        "webhook_url",
    }
    unknown = set(raw) - known
    if unknown:
        raise ConfigError(f"alerts: unknown settings {sorted(unknown)}")
    try:
        defaults = AlertRules()
        rules = AlertRules(
            k=Decimal(str(raw.get("k", defaults.k))),
            min_spend=Decimal(str(raw.get("min_spend", defaults.min_spend))),
            min_days=int(raw.get("min_days", defaults.min_days)),
            baseline_days=int(raw.get("baseline_days", defaults.baseline_days)),
            anomaly_by=tuple(raw.get("by", defaults.anomaly_by)),
            budgets={str(s): Decimal(str(v)) for s, v in (raw.get("budgets") or {}).items()},
        )
        interval = float(raw.get("interval", DEFAULT_INTERVAL))
    except (ArithmeticError, TypeError, ValueError) as exc:
        raise ConfigError(f"alerts: {exc}") from exc
    bad = [b for b in rules.anomaly_by if b not in ("org", "team", "model", "provider")]
    if bad or interval < 0:
        raise ConfigError("alerts: 'by' takes org, team, model, provider; interval >= 0")
    return WatchConfig(interval, rules, raw.get("webhook_url") or webhook_url)


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


def _series(
    store: SQLStore, by: str, since: float, until: float
) -> tuple[dict[str, list[tuple[date, Decimal]]], dict[str, date]]:
    """Spend per UTC day for each value of ``by``, and, per model, the first day
    it was served without a price (within the window)."""
    dims = ("day", by) if by != "model" else ("day", "model", "provider")
    result = scan(store, since=since, until=until, dims=dims)
    spend: dict[str, dict[date, Decimal]] = {}
    unpriced: dict[str, date] = {}
    for group in result.group(dims):
        day = date.fromisoformat(str(group.key[0]))
        value = group.key[1] or "(none)"
        t = group.totals
        per = spend.setdefault(f"{by}={value}", {})
        per[day] = per.get(day, Decimal(0)) + t.cost_usd
        if by == "model" and t.unpriced_requests:
            ident = f"{value}|{group.key[2] or ''}"
            unpriced[ident] = min(day, unpriced.get(ident, day))
    return {s: sorted(v.items()) for s, v in spend.items()}, unpriced


def _total_spend(store: SQLStore, since: float, until: float) -> list[tuple[date, Decimal]]:
    result = scan(store, since=since, until=until, dims=("day",))
    return sorted(
        (date.fromisoformat(str(g.key[0])), g.totals.cost_usd) for g in result.group(("day",))
    )


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
    alerts: list[Alert] = []
    series: dict[str, list[tuple[date, Decimal]]] = {}
    unpriced: dict[str, date] = {}
    for by in {*rules.anomaly_by, "model"}:
        per, first_unpriced = _series(store, by, since, until)
        series.update(per)
        unpriced.update(first_unpriced)
        if by in rules.anomaly_by:
            alerts += spend_anomalies(per, today=today, rules=rules)
    all_budgets = {**(budgets or {}), **rules.budgets}
    if all_budgets:
        for scope in all_budgets:
            if scope == "total":
                series["total"] = _total_spend(store, since, until)
            elif scope not in series:
                by = scope.partition("=")[0]
                if by in ("org", "team", "model", "provider", "user", "key"):
                    series.update(_series(store, by, since, until)[0])
        alerts += budget_crossings(series, all_budgets, today=today, level=rules.level)
    # An unpriced model seen before the window started is not new: look a day
    # further back than the window, through the whole ledger, only for those.
    for ident, day in sorted(unpriced.items()):
        if day == today and not _unpriced_before(store, ident, since):
            model, _, provider = ident.partition("|")
            alerts.append(unpriced_alert(model, provider, ("first_day", today.isoformat())))
    return alerts


def _unpriced_before(store: SQLStore, ident: str, before: float) -> bool:
    model, _, provider = ident.partition("|")
    p = store.dialect.param
    sql = (
        "SELECT 1 FROM requests WHERE price_unknown = "
        f"{'TRUE' if store.dialect.name == 'postgres' else '1'} AND ts < {p} "
        f"AND coalesce(served_model, requested_model) = {p} AND coalesce(provider, '') = {p} "
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
