"""The month-end forecast: a back-test on a synthetic series with known trend and
weekly seasonality, plus the edge cases a dashboard will hit."""

from __future__ import annotations

import json
import random
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner

from tokenomy.cli import cli
from tokenomy.insights.forecast import Forecast, daily_spend, forecast, month_bounds
from tokenomy.ledger import open_store
from tokenomy.ledger.base import SQLStore
from tokenomy.records import UsageRecord

# Monday..Sunday: a working week with a quiet weekend.
WEEK = (1.15, 1.2, 1.15, 1.1, 1.0, 0.75, 0.65)
START = date(2025, 1, 6)  # a Monday


def synthetic(days: int, *, level: float = 200.0, slope: float = 1.5, noise: float = 0.08,
              seed: int = 7) -> list[tuple[date, Decimal]]:  # fmt: skip
    """Spend = (level + slope * t) * weekday factor * (1 + noise * N(0, 1))."""
    rng = random.Random(seed)
    out = []
    for t in range(days):
        d = START + timedelta(t)
        mean = (level + slope * t) * WEEK[d.weekday()]
        y = max(0.0, mean * (1 + noise * rng.gauss(0, 1)))
        out.append((d, Decimal(f"{y:.6f}")))
    return out


def backtest(series: list[tuple[date, Decimal]], cut_days: tuple[int, ...]) -> tuple[float, float]:
    """For each month after an 8-week warm-up and each cut-off day of that month,
    forecast the month from the history up to the cut-off; return (MAPE of the
    month-end total, share of windows whose band holds the true total)."""
    by_day = dict(series)
    errors: list[float] = []
    covered = 0
    month = date(START.year, START.month, 1)
    while True:
        month = month_bounds(month)[1] + timedelta(1)
        first, last = month_bounds(month)
        if last > series[-1][0]:
            break
        if (first - START).days < 56:
            continue
        truth = sum((by_day[first + timedelta(i)] for i in range(last.day)), Decimal(0))
        for cut in cut_days:
            history = [(d, v) for d, v in series if d < first + timedelta(cut)]
            f = forecast(history, until=last)
            errors.append(abs(float(f.projected_total - truth)) / float(truth))
            covered += f.low <= truth <= f.high
    return sum(errors) / len(errors), covered / len(errors)


def test_backtest_on_trend_and_weekly_seasonality() -> None:
    series = synthetic(2 * 365)
    mape, coverage = backtest(series, cut_days=(5, 10, 15, 20, 25))
    print(f"month-end MAPE {mape:.2%}, 80% band coverage {coverage:.0%}")
    # Daily noise is 8%; a month-end total from 5-25 days of it lands within ~2%.
    assert mape < 0.03
    assert coverage >= 0.7


def test_the_weekly_pattern_is_recovered() -> None:
    f = forecast(synthetic(120, noise=0.0), until=date(2025, 5, 31))
    factors = [float(x) for x in f.weekday_factors]
    mean = sum(WEEK) / 7
    for got, want in zip(factors, WEEK, strict=True):
        assert got == pytest.approx(want / mean, rel=0.02)
    # The factors average 1, so the deseasonalised line is the true one times mean(WEEK).
    assert float(f.trend_per_day) == pytest.approx(1.5 * mean, rel=0.02)


def test_noiseless_linear_series_is_projected_exactly() -> None:
    series = [(date(2025, 3, 1) + timedelta(i), Decimal(10 + i)) for i in range(20)]
    f = forecast(series, until=date(2025, 3, 31), min_trend_days=5)
    # The period holds days 1..31 of a line 10, 11, ..., 40: sum = 31 * 25.
    assert f.projected_total == Decimal(775)
    assert f.actual_to_date == sum(Decimal(10 + i) for i in range(20))
    assert f.low == f.high == f.projected_total  # no residuals, no uncertainty
    assert [d for d, _ in f.daily_path] == [date(2025, 3, 21) + timedelta(i) for i in range(11)]


def test_history_before_the_period_fits_but_does_not_count() -> None:
    series = [(date(2025, 2, 1) + timedelta(i), Decimal(5)) for i in range(40)]  # to Mar 12
    f = forecast(series, until=date(2025, 3, 31))
    assert f.period_start == date(2025, 3, 1)
    assert f.actual_to_date == Decimal(5 * 12)
    assert f.projected_total == Decimal(5 * 31)


def test_period_already_over_has_no_path() -> None:
    series = [(date(2025, 3, 1) + timedelta(i), Decimal(2)) for i in range(31)]
    f = forecast(series, until=date(2025, 3, 31))
    assert f.daily_path == () and f.projected_total == f.low == f.high == Decimal(62)


def test_empty_and_tiny_histories() -> None:
    f = forecast([], until=date(2025, 3, 31))
    assert f.projected_total == 0 and f.last_observed is None
    f = forecast([(date(2025, 3, 30), Decimal("1.5"))], until=date(2025, 3, 31))
    assert f.projected_total == Decimal("3.0")
    assert f.low < f.projected_total < f.high  # one day says little: a wide band


def test_missing_days_count_as_zero_and_projection_never_negative() -> None:
    series = [(date(2025, 3, 1), Decimal(100)), (date(2025, 3, 20), Decimal(0))]
    f = forecast(series, until=date(2025, 3, 31))
    assert all(v >= 0 for _, v in f.daily_path)
    assert f.low >= f.actual_to_date


def test_a_day_under_way_is_not_fitted_as_a_whole_day() -> None:
    series = [(date(2025, 3, 1) + timedelta(i), Decimal(10)) for i in range(20)]
    series.append((date(2025, 3, 21), Decimal(3)))  # 3 dollars by mid-morning
    naive = forecast(series, until=date(2025, 3, 31))
    f = forecast(series, until=date(2025, 3, 31), partial=date(2025, 3, 21))
    assert f.actual_to_date == 203
    assert f.daily_path[0] == (date(2025, 3, 21), Decimal(7))  # the rest of today
    assert f.projected_total == 310
    assert naive.projected_total < 310  # a partial day read as a whole one drags it down


def test_crossing_date() -> None:
    series = [(date(2025, 3, 1) + timedelta(i), Decimal(10)) for i in range(10)]
    f = forecast(series, until=date(2025, 3, 31))
    assert f.crossing_date(Decimal(150)) == date(2025, 3, 15)
    assert f.crossing_date(Decimal(311)) is None
    assert f.crossing_date(Decimal(50)) == date(2025, 3, 10)  # already over


def test_daily_spend_groups_by_scope_and_day_in_the_time_zone() -> None:
    ts = 1_740_787_200.0  # 2025-03-01 00:00 UTC = 2025-02-28 19:00 in New York
    recs = [
        UsageRecord("a", ts=ts, team="x", cost_usd=Decimal("0.1")),
        UsageRecord("b", ts=ts + 60, team="x", cost_usd=Decimal("0.2")),
        UsageRecord("c", ts=ts, team="y", cost_usd=None, price_unknown=True),
        UsageRecord("d", ts=ts, team=None, cost_usd=Decimal("1")),
    ]
    assert daily_spend(recs, by="team") == {
        "(none)": [(date(2025, 3, 1), Decimal("1"))],
        "x": [(date(2025, 3, 1), Decimal("0.3"))],
    }
    ny = daily_spend(recs, tz="America/New_York")
    assert ny == {"total": [(date(2025, 2, 28), Decimal("1.3"))]}


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        forecast([], until=date(2025, 1, 31), level=1.0)
    assert isinstance(forecast([], until=date(2025, 1, 31)), Forecast)


def test_forecast_command_with_alerts(tmp_path: Path) -> None:
    db = str(tmp_path / "ledger.db")
    day0 = datetime(2025, 3, 1, 12, tzinfo=UTC).timestamp()
    recs = [
        UsageRecord(f"r{i}-{team}", ts=day0 + i * 86400, team=team, served_model="gpt-4o",
                    cost_usd=Decimal(amount))
        for i in range(20)
        for team, amount in (("search", "10"), ("ads", "1"))
    ]  # fmt: skip
    recs.append(UsageRecord("spike", ts=day0 + 19 * 86400 + 60, team="ads", cost_usd=Decimal(9)))
    with open_store(db) as store:
        store.migrate()
        store.insert_records(recs)
    args = ["forecast", "--db", db, "--by", "team", "--today", "2025-03-20", "--alerts",
            "--budget", "team=search", "300", "--format", "json"]  # fmt: skip
    out = CliRunner().invoke(cli, args, env={"TOKENOMY_TIMEZONE": "UTC"})
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    by_scope = {f["scope"]: f for f in data["forecasts"]}
    assert by_scope["search"]["spent_usd"] == "200"
    assert Decimal(by_scope["search"]["projected_usd"]) == 310
    kinds = sorted((a["tokenomy"]["kind"], a["tokenomy"]["scope"]) for a in data["alerts"])
    assert kinds == [("forecast_over_budget", "team=search"), ("spend_anomaly", "team=ads")]
    again = CliRunner().invoke(cli, args)
    assert json.loads(again.output)["alerts"] == []  # sent once: remembered next to the ledger
    text = CliRunner().invoke(cli, ["forecast", "--db", db, "--by", "team", "--today",
                                    "2025-03-20"])  # fmt: skip
    assert text.exit_code == 0 and "search" in text.output and "$310.00" in text.output


def test_forecast_command_streams_the_ledger(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The records are read a page at a time and tallied as they come (a ledger of
    millions of requests must not be held in memory): the same figures whatever
    the page size, and never a list of every record."""
    db = str(tmp_path / "ledger.db")
    day0 = datetime(2025, 3, 1, 12, tzinfo=UTC).timestamp()
    with open_store(db) as store:
        store.migrate()
        store.insert_records([
            UsageRecord(f"r{i}-{j}", ts=day0 + i * 86400 + j % 3, team=f"t{j % 2}",
                        cost_usd=Decimal("0.5") * j)
            for i in range(15) for j in range(7)
        ])  # fmt: skip
    args = ["forecast", "--db", db, "--by", "team", "--today", "2025-03-15", "--format", "json"]
    whole = CliRunner().invoke(cli, args, env={"TOKENOMY_TIMEZONE": "UTC"})
    assert whole.exit_code == 0, whole.output

    def no_list(*_a: object, **_k: object) -> None:
        raise AssertionError("forecast must not load every record")

    monkeypatch.setattr(SQLStore, "list_records", no_list)
    paged = SQLStore.iter_records
    monkeypatch.setattr(SQLStore, "iter_records",
                        lambda self, *, since=None, page=2000: paged(self, since=since, page=4))  # fmt: skip
    small = CliRunner().invoke(cli, args, env={"TOKENOMY_TIMEZONE": "UTC"})
    assert small.exit_code == 0, small.output
    assert json.loads(small.output) == json.loads(whole.output)
    assert {f["scope"]: f["spent_usd"] for f in json.loads(small.output)["forecasts"]} == {
        "t0": "90.0", "t1": "67.5"
    }  # fmt: skip


def test_forecast_command_rejects_an_unknown_budget_scope(tmp_path: Path) -> None:
    db = str(tmp_path / "ledger.db")
    out = CliRunner().invoke(cli, ["forecast", "--db", db, "--alerts", "--budget", "colour=red",
                                   "10"])  # fmt: skip
    assert out.exit_code == 2 and "cannot group by 'colour'" in out.output
    assert out.exception is None or isinstance(out.exception, SystemExit)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--budget", "team=search", "nan"], "Invalid value for --budget: 'nan'"),
        (["--budget", "team=search", "-5"], "Invalid value for --budget: '-5'"),
        (["--budget", "team=search", "abc"], "Invalid value for --budget: 'abc' is not a number"),
        (["--budget", "team=search", "1" * 40], "Invalid value for --budget: '1111"),
        (["--budget", "search", "5"], "Invalid value for --budget: scope 'search'"),
        (["--k", "abc"], "Invalid value for --k: 'abc' is not a number"),
        (["--k", "0"], "Invalid value for --k: '0': expected above 0"),
        (["--min-spend", "inf"], "Invalid value for --min-spend: 'inf'"),
        (["--today", "9999-12-31"], "Invalid value for --today: 9999-12-31: out of range"),
        (["--today", "0001-01-01"], "Invalid value for --today: 0001-01-01: out of range"),
    ],
)  # fmt: skip
def test_forecast_command_names_a_bad_value(tmp_path: Path, args: list[str], message: str) -> None:
    db = str(tmp_path / "ledger.db")
    day0 = datetime(2025, 3, 1, 12, tzinfo=UTC).timestamp()
    with open_store(db) as store:
        store.migrate()
        store.insert_records([UsageRecord(f"r{i}", ts=day0 + i * 86400, team="search",
                                          cost_usd=Decimal(10)) for i in range(20)])  # fmt: skip
    argv = ["forecast", "--db", db, "--today", "2025-03-20", "--alerts", *args]
    out = CliRunner().invoke(cli, argv, env={"TOKENOMY_TIMEZONE": "UTC"})
    assert out.exit_code == 2 and isinstance(out.exception, SystemExit), out.output
    assert message in out.output
