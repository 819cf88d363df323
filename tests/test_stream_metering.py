"""Streams cut short are metered for what was generated, in every format pair.

Anthropic reports the prompt in ``message_start`` (with ``output_tokens`` 1) and
the output and the web searches only in the final ``message_delta``: a stream
that ends before it (an upstream error event, a dropped connection, a client that
went away) must count the text it generated and the searches whose results it
relayed, and say the count is an estimate.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import anthropic
import openai
import pytest
from genai_prices import calc_price
from genai_prices.types import Usage as GenaiUsage

from gateway_fixtures import GW
from tokenomy.records import UsageRecord
from tokenomy.tokens import count_text

MODEL = "claude-sonnet-4-6"
M = Decimal(1_000_000)


def say(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def test_anthropic_stream_error_counts_the_text_generated(gw: GW) -> None:
    texts: list[str] = []
    with (
        pytest.raises(anthropic.APIStatusError),
        gw.anthropic().messages.stream(
            model=MODEL, max_tokens=100, messages=say("go on [[fake:stream_error]]")
        ) as stream,
    ):
        rid = stream.response.headers["x-tokenomy-request-id"]
        for ev in stream:
            if ev.type == "content_block_delta" and ev.delta.type == "text_delta":
                texts.append(ev.delta.text)
    assert texts  # the fake cuts the stream after its first delta
    rec = gw.record(rid)
    assert rec.status == 502 and rec.usage.estimated
    assert rec.usage.output_tokens == count_text("".join(texts), MODEL).tokens > 1
    assert rec.usage.input_tokens == 6  # exact, from message_start: 3 + 3 words


def test_openai_client_anthropic_upstream_stream_error_counts_the_text(gw: GW) -> None:
    texts: list[str] = []
    with gw.openai().chat.completions.with_streaming_response.create(
        model=MODEL,
        messages=say("go on [[fake:stream_error]]"),  # type: ignore[arg-type]
        stream=True,
    ) as resp:
        rid = resp.headers["x-tokenomy-request-id"]
        with pytest.raises(openai.APIError):
            for chunk in resp.parse():
                texts += [c.delta.content for c in chunk.choices if c.delta.content]
    assert texts
    rec = gw.record(rid)
    assert rec.status == 502 and rec.usage.estimated
    assert rec.usage.output_tokens == count_text("".join(texts), MODEL).tokens > 1


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/chat/completions"])
def test_client_gone_mid_anthropic_stream_is_billed_for_the_text_sent(gw: GW, path: str) -> None:
    body = {
        "model": MODEL,
        "max_tokens": 100,
        "stream": True,
        "messages": say("slow [[fake:chunks=60]] [[fake:chunk_delay_ms=20]]"),
    }
    headers = {"authorization": f"Bearer {gw.key}", "anthropic-version": "2023-06-01"}
    deltas = 0
    with gw.http() as c, c.stream("POST", path, json=body, headers=headers) as r:
        rid = r.headers["x-tokenomy-request-id"]
        for line in r.iter_lines():
            deltas += '"text_delta"' in line or '"content":"' in line
            if deltas >= 8:
                break
    rec = gw.settled(rid)
    assert rec.status == 499 and rec.error_type == "client_disconnected"
    assert rec.usage.estimated
    # every piece the client read is at least one token; message_start said 1
    assert rec.usage.output_tokens >= deltas
    assert rec.usage.input_tokens > 0 and rec.cost_usd is not None


@pytest.mark.parametrize("model", ["gpt-4o", MODEL])
@pytest.mark.parametrize("stream", [False, True])
def test_upstream_without_usage_is_counted_and_flagged(gw: GW, model: str, stream: bool) -> None:
    """No usage at all from the upstream: the gateway counts both sides, prices
    them, and marks the record estimated (never $0, never a silent zero)."""
    body = {
        "model": model,
        "max_tokens": 100,
        "stream": stream,
        "messages": say("count me please [[fake:no_usage]] [[fake:chunks=5]]"),
    }
    with gw.http() as c:
        r = c.post("/v1/messages", json=body, headers={"authorization": f"Bearer {gw.key}"})
    assert r.status_code == 200
    rec = gw.record(r.headers["x-tokenomy-request-id"])
    assert rec.status == 200 and rec.usage.estimated and not rec.price_unknown
    assert rec.usage.input_tokens > 0 and rec.usage.output_tokens >= 5
    assert rec.cost_usd is not None and rec.cost_usd > 0


def anthropic_price(rec: UsageRecord) -> Decimal:
    """What genai-prices charges for the record's usage of an Anthropic model."""
    u = rec.usage
    usage = GenaiUsage(
        input_tokens=u.input_tokens,
        cache_read_tokens=u.cache_read_tokens,
        cache_write_tokens=u.cache_write_tokens,
        output_tokens=u.output_tokens,
        web_searches=u.web_search_requests,
    )
    at = datetime.fromtimestamp(rec.ts, UTC)
    price = calc_price(usage, MODEL, provider_id="anthropic", genai_request_timestamp=at)
    return price.total_price


# Two searches (events 1-5 and 6-10: the server_tool_use block's start, input and
# stop, then its web_search_tool_result's start and stop), then the reply (11 on).
SEARCHED = "news today [[fake:web_searches=2]] [[fake:reset]]"


@pytest.mark.parametrize(("cut_at", "searched"), [(9, 1), (14, 2)])
def test_a_cut_anthropic_stream_bills_the_web_searches_relayed(
    gw: GW, cut_at: int, searched: int
) -> None:
    """The searches are reported only in the final message_delta: a stream cut
    before it bills those whose result was relayed. Cut after the second search's
    call but before its result, only the first is billed."""
    blocks: list[str] = []
    with (
        pytest.raises(anthropic.APIStatusError),
        gw.anthropic().messages.stream(
            model=MODEL, max_tokens=100, messages=say(f"{SEARCHED} [[fake:cut_at={cut_at}]]")
        ) as stream,
    ):
        rid = stream.response.headers["x-tokenomy-request-id"]
        for ev in stream:
            if ev.type == "content_block_start":
                blocks.append(ev.content_block.type)
    assert blocks.count("web_search_tool_result") == searched
    rec = gw.record(rid)
    assert rec.status == 502 and rec.usage.estimated
    assert rec.usage.web_search_requests == searched
    tokens = (rec.usage.input_tokens * 3 + rec.usage.output_tokens * 15) / M
    assert rec.cost_usd == tokens + searched * Decimal(10) / 1000 == anthropic_price(rec)


def test_a_cut_anthropic_stream_translated_for_openai_bills_its_searches(gw: GW) -> None:
    """The translation shows an OpenAI client nothing of the searches, but they
    were made: the record bills them all the same."""
    with gw.openai().chat.completions.with_streaming_response.create(
        model=MODEL,
        messages=say(f"{SEARCHED} [[fake:cut_at=14]]"),  # type: ignore[arg-type]
        stream=True,
    ) as resp:
        rid = resp.headers["x-tokenomy-request-id"]
        with pytest.raises(openai.APIError):
            for _ in resp.parse():
                pass
    rec = gw.record(rid)
    assert rec.status == 502 and rec.usage.estimated
    assert rec.usage.web_search_requests == 2
    tokens = (rec.usage.input_tokens * 3 + rec.usage.output_tokens * 15) / M
    assert rec.cost_usd == tokens + 2 * Decimal(10) / 1000 == anthropic_price(rec)


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/chat/completions"])
def test_client_gone_after_the_searches_is_billed_for_them(gw: GW, path: str) -> None:
    body = {
        "model": MODEL,
        "max_tokens": 100,
        "stream": True,
        "messages": say(
            "news [[fake:web_searches=2]] [[fake:chunks=60]] [[fake:chunk_delay_ms=20]]"
        ),
    }
    headers = {"authorization": f"Bearer {gw.key}", "anthropic-version": "2023-06-01"}
    deltas = 0
    with gw.http() as c, c.stream("POST", path, json=body, headers=headers) as r:
        rid = r.headers["x-tokenomy-request-id"]
        for line in r.iter_lines():  # the reply's text comes after both searches
            deltas += '"text_delta"' in line or '"content":"' in line
            if deltas >= 3:
                break
    rec = gw.settled(rid)
    assert rec.status == 499 and rec.usage.estimated
    assert rec.usage.web_search_requests == 2
    tokens = (rec.usage.input_tokens * 3 + rec.usage.output_tokens * 15) / M
    assert rec.cost_usd == tokens + 2 * Decimal(10) / 1000 == anthropic_price(rec)
