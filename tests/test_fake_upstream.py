"""The fake upstream, driven by the real OpenAI and Anthropic SDKs over loopback."""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import anthropic
import httpx2
import openai
import pydantic
import pytest

from tokenomy.testing import FakeOptions, FakeUpstream, create_app, serve_in_thread
from tokenomy.testing._fake_common import DEFAULT_CHUNKS

WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city"],
        },
    },
}
ANTHROPIC_TOOL: Any = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "input_schema": WEATHER_TOOL["function"]["parameters"],
}


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[FakeUpstream, str]]:
    app = create_app()
    with serve_in_thread(app) as base_url:
        yield app, base_url


@pytest.fixture
def fake(served: tuple[FakeUpstream, str]) -> FakeUpstream:
    app, _ = served
    app.state.clear()
    app.options = FakeOptions()
    return app


@pytest.fixture
def base_url(served: tuple[FakeUpstream, str], fake: FakeUpstream) -> str:
    return served[1]


@pytest.fixture
def oai(base_url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=base_url + "/v1", api_key="sk-test", max_retries=0) as client:
        yield client


@pytest.fixture
def claude(base_url: str) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=base_url, api_key="sk-ant", max_retries=0) as client:
        yield client


@pytest.fixture
async def asgi(fake: FakeUpstream) -> Any:
    transport = httpx2.ASGITransport(app=fake)
    async with httpx2.AsyncClient(transport=transport, base_url="http://fake") as client:
        yield client


def user(text: str) -> Any:
    return [{"role": "user", "content": text}]


# -- OpenAI chat ------------------------------------------------------------------------------


def test_chat_json_matches_documented_counts(oai: openai.OpenAI) -> None:
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hello big world [[fake:chunks=4]]"},
    ]
    out = oai.chat.completions.create(model="gpt-4o-mini", messages=messages, n=2)
    assert out.object == "chat.completion" and out.id.startswith("chatcmpl-")
    assert out.model == "gpt-4o-mini" and out.system_fingerprint
    assert [c.index for c in out.choices] == [0, 1]
    assert out.choices[1].message.content == "Echo: hello big world hello"
    assert out.choices[0].finish_reason == "stop" and out.choices[0].message.refusal is None
    # (3 + 2) + (3 + 4 words, the directive included); 2 choices x 4 pieces
    assert out.usage is not None
    assert (out.usage.prompt_tokens, out.usage.completion_tokens) == (12, 8)
    assert out.usage.total_tokens == 20
    assert out.usage.completion_tokens_details is not None
    assert out.usage.completion_tokens_details.reasoning_tokens == 0


def test_chat_stream_includes_usage_chunk_only_when_asked(
    oai: openai.OpenAI, fake: FakeUpstream
) -> None:
    chunks = list(
        oai.chat.completions.create(
            model="gpt-4o",
            messages=user("one two three [[fake:chunks=5]]"),
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Echo: one two three one two"
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) == 5
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 5
    assert all(c.usage is None for c in chunks[:-1])
    assert fake.requests[-1].body["stream_options"] == {"include_usage": True}

    plain = list(oai.chat.completions.create(model="gpt-4o", messages=user("hi"), stream=True))
    assert all(c.choices and c.usage is None for c in plain)


async def test_stream_usage_false_never_sends_usage(base_url: str, fake: FakeUpstream) -> None:
    fake.options.stream_usage = False
    body = {
        "model": "llama",
        "messages": user("hi"),
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    url = base_url + "/v1/chat/completions"
    async with aiohttp.ClientSession() as session, session.post(url, json=body) as resp:
        raw = await resp.text()
    assert raw.endswith("data: [DONE]\n\n")
    assert '"usage"' not in raw


def test_reasoning_tokens_for_o_models_and_directive(oai: openai.OpenAI) -> None:
    out = oai.chat.completions.create(model="o3-mini", messages=user("hi"))
    assert out.usage is not None and out.usage.completion_tokens_details is not None
    assert out.usage.completion_tokens_details.reasoning_tokens == 16
    assert out.usage.completion_tokens == 8 + 16
    out = oai.chat.completions.create(
        model="gpt-4o",
        messages=user("hi [[fake:reasoning=5]] [[fake:cached=2]]"),
    )
    assert out.usage is not None and out.usage.prompt_tokens_details is not None
    assert out.usage.completion_tokens == 8 + 5
    assert out.usage.prompt_tokens_details.cached_tokens == 2


def test_cache_write_directive_is_part_of_the_prompt(oai: openai.OpenAI) -> None:
    """``cache_write=N``: OpenAI's ``prompt_tokens_details.cache_write_tokens``, at
    most the prompt not read from the cache; reported only when asked for."""
    plain = oai.chat.completions.create(model="gpt-4o", messages=user("a b c d e f"))
    assert plain.usage is not None and plain.usage.prompt_tokens_details is not None
    assert plain.usage.prompt_tokens_details.cache_write_tokens is None
    out = oai.chat.completions.create(
        model="gpt-4o", messages=user("a b c d [[fake:cached=2]] [[fake:cache_write=3]]")
    )
    assert out.usage is not None and out.usage.prompt_tokens_details is not None
    assert out.usage.prompt_tokens == plain.usage.prompt_tokens  # six words either way
    assert out.usage.prompt_tokens_details.cached_tokens == 2
    assert out.usage.prompt_tokens_details.cache_write_tokens == 3
    big = oai.chat.completions.create(
        model="gpt-4o", messages=user("a [[fake:cached=2]] [[fake:cache_write=900]]")
    )
    assert big.usage is not None and big.usage.prompt_tokens_details is not None
    assert big.usage.prompt_tokens_details.cache_write_tokens == big.usage.prompt_tokens - 2


def test_audio_directives_are_part_of_the_counts(oai: openai.OpenAI) -> None:
    plain = oai.chat.completions.create(model="gpt-audio", messages=user("hi"))
    out = oai.chat.completions.create(
        model="gpt-audio", messages=user("hi [[fake:audio_in=30]] [[fake:audio_out=20]]")
    )
    assert plain.usage is not None and out.usage is not None
    assert out.usage.prompt_tokens_details is not None
    assert out.usage.completion_tokens_details is not None
    assert out.usage.prompt_tokens_details.audio_tokens == 30
    assert out.usage.completion_tokens_details.audio_tokens == 20
    # The directives are words of the prompt too: 2 more than "hi" alone.
    assert out.usage.prompt_tokens == plain.usage.prompt_tokens + 2 + 30
    assert out.usage.completion_tokens == plain.usage.completion_tokens + 20


def test_max_tokens_cuts_the_reply(oai: openai.OpenAI) -> None:
    out = oai.chat.completions.create(
        model="gpt-4o",
        messages=user("a b c"),
        max_completion_tokens=3,
    )
    assert out.choices[0].finish_reason == "length"
    assert out.choices[0].message.content == "Echo: a b c"


def test_tool_call_json_and_stream(oai: openai.OpenAI) -> None:
    messages = user("weather? [[fake:tool=get_weather]]")
    out = oai.chat.completions.create(model="gpt-4o", messages=messages, tools=[WEATHER_TOOL])
    choice = out.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    call = choice.message.tool_calls[0]
    assert call.id.startswith("call_") and call.type == "function"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "x"}

    with oai.chat.completions.stream(
        model="gpt-4o",
        messages=messages,
        tools=[WEATHER_TOOL],
    ) as stream:
        final = stream.get_final_completion()
    streamed = final.choices[0].message.tool_calls[0]
    assert final.choices[0].finish_reason == "tool_calls"
    assert json.loads(streamed.function.arguments) == {"city": "x"}

    # Once the tool result is in, the model answers in text.
    follow_up = [
        *messages,
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
    ]
    answer = oai.chat.completions.create(model="gpt-4o", messages=follow_up, tools=[WEATHER_TOOL])
    assert answer.choices[0].finish_reason == "stop"


def test_json_schema_reply_parses_into_the_model(oai: openai.OpenAI) -> None:
    class Answer(pydantic.BaseModel):
        city: str
        score: int

    out = oai.chat.completions.parse(model="gpt-4o", messages=user("hi"), response_format=Answer)
    parsed = out.choices[0].message.parsed
    assert parsed is not None and parsed.score == 1 and parsed.city.startswith("Echo:")
    obj = oai.chat.completions.create(
        model="gpt-4o",
        messages=user("hi"),
        response_format={"type": "json_object"},
    )
    assert json.loads(obj.choices[0].message.content or "") == {"answer": "Echo: hi" + " hi" * 7}


def test_no_usage_directive(oai: openai.OpenAI) -> None:
    out = oai.chat.completions.create(model="gpt-4o", messages=user("[[fake:no_usage]] hi"))
    assert out.usage is None
    chunks = list(
        oai.chat.completions.create(
            model="gpt-4o",
            messages=user("[[fake:no_usage]] hi"),
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks and all(c.choices and c.usage is None for c in chunks)


def test_openai_logprobs_follow_the_confidence_directive(oai: openai.OpenAI) -> None:
    def logprobs(text: str, stream: bool = False) -> list[float]:
        kw = {"model": "gpt-4o", "messages": user(text), "logprobs": True}
        if not stream:
            lp = oai.chat.completions.create(**kw).choices[0].logprobs
            return [t.logprob for t in (lp.content if lp and lp.content else [])]
        chunks = oai.chat.completions.create(**kw, stream=True)
        return [t.logprob for c in chunks if c.choices and c.choices[0].logprobs
                for t in c.choices[0].logprobs.content or []]  # fmt: skip

    for stream in (False, True):
        assert set(logprobs("hi [[fake:chunks=3]]", stream)) == {-0.25}
        assert (
            logprobs("[[fake:confidence=50]] [[fake:chunks=2]]", stream)
            == [pytest.approx(math.log(0.5))] * 2
        )
        assert set(logprobs("hi [[fake:confidence=0]]", stream)) == {-9999.0}
    with pytest.raises(openai.BadRequestError, match="a percentage"):
        oai.chat.completions.create(model="gpt-4o", messages=user("[[fake:confidence=101]]"))


# -- errors and failure scenarios -------------------------------------------------------------

TOO_LONG = "a long story [[fake:too_long]]"


def test_openai_errors_map_to_sdk_classes(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as rate:
        oai.chat.completions.create(model="gpt-4o", messages=user("[[fake:status=429]]"))
    assert rate.value.response.headers["retry-after"] == "1"
    assert rate.value.response.headers["x-ratelimit-remaining-requests"] == "0"
    assert rate.value.response.headers["x-request-id"].startswith("req_")
    assert rate.value.code == "rate_limit_exceeded"
    with pytest.raises(openai.InternalServerError):
        oai.chat.completions.create(model="gpt-4o", messages=user("[[fake:status=500]]"))
    with pytest.raises(openai.BadRequestError, match="unknown fake directive"):
        oai.chat.completions.create(model="gpt-4o", messages=user("[[fake:nope]]"))
    with pytest.raises(openai.BadRequestError) as missing:
        oai.chat.completions.create(model="gpt-4o", messages=[])
    assert missing.value.param == "messages"


def test_too_long_is_refused_as_each_api_refuses_a_prompt_past_the_window(
    oai: openai.OpenAI,
) -> None:
    for param, create in [
        ("messages", lambda: oai.chat.completions.create(model="gpt-4o", messages=user(TOO_LONG))),
        ("input", lambda: oai.embeddings.create(model="text-embedding-3-small", input=TOO_LONG)),
        ("input", lambda: oai.responses.create(model="gpt-4o", input=TOO_LONG)),
    ]:
        with pytest.raises(openai.BadRequestError) as info:
            create()
        assert info.value.code == "context_length_exceeded" and info.value.param == param
        assert f"your {param} resulted in 128001 tokens" in info.value.message


async def test_a_json_schema_of_the_wrong_shape_gets_an_answer_not_a_crash(asgi: Any) -> None:
    """A type or a required name that is no string (an object, a list) fills what it
    can: the fake answers, as a gateway fuzzing its requests needs it to."""
    schema = {"type": "object", "properties": {"a": {"type": {}}, "b": {"type": [[]]}},
              "required": ["a", "b", {}, 3]}  # fmt: skip
    body = {"model": "gpt-4o", "messages": user("hi"),
            "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}}  # fmt: skip
    r = await asgi.post("/v1/chat/completions", json=body)
    assert r.status_code == 200, r.text
    assert set(json.loads(r.json()["choices"][0]["message"]["content"])) == {"a", "b"}


async def test_validation_errors_in_each_format(asgi: Any) -> None:
    r = await asgi.post("/v1/chat/completions", json={"messages": user("hi")})
    assert r.status_code == 400
    assert set(r.json()["error"]) == {"message", "type", "param", "code"}
    headers = {"anthropic-version": "2023-06-01"}
    r = await asgi.post(
        "/v1/messages", json={"model": "c", "messages": user("hi")}, headers=headers
    )
    assert r.status_code == 400 and r.headers["request-id"] == r.json()["request_id"]
    assert r.json()["error"] == {
        "type": "invalid_request_error",
        "message": "max_tokens: Field required",
    }
    r = await asgi.post(
        "/v1/messages", json={"model": "c", "max_tokens": 5, "messages": user("hi")}
    )
    assert r.status_code == 400 and "anthropic-version" in r.json()["error"]["message"]
    r = await asgi.post("/v1/chat/completions", content=b"{oops")
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    r = await asgi.get("/v1/nowhere")
    assert r.status_code == 404 and r.json()["error"]["message"] == "Invalid URL (GET /v1/nowhere)"


def test_fail_times_then_succeed(oai: openai.OpenAI, fake: FakeUpstream) -> None:
    messages = user("[[fake:status=503]] [[fake:fail_times=2]] [[fake:id=a]] hi")
    for _ in range(2):
        with pytest.raises(openai.InternalServerError) as err:
            oai.chat.completions.create(model="gpt-4o", messages=messages)
        assert err.value.status_code == 503
    assert oai.chat.completions.create(model="gpt-4o", messages=messages).choices
    # Another directive text has its own counter.
    other = user("[[fake:status=503]] [[fake:fail_times=2]] [[fake:id=b]]")
    with pytest.raises(openai.InternalServerError):
        oai.chat.completions.create(model="gpt-4o", messages=other)
    assert len(fake.requests) == 4


def test_api_key_option(oai: openai.OpenAI, base_url: str, fake: FakeUpstream) -> None:
    fake.options.api_key = "sk-right"
    with pytest.raises(openai.AuthenticationError):
        oai.chat.completions.create(model="gpt-4o", messages=user("hi"))
    with openai.OpenAI(base_url=base_url + "/v1", api_key="sk-right", max_retries=0) as ok:
        assert ok.chat.completions.create(model="gpt-4o", messages=user("hi")).choices
    bad = anthropic.Anthropic(base_url=base_url, api_key="sk-wrong", max_retries=0)
    with bad, pytest.raises(anthropic.AuthenticationError):
        bad.messages.create(model="c", max_tokens=10, messages=user("hi"))


async def test_reset_drops_the_connection(base_url: str) -> None:
    url = base_url + "/v1/chat/completions"
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ServerDisconnectedError):
            async with session.post(url, json={"model": "m", "messages": user("[[fake:reset]]")}):
                pass
        body = {"model": "m", "messages": user("[[fake:reset]]"), "stream": True}
        async with session.post(url, json=body) as resp:
            assert resp.status == 200
            with pytest.raises(aiohttp.ClientPayloadError):
                await resp.read()


def test_reset_is_a_connection_error_for_the_sdk(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.APIConnectionError):
        oai.chat.completions.create(model="gpt-4o", messages=user("[[fake:reset]]"))


async def test_malformed_stream_and_json(base_url: str) -> None:
    url = base_url + "/v1/chat/completions"
    async with aiohttp.ClientSession() as session:
        body = {"model": "m", "messages": user("[[fake:malformed]]"), "stream": True}
        async with session.post(url, json=body) as resp:
            events = (await resp.text()).split("\n\n")
        assert json.loads(events[1][len("data: ") :])["choices"][0]["delta"]["content"]
        assert events[2] == "data: {not json" and events[3] == ""
        body = {"model": "m", "messages": user("[[fake:malformed]]")}
        async with session.post(url, json=body) as resp:
            assert resp.status == 200
            with pytest.raises(json.JSONDecodeError):
                json.loads(await resp.text())


def test_stream_error_event_raises_in_both_sdks(
    oai: openai.OpenAI, claude: anthropic.Anthropic
) -> None:
    stream = oai.chat.completions.create(
        model="gpt-4o",
        messages=user("[[fake:stream_error]]"),
        stream=True,
    )
    with pytest.raises(openai.APIError):
        list(stream)
    with pytest.raises(anthropic.APIStatusError, match="overloaded_error"):  # noqa: SIM117
        with claude.messages.stream(
            model="c",
            max_tokens=50,
            messages=user("[[fake:stream_error]]"),
        ) as s:
            s.get_final_message()


async def test_should_retry_header_on_error_replies(base_url: str) -> None:
    async with aiohttp.ClientSession() as session:
        for path, body in (
            ("/v1/chat/completions", {"model": "m"}),
            ("/v1/messages", {"model": "c", "max_tokens": 5}),
        ):
            text = "hi [[fake:status=429]] [[fake:should_retry=false]]"
            payload = {**body, "messages": user(text)}
            headers = {"anthropic-version": "2023-06-01"}
            async with session.post(base_url + path, json=payload, headers=headers) as resp:
                assert resp.status == 429 and resp.headers["x-should-retry"] == "false"
            payload = {**body, "messages": user("hi [[fake:status=429]]")}
            async with session.post(base_url + path, json=payload, headers=headers) as resp:
                assert resp.status == 429 and "x-should-retry" not in resp.headers


async def test_html_answers_an_error_status_with_a_page_not_an_api_body(base_url: str) -> None:
    text = "hi [[fake:status=502]] [[fake:html]]"
    async with aiohttp.ClientSession() as session:
        for path, payload in (
            ("/v1/chat/completions", {"model": "m", "messages": user(text)}),
            ("/v1/responses", {"model": "m", "input": text}),
            ("/v1/messages", {"model": "c", "max_tokens": 5, "messages": user(text)}),
        ):
            headers = {"anthropic-version": "2023-06-01"}
            async with session.post(base_url + path, json=payload, headers=headers) as resp:
                assert resp.status == 502
                assert resp.headers["content-type"] == "text/html; charset=utf-8"
                assert (await resp.text()).startswith("<html><head><title>502 Bad Gateway")


def test_stream_error_as_the_first_event(oai: openai.OpenAI) -> None:
    with oai.chat.completions.with_streaming_response.create(
        model="gpt-4o", messages=user("[[fake:stream_error]] [[fake:cut_at=0]]"), stream=True
    ) as resp:
        first = resp.text().split("\n\n")[0]
    assert json.loads(first.removeprefix("data: "))["error"]["type"] == "server_error"


async def test_delays(base_url: str) -> None:
    body: dict[str, Any] = {
        "model": "m",
        "messages": user("[[fake:delay_ms=60]] [[fake:chunk_delay_ms=5]]"),
    }
    started = time.perf_counter()
    async with aiohttp.ClientSession() as session:
        async with session.post(base_url + "/v1/chat/completions", json=body) as resp:
            await resp.read()
        first = time.perf_counter() - started
        body["stream"] = True
        started = time.perf_counter()
        async with session.post(base_url + "/v1/chat/completions", json=body) as resp:
            await resp.read()
        streamed = time.perf_counter() - started
    assert first >= 0.06
    assert streamed >= 0.06 + 0.005 * 9  # 11 events: role, 8 pieces, finish, [DONE]


# -- embeddings and models --------------------------------------------------------------------


def test_embeddings_base64_default_matches_floats(oai: openai.OpenAI, fake: FakeUpstream) -> None:
    out = oai.embeddings.create(model="text-embedding-3-small", input=["one two", "three"])
    assert fake.requests[-1].body["encoding_format"] == "base64"
    assert [d.index for d in out.data] == [0, 1]
    assert len(out.data[0].embedding) == 8
    assert out.usage.prompt_tokens == 3 and out.usage.total_tokens == 3
    floats = oai.embeddings.create(
        model="text-embedding-3-small", input="one two", encoding_format="float", dimensions=8
    )
    assert floats.data[0].embedding == out.data[0].embedding
    tokens = oai.embeddings.create(model="text-embedding-3-small", input=[[1, 2, 3, 4]])
    assert tokens.usage.prompt_tokens == 4


def test_legacy_completions_as_documented(oai: openai.OpenAI, fake: FakeUpstream) -> None:
    out = oai.completions.create(model="gpt-3.5-turbo-instruct", prompt="one two three")
    assert out.object == "text_completion" and out.id.startswith("cmpl-")
    assert out.choices[0].text.startswith("Echo: one") and out.choices[0].finish_reason == "stop"
    assert out.usage is not None and out.usage.prompt_tokens == 3
    assert out.usage.completion_tokens == DEFAULT_CHUNKS  # the fake's tokens: its pieces
    short = oai.completions.create(model="gpt-3.5-turbo-instruct", prompt="hi", max_tokens=2)
    assert short.choices[0].finish_reason == "length"
    assert short.usage is not None and short.usage.completion_tokens == 2
    chunks = list(
        oai.completions.create(
            model="gpt-3.5-turbo-instruct", prompt=["a", "b"], n=2, stream=True,
            stream_options={"include_usage": True},
        )
    )  # fmt: skip
    assert {c.choices[0].index for c in chunks if c.choices} == {0, 1, 2, 3}
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 4 * DEFAULT_CHUNKS
    bare = list(oai.completions.create(model="gpt-3.5-turbo-instruct", prompt="a", stream=True))
    assert all(c.usage is None for c in bare)
    with pytest.raises(openai.BadRequestError, match="prompt"):
        oai.completions.create(model="gpt-3.5-turbo-instruct", prompt=[1, "a"])  # type: ignore[list-item]


def test_model_lists(oai: openai.OpenAI, claude: anthropic.Anthropic) -> None:
    assert "gpt-4o-mini" in [m.id for m in oai.models.list()]
    models = list(claude.models.list())
    assert models[0].type == "model" and "claude-sonnet-4-6" in [m.id for m in models]


# -- Anthropic messages -----------------------------------------------------------------------


def test_messages_json(claude: anthropic.Anthropic) -> None:
    msg = claude.messages.create(
        model="claude-sonnet-4-6",
        max_tokens=100,
        system="be brief",
        messages=user("hi there [[fake:chunks=3]]"),
    )
    assert msg.id.startswith("msg_") and msg.model == "claude-sonnet-4-6"
    assert msg.content[0].type == "text" and msg.content[0].text == "Echo: hi there hi"
    assert msg.stop_reason == "end_turn" and msg.stop_sequence is None
    # 2 (system) + 3 + 3 words
    assert (msg.usage.input_tokens, msg.usage.output_tokens) == (8, 3)
    assert msg.usage.cache_read_input_tokens == 0 and msg.usage.service_tier == "standard"


def test_messages_stream_and_final_message(claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(
        model="claude-haiku-4-5",
        max_tokens=2,
        messages=user("alpha beta gamma"),
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Echo: alpha beta" == final.content[0].text
    assert final.stop_reason == "max_tokens"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (6, 2)


def test_tool_use_json_and_stream(claude: anthropic.Anthropic) -> None:
    kwargs: dict[str, Any] = {
        "model": "claude-sonnet-4-6",
        "max_tokens": 100,
        "tools": [ANTHROPIC_TOOL],
        "messages": user("weather? [[fake:tool=get_weather]]"),
    }
    msg = claude.messages.create(**kwargs)
    block = msg.content[0]
    assert msg.stop_reason == "tool_use" and block.type == "tool_use"
    assert block.id.startswith("toolu_") and block.input == {"city": "x"}
    with claude.messages.stream(**kwargs) as stream:
        final = stream.get_final_message()
    streamed = final.content[0]
    assert streamed.type == "tool_use" and streamed.input == {"city": "x"}
    assert final.usage.output_tokens == 8  # {"city":"x"} in 8 fragments


def test_prompt_cache_writes_then_reads(claude: anthropic.Anthropic) -> None:
    long_system = "rules " * 40
    system: list[dict[str, Any]] = [
        {"type": "text", "text": long_system, "cache_control": {"type": "ephemeral", "ttl": "1h"}}
    ]
    messages: list[dict[str, Any]] = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "doc " * 20, "cache_control": {"type": "ephemeral"}},
                {"type": "text", "text": "question"},
            ],
        }
    ]
    kwargs: dict[str, Any] = {"model": "claude-sonnet-4-6", "max_tokens": 50}
    first = claude.messages.create(system=system, messages=messages, **kwargs).usage
    assert first.cache_creation is not None
    assert first.cache_creation.ephemeral_1h_input_tokens == 40
    assert first.cache_creation.ephemeral_5m_input_tokens == 3 + 20
    assert first.cache_creation_input_tokens == 63 and first.cache_read_input_tokens == 0
    assert first.input_tokens == 1  # "question": only the uncached tail
    second = claude.messages.create(system=system, messages=messages, **kwargs).usage
    assert (second.cache_read_input_tokens, second.cache_creation_input_tokens) == (63, 0)
    assert second.input_tokens == 1
    # Same system, new document: the system prefix is read, the rest written.
    messages[0]["content"][0]["text"] = "other " * 10
    third = claude.messages.create(system=system, messages=messages, **kwargs).usage
    assert (third.cache_read_input_tokens, third.cache_creation_input_tokens) == (40, 13)


def test_prompt_cache_follows_a_moving_breakpoint(claude: anthropic.Anthropic) -> None:
    def turn(text: str, cached: bool) -> dict[str, Any]:
        block: dict[str, Any] = {"type": "text", "text": text}
        if cached:
            block["cache_control"] = {"type": "ephemeral"}
        return {"role": "user", "content": [block]}

    first = claude.messages.create(
        model="claude-haiku-4-5", max_tokens=5, messages=[turn("one two three", True)]
    ).usage
    assert (first.cache_creation_input_tokens, first.input_tokens) == (6, 0)
    history = [
        turn("one two three", False),
        {"role": "assistant", "content": "four"},
        turn("five six", True),
    ]
    second = claude.messages.create(model="claude-haiku-4-5", max_tokens=5, messages=history)
    usage = second.usage
    assert (usage.cache_read_input_tokens, usage.cache_creation_input_tokens) == (6, 4 + 5)
    assert usage.input_tokens == 0


def test_anthropic_cached_directive_and_no_usage(claude: anthropic.Anthropic) -> None:
    msg = claude.messages.create(
        model="c",
        max_tokens=10,
        messages=user("a b c d [[fake:cached=4]]"),
    )
    assert (msg.usage.cache_read_input_tokens, msg.usage.input_tokens) == (4, 8 - 4)
    raw = claude.messages.with_raw_response.create(
        model="c",
        max_tokens=10,
        messages=user("[[fake:no_usage]]"),
    )
    assert "usage" not in json.loads(raw.http_response.text)
    assert raw.headers["anthropic-ratelimit-requests-limit"] == "4000"


def test_web_searches_directive_in_json_and_the_final_stream_usage(
    claude: anthropic.Anthropic,
) -> None:
    msg = claude.messages.create(
        model="c", max_tokens=10, messages=user("news [[fake:web_searches=2]]")
    )
    assert msg.usage.server_tool_use is not None
    assert msg.usage.server_tool_use.web_search_requests == 2
    searched = ["server_tool_use", "web_search_tool_result"] * 2
    assert [b.type for b in msg.content] == [*searched, "text"]
    calls = [b for b in msg.content if b.type == "server_tool_use"]
    results = [b for b in msg.content if b.type == "web_search_tool_result"]
    assert [c.name for c in calls] == ["web_search"] * 2 and calls[0].id != calls[1].id
    assert [r.tool_use_id for r in results] == [c.id for c in calls]
    with claude.messages.stream(
        model="c", max_tokens=10, messages=user("news [[fake:web_searches=2]]")
    ) as stream:
        events = list(stream)
        final = stream.get_final_message()
    start = next(e for e in events if e.type == "message_start")
    assert start.message.usage.server_tool_use is None  # searched during the turn
    assert final.usage.server_tool_use is not None
    assert final.usage.server_tool_use.web_search_requests == 2
    assert [b.type for b in final.content] == [*searched, "text"]
    calls = [b for b in final.content if b.type == "server_tool_use"]
    assert all(c.type == "server_tool_use" and c.input == {"query": "tokenomy"} for c in calls)


def test_anthropic_errors_map_to_sdk_classes(claude: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.RateLimitError) as rate:
        claude.messages.create(model="c", max_tokens=5, messages=user("[[fake:status=429]]"))
    assert rate.value.response.headers["retry-after"] == "1"
    assert rate.value.body["error"]["type"] == "rate_limit_error"
    with pytest.raises(anthropic.OverloadedError) as overloaded:
        claude.messages.create(model="c", max_tokens=5, messages=user("[[fake:status=529]]"))
    assert overloaded.value.request_id == overloaded.value.response.headers["request-id"]
    with pytest.raises(anthropic.NotFoundError):
        claude.messages.create(model="c", max_tokens=5, messages=user("[[fake:status=404]]"))


def test_count_tokens_and_request_log(claude: anthropic.Anthropic, fake: FakeUpstream) -> None:
    counted = claude.messages.count_tokens(model="c", messages=user("one two three"))
    assert counted.input_tokens == 6
    recorded = fake.requests[-1]
    assert recorded.path == "/v1/messages/count_tokens"
    key = recorded.headers.get("x-api-key") or recorded.headers.get("authorization", "")[7:]
    assert key == "sk-ant" and "anthropic-version" in recorded.headers
    assert recorded.body["messages"] == user("one two three")


# -- running it -------------------------------------------------------------------------------


async def test_concurrent_streams_are_independent(base_url: str) -> None:
    async def one(i: int) -> str:
        body = {"model": "m", "messages": user(f"n{i} [[fake:chunks=3]]"), "stream": True}
        async with session.post(base_url + "/v1/chat/completions", json=body) as resp:
            return await resp.text()

    async with aiohttp.ClientSession() as session:
        outs = await asyncio.gather(*(one(i) for i in range(20)))
    assert all(f'"Echo: n{i}"' in out and out.endswith("[DONE]\n\n") for i, out in enumerate(outs))


def test_module_runs_without_warnings() -> None:
    cmd = [sys.executable, "-W", "error", "-m", "tokenomy.testing.fake_upstream", "--help"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0 and "--no-stream-usage" in result.stdout, result.stderr
