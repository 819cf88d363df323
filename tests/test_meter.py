"""The meter stage: a served request's usage priced as of the request."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from tokenomy.config import Deployment
from tokenomy.pipeline.context import Call
from tokenomy.pipeline.meter import Meter, estimate_usage, prompt_count
from tokenomy.pricing import PriceBook
from tokenomy.providers import create_provider
from tokenomy.tokens import count_chat_messages, count_text
from tokenomy.usage import Usage

M = Decimal(1_000_000)


def served(model: str, provider: str, at: datetime) -> Call:
    call = Call("openai", "chat", "/v1/chat/completions", {"model": model}, {})
    call.provider = create_provider(Deployment(model, provider, api_key="k"))
    call.record.served_model = model
    call.record.deployment = model
    call.record.ts = at.timestamp()
    return call


def test_a_request_is_priced_at_the_time_it_was_made_not_when_metered() -> None:
    # o3 cost $10 in / $40 out until its 2025-06-10 price cut ($2 / $8 after): a
    # request made before the cut is priced as then, whenever the meter runs.
    call = served("o3", "openai", datetime(2025, 1, 1, 12, tzinfo=UTC))
    Meter(PriceBook())(call, Usage(input_tokens=1000, output_tokens=1000))
    assert call.record.cost_usd == (1000 * 10 + 1000 * 40) / M
    assert call.record.price_unknown is False


def test_time_of_day_prices_use_the_request_start() -> None:
    # deepseek-chat in the snapshot: standard 00:30-16:30 UTC, half price outside.
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    day = served("deepseek-chat", "deepseek", datetime(2025, 9, 1, 16, 29, 59, tzinfo=UTC))
    night = served("deepseek-chat", "deepseek", datetime(2025, 9, 1, 16, 30, tzinfo=UTC))
    meter = Meter(PriceBook())
    meter(day, usage)
    meter(night, usage)
    assert day.record.cost_usd == Decimal("0.27") + Decimal("1.1")
    assert night.record.cost_usd == Decimal("0.135") + Decimal("0.55")


WEATHER_FUNCTION = {
    "name": "get_current_weather",
    "description": "Get the current weather in a given location",
    "parameters": {
        "type": "object",
        "properties": {"location": {"type": "string", "description": "The city and state"}},
    },
}


def test_legacy_functions_are_counted_in_the_estimated_prompt() -> None:
    # `functions` (the deprecated form of `tools`) reaches the prompt all the same:
    # left out, the prompt was under-counted and claimed exact.
    messages = [{"role": "user", "content": "What's the weather like in Paris?"}]
    bare = Call(
        "openai", "chat", "/v1/chat/completions", {"model": "gpt-4o", "messages": messages}, {}
    )
    with_functions = Call(
        "openai",
        "chat",
        "/v1/chat/completions",
        {"model": "gpt-4o", "messages": messages, "functions": [WEATHER_FUNCTION]},
        {},
    )
    as_tools = count_chat_messages(
        messages, "gpt-4o", tools=[{"type": "function", "function": WEATHER_FUNCTION}]
    )
    assert prompt_count(bare, "gpt-4o").exact is True
    assert prompt_count(with_functions, "gpt-4o") == as_tools
    assert as_tools.exact is False
    with_functions.record.requested_model = "gpt-4o"
    assert estimate_usage(with_functions, "").input_tokens == as_tools.tokens


def test_an_embeddings_request_without_upstream_usage_counts_every_input_form() -> None:
    """Token-id inputs count as their length, like the caps' worst case: an upstream
    that reports no usage must not leave them unbilled."""
    model = "text-embedding-3-small"
    words = count_text("one two three", model).tokens
    for given, tokens in (
        ("one two three", words),
        (["one two three", "one two three"], 2 * words),
        ([11, 22, 33, 44], 4),
        ([[11, 22], [33, 44, 55]], 5),
    ):
        call = Call("openai", "embeddings", "/v1/embeddings", {"model": model, "input": given}, {})
        call.record.requested_model = call.record.served_model = model
        usage = estimate_usage(call, "")
        assert (usage.input_tokens, usage.output_tokens, usage.estimated) == (tokens, 0, True)


def _chat(api: str, model: str, content: list[dict[str, object]]) -> Call:
    body: dict[str, object] = {"model": model, "messages": [{"role": "user", "content": content}]}
    call = Call(api, "chat", "/v1/chat/completions", body, {})
    call.record.requested_model = call.record.served_model = model
    return call


def test_images_count_in_an_estimated_prompt() -> None:
    """An upstream that reports no usage: each image adds what a 1024x1024 image
    costs the model at the request's detail (the prompt text counts it as nothing),
    and the record is an estimate."""
    text = {"type": "text", "text": "What is in this picture?"}
    url = "data:image/png;base64,iVBORw0KGgo="

    def image_url(detail: str | None = None) -> dict[str, object]:
        part: dict[str, object] = {"url": url}
        if detail:
            part["detail"] = detail
        return {"type": "image_url", "image_url": part}

    claude_image = {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                "data": "iVBORw0KGgo="}}  # fmt: skip
    for api, model, images, extra in [
        ("openai", "gpt-4o", [image_url()], 765),  # 85 + 4 tiles of 170 (high, auto)
        ("openai", "gpt-4o", [image_url("high"), image_url("low")], 765 + 85),
        ("openai", "gpt-4o-mini", [image_url("auto")], 2833 + 4 * 5667),
        ("openai", "gpt-4.1-mini", [image_url("low")], 1659),  # patches ignore detail
        ("anthropic", "claude-sonnet-4-5", [claude_image], 1398),  # 1024 * 1024 / 750
        ("openai", "llama-local", [image_url()], 1398),  # others: the Claude figure
    ]:
        plain = estimate_usage(_chat(api, model, [text]), "")
        usage = estimate_usage(_chat(api, model, [text, *images]), "")
        assert usage.input_tokens - plain.input_tokens == extra, (model, images)
        assert usage.estimated
