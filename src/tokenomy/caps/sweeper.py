"""Leases and the sweeper: reservations left by a crashed process are settled once.

Every reservation is a lease of ``caps.lease`` seconds. The process that made
it renews its open reservations every third of a lease; one that crashed stops
renewing, and its leases run out. Each process's sweeper then looks for
expired reservations (any process's) and settles each from the ledger:

- the request's record is in the ledger: settle to what the record says (its
  cost, its tokens), as the owner would have;
- it is not: release.

The backend's sweep is atomic and acts only on a live, expired reservation, so
when two sweepers (or a sweeper and a late owner) race, exactly one applies.
Because the owner settles only after its record is committed, "record found"
and "owner settled" can never both charge: see `caps.counters`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

from .counters import CounterBackend, CountersUnavailable
from .measures import actual
from .store import CapsStore

log = logging.getLogger("tokenomy.caps.sweeper")


class Sweeper:
    def __init__(
        self,
        backend: CounterBackend,
        store: CapsStore,
        *,
        lease: float,
        open_rids: Callable[[], Sequence[str]],
    ) -> None:
        self.backend = backend
        self.store = store
        self.lease = lease
        self.open_rids = open_rids
        self._last_renew = 0.0
        self.settled = 0  # from the ledger
        self.released = 0

    async def renew(self) -> None:
        rids = list(self.open_rids())
        for i in range(0, len(rids), 1000):
            await self.backend.renew(rids[i : i + 1000], lease=self.lease)

    async def sweep_once(self) -> int:
        """Settle or release every expired reservation found; return how many."""
        done = 0
        while True:
            pending = await self.backend.expired(limit=200)
            if not pending:
                return done
            records = await asyncio.to_thread(self.store.records, [p.rid for p in pending])
            applied_any = False
            for p in pending:
                rec = records.get(p.rid)
                amounts = None if rec is None else [actual(h.measure, rec) for h in p.holds]
                result = await self.backend.sweep(p, amounts)
                if result.applied:
                    applied_any = True
                    done += 1
                    if rec is None:
                        self.released += 1
                    else:
                        self.settled += 1
            if not applied_any:
                return done  # everything left is someone else's to take

    async def tick(self) -> None:
        now = time.monotonic()
        if now - self._last_renew >= self.lease / 3:
            self._last_renew = now
            await self.renew()
        n = await self.sweep_once()
        if n:
            log.info("swept %d expired reservation(s)", n)

    async def round(self) -> None:
        """One `tick` that never raises (the caps' housekeeping task runs it)."""
        try:
            await self.tick()
        except CountersUnavailable as exc:
            log.debug("sweeper: counters unavailable: %s", exc)
        except Exception:  # the sweeper must outlive any one bad round
            log.exception("sweeper round failed")
