"""The in-process counter backend: one gateway process, no Redis.

Same semantics as the Redis backend (see `caps.counters`), kept in dicts. The
event loop runs one coroutine at a time and no method awaits in the middle, so
every operation is atomic without a lock. State is lost with the process; the
policy rebuilds it from the ledger at start-up (`CapsStore.ledger_totals`).

A counter with a ``ttl`` is forgotten once it expires, as a Redis key with a TTL
would be: `tidy` (the caps' housekeeping calls it every sweep) drops expired
counters, a slice of them per call, so the counters of per-user or per-tag
scopes (``user: each``) whose users went away do not pile up in a long-running
process.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from .counters import TOMBSTONE_TTL, Hold, Pending, Reserved, Settled, Window

TIDY_SLICE = 5000  # counters looked at per `tidy` call: a bounded pause of the loop


@dataclass(slots=True)
class _Counter:
    buckets: dict[int, int]
    touched: float
    ttl: float | None = None  # seconds without writes before it expires (None: never)

    def expired(self, now: float) -> bool:
        return self.ttl is not None and now - self.touched > self.ttl


@dataclass(slots=True)
class _Reservation:
    holds: tuple[Hold, ...]
    expires_at: float


class MemoryCounters:
    name = "memory"

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._counters: dict[str, _Counter] = {}
        self._open: dict[str, _Reservation] = {}
        self._released: dict[str, tuple[tuple[Hold, ...], float]] = {}  # tombstones
        self._tidying: Iterator[str] = iter(())  # the keys `tidy` has still to look at

    # -- helpers ------------------------------------------------------------------------

    def _counter(self, w: Window, now: float) -> _Counter:
        c = self._counters.get(w.key)
        if c is not None and w.ttl is not None and now - c.touched > w.ttl:
            c = None  # expired, as a Redis key with a TTL would have
        if c is None:
            c = self._counters[w.key] = _Counter({}, now)
        c.ttl = w.ttl
        return c

    def _total(self, w: Window, now: float) -> tuple[int, int | None]:
        c = self._counters.get(w.key)
        if c is None or (w.ttl is not None and now - c.touched > w.ttl):
            return 0, None
        if w.span == 1:
            return c.buckets.get(w.bucket, 0), w.bucket if c.buckets.get(w.bucket) else None
        first = w.bucket - w.span + 1
        total, oldest = 0, None
        for b, v in c.buckets.items():
            if first <= b <= w.bucket:
                total += v
                if v and (oldest is None or b < oldest):
                    oldest = b
        return total, oldest

    def _add(self, w: Window, amount: int, now: float, *, prune: bool) -> None:
        c = self._counter(w, now)
        c.buckets[w.bucket] = c.buckets.get(w.bucket, 0) + amount
        c.touched = now
        if prune and len(c.buckets) > w.keep:
            floor = w.bucket - w.keep + 1
            for b in [b for b in c.buckets if b < floor]:
                del c.buckets[b]

    def _apply(
        self,
        holds: Sequence[Hold],
        actual: Sequence[int],
        now: float,
        want: Sequence[bool] | None = None,
    ) -> Settled:
        for h, a in zip(holds, actual, strict=True):
            if a != h.amount:
                self._add(h.window, a - h.amount, now, prune=False)
        return self._settled(holds, now, want)

    def _settled(self, holds: Sequence[Hold], now: float, want: Sequence[bool] | None) -> Settled:
        return Settled(
            True,
            tuple(
                self._total(h.window, now)[0] if want is None or want[i] else -1
                for i, h in enumerate(holds)
            ),
        )

    # -- the interface ----------------------------------------------------------------------

    async def reserve(self, rid: str, holds: Sequence[Hold], *, lease: float) -> Reserved:
        now = self.clock()
        totals, oldest, refused = [], [], []
        for i, h in enumerate(holds):
            total, old = self._total(h.window, now)
            totals.append(total)
            oldest.append(old)
            if h.limit is not None and (
                total + h.amount > h.limit if h.amount else total >= h.limit
            ):
                refused.append(i)
        if not refused:
            for h in holds:
                self._add(h.window, h.amount, now, prune=True)
            self._open[rid] = _Reservation(tuple(holds), now + lease)
        return Reserved(tuple(totals), tuple(refused), tuple(oldest))

    async def settle(
        self, rid: str, actual: Sequence[int], *, want: Sequence[bool] | None = None
    ) -> Settled:
        now = self.clock()
        res = self._open.pop(rid, None)
        if res is not None:
            return self._apply(res.holds, actual, now, want)
        gone = self._released.pop(rid, None)
        if gone is not None:  # swept and released while we ran: charge it now
            holds = gone[0]
            for h, a in zip(holds, actual, strict=True):
                if a:
                    self._add(h.window, a, now, prune=False)
            return self._settled(holds, now, want)
        return Settled(False)

    async def renew(self, rids: Sequence[str], *, lease: float) -> None:
        until = self.clock() + lease
        for rid in rids:
            res = self._open.get(rid)
            if res is not None:
                res.expires_at = until

    async def expired(self, *, limit: int = 100) -> list[Pending]:
        now = self.clock()
        for rid in [r for r, (_, t) in self._released.items() if t <= now]:
            del self._released[rid]
        out = [
            Pending(rid, res.holds, res.expires_at)
            for rid, res in self._open.items()
            if res.expires_at <= now
        ]
        return out[:limit]

    async def sweep(self, pending: Pending, actual: Sequence[int] | None) -> Settled:
        now = self.clock()
        res = self._open.get(pending.rid)
        if res is None or res.expires_at > now:
            return Settled(False)
        del self._open[pending.rid]
        if actual is None:
            self._released[pending.rid] = (res.holds, now + TOMBSTONE_TTL)
            actual = [0] * len(res.holds)
        return self._apply(res.holds, actual, now)

    async def totals(self, windows: Sequence[Window]) -> list[int]:
        now = self.clock()
        return [self._total(w, now)[0] for w in windows]

    async def seed(self, window: Window, used: int) -> bool:
        now = self.clock()
        c = self._counter(window, now)
        if window.bucket in c.buckets:
            return False
        c.buckets[window.bucket] = used
        c.touched = now
        return True

    async def tidy(self) -> None:
        """Forget expired counters: the next `TIDY_SLICE` keys of a pass over all
        of them (a new pass starts when one ends), so the work per call is bounded."""
        now, left, restarted = self.clock(), TIDY_SLICE, False
        while left:
            key = next(self._tidying, None)
            if key is None:
                if restarted:
                    return  # every counter looked at in this call
                self._tidying, restarted = iter(list(self._counters)), True
                continue
            left -= 1
            c = self._counters.get(key)
            if c is not None and c.expired(now):
                del self._counters[key]

    def counter_count(self) -> int:
        """Counters held (for tests and diagnostics)."""
        return len(self._counters)

    async def close(self) -> None:
        self._open.clear()

    def open_count(self) -> int:
        return len(self._open)
