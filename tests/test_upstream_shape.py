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
from tokenomy.config import Settings
from tokenomy.gateway import Gateway
from tokenomy.pipeline.context import Call
from tokenomy.records import UsageRecord
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
    "list event later": (
        b"text/event-stream",
        b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o",'
        b'"choices":[{"index":0,"delta":{"content":"hi"}}]}\n\ndata: []\n\ndata: [DONE]\n\n',
    ),
    "usage then error": (
        b"text/event-stream",
        b'data: {"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":0}}\n\n'
        b'data: {"error":{"message":"The server had an error","type":"server_error"}}\n\n',
    ),
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


def test_stream_whose_first_event_is_not_an_object_is_a_502(odd_gw: GW) -> None:
    status, body, rid = post(odd_gw, "gpt-4o", "list event", stream=True)
    assert status == 502  # nothing was sent yet: the whole request failed
    assert set(orjson.loads(body)["error"]) >= {"message", "type"}
    rec = odd_gw.record(rid)
    assert rec.status == 502 and rec.error_type == "upstream_protocol_error"


def test_an_early_stream_error_bills_the_usage_the_upstream_reported(odd_gw: GW) -> None:
    """The error came before the client got a frame (the usage chunk is not passed on
    to a client that did not ask for it): a 500, billed what the upstream reported."""
    status, body, rid = post(odd_gw, "gpt-4o", "usage then error", stream=True)
    assert status == 500 and orjson.loads(body)["error"]["type"] == "server_error"
    rec = odd_gw.record(rid)
    assert (rec.status, rec.error_type) == (500, "upstream_error")
    assert (rec.usage.input_tokens, rec.usage.output_tokens, rec.usage.estimated) == (12, 0, False)
    assert rec.cost_usd is not None and rec.cost_usd > 0


def test_stream_event_that_is_not_an_object_ends_with_an_error_event(odd_gw: GW) -> None:
    status, body, rid = post(odd_gw, "gpt-4o", "list event later", stream=True)
    assert status == 200  # the stream had started
    assert b'"upstream_protocol_error"' in body
    rec = odd_gw.record(rid)
    assert rec.status == 502 and rec.error_type == "upstream_protocol_error"  # not a 499


# -- with fallbacks: a reply of the wrong shape moves on, like any upstream failure ---------

FALLBACKS = {"fallbacks": {"gpt-4o": ["gpt-4o-mini"], "claude-sonnet-4-6": ["gpt-4o-mini"]}}


def falling_settings(url: str, fake: Fake, fake_llamacpp: Fake, db: str, **kw: Any) -> Settings:
    models = (
        dep("gpt-4o", "openai", url + "/v1"),
        dep("claude-sonnet-4-6", "anthropic", url),
        dep("gpt-4o-mini", "openai", fake.url + "/v1"),
    )
    return gateway_settings(db, fake, fake_llamacpp, deployments=models, routing=FALLBACKS, **kw)


@pytest.fixture
def falling_gw(fake: Fake, fake_llamacpp: Fake, tmp_path: Path) -> Iterator[GW]:
    with serve_in_thread(odd_upstream) as url:
        db = str(tmp_path / "ledger.db")
        yield from start_gateway(falling_settings(url, fake, fake_llamacpp, db), fake)


def test_a_reply_of_the_wrong_shape_falls_back(falling_gw: GW) -> None:
    status, body, rid = post(falling_gw, "gpt-4o", "list")
    assert status == 200 and orjson.loads(body)["choices"]
    rec = falling_gw.record(rid)
    assert rec.status == 200 and rec.served_model == "gpt-4o-mini"
    assert rec.decisions["route"]["attempts"] == [
        {"model": "gpt-4o", "deployment": "gpt-4o", "error": "bad_response", "status": 502}
    ]
    assert falling_gw.store.get_record(rid + ".attempt1") is None  # it reported no usage


def test_a_stream_whose_first_event_has_the_wrong_shape_falls_back(falling_gw: GW) -> None:
    status, body, rid = post(falling_gw, "gpt-4o", "list event", stream=True)
    assert status == 200 and b"Echo: list" in body and b'"error"' not in body
    rec = falling_gw.record(rid)
    assert rec.status == 200 and rec.served_model == "gpt-4o-mini"
    assert [a["error"] for a in rec.decisions["route"]["attempts"]] == ["bad_response"]


def test_a_failed_attempt_that_reported_usage_is_recorded_in_its_own_row(
    falling_gw: GW,
) -> None:
    """The upstream charged for the reply it sent, however wrong its shape: that
    call is a row of its own (priced at its model), like a cascade's draft."""
    status, _, rid = post(falling_gw, "claude-sonnet-4-6", "string content")
    assert status == 200
    rec = falling_gw.record(rid)
    assert rec.served_model == "gpt-4o-mini"
    assert [a["error"] for a in rec.decisions["route"]["attempts"]] == ["bad_response"]
    failed = falling_gw.record(rid + ".attempt1")
    assert (failed.status, failed.error_type) == (502, "upstream_protocol_error")
    assert (failed.served_model, failed.deployment) == ("claude-sonnet-4-6", "claude-sonnet-4-6")
    assert (failed.usage.input_tokens, failed.usage.output_tokens) == (30, 20)
    assert failed.cost_usd is not None and failed.cost_usd > 0
    assert failed.key_id == rec.key_id and failed.team == rec.team
    assert failed.decisions["route"]["parent"] == rid


class SettleSpy:
    """An admission policy that remembers what each request was settled with."""

    def __init__(self) -> None:
        self.settled: dict[str, UsageRecord] = {}

    async def reserve(self, call: Any) -> None:
        return None

    async def settle(self, call: Any, record: UsageRecord) -> None:
        self.settled[call.request_id] = record


async def test_admission_is_charged_for_the_attempt_that_answered(
    fake: Fake, fake_llamacpp: Fake, tmp_path: Path
) -> None:
    """The failed attempt is the gateway's cost, as a judge's call is: the request's
    hold (and a prepaid balance's debit) covers the one answer the client got."""
    spy = SettleSpy()
    with serve_in_thread(odd_upstream) as url:
        db = str(tmp_path / "ledger.db")
        settings = falling_settings(url, fake, fake_llamacpp, db, require_key=False)
        gateway = Gateway(settings, policies=[spy])  # type: ignore[list-item]
        try:
            body = {"model": "claude-sonnet-4-6",
                    "messages": [{"role": "user", "content": "string content"}]}  # fmt: skip
            call = Call("openai", "chat", "/v1/chat/completions", body, {})
            await gateway.handle(call)
            failed = gateway.store.get_record(call.request_id + ".attempt1")
        finally:
            await gateway.close()
    assert failed is not None and failed.cost_usd is not None and failed.cost_usd > 0
    charged = spy.settled[call.request_id]
    assert charged.status == 200 and charged.served_model == "gpt-4o-mini"
    assert (charged.cost_usd, charged.usage) == (call.record.cost_usd, call.record.usage)
