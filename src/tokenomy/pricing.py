"""Exact prices for normalised usage.

Prices are data: they come from the ``genai-prices`` snapshot (tiered, cached and
dated prices), with per-deployment ``PriceOverride`` values for self-hosted or
negotiated prices. Money is ``Decimal`` end to end.

``genai_prices.calc_price`` takes about 100 µs per call, too slow for a gateway's
hot path, so a ``PriceBook`` looks up each (provider, model) once, compiles its
prices into a small table and applies genai-prices' own arithmetic to it:

- units form a tree (``input_tokens`` ⊃ ``cache_read_tokens``, ``cache_write_tokens``
  ⊃ ``cache_write_5m_tokens``, ``cache_write_1h_tokens``; ``input_tokens`` ⊃
  ``input_audio_tokens``; ``output_tokens`` ⊃ ``output_reasoning_tokens``,
  ``output_audio_tokens``; ``cache_audio_read_tokens`` below both cache reads and
  audio input). Each priced unit pays for its count minus the counts of its priced
  descendants, so a count without a price of its own is billed at its nearest
  priced ancestor (cache reads at the input rate when a model has no cache-read
  price, 1-hour writes at the 5-minute rate when it has no 1-hour rate, audio at
  the text rate when the model prices audio no differently);
- per-thousand prices outside the tree, the request fee (``requests_kcount``) and
  web searches (``web_searches_kcount``), count in the total only, as in
  genai-prices; the other units (images, video, other server tools, durations)
  are not read;
- a tiered price picks the highest tier whose start is strictly below the request's
  total input tokens (cache included) and applies it to all tokens of that unit;
- a dated price list uses its last entry whose constraint is active at the request
  time, else its first entry;
- a usage's ``price_context`` (the service tier the upstream reported) applies the
  model's matching price variants over those prices, as genai-prices does: only
  the provider's own (a model found through a fallback provider keeps its standard
  prices), each price key taken from the first active variant that sets it.

Unlike genai-prices, an inconsistent usage (a cache count above the input count)
is clamped rather than raised: metering must record something. Where genai-prices
cannot price a usage either, the cost is unknown (flagged, never $0): cache reads
and audio input together on a model that prices cached audio apart (no upstream
says how much of the cache was audio). Where genai-prices would bill $0, it is
unknown too: web searches on a model without a web-search price.
"""

from __future__ import annotations

import copy
import functools
import threading
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal, Protocol

from .errors import ConfigError, InvalidRequest
from .usage import Usage

if TYPE_CHECKING:
    from genai_prices.types import ModelInfo, ModelPrice, PriceVariant

__all__ = ["Cost", "PriceBook", "PriceOverride"]

_MILLION = Decimal(1_000_000)
_THOUSAND = Decimal(1_000)
_ZERO = Decimal(0)

# The token units Tokenomy reports, as indexes into a usage vector, with their
# genai-prices price keys and their descendants in the genai-prices unit tree
# (a unit is below another when its dimensions include the other's).
(
    _INPUT,
    _CACHE_READ,
    _CACHE_WRITE,
    _CACHE_WRITE_5M,
    _CACHE_WRITE_1H,
    _OUTPUT,
    _REASONING,
    _AUDIO_INPUT,
    _AUDIO_CACHE_READ,
    _AUDIO_OUTPUT,
) = range(10)
_UNITS = 10
_PRICE_KEYS = {
    "input_mtok": _INPUT,
    "cache_read_mtok": _CACHE_READ,
    "cache_write_mtok": _CACHE_WRITE,
    "cache_write_5m_mtok": _CACHE_WRITE_5M,
    "cache_write_1h_mtok": _CACHE_WRITE_1H,
    "output_mtok": _OUTPUT,
    "output_reasoning_mtok": _REASONING,
    "input_audio_mtok": _AUDIO_INPUT,
    "cache_audio_read_mtok": _AUDIO_CACHE_READ,
    "output_audio_mtok": _AUDIO_OUTPUT,
}
_DESCENDANTS: dict[int, frozenset[int]] = {
    _INPUT: frozenset(
        {
            _CACHE_READ,
            _CACHE_WRITE,
            _CACHE_WRITE_5M,
            _CACHE_WRITE_1H,
            _AUDIO_INPUT,
            _AUDIO_CACHE_READ,
        }
    ),
    _CACHE_READ: frozenset({_AUDIO_CACHE_READ}),
    _CACHE_WRITE: frozenset({_CACHE_WRITE_5M, _CACHE_WRITE_1H}),
    _CACHE_WRITE_5M: frozenset(),
    _CACHE_WRITE_1H: frozenset(),
    _OUTPUT: frozenset({_REASONING, _AUDIO_OUTPUT}),
    _REASONING: frozenset(),
    _AUDIO_INPUT: frozenset({_AUDIO_CACHE_READ}),
    _AUDIO_CACHE_READ: frozenset(),
    _AUDIO_OUTPUT: frozenset(),
}
# Most specific first, as genai-prices orders them: a unit after all its descendants.
_LEAF_ORDER = (
    _AUDIO_CACHE_READ,
    _CACHE_WRITE_5M,
    _CACHE_WRITE_1H,
    _CACHE_READ,
    _CACHE_WRITE,
    _AUDIO_INPUT,
    _AUDIO_OUTPUT,
    _REASONING,
    _INPUT,
    _OUTPUT,
)
_INPUT_SIDE = frozenset(
    {_INPUT, _CACHE_READ, _CACHE_WRITE, _CACHE_WRITE_5M, _CACHE_WRITE_1H, _AUDIO_INPUT,
     _AUDIO_CACHE_READ}
)  # fmt: skip
# Units counted per thousand, outside the token tree and billed in the total only
# (genai-prices gives them no input or output side): the request itself, and the
# server-side web searches it made.
_REQUESTS, _WEB_SEARCHES = "requests_kcount", "web_searches_kcount"
_COUNTED_KEYS = (_REQUESTS, _WEB_SEARCHES)

# Gateway provider names that differ from genai-prices provider ids.
_PROVIDER_IDS = {
    "azure_openai": "azure",
    "azure-openai": "azure",
    "bedrock": "aws",
    "vertex": "google",
    "vertex_ai": "google",
    "gemini": "google",
    "xai": "x-ai",
    "grok": "x-ai",
    "together_ai": "together",
    "togetherai": "together",
    "fireworks_ai": "fireworks",
    "fireworks-ai": "fireworks",
    "moonshot": "moonshotai",
    "kimi": "moonshotai",
    "zhipu": "zhipuai",
}
# Servers that run whatever weights they are given: match on the model name alone.
_SELF_HOSTED = frozenset(
    {"vllm", "ollama", "llamacpp", "llama.cpp", "llama-cpp", "lmstudio", "sglang", "tgi", "localai"}
)

# A price: the base $/MTok and its tiers as (start, $/MTok), highest start first.
_Price = tuple[Decimal, tuple[tuple[int, Decimal], ...]]


@dataclass(frozen=True, slots=True)
class PriceOverride:
    """Prices in USD per million tokens (``web_search``: per thousand searches),
    replacing genai-prices for one model name.

    A missing cache price bills those tokens at the nearest priced rate: cache reads
    and writes at ``input``, 1-hour writes at ``cache_write`` (or ``input``). A
    missing audio or web-search price does not: a request that used audio tokens or
    web searches the override has no price for is priced unknown (flagged, cost
    null), since audio at the text rate would be several times too low and a search
    is not free.
    """

    input: Decimal
    output: Decimal
    cache_read: Decimal | None = None
    cache_write: Decimal | None = None
    cache_write_1h: Decimal | None = None
    input_audio: Decimal | None = None
    output_audio: Decimal | None = None
    web_search: Decimal | None = None

    def __post_init__(self) -> None:
        for name in _OVERRIDE_FIELDS:
            value = getattr(self, name)
            if value is None and name not in ("input", "output"):
                continue
            if not isinstance(value, Decimal) or not value.is_finite() or value < 0:
                raise ConfigError(
                    f"price override {name!r} must be a finite non-negative Decimal, got {value!r}"
                )

    @classmethod
    def parse(cls, raw: Mapping[str, object]) -> PriceOverride:
        """Build from configuration: values may be strings, ints, Decimals or floats.

        A float (an unquoted YAML number) is read through its shortest ``repr``, which
        gives back the decimal literal that was written.
        """
        unknown = set(raw) - set(_OVERRIDE_FIELDS)
        if unknown:
            raise ConfigError(f"unknown price override field(s): {', '.join(sorted(unknown))}")
        for required in ("input", "output"):
            if raw.get(required) is None:
                raise ConfigError(f"price override needs {required!r} (USD per million tokens)")
        values = {
            name: _to_decimal(name, value) for name, value in raw.items() if value is not None
        }
        return cls(**values)


_OVERRIDE_FIELDS = tuple(f.name for f in fields(PriceOverride))


def _to_decimal(name: str, value: object) -> Decimal:
    if isinstance(value, bool):
        raise ConfigError(f"price override {name!r} must be a number, got {value!r}")
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, str):
        try:
            return Decimal(value.strip())
        except ArithmeticError:
            pass
    raise ConfigError(f"price override {name!r} must be a number, got {value!r}")


@dataclass(frozen=True, slots=True)
class Cost:
    """The price of one request in USD. ``total`` is None, never zero, when unknown."""

    total: Decimal | None
    input: Decimal | None
    output: Decimal | None
    price_unknown: bool
    source: Literal["override", "genai-prices", "unknown"]
    matched_model: str | None


_UNKNOWN = Cost(None, None, None, True, "unknown", None)


class _Rates:
    """One model's prices, compiled for fast arithmetic.

    ``counted`` holds the per-thousand prices (``requests_kcount``,
    ``web_searches_kcount``). ``required`` lists what must have a price of its own
    when the usage counts some: the web searches always (nothing above them in the
    unit tree to fall back on), and for an override, its audio tokens too (an
    override states text prices; audio at those rates would be a guess).
    """

    __slots__ = ("counted", "lines", "prices", "required")

    def __init__(
        self,
        prices: Mapping[int, _Price],
        counted: Mapping[str, _Price] | None = None,
        required: frozenset[int | str] = frozenset({_WEB_SEARCHES}),
    ) -> None:
        self.prices = dict(prices)
        priced = set(prices)
        # (unit, price, priced descendants) in leaf-first order.
        self.lines = tuple(
            (
                unit,
                prices[unit],
                tuple(d for d in _LEAF_ORDER if d in priced and d in _DESCENDANTS[unit]),
            )
            for unit in _LEAF_ORDER
            if unit in priced
        )
        self.counted = dict(counted or {})
        self.required = frozenset(u for u in required if u not in priced and u not in self.counted)

    def cost(self, usage: Usage, matched: str, source: Literal["override", "genai-prices"]) -> Cost:
        audio_in = usage.audio_input_tokens
        # A model pricing cache reads and audio apart prices cached audio apart too
        # (genai-prices requires it), and no upstream we read says how much of the
        # cache read was audio: genai-prices refuses such a usage, and so do we.
        if (
            audio_in
            and usage.cache_read_tokens
            and _CACHE_READ in self.prices
            and _AUDIO_INPUT in self.prices
        ):
            return Cost(None, None, None, True, source, matched)
        if self.required and (
            (usage.web_search_requests and _WEB_SEARCHES in self.required)
            or (audio_in and _AUDIO_INPUT in self.required)
            or (usage.audio_output_tokens and _AUDIO_OUTPUT in self.required)
        ):
            return Cost(None, None, None, True, source, matched)
        values = (
            usage.input_tokens,
            usage.cache_read_tokens,
            usage.cache_write_tokens + usage.cache_write_1h_tokens,
            usage.cache_write_tokens,
            usage.cache_write_1h_tokens,
            usage.output_tokens,
            usage.reasoning_tokens,
            audio_in,
            0,  # cached audio: reported by no API the gateway serves (see above)
            usage.audio_output_tokens,
        )
        total_input = values[_INPUT]
        leaves = [0] * _UNITS
        input_cost = _ZERO
        output_cost = _ZERO
        for unit, (base, tiers), descendants in self.lines:
            count = values[unit]
            for d in descendants:
                count -= leaves[d]
            if count < 0:
                count = 0
            leaves[unit] = count
            if not count:
                continue
            if unit in _INPUT_SIDE:
                input_cost += _tier_rate(base, tiers, total_input) * count
            else:
                output_cost += _tier_rate(base, tiers, total_input) * count
        input_cost /= _MILLION
        output_cost /= _MILLION
        total = input_cost + output_cost
        for key, (base, tiers) in self.counted.items():
            count = 1 if key == _REQUESTS else usage.web_search_requests
            if count:
                total += _tier_rate(base, tiers, total_input) * count / _THOUSAND
        return Cost(total, input_cost, output_cost, False, source, matched)

    def rate(self, unit: int, input_tokens: int | None) -> Decimal | None:
        """$/token for ``unit`` at a prompt size; with none, the highest tier (worst case)."""
        price = self.prices.get(unit)
        if price is None:
            return None
        base, tiers = price
        if input_tokens is None:
            rate = max((base, *(tier_rate for _, tier_rate in tiers)))
        else:
            rate = _tier_rate(base, tiers, input_tokens)
        return rate / _MILLION


def _tier_rate(base: Decimal, tiers: tuple[tuple[int, Decimal], ...], total_input: int) -> Decimal:
    """The rate of the highest tier whose start is strictly below ``total_input``."""
    for start, tier_rate in tiers:
        if total_input > start:
            return tier_rate
    return base


class _Constraint(Protocol):
    def active(self, request_timestamp: datetime, /) -> bool: ...


class _Model:
    """A matched genai-prices model: its compiled prices, dated or not, and the price
    variants (service tiers) its provider sells it at, compiled when first used."""

    __slots__ = ("_variant_rates", "dated", "info", "name", "rates", "variants")

    def __init__(
        self,
        name: str,
        rates: _Rates | None,
        dated: tuple[tuple[_Constraint | None, _Rates | None], ...],
        info: ModelInfo | None = None,
    ) -> None:
        self.name = name
        self.rates = rates  # undated prices, or the fallback when no dated price applies
        self.dated = dated  # (constraint, rates) pairs, newest last
        self.info = info  # the genai-prices model, when it has variants that apply
        self.variants: tuple[PriceVariant, ...] = tuple(
            (info.price_variants or ()) if info is not None else ()
        )
        # (dated index, variants applied) -> compiled prices
        self._variant_rates: dict[tuple[int, tuple[int, ...]], _Rates | None] = {}

    def rates_at(
        self, at: datetime | None, context: tuple[tuple[str, str], ...] = ()
    ) -> _Rates | None:
        tiered = bool(context and self.variants)
        if not self.dated and not tiered:
            return self.rates
        when = at or datetime.now(tz=UTC)
        index, rates = -1, self.rates  # -1: undated
        if self.dated:
            index = 0  # no entry active: the first one (``self.rates``)
            for i in range(len(self.dated) - 1, -1, -1):
                constraint = self.dated[i][0]
                if constraint is None or constraint.active(when):
                    index, rates = i, self.dated[i][1]
                    break
        if not tiered:
            return rates
        wanted = dict(context)
        chosen = tuple(
            i
            for i, v in enumerate(self.variants)
            if (v.constraint is None or v.constraint.active(when))
            and all(wanted.get(key) == value for key, value in v.when.items())
        )
        if not chosen:
            return rates
        key = (index, chosen)
        if key not in self._variant_rates:
            self._variant_rates[key] = self._compile_variant(index, chosen)
        return self._variant_rates[key]

    def _compile_variant(self, index: int, chosen: tuple[int, ...]) -> _Rates | None:
        from genai_prices.types import ModelPrice

        assert self.info is not None
        prices = self.info.prices
        standard = prices if isinstance(prices, ModelPrice) else prices[max(index, 0)].prices
        resolved = copy.copy(standard)
        overrides: dict[str, Any] = {}
        for i in chosen:  # the first variant that sets a price key wins, as in genai-prices
            for key, price in vars(self.variants[i].prices).items():
                if price is not None:
                    overrides.setdefault(key, price)
        vars(resolved).update(overrides)
        return _compile_prices(resolved)


class PriceBook:
    """Prices for (provider, model) pairs: overrides first, then genai-prices.

    Lookups are memoised per PriceBook (bounded), so a gateway keeps one PriceBook.
    """

    def __init__(
        self,
        overrides: Mapping[str, PriceOverride] | None = None,
        *,
        refuse_unknown: bool = False,
        memo_size: int = 4096,
    ) -> None:
        self.refuse_unknown = refuse_unknown
        self._overrides = {name: _override_rates(o) for name, o in (overrides or {}).items()}
        self._find = functools.lru_cache(maxsize=memo_size)(self._lookup)

    # -- public API ---------------------------------------------------------

    def cost(
        self,
        usage: Usage,
        *,
        model: str,
        provider: str | None = None,
        override_key: str | None = None,
        at: datetime | None = None,
    ) -> Cost:
        """The exact cost of ``usage``; ``at`` picks dated prices (default: now).

        A price override is the price whatever the service tier; genai-prices' prices
        follow ``usage.price_context``.
        """
        name, rates = self._override(model, override_key)
        if rates is not None:
            return rates.cost(usage, name, "override")
        found = self._find(provider, model)
        if found is None:
            return _UNKNOWN
        compiled = found.rates_at(at, usage.price_context)
        if compiled is None:
            return _UNKNOWN
        return compiled.cost(usage, found.name, "genai-prices")

    def is_known(
        self, model: str, provider: str | None = None, *, override_key: str | None = None
    ) -> bool:
        if self._override(model, override_key)[1] is not None:
            return True
        found = self._find(provider, model)
        return found is not None and found.rates_at(None) is not None

    def check_servable(
        self, model: str, provider: str | None = None, *, override_key: str | None = None
    ) -> None:
        """Refuse a model without a price when the book is set to ``refuse_unknown``."""
        if self.refuse_unknown and not self.is_known(model, provider, override_key=override_key):
            where = f" from provider {provider!r}" if provider else ""
            raise InvalidRequest(
                f"No price is known for model {model!r}{where}, and this gateway refuses "
                "unpriced models. Add a price override for it.",
                code="price_unknown",
                param="model",
            )

    def input_price_per_token(
        self,
        model: str,
        provider: str | None = None,
        *,
        override_key: str | None = None,
        input_tokens: int | None = None,
        at: datetime | None = None,
    ) -> Decimal | None:
        """USD per uncached input token, at the tier ``input_tokens`` selects.

        Without ``input_tokens``, the highest tier (the worst case). Cache writes can
        cost more (Anthropic: 1.25x for 5 minutes, 2x for 1 hour).
        """
        rates = self._rates(model, provider, override_key, at)
        return None if rates is None else rates.rate(_INPUT, input_tokens)

    def output_price_per_token(
        self,
        model: str,
        provider: str | None = None,
        *,
        override_key: str | None = None,
        input_tokens: int | None = None,
        at: datetime | None = None,
    ) -> Decimal | None:
        """USD per output token, at the tier ``input_tokens`` selects (default: highest)."""
        rates = self._rates(model, provider, override_key, at)
        return None if rates is None else rates.rate(_OUTPUT, input_tokens)

    def warm(self, *, background: bool = True) -> threading.Thread | None:
        """Import genai-prices and load its snapshot now (in a daemon thread by default)."""
        if not background:
            _providers()
            return None
        thread = threading.Thread(target=_providers, name="tokenomy-prices-warm", daemon=True)
        thread.start()
        return thread

    # -- internals ----------------------------------------------------------

    def _override(self, model: str, override_key: str | None) -> tuple[str, _Rates | None]:
        if override_key is not None:
            rates = self._overrides.get(override_key)
            if rates is not None:
                return override_key, rates
        return model, self._overrides.get(model)

    def _rates(
        self, model: str, provider: str | None, override_key: str | None, at: datetime | None
    ) -> _Rates | None:
        rates = self._override(model, override_key)[1]
        if rates is not None:
            return rates
        found = self._find(provider, model)
        return None if found is None else found.rates_at(at)

    @staticmethod
    def _lookup(provider: str | None, model: str) -> _Model | None:
        from genai_prices.data_snapshot import find_provider_by_id

        providers = _providers()
        model_ref = model.strip().lower()
        if not model_ref:
            return None
        name = (provider or "").strip().lower()
        match = None
        if name and name not in _SELF_HOSTED:
            match = find_provider_by_id(providers, _PROVIDER_IDS.get(name, name))
        if match is None:
            # Unknown or self-hosted provider: genai-prices' model-only matching.
            match = next(
                (
                    p
                    for p in providers
                    if p.model_match is not None and p.model_match.is_match(model_ref)
                ),
                None,
            )
        if match is None:
            return None
        info = match.find_model(model_ref, all_providers=providers)
        if info is None:
            return None
        # Tier prices are the provider's own: a model priced through a fallback
        # provider (Azure through OpenAI) keeps its standard prices, as in genai-prices.
        own = any(info is m for m in match.models)
        return _compile_model(info, variants=own)


def _providers() -> list[Any]:
    """genai-prices' current snapshot (importing it takes ~0.2 s: only when first needed)."""
    from genai_prices.data_snapshot import get_snapshot

    return get_snapshot().providers


def _compile_model(info: ModelInfo, *, variants: bool = True) -> _Model:
    from genai_prices.types import ModelPrice

    with_variants = info if variants and info.price_variants else None
    if isinstance(info.prices, ModelPrice):
        return _Model(info.id, _compile_prices(info.prices), (), with_variants)
    dated = tuple((c.constraint, _compile_prices(c.prices)) for c in info.prices)
    return _Model(info.id, dated[0][1] if dated else None, dated, with_variants)


def _compile_prices(model_price: ModelPrice) -> _Rates | None:
    """Compile one genai-prices ModelPrice; None if genai-prices would reject it."""
    from genai_prices.types import TieredPrices
    from genai_prices.units import _get_registry
    from genai_prices.validation import validate_priced_units

    registry = _get_registry()
    prices: dict[int, _Price] = {}
    counted: dict[str, _Price] = {}
    units = []
    for key, value in vars(model_price).items():
        if key.startswith("_") or value is None:
            continue
        try:
            units.append(registry.unit_for_price_key(key))
        except KeyError:
            continue  # genai-prices ignores price keys it does not know, too
        if key not in _PRICE_KEYS and key not in _COUNTED_KEYS:
            continue  # images, video, other tools: billed at their nearest priced unit
        if isinstance(value, TieredPrices):
            price: _Price = (
                value.base,
                tuple(sorted(((t.start, t.price) for t in value.tiers), reverse=True)),
            )
        elif isinstance(value, Decimal):
            price = (value, ())
        else:
            return None
        if key in _PRICE_KEYS:
            prices[_PRICE_KEYS[key]] = price
        else:
            counted[key] = price
    try:
        validate_priced_units(units, registry)
    except ValueError:
        return None
    if not units:
        # genai-prices lists free models (":free" variants, subscriptions) with no prices.
        prices = {_INPUT: (_ZERO, ()), _OUTPUT: (_ZERO, ())}
    elif _INPUT not in prices and _OUTPUT not in prices:
        return None  # priced per second, character or page: not something we meter
    return _Rates(prices, counted)


def _override_rates(override: PriceOverride) -> _Rates:
    if not isinstance(override, PriceOverride):
        raise ConfigError(f"price overrides must be PriceOverride values, got {override!r}")
    prices: dict[int, _Price] = {_INPUT: (override.input, ()), _OUTPUT: (override.output, ())}
    for unit, value in (
        (_CACHE_READ, override.cache_read),
        (_CACHE_WRITE, override.cache_write),
        (_CACHE_WRITE_1H, override.cache_write_1h),
        (_AUDIO_INPUT, override.input_audio),
        (_AUDIO_OUTPUT, override.output_audio),
    ):
        if value is not None:
            prices[unit] = (value, ())
    counted = {} if override.web_search is None else {_WEB_SEARCHES: (override.web_search, ())}
    return _Rates(prices, counted, frozenset({_WEB_SEARCHES, _AUDIO_INPUT, _AUDIO_OUTPUT}))
