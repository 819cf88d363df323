"""What a hold counts, recomputed from a ledger record.

The policy settles a request with these amounts, and the sweeper settles a
crashed process's reservation with the same functions applied to the record it
finds in the ledger, so both arrive at the same numbers. A request that failed
without usage has no cost and no tokens: settling it releases its money and
token holds. Another policy registers its own measure with `register`.
"""

from __future__ import annotations

from collections.abc import Callable

from ..records import UsageRecord
from .counters import usd_to_units

Measure = Callable[[UsageRecord], int]


def _usd(rec: UsageRecord) -> int:
    # An unknown price counts as nothing here: see "Unknown prices" in docs/caps.md.
    return 0 if rec.cost_usd is None else usd_to_units(rec.cost_usd)


MEASURES: dict[str, Measure] = {
    "usd": _usd,
    "tokens": lambda rec: rec.usage.input_tokens + rec.usage.output_tokens,
    "input_tokens": lambda rec: rec.usage.input_tokens,
    "output_tokens": lambda rec: rec.usage.output_tokens,
    "requests": lambda rec: 1,
    "concurrent": lambda rec: 0,  # held while the request runs, nothing after
}


def register(name: str, measure: Measure) -> None:
    MEASURES[name] = measure


def actual(measure: str, rec: UsageRecord) -> int:
    fn = MEASURES.get(measure)
    return 0 if fn is None else fn(rec)
