"""`BillingStore.reconcile` reads its window a page at a time and debits each page
before reading the next: the same debits whatever the page size, on both engines,
and never the whole window in memory."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest

from tokenomy.billing import BillingStore
from tokenomy.billing import credits as credits_module
from tokenomy.ledger import Store, open_store
from tokenomy.records import UsageRecord
from tokenomy.usage import Usage

D = Decimal
T0 = 1_000_000.0


def rec(rid: str, ts: float, customer: str, cost: str, **route: str) -> UsageRecord:
    terms = {"customer": customer, "unit": "usd", "plan": "half", "markup_pct": "50"}
    decisions: dict[str, Any] = {"route": route} if route else {"billing": terms}
    return UsageRecord(request_id=rid, ts=ts, user=customer, requested_model="m",
                       usage=Usage(10, 2), cost_usd=D(cost), decisions=decisions)  # fmt: skip


def fill(store: Store) -> BillingStore:
    """Seven requests of two customers (three at one instant), a cascade's draft
    charged with its request, a judge's call that is not, one already debited."""
    b = BillingStore(store)
    for customer in ("acme", "zed"):
        b.topup(customer, D("10"), ts=T0 - 5)
    rows = [rec(f"r{i}", T0 + i // 3, ("acme", "zed")[i % 2], f"0.0{i + 1}") for i in range(7)]
    rows.append(rec("r4.draft", T0 + 1, "acme", "0.5", parent="r4", reason="cascade"))
    judge = rec("r4.judge", T0 + 1, "acme", "7", parent="r4", reason="judge")
    rows.append(replace(judge, charged=False))
    store.insert_records(rows)
    b.debit("zed", "r1", D("0.03"), ts=T0)  # its gateway settled this one
    return b


def debits(b: BillingStore) -> list[tuple[str, str | None, Decimal, float, str | None]]:
    out = []
    for customer in ("acme", "zed"):
        out += [(customer, e.request_id, e.amount, e.ts, e.note)
                for e in b.history(customer, limit=100) if e.kind == "debit"]  # fmt: skip
    return sorted(out, key=lambda d: str(d[1]))


def test_the_same_debits_for_every_page_size(
    new_db_url: Callable[[], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    got = []
    for page in (credits_module.RECONCILE_PAGE, 1, 2, 3):
        monkeypatch.setattr(credits_module, "RECONCILE_PAGE", page)
        with open_store(new_db_url()) as store:
            store.migrate()
            b = fill(store)
            got.append((b.reconcile(T0 - 1), debits(b), b.reconcile(T0 - 1)))
    assert all(g == got[0] for g in got), got
    done, found, again = got[0]
    assert (done, again) == (6, 0)
    # r4 with its draft, under its terms (half again on top); not the judge's call
    assert ("acme", "r4", D("-0.825"), T0 + 1, "reconciled") in found
    assert len(found) == 7


def test_reconcile_holds_a_page_not_the_window(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    b = fill(store)
    pages: list[int] = []
    real = credits_module.as_charged

    def spy(cur: Any, dialect: Any, recs: Sequence[UsageRecord]) -> list[UsageRecord]:
        pages.append(len(recs))
        return real(cur, dialect, recs)

    monkeypatch.setattr(credits_module, "as_charged", spy)
    monkeypatch.setattr(credits_module, "RECONCILE_PAGE", 2)
    assert b.reconcile(T0 - 1) == 6
    assert sum(pages) == 6 and max(pages) <= 2, pages  # r1 has its debit: not read
