"""The counter backend: atomic, all-or-nothing reservations against windowed counters.

Everything that caps spend or traffic (budgets, rate limits, prepaid balances)
is expressed as *holds* on *counters*, and a backend applies them atomically.
Two backends implement `CounterBackend`: `caps.memory.MemoryCounters` (one
process) and `caps.redis.RedisCounters` (many replicas; Lua scripts, one
``EVALSHA`` per reserve and one per settle). `caps.allowance.Allowances` wraps
a shared backend so that most reservations are made in process, from capacity
reserved in it ahead.

Counters and windows
--------------------
A counter is a named map of integer *buckets*. A `Window` names a counter, the
bucket a request falls in, and how many buckets (``span``) make up the window
the limit applies to: the window's total is the sum of buckets
``bucket - span + 1 .. bucket``. A calendar period or a lifetime total is one
bucket (``span=1``; the bucket number is the period's number); a rolling
window of 24 h with one-minute buckets has ``span=1440``; a requests-per-minute
limit with one-second buckets has ``span=60``. Buckets older than ``keep`` are
dropped on the next write; ``ttl`` (seconds) lets the whole counter expire
when it has not been written for that long (None: never).

A bucket holds settled amounts *plus* amounts held by open reservations, so
"what is left" is always ``limit - window total``.

Amounts are integers in the counter's own unit, never floats: `USD_UNIT` (one
nano-dollar, 1e-9 USD) for money, tokens for tokens, 1 for requests. Money is
converted with `usd_to_units`, which rounds *up*: a counter never holds less
than the exact spend, so a cap checked on it holds for the exact spend. Redis
evaluates the scripts' comparisons in double precision, exact for integers up
to 2**53: `MAX_UNITS` (about 9 million dollars per counter) is the largest
limit a counter accepts.

Reserve, then settle
--------------------
``reserve(rid, holds, lease=...)`` checks every hold (``window total + amount
<= limit``; a hold without a limit only counts; a hold of 0 fits only while the
total is *below* the limit) and, only if all fit, adds every amount to its
bucket and records the reservation under ``rid``. It returns a `Reserved`
result whose ``totals`` are the window totals *before* the reservation and whose
``refused`` lists the indexes of the holds that did not fit (empty: admitted).

``settle(rid, actual)`` replaces each held amount with the actual one (same
order as the holds) in the bucket it was reserved in, and forgets the
reservation. It is exactly-once: it returns False, changing nothing, when the
reservation is gone (already settled, or settled by a sweeper from the
ledger). Settle *after* the request's ledger record is committed: then a
sweeper that finds the record settles to its cost, one that does not releases,
and a late owner settle after such a release still charges (the backend keeps
a tombstone of swept-and-released reservations for `TOMBSTONE_TTL` seconds).
Release is ``settle(rid, [0] * len(holds))``.

Reservations are leases: ``renew(rids, lease=...)`` extends them (the owner
does this periodically while requests run), and ``expired()`` lists those
whose lease ran out (the owner crashed). ``sweep(pending, actual)`` settles one
of those, atomically and only if it is still expired and unsettled; ``actual``
None releases it.

``seed(window, used)`` sets a bucket's value only where it does not exist yet:
rebuilding from the ledger (at start-up, or for a new budget) never overwrites
live state.

Using it from another policy (prepaid balances, for example)
-------------------------------------------------------------
A policy that owns its own holds needs nothing from `CapsPolicy`: build holds
(e.g. ``Hold(Window("credit:cust_42"), amount=worst_case_units,
limit=granted_units, measure="credit")``), ``reserve`` before the upstream,
``settle`` after the record is committed. The gateway's `CapsPolicy` also lets
another source add holds to *its* reservation, so budgets and a balance are
admitted all-or-nothing in one atomic step: see `caps.policy.HoldSource`.
``Hold.measure`` says how the sweeper recomputes the actual amount from a
ledger record (`caps.measures`); register a measure for a new kind of hold.

All methods raise `CountersUnavailable` when the backend cannot be reached;
callers apply each cap's ``fail_mode``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from typing import Protocol

USD_UNIT = Decimal("0.000000001")  # one counter unit of money: a nano-dollar
MAX_UNITS = 2**53  # the largest total a counter may reach (Redis compares in doubles)
TOMBSTONE_TTL = 3600.0  # seconds a swept-and-released reservation is remembered


def usd_to_units(amount: Decimal) -> int:
    """Dollars → counter units (nano-dollars), rounded up: never below the exact cost."""
    return int((amount / USD_UNIT).to_integral_value(rounding=ROUND_CEILING))


def units_to_usd(units: int) -> Decimal:
    return (Decimal(units) * USD_UNIT).normalize() if units else Decimal(0)


class CountersUnavailable(Exception):
    """The backend could not be reached (Redis down); apply the caps' fail modes."""


@dataclass(frozen=True, slots=True)
class Window:
    """Where an amount lands: counter ``key``, its ``bucket``, the ``span`` summed."""

    key: str
    bucket: int = 0
    span: int = 1  # buckets in the window: bucket - span + 1 .. bucket
    keep: int = 1  # buckets kept (>= span); older ones are dropped on write
    ttl: float | None = None  # seconds without writes before the counter expires


@dataclass(frozen=True, slots=True)
class Hold:
    """An amount to reserve on a window, with an optional limit."""

    window: Window
    amount: int
    limit: int | None = None  # None: count only, never refuse
    measure: str = ""  # how to recompute the actual from a ledger record (caps.measures)


@dataclass(frozen=True, slots=True)
class Reserved:
    """The outcome of ``reserve``; nothing was changed unless ``ok``."""

    totals: tuple[int, ...]  # each hold's window total before this reservation
    refused: tuple[int, ...] = ()  # indexes of holds that did not fit
    oldest: tuple[int | None, ...] = ()  # per hold: oldest non-empty bucket in the window
    via: tuple[str, ...] = ()  # the allowances it was admitted from (`caps.allowance`)

    @property
    def ok(self) -> bool:
        return not self.refused


@dataclass(frozen=True, slots=True)
class Settled:
    """The outcome of ``settle``/``sweep``: whether this call applied it, and the
    window totals afterwards (for alert thresholds; empty when not applied; -1
    for a hold whose total ``settle(want=...)`` did not ask for)."""

    applied: bool
    totals: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Pending:
    """An open reservation whose lease ran out, as ``expired()`` reports it."""

    rid: str
    holds: tuple[Hold, ...]
    expires_at: float  # unix seconds


class CounterBackend(Protocol):
    """See the module docstring for the semantics every backend implements."""

    name: str  # "memory" or "redis"

    async def reserve(self, rid: str, holds: Sequence[Hold], *, lease: float) -> Reserved: ...

    async def settle(
        self, rid: str, actual: Sequence[int], *, want: Sequence[bool] | None = None
    ) -> Settled:
        """``want``: which holds' window totals to report (None: all; others are -1)."""
        ...

    async def renew(self, rids: Sequence[str], *, lease: float) -> None: ...

    async def expired(self, *, limit: int = 100) -> list[Pending]: ...

    async def sweep(self, pending: Pending, actual: Sequence[int] | None) -> Settled: ...

    async def totals(self, windows: Sequence[Window]) -> list[int]:
        """The current window totals (settled plus held), for reports."""
        ...

    async def seed(self, window: Window, used: int) -> bool:
        """Set ``window``'s bucket to ``used`` if that bucket does not exist yet."""
        ...

    async def close(self) -> None: ...
