"""The Anthropic-compatible surface, driven by the official `anthropic` SDK."""

from __future__ import annotations

import re
from decimal import Decimal

import anthropic
import pytest

from gateway_fixtures import GW, UPSTREAM_KEY
from tokenomy.keys import mint_key

M = Decimal(1_000_000)
MODEL = "claude-sonnet-4-6"


def sonnet_cost(plain: int, read: int, w5m: int, w1h: int, out: int) -> Decimal:
    """Claude Sonnet 4.6 per million tokens: $3 input, $0.30 cache read,
    $3.75 5-minute cache write, $6 1-hour cache write, $15 output."""
    return (plain * 3 + read * Decimal("0.3") + w5m * Decimal("3.75") + w1h * 6 + out * 15) / M


def test_json_message_is_metered_exactly(gw: GW) -> None:
    raw = gw.anthropic().messages.with_raw_response.create(
        model=MODEL,
        max_tokens=100,
        messages=[{"role": "user", "content": "hello there"}],
        metadata={"user_id": "cust-7"},
    )
    msg = raw.parse()
    assert msg.content[0].type == "text"
    rid = raw.headers["x-tokenomy-request-id"]
    want = sonnet_cost(msg.usage.input_tokens, 0, 0, 0, msg.usage.output_tokens)
    assert Decimal(raw.headers["x-tokenomy-cost-usd"]) == want
    rec = gw.record(rid)
    assert rec.api == "anthropic" and rec.provider == "anthropic"
    assert rec.cost_usd == want and rec.user == "alice" and rec.team == "search"


def test_cache_writes_and_reads_are_priced_by_ttl(gw: GW) -> None:
    client = gw.anthropic()
    long_doc = "policy " * 50
    system = [
        {"type": "text", "text": "You answer from the document."},
        {"type": "text", "text": long_doc, "cache_control": {"type": "ephemeral", "ttl": "1h"}},
    ]
    msgs = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "first question about caching 5m " * 3,
                 "cache_control": {"type": "ephemeral"}},
            ],
        }
    ]  # fmt: skip
    first = client.messages.with_raw_response.create(
        model=MODEL,
        max_tokens=50,
        system=system,
        messages=msgs,  # type: ignore[arg-type]
    )
    u = first.parse().usage
    assert u.cache_creation_input_tokens and u.cache_creation is not None
    w1h, w5m = (
        u.cache_creation.ephemeral_1h_input_tokens,
        u.cache_creation.ephemeral_5m_input_tokens,
    )
    assert w1h > 0 and w5m > 0
    rec = gw.record(first.headers["x-tokenomy-request-id"])
    assert rec.usage.cache_write_1h_tokens == w1h and rec.usage.cache_write_tokens == w5m
    assert rec.usage.input_tokens == u.input_tokens + w1h + w5m  # Anthropic's input excludes cache
    assert rec.cost_usd == sonnet_cost(u.input_tokens, 0, w5m, w1h, u.output_tokens)

    second = client.messages.with_raw_response.create(
        model=MODEL,
        max_tokens=50,
        system=system,
        messages=msgs,  # type: ignore[arg-type]
    )
    u2 = second.parse().usage
    assert u2.cache_read_input_tokens == w1h + w5m
    rec2 = gw.record(second.headers["x-tokenomy-request-id"])
    assert rec2.usage.cache_read_tokens == w1h + w5m
    assert rec2.cost_usd == sonnet_cost(u2.input_tokens, w1h + w5m, 0, 0, u2.output_tokens)


def test_stream_events_and_final_usage(gw: GW) -> None:
    client = gw.anthropic()
    with client.messages.stream(
        model=MODEL, max_tokens=100, messages=[{"role": "user", "content": "stream me"}]
    ) as stream:
        kinds = [ev.type for ev in stream]
        final = stream.get_final_message()
        rid = stream.response.headers["x-tokenomy-request-id"]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert "content_block_delta" in kinds
    rec = gw.record(rid)
    assert rec.stream and not rec.usage.estimated
    assert rec.usage.output_tokens == final.usage.output_tokens
    assert rec.cost_usd == sonnet_cost(final.usage.input_tokens, 0, 0, 0, final.usage.output_tokens)


def test_tool_use_stream(gw: GW) -> None:
    tools = [
        {
            "name": "get_weather",
            "description": "Weather for a city",
            "input_schema": {
                "type": "object",
                "properties": {"location": {"type": "string"}},
                "required": ["location"],
            },
        }
    ]
    with gw.anthropic().messages.stream(
        model=MODEL,
        max_tokens=100,
        tools=tools,  # type: ignore[arg-type]
        messages=[{"role": "user", "content": "weather? [[fake:tool=get_weather]]"}],
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    block = next(b for b in final.content if b.type == "tool_use")
    assert block.name == "get_weather" and "location" in block.input  # type: ignore[operator]


async def test_async_client(gw: GW) -> None:
    client = gw.async_anthropic()
    msg = await client.messages.create(
        model="claude-haiku-4-5", max_tokens=20, messages=[{"role": "user", "content": "hi"}]
    )
    assert msg.usage.output_tokens > 0
    async with client.messages.stream(
        model="claude-haiku-4-5", max_tokens=20, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        text = await stream.get_final_text()
    assert text.startswith("Echo:")
    await client.close()


def test_models_list_is_in_anthropic_format(gw: GW) -> None:
    models = list(gw.anthropic().models.list())
    by_id = {m.id: m for m in models}
    assert {"gpt-4o", "house-model"} <= set(by_id) and not any("*" in i for i in by_id)
    m = by_id["gpt-4o"]
    assert (m.type, m.display_name, m.created_at.year >= 2025) == ("model", "gpt-4o", True)
    assert gw.anthropic().models.list().has_more is False


def test_errors_off_the_messages_route_are_in_anthropic_format(gw: GW) -> None:
    with pytest.raises(anthropic.AuthenticationError) as bad_key:
        gw.anthropic(key="tk-nothing-here").models.list()
    with pytest.raises(anthropic.NotFoundError) as unknown:
        gw.anthropic().messages.batches.list()
    for info, etype in ((bad_key, "authentication_error"), (unknown, "not_found_error")):
        body = info.value.response.json()
        assert body["type"] == "error" and body["error"]["type"] == etype


def test_request_id_is_the_gateways_where_the_sdk_reads_it(gw: GW) -> None:
    """Anthropic's SDK exposes the ``request-id`` header (``message._request_id``,
    ``APIStatusError.request_id``); error bodies carry ``request_id``. Through the
    gateway both are its own id, the one the ledger row has."""
    client = gw.anthropic()
    raw = client.messages.with_raw_response.create(
        model=MODEL, max_tokens=20, messages=[{"role": "user", "content": "hello"}]
    )
    rid = raw.headers["x-tokenomy-request-id"]
    assert raw.headers["request-id"] == rid and raw.parse()._request_id == rid
    gw.record(rid)
    with client.messages.stream(
        model=MODEL, max_tokens=20, messages=[{"role": "user", "content": "hello"}]
    ) as stream:
        assert stream.get_final_message().stop_reason == "end_turn"
        sid = stream.response.headers["x-tokenomy-request-id"]
        assert stream.response.headers["request-id"] == sid
    with pytest.raises(anthropic.BadRequestError) as bad:
        client.messages.create(
            model=MODEL,
            max_tokens=20,
            messages=[{"role": "user", "content": "[[fake:status=400]]"}],
        )
    eid = bad.value.response.headers["x-tokenomy-request-id"]
    assert bad.value.request_id == eid and bad.value.response.json()["request_id"] == eid
    gw.record(eid)


_MSG_ID = re.compile(rb"msg_[0-9a-f]+")  # two upstream calls: two message ids


def _events(body: bytes) -> list[bytes]:
    """A stream's events, comments (the gateway's cost line) left out."""
    return [e for e in body.split(b"\n\n") if e and not e.startswith(b":")]


@pytest.mark.parametrize("stop", ["end_turn", "stop_sequence", "pause_turn", "refusal"])
def test_every_stream_event_passes_through_unchanged(gw: GW, stop: str) -> None:
    """Thinking with its signature, a server tool and its result, citations, ping,
    and each stop_reason reach the client byte for byte, in order; the SDK's
    stream helpers build the same message as the JSON reply."""
    body = {
        "model": MODEL,
        "max_tokens": 50,
        "messages": [{"role": "user", "content": f"[[fake:rich]] [[fake:stop={stop}]] hi"}],
        "stream": True,
    }
    version = {"anthropic-version": "2023-06-01"}
    with gw._keep(gw.http()) as http:
        through = http.post("/v1/messages", json=body, headers={"x-api-key": gw.key, **version})
        direct = http.post(
            gw.fake.url + "/v1/messages", json=body, headers={"x-api-key": UPSTREAM_KEY, **version}
        )
    assert through.status_code == direct.status_code == 200
    got, sent = _events(through.content), _events(direct.content)
    assert [_MSG_ID.sub(b"msg_", e) for e in got] == [_MSG_ID.sub(b"msg_", e) for e in sent]
    joined = b"".join(got)
    assert all(k in joined for k in (b"event: ping", b"signature_delta", b"citations_delta"))

    client = gw.anthropic()
    with client.messages.stream(
        model=MODEL,
        max_tokens=50,
        messages=body["messages"],  # type: ignore[arg-type]
    ) as stream:
        final = stream.get_final_message()
    plain = client.messages.create(
        model=MODEL,
        max_tokens=50,
        messages=body["messages"],  # type: ignore[arg-type]
    )
    kinds = ["thinking", "server_tool_use", "web_search_tool_result", "text", "text"]
    assert [b.type for b in final.content] == [b.type for b in plain.content] == kinds
    thinking, search, cited = final.content[0], final.content[1], final.content[3]
    assert thinking.type == "thinking" and plain.content[0].type == "thinking"
    assert thinking.signature == plain.content[0].signature
    assert search.type == "server_tool_use" and search.input == {"query": "tokenomy"}
    assert cited.type == "text" and cited.citations and len(cited.citations) == 1
    assert final.stop_reason == plain.stop_reason == stop
    want_sequence = "###" if stop == "stop_sequence" else None
    assert final.stop_sequence == plain.stop_sequence == want_sequence


def test_an_empty_metadata_user_id_names_nobody(gw: GW) -> None:
    """As OpenAI's empty ``user``: an empty ``metadata.user_id`` is no end user (the
    customer ""), and an application's key records none."""
    secret, app_key = mint_key(team="search", org="acme")
    gw.store.create_key(app_key)
    raw = gw.anthropic(secret).messages.with_raw_response.create(
        model="claude-haiku-4-5", max_tokens=5, messages=[{"role": "user", "content": "hi"}],
        metadata={"user_id": ""},
    )  # fmt: skip
    assert gw.record(raw.headers["x-tokenomy-request-id"]).user is None
