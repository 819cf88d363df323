"""Bytes that are not HTTP get uvicorn's 400 with the error body of the API that was
called (not uvicorn's plain text), a request head past the limit gets a 431 so, the
connection closes, and the gateway serves the next request as before."""

from __future__ import annotations

import json
import re
import socket
from typing import Any

import anthropic
import openai
import pytest

from gateway_fixtures import GW, Proc
from tokenomy.server.protocol import MAX_HEAD

HEAD = b"Host: gw\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
ANTHROPIC_HEAD = b"anthropic-version: 2023-06-01\r\n" + HEAD
OPENAI_400 = {
    "error": {
        "message": "Invalid HTTP request received.",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }
}
ANTHROPIC_400 = {
    "type": "error",
    "error": {"type": "invalid_request_error", "message": "Invalid HTTP request received."},
}


def exchange(url: str, *parts: bytes) -> tuple[bytes, dict[str, str], Any]:
    """Send `parts` on a new connection; read until the server closes it."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        for part in parts:
            try:
                sock.sendall(part)
            except ConnectionError:  # refused before the client is done: read why
                break
        data = b""
        while chunk := sock.recv(65536):  # the server closes: no hang, no timeout
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines)
    return status.encode(), headers, json.loads(body)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(b"POST /v1/chat/completions\xc3\xa9 HTTP/1.1\r\n" + HEAD + b"\r\n{}",
                     OPENAI_400, id="non-ascii-path"),
        pytest.param(b"POST /v1/messages HTTP/1.1\r\n" + ANTHROPIC_HEAD
                     + b"Bad Header: 1\r\n\r\n{}", ANTHROPIC_400, id="space-in-header-name"),
        pytest.param(b"POST /v1/messages HTTP/1.1\r\nHost: gw\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\nzz\r\n", ANTHROPIC_400, id="bad-chunk"),
        pytest.param(b"POST /v1/messages/count_tokens HTTP/1.1\r\nHost: gw\r\n"
                     b"Content-Length: many\r\n\r\n{}", ANTHROPIC_400, id="bad-length"),
        pytest.param(b"POST /v1/models HTTP/1.1\r\n" + ANTHROPIC_HEAD
                     + b"X-\x01: 1\r\n\r\n{}", ANTHROPIC_400, id="anthropic-sdk-header"),
        pytest.param(b"POST /v1/responses HTTP/1.1\r\nHost: gw\r\n"
                     b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}", OPENAI_400,
                     id="two-lengths"),
        pytest.param(b"HELLO\r\n\r\n", OPENAI_400, id="not-http"),
    ],
)  # fmt: skip
def test_unparseable_requests_get_the_apis_error_body(
    gw: GW, raw: bytes, expected: dict[str, Any]
) -> None:
    status, headers, body = exchange(gw.url, raw)
    assert status == b"HTTP/1.1 400 Bad Request"
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    assert body == expected
    still_serving(gw)  # on other connections


def still_serving(gw: GW) -> None:
    reply = gw.openai().chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "still here?"}]
    )
    assert reply.choices[0].message.content


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages"])
def test_a_head_past_the_limit_is_refused_before_it_is_read_whole(gw: GW, path: str) -> None:
    start = b"POST " + path.encode() + b" HTTP/1.1\r\nHost: gw\r\nX-Big: "
    pieces = [b"a" * 16384] * (1024 * 1024 // 16384)  # a megabyte, sent as a client would
    status, headers, body = exchange(gw.url, start, *pieces, b"\r\n\r\n")
    assert (status, headers["connection"]) == (
        b"HTTP/1.1 431 Request Header Fields Too Large",
        "close",
    )
    message = f"The request's headers are larger than {MAX_HEAD} bytes."
    if path == "/v1/messages":
        assert body == {
            "type": "error",
            "error": {"type": "invalid_request_error", "message": message},
        }
    else:
        assert body["error"]["message"] == message
        assert body["error"]["type"] == "invalid_request_error"
    still_serving(gw)


def test_the_sdks_read_the_refusal_as_an_api_error(gw: GW) -> None:
    big = {"X-Big": "a" * 100_000}
    message = f"The request's headers are larger than {MAX_HEAD} bytes."
    with pytest.raises(openai.APIStatusError) as oai:
        gw.openai().chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}], extra_headers=big
        )
    assert (oai.value.status_code, oai.value.body) == (
        431,
        {**OPENAI_400["error"], "message": message},
    )
    with pytest.raises(anthropic.APIStatusError) as ant:
        gw.anthropic().messages.create(
            model="claude-haiku-4-5",
            max_tokens=5,
            messages=[{"role": "user", "content": "hi"}],
            extra_headers=big,
        )
    assert (ant.value.status_code, ant.value.body) == (
        431,
        {"type": "error", "error": {"type": "invalid_request_error", "message": message}},
    )


def test_the_limit_holds_for_a_head_sent_in_one_write(gw: GW) -> None:
    raw = b"POST /v1/chat/completions HTTP/1.1\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n{}"
    assert exchange(gw.url, raw)[0] == b"HTTP/1.1 431 Request Header Fields Too Large"


def pipelined(gw: GW, pad: int, n: int) -> list[bytes]:
    """`n` requests, each with a `pad`-byte header and a 100 KB body, in one write."""
    body = json.dumps(
        {"model": "gpt-4o", "messages": [{"role": "user", "content": "x " * 50_000}]}
    ).encode()
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {gw.key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        f"X-Pad: {'p' * pad}\r\n\r\n"
    ).encode()
    host, port = gw.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall((head + body) * n)
        data = b""
        while data.count(b"HTTP/1.1 ") < n and (chunk := sock.recv(65536)):
            data += chunk
    return re.findall(rb"HTTP/1\.1 \d{3} [A-Za-z ]+", data)  # a body ends where the next begins


def test_heads_up_to_the_limit_are_served_also_pipelined_behind_large_bodies(gw: GW) -> None:
    assert pipelined(gw, MAX_HEAD - 300, 3) == [b"HTTP/1.1 200 OK"] * 3


def test_a_large_body_behind_a_small_head_is_served(gw: GW) -> None:
    big = "word " * 300_000  # 1.5 MB of JSON, read in chunks with the head
    raw = gw.openai().chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": big}]
    )
    assert raw.http_response.status_code == 200
    assert gw.record(raw.headers["x-tokenomy-request-id"]).usage.input_tokens > 300_000


def test_tokenomy_serve_answers_them_so(gateway_proc: Proc) -> None:
    raw = b"POST /v1/messages HTTP/1.1\r\n" + ANTHROPIC_HEAD + b"Bad Header: 1\r\n\r\n{}"
    status, headers, body = exchange(gateway_proc.url, raw)
    assert (status, headers["content-type"], body) == (
        b"HTTP/1.1 400 Bad Request",
        "application/json",
        ANTHROPIC_400,
    )
