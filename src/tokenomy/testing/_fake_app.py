"""The fake upstream's ASGI app: routing, request log, lifespan.

The behaviour is documented in `tokenomy.testing.fake_upstream`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import asdict

import orjson
from starlette.types import Receive, Scope, Send

from . import _fake_anthropic, _fake_completions, _fake_openai, _fake_responses
from ._fake_common import (
    FakeOptions,
    FakeRequest,
    FakeState,
    RecordedRequest,
    read_body,
    send_body,
)

Handler = Callable[[FakeRequest], Awaitable[None]]


class FakeUpstream:
    """The fake provider, as an ASGI app. ``options`` and ``state`` are for tests to use."""

    def __init__(self, options: FakeOptions | None = None) -> None:
        self.options = options or FakeOptions()
        self.state = FakeState(self.options)
        self.routes: dict[tuple[str, str], Handler] = {
            ("POST", "/v1/chat/completions"): _fake_openai.chat_completions,
            ("POST", "/v1/completions"): _fake_completions.completions,
            ("POST", "/v1/embeddings"): _fake_openai.embeddings,
            ("POST", "/v1/moderations"): _fake_openai.moderations,
            ("POST", "/v1/responses"): _fake_responses.responses,
            ("POST", "/v1/responses/input_tokens"): _fake_responses.input_tokens,
            ("GET", "/v1/models"): _list_models,
            ("POST", "/v1/messages"): _fake_anthropic.messages,
            ("POST", "/v1/messages/count_tokens"): _fake_anthropic.count_tokens,
            ("GET", "/_fake/requests"): _show_requests,
            ("POST", "/_fake/reset"): _reset,
        }
        self._paths = {path for _, path in self.routes}

    @property
    def requests(self) -> list[RecordedRequest]:
        """The recorded requests, oldest first (at most ``options.log_limit``)."""
        return list(self.state.requests)

    def mark(self) -> int:
        """A position in the request log, for `requests_since`."""
        return self.state.recorded

    def requests_since(self, mark: int) -> list[RecordedRequest]:
        """The requests recorded after `mark`, oldest first (however full the log is)."""
        new = self.state.recorded - mark
        if new > len(self.state.requests):
            raise ValueError("more requests came since the mark than the log keeps")
        return list(self.state.requests)[len(self.state.requests) - new :] if new else []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await _lifespan(receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        method: str = scope["method"]
        path: str = scope["path"]
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        raw = await read_body(receive)
        data = None
        if raw:
            try:
                data = orjson.loads(raw)
            except orjson.JSONDecodeError:
                data = None
        if not path.startswith("/_fake/"):
            query = scope.get("query_string", b"").decode("latin-1")
            self.state.requests.append(RecordedRequest(method, path, headers, data, query))
            self.state.recorded += 1
        req = FakeRequest(method, path, headers, data, receive, send, self.options, self.state)
        handler = self.routes.get((method, path))
        if handler is None and path.startswith("/v1/responses/"):
            handler = _fake_responses.stored
        if handler is not None:
            await handler(req)
            return
        status = 405 if path in self._paths else 404
        message = f"Invalid URL ({method} {path})"
        if path.startswith("/v1/messages"):
            await _fake_anthropic.send_error(req, status, message)
        else:
            await _fake_openai.send_error(req, status, message)


def create_app(options: FakeOptions | None = None) -> FakeUpstream:
    """A fresh fake upstream with its own state."""
    return FakeUpstream(options)


async def _list_models(req: FakeRequest) -> None:
    if "anthropic-version" in req.headers:
        await _fake_anthropic.list_models(req)
    else:
        await _fake_openai.list_models(req)


async def _show_requests(req: FakeRequest) -> None:
    body = orjson.dumps({"requests": [asdict(r) for r in req.state.requests]})
    await send_body(req.send, 200, body, [])


async def _reset(req: FakeRequest) -> None:
    req.state.clear()
    await send_body(req.send, 200, b'{"ok":true}', [])


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
