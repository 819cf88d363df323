"""Choose the router's method on dev data, by held-out task (no test data is read).

    .venv/bin/python benchmarks/router_select.py [--json out.json]

The RouteLLM test sets are one benchmark each (all GSM8K, all MMLU), so what
counts is how well a router ranks prompts *within* a task it never saw. This
script mimics that on the dev outcome files (``routing_data.py`` writes them):

- every dev prompt gets a task: RouterDC's benchmark (MATH, GSM8K-train, ARC,
  C-Eval, CMMLU, code), the MoT task, or, for LLMRouter (whose file is ordered
  by task but does not name it), its block of `LLMROUTER_BLOCK` consecutive rows;
- the tasks form six families (RouterDC maths, multiple choice and code;
  LLMRouter even and odd blocks; MoT); each family is held out in turn and a
  router is trained with ``tokenomy.routing.learned.train`` on the other five;
- on each held-out task whose strong model beats the weak one by at least
  `MIN_GAP` (below that the curve is noise), the within-task APGR of the weak →
  strong pair is measured: RouterDC its weakest and strongest model on that
  task, LLMRouter the small and large heads' model means, MoT Llama-2-13B →
  GPT-4 (the rows that have both).

The criterion is the mean APGR over those tasks. Candidates: each feature set's
win score, the length baseline, and rank blends of the two.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core: numpy's BLAS too
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import math
import re
from collections.abc import Sequence
from pathlib import Path

from routing_data import ROOT

from tokenomy.routing.learned.features import Spec, featurize
from tokenomy.routing.learned.metrics import curve
from tokenomy.routing.learned.outcomes import Outcome, read_all
from tokenomy.routing.learned.train import Head, train

OUTCOMES = ROOT / "benchmarks/results/outcomes"
LLMROUTER_BLOCK = 620
MIN_GAP = 0.1
BLENDS = (0.25, 0.5)
RDC_TASKS = {"arc_challenge_test": "arc", "arc_easy_test": "arc", "arc_easy_train": "arc"}
RDC_TASKS |= {"cmmlu_test": "cmmlu", "cmmlu_train": "cmmlu", "mbpp": "code", "javascript": "code"}
RDC_TASKS |= {"humaneval_test": "code", "humaneval_train": "code"}
RDC_FAMILY = {"MATH_prealgebra": "rdc-maths", "gsm8k-train": "rdc-maths", "code": "rdc-code"}


def heads() -> list[Head]:
    """The shipped router's heads, read from its training script."""
    script = (ROOT / "benchmarks/train_default_router.sh").read_text()
    return [Head.parse(h) for h in re.findall(r'--head "([^"]+)"', script)]


def task_of(o: Outcome, row: int) -> tuple[str, str]:
    """(task, family) of a dev prompt."""
    source = str(o.extra.get("source", ""))
    kind, _, name = source.partition("/")
    if kind == "routerdc":
        task = RDC_TASKS.get(name, name)
        return f"routerdc/{task}", RDC_FAMILY.get(task, "rdc-choice")
    if kind == "llmrouter":
        block = row // LLMROUTER_BLOCK
        return f"llmrouter/block{block}", f"llmrouter-{'even' if block % 2 == 0 else 'odd'}"
    return source, "mot"


def load() -> tuple[list[Outcome], list[str], list[str]]:
    outcomes: list[Outcome] = []
    tasks: list[str] = []
    families: list[str] = []
    for name in ("routerdc", "llmrouter", "mot_cascade"):
        part = read_all([OUTCOMES / f"{name}.jsonl"])
        for row, o in enumerate(part):
            task, family = task_of(o, row)
            outcomes.append(o)
            tasks.append(task)
            families.append(family)
    return outcomes, tasks, families


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs)


def pair(
    outcomes: Sequence[Outcome], rows: list[int], hs: Sequence[Head]
) -> tuple[list[int], list[float], list[float]] | None:
    """The held-out task's rows, weak and strong scores (None: no usable pair)."""
    first = outcomes[rows[0]].scores
    if "GPT4" in first or "llama2_13B" in first:
        rows = [i for i in rows if {"GPT4", "llama2_13B"} <= outcomes[i].scores.keys()]
        if len(rows) < 100:
            return None
        weak = [outcomes[i].scores["llama2_13B"] for i in rows]
        strong = [outcomes[i].scores["GPT4"] for i in rows]
    elif any(m in first for m in hs[-1].models):
        small, large = hs[0].models, hs[-1].models
        weak = [
            _mean([outcomes[i].scores[m] for m in small if m in outcomes[i].scores]) for i in rows
        ]
        strong = [
            _mean([outcomes[i].scores[m] for m in large if m in outcomes[i].scores]) for i in rows
        ]
    else:
        means = {m: _mean([outcomes[i].scores[m] for i in rows]) for m in first}
        lo, hi = min(means, key=means.__getitem__), max(means, key=means.__getitem__)
        weak = [outcomes[i].scores[lo] for i in rows]
        strong = [outcomes[i].scores[hi] for i in rows]
    if _mean(strong) - _mean(weak) < MIN_GAP:
        return None
    return rows, weak, strong


def ranks(xs: Sequence[float]) -> list[float]:
    order = sorted(range(len(xs)), key=xs.__getitem__)
    out = [0.0] * len(xs)
    for r, i in enumerate(order):
        out[i] = r / max(len(xs) - 1, 1)
    return out


def strongness(outcomes: Sequence[Outcome], families: Sequence[str], spec: Spec) -> list[float]:
    """Each prompt's 1 - win score from a router trained without its family."""
    hs = heads()
    x = featurize([o.prompt for o in outcomes], spec)
    out = [math.nan] * len(outcomes)
    for family in sorted(set(families)):
        keep = [i for i, f in enumerate(families) if f != family]
        held = [i for i, f in enumerate(families) if f == family]
        router = train([outcomes[i] for i in keep], hs, x=x[keep], spec=spec).router
        win = router.win_scores(router.predict_features(x[held]))
        for i, w in zip(held, win, strict=True):
            out[i] = 1.0 - float(w)
        print(f"  held out {family}: {len(held)} prompts", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", type=Path, help="write the table as JSON here")
    args = ap.parse_args()
    outcomes, tasks, families = load()
    hs = heads()
    candidates: dict[str, list[float]] = {"length": [math.log1p(len(o.prompt)) for o in outcomes]}
    for name, spec in (("words", Spec(cues=False)), ("words+cues", Spec(cues=True))):
        print(f"{name}: training six routers, one per held-out family", flush=True)
        candidates[name] = strongness(outcomes, families, spec)
    table: dict[str, dict[str, float]] = {}
    for task in sorted(set(tasks)):
        found = pair(outcomes, [i for i, t in enumerate(tasks) if t == task], hs)
        if found is None:
            continue
        rows, weak, strong = found
        row: dict[str, float] = {"prompts": len(rows), "gap": _mean(strong) - _mean(weak)}
        length = ranks([candidates["length"][i] for i in rows])
        for name, s in candidates.items():
            mine = [s[i] for i in rows]
            row[name] = curve(mine, weak, strong).apgr()
            if name == "length":
                continue
            for w in BLENDS:
                mixed = [(1 - w) * a + w * b for a, b in zip(ranks(mine), length, strict=True)]
                row[f"{name} + {w} length"] = curve(mixed, weak, strong).apgr()
        table[task] = row
    names = [k for k in next(iter(table.values())) if k not in ("prompts", "gap")]
    print("\n| held-out dev task | prompts | gap | " + " | ".join(names) + " |")
    print("|---|---:|---:|" + "---:|" * len(names))
    for task, row in table.items():
        cells = " | ".join(f"{row[n]:.3f}" for n in names)
        print(f"| {task} | {row['prompts']:,.0f} | {row['gap']:.2f} | {cells} |")
    means = {n: _mean([row[n] for row in table.values()]) for n in names}
    print("| **mean** | | | " + " | ".join(f"**{means[n]:.3f}**" for n in names) + " |")
    if args.json:
        args.json.write_text(json.dumps({"tasks": table, "mean": means}, indent=1) + "\n")
    print("\nbest on dev:", max(means, key=means.__getitem__))


if __name__ == "__main__":
    main()
