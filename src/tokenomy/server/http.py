"""Minimal ASGI helpers: read a body, send JSON or a streamed body, headers as a dict."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from typing import Any

import orjson

from ..errors import InvalidRequest

Scope = dict[str, Any]
Message = dict[str, Any]
MAX_BODY = 32 * 1024 * 1024

JSON_CT = (b"content-type", b"application/json")


def header_dict(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


async def read_body(receive: Any) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            raise InvalidRequest("client disconnected before sending the body", status=499)
        body = msg.get("body", b"")
        if body:
            size += len(body)
            if size > MAX_BODY:
                raise InvalidRequest("Request body too large.", status=413)
            chunks.append(body)
        if not msg.get("more_body"):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def parse_json(raw: bytes) -> Any:
    if not raw:
        raise InvalidRequest("The request body is empty; expected JSON.")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"We could not parse the JSON body of your request: {exc}") from exc


def encode_headers(headers: Mapping[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]


async def send_bytes(
    send: Any,
    status: int,
    body: bytes,
    headers: Mapping[str, str] | None = None,
    content_type: bytes = b"application/json",
) -> None:
    hdrs = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    if headers:
        hdrs.extend(encode_headers(headers))
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": body})


async def send_json(
    send: Any, status: int, data: Any, headers: Mapping[str, str] | None = None
) -> None:
    await send_bytes(send, status, orjson.dumps(data), headers)


async def send_stream(
    send: Any,
    status: int,
    chunks: Iterator[bytes],
    headers: Mapping[str, str] | None = None,
    content_type: bytes = b"application/json",
) -> None:
    """Send the pieces of ``chunks``, a blocking iterator (it reads a database),
    advanced in a worker thread, as one body of unknown length: memory holds a
    piece, never the whole. The first piece is read before the response starts,
    so an error there is answered as an error; one after it ends the response
    unfinished, never a body that looks complete."""
    body = await asyncio.to_thread(next, chunks, b"")
    hdrs = [(b"content-type", content_type)]
    if headers:
        hdrs.extend(encode_headers(headers))
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    while (more := await asyncio.to_thread(next, chunks, None)) is not None:
        await send({"type": "http.response.body", "body": body, "more_body": True})
        body = more
    await send({"type": "http.response.body", "body": body, "more_body": False})
