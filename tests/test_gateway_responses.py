"""OpenAI's Responses API (``POST /v1/responses``), driven by the official `openai` SDK:
passed through unchanged, metered from the response's usage like a chat completion."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import openai
import pytest
from genai_prices import calc_price
from genai_prices.types import Usage as GenaiUsage

from gateway_fixtures import GW, add_key
from tokenomy.records import UsageRecord
from tokenomy.tokens import count_text

TOOLS: list[Any] = [
    {
        "type": "function",
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"location": {"type": "string"}},
            "required": ["location"],
        },
    }
]


def stream(gw: GW, **body: Any) -> tuple[str, list[Any]]:
    """A streamed request's id and the events the SDK read."""
    with gw.openai().responses.with_streaming_response.create(stream=True, **body) as resp:
        return resp.headers["x-tokenomy-request-id"], list(resp.parse())


def genai_cost(rec: UsageRecord, model: str) -> Decimal:
    """What genai-prices charges for the record's usage, at the request's time."""
    u = rec.usage
    usage = GenaiUsage(
        input_tokens=u.input_tokens,
        cache_read_tokens=u.cache_read_tokens,
        output_tokens=u.output_tokens,
        output_reasoning_tokens=u.reasoning_tokens,
        web_searches=u.web_search_requests,
    )
    at = datetime.fromtimestamp(rec.ts, UTC)
    return calc_price(usage, model, provider_id="openai", genai_request_timestamp=at).total_price


def test_json_response_is_passed_through_and_metered_exactly(gw: GW) -> None:
    client = gw.openai(default_headers={"x-tokenomy-tags": "feature=agents"})
    raw = client.responses.with_raw_response.create(
        model="gpt-4o", input="hello there", instructions="Be brief.", metadata={"route": "/ask"}
    )
    resp = raw.parse()
    assert resp.object == "response" and resp.status == "completed"
    assert resp.output_text.startswith("Echo: hello")
    assert resp.usage is not None
    rid = raw.headers["x-tokenomy-request-id"]
    assert raw.headers["x-tokenomy-upstream-request-id"].startswith("req_")
    rec = gw.record(rid)
    assert (rec.usage.input_tokens, rec.usage.output_tokens) == (
        resp.usage.input_tokens,
        resp.usage.output_tokens,
    )
    assert not rec.usage.estimated and not rec.price_unknown
    want = (resp.usage.input_tokens * Decimal("2.5") + resp.usage.output_tokens * 10) / 1_000_000
    assert rec.cost_usd == want == genai_cost(rec, "gpt-4o")
    assert Decimal(raw.headers["x-tokenomy-cost-usd"]) == rec.cost_usd
    assert (rec.api, rec.endpoint, rec.stream, rec.status) == (
        "openai",
        "/v1/responses",
        False,
        200,
    )
    assert (rec.key_id, rec.team, rec.user) == (gw.key_id, "search", "alice")
    assert rec.tags == {"env": "test", "route": "/ask", "feature": "agents"}
    assert rec.upstream_request_id == raw.headers["x-tokenomy-upstream-request-id"]
    # the upstream got the client's body, model for model: no chat fields added
    seen = gw.fake.app.requests[-1]
    assert seen.path == "/v1/responses" and seen.body["instructions"] == "Be brief."


def test_the_end_user_of_a_key_without_one_is_the_requests_user(gw: GW) -> None:
    key, _ = add_key(gw.db, team="apps", org="acme")
    raw = gw.openai(key=key).responses.with_raw_response.create(
        model="gpt-4o-mini", input="hi", user="customer-42"
    )
    rec = gw.record(raw.headers["x-tokenomy-request-id"])
    assert (rec.team, rec.user, rec.served_model) == ("apps", "customer-42", "gpt-4o-mini")
    assert gw.fake.app.requests[-1].body["user"] == "customer-42"  # passed on as sent


def test_stream_is_passed_through_unchanged_and_metered(gw: GW) -> None:
    with gw.openai().responses.with_streaming_response.create(
        model="gpt-4o", input="hello there", stream=True
    ) as resp:
        rid = resp.headers["x-tokenomy-request-id"]
        events = list(resp.parse())
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))  # none dropped
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text.startswith("Echo: hello")
    final = events[-1].response  # type: ignore[union-attr]
    assert final.usage is not None and final.output_text == text
    upstream = gw.fake.app.requests[-1].body
    assert "stream_options" not in upstream  # the Responses API reports usage anyway
    rec = gw.record(rid)
    assert rec.stream and rec.status == 200 and not rec.usage.estimated
    assert rec.usage.input_tokens == final.usage.input_tokens
    assert rec.usage.output_tokens == final.usage.output_tokens == 8
    assert rec.cost_usd == genai_cost(rec, "gpt-4o")
    assert rec.ttft_ms is not None and rec.ttft_ms <= rec.latency_ms  # type: ignore[operator]


def test_stream_helper_rebuilds_the_response(gw: GW) -> None:
    """The SDK's own stream accumulator (``responses.stream``) gets every event it
    needs: the events reach it as the upstream sent them."""
    with gw.openai().responses.stream(
        model="gpt-4o", input="weather in Paris? [[fake:tool=get_weather]]", tools=TOOLS
    ) as stream:
        for _ in stream:
            pass
        final = stream.get_final_response()
    call = final.output[-1]
    assert call.type == "function_call" and call.name == "get_weather"
    assert json.loads(call.arguments) == {"location": "x"}


@pytest.mark.parametrize("stream", [False, True])
def test_cached_tokens_are_priced_as_cached(gw: GW, stream: bool) -> None:
    with gw.openai().responses.with_streaming_response.create(
        model="gpt-4o",
        input="a long shared prefix of words [[fake:cached=4]]",
        stream=stream,  # type: ignore[arg-type]
    ) as resp:
        rid = resp.headers["x-tokenomy-request-id"]
        resp.read()
    rec = gw.record(rid)
    assert rec.usage.cache_read_tokens == 4 and rec.usage.input_tokens > 4
    u = rec.usage
    want = (u.input_tokens - 4) * Decimal("2.5") + 4 * Decimal("1.25") + u.output_tokens * 10
    assert rec.cost_usd == want / 1_000_000 == genai_cost(rec, "gpt-4o")


@pytest.mark.parametrize("stream", [False, True])
def test_reasoning_tokens_are_output(gw: GW, stream: bool) -> None:
    with gw.openai().responses.with_streaming_response.create(
        model="o3",
        input="think [[fake:reasoning=40]]",
        stream=stream,  # type: ignore[arg-type]
    ) as resp:
        rid = resp.headers["x-tokenomy-request-id"]
        resp.read()
    rec = gw.record(rid)
    assert rec.usage.reasoning_tokens == 40
    assert rec.usage.output_tokens == 40 + 8
    # o3 since 2025-06-10: $2 input, $8 output per million tokens
    assert rec.cost_usd == (rec.usage.input_tokens * 2 + rec.usage.output_tokens * 8) / Decimal(
        1_000_000
    )
    assert rec.cost_usd == genai_cost(rec, "o3")


@pytest.mark.parametrize("stream", [False, True])
def test_web_searches_are_billed_per_search(gw: GW, stream: bool) -> None:
    """gpt-4o's web search tool: $10 per thousand searches, on top of the tokens."""
    with gw.openai().responses.with_streaming_response.create(
        model="gpt-4o",
        input="news today [[fake:web_searches=3]]",
        tools=[{"type": "web_search"}],
        stream=stream,  # type: ignore[arg-type]
    ) as resp:
        rid = resp.headers["x-tokenomy-request-id"]
        resp.read()
    rec = gw.record(rid)
    assert rec.usage.web_search_requests == 3
    tokens = (rec.usage.input_tokens * Decimal("2.5") + rec.usage.output_tokens * 10) / 1_000_000
    assert rec.cost_usd == tokens + 3 * Decimal(10) / 1000 == genai_cost(rec, "gpt-4o")


def test_max_output_tokens_ends_incomplete_and_is_metered(gw: GW) -> None:
    rid, events = stream(
        gw, model="gpt-4o", input="hello there [[fake:chunks=20]]", max_output_tokens=3
    )
    assert events[-1].type == "response.incomplete"
    assert gw.fake.app.requests[-1].body["max_output_tokens"] == 3
    rec = gw.record(rid)
    assert rec.endpoint == "/v1/responses" and rec.status == 200 and rec.error_type is None
    assert rec.usage.output_tokens == 3 and not rec.usage.estimated


def test_a_failed_response_is_billed_and_recorded_as_failed(gw: GW) -> None:
    """``response.failed`` reaches the client as the upstream sent it; the record
    bills its usage and says it failed (a server_error: 500), with the code of the
    response's error as the upstream's."""
    rid, events = stream(gw, model="gpt-4o", input="hello there [[fake:failed]]")
    assert events[-1].type == "response.failed"
    assert events[-1].response.error is not None  # type: ignore[union-attr]
    assert events[-1].response.error.code == "server_error"  # type: ignore[union-attr]
    rec = gw.record(rid)
    assert (rec.status, rec.error_type) == (500, "response_failed")
    assert rec.upstream_error_code == "server_error"
    assert rec.usage.output_tokens == 8 and not rec.usage.estimated
    assert rec.cost_usd == genai_cost(rec, "gpt-4o") > 0
    # the same reply as one JSON body: passed on as it came, recorded as failed
    raw = gw.openai().responses.with_raw_response.create(
        model="gpt-4o", input="hello there [[fake:failed]]"
    )
    assert raw.status_code == 200 and raw.parse().status == "failed"
    rec = gw.record(raw.headers["x-tokenomy-request-id"])
    assert (rec.status, rec.error_type) == (500, "response_failed")
    assert rec.upstream_error_code == "server_error"
    assert Decimal(raw.headers["x-tokenomy-cost-usd"]) == rec.cost_usd == genai_cost(rec, "gpt-4o")


def test_a_stream_cut_short_is_estimated_from_the_text_relayed(gw: GW) -> None:
    rid, events = stream(gw, model="gpt-4o", input="hello there [[fake:reset]] [[fake:cut_at=8]]")
    texts = [e.delta for e in events if e.type == "response.output_text.delta"]
    last = events[-1]  # the gateway's own error event, in the API's format
    assert last.type == "error" and last.code == "upstream_connect_error"
    assert "dropped" in last.message and last.sequence_number == events[-2].sequence_number + 1
    rec = gw.record(rid)
    assert rec.status == 502 and rec.usage.estimated
    assert rec.usage.output_tokens == count_text("".join(texts), "gpt-4o").tokens > 1
    assert rec.usage.input_tokens > 0 and rec.cost_usd is not None


@pytest.mark.parametrize(("cut_at", "searched"), [(9, 1), (16, 2)])
def test_a_stream_cut_short_bills_the_web_searches_relayed(
    gw: GW, cut_at: int, searched: int
) -> None:
    """Two searches (events 2-6 and 7-11: added, in progress, searching, completed,
    done), then the reply. Cut in the second search, the first is billed; cut in
    the reply, both are: the searches were made, whatever the usage lost."""
    rid, events = stream(
        gw,
        model="gpt-4o",
        input=f"news today [[fake:web_searches=2]] [[fake:reset]] [[fake:cut_at={cut_at}]]",
        tools=[{"type": "web_search"}],
    )
    done = [e for e in events if e.type == "response.output_item.done"]
    assert len(done) == searched and all(e.item.type == "web_search_call" for e in done)
    assert events[-1].type == "error"
    rec = gw.record(rid)
    assert rec.status == 502 and rec.usage.estimated
    assert rec.usage.web_search_requests == searched
    tokens = (rec.usage.input_tokens * Decimal("2.5") + rec.usage.output_tokens * 10) / 1_000_000
    assert rec.cost_usd == tokens + searched * Decimal(10) / 1000 == genai_cost(rec, "gpt-4o")


def test_the_upstreams_error_event_reaches_the_client_unchanged(gw: GW) -> None:
    rid, events = stream(
        gw, model="gpt-4o", input="hello there [[fake:stream_error]] [[fake:cut_at=4]]"
    )
    last = events[-1]
    assert last.type == "error" and last.code == "server_error"
    assert last.sequence_number == 4  # the upstream's own event, not one the gateway made
    rec = gw.record(rid)
    assert rec.status == 502 and rec.error_type == "upstream_protocol_error"
    assert rec.usage.estimated


@pytest.mark.parametrize("cut_at", [0, 2])
def test_an_error_event_before_the_answer_began_is_the_requests_error(gw: GW, cut_at: int) -> None:
    """An error event first, or right after ``response.created`` and
    ``response.in_progress`` (which carry nothing of the answer): nothing was sent
    yet, so the request fails with the status the error stands for."""
    with pytest.raises(openai.InternalServerError) as info:
        gw.openai().responses.create(
            model="gpt-4o",
            input=f"hello there [[fake:stream_error]] [[fake:cut_at={cut_at}]]",
            stream=True,
        )
    assert info.value.response.headers["content-type"].startswith("application/json")
    rec = gw.record(info.value.response.headers["x-tokenomy-request-id"])
    assert rec.status == 500 and rec.stream


def test_a_client_that_goes_away_is_billed_for_what_it_was_sent(gw: GW) -> None:
    body = {
        "model": "gpt-4o",
        "stream": True,
        "input": "slow [[fake:chunks=60]] [[fake:chunk_delay_ms=20]]",
    }
    deltas = 0
    with (
        gw.http() as c,
        c.stream(
            "POST", "/v1/responses", json=body, headers={"authorization": f"Bearer {gw.key}"}
        ) as r,
    ):
        rid = r.headers["x-tokenomy-request-id"]
        for line in r.iter_lines():
            deltas += line == "event: response.output_text.delta"
            if deltas >= 8:
                break
    rec = gw.settled(rid)
    assert rec.status == 499 and rec.error_type == "client_disconnected"
    assert rec.usage.estimated and rec.usage.output_tokens >= deltas
    assert rec.cost_usd is not None and rec.cost_usd > 0


@pytest.mark.parametrize("stream", [False, True])
def test_an_upstream_error_is_passed_on_in_openais_format(gw: GW, stream: bool) -> None:
    with pytest.raises(openai.RateLimitError) as info:
        gw.openai().responses.create(
            model="gpt-4o",
            input="hi [[fake:status=429]] [[fake:retry_after=0]]",
            stream=stream,  # type: ignore[arg-type]
        )
    headers = info.value.response.headers
    assert info.value.status_code == 429 and "retry-after" in headers
    assert "Rate limit reached" in info.value.message
    rid = headers["x-tokenomy-request-id"]
    assert gw.record(rid).status == 429


@pytest.mark.parametrize("stream", [False, True])
def test_an_anthropic_model_is_refused_with_a_400(gw: GW, stream: bool) -> None:
    before = gw.fake.app.mark()
    with pytest.raises(openai.BadRequestError) as info:
        gw.openai().responses.create(
            model="claude-haiku-4-5",
            input="hi",
            stream=stream,  # type: ignore[arg-type]
        )
    assert "Responses API is not translated" in info.value.message
    assert info.value.param == "model"
    assert gw.fake.app.requests_since(before) == []
    rec = gw.record(info.value.response.headers["x-tokenomy-request-id"])
    assert rec.status == 400 and rec.endpoint == "/v1/responses"


def test_a_compatible_server_is_not_assumed_to_serve_it(gw: GW) -> None:
    """vLLM and the other compatible flavours serve the Responses API only when
    their deployment says so (``extra.responses``)."""
    with pytest.raises(openai.BadRequestError) as info:
        gw.openai().responses.create(model="house-model", input="hi")
    assert "extra.responses: true" in info.value.message


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": "hi"}, "model"),
        ({"model": 5, "input": "hi"}, "model"),
        ({"model": "gpt-4o", "input": 5}, "input"),
        ({"model": "gpt-4o", "input": ["hi"]}, "input[0]"),
        ({"model": "gpt-4o", "input": "hi", "max_output_tokens": "many"}, "max_output_tokens"),
        ({"model": "gpt-4o", "input": "hi", "stream": "yes"}, "stream"),
        ({"model": "gpt-4o", "input": "hi", "instructions": ["x"]}, "instructions"),
        ({"model": "gpt-4o", "input": "hi", "metadata": "x"}, "metadata"),
        ({"model": "gpt-4o", "input": "hi", "background": True}, "background"),
    ],
)
def test_bad_input_is_a_400_in_openais_format(gw: GW, body: dict[str, Any], param: str) -> None:
    with gw.http() as c:
        r = c.post("/v1/responses", json=body, headers={"authorization": f"Bearer {gw.key}"})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param


def test_a_body_that_is_not_json_is_a_400(gw: GW) -> None:
    with gw.http() as c:
        r = c.post("/v1/responses", content=b"{nope", headers={"authorization": f"Bearer {gw.key}"})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"


def test_an_unknown_model_is_a_404(gw: GW) -> None:
    with pytest.raises(openai.NotFoundError):
        gw.openai().responses.create(model="no-such-model", input="hi")
