"""Plans and the price a customer pays for a request.

A plan prices a request in one of two ways:

- **markup**: the provider cost times ``1 + markup_pct / 100`` (a negative
  markup is a discount, down to -100%);
- **fixed**: a price per million tokens of its own, whatever the provider
  charges: ``input_per_mtok`` for uncached prompt tokens and cache writes,
  ``cached_input_per_mtok`` for cache reads (``input_per_mtok`` when unset) and
  ``output_per_mtok`` for generated tokens, reasoning included.

A customer without a plan pays the provider cost. Every charge is a `Decimal`
rounded once, at the end, to `QUANTUM` (one billionth of a dollar) with
``ROUND_HALF_EVEN``; rounding is monotone, so a request never costs more than
the worst case reserved for it. Token balances are debited the request's
tokens (`token_charge`): every prompt token, cached or not, plus every output
token.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

from ..errors import InvalidRequest
from ..records import UsageRecord
from ..usage import Usage

__all__ = [
    "QUANTUM",
    "UNITS",
    "Plan",
    "charge",
    "money_text",
    "parse_money",
    "plan_from_terms",
    "plan_terms",
    "record_charge",
    "token_charge",
]

QUANTUM = Decimal("0.000000001")
UNITS = ("usd", "tokens")
_MILLION = Decimal(1_000_000)
_HUNDRED = Decimal(100)


def money_text(value: Decimal) -> str:
    """An amount as people read it: plain notation (never ``1E-7``), no trailing zeros."""
    return format(value.normalize(), "f") if value else "0"


def parse_money(value: object, name: str, *, unit: str = "usd") -> Decimal:
    """An exact amount from a string, int or Decimal (never a float).

    Dollars may have at most 9 decimal places (`QUANTUM`); tokens are whole.
    """
    if isinstance(value, float | bool) or not isinstance(value, str | int | Decimal):
        raise InvalidRequest(f"'{name}' must be a decimal string or an integer", param=name)
    try:
        amount = Decimal(value.strip() if isinstance(value, str) else value)
    except InvalidOperation as exc:
        raise InvalidRequest(f"'{name}': not a number: {value!r}", param=name) from exc
    if not amount.is_finite():
        raise InvalidRequest(f"'{name}' must be finite", param=name)
    quantum = Decimal(1) if unit == "tokens" else QUANTUM
    try:
        exact = amount.quantize(quantum)
    except InvalidOperation as exc:  # more digits than a Decimal holds
        raise InvalidRequest(f"'{name}' is too large: {value!r}", param=name) from exc
    if amount != exact:
        what = "a whole number of tokens" if unit == "tokens" else "at most 9 decimal places"
        raise InvalidRequest(f"'{name}' must be {what}: {value!r}", param=name)
    return amount


@dataclass(frozen=True, slots=True)
class Plan:
    name: str
    markup_pct: Decimal | None = None
    input_per_mtok: Decimal | None = None
    output_per_mtok: Decimal | None = None
    cached_input_per_mtok: Decimal | None = None
    created_at: float = 0.0

    def __post_init__(self) -> None:
        if not self.name:
            raise InvalidRequest("a plan needs a name", param="name")
        fixed = (self.input_per_mtok, self.output_per_mtok, self.cached_input_per_mtok)
        if self.markup_pct is not None:
            if any(p is not None for p in fixed):
                raise InvalidRequest("a plan has a markup or fixed prices, not both")
            if self.markup_pct < -_HUNDRED:
                raise InvalidRequest("'markup_pct' cannot be below -100", param="markup_pct")
        elif self.input_per_mtok is None or self.output_per_mtok is None:
            raise InvalidRequest(
                "a plan needs 'markup_pct', or both 'input_per_mtok' and 'output_per_mtok'"
            )
        if any(p is not None and p < 0 for p in fixed):
            raise InvalidRequest("fixed prices cannot be negative")

    @property
    def fixed(self) -> bool:
        return self.markup_pct is None

    def describe(self) -> str:
        if self.markup_pct is not None:
            return f"provider cost {'+' if self.markup_pct >= 0 else ''}{self.markup_pct}%"
        cached = self.cached_input_per_mtok
        return f"${self.input_per_mtok} in / ${self.output_per_mtok} out per MTok" + (
            "" if cached is None else f" (${cached} cached in)"
        )


def _round(amount: Decimal) -> Decimal:
    return amount.quantize(QUANTUM, rounding=ROUND_HALF_EVEN)


def charge(plan: Plan | None, usage: Usage, cost_usd: Decimal | None) -> Decimal | None:
    """The dollars a customer pays for ``usage`` whose provider cost is ``cost_usd``.

    None when it cannot be known: the provider cost is unknown and the plan
    depends on it. A fixed-price plan never needs the provider cost.
    """
    if plan is None or plan.markup_pct is not None:
        if cost_usd is None:
            return None
        pct = _HUNDRED if plan is None or plan.markup_pct is None else _HUNDRED + plan.markup_pct
        return _round(cost_usd * pct / _HUNDRED)
    assert plan.input_per_mtok is not None and plan.output_per_mtok is not None
    cached_rate = plan.cached_input_per_mtok
    if cached_rate is None:
        cached_rate = plan.input_per_mtok
    cached = max(min(usage.cache_read_tokens, usage.input_tokens), 0)
    uncached = max(usage.input_tokens - cached, 0)
    total = (
        uncached * plan.input_per_mtok
        + cached * cached_rate
        + max(usage.output_tokens, 0) * plan.output_per_mtok
    )
    return _round(total / _MILLION)


def token_charge(usage: Usage) -> Decimal:
    """What a token balance pays: every prompt token plus every output token."""
    return Decimal(max(usage.input_tokens, 0) + max(usage.output_tokens, 0))


# -- the terms a request was admitted under, carried by its ledger record ---------------------

_PRICE_FIELDS = ("markup_pct", "input_per_mtok", "output_per_mtok", "cached_input_per_mtok")


def plan_terms(plan: Plan | None) -> dict[str, Any]:
    """The plan's prices as JSON-safe strings (empty: no plan, the provider cost)."""
    if plan is None:
        return {}
    terms: dict[str, Any] = {"plan": plan.name}
    for name in _PRICE_FIELDS:
        value = getattr(plan, name)
        if value is not None:
            terms[name] = format(value, "f")
    return terms


def plan_from_terms(terms: Mapping[str, Any]) -> Plan | None:
    if not terms.get("plan"):
        return None

    def price(name: str) -> Decimal | None:
        value = terms.get(name)
        return None if value is None else Decimal(str(value))

    return Plan(
        name=str(terms["plan"]),
        markup_pct=price("markup_pct"),
        input_per_mtok=price("input_per_mtok"),
        output_per_mtok=price("output_per_mtok"),
        cached_input_per_mtok=price("cached_input_per_mtok"),
    )


def record_charge(rec: UsageRecord) -> tuple[Decimal | None, Decimal | None]:
    """(dollars charged, amount taken from the balance) for a ledger record.

    The plan's terms are copied into ``decisions.billing`` when the request is
    admitted, so the gateway that settles it, a sweeper that settles it after a
    crash, and a statement months later all compute the same charge from the
    record alone. A record without them was charged the provider cost. The
    balance amount is None when the customer had no balance; for a token
    balance it is the request's tokens.
    """
    terms = rec.decisions.get("billing")
    if not isinstance(terms, Mapping):
        return charge(None, rec.usage, rec.cost_usd), None
    usd = charge(plan_from_terms(terms), rec.usage, rec.cost_usd)
    unit = terms.get("unit")
    if unit == "tokens":
        return usd, token_charge(rec.usage)
    if unit == "usd":
        return usd, usd if usd is not None else Decimal(0)
    return usd, None
