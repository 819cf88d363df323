"""Streams are cached and replayed in the called API's format (official SDKs)."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from cache_helpers import CACHE_HEADER, cached_gateway, marker, upstream_calls
from gateway_fixtures import GW, Fake
from tokenomy.cache.assemble import Assembler

CLAUDE = "claude-sonnet-4-6"
WEATHER = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {"location": {"type": "string"}},
        "required": ["location"],
    },
}


@pytest.fixture(autouse=True)
def no_second_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    """A streamed miss is rebuilt from the events the relay already parsed: the
    cache never parses the bytes it relays a second time."""

    def feed(self: Assembler, data: bytes) -> bool:
        raise AssertionError("the cache parsed the relayed stream again")

    monkeypatch.setattr(Assembler, "feed", feed)


@pytest.fixture(scope="module")
def cgw(fake: Fake, fake_llamacpp: Fake, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GW]:
    tmp = tmp_path_factory.mktemp("cache_stream")
    yield from cached_gateway(tmp, fake, fake_llamacpp, cache_tools=True)


def openai_stream(gw: GW, content: str, **kw: Any) -> tuple[str, str, list[Any]]:
    """(cache header, request id, chunks) of one streamed chat completion."""
    raw = gw.openai().chat.completions.with_raw_response.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": content}],
        temperature=0,
        stream=True,
        **kw,
    )
    chunks = list(raw.parse())
    return raw.headers[CACHE_HEADER], raw.headers["x-tokenomy-request-id"], chunks


def text_of(chunks: list[Any]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_openai_stream_miss_then_stream_and_json_hits(cgw: GW) -> None:
    mark = marker()
    opts = {"stream_options": {"include_usage": True}}
    state, rid, first = openai_stream(cgw, f"tell me {mark}", **opts)
    assert state == "miss"
    state2, rid2, again = openai_stream(cgw, f"tell me {mark}", **opts)
    assert state2 == "hit-exact"
    assert text_of(again) == text_of(first) != ""
    assert again[-1].usage == first[-1].usage and again[-1].usage is not None
    assert again[-1].choices == []
    finish = [c.choices[0].finish_reason for c in again if c.choices and c.choices[0].finish_reason]
    assert finish == ["stop"]
    # without include_usage the replay has no usage chunk, as from the provider
    state3, _, plain = openai_stream(cgw, f"tell me {mark}")
    assert state3 == "hit-exact"
    assert text_of(plain) == text_of(first) and all(c.usage is None for c in plain)
    # the same entry answers a non-streamed request
    raw = cgw.openai().chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": f"tell me {mark}"}], temperature=0
    )
    assert raw.headers[CACHE_HEADER] == "hit-exact"
    resp = raw.parse()
    assert resp.choices[0].message.content == text_of(first)
    assert resp.usage == first[-1].usage
    assert upstream_calls(cgw, mark) == 1
    paid, hit = cgw.record(rid), cgw.record(rid2)
    assert hit.stream and hit.status == 200 and hit.cost_usd == Decimal(0)
    assert Decimal(hit.decisions["cache"]["saved_usd"]) == paid.cost_usd
    assert hit.usage.output_tokens == paid.usage.output_tokens > 0


def test_openai_json_miss_replays_as_stream_with_tool_calls(cgw: GW) -> None:
    mark = marker()
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {
                    "type": "object",
                    "properties": {"location": {"type": "string"}},
                    "required": ["location"],
                },
            },
        }
    ]
    content = f"weather {mark} [[fake:tool]]"
    raw = cgw.openai().chat.completions.with_raw_response.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": content}],
        temperature=0,
        tools=tools,  # type: ignore[arg-type]
    )
    assert raw.headers[CACHE_HEADER] == "miss"
    calls = raw.parse().choices[0].message.tool_calls
    assert calls
    state, _, chunks = openai_stream(cgw, content, tools=tools)
    assert state == "hit-exact"
    name = "".join(
        tc.function.name or ""
        for c in chunks
        if c.choices
        for tc in c.choices[0].delta.tool_calls or ()
        if tc.function
    )
    args = "".join(
        tc.function.arguments or ""
        for c in chunks
        if c.choices
        for tc in c.choices[0].delta.tool_calls or ()
        if tc.function
    )
    assert name == calls[0].function.name  # type: ignore[union-attr]
    assert args == calls[0].function.arguments  # type: ignore[union-attr]
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    assert upstream_calls(cgw, mark) == 1


def json_chat(gw: GW, content: str, **kw: Any) -> Any:
    return gw.openai().chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": content}], temperature=0, **kw
    )


def streamed_logprobs(chunks: list[Any]) -> list[tuple[str, float]]:
    return [
        (t.token, t.logprob)
        for c in chunks
        if c.choices and c.choices[0].logprobs
        for t in c.choices[0].logprobs.content or ()
    ]


def test_logprobs_survive_a_streamed_miss_and_a_streamed_hit(cgw: GW) -> None:
    # a request that asked for logprobs gets them from an entry, however the entry
    # was stored and however the hit is served
    mark = marker()
    state, _, first = openai_stream(cgw, f"lp {mark}", logprobs=True)
    assert state == "miss"
    tokens = streamed_logprobs(first)
    assert tokens and "".join(t for t, _ in tokens) == text_of(first)
    raw = json_chat(cgw, f"lp {mark}", logprobs=True)
    assert raw.headers[CACHE_HEADER] == "hit-exact"
    lp = raw.parse().choices[0].logprobs
    assert lp is not None and [(t.token, t.logprob) for t in lp.content or ()] == tokens
    state, _, again = openai_stream(cgw, f"lp {mark}", logprobs=True)
    assert state == "hit-exact"
    assert streamed_logprobs(again) == tokens
    # each replayed chunk carries the logprobs of its own content, as the provider's do
    assert all(
        c.choices[0].delta.content == "".join(t.token for t in c.choices[0].logprobs.content)
        for c in again
        if c.choices and c.choices[0].logprobs
    )
    assert upstream_calls(cgw, mark) == 1


def test_logprobs_of_a_json_miss_replay_in_a_streamed_hit(cgw: GW) -> None:
    mark = marker()
    raw = json_chat(cgw, f"lp {mark}", logprobs=True)
    assert raw.headers[CACHE_HEADER] == "miss"
    lp = raw.parse().choices[0].logprobs
    assert lp is not None and lp.content
    state, _, chunks = openai_stream(cgw, f"lp {mark}", logprobs=True)
    assert state == "hit-exact"
    assert streamed_logprobs(chunks) == [(t.token, t.logprob) for t in lp.content]
    assert text_of(chunks) == raw.parse().choices[0].message.content
    assert upstream_calls(cgw, mark) == 1


def test_anthropic_stream_miss_then_stream_and_json_hits(cgw: GW) -> None:
    mark = marker()
    client = cgw.anthropic()
    kw: dict[str, Any] = {
        "model": CLAUDE,
        "max_tokens": 100,
        "messages": [{"role": "user", "content": f"weather {mark} [[fake:tool=get_weather]]"}],
        "tools": [WEATHER],
        "extra_body": {"temperature": 0},
    }
    finals = []
    for expected in ("miss", "hit-exact"):
        with client.messages.with_streaming_response.create(stream=True, **kw) as resp:
            assert resp.headers[CACHE_HEADER] == expected
            assert b"message_stop" in resp.read()
        with client.messages.stream(**kw) as stream:
            finals.append(stream.get_final_message())
    assert finals[0].stop_reason == finals[1].stop_reason == "tool_use"
    assert finals[1].content == finals[0].content
    assert finals[1].usage == finals[0].usage
    block = next(b for b in finals[1].content if b.type == "tool_use")
    assert block.name == "get_weather" and "location" in block.input  # type: ignore[operator]
    raw = client.messages.with_raw_response.create(**kw)
    assert raw.headers[CACHE_HEADER] == "hit-exact"
    assert raw.parse().content == finals[0].content
    assert upstream_calls(cgw, mark) == 1


def test_anthropic_text_stream_events(cgw: GW) -> None:
    mark = marker()
    client = cgw.anthropic()
    kw: dict[str, Any] = {
        "model": "claude-haiku-4-5",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": f"a story {mark} [[fake:chunks=30]]"}],
        "extra_body": {"temperature": 0},
    }
    runs = []
    for _ in range(2):
        events = list(client.messages.create(stream=True, **kw))
        runs.append(events)
    kinds = [e.type for e in runs[1]]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    assert "content_block_start" in kinds and "content_block_stop" in kinds

    def text(events: list[Any]) -> str:
        return "".join(
            e.delta.text
            for e in events
            if e.type == "content_block_delta" and e.delta.type == "text_delta"
        )

    assert text(runs[1]) == text(runs[0]) != ""
    assert upstream_calls(cgw, mark) == 1


def test_a_broken_stream_is_not_stored(cgw: GW) -> None:
    mark = marker()
    for _ in range(2):
        raw = cgw.openai().chat.completions.with_raw_response.create(
            model="gpt-4o",
            messages=[{"role": "user", "content": f"{mark} [[fake:stream_error]]"}],
            temperature=0,
            stream=True,
        )
        assert raw.headers[CACHE_HEADER] == "miss"
        with pytest.raises(Exception):  # noqa: B017 - the SDK raises its APIError
            list(raw.parse())
    assert upstream_calls(cgw, mark) == 2


def test_openai_client_on_an_anthropic_upstream(cgw: GW) -> None:
    mark = marker()
    runs = []
    for _ in range(2):
        raw = cgw.openai().chat.completions.with_raw_response.create(
            model="claude-haiku-4-5",
            messages=[{"role": "user", "content": f"translate {mark}"}],
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
        runs.append((raw.headers[CACHE_HEADER], list(raw.parse())))
    (s1, first), (s2, again) = runs
    assert (s1, s2) == ("miss", "hit-exact")
    assert text_of(again) == text_of(first) != ""
    assert again[-1].usage == first[-1].usage and again[-1].usage is not None
    assert upstream_calls(cgw, mark) == 1


def test_anthropic_client_on_an_openai_upstream(cgw: GW) -> None:
    mark = marker()
    client = cgw.anthropic()
    kw: dict[str, Any] = {
        "model": "gpt-4o",
        "max_tokens": 50,
        "messages": [{"role": "user", "content": f"translate {mark}"}],
        "extra_body": {"temperature": 0},
    }
    finals = []
    for _ in range(2):
        with client.messages.stream(**kw) as stream:
            finals.append(stream.get_final_message())
    assert finals[1].content == finals[0].content and finals[0].content
    assert finals[1].usage.output_tokens == finals[0].usage.output_tokens
    assert upstream_calls(cgw, mark) == 1


@pytest.mark.parametrize("temperature", [0, 0.7], ids=["miss", "bypass"])
def test_a_client_that_leaves_is_recorded_and_nothing_stored(cgw: GW, temperature: float) -> None:
    mark = marker()
    body = {
        "model": "gpt-4o",
        "stream": True,
        "temperature": temperature,
        "messages": [
            {"role": "user", "content": f"{mark} [[fake:chunks=40]] [[fake:chunk_delay_ms=20]]"}
        ],
    }
    headers = {"authorization": f"Bearer {cgw.key}"}
    with cgw.http() as c, c.stream("POST", "/v1/chat/completions", json=body, headers=headers) as r:
        rid = r.headers["x-tokenomy-request-id"]
        assert r.headers[CACHE_HEADER] == ("miss" if temperature == 0 else "bypass")
        lines = 0
        for line in r.iter_lines():
            lines += bool(line)
            if lines >= 5:
                break
    assert cgw.settled(rid).status == 499
    if temperature == 0:  # the half-sent answer was not kept
        state, _, _ = openai_stream(cgw, f"{mark} [[fake:chunks=40]] [[fake:chunk_delay_ms=20]]")
        assert state == "miss"
