"""Exact-cache costs: backend lookups at 100,000 entries, and the gateway's
request path with the cache off, on a miss and on a hit.

    .venv/bin/python benchmarks/cache_exact.py            # SQLite; about a minute
    .venv/bin/python benchmarks/cache_exact.py --redis redis://127.0.0.1:6379/0
    .venv/bin/python benchmarks/cache_exact.py --entries 1000 --semantic   # the stage only

The gateway part runs `Gateway.handle` in process against the fake upstream on
loopback (no client HTTP), so it shows what the cache stage adds or removes, not
a network round trip. Figures are milliseconds per request, one process.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from tokenomy.cache.redis import RedisCacheStore
from tokenomy.cache.sqlite import SQLiteCacheStore
from tokenomy.cache.store import CacheStore, Entry
from tokenomy.config import Deployment, PriceConfig, Settings
from tokenomy.gateway import Gateway
from tokenomy.keys import mint_key
from tokenomy.pipeline.context import Call
from tokenomy.testing import FakeOptions, FakeUpstream, serve_in_thread
from tokenomy.usage import Usage

TTL = 86400.0


def pct(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(q * len(s)))]


def line(name: str, samples_ms: list[float]) -> str:
    return (
        f"| {name} | {statistics.median(samples_ms):.3f} | {pct(samples_ms, 0.99):.3f} "
        f"| {len(samples_ms):,} |"
    )


def entry(i: int, body: bytes) -> Entry:
    return Entry(
        namespace=f"team:t{i % 50}",
        key=f"{i:064x}",
        api="openai",
        body=body,
        usage=Usage(input_tokens=200, output_tokens=100),
        cost_usd=Decimal("0.0015"),
        served_model="gpt-4o",
        request_id=f"req_{i}",
        created=time.time(),
    )


async def timed(fn: Callable[[], Awaitable[object]], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        await fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


async def backend_bench(name: str, store: CacheStore, entries: int, probes: int) -> list[str]:
    body = b'{"choices":[{"message":{"content":"' + b"x" * 1000 + b'"}}]}'
    t0 = time.perf_counter()
    for i in range(entries):
        await store.put(entry(i, body), TTL)
    fill = time.perf_counter() - t0
    rows = [f"| {name}: put while filling to {entries:,} | {fill / entries * 1000:.3f} | | |"]
    rng = [secrets.randbelow(entries) for _ in range(probes)]
    it = iter(rng)

    async def hit() -> object:
        i = next(it)
        return await store.get(f"team:t{i % 50}", f"{i:064x}", time.time())

    rows.append(line(f"{name}: get (hit) at {entries:,} entries", await timed(hit, probes)))

    async def miss() -> object:
        return await store.get("team:t1", secrets.token_hex(32), time.time())

    rows.append(line(f"{name}: get (miss)", await timed(miss, probes)))
    return rows


async def one_gateway(dep: Deployment, db: Path, cache: dict[str, Any], n: int) -> list[str]:
    label = "cache off"
    if cache:
        label = "semantic on" if cache.get("semantic") else "cache on"
    gw = Gateway(Settings(db=str(db), deployments=(dep,), cache=cache))
    secret, rec = mint_key(team="bench")
    gw.store.create_key(rec)
    headers = {"authorization": f"Bearer {secret}"}
    served: Counter[str] = Counter()

    async def ask(content: Any) -> None:
        body = {"model": "gpt-4o", "temperature": 0,
                "messages": [{"role": "user", "content": content}]}  # fmt: skip
        call = Call("openai", "chat", "/v1/chat/completions", body, headers)
        await gw.handle(call)
        served[call.response_headers.get("x-tokenomy-cache", "-")] += 1

    def words() -> str:
        return " ".join(secrets.token_hex(3) for _ in range(8)) + "?"

    await ask("warm up")
    rows = [line(f"gateway, {label}: a new request (upstream call)",
                 await timed(lambda: ask(words()), n))]  # fmt: skip
    if cache:
        await ask("repeat me")
        hits = await timed(lambda: ask("repeat me"), n)
        rows.append(line(f"gateway, {label}: a repeat (exact hit, no upstream)", hits))
    if cache.get("semantic"):
        # the same words as content parts: another exact key, the same question
        served.clear()
        parts = [{"type": "text", "text": " repeat me "}]
        sem = await timed(lambda: ask(parts), n)
        rows.append(line(f"gateway, {label}: an equivalent request ({dict(served)})", sem))
    await gw.close()
    return rows


async def gateway_bench(fake_url: str, tmp: Path, n: int, semantic: bool) -> list[str]:
    dep = Deployment(
        "gpt-4o",
        "openai",
        base_url=fake_url + "/v1",
        api_key="sk-fake",
        price=PriceConfig(Decimal("2.5"), Decimal("10")),
    )
    rows = await one_gateway(dep, tmp / "off.db", {}, n)
    rows += await one_gateway(dep, tmp / "on.db", {"enabled": True}, n)
    if semantic:
        cache = {"enabled": True, "semantic": {"enabled": True, "target_wrong_hit_rate": 0.05}}
        rows += await one_gateway(dep, tmp / "sem.db", cache, n)
    return rows


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--entries", type=int, default=100_000)
    ap.add_argument("--probes", type=int, default=5_000)
    ap.add_argument("--requests", type=int, default=500)
    ap.add_argument("--redis", default=None, help="also measure this Redis")
    ap.add_argument("--semantic", action="store_true",
                    help="also the gateway with the semantic cache on (needs the semantic extra)")  # fmt: skip
    args = ap.parse_args()
    rows = ["| operation | p50 ms | p99 ms | samples |", "|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        store = SQLiteCacheStore(str(tmp / "c.db"), max_entries=args.entries * 2, max_bytes=10**10)
        rows += await backend_bench("sqlite", store, args.entries, args.probes)
        await store.close()
        if args.redis:
            prefix = f"tk_bench_{os.getpid()}:"
            rstore = RedisCacheStore(
                args.redis, prefix=prefix, max_entries=args.entries * 2, ttl=TTL
            )
            rows += await backend_bench("redis", rstore, args.entries, args.probes)
            await rstore.clear()
            await rstore.close()
        with serve_in_thread(FakeUpstream(FakeOptions(api_key="sk-fake"))) as url:
            rows += await gateway_bench(url, tmp, args.requests, args.semantic)
    print("\n".join(rows))


if __name__ == "__main__":
    asyncio.run(main())
