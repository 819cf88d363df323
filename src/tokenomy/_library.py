"""`Pipeline`: the gateway's pipeline as a library, in process.

Each call takes the body the HTTP API takes (a dict) and goes the way a request
to `tokenomy serve` goes (authenticate → resolve → admit → cache → provider →
meter → record), through the same `Gateway`, with no socket and no HTTP layer.
Answers come back parsed (`Result`, `Stream`); errors are raised as the
`tokenomy.errors` hierarchy, never rendered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import weakref
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import orjson

from ._results import Result, Stream, _Source
from .config import Settings, load_settings
from .errors import InvalidRequest, TokenomyError
from .gateway import Gateway
from .pipeline.context import ANTHROPIC, OPENAI, Call, JSONReply, Reply, new_request_id
from .validate import check_request

log = logging.getLogger("tokenomy")

# op → (api, endpoint recorded, request schema), as the HTTP routes have them
_CHAT_COMPLETIONS = (OPENAI, "chat", "/v1/chat/completions", "openai.chat")
_MESSAGES = (ANTHROPIC, "chat", "/v1/messages", "anthropic.chat")
_RESPONSES = (OPENAI, "responses", "/v1/responses", "openai.responses")
_EMBEDDINGS = (OPENAI, "embeddings", "/v1/embeddings", "openai.embeddings")
_COMPLETIONS = (OPENAI, "completions", "/v1/completions", "openai.completions")
# endpoint → the call that streams it, named when a body asks for a stream elsewhere
_STREAM_CALLS = {
    "/v1/chat/completions": "stream_chat_completions()",
    "/v1/messages": "stream_messages()",
    "/v1/responses": "stream_responses()",
    "/v1/completions": "stream_completions()",
}


class Pipeline:
    """The gateway's pipeline in process: meter, cap and save without a server.

    ``config`` is a `Settings`, or the path of a YAML file read as ``tokenomy
    serve --config`` reads it (with the ``TOKENOMY_`` variables and the SDKs'
    ``OPENAI_*``/``ANTHROPIC_*`` ones), or None for the variables alone. Open it
    with ``async with`` (or ``await start()`` ... ``await close()``); closing
    commits every pending ledger record.

    Each call takes the JSON body of the HTTP API as a dict, an optional ``key``
    (a ``tk-...`` virtual key, checked as over HTTP when ``require_key`` is on)
    and optional ``headers`` the gateway reads (``x-tokenomy-tags``,
    ``anthropic-version``, ``anthropic-beta``...).
    """

    def __init__(self, config: Settings | str | os.PathLike[str] | None = None) -> None:
        if isinstance(config, Settings):
            self.settings = config
        else:
            self.settings = load_settings(None if config is None else Path(config))
        self._gateway: Gateway | None = None
        self._closed = False
        self._streams: weakref.WeakSet[Stream] = weakref.WeakSet()
        self._closing: set[asyncio.Task[None]] = set()  # streams dropped unclosed
        self._calls = 0  # calls in flight, which closing waits for
        self._idle = asyncio.Event()
        self._idle.set()

    # -- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        """Open the ledger (migrating it), load the caps, warm the prices."""
        if self._closed:
            raise RuntimeError("this Pipeline was closed; open a new one")
        if self._gateway is not None:
            return
        gateway = Gateway(self.settings)
        try:
            await gateway.start()
        except BaseException:
            await gateway.close()
            raise
        self._gateway = gateway

    async def close(self) -> None:
        """Take no more calls; let those in flight finish (within the settings'
        ``drain_timeout``), close the streams still open (each is recorded), commit
        every pending record and release upstream connections."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), self.settings.drain_timeout)
        for stream in list(self._streams):
            await stream.aclose()
        await asyncio.sleep(0)  # the closes of streams just dropped, scheduled, start
        while self._closing:
            await asyncio.gather(*self._closing)
        if self._gateway is not None:
            await self._gateway.close()

    async def __aenter__(self) -> Pipeline:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def gateway(self) -> Gateway:
        """The running gateway (an internal interface, for `tokenomy.server`)."""
        if self._gateway is None or self._closed:
            state = "closed" if self._closed else "not started"
            raise RuntimeError(f"the Pipeline is {state}: use `async with Pipeline(...)`")
        return self._gateway

    # -- calls ---------------------------------------------------------------------

    async def chat_completions(
        self,
        body: Mapping[str, Any],
        *,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Result:
        """OpenAI Chat Completions (``POST /v1/chat/completions``), to any model."""
        return await self._json(_CHAT_COMPLETIONS, body, key, headers)

    async def messages(
        self,
        body: Mapping[str, Any],
        *,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Result:
        """Anthropic Messages (``POST /v1/messages``), to any model."""
        return await self._json(_MESSAGES, body, key, headers)

    async def responses(
        self,
        body: Mapping[str, Any],
        *,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Result:
        """OpenAI's Responses API (``POST /v1/responses``), to a model whose upstream
        serves it."""
        return await self._json(_RESPONSES, body, key, headers)

    async def embeddings(
        self,
        body: Mapping[str, Any],
        *,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Result:
        """OpenAI embeddings (``POST /v1/embeddings``)."""
        return await self._json(_EMBEDDINGS, body, key, headers)

    async def completions(
        self,
        body: Mapping[str, Any],
        *,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Result:
        """OpenAI's legacy Completions API (``POST /v1/completions``), to a model whose
        upstream speaks OpenAI's API."""
        return await self._json(_COMPLETIONS, body, key, headers)

    async def stream_chat_completions(
        self,
        body: Mapping[str, Any],
        *,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Stream:
        """Chat Completions, streamed: its chunks as dicts. ``stream`` is implied."""
        return await self._stream(_CHAT_COMPLETIONS, body, key, headers)

    async def stream_messages(
        self,
        body: Mapping[str, Any],
        *,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Stream:
        """Anthropic Messages, streamed: its events as dicts. ``stream`` is implied."""
        return await self._stream(_MESSAGES, body, key, headers)

    async def stream_responses(
        self,
        body: Mapping[str, Any],
        *,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Stream:
        """The Responses API, streamed: its events as dicts (``response.created`` ...
        ``response.completed``). ``stream`` is implied."""
        return await self._stream(_RESPONSES, body, key, headers)

    async def stream_completions(
        self,
        body: Mapping[str, Any],
        *,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Stream:
        """The legacy Completions API, streamed: its chunks as dicts. ``stream`` is
        implied."""
        return await self._stream(_COMPLETIONS, body, key, headers)

    # -- internals -----------------------------------------------------------------

    async def _json(
        self,
        route: tuple[str, str, str, str],
        body: Mapping[str, Any],
        key: str | None,
        headers: Mapping[str, str] | None,
    ) -> Result:
        call, reply = await self._handle(route, body, key, headers, stream=False)
        assert isinstance(reply, JSONReply)
        return Result(
            body=orjson.loads(reply.body),
            request_id=call.request_id,
            record=call.record,
            status=reply.status,
            headers=reply.headers,
        )

    async def _stream(
        self,
        route: tuple[str, str, str, str],
        body: Mapping[str, Any],
        key: str | None,
        headers: Mapping[str, str] | None,
    ) -> Stream:
        call, reply = await self._handle(route, body, key, headers, stream=True)
        assert not isinstance(reply, JSONReply)
        stream = Stream(call, reply, self._dropped)
        self._streams.add(stream)
        return stream

    async def _handle(
        self,
        route: tuple[str, str, str, str],
        body: Mapping[str, Any],
        key: str | None,
        headers: Mapping[str, str] | None,
        *,
        stream: bool,
    ) -> tuple[Call, Reply]:
        if self._closed:
            raise RuntimeError("the Pipeline is closed")
        gateway = self.gateway
        api, op, endpoint, schema = route
        request_id = new_request_id()
        self._calls += 1
        self._idle.clear()
        try:
            payload = check_request(schema, _json_copy(body))
            if op != "embeddings":
                _stream_flag(payload, stream, _STREAM_CALLS[endpoint])
            call = Call(api, op, endpoint, payload, _headers(headers, key), request_id=request_id)
            gateway.arriving()
            reply = await gateway.handle(call)
        except TokenomyError as exc:
            exc.request_id = request_id
            raise
        finally:
            self._calls -= 1
            if not self._calls:
                self._idle.set()
        return call, reply

    def _dropped(self, source: _Source) -> None:
        """A stream was dropped unclosed: close it now, as a client that went away."""
        task = asyncio.get_running_loop().create_task(_close_quietly(source))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)


async def _close_quietly(source: _Source) -> None:
    try:
        await source.close()
    except Exception:  # nobody is left to raise it to
        log.exception("could not close a stream that was dropped unclosed")


def _json_copy(body: Mapping[str, Any]) -> Any:
    """The body as the HTTP layer would have parsed it: JSON values only, and a copy
    of its own (the pipeline may change its request, never the caller's dict)."""
    try:
        return orjson.loads(orjson.dumps(body))
    except orjson.JSONEncodeError as exc:
        raise InvalidRequest(f"The request body is not JSON: {exc}") from exc


def _stream_flag(payload: dict[str, Any], stream: bool, stream_call: str) -> None:
    if stream:
        payload["stream"] = True
    elif payload.get("stream"):
        raise InvalidRequest(f"'stream' is true: call {stream_call}.", param="stream")


def _headers(headers: Mapping[str, str] | None, key: str | None) -> dict[str, str]:
    out = {name.lower(): value for name, value in (headers or {}).items()}
    if key is not None:
        out["authorization"] = f"Bearer {key}"
    return out
