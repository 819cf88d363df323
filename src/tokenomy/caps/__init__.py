"""Caps that hold: budgets and rate limits, reserved before the upstream and
settled after, exact on one process (in-memory counters rebuilt from the ledger)
and across replicas (Redis, one Lua script per reserve and per settle).

- `model`: budgets, limits and scopes; `periods`: calendar and rolling windows.
- `counters`: the counter-backend interface; `memory` and `redis` implement it.
- `estimate`: a request's worst case; `measures`: what a record actually used.
- `policy`: the admission policy; `refusals`: its errors and rate-limit headers.
- `sweeper`: leases and crashed processes' reservations; `alerts`: thresholds.
- `store`: definitions and fired alerts in the ledger database.

See ``docs/caps.md``.
"""

from __future__ import annotations

from ..config import Settings
from ..ledger.base import SQLStore, Store
from ..pricing import PriceBook
from .config import CapsConfig, caps_config
from .counters import (
    MAX_UNITS,
    USD_UNIT,
    CounterBackend,
    CountersUnavailable,
    Hold,
    Pending,
    Reserved,
    Settled,
    Window,
    units_to_usd,
    usd_to_units,
)
from .model import Budget, Limit, Scope, Subject
from .periods import Period, parse_period
from .policy import CapsPolicy, HoldSource
from .store import CapsStore

__all__ = [
    "MAX_UNITS",
    "USD_UNIT",
    "Budget",
    "CapsConfig",
    "CapsPolicy",
    "CapsStore",
    "CounterBackend",
    "CountersUnavailable",
    "Hold",
    "HoldSource",
    "Limit",
    "Pending",
    "Period",
    "Reserved",
    "Scope",
    "Settled",
    "Subject",
    "Window",
    "caps_config",
    "caps_policy",
    "parse_period",
    "units_to_usd",
    "usd_to_units",
]


def caps_policy(settings: Settings, store: Store, prices: PriceBook) -> CapsPolicy | None:
    """The gateway's caps, or None when the ledger is not a SQL store (no definitions)."""
    if not isinstance(store, SQLStore):
        return None
    return CapsPolicy(store, prices, caps_config(settings))
