"""A cascade on RouteLLM's GSM8K test data: Mixtral answers first, GPT-4 only when
Mixtral's worked answer miscalculates.

    .venv/bin/python benchmarks/cascade_routellm.py

Test data: report only. The verifier (`tokenomy.routing.learned.checks`) is not
learned and has no knob: it counts the false arithmetic claims of an answer
("6 * 7 = 48"). Its one dev check is on GSM8K's *training* solutions
(``compress/gsm8k/train.jsonl``, dev), which are correct and should show no defect;
the share that does is printed as the false-alarm rate. This script was committed
before its first run on the test file, and its rows were fixed then.

A cascade sees the cheap answer before deciding, so it ranks prompts by that answer:
the more false claims, the earlier GPT-4 is asked. Rows, on the same prompts as
``benchmarks/router_eval.py`` (RouteLLM's contaminated prompts dropped):

- random, length, learned: the routers of ``router_eval.py`` (decide before any call);
- cascade: checks: by false claims; ties in random order (the expected curve);
- cascade: checks, then answer lines: ties by the draft's non-empty line count (a
  longer worked answer escalates first; more steps, more room for a slip);
- cascade: checks, then learned: ties by the learned router's score.

A cascade pays Mixtral on every prompt and Mixtral plus GPT-4 on each escalated one,
so its cost saved is computed with that (APGR and the CPTs depend on quality only).
The gateway's operating point (``scorer: checks``, escalate on any false claim) is
printed on its own. MMLU is not evaluated: its answers are one letter, with no
worked text to check (RouteLLM's MMLU file has no answer texts at all).

Prints markdown; writes ``benchmarks/results/cascade_routellm.json`` and
``docs/img/cascade_routellm.png``.
"""

from __future__ import annotations

import argparse
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

from plots import save, subplots
from router_eval import RESULTS, draw, features
from routing_data import ROOT, STRONG, WEAK, data_dir, routellm_gsm8k

from tokenomy.routing.learned import Router
from tokenomy.routing.learned.checks import arithmetic_defects
from tokenomy.routing.learned.evaluate import Pair, compare, measure, pick_pair, table
from tokenomy.routing.learned.metrics import curve
from tokenomy.routing.learned.outcomes import Outcome


def false_alarms(base: Path) -> dict[str, float]:
    """Share of GSM8K's (correct) training solutions in which the verifier finds a defect."""
    rows = [json.loads(line) for line in (base / "compress/gsm8k/train.jsonl").open()]
    flagged = sum(1 for r in rows if arithmetic_defects(r["answer"]))
    return {"solutions": len(rows), "flagged": flagged, "rate": flagged / len(rows)}


def lines(text: str) -> int:
    return sum(1 for line in text.splitlines() if line.strip())


def lexicographic(first: list[float], then: list[float]) -> list[float]:
    """Order by `first`, ties by `then` (both: higher -> strong)."""
    lo, hi = min(then), max(then)
    span = (hi - lo) or 1.0
    return [f + 0.5 * (t - lo) / span for f, t in zip(first, then, strict=True)]


def operating_point(defects: list[int], outcomes: list[Outcome]) -> dict[str, float]:
    """Escalate every answer with a false claim; Mixtral's answer otherwise."""
    esc = [d > 0 for d in defects]
    q = sum(o.scores[STRONG] if e else o.scores[WEAK] for o, e in zip(outcomes, esc, strict=True))
    q_strong = sum(o.scores[STRONG] for o in outcomes)
    cost = sum(
        (
            o.costs[WEAK] + (o.costs[STRONG] if e else Decimal(0))
            for o, e in zip(outcomes, esc, strict=True)
        ),
        Decimal(0),
    )
    always = sum((o.costs[STRONG] for o in outcomes), Decimal(0))
    wrong = [o.scores[WEAK] < 1 for o in outcomes]
    caught = sum(1 for e, w in zip(esc, wrong, strict=True) if e and w)
    return {
        "escalated_share": sum(esc) / len(esc),
        "quality": q / len(outcomes),
        "quality_vs_strong": q / q_strong,
        "cost_saved": float(1 - cost / always),
        "precision": caught / max(1, sum(esc)),  # escalated answers that were wrong
        "recall": caught / max(1, sum(wrong)),  # wrong answers that were escalated
    }


def plot(
    curves: dict[str, tuple[list[float], list[float]]], q: tuple[float, float], path: Path
) -> None:
    fig, ax = subplots(figsize=(6.5, 4.4))
    c = {"routers": curves, "q_weak": q[0], "q_strong": q[1]}
    draw(ax, c, "RouteLLM GSM8K (test): Mixtral first, GPT-4 on escalation",
         "share of prompts sent to GPT-4")  # fmt: skip
    save(fig, path)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data-dir")
    ap.add_argument("--quality", type=float, default=0.95)
    ap.add_argument("--no-plot", action="store_true")
    args = ap.parse_args()
    base = data_dir(args.data_dir)

    alarms = false_alarms(base)
    print(
        f"dev check: a defect found in {alarms['flagged']} of {alarms['solutions']} correct GSM8K "
        f"training solutions ({100 * alarms['rate']:.2f}%)\n"
    )

    outcomes = routellm_gsm8k(base)
    pair = pick_pair(outcomes, WEAK, STRONG)
    router = Router.load()
    probs = router.win_scores(router.predict_features(features(router, "gsm8k", outcomes)))
    learned = [-float(p) for p in probs]
    drafts = [str(o.extra["weak_answer"]) for o in outcomes]
    defects = [arithmetic_defects(d) for d in drafts]
    checks = [float(d) for d in defects]
    ranked = {
        "cascade: checks": checks,
        "cascade: checks, then answer lines": lexicographic(
            checks, [float(lines(d)) for d in drafts]
        ),
        "cascade: checks, then learned": lexicographic(checks, learned),
    }
    assert pair.weak_costs is not None and pair.strong_costs is not None
    both = [w + s for w, s in zip(pair.weak_costs, pair.strong_costs, strict=True)]
    cascade_pair = Pair(
        pair.weak, pair.strong, pair.weak_scores, pair.strong_scores, pair.weak_costs, both
    )
    rows = compare(outcomes, learned, pair, args.quality)
    rows += [measure(name, s, cascade_pair, args.quality) for name, s in ranked.items()]
    print(table(rows, pair, args.quality, title="RouteLLM gsm8k (test): routers and cascades"))

    point = operating_point(defects, outcomes)
    print(
        f"\ngateway operating point (scorer: checks, escalate on any false claim): "
        f"{100 * point['escalated_share']:.1f}% escalated, accuracy {point['quality']:.3f} "
        f"({100 * point['quality_vs_strong']:.1f}% of GPT-4's), {100 * point['cost_saved']:.1f}% cost "
        f"saved (Mixtral paid on every prompt); {100 * point['precision']:.1f}% of escalated answers "
        f"were wrong, {100 * point['recall']:.1f}% of wrong answers were escalated"
    )

    named = {"random (expected)": [0.0] * len(outcomes), "learned router": learned, **ranked}
    curves: dict[str, tuple[list[float], list[float]]] = {}
    for label, s in named.items():
        c = curve(s, pair.weak_scores, pair.strong_scores)
        step = max(1, len(c.share) // 300)
        curves[label] = (c.share[::step], c.quality[::step])
    q_weak = sum(pair.weak_scores) / len(outcomes)
    q_strong = sum(pair.strong_scores) / len(outcomes)
    out: dict[str, Any] = {
        "prompts": len(outcomes),
        "q_weak": q_weak,
        "q_strong": q_strong,
        "dev_false_alarms": alarms,
        "answers_with_claims": sum(1 for d in drafts if d) / len(drafts),
        "rows": [
            {
                "router": r.router,
                "apgr": r.apgr,
                "cpt50": r.cpt50,
                "cpt80": r.cpt80,
                "share_at_target": r.share_at_target,
                "saving_at_target": r.saving_at_target,
            }
            for r in rows
        ],
        "operating_point": point,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "cascade_routellm.json").write_text(json.dumps(out, indent=2))
    if not args.no_plot:
        plot(curves, (q_weak, q_strong), ROOT / "docs/img/cascade_routellm.png")


if __name__ == "__main__":
    main()
