"""Leases and the sweeper: reservations left by a crashed process are settled once.

Every reservation is a lease of ``caps.lease`` seconds. The process that made
it renews its open reservations every third of a lease; one that crashed stops
renewing, and its leases run out. Each process's sweeper then looks for
expired reservations (any process's) and settles each from the ledger:

- the request's record is in the ledger: settle to what the record says (its
  cost, its tokens), as the owner would have;
- it is not: release.

An allowance (`caps.allowance`) is settled to the sum over the records of the
requests admitted from it, found by its id in their ``decisions``.

The backend's sweep is atomic and acts only on a live, expired reservation, so
when two sweepers (or a sweeper and a late owner) race, exactly one applies.
Because the owner settles only after its record is committed, "record found"
and "owner settled" can never both charge: see `caps.counters`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from ..records import UsageRecord
from .allowance import allowance_since
from .counters import CounterBackend, CountersUnavailable, Pending
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
            found = await asyncio.to_thread(self._records, pending)
            applied_any = False
            for p in pending:
                recs = found.get(p.rid)
                amounts = None
                if recs:
                    amounts = [sum(actual(h.measure, rec) for rec in recs) for h in p.holds]
                result = await self.backend.sweep(p, amounts)
                if result.applied:
                    applied_any = True
                    done += 1
                    if amounts is None:
                        self.released += 1
                    else:
                        self.settled += 1
            if not applied_any:
                return done  # everything left is someone else's to take

    def _records(self, pending: Sequence[Pending]) -> dict[str, list[UsageRecord]]:
        """The ledger records each reservation (or allowance) stands for."""
        allowances = {p.rid: since for p in pending
                      if (since := allowance_since(p.rid)) is not None}  # fmt: skip
        plain = [p.rid for p in pending if p.rid not in allowances]
        out = {rid: [rec] for rid, rec in self.store.records(plain).items()}
        if allowances:
            out.update(self.store.allowance_records(allowances))
        return out

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
        await self.guarded(self.tick())

    @staticmethod
    async def guarded(chore: Awaitable[None]) -> None:
        """Run one chore of the housekeeping; log, never raise, what goes wrong."""
        try:
            await chore
        except CountersUnavailable as exc:
            log.debug("sweeper: counters unavailable: %s", exc)
        except Exception:  # the sweeper must outlive any one bad round
            log.exception("caps housekeeping chore failed")
