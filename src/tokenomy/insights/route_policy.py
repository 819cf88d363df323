"""What-if: route the traffic with the learned router (``tokenomy simulate --auto``).

For each request whose prompt the traffic holds (JSONL logs with their request
bodies, AlpacaEval; the ledger keeps no prompts), the router picks the cheapest
of ``tiers`` predicted to keep ``quality_target``; the request is then moved to
that model exactly as `Reroute` moves it (its tokens from the target's recorded
answer where the traffic has one). The quality note states the router's own
prediction: a prediction, not a measurement.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .simulate import Pair, Reroute, Selector, Sim
from .traffic import Evidence


@dataclass(frozen=True, slots=True)
class LearnedRoute:
    tiers: tuple[str, ...]  # cheap -> strong
    quality_target: float
    router: Any = field(default=None, compare=False, repr=False)  # None: the shipped one
    select: Selector = field(default_factory=Selector)
    _decided: dict[str, tuple[str, float | None]] = field(
        default_factory=dict, compare=False, repr=False
    )

    @property
    def name(self) -> str:
        return f"router over {', '.join(self.tiers)} at quality {self.quality_target:g}"

    def _router(self) -> Any:
        if self.router is None:
            from ..routing.stage import load_router

            object.__setattr__(self, "router", load_router(None))
        return self.router

    def apply(self, sim: Sim, evidence: Evidence | None) -> Sim:
        req = sim.req
        if not req.prompt or not self.select.matches(req):
            return sim
        got = self._decided.get(req.request_id)
        if got is None:
            d = self._router().decide(
                req.prompt, list(self.tiers), quality_target=self.quality_target
            )
            q = getattr(d, "predicted_quality", None)
            got = self._decided[req.request_id] = (str(d.model), None if q is None else float(q))
        return Reroute(Selector(), got[0]).apply(sim, evidence)

    def quality(self, pairs: Sequence[Pair], evidence: Evidence | None) -> str:
        seen = [b for b, _ in pairs if b.req.prompt and self.select.matches(b.req)]
        if not seen:
            return "no change: the traffic holds no prompts to route (the ledger keeps none)"
        chosen = [
            self._decided[b.req.request_id] for b in seen if b.req.request_id in self._decided
        ]
        counts = {t: sum(1 for m, _ in chosen if m == t) for t in self.tiers}
        mix = ", ".join(f"{t} {n}" for t, n in counts.items())
        preds = [q for _, q in chosen if q is not None]
        mean = f"; mean predicted p(good answer) {sum(preds) / len(preds):.3f}" if preds else ""
        missing = len(pairs) - len(seen)
        rest = f"; {missing} requests without a prompt kept as logged" if missing else ""
        return (
            f"router's choice on {len(seen)} prompts: {mix}{mean} (predicted, not measured){rest}"
        )
