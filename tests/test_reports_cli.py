"""`tokenomy report` through click's CliRunner, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal

import pytest
from click.testing import CliRunner

from test_reports import RECORDS, day_ts, expected, unpriced
from tokenomy.cli import cli
from tokenomy.cli.report import parse_when
from tokenomy.ledger import Store


@pytest.fixture
def db(store: Store, db_url: str) -> str:
    store.insert_records(RECORDS)
    return db_url


def run(*args: str) -> str:
    result = CliRunner().invoke(cli, ["report", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_csv_groups_are_exact(db: str) -> None:
    since, until = "2026-11-01T05:00:00", "2026-11-03"
    out = run("--db", db, "--group-by", "team,model", "--since", since, "--until", until,
              "--format", "csv")  # fmt: skip
    rows = list(csv.DictReader(io.StringIO(out)))
    lo, hi = parse_when(since), parse_when(until)
    want = expected(RECORDS, ("team", "model"), lambda r: lo <= r.ts < hi)
    assert len(rows) == len(want)
    for row in rows:
        e = want[(row["team"] or None, row["model"] or None)]
        assert int(row["requests"]) == e["requests"]
        assert int(row["input_tokens"]) == e["input_tokens"]
        assert int(row["unpriced_requests"]) == e["unpriced_requests"]
        if e["requests"] == e["unpriced_requests"]:
            assert row["cost_usd"] == ""
        else:
            assert Decimal(row["cost_usd"]) == e["cost_usd"]
            assert row["cost_usd"] == format(e["cost_usd"], "f")  # no exponent, every digit
        assert Decimal(row["saved_usd"]) == sum(e["savings"].values(), Decimal(0))


def test_json_has_every_section(db: str) -> None:
    out = json.loads(run("--db", db, "--group-by", "day", "--format", "json", "--top", "3",
                         "--tag", "env=dev"))  # fmt: skip
    prod = [r for r in RECORDS if r.tags.get("env") == "dev"]
    want = expected(prod, ("day",))
    assert [g["day"] for g in out["groups"]] == sorted(k[0] for k in want)
    for g in out["groups"]:
        e = want[(g["day"],)]
        assert Decimal(g["cost_usd"]) == e["cost_usd"] and g["requests"] == e["requests"]
    total = expected(prod, ())[()]
    assert Decimal(out["total"]["cost_usd"]) == total["cost_usd"]
    assert out["total"]["unpriced_requests"] == total["unpriced_requests"]
    priced = sum(1 for r in prod if not unpriced(r))
    assert Decimal(out["total"]["cost_per_1k_requests"]) == total["cost_usd"] * 1000 / priced
    assert len(out["top"]) == 3 and all(t["cost_usd"] for t in out["top"])
    assert {r["route"] for r in out["routes"]} == {r.tags.get("route") or r.endpoint for r in prod}
    assert {(u["model"], u["requests"]) for u in out["unpriced"]} == {
        (k[0], e["unpriced_requests"])
        for k, e in expected(prod, ("model",)).items()
        if e["unpriced_requests"]
    }
    assert {s["lever"]: Decimal(s["saved_usd"]) for s in out["savings"]} == total["savings"]
    assert out["filters"] == {"tags": ["env=dev"]}
    assert out["unpriced"]  # the sample has unpriced requests in dev


def test_csv_sections(db: str) -> None:
    out = run("--db", db, "--format", "csv", "--section", "savings")
    assert out.splitlines()[0] == "lever,saved_usd"
    out = run("--db", db, "--format", "csv", "--section", "routes")
    assert out.splitlines()[0].startswith("route,requests,priced_requests,cost_usd,cost_per_1k")
    result = CliRunner().invoke(cli, ["report", "--db", db, "--format", "csv", "--section", "all"])
    assert result.exit_code == 2 and "one section" in result.output


def test_table(db: str) -> None:
    out = run("--db", db, "--group-by", "team", "--until", "2026-11-02", "--top", "2")
    assert "Spend by team" in out and "Most expensive requests" in out
    assert "Cost per 1,000 requests by route" in out and "Savings by lever" in out
    assert "Models with unknown prices" in out
    hi = parse_when("2026-11-02")
    cost = expected(RECORDS, (), lambda r: r.ts < hi)[()]["cost_usd"]
    assert f"${cost:,.6f}" in out
    assert "(none)" in out  # requests without a team
    # The most expensive requests: the table says of how many, when it lists fewer.
    priced = sum(1 for r in RECORDS if r.ts < hi and not r.price_unknown)  # as the totals count
    assert f"The 2 most expensive of {priced:,} priced requests: --top N lists more." in out
    costs = sum(1 for r in RECORDS if r.ts < hi and r.cost_usd is not None)  # refused: none
    out = run("--db", db, "--until", "2026-11-02", "--top", str(costs), "--section", "top")
    assert "Most expensive requests" in out and "most expensive of" not in out
    out = run("--db", db, "--until", "2026-11-02", "--top", str(costs - 1), "--section", "top")
    assert f"The {costs - 1} most expensive of {priced:,} priced" in out


def test_bad_options(db: str) -> None:
    runner = CliRunner()
    r = runner.invoke(cli, ["report", "--db", db, "--group-by", "colour"])
    assert r.exit_code == 2 and "cannot group by 'colour'" in r.output
    r = runner.invoke(cli, ["report", "--db", db, "--since", "yesterday-ish"])
    assert r.exit_code == 2 and "use a date" in r.output
    r = runner.invoke(cli, ["report", "--db", db, "--since", "2026-11-03", "--until", "2026-11-01"])
    assert r.exit_code == 2 and "before --until" in r.output
    r = runner.invoke(cli, ["report", "--db", db, "--tag", "env"])
    assert r.exit_code == 2 and "key=value" in r.output


def test_parse_when() -> None:
    assert parse_when("2026-11-01") == day_ts(0)
    assert parse_when("2026-11-01T06:00") == day_ts(0, 6)
    assert parse_when("2026-11-01T06:00:00+02:00") == day_ts(0, 4)
    assert parse_when("2026-11-01T06:00:00Z") == day_ts(0, 6)
    assert parse_when("2d", now=day_ts(3)) == day_ts(1)
    assert parse_when("12h", now=day_ts(3)) == day_ts(2, 12)


@pytest.mark.parametrize(
    ("option", "value"),
    [("--since", "99999999999d"), ("--until", "1000000000000w"),
     ("--since", "0001-01-01T00:00:00+01:00"), ("--until", "9999-12-31T23:59:59-14:00")],
)  # fmt: skip
def test_times_out_of_range_name_the_option(db: str, option: str, value: str) -> None:
    r = CliRunner().invoke(cli, ["report", "--db", db, option, value])
    assert r.exit_code == 2 and r.exception is not None and isinstance(r.exception, SystemExit)
    assert f"Invalid value for {option}: '{value}'" in r.output


def test_partial_days_count_tokens_as_integers(db: str) -> None:
    # Partial days are summed from the rows: on PostgreSQL those sums are NUMERIC,
    # and token counts came back as Decimals, printed as dollars and as JSON strings.
    window = ("--since", "2026-11-01T05:00", "--until", "2026-11-02T12:00", "--group-by", "team")
    lo, hi = parse_when(window[1]), parse_when(window[3])
    want = expected(RECORDS, (), lambda r: lo <= r.ts < hi)[()]
    out = json.loads(run("--db", db, *window, "--format", "json", "--section", "groups"))
    counts = ("requests", "errors", "input_tokens", "output_tokens", "cache_read_tokens",
              "unpriced_requests", "unpriced_input_tokens", "unpriced_output_tokens")  # fmt: skip
    for row in [out["total"], *out["groups"]]:
        assert all(type(row[c]) is int for c in counts), row
    assert out["total"]["input_tokens"] == want["input_tokens"]
    table = run("--db", db, *window, "--section", "groups")
    total_row = next(ln for ln in table.splitlines() if ln.strip().startswith("total "))
    assert (
        f" {want['input_tokens']:,} " in total_row
        and "$" + f"{want['input_tokens']:,}" not in table
    )
