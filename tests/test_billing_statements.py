"""Statements from the request ledger and the credit ledger, exact, on both engines."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from tokenomy.billing import BillingStore, Plan, build_statement, parse_period
from tokenomy.ledger import Store
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
    b.assign_plan("acme", "pro")
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
