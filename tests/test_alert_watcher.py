"""The gateway's alert watcher: rules over the rollups, once across replicas."""

from __future__ import annotations

import asyncio
from dataclasses import replace
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
from tokenomy.insights import watch
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
from tokenomy.reports.query import scan
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
        served_model=model or None,
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


def test_unpriced_requests_without_a_model_seen_before_are_not_new(store: Store) -> None:
    assert isinstance(store, SQLStore)
    store.insert_records([rec(1, TODAY - timedelta(days=90), None, model=""),
                          rec(2, TODAY, None, model="")])  # fmt: skip
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


def mixed_ledger(store: Store) -> None:
    """A month of spend across two orgs, three teams and four models, some of it
    with no org, team, user, key, model or provider at all, and unpriced models:
    one new today, one seen before the window, one unpriced all month."""

    def r(day: date, cost: str | None, hour: int = 12, **dims: str) -> UsageRecord:
        model = dims.pop("model", "")
        return UsageRecord(f"m{len(recs)}", ts=at(day, hour), requested_model=model,
                           served_model=model or None, usage=Usage(input_tokens=10, output_tokens=5),
                           cost_usd=None if cost is None else Decimal(cost),
                           price_unknown=cost is None, **dims)  # fmt: skip

    search = {"org": "acme", "team": "search", "user": "alice", "key_id": "k1",
              "model": "gpt-4o", "provider": "openai"}  # fmt: skip
    ads = {"org": "acme", "team": "ads", "user": "bob", "key_id": "k2",
           "model": "claude-3", "provider": "anthropic"}  # fmt: skip
    recs: list[UsageRecord] = []
    for d in range(31):
        day = TODAY - timedelta(days=d)
        recs.append(r(day, "9.75" if d == 0 else "1.25", 3, **search))
        recs.append(r(day, "0.40", 23, **ads))
        recs.append(r(day, "0.0333", org="globex", model="gpt-4o-mini", provider="openai"))
        recs.append(r(day, "2.6" if d == 0 else "0.2"))  # no dimension set at all
        if d % 3 == 0:
            recs.append(r(day, None, team="ads", model="mystery-0", provider="acme-ai"))
    recs.append(r(TODAY, None, 1, team="search", model="mystery-1"))
    recs.append(r(TODAY - timedelta(days=90), None, model="old-1", provider="openai"))
    recs.append(r(TODAY, None, 2, model="old-1", provider="openai"))
    recs.append(r(TODAY, None, 4))  # unpriced, and no model name
    store.insert_records(recs)


MIXED_BUDGETS = {
    "total": Decimal(60), "team=search": Decimal(40), "team=nobody": Decimal(5),
    "org=acme": Decimal(50), "org=globex": Decimal(1000), "user=alice": Decimal(30),
    "key=k2": Decimal(10), "model=claude-3": Decimal(10), "provider=anthropic": Decimal(10),
    "team=(none)": Decimal(5), "tag:env=prod": Decimal(1), "route=/v1/x": Decimal(1),
}  # fmt: skip

# What the watcher found on `mixed_ledger` when it scanned once per dimension,
# and once more for the total and for each budget's scope it had not seen.
MIXED_ALERTS = {
    "forecast_over_budget|key=k2|2025-03-01": "key=k2 is forecast to spend $12.40 by 2025-03-31 ($12.40-$12.40), over its budget of $10.00 on 2025-03-25",
    "forecast_over_budget|model=claude-3|2025-03-01": "model=claude-3 is forecast to spend $12.40 by 2025-03-31 ($12.40-$12.40), over its budget of $10.00 on 2025-03-25",
    "forecast_over_budget|org=acme|2025-03-01": "org=acme is forecast to spend $59.65 by 2025-03-31 ($59.65-$59.65), over its budget of $50.00 on 2025-03-26",
    "forecast_over_budget|provider=anthropic|2025-03-01": "provider=anthropic is forecast to spend $12.40 by 2025-03-31 ($12.40-$12.40), over its budget of $10.00 on 2025-03-25",
    "forecast_over_budget|team=(none)|2025-03-01": "team=(none) is forecast to spend $9.63 by 2025-03-31 ($9.63-$9.63), over its budget of $5.00 already",
    "forecast_over_budget|team=search|2025-03-01": "team=search is forecast to spend $47.25 by 2025-03-31 ($47.25-$47.25), over its budget of $40.00 on 2025-03-26",
    "forecast_over_budget|total|2025-03-01": "total is forecast to spend $69.28 by 2025-03-31 ($69.28-$69.28), over its budget of $60.00 on 2025-03-27",
    "forecast_over_budget|user=alice|2025-03-01": "user=alice is forecast to spend $47.25 by 2025-03-31 ($47.25-$47.25), over its budget of $30.00 already",
    "spend_anomaly|model=(none)|2025-03-20": "model=(none) has spent $2.60 today (13.0x its typical day of $0.20)",
    "spend_anomaly|model=gpt-4o|2025-03-20": "model=gpt-4o has spent $9.75 today (7.8x its typical day of $1.25)",
    "spend_anomaly|team=(none)|2025-03-20": "team=(none) has spent $2.63 today (11.3x its typical day of $0.23)",
    "spend_anomaly|team=search|2025-03-20": "team=search has spent $9.75 today (7.8x its typical day of $1.25)",
    "unpriced_model|(none)|": "model (none) was served without a known price; its spend is not counted until a price override is added",
    "unpriced_model|mystery-1|": "model mystery-1 was served without a known price; its spend is not counted until a price override is added",
}  # fmt: skip
MIXED_ALERTS_EVERY_DIMENSION = {
    **MIXED_ALERTS,
    "spend_anomaly|org=(none)|2025-03-20": "org=(none) has spent $2.60 today (13.0x its typical day of $0.20)",
    "spend_anomaly|org=acme|2025-03-20": "org=acme has spent $10.15 today (6.2x its typical day of $1.65)",
    "spend_anomaly|provider=(none)|2025-03-20": "provider=(none) has spent $2.60 today (13.0x its typical day of $0.20)",
    "spend_anomaly|provider=openai|2025-03-20": "provider=openai has spent $9.78 today (7.6x its typical day of $1.28)",
}  # fmt: skip


@pytest.mark.parametrize(
    ("by", "expected"),
    [(("team", "model"), MIXED_ALERTS),
     (("org", "team", "model", "provider"), MIXED_ALERTS_EVERY_DIMENSION)],
)  # fmt: skip
def test_alerts_over_a_mixed_ledger_are_pinned(
    store: Store, by: tuple[str, ...], expected: dict[str, str]
) -> None:
    assert isinstance(store, SQLStore)
    mixed_ledger(store)
    found = find_alerts(store, AlertRules(anomaly_by=by), now=NOW, budgets=MIXED_BUDGETS)
    assert len(found) == len(expected)
    assert {a.key: a.text for a in found} == expected
    # Spend anomalies come in the order of the configured dimensions, whatever the hash seed.
    anomalies = [a.key.split("|")[1].split("=")[0] for a in found if a.kind == "spend_anomaly"]
    assert list(dict.fromkeys(anomalies)) == list(by)
    fields = {a.key: dict(a.fields) for a in found}
    # The total counts the requests without a model, team or org; unpriced ones count $0.
    total = fields["forecast_over_budget|total|2025-03-01"]
    assert (total["spent_usd"], total["projected_usd"]) == ("48.5660", "69.282300")
    assert fields["forecast_over_budget|team=(none)|2025-03-01"]["spent_usd"] == "7.0660"
    none = fields["spend_anomaly|team=(none)|2025-03-20"]
    assert (none["spend_usd"], none["typical_usd"]) == ("2.6333", "0.2333")


@pytest.mark.parametrize(
    ("budgets", "reads"),
    [({}, [("day", "team", "model", "provider")]),
     ({"total": Decimal(60), "team=nobody": Decimal(5), "org=acme": Decimal(50)},
      [("day", "org", "team", "model", "provider")]),
     (MIXED_BUDGETS, [("day", "org", "team", "model", "provider"), ("day", "key"), ("day", "user")])],
)  # fmt: skip
def test_one_interval_scans_the_ledger_once_per_rollup_shape(
    store: Store,
    monkeypatch: pytest.MonkeyPatch,
    budgets: dict[str, Decimal],
    reads: list[tuple[str, ...]],
) -> None:
    """The total, the teams and the models come from one scan; a budget's scope
    with no spend (team=nobody) costs no scan of its own; users and keys, only
    in the wide rollup, are read apart, once each."""
    assert isinstance(store, SQLStore)
    mixed_ledger(store)
    scans: list[tuple[str, ...]] = []

    def counting(store: SQLStore, **kw: Any) -> Any:
        scans.append(tuple(kw["dims"]))
        return scan(store, **kw)

    monkeypatch.setattr(watch, "scan", counting)
    watcher = AlertWatcher(store, WatchConfig(rules=AlertRules(budgets=budgets)), clock=lambda: NOW)
    assert watcher.run_once()
    assert scans == reads
    scans.clear()
    assert watcher.run_once() == []  # all claimed: the next interval reads as much again
    assert scans == reads


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


def test_a_caps_budget_is_forecast_from_the_rows_charged_to_requests(store: Store) -> None:
    """The gateway's own calls (a judge's, a failed attempt's) are real spend: a
    budget of the alerts counts them. The caps never count them against a budget,
    so a budget of the caps is forecast without them."""
    assert isinstance(store, SQLStore)
    days = [rec(i, TODAY - timedelta(days=d), "1") for i, d in enumerate(range(20))]
    judge = replace(rec(200, TODAY, "100"), request_id="r0.judge", charged=False,
                    decisions={"route": {"parent": "r0", "reason": "judge"}})  # fmt: skip
    store.insert_records([*days, judge])
    budgets = {"team=search": Decimal(60), "total": Decimal(60)}
    over = {("forecast_over_budget", "team=search"), ("forecast_over_budget", "total")}
    assert not kinds(find_alerts(store, AlertRules(), now=NOW, budgets=budgets)) & over
    assert kinds(find_alerts(store, AlertRules(budgets=budgets), now=NOW)) >= over
