"""The caps admission policy: reserve every applicable budget and limit, then settle.

For each request, `CapsPolicy.reserve`:

1. finds the budgets and limits whose scope matches (the key/model part is
   precomputed per (org, team, key, model); user and tag dimensions are checked
   per request). None apply, or none are defined: it returns at once;
2. estimates the worst case (`caps.estimate`): counted input tokens plus
   ``max_tokens`` or the model's output limit, priced by the gateway's PriceBook;
3. reserves it on every counter in one atomic, all-or-nothing backend call;
4. if a budget set to ``on_exceed: clamp`` refused, lowers ``max_tokens`` in
   the request body to what is left (before the upstream body is built) and
   tries again; otherwise refuses with a 429 that says which cap stopped it.

`CapsPolicy.settle` runs after the request's ledger record is committed and
replaces each hold with the actual amount (`caps.measures`), then checks alert
thresholds. Reservations are leases, renewed while the request runs and swept
from the ledger if the process dies (`caps.sweeper`).

Unknown prices: a request whose model has no price reserves $0 on dollar
budgets (it is still refused once a budget is used up) and settles $0; token
budgets and rate limits apply as usual. The ledger row says so
(``decisions.caps.price_unknown``).

Another policy can add holds to the same atomic reservation (prepaid balances,
for example) by registering a `HoldSource` with `add_source`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, Decimal
from typing import Protocol

from .. import tokens
from ..errors import TokenomyError
from ..ledger.base import Store
from ..pipeline.context import Call
from ..pricing import PriceBook
from ..records import UsageRecord
from ..ticks import until_next
from .alerts import Alerts
from .allowance import Allowances
from .config import CapsConfig
from .counters import (
    USD_UNIT,
    CounterBackend,
    CountersUnavailable,
    Hold,
    Reserved,
    Settled,
    Window,
    units_to_usd,
)
from .estimate import Estimate, Estimator, set_max_output
from .measures import actual
from .memory import MemoryCounters
from .model import Budget, Limit, Subject
from .periods import CALENDAR_GRACE, Period, Span, locate, period_label, zone
from .refusals import Line, budget_refusal, limit_refusal, ratelimit_headers, unavailable
from .store import CapsStore
from .sweeper import Sweeper

log = logging.getLogger("tokenomy.caps")

CAPS_HEADER = "x-tokenomy-caps"
_INDEX_SIZE = 50_000
_CLAMP_TRIES = 3


class HoldSource(Protocol):
    """Adds holds to the caps' reservation (e.g. a customer's prepaid balance).

    ``holds`` returns this request's extra holds, given the caps' worst-case
    estimate (None only when the request's price is not needed); they are
    reserved atomically with the budgets and limits. ``refusal`` turns a refused
    one into the error the client gets. Settling uses `caps.measures` on the
    hold's ``measure``, so register a measure for any new kind.
    """

    def holds(self, call: Call, estimate: Estimate | None) -> Sequence[Hold]: ...

    def refusal(self, hold: Hold, total: int) -> TokenomyError: ...

    def allowed_output(self, call: Call, hold: Hold, total: int, estimate: Estimate) -> int | None:
        """Clamp mode: the most output tokens this hold can still pay for with
        ``total`` already counted, or None to refuse the request instead."""
        ...


class Definitions:
    """One immutable snapshot of the budgets and limits, with a scope index."""

    def __init__(self, version: int, budgets: Sequence[Budget], limits: Sequence[Limit]) -> None:
        self.version = version
        self.budgets = tuple(budgets)
        self.limits = tuple(limits)
        self.empty = not budgets and not limits
        self._index: dict[tuple[str | None, ...], tuple[tuple[Budget, ...], tuple[Limit, ...]]] = {}

    def applicable(self, s: Subject) -> tuple[list[tuple[Budget, str]], list[tuple[Limit, str]]]:
        k = (s.org, s.team, s.key, s.model)
        found = self._index.get(k)
        if found is None:
            found = (
                tuple(b for b in self.budgets if b.scope.static_match(s)),
                tuple(lim for lim in self.limits if lim.scope.static_match(s)),
            )
            if len(self._index) >= _INDEX_SIZE:
                self._index.clear()
            self._index[k] = found
        budgets = []
        for b in found[0]:
            e = b.scope.entity(s)
            if e is not None:
                budgets.append((b, e))
        limits = []
        for lim in found[1]:
            e = lim.scope.entity(s)
            if e is not None:
                limits.append((lim, e))
        return budgets, limits


@dataclass(slots=True)
class _Open:
    lines: list[Line]
    since: float = field(default_factory=time.monotonic)


def subject_of(call: Call) -> Subject:
    rec = call.record
    return Subject(
        org=rec.org,
        team=rec.team,
        key=rec.key_id,
        user=rec.user,
        model=rec.requested_model or None,
        tags=rec.tags,
    )


def limit_units(usd: Decimal) -> int:
    """A dollar limit in counter units, rounded down: the cap is never raised."""
    return int((usd / USD_UNIT).to_integral_value(rounding=ROUND_FLOOR))


class CapsPolicy:
    name = "caps"

    def __init__(
        self,
        store: Store,
        prices: PriceBook,
        config: CapsConfig,
        *,
        backend: CounterBackend | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.config = config
        self.store = CapsStore(store)
        self.tz = zone(config.timezone)
        self.clock = clock
        if backend is None:
            if config.redis_url:
                from .redis import RedisCounters

                backend = RedisCounters(
                    config.redis_url, prefix=config.redis_prefix, timeout=config.redis_timeout
                )
                if config.allowance > 0:
                    backend = Allowances(backend, size=config.allowance,
                                         idle=config.allowance_idle, lease=config.lease)  # fmt: skip
            else:
                backend = MemoryCounters()
        self.backend: CounterBackend = backend
        when_lost = getattr(backend, "when_lost", None)
        if when_lost is not None:
            when_lost(self._seed_again)
        self._nudge: Callable[[], None] | None = getattr(backend, "nudge", None)
        self._tidy: Callable[[], Awaitable[None]] | None = getattr(backend, "tidy", None)
        self.estimate = Estimator(
            prices,
            output_limits=config.output_limits,
            default_max_output=config.default_max_output,
            inexact_input_margin=config.inexact_input_margin,
        )
        self.alerts = Alerts(self.store, webhook_url=config.webhook_url,
                             timeout=config.alert_timeout)  # fmt: skip
        self.sweeper = Sweeper(self.backend, self.store, lease=config.lease,
                               open_rids=self._renewable)  # fmt: skip
        self.defs = Definitions(-1, (), ())
        self.sources: list[HoldSource] = []
        self._open: dict[str, _Open] = {}
        self._seeded: set[str] = set()
        self._spans: dict[Period, Span] = {}
        self._started = False
        self._warmed = False
        self._start_lock: asyncio.Lock | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._last_warning = 0.0

    def add_source(self, source: HoldSource) -> None:
        self.sources.append(source)

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self, *, background: bool = True) -> None:
        """Load the definitions, rebuild counters from the ledger, start the helpers."""
        if self._started:
            return
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            if self._started:
                return
            warm = getattr(self.backend, "warm", None)
            if warm is not None:
                try:
                    await warm()
                except CountersUnavailable as exc:
                    log.warning("caps backend unavailable at start: %s", exc)
            await self.reload(force=True)
            if background:
                self._tasks = [
                    asyncio.create_task(self._housekeeping(), name="tokenomy-caps-housekeeping")
                ]
                self.alerts.start()
            self._started = True

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self.alerts.stop()
        await self.backend.close()
        self._started = False

    async def reload(self, *, force: bool = False) -> bool:
        """Pick up changed definitions; True if they changed."""
        if not force:
            version = await asyncio.to_thread(self.store.version)
            if version == self.defs.version:
                return False
        version, budgets, limits = await asyncio.to_thread(self.store.load)
        if (budgets or limits) and not self._warmed:
            # Build the tokenizers before any request needs them: built on the
            # event loop, the first estimate would stall every request for ~0.5 s.
            await asyncio.to_thread(tokens.warm, background=False)
            self._warmed = True
        await self._seed(budgets)
        self.defs = Definitions(version, budgets, limits)
        return True

    async def _housekeeping(self) -> None:
        """Poll for changed definitions every ``reload_interval`` and sweep expired
        reservations every ``sweep_interval``, from one task; each chore comes due on
        the multiples of its own period (`tokenomy.ticks`), so chores with the same
        period, and the server's tick, share one wake-up of an idle gateway."""
        cfg = self.config
        loop = asyncio.get_running_loop()

        def due(period: float) -> float:
            now = loop.time()
            return now + until_next(now, period)

        next_reload, next_sweep = due(cfg.reload_interval), loop.time()  # start() loaded
        while True:
            now = loop.time()
            if now >= next_reload:
                try:
                    await self.reload()
                except Exception:  # a bad poll must not stop the next
                    log.exception("reloading caps definitions failed")
                next_reload = due(cfg.reload_interval)
            if now >= next_sweep:
                if self._tidy is not None:
                    await self.sweeper.guarded(self._tidy())
                await self.sweeper.round()
                next_sweep = due(cfg.sweep_interval)
            await asyncio.sleep(max(0.0, min(next_reload, next_sweep) - loop.time()))

    async def _seed_again(self) -> None:
        """The counters were lost (Redis restarted empty): seed every budget's and
        every source's again, before anything more is reserved; raise if one failed."""
        self._seeded.clear()
        if not await self._seed(self.defs.budgets):
            raise CountersUnavailable("the budgets' counters could not be seeded again")
        for source in self.sources:
            reseed: Callable[[], Awaitable[None]] | None = getattr(source, "seed_again", None)
            if reseed is not None:
                await reseed()

    async def _seed(self, budgets: Sequence[Budget]) -> bool:
        """Start new budgets' current windows from the ledger (where not already
        counted); False if the counters could not be reached for one of them."""
        done = True
        now = self._now(None)
        for b in budgets:
            mark = f"{b.id}:{b.period.tag}:{b.scope.dims}"
            if mark in self._seeded:
                continue
            span = locate(b.period, now, self.tz)
            rolling = b.period.kind == "rolling"
            for measure in self._budget_measures(b):
                try:
                    rows = await asyncio.to_thread(
                        self.store.ledger_totals, b.scope, measure, span.start,
                        None if rolling else span.end,
                        b.period.bucket_seconds if rolling else None,
                    )  # fmt: skip
                    for entity, bucket, used in rows:
                        w = self._budget_window(b, measure, entity, span, now)
                        if rolling:
                            w = Window(w.key, bucket, w.span, w.keep, w.ttl)
                        await self.backend.seed(w, used)
                except CountersUnavailable as exc:
                    log.warning("cannot seed budget %s now: %s", b.name, exc)
                    done = False
                    break
            else:
                self._seeded.add(mark)
        return done

    # -- building holds ----------------------------------------------------------------------

    def _now(self, call: Call | None) -> float:
        if self.clock is not None:
            ts = self.clock()
            if call is not None:
                call.record.ts = ts  # the ledger and the counters agree on the period
            return ts
        return call.record.ts if call is not None else time.time()

    def _span(self, b: Budget, now: float) -> Span:
        """The period ``now`` falls in; calendar periods are worked out once per period."""
        if b.period.kind not in ("daily", "weekly", "monthly"):
            return locate(b.period, now, self.tz)
        hit = self._spans.get(b.period)
        if hit is None or not hit.start <= now < (hit.end or now):
            hit = self._spans[b.period] = locate(b.period, now, self.tz)
        return hit

    @staticmethod
    def _budget_measures(b: Budget) -> list[str]:
        out = []
        if b.limit_usd is not None:
            out.append("usd")
        if b.limit_tokens is not None:
            out.append("tokens")
        return out

    def _budget_window(
        self, b: Budget, measure: str, entity: str, span: Span, now: float
    ) -> Window:
        key = f"b:{b.id}:{measure}:{b.period.tag}:{entity}"
        kind = b.period.kind
        if kind == "lifetime":
            return Window(key)
        if kind == "rolling":
            gran = b.period.bucket_seconds
            ttl = b.period.seconds + gran + self.config.lease + 60
            return Window(key, span.bucket, b.period.span, b.period.span + 1, ttl)
        assert span.end is not None  # refreshed on every write: outlives the period's end
        return Window(key, span.bucket, 1, 2, span.end - span.start + CALENDAR_GRACE)

    def _lines(
        self,
        budgets: Sequence[tuple[Budget, str]],
        limits: Sequence[tuple[Limit, str]],
        est: Estimate | None,
        now: float,
    ) -> list[Line]:
        lines: list[Line] = []
        for b, entity in budgets:
            span = self._span(b, now)
            if b.limit_usd is not None:
                amount = est.usd if est is not None and est.usd is not None else 0
                hold = Hold(self._budget_window(b, "usd", entity, span, now), amount,
                            limit_units(b.limit_usd), "usd")  # fmt: skip
                lines.append(Line(hold, b, None, entity, span))
            if b.limit_tokens is not None:
                amount = est.tokens if est is not None else 0
                hold = Hold(self._budget_window(b, "tokens", entity, span, now), amount,
                            b.limit_tokens, "tokens")  # fmt: skip
                lines.append(Line(hold, b, None, entity, span))
        second = math.floor(now)
        for lim, entity in limits:
            base = f"l:{lim.id}:"
            ttl = lim.window + self.config.lease + 60
            inp = est.input_tokens if est is not None else 0
            out = est.total_output if est is not None else 0
            for measure, cap, amount in (
                ("requests", lim.rpm, 1),
                ("tokens", lim.tpm, inp + out),
                ("input_tokens", lim.input_tpm, inp),
                ("output_tokens", lim.output_tpm, out),
            ):
                if cap is not None:
                    w = Window(f"{base}{measure}:{lim.window}:{entity}", second, lim.window,
                               lim.window + 1, ttl)  # fmt: skip
                    lines.append(Line(Hold(w, amount, cap, measure), None, lim, entity, None))
            if lim.concurrent is not None:
                w = Window(f"{base}concurrent:{entity}", 0, 1, 1, 86400.0)
                lines.append(
                    Line(Hold(w, 1, lim.concurrent, "concurrent"), None, lim, entity, None)
                )
        return lines

    def budget_lines(self, b: Budget, entity: str = "") -> list[Line]:
        """The windows of a budget's current period, for one of its counters."""
        return self._lines([(b, entity)], [], None, self._now(None))

    # -- the request path ----------------------------------------------------------------------

    def _nothing_to_check(self) -> bool:
        return self.defs.empty and not self.sources

    def nudge(self) -> None:
        """A request arrived: the counters may get ready for its admission check."""
        if self._nudge is not None and not self._nothing_to_check():
            self._nudge()

    async def reserve(self, call: Call) -> None:
        if not self._started:
            await self.start()
        if self._nothing_to_check():
            return
        defs = self.defs
        budgets, limits = defs.applicable(subject_of(call))
        if not budgets and not limits and not self.sources:
            return
        now = self._now(call)
        est = self.estimate(call) if self._needs_estimate(budgets, limits) else None
        res: Reserved | None = None
        lines: list[Line] = []
        clamped: int | None = None
        try:
            for _ in range(_CLAMP_TRIES):
                lines = self._lines(budgets, limits, est, now)
                lines += [
                    Line(h, None, None, "", None, s)
                    for s in self.sources
                    for h in s.holds(call, est)
                ]
                if not lines:
                    return  # only sources were asking, and none holds anything here
                res = await self.backend.reserve(
                    call.request_id, [line.hold for line in lines], lease=self.config.lease
                )
                if res.ok:
                    break
                out = self._clamp(call, lines, res, est)
                if out is None:
                    raise self._refusal(call, lines, res, now)
                assert est is not None
                clamped = out
                set_max_output(call, out)
                est = self.estimate(call, max_output=out, input_tokens=est.input_tokens)
            else:
                assert res is not None
                raise self._refusal(call, lines, res, now)
        except CountersUnavailable as exc:
            self._unavailable(call, budgets, limits, exc)
            return
        assert res is not None
        self._open[call.request_id] = _Open(lines)
        self._note(call, lines, res, est, clamped, now)

    def _needs_estimate(
        self, budgets: Sequence[tuple[Budget, str]], limits: Sequence[tuple[Limit, str]]
    ) -> bool:
        if budgets or self.sources:
            return True
        return any(
            lim.tpm is not None or lim.input_tpm is not None or lim.output_tpm is not None
            for lim, _ in limits
        )

    def _clamp(
        self, call: Call, lines: Sequence[Line], res: Reserved, est: Estimate | None
    ) -> int | None:
        """The largest max_tokens every refused hold can pay for, or None to refuse."""
        if est is None or est.output_tokens <= 1:
            return None
        best = est.output_tokens
        for i in res.refused:
            line = lines[i]
            if line.source is not None:
                allowed_src = line.source.allowed_output(call, line.hold, res.totals[i], est)
                if allowed_src is None:
                    return None
                best = min(best, allowed_src)
                continue
            b = line.budget
            if b is None or b.on_exceed != "clamp" or line.hold.limit is None:
                return None
            left = line.hold.limit - res.totals[i]
            if line.measure == "tokens":
                allowed = (left - est.input_tokens) // est.answers
            elif est.output_unit is None or est.input_usd is None or line.hold.amount == 0:
                return None
            elif est.output_unit == 0:
                allowed = est.output_tokens
            else:
                spare = units_to_usd(left - est.input_usd) if left > est.input_usd else Decimal(0)
                allowed = int(spare / est.output_unit) - 1  # one token of slack for rounding
            best = min(best, allowed)
        if best < 1 or best >= est.output_tokens:
            return None
        return best

    def _refusal(
        self, call: Call, lines: Sequence[Line], res: Reserved, now: float
    ) -> TokenomyError:
        i = res.refused[0]
        line = lines[i]
        if line.budget is not None:
            return budget_refusal(line, res.totals[i], now)
        if line.limit is not None:
            headers = ratelimit_headers(lines, res.totals, res.oldest, now, admitted=False)
            return limit_refusal(line, res.totals[i], res.oldest[i], now, headers)
        source: HoldSource = line.source
        return source.refusal(line.hold, res.totals[i])

    def _note(
        self,
        call: Call,
        lines: Sequence[Line],
        res: Reserved,
        est: Estimate | None,
        clamped: int | None,
        now: float,
    ) -> None:
        note: dict[str, object] = {}
        if est is not None:
            if est.usd is None:
                note["price_unknown"] = True
            else:
                note["reserved_usd"] = str(units_to_usd(est.usd))
            note["reserved_tokens"] = est.tokens
        if clamped is not None:
            note["clamped_max_tokens"] = clamped
        if res.via:
            note["allowances"] = list(res.via)
        if note:
            call.record.decisions["caps"] = note
        if any(line.limit is not None for line in lines):
            call.response_headers.update(
                ratelimit_headers(lines, res.totals, res.oldest, now, admitted=True)
            )

    def _unavailable(
        self,
        call: Call,
        budgets: Sequence[tuple[Budget, str]],
        limits: Sequence[tuple[Limit, str]],
        exc: CountersUnavailable,
    ) -> None:
        for b, _ in budgets:
            if b.fail_mode == "closed":
                log.warning("caps unavailable (%s): budget %s fails closed", exc, b.name)
                raise unavailable(b.name, "budget", self.backend.name) from exc
        for lim, _ in limits:
            if lim.fail_mode == "closed":
                log.warning("caps unavailable (%s): limit %s fails closed", exc, lim.name)
                raise unavailable(lim.name, "limit", self.backend.name) from exc
        call.response_headers[CAPS_HEADER] = "fail-open"
        call.record.decisions["caps"] = {"fail_open": True}
        now = time.monotonic()
        if now - self._last_warning > 1.0:
            self._last_warning = now
            log.warning("caps unavailable (%s): admitting without caps (fail-open)", exc)

    async def settle(self, call: Call, record: UsageRecord) -> None:
        """Replace the holds with what the record says was used (after it is committed)."""
        op = self._open.pop(call.request_id, None)
        if op is None:
            return
        amounts = [actual(line.measure, record) for line in op.lines]
        want = [line.budget is not None and bool(line.budget.alerts) for line in op.lines]
        try:
            result = await self.backend.settle(call.request_id, amounts, want=want)
        except CountersUnavailable as exc:
            log.warning("settle of %s deferred to the sweeper: %s", call.request_id, exc)
            return
        if result.applied:
            self._check_alerts(op.lines, result)

    def _check_alerts(self, lines: Sequence[Line], result: Settled) -> None:
        for line, total in zip(lines, result.totals, strict=False):
            b = line.budget
            if b is None or not b.alerts or line.hold.limit is None or line.span is None:
                continue
            if b.period.kind == "rolling":  # once per window length
                bucket = line.span.bucket * b.period.bucket_seconds // b.period.seconds
                label = f"rolling-{bucket}"
            else:
                label = period_label(b.period, line.span.bucket)
            self.alerts.check(b, line.entity, label, line.measure, total, line.hold.limit)

    # -- the sweeper's view ------------------------------------------------------------------

    def _renewable(self) -> list[str]:
        """Open reservations to renew; ones older than ``max_hold`` are let go."""
        cutoff = time.monotonic() - self.config.max_hold
        old = [rid for rid, op in self._open.items() if op.since < cutoff]
        forget = getattr(self.backend, "forget", None)
        for rid in old:
            del self._open[rid]  # a request that never ended: its lease runs out
            if forget is not None:
                forget(rid)
        return list(self._open)

    def open_count(self) -> int:
        return len(self._open)
