"""The prompt-cache lever on three workloads built from dev data: what the prompt
costs with the lever off, ``auto`` and ``always``.

Each mode runs the same requests through the gateway (the in-process
`tokenomy.Pipeline`, metering and the SQLite ledger on) to its own fake Anthropic
upstream, which plays Anthropic's prompt cache as documented (prefixes written at
breakpoints, the longest cached prefix read, a top-level ``cache_control`` as a
breakpoint on the last block, nothing cached below 1,024 tokens; the fake counts a
word as a token and never expires an entry, i.e. every request comes within five
minutes of the one it reads). The cost is what the gateway recorded, at Claude
Sonnet 4.5's prices from genai-prices ($3 per million input tokens, $0.30 read
from the cache, $3.75 written to it, $15 output).

Workloads (all from `dev` files of ``../shared/data``):

- shared prompt: GSM8K's 8-shot chain-of-thought prompt (``compress/gsm8k/
  prompt_hardest.txt``) as the system prompt of every request, each asking one
  GSM8K training question (``compress/gsm8k/train.jsonl``).
- unique context: each request carries 12 worked GSM8K training solutions picked
  for it alone (as a retrieval step would), then its question: a long prompt
  that is never sent twice.
- conversations: six-turn conversations whose user turns are consecutive
  AlpacaEval instructions and whose assistant turns are GPT-4 Turbo's recorded
  answers to them (``traffic/alpaca_eval_outputs.parquet``); every turn is one
  request carrying the whole conversation so far. The instructions of one
  conversation are unrelated: real texts, assembled turns.

``.venv/bin/python benchmarks/prompt_cache_eval.py [--requests N] [--plot PATH]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

from tokenomy import Pipeline
from tokenomy.config import Deployment, Settings
from tokenomy.pricing import PriceBook
from tokenomy.testing import FakeOptions, FakeUpstream, serve_in_thread

MODEL = "claude-sonnet-4-5"
MODES = ("off", "auto", "always")
ROOT = Path(__file__).resolve().parents[1]
Request = dict[str, Any]
PRICES = PriceBook()
SHOTS = 12  # worked solutions per unique-context prompt: about 1,200 words


def data_dir() -> Path:
    return Path(os.environ.get("TOKENOMY_SHARED_DATA", ROOT.parent / "shared" / "data"))


def gsm8k_train(base: Path) -> list[dict[str, str]]:
    with open(base / "compress/gsm8k/train.jsonl") as f:
        return [json.loads(line) for line in f]


def shared_prompt(base: Path, n: int) -> list[Request]:
    system = (base / "compress/gsm8k/prompt_hardest.txt").read_text()
    rows = gsm8k_train(base)[:n]
    return [{"system": system, "messages": [{"role": "user", "content": r["question"]}]}
            for r in rows]  # fmt: skip


def unique_context(base: Path, n: int) -> list[Request]:
    rows = gsm8k_train(base)
    rng = random.Random(7)
    out: list[Request] = []
    for r in rows[-n:]:
        shots = rng.sample(rows[: len(rows) - n], SHOTS)
        context = "\n\n".join(f"Question: {s['question']}\nAnswer: {s['answer']}" for s in shots)
        out.append({"messages": [{"role": "user", "content": f"{context}\n\nQuestion: "
                                  f"{r['question']}\nAnswer:"}]})  # fmt: skip
    return out


def conversations(base: Path, n: int, turns: int = 6) -> list[Request]:
    import pyarrow.parquet as pq

    table = pq.read_table(base / "traffic/alpaca_eval_outputs.parquet").to_pylist()
    pairs = [(r["instruction"], r["output"]) for r in table
             if r["generator"] == "gpt4_1106_preview"]  # fmt: skip
    out: list[Request] = []
    for c in range(max(n // turns, 1)):
        history: list[dict[str, str]] = []
        for t in range(turns):
            instruction, answer = pairs[(c * turns + t) % len(pairs)]
            history.append({"role": "user", "content": str(instruction)})
            out.append({"messages": list(history)})
            history.append({"role": "assistant", "content": str(answer)})
    return out


def settings(db: str, urls: dict[str, str]) -> Settings:
    deps = tuple(
        Deployment(f"claude-{mode}", "anthropic", model=MODEL, base_url=urls[mode], api_key="k",
                   prompt_cache=None if mode == "off" else mode)
        for mode in MODES
    )  # fmt: skip
    return Settings(db=db, require_key=False, deployments=deps)


async def run(cfg: Settings, workload: list[Request]) -> dict[str, Decimal]:
    """The input cost (the prompt's, cache reads and writes included) per mode."""
    costs = dict.fromkeys(MODES, Decimal(0))
    async with Pipeline(cfg) as tk:
        for mode in MODES:
            for req in workload:
                body = {"model": f"claude-{mode}", "max_tokens": 16, **req}
                usage = (await tk.messages(body)).record.usage
                cost = PRICES.cost(replace(usage, output_tokens=0), model=MODEL).total
                assert cost is not None
                costs[mode] += cost
    return costs


def fakes(stack: ExitStack) -> Iterator[tuple[str, str]]:
    for mode in MODES:  # one cache each: no mode warms another's
        fake = FakeUpstream(FakeOptions(cache_min_tokens=1024))
        yield mode, stack.enter_context(serve_in_thread(fake))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=120, help="requests per workload")
    ap.add_argument("--plot", type=Path, default=ROOT / "docs/img/prompt_cache_eval.png")
    args = ap.parse_args()
    base = data_dir()
    workloads = {
        "shared prompt (GSM8K 8-shot)": shared_prompt(base, args.requests),
        f"unique context ({SHOTS} shots each)": unique_context(base, args.requests),
        "conversations (6 turns)": conversations(base, args.requests),
    }
    rows: list[tuple[str, int, dict[str, Decimal]]] = []
    with ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        urls = dict(fakes(stack))
        for i, (name, workload) in enumerate(workloads.items()):
            cfg = settings(str(Path(tmp) / f"ledger{i}.db"), urls)
            rows.append((name, len(workload), asyncio.run(run(cfg, workload))))
    print("| workload | requests | input cost, off | auto | always |")
    print("|---|---:|---:|---:|---:|")
    for name, n, c in rows:
        cells = [f"${c['off']:.4f}"] + [
            f"${c[m]:.4f} ({(c[m] / c['off'] - 1) * 100:+.1f}%)" for m in ("auto", "always")
        ]
        print(f"| {name} | {n} | " + " | ".join(cells) + " |")
    plot(rows, args.plot)
    print(f"\nplot: {args.plot}")


def plot(rows: list[tuple[str, int, dict[str, Decimal]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.6))
    width = 0.26
    for j, mode in enumerate(MODES):
        rel = [float(c[mode] / c["off"]) * 100 for _, _, c in rows]
        xs = [i + (j - 1) * width for i in range(len(rows))]
        ax.bar(xs, rel, width, label=f"prompt_cache: {mode}")
    ax.set_xticks(range(len(rows)), [name for name, _, _ in rows], fontsize=8)
    ax.set_ylabel("input cost, % of the lever off")
    ax.axhline(100, color="grey", linewidth=0.6)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
