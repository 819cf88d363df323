"""What an in-process call returns: a `Result`, or a `Stream` of parsed events.

A stream's ledger row is committed before its iteration ends (before Anthropic's
``message_stop`` and the Responses API's ``response.completed``, as the server
holds them), or, when the stream is left early, as
it closes: by ``aclose()``, at the end of an
``async with`` block, or on the event loop soon after it is dropped unclosed.
Left early, it is recorded as a client that went away (status 499) and billed
for what was generated, as over HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from types import TracebackType
from typing import Any, cast

import orjson

from .pipeline.context import Call, StreamReply
from .records import UsageRecord
from .sse import DONE_DATA, SSEParser
from .usage import Usage


@dataclass(frozen=True, slots=True)
class Result:
    """A JSON answer: the body the HTTP API would have sent, parsed, with its record.

    ``record`` is the request's ledger row, already committed. ``cost`` is its cost
    in USD, None when the model's price is unknown (never zero for unknown)."""

    body: dict[str, Any]
    request_id: str
    record: UsageRecord
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)  # what HTTP would send

    @property
    def cost(self) -> Decimal | None:
        return self.record.cost_usd

    @property
    def usage(self) -> Usage:
        return self.record.usage


class _Source:
    """The gateway's stream of byte chunks, read by one task at a time and closed
    the way the server closes it when its client goes away."""

    __slots__ = ("chunks", "done", "hangup", "lock", "started")

    def __init__(self, reply: StreamReply) -> None:
        # Every producer of a stream (the relay, the cache's recorder and replay)
        # is an async generator: closing it is what records a stream left early.
        self.chunks = cast(AsyncGenerator[bytes, None], reply.chunks)
        self.hangup = reply.hangup
        self.lock = asyncio.Lock()
        self.started = False
        self.done = False

    async def next(self) -> bytes | None:
        async with self.lock:
            if self.done:
                return None
            self.started = True
            try:
                return await anext(self.chunks)
            except StopAsyncIteration:
                self.done = True
                return None
            except BaseException:
                self.done = True  # a generator that raised is finished
                raise

    async def close(self) -> None:
        # Wakes a read (in another task) waiting on a silent upstream: it ends at once.
        self.hangup()
        async with self.lock:
            if self.done:
                return
            self.done = True
            if not self.started:
                # Closing a generator never started skips its cleanup, which records
                # the request: run it to its first chunk, then close it.
                with contextlib.suppress(StopAsyncIteration):
                    await anext(self.chunks)
            await self.chunks.aclose()


class Stream:
    """A streamed answer: iterate it for the events the HTTP API would have sent,
    parsed (OpenAI chunks, Anthropic events, or the Responses API's events),
    without OpenAI's ``[DONE]``.

    ``record`` is the request's ledger row; it is complete, and ``cost`` may be
    read, once the stream is closed (fully read, or left early). An error after
    the first event ends the iteration raising that error (a `TokenomyError`);
    the request is recorded with it."""

    def __init__(self, call: Call, reply: StreamReply, on_drop: Callable[[_Source], None]) -> None:
        self.request_id = call.request_id
        self.headers: Mapping[str, str] = reply.headers
        self.record: UsageRecord = call.record
        self._call = call
        self._source = _Source(reply)
        self._parser = SSEParser()
        self._events: deque[dict[str, Any]] = deque()
        self._loop = asyncio.get_running_loop()
        self._on_drop = on_drop

    @property
    def closed(self) -> bool:
        return self._source.done

    @property
    def cost(self) -> Decimal | None:
        """USD, None when the price is unknown; known once the stream is closed."""
        if not self._source.done:
            raise RuntimeError("a stream's cost is known once it is closed (read or aclose()d)")
        return self.record.cost_usd

    def __aiter__(self) -> Stream:
        return self

    async def __anext__(self) -> dict[str, Any]:
        while not self._events:
            piece = await self._source.next()
            if piece is None:
                raise StopAsyncIteration
            failure = self._call.failure
            if failure is not None:  # this piece is the error, in the API's format
                await self._source.close()
                failure.request_id = self.request_id
                raise failure
            for event in self._parser.feed(piece):
                if event.data != DONE_DATA:
                    self._events.append(orjson.loads(event.data))
        return self._events.popleft()

    async def aclose(self) -> None:
        """Stop reading: the request is recorded with what was generated so far."""
        self._events.clear()
        await self._source.close()

    async def __aenter__(self) -> Stream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __del__(self) -> None:
        source = getattr(self, "_source", None)
        if source is None or source.done:
            return
        # Dropped unclosed: close it on its loop, as a client that went away.
        with contextlib.suppress(RuntimeError):  # the loop is closed: nothing can run
            self._loop.call_soon_threadsafe(self._on_drop, source)
