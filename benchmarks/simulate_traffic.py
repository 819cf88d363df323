"""What-if on real traffic: 805 AlpacaEval instructions and the answers of nine models.

The traffic is GPT-4 Turbo's (gpt-4-1106-preview) answers to the 805 instructions;
the other models' recorded answers to the same instructions are the evidence a
reroute uses for their token counts. Tokens are counted from the real texts with
``tokenomy.tokens`` and priced at today's prices with ``PriceBook`` (genai-prices).
The file has no quality judgements, so no quality effect is claimed.

    .venv/bin/python benchmarks/simulate_traffic.py

Reads ``../shared/data/traffic/alpaca_eval_outputs.parquet`` beside the repository
(or under ``$TOKENOMY_SHARED_DATA``); writes PNG charts to ``benchmarks/results/``.
Needs ``pip install -e '.[insights]'``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from tokenomy.insights.plots import plot_policy_costs, plot_spend_over_time  # noqa: E402
from tokenomy.insights.simulate import (  # noqa: E402
    Compress,
    OutputCap,
    PriceChange,
    Reroute,
    ResponseCache,
    Selector,
    Sim,
    cost_of,
    render_table,
    simulate,
)
from tokenomy.insights.traffic import ALPACA_EVAL_MODELS, Traffic, from_alpaca_eval  # noqa: E402
from tokenomy.pricing import PriceBook  # noqa: E402

BASELINE = "gpt4_1106_preview"


def data_file() -> Path:
    base = Path(os.environ.get("TOKENOMY_SHARED_DATA") or ROOT.parent / "shared" / "data")
    return base / "traffic" / "alpaca_eval_outputs.parquet"


def per_model_table(traffic: Traffic, prices: PriceBook) -> str:
    """Each model answering all 805 instructions: its own tokens, today's price."""
    assert traffic.evidence is not None
    lines = ["model | input tokens | output tokens | cost (USD) | price", "---|---:|---:|---:|---"]
    for generator, (model, provider) in ALPACA_EVAL_MODELS.items():
        policy = Reroute(Selector(), model, provider)
        sims = [policy.apply(Sim(r), traffic.evidence) for r in traffic.requests]
        sims = [s for s in sims if s.evidence is not None or s.rerouted_from is None]
        tin = sum(s.req.usage.input_tokens for s in sims)
        tout = sum(s.req.usage.output_tokens for s in sims)
        costs = [cost_of(s, prices) for s in sims]
        known = [c for c in costs if c is not None]
        total = f"{sum(known, Decimal(0)):.4f}" if len(known) == len(costs) else "unknown"
        cost = prices.cost(sims[0].req.usage, model=model, provider=provider)
        src = "genai-prices: " + (cost.matched_model or "-") if cost.total is not None else "none"
        lines.append(f"{generator} ({len(sims)} answers) | {tin:,} | {tout:,} | {total} | {src}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--docs-image", action="store_true",
                        help="also copy the before/after chart to docs/img/")  # fmt: skip
    args = parser.parse_args()
    path = data_file()
    if not path.exists():
        sys.exit(f"shared traffic not found at {path}: set TOKENOMY_SHARED_DATA")

    started = time.perf_counter()
    traffic = from_alpaca_eval(path, generator=BASELINE)
    prices = PriceBook()
    policies = [
        Reroute(Selector(), "gpt-4o-mini-2024-07-18", "openai"),
        Reroute(Selector(), "claude-3-5-sonnet-20240620", "anthropic"),
        Reroute(Selector(), "mistralai/Mixtral-8x7B-Instruct-v0.1", "together"),
        Reroute(Selector.parse("route=selfinstruct"), "gpt-3.5-turbo-1106", "openai"),
        Reroute(Selector(), "claude-instant-1.2", "anthropic"),
        PriceChange(Selector.parse("provider=openai"), Decimal("0.8"), Decimal("0.8")),
        ResponseCache(Decimal("0.2")),
        Compress(Decimal(2)),
        OutputCap(Selector(), 400),
    ]
    sim = simulate(traffic, policies, prices=prices, combined=False)
    combo = [policies[3], ResponseCache(Decimal("0.2")), OutputCap(Selector(), 400)]
    combined = simulate(traffic, combo, prices=prices)
    elapsed = time.perf_counter() - started

    print("## The 805 instructions answered by each model (real answers, today's prices)\n")
    print(per_model_table(traffic, prices))
    print("\n## What-if: each policy alone\n")
    print(render_table(sim))
    print("\n## What-if: three policies together\n")
    print(render_table(combined))
    args.out.mkdir(parents=True, exist_ok=True)
    written = [
        plot_spend_over_time(sim, args.out / "simulate_spend_over_time.png"),
        plot_policy_costs(sim, args.out / "simulate_cost_by_policy.png"),
        plot_policy_costs(combined, args.out / "simulate_combined.png"),
    ]
    if args.docs_image:
        img = ROOT / "docs" / "img"
        img.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(written[1], img / "simulate_cost_by_policy.png")
        written.append(img / "simulate_cost_by_policy.png")
    print()
    for p in written:
        print(f"wrote {p.relative_to(ROOT)}")
    print(f"({elapsed:.1f} s, tokens counted and priced for {len(traffic.requests)} requests "
          f"and the answers of {len(ALPACA_EVAL_MODELS)} models)")  # fmt: skip


if __name__ == "__main__":
    main()
