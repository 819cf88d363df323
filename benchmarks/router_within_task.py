"""Is there within-task difficulty signal in the dev routing data? (no test data is read)

    .venv/bin/python benchmarks/routing_data.py --sources routerdc,llmrouter,mot_cascade \
        --out benchmarks/results/outcomes
    .venv/bin/python benchmarks/router_within_task.py

Three checks behind docs/router.md's "no within-task signal":

1. Held-out dev pairs that look like GPT-4 against Mixtral on one benchmark (the
   strong model at 0.75 or more, the weak one 0.1 to 0.4 below it): the within-task
   APGR of prompt length, of the shipped features' win score and of each head's
   failure probability, each router trained without the held-out task's family
   (as ``router_select.py`` does).
2. GPT-4's own difficulty on the MoT tasks: the share of its eight runs (chain or
   program of thought, greedy or sampled) that got a question wrong, predicted by a
   ridge regression on the shipped lexical features, cross-validated within each
   task (a fifth of the questions held out by hash); Spearman's rank correlation
   of the prediction, and of prompt length, with that share.
3. How far difficulty alone can take a router on grade-school maths: RouterDC's
   GSM8K-train questions, each of its seven models as the weak one against a strong
   model that is always right (GPT-4 gets about 95% of GSM8K). The APGR of prompt
   length, of a ridge prediction of the reference solution's number of steps
   (trained on the other GSM8K-train solutions of ``compress/gsm8k/train.jsonl``),
   and of two oracles no router has: the true number of steps, and how many of the
   other six models failed the question.
4. The same questions scored from their MiniLM embeddings (``tokenomy.embed``):
   the number of steps predicted by a ridge regression on the other solutions'
   embeddings, and the other models' failures predicted in five-fold
   cross-validation.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import json
import math
import re
import zlib
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from router_select import heads, load
from routing_data import data_dir

from tokenomy.routing.learned.features import Spec, featurize
from tokenomy.routing.learned.metrics import curve
from tokenomy.routing.learned.outcomes import Outcome
from tokenomy.routing.learned.train import train

RIDGE = 10.0


def _ranks(xs: Sequence[float]) -> np.ndarray:
    return np.argsort(np.argsort(np.asarray(xs)))


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    return float(np.corrcoef(_ranks(a), _ranks(b))[0, 1])


def held_out_scores() -> tuple[list[str], dict[str, list[float]], list[Outcome]]:
    outcomes, tasks, families = load()
    spec = Spec(cues=True)
    x = featurize([o.prompt for o in outcomes], spec)
    scores: dict[str, list[float]] = {
        "length": [math.log1p(len(o.prompt)) for o in outcomes],
        "win score": [math.nan] * len(outcomes),
        "1 - q_small": [math.nan] * len(outcomes),
        "1 - q_large": [math.nan] * len(outcomes),
    }
    for family in sorted(set(families)):
        keep = [i for i, f in enumerate(families) if f != family]
        held = [i for i, f in enumerate(families) if f == family]
        router = train([outcomes[i] for i in keep], heads(), x=x[keep], spec=spec).router
        q = router.predict_features(x[held])
        win = router.win_scores(q)
        for j, i in enumerate(held):
            scores["win score"][i] = 1 - float(win[j])
            scores["1 - q_small"][i] = 1 - float(q[j][0])
            scores["1 - q_large"][i] = 1 - float(q[j][-1])
    return tasks, scores, list(outcomes)


def pairs_table() -> None:
    tasks, scores, outcomes = held_out_scores()
    by_task: dict[str, list[int]] = defaultdict(list)
    for i, t in enumerate(tasks):
        by_task[t].append(i)
    names = list(scores)
    print("\n| held-out dev task | strong | weak | prompts | strong acc | weak acc | "
          + " | ".join(names) + " |")  # fmt: skip
    print("|---|---|---|---:|---:|---:|" + "---:|" * len(names))
    for task, rows in sorted(by_task.items()):
        models = set.intersection(*[set(outcomes[i].scores) for i in rows[:50]])
        rows = [i for i in rows if models <= outcomes[i].scores.keys()]
        if len(rows) < 150:
            continue
        acc = {m: sum(outcomes[i].scores[m] for i in rows) / len(rows) for m in models}
        best = max(acc, key=acc.__getitem__)
        if acc[best] < 0.75:
            continue
        for m in sorted(models, key=acc.__getitem__):
            if not 0.1 <= acc[best] - acc[m] <= 0.4:
                continue
            weak = [outcomes[i].scores[m] for i in rows]
            strong = [outcomes[i].scores[best] for i in rows]
            cells = [curve([scores[n][i] for i in rows], weak, strong).apgr() for n in names]
            print(f"| {task} | {best} | {m} | {len(rows):,} | {acc[best]:.2f} | {acc[m]:.2f} | "
                  + " | ".join(f"{c:.3f}" for c in cells) + " |")  # fmt: skip


def difficulty_table() -> None:
    path = data_dir() / "routing/mot_cascade/mot_cascade_answers.parquet"
    wrong: dict[tuple[str, str], list[float]] = defaultdict(list)
    for r in pq.read_table(path).to_pylist():
        if r["model"] == "GPT4":
            wrong[(r["file"].split("_")[0], r["question"])].append(0.0 if r["correct"] else 1.0)
    print(
        "\n| MoT task | questions | GPT-4 wrong | ridge on features, Spearman | length, Spearman |"
    )
    print("|---|---:|---:|---:|---:|")
    for task in sorted({t for t, _ in wrong}):
        qs = [q for (t, q) in wrong if t == task]
        y = np.array([np.mean(wrong[(task, q)]) for q in qs])
        x = np.asarray(featurize(qs, Spec(cues=True)), dtype=np.float64)
        test = np.array([zlib.crc32(q.encode()) % 5 == 0 for q in qs])
        xt, yt = x[~test], y[~test]
        w = np.linalg.solve(xt.T @ xt + RIDGE * np.eye(x.shape[1]), xt.T @ (yt - yt.mean()))
        length = [len(q) for q, held in zip(qs, test, strict=True) if held]
        print(f"| {task} | {len(qs):,} | {y.mean():.3f} | {spearman(x[test] @ w, y[test]):.3f} | "
              f"{spearman(length, y[test]):.3f} |")  # fmt: skip


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().lower())


def gsm8k_train() -> tuple[list[dict[str, Any]], list[str], dict[str, int], list[str]]:
    """RouterDC's GSM8K-train rows that have a worked solution, its seven models, the
    number of steps of every solution (by normalised question), and the questions of
    the other solutions (what a step predictor is fitted on)."""
    root = data_dir()
    rows = [
        r
        for r in pq.read_table(
            root / "routing/routerdc_7model/routerdc_split2_model7.parquet"
        ).to_pylist()
        if r["file"] == "gsm8k-train"
    ]
    models = [c for c in rows[0] if c not in ("file", "idx", "question")]
    with open(root / "compress/gsm8k/train.jsonl", encoding="utf-8") as f:
        solutions = {_norm(r["question"]): r["answer"] for r in map(json.loads, f)}
    # one step per line of the worked solution, the final "#### answer" line excluded
    steps = {q: a.count("\n") for q, a in solutions.items()}
    rows = [r for r in rows if _norm(r["question"]) in steps]
    held = {_norm(r["question"]) for r in rows}
    return rows, models, steps, [q for q in steps if q not in held]


def ceiling_table() -> None:
    rows, models, steps, fit = gsm8k_train()
    x = np.asarray(featurize(fit, Spec(cues=True)), dtype=np.float64)
    y = np.log1p([steps[q] for q in fit])
    w = np.linalg.solve(x.T @ x + RIDGE * np.eye(x.shape[1]), x.T @ (y - y.mean()))
    questions = [r["question"] for r in rows]
    predicted = list(np.asarray(featurize(questions, Spec(cues=True)), dtype=np.float64) @ w)
    length = [float(len(q)) for q in questions]
    true_steps = [float(steps[_norm(q)]) for q in questions]
    always = [1.0] * len(rows)
    print(
        f"\n| weak model (GSM8K-train, {len(rows):,} questions; strong: always right) | "
        "weak acc | length | predicted steps | true steps (oracle) | "
        "other models failed (oracle) |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for m in models:
        weak = [float(r[m]) for r in rows]
        others = [sum(1 - float(r[o]) for o in models if o != m) for r in rows]
        cells = [curve(s, weak, always).apgr() for s in (length, predicted, true_steps, others)]
        print(f"| {m} | {np.mean(weak):.2f} | " + " | ".join(f"{c:.3f}" for c in cells) + " |")


def _ridge(x: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
    x1 = np.hstack([x, np.ones((len(x), 1))])
    return np.linalg.solve(x1.T @ x1 + lam * np.eye(x1.shape[1]), x1.T @ y)


def _apply(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    return np.hstack([x, np.ones((len(x), 1))]) @ w


def embedding_table() -> None:
    """Check 4: the same GSM8K-train questions, scored from their MiniLM embeddings
    (the semantic features a router could add at about 7 ms a prompt): a ridge
    prediction of the solution's steps trained on the other solutions, and of how
    many of the other six models failed, cross-validated in five folds."""
    from tokenomy.embed import Embedder

    rows, models, steps, fit = gsm8k_train()
    embedder = Embedder()
    x = embedder.embed([r["question"] for r in rows]).astype(np.float64)
    w = _ridge(embedder.embed(fit).astype(np.float64), np.log1p([steps[q] for q in fit]), 1.0)
    predicted = list(_apply(x, w))
    fold = np.arange(len(rows)) % 5
    always = [1.0] * len(rows)
    print(
        f"\n| weak model (GSM8K-train, {len(rows):,} questions; strong: always right) | "
        "length | steps from the embedding | other models' failures from the embedding (CV) |"
    )
    print("|---|---:|---:|---:|")
    for m in models:
        weak = [float(r[m]) for r in rows]
        others = np.array([sum(1 - float(r[o]) for o in models if o != m) for r in rows])
        failed = np.zeros(len(rows))
        for k in range(5):
            fitted = fold != k
            failed[~fitted] = _apply(x[~fitted], _ridge(x[fitted], others[fitted], 10.0))
        length = [float(len(r["question"])) for r in rows]
        cells = [curve(s, weak, always).apgr() for s in (length, predicted, list(failed))]
        print(f"| {m} | " + " | ".join(f"{c:.3f}" for c in cells) + " |")


def main() -> None:
    pairs_table()
    difficulty_table()
    ceiling_table()
    embedding_table()


if __name__ == "__main__":
    main()
