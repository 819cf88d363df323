"""The credit ledger on both engines: append-only, exact, one debit per request, never negative."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal

import pytest

from tokenomy.billing import BillingStore, CreditEntry, Plan
from tokenomy.errors import InvalidRequest, NotFound
from tokenomy.ledger import Store, open_store
from tokenomy.ledger.base import SQLStore
from tokenomy.records import UsageRecord
from tokenomy.usage import Usage

D = Decimal


def ledger_sum(billing: BillingStore, customer: str) -> Decimal:
    return sum((e.amount for e in billing.history(customer, limit=100_000)), D(0))


def test_topup_opens_an_account_and_every_change_is_an_entry(store: Store) -> None:
    b = BillingStore(store)
    assert b.customer("acme") is None
    first = b.topup("acme", D("10.000000001"), note="invoice 7")
    b.topup("acme", D("0.5"))
    acct = b.customer("acme")
    assert acct is not None and acct.unit == "usd" and acct.plan is None
    assert acct.balance == D("10.500000001") == ledger_sum(b, "acme") == acct.credited
    hist = b.history("acme")
    assert [e.kind for e in hist] == ["topup", "topup"]
    assert hist[-1] == first and first.note == "invoice 7" and first.request_id is None
    assert isinstance(first.amount, Decimal) and first.amount == D("10.000000001")


def test_a_balance_keeps_its_unit(store: Store) -> None:
    b = BillingStore(store)
    b.topup("t", D(1000), unit="tokens")
    with pytest.raises(InvalidRequest, match="in tokens, not usd") as err:
        b.topup("t", D(1))
    assert err.value.status == 409
    with pytest.raises(InvalidRequest, match="positive"):
        b.topup("t", D(0), unit="tokens")
    with pytest.raises(InvalidRequest, match="unit"):
        b.topup("t", D(1), unit="eur")


def test_a_request_is_debited_once_however_often_it_is_settled(store: Store) -> None:
    b = BillingStore(store)
    b.topup("acme", D("1"))
    first = b.debit("acme", "req_1", D("0.25"), ts=1000.0)
    again = b.debit("acme", "req_1", D("0.25"), ts=1000.0)
    other = b.debit("acme", "req_1", D("0.75"), ts=1000.0)  # a retry never charges twice
    assert first.entry is not None and not first.duplicate
    assert first.entry.amount == D("-0.25") and first.entry.kind == "debit"
    assert first.entry.ts == 1000.0 and first.entry.request_id == "req_1"
    assert again.duplicate and again.entry == first.entry
    assert other.duplicate and other.entry == first.entry
    acct = b.customer("acme")
    assert acct is not None and acct.balance == D("0.75") and acct.debited == D("0.25")
    assert b.debit_of("req_1") == first.entry


def test_a_debit_never_takes_the_balance_below_zero(store: Store) -> None:
    b = BillingStore(store)
    b.topup("acme", D("0.1"))
    d = b.debit("acme", "req_big", D("0.35"))
    assert d.entry is not None and d.entry.amount == D("-0.1") and d.shortfall == D("0.25")
    assert d.entry.note is not None and "shortfall 0.25 usd" in d.entry.note
    acct = b.customer("acme")
    assert acct is not None and acct.balance == 0
    assert b.debit("acme", "req_next", D("0.01")).entry is not None  # an entry, of zero
    assert ledger_sum(b, "acme") == 0


def test_nothing_is_debited_without_an_account_or_a_charge(store: Store) -> None:
    b = BillingStore(store)
    assert b.debit("nobody", "req_1", D("1")).entry is None
    b.assign_plan("planned", None)  # a customer row without a balance
    assert b.debit("planned", "req_2", D("1")).entry is None
    b.topup("acme", D(1))
    assert b.debit("acme", "req_3", D(0)).entry is None
    assert b.history("acme")[0].kind == "topup"
    with pytest.raises(ValueError):
        b.debit("acme", "req_4", D(-1))


def test_adjustments_and_refunds(store: Store) -> None:
    b = BillingStore(store)
    b.topup("acme", D("2"))
    b.debit("acme", "req_1", D("1.5"))
    with pytest.raises(InvalidRequest, match="negative") as err:
        b.adjust("acme", D("-0.6"), note="chargeback")
    assert err.value.status == 409
    down = b.adjust("acme", D("-0.5"), note="chargeback")
    assert down is not None and down.kind == "adjustment" and down.amount == D("-0.5")
    refund = b.adjust("acme", D("1.5"), kind="refund", request_id="req_1", note="bad answer")
    assert refund.request_id == "req_1" and not refund.replayed
    retried = b.adjust("acme", D("1.5"), kind="refund", request_id="req_1")
    assert retried == replace(refund, replayed=True)  # a retry: nothing changes
    with pytest.raises(InvalidRequest):
        b.adjust("acme", D("-1"), kind="refund", request_id="req_2")
    with pytest.raises(InvalidRequest):
        b.adjust("acme", D(0))
    with pytest.raises(NotFound):
        b.adjust("ghost", D(1))
    acct = b.customer("acme")
    assert acct is not None
    assert acct.balance == D("1.5") == ledger_sum(b, "acme")
    assert acct.credited == D("3") and acct.debited == D("1.5")


def test_an_adjustments_request_id_cannot_pass_for_an_idempotency_key(store: Store) -> None:
    """Idempotency keys live in the request_id column under a prefix: an adjustment
    naming such an id would later answer (as a replay) a call that sends that key."""
    b = BillingStore(store)
    b.topup("acme", D("2"))
    with pytest.raises(InvalidRequest, match="cannot start with") as err:
        b.adjust("acme", D("1"), request_id="idem:retry-7", note="goodwill")
    assert err.value.status == 400 and err.value.param == "request_id"
    given = b.adjust("acme", D("1"), idempotency_key="retry-7", note="goodwill")
    assert not given.replayed and given.amount == D("1")
    assert ledger_sum(b, "acme") == D("3")


def refunds(b: BillingStore, customer: str) -> list[CreditEntry]:
    return [e for e in b.history(customer, limit=100_000) if e.kind == "refund"]


def test_a_refund_needs_a_debit_of_that_request_on_that_customer(store: Store) -> None:
    """An operator's typo must not refund someone else's request, or a request never debited."""
    b = BillingStore(store)
    b.topup("acme", D("5"))
    b.topup("zed", D("5"))
    b.debit("zed", "req_z", D("0.5"))
    for rid, owner in [("req_nope", ""), ("req_z", "zed")]:
        with pytest.raises(NotFound, match=f"no debit of request '{rid}'") as err:
            b.adjust("acme", D("0.01"), kind="refund", request_id=rid, note="typo")
        assert (err.value.status, err.value.code, err.value.param) == (
            404,
            "debit_not_found",
            "request_id",
        )
        assert ("debited to 'zed'" in err.value.message) == bool(owner)
    with pytest.raises(InvalidRequest, match="names the request") as bad:
        b.adjust("acme", D("1"), kind="refund")  # a refund of nothing in particular
    assert (bad.value.status, bad.value.param) == (400, "request_id")
    acct = b.customer("acme")
    assert acct is not None and acct.balance == D(5) and refunds(b, "acme") == []


def test_a_refund_never_exceeds_the_debit(store: Store) -> None:
    b = BillingStore(store)
    b.topup("acme", D("5"))
    b.debit("acme", "req_a", D("0.02"))
    for too_much in ("500", "0.020000001"):
        with pytest.raises(InvalidRequest, match=r"was debited 0\.02 usd") as err:
            b.adjust("acme", D(too_much), kind="refund", request_id="req_a")
        assert (err.value.status, err.value.code) == (409, "refund_exceeds_debit")
    part = b.adjust("acme", D("0.015"), kind="refund", request_id="req_a", note="partly")
    assert part.amount == D("0.015")
    # a request has one refund: the rest of its debit cannot be refunded after it
    with pytest.raises(InvalidRequest, match="already refunded") as again:
        b.adjust("acme", D("0.005"), kind="refund", request_id="req_a")
    assert (again.value.status, again.value.code) == (409, "refunded")
    assert refunds(b, "acme") == [part]
    acct = b.customer("acme")
    assert acct is not None and acct.balance == D("4.995") == ledger_sum(b, "acme")
    # what a debit took is what may come back: all of it, in the balance's unit
    b.topup("tok", D(1000), unit="tokens")
    b.debit("tok", "req_t", D(300))
    with pytest.raises(InvalidRequest, match="is more than that"):
        b.adjust("tok", D(301), kind="refund", request_id="req_t")
    assert b.adjust("tok", D(300), kind="refund", request_id="req_t").amount == D(300)
    # a debit that found the balance empty took nothing: there is nothing to give back
    b.topup("dry", D("0.01"))
    b.debit("dry", "req_d1", D("0.01"))
    b.debit("dry", "req_d2", D("0.01"))  # shortfall: an entry of 0
    with pytest.raises(InvalidRequest, match="was debited 0 usd"):
        b.adjust("dry", D("0.01"), kind="refund", request_id="req_d2")


def test_concurrent_refunds_of_one_request_never_exceed_its_debit(
    db_url: str, store: Store
) -> None:
    """Four workers on two connections refund the same requests at once, with amounts
    that each fit the debit (and one that does not): one refund per request, within it."""
    b = BillingStore(store)
    b.topup("acme", D("10"))
    rids = [f"req_{i}" for i in range(15)]
    for rid in rids:
        b.debit("acme", rid, D("0.5"))
    stores = [open_store(db_url) for _ in range(2)]
    amounts = [D("0.3"), D("0.7"), D("0.5"), D("0.2")]  # 0.7 is more than any debit
    refused: list[str] = []
    errors: list[BaseException] = []

    def refund(s: BillingStore, worker: int) -> Callable[[], None]:
        def run() -> None:
            order = rids if worker % 2 else rids[::-1]  # meet the others head-on
            for rid in order:
                try:
                    s.adjust("acme", amounts[worker], kind="refund", request_id=rid)
                except InvalidRequest as exc:
                    refused.append(exc.code or "")
                except BaseException as exc:
                    errors.append(exc)

        return run

    threads = [
        threading.Thread(target=refund(BillingStore(s), w)) for w, s in enumerate(stores * 2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in stores:
        s.close()
    assert not errors
    assert set(refused) <= {"refunded", "refund_exceeds_debit"}
    got = refunds(b, "acme")
    assert sorted(e.request_id or "" for e in got) == sorted(rids)  # one each
    assert all(e.amount in (D("0.3"), D("0.5"), D("0.2")) for e in got)
    assert len(refused) == 4 * len(rids) - len(got)
    acct = b.customer("acme")
    assert acct is not None
    assert acct.balance == ledger_sum(b, "acme") == D("2.5") + sum(e.amount for e in got)


@pytest.mark.parametrize(
    "statement", ["UPDATE credit_ledger SET amount = 0", "DELETE FROM credit_ledger"]
)
def test_the_database_refuses_to_change_or_delete_an_entry(store: Store, statement: str) -> None:
    b = BillingStore(store)
    b.topup("acme", D(5))
    assert isinstance(store, SQLStore)
    with pytest.raises(Exception, match="append-only"):
        b.db.write(lambda cur: cur.execute(statement))
    assert ledger_sum(b, "acme") == D(5)


def test_the_database_refuses_a_negative_balance(store: Store) -> None:
    b = BillingStore(store)
    b.topup("acme", D(5))
    sql = b.db.sql("UPDATE billing_customers SET balance = ? WHERE customer = ?")
    with pytest.raises(Exception, match=r"(?i)check"):
        b.db.write(lambda cur: cur.execute(sql, (b.db.money(D("-0.000000001")), "acme")))


def test_plans_are_stored_exactly_and_assigned(store: Store) -> None:
    b = BillingStore(store)
    b.create_plan(Plan("pro", markup_pct=D("12.5")))
    b.create_plan(Plan("flat", input_per_mtok=D("0.15"), output_per_mtok=D("0.6"),
                       cached_input_per_mtok=D("0.075")))  # fmt: skip
    with pytest.raises(InvalidRequest, match="exists") as err:
        b.create_plan(Plan("pro", markup_pct=D(1)))
    assert err.value.status == 409
    assert [p.name for p in b.plans()] == ["flat", "pro"]
    flat = b.plan("flat")
    assert flat is not None and flat.cached_input_per_mtok == D("0.075") and flat.markup_pct is None
    assert b.assign_plan("acme", "flat").plan == "flat"
    b.topup("acme", D(1))
    assert b.assign_plan("acme", "pro").balance == D(1)
    acct = b.customer("acme")
    assert acct is not None and acct.plan == "pro"
    with pytest.raises(NotFound):
        b.assign_plan("acme", "gold")
    assert [c.customer for c in b.customers()] == ["acme"]


def test_concurrent_debits_from_two_connections_never_overdraw(db_url: str, store: Store) -> None:
    """Two stores on one database stand in for two replicas settling at once."""
    BillingStore(store).topup("acme", D("1"))
    stores = [open_store(db_url) for _ in range(2)]
    errors: list[BaseException] = []

    def settle(b: BillingStore, worker: int) -> Callable[[], None]:
        def run() -> None:
            try:
                for i in range(40):
                    b.debit("acme", f"req_{worker}_{i}", D("0.013"))
            except BaseException as exc:
                errors.append(exc)

        return run

    threads = [
        threading.Thread(target=settle(BillingStore(s), w)) for w, s in enumerate(stores * 2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in stores:
        s.close()
    assert not errors
    b = BillingStore(store)
    acct = b.customer("acme")
    assert acct is not None and acct.balance >= 0
    entries = b.history("acme", limit=1000)
    debits = [e for e in entries if e.kind == "debit"]
    assert len({e.request_id for e in debits}) == len(debits) == 160
    assert acct.balance == ledger_sum(b, "acme") == D(1) + sum(e.amount for e in debits)
    assert acct.balance == 0  # 160 * 0.013 > 1: the last debits take what is left
    shorted = sum((D(e.note.split()[1]) for e in debits if e.note and "shortfall" in e.note), D(0))
    assert -sum(e.amount for e in debits) + shorted == D("0.013") * 160


def test_reconcile_appends_the_debits_a_crash_left_out(store: Store) -> None:
    b = BillingStore(store)
    b.topup("acme", D("1"))
    terms = {"customer": "acme", "unit": "usd", "plan": "pro", "markup_pct": "50"}
    records = [
        UsageRecord(request_id=f"req_{i}", ts=100.0 + i, user="acme", requested_model="m",
                    usage=Usage(10, 10), cost_usd=D("0.01"), decisions={"billing": terms})
        for i in range(3)
    ]  # fmt: skip
    records.append(UsageRecord(request_id="req_free", ts=200.0, user="acme", usage=Usage(),
                               decisions={"billing": terms}))  # fmt: skip
    records.append(UsageRecord(request_id="req_other", ts=200.0, user="zed", cost_usd=D(1)))
    store.insert_records(records)
    b.debit("acme", "req_0", D("0.015"), ts=100.0)  # its owner settled this one
    assert b.reconcile(0.0) == 2
    assert b.reconcile(0.0) == 0
    debits = [e for e in b.history("acme") if e.kind == "debit"]
    assert sorted(e.request_id or "" for e in debits) == ["req_0", "req_1", "req_2"]
    assert all(e.amount == D("-0.015") for e in debits)
    assert {e.ts for e in debits} == {100.0, 101.0, 102.0}
    acct = b.customer("acme")
    assert acct is not None and acct.balance == D("0.955")


def test_m003_migrates_from_the_previous_schema(new_db_url: Callable[[], str]) -> None:
    with open_store(new_db_url()) as old:
        assert old.migrate(upto="m002_caps")[-1] == "m002_caps"
        applied = old.migrate()
        assert applied[0] == "m003_credits"
        assert old.migrate() == []
        old.insert_records([UsageRecord(request_id="req_old", user="acme", cost_usd=D("0.1"))])
        b = BillingStore(old)
        b.topup("acme", D(1))
        assert b.reconcile(0.0) == 0  # a record without terms has nothing to debit
        acct = b.customer("acme")
        assert acct is not None and acct.balance == 1


def test_least_left_ranks_by_the_share_left_exactly_and_totals_every_balance(
    store: Store,
) -> None:
    b = BillingStore(store)
    b.topup("zero", D(5))
    b.adjust("zero", D(-5), note="given back")  # nothing credited, nothing left: first
    # Shares that differ past a float's 17 digits: "b-less" has less left than "a-more".
    b.topup("a-more", D("1.00000000000000000002"))
    b.debit("a-more", "r1", D("0.9"))
    b.topup("b-less", D("1.00000000000000000001"))
    b.debit("b-less", "r2", D("0.9"))
    b.topup("half", D(4), unit="tokens")
    b.debit("half", "r3", D(2))
    b.assign_plan("planonly", None)  # no balance: never ranked, never counted
    ranked = [c.customer for c in b.least_left(10)]
    assert ranked == ["zero", "b-less", "a-more", "half"]
    assert [c.customer for c in b.least_left(2)] == ["zero", "b-less"] and b.least_left(0) == []
    assert b.balance_totals() == [
        ("tokens", 1, D(2), D(4)),
        ("usd", 3, D("0.20000000000000000003"), D("2.00000000000000000003")),
    ]
