"""A request's worst case, before the upstream is called.

Input tokens are counted with the model's tokenizer (`tokenomy.tokens`). The
output is the request's ``max_tokens`` (OpenAI ``max_completion_tokens`` or
``max_tokens``; Anthropic ``max_tokens``), or, when the client gave none, the
model's output limit from `OUTPUT_LIMITS` (``caps.output_limits`` in the config
adds to it) or ``caps.default_max_output`` (16384).

Prices come from the gateway's `PriceBook` through its public ``cost``: the
worst case is the cost of that usage, with every input token priced as a
one-hour cache write when the request asks for caching (Anthropic charges up
to 2x input for those), at the dearer service tier the request asks for
(OpenAI's ``service_tier: priority``, Anthropic's ``speed: fast``). Counts that are only estimates (Claude's tokenizer is
not public) are scaled by ``caps.inexact_input_margin`` (1.2).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ..pipeline.context import ANTHROPIC, Call
from ..pipeline.meter import prompt_count
from ..pricing import PriceBook
from ..tokens import count_text
from ..translate._common import cache_breakpoints
from ..usage import Usage, price_context
from .counters import usd_to_units

DEFAULT_MAX_OUTPUT = 16384

# Output token limits of common models (provider documentation), by name prefix;
# the longest matching prefix wins.
OUTPUT_LIMITS: dict[str, int] = {
    "gpt-4o": 16384,
    "gpt-4o-mini": 16384,
    "gpt-4.1": 32768,
    "gpt-4-turbo": 4096,
    "gpt-3.5-turbo": 4096,
    "gpt-5": 128000,
    "o1": 100000,
    "o3": 100000,
    "o4-mini": 100000,
    "claude-3-5-haiku": 8192,
    "claude-3-7-sonnet": 64000,
    "claude-sonnet-4": 64000,
    "claude-opus-4": 32000,
    "claude-haiku-4": 64000,
}


@dataclass(frozen=True, slots=True)
class Estimate:
    input_tokens: int
    output_tokens: int  # the most the upstream may generate
    usd: int | None  # worst-case cost in counter units; None: no price known
    output_unit: Decimal | None  # USD per output token (for clamping)
    input_usd: int | None  # the input side alone, in counter units


class Estimator:
    def __init__(
        self,
        prices: PriceBook,
        *,
        output_limits: Mapping[str, int] | None = None,
        default_max_output: int = DEFAULT_MAX_OUTPUT,
        inexact_input_margin: Decimal = Decimal("1.2"),
    ) -> None:
        self.prices = prices
        self.limits = {**OUTPUT_LIMITS, **(output_limits or {})}
        self.default_max_output = default_max_output
        self.margin = inexact_input_margin
        self._limit_of: dict[str, int] = {}

    def output_limit(self, model: str) -> int:
        found = self._limit_of.get(model)
        if found is None:
            name = model.rsplit("/", 1)[-1].lower()
            best = ""
            for prefix in self.limits:
                if name.startswith(prefix) and len(prefix) > len(best):
                    best = prefix
            found = self.limits[best] if best else self.default_max_output
            if len(self._limit_of) < 10_000:
                self._limit_of[model] = found
        return found

    def input_tokens(self, call: Call, model: str) -> int:
        body: Mapping[str, Any] = call.body
        try:
            if call.op == "embeddings":
                inp = body.get("input")
                items = [inp] if isinstance(inp, str) else list(inp or [])
                if items and all(isinstance(t, int) for t in items):
                    items = [items]  # one input given as token ids
                counts = [count_text(t, model) for t in items if isinstance(t, str)]
                tokens, exact = sum(c.tokens for c in counts), all(c.exact for c in counts)
                tokens += sum(len(t) for t in items if isinstance(t, list))  # token arrays
            else:
                c = prompt_count(call, model)
                tokens, exact = c.tokens, c.exact
        except (TypeError, ValueError):
            return 0  # validation already passed; an odd shape is counted as empty
        if not exact:
            tokens = math.ceil(tokens * self.margin)
        return tokens

    def __call__(
        self, call: Call, *, max_output: int | None = None, input_tokens: int | None = None
    ) -> Estimate:
        """The worst case; ``input_tokens`` skips counting again (when clamping)."""
        rec = call.record
        model = rec.served_model or rec.requested_model
        inp = self.input_tokens(call, model) if input_tokens is None else input_tokens
        out = 0 if call.op == "embeddings" else (max_output or self.requested_output(call, model))
        cached = inp if call.api == ANTHROPIC and _asks_for_cache(call.body) else 0
        provider = call.provider.pricing_provider if call.provider else None
        tier = _dearer_tier(call)
        cost = self.prices.cost(
            Usage(inp, out, cache_write_1h_tokens=cached, price_context=tier),
            model=model,
            provider=provider,
            override_key=rec.deployment,
        )
        if cost.total is None or cost.output is None:
            return Estimate(inp, out, None, None, None)
        # Every output token is priced at one rate (the tier the prompt selects).
        unit = cost.output / out if out else None
        return Estimate(
            inp, out, usd_to_units(cost.total), unit, usd_to_units(cost.total - cost.output)
        )

    def requested_output(self, call: Call, model: str) -> int:
        body = call.body
        for name in ("max_completion_tokens", "max_tokens"):
            v = body.get(name)
            if isinstance(v, int) and not isinstance(v, bool) and v > 0:
                return v
        return self.output_limit(model)


def set_max_output(call: Call, tokens: int) -> None:
    """Lower the request's output limit (clamp mode), in the field the client used."""
    body = call.body
    if call.api != ANTHROPIC and isinstance(body.get("max_completion_tokens"), int):
        body["max_completion_tokens"] = tokens
    else:
        body["max_tokens"] = tokens


def _dearer_tier(call: Call) -> tuple[tuple[str, str], ...]:
    """The ``price_context`` of a dearer tier the request asks for: the upstream may
    serve it (and the price is then that tier's, `tokenomy.usage`)."""
    if call.api == ANTHROPIC:
        return price_context("speed", call.body.get("speed"))
    tier = call.body.get("service_tier")
    return price_context("service_tier", tier) if tier == "priority" else ()


def _asks_for_cache(body: Mapping[str, Any]) -> bool:
    """Whether the request marks anything for caching (see `cache_breakpoints`)."""
    return "cache_control" in body or next(cache_breakpoints(body), None) is not None
