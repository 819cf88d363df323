"""The pipeline, in process: authenticate → resolve → chains → admit → provider → meter → record.

`Gateway.handle` takes a parsed request (`Call`) and returns a reply whose bytes
are already in the client's API format. The HTTP server (`tokenomy.server`) is a
thin ASGI shell around it; the library never imports the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from .billing.policy import admission_order, billing_policy
from .cache import response_cache
from .cache.replay import replay_frames, replay_stream
from .caps import caps_policy
from .config import Settings
from .errors import TokenomyError, UpstreamError, UpstreamProtocolError, upstream_code
from .insights.otel import otel_hook
from .insights.watch import AlertWatcher, watch_config
from .keys import KeyAuthenticator
from .ledger import Deferred, GroupCommitWriter, open_store
from .ledger.base import SQLStore, Store
from .metrics import Metrics
from .pipeline.admit import AdmissionPolicy, Admit
from .pipeline.authenticate import Authenticate
from .pipeline.chains import Chains, chains_config
from .pipeline.context import ANTHROPIC, CHAT_LIKE, Call, JSONReply, Reply, StreamReply
from .pipeline.exchange import Answer, answer, upstream_body
from .pipeline.meter import Meter, overrides_from
from .pipeline.resolve import Resolve
from .pipeline.stream import (
    COST_HEADER,
    Adapter,
    cost_comment,
    event_code,
    feed,
    make_adapter,
    read_head,
    reply_outcome,
    stream_usage,
)
from .pricing import PriceBook
from .providers.base import UpstreamStream
from .responses_api import item_ids, response_id
from .routing.cascade import Cascade
from .routing.feedback import PromptCollector
from .routing.judge import judge_for
from .routing.side import charged, write_failed_attempt
from .sse import SSEEvent

log = logging.getLogger("tokenomy")

T = TypeVar("T")

ID_HEADER = "x-tokenomy-request-id"
# Anthropic's own request-id header, which its SDKs expose (``message._request_id``):
# on the Anthropic API it carries the gateway's id too, the one the ledger knows.
ANTHROPIC_ID_HEADER = "request-id"
# The upstream's own id for its reply, for a ticket with the provider.
UPSTREAM_ID_HEADER = "x-tokenomy-upstream-request-id"


class ClientGone(Exception):
    """The client went away while the relay waited on the upstream."""


class Hangup:
    """Called when the client goes away: wakes a relay waiting on a silent upstream
    (a model thinking before its next token), which closes the upstream connection
    at once instead of paying for the rest of the answer."""

    __slots__ = ("_waiting", "gone")

    def __init__(self) -> None:
        self.gone = False
        self._waiting: asyncio.Task[Any] | None = None

    def __call__(self) -> None:
        self.gone = True
        if self._waiting is not None:
            self._waiting.cancel()

    async def read(self, reads: AsyncIterator[list[SSEEvent]]) -> list[SSEEvent] | None:
        """The next upstream read (None at its end), or `ClientGone`."""
        if self.gone:
            raise ClientGone
        task = self._waiting = asyncio.current_task()
        try:
            return await anext(reads, None)
        except asyncio.CancelledError:
            if not self.gone or task is None:
                raise
            task.uncancel()  # the cancellation was ours: the relay goes on to record
            raise ClientGone from None
        finally:
            self._waiting = None


def _cancelling() -> bool:
    """Whether the running task is being cancelled (the server ending requests at a
    shutdown), rather than a stream closed because its client went away (`Hangup`
    takes its own cancellation back)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class Gateway:
    def __init__(
        self,
        settings: Settings,
        *,
        store: Store | None = None,
        policies: list[AdmissionPolicy] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store or open_store(settings.db)
        self.store.migrate()
        self.writer = GroupCommitWriter(self.store)
        self.keys = KeyAuthenticator(
            self.store, master_key=settings.master_key, ttl=settings.key_cache_ttl
        )
        self.prices = PriceBook(
            overrides_from(settings.deployments), refuse_unknown=settings.refuse_unknown_prices
        )
        self.metrics = Metrics()
        self.authenticate = Authenticate(self.keys, require_key=settings.require_key)
        self.resolve = Resolve(settings)
        self.chains = Chains(chains_config(settings), self.store)
        self.caps = caps_policy(settings, self.store, self.prices)
        if self.caps is not None:  # a worst case covers every model the route may call
            self.caps.estimate.route = self.resolve.target
            self.caps.estimate.cascade_samples = self.resolve.config.cascade_samples
            deps = settings.deployments
            self.caps.estimate.marked = {d.name: d.prompt_cache_ttl for d in deps if d.prompt_cache}
            self.caps.estimate.tiered = frozenset(d.name for d in deps if d.service_tier)
        # A prepaid balance is one more hold in the caps' reservation.
        self.billing = billing_policy(settings, self.store, self.caps)
        self.admit = Admit([*admission_order(self.caps, self.billing), *(policies or [])])
        self.meter = Meter(self.prices)
        self.cascade = Cascade(
            self.resolve.config,
            bind=self.resolve.bind,
            attempt=self._attempt,
            meter=self.meter,
            write=self.writer.write,
        )
        self.prompts = PromptCollector(self.store) if self.resolve.config.collect_prompts else None
        self.judge = judge_for(self.resolve, self.store, self.meter, self.writer.write)
        self.cache = response_cache(settings, self.prices)  # None unless cache.enabled
        self.inflight = 0
        self.on_finish = otel_hook(settings)  # None unless an OTLP endpoint is configured
        self.watcher: AlertWatcher | None = None
        watch = watch_config(settings.alerts, settings.webhook_url)
        if isinstance(self.store, SQLStore) and watch.interval > 0:
            caps = self.caps
            budgets = (lambda: list(caps.defs.budgets)) if caps is not None else None
            self.watcher = AlertWatcher(self.store, watch, budgets=budgets)

    async def start(self) -> None:
        """Get ready to serve: warm the prices and the learned router, load the caps
        (definitions, counters from the ledger, sweeper), start the alert watcher and
        the response cache. `close` undoes it."""
        self.metrics.gauges["tokenomy_inflight_requests"] = lambda: float(self.inflight)
        self.metrics.gauges["tokenomy_ledger_committed_rows"] = lambda: float(
            self.writer.stats().committed
        )
        self.prices.warm()
        await self.resolve.routing.warm()  # the learned router, when an alias uses it
        if self.caps is not None:
            await self.caps.start()
        if self.watcher is not None:
            self.watcher.start()  # spend anomalies, forecasts over budget, unpriced models
        if self.cache is not None:
            await self.cache.start()  # the semantic index, from the cache backend

    async def close(self) -> None:
        """Commit every pending record, then release upstream connections."""
        if self.watcher is not None:
            await self.watcher.stop()
        if self.judge is not None:
            await self.judge.close()
        if self.prompts is not None:
            await self.prompts.flush()
        await asyncio.to_thread(self.writer.close, self.settings.drain_timeout)
        close_spans = getattr(self.on_finish, "close", None)
        if close_spans is not None:  # the last requests' spans, within the drain time
            await asyncio.to_thread(close_spans, self.settings.drain_timeout)
        if self.caps is not None:
            await self.caps.stop()
        await self.resolve.close()
        if self.cache is not None:
            await self.cache.close()
        await asyncio.to_thread(self.store.close)

    # -- the request path -------------------------------------------------------------

    def arriving(self) -> None:
        """A request is arriving: get shared counters ready for its admission check
        while its body is read and resolved (`caps.resp.Pipe.nudge`)."""
        if self.caps is not None:
            self.caps.nudge()

    async def handle(self, call: Call) -> Reply:
        self.inflight += 1
        admitted = False
        try:
            await self.authenticate(call)
            await self.resolve(call)
            await self.chains(call)  # a Responses request continues its tenant's only
            if self.settings.refuse_unknown_prices:
                prov = call.provider
                self.prices.check_servable(
                    call.record.served_model or "",
                    prov.pricing_provider if prov else None,
                    override_key=call.record.deployment,
                )
            began = time.perf_counter()
            try:
                await self.admit(call)
            except TokenomyError:
                # A request the upstream's API cannot take is a 400, not a refusal
                # whose retry could never succeed (it fails at translation otherwise).
                prov = call.provider
                if prov is not None and call.op == "chat" and call.api != prov.api:
                    upstream_body(call, prov)
                raise
            admitted = True
            # What the admission check (budgets, limits, balances) took, for operators
            # and for benchmarks/load.py: the standard Server-Timing header.
            took = (time.perf_counter() - began) * 1000.0
            call.response_headers["server-timing"] = f"admit;dur={took:.3f}"
            if self.cache is not None:
                hit = await self.cache.lookup(call, self._finish, self._headers)
                if hit is not None:  # served and recorded
                    admitted = False
                    return hit
            if call.stream:
                reply: Reply = await self._stream(call)
                admitted = False  # the stream settles when it ends
                return reply
            return await self._json(call)
        except TokenomyError as exc:
            call.record.upstream_error_code = upstream_code(exc)
            if isinstance(exc, UpstreamError) and exc.upstream_request_id:
                call.record.upstream_request_id = exc.upstream_request_id
                exc.headers[UPSTREAM_ID_HEADER] = exc.upstream_request_id
            if call.key is not None or not self.settings.require_key:
                # unauthenticated noise is counted, not recorded; what a failed upstream
                # reply used is billed all the same
                usage = exc.usage if isinstance(exc, UpstreamError) else None
                await self._finish(
                    call, usage, status=exc.status, error=exc.type, admitted=admitted
                )
            else:
                self.metrics.observe_error(call, exc.status)
            raise
        except asyncio.CancelledError:
            # Cancelled before it was recorded (a shutdown past its drain time): record
            # it and release what it holds, rather than leave its holds to the sweeper.
            if admitted and not call.finishing:
                with contextlib.suppress(Exception):
                    await asyncio.shield(
                        self._finish(call, None, status=499, error="cancelled", admitted=True)
                    )
            raise
        finally:
            self.inflight -= 1
            if self.cache is not None:
                self.cache.release(call)  # when nothing will be stored

    async def _json(self, call: Call) -> JSONReply:
        if call.route.cascade is not None:
            got = await self.cascade.run(call, self._send)
        else:
            got = await self._attempt(call, self._send)
        # a failed Responses API response, and its code
        status, error, call.record.upstream_error_code = reply_outcome(got.parsed)
        if call.op == "responses":  # whose it is, for a request continuing it
            call.record.response_id = response_id(got.parsed)
            call.record.item_ids = item_ids(got.parsed)
        await self._settle(call, got, status, error)
        return JSONReply(200, got.body, self._headers(call))

    async def _settle(
        self, call: Call, got: Answer, status: int = 200, error: str | None = None
    ) -> None:
        """A whole answer, before the client has it: recorded, then offered to the
        judge and kept by the cache."""
        provider = call.provider
        assert provider is not None
        call.record.upstream_request_id = provider.request_id(got.up.headers)
        await self._finish(call, got.usage, status=status, error=error, admitted=True)
        if self.judge is not None:
            self.judge.maybe(call, got.up.data, provider.api)
        if self.cache is not None:
            await self.cache.store_json(call, got.body, got.parsed)

    async def _send(self, call: Call) -> Answer:
        """One attempt: the upstream's reply, read for the client (a reply of the
        wrong shape fails the attempt, which may then fall back)."""
        provider = call.provider
        assert provider is not None and call.deployment is not None
        body = upstream_body(call, provider)
        up = await provider.send(call.op, body["model"], body, call.headers)
        return answer(call, provider, up)

    async def _attempt(self, call: Call, fn: Callable[[Call], Awaitable[T]]) -> T:
        """``fn`` on the request's targets in turn (`Resolve.attempt`), each failed
        attempt the upstream charged for written as a row of its own."""
        return await self.resolve.attempt(call, fn, failed=self._failed)

    async def _failed(self, call: Call, exc: TokenomyError) -> None:
        if isinstance(exc, UpstreamError):
            try:
                await write_failed_attempt(call, exc, meter=self.meter, write=self.writer.write)
            except Deferred:  # kept in the fallback file, replayed later
                pass

    async def _stream(self, call: Call) -> StreamReply:
        if call.route.cascade is not None:  # streams drafted whole (`cascade_streams`)
            kept = await self.cascade.keep(call)
            if kept is not None:
                return await self._replay_kept(call, kept)
        # Fallbacks apply until the client's first frame: nothing was sent yet.
        up, adapter, head = await self._attempt(call, self._open_stream)
        call.record.ttft_ms = call.elapsed_ms()
        provider = call.provider
        assert provider is not None
        call.record.upstream_request_id = provider.request_id(up.headers)
        headers = self._headers(call)
        hangup = Hangup()
        chunks = self._relay(call, adapter, head, up.reads, hangup)
        if self.cache is not None:
            chunks = self.cache.recording(call, chunks, adapter)
        return StreamReply(headers, chunks, hangup)

    async def _replay_kept(self, call: Call, got: Answer) -> StreamReply:
        """A streamed request whose draft was kept: recorded, then replayed as the
        stream its API sends (the draft was asked for whole, so the first byte
        waited for all of it)."""
        call.record.ttft_ms = call.elapsed_ms()
        await self._settle(call, got)
        opts = call.body.get("stream_options")
        usage = isinstance(opts, dict) and bool(opts.get("include_usage"))
        frames = replay_frames(call.api, got.parsed, include_usage=usage)
        return StreamReply(self._headers(call), replay_stream(frames, call.record.cost_usd))

    async def _open_stream(
        self, call: Call
    ) -> tuple[UpstreamStream, Adapter, tuple[list[bytes], list[SSEEvent]]]:
        """One attempt: the stream opened and read, by the adapter that relays it, up
        to its first frames for the client (`read_head`: an error before that fails
        the attempt). A stream the cache will keep records its events from the first."""
        provider = call.provider
        assert provider is not None
        body = upstream_body(call, provider)
        if provider.api == "openai" and provider.stream_usage and call.op in CHAT_LIKE:
            opts = body.get("stream_options")
            body["stream_options"] = {
                **(opts if isinstance(opts, dict) else {}),
                "include_usage": True,
            }
        up = await provider.stream(call.op, body["model"], body, call.headers)
        adapter = make_adapter(call, provider.api)
        if self.cache is not None and self.cache.records(call):
            adapter.sent = []
        try:
            first = await read_head(call, provider, up, adapter)
        except BaseException as exc:
            if isinstance(exc, UpstreamError) and exc.upstream_request_id is None:
                exc.upstream_request_id = provider.request_id(up.headers)
            await up.reads.aclose()
            raise
        return up, adapter, first

    async def _relay(
        self,
        call: Call,
        adapter: Adapter,
        head: tuple[list[bytes], list[SSEEvent]],
        reads: AsyncIterator[list[SSEEvent]],
        hangup: Hangup,
    ) -> AsyncIterator[bytes]:
        """Yield one write per upstream read, the first with the head's frames
        (`read_head`); hold the final event until committed."""
        status, error, finished = 499, "client_disconnected", False
        try:
            try:
                out, rest = head  # `read_head`'s: its own lists
                events: list[SSEEvent] | None = rest
                while events is not None:
                    for ev in events:
                        out += feed(adapter, ev)
                        if adapter.upstream_error is not None:
                            break
                    if out:
                        yield b"".join(out)
                    if adapter.upstream_error is not None:
                        break
                    events = await hangup.read(reads)
                    out = []
                if adapter.upstream_error is not None:
                    if call.provider is not None:
                        code = event_code(call.provider, adapter.upstream_error)
                        call.record.upstream_error_code = code
                    raise UpstreamProtocolError("upstream reported an error mid-stream")
                if not adapter.finished:
                    raise UpstreamProtocolError("upstream ended the stream early")
            except ClientGone:
                return  # recorded below, as a client that went away
            except TokenomyError as exc:
                status, error = exc.status, exc.type
                if adapter.upstream_error is None:  # else its error event's code, kept above
                    call.record.upstream_error_code = upstream_code(exc)
                call.failure = exc  # for an in-process caller, which raises it
                await self._finish_stream(call, adapter, status, error)
                finished = True
                upstream_api = call.provider.api if call.provider else None
                yield adapter.error_event(call.api, exc, upstream_api)
                return
            ended, why, call.record.upstream_error_code = adapter.outcome
            await self._finish_stream(call, adapter, ended, why)
            finished = True
            yield cost_comment(call.record.cost_usd) + b"".join(adapter.terminal())
        finally:
            if not finished:  # the client went away: what was generated is still billed
                if _cancelling():  # no: a shutdown past its drain time, as in `handle`
                    status, error = 499, "cancelled"
                await self._finish_stream(call, adapter, status, error)
            aclose = getattr(reads, "aclose", None)
            if aclose is not None:
                await aclose()

    async def _finish_stream(
        self, call: Call, adapter: Adapter, status: int, error: str | None
    ) -> None:
        usage = stream_usage(call, adapter)
        call.record.response_id = adapter.response_id
        call.record.item_ids = tuple(adapter.item_ids)
        await self._finish(call, usage, status=status, error=error, admitted=True)

    async def _finish(
        self, call: Call, usage: Any, *, status: int, error: str | None, admitted: bool
    ) -> None:
        """Meter, then commit the record; the reply is released only after this."""
        call.finishing = True
        rec = call.record
        rec.status = status
        rec.error_type = error
        rec.stream = call.stream
        rec.latency_ms = call.elapsed_ms()
        if usage is not None:
            self.meter(call, usage)
        route = self.resolve.decision(call, self.prices)
        if route is not None:
            rec.decisions["route"] = route
        try:
            await self.writer.write(rec)
        except Deferred:  # kept in the fallback file, replayed later: the answer stands
            pass
        finally:
            # Settled only once committed: a sweeper that finds no record may then
            # release a crashed request's reservation without missing a charge.
            if admitted:
                await self.admit.settle(call, charged(call, rec))
        if self.prompts is not None:
            try:
                self.prompts.add(call)  # written in the background
            except Exception:  # the answer was served and charged: never a 500 for this
                log.exception("could not keep the prompt of request %s", call.request_id)
        self.metrics.observe(rec)
        if self.on_finish is not None:
            try:
                self.on_finish(call)
            except Exception:  # telemetry: the answer was served and charged, never a 500
                log.exception("could not emit the span of request %s", call.request_id)

    def _headers(self, call: Call) -> dict[str, str]:
        h = {**call.response_headers, ID_HEADER: call.request_id}
        if call.record.upstream_request_id:
            h[UPSTREAM_ID_HEADER] = call.record.upstream_request_id
        if call.api == ANTHROPIC:
            h[ANTHROPIC_ID_HEADER] = call.request_id
        if not call.stream:
            cost = call.record.cost_usd
            h[COST_HEADER] = "unknown" if cost is None else str(cost)
        return h
