"""An httpx2 transport into a `tokenomy.Pipeline`: the official SDKs in process.

``openai.AsyncOpenAI`` and ``anthropic.AsyncAnthropic`` send through httpx2;
given an ``httpx2.AsyncClient(transport=PipelineTransport(pipeline))`` they talk
to the gateway's own HTTP layer (`TokenomyApp`, on the Pipeline's gateway) with
no socket: same routes, same error bodies, same headers. httpx2 is not a
dependency of Tokenomy; it comes with the SDKs.

httpx2's ``ASGITransport`` runs the app to its end before it returns a response,
so a stream would arrive whole and a client that stops reading could not stop
the upstream. This transport returns the response at its first byte, hands the
body on as the app sends it (the app runs at most one chunk ahead of the
reader), and tells the app the client went away when the response is closed
before its end, or dropped unclosed: the request is then recorded as over HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx2

from .._library import Pipeline
from .app import TokenomyApp


class PipelineTransport(httpx2.AsyncBaseTransport):
    """Send each request to ``pipeline``'s gateway through its HTTP layer.

    The Pipeline must be started; closing the transport (or the client using it)
    ends the responses still open, not the Pipeline."""

    def __init__(self, pipeline: Pipeline) -> None:
        self._pipeline = pipeline
        self._app: TokenomyApp | None = None
        self._open: set[_Exchange] = set()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        app = self._asgi()
        exchange = _Exchange(_scope(request), await request.aread())
        self._open.add(exchange)
        exchange.run(app, done=self._open.discard)
        try:
            status, headers = await exchange.response_start()
        except BaseException:
            exchange.hang_up()
            raise
        return httpx2.Response(status, headers=headers, stream=_Body(exchange), request=request)

    async def aclose(self) -> None:
        for exchange in list(self._open):
            await exchange.close()

    def _asgi(self) -> TokenomyApp:
        gateway = self._pipeline.gateway  # refuses a Pipeline not started, or closed
        if self._app is None or self._app.gateway is not gateway:
            self._app = TokenomyApp(self._pipeline.settings, gateway)
        return self._app


def _scope(request: httpx2.Request) -> dict[str, Any]:
    url = request.url
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": request.method,
        "headers": [(k.lower(), v) for k, v in request.headers.raw],
        "scheme": url.scheme,
        "path": url.path,
        "raw_path": url.raw_path.split(b"?")[0],
        "query_string": url.query,
        "server": (url.host, url.port),
        "client": ("127.0.0.1", 0),
        "root_path": "",
    }


class _Exchange:
    """One request: the app runs in a task of its own; its body comes out a chunk
    at a time, the app waiting until the reader took the last one."""

    def __init__(self, scope: dict[str, Any], body: bytes) -> None:
        self.scope = scope
        self.body: bytes | None = body
        self.status: int | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.started = asyncio.Event()
        self.gone = asyncio.Event()
        self.taken = asyncio.Event()
        self.pieces: asyncio.Queue[bytes | None] = asyncio.Queue()  # None: the end
        self.complete = False
        self.task: asyncio.Task[None] | None = None

    def run(self, app: TokenomyApp, *, done: Callable[[_Exchange], None]) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run(app))
        self.task.add_done_callback(lambda _: done(self))

    async def _run(self, app: TokenomyApp) -> None:
        try:
            await app(self.scope, self._receive, self._send)
        finally:
            self.started.set()
            self.pieces.put_nowait(None)

    async def _receive(self) -> dict[str, Any]:
        if self.body is not None:
            body, self.body = self.body, None
            return {"type": "http.request", "body": body, "more_body": False}
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def _send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = list(message.get("headers", []))
            self.started.set()
            return
        if message["type"] != "http.response.body" or self.gone.is_set():
            return
        piece: bytes = message.get("body", b"")
        more = bool(message.get("more_body", False))
        if piece:
            self.taken.clear()
            self.pieces.put_nowait(piece)
        if not more:
            self.complete = True
            self.pieces.put_nowait(None)
        elif piece:
            await self.taken.wait()  # the reader took it, or went away

    async def response_start(self) -> tuple[int, list[tuple[bytes, bytes]]]:
        await self.started.wait()
        if self.status is None:
            raise httpx2.RemoteProtocolError("the gateway ended without a response")
        return self.status, self.headers

    async def pieces_of_body(self) -> AsyncIterator[bytes]:
        while True:
            piece = await self.pieces.get()
            self.taken.set()
            if piece is None:
                if not self.complete:
                    raise httpx2.RemoteProtocolError("the gateway ended the response early")
                return
            yield piece

    def hang_up(self) -> None:
        """The client went away: the app stops streaming and records the request."""
        self.gone.set()
        self.taken.set()

    async def close(self) -> None:
        """Hang up if the body was not read to its end; wait until the app is done,
        so that the request's record is committed when this returns."""
        if not self.complete:
            self.hang_up()
        if self.task is not None:
            await asyncio.shield(self.task)


class _Body(httpx2.AsyncByteStream):
    def __init__(self, exchange: _Exchange) -> None:
        self._exchange: _Exchange | None = exchange
        self._loop = asyncio.get_running_loop()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._exchange is None:
            raise httpx2.StreamClosed()
        async for piece in self._exchange.pieces_of_body():
            yield piece

    async def aclose(self) -> None:
        exchange, self._exchange = self._exchange, None
        if exchange is not None:
            await exchange.close()

    def __del__(self) -> None:
        exchange = getattr(self, "_exchange", None)
        if exchange is not None and not exchange.complete:
            # Dropped unclosed: a client that went away, as its socket closing says.
            with contextlib.suppress(RuntimeError):  # the loop is closed: nothing runs
                self._loop.call_soon_threadsafe(exchange.hang_up)
