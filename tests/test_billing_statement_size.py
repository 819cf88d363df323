"""A statement is exact however many entries its period holds, on both engines: it
lists every top-up (from Python, the admin API and the CLI), its list adds up to its
total, and it is read and written a page at a time."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

import httpx2 as httpx
import orjson
import pytest
from click.testing import CliRunner

from gateway_fixtures import MASTER_KEY
from tokenomy.billing import BillingStore, build_statement, parse_period
from tokenomy.billing import statements as statements_module
from tokenomy.cli import cli
from tokenomy.config import Settings
from tokenomy.ledger import SQLStore, Store
from tokenomy.records import UsageRecord
from tokenomy.server.app import create_app
from tokenomy.testing import serve_in_thread
from tokenomy.usage import Usage

D = Decimal
NOV = datetime(2026, 11, 1, tzinfo=UTC).timestamp()
MANY = 10_001  # one more than statements once listed


def add_topups(store: Store, customer: str, stamps: list[float], amount: str = "0.01") -> None:
    """Top-ups written straight to the credit ledger in one transaction, however
    many (each through `BillingStore.topup` would be a transaction of its own)."""
    assert isinstance(store, SQLStore)
    p = store.dialect.param
    value = amount if store.dialect.money_as_text else D(amount)
    insert = (
        "INSERT INTO credit_ledger (customer, ts, amount, unit, kind, note) "
        f"VALUES ({p}, {p}, {p}, 'usd', 'topup', {p})"
    )
    rows = [(customer, ts, value, f"n{i}") for i, ts in enumerate(stamps)]
    store._write(lambda cur: cur.executemany(insert, rows))


@pytest.fixture
def many(store: Store) -> BillingStore:
    """``acme``: a balance opened in October, then MANY + 1 top-ups in November."""
    b = BillingStore(store)
    b.topup("acme", D("5"), ts=NOV - 100)
    b.topup("acme", D("2"), note="first", ts=NOV)
    add_topups(store, "acme", [NOV + 1 + i / 8 for i in range(MANY)])
    return b


def check_topups(listed: list[dict[str, str]], total: str) -> None:
    assert len(listed) == MANY + 1
    assert listed[0]["note"] == "first" and listed[-1]["note"] == f"n{MANY - 1}"  # oldest first
    assert sum(D(t["amount"]) for t in listed) == D(total) == D("2") + D("0.01") * MANY


def test_a_statement_lists_every_top_up_of_its_period(many: BillingStore) -> None:
    st = build_statement(many, "acme", parse_period("2026-11"))
    got = st.to_json()
    check_topups(got["topups"], got["balance"]["topups"])
    assert got["balance"]["opening"] == "5"
    assert D(got["balance"]["closing"]) == 5 + 2 + D("0.01") * MANY
    rows = list(csv.DictReader(io.StringIO(st.to_csv())))
    listed = [r for r in rows if r["line"] == "topup"]
    total = next(r["amount"] for r in rows if r["line"] == "topups_total")
    check_topups(listed, total)


def test_the_admin_api_and_the_cli_write_every_top_up(many: BillingStore, db_url: str) -> None:
    app = create_app(Settings(db=db_url, master_key=MASTER_KEY))
    admin = {"authorization": f"Bearer {MASTER_KEY}"}
    with serve_in_thread(app) as url, httpx.Client(base_url=url, headers=admin) as c:
        r = c.get("/admin/statements/acme/2026-11")
        assert r.status_code == 200 and r.headers["content-type"] == "application/json"
        assert r.headers["transfer-encoding"] == "chunked"  # written a piece at a time
        got = r.json()
        check_topups(got["topups"], got["balance"]["topups"])
        r = c.get("/admin/statements/acme/2026-11.csv")
        assert (
            r.status_code == 200
            and "statement-acme-2026-11.csv" in r.headers["content-disposition"]
        )
        rows = list(csv.DictReader(io.StringIO(r.text)))
        total = next(r["amount"] for r in rows if r["line"] == "topups_total")
        check_topups([r for r in rows if r["line"] == "topup"], total)
    res = CliRunner().invoke(cli, ["statements", "acme", "--period", "2026-11", "--db", db_url])
    assert res.exit_code == 0, res.output
    got = orjson.loads(res.stdout)
    check_topups(got["topups"], got["balance"]["topups"])


def test_a_top_up_after_the_statement_is_in_neither_its_list_nor_its_total(
    store: Store,
) -> None:
    b = BillingStore(store)
    b.topup("acme", D("3"), ts=NOV + 1)
    st = build_statement(b, "acme", parse_period("2026-11"))
    b.topup("acme", D("4"), ts=NOV + 2)  # dated in the period, made after the statement
    for got in (st.to_json(), orjson.loads(b"".join(st.json_chunks()))):
        assert [t["amount"] for t in got["topups"]] == ["3"]
        assert got["balance"]["topups"] == got["balance"]["closing"] == "3"
    assert [r.split(",")[11] for r in st.to_csv().splitlines() if ",topup," in r] == ["3"]
    later = build_statement(b, "acme", parse_period("2026-11")).to_json()
    assert [t["amount"] for t in later["topups"]] == ["3", "4"]


def pieces(st: statements_module.Statement) -> Iterator[tuple[bytes, bytes, str]]:
    """Each way of writing ``st`` a piece at a time, with what it must equal."""
    for per_chunk in (1, 2, 1000):
        yield (b"".join(st.json_chunks(per_chunk=per_chunk)), orjson.dumps(st.to_json()), "json")
        yield (
            b"".join(st.json_chunks(indent=True, per_chunk=per_chunk)),
            orjson.dumps(st.to_json(), option=orjson.OPT_INDENT_2),
            "indented json",
        )
        csv_text = "".join(st.csv_chunks(per_chunk=per_chunk))
        yield csv_text.encode(), st.to_csv().encode(), "csv"


@pytest.mark.parametrize("topups", [0, 1, 5])
def test_pieces_make_the_whole_statement(store: Store, topups: int) -> None:
    b = BillingStore(store)
    if topups:
        b.topup("acme", D("1"), note='a "quoted"\nnote, =1+1', ts=NOV - 5)
        add_topups(store, "acme", [NOV + i for i in range(topups)], amount="0.5")
    store.insert_records([UsageRecord(request_id="r1", ts=NOV + 1, user="acme",
                                      requested_model="gpt-4o", usage=Usage(3, 4),
                                      cost_usd=D("0.25"))])  # fmt: skip
    st = build_statement(b, "acme", parse_period("2026-11"))
    assert (st.balance is None) == (topups == 0)
    for got, want, kind in pieces(st):
        assert got == want, kind
    if topups:
        assert len(st.to_json()["topups"]) == topups


def test_requests_read_a_page_at_a_time_sum_as_one(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pages of one row: a cascade's draft is charged with its request (its row has
    the request's start time, written before or after it), every request once."""
    b = BillingStore(store)
    b.topup("acme", D("10"), ts=NOV - 5)
    terms = {"customer": "acme", "unit": "usd", "plan": "half", "markup_pct": "50"}

    def rec(rid: str, ts: float, cost: str, route: dict[str, str] | None = None) -> UsageRecord:
        decisions: dict[str, object] = {"billing": terms}
        if route:
            decisions = {"route": route}  # a draft's row: no terms of its own
        return UsageRecord(request_id=rid, ts=ts, user="acme", requested_model="m",
                           served_model="big" if route is None else "small",
                           usage=Usage(10, 1), cost_usd=D(cost), decisions=decisions)  # fmt: skip

    def draft(of: str, ts: float, cost: str, reason: str = "cascade") -> UsageRecord:
        # as the gateway writes them: a cascade's draft is charged, a judge's call not
        row = rec(f"{of}.{reason}", ts, cost, {"parent": of, "reason": reason})
        return replace(row, charged=reason == "cascade")

    # Charged alone, each of these would round to nothing; together they make a
    # nano-dollar: the request's line gets it, the draft's share rounds to zero.
    store.insert_records([draft("a", NOV + 1, "0.0000000003")])  # before its request
    store.insert_records([rec("b", NOV + 1, "0.0000000003")])  # another at the same instant
    store.insert_records([rec("a", NOV + 1, "0.0000000003")])
    store.insert_records([rec("c", NOV + 2, "0.0000000003")])
    store.insert_records([draft("c", NOV + 2, "0.0000000003")])  # after its request
    store.insert_records([draft("c", NOV + 2, "9", reason="judge")])  # not the customer's
    store.insert_records([draft("z", NOV + 3, "0.2")])  # z was never recorded: its own cost
    whole = build_statement(b, "acme", parse_period("2026-11")).to_json()
    assert whole["usage"]["requests"] == 6
    assert [(m["model"], m["requests"], m["charged_usd"]) for m in whole["models"]] == [
        ("big", 3, "0.000000002"),  # a and c a nano-dollar each, b nothing
        ("small", 3, "0.2"),  # the drafts' shares round to nothing; z's cost
    ]
    for page in (1, 2, 3):
        monkeypatch.setattr(statements_module, "PAGE", page)
        assert build_statement(b, "acme", parse_period("2026-11")).to_json() == whole
