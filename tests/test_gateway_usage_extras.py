"""Audio tokens and web searches, through the official SDKs, the gateway and the
fake upstream (``[[fake:audio_in=N]]``, ``[[fake:audio_out=N]]``,
``[[fake:web_searches=N]]``), priced into the ledger at their own rates."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest

from gateway_fixtures import GW, Fake, dep, gateway_settings, start_gateway
from tokenomy.config import PriceConfig
from tokenomy.records import UsageRecord

M = Decimal(1_000_000)
AUDIO = "say it aloud [[fake:audio_in=300]] [[fake:audio_out=200]]"
SEARCH = "look it up [[fake:web_searches=3]]"


@pytest.fixture(scope="module")
def xgw(fake: Fake, fake_llamacpp: Fake, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GW]:
    v1 = fake.url + "/v1"
    deployments = (
        dep("gpt-audio", "openai", v1),
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
