"""Billing from the CLI and from the admin API, against a running gateway."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import openai
import pytest
from click.testing import CliRunner

from gateway_fixtures import GW, MASTER_KEY, Fake, gateway_settings, start_gateway
from tokenomy.billing import BillingStore, money_text
from tokenomy.cli import cli

D = Decimal
ADMIN = {"authorization": f"Bearer {MASTER_KEY}"}


@pytest.fixture
def bill_gw(fake: Fake, fake_llamacpp: Fake, tmp_path: Path) -> Iterator[GW]:
    yield from start_gateway(
        gateway_settings(str(tmp_path / "ledger.db"), fake, fake_llamacpp), fake
    )


def this_month() -> str:
    now = datetime.now(UTC)
    return f"{now.year}-{now.month:02d}"


def run(gw: GW, *args: str) -> str:
    res = CliRunner().invoke(cli, [*args, "--db", gw.db])
    assert res.exit_code == 0, res.output
    return res.stdout


def fails(gw: GW, *args: str) -> str:
    res = CliRunner().invoke(cli, [*args, "--db", gw.db])
    assert res.exit_code != 0
    return res.output


def test_cli_plans_credits_and_statements(bill_gw: GW) -> None:
    assert "plan pro: provider cost +20%" in run(
        bill_gw, "plans", "create", "pro", "--markup", "20"
    )
    out = run(bill_gw, "plans", "create", "flat", "--input", "0.15", "--output", "0.6")
    assert "$0.15 in / $0.6 out per MTok" in out
    assert "exists" in fails(bill_gw, "plans", "create", "pro", "--markup", "5")
    assert "not both" in fails(bill_gw, "plans", "create", "x", "--markup", "5", "--input", "1",
                               "--output", "1")  # fmt: skip
    listed = run(bill_gw, "plans", "list")
    assert listed.index("flat") < listed.index("pro")
    run(bill_gw, "plans", "assign", "alice", "pro")
    assert "no plan" in fails(bill_gw, "plans", "assign", "alice", "gold")

    out = run(bill_gw, "credits", "topup", "alice", "10.50", "--note", "invoice 7")
    assert "topup 10.5 usd for alice; balance 10.5 usd" in out
    assert "9 decimal places" in fails(bill_gw, "credits", "topup", "alice", "0.0000000001")
    assert "in usd, not tokens" in fails(bill_gw, "credits", "topup", "alice", "5", "--unit",
                                         "tokens")  # fmt: skip

    raw = bill_gw.openai().chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}], max_tokens=5
    )
    rid = raw.headers["x-tokenomy-request-id"]
    debit = BillingStore(bill_gw.store).debit_of(rid)
    assert debit is not None

    history = run(bill_gw, "credits", "history", "alice")
    lines = history.splitlines()
    assert (
        "debit" in lines[1] and rid in lines[1] and "topup" in lines[2] and "invoice 7" in lines[2]
    )
    balance = run(bill_gw, "credits", "balance", "alice")
    assert "pro" in balance and money_text(D("10.50") + debit.amount) in balance
    assert "alice" in run(bill_gw, "credits", "balance")

    out = run(bill_gw, "credits", "adjust", "alice", "-0.5", "--note", "chargeback")
    assert "adjustment -0.5 usd" in out
    assert "negative" in fails(bill_gw, "credits", "adjust", "alice", "-100", "--note", "x")
    out = run(bill_gw, "credits", "adjust", "alice", money_text(-debit.amount), "--note", "sorry",
              "--refund", rid)  # fmt: skip
    assert "refund" in out
    assert "already refunded" in fails(bill_gw, "credits", "adjust", "alice", "0.1", "--note",
                                       "again", "--refund", rid)  # fmt: skip
    assert "no balance" in fails(bill_gw, "credits", "adjust", "nobody", "1", "--note", "x")

    st = json.loads(run(bill_gw, "statements", "alice", "--period", this_month()))
    assert st["customer"] == "alice" and st["plan"] == "pro" and st["usage"]["requests"] == 1
    assert st["balance"]["topups"] == "10.5" and st["balance"]["adjustments"] == "-0.5"
    assert D(st["balance"]["refunds"]) == -debit.amount
    assert D(st["charged_usd"]) == -debit.amount
    assert st["balance"]["closing"] == "10"  # 10.50 - charge - 0.5 + refund of the charge
    rows = list(csv.DictReader(io.StringIO(
        run(bill_gw, "statements", "alice", "--period", this_month(), "--format", "csv")
    )))  # fmt: skip
    assert rows[-1]["line"] == "closing_balance" and rows[-1]["amount"] == "10"
    assert "period" in fails(bill_gw, "statements", "alice", "--period", "november")


def test_a_cli_topup_reaches_the_running_gateway(bill_gw: GW) -> None:
    BillingStore(bill_gw.store).topup("alice", D("0.000001"))
    msgs = [{"role": "user", "content": "hi"}]
    with pytest.raises(openai.RateLimitError):
        bill_gw.openai().chat.completions.create(model="gpt-4o", messages=msgs, max_tokens=5)
    run(bill_gw, "credits", "topup", "alice", "1")
    gw = bill_gw.app.gateway
    assert gw is not None and gw.billing is not None
    gw.billing.forget()  # the cache would take up to cache_ttl (2 s) to see it
    bill_gw.openai().chat.completions.create(model="gpt-4o", messages=msgs, max_tokens=5)


def test_admin_api(bill_gw: GW) -> None:
    with bill_gw.http() as http:
        assert http.get("/admin/credits/alice").status_code == 401
        r = http.post("/admin/plans", headers=ADMIN, json={"name": "pro", "markup_pct": "12.5"})
        assert r.status_code == 201 and r.json()["markup_pct"] == "12.5"
        assert r.json()["pricing"] == "markup"
        r = http.post("/admin/plans", headers=ADMIN, json={"name": "bad", "markup_pct": 12.5})
        assert r.status_code == 400 and "decimal string" in r.json()["error"]["message"]
        assert http.post("/admin/plans", headers=ADMIN,
                         json={"name": "pro", "markup_pct": "1"}).status_code == 409  # fmt: skip
        assert [p["name"] for p in http.get("/admin/plans", headers=ADMIN).json()["data"]] == [
            "pro"
        ]
        assert http.get("/admin/plans/pro", headers=ADMIN).json()["name"] == "pro"
        assert http.get("/admin/plans/gold", headers=ADMIN).status_code == 404

        r = http.post("/admin/credits/alice/topup", headers=ADMIN,
                      json={"amount": "0.000002", "note": "trial"})  # fmt: skip
        assert r.status_code == 201
        assert (r.json()["kind"], r.json()["amount"], r.json()["balance"]) == (
            "topup",
            "0.000002",
            "0.000002",
        )
        r = http.patch("/admin/customers/alice", headers=ADMIN, json={"plan": "pro"})
        assert r.status_code == 200 and r.json()["plan"] == "pro"
        assert http.patch("/admin/customers/alice", headers=ADMIN,
                          json={"plan": "gold"}).status_code == 404  # fmt: skip

        msgs = [{"role": "user", "content": "hi"}]
        with pytest.raises(openai.RateLimitError):  # $0.000002 cannot pay for a request
            bill_gw.openai().chat.completions.create(model="gpt-4o", messages=msgs, max_tokens=5)
        r = http.post("/admin/credits/alice/topup", headers=ADMIN, json={"amount": 5})
        assert r.json()["balance"] == "5.000002"  # and the gateway sees it at once
        raw = bill_gw.openai().chat.completions.with_raw_response.create(
            model="gpt-4o", messages=msgs, max_tokens=5
        )
        rid = raw.headers["x-tokenomy-request-id"]

        view = http.get("/admin/credits/alice", headers=ADMIN).json()
        assert view["plan"] == "pro" and view["unit"] == "usd"
        assert D(view["balance"]) < D("5.000002")
        hist = http.get("/admin/credits/alice/history", headers=ADMIN).json()["data"]
        assert [e["kind"] for e in hist] == ["debit", "topup", "topup"]
        assert hist[0]["request_id"] == rid and D(hist[0]["amount"]) < 0
        r = http.post("/admin/credits/alice/adjust", headers=ADMIN,
                      json={"amount": "-100", "note": "x"})  # fmt: skip
        assert r.status_code == 409 and "negative" in r.json()["error"]["message"]
        r = http.post("/admin/credits/alice/adjust", headers=ADMIN,
                      json={"amount": hist[0]["amount"].lstrip("-"), "kind": "refund",
                            "request_id": rid, "note": "sorry"})  # fmt: skip
        assert r.status_code == 201 and r.json()["balance"] == "5.000002"
        again = http.post("/admin/credits/alice/adjust", headers=ADMIN,
                          json={"amount": hist[0]["amount"].lstrip("-"), "kind": "refund",
                                "request_id": rid, "note": "sorry"})  # fmt: skip
        assert again.status_code == 200 and again.json()["replayed"] is True  # a retry
        assert again.json()["id"] == r.json()["id"] and again.json()["balance"] == "5.000002"
        customers = http.get("/admin/customers", headers=ADMIN).json()["data"]
        assert [c["customer"] for c in customers] == ["alice"]
        assert http.get("/admin/customers/zed", headers=ADMIN).status_code == 404

        st = http.get(f"/admin/statements/alice/{this_month()}", headers=ADMIN)
        assert st.status_code == 200
        body = st.json()
        assert body["usage"]["requests"] == 2 and body["balance"]["closing"] == "5.000002"
        csv_resp = http.get(f"/admin/statements/alice/{this_month()}.csv", headers=ADMIN)
        assert csv_resp.headers["content-type"].startswith("text/csv")
        assert "attachment" in csv_resp.headers["content-disposition"]
        rows = list(csv.DictReader(io.StringIO(csv_resp.text)))
        assert rows[-1]["amount"] == "5.000002"
        assert http.get("/admin/statements/alice/nov", headers=ADMIN).status_code == 400
        assert http.post("/admin/statements/alice/2026-11", headers=ADMIN).status_code == 405


def test_a_retried_topup_or_adjustment_with_its_idempotency_key_counts_once(bill_gw: GW) -> None:
    """A client that timed out and retries must not credit a customer twice."""
    with bill_gw.http() as http:
        first = http.post("/admin/credits/carol/topup", headers=ADMIN,
                          json={"amount": "5", "idempotency_key": "inv-41"})  # fmt: skip
        assert first.status_code == 201 and first.json()["balance"] == "5"
        again = http.post("/admin/credits/carol/topup", headers=ADMIN,
                          json={"amount": "5", "idempotency_key": "inv-41"})  # fmt: skip
        assert again.status_code == 200 and again.json()["replayed"] is True
        assert again.json()["id"] == first.json()["id"] and again.json()["balance"] == "5"
        other = http.post("/admin/credits/carol/topup", headers=ADMIN,
                          json={"amount": "7", "idempotency_key": "inv-41"})  # fmt: skip
        assert other.status_code == 409
        assert other.json()["error"]["code"] == "idempotency_key_reused"
        elsewhere = http.post("/admin/credits/dan/topup", headers=ADMIN,
                              json={"amount": "5", "idempotency_key": "inv-41"})  # fmt: skip
        assert elsewhere.status_code == 409
        for status in (201, 200):
            r = http.post("/admin/credits/carol/adjust", headers=ADMIN,
                          json={"amount": "-2", "idempotency_key": "fix-1"})  # fmt: skip
            assert r.status_code == status and r.json()["balance"] == "3"
        plain = http.post("/admin/credits/carol/topup", headers=ADMIN, json={"amount": "1"})
        assert plain.status_code == 201 and plain.json()["balance"] == "4"  # no key: each counts
    hist = BillingStore(bill_gw.store).history("carol")
    assert sorted(e.kind for e in hist) == ["adjustment", "topup", "topup"]
    assert BillingStore(bill_gw.store).customer("dan") is None or not [
        e for e in BillingStore(bill_gw.store).history("dan")
    ]


def test_admin_refunds_only_what_the_request_was_debited(bill_gw: GW) -> None:
    """A refund with no debit of the request on the customer's account, or above it,
    is a 4xx in the admin API's format; the balance does not move."""
    b = BillingStore(bill_gw.store)
    b.topup("alice", D("5"))
    b.topup("bob", D("5"))
    b.debit("alice", "req_alice", D("0.02"))

    def refund(customer: str, amount: str, rid: str | None) -> tuple[int, dict[str, str]]:
        body = {"amount": amount, "kind": "refund", "note": "typo?"}
        if rid is not None:
            body["request_id"] = rid
        with bill_gw.http() as http:
            r = http.post(f"/admin/credits/{customer}/adjust", headers=ADMIN, json=body)
        return r.status_code, r.json()["error"] if r.status_code >= 400 else r.json()

    status, err = refund("bob", "0.02", "req_alice")  # someone else's request
    assert (status, err["code"], err["param"]) == (404, "debit_not_found", "request_id")
    assert "debited to 'alice'" in err["message"]
    status, err = refund("alice", "0.02", "req_never")
    assert (status, err["code"]) == (404, "debit_not_found")
    status, err = refund("alice", "500", "req_alice")
    assert (status, err["code"], err["param"]) == (409, "refund_exceeds_debit", "amount")
    status, err = refund("alice", "1", None)
    assert (status, err["param"]) == (400, "request_id")
    assert b.history("alice", kind="refund") == b.history("bob", kind="refund") == []
    status, ok = refund("alice", "0.01", "req_alice")  # a part of it
    assert status == 201 and ok["balance"] == "4.99"
    status, err = refund("alice", "0.005", "req_alice")  # once per request
    assert (status, err["code"]) == (409, "refunded")
    with bill_gw.http() as http:
        assert http.get("/admin/credits/bob", headers=ADMIN).json()["balance"] == "5"
