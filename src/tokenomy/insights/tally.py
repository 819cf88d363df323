"""One pass over ledger records: spend per calendar day by scope, and unpriced models.

`tally` reads its records once, so they can stream from the ledger
(`Store.iter_records`): what it keeps grows with days times scopes, never with
the number of requests. Forecasts (`daily_spend`) and the alert rules
(`tokenomy.insights.alerts.check`) read what they need from one `Tally`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from ..records import UsageRecord

__all__ = ["Tally", "dimension", "scope_of", "tally"]

_NAMED = ("org", "team", "user", "key", "model", "provider", "route")

Series = list[tuple[date, Decimal]]


def dimension(by: str | None) -> str:
    """``by`` checked (`ValueError` if unknown), with ``None`` and ``""`` read as ``total``."""
    if by in (None, "", "total"):
        return "total"
    assert by is not None
    if by in _NAMED or (by.startswith("tag:") and len(by) > 4):
        return by
    raise ValueError(f"cannot group by {by!r}")


def scope_of(rec: UsageRecord, by: str | None) -> str:
    """The value of ``by`` for a record: total, org, team, user, key, model,
    provider, route (tag ``route``, else the endpoint) or ``tag:NAME``."""
    by = dimension(by)
    value: str | None
    if by == "total":
        return "total"
    if by == "org":
        value = rec.org
    elif by == "team":
        value = rec.team
    elif by == "user":
        value = rec.user
    elif by == "key":
        value = rec.key_id
    elif by == "model":
        value = rec.served_model or rec.requested_model
    elif by == "provider":
        value = rec.provider
    elif by == "route":
        value = rec.tags.get("route") or rec.endpoint
    else:
        value = rec.tags.get(by[4:])
    return value or "(none)"


@dataclass(slots=True)
class Tally:
    """What `tally` found: per dimension, scope and calendar day, the spend of the
    requests with a known price; per (model, provider), the first day it was served
    without a price and how many such requests there were."""

    spend: dict[str, dict[str, dict[date, Decimal]]]
    unpriced: dict[tuple[str, str], tuple[date, int]] = field(default_factory=dict)

    def series(self, by: str | None) -> dict[str, Series]:
        """Each scope's daily spend, oldest day first, scopes in order."""
        per = self.spend[dimension(by)]
        return {scope: sorted(days.items()) for scope, days in sorted(per.items())}


def tally(
    records: Iterable[UsageRecord],
    *,
    tz: str = "UTC",
    by: Iterable[str | None] = ("total",),
    until: date | None = None,
) -> Tally:
    """Read ``records`` once, by each dimension of ``by``, in calendar days of
    ``tz``; records after the day ``until`` are left out. Raises `ValueError`
    for a dimension it does not know, before reading anything."""
    zone = ZoneInfo(tz)
    dims = list(dict.fromkeys(dimension(b) for b in by))
    out = Tally({d: {} for d in dims})
    for rec in records:
        day = datetime.fromtimestamp(rec.ts, zone).date()
        if until is not None and day > until:
            continue
        if rec.price_unknown:
            ident = (rec.served_model or rec.requested_model, rec.provider or "")
            first, count = out.unpriced.get(ident, (day, 0))
            out.unpriced[ident] = (min(first, day), count + 1)
        if rec.cost_usd is None:
            continue
        for d in dims:
            days = out.spend[d].setdefault(scope_of(rec, d), {})
            days[day] = days.get(day, Decimal(0)) + rec.cost_usd
    return out
