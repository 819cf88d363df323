"""An upstream whose 200 reply is valid JSON of the wrong shape (a list for an
object, a string for the content blocks) gets a 502 in the called API's format,
never a 500, and the request is recorded, with the usage the upstream reported."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway_fixtures import GW, Fake, dep, gateway_settings, start_gateway
from tokenomy.server.http import read_body
from tokenomy.testing import serve_in_thread

# the last user message -> (content type, the reply's bytes)
REPLIES: dict[str, tuple[bytes, bytes]] = {
    "list": (b"application/json", b"[]"),
    "string content": (
        b"application/json",
        b'{"type": "message", "content": "x", "usage": {"input_tokens": 30, "output_tokens": 20}}',
    ),
    "list event": (b"text/event-stream", b"data: []\n\ndata: [DONE]\n\n"),
}


async def odd_upstream(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    raw = await read_body(receive)
    ctype, body = REPLIES[orjson.loads(raw)["messages"][-1]["content"]]
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-type", ctype)]}
    )
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
def odd_gw(fake: Fake, fake_llamacpp: Fake, tmp_path: Path) -> Iterator[GW]:
    with serve_in_thread(odd_upstream) as url:
        models = (dep("gpt-4o", "openai", url + "/v1"), dep("claude-sonnet-4-6", "anthropic", url))
        settings = gateway_settings(
            str(tmp_path / "ledger.db"), fake, fake_llamacpp, deployments=models
        )
        yield from start_gateway(settings, fake)


def post(gw: GW, model: str, text: str, *, stream: bool = False) -> tuple[int, bytes, str]:
    body = {"model": model, "stream": stream, "messages": [{"role": "user", "content": text}]}
    with gw.http() as c:
        r = c.post("/v1/chat/completions", json=body, headers={"authorization": f"Bearer {gw.key}"})
    return r.status_code, r.content, r.headers["x-tokenomy-request-id"]


def test_reply_that_is_not_an_object_is_a_502_and_recorded(odd_gw: GW) -> None:
    status, body, rid = post(odd_gw, "gpt-4o", "list")
    assert status == 502 and set(orjson.loads(body)["error"]) >= {"message", "type"}
    rec = odd_gw.record(rid)
    assert rec.status == 502 and rec.error_type == "upstream_protocol_error"


def test_untranslatable_reply_keeps_the_usage_the_upstream_reported(odd_gw: GW) -> None:
    status, body, rid = post(odd_gw, "claude-sonnet-4-6", "string content")
    assert status == 502 and "error" in orjson.loads(body)
    rec = odd_gw.record(rid)
    assert rec.status == 502 and rec.error_type == "upstream_protocol_error"
    assert (rec.usage.input_tokens, rec.usage.output_tokens) == (30, 20)
    assert rec.cost_usd is not None and rec.cost_usd > 0


def test_stream_event_that_is_not_an_object_ends_with_an_error_event(odd_gw: GW) -> None:
    status, body, rid = post(odd_gw, "gpt-4o", "list event", stream=True)
    assert status == 200  # the stream had started
    assert b'"upstream_protocol_error"' in body
    rec = odd_gw.record(rid)
    assert rec.status == 502 and rec.error_type == "upstream_protocol_error"  # not a 499
