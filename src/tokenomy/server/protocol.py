"""uvicorn's HTTP protocol, answering a request it cannot parse as the API would.

Bytes that are not valid HTTP (a malformed request line, a header name with a
space, a non-ASCII byte in the path, a bad chunk size or ``Content-Length``)
never reach the application: uvicorn answers them itself with a plain-text 400,
in which an SDK finds no error object. Here that 400 carries the error body of
the API that was called, read from what was parsed before the fault: Anthropic's
when the path is one of its routes or an ``anthropic-version`` header came,
OpenAI's otherwise. The connection still closes: the bytes after a fault cannot
be trusted to frame the next request.
"""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from ..errors import InvalidRequest
from ..pipeline.context import ANTHROPIC
from .app import api_of
from .errors import error_body


class GatewayProtocol(HttpToolsProtocol):
    def send_400_response(self, msg: str) -> None:
        # on_message_begin sets both; a fault in the request line can come first
        url: bytes = getattr(self, "url", b"")
        headers: list[tuple[bytes, bytes]] = getattr(self, "headers", [])
        path = url.split(b"?", 1)[0].decode("latin-1")
        api = api_of(path, {"headers": headers})
        if any(name == b"anthropic-version" for name, _ in headers):
            api = ANTHROPIC
        body = error_body(api, InvalidRequest(msg))
        head = [STATUS_LINE[400]]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + body)
        self.transport.close()
