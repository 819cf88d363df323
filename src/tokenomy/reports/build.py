"""`build_report`: every section of ``tokenomy report`` from one scan."""

from __future__ import annotations

from collections.abc import Sequence

from ..ledger.base import Store
from .model import NO_FILTER, Filters, Report, check_dimension
from .query import scan, top_requests


def build_report(
    store: Store,
    *,
    group_by: Sequence[str] = ("team", "model"),
    since: float | None = None,
    until: float | None = None,
    filters: Filters = NO_FILTER,
    top: int = 10,
    use_rollups: bool = True,
) -> Report:
    """Spend and tokens grouped by ``group_by`` over ``[since, until)``, with the
    most expensive requests, cost per 1,000 requests by route, unpriced models
    and savings by lever."""
    dims = tuple(check_dimension(d) for d in group_by)
    sc = scan(store, since=since, until=until, filters=filters, use_rollups=use_rollups,
              dims={*dims, "route", "model", "provider"})  # fmt: skip
    total = sc.total()
    # One more than asked: it tells whether the list is cut.
    found = top_requests(store, since=since, until=until, filters=filters,
                         limit=top + 1 if top > 0 else 0, matching=total.requests)  # fmt: skip
    return Report(
        since=since,
        until=until,
        group_by=dims,
        filters=filters,
        total=total,
        groups=sc.group(dims, sort="key" if "day" in dims else "cost"),
        routes=sc.group(("route",)),
        unpriced=[g for g in sc.group(("model", "provider")) if g.totals.unpriced_requests],
        top=found[:top],
        levers=sorted(total.savings.items(), key=lambda kv: (-kv[1], kv[0])),
        top_cut=len(found) > top,
    )
