"""What the caps add to a request: reserve + settle, measured in process.

    .venv/bin/python benchmarks/caps_admission.py [--redis redis://127.0.0.1:6379/0] [-n 5000] [--gap 0.04]

Runs the caps policy on a scratch SQLite ledger with one team budget (dollars,
daily) and one per-key limit (requests and tokens per minute), and times
``reserve`` (the admission check, with the worst-case estimate) and ``settle``
for each configuration: no caps defined, the in-process counters, and Redis
(every check in Redis, and with allowances, the gateway's default).
Prints p50/p90/p99 in microseconds. The Redis keys live under a random prefix
and are deleted afterwards. ``--gap S`` sleeps S seconds before each request, as
a gateway at a fixed rate of 1/S req/s does between requests: on a virtual
machine the CPU caches go cold in that time, and the same code runs several
times slower.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

from tokenomy.caps import CapsPolicy
from tokenomy.caps.allowance import Allowances
from tokenomy.caps.config import CapsConfig
from tokenomy.caps.counters import CounterBackend
from tokenomy.caps.memory import MemoryCounters
from tokenomy.caps.model import budget_from, limit_from
from tokenomy.caps.redis import RedisCounters
from tokenomy.caps.resp import Pipe
from tokenomy.ledger import open_store
from tokenomy.pipeline.context import OPENAI, Call
from tokenomy.pipeline.meter import Meter
from tokenomy.pricing import PriceBook
from tokenomy.usage import Usage


def call(i: int) -> Call:
    body = {"model": "gpt-4o", "max_tokens": 64,
            "messages": [{"role": "system", "content": "You are terse."},
                         {"role": "user", "content": f"Question number {i}: what is 2 + 2?"}]}  # fmt: skip
    c = Call(OPENAI, "chat", "/v1/chat/completions", body, {})
    rec = c.record
    rec.requested_model = rec.served_model = "gpt-4o"
    rec.key_id, rec.team, rec.org = "k1", "search", "acme"
    return c


def pct(xs: list[float], p: float) -> float:
    return statistics.quantiles(xs, n=100)[int(p) - 1] if len(xs) > 1 else xs[0]


async def measure(
    name: str, backend: CounterBackend | None, n: int, defined: bool, gap: float = 0.0
) -> None:
    with tempfile.TemporaryDirectory() as d:
        store = open_store(str(Path(d) / "ledger.db"))
        store.migrate()
        prices = PriceBook()
        p = CapsPolicy(store, prices, CapsConfig(), backend=backend or MemoryCounters())
        if defined:
            p.store.save_budget(budget_from({"name": "team", "scope": {"team": "search"},
                                             "period": "daily", "limit_usd": "1000000"}), new=True)  # fmt: skip
            p.store.save_limit(limit_from({"name": "key", "scope": {"key": "each"},
                                           "rpm": 10**9, "tpm": 10**12}), new=True)  # fmt: skip
        await p.start(background=False)
        meter = Meter(prices)
        reserve, settle = [], []
        for i in range(n + 200):
            if gap:
                await asyncio.sleep(gap)
            c = call(i)
            t0 = time.perf_counter()
            await p.reserve(c)
            t1 = time.perf_counter()
            meter(c, Usage(input_tokens=20, output_tokens=10))
            t2 = time.perf_counter()
            await p.settle(c, c.record)
            t3 = time.perf_counter()
            if i >= 200:  # warm-up excluded
                reserve.append((t1 - t0) * 1e6)
                settle.append((t3 - t2) * 1e6)
        await p.stop()
        store.close()
    for label, xs in (("reserve", reserve), ("settle", settle)):
        print(f"| {name} | {label} | {pct(xs, 50):.0f} | {pct(xs, 90):.0f} | {pct(xs, 99):.0f} |")


async def pings(url: str, n: int, gap: float) -> None:
    """A PING over the gateway's own connection (`resp.Pipe`), alone and 0.2 ms after
    the wake-up a gateway sends when a request arrives (`Pipe.nudge`; 0.2 ms of
    busy work stands in for reading and resolving the request)."""
    pipe = Pipe(url)
    await pipe.call("PING")
    for woken in (False, True):
        rtt = []
        for _ in range(n):
            if gap:
                await asyncio.sleep(gap)
            if woken:
                pipe.nudge()
                until = time.perf_counter() + 0.0002
                while time.perf_counter() < until:
                    pass
            t0 = time.perf_counter()
            await pipe.call("PING")
            rtt.append((time.perf_counter() - t0) * 1e6)
        label = "after a wake-up" if woken else "alone"
        print(f"| (a PING over resp.Pipe, {label}) | round trip | {pct(rtt, 50):.0f} "
              f"| {pct(rtt, 90):.0f} | {pct(rtt, 99):.0f} |")  # fmt: skip
    await pipe.close()


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    ap.add_argument("-n", type=int, default=5000)
    ap.add_argument("--gap", type=float, default=0.0, help="seconds idle before each request")
    args = ap.parse_args()
    gap = args.gap
    print("| caps | step | p50 µs | p90 µs | p99 µs |\n|---|---|---|---|---|")
    await measure("none defined", None, args.n, defined=False, gap=gap)
    await measure("memory: 1 budget + 1 limit", MemoryCounters(), args.n, defined=True, gap=gap)
    import redis.asyncio as aioredis

    ping = aioredis.Redis.from_url(args.redis)
    rtt = []
    for _ in range(args.n):
        if gap:
            await asyncio.sleep(gap)
        t0 = time.perf_counter()
        await ping.ping()
        rtt.append((time.perf_counter() - t0) * 1e6)
    await ping.aclose()
    print(f"| (a bare Redis PING) | round trip | {pct(rtt, 50):.0f} | {pct(rtt, 90):.0f} "
          f"| {pct(rtt, 99):.0f} |")  # fmt: skip
    await pings(args.redis, args.n, gap)
    prefix = f"tk_bench_{secrets.token_hex(4)}:"
    try:
        await measure("redis, every check (allowance 0): 1 budget + 1 limit",
                      RedisCounters(args.redis, prefix=prefix), args.n, defined=True, gap=gap)  # fmt: skip
        cfg = CapsConfig()
        allowances = Allowances(RedisCounters(args.redis, prefix=prefix), size=cfg.allowance,
                                idle=cfg.allowance_idle, lease=cfg.lease)  # fmt: skip
        await measure("redis with allowances: 1 budget + 1 limit", allowances, args.n,
                      defined=True, gap=gap)  # fmt: skip
    finally:
        import redis

        client = redis.Redis.from_url(args.redis)
        keys = list(client.scan_iter(match=prefix + "*"))
        if keys:
            client.delete(*keys)
        client.close()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
