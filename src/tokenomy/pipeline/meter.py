"""Stage 5: turn usage into money. Provider usage is already normalised; when the
upstream reported none, count the tokens here and mark the record estimated."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from ..config import Deployment
from ..images import image_tokens_estimate
from ..pricing import Cost, PriceBook, PriceOverride
from ..responses_api import as_messages, as_tools
from ..tokens import TokenCount, count_anthropic_request, count_chat_messages, count_text
from ..usage import Usage, price_context
from .context import ANTHROPIC, OPENAI, TIERED_OPS, Call
from .prompt_cache import STATE as PROMPT_CACHE
from .prompt_cache import Marked


def overrides_from(deployments: tuple[Deployment, ...]) -> dict[str, PriceOverride]:
    """Each deployment's configured price, by the deployment's name."""
    return {dep.name: dep.price for dep in deployments if dep.price is not None}


def prompt_count(call: Call, model: str) -> TokenCount:
    """The prompt of a chat request (OpenAI chat or Anthropic messages) or of a
    Responses request, counted with ``model``'s tokenizer. A Responses prompt is
    counted by the chat recipe (`tokenomy.responses_api.as_messages`): an estimate,
    since the API's framing is not documented."""
    body: dict[str, Any] = call.body
    if call.api == ANTHROPIC:
        return count_anthropic_request(body)
    if call.op == "completions":  # the legacy API: the prompt as it is, no framing
        return inputs_count(body.get("prompt"), model)
    if call.op == "responses":
        c = count_chat_messages(as_messages(body), model, tools=as_tools(body))
        return TokenCount(c.tokens, False)
    return count_chat_messages(
        body.get("messages") or [],
        model,
        tools=_list_or_none(body.get("tools")),
        functions=_list_or_none(body.get("functions")),  # the deprecated form of tools
    )


def _list_or_none(value: Any) -> list[Any] | None:
    return value if isinstance(value, list) else None


def embedding_count(body: Mapping[str, Any], model: str) -> TokenCount:
    """The ``input`` of an embeddings request, counted with ``model``'s tokenizer."""
    return inputs_count(body.get("input"), model)


def text_inputs(value: Any) -> list[Any]:
    """An embeddings ``input`` or a legacy completion's ``prompt``, as a list of
    inputs: strings, or token-id arrays (one given flat is one input)."""
    items = [value] if isinstance(value, str) else list(value) if isinstance(value, list) else []
    if items and all(isinstance(t, int) for t in items):
        items = [items]  # one input given as token ids
    return items


def inputs_count(value: Any, model: str) -> TokenCount:
    """`text_inputs` counted with ``model``'s tokenizer: each string counted, each
    token-id array its length."""
    items = text_inputs(value)
    total = TokenCount(0, True)
    for item in items:
        if isinstance(item, str):
            total += count_text(item, model)
        elif isinstance(item, list):
            total += TokenCount(len(item), True)
    return total


def estimate_usage(call: Call, output_text: str) -> Usage:
    """Count the prompt and the generated text with the model's tokenizer; each
    image in the prompt adds its likely cost (`tokenomy.images`)."""
    model = call.record.served_model or call.record.requested_model
    body: dict[str, Any] = call.body
    if call.op == "embeddings":
        return Usage(input_tokens=embedding_count(body, model).tokens, estimated=True)
    prompt = prompt_count(call, model)
    out = count_text(output_text, model) if output_text else None
    return Usage(
        input_tokens=prompt.tokens + image_tokens_estimate(body, model),
        output_tokens=out.tokens if out else 0,
        estimated=True,
    )


def with_counted_output(call: Call, usage: Usage, output_text: str) -> Usage:
    """``usage`` from a stream cut short before the upstream's final count (Anthropic
    reports the prompt first, the output at the end): the output is the generated
    text counted, unless the upstream already reported more, and is an estimate."""
    model = call.record.served_model or call.record.requested_model
    counted = count_text(output_text, model).tokens if output_text else 0
    return replace(usage, output_tokens=max(usage.output_tokens, counted), estimated=True)


class Meter:
    name = "meter"

    def __init__(self, prices: PriceBook) -> None:
        self.prices = prices

    def __call__(self, call: Call, usage: Usage) -> None:
        rec = call.record
        rec.usage = usage
        cost = self.price(call, usage)
        rec.cost_usd = cost.total
        rec.price_unknown = cost.price_unknown
        tier = call.provider.deployment.service_tier if call.provider else None
        if tier is not None and call.op in TIERED_OPS:
            rec.decisions["tier"] = self._tier(call, usage, cost.total, tier)
        marked = call.levers.get(PROMPT_CACHE)
        if isinstance(marked, Marked) and marked.deployment == rec.deployment:
            rec.decisions[PROMPT_CACHE] = self._prompt_cache(call, usage, cost.total, marked)

    def price(self, call: Call, usage: Usage) -> Cost:
        """What ``usage`` costs at the call's served model and deployment."""
        rec = call.record
        return self.prices.cost(
            usage,
            model=rec.served_model or rec.requested_model,
            provider=call.provider.pricing_provider if call.provider else None,
            override_key=rec.deployment,
            # Dated and time-of-day prices are those of the request's start, not of
            # the moment the meter runs (a long stream can end after a price change).
            at=datetime.fromtimestamp(rec.ts, UTC),
        )

    def _prompt_cache(
        self, call: Call, usage: Usage, cost: Decimal | None, marked: Marked
    ) -> dict[str, Any]:
        """The prompt-cache lever's decision: where it marked the request, what was
        read and written, and the saving: the same prompt without a cache (every
        token plain input) minus what it cost; negative when it only wrote."""
        out: dict[str, Any] = {
            "mode": marked.mode,
            "marked": list(marked.where),
            "read_tokens": usage.cache_read_tokens,
            "written_tokens": usage.cache_write_tokens + usage.cache_write_1h_tokens,
        }
        if cost is not None:
            plain = replace(usage, cache_read_tokens=0, cache_write_tokens=0,
                            cache_write_1h_tokens=0)  # fmt: skip
            base = self.price(call, plain).total
            if base is not None and base != cost:
                out["saved_usd"] = format(base - cost, "f")
        return out

    def _tier(self, call: Call, usage: Usage, cost: Decimal | None, imposed: str) -> dict[str, Any]:
        """The tier lever's decision: the deployment sent ``imposed``; the saving is
        what the same usage costs at the tier the client asked for (standard when
        it asked none) minus what it cost at the tier that served it."""
        served = dict(usage.price_context).get("service_tier", "default")
        out: dict[str, Any] = {"imposed": imposed, "served": served}
        asked = call.body.get("service_tier") if call.api == OPENAI else None
        reference = replace(usage, price_context=price_context("service_tier", asked))
        if cost is None or reference.price_context == usage.price_context:
            return out
        base = self.price(call, reference)
        if base.total is not None and base.total != cost:
            out["saved_usd"] = format(base.total - cost, "f")
        return out
