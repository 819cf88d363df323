"""The fake upstream's Responses API, checked against the official SDK's own types
(generated from OpenAI's API specification) and its documented counts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx2
import orjson
import pydantic
import pytest
from openai.types.responses import Response, ResponseStreamEvent

from responses_helpers import item_not_found, previous_not_found
from tokenomy.testing import FakeUpstream, create_app

EVENTS: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(ResponseStreamEvent)
TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}


@pytest.fixture
async def asgi() -> AsyncIterator[httpx2.AsyncClient]:
    fake: FakeUpstream = create_app()
    transport = httpx2.ASGITransport(app=fake)
    async with httpx2.AsyncClient(transport=transport, base_url="http://fake") as client:
        yield client


async def json_reply(asgi: httpx2.AsyncClient, **body: Any) -> dict[str, Any]:
    r = await asgi.post("/v1/responses", json={"model": "gpt-4o", **body})
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    Response.model_validate(data)  # every field of the documented type
    return data


async def events(asgi: httpx2.AsyncClient, **body: Any) -> list[tuple[str, dict[str, Any]]]:
    """The stream's (event name, data) pairs, each data validated as the SDK's event."""
    r = await asgi.post("/v1/responses", json={"model": "gpt-4o", "stream": True, **body})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    out = []
    for block in r.text.split("\n\n"):
        if not block:
            continue
        name, data = block.split("\n")
        assert name.startswith("event: ") and data.startswith("data: "), block
        parsed = orjson.loads(data[len("data: ") :])
        EVENTS.validate_python(parsed)
        assert parsed["type"] == name[len("event: ") :]
        out.append((parsed["type"], parsed))
    return out


async def test_json_reply_and_its_documented_counts(asgi: httpx2.AsyncClient) -> None:
    items = [
        {"role": "user", "content": [{"type": "input_text", "text": "hello big world"}]},
        {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "a b"},
        {"type": "function_call_output", "call_id": "c1", "output": "sunny and warm"},
        {"role": "user", "content": "thanks [[fake:chunks=4]] [[fake:cached=2]]"},
    ]
    data = await json_reply(asgi, input=items, instructions="be brief", tools=[TOOL])
    assert data["object"] == "response" and data["status"] == "completed"
    message = data["output"][-1]
    assert message["type"] == "message" and message["role"] == "assistant"
    assert message["content"][0]["text"] == "Echo: thanks thanks thanks thanks"
    # instructions 2 + (3 + 3) + 2 + 3 + (3 + 3) + tool (1 + 2)
    usage = data["usage"]
    assert (usage["input_tokens"], usage["output_tokens"]) == (22, 4)
    assert usage["input_tokens_details"]["cached_tokens"] == 2
    assert usage["input_tokens_details"]["cache_write_tokens"] == 0
    assert usage["output_tokens_details"]["reasoning_tokens"] == 0
    data = await json_reply(asgi, input="a b c [[fake:cached=2]] [[fake:cache_write=3]]")
    details = data["usage"]["input_tokens_details"]
    assert (data["usage"]["input_tokens"], details["cached_tokens"]) == (8, 2)
    assert details["cache_write_tokens"] == 3  # part of input_tokens, like the reads
    data = await json_reply(asgi, input="a [[fake:cache_write=99]]")
    assert data["usage"]["input_tokens_details"]["cache_write_tokens"] == 5  # all of it


async def test_reasoning_web_searches_and_a_function_call(asgi: httpx2.AsyncClient) -> None:
    text = "weather? [[fake:tool]] [[fake:web_searches=2]] [[fake:reasoning=5]]"
    data = await json_reply(asgi, input=text, tools=[TOOL])
    kinds = [item["type"] for item in data["output"]]
    assert kinds == ["reasoning", "web_search_call", "web_search_call", "function_call"]
    assert data["output"][1]["action"]["type"] == "search"
    assert data["tool_usage"]["web_search"]["num_requests"] == 2
    assert data["output"][-1]["name"] == "get_weather"
    assert data["usage"]["output_tokens_details"]["reasoning_tokens"] == 5


async def test_max_output_tokens_makes_it_incomplete(asgi: httpx2.AsyncClient) -> None:
    data = await json_reply(asgi, input="hi [[fake:chunks=9]]", max_output_tokens=3)
    assert data["status"] == "incomplete"
    assert data["incomplete_details"] == {"reason": "max_output_tokens"}
    assert data["usage"]["output_tokens"] == 3


async def test_stream_events_in_order(asgi: httpx2.AsyncClient) -> None:
    got = await events(asgi, input="hello there [[fake:chunks=3]] [[fake:web_searches=1]]")
    kinds = [k for k, _ in got]
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.web_search_call.in_progress",
        "response.web_search_call.searching",
        "response.web_search_call.completed",
        "response.output_item.done",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * 3,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [d["sequence_number"] for _, d in got] == list(range(len(got)))
    assert got[0][1]["response"]["usage"] is None
    final = got[-1][1]["response"]
    Response.model_validate(final)
    assert final["usage"]["output_tokens"] == 3 and final["output"][-1]["status"] == "completed"
    deltas = "".join(d["delta"] for k, d in got if k == "response.output_text.delta")
    assert deltas == final["output"][-1]["content"][0]["text"]


@pytest.mark.parametrize(
    ("directive", "last"),
    [("[[fake:failed]]", "response.failed"), ("[[fake:no_usage]]", "response.completed")],
)
async def test_stream_endings(asgi: httpx2.AsyncClient, directive: str, last: str) -> None:
    got = await events(asgi, input=f"hi {directive}")
    kind, data = got[-1]
    assert kind == last
    if kind == "response.failed":
        assert data["response"]["error"]["code"] == "server_error"
        assert data["response"]["usage"]["output_tokens"] > 0
    else:
        assert data["response"]["usage"] is None


async def test_stream_error_event_replaces_the_event_it_cuts(asgi: httpx2.AsyncClient) -> None:
    got = await events(asgi, input="hi [[fake:stream_error]] [[fake:cut_at=3]]")
    assert [k for k, _ in got][-1] == "error" and len(got) == 4
    assert got[-1][1]["code"] == "server_error" and got[-1][1]["sequence_number"] == 3


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}, "messages"),
        ({"model": "gpt-4o", "input": "hi", "max_tokens": 5}, "max_tokens"),
        (
            {"model": "gpt-4o", "input": "hi", "stream_options": {"include_usage": True}},
            "stream_options.include_usage",
        ),
        ({"model": "gpt-4o"}, "input"),
    ],
)
async def test_chat_fields_and_no_input_are_refused(
    asgi: httpx2.AsyncClient, body: dict[str, Any], param: str
) -> None:
    r = await asgi.post("/v1/responses", json=body)
    assert r.status_code == 400 and r.json()["error"]["param"] == param


async def test_error_directives_answer_in_openais_format(asgi: httpx2.AsyncClient) -> None:
    r = await asgi.post("/v1/responses", json={"model": "gpt-4o", "input": "[[fake:status=429]]"})
    assert r.status_code == 429 and r.headers["retry-after"] == "1"
    assert r.json()["error"]["code"] == "rate_limit_exceeded"
    r = await asgi.post("/v1/responses", json={"model": "gpt-4o", "input": "[[fake:malformed]]"})
    assert r.status_code == 200
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(r.content)


async def test_a_kept_response_is_continued_and_an_unknown_one_refused(
    asgi: httpx2.AsyncClient,
) -> None:
    """Responses are kept for ``previous_response_id`` unless ``store`` is false;
    an id not kept gets OpenAI's refusal."""
    first = await json_reply(asgi, input="hello there")
    streamed = await events(asgi, input="hello there")
    unstored = await json_reply(asgi, input="hello there", store=False)
    for rid in (first["id"], streamed[-1][1]["response"]["id"]):
        again = await json_reply(asgi, previous_response_id=rid)  # no input needed
        assert again["previous_response_id"] == rid
    for rid in (unstored["id"], "resp_nope"):
        r = await asgi.post("/v1/responses", json={"model": "gpt-4o", "previous_response_id": rid})
        assert r.status_code == 400
        assert r.json() == previous_not_found(rid)


async def test_a_kept_responses_items_are_named_and_unknown_ones_refused(
    asgi: httpx2.AsyncClient,
) -> None:
    """A kept response's output items may be named by id in ``input`` (an
    ``item_reference``, typed or not, or a reasoning item with its id); an item not
    kept gets OpenAI's 404 on ``input``."""
    reasoned = await json_reply(asgi, model="o3", input="think")
    streamed = await events(asgi, input="hello there")
    unstored = await json_reply(asgi, input="hello there", store=False)
    rs, msg = reasoned["output"][0], reasoned["output"][-1]
    named = [
        {"type": "reasoning", "id": rs["id"], "summary": []},
        {"type": "item_reference", "id": msg["id"]},
        {"id": streamed[-1][1]["response"]["output"][-1]["id"]},
        {"role": "user", "content": "go on"},
    ]
    await json_reply(asgi, input=named)
    for item_id in (unstored["output"][-1]["id"], "msg_nope"):
        for item in ({"type": "item_reference", "id": item_id}, {"id": item_id}):
            body = {"model": "gpt-4o", "input": [item, {"role": "user", "content": "hi"}]}
            r = await asgi.post("/v1/responses", json=body)
            assert r.status_code == 404
            assert r.json() == item_not_found(item_id)
    # an item sent whole carries its content: its id names nothing to look up
    whole = {**msg, "id": "msg_nope"}
    await json_reply(asgi, input=[whole, {"role": "user", "content": "hi"}])
