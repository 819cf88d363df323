"""Every failure gets an error body in the called API's format, with the right
status, and never a traceback; served requests are still recorded."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anthropic
import httpx2 as httpx
import openai
import pytest

from gateway_fixtures import GW, Fake, add_key, gateway_settings
from tokenomy.keys import mint_key
from tokenomy.server.app import create_app
from tokenomy.server.http import MAX_BODY
from tokenomy.validate import MAX_MODEL_CHARS


def say(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def assert_openai_error(r: httpx.Response, status: int) -> dict[str, object]:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body["error"]) >= {"message", "type", "param", "code"}
    assert "Traceback" not in r.text
    assert r.headers["x-tokenomy-request-id"].startswith("req_")
    err: dict[str, object] = body["error"]
    return err


def assert_anthropic_error(r: httpx.Response, status: int) -> dict[str, object]:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["type"] == "error" and {"type", "message"} <= set(body["error"])
    assert "Traceback" not in r.text
    err: dict[str, object] = body["error"]
    return err


def test_malformed_json(gw: GW) -> None:
    h = {"authorization": f"Bearer {gw.key}", "content-type": "application/json"}
    with gw.http() as c:
        err = assert_openai_error(c.post("/v1/chat/completions", content=b"{nope", headers=h), 400)
        assert err["type"] == "invalid_request_error"
        err = assert_anthropic_error(c.post("/v1/messages", content=b"[1,", headers=h), 400)
        assert err["type"] == "invalid_request_error"
        assert_openai_error(c.post("/v1/chat/completions", content=b"", headers=h), 400)
        assert_openai_error(c.post("/v1/chat/completions", content=b"[1, 2]", headers=h), 400)


def test_a_body_over_the_limit_is_413_in_both_formats(gw: GW) -> None:
    big = b'{"model": "gpt-4o", "messages": "' + b"a" * MAX_BODY + b'"}'
    with gw.http() as c:
        r = c.post("/v1/chat/completions", content=big,
                   headers={"authorization": f"Bearer {gw.key}"})  # fmt: skip
        assert assert_openai_error(r, 413)["type"] == "invalid_request_error"
        r = c.post("/v1/messages", content=big, headers={"x-api-key": gw.key})
        assert assert_anthropic_error(r, 413)["type"] == "request_too_large"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", {"model": "gpt-4o", "messages": say("x" * 1_500_000)}),
        ("/v1/messages", {"model": "claude-haiku-4-5", "max_tokens": 5,
                          "messages": say("x" * 1_500_000)}),
        ("/v1/embeddings", {"model": "text-embedding-3-small", "input": "x" * 1_500_000}),
    ],
)  # fmt: skip
def test_a_body_over_a_megabyte_is_sent_upstream(
    gw: GW, path: str, body: dict[str, object]
) -> None:
    """A prompt of a few megabytes (an image or two in base64) is served: the HTTP
    client warns against sending one as plain bytes (it may hold the event loop),
    which under warnings-as-errors was a 500."""
    h = {"authorization": f"Bearer {gw.key}"}
    with gw.http() as c:
        for stream in (False, True) if path != "/v1/embeddings" else (False,):
            r = c.post(path, json={**body, "stream": stream}, headers=h)
            assert r.status_code == 200, r.text
            assert gw.record(r.headers["x-tokenomy-request-id"]).status == 200


def test_a_body_over_a_megabyte_is_sent_whole_again_on_a_retry(gw: GW) -> None:
    tag = f"big-retry-{time.time_ns()}"
    text = f"[[fake:status=503]] [[fake:fail_times=1]] [[fake:id={tag}]] " + "x" * 1_500_000
    resp = gw.openai().chat.completions.create(model="flaky-model", messages=say(text))  # type: ignore[arg-type]
    assert resp.choices[0].message.content
    tries = [r for r in gw.fake.app.requests if tag in str(r.body)]
    assert len(tries) == 2 and tries[0].body == tries[1].body


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "gpt-4o", "messages": "hi"}, "messages"),
        ({"model": 4, "messages": [{"role": "user", "content": "x"}]}, "model"),
        (
            {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}], "stream": "yes"},
            "stream",
        ),
        (
            {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}], "max_tokens": True},
            "max_tokens",
        ),
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
    ],
)
def test_wrong_field_types_are_400(gw: GW, body: dict[str, object], param: str) -> None:
    with gw.http() as c:
        r = c.post("/v1/chat/completions", json=body, headers={"authorization": f"Bearer {gw.key}"})
    assert assert_openai_error(r, 400)["param"] == param


def test_a_model_name_too_long_is_400_in_both_formats(gw: GW) -> None:
    """A model name is a key of bounded in-process memos: a megabyte-long one (which
    a wildcard deployment would otherwise pass through) is refused up front."""
    long_name = "claude-" + "x" * MAX_MODEL_CHARS
    with gw.http() as c:
        r = c.post("/v1/chat/completions", headers={"authorization": f"Bearer {gw.key}"},
                   json={"model": long_name, "messages": say("x")})  # fmt: skip
        assert assert_openai_error(r, 400)["param"] == "model"
        r = c.post("/v1/messages", headers={"x-api-key": gw.key},
                   json={"model": long_name, "max_tokens": 5, "messages": say("x")})  # fmt: skip
        assert assert_anthropic_error(r, 400)["type"] == "invalid_request_error"
        r = c.post("/v1/messages", headers={"x-api-key": gw.key},
                   json={"model": "claude-haiku-4-5", "max_tokens": 5, "messages": say("x")})  # fmt: skip
        assert r.status_code == 200  # a real name is served


def test_wrong_nested_types_for_a_model_of_the_other_api_are_400(gw: GW) -> None:
    """Translated requests are checked too: a malformed part is a 400 in the caller's
    format, never a 500 from the translation."""
    tools = [{"type": "function", "function": "get_weather"}]
    image = [{"role": "user", "content": [{"type": "image", "source": "https://x.test/a.png"}]}]
    with gw.http() as c:
        r = c.post("/v1/chat/completions", headers={"authorization": f"Bearer {gw.key}"},
                   json={"model": "claude-haiku-4-5", "messages": say("x"), "tools": tools})  # fmt: skip
        assert assert_openai_error(r, 400)["type"] == "invalid_request_error"
        r = c.post("/v1/messages", headers={"x-api-key": gw.key},
                   json={"model": "gpt-4o", "max_tokens": 5, "messages": image})  # fmt: skip
        assert assert_anthropic_error(r, 400)["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("path", "model", "message"),
    [
        ("/v1/chat/completions", "llama-local", "hi"),
        ("/v1/chat/completions", "gpt-4o", None),
        ("/v1/messages", "claude-haiku-4-5", ["hi"]),
    ],
)
def test_a_message_that_is_not_an_object_is_400(
    gw: GW, path: str, model: str, message: object
) -> None:
    """What the gateway counts itself (a stream whose upstream reports no usage, the
    caps' worst case, a routing rule's length) reads every message as an object: any
    other is the client's 400, not a stream cut off unrecorded when it is counted."""
    body = {"model": model, "max_tokens": 5, "stream": True, "messages": [*say("x"), message]}
    with gw.http() as c:
        r = c.post(path, json=body, headers={"authorization": f"Bearer {gw.key}"})
    if path == "/v1/messages":
        assert "messages[1]" in str(assert_anthropic_error(r, 400)["message"])
    else:
        assert assert_openai_error(r, 400)["param"] == "messages[1]"


def test_anthropic_requires_max_tokens(gw: GW) -> None:
    with gw.http() as c:
        r = c.post("/v1/messages", json={"model": "claude-haiku-4-5", "messages": say("x")},
                   headers={"x-api-key": gw.key})  # fmt: skip
    assert "max_tokens" in str(assert_anthropic_error(r, 400)["message"])


def test_unknown_model_is_404_in_both_formats(gw: GW) -> None:
    gw_fakeless = gw
    with pytest.raises(openai.NotFoundError):
        gw_fakeless.openai().chat.completions.create(model="no-such-model", messages=say("x"))  # type: ignore[arg-type]
    # claude-* is routed to Anthropic; an unrouted name in Anthropic format:
    with gw.http() as c:
        r = c.post("/v1/messages", headers={"x-api-key": gw.key},
                   json={"model": "nope", "max_tokens": 5, "messages": say("x")})  # fmt: skip
    assert assert_anthropic_error(r, 404)["type"] == "not_found_error"


def test_missing_wrong_revoked_and_expired_keys(fresh_gw: GW) -> None:
    gw = fresh_gw
    with pytest.raises(openai.AuthenticationError):
        gw.openai(key="tk-nothing-here").chat.completions.create(model="gpt-4o", messages=say("x"))  # type: ignore[arg-type]
    with gw.http() as c:
        assert_openai_error(
            c.post("/v1/chat/completions", json={"model": "gpt-4o", "messages": say("x")}), 401
        )
    with pytest.raises(anthropic.AuthenticationError):
        gw.anthropic(key="bad").messages.create(
            model="claude-haiku-4-5", max_tokens=5, messages=say("x")
        )  # type: ignore[arg-type]

    revoked, rec = mint_key(team="t")
    gw.store.create_key(rec)
    gw.openai(key=revoked).chat.completions.create(model="gpt-4o", messages=say("x"))  # type: ignore[arg-type]
    gw.store.update_key(rec.key_id, revoked_at=time.time())
    with pytest.raises(openai.AuthenticationError, match="revoked"):
        gw.openai(key=revoked).chat.completions.create(model="gpt-4o", messages=say("x"))  # type: ignore[arg-type]

    expired, rec2 = mint_key(team="t", expires_at=time.time() - 1)
    gw.store.create_key(rec2)
    with pytest.raises(openai.AuthenticationError, match="expired"):
        gw.openai(key=expired).chat.completions.create(model="gpt-4o", messages=say("x"))  # type: ignore[arg-type]


def test_key_model_allowlist(fresh_gw: GW) -> None:
    secret, rec = mint_key(team="t", models=["gpt-4o-mini"])
    fresh_gw.store.create_key(rec)
    client = fresh_gw.openai(key=secret)
    client.chat.completions.create(model="gpt-4o-mini", messages=say("x"))  # type: ignore[arg-type]
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(model="gpt-4o", messages=say("x"))  # type: ignore[arg-type]


def test_upstream_4xx_passes_through_and_is_recorded(gw: GW) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        gw.openai().chat.completions.with_raw_response.create(
            model="gpt-4o", messages=say("bad [[fake:status=400]]")
        )  # type: ignore[arg-type]
    rid = info.value.response.headers["x-tokenomy-request-id"]
    rec = gw.record(rid)
    assert rec.status == 400 and rec.error_type == "upstream_error" and rec.cost_usd is None


def test_retry_on_5xx_before_any_byte(gw: GW) -> None:
    tag = f"retry-{time.time_ns()}"
    text = f"retry me [[fake:status=503]] [[fake:fail_times=1]] [[fake:id={tag}]]"
    resp = gw.openai().chat.completions.create(model="flaky-model", messages=say(text))  # type: ignore[arg-type]
    assert resp.choices[0].message.content
    tries = [r for r in gw.fake.app.requests if tag in str(r.body)]
    assert len(tries) == 2


def test_upstream_5xx_and_429_after_retries(gw: GW) -> None:
    with pytest.raises(openai.InternalServerError) as info:
        gw.openai().chat.completions.create(model="gpt-4o", messages=say("[[fake:status=500]]"))  # type: ignore[arg-type]
    assert info.value.status_code == 500
    with pytest.raises(openai.RateLimitError) as rl:
        gw.openai().chat.completions.create(model="gpt-4o", messages=say("[[fake:status=429]]"))  # type: ignore[arg-type]
    assert rl.value.response.headers["retry-after"] == "1"
    with pytest.raises(anthropic.RateLimitError):
        gw.anthropic().messages.create(
            model="claude-haiku-4-5", max_tokens=5, messages=say("[[fake:status=429]]")
        )  # type: ignore[arg-type]
    with pytest.raises(anthropic.InternalServerError) as ov:
        gw.anthropic().messages.create(
            model="claude-haiku-4-5", max_tokens=5, messages=say("[[fake:status=529]]")
        )  # type: ignore[arg-type]
    assert ov.value.status_code == 529


@pytest.mark.parametrize(
    ("status", "anthropic_type", "openai_type"),
    [
        (400, "invalid_request_error", "invalid_request_error"),
        (404, "not_found_error", "invalid_request_error"),
        (429, "rate_limit_error", "rate_limit_error"),
        (503, "overloaded_error", "server_error"),
        (529, "overloaded_error", "server_error"),
    ],
)
def test_upstream_errors_of_the_other_api_get_the_callers_error_types(
    gw: GW, status: int, anthropic_type: str, openai_type: str
) -> None:
    """OpenAI's types ('requests', 'server_error') are not Anthropic's, nor the other
    way round: an error from a provider of the other API is typed by its status."""
    text = f"[[fake:status={status}]]"
    with gw.http() as c:
        r = c.post("/v1/messages", headers={"x-api-key": gw.key},
                   json={"model": "gpt-4o", "max_tokens": 5, "messages": say(text)})  # fmt: skip
        assert assert_anthropic_error(r, status)["type"] == anthropic_type
        r = c.post("/v1/chat/completions", headers={"authorization": f"Bearer {gw.key}"},
                   json={"model": "claude-haiku-4-5", "messages": say(text)})  # fmt: skip
        assert assert_openai_error(r, status)["type"] == openai_type


def test_upstream_errors_of_the_callers_api_keep_their_type(gw: GW) -> None:
    with gw.http() as c:
        r = c.post("/v1/chat/completions", headers={"authorization": f"Bearer {gw.key}"},
                   json={"model": "gpt-4o", "messages": say("[[fake:status=429]]")})  # fmt: skip
        assert assert_openai_error(r, 429)["type"] == "requests"  # OpenAI's own, passed on
        r = c.post("/v1/messages", headers={"x-api-key": gw.key},
                   json={"model": "claude-haiku-4-5", "max_tokens": 5,
                         "messages": say("[[fake:status=504]]")})  # fmt: skip
        assert assert_anthropic_error(r, 504)["type"] == "timeout_error"


def test_timeout_is_504(gw: GW) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        gw.openai().chat.completions.create(
            model="slow-model", messages=say("[[fake:delay_ms=2000]]")
        )  # type: ignore[arg-type]
    assert info.value.status_code == 504
    with gw.http() as c:
        r = c.post("/v1/messages", headers={"x-api-key": gw.key},
                   json={"model": "slow-model", "max_tokens": 5, "messages": say("[[fake:delay_ms=2000]]")})  # fmt: skip
    assert assert_anthropic_error(r, 504)["type"] == "timeout_error"


def test_connection_reset_and_refused_are_502(gw: GW) -> None:
    for model, text in (("gpt-4o", "[[fake:reset]]"), ("dead-model", "hi")):
        with pytest.raises(openai.APIStatusError) as info:
            gw.openai().chat.completions.create(model=model, messages=say(text))  # type: ignore[arg-type]
        assert info.value.status_code == 502


def test_malformed_upstream_json_is_502(gw: GW) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        gw.openai().chat.completions.create(model="gpt-4o", messages=say("[[fake:malformed]]"))  # type: ignore[arg-type]
    assert info.value.status_code == 502


@pytest.mark.parametrize("directive", ["malformed", "reset", "stream_error"])
def test_broken_stream_ends_with_an_error_event_and_is_recorded(gw: GW, directive: str) -> None:
    with gw.openai().chat.completions.with_streaming_response.create(
        model="gpt-4o",
        messages=say(f"go [[fake:{directive}]] [[fake:chunks=6]]"),
        stream=True,  # type: ignore[arg-type]
    ) as resp:
        rid = resp.headers["x-tokenomy-request-id"]
        with pytest.raises(openai.APIError):
            for _ in resp.parse():
                pass
    rec = gw.record(rid)
    assert rec.status >= 500 and rec.error_type
    assert rec.usage.input_tokens > 0  # what was consumed is still metered


def test_anthropic_stream_error_event(gw: GW) -> None:
    with (
        pytest.raises(anthropic.APIStatusError),
        gw.anthropic().messages.stream(
            model="claude-haiku-4-5",
            max_tokens=50,
            messages=say("go [[fake:stream_error]]"),  # type: ignore[arg-type]
        ) as stream,
    ):
        for _ in stream:
            pass


@pytest.mark.parametrize(
    ("api", "model", "directive", "etype"),
    [
        ("anthropic", "gpt-4o", "stream_error", "api_error"),  # OpenAI's server_error
        ("anthropic", "gpt-4o", "malformed", "api_error"),  # the gateway's own 502
        ("anthropic", "claude-haiku-4-5", "reset", "api_error"),
        ("anthropic", "claude-haiku-4-5", "stream_error", "overloaded_error"),  # passed on
        ("openai", "claude-haiku-4-5", "stream_error", "server_error"),  # Anthropic's overloaded
        ("openai", "gpt-4o", "stream_error", "server_error"),  # passed on
    ],
)
def test_an_error_event_mid_stream_has_a_type_of_the_callers_api(
    gw: GW, api: str, model: str, directive: str, etype: str
) -> None:
    messages = say(f"go [[fake:{directive}]] [[fake:chunks=6]]")
    with gw.http() as c:
        if api == "anthropic":
            r = c.post("/v1/messages", headers={"x-api-key": gw.key},
                       json={"model": model, "max_tokens": 50, "messages": messages, "stream": True})  # fmt: skip
            event, data = r.text.strip().split("\n\n")[-1].split("\n")
            assert event == "event: error"
            error = json.loads(data.removeprefix("data: "))
            assert error["type"] == "error"
        else:
            r = c.post("/v1/chat/completions", headers={"authorization": f"Bearer {gw.key}"},
                       json={"model": model, "messages": messages, "stream": True})  # fmt: skip
            error = json.loads(r.text.strip().split("\n\n")[-1].removeprefix("data: "))
    assert r.status_code == 200
    assert error["error"]["type"] == etype and error["error"]["message"]


def test_client_disconnect_mid_stream_is_still_recorded(gw: GW) -> None:
    body = {
        "model": "gpt-4o",
        "stream": True,
        "messages": say("slow [[fake:chunks=40]] [[fake:chunk_delay_ms=20]]"),
    }
    rec = gw.settled(gw.left_stream("/v1/chat/completions", body))
    assert rec.status == 499 and rec.error_type == "client_disconnected"
    assert rec.usage.output_tokens >= 3 and rec.usage.estimated
    assert rec.cost_usd is not None and rec.cost_usd > 0


def test_unknown_route_and_method(gw: GW) -> None:
    with gw.http() as c:
        assert_openai_error_no_id(c.get("/v1/nothing"), 404)
        assert_openai_error_no_id(c.get("/v1/chat/completions"), 404)


def assert_openai_error_no_id(r: httpx.Response, status: int) -> None:
    assert r.status_code == status
    assert "message" in r.json()["error"]


def test_a_key_with_non_ascii_bytes_is_401_not_500(gw: GW) -> None:
    # Header values arrive as latin-1; the master-key check must not crash on them.
    bad = {"authorization": b"Bearer tk-\xe9t\xe9"}
    body = {"model": "gpt-4o", "messages": say("x")}
    with gw.http() as c:
        assert_openai_error(c.post("/v1/chat/completions", headers=bad, json=body), 401)
        assert_anthropic_error(
            c.post("/v1/messages", headers={"x-api-key": b"\xe9"},
                   json={**body, "max_tokens": 5}),
            401,
        )  # fmt: skip
        for r in (
            c.post("/v1/feedback", headers=bad, json={"request_id": "req_x", "score": 1}),
            c.get("/v1/models", headers=bad),
            c.get("/admin/keys", headers=bad),
        ):
            assert r.status_code == 401 and r.json()["error"]["type"], r.text
        login = c.post(
            "/ui/login",
            content=b"key=%C3%A9",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert login.status_code == 401 and "not the master key" in login.text


def body_then_silence(body: bytes) -> Callable[[], Awaitable[dict[str, object]]]:
    """An ASGI ``receive`` of a client that sends ``body`` and then nothing more."""
    asked = False

    async def receive() -> dict[str, object]:
        nonlocal asked
        if not asked:
            asked = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # the client says nothing more
        raise AssertionError("unreachable")

    return receive


async def test_a_stream_whose_response_cannot_start_is_still_recorded(
    fake: Fake, fake_llamacpp: Fake, tmp_path: Path
) -> None:
    """A server may raise when the response starts (the client went away first): the
    upstream stream, already open, is closed and the request recorded (499)."""
    db = str(tmp_path / "ledger.db")
    secret, _ = add_key(db, team="search")
    app = create_app(gateway_settings(db, fake, fake_llamacpp))
    await app.startup()
    receive = body_then_silence(
        json.dumps({"model": "gpt-4o", "stream": True, "messages": say("hi there")}).encode()
    )

    async def send(msg: dict[str, object]) -> None:
        if msg["type"] == "http.response.start":
            raise OSError("connection reset by peer")

    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions",
             "headers": [(b"authorization", f"Bearer {secret}".encode())], "query_string": b""}  # fmt: skip
    try:
        with pytest.raises(OSError, match="reset"):  # the server's to handle
            await app(scope, receive, send)
        assert app.gateway is not None
        rows = app.gateway.store.list_records()
    finally:
        await app.shutdown()
    assert [(r.status, r.error_type) for r in rows] == [(499, "client_disconnected")]
    assert rows[0].usage.input_tokens > 0 and rows[0].cost_usd is not None


async def test_a_cancelled_request_is_recorded_and_releases_its_holds(
    fake: Fake, fake_llamacpp: Fake, tmp_path: Path
) -> None:
    """A request cancelled while it waits on the upstream (a shutdown past its drain
    time) is recorded and lets go of what it reserved: a `concurrent: 1` limit is
    free again at once, not after the sweeper's hour."""
    from click.testing import CliRunner

    from tokenomy.cli import cli

    db = str(tmp_path / "ledger.db")
    secret, _ = add_key(db, team="search")
    made = CliRunner().invoke(cli, ["limits", "create", "one-at-a-time", "--key", "each",
                                    "--concurrent", "1", "--db", db])  # fmt: skip
    assert made.exit_code == 0, made.output
    app = create_app(gateway_settings(db, fake, fake_llamacpp, caps={"reload_interval": 0.05}))
    await app.startup()
    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions",
             "headers": [(b"authorization", f"Bearer {secret}".encode())], "query_string": b""}  # fmt: skip

    def request(text: str) -> tuple[Any, list[dict[str, Any]]]:
        body = json.dumps({"model": "gpt-4o", "messages": say(text), "max_tokens": 5}).encode()
        sent: list[dict[str, Any]] = []
        receive = body_then_silence(body)

        async def send(msg: dict[str, Any]) -> None:
            sent.append(msg)

        return app(scope, receive, send), sent

    try:
        before = fake.app.mark()
        slow, _ = request("slow [[fake:delay_ms=30000]]")
        task = asyncio.ensure_future(slow)
        for _ in range(2000):  # until it waits on the upstream
            if fake.app.requests_since(before):
                break
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        fast, sent = request("fast")
        await fast
        assert sent[0]["status"] == 200  # the limit's one slot was given back
        assert app.gateway is not None
        rows = {r.status: r for r in app.gateway.store.list_records()}
    finally:
        await app.shutdown()
    assert rows[499].error_type == "cancelled" and set(rows) == {200, 499}


@pytest.mark.parametrize("waiting_on", ["upstream", "client"])
async def test_a_stream_cancelled_by_a_shutdown_is_recorded_as_cancelled(
    fake: Fake, fake_llamacpp: Fake, tmp_path: Path, waiting_on: str
) -> None:
    """A shutdown past its drain time cancels the streams still running: recorded
    as a non-streamed request would be (499 ``cancelled``), not as a client that
    went away, whether the relay was waiting on the upstream or on the client."""
    db = str(tmp_path / "ledger.db")
    secret, _ = add_key(db, team="search")
    app = create_app(gateway_settings(db, fake, fake_llamacpp))
    await app.startup()
    text = "slow [[fake:chunks=50]] [[fake:chunk_delay_ms=200]]"
    if waiting_on == "client":
        text = "fast [[fake:chunks=50]]"
    body = json.dumps({"model": "gpt-4o", "stream": True, "messages": say(text)}).encode()
    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions",
             "headers": [(b"authorization", f"Bearer {secret}".encode())], "query_string": b""}  # fmt: skip
    streaming = asyncio.Event()

    async def send(msg: dict[str, Any]) -> None:
        if msg["type"] == "http.response.body":
            streaming.set()
            if waiting_on == "client":  # a client that reads no more
                await asyncio.Event().wait()

    try:
        task = asyncio.ensure_future(app(scope, body_then_silence(body), send))
        await asyncio.wait_for(streaming.wait(), 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert app.gateway is not None
        rows = app.gateway.store.list_records()
    finally:
        await app.shutdown()
    assert [(r.status, r.error_type) for r in rows] == [(499, "cancelled")]
    assert rows[0].usage.input_tokens > 0 and rows[0].cost_usd  # what was generated is billed
