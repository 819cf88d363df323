"""The values a report is made of: filters, totals, groups."""

from __future__ import annotations

import decimal
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from ..records import UsageRecord

# What a report can group by. ``tag`` makes one group per tag pair
# (``env=prod``); ``tag:NAME`` one group per value of that tag. ``route`` is the
# ``route`` tag when a request has one, else the endpoint it called.
DIMENSIONS = ("org", "team", "user", "key", "tag", "model", "provider", "route", "endpoint", "day")


def check_dimension(dim: str) -> str:
    if dim in DIMENSIONS or (dim.startswith("tag:") and len(dim) > 4):
        return dim
    raise ValueError(f"cannot group by {dim!r}: use {', '.join(DIMENSIONS)} or tag:NAME")


@dataclass(frozen=True, slots=True)
class Filters:
    """Which requests a report covers. Within a field any value matches; across
    fields all must. ``tags`` pairs must all be on the request. ``charged`` True
    keeps the rows charged to requests (what budgets count), False the gateway's
    own calls, None both (`tokenomy.ledger.charges`)."""

    orgs: tuple[str, ...] = ()
    teams: tuple[str, ...] = ()
    users: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    providers: tuple[str, ...] = ()
    endpoints: tuple[str, ...] = ()
    tags: tuple[tuple[str, str], ...] = ()
    charged: bool | None = None

    def describe(self) -> dict[str, list[str]]:
        out = {
            name: list(getattr(self, name))
            for name in ("orgs", "teams", "users", "keys", "models", "providers", "endpoints")
            if getattr(self, name)
        }
        if self.tags:
            out["tags"] = [f"{k}={v}" for k, v in self.tags]
        if self.charged is not None:
            out["charged"] = [str(self.charged).lower()]
        return out


NO_FILTER = Filters()

_MONEY = decimal.Context(prec=200)


@dataclass(slots=True)
class Totals:
    """Sums over a set of requests.

    ``cost_usd`` is the exact cost of the requests whose price is known; the
    others are counted in ``unpriced_*`` and never as $0. ``savings`` holds the
    dollars each lever says it saved (``decisions[lever]["saved_usd"]``).
    """

    requests: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0
    reasoning_tokens: int = 0
    unpriced_requests: int = 0
    unpriced_input_tokens: int = 0
    unpriced_output_tokens: int = 0
    cost_usd: Decimal = Decimal(0)
    savings: dict[str, Decimal] = field(default_factory=dict)

    @property
    def priced_requests(self) -> int:
        """Requests with a known cost (including failures that used no tokens)."""
        return self.requests - self.unpriced_requests

    @property
    def cache_share(self) -> Decimal | None:
        """The share of input tokens read from the providers' prompt caches."""
        if not self.input_tokens:
            return None
        return Decimal(self.cache_read_tokens) / Decimal(self.input_tokens)

    @property
    def cost_per_1k_requests(self) -> Decimal | None:
        """Cost of 1,000 requests at this average; unpriced requests are left
        out of both sides (their cost is unknown, not zero)."""
        if not self.priced_requests:
            return None
        return self.cost_usd * 1000 / Decimal(self.priced_requests)

    @property
    def saved_usd(self) -> Decimal:
        total = Decimal(0)
        for saved in self.savings.values():  # in _MONEY: the default context rounds at 28 digits
            total = _MONEY.add(total, saved)
        return total

    def add(self, other: Totals) -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cache_read_tokens += other.cache_read_tokens
        self.cache_write_tokens += other.cache_write_tokens
        self.cache_write_1h_tokens += other.cache_write_1h_tokens
        self.reasoning_tokens += other.reasoning_tokens
        self.unpriced_requests += other.unpriced_requests
        self.unpriced_input_tokens += other.unpriced_input_tokens
        self.unpriced_output_tokens += other.unpriced_output_tokens
        self.cost_usd = _MONEY.add(self.cost_usd, other.cost_usd)
        for lever, saved in other.savings.items():
            self.savings[lever] = _MONEY.add(self.savings.get(lever, Decimal(0)), saved)


@dataclass(frozen=True, slots=True)
class Group:
    key: tuple[str | None, ...]  # one value per grouped dimension; None: not set
    totals: Totals


@dataclass(slots=True)
class Report:
    """Everything ``tokenomy report`` shows, for one time range and filter."""

    since: float | None
    until: float | None
    group_by: tuple[str, ...]
    filters: Filters
    total: Totals
    groups: list[Group]  # by ``group_by``
    routes: list[Group]  # by route: cost per 1,000 requests
    unpriced: list[Group]  # by model and provider, only those with unknown prices
    top: list[UsageRecord]  # the most expensive requests, most expensive first
    levers: list[tuple[str, Decimal]] = field(default_factory=list)  # savings, largest first
    top_cut: bool = False  # more priced requests than ``top`` lists

    @property
    def period(self) -> str:
        return f"{iso(self.since) or 'the beginning'} to {iso(self.until) or 'now'}"


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    dt = datetime.fromtimestamp(ts, UTC)
    if dt.hour == dt.minute == dt.second == dt.microsecond == 0:
        return dt.strftime("%Y-%m-%d")
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")
