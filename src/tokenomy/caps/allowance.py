"""Allowances: admission without a round trip, from capacity a replica holds ahead.

With the counters in Redis, every admission check is a round trip. `Allowances`
wraps a shared backend so that most checks need none: after a request is
admitted the usual way, the replica reserves, in the background, a slice of
each of its counters' windows for itself (an *allowance*: an ordinary
reservation, with an ``allow:`` id). Later requests whose holds all fit the
allowances this replica holds for their windows are admitted from them in
process; their settles return what they did not use to the allowance. When an
allowance is retired (its window moved on, it ran dry, it sat idle, it grew
old, or the gateway stops) and its last request has settled, it is settled in
the backend to what its requests used; one found stale by a request that then
goes to the backend is settled just ahead of that request's check.

Why the caps still hold: the backend admitted each allowance atomically
against the limit, like any reservation, and a replica never admits more
from one than it holds. So the window's total in the backend (settled amounts,
open reservations, allowances) stays at or under the limit, and what requests
actually hold is at most that.

What it costs:

- Near a limit, the backend counts capacity that a replica holds but has not
  used yet, so another replica may refuse a request that would have fit. An
  allowance takes at most ``1/SHARE`` of what is left of a window when it is
  made, and at most ``size`` times the largest hold asked of the window's
  last allowance (or of the request that asks for it); none is made for a
  window with less than ``SHARE`` such holds left. A replica that is
  refused in the backend returns its own idle allowances on the refused
  windows and tries once more.
- A window's total read from the backend (reports, another replica's
  ``x-ratelimit-remaining``) includes unused allowances until they are
  returned: at most ``idle`` seconds after the last request that used them.
- Totals this replica reports for an admission from an allowance (rate-limit
  headers, alert thresholds) are the window's total when the allowance was
  made plus what this replica used since: another replica's use since then
  shows at the next allowance.

An allowance admits only while its lease is safely alive: it stops admitting
when it has not been renewed for ``SAFE`` of a lease (Redis unreachable, a
stalled process), since once the lease runs out a sweeper may settle it.

Crashes: a dead replica's allowances run out like its reservations, and the
sweeper settles each from the ledger: every request admitted from an
allowance records its id in ``decisions.caps.allowances``
(`caps.store.CapsStore.allowance_records`).

Only holds with a limit, an amount above zero and a measure recomputable from
the ledger take allowances (money, tokens, requests); a request with any other
hold (concurrency, a prepaid balance, $0 for a model without a price) is
checked in the backend as before.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from .counters import CounterBackend, CountersUnavailable, Hold, Pending, Reserved, Settled, Window

log = logging.getLogger("tokenomy.caps.allowance")

ALLOWANCE_PREFIX = "allow:"
SHARE = 8  # an allowance takes at most 1/SHARE of what is left of its window
SAFE = 2 / 3  # of a lease: how long after its last renewal an allowance still admits
LEASABLE = frozenset({"usd", "tokens", "input_tokens", "output_tokens", "requests"})


def allowance_rid(now: float) -> str:
    """A fresh allowance id; it starts with the time it was made (unix seconds)."""
    return f"{ALLOWANCE_PREFIX}{int(now)}:{secrets.token_hex(8)}"


def allowance_since(rid: str) -> float | None:
    """When the allowance ``rid`` was made (None: not an allowance id)."""
    if not rid.startswith(ALLOWANCE_PREFIX):
        return None
    stamp = rid[len(ALLOWANCE_PREFIX) :].split(":", 1)[0]
    return float(stamp) if stamp.isdigit() else None


@dataclass(slots=True)
class _Pool:
    """One allowance: capacity held on one window."""

    rid: str
    window: Window
    limit: int
    granted: int
    base: int  # the window's total before the allowance was made
    oldest: int | None
    left: int = 0
    used: int = 0  # settled amounts of its requests
    open: int = 0  # its requests not settled yet
    retired: bool = False
    peak: int = 0  # the largest amount asked of it: the next allowance's unit
    made: float = 0.0  # when it was made, last admitted from, last renewed (wall clock)
    last: float = 0.0
    renewed: float = 0.0

    def total(self) -> int:
        """The window's total as this replica sees it: before the allowance, plus
        what its requests hold or used (not the unused rest)."""
        return self.base + self.granted - self.left


class Allowances:
    """A `CounterBackend` that admits from allowances where it can (see the module)."""

    def __init__(
        self,
        inner: CounterBackend,
        *,
        size: int,
        idle: float,
        lease: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.inner = inner
        self.clock = clock  # wall time, as in the ledger's records
        self.name = inner.name
        self.size = size
        self.idle = idle
        self.lease = lease
        self._pools: dict[str, _Pool] = {}  # by counter key: the one admitting
        self._draining: dict[str, _Pool] = {}  # retired, with requests still open
        self._requests: dict[str, list[tuple[_Pool, int]]] = {}
        self._making: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._last_renew = clock()
        self._closed = False

    # -- admission -------------------------------------------------------------------------------

    async def reserve(self, rid: str, holds: Sequence[Hold], *, lease: float) -> Reserved:
        leasable = bool(holds) and all(
            h.limit is not None and h.amount > 0 and h.measure in LEASABLE for h in holds
        )
        if leasable:
            local = self._local(rid, holds)
            if local is not None:
                return local
        stale = self._stale(holds)
        if stale:
            # Their settles go first (on one connection, in order): the check then no
            # longer counts what they did not use.
            settles = asyncio.gather(*map(self._settle_pool, stale))
            _, res = await asyncio.gather(settles, self.inner.reserve(rid, holds, lease=lease))
        else:
            res = await self.inner.reserve(rid, holds, lease=lease)
        if not res.ok and await self._give_back(holds, res.refused):
            res = await self.inner.reserve(rid, holds, lease=lease)
        if res.ok and leasable and self.size > 0:
            self._make(holds, res)
        return res

    def _local(self, rid: str, holds: Sequence[Hold]) -> Reserved | None:
        pools: list[_Pool] = []
        now = self.clock()
        for h in holds:
            p = self._pools.get(h.window.key)
            if p is None or p.window != h.window or p.limit != h.limit:
                return None
            if now - p.renewed > self.lease * SAFE:
                return None
            if p.left < h.amount:
                p.peak = max(p.peak, h.amount)
                return None
            pools.append(p)
        totals = []
        for p, h in zip(pools, holds, strict=True):
            totals.append(p.total())
            p.left -= h.amount
            p.peak = max(p.peak, h.amount)
            p.open += 1
            p.last = now
        self._requests[rid] = [(p, h.amount) for p, h in zip(pools, holds, strict=True)]
        return Reserved(
            tuple(totals), (), tuple(p.oldest for p in pools), via=tuple(p.rid for p in pools)
        )

    def _stale(self, holds: Sequence[Hold]) -> list[_Pool]:
        """Retire the allowances on these holds' windows that must not admit any more:
        not renewed in time (their lease may run out), their window moved on, or
        their limit changed (a request stamped a bucket earlier leaves one be).
        Return those that can be settled now (no request open)."""
        now, out = self.clock(), []
        for h in holds:
            p = self._pools.get(h.window.key)
            if p is None:
                continue
            late = now - p.renewed > self.lease * SAFE
            moved = p.window != h.window and h.window.bucket >= p.window.bucket
            if (late or moved or p.limit != h.limit) and self._stop(p):
                out.append(p)
        return out

    async def _give_back(self, holds: Sequence[Hold], refused: Sequence[int]) -> bool:
        """Return this replica's unused allowances on the refused windows (those
        with no request open: the others cannot be settled yet); True if any was."""
        returned = False
        for i in refused:
            p = self._pools.get(holds[i].window.key)
            if p is not None and p.open == 0 and p.left > 0:
                self._stop(p)
                await self._settle_pool(p)
                returned = True
        return returned

    def _make(self, holds: Sequence[Hold], res: Reserved) -> None:
        """Start making allowances for the windows of an admitted request."""
        wanted: list[tuple[Hold, int, int]] = []
        for h, before in zip(holds, res.totals, strict=True):
            p = self._pools.get(h.window.key)
            if h.window.key in self._making or (
                p is not None and p.window == h.window and p.left >= h.amount
            ):
                continue
            assert h.limit is not None
            unit = max(h.amount, p.peak if p is not None else 0)
            room = h.limit - before - h.amount
            size = min(self.size * unit, room // SHARE)
            if size >= unit:
                wanted.append((h, size, unit))
        for h, size, unit in wanted:
            self._making.add(h.window.key)
            self._spawn(self._make_one(h, size, unit))

    async def _make_one(self, h: Hold, size: int, unit: int) -> None:
        made = self.clock()
        rid = allowance_rid(made)
        try:
            res = await self.inner.reserve(rid, [Hold(h.window, size, h.limit, h.measure)],
                                           lease=self.lease)  # fmt: skip
        except CountersUnavailable:
            return
        finally:
            self._making.discard(h.window.key)
        if not res.ok:
            return
        assert h.limit is not None
        p = _Pool(rid, h.window, h.limit, size, res.totals[0], res.oldest[0], left=size,
                  peak=unit, made=made, last=made, renewed=made)  # fmt: skip
        old = self._pools.get(h.window.key)
        if self._closed or (old is not None and old.window.bucket > h.window.bucket):
            self._retire(p)  # made too late: the window has moved on
            return
        if old is not None:
            self._retire(old)
        self._pools[h.window.key] = p

    # -- settling ----------------------------------------------------------------------------------

    async def settle(
        self, rid: str, actual: Sequence[int], *, want: Sequence[bool] | None = None
    ) -> Settled:
        held = self._requests.pop(rid, None)
        if held is None:
            return await self.inner.settle(rid, actual, want=want)
        return Settled(True, self._done(held, actual))

    def _done(self, held: Sequence[tuple[_Pool, int]], actual: Sequence[int]) -> tuple[int, ...]:
        """A request admitted from allowances ended, using ``actual``: give back the
        rest, settle a retired allowance whose last request this was; the totals."""
        totals = []
        for (p, amount), a in zip(held, actual, strict=True):
            p.left += amount - a
            p.used += a
            p.open -= 1
            totals.append(p.total())
            if p.retired and p.open == 0:
                self._spawn(self._settle_pool(p))
        return tuple(totals)

    def _retire(self, p: _Pool) -> None:
        """Stop admitting from ``p``; settle it once its last request has."""
        if self._stop(p):
            self._spawn(self._settle_pool(p))

    def _stop(self, p: _Pool) -> bool:
        """Stop admitting from ``p``; True if it can be settled now (no request
        open), else it waits for its last one."""
        p.retired = True
        if self._pools.get(p.window.key) is p:
            del self._pools[p.window.key]
        if p.open:
            self._draining[p.rid] = p
        return not p.open

    async def _settle_pool(self, p: _Pool) -> None:
        self._draining.pop(p.rid, None)
        try:
            await self.inner.settle(p.rid, [p.used])
        except CountersUnavailable as exc:  # its lease runs out; the sweeper settles it
            log.warning("allowance %s left to the sweeper: %s", p.rid, exc)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- housekeeping ------------------------------------------------------------------------------

    async def tidy(self) -> None:
        """Retire idle and old allowances, and renew the ones still held."""
        now = self.clock()
        for p in list(self._pools.values()):
            if now - p.last >= self.idle or now - p.made >= self.lease:
                self._retire(p)
        if now - self._last_renew >= self.lease / 3:
            self._last_renew = now
            held = [*self._pools.values(), *self._draining.values()]
            if held:
                await self.inner.renew([p.rid for p in held], lease=self.lease)
                for p in held:
                    p.renewed = now

    def held(self) -> int:
        """Allowances held (admitting, or waiting for their requests to settle)."""
        return len(self._pools) + len(self._draining)

    # -- the rest goes to the backend ---------------------------------------------------------------

    async def renew(self, rids: Sequence[str], *, lease: float) -> None:
        own = [r for r in rids if r not in self._requests]
        if own:
            await self.inner.renew(own, lease=lease)

    async def expired(self, *, limit: int = 100) -> list[Pending]:
        return await self.inner.expired(limit=limit)

    async def sweep(self, pending: Pending, actual: Sequence[int] | None) -> Settled:
        return await self.inner.sweep(pending, actual)

    async def totals(self, windows: Sequence[Window]) -> list[int]:
        """The backend's totals, less this replica's allowances' unused rest."""
        out = await self.inner.totals(windows)
        for i, w in enumerate(windows):
            for p in (*self._pools.values(), *self._draining.values()):
                b = p.window.bucket
                if p.window.key == w.key and w.bucket - w.span < b <= w.bucket:
                    out[i] -= max(p.left, 0)
        return out

    async def seed(self, window: Window, used: int) -> bool:
        return await self.inner.seed(window, used)

    def nudge(self) -> None:
        """Wake the backend for a request that is arriving, unless this replica holds
        allowances: then the request most likely needs no round trip."""
        nudge = getattr(self.inner, "nudge", None)
        if nudge is not None and not self._pools:
            nudge()

    def when_lost(self, seed: Callable[[], Awaitable[None]]) -> None:
        """As the backend's: when it lost its counters, this replica's allowances
        went with them; stop admitting from them, then ``seed``."""
        when_lost = getattr(self.inner, "when_lost", None)
        if when_lost is None:
            return

        async def lost() -> None:
            for p in (*self._pools.values(), *self._draining.values()):
                p.retired = True  # their settles find nothing left to settle
            self._pools.clear()
            self._draining.clear()
            await seed()

        when_lost(lost)

    async def warm(self) -> None:
        warm = getattr(self.inner, "warm", None)
        if warm is not None:
            await warm()

    def forget(self, rid: str) -> None:
        """A request that never ended: what it holds stays counted as used."""
        held = self._requests.pop(rid, None)
        if held is None:
            forget = getattr(self.inner, "forget", None)
            if forget is not None:
                forget(rid)
            return
        self._done(held, [amount for _, amount in held])

    def open_count(self) -> int:
        count = getattr(self.inner, "open_count", None)
        return len(self._requests) + (count() if count is not None else 0)

    async def close(self) -> None:
        """Return every allowance whose requests have settled, then close the backend."""
        self._closed = True
        for p in list(self._pools.values()):
            self._retire(p)
        await self.quiet()
        await self.inner.close()

    async def quiet(self) -> None:
        """Wait until no allowance is being made or returned."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
