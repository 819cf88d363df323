"""uvicorn's HTTP protocol, answering a request it cannot read as the API would.

Bytes that are not valid HTTP (a malformed request line, a header name with a
space, a non-ASCII byte in the path, a bad chunk size or ``Content-Length``)
never reach the application: uvicorn answers them itself with a plain-text 400,
in which an SDK finds no error object. Here that 400 carries the error body of
the API that was called, read from what was parsed before the fault: Anthropic's
when the path is one of its routes or an ``anthropic-version`` header came,
OpenAI's otherwise.

uvicorn's httptools protocol also reads a request's head (request line and
headers) without a size limit: one client sending a header of a few hundred
megabytes holds that much of the gateway's memory, and more, while the server
parses it. Here a head past `MAX_HEAD` bytes is refused with a 431 in the same
format.

Either way the connection closes: after a fault, the bytes that follow cannot be
trusted to frame the next request. It closes as a web server does, lingering:
the answer is sent and the gateway's side shut, what the client still sends is
read and dropped until it closes its side or `LINGER` seconds pass. Closing at
once with bytes unread would reset the connection, and a client still sending
(a large head) would lose the answer to the reset.
"""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from ..errors import InvalidRequest
from ..pipeline.context import ANTHROPIC
from .app import api_of
from .errors import error_body

# A request's line and headers, at most. OpenAI's and Anthropic's SDKs send about
# 1 KB; a server in front of an API allows some tens of KB (nginx 32 KB by default).
MAX_HEAD = 64 * 1024
LINGER = 2.0  # seconds


class GatewayProtocol(HttpToolsProtocol):
    _head_open = True  # reading a request's head (also before its first byte)
    _head_size = 0
    _refused = False

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # lingering: read and dropped
        # A read that would take an open head past the limit is parsed up to the
        # limit first: a head that ends there goes on with the rest of the read.
        while self._head_open and len(data) > MAX_HEAD - self._head_size:
            room = MAX_HEAD - self._head_size
            self._head_size = MAX_HEAD
            if room:
                super().data_received(data[:room])
                data = data[room:]
                if self._refused or self.transport.is_closing():
                    return  # a fault in the slice: answered
            if self._head_open and self._head_size == MAX_HEAD:  # this head did not end
                self._refuse(431, f"The request's headers are larger than {MAX_HEAD} bytes.")
                return
        if self._head_open:
            self._head_size += len(data)
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_open = True  # counted from 0: the last head's end set it

    def on_headers_complete(self) -> None:
        self._head_open, self._head_size = False, 0
        super().on_headers_complete()

    def send_400_response(self, msg: str) -> None:
        self._refuse(400, msg)

    def _refuse(self, status: int, msg: str) -> None:
        # on_message_begin sets both; a fault in the request line can come first
        url: bytes = getattr(self, "url", b"")
        headers: list[tuple[bytes, bytes]] = getattr(self, "headers", [])
        path = url.split(b"?", 1)[0].decode("latin-1")
        api = api_of(path, {"headers": headers})
        if any(name == b"anthropic-version" for name, _ in headers):
            api = ANTHROPIC
        body = error_body(api, InvalidRequest(msg, status=status))
        head = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + body)
        self._refused = True
        cycle = self.cycle  # a request whose body was being read when the fault came
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # its app reads a disconnect, and sends nothing
            cycle.message_event.set()
        if self.transport.can_write_eof():
            self.transport.write_eof()  # after the answer; the client's EOF closes
            self.loop.call_later(LINGER, self.transport.close)
        else:  # pragma: no cover - TCP transports can
            self.transport.close()
