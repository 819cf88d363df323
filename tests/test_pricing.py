"""Exact prices: hand-computed from the published per-million-token prices."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import tokenomy
from tokenomy.config import load_settings
from tokenomy.errors import ConfigError, InvalidRequest
from tokenomy.pricing import Cost, PriceBook, PriceOverride
from tokenomy.usage import Usage

AFTER_O3_PRICE_CUT = datetime(2025, 7, 1, 12, tzinfo=UTC)
BEFORE_O3_PRICE_CUT = datetime(2025, 1, 1, 12, tzinfo=UTC)
M = Decimal(1_000_000)


@pytest.fixture(scope="module")
def book() -> PriceBook:
    return PriceBook()


def assert_decimal(cost: Cost) -> None:
    assert type(cost.total) is Decimal
    assert type(cost.input) is Decimal
    assert type(cost.output) is Decimal
    assert cost.total == cost.input + cost.output


def test_gpt_4o_cached_prompt_tokens_are_a_subset_of_input(book: PriceBook) -> None:
    # OpenAI: prompt_tokens=1000 of which cached_tokens=200; $2.50 in, $1.25 cached, $10 out.
    usage = Usage(input_tokens=1000, cache_read_tokens=200, output_tokens=300)
    cost = book.cost(usage, model="gpt-4o", provider="openai")
    assert_decimal(cost)
    assert cost.input == (800 * Decimal("2.5") + 200 * Decimal("1.25")) / M
    assert cost.output == 300 * Decimal(10) / M
    assert cost.total == Decimal("0.00525")
    assert (cost.source, cost.matched_model, cost.price_unknown) == (
        "genai-prices",
        "gpt-4o",
        False,
    )


def test_anthropic_cache_reads_and_5m_and_1h_writes(book: PriceBook) -> None:
    # claude-sonnet-4-5: $3 in, $0.30 read, $3.75 5-minute write, $6 1-hour write, $15 out.
    usage = Usage(
        input_tokens=1000,  # 100 uncached + 500 read + 200 5m write + 200 1h write
        cache_read_tokens=500,
        cache_write_tokens=200,
        cache_write_1h_tokens=200,
        output_tokens=100,
    )
    cost = book.cost(usage, model="claude-sonnet-4-5", provider="anthropic")
    assert_decimal(cost)
    assert cost.input == (100 * 3 + 500 * Decimal("0.3") + 200 * Decimal("3.75") + 200 * 6) / M
    assert cost.output == Decimal("0.0015")
    assert cost.total == Decimal("0.0039")


def test_5m_write_is_1_25x_1h_write_2x_and_read_0_1x_input(book: PriceBook) -> None:
    def input_cost(read: int = 0, write_5m: int = 0, write_1h: int = 0) -> Decimal | None:
        usage = Usage(  # 100k: below the 200k long-context tier
            input_tokens=100_000,
            cache_read_tokens=read,
            cache_write_tokens=write_5m,
            cache_write_1h_tokens=write_1h,
        )
        return book.cost(usage, model="claude-sonnet-4-5", provider="anthropic").total

    assert input_cost() == Decimal("0.3")
    assert input_cost(write_5m=100_000) == Decimal("0.375")
    assert input_cost(write_1h=100_000) == Decimal("0.6")
    assert input_cost(read=100_000) == Decimal("0.03")


def test_reasoning_tokens_are_billed_as_output(book: PriceBook) -> None:
    # o3 after its 2025-06-10 price cut: $2 in, $8 out; reasoning is part of the output.
    with_reasoning = Usage(input_tokens=1000, output_tokens=2000, reasoning_tokens=1500)
    cost = book.cost(with_reasoning, model="o3", provider="openai", at=AFTER_O3_PRICE_CUT)
    assert cost.total == (1000 * 2 + 2000 * 8) / M == Decimal("0.018")
    without = Usage(input_tokens=1000, output_tokens=2000)
    assert book.cost(without, model="o3", provider="openai", at=AFTER_O3_PRICE_CUT) == cost


def test_dated_prices_follow_the_request_time(book: PriceBook) -> None:
    usage = Usage(input_tokens=1000, output_tokens=1000)
    before = book.cost(usage, model="o3", provider="openai", at=BEFORE_O3_PRICE_CUT)
    after = book.cost(usage, model="o3", provider="openai", at=AFTER_O3_PRICE_CUT)
    assert before.total == (1000 * 10 + 1000 * 40) / M
    assert after.total == (1000 * 2 + 1000 * 8) / M


def test_time_of_day_prices(book: PriceBook) -> None:
    # deepseek-chat in the snapshot: standard 00:30-16:30 UTC, half price at night.
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    day = book.cost(
        usage, model="deepseek-chat", provider="deepseek", at=datetime(2025, 9, 1, 12, tzinfo=UTC)
    )
    night = book.cost(
        usage, model="deepseek-chat", provider="deepseek", at=datetime(2025, 9, 1, 20, tzinfo=UTC)
    )
    assert day.total == Decimal("0.27") + Decimal("1.1")
    assert night.total == Decimal("0.135") + Decimal("0.55")


@pytest.mark.parametrize(
    ("input_tokens", "input_rate", "output_rate"),
    [(200_000, 3, Decimal(15)), (200_001, 6, Decimal("22.5"))],
)
def test_long_context_tier_applies_to_all_tokens_above_the_threshold(
    book: PriceBook, input_tokens: int, input_rate: int, output_rate: Decimal
) -> None:
    usage = Usage(input_tokens=input_tokens, output_tokens=1000)
    cost = book.cost(usage, model="claude-sonnet-4-5", provider="anthropic")
    assert cost.input == input_tokens * input_rate / M
    assert cost.output == 1000 * output_rate / M


def test_tier_is_chosen_by_total_input_including_cache(book: PriceBook) -> None:
    # gemini-2.5-pro: $1.25/$0.125 cached/$10 up to 200k prompt tokens, $2.50/$0.25/$15 above.
    usage = Usage(input_tokens=210_000, cache_read_tokens=200_000, output_tokens=1000)
    cost = book.cost(usage, model="gemini-2.5-pro", provider="google")
    assert cost.input == (10_000 * Decimal("2.5") + 200_000 * Decimal("0.25")) / M
    assert cost.output == 1000 * Decimal(15) / M


def test_per_request_prices_count_in_the_total(book: PriceBook) -> None:
    # perplexity sonar: $1 in, $1 out, $12 per thousand requests.
    cost = book.cost(
        Usage(input_tokens=1000, output_tokens=1000), model="sonar", provider="perplexity"
    )
    assert cost.input == cost.output == Decimal("0.001")
    assert cost.total == Decimal("0.014")


def test_free_models_cost_zero_and_are_known(book: PriceBook) -> None:
    cost = book.cost(
        Usage(input_tokens=1000, output_tokens=1000),
        model="deepseek/deepseek-r1:free",
        provider="openrouter",
    )
    assert cost.total == 0
    assert cost.price_unknown is False


@pytest.mark.parametrize(
    ("provider", "model", "matched"),
    [
        ("azure", "gpt-4o", "gpt-4o"),  # azure falls back to openai's prices
        ("groq", "llama-3.3-70b-versatile", "llama-3.3-70b-versatile"),
        ("xai", "grok-3", "grok-3"),
        ("vertex", "gemini-2.5-pro", "gemini-2.5-pro"),
        ("mistral", "mistral-large-latest", "mistral-large"),
        ("openai", "gpt-4o-2024-08-06", "gpt-4o"),
        (None, "gpt-4o", "gpt-4o"),
        ("vllm", "claude-sonnet-4-5", "claude-sonnet-4-5"),  # self-hosted: model-only match
        ("some-new-cloud", "gpt-4o-mini", "gpt-4o-mini"),  # unknown provider: model-only
    ],
)
def test_provider_names_map_to_genai_prices(
    book: PriceBook, provider: str | None, model: str, matched: str
) -> None:
    cost = book.cost(Usage(input_tokens=10, output_tokens=10), model=model, provider=provider)
    assert cost.matched_model == matched
    assert book.is_known(model, provider)


@pytest.mark.parametrize(
    ("provider", "model"),
    [("ollama", "llama3"), ("openai", "not-a-model"), ("llamacpp", "my-finetune"), (None, "")],
)
def test_unknown_price_is_none_never_zero(
    book: PriceBook, provider: str | None, model: str
) -> None:
    cost = book.cost(Usage(input_tokens=10, output_tokens=10), model=model, provider=provider)
    assert cost == Cost(None, None, None, True, "unknown", None)
    assert not book.is_known(model, provider)
    assert book.input_price_per_token(model, provider) is None
    assert book.output_price_per_token(model, provider) is None


def test_models_priced_in_other_units_are_unknown(book: PriceBook) -> None:
    assert not book.is_known("whisper-1", "openai")  # priced per audio hour


def test_override_takes_precedence_over_genai_prices() -> None:
    book = PriceBook({"gpt-4o": PriceOverride(input=Decimal("1"), output=Decimal("2"))})
    usage = Usage(input_tokens=1000, cache_read_tokens=400, output_tokens=1000)
    cost = book.cost(usage, model="gpt-4o", provider="openai")
    # No cache_read override: cached tokens are billed at the input price.
    assert cost == Cost(
        Decimal("0.003"), Decimal("0.001"), Decimal("0.002"), False, "override", "gpt-4o"
    )


def test_override_key_names_a_deployment() -> None:
    negotiated = PriceOverride(
        input=Decimal("0.5"),
        output=Decimal("1.5"),
        cache_read=Decimal("0.05"),
        cache_write=Decimal("0.625"),
        cache_write_1h=Decimal("1"),
    )
    book = PriceBook({"team-llama": negotiated})
    usage = Usage(
        input_tokens=4000,
        cache_read_tokens=1000,
        cache_write_tokens=1000,
        cache_write_1h_tokens=1000,
        output_tokens=1000,
    )
    cost = book.cost(usage, model="llama3", provider="vllm", override_key="team-llama")
    expected_input = (
        1000 * Decimal("0.5") + 1000 * Decimal("0.05") + 1000 * Decimal("0.625") + 1000
    ) / M
    assert cost.input == expected_input
    assert cost.output == Decimal("0.0015")
    assert (cost.source, cost.matched_model) == ("override", "team-llama")
    assert book.is_known("llama3", "vllm", override_key="team-llama")
    assert not book.is_known("llama3", "vllm")
    # An override_key without an override falls back to the model's own price.
    assert book.cost(usage, model="gpt-4o", override_key="nope").source == "genai-prices"


def test_1h_writes_without_their_own_override_use_the_write_price() -> None:
    book = PriceBook(
        {"m": PriceOverride(input=Decimal(1), output=Decimal(1), cache_write=Decimal(2))}
    )
    cost = book.cost(Usage(input_tokens=1000, cache_write_1h_tokens=1000), model="m")
    assert cost.input == Decimal("0.002")


def test_price_override_accepts_only_exact_values() -> None:
    with pytest.raises(ConfigError):
        PriceOverride(input=2.5, output=Decimal(1))  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        PriceOverride(input=Decimal("-1"), output=Decimal(1))
    with pytest.raises(ConfigError):
        PriceOverride(input=Decimal("NaN"), output=Decimal(1))
    parsed = PriceOverride.parse({"input": "2.50", "output": 10, "cache_read": 1.25})
    assert parsed == PriceOverride(Decimal("2.50"), Decimal(10), Decimal("1.25"))
    assert all(type(v) is Decimal for v in (parsed.input, parsed.output, parsed.cache_read))
    with pytest.raises(ConfigError, match="output"):
        PriceOverride.parse({"input": "1"})
    with pytest.raises(ConfigError, match="unknown"):
        PriceOverride.parse({"input": "1", "output": "1", "cached": "1"})
    with pytest.raises(ConfigError):
        PriceOverride.parse({"input": "one", "output": "1"})
    with pytest.raises(ConfigError):
        PriceBook({"m": {"input": "1", "output": "1"}})  # type: ignore[dict-item]


@pytest.mark.parametrize("typo", ["cached_input", "cache_write_5m", "cache_reads"])
def test_a_misspelt_price_in_config_is_refused_not_ignored(tmp_path: Path, typo: str) -> None:
    """Ignored, a negotiated cache price would bill those tokens at the input price:
    5-minute writes, 1.25x input at Anthropic, would be undercharged."""
    config = tmp_path / "tokenomy.yaml"
    config.write_text(
        "models:\n  - name: claude-*\n    provider: anthropic\n"
        f"    price: {{input: 3, output: 15, {typo}: 3.75}}\n"
    )
    with pytest.raises(ConfigError, match=typo):
        load_settings(config, env={})
    config.write_text(
        "models:\n  - name: claude-*\n    provider: anthropic\n"
        "    price: {input: 3, output: 15, cache_write: 3.75, cache_write_1h: 6}\n"
    )
    price = load_settings(config, env={}).deployments[0].price
    assert price is not None and price.cache_write == Decimal("3.75")


def test_refuse_unknown() -> None:
    strict = PriceBook({"local": PriceOverride(Decimal(0), Decimal(0))}, refuse_unknown=True)
    with pytest.raises(InvalidRequest) as caught:
        strict.check_servable("llama3", "ollama")
    assert caught.value.code == "price_unknown"
    assert caught.value.status == 400
    assert "llama3" in caught.value.message
    strict.check_servable("gpt-4o", "openai")
    strict.check_servable("llama3", "ollama", override_key="local")
    PriceBook().check_servable("llama3", "ollama")  # lenient by default


def test_price_per_token(book: PriceBook) -> None:
    assert book.input_price_per_token("gpt-4o", "openai") == Decimal("0.0000025")
    assert book.output_price_per_token("gpt-4o", "openai") == Decimal("0.00001")
    # Without a prompt size, the worst-case (highest) tier.
    assert book.input_price_per_token("claude-sonnet-4-5", "anthropic") == Decimal(6) / M
    assert book.output_price_per_token("claude-sonnet-4-5", "anthropic") == Decimal("22.5") / M
    small = book.output_price_per_token("claude-sonnet-4-5", "anthropic", input_tokens=1000)
    assert small == Decimal(15) / M
    overridden = PriceBook({"x": PriceOverride(Decimal(4), Decimal(8))})
    assert overridden.output_price_per_token("x") == Decimal("0.000008")
    assert type(overridden.input_price_per_token("x")) is Decimal


def test_inconsistent_usage_is_clamped_not_raised(book: PriceBook) -> None:
    usage = Usage(input_tokens=100, cache_read_tokens=150, output_tokens=0)
    cost = book.cost(usage, model="gpt-4o", provider="openai")
    assert cost.input == 150 * Decimal("1.25") / M


def test_matches_genai_prices_calc_price_across_the_snapshot(book: PriceBook) -> None:
    """The memoised arithmetic agrees with genai-prices' own, for every token-priced model."""
    from genai_prices.data_snapshot import get_snapshot

    from tokenomy.pricing import _compile_model

    usages = [
        Usage(input_tokens=1000, output_tokens=300),
        Usage(
            input_tokens=250_000,
            cache_read_tokens=100_000,
            cache_write_tokens=20_000,
            cache_write_1h_tokens=30_000,
            output_tokens=5000,
            reasoning_tokens=1000,
        ),
    ]
    checked = 0
    for provider in get_snapshot().providers:
        for info in provider.models:
            rates = _compile_model(info).rates_at(AFTER_O3_PRICE_CUT)
            if rates is None:
                continue
            for usage in usages:
                theirs = info.calc_price(
                    _genai_usage(usage), provider, genai_request_timestamp=AFTER_O3_PRICE_CUT
                )
                _same(rates.cost(usage, info.id, "genai-prices"), theirs, f"{info.id} {usage}")
                checked += 1
    assert checked > 1000


def test_service_tier_reported_by_the_upstream_sets_the_price(book: PriceBook) -> None:
    # gpt-5, from genai-prices' tier rates (verified from 2026-10-12): standard $1.25
    # in / $0.125 cached / $10 out; flex half that; priority $2.50 / $0.25 / $20.
    at = datetime(2026, 11, 2, 12, tzinfo=UTC)

    def cost(*context: tuple[str, str]) -> Cost:
        usage = Usage(
            input_tokens=1000, cache_read_tokens=400, output_tokens=100, price_context=context
        )
        return book.cost(usage, model="gpt-5-2025-08-07", provider="openai", at=at)

    standard = (600 * Decimal("1.25") + 400 * Decimal("0.125") + 100 * 10) / M
    assert cost().total == standard
    assert cost(("service_tier", "priority")).total == 2 * standard
    assert cost(("service_tier", "flex")).total == standard / 2
    assert cost(("service_tier", "default")).total == standard
    assert cost(("service_tier", "scale")).total == standard  # no rate of its own
    assert_decimal(cost(("service_tier", "priority")))
    # Before genai-prices has verified tier rates, the standard price is all it knows.
    early = Usage(input_tokens=1000, output_tokens=100, price_context=(("service_tier", "flex"),))
    o3 = book.cost(early, model="o3", provider="openai", at=AFTER_O3_PRICE_CUT)
    assert o3.total == (1000 * 2 + 100 * 8) / M


def test_anthropic_fast_mode_is_priced_at_its_own_rates(book: PriceBook) -> None:
    # claude-opus-4-8: $5 in / $25 out, fast mode $10 / $50; cache writes follow.
    usage = Usage(input_tokens=1000, cache_write_tokens=400, output_tokens=100)
    normal = book.cost(usage, model="claude-opus-4-8", provider="anthropic")
    assert normal.total == (600 * 5 + 400 * Decimal("6.25") + 100 * 25) / M
    fast = Usage(
        input_tokens=1000, cache_write_tokens=400, output_tokens=100,
        price_context=(("speed", "fast"),),
    )  # fmt: skip
    cost = book.cost(fast, model="claude-opus-4-8", provider="anthropic")
    assert cost.total == (600 * 10 + 400 * Decimal("12.5") + 100 * 50) / M


def test_tier_prices_are_the_providers_own(book: PriceBook) -> None:
    # Azure prices gpt-4o through OpenAI's list; OpenAI's priority rate is not Azure's.
    usage = Usage(
        input_tokens=1000, output_tokens=100, price_context=(("service_tier", "priority"),)
    )
    azure = book.cost(usage, model="gpt-4o", provider="azure")
    assert azure.total == (1000 * Decimal("2.5") + 100 * 10) / M
    openai = book.cost(usage, model="gpt-4o", provider="openai")
    assert openai.total == (1000 * Decimal("4.25") + 100 * 17) / M
    # An override is the deployment's price whatever the tier.
    flat = PriceBook({"gpt-4o": PriceOverride(Decimal(1), Decimal(2))})
    assert flat.cost(usage, model="gpt-4o", provider="openai").total == Decimal("0.0012")


def test_tier_prices_match_genai_prices_across_the_snapshot() -> None:
    """Every price variant in the snapshot, against genai-prices' own ``price_context``."""
    from genai_prices.data_snapshot import get_snapshot

    from tokenomy.pricing import _compile_model

    at = datetime(2026, 11, 2, 12, tzinfo=UTC)
    usage = Usage(
        input_tokens=250_000,
        cache_read_tokens=100_000,
        cache_write_tokens=20_000,
        cache_write_1h_tokens=30_000,
        output_tokens=5000,
        reasoning_tokens=1000,
    )
    checked = 0
    for provider in get_snapshot().providers:
        for info in provider.models:
            contexts = {tuple(sorted(v.when.items())) for v in info.price_variants or ()}
            for context in contexts:
                rates = _compile_model(info).rates_at(at, context)
                if rates is None:
                    continue
                theirs = info.calc_price(
                    _genai_usage(usage), provider, genai_request_timestamp=at,
                    price_context=dict(context),
                )  # fmt: skip
                tiered = Usage(**{**_fields(usage), "price_context": context})
                _same(rates.cost(tiered, info.id, "genai-prices"), theirs, f"{info.id} {context}")
                checked += 1
    assert checked > 200


def _same(ours: Cost, theirs: Any, what: str) -> None:
    """Our cost is genai-prices' own, to the last digit."""
    got = (ours.total, ours.input, ours.output)
    assert got == (theirs.total_price, theirs.input_price, theirs.output_price), what


def _genai_usage(usage: Usage) -> Any:
    """``usage`` in genai-prices' terms (its units, its tree)."""
    from genai_prices import Usage as GenaiUsage

    return GenaiUsage(
        input_tokens=usage.input_tokens,
        cache_read_tokens=usage.cache_read_tokens,
        cache_write_tokens=usage.cache_write_tokens + usage.cache_write_1h_tokens,
        cache_write_5m_tokens=usage.cache_write_tokens,
        cache_write_1h_tokens=usage.cache_write_1h_tokens,
        output_tokens=usage.output_tokens,
        output_reasoning_tokens=usage.reasoning_tokens,
        input_audio_tokens=usage.audio_input_tokens,
        output_audio_tokens=usage.audio_output_tokens,
        web_searches=usage.web_search_requests,
    )


def test_audio_and_web_searches_match_genai_prices_calc_price() -> None:
    """Audio tokens at the audio rates, web searches per thousand, per-request fees:
    the same as ``genai_prices.calc_price`` for every model in the snapshot that has
    such prices (and for the rest, where they fall back to the text rates)."""
    from genai_prices import calc_price
    from genai_prices.data_snapshot import get_snapshot

    from tokenomy.pricing import _compile_model

    at = datetime(2026, 11, 2, 12, tzinfo=UTC)
    usages = [
        Usage(input_tokens=250_000, cache_write_tokens=20_000, cache_write_1h_tokens=30_000,
              audio_input_tokens=40_000, output_tokens=5000, audio_output_tokens=2000,
              web_search_requests=3),
        Usage(input_tokens=1000, audio_input_tokens=1000, output_tokens=300,
              audio_output_tokens=300, web_search_requests=1),
        Usage(input_tokens=900, cache_read_tokens=400, output_tokens=80, reasoning_tokens=20,
              audio_output_tokens=50, web_search_requests=12),
        Usage(input_tokens=5000, audio_input_tokens=4000, output_tokens=700,
              audio_output_tokens=600),
    ]  # fmt: skip
    priced = {"input_audio_mtok": 0, "output_audio_mtok": 0, "web_searches_kcount": 0,
              "requests_kcount": 0}  # fmt: skip
    for provider in get_snapshot().providers:
        for info in provider.models:
            rates = _compile_model(info).rates_at(at)
            if rates is None:
                continue
            price = info.get_prices(at)
            for usage in usages:
                theirs = info.calc_price(_genai_usage(usage), provider, genai_request_timestamp=at)
                ours = rates.cost(usage, info.id, "genai-prices")
                where = f"{provider.id}/{info.id} {usage}"
                if usage.web_search_requests and price.web_searches_kcount is None:
                    # genai-prices bills a search it has no price for at $0: unknown here.
                    assert ours.price_unknown and ours.total is None, where
                    continue
                assert (ours.total, ours.input, ours.output) == (
                    theirs.total_price,
                    theirs.input_price,
                    theirs.output_price,
                ), where
                for key in priced:
                    priced[key] += getattr(price, key) is not None
    assert all(n > 3 for n in priced.values()), priced
    # The public function agrees too, on a model with every one of these prices.
    usage = usages[1]
    theirs = calc_price(_genai_usage(usage), "gemini-3.1-flash-live-preview",
                        provider_id="google", genai_request_timestamp=at)  # fmt: skip
    ours = PriceBook().cost(usage, model="gemini-3.1-flash-live-preview", provider="google", at=at)
    assert ours.total == theirs.total_price and type(ours.total) is Decimal


def test_audio_tokens_are_billed_at_the_audio_rates_once(book: PriceBook) -> None:
    # gpt-audio: $2.50 text in, $32 audio in, $10 text out, $64 audio out.
    usage = Usage(input_tokens=1000, audio_input_tokens=600, output_tokens=500,
                  audio_output_tokens=400)  # fmt: skip
    cost = book.cost(usage, model="gpt-audio", provider="openai")
    assert cost.input == (400 * Decimal("2.5") + 600 * 32) / M
    assert cost.output == (100 * 10 + 400 * 64) / M
    assert_decimal(cost)
    # A model with no audio price of its own bills audio as genai-prices does: at
    # its input and output rates (gemini-2.5-pro prices audio like text).
    plain = book.cost(usage, model="gemini-2.5-pro", provider="google")
    text = book.cost(Usage(input_tokens=1000, output_tokens=500), model="gemini-2.5-pro",
                     provider="google")  # fmt: skip
    assert plain == text


def test_web_searches_are_billed_per_thousand(book: PriceBook) -> None:
    # claude-sonnet-4-5: $3 in, $15 out, $10 per thousand searches, in the total only.
    usage = Usage(input_tokens=1000, output_tokens=100, web_search_requests=3)
    cost = book.cost(usage, model="claude-sonnet-4-5", provider="anthropic")
    assert (cost.input, cost.output) == (Decimal("0.003"), Decimal("0.0015"))
    assert cost.total == Decimal("0.0045") + 3 * Decimal(10) / 1000
    # A model with no search price: unknown, not free.
    old = book.cost(usage, model="claude-3-haiku", provider="anthropic")
    assert old.total is None and old.price_unknown
    assert book.cost(Usage(input_tokens=10), model="claude-3-haiku", provider="anthropic").total


def test_cached_audio_without_its_split_is_unknown(book: PriceBook) -> None:
    """gpt-realtime prices cached audio ($0.40) apart from audio ($32): with cache
    reads and audio input both reported, and no split, genai-prices refuses too."""
    from genai_prices import calc_price

    usage = Usage(input_tokens=1000, cache_read_tokens=500, audio_input_tokens=300)
    cost = book.cost(usage, model="gpt-realtime", provider="openai")
    assert cost.total is None and cost.price_unknown
    assert cost.matched_model == "gpt-realtime"
    with pytest.raises(ValueError, match="cache_audio_read_tokens"):
        calc_price(_genai_usage(usage), "gpt-realtime", provider_id="openai")
    only_audio = book.cost(replace(usage, cache_read_tokens=0), model="gpt-realtime",
                           provider="openai")  # fmt: skip
    assert only_audio.input == (700 * 4 + 300 * 32) / M


def test_an_override_prices_audio_and_searches_only_when_it_says_so() -> None:
    """An override states text prices: audio at those rates would be 10-20x too low,
    and a search is not free. Without their own prices such requests are unknown."""
    text_only = PriceOverride(input=Decimal(2), output=Decimal(8), cache_read=Decimal(1))
    full = PriceOverride(
        input=Decimal(2), output=Decimal(8), input_audio=Decimal(32), output_audio=Decimal(64),
        web_search=Decimal(10),
    )  # fmt: skip
    book = PriceBook({"text": text_only, "full": full})
    plain = Usage(input_tokens=1000, cache_read_tokens=200, output_tokens=100)
    assert book.cost(plain, model="text").total == (800 * 2 + 200 + 100 * 8) / M
    for extra in ({"audio_input_tokens": 10}, {"audio_output_tokens": 10},
                  {"web_search_requests": 1}):  # fmt: skip
        cost = book.cost(replace(plain, **extra), model="text")  # type: ignore[arg-type]
        assert cost.total is None and cost.price_unknown and cost.source == "override"
    usage = Usage(input_tokens=1000, audio_input_tokens=600, output_tokens=100,
                  audio_output_tokens=50, web_search_requests=2)  # fmt: skip
    cost = book.cost(usage, model="full")
    assert cost.input == (400 * 2 + 600 * 32) / M
    assert cost.output == (50 * 8 + 50 * 64) / M
    assert cost.total == cost.input + cost.output + 2 * Decimal(10) / 1000
    parsed = PriceOverride.parse({"input": 2, "output": 8, "input_audio": "32",
                                  "output_audio": 64, "web_search": 10})  # fmt: skip
    assert parsed == full
    with pytest.raises(ConfigError):
        PriceOverride(Decimal(1), Decimal(1), web_search=Decimal(-1))


def test_audio_and_search_prices_in_config_reach_the_book(tmp_path: Path) -> None:
    from tokenomy.pipeline.meter import overrides_from

    config = tmp_path / "tokenomy.yaml"
    config.write_text(
        "models:\n  - name: voice\n    provider: openai\n"
        "    price: {input: 2.5, output: 10, input_audio: 40, output_audio: 80,"
        " web_search: 25}\n"
    )
    settings = load_settings(config, env={})
    override = overrides_from(settings.deployments)["voice"]
    assert (override.input_audio, override.output_audio, override.web_search) == (
        Decimal(40), Decimal(80), Decimal(25),
    )  # fmt: skip


def _fields(usage: Usage) -> dict[str, object]:
    return {name: getattr(usage, name) for name in Usage.__dataclass_fields__}


def test_unit_tree_matches_genai_prices_registry() -> None:
    from genai_prices.units import _get_registry

    from tokenomy.pricing import _COUNTED_KEYS, _DESCENDANTS, _PRICE_KEYS

    registry = _get_registry()
    units = {index: registry.unit_for_price_key(key) for key, index in _PRICE_KEYS.items()}
    for index, unit in units.items():
        below = {
            other
            for other, candidate in units.items()
            if other != index and unit.dimensions.items() <= candidate.dimensions.items()
        }
        assert below == _DESCENDANTS[index], unit.usage_key
    for key in _COUNTED_KEYS:  # billed per thousand, outside the token tree
        assert registry.unit_for_price_key(key).per == 1000


def test_lookups_are_memoised() -> None:
    book = PriceBook()
    for _ in range(3):
        book.cost(Usage(input_tokens=1), model="gpt-4o", provider="openai")
    info = book._find.cache_info()
    assert (info.misses, info.hits) == (1, 2)


def test_warm_loads_the_snapshot() -> None:
    assert PriceBook().warm(background=False) is None
    thread = PriceBook().warm()
    assert thread is not None
    thread.join(timeout=30)
    assert not thread.is_alive()


def test_importing_pricing_does_not_import_genai_prices() -> None:
    code = "import sys, tokenomy.pricing; print('genai_prices' in sys.modules)"
    src = str(Path(tokenomy.__file__).parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.strip() == "False"
