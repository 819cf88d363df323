"""The gateway's alert watcher: rules over the rollups, once across replicas."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from test_alerts_insights import sink  # noqa: F401
from tokenomy.caps.model import Budget, Scope
from tokenomy.caps.periods import parse_period
from tokenomy.config import Settings
from tokenomy.errors import ConfigError
from tokenomy.gateway import Gateway
from tokenomy.insights.alerts import AlertRules
from tokenomy.insights.watch import (
    AlertWatcher,
    WatchConfig,
    cap_budgets,
    find_alerts,
    watch_config,
)
from tokenomy.ledger import Store
from tokenomy.ledger.base import SQLStore
from tokenomy.records import UsageRecord
from tokenomy.usage import Usage

TODAY = date(2025, 3, 20)
NOW = datetime(2025, 3, 20, 15, tzinfo=UTC).timestamp()


def at(day: date, hour: int = 12) -> float:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC).timestamp()


def rec(
    i: int, day: date, cost: str | None, *, team: str = "search", model: str = "gpt-4o"
) -> UsageRecord:
    return UsageRecord(
        f"r{i}",
        ts=at(day),
        team=team,
        requested_model=model,
        served_model=model,
        provider="openai",
        usage=Usage(input_tokens=10, output_tokens=5),
        cost_usd=None if cost is None else Decimal(cost),
        price_unknown=cost is None,
    )


def history(store: Store) -> None:
    """Two weeks of $1 a day for team search, $9 today, and a new unpriced model."""
    recs = [rec(i, TODAY - timedelta(days=d), "1") for i, d in enumerate(range(1, 15))]
    recs += [rec(100, TODAY, "9"), rec(101, TODAY, "0.5", team="ads")]
    recs += [rec(102, TODAY, None, model="mystery-1")]
    store.insert_records(recs)


def kinds(alerts: list[Any]) -> set[tuple[str, str]]:
    return {(a.kind, a.scope) for a in alerts}


def test_rules_fire_from_the_rollups(store: Store) -> None:
    assert isinstance(store, SQLStore)
    history(store)
    found = find_alerts(store, AlertRules(), now=NOW, budgets={"team=search": Decimal(20)})
    assert kinds(found) == {
        ("spend_anomaly", "team=search"),
        ("spend_anomaly", "model=gpt-4o"),
        ("forecast_over_budget", "team=search"),
        ("unpriced_model", "model=mystery-1"),
    }
    anomaly = next(a for a in found if a.scope == "team=search" and a.kind == "spend_anomaly")
    assert dict(anomaly.fields)["spend_usd"] == "9" and dict(anomaly.fields)["typical_usd"] == "1"


def test_an_unpriced_model_seen_before_is_not_new(store: Store) -> None:
    assert isinstance(store, SQLStore)
    store.insert_records([rec(1, TODAY - timedelta(days=90), None, model="old-1"),
                          rec(2, TODAY, None, model="old-1")])  # fmt: skip
    assert kinds(find_alerts(store, AlertRules(), now=NOW)) == set()


def test_each_alert_is_sent_once_across_replicas(
    store: Store,
    sink: tuple[str, list[tuple[str, dict[str, Any], str]]],  # noqa: F811
) -> None:
    assert isinstance(store, SQLStore)
    history(store)
    url, received = sink
    config = WatchConfig(interval=60, webhook_url=url)
    replicas = [AlertWatcher(store, config, clock=lambda: NOW) for _ in range(2)]
    sent = [a.key for w in replicas for a in w.run_once()]
    sent += [a.key for w in replicas for a in w.run_once()]
    assert len(sent) == len(set(sent)) == 3  # two anomalies and the unpriced model
    assert sorted(body["tokenomy"]["key"] for _, body, _ in received) == sorted(sent)
    assert {k for k, _ in replicas[0].claims.sent()} == set(sent)


def test_monthly_dollar_budgets_of_the_caps_are_forecast() -> None:
    def budget(
        scope: dict[str, str], period: str, usd: str | None, tokens: int | None = None
    ) -> Budget:
        return Budget(id=f"b{len(scope)}{period}", name=f"{scope}{period}", scope=Scope.of(scope),
                      period=parse_period(period), limit_usd=None if usd is None else Decimal(usd),
                      limit_tokens=tokens)  # fmt: skip

    budgets = [
        budget({"team": "search"}, "monthly", "20"),
        budget({"team": "search"}, "monthly", "15"),
        budget({}, "monthly", "100"),
        budget({"team": "ads"}, "daily", "5"),
        budget({"team": "each"}, "monthly", "5"),
        budget({"team": "ads", "model": "gpt-4o"}, "monthly", "5"),
        budget({"team": "ads"}, "monthly", None, tokens=1000),
    ]
    assert cap_budgets(budgets) == {"team=search": Decimal(15), "total": Decimal(100)}


def test_config_section() -> None:
    c = watch_config({"interval": 60, "k": 4, "by": ["team"], "budgets": {"total": 10}}, "http://x")
    assert c.interval == 60 and c.rules.k == 4 and c.rules.anomaly_by == ("team",)
    assert c.rules.budgets == {"total": Decimal(10)} and c.webhook_url == "http://x"
    for bad in ({"interval": -1}, {"by": ["user"]}, {"k": "many"}, {"every": 5}):
        with pytest.raises(ConfigError):
            watch_config(bad, None)


async def first_alerts(watcher: AlertWatcher) -> None:
    """Wait (up to 5 s) until the running watcher has sent something."""
    for _ in range(100):
        await asyncio.sleep(0.05)
        if watcher.claims.sent():
            return


async def test_the_gateway_runs_the_watcher(tmp_path: Any) -> None:
    settings = Settings(db=str(tmp_path / "l.db"), alerts={"interval": 0.05})
    gw = Gateway(settings)
    assert gw.watcher is not None
    gw.store.insert_records([rec(1, datetime.now(UTC).date(), None, model="brand-new")])
    gw.watcher.start()
    try:
        await first_alerts(gw.watcher)
        assert [k for k, _ in gw.watcher.claims.sent()] == ["unpriced_model|brand-new|openai"]
    finally:
        await gw.close()
    off = Gateway(Settings(db=str(tmp_path / "m.db"), alerts={"interval": 0}))
    assert off.watcher is None
    await off.close()


async def test_the_gateway_watcher_reads_the_caps_budgets(tmp_path: Any) -> None:
    from tokenomy.caps.model import budget_from

    gw = Gateway(Settings(db=str(tmp_path / "l.db"), alerts={"interval": 0.05}))
    assert gw.watcher is not None and gw.caps is not None
    month = {"name": "search-month", "scope": {"team": "search"}, "period": "monthly",
             "limit_usd": "1"}  # fmt: skip
    gw.caps.store.save_budget(budget_from(month), new=True)
    await gw.caps.start(background=False)
    gw.store.insert_records([rec(1, datetime.now(UTC).date(), "5")])  # over $1 on day one
    gw.watcher.start()
    try:
        await first_alerts(gw.watcher)
        sent = [k for k, _ in gw.watcher.claims.sent()]
        assert any(k.startswith("forecast_over_budget|team=search") for k in sent), sent
    finally:
        await gw.close()
