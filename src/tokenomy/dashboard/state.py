"""Budget and balance state for the dashboard, from whatever this ledger holds.

Budgets (``tokenomy.caps``) and prepaid balances (``tokenomy.billing``) are
separate features with their own tables. The dashboard reads them when they
are there and says so plainly when they are not, so it works on any ledger:

- balances: the customers with the least left (`BillingStore.least_left`) and
  the totals of all (`BillingStore.balance_totals`), when the billing package
  and its ``billing_customers`` table exist;
- budgets: the caps package's ``budget_states(store)`` when it provides one
  (rows of plain values); else each budget defined in ``cap_budgets`` with the
  spend of its current period summed from the ledger's charged rows; else, for a ledger whose
  budget tables this version does not know, their rows as they are.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ..ledger.base import SQLStore
from ..reports import Filters, scan

log = logging.getLogger("tokenomy.dashboard")

BALANCES_SHOWN = 25  # customers listed; the panel counts and totals the rest
EACH_SHOWN = 5  # the largest of a budget on each user (key, team...) listed
DUMP_ROWS = 50  # rows of a budget table this version does not know


@dataclass(slots=True)
class StatePanel:
    columns: list[str] = field(default_factory=list)
    rows: list[list[Any]] = field(default_factory=list)
    used: list[tuple[Decimal, Decimal] | None] = field(default_factory=list)  # (spent, limit)
    totals: list[list[Any]] = field(default_factory=list)  # rows summing every row, listed or not
    notes: list[str] = field(default_factory=list)  # what is not listed, and where it is
    unavailable: str | None = None  # why nothing is shown


def tables(store: SQLStore) -> set[str]:
    if store.dialect.name == "postgres":
        sql = (
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        )
    else:
        sql = "SELECT name FROM sqlite_master WHERE type = 'table'"
    return {str(r[0]) for r in store._read(lambda cur: cur.execute(sql).fetchall())}


def _optional(module: str) -> Any | None:
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def balances(store: SQLStore, present: set[str], shown: int = BALANCES_SHOWN) -> StatePanel:
    """The ``shown`` customers with the least of their balance left (as a share of
    what they were credited), lowest first: those about to be refused; then the
    totals of every balance per unit, and how many customers are not listed."""
    billing = _optional("tokenomy.billing")
    if billing is None or not hasattr(billing, "BillingStore"):
        return StatePanel(unavailable="Prepaid balances are not part of this build.")
    if "billing_customers" not in present:
        return StatePanel(unavailable="No balances yet: the billing tables are not in this ledger.")
    try:
        bs = billing.BillingStore(store)
        customers, totals = bs.least_left(shown), bs.balance_totals()
    except Exception as exc:  # another feature's table: show the page, not a traceback
        log.warning("could not read balances: %s", exc)
        return StatePanel(unavailable=f"Balances could not be read ({type(exc).__name__}).")
    if not customers:
        return StatePanel(unavailable="No customer has a prepaid balance.")
    panel = StatePanel(columns=["customer", "plan", "unit", "balance", "credited", "spent"])
    for c in customers:
        panel.rows.append([c.customer, c.plan, c.unit, *_amounts(c.unit, c.balance, c.credited)])
        panel.used.append((c.debited, c.credited) if c.credited > 0 else None)
    everyone = sum(n for _, n, _, _ in totals)
    for unit, n, balance, credited in totals:
        who = f"all {n:,} in {unit}" if len(totals) > 1 else f"all {n:,}"
        panel.totals.append([who, "", unit, *_amounts(unit, balance, credited)])
    if everyone > len(customers):
        panel.notes.append(
            f"Showing the {len(customers):,} of {everyone:,} customers with the least left "
            f"(as a share of what they were credited); {everyone - len(customers):,} more are "
            "not listed: tokenomy credits balance (CLI) or GET /admin/customers lists every one."
        )
    return panel


def _amounts(unit: str | None, balance: Decimal, credited: Decimal) -> list[Any]:
    """Balance, credited and spent: dollars as exact Decimals (money cells), tokens
    as counts, never shown as dollars."""
    values = [balance, credited, credited - balance]
    if unit == "tokens":
        return [f"{v:,f} tokens" for v in values]
    return values


def budgets(store: SQLStore, present: set[str], *, now: float, tz: str = "UTC") -> StatePanel:
    caps = _optional("tokenomy.caps")
    states: Callable[[SQLStore], Sequence[Mapping[str, Any]]] | None = getattr(
        caps, "budget_states", None
    )
    try:
        if states is not None:
            return _generic(list(states(store)), empty="No budget is set.")
        if "cap_budgets" in present:
            return _from_definitions(store, now, tz)
    except Exception as exc:  # another feature's code: show the page, not a traceback
        log.warning("could not read budgets: %s", exc)
        return StatePanel(unavailable=f"Budgets could not be read ({type(exc).__name__}).")
    names = sorted(t for t in present if "budget" in t)
    if not names:
        return StatePanel(unavailable="No budgets in this ledger (caps are not configured).")
    rows: list[dict[str, Any]] = []
    notes = []
    for name in names:
        found, more = _dump(store, name)
        rows += [{"table": name, **row} for row in found]
        if more:
            notes.append(f"{name}: the first {len(found):,} rows only.")
    panel = _generic(rows, empty="No budget is set.")
    panel.notes += notes
    return panel


def _from_definitions(store: SQLStore, now: float, tz: str) -> StatePanel:
    """Each budget's spend in its current period, summed from the ledger's rollups
    over the rows charged to requests, as the caps count it (not the gateway's own
    calls: `tokenomy.ledger.charges`); a scope on ``each`` value shows its
    `EACH_SHOWN` largest and says how many it leaves out."""
    from ..caps.periods import locate, zone
    from ..caps.store import CapsStore

    _, defined, _ = CapsStore(store).load()
    if not defined:
        return StatePanel(unavailable="No budget is set.")
    panel = StatePanel(columns=["budget", "scope", "period", "spent", "limit", "remaining"])
    for b in defined:
        span = locate(b.period, now, zone(tz))
        fixed = {d: v for d, v in b.scope.dims if v != "*"}
        each = [d for d, v in b.scope.dims if v == "*"]
        filters = Filters(
            orgs=_one(fixed.get("org")), teams=_one(fixed.get("team")),
            keys=_one(fixed.get("key")), users=_one(fixed.get("user")),
            models=_one(fixed.get("model")),
            tags=tuple((d[4:], v) for d, v in fixed.items() if d.startswith("tag:")),
            charged=True,
        )  # fmt: skip
        sc = scan(store, since=span.start or None, filters=filters, dims=each)
        ranked = sc.group(tuple(each)) if each else []
        groups = ranked[:EACH_SHOWN] if each else [None]
        if len(ranked) > EACH_SHOWN:
            panel.notes.append(
                f"{b.name}: the {EACH_SHOWN} largest of {len(ranked):,} ({', '.join(each)}) "
                f"only; tokenomy report --group-by {','.join(each)} lists every one."
            )
        for g in groups:
            totals = sc.total() if g is None else g.totals
            who = (
                ""
                if g is None
                else " (" + ", ".join(f"{d}={v}" for d, v in zip(each, g.key, strict=True)) + ")"
            )
            if b.limit_usd is not None:
                spent, limit = totals.cost_usd, b.limit_usd
                row = [b.name, b.scope.describe() + who, b.period.describe(), spent, limit,
                       max(limit - spent, Decimal(0))]  # fmt: skip
            else:
                used = totals.input_tokens + totals.output_tokens
                limit_t = b.limit_tokens or 0
                spent, limit = Decimal(used), Decimal(limit_t)
                row = [b.name, b.scope.describe() + who, b.period.describe(), f"{used:,} tokens",
                       f"{limit_t:,} tokens", f"{max(limit_t - used, 0):,} tokens"]  # fmt: skip
            panel.rows.append(row)
            panel.used.append((spent, limit) if limit > 0 else None)
    return panel


def _one(value: str | None) -> tuple[str, ...]:
    return (value,) if value else ()


def _dump(store: SQLStore, table: str, limit: int = DUMP_ROWS) -> tuple[list[dict[str, Any]], bool]:
    """The first ``limit`` rows of ``table``, and whether it holds more."""

    def run(cur: Any) -> tuple[list[dict[str, Any]], bool]:
        cur.execute(f"SELECT * FROM {table} LIMIT {limit + 1}")
        columns = [d[0] for d in cur.description]
        rows = cur.fetchall()
        return [dict(zip(columns, r, strict=True)) for r in rows[:limit]], len(rows) > limit

    try:
        return store._read(run)
    except Exception as exc:  # another feature's table: show the page, not a traceback
        log.warning("could not read %s: %s", table, exc)
        return [], False


def _generic(rows: Sequence[Mapping[str, Any]], *, empty: str) -> StatePanel:
    if not rows:
        return StatePanel(unavailable=empty)
    columns = list(dict.fromkeys(k for r in rows for k in r))
    panel = StatePanel(columns=columns)
    for r in rows:
        panel.rows.append([r.get(c) for c in columns])
        spent, limit = r.get("spent_usd"), r.get("limit_usd")
        ok = isinstance(spent, Decimal) and isinstance(limit, Decimal) and limit > 0
        panel.used.append((spent, limit) if ok else None)  # type: ignore[arg-type]
    return panel
