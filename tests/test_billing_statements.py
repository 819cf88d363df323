"""Statements from the request ledger and the credit ledger, exact, on both engines."""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tokenomy.billing import BillingStore, Plan, build_statement, parse_period
from tokenomy.errors import InvalidRequest
from tokenomy.ledger import Store, migrations, open_store
from tokenomy.records import UsageRecord
from tokenomy.usage import Usage

D = Decimal
NOV = datetime(2026, 11, 1, tzinfo=UTC).timestamp()
DEC = datetime(2026, 12, 1, tzinfo=UTC).timestamp()


PRO = {"customer": "acme", "unit": "usd", "plan": "pro", "markup_pct": "10"}


def rec(
    n: int, ts: float, user: str, model: str, cost: str | None, usage: Usage, terms: Any = PRO
) -> UsageRecord:
    return UsageRecord(
        request_id=f"req_{n}", ts=ts, api="openai", endpoint="/v1/chat/completions",
        user=user, requested_model=model, served_model=model, provider="openai",
        usage=usage, cost_usd=None if cost is None else D(cost), price_unknown=cost is None,
        decisions={"billing": terms} if terms else {},
    )  # fmt: skip


def seed(store: Store) -> BillingStore:
    b = BillingStore(store)
    b.create_plan(Plan("pro", markup_pct=D("10")))
    b.assign_plan("acme", "pro", ts=NOV - 200)
    b.topup("acme", D("5"), note="before", ts=NOV - 100)
    store.insert_records(
        [
            rec(1, NOV - 10, "acme", "gpt-4o", "0.5", Usage(100, 10)),  # October
            # 1.1e-9 is rounded half-even to one nano-dollar
            rec(2, NOV + 10, "acme", "gpt-4o", "0.000000001", Usage(3, 1)),
            rec(3, NOV + 20, "acme", "gpt-4o", "0.1234567891", Usage(1000, 200, 400)),
            rec(4, NOV + 30, "acme", "gpt-4o-mini", "0.2", Usage(50, 5)),
            rec(5, NOV + 40, "acme", "mystery", None, Usage(7, 7)),  # unpriced
            rec(6, NOV + 50, "other", "gpt-4o", "9", Usage(1, 1)),  # someone else
            rec(7, DEC + 1, "acme", "gpt-4o", "1", Usage(1, 1)),  # December
        ]
    )
    # The debits of the priced requests, dated like their requests.
    for n, ts, amount in [(1, NOV - 10, "0.55"), (2, NOV + 10, "0.000000001"),
                          (3, NOV + 20, "0.135802468"), (4, NOV + 30, "0.22")]:  # fmt: skip
        b.debit("acme", f"req_{n}", D(amount), ts=ts)
    b.topup("acme", D("20"), note="invoice 42", ts=NOV + 60)
    b.adjust("acme", D("-0.05"), note="goodwill, reversed", ts=NOV + 70)
    b.topup("acme", D("1"), note="december", ts=DEC + 5)
    return b


def test_statement_json(store: Store) -> None:
    b = seed(store)
    st = build_statement(b, "acme", parse_period("2026-11"))
    got = st.to_json()
    assert got["usage"] == {
        "requests": 4,
        "input_tokens": 1060,
        "cached_input_tokens": 400,
        "output_tokens": 213,
        "unpriced_requests": 1,
    }
    assert got["provider_cost_usd"] == "0.3234567901"
    assert got["charged_usd"] == "0.355802469"
    assert [m["model"] for m in got["models"]] == ["gpt-4o", "gpt-4o-mini", "mystery"]
    assert got["models"][0] == {
        "model": "gpt-4o",
        "requests": 2,
        "input_tokens": 1003,
        "cached_input_tokens": 400,
        "output_tokens": 201,
        "unpriced_requests": 0,
        "provider_cost_usd": "0.1234567901",
        "charged_usd": "0.135802469",
    }
    assert got["models"][2]["provider_cost_usd"] is None  # unknown, never $0
    assert got["models"][2]["unpriced_requests"] == 1
    assert got["plan"] == "pro" and got["period"] == "2026-11" and got["timezone"] == "UTC"
    assert (got["start"], got["end"]) == ("2026-11-01T00:00:00+00:00", "2026-12-01T00:00:00+00:00")
    assert got["balance"] == {
        "unit": "usd",
        "opening": "4.45",
        "topups": "20",
        "debits": "-0.355802469",
        "adjustments": "-0.05",
        "refunds": "0",
        "closing": "24.044197531",
    }
    [topup] = got["topups"]
    assert isinstance(topup.pop("id"), int)
    assert topup == {"ts": "2026-11-01T00:01:00+00:00", "amount": "20", "note": "invoice 42"}


def test_statement_balances_chain_from_period_to_period(store: Store) -> None:
    b = seed(store)
    months = [
        build_statement(b, "acme", parse_period(m)) for m in ("2026-10", "2026-11", "2026-12")
    ]
    balances = [st.balance for st in months]
    assert all(bal is not None for bal in balances)
    oct_, nov, dec = (bal for bal in balances if bal is not None)
    assert oct_.opening == 0 and oct_.closing == nov.opening == D("4.45")
    assert nov.closing == dec.opening and dec.closing == D("25.044197531")
    acct = b.customer("acme")
    assert acct is not None and acct.balance == dec.closing


def test_statement_csv(store: Store) -> None:
    b = seed(store)
    st = build_statement(b, "acme", parse_period("2026-11"))
    rows = list(csv.DictReader(io.StringIO(st.to_csv())))
    lines = [r["line"] for r in rows]
    assert lines == ["usage", "usage", "usage", "usage_total", "opening_balance", "topup",
                     "topups_total", "debits_total", "adjustments_total", "refunds_total",
                     "closing_balance"]  # fmt: skip
    assert all(r["customer"] == "acme" and r["period"] == "2026-11" for r in rows)
    total = rows[3]
    assert (total["requests"], total["provider_cost_usd"], total["charged_usd"]) == (
        "4",
        "0.3234567901",
        "0.355802469",
    )
    assert rows[0]["model"] == "gpt-4o" and rows[0]["cached_input_tokens"] == "400"
    assert {r["line"]: r["amount"] for r in rows[4:]} == {
        "opening_balance": "4.45",
        "topup": "20",
        "topups_total": "20",
        "debits_total": "-0.355802469",
        "adjustments_total": "-0.05",
        "refunds_total": "0",
        "closing_balance": "24.044197531",
    }
    topup = rows[5]
    assert (topup["ts"], topup["note"], topup["unit"]) == (
        "2026-11-01T00:01:00+00:00",
        "invoice 42",
        "usd",
    )
    assert st.to_csv().splitlines()[0] == (
        "customer,period,line,model,ts,requests,input_tokens,cached_input_tokens,"
        "output_tokens,provider_cost_usd,charged_usd,amount,unit,note,unpriced_requests"
    )


def test_statement_lists_top_ups_of_the_period(store: Store) -> None:
    b = BillingStore(store)
    b.topup("acme", D("3"), note="first", ts=NOV + 2)
    b.topup("acme", D("4"), ts=NOV + 1)
    st = build_statement(b, "acme", parse_period("2026-11-01"))
    got = st.to_json()
    assert [(t["amount"], t["note"]) for t in got["topups"]] == [("4", None), ("3", "first")]
    assert got["balance"]["opening"] == "0" and got["balance"]["closing"] == "7"
    rows = list(csv.DictReader(io.StringIO(st.to_csv())))
    assert [(r["line"], r["amount"], r["note"]) for r in rows if r["line"] == "topup"] == [
        ("topup", "4", ""),
        ("topup", "3", "first"),
    ]


def test_a_customer_without_a_balance_gets_usage_only(store: Store) -> None:
    store.insert_records([rec(1, NOV + 1, "walkin", "gpt-4o", "0.01", Usage(5, 5), None)])
    st = build_statement(BillingStore(store), "walkin", parse_period("2026-11"))
    got = st.to_json()
    assert got["balance"] is None and got["plan"] is None and got["topups"] == []
    assert got["usage"]["requests"] == 1 and got["charged_usd"] == "0.01"
    assert [r.split(",")[2] for r in st.to_csv().splitlines()[1:]] == ["usage", "usage_total"]


def test_the_documented_formats_are_what_the_code_writes(store: Store) -> None:
    doc = (Path(__file__).resolve().parents[1] / "docs" / "billing.md").read_text()
    section = doc[doc.index("## Statements") :]
    json_block = section[section.index("```json") + 7 :]
    json_block = json_block[: json_block.index("```")]
    csv_block = section[section.index("```text") + 7 :].lstrip("\n")
    csv_block = csv_block[: csv_block.index("```")]
    st = build_statement(seed(store), "acme", parse_period("2026-11"))
    got = st.to_json()
    for topup in got["topups"]:
        topup["id"] = 6  # row ids differ between engines' runs
    assert json.loads(json_block) == got
    assert csv_block == st.to_csv()


def test_statement_csv_never_holds_a_formula(store: Store) -> None:
    """The customer is a client's ``user``: a name like ``=HYPERLINK(...)`` must
    reach a spreadsheet as text; negative amounts stay numbers."""
    b = BillingStore(store)
    evil = '=HYPERLINK("http://x","y")'
    b.topup(evil, Decimal("5"), note="+1 note", ts=datetime(2026, 11, 2, tzinfo=UTC).timestamp())
    b.adjust(evil, Decimal("-2"), ts=datetime(2026, 11, 3, tzinfo=UTC).timestamp())
    st = build_statement(b, evil, parse_period("2026-11"))
    rows = list(csv.DictReader(io.StringIO(st.to_csv())))
    assert {r["customer"] for r in rows} == {"'" + evil}
    amounts = {r["line"]: r["amount"] for r in rows if r["amount"]}
    assert amounts["adjustments_total"] == "-2" and amounts["closing_balance"] == "3"
    assert [r["note"] for r in rows if r["line"] == "topup"] == ["'+1 note"]


def _at(year: int, month: int, day: int, hour: int = 0) -> float:
    return datetime(year, month, day, hour, tzinfo=UTC).timestamp()


def _plans(b: BillingStore, period: str, tz: str = "UTC") -> list[tuple[str | None, str, str]]:
    got = build_statement(b, "acme", parse_period(period, tz), timezone=tz).to_json()
    spans = [(p["plan"], p["from"], p["until"]) for p in got["plans"]]
    assert got["plan"] == spans[-1][0]  # the header's plan: the one in force at the end
    return spans


def test_a_statement_names_the_plans_in_force_during_its_period(store: Store) -> None:
    """A past period shows the plan it had, not the customer's plan now; a change
    mid-period shows both plans, each with when it was in force."""
    b = BillingStore(store)
    b.create_plan(Plan("basic", markup_pct=D("5")))
    b.create_plan(Plan("pro", markup_pct=D("10")))
    b.assign_plan("acme", "basic", ts=_at(2026, 10, 15))
    b.assign_plan("acme", "pro", ts=_at(2026, 11, 15, 12))
    b.assign_plan("acme", "pro")  # no change: nothing recorded
    acct = b.customer("acme")
    assert acct is not None and acct.plan == "pro"
    z = "+00:00"
    assert _plans(b, "2026-09") == [(None, f"2026-09-01T00:00:00{z}", f"2026-10-01T00:00:00{z}")]
    assert _plans(b, "2026-10") == [
        (None, f"2026-10-01T00:00:00{z}", f"2026-10-15T00:00:00{z}"),
        ("basic", f"2026-10-15T00:00:00{z}", f"2026-11-01T00:00:00{z}"),
    ]
    assert _plans(b, "2026-11") == [
        ("basic", f"2026-11-01T00:00:00{z}", f"2026-11-15T12:00:00{z}"),
        ("pro", f"2026-11-15T12:00:00{z}", f"2026-12-01T00:00:00{z}"),
    ]
    assert _plans(b, "2026-11-16") == [
        ("pro", f"2026-11-16T00:00:00{z}", f"2026-11-17T00:00:00{z}")
    ]
    assert [p for p, _, _ in _plans(b, "2026")] == [None, "basic", "pro"]
    # in the statement's time zone: 12:00 UTC is 13:00 in Paris
    assert _plans(b, "2026-11-15", "Europe/Paris") == [
        ("basic", "2026-11-15T00:00:00+01:00", "2026-11-15T13:00:00+01:00"),
        ("pro", "2026-11-15T13:00:00+01:00", "2026-11-16T00:00:00+01:00"),
    ]
    b.assign_plan("acme", None, ts=_at(2026, 11, 20))  # back to the provider cost
    assert [p for p, _, _ in _plans(b, "2026-11")] == ["basic", "pro", None]
    # the record stays in order: a change is not dated before the last one, or ahead
    with pytest.raises(InvalidRequest, match="last changed after") as err:
        b.assign_plan("acme", "basic", ts=_at(2026, 11, 19))
    assert err.value.status == 409
    with pytest.raises(InvalidRequest, match="future"):
        b.assign_plan("acme", "basic", ts=time.time() + 3600)
    assert [p for p, _, _ in _plans(b, "2026-11")] == ["basic", "pro", None]


def test_plan_changes_at_one_instant_leave_the_last_one(store: Store) -> None:
    b = BillingStore(store)
    b.create_plan(Plan("basic", markup_pct=D("5")))
    b.create_plan(Plan("pro", markup_pct=D("10")))
    b.assign_plan("acme", "basic", ts=NOV - 10)
    for plan in ("pro", "basic", "pro"):
        b.assign_plan("acme", plan, ts=NOV + 60)
    assert _plans(b, "2026-11") == [
        ("basic", "2026-11-01T00:00:00+00:00", "2026-11-01T00:01:00+00:00"),
        ("pro", "2026-11-01T00:01:00+00:00", "2026-12-01T00:00:00+00:00"),
    ]


def test_m014_dates_the_plans_customers_had_in_the_previous_schema(
    new_db_url: Callable[[], str],
) -> None:
    """Plan changes were not recorded before m014: a customer's plan then counts from
    when they were created (what their statements showed), and changes after it
    are dated."""
    names = migrations.names()
    with open_store(new_db_url()) as old:
        old.migrate(upto=names[names.index("m014_plan_changes") - 1])
        b = BillingStore(old)
        b.create_plan(Plan("pro", markup_pct=D("10")))
        b.create_plan(Plan("basic", markup_pct=D("5")))
        b.topup("walkin", D("1"), ts=NOV)  # a balance, no plan
        zero = b.db.money(D(0))
        sql = b.db.sql(
            "INSERT INTO billing_customers (customer, plan, unit, balance, credited, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?)"
        )
        b.db.write(lambda cur: cur.execute(sql, ("acme", "pro", None, zero, zero, NOV + 3600)))
        assert old.migrate(upto="m014_plan_changes") == ["m014_plan_changes"]
        old.migrate()
        assert _plans(b, "2026-10") == [
            (None, "2026-10-01T00:00:00+00:00", "2026-11-01T00:00:00+00:00")
        ]
        assert _plans(b, "2026-11") == [
            (None, "2026-11-01T00:00:00+00:00", "2026-11-01T01:00:00+00:00"),
            ("pro", "2026-11-01T01:00:00+00:00", "2026-12-01T00:00:00+00:00"),
        ]
        walkin = build_statement(b, "walkin", parse_period("2026-11")).to_json()
        assert walkin["plan"] is None and [p["plan"] for p in walkin["plans"]] == [None]
        b.assign_plan("acme", "basic", ts=DEC + 60)
        assert [p for p, _, _ in _plans(b, "2026-12")] == ["pro", "basic"]
        assert [p for p, _, _ in _plans(b, "2026-11")] == [None, "pro"]
