"""Load balancing across the deployments that serve one public model.

``weight``: random, in proportion to the configured weights. ``latency``: the
deployment with the lowest moving average (EWMA) of recent latencies; one that
has never been measured goes first, so every deployment gets measured.
``inflight``: the one with the fewest requests in flight here.

The measurements are this process's own: each replica balances on what it sees.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from .config import Balance

EWMA_ALPHA = 0.3  # weight of the newest latency in the moving average


@dataclass(slots=True)
class DeploymentStats:
    ewma_ms: float | None = None
    inflight: int = 0

    def observe(self, latency_ms: float) -> None:
        if self.ewma_ms is None:
            self.ewma_ms = latency_ms
        else:
            self.ewma_ms += EWMA_ALPHA * (latency_ms - self.ewma_ms)


class Balancer:
    def __init__(self, rng: random.Random | None = None) -> None:
        self.rng = rng or random.Random()
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
            unmeasured = [n for n in names if self.stat(n).ewma_ms is None]
            if unmeasured:
                return unmeasured[0]
            return min(names, key=lambda n: self.stat(n).ewma_ms or 0.0)
        if spec.strategy == "inflight":
            return min(names, key=lambda n: self.stat(n).inflight)
        if not spec.cum_weights or spec.cum_weights[-1] <= 0:
            return names[0]
        return self.rng.choices(names, cum_weights=spec.cum_weights)[0]

    def start(self, deployment: str) -> None:
        self.stat(deployment).inflight += 1

    def done(self, deployment: str, latency_ms: float | None) -> None:
        s = self.stat(deployment)
        s.inflight -= 1
        if latency_ms is not None:
            s.observe(latency_ms)
