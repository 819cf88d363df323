"""What-if: route the traffic with the learned router (``tokenomy simulate --auto``).

For each request whose prompt the traffic holds (JSONL logs with their request
bodies, AlpacaEval; the ledger keeps no prompts), the router picks the cheapest
of ``tiers`` predicted to keep ``quality_target``; the request is then moved to
that model exactly as `Reroute` moves it (its tokens from the target's recorded
answer where the traffic has one). The quality note states the router's own
prediction: a prediction, not a measurement.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .simulate import Judge, Reroute, Selector, Sim
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
            # A simulation reads a request at a time: the decision is asked for
            # again only for the same request (alone, its judge, all combined).
            self._decided.clear()
            got = self._decided[req.request_id] = (str(d.model), None if q is None else float(q))
        return Reroute(Selector(), got[0]).apply(sim, evidence)

    def judge(self, evidence: Evidence | None) -> Judge:
        return RouteJudge(self)


@dataclass(slots=True)
class RouteJudge:
    """The router's choices on the requests it routed, and its mean prediction."""

    policy: LearnedRoute
    requests: int = 0
    seen: int = 0
    chosen: dict[str, int] = field(default_factory=dict)
    predicted: float = 0
    predictions: int = 0

    def add(self, before: Sim, after: Sim) -> None:
        self.requests += 1
        req = before.req
        if not req.prompt or not self.policy.select.matches(req):
            return
        self.seen += 1
        got = self.policy._decided.get(req.request_id)
        if got is None:
            return
        model, q = got
        self.chosen[model] = self.chosen.get(model, 0) + 1
        if q is not None:
            self.predicted += q
            self.predictions += 1

    def note(self) -> str:
        if not self.seen:
            return "no change: the traffic holds no prompts to route (the ledger keeps none)"
        mix = ", ".join(f"{t} {self.chosen.get(t, 0)}" for t in self.policy.tiers)
        mean = ""
        if self.predictions:
            mean = f"; mean predicted p(good answer) {self.predicted / self.predictions:.3f}"
        missing = self.requests - self.seen
        rest = f"; {missing} requests without a prompt kept as logged" if missing else ""
        return (
            f"router's choice on {self.seen} prompts: {mix}{mean} (predicted, not measured){rest}"
        )
