"""Audio tokens, web searches and OpenAI's cache writes, through the official SDKs,
the gateway and the fake upstream (``[[fake:audio_in=N]]``, ``[[fake:audio_out=N]]``,
``[[fake:web_searches=N]]``, ``[[fake:cache_write=N]]``), priced into the ledger at
their own rates."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from genai_prices import extract_usage

from gateway_fixtures import GW, Fake, dep, gateway_settings, start_gateway
from tokenomy.config import PriceConfig
from tokenomy.records import UsageRecord

M = Decimal(1_000_000)
AUDIO = "say it aloud [[fake:audio_in=300]] [[fake:audio_out=200]]"
SEARCH = "look it up [[fake:web_searches=3]]"
WRITE = "a long shared prefix of many words [[fake:cached=4]] [[fake:cache_write=6]]"


@pytest.fixture(scope="module")
def xgw(fake: Fake, fake_llamacpp: Fake, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GW]:
    v1 = fake.url + "/v1"
    deployments = (
        dep("gpt-audio", "openai", v1),
        dep("gpt-5.6-terra", "openai", v1),  # bills cache writes at 1.25x its input rate
        dep("claude-*", "anthropic", fake.url),
        # A negotiated text price, and nothing said about audio or searches.
        dep("voice-text-only", "openai", v1, model="gpt-audio",
            price=PriceConfig(Decimal(2), Decimal(8))),
        dep("voice-priced", "openai", v1, model="gpt-audio",
            price=PriceConfig(Decimal(2), Decimal(8), input_audio=Decimal(40),
                              output_audio=Decimal(80))),
    )  # fmt: skip
    db = str(tmp_path_factory.mktemp("xgw") / "ledger.db")
    settings = gateway_settings(db, fake, fake_llamacpp, deployments=deployments)
    yield from start_gateway(settings, fake)


def send(gw: GW, api: str, model: str, text: str, stream: bool) -> UsageRecord:
    """One request through the SDK of ``api``; its ledger record."""
    messages = [{"role": "user", "content": text}]
    if api == "openai":
        with gw.openai().chat.completions.with_streaming_response.create(
            model=model,
            messages=messages,  # type: ignore[arg-type]
            stream=stream,  # type: ignore[arg-type]
        ) as resp:
            rid = resp.headers["x-tokenomy-request-id"]
            resp.read()
    else:
        with gw.anthropic().messages.with_streaming_response.create(
            model=model,
            max_tokens=64,
            messages=messages,  # type: ignore[arg-type]
            stream=stream,  # type: ignore[arg-type]
        ) as resp:
            rid = resp.headers["x-tokenomy-request-id"]
            resp.read()
    rec = gw.record(rid)
    assert rec.status == 200 and not rec.usage.estimated
    return rec


@pytest.mark.parametrize("api", ["openai", "anthropic"])
@pytest.mark.parametrize("stream", [False, True])
def test_audio_tokens_are_priced_at_the_audio_rates(xgw: GW, api: str, stream: bool) -> None:
    """gpt-audio: $2.50 text in, $32 audio in, $10 text out, $64 audio out. Billed
    as text, this request would cost about a tenth of its price."""
    rec = send(xgw, api, "gpt-audio", AUDIO, stream)
    u = rec.usage
    assert (u.audio_input_tokens, u.audio_output_tokens) == (300, 200)
    assert u.input_tokens > 300 and u.output_tokens > 200  # audio is part of the counts
    text_in, text_out = u.input_tokens - 300, u.output_tokens - 200
    assert rec.cost_usd == (text_in * Decimal("2.5") + 300 * 32 + text_out * 10 + 200 * 64) / M
    assert not rec.price_unknown


@pytest.mark.parametrize("api", ["anthropic", "openai"])
@pytest.mark.parametrize("stream", [False, True])
def test_web_searches_are_priced_per_search(xgw: GW, api: str, stream: bool) -> None:
    """claude-sonnet-4-6: $3 in, $15 out, and $10 per thousand web searches."""
    rec = send(xgw, api, "claude-sonnet-4-6", SEARCH, stream)
    u = rec.usage
    assert u.web_search_requests == 3
    tokens = (u.input_tokens * 3 + u.output_tokens * 15) / M
    assert rec.cost_usd == tokens + 3 * Decimal(10) / 1000
    assert not rec.price_unknown


@pytest.mark.parametrize("stream", [False, True])
def test_an_override_without_audio_prices_flags_audio_unknown(xgw: GW, stream: bool) -> None:
    rec = send(xgw, "openai", "voice-text-only", AUDIO, stream)
    assert rec.usage.audio_input_tokens == 300
    assert rec.cost_usd is None and rec.price_unknown
    plain = send(xgw, "openai", "voice-text-only", "no audio here", stream)
    assert plain.cost_usd == (plain.usage.input_tokens * 2 + plain.usage.output_tokens * 8) / M
    priced = send(xgw, "openai", "voice-priced", AUDIO, stream)
    u = priced.usage
    assert (
        priced.cost_usd
        == ((u.input_tokens - 300) * 2 + 300 * 40 + (u.output_tokens - 200) * 8 + 200 * 80) / M
    )


def test_reports_count_the_audio_and_search_fees_in_the_cost(xgw: GW) -> None:
    from tokenomy.reports.query import scan

    recs = [
        send(xgw, "openai", "gpt-audio", AUDIO, False),
        send(xgw, "anthropic", "claude-sonnet-4-6", SEARCH, False),
    ]
    every = [r for r in xgw.store.list_records() if r.cost_usd is not None]
    assert {r.request_id for r in recs} <= {r.request_id for r in every}
    for use_rollups in (True, False):
        total = scan(xgw.store, use_rollups=use_rollups).total()
        assert total.cost_usd == sum((r.cost_usd for r in every if r.cost_usd), Decimal(0))


def openai_call(gw: GW, op: str, model: str, text: str, stream: bool) -> tuple[str, dict[str, Any]]:
    """One request through the openai SDK: its request id, and the completion or
    response the client got (a stream's: its usage chunk, its final response)."""
    client = gw.openai()
    if op == "chat":
        messages: Any = [{"role": "user", "content": text}]
        extra: Any = {"stream_options": {"include_usage": True}} if stream else {}
        with client.chat.completions.with_streaming_response.create(
            model=model, messages=messages, stream=stream, **extra
        ) as resp:
            rid = resp.headers["x-tokenomy-request-id"]
            got = resp.parse()
            last = list(got)[-1] if stream else got  # type: ignore[call-overload]
            return rid, last.model_dump()
    with client.responses.with_streaming_response.create(
        model=model, input=text, stream=stream
    ) as resp:
        rid = resp.headers["x-tokenomy-request-id"]
        got = resp.parse()
        reply = list(got)[-1].response if stream else got  # type: ignore[call-overload]
        return rid, reply.model_dump()


@pytest.mark.parametrize("op", ["chat", "responses"])
@pytest.mark.parametrize("stream", [False, True])
def test_openai_cache_writes_are_priced_at_the_write_rate(xgw: GW, op: str, stream: bool) -> None:
    """gpt-5.6-terra (since 2026-07-30): $2 input, $0.20 cache read, $2.50 cache write,
    $12 output. The writes are part of the prompt count, as cache reads are: each
    prompt token is billed once, and the cost is genai-prices' own for the usage
    the client was shown."""
    rid, reply = openai_call(xgw, op, "gpt-5.6-terra", WRITE, stream)
    rec = xgw.record(rid)
    u = rec.usage
    assert rec.status == 200 and not u.estimated and not rec.price_unknown
    assert (u.cache_read_tokens, u.cache_write_tokens, u.cache_write_1h_tokens) == (4, 6, 0)
    details = "prompt_tokens_details" if op == "chat" else "input_tokens_details"
    shown = reply["usage"]
    assert shown[details]["cache_write_tokens"] == 6
    assert u.input_tokens == shown["prompt_tokens" if op == "chat" else "input_tokens"] > 10
    fresh = u.input_tokens - 4 - 6
    want = (fresh * 2 + 4 * Decimal("0.2") + 6 * Decimal("2.5") + u.output_tokens * 12) / M
    at = datetime.fromtimestamp(rec.ts, UTC)
    theirs = extract_usage(reply, provider_id="openai", api_flavor=op).calc_price(
        genai_request_timestamp=at
    )
    assert rec.cost_usd == want == theirs.total_price


@pytest.mark.parametrize("stream", [False, True])
def test_openai_cache_writes_reach_an_anthropic_client_as_cache_creation(
    xgw: GW, stream: bool
) -> None:
    """Translated for an Anthropic client, the writes leave ``input_tokens`` for
    ``cache_creation_input_tokens``; the record is metered from the upstream's usage."""
    rec = send(xgw, "anthropic", "gpt-5.6-terra", WRITE, stream)
    u = rec.usage
    assert (u.cache_read_tokens, u.cache_write_tokens) == (4, 6)
    fresh = u.input_tokens - 10
    assert (
        rec.cost_usd
        == (fresh * 2 + 4 * Decimal("0.2") + 6 * Decimal("2.5") + u.output_tokens * 12) / M
    )
