"""Load balancing across the deployments that serve one public model.

``weight``: random, in proportion to the configured weights. ``latency``: the
deployment with the lowest moving average (EWMA) of recent latencies; one that
has never been measured goes first, so every deployment gets measured, and one
not measured for `REMEASURE_S` seconds gets the next request, so a deployment
that was slow once (a long answer, a bad minute) is not shut out for good: at
most one request per deployment and period pays for that probe.
``inflight``: the one with the fewest requests in flight here.

A failed attempt is no latency (a dead deployment answers fastest) and leaves
no request in flight, so the two measured strategies would keep picking a
deployment that fails: one whose last attempt failed upstream is skipped for
`COOLDOWN_S` seconds, unless every deployment is. The first pick after that
probes it again.

The measurements are this process's own: each replica balances on what it sees.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from .config import Balance

EWMA_ALPHA = 0.3  # weight of the newest latency in the moving average
COOLDOWN_S = 30.0  # a deployment whose last attempt failed is passed over this long
REMEASURE_S = 30.0  # a deployment not measured this long is measured again


@dataclass(slots=True)
class DeploymentStats:
    ewma_ms: float | None = None
    inflight: int = 0
    failed_at: float | None = None  # when its last attempt failed upstream; None: it answered
    measured_at: float = 0.0  # when its last latency was observed (or a probe sent)

    def observe(self, latency_ms: float) -> None:
        if self.ewma_ms is None:
            self.ewma_ms = latency_ms
        else:
            self.ewma_ms += EWMA_ALPHA * (latency_ms - self.ewma_ms)


class Balancer:
    def __init__(
        self, rng: random.Random | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rng = rng or random.Random()
        self.clock = clock
        self.stats: dict[str, DeploymentStats] = {}

    def stat(self, deployment: str) -> DeploymentStats:
        s = self.stats.get(deployment)
        if s is None:
            s = self.stats[deployment] = DeploymentStats()
        return s

    def pick(self, spec: Balance) -> str:
        """One deployment name of ``spec``."""
        names = spec.names  # never empty: the config refuses an empty list
        if spec.strategy == "latency":
            names = self._healthy(names)
            unmeasured = [n for n in names if self.stat(n).ewma_ms is None]
            if unmeasured:
                return unmeasured[0]
            now = self.clock()
            stale = min(names, key=lambda n: self.stat(n).measured_at)
            if now - self.stat(stale).measured_at >= REMEASURE_S:
                self.stat(stale).measured_at = now  # one probe per period, not a stampede
                return stale
            return min(names, key=lambda n: self.stat(n).ewma_ms or 0.0)
        if spec.strategy == "inflight":
            return min(self._healthy(names), key=lambda n: self.stat(n).inflight)
        if not spec.cum_weights or spec.cum_weights[-1] <= 0:
            return names[0]
        return self.rng.choices(names, cum_weights=spec.cum_weights)[0]

    def _healthy(self, names: tuple[str, ...]) -> tuple[str, ...]:
        """``names`` without those cooling down after a failure (all of them if none is left)."""
        now = self.clock()
        ok = tuple(
            n for n in names if (at := self.stat(n).failed_at) is None or now - at >= COOLDOWN_S
        )
        return ok or names

    def start(self, deployment: str) -> None:
        self.stat(deployment).inflight += 1

    def done(self, deployment: str, latency_ms: float | None, *, failed: bool = False) -> None:
        """An attempt ended: answered in ``latency_ms``, or (None) with an error;
        ``failed``: the upstream failed (not the client's own error)."""
        s = self.stat(deployment)
        s.inflight -= 1
        if latency_ms is not None:
            s.observe(latency_ms)
            s.measured_at = self.clock()
            s.failed_at = None
        elif failed:
            s.failed_at = self.clock()
