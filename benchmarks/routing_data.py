"""Loaders: the shared routing data sets as router outcome data (`tokenomy.routing.learned.outcomes`).

    .venv/bin/python benchmarks/routing_data.py --out benchmarks/results/outcomes

writes one JSONL file per source. Roles, from ``../shared/data/README.md``:
``routerdc``, ``llmrouter``, ``mot_cascade`` (dev: train and tune) and ``routellm_gsm8k``,
``routellm_mmlu`` (test: report only). The data directory is
``../shared/data`` beside the repository, or ``$TOKENOMY_SHARED_DATA``, or ``--data-dir``.

Costs (Decimal USD), where the file has them:
- llmrouter: its ``default_llm_prices.json`` per-million prices, input tokens
  counted with cl100k, and an assumed `LLMROUTER_OUTPUT_TOKENS` output tokens;
- RouteLLM: genai-prices for gpt-4-1106-preview (openai) and Mixtral-8x7B
  (mistral ``open-mixtral-8x7b``); input tokens counted with cl100k; output
  tokens from the answer texts in gsm8k_responses.csv, and
  `MMLU_OUTPUT_TOKENS` for MMLU (its prompts end in 'Answer:' and ask for a
  letter; the file has no answer texts).
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from collections.abc import Callable
from decimal import Decimal
from functools import lru_cache
from pathlib import Path

import orjson

from tokenomy.pricing import PriceBook
from tokenomy.routing.learned.outcomes import Outcome, write
from tokenomy.tokens import get_encoding

ROOT = Path(__file__).resolve().parent.parent
LLMROUTER_OUTPUT_TOKENS = 200
MMLU_OUTPUT_TOKENS = 1
STRONG = "gpt-4-1106-preview"
WEAK = "mistralai/Mixtral-8x7B-Instruct-v0.1"
PRICES = {STRONG: ("openai", "gpt-4-1106-preview"), WEAK: ("mistral", "open-mixtral-8x7b")}
MILLION = Decimal(1_000_000)

csv.field_size_limit(sys.maxsize)


def data_dir(arg: str | None = None) -> Path:
    return Path(arg or os.environ.get("TOKENOMY_SHARED_DATA") or ROOT.parent / "shared" / "data")


@lru_cache(maxsize=1)
def _price_book() -> PriceBook:
    return PriceBook()


def tokens(text: str) -> int:
    return len(get_encoding("cl100k_base").encode_ordinary(text))


def _parquet_rows(path: Path) -> list[dict[str, object]]:
    import pyarrow.parquet as pq

    rows: list[dict[str, object]] = pq.read_table(path).to_pylist()
    return rows


def routerdc(base: Path) -> list[Outcome]:
    """RouterDC's 7 open 7-8B models (dev). No costs."""
    rows = _parquet_rows(base / "routing/routerdc_7model/routerdc_split2_model7.parquet")
    meta = ("file", "idx", "question")
    return [
        Outcome(
            str(r["question"]),
            {k: float(v) for k, v in r.items() if k not in meta and isinstance(v, int | float)},
            extra={"source": f"routerdc/{r['file']}", "id": f"{r['file']}:{r['idx']}"},
        )
        for r in rows
    ]


def llmrouter(base: Path) -> list[Outcome]:
    """LLMRouter's 9 NVIDIA-NIM models (dev), with costs from its price file."""
    folder = base / "routing/llmrouter_9model"
    prices = orjson.loads((folder / "default_llm_prices.json").read_bytes())
    out: list[Outcome] = []
    for r in _parquet_rows(folder / "llmrouter_dcrouter_scores.parquet"):
        prompt = str(r["question"])
        n_in = tokens(prompt)
        scores, costs = {}, {}
        for k, v in r.items():
            if k in ("split", "idx", "question") or not isinstance(v, int | float):
                continue
            scores[k] = float(v)
            p = prices[k]
            costs[k] = (
                Decimal(str(p["input_price"])) * n_in
                + Decimal(str(p["output_price"])) * LLMROUTER_OUTPUT_TOKENS
            ) / MILLION
        out.append(Outcome(prompt, scores, costs, {"source": f"llmrouter/{r['split']}"}))
    return out


def mot_cascade(base: Path) -> list[Outcome]:
    """The cascade samples (dev): per question, each model's share of its prompt variants
    (CoT / PoT, greedy / sampled) whose majority answer is right. No costs."""
    rows = _parquet_rows(base / "routing/mot_cascade/mot_cascade_answers.parquet")
    hits: dict[tuple[str, str, str], dict[str, list[float]]] = {}
    for r in rows:
        task = str(r["file"]).split("_")[0]
        key = (task, str(r["idx"]), str(r["question"]))  # CREPE repeats question texts
        ok = 1.0 if str(r["correct"]).lower() == "true" else 0.0
        hits.setdefault(key, {}).setdefault(str(r["model"]), []).append(ok)
    return [
        Outcome(
            question,
            {m: sum(v) / len(v) for m, v in models.items()},
            extra={"source": f"mot_cascade/{task}", "id": f"{task}:{idx}"},
        )
        for (task, idx, question), models in hits.items()
    ]


def _routellm_cost(model: str, n_in: int, n_out: int) -> Decimal:
    provider, name = PRICES[model]
    book = _price_book()
    pin = book.input_price_per_token(name, provider, input_tokens=n_in)
    pout = book.output_price_per_token(name, provider, input_tokens=n_in)
    if pin is None or pout is None:
        raise SystemExit(f"no price for {provider}/{name} in genai-prices")
    return pin * n_in + pout * n_out


def _contaminated(path: Path) -> set[str]:
    return {
        str(orjson.loads(line)["eval_prompt"]) for line in path.read_bytes().splitlines() if line
    }


def _truth(v: str) -> float:
    return 1.0 if v.strip().lower() in ("true", "1", "1.0") else 0.0


def routellm_gsm8k(base: Path) -> list[Outcome]:
    """RouteLLM GSM8K (test: report only), without its contaminated prompts."""
    folder = base / "routing/routellm"
    drop = _contaminated(folder / "gsm8k_contaminated_prompts.jsonl")
    out: list[Outcome] = []
    with (folder / "gsm8k_responses.csv").open(newline="", encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            if r["prompt"] in drop:
                continue
            n_in = tokens(r["prompt"])
            costs = {m: _routellm_cost(m, n_in, tokens(r[f"{m}_response"])) for m in (STRONG, WEAK)}
            scores = {m: _truth(r[m]) for m in (STRONG, WEAK)}
            extra = {"source": "routellm/gsm8k", "weak_answer": r[f"{WEAK}_response"]}
            out.append(Outcome(r["prompt"], scores, costs, extra))
    return out


def routellm_mmlu(base: Path) -> list[Outcome]:
    """RouteLLM MMLU, 57 subjects (test: report only), without its contaminated prompts."""
    folder = base / "routing/routellm"
    drop = _contaminated(folder / "mmlu_contaminated_prompts.jsonl")
    out: list[Outcome] = []
    for path in sorted((folder / "mmlu_responses").glob("mmlu_*.csv")):
        with path.open(newline="", encoding="utf-8") as fh:
            for r in csv.DictReader(fh):
                if r["prompt"] in drop:
                    continue
                n_in = tokens(r["prompt"])
                costs = {m: _routellm_cost(m, n_in, MMLU_OUTPUT_TOKENS) for m in (STRONG, WEAK)}
                scores = {m: _truth(r[m]) for m in (STRONG, WEAK)}
                out.append(Outcome(r["prompt"], scores, costs, {"source": f"routellm/{path.stem}"}))
    return out


SOURCES: dict[str, tuple[str, Callable[[Path], list[Outcome]]]] = {
    "routerdc": ("dev", routerdc),
    "llmrouter": ("dev", llmrouter),
    "mot_cascade": ("dev", mot_cascade),
    "routellm_gsm8k": ("test", routellm_gsm8k),
    "routellm_mmlu": ("test", routellm_mmlu),
}


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data-dir", help="the shared data directory (default: ../shared/data)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/outcomes"))
    ap.add_argument("--sources", default=",".join(SOURCES), help="comma-separated")
    args = ap.parse_args()
    base, out = data_dir(args.data_dir), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in args.sources.split(","):
        role, load = SOURCES[name]
        n = write(load(base), out / f"{name}.jsonl")
        print(f"{name} ({role}): {n} prompts -> {out / f'{name}.jsonl'}")


if __name__ == "__main__":
    main()
