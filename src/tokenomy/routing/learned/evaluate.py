"""Evaluate routers on outcome data: RouteLLM's metrics, cost at a quality target, baselines."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from ..config import DEFAULT_QUALITY_TARGET
from .metrics import Curve, cost_at, curve
from .outcomes import Outcome, cheapest_first

RANDOM_SEEDS = 20


@dataclass(frozen=True, slots=True)
class Row:
    router: str
    apgr: float
    cpt50: float
    cpt80: float
    share_at_target: float  # strong share reaching the quality target
    saving_at_target: float | None  # cost saved against always-strong there (None: no costs)


@dataclass(frozen=True, slots=True)
class Pair:
    weak: str
    strong: str
    weak_scores: list[float]
    strong_scores: list[float]
    weak_costs: list[Decimal] | None
    strong_costs: list[Decimal] | None


def pick_pair(
    outcomes: Sequence[Outcome], weak: str | None = None, strong: str | None = None
) -> Pair:
    """The weak and strong model: as given, or, among the models scored on every prompt,
    the cheapest and dearest as training picks its default heads (`cheapest_first`)."""
    first = outcomes[0].scores if outcomes else {}
    common = [m for m in first if all(m in o.scores for o in outcomes)]
    if weak is None or strong is None:
        ranked = cheapest_first(outcomes, common)
        if len(ranked) < 2:
            raise ValueError("evaluation needs two models scored on every prompt")
        weak, strong = weak or ranked[0], strong or ranked[-1]
    for m in (weak, strong):
        if m not in common:
            raise ValueError(f"model {m!r} is not scored on every prompt")
    costed = all(weak in o.costs and strong in o.costs for o in outcomes)
    return Pair(
        weak,
        strong,
        [o.scores[weak] for o in outcomes],
        [o.scores[strong] for o in outcomes],
        [o.costs[weak] for o in outcomes] if costed else None,
        [o.costs[strong] for o in outcomes] if costed else None,
    )


def measure(name: str, strongness: Sequence[float], pair: Pair, target: float) -> Row:
    c = curve(strongness, pair.weak_scores, pair.strong_scores)
    share = c.share_for_quality(target)
    saving = None
    if pair.weak_costs is not None and pair.strong_costs is not None:
        always = sum(pair.strong_costs, Decimal(0))
        routed = cost_at(strongness, pair.weak_costs, pair.strong_costs, share)
        saving = float(1 - routed / always) if always else None
    return Row(name, c.apgr(), c.cpt(0.5), c.cpt(0.8), share, saving)


def random_row(pair: Pair, target: float, seeds: int = RANDOM_SEEDS) -> Row:
    """The random router, averaged over `seeds` seeded draws."""
    rows = []
    for seed in range(seeds):
        rng = random.Random(seed)
        rows.append(measure("random", [rng.random() for _ in pair.weak_scores], pair, target))
    savings = [r.saving_at_target for r in rows]
    return Row(
        "random",
        sum(r.apgr for r in rows) / seeds,
        sum(r.cpt50 for r in rows) / seeds,
        sum(r.cpt80 for r in rows) / seeds,
        sum(r.share_at_target for r in rows) / seeds,
        None if None in savings else sum(s or 0.0 for s in savings) / seeds,
    )


def compare(
    outcomes: Sequence[Outcome],
    learned: Sequence[float] | None,
    pair: Pair,
    target: float = DEFAULT_QUALITY_TARGET,
) -> list[Row]:
    """Rows for the random and length baselines and (if given) the learned router, whose
    `learned` scores are strongness (higher → strong)."""
    rows = [
        random_row(pair, target),
        measure("length", [float(len(o.prompt)) for o in outcomes], pair, target),
    ]
    if learned is not None:
        rows.append(measure("learned", learned, pair, target))
    return rows


def table(rows: Sequence[Row], pair: Pair, target: float, title: str = "") -> str:
    """A markdown table."""

    def pct(v: float | None) -> str:
        return "n/a" if v is None else f"{100 * v:.1f}%"

    lines = [f"### {title}"] if title else []
    lines += [
        f"weak: {pair.weak}, strong: {pair.strong}, {len(pair.weak_scores)} prompts; "
        f"quality weak {sum(pair.weak_scores) / len(pair.weak_scores):.3f}, "
        f"strong {sum(pair.strong_scores) / len(pair.strong_scores):.3f}",
        "",
        f"| router | APGR | CPT(50%) | CPT(80%) | strong calls at {target:.0%} quality "
        f"| cost saved at {target:.0%} quality |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r.router} | {r.apgr:.3f} | {pct(r.cpt50)} | {pct(r.cpt80)} "
        f"| {pct(r.share_at_target)} | {pct(r.saving_at_target)} |"
        for r in rows
    ]
    return "\n".join(lines)


__all__ = ["Curve", "Pair", "Row", "compare", "measure", "pick_pair", "random_row", "table"]
