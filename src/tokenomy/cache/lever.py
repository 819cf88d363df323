"""The cache stage: after admission, before the upstream.

    lookup  → a hit is served from the entry (JSON, or replayed as a stream) and
              recorded with zero provider cost; a miss goes on to the upstream
    store   → after a miss, the complete, successful response is kept (JSON
              replies from `store_json`, streams through `recording`)

Every chat reply carries ``x-tokenomy-cache``: ``hit-exact``, ``hit-semantic``,
``miss`` or ``bypass`` (the policy or the client's header said no).

A hit's ledger row has the original response's token counts (the tokens served)
and ``cost_usd = 0`` (nothing was paid), with
``decisions["cache"] = {"hit": "exact"|"semantic", "saved_usd": ..., "entry": ...}``:
``saved_usd`` prices the original usage at today's price.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

import orjson

from ..config import Settings
from ..pipeline.context import Call, JSONReply, Reply, StreamReply
from ..pricing import PriceBook
from .assemble import Assembler, complete
from .config import CacheConfig, cache_config
from .key import cache_key
from .policy import BYPASS, HEADER, HIT_EXACT, HIT_SEMANTIC, MISS, decide, namespace
from .replay import replay_frames, replay_stream
from .similar import SimilarLookup
from .store import CacheStore, CacheUnavailable, Entry

log = logging.getLogger("tokenomy.cache")

STATE = "cache"  # this stage's slot in `Call.levers`


class Relay(Protocol):
    """The relay's record of what it sent: when `sent` is a list, it appends each
    event sent to the client, parsed (`tokenomy.pipeline.stream.Adapter`)."""

    sent: list[Any] | None


class Finish(Protocol):
    def __call__(
        self, call: Call, usage: Any, *, status: int, error: str | None, admitted: bool
    ) -> Awaitable[None]: ...


@dataclass(slots=True)
class Ticket:
    """What a miss carries to the store step."""

    namespace: str
    key: str
    probe: Any = None  # the semantic probe, when the semantic cache is on
    flight: asyncio.Future[None] | None = None  # set: others wait for this answer


def open_cache_store(cfg: CacheConfig) -> CacheStore:
    if cfg.backend == "redis":
        from .redis import RedisCacheStore

        assert cfg.redis_url is not None
        return RedisCacheStore(
            cfg.redis_url, prefix=cfg.redis_prefix, max_entries=cfg.max_entries, ttl=cfg.ttl
        )
    from .sqlite import SQLiteCacheStore

    return SQLiteCacheStore(cfg.path, max_entries=cfg.max_entries, max_bytes=cfg.max_bytes)


def response_cache(settings: Settings, prices: PriceBook) -> ResponseCache | None:
    """The gateway's cache stage, or None when ``cache.enabled`` is off."""
    cfg = cache_config(settings)
    if not cfg.enabled:
        return None
    return ResponseCache(cfg, open_cache_store(cfg), prices)


class ResponseCache:
    name = "cache"

    def __init__(self, cfg: CacheConfig, store: CacheStore, prices: PriceBook) -> None:
        self.cfg = cfg
        self.store = store
        self.prices = prices
        similar = (
            SimilarLookup(store, cfg.semantic, ttl=cfg.ttl, max_entries=cfg.max_entries)
            if cfg.semantic_enabled
            else None
        )
        # A target the verifier cannot reach serves nothing: then embed nothing either.
        self.similar = similar if similar is not None and not similar.never else None
        # (namespace, key) -> resolved when the request fetching that answer ends
        self._flights: dict[tuple[str, str], asyncio.Future[None]] = {}

    async def start(self) -> None:
        """Load the semantic index from the backend (nothing to do for exact entries)."""
        if self.similar is not None:
            try:
                n = await self.similar.preload()
            except CacheUnavailable as exc:  # loaded on each namespace's first lookup
                log.warning("cache: semantic vectors not loaded at start-up: %s", exc)
            else:
                log.info("cache: semantic vectors of %d namespaces loaded", n)

    async def close(self) -> None:
        await self.store.close()

    # -- lookup -----------------------------------------------------------------------

    async def lookup(
        self, call: Call, finish: Finish, headers: Callable[[Call], dict[str, str]]
    ) -> Reply | None:
        """Serve a hit (its record committed), or None to go on to the upstream."""
        decision = decide(call, self.cfg)
        if not decision.write:
            call.response_headers[HEADER] = BYPASS
            return None
        ns = namespace(call, self.cfg)
        key = cache_key(
            call.api, call.record.requested_model, call.body, call.headers, _route(call)
        )
        ticket = Ticket(ns, key)
        call.levers[STATE] = ticket
        call.response_headers[HEADER] = MISS
        try:
            found = await self._find(call, ticket, read=decision.read)
        except CacheUnavailable as exc:
            # The cache never fails a request: without it, the upstream answers.
            log.warning("cache lookup failed, serving from the upstream: %s", exc)
            return None
        if found is None:
            return None
        self.release(call)
        entry, kind, similarity = found
        return await self._serve(call, entry, kind, similarity, finish, headers)

    def release(self, call: Call) -> None:
        """The request will store nothing: let requests waiting for its answer go on.
        The gateway calls this when a request ends; a no-op once the store step
        took the request over."""
        ticket = call.levers.pop(STATE, None)
        if isinstance(ticket, Ticket):
            self._land(ticket)

    def _land(self, ticket: Ticket) -> None:
        flight, ticket.flight = ticket.flight, None
        if flight is not None:
            if not flight.done():
                flight.set_result(None)
            if self._flights.get((ticket.namespace, ticket.key)) is flight:
                del self._flights[ticket.namespace, ticket.key]

    async def _exact(self, ticket: Ticket) -> Entry | None:
        """The exact entry; on a miss, either lead (fetch it from the upstream) or,
        when an identical request is already fetching it, wait for that one to
        store its answer and read again (concurrent repeats cost one upstream call)."""
        addr = (ticket.namespace, ticket.key)
        entry = await self.store.get(*addr, time.time())
        if entry is not None:
            return entry
        leader = self._flights.get(addr)
        if leader is None or self.cfg.coalesce_wait <= 0:
            if leader is None and self.cfg.coalesce_wait > 0:
                ticket.flight = self._flights[addr] = asyncio.get_running_loop().create_future()
            return None
        try:
            await asyncio.wait_for(asyncio.shield(leader), self.cfg.coalesce_wait)
        except TimeoutError:
            return None
        return await self.store.get(*addr, time.time())

    async def _find(
        self, call: Call, ticket: Ticket, *, read: bool
    ) -> tuple[Entry, str, float | None] | None:
        if read:
            entry = await self._exact(ticket)
            if entry is not None:  # the API is part of the key
                return entry, HIT_EXACT, None
        if self.similar is None:
            return None
        try:
            if not read:  # refresh: only embed, for the store step
                ticket.probe = await self._probe(call)
                return None
            probe, hit = await self.similar.find(
                ticket.namespace, call.body, call.headers, _route(call)
            )
        except CacheUnavailable:
            raise
        except Exception:  # an optional layer (a local model, an index) never fails a request
            log.exception("semantic cache lookup failed; going on without it")
            return None
        ticket.probe = probe
        if hit is None or hit.entry.api != call.api:
            return None
        return hit.entry, HIT_SEMANTIC, hit.similarity

    async def _probe(self, call: Call) -> Any:
        assert self.similar is not None
        return await asyncio.to_thread(self.similar.probe, call.body, call.headers, _route(call))

    async def _serve(
        self,
        call: Call,
        entry: Entry,
        kind: str,
        similarity: float | None,
        finish: Finish,
        headers: Callable[[Call], dict[str, str]],
    ) -> Reply:
        rec = call.record
        call.levers.pop(STATE, None)  # nothing to store
        call.response_headers[HEADER] = kind
        rec.served_model = entry.served_model or rec.served_model
        provider = call.provider
        saved = self.prices.cost(
            entry.usage,
            model=rec.served_model or rec.requested_model,
            provider=provider.pricing_provider if provider else None,
            override_key=rec.deployment,
        )
        decision: dict[str, Any] = {
            "hit": "exact" if kind == HIT_EXACT else "semantic",
            "saved_usd": None if saved.total is None else format(saved.total, "f"),
            "entry": entry.request_id,
        }
        if similarity is not None:
            decision["similarity"] = round(similarity, 4)
        rec.decisions[STATE] = decision
        rec.usage = entry.usage  # the tokens served...
        rec.cost_usd = Decimal(0)  # ...at no provider cost: nothing was paid
        rec.price_unknown = False
        if call.stream:
            rec.ttft_ms = call.elapsed_ms()
        await finish(call, None, status=200, error=None, admitted=True)
        out = headers(call)
        if not call.stream:
            return JSONReply(200, entry.body, out)
        opts = call.body.get("stream_options")
        frames = replay_frames(
            call.api,
            orjson.loads(entry.body),
            include_usage=isinstance(opts, dict) and bool(opts.get("include_usage")),
        )
        return StreamReply(out, replay_stream(frames, Decimal(0)))

    # -- store ------------------------------------------------------------------------

    async def store_json(self, call: Call, body: bytes, resp: Any) -> None:
        """After a non-streamed miss: keep the reply if it is complete and small
        enough. ``resp`` is ``body`` parsed (the gateway has it: not parsed again)."""
        ticket = call.levers.pop(STATE, None)
        if not isinstance(ticket, Ticket):
            return
        try:
            if call.record.status != 200 or len(body) > self.cfg.max_entry_bytes:
                return
            if complete(call.api, resp):
                await self._put(call, ticket, body)
        finally:
            self._land(ticket)

    def recording(
        self, call: Call, chunks: AsyncIterator[bytes], relay: Relay
    ) -> AsyncIterator[bytes]:
        """The stream to send: a streamed miss is watched and its answer kept once
        the stream ended well; anything else passes through untouched. ``relay``
        hands over the events of ``chunks`` already parsed."""
        ticket = call.levers.pop(STATE, None)
        if not isinstance(ticket, Ticket):
            return chunks
        if relay.sent is None:  # else it has kept the events from the stream's head
            relay.sent = []
        return self._record(call, ticket, chunks, relay)

    def records(self, call: Call) -> bool:
        """Whether the stream of ``call`` is a miss to keep (`recording` will watch it):
        its adapter should keep the events it sends from the first."""
        return isinstance(call.levers.get(STATE), Ticket)

    async def _record(
        self, call: Call, ticket: Ticket, chunks: AsyncIterator[bytes], relay: Relay
    ) -> AsyncIterator[bytes]:
        """Relay, rebuilding the response from the events of each chunk; the entry
        is written before the stream's last bytes are sent, so a client that
        repeats the request as soon as its stream ends finds it. Closing this
        closes the relay (which records the request even when the client went away)."""
        asm: Assembler | None = Assembler(call.api)
        try:
            async for chunk in chunks:
                sent = relay.sent
                if asm is not None and sent:
                    try:
                        for data in sent:
                            asm.take(data)
                    except (ValueError, TypeError, KeyError):
                        asm = None  # not a stream we can rebuild: relay, do not store
                    sent.clear()
                    if asm is not None and asm.done:
                        await self._store_stream(call, ticket, asm)
                        asm = None
                    if asm is None:
                        relay.sent = None  # nothing more to keep
                yield chunk
        finally:
            self._land(ticket)
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                await aclose()

    async def _store_stream(self, call: Call, ticket: Ticket, asm: Assembler) -> None:
        rec = call.record
        if rec.status != 200 or rec.error_type is not None:
            return
        resp = asm.response(rec.usage)
        if resp is None or not complete(call.api, resp):
            return
        body = orjson.dumps(resp)
        if len(body) <= self.cfg.max_entry_bytes:
            await self._put(call, ticket, body)

    async def _put(self, call: Call, ticket: Ticket, body: bytes) -> None:
        try:
            await self.store.put(await self._entry(call, ticket, body), self.cfg.ttl)
        except CacheUnavailable as exc:
            log.warning("cache store failed: %s", exc)

    async def _entry(self, call: Call, ticket: Ticket, body: bytes) -> Entry:
        rec = call.record
        created = time.time()
        partition = text = vector = None
        if ticket.probe is not None and self.similar is not None:
            try:
                partition, text, vector = await self.similar.add(
                    ticket.namespace, ticket.probe, ticket.key, created
                )
            except Exception:  # as in _find: kept as an exact entry only
                log.exception("semantic cache: indexing failed; stored as an exact entry")
        return Entry(
            namespace=ticket.namespace,
            key=ticket.key,
            api=call.api,
            body=body,
            # a kept cascade draft answered several times; a hit serves one answer
            usage=rec.usage if call.route is None else call.route.per_answer(rec.usage),
            cost_usd=rec.cost_usd,
            served_model=rec.served_model,
            request_id=rec.request_id,
            created=created,
            partition=partition,
            text=text,
            vector=vector,
        )


def _route(call: Call) -> list[str] | None:
    """The models the routing plan will try, in order (None before routing)."""
    return None if call.route is None else list(call.route.targets)
