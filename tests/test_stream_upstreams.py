"""Streams from upstreams that are valid but unusual, or misbehave: lone-CR line
ends, a BOM, events with no data, bytes split anywhere; an endless event; an
upstream that goes silent while the client leaves; and a (non-streamed) reply
too large to hold. The relay serves what the spec allows, refuses what would
grow without bound, and releases the upstream connection as soon as nobody is
listening."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

import tokenomy.providers.base
import tokenomy.sse
from gateway_fixtures import GW, Fake, dep, gateway_settings, start_gateway
from tokenomy.server.http import read_body
from tokenomy.testing import serve_in_thread

OPENAI_WIRE = (
    b"\xef\xbb\xbf: OPENROUTER PROCESSING\r\r"
    b"event: ping\r\r"  # no data: not an event
    b'data:{"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o",'
    b'"choices":[{"index":0,"delta":{"role":"assistant","content":"h\xc3\xa9llo"}}]}\r\r'
    b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o",'
    b'"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\r\n\r\n'
    b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o",'
    b'"choices":[],"usage":{"prompt_tokens":11,"completion_tokens":7,"total_tokens":18}}\r\r'
    b"data: [DONE]\r\r"
)
ANTHROPIC_WIRE = (
    b"\xef\xbb\xbfevent: message_start\r"
    b'data: {"type":"message_start","message":{"id":"msg_1","type":"message",'
    b'"role":"assistant","model":"claude-sonnet-4-6","content":[],"stop_reason":null,'
    b'"usage":{"input_tokens":11,"output_tokens":1}}}\r\r'
    b"event: ping\r\r"  # no data: not an event
    b"event: content_block_start\r"
    b'data: {"type":"content_block_start","index":0,'
    b'"content_block":{"type":"text","text":""}}\r\r'
    b"event: content_block_delta\r"
    b'data: {"type":"content_block_delta","index":0,'
    b'"delta":{"type":"text_delta","text":"h\xc3\xa9llo"}}\r\r'
    b"event: content_block_stop\r"
    b'data: {"type":"content_block_stop","index":0}\r\r'
    b"event: message_delta\r"
    b'data: {"type":"message_delta","delta":{"stop_reason":"end_turn"},'
    b'"usage":{"output_tokens":7}}\r\r'
    b"event: message_stop\r"
    b'data: {"type":"message_stop"}\r\r'
)


class Upstream:
    """Streams the wire above a few bytes per write; "endless" sends one line that
    never ends; "silent" sends one event, then waits for the gateway to hang up."""

    def __init__(self) -> None:
        self.ports: list[int] = []  # the gateway's port of each request
        self.hung_up = threading.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        self.ports.append(scope["client"][1])
        raw = await read_body(receive)
        mode = orjson.loads(raw)["messages"][-1]["content"]
        if mode.startswith("huge"):  # a JSON reply of 256 KiB, its length said or not
            pad = b"x" * (256 * 1024)
            size = [(b"content-length", str(len(pad) + 10).encode())] * (mode == "huge sized")
            await send({"type": "http.response.start", "status": 200, "headers": size})
            await send({"type": "http.response.body", "body": b'{"pad":"' + pad + b'"}'})
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )

        async def body(b: bytes) -> None:
            await send({"type": "http.response.body", "body": b, "more_body": True})

        if mode == "endless":
            await body(b"data: ")
            for _ in range(64):
                await body(b"x" * 4096)
        elif mode == "silent":
            await body(OPENAI_WIRE.split(b"\r\r")[2] + b"\n\n")
            if (await receive())["type"] == "http.disconnect":
                self.hung_up.set()
            return
        else:
            wire = OPENAI_WIRE if scope["path"].endswith("/chat/completions") else ANTHROPIC_WIRE
            step = 1
            for i in range(0, len(wire), 7):  # cuts inside the BOM, CRs, UTF-8
                await body(wire[i : i + step])
                await body(wire[i + step : i + 7])
                step = step % 6 + 1
        await send({"type": "http.response.body", "body": b""})


@pytest.fixture
def upstream() -> Upstream:
    return Upstream()


@pytest.fixture
def odd_gw(upstream: Upstream, fake: Fake, fake_llamacpp: Fake, tmp_path: Path) -> Iterator[GW]:
    with serve_in_thread(upstream) as url:
        models = (
            dep("gpt-4o", "openai", url + "/v1", max_retries=0),
            dep("claude-sonnet-4-6", "anthropic", url, max_retries=0),
        )
        settings = gateway_settings(
            str(tmp_path / "ledger.db"), fake, fake_llamacpp, deployments=models
        )
        yield from start_gateway(settings, fake)


def stream(gw: GW, path: str, model: str, text: str) -> tuple[bytes, str]:
    body = {
        "model": model,
        "stream": True,
        "max_tokens": 50,
        "messages": [{"role": "user", "content": text}],
    }
    headers = {"authorization": f"Bearer {gw.key}", "anthropic-version": "2023-06-01"}
    with gw.http() as c:
        r = c.post(path, json=body, headers=headers)
    assert r.status_code == 200
    return r.content, r.headers["x-tokenomy-request-id"]


@pytest.mark.parametrize(
    ("path", "model"),
    [
        ("/v1/chat/completions", "gpt-4o"),
        ("/v1/messages", "claude-sonnet-4-6"),
        ("/v1/chat/completions", "claude-sonnet-4-6"),
        ("/v1/messages", "gpt-4o"),
    ],
)
def test_cr_line_ends_bom_and_dataless_events_split_anywhere(
    odd_gw: GW, upstream: Upstream, path: str, model: str
) -> None:
    out, rid = stream(odd_gw, path, model, "hello")
    assert '"héllo"'.encode() in out or "héllo".encode() in out, out
    assert b"error" not in out
    rec = odd_gw.record(rid)
    assert rec.status == 200 and rec.error_type is None
    assert (rec.usage.input_tokens, rec.usage.output_tokens) == (11, 7)
    assert not rec.usage.estimated
    # a stream read to its end leaves its connection to the pool for the next one
    stream(odd_gw, path, model, "again")
    assert len(upstream.ports) == 2 and upstream.ports[0] == upstream.ports[1]


def test_an_event_that_never_ends_is_refused_not_buffered(
    odd_gw: GW, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tokenomy.sse, "MAX_EVENT_BYTES", 64 * 1024)
    body = {"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "endless"}]}
    with odd_gw.http() as c:
        r = c.post(
            "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {odd_gw.key}"}
        )
    assert r.status_code == 502
    assert "oversized event" in r.json()["error"]["message"]
    rec = odd_gw.record(r.headers["x-tokenomy-request-id"])
    assert rec.status == 502 and rec.error_type == "upstream_protocol_error"


def test_a_client_that_leaves_while_the_upstream_is_silent_closes_it_at_once(
    odd_gw: GW, upstream: Upstream
) -> None:
    """A model thinking before its next token: the gateway must not keep it going
    (and paying) until that token comes; the request is recorded as a 499."""
    body = {"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "silent"}]}
    headers = {"authorization": f"Bearer {odd_gw.key}"}
    with (
        odd_gw.http() as c,
        c.stream("POST", "/v1/chat/completions", json=body, headers=headers) as r,
    ):
        rid = r.headers["x-tokenomy-request-id"]
        for line in r.iter_lines():
            if line.startswith("data:"):
                break  # the first event came; the client leaves
    # The upstream never sends another byte: only the gateway hanging up ends this.
    assert upstream.hung_up.wait(10)
    rec = odd_gw.settled(rid)
    assert rec.status == 499 and rec.error_type == "client_disconnected"
    assert rec.usage.output_tokens >= 1 and rec.usage.estimated


@pytest.mark.parametrize("mode", ["huge", "huge sized"])
def test_a_reply_too_large_to_hold_is_refused(
    odd_gw: GW, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    monkeypatch.setattr(tokenomy.providers.base, "MAX_BODY_BYTES", 64 * 1024)
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": mode}]}
    with odd_gw.http() as c:
        r = c.post(
            "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {odd_gw.key}"}
        )
    assert r.status_code == 502
    assert "over the gateway's limit of 65536 bytes" in r.json()["error"]["message"]
    rec = odd_gw.record(r.headers["x-tokenomy-request-id"])
    assert rec.status == 502 and rec.error_type == "upstream_protocol_error"
