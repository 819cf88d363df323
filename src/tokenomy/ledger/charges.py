"""What a request is charged for: its own row, plus its side rows marked ``charged``.

A request's row counts against its budgets, its rate limits and its customer's
prepaid balance. The upstream calls made on its behalf are rows of their own,
``<request id><suffix>`` with ``decisions.route.parent`` naming the request
(`tokenomy.routing.side`), and whoever writes one marks it (``charged``):

- a cascade's escalated draft is charged: the client asked for the answer it
  led to, and the request's worst case covered it;
- a judge's call and a failed attempt are not: the gateway's own cost.

That one flag is the rule every reader of the ledger applies, so they agree:
live admission settles a request with `with_sides` over the side rows it wrote;
counters rebuilt from the ledger (`caps.store.CapsStore.ledger_totals`) sum the
charged rows; the caps' sweeper and billing's ``reconcile`` settle or debit a
request found in the ledger with `with_sides` over `charged_sides`; statements
bill a charged side row with its request.

A charged side row keeps its request's ``ts``: it falls in the same budget
period as the request that settled it, and `charged_sides` finds it by that
time (indexed) rather than by scanning for its parent.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace

from ..records import UsageRecord
from .base import REQUEST_COLUMNS, row_to_record
from .migrations import Cursor, Dialect

_CHUNK = 250  # parents per query: two parameters each


def route_field(dialect: Dialect, name: str) -> str:
    """SQL for ``decisions.route.<name>`` as text (null where absent)."""
    if dialect.name == "postgres":
        return f"(decisions->'route'->>'{name}')"
    return f"json_extract(decisions, '$.route.{name}')"


def parent_of(rec: UsageRecord) -> str | None:
    """The request a side row was made for; None for a request's own row."""
    route = rec.decisions.get("route")
    parent = route.get("parent") if isinstance(route, dict) else None
    return parent if isinstance(parent, str) else None


def with_sides(rec: UsageRecord, sides: Iterable[UsageRecord]) -> UsageRecord:
    """``rec`` as its request is charged: the usage and cost of those of ``sides``
    marked charged added (the cost unknown when one of theirs is)."""
    usage, cost, added = rec.usage, rec.cost_usd, False
    for side in sides:
        if side.charged:
            usage = usage + side.usage
            cost = None if cost is None or side.cost_usd is None else cost + side.cost_usd
            added = True
    if not added:
        return rec
    return replace(rec, usage=usage, cost_usd=cost, price_unknown=cost is None)


def charged_sides(
    cur: Cursor, dialect: Dialect, parents: Sequence[UsageRecord]
) -> dict[str, list[UsageRecord]]:
    """The charged side rows of the ``parents`` (requests' own rows), by request id."""
    p = dialect.param
    parent = route_field(dialect, "parent")
    wanted = {rec.request_id for rec in parents}
    out: dict[str, list[UsageRecord]] = {}
    for i in range(0, len(parents), _CHUNK):
        chunk = parents[i : i + _CHUNK]
        times = sorted({rec.ts for rec in chunk})
        ids = [rec.request_id for rec in chunk]
        sql = (
            f"SELECT {', '.join(REQUEST_COLUMNS)} FROM requests "
            f"WHERE ts IN ({', '.join([p] * len(times))}) AND charged "
            f"AND {parent} IN ({', '.join([p] * len(ids))}) ORDER BY id"
        )
        for row in cur.execute(sql, [*times, *ids]).fetchall():
            side = row_to_record(row)
            of = parent_of(side)
            if of is not None and of in wanted:
                out.setdefault(of, []).append(side)
    return out


def as_charged(cur: Cursor, dialect: Dialect, recs: Sequence[UsageRecord]) -> list[UsageRecord]:
    """Each of ``recs`` (requests' own rows) as its request was charged: with its
    charged side rows added (`with_sides`)."""
    sides = charged_sides(cur, dialect, recs)
    return [with_sides(rec, sides.get(rec.request_id, ())) for rec in recs]
