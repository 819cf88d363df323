"""A cheap-first cascade on the MoT cascade data (dev): escalate when the cheap model's
samples disagree.

    .venv/bin/python benchmarks/cascade_eval.py

``routing/mot_cascade`` is a **dev** file (no test split exists for cascades), so
the figures here are dev figures. The threshold is chosen on half of the
questions (by a hash of the question) and reported on the other half; the sweep
over every threshold is shown on all questions.

For each question the cheap model's samples (chain-of-thought and
program-of-thought, "mixture of thought") are voted; the cascade keeps the
majority answer when `agreement` (share of samples agreeing with the majority)
reaches the threshold and otherwise pays for GPT-4 (greedy chain-of-thought).

Costs use genai-prices (Decimal). The file has no token counts, so: input tokens
= question tokens (cl100k) + `FEWSHOT_TOKENS` of few-shot demonstrations per
prompt; `OUTPUT_TOKENS` per sample; the k samples of one prompt are one request
(``n=k``: the input is billed once). Writes ``benchmarks/results/cascade_eval.json``
and ``docs/img/cascade_eval.png``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from plots import save, subplots
from routing_data import ROOT, data_dir, tokens

from tokenomy.pricing import PriceBook
from tokenomy.routing.learned import agreement, normalize_answer
from tokenomy.routing.learned.agreement import majority

FEWSHOT_TOKENS = 500
OUTPUT_TOKENS = 120
THRESHOLDS = (0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
STRONG_PRICE = ("openai", "gpt-4")
PRICES = {
    "GPT3": ("openai", "gpt-3.5-turbo"),
    "llama2_13B": ("together", "meta-llama/Llama-2-13b-chat-hf"),
    "GPT4": STRONG_PRICE,
}


@dataclass(frozen=True, slots=True)
class Setup:
    name: str
    weak: str
    task: str
    weak_files: tuple[str, ...]  # each file is one prompt (cot / pot), sampled
    samples_per_file: int
    strong_file: str


SETUPS = (
    Setup(
        "GPT-3.5 -> GPT-4, date",
        "GPT3",
        "date",
        ("date_cot1_t=0.4", "date_pot1_t=0.4"),
        5,
        "date_greedy_cot1",
    ),
    Setup(
        "Llama-2-13B -> GPT-4, date",
        "llama2_13B",
        "date",
        ("date_cot1", "date_pot1"),
        5,
        "date_greedy_cot1",
    ),
    Setup(
        "Llama-2-13B -> GPT-4, CREPE",
        "llama2_13B",
        "crepe",
        ("crepe_pot1_V2", "crepe_pot2_V2"),
        5,
        "crepe_greedy_cot1",
    ),
)


@dataclass(frozen=True, slots=True)
class Question:
    text: str
    weak_samples: list[str]
    weak_correct: bool
    strong_correct: bool
    weak_cost: Decimal
    strong_cost: Decimal

    @property
    def score(self) -> float:
        return agreement(self.weak_samples)


def _gold(answer: Any) -> str:
    text = str(answer)
    if text.startswith("{"):  # a choice dict: the right option has value 1
        choices = json.loads(text.replace("'", '"'))
        text = next(k for k, v in choices.items() if v)
    return normalize_answer(text)


def _price(book: PriceBook, model: str, n_in: int, n_out: int) -> Decimal:
    provider, name = PRICES[model]
    pin = book.input_price_per_token(name, provider, input_tokens=n_in)
    pout = book.output_price_per_token(name, provider, input_tokens=n_in)
    if pin is None or pout is None:
        raise SystemExit(f"no price known for {provider}/{name}")
    return pin * n_in + pout * n_out


def load(base: Path, setup: Setup, book: PriceBook) -> list[Question]:
    import pyarrow.parquet as pq

    rows = pq.read_table(base / "routing/mot_cascade/mot_cascade_answers.parquet").to_pylist()
    # CREPE repeats question texts with other answers: a question is (idx, text)
    by: dict[tuple[str, str], dict[tuple[str, str], dict[str, Any]]] = defaultdict(dict)
    for r in rows:
        by[(str(r["model"]), str(r["file"]))][(str(r["idx"]), str(r["question"]))] = r
    strong = by[("GPT4", setup.strong_file)]
    files = [by[(setup.weak, f)] for f in setup.weak_files]
    out = []
    for key in sorted(set.intersection(*(set(f) for f in files)) & set(strong)):
        q = key[1]
        samples = [
            s for f in files for s in json.loads(str(f[key]["results"]))[: setup.samples_per_file]
        ]
        gold = _gold(files[0][key]["answer"])
        best, _ = majority(samples)
        n_in = tokens(q) + FEWSHOT_TOKENS
        weak_cost = len(files) * _price(book, setup.weak, n_in, 0) + _price(
            book, setup.weak, 0, OUTPUT_TOKENS * len(samples)
        )
        strong_ok = normalize_answer(json.loads(str(strong[key]["results"]))[0]) == _gold(
            strong[key]["answer"]
        )
        out.append(
            Question(
                q,
                samples,
                best == gold,
                strong_ok,
                weak_cost,
                _price(book, "GPT4", n_in, OUTPUT_TOKENS),
            )
        )
    return out


def run(questions: list[Question], threshold: float) -> dict[str, float]:
    """Accuracy, cost and escalation share of the cascade at `threshold`."""
    n = len(questions)
    correct, cost, up = 0, Decimal(0), 0
    for q in questions:
        cost += q.weak_cost
        if q.score < threshold:
            up += 1
            cost += q.strong_cost
            correct += q.strong_correct
        else:
            correct += q.weak_correct
    always = sum((q.strong_cost for q in questions), Decimal(0))
    return {
        "threshold": threshold,
        "accuracy": correct / n,
        "escalated": up / n,
        "cost_usd": float(cost),
        "cost_vs_strong": float(cost / always),
    }


def tune_half(text: str) -> bool:
    return hashlib.sha1(text.encode()).digest()[0] < 128


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data-dir")
    ap.add_argument(
        "--keep", type=float, default=0.98, help="tuning: keep this share of GPT-4's accuracy"
    )
    ap.add_argument("--no-plot", action="store_true")
    args = ap.parse_args()
    base, book = data_dir(args.data_dir), PriceBook()
    results: dict[str, Any] = {
        "assumptions": {"fewshot_tokens": FEWSHOT_TOKENS, "output_tokens": OUTPUT_TOKENS},
        "setups": [],
    }
    for setup in SETUPS:
        qs = load(base, setup, book)
        n = len(qs)
        strong_acc = sum(q.strong_correct for q in qs) / n
        weak_acc = sum(q.weak_correct for q in qs) / n
        always_strong = sum((q.strong_cost for q in qs), Decimal(0))
        weak_cost = sum((q.weak_cost for q in qs), Decimal(0))
        sweep = [run(qs, t) for t in THRESHOLDS]
        tune = [q for q in qs if tune_half(q.text)]
        report = [q for q in qs if not tune_half(q.text)]
        tune_strong = sum(q.strong_correct for q in tune) / len(tune)
        ok = [t for t in THRESHOLDS if run(tune, t)["accuracy"] >= args.keep * tune_strong]
        chosen = min(ok) if ok else 1.0
        held = run(report, chosen)
        held_strong = sum(q.strong_correct for q in report) / len(report)
        held_always = sum((q.strong_cost for q in report), Decimal(0))
        print(
            f"\n### {setup.name} ({n} questions, {len(setup.weak_files)}x{setup.samples_per_file} cheap samples)\n"
        )
        print("| policy | accuracy | escalated | cost (USD) | cost vs always-GPT-4 |")
        print("|---|---:|---:|---:|---:|")
        print(f"| always GPT-4 | {strong_acc:.3f} | 100% | {float(always_strong):.4f} | 100.0% |")
        print(
            f"| always cheap (vote) | {weak_acc:.3f} | 0% | {float(weak_cost):.4f} | {100 * float(weak_cost / always_strong):.1f}% |"
        )
        for r in sweep:
            print(
                f"| cascade, agreement < {r['threshold']:.1f} escalates | {r['accuracy']:.3f} | {100 * r['escalated']:.0f}% "
                f"| {r['cost_usd']:.4f} | {100 * r['cost_vs_strong']:.1f}% |"
            )
        print(
            f"\nthreshold tuned on {len(tune)} questions (keep {args.keep:.0%} of GPT-4 accuracy): {chosen:.1f}; "
            f"on the other {len(report)}: accuracy {held['accuracy']:.3f} vs GPT-4 {held_strong:.3f}, "
            f"escalated {100 * held['escalated']:.0f}%, cost {100 * held['cost_vs_strong']:.1f}% of always-GPT-4 "
            f"(${held['cost_usd']:.4f} vs ${float(held_always):.4f})"
        )
        results["setups"].append(
            {
                "name": setup.name,
                "questions": n,
                "always_strong": {"accuracy": strong_acc, "cost_usd": float(always_strong)},
                "always_weak": {"accuracy": weak_acc, "cost_usd": float(weak_cost)},
                "sweep": sweep,
                "tuned": {
                    "threshold": chosen,
                    "held_out": held,
                    "held_out_strong_accuracy": held_strong,
                },
            }
        )
    out = ROOT / "benchmarks/results/cascade_eval.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    if not args.no_plot:
        plot(results, ROOT / "docs/img/cascade_eval.png")


def plot(results: dict[str, Any], path: Path) -> None:
    fig, axes = subplots(1, len(results["setups"]), figsize=(5 * len(results["setups"]), 4))
    for ax, s in zip(axes, results["setups"], strict=True):
        strong = s["always_strong"]["cost_usd"]
        xs = [r["cost_vs_strong"] for r in s["sweep"]]
        ax.plot(
            xs, [r["accuracy"] for r in s["sweep"]], "o-", label="cascade (agreement threshold)"
        )
        ax.plot([1.0], [s["always_strong"]["accuracy"]], "s", label="always GPT-4")
        ax.plot(
            [s["always_weak"]["cost_usd"] / strong],
            [s["always_weak"]["accuracy"]],
            "^",
            label="always cheap",
        )
        ax.set_title(s["name"], fontsize=9)
        ax.set_xlabel("cost / always-GPT-4 cost")
        ax.set_ylabel("accuracy")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("Cascade on mot_cascade (dev data)")
    save(fig, path)


if __name__ == "__main__":
    main()
