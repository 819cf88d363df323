"""Decision overhead of the routing stage, in process, on one core.

Measures, per request, the whole stage the gateway runs before calling a provider:
rules (a header rule, a team rule and a prompt-length rule, which counts tokens),
then ``tokenomy/auto``: the learned router, called as the gateway calls it (inline
when its decisions take under 1 ms, else through ``asyncio.to_thread``). Also the router's ``decide``
alone (synchronous), the rules alone, and the local MiniLM embedding of each prompt
on its own (what a router that embeds would add). Prompts are the ``dev`` alpaca-eval
instructions in ``../shared/data/traffic`` (any text would do; nothing is tuned).

    .venv/bin/python benchmarks/routing_overhead.py [--n 300] [--data-dir DIR] [--no-pin]

Prints p50/p95/p99 in milliseconds. The process is pinned to one CPU unless
``--no-pin``; onnxruntime runs with one intra-op thread (the default of
`tokenomy.embed`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data"

FALLBACK_PROMPTS = [
    "What is 2 + 2?",
    "Write a haiku about autumn.",
    "Prove that there are infinitely many primes, then generalise to primes of the form 4k+3.",
    "Translate 'good morning' into French.",
    "Explain the difference between TCP and UDP to a network engineer, with examples.",
]


def load_prompts(data_dir: Path, n: int) -> list[str]:
    path = data_dir / "traffic" / "alpaca_eval_outputs.parquet"
    try:
        import pyarrow.parquet as pq

        table = pq.read_table(path, columns=["instruction"])
        prompts = [str(p) for p in table.column("instruction").to_pylist()]
    except Exception as exc:  # no pyarrow or no data: a fixed small set
        print(f"(using built-in prompts: {type(exc).__name__}: {exc})")
        prompts = FALLBACK_PROMPTS
    seen: list[str] = []
    for p in prompts:
        if p not in seen:
            seen.append(p)
        if len(seen) >= n:
            break
    while len(seen) < n:
        seen.extend(seen[: n - len(seen)])
    return seen


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def line(name: str, xs: list[float]) -> str:
    return (
        f"| {name} | {len(xs)} | {statistics.median(xs):.2f} | {pct(xs, 0.95):.2f} "
        f"| {pct(xs, 0.99):.2f} |"
    )


async def run(prompts: list[str]) -> list[tuple[str, list[float]]]:
    from tokenomy.pipeline.context import Call
    from tokenomy.routing.config import parse_routing
    from tokenomy.routing.stage import RoutingStage, load_router

    config = parse_routing(
        {
            "tiers": ["gpt-4o-mini", "gpt-4o"],
            "quality_target": 0.95,
            "rules": [
                {"name": "hdr", "when": {"header": {"x-tokenomy-route": "cheap"}}, "to": "gpt-4o-mini"},
                {"name": "ads", "when": {"team": "ads"}, "to": "gpt-4o-mini"},
                {"name": "long", "when": {"min_tokens": 6000}, "to": "gpt-4o"},
            ],
        }
    )  # fmt: skip
    router = load_router(None)
    stage = RoutingStage(config, router=router)

    def call(text: str, model: str) -> Call:
        body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": text}]}
        c = Call("openai", "chat", "/v1/chat/completions", body, {})
        c.record.team = "search"
        return c

    for p in prompts[:20]:  # warm up: tokenizer, onnx session, thread pool
        await stage.plan(call(p, "tokenomy/auto"), "tokenomy/auto")
    rules_ms: list[float] = []
    decide_ms: list[float] = []
    stage_ms: list[float] = []
    hop_ms: list[float] = []
    for p in prompts:
        t = time.perf_counter()
        await asyncio.to_thread(len, p)
        hop_ms.append((time.perf_counter() - t) * 1000)
        c = call(p, "gpt-4o")
        t = time.perf_counter()
        await stage.plan(c, "gpt-4o")  # rules only (no alias)
        rules_ms.append((time.perf_counter() - t) * 1000)
        msgs = [{"role": "user", "content": p}]
        t = time.perf_counter()
        router.decide(msgs, ["gpt-4o-mini", "gpt-4o"], quality_target=0.95)
        decide_ms.append((time.perf_counter() - t) * 1000)
        c = call(p, "tokenomy/auto")
        t = time.perf_counter()
        await stage.plan(c, "tokenomy/auto")
        stage_ms.append((time.perf_counter() - t) * 1000)
    uses_embedding = bool(getattr(getattr(router, "spec", None), "embed", False))
    print(f"shipped router uses the MiniLM embedding: {uses_embedding}")
    from tokenomy.embed import shared_embedder

    embedder = shared_embedder()
    embedder.embed_one(prompts[0])
    embed_ms: list[float] = []
    for p in prompts:
        t = time.perf_counter()
        embedder.embed_one(p[:500])  # head of the prompt, as a router would clip it
        embed_ms.append((time.perf_counter() - t) * 1000)
    return [
        ("MiniLM embedding of the prompt (first 500 chars)", embed_ms),
        ("rules only (3 rules, token count)", rules_ms),
        ("asyncio.to_thread hop, no work", hop_ms),
        ("router.decide, synchronous", decide_ms),
        ("whole stage: rules + tokenomy/auto, as the gateway runs it", stage_ms),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=300, help="prompts to route")
    parser.add_argument(
        "--data-dir",
        default=os.environ.get("TOKENOMY_DATA_DIR", str(DEFAULT_DATA)),
        help="the shared data directory (default ../shared/data)",
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin to one CPU")
    args = parser.parse_args()
    if not args.no_pin and hasattr(os, "sched_setaffinity"):
        cpu = sorted(os.sched_getaffinity(0))[-1]
        os.sched_setaffinity(0, {cpu})
        print(f"pinned to CPU {cpu}")
    prompts = load_prompts(Path(args.data_dir), args.n)
    results = asyncio.run(run(prompts))
    print("\n| measure | requests | p50 ms | p95 ms | p99 ms |\n|---|---:|---:|---:|---:|")
    for name, xs in results:
        print(line(name, xs))


if __name__ == "__main__":
    main()
