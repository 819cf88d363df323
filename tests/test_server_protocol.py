"""Bytes that are not HTTP get uvicorn's 400 with the error body of the API that was
called (not uvicorn's plain text), the connection closes, and the gateway serves
the next request as before."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest

from gateway_fixtures import GW, Proc

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


def exchange(url: str, raw: bytes) -> tuple[bytes, dict[str, str], Any]:
    """Send `raw` on a new connection; read until the server closes it."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(raw)
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
    # the gateway goes on serving on other connections
    reply = gw.openai().chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "still here?"}]
    )
    assert reply.choices[0].message.content


def test_tokenomy_serve_answers_them_so(gateway_proc: Proc) -> None:
    raw = b"POST /v1/messages HTTP/1.1\r\n" + ANTHROPIC_HEAD + b"Bad Header: 1\r\n\r\n{}"
    status, headers, body = exchange(gateway_proc.url, raw)
    assert (status, headers["content-type"], body) == (
        b"HTTP/1.1 400 Bad Request",
        "application/json",
        ANTHROPIC_400,
    )
