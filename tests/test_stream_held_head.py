"""An Anthropic stream opens with events that carry nothing of the answer yet
(``message_start``, ``ping``). Their frames are held until the first event that
does: an ``event: error`` right after them (an overloaded upstream) is still the
request's own error, answered with its status in the caller's format or fallen
back from, not a 200 stream that ends in an error event."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway_fixtures import GW, Fake, dep, gateway_settings, start_gateway
from routing_helpers import routed_gateway
from tokenomy.config import Deployment
from tokenomy.pipeline.context import Call
from tokenomy.pipeline.stream import feed, make_adapter, read_head
from tokenomy.providers import UpstreamStream, create_provider
from tokenomy.server.http import read_body
from tokenomy.sse import SSEEvent
from tokenomy.testing import serve_in_thread

AFTER_START = "hi [[fake:stream_error]] [[fake:cut_at=1]]"  # message_start, then the error
OPENAI, ANTHROPIC = "/v1/chat/completions", "/v1/messages"


def post(gw: GW, path: str, model: str, text: str) -> Any:
    body = {"model": model, "max_tokens": 20, "stream": True,
            "messages": [{"role": "user", "content": text}]}  # fmt: skip
    headers = {"authorization": f"Bearer {gw.key}", "anthropic-version": "2023-06-01"}
    with gw.http() as c:
        return c.post(path, json=body, headers=headers)


@pytest.mark.parametrize(
    ("path", "etype"), [(OPENAI, "server_error"), (ANTHROPIC, "overloaded_error")]
)
def test_an_error_after_message_start_is_the_upstreams_status(
    gw: GW, path: str, etype: str
) -> None:
    r = post(gw, path, "claude-haiku-4-5", AFTER_START)
    assert r.status_code == 529
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["error"]["type"] == etype
    rec = gw.record(r.headers["x-tokenomy-request-id"])
    assert (rec.status, rec.error_type) == (529, "upstream_error")
    # message_start reported the prompt: that much the upstream billed
    assert rec.usage.input_tokens > 0 and rec.cost_usd


@pytest.fixture
def falling(fake: Fake, fake_llamacpp: Fake, tmp_path: Path) -> Iterator[GW]:
    routing = {"fallbacks": {"claude-haiku-4-5": ["gpt-4o-mini"]}}
    yield from routed_gateway(tmp_path, fake, fake_llamacpp, routing)


@pytest.mark.parametrize("path", [OPENAI, ANTHROPIC])
def test_an_error_after_message_start_falls_back(falling: GW, path: str) -> None:
    r = post(falling, path, "claude-haiku-4-5", AFTER_START + " [[fake:only=claude-haiku-4-5]]")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    assert b"error" not in r.content and b"Echo: hi" in r.content
    rid = r.headers["x-tokenomy-request-id"]
    rec = falling.record(rid)
    assert (rec.status, rec.served_model) == (200, "gpt-4o-mini")
    assert [a["error"] for a in rec.decisions["route"]["attempts"]] == ["5xx"]
    failed = falling.record(rid + ".attempt1")  # message_start's prompt, the gateway's cost
    assert failed.status == 529 and failed.usage.input_tokens > 0 and not failed.charged


# -- an upstream that says only what the test needs -------------------------------------------

START = {"type": "message_start", "message": {
    "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
    "content": [], "stop_reason": None, "stop_sequence": None,
    "usage": {"input_tokens": 12, "output_tokens": 1}}}  # fmt: skip
PING = {"type": "ping"}
STOP = {"type": "message_stop"}
ERROR = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
BLOCK = {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
DELTA = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}}
SCRIPTS = {
    "start stop": [START, STOP],
    "start ping error": [START, PING, ERROR],
    # an error event whose "error" is a bare string, not Anthropic's object
    "text then odd error": [START, BLOCK, DELTA, {"type": "error", "error": "boom"}],
}


def sse(data: dict[str, Any]) -> bytes:
    return b"event: " + data["type"].encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


async def scripted(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    script = SCRIPTS[orjson.loads(await read_body(receive))["messages"][-1]["content"]]
    headers = [(b"content-type", b"text/event-stream")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    for data in script:
        await send({"type": "http.response.body", "body": sse(data), "more_body": True})
    await send({"type": "http.response.body", "body": b""})


@pytest.fixture
def scripted_gw(fake: Fake, fake_llamacpp: Fake, tmp_path: Path) -> Iterator[GW]:
    with serve_in_thread(scripted) as url:
        settings = gateway_settings(str(tmp_path / "ledger.db"), fake, fake_llamacpp,
                                    deployments=(dep("claude-haiku-4-5", "anthropic", url),))  # fmt: skip
        yield from start_gateway(settings, fake)


def test_a_ping_is_held_too(scripted_gw: GW) -> None:
    r = post(scripted_gw, ANTHROPIC, "claude-haiku-4-5", "start ping error")
    assert r.status_code == 529 and r.json()["error"]["type"] == "overloaded_error"


def test_a_stream_of_only_message_start_and_stop_still_works(scripted_gw: GW) -> None:
    r = post(scripted_gw, ANTHROPIC, "claude-haiku-4-5", "start stop")
    assert r.status_code == 200
    names = [line[7:] for line in r.text.splitlines() if line.startswith("event: ")]
    assert names == ["message_start", "message_stop"]
    r = post(scripted_gw, OPENAI, "claude-haiku-4-5", "start stop")
    assert r.status_code == 200 and r.text.rstrip().endswith("data: [DONE]")
    assert '"role":"assistant"' in r.text
    rec = scripted_gw.record(r.headers["x-tokenomy-request-id"])
    assert (rec.status, rec.usage.input_tokens) == (200, 12)


@pytest.mark.parametrize("path", [OPENAI, ANTHROPIC])
def test_an_error_event_of_the_wrong_shape_mid_stream_ends_it_with_an_error(
    scripted_gw: GW, path: str
) -> None:
    """It was an AttributeError in the relay: the stream cut with no error frame and
    its row recorded as the client's disconnect (499)."""
    r = post(scripted_gw, path, "claude-haiku-4-5", "text then odd error")
    assert r.status_code == 200
    assert "boom" in r.text and "error" in r.text
    rec = scripted_gw.record(r.headers["x-tokenomy-request-id"])
    assert rec.status >= 500 and rec.status != 499 and rec.error_type is not None


# -- the first byte waits for the first content event, and no longer --------------------------


async def test_the_head_ends_at_the_first_content_event() -> None:
    """`read_head` reads up to the read holding the first event of the answer, and
    leaves the rest to the relay: a normal stream's first byte is not delayed past
    the held events. The head is read once, by the adapter that relays the stream:
    its frames are the held ones, released with the first content event, and the
    adapter goes on from there."""
    block = {"type": "content_block_start", "index": 0,
             "content_block": {"type": "text", "text": ""}}  # fmt: skip
    delta = {"type": "content_block_delta", "index": 0,
             "delta": {"type": "text_delta", "text": "Hi"}}  # fmt: skip
    reads = [[START], [PING], [block], [delta], [STOP]]
    pulled = 0

    async def gen() -> AsyncGenerator[list[SSEEvent], None]:
        nonlocal pulled
        for events in reads:
            pulled += 1
            yield [SSEEvent(e["type"], orjson.dumps(e), sse(e)) for e in events]

    provider = create_provider(Deployment("claude-haiku-4-5", "anthropic", api_key="k"))
    for api in ("anthropic", "openai"):
        pulled = 0
        body = {"model": "claude-haiku-4-5", "stream": True, "max_tokens": 5,
                "messages": [{"role": "user", "content": "hi"}]}  # fmt: skip
        call = Call(api, "chat", ANTHROPIC if api == "anthropic" else OPENAI, body, {})
        adapter = make_adapter(call, "anthropic")
        adapter.sent = []
        up = UpstreamStream({}, gen())
        head, rest = await read_head(call, provider, up, adapter)
        assert pulled == 3 and rest == [] and adapter.begun and not adapter.finished
        sent = b"".join(head)
        if api == "anthropic":  # the three held frames, sent together
            assert [ev["type"] for ev in adapter.sent] == [
                "message_start", "ping", "content_block_start"
            ]  # fmt: skip
            assert sent.count(b"event: ") == 3
        rest = [b"".join(feed(adapter, ev)) async for events in up.reads for ev in events]
        assert b"Hi" in b"".join(rest) and adapter.finished
        assert "".join(adapter.text) == "Hi"  # each event fed once
