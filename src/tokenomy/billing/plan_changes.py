"""When each customer's plan changed, so a statement shows the plans of its period.

Table ``billing_plan_changes`` (migration ``m014_plan_changes``): one row per
change, appended by `BillingStore.assign_plan` in the transaction that sets
``billing_customers.plan``; ``plan`` NULL is "no plan" (the provider cost). A
customer's plan at time ``t`` is that of their last change at or before ``t``
(by ``ts``, then ``id``); before their first change they had none.

Changes made before the migration were not recorded: a customer who had a plan
then gets one change, dated when they were created, which is what statements
showed for every period until then.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..ledger.migrations import Cursor
from ._db import DB

__all__ = ["PlanSpan", "plans_between", "record_change"]


@dataclass(frozen=True, slots=True)
class PlanSpan:
    """``plan`` (None: no plan) was in force from ``start`` until ``end`` (exclusive)."""

    plan: str | None
    start: float
    end: float


def last_change(db: DB, cur: Cursor, customer: str, at: float | None = None) -> Any:
    """The customer's last change (``(ts, plan)`` row) at or before ``at`` (None: ever)."""
    where = "customer = ?" + ("" if at is None else " AND ts <= ?")
    sql = db.sql(
        f"SELECT ts, plan FROM billing_plan_changes WHERE {where} ORDER BY ts DESC, id DESC LIMIT 1"
    )
    return cur.execute(sql, (customer,) if at is None else (customer, at)).fetchone()


def record_change(db: DB, cur: Cursor, customer: str, plan: str | None, ts: float) -> None:
    cur.execute(
        db.sql("INSERT INTO billing_plan_changes (customer, ts, plan) VALUES (?, ?, ?)"),
        (customer, ts, plan),
    )


def plans_between(db: DB, cur: Cursor, customer: str, start: float, end: float) -> list[PlanSpan]:
    """The plans in force from ``start`` to ``end``, oldest first: spans that cover
    it without gaps, each with a plan other than the one before it."""
    before = last_change(db, cur, customer, start)
    sql = db.sql(
        "SELECT ts, plan FROM billing_plan_changes WHERE customer = ? AND ts > ? AND ts < ? "
        "ORDER BY ts, id"
    )
    spans = [PlanSpan(None if before is None else before[1], start, end)]
    for ts, plan in cur.execute(sql, (customer, start, end)).fetchall():
        last = spans[-1]
        if plan == last.plan:
            continue
        spans[-1] = PlanSpan(last.plan, last.start, float(ts))
        if spans[-1].start == spans[-1].end:  # two changes at one instant: the last holds
            spans.pop()
            if spans and spans[-1].plan == plan:
                spans[-1] = PlanSpan(plan, spans[-1].start, end)
                continue
        spans.append(PlanSpan(plan, float(ts), end))
    return spans
