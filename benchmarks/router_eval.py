"""Evaluate the learned router on RouteLLM's GSM8K and MMLU test data (GPT-4 vs Mixtral).

    .venv/bin/python benchmarks/router_eval.py                 # the shipped router
    .venv/bin/python benchmarks/router_eval.py --router r.npz  # another one

Test data: report only (the router is trained and its knob calibrated on the
dev data; see docs/router.md). RouteLLM's contaminated prompts are dropped. For
each data set: APGR, CPT(50%), CPT(80%), the strong-call share and the cost
saved against always-GPT-4 at 95% of GPT-4's quality (prices from genai-prices;
token counts in ``routing_data``), for the random router (mean of 20 seeds), the
length router (longer prompt → strong) and the learned router, next to
RouteLLM's published savings. Then what the dev-calibrated knob
(``quality_target=0.95``) does on the test data, and the decision latency
(p50/p95 of ``Router.decide`` on one core, embedding included).

Prints markdown; writes ``benchmarks/results/router_eval.json`` and
``docs/img/router_eval.png``. Prompt features are cached under
``benchmarks/results/features/`` (ignored by git), so a rerun takes seconds.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core: numpy's BLAS too
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import hashlib
import json
import random
import statistics
import time
from pathlib import Path
from typing import Any

from plots import save, subplots
from routing_data import ROOT, STRONG, WEAK, data_dir, routellm_gsm8k, routellm_mmlu, tokens

from tokenomy.routing.learned import Router
from tokenomy.routing.learned.evaluate import Row, compare, pick_pair, table
from tokenomy.routing.learned.metrics import curve
from tokenomy.routing.learned.outcomes import Outcome

# RouteLLM (Ong et al., 2024, arXiv:2406.18665): cost reduction against GPT-4 alone
# while keeping 95% of GPT-4's quality, its best routers, as published.
PUBLISHED_SAVING = {"gsm8k": 0.35, "mmlu": 0.45}
RESULTS = ROOT / "benchmarks/results"


def features(router: Router, name: str, outcomes: list[Outcome]) -> Any:
    """The router's features of the prompts, cached by feature spec and content."""
    import numpy as np

    key = repr(router.spec) + "\x00" + "\x00".join(o.prompt for o in outcomes)
    digest = hashlib.sha1(key.encode()).hexdigest()[:16]
    path = RESULTS / "features" / f"{name}-{digest}.npy"
    if path.exists():
        return np.load(path)
    x = router.features([o.prompt for o in outcomes])
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, x)
    return x


def knob_on_test(
    router: Router, probs: list[float], outcomes: list[Outcome], target: float
) -> dict[str, float]:
    """What the dev-calibrated quality target does on this data."""
    t = router.threshold(quality_target=target)
    strong = [p < t for p in probs]
    q = sum(
        o.scores[STRONG] if s else o.scores[WEAK] for o, s in zip(outcomes, strong, strict=True)
    )
    q_strong = sum(o.scores[STRONG] for o in outcomes)
    cost = sum(
        (o.costs[STRONG] if s else o.costs[WEAK] for o, s in zip(outcomes, strong, strict=True))
    )
    always = sum(o.costs[STRONG] for o in outcomes)
    return {
        "threshold": t,
        "strong_share": sum(strong) / len(strong),
        "quality_vs_strong": q / q_strong,
        "cost_saved": float(1 - cost / always),
    }


def latency(router: Router, prompts: list[str], n: int) -> dict[str, float]:
    """p50/p95 of one `decide` (embedding included), one thread."""
    rng = random.Random(0)
    sample = [rng.choice(prompts) for _ in range(n)]
    for p in sample[:10]:  # warm up the session and the tokenizer
        router.decide(p)
    times = []
    for p in sample:
        t0 = time.perf_counter()
        router.decide(p)
        times.append(time.perf_counter() - t0)
    times.sort()
    return {
        "n": n,
        "p50_ms": 1000 * times[len(times) // 2],
        "p95_ms": 1000 * times[int(len(times) * 0.95)],
        "median_prompt_tokens": statistics.median(tokens(p) for p in sample),
    }


def draw(ax: Any, c: dict[str, Any], title: str, xlabel: str) -> None:
    """Quality curves (``c["routers"]``: label -> (shares, accuracies)) on one axis,
    with the weak and strong model's accuracy and 95% of the strong one's."""
    for label, (xs, ys) in c["routers"].items():
        ax.plot(xs, ys, label=label)
    ax.axhline(c["q_strong"], ls=":", c="grey", lw=1)
    ax.axhline(c["q_weak"], ls=":", c="grey", lw=1)
    ax.axhline(0.95 * c["q_strong"], ls="--", c="red", lw=0.8, label="95% of GPT-4")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def plot(curves: dict[str, dict[str, Any]], path: Path) -> None:
    fig, axes = subplots(1, len(curves), figsize=(5.5 * len(curves), 4.2))
    for ax, (name, c) in zip(axes, curves.items(), strict=True):
        draw(ax, c, f"RouteLLM {name} (test): GPT-4 vs Mixtral", "share of calls to GPT-4")
    save(fig, path)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data-dir")
    ap.add_argument("--router", help="weights file (default: the shipped router)")
    ap.add_argument("--quality", type=float, default=0.95)
    ap.add_argument("--latency-samples", type=int, default=300)
    ap.add_argument("--no-plot", action="store_true")
    args = ap.parse_args()

    base = data_dir(args.data_dir)
    router = Router.load(args.router)
    out: dict[str, Any] = {
        "router": args.router or "shipped default",
        "meta": router.meta,
        "datasets": {},
    }
    curves: dict[str, dict[str, Any]] = {}
    all_prompts: list[str] = []
    for name, load in (("gsm8k", routellm_gsm8k), ("mmlu", routellm_mmlu)):
        outcomes = load(base)
        all_prompts += [o.prompt for o in outcomes]
        pair = pick_pair(outcomes, WEAK, STRONG)
        probs = [
            float(p)
            for p in router.win_scores(router.predict_features(features(router, name, outcomes)))
        ]
        strongness = [-p for p in probs]
        rows = compare(outcomes, strongness, pair, args.quality)
        print(table(rows, pair, args.quality, title=f"RouteLLM {name} (test)"))
        published = PUBLISHED_SAVING[name]
        print(f"| RouteLLM, published | | | | | ~{100 * published:.0f}% |")
        knob = knob_on_test(router, probs, outcomes, args.quality)
        print(
            f"\nknob quality_target={args.quality} (threshold {knob['threshold']:.3f}, calibrated on dev): "
            f"{100 * knob['strong_share']:.1f}% strong calls, {100 * knob['quality_vs_strong']:.1f}% of GPT-4's "
            f"quality, {100 * knob['cost_saved']:.1f}% cost saved\n"
        )
        lens = [float(len(o.prompt)) for o in outcomes]
        rng = random.Random(0)
        named = {"learned": strongness, "length": lens, "random": [rng.random() for _ in outcomes]}
        curves[name] = {
            "q_weak": sum(pair.weak_scores) / len(pair.weak_scores),
            "q_strong": sum(pair.strong_scores) / len(pair.strong_scores),
            "routers": {},
        }
        for label, s in named.items():
            c = curve(s, pair.weak_scores, pair.strong_scores)
            step = max(1, len(c.share) // 200)
            curves[name]["routers"][label] = (c.share[::step], c.quality[::step])
        out["datasets"][name] = {
            "prompts": len(outcomes),
            "q_weak": sum(pair.weak_scores) / len(outcomes),
            "q_strong": sum(pair.strong_scores) / len(outcomes),
            "rows": [_row(r) for r in rows],
            "published_saving_at_95": published,
            "knob": knob,
        }
    lat = latency(router, all_prompts, args.latency_samples)
    print(
        f"decision latency, one core, embedding included ({lat['n']} RouteLLM prompts, median "
        f"{lat['median_prompt_tokens']:.0f} tokens): p50 {lat['p50_ms']:.2f} ms, p95 {lat['p95_ms']:.2f} ms"
    )
    out["latency"] = lat
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "router_eval.json").write_text(json.dumps(out, indent=2, default=str))
    if not args.no_plot:
        plot(curves, ROOT / "docs/img/router_eval.png")


def _row(r: Row) -> dict[str, Any]:
    return {
        "router": r.router,
        "apgr": r.apgr,
        "cpt50": r.cpt50,
        "cpt80": r.cpt80,
        "strong_share_at_target": r.share_at_target,
        "saving_at_target": r.saving_at_target,
    }


if __name__ == "__main__":
    main()
