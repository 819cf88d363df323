"""An upstream's refusal reaches the client as the real API would have sent it: a
client of the upstream's API gets its status, type, message, and OpenAI's
``code`` and ``param``, unchanged (what SDKs and frameworks branch on); a client
of the other API gets the type of its own API and the upstream's message. The
message is cut at `RELAYED_CHARS`, so a huge error body is not echoed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import orjson
import pytest

from gateway_fixtures import GW, UPSTREAM_KEY, Fake, dep, gateway_settings, start_gateway
from tokenomy.errors import RELAYED_CHARS
from tokenomy.server.http import read_body
from tokenomy.testing import serve_in_thread

TOO_LONG = "a long story [[fake:too_long]]"
CLAUDE = "claude-haiku-4-5"


def say(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


@pytest.fixture
def direct_openai(gw: GW) -> Iterator[openai.OpenAI]:
    """The fake upstream itself, without the gateway: what the real API would say."""
    url = gw.fake.url + "/v1"
    with openai.OpenAI(base_url=url, api_key=UPSTREAM_KEY, max_retries=0) as client:
        yield client


@pytest.fixture
def direct_anthropic(gw: GW) -> Iterator[anthropic.Anthropic]:
    url = gw.fake.url
    with anthropic.Anthropic(base_url=url, api_key=UPSTREAM_KEY, max_retries=0) as client:
        yield client


def openai_refusal(client: openai.OpenAI, model: str, text: str, **kw: Any) -> openai.APIError:
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model=model, messages=say(text), **kw)  # type: ignore[arg-type]
    return info.value


def anthropic_refusal(client: anthropic.Anthropic, model: str, text: str) -> dict[str, Any]:
    with pytest.raises(anthropic.BadRequestError) as info:
        client.messages.create(model=model, max_tokens=20, messages=say(text))  # type: ignore[arg-type]
    body = info.value.body
    assert isinstance(body, dict) and body["type"] == "error"
    error: dict[str, Any] = body["error"]
    return error


@pytest.mark.parametrize("stream", [False, True])
def test_an_openai_client_gets_the_openai_upstreams_code_param_and_message(
    gw: GW, direct_openai: openai.OpenAI, stream: bool
) -> None:
    upstream = openai_refusal(direct_openai, "gpt-4o", TOO_LONG, stream=stream)
    got = openai_refusal(gw.openai(), "gpt-4o", TOO_LONG, stream=stream)
    assert isinstance(got, openai.BadRequestError) and got.status_code == 400
    assert got.code == upstream.code == "context_length_exceeded"
    assert got.param == upstream.param == "messages"
    assert got.type == upstream.type == "invalid_request_error"
    assert got.message == upstream.message  # the SDK's, built from the whole error body
    assert isinstance(got.body, dict) and isinstance(upstream.body, dict)
    assert got.body["message"] == upstream.body["message"]
    assert got.body["message"].startswith("This model's maximum context length")
    assert isinstance(got, openai.APIStatusError)
    rec = gw.record(got.response.headers["x-tokenomy-request-id"])
    assert rec.status == 400 and rec.error_type == "upstream_error"
    assert rec.upstream_error_code == "context_length_exceeded"  # why, for the operator


def test_an_error_event_mid_stream_is_recorded_with_the_upstreams_code(gw: GW) -> None:
    """A Responses stream the upstream ends with ``event: error`` (code
    ``server_error``) after it began: the row keeps that code beside the gateway's
    own error type."""
    with gw.http() as c:
        r = c.post("/v1/responses", headers={"authorization": f"Bearer {gw.key}"},
                   json={"model": "gpt-4o", "stream": True,
                         "input": "go [[fake:stream_error]] [[fake:cut_at=4]] [[fake:chunks=6]]"})  # fmt: skip
    assert r.status_code == 200 and "event: error" in r.text
    rec = gw.record(r.headers["x-tokenomy-request-id"])
    assert rec.error_type == "upstream_protocol_error"
    assert rec.upstream_error_code == "server_error"


@pytest.mark.parametrize("stream", [False, True])
def test_an_anthropic_refusal_is_recorded_with_its_type_as_the_code(gw: GW, stream: bool) -> None:
    """Anthropic's errors have no code: their type names them (``overloaded_error``),
    and is kept where an OpenAI upstream's ``code`` is."""
    with pytest.raises(anthropic.APIStatusError) as info:
        gw.anthropic().messages.create(model=CLAUDE, max_tokens=20, stream=stream,
                                       messages=say("hi [[fake:status=529]] [[fake:retry_after=0]]"))  # fmt: skip
    assert info.value.status_code == 529
    rec = gw.record(info.value.response.headers["x-tokenomy-request-id"])
    assert (rec.status, rec.error_type) == (529, "upstream_error")
    assert rec.upstream_error_code == "overloaded_error"


def test_an_anthropic_error_event_mid_stream_is_recorded_with_its_type(gw: GW) -> None:
    body = {"model": CLAUDE, "max_tokens": 20, "stream": True,
            "messages": say("go [[fake:stream_error]] [[fake:chunks=6]]")}  # fmt: skip
    headers = {"authorization": f"Bearer {gw.key}", "anthropic-version": "2023-06-01"}
    with gw.http() as c:
        r = c.post("/v1/messages", json=body, headers=headers)
    assert r.status_code == 200 and "event: error" in r.text and "content_block_delta" in r.text
    rec = gw.record(r.headers["x-tokenomy-request-id"])
    assert rec.error_type == "upstream_protocol_error"
    assert rec.upstream_error_code == "overloaded_error"


def test_a_failure_of_the_gateways_own_has_no_upstream_code(gw: GW) -> None:
    """The gateway's own codes (here a malformed reply's) are not the upstream's."""
    with pytest.raises(openai.APIStatusError) as info:
        gw.openai().chat.completions.create(model="gpt-4o", messages=say("[[fake:malformed]]"))  # type: ignore[arg-type]
    rec = gw.record(info.value.response.headers["x-tokenomy-request-id"])
    assert rec.status == 502 and rec.upstream_error_code is None


def test_the_responses_api_gets_the_upstreams_code_and_param(
    gw: GW, direct_openai: openai.OpenAI
) -> None:
    text = "a long story [[fake:too_long]]"
    with pytest.raises(openai.BadRequestError) as upstream:
        direct_openai.responses.create(model="gpt-4o", input=text)
    with pytest.raises(openai.BadRequestError) as got:
        gw.openai().responses.create(model="gpt-4o", input=text)
    assert got.value.code == upstream.value.code == "context_length_exceeded"
    assert got.value.param == upstream.value.param == "input"
    assert got.value.message == upstream.value.message


def test_an_anthropic_client_gets_the_anthropic_upstreams_type_and_message(
    gw: GW, direct_anthropic: anthropic.Anthropic
) -> None:
    upstream = anthropic_refusal(direct_anthropic, CLAUDE, TOO_LONG)
    got = anthropic_refusal(gw.anthropic(), CLAUDE, TOO_LONG)
    assert (
        got
        == upstream
        == {
            "type": "invalid_request_error",
            "message": "prompt is too long: 128001 tokens > 128000 maximum",
        }
    )


def test_a_translated_refusal_keeps_the_upstreams_message_with_the_callers_type(
    gw: GW, direct_openai: openai.OpenAI, direct_anthropic: anthropic.Anthropic
) -> None:
    # Anthropic's refusal, to an OpenAI client: no code or param of Anthropic's to pass on
    upstream = anthropic_refusal(direct_anthropic, CLAUDE, TOO_LONG)
    got = openai_refusal(gw.openai(), CLAUDE, TOO_LONG)
    assert isinstance(got, openai.BadRequestError) and got.type == "invalid_request_error"
    assert isinstance(got.body, dict) and got.body["message"] == upstream["message"]
    assert got.code is None and got.param is None
    rec = gw.record(got.response.headers["x-tokenomy-request-id"])
    assert rec.upstream_error_code == "invalid_request_error"  # the upstream's own, for the row
    # OpenAI's, to an Anthropic client: its message, in Anthropic's format
    said = openai_refusal(direct_openai, "gpt-4o", TOO_LONG)
    assert isinstance(said.body, dict)
    error = anthropic_refusal(gw.anthropic(), "gpt-4o", TOO_LONG)
    assert error == {"type": "invalid_request_error", "message": said.body["message"]}


def test_an_anthropic_rate_limit_has_openais_code_for_an_openai_client(gw: GW) -> None:
    got = openai_refusal(gw.openai(), CLAUDE, "hi [[fake:status=429]] [[fake:retry_after=0]]")
    assert isinstance(got, openai.RateLimitError) and got.code == "rate_limit_exceeded"
    assert isinstance(got.body, dict)
    assert got.body["message"] == "This request would exceed the rate limit for your organization."


# -- an upstream saying too much --------------------------------------------------------------

HUGE = "m" * (RELAYED_CHARS * 5)
STREAM_ERROR = {
    "message": HUGE,
    "type": "invalid_request_error",
    "code": "invalid_prompt",
    "param": None,
}


async def loud_upstream(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An OpenAI upstream that refuses with a huge message and an oversized code, or
    streams a chunk then an error event with a code and a huge message."""
    if scope["type"] != "http":
        return
    data = orjson.loads(await read_body(receive))
    if data.get("stream"):
        chunk = {
            "id": "c",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "gpt-4o",
            "choices": [{"index": 0, "delta": {"content": "hi"}}],
        }
        body = b"".join(
            b"data: " + orjson.dumps(d) + b"\n\n" for d in (chunk, {"error": STREAM_ERROR})
        )
        status, ctype = 200, b"text/event-stream"
    else:
        error = {"message": HUGE, "type": "invalid_request_error", "param": "p", "code": "c" * 500}
        body, status, ctype = orjson.dumps({"error": error}), 400, b"application/json"
    start = {"type": "http.response.start", "status": status, "headers": [(b"content-type", ctype)]}
    await send(start)
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
def loud_gw(fake: Fake, fake_llamacpp: Fake, tmp_path: Path) -> Iterator[GW]:
    with serve_in_thread(loud_upstream) as url:
        models = (dep("gpt-4o", "openai", url + "/v1", max_retries=0),)
        settings = gateway_settings(
            str(tmp_path / "ledger.db"), fake, fake_llamacpp, deployments=models
        )
        yield from start_gateway(settings, fake)


def test_a_huge_upstream_message_is_cut_and_an_oversized_code_dropped(loud_gw: GW) -> None:
    got = openai_refusal(loud_gw.openai(), "gpt-4o", "hi")
    assert isinstance(got.body, dict)
    assert got.body["message"] == HUGE[:RELAYED_CHARS]
    assert got.param == "p" and got.code is None


def test_an_error_mid_stream_relays_the_upstreams_code_and_a_cut_message(loud_gw: GW) -> None:
    body = {"model": "gpt-4o", "messages": say("hi"), "stream": True}
    with loud_gw.http() as c:
        r = c.post(
            "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {loud_gw.key}"}
        )
    assert r.status_code == 200
    error = json.loads(r.text.strip().split("\n\n")[-1].removeprefix("data: "))["error"]
    assert error == {**STREAM_ERROR, "message": HUGE[:RELAYED_CHARS]}


async def odd_upstream(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An upstream of either API refusing with the request's text as its error's
    name: Anthropic's ``type``, OpenAI's ``code``."""
    if scope["type"] != "http":
        return
    data = orjson.loads(await read_body(receive))
    name = data["messages"][-1]["content"]
    if scope["path"].endswith("/messages"):
        body = {"type": "error", "error": {"type": name, "message": "refused"}}
    else:
        body = {"error": {"message": "refused", "type": "invalid_request_error", "code": name}}
    start = {"type": "http.response.start", "status": 400,
             "headers": [(b"content-type", b"application/json")]}  # fmt: skip
    await send(start)
    await send({"type": "http.response.body", "body": orjson.dumps(body)})


@pytest.fixture
def odd_gw(fake: Fake, fake_llamacpp: Fake, tmp_path: Path) -> Iterator[GW]:
    with serve_in_thread(odd_upstream) as url:
        models = (
            dep("gpt-4o", "openai", url + "/v1", max_retries=0),
            dep(CLAUDE, "anthropic", url, max_retries=0),
        )
        settings = gateway_settings(
            str(tmp_path / "ledger.db"), fake, fake_llamacpp, deployments=models
        )
        yield from start_gateway(settings, fake)


@pytest.mark.parametrize("name", ["x" * 201, "bad\x00name", "two\nlines"])
def test_an_odd_error_name_is_neither_recorded_nor_relayed(odd_gw: GW, name: str) -> None:
    """Only a short printable name is the upstream's code, of either API (PostgreSQL's
    text cannot hold a NUL: such a row would not be written)."""
    got = openai_refusal(odd_gw.openai(), "gpt-4o", name)
    assert got.code is None
    rec = odd_gw.record(got.response.headers["x-tokenomy-request-id"])
    assert rec.status == 400 and rec.upstream_error_code is None
    with pytest.raises(anthropic.BadRequestError) as info:
        odd_gw.anthropic().messages.create(model=CLAUDE, max_tokens=20, messages=say(name))
    assert info.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    rec = odd_gw.record(info.value.response.headers["x-tokenomy-request-id"])
    assert rec.status == 400 and rec.upstream_error_code is None


def test_a_plain_error_name_is_recorded_from_either_api(odd_gw: GW) -> None:
    got = openai_refusal(odd_gw.openai(), "gpt-4o", "invalid_prompt")
    rec = odd_gw.record(got.response.headers["x-tokenomy-request-id"])
    assert got.code == rec.upstream_error_code == "invalid_prompt"
    with pytest.raises(anthropic.BadRequestError) as info:
        odd_gw.anthropic().messages.create(
            model=CLAUDE, max_tokens=20, messages=say("billing_error")
        )
    assert info.value.body["error"]["type"] == "billing_error"  # type: ignore[index]
    rec = odd_gw.record(info.value.response.headers["x-tokenomy-request-id"])
    assert rec.upstream_error_code == "billing_error"
