"""A request's worst case, before the upstream is called.

Input tokens are counted with the model's tokenizer (`tokenomy.tokens`). The
output is the request's ``max_tokens`` (OpenAI ``max_completion_tokens`` or
``max_tokens``; Anthropic ``max_tokens``; a Responses request's
``max_output_tokens``), or, when the client gave none, the model's output limit
from `OUTPUT_LIMITS` (``caps.output_limits`` in the config adds to it) or
``caps.default_max_output`` (16384).

A Responses request's input is its ``instructions``, ``input`` items and
``tools`` (`tokenomy.responses_api`). What it brings that the gateway cannot see
(``previous_response_id``, stored prompts and items) is not in
the worst case, which no count of the request can cover; the settle charges the
usage the upstream reports, which counts it.

Prices come from the gateway's `PriceBook` through its public ``cost``: the
worst case is the cost of that usage, with every input token priced as a
one-hour cache write when the request asks for caching (Anthropic charges up
to 2x input for those), as a write of the lever's lifetime (5 minutes: 1.25x;
1 hour: 2x) on a deployment whose prompt-cache lever may mark it
(`tokenomy.pipeline.prompt_cache`), at the dearer service tier the request asks
for (OpenAI's ``service_tier: priority``, Anthropic's ``speed: fast``), except on
a deployment that sends its own tier (``service_tier``: never above standard). An
OpenAI-compatible upstream caches without being asked (OpenAI's GPT-5.6 and
later bill the writes at 1.25x input), so there every input token is priced as
a cache write when the model's write rate is the dearer. Counts that are only
estimates (Claude's tokenizer is not public) are scaled by
``caps.inexact_input_margin`` (1.2); each image in the prompt adds its model's
ceiling (`tokenomy.images.IMAGE_TOKENS_MAX`).

The worst case covers every upstream call the request may make and every answer
it may get: OpenAI's ``n`` answers of ``max_tokens`` each; with fallbacks, the
dearest of the models it may fall back to; for a cascade, every draft tier's
samples plus the tier that answers last (`Estimator.route` names the models of
a route; without it only the bound model is priced). A model of the route
without a price is left out of ``usd`` and flagged (``price_unknown``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from ..images import by_prefix, count_images, image_tokens_max
from ..pipeline.context import ANTHROPIC, CHAT_LIKE, OPENAI, Call
from ..pipeline.meter import embedding_count, prompt_count, text_inputs
from ..pricing import PriceBook
from ..translate._common import asks_for_cache
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


# The fields that cap a request's output, by operation: a Responses request's
# ``max_output_tokens`` counts its reasoning and its visible output alike.
_CHAT_OUTPUT = ("max_completion_tokens", "max_tokens")
_OUTPUT_FIELDS = {"responses": ("max_output_tokens",)}

# A public model name's (upstream model, pricing provider, price override key, upstream API).
Target = tuple[str, str | None, str | None, str]


@dataclass(frozen=True, slots=True)
class Estimate:
    input_tokens: int  # every prompt token of every upstream call the request may make
    output_tokens: int  # the most one answer may generate (its max_tokens)
    usd: int | None  # worst-case cost in counter units; None: no price known
    output_unit: Decimal | None  # USD per unit of max_tokens, every answer's (for clamping)
    input_usd: int | None  # the input side alone, in counter units
    answers: int = 1  # answers of up to output_tokens each (n, cascade samples and tiers)
    price_unknown: bool = False  # a model of the route has no price: usd leaves it out

    @property
    def total_output(self) -> int:
        return self.answers * self.output_tokens

    @property
    def tokens(self) -> int:
        """Every token of the worst case: the prompts plus every answer."""
        return self.input_tokens + self.total_output


def _combine(parts: list[Estimate], add: bool) -> Estimate:
    """Calls that all happen (``add``: a cascade's drafts, then its last tier), or of
    which one answers (a model and its fallbacks: the dearest of each)."""
    sum_or_max: Callable[[list[int]], int] = sum if add else max
    inp = sum_or_max([p.input_tokens for p in parts])
    out = max(p.output_tokens for p in parts)
    answers = sum_or_max([p.answers for p in parts])
    unknown = any(p.price_unknown or p.usd is None for p in parts)
    priced = [p for p in parts if p.usd is not None and p.input_usd is not None]
    if not priced:
        return Estimate(inp, out, None, None, None, answers, True)
    units = [p.output_unit or Decimal(0) for p in priced]
    return Estimate(
        inp,
        out,
        sum_or_max([p.usd or 0 for p in priced]),
        sum(units, Decimal(0)) if add else max(units),
        sum_or_max([p.input_usd or 0 for p in priced]),
        answers,
        unknown,
    )


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
        # Set by the gateway: a public model name's Target, and a cascade's default samples.
        self.route: Callable[[str], Target | None] | None = None
        self.cascade_samples = 1
        # Set by the gateway: the deployments whose requests the prompt-cache lever
        # may mark, and the lifetime it writes (their worst case writes the whole
        # prompt to the cache) ...
        self.marked: Mapping[str, str] = {}
        # ... and those that send their own service tier (never a dearer one than
        # standard: the client's ``priority`` does not reach the upstream).
        self.tiered: frozenset[str] = frozenset()

    def output_limit(self, model: str) -> int:
        found = self._limit_of.get(model)
        if found is None:
            found = by_prefix(self.limits, model, self.default_max_output)
            if len(self._limit_of) < 10_000:
                self._limit_of[model] = found
        return found

    def input_tokens(self, call: Call, model: str) -> int:
        body: Mapping[str, Any] = call.body
        images = 0
        try:
            if call.op == "embeddings":
                c = embedding_count(body, model)
            else:
                c = prompt_count(call, model)
                images = count_images(body)
            tokens, exact = c.tokens, c.exact
        except (TypeError, ValueError):
            return 0  # validation already passed; an odd shape is counted as empty
        if not exact:
            tokens = math.ceil(tokens * self.margin)
        if call.op != "embeddings" and images:
            tokens += images * image_tokens_max(model)  # the prompt counted them as nothing
        return tokens

    def __call__(
        self, call: Call, *, max_output: int | None = None, input_tokens: int | None = None
    ) -> Estimate:
        """The worst case; ``input_tokens`` skips counting again (when clamping a
        request that has one model to call)."""
        rec = call.record
        prov = call.provider
        here: Target = (
            rec.served_model or rec.requested_model,
            prov.pricing_provider if prov else None,
            rec.deployment,
            prov.api if prov else call.api,
        )
        n = call.body.get("n") if call.api != ANTHROPIC and call.op in CHAT_LIKE else None
        answers = _count(n)
        if call.op == "completions":  # n answers to each prompt, of best_of generated
            answers = max(answers, _count(call.body.get("best_of")))
            answers *= max(len(text_inputs(call.body.get("prompt"))), 1)
        plan = call.route
        if plan is None or self.route is None or (plan.cascade is None and len(plan.targets) < 2):
            return self._one(call, here, max_output, input_tokens, answers=answers)
        drafts: list[Estimate] = []
        finals: list[Estimate] = []
        names = list(plan.targets[1:])
        if plan.cascade is not None:
            samples = plan.cascade.samples or self.cascade_samples
            tiers = list(plan.tiers)
            for i, tier in enumerate(tiers[:-1]):
                t = here if i == 0 else self.route(tier)
                if t is not None:  # one call asking for n answers, or one call per sample
                    calls = 1 if t[3] == "openai" else samples
                    drafts.append(self._one(call, t, max_output, None, calls, samples))
            last = tiers[-1]
            names = plan.targets[plan.targets.index(last) :] if last in plan.targets else [last]
        else:
            finals.append(self._one(call, here, max_output, None, answers=answers))
        for name in names:
            t = self.route(name)
            if t is not None:
                finals.append(self._one(call, t, max_output, None, answers=answers))
        if not finals:
            return _combine(drafts, add=True)
        return _combine([*drafts, _combine(finals, add=False)], add=True)

    def _one(
        self,
        call: Call,
        target: Target,
        max_output: int | None,
        input_tokens: int | None,
        calls: int = 1,
        answers: int = 1,
    ) -> Estimate:
        """The worst case of ``calls`` calls of one model giving ``answers`` answers."""
        model, provider, override, api = target
        inp = self.input_tokens(call, model) if input_tokens is None else input_tokens
        out = 0 if call.op == "embeddings" else (max_output or self.requested_output(call, model))
        cached = inp if call.api == ANTHROPIC and asks_for_cache(call.body) else 0
        ttl = None  # the lifetime the prompt-cache lever writes, where it may mark
        if not cached and api == ANTHROPIC and override is not None:
            ttl = self.marked.get(override)
        w5m = inp * calls if ttl == "5m" else 0
        w1h = inp * calls if cached or ttl == "1h" else 0
        usage = Usage(inp * calls, out * answers, cache_write_tokens=w5m,
                      cache_write_1h_tokens=w1h,
                      price_context=() if override in self.tiered else _dearer_tier(call))  # fmt: skip
        cost = self.prices.cost(usage, model=model, provider=provider, override_key=override)
        if api == OPENAI and call.op != "embeddings" and not cached:
            # Cached without being asked: a write may cost more than fresh input
            # (or, on some models' data, less: then the fresh input is the worst).
            written = replace(usage, cache_write_tokens=usage.input_tokens)
            dearer = self.prices.cost(
                written, model=model, provider=provider, override_key=override
            )
            if cost.total is not None and dearer.total is not None and dearer.total > cost.total:
                cost = dearer
        if cost.total is None or cost.output is None:
            return Estimate(inp * calls, out, None, None, None, answers, True)
        # Every output token is priced at one rate (the tier the prompt selects).
        unit = cost.output / out if out else None
        usd, input_usd = usd_to_units(cost.total), usd_to_units(cost.total - cost.output)
        return Estimate(inp * calls, out, usd, unit, input_usd, answers)

    def requested_output(self, call: Call, model: str) -> int:
        body = call.body
        for name in _OUTPUT_FIELDS.get(call.op, _CHAT_OUTPUT):
            v = body.get(name)
            if isinstance(v, int) and not isinstance(v, bool) and v > 0:
                return v
        return self.output_limit(model)


def _count(value: Any) -> int:
    """A request's ``n`` (or ``best_of``): an integer above 1, else 1."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 1 else 1


def set_max_output(call: Call, tokens: int) -> None:
    """Lower the request's output limit (clamp mode), in the field the client used."""
    body = call.body
    if call.op == "responses":
        body["max_output_tokens"] = tokens
    elif call.api != ANTHROPIC and isinstance(body.get("max_completion_tokens"), int):
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
