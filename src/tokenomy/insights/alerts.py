"""Spend alerts: what fires, deterministically, and how it is sent.

Three rules, each a pure function of the ledger's records and the day:

- ``spend_anomaly``: a scope's (team's, model's...) spend today is at least
  ``k`` times its typical day, the median of its previous ``baseline_days``
  days (days without spend count as zero), and at least ``min_spend``. A scope
  needs ``min_days`` days of history before it has a typical day.
- ``forecast_over_budget``: the month-end forecast of a scope with a budget
  reaches the budget on or before the last day of the period.
- ``unpriced_model``: a model served without a known price for the first time:
  its earliest unpriced request is today.

`check` applies the rules and drops the alerts an `AlertLog` has already seen, so
an anomaly fires once per scope and day, a budget once per scope and period, and
an unpriced model once. `deliver` writes one log line per alert and POSTs it as
Slack-compatible JSON (``{"text": ..., "attachments": [{"fields": ...}]}``, plus a
``tokenomy`` object for machines) to a webhook.
"""

from __future__ import annotations

import itertools
import json
import logging
import statistics
import threading
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, Protocol

from ..records import UsageRecord
from ..webhook import RETRY_DELAYS, retry_delay
from .forecast import forecast, month_bounds
from .tally import Tally, tally

__all__ = [
    "Alert",
    "AlertLog",
    "AlertRules",
    "FileAlertLog",
    "MemoryAlertLog",
    "alert_dimensions",
    "budget_crossings",
    "check",
    "check_tally",
    "deliver",
    "send_webhook",
    "spend_anomalies",
    "unpriced_models",
]

log = logging.getLogger("tokenomy.alerts")

AlertKind = Literal["spend_anomaly", "forecast_over_budget", "unpriced_model"]
Series = Sequence[tuple[date, Decimal]]


@dataclass(frozen=True, slots=True)
class Alert:
    kind: AlertKind
    scope: str  # "team=search", "model=gpt-4o", "total"
    key: str  # identity for de-duplication: kind, scope and day or period
    text: str  # one line for people
    fields: tuple[tuple[str, str], ...] = ()

    def payload(self) -> dict[str, Any]:
        """Slack-compatible webhook JSON."""
        return {
            "text": self.text,
            "attachments": [
                {
                    "fallback": self.text,
                    "fields": [{"title": k, "value": v, "short": True} for k, v in self.fields],
                }
            ],
            "tokenomy": {
                "kind": self.kind,
                "scope": self.scope,
                "key": self.key,
                **dict(self.fields),
            },
        }

    def log_line(self) -> str:
        extra = " ".join(f"{k}={v}" for k, v in self.fields)
        return f"alert {self.kind} {self.scope}: {self.text} [{extra}]"


@dataclass(frozen=True, slots=True)
class AlertRules:
    k: Decimal = Decimal(3)
    baseline_days: int = 28
    min_days: int = 7
    min_spend: Decimal = Decimal(1)
    anomaly_by: tuple[str, ...] = ("team", "model")
    # Monthly budgets in USD per scope: "team=search", "org=acme", "tag:env=prod", "total".
    budgets: Mapping[str, Decimal] = field(default_factory=dict)
    level: float = 0.8  # the forecast band reported with a budget alert


def _usd(amount: Decimal) -> str:
    return f"${amount.quantize(Decimal('0.01')):,}"


# -- the rules -------------------------------------------------------------------------


def spend_anomalies(
    by_scope: Mapping[str, Series], *, today: date, rules: AlertRules = AlertRules()
) -> list[Alert]:
    """Scopes whose spend on ``today`` is at least ``k`` x their typical day."""
    alerts = []
    for scope, series in sorted(by_scope.items()):
        spend = dict(series)
        history = [d for d in spend if d < today]
        if not history:
            continue
        begin = max(min(history), today - timedelta(rules.baseline_days))
        baseline = [
            spend.get(begin + timedelta(i), Decimal(0)) for i in range((today - begin).days)
        ]
        if len(baseline) < rules.min_days:
            continue
        typical = Decimal(statistics.median(baseline))
        now = spend.get(today, Decimal(0))
        if now < rules.min_spend or now < rules.k * typical:
            continue
        ratio = "new spend" if typical == 0 else f"{(now / typical).quantize(Decimal('0.1'))}x"
        alerts.append(
            Alert(
                "spend_anomaly",
                scope,
                f"spend_anomaly|{scope}|{today.isoformat()}",
                f"{scope} has spent {_usd(now)} today ({ratio} its typical day of {_usd(typical)})",
                (
                    ("day", today.isoformat()),
                    ("spend_usd", str(now)),
                    ("typical_usd", str(typical)),
                    ("k", str(rules.k)),
                ),
            )
        )
    return alerts


def budget_crossings(
    by_scope: Mapping[str, Series],
    budgets: Mapping[str, Decimal],
    *,
    today: date,
    level: float = 0.8,
) -> list[Alert]:
    """Scopes whose month-end forecast reaches their budget before the month ends.

    The forecast uses the history up to and including ``today``.
    """
    start, end = month_bounds(today)
    alerts = []
    for scope, budget in sorted(budgets.items()):
        history = [(d, v) for d, v in by_scope.get(scope, ()) if d <= today]
        f = forecast(history, until=end, period_start=start, level=level, partial=today)
        crossing = f.crossing_date(budget)
        if crossing is None:
            continue
        when = "already" if f.actual_to_date >= budget else f"on {crossing.isoformat()}"
        alerts.append(
            Alert(
                "forecast_over_budget",
                scope,
                f"forecast_over_budget|{scope}|{start.isoformat()}",
                f"{scope} is forecast to spend {_usd(f.projected_total)} by {end.isoformat()} "
                f"({_usd(f.low)}-{_usd(f.high)}), over its budget of {_usd(budget)} {when}",
                (
                    ("budget_usd", str(budget)),
                    ("spent_usd", str(f.actual_to_date)),
                    ("projected_usd", str(f.projected_total)),
                    ("low_usd", str(f.low)),
                    ("high_usd", str(f.high)),
                    ("crosses_on", crossing.isoformat()),
                    ("period_end", end.isoformat()),
                ),
            )
        )
    return alerts


def unpriced_models(records: Iterable[UsageRecord], *, today: date, tz: str = "UTC") -> list[Alert]:
    """Models whose first request without a known price was made ``today``."""
    return _first_unpriced_today(tally(records, tz=tz, by=()), today)


def _first_unpriced_today(found: Tally, today: date) -> list[Alert]:
    return [
        unpriced_alert(model, provider, ("requests", str(count)))
        for (model, provider), (day, count) in sorted(found.unpriced.items())
        if day == today
    ]


def unpriced_alert(model: str, provider: str, detail: tuple[str, str]) -> Alert:
    """A model served without a known price (its key de-duplicates the alert)."""
    where = f" from {provider}" if provider else ""
    return Alert(
        "unpriced_model",
        f"model={model}",
        f"unpriced_model|{model}|{provider}",
        f"model {model}{where} was served without a known price; its spend is not "
        "counted until a price override is added",
        (("model", model), ("provider", provider or "-"), detail),
    )


# -- de-duplication ------------------------------------------------------------------


class AlertLog(Protocol):
    """The keys of the alerts already sent."""

    def seen(self, key: str) -> bool: ...

    def add(self, key: str) -> None: ...


class MemoryAlertLog:
    def __init__(self) -> None:
        self.keys: set[str] = set()

    def seen(self, key: str) -> bool:
        return key in self.keys

    def add(self, key: str) -> None:
        self.keys.add(key)


class FileAlertLog:
    """Alert keys in a text file, one a line, so a periodic job fires each alert once."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.keys: set[str] = set()
        if self.path.exists():
            self.keys = {ln for ln in self.path.read_text().splitlines() if ln}

    def seen(self, key: str) -> bool:
        return key in self.keys

    def add(self, key: str) -> None:
        if key not in self.keys:
            self.keys.add(key)
            with self.path.open("a") as fh:
                fh.write(key + "\n")


def alert_dimensions(rules: AlertRules) -> list[str]:
    """The dimensions a `Tally` needs for `check_tally` under ``rules``."""
    groups = ["total" if scope == "total" else scope.rpartition("=")[0] for scope in rules.budgets]
    return list(dict.fromkeys([*rules.anomaly_by, *groups]))


def check(
    records: Iterable[UsageRecord],
    *,
    today: date,
    rules: AlertRules = AlertRules(),
    tz: str = "UTC",
    seen: AlertLog | None = None,
) -> list[Alert]:
    """Every rule over ``records`` (the ledger up to now, read once), minus alerts
    already in ``seen``; the returned alerts are added to it."""
    found = tally(records, tz=tz, by=alert_dimensions(rules))
    return check_tally(found, today=today, rules=rules, seen=seen)


def check_tally(
    found: Tally, *, today: date, rules: AlertRules = AlertRules(), seen: AlertLog | None = None
) -> list[Alert]:
    """`check` on a `Tally` made with (at least) `alert_dimensions` of ``rules``."""
    alerts: list[Alert] = []
    for by in rules.anomaly_by:
        per = found.series(by)
        alerts += spend_anomalies({f"{by}={s}": v for s, v in per.items()}, today=today,
                                  rules=rules)  # fmt: skip
    if rules.budgets:
        by_scope: dict[str, Series] = {}
        for scope in rules.budgets:
            group, _, value = scope.rpartition("=")
            if scope == "total":
                group, value = "total", "total"
            by_scope[scope] = found.series(group).get(value, [])
        alerts += budget_crossings(by_scope, rules.budgets, today=today, level=rules.level)
    alerts += _first_unpriced_today(found, today)
    if seen is None:
        return alerts
    fresh = [a for a in alerts if not seen.seen(a.key)]
    for a in fresh:
        seen.add(a.key)
    return fresh


# -- delivery --------------------------------------------------------------------------


def send_webhook(url: str, alert: Alert, *, timeout: float = 5.0) -> None:
    """POST one alert as Slack-compatible JSON; raises `OSError` if it fails."""
    body = json.dumps(alert.payload()).encode()
    req = urllib.request.Request(
        url, data=body, method="POST", headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        resp.read()


def deliver(
    alerts: Iterable[Alert],
    *,
    webhook_url: str | None = None,
    logger: logging.Logger = log,
    timeout: float = 5.0,
    delays: Sequence[float] = RETRY_DELAYS,
    stop: threading.Event | None = None,
) -> list[Alert]:
    """Log every alert, and POST each to ``webhook_url`` if set, trying a failed
    webhook again after each of ``delays`` (see `tokenomy.webhook`; once ``stop`` is
    set, no more tries); returns the alerts whose webhook failed every try (each
    failure is logged too)."""
    failed = []
    for alert in alerts:
        logger.warning(alert.log_line())
        if webhook_url is None:
            continue
        waiter = stop or threading.Event()  # one nobody sets: a plain sleep
        for attempt in itertools.count():
            error: OSError
            status: int | None
            try:
                send_webhook(webhook_url, alert, timeout=timeout)
                break
            except urllib.error.HTTPError as exc:
                exc.close()  # it holds the connection
                error, status = exc, exc.code
            except (OSError, urllib.error.URLError) as exc:
                error, status = exc, None
            wait = retry_delay(attempt, status, delays)
            if wait is not None:
                logger.warning("alert webhook failed for %s: %s; trying again in %ss",
                               alert.key, error, wait)  # fmt: skip
                if not waiter.wait(wait):
                    continue
            logger.error("alert webhook failed for %s: %s", alert.key, error)
            failed.append(alert)
            break
    return failed
