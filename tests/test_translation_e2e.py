"""Cross-format calls: OpenAI clients on Anthropic models, Anthropic clients on OpenAI models."""

from __future__ import annotations

import json
from decimal import Decimal

import pydantic

from gateway_fixtures import GW

M = Decimal(1_000_000)
WEATHER_OPENAI = [
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
WEATHER_ANTHROPIC = [
    {
        "name": "get_weather",
        "input_schema": WEATHER_OPENAI[0]["function"]["parameters"],  # type: ignore[index]
    }
]


def test_openai_client_to_anthropic_model(gw: GW) -> None:
    raw = gw.openai().chat.completions.with_raw_response.create(
        model="claude-sonnet-4-6",
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}],
    )
    resp = raw.parse()
    assert resp.object == "chat.completion" and resp.choices[0].message.content
    upstream = gw.fake.app.requests[-1]
    assert upstream.path == "/v1/messages" and upstream.body["system"] == "be brief"
    rec = gw.record(raw.headers["x-tokenomy-request-id"])
    assert rec.api == "openai" and rec.provider == "anthropic"
    u = resp.usage
    assert u is not None
    assert rec.cost_usd == (u.prompt_tokens * 3 + u.completion_tokens * 15) / M


def test_openai_client_streams_anthropic_tool_call(gw: GW) -> None:
    stream = gw.openai().chat.completions.create(
        model="claude-sonnet-4-6",
        messages=[{"role": "user", "content": "weather? [[fake:tool=get_weather]]"}],
        tools=WEATHER_OPENAI,  # type: ignore[arg-type]
        stream=True,
        stream_options={"include_usage": True},
    )
    args, finish, usage = "", None, None
    for chunk in stream:
        usage = chunk.usage or usage
        for c in chunk.choices:
            for tc in c.delta.tool_calls or []:
                args += (tc.function.arguments or "") if tc.function else ""
            finish = c.finish_reason or finish
    assert finish == "tool_calls" and "location" in json.loads(args)
    assert usage is not None and usage.completion_tokens > 0


def test_anthropic_client_to_openai_model(gw: GW) -> None:
    raw = gw.anthropic().messages.with_raw_response.create(
        model="gpt-4o", max_tokens=64, messages=[{"role": "user", "content": "hello"}]
    )
    msg = raw.parse()
    assert msg.type == "message" and msg.content[0].type == "text"
    upstream = gw.fake.app.requests[-1]
    assert upstream.path == "/v1/chat/completions"
    rec = gw.record(raw.headers["x-tokenomy-request-id"])
    assert rec.api == "anthropic" and rec.provider == "openai"
    assert (
        rec.cost_usd == (msg.usage.input_tokens * Decimal("2.5") + msg.usage.output_tokens * 10) / M
    )


def test_anthropic_client_streams_openai_tool_call(gw: GW) -> None:
    with gw.anthropic().messages.stream(
        model="gpt-4o",
        max_tokens=64,
        tools=WEATHER_ANTHROPIC,  # type: ignore[arg-type]
        messages=[{"role": "user", "content": "weather? [[fake:tool=get_weather]]"}],
    ) as stream:
        final = stream.get_final_message()
        rid = stream.response.headers["x-tokenomy-request-id"]
    assert final.stop_reason == "tool_use"
    block = next(b for b in final.content if b.type == "tool_use")
    assert block.input == {"location": "x"} or "location" in block.input  # type: ignore[operator]
    rec = gw.record(rid)
    assert rec.stream and not rec.usage.estimated and rec.usage.output_tokens > 0
    assert final.usage.output_tokens == rec.usage.output_tokens


def test_anthropic_client_on_an_openai_reasoning_model(gw: GW) -> None:
    # OpenAI's reasoning models refuse `max_tokens`; Anthropic's required max_tokens
    # becomes their max_completion_tokens, JSON and streaming.
    msg = gw.anthropic().messages.create(
        model="o3", max_tokens=64, messages=[{"role": "user", "content": "think"}]
    )
    assert msg.stop_reason == "end_turn" and msg.content[0].type == "text"
    assert gw.fake.app.requests[-1].body["max_completion_tokens"] == 64
    assert "max_tokens" not in gw.fake.app.requests[-1].body
    with gw.anthropic().messages.stream(
        model="o3", max_tokens=3, messages=[{"role": "user", "content": "think a lot"}]
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "max_tokens" and final.usage.output_tokens > 0


def test_openai_client_sends_temperature_and_top_p_to_anthropic(gw: GW) -> None:
    # OpenAI takes both; current Claude models refuse the pair, so top_p gives way.
    resp = gw.openai().chat.completions.create(
        model="claude-sonnet-4-6",
        messages=[{"role": "user", "content": "hello"}],
        temperature=0.3,
        top_p=0.9,
    )
    assert resp.choices[0].finish_reason == "stop"
    upstream = gw.fake.app.requests[-1].body
    assert upstream["temperature"] == 0.3 and "top_p" not in upstream
    gw.openai().chat.completions.create(
        model="claude-sonnet-4-6", messages=[{"role": "user", "content": "hello"}], top_p=0.9
    )
    assert gw.fake.app.requests[-1].body["top_p"] == 0.9


class Forecast(pydantic.BaseModel):
    city: str
    days: int


def test_anthropic_client_structured_output_on_an_openai_model(gw: GW) -> None:
    # output_config.format (Anthropic's structured outputs) is OpenAI's response_format.
    msg = gw.anthropic().messages.parse(
        model="gpt-4o",
        max_tokens=64,
        messages=[{"role": "user", "content": "forecast for Paris"}],
        output_format=Forecast,
    )
    assert msg.parsed_output is not None and msg.parsed_output.days == 1
    fmt = gw.fake.app.requests[-1].body["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["schema"]["required"] == [
        "city",
        "days",
    ]


def test_translated_usage_carries_the_reasoning_breakdown(gw: GW) -> None:
    # OpenAI always sends completion_tokens_details; reasoning tokens map both ways.
    resp = gw.openai().chat.completions.create(
        model="claude-sonnet-4-6", messages=[{"role": "user", "content": "hello"}]
    )
    assert resp.usage is not None and resp.usage.completion_tokens_details is not None
    assert resp.usage.completion_tokens_details.reasoning_tokens == 0
    stream = gw.openai().chat.completions.create(
        model="claude-sonnet-4-6",
        messages=[{"role": "user", "content": "hello [[fake:reasoning=5]]"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    usage = [c.usage for c in stream if c.usage is not None][-1]
    assert usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 5
    msg = gw.anthropic().messages.create(
        model="o3", max_tokens=64, messages=[{"role": "user", "content": "think"}]
    )
    assert msg.usage.output_tokens_details is not None
    assert msg.usage.output_tokens_details.thinking_tokens == 16  # the fake's o3 default
    with gw.anthropic().messages.stream(
        model="o3", max_tokens=64, messages=[{"role": "user", "content": "think"}]
    ) as s:
        final = s.get_final_message()
    assert final.usage.output_tokens_details is not None
    assert final.usage.output_tokens_details.thinking_tokens == 16
