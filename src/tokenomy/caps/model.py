"""What a budget and a rate limit are: scopes, limits, and how they are written down.

A scope is a set of dimensions, each either a specific value or ``EACH``:

    {"team": "search"}                   the search team, all its keys and users
    {"team": "search", "model": "gpt-4o"} that team on that model
    {"user": "*"}                        every end user, each on their own counter
    {"tag:project": "*"}                 each value of the ``project`` tag
    {}                                   everything (the whole gateway)

Dimensions: ``org``, ``team``, ``key`` (key id), ``user`` (the end customer:
the key's user, OpenAI's ``user`` field or Anthropic's ``metadata.user_id``),
``model`` (the model name the client asked for) and ``tag:<name>``. A scope
applies to a request when every dimension matches; a request that lacks a
dimension (no user, say) is outside any scope that names it.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from ..errors import ConfigError, InvalidRequest
from .counters import MAX_UNITS, USD_UNIT
from .periods import Period, parse_period, parse_seconds

EACH = "*"
DIMENSIONS = ("org", "team", "key", "user", "model")
ON_EXCEED = ("refuse", "clamp")
FAIL_MODES = ("open", "closed")
MAX_USD = (Decimal(MAX_UNITS) * USD_UNIT).quantize(Decimal(1))  # ~9 million dollars


@dataclass(frozen=True, slots=True)
class Subject:
    """Who is asking for what: the request's side of scope matching."""

    org: str | None = None
    team: str | None = None
    key: str | None = None
    user: str | None = None
    model: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)

    def get(self, dim: str) -> str | None:
        if dim.startswith("tag:"):
            return self.tags.get(dim[4:])
        value: str | None = getattr(self, dim)
        return value


def _short(value: str) -> str:
    # Values come from clients (the ``user`` field): keep counter keys bounded.
    if len(value) <= 64 and "|" not in value and "=" not in value:
        return value
    return "h." + hashlib.sha256(value.encode()).hexdigest()[:24]


@dataclass(frozen=True, slots=True)
class Scope:
    dims: tuple[tuple[str, str], ...] = ()  # sorted (dimension, value or EACH)

    @classmethod
    def of(cls, raw: Mapping[str, Any] | None) -> Scope:
        dims = []
        for dim, value in (raw or {}).items():
            dim = str(dim)
            if dim not in DIMENSIONS and not (dim.startswith("tag:") and len(dim) > 4):
                raise InvalidRequest(
                    f"unknown scope dimension {dim!r}: use {', '.join(DIMENSIONS)} or tag:<name>",
                    param="scope",
                )
            if not isinstance(value, str) or not value:
                raise InvalidRequest(f"scope {dim!r} needs a value or 'each'", param="scope")
            dims.append((dim, EACH if value in (EACH, "each") else value))
        return cls(tuple(sorted(dims)))

    def as_dict(self) -> dict[str, str]:
        return {d: ("each" if v == EACH else v) for d, v in self.dims}

    def entity(self, subject: Subject) -> str | None:
        """The counter this subject lands on ("" for a scope of fixed values), or None."""
        parts = []
        for dim, want in self.dims:
            got = subject.get(dim)
            if got is None or (want != EACH and got != want):
                return None
            if want == EACH:
                parts.append(f"{dim}={_short(got)}")
        return "|".join(parts)

    def static_match(self, subject: Subject) -> bool:
        """Matches on the dimensions fixed by key and model (org, team, key, model)."""
        for dim, want in self.dims:
            if dim in ("org", "team", "key", "model"):
                got = subject.get(dim)
                if got is None or (want != EACH and got != want):
                    return False
        return True

    def describe(self) -> str:
        if not self.dims:
            return "everything"
        return ", ".join(f"{d}={'each' if v == EACH else v}" for d, v in self.dims)


@dataclass(frozen=True, slots=True)
class Budget:
    """Spend (dollars and/or tokens) per period on a scope."""

    id: str
    name: str
    scope: Scope
    period: Period
    limit_usd: Decimal | None = None
    limit_tokens: int | None = None
    on_exceed: str = "refuse"  # or "clamp": lower max_tokens to what is left
    fail_mode: str = "closed"  # when the counters are unreachable: "open" admits
    alerts: tuple[int, ...] = ()  # soft thresholds, percent of the limit
    webhook_url: str | None = None  # None: the gateway's default
    created_at: float = 0.0
    updated_at: float = 0.0

    def __post_init__(self) -> None:
        if self.limit_usd is None and self.limit_tokens is None:
            raise InvalidRequest("a budget needs a dollar limit, a token limit, or both")
        if self.limit_usd is not None and not Decimal(0) <= self.limit_usd <= MAX_USD:
            raise InvalidRequest(f"limit_usd must be between 0 and {MAX_USD}", param="limit_usd")
        if self.limit_tokens is not None and not 0 <= self.limit_tokens <= MAX_UNITS:
            raise InvalidRequest("limit_tokens must be a non-negative integer")
        if self.on_exceed not in ON_EXCEED:
            raise InvalidRequest("on_exceed must be 'refuse' or 'clamp'", param="on_exceed")
        if self.fail_mode not in FAIL_MODES:
            raise InvalidRequest("fail_mode must be 'open' or 'closed'", param="fail_mode")
        if any(not 0 < a <= 1000 for a in self.alerts):
            raise InvalidRequest("alert thresholds are percents between 1 and 1000")

    def describe(self) -> str:
        limits = []
        if self.limit_usd is not None:
            limits.append(f"${self.limit_usd}")
        if self.limit_tokens is not None:
            limits.append(f"{self.limit_tokens} tokens")
        return f"{' and '.join(limits)} {self.period.describe()} on {self.scope.describe()}"


@dataclass(frozen=True, slots=True)
class Limit:
    """Rate limits on a scope: per ``window`` seconds (a minute by default), and concurrency."""

    id: str
    name: str
    scope: Scope
    rpm: int | None = None  # requests per window
    tpm: int | None = None  # tokens (input + output) per window
    input_tpm: int | None = None
    output_tpm: int | None = None
    concurrent: int | None = None  # requests in flight
    window: int = 60  # seconds; counted in one-second buckets
    fail_mode: str = "open"
    created_at: float = 0.0
    updated_at: float = 0.0

    def __post_init__(self) -> None:
        values = (self.rpm, self.tpm, self.input_tpm, self.output_tpm, self.concurrent)
        if all(v is None for v in values):
            raise InvalidRequest("a limit needs rpm, tpm, input_tpm, output_tpm or concurrent")
        if any(v is not None and not 0 <= v <= MAX_UNITS for v in values):
            raise InvalidRequest("limits must be non-negative integers")
        if not 1 <= self.window <= 86400:
            raise InvalidRequest("window must be between 1 and 86400 seconds", param="window")
        if self.fail_mode not in FAIL_MODES:
            raise InvalidRequest("fail_mode must be 'open' or 'closed'", param="fail_mode")


# -- parsing from the admin API, the CLI and the store ---------------------------------------


def new_id(prefix: str) -> str:
    return f"{prefix}_{os.urandom(6).hex()}"


def parse_usd(value: Any, name: str = "limit_usd") -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, float | bool) or not isinstance(value, str | int | Decimal):
        raise InvalidRequest(f"'{name}' must be a decimal string or an integer", param=name)
    try:
        amount = Decimal(str(value).strip().lstrip("$"))
    except InvalidOperation as exc:
        raise InvalidRequest(f"'{name}': not a number: {value!r}", param=name) from exc
    if not amount.is_finite():
        raise InvalidRequest(f"'{name}' must be finite", param=name)
    return amount


def parse_int(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InvalidRequest(f"'{name}' must be an integer", param=name)
    try:
        return int(str(value).replace("_", ""))
    except ValueError as exc:
        raise InvalidRequest(f"'{name}' must be an integer", param=name) from exc


def _name_and_scope(raw: Mapping[str, Any], b: dict[str, Any], *, new: bool) -> None:
    """Set ``name`` and ``scope`` of a budget's or limit's fields from ``raw``
    (both always on a new one; on an update, only those given)."""
    if "name" in raw or new:
        name = raw.get("name") or b["id"]
        if not isinstance(name, str):
            raise InvalidRequest("'name' must be a string", param="name")
        b["name"] = name
    if "scope" in raw or new:
        if raw.get("scope") is not None and not isinstance(raw.get("scope"), Mapping):
            raise InvalidRequest("'scope' must be an object", param="scope")
        b["scope"] = Scope.of(raw.get("scope"))


def budget_from(raw: Mapping[str, Any], *, base: Budget | None = None) -> Budget:
    """A budget from JSON-like input; with ``base``, only the given fields change."""
    known = {"id", "name", "scope", "period", "limit_usd", "limit_tokens", "on_exceed",
             "fail_mode", "alerts", "webhook_url"}  # fmt: skip
    unknown = set(raw) - known
    if unknown:
        raise InvalidRequest(f"unknown budget fields: {sorted(unknown)}")
    now = time.time()
    b: dict[str, Any] = {}
    if base is not None:
        b = {f: getattr(base, f) for f in Budget.__dataclass_fields__}
    else:
        b = {"id": new_id("bud"), "created_at": now, "period": Period("monthly")}
    _name_and_scope(raw, b, new=base is None)
    if raw.get("period") is not None:
        b["period"] = _period(raw["period"])
    for f in ("limit_usd", "limit_tokens"):
        if f in raw:
            b[f] = parse_usd(raw[f]) if f == "limit_usd" else parse_int(raw[f], f)
    for f in ("on_exceed", "fail_mode"):
        if raw.get(f) is not None:
            b[f] = str(raw[f])
    if "alerts" in raw:
        alerts = raw["alerts"] or []
        if not isinstance(alerts, list):
            raise InvalidRequest("'alerts' must be a list of percents", param="alerts")
        b["alerts"] = tuple(sorted({_pct(a) for a in alerts}))
    if "webhook_url" in raw:
        url = raw["webhook_url"] or None
        if url is not None and not (
            isinstance(url, str) and url.startswith(("http://", "https://"))
        ):  # stored, it would fail only when its first alert is due
            raise InvalidRequest(
                "'webhook_url' must be an http:// or https:// URL", param="webhook_url"
            )
        b["webhook_url"] = url
    b["updated_at"] = now
    budget: Budget = _build(Budget, b)
    return budget


def limit_from(raw: Mapping[str, Any], *, base: Limit | None = None) -> Limit:
    counts = ("rpm", "tpm", "input_tpm", "output_tpm", "concurrent")
    known = {"id", "name", "scope", "window", "fail_mode", *counts}
    unknown = set(raw) - known
    if unknown:
        raise InvalidRequest(f"unknown limit fields: {sorted(unknown)}")
    now = time.time()
    if base is not None:
        b: dict[str, Any] = {f: getattr(base, f) for f in Limit.__dataclass_fields__}
    else:
        b = {"id": new_id("lim"), "created_at": now}
    _name_and_scope(raw, b, new=base is None)
    for f in counts:
        if f in raw:
            b[f] = parse_int(raw[f], f)
    if raw.get("window") is not None:
        try:
            b["window"] = parse_seconds(str(raw["window"]))
        except ConfigError as exc:
            raise InvalidRequest(exc.message, param="window") from exc
    if raw.get("fail_mode") is not None:
        b["fail_mode"] = str(raw["fail_mode"])
    b["updated_at"] = now
    limit: Limit = _build(Limit, b)
    return limit


def _period(value: Any) -> Period:
    if not isinstance(value, str):
        raise InvalidRequest("'period' must be a string such as daily or rolling:24h")
    try:
        return parse_period(value)
    except ConfigError as exc:
        raise InvalidRequest(exc.message, param="period") from exc


def _pct(value: Any) -> int:
    try:
        pct = int(str(value).strip().rstrip("%"))
    except ValueError as exc:
        raise InvalidRequest(f"alert threshold {value!r} is not a whole percent") from exc
    return pct


def _build(cls: Any, fields: dict[str, Any]) -> Any:
    try:
        return cls(**fields)
    except TypeError as exc:
        raise InvalidRequest(str(exc)) from exc


def budget_view(b: Budget) -> dict[str, Any]:
    return {
        "id": b.id,
        "name": b.name,
        "scope": b.scope.as_dict(),
        "period": b.period.to_text(),
        "limit_usd": None if b.limit_usd is None else str(b.limit_usd),
        "limit_tokens": b.limit_tokens,
        "on_exceed": b.on_exceed,
        "fail_mode": b.fail_mode,
        "alerts": list(b.alerts),
        "webhook_url": b.webhook_url,
        "created_at": b.created_at,
        "updated_at": b.updated_at,
    }


def limit_view(lim: Limit) -> dict[str, Any]:
    return {
        "id": lim.id,
        "name": lim.name,
        "scope": lim.scope.as_dict(),
        "rpm": lim.rpm,
        "tpm": lim.tpm,
        "input_tpm": lim.input_tpm,
        "output_tpm": lim.output_tpm,
        "concurrent": lim.concurrent,
        "window": lim.window,
        "fail_mode": lim.fail_mode,
        "created_at": lim.created_at,
        "updated_at": lim.updated_at,
    }
