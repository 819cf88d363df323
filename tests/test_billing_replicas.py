"""A prepaid balance drained by two gateway processes at once never goes negative.

The replicas share one PostgreSQL ledger and one Redis (the caps' harness in
``test_caps_replicas.py``): 500 concurrent requests from one customer, split
between them, then 300 more, 30 at a time, against a balance that pays for a
few dozen.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import aiohttp
import httpx2 as httpx
import pytest

from test_billing_gateway import drain_check
from test_caps_replicas import AUTH, Replicas, Reply, all_returned, replicas, upstream
from tokenomy.caps.counters import usd_to_units
from tokenomy.ledger import open_store

__all__ = ["upstream"]  # the fake upstream process, a fixture of this module too

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]


@pytest.fixture
def pair(upstream: str, tmp_path: Path, pg_url: str, redis_url: str) -> Iterator[Replicas]:
    with replicas(upstream, tmp_path, pg_url, redis_url) as r:
        yield r


def admin(r: Replicas, path: str, body: dict[str, object]) -> dict[str, object]:
    resp = httpx.post(f"{r.urls[0]}/admin/{path}", json=body, headers=AUTH, timeout=10)
    assert resp.status_code in (200, 201), resp.text
    return dict(resp.json())


async def burst(r: Replicas, customer: str, n: int, at_once: int) -> list[Reply]:
    """``n`` requests, ``at_once`` in flight, alternating between the replicas."""
    timeout = aiohttp.ClientTimeout(total=60)
    connector = aiohttp.TCPConnector(limit=at_once)
    gate = asyncio.Semaphore(at_once)
    async with aiohttp.ClientSession(headers=AUTH, timeout=timeout, connector=connector) as s:

        async def one(i: int) -> Reply:
            async with gate:
                return await send(i)

        async def send(i: int) -> Reply:
            body = {"model": "gpt-4o", "max_tokens": 10, "stream": i % 5 == 0, "user": customer,
                    "messages": [{"role": "user", "content": "hello world [[fake:delay_ms=40]]"}]}  # fmt: skip
            async with s.post(f"{r.urls[i % 2]}/v1/chat/completions", json=body) as resp:
                text = await resp.text()
                return Reply(resp.status, {k.lower(): v for k, v in resp.headers.items()}, text)

        return list(await asyncio.gather(*(one(i) for i in range(n))))


def test_a_balance_drained_by_two_replicas_never_goes_negative(pair: Replicas) -> None:
    admin(pair, "plans", {"name": "pro", "markup_pct": "30"})
    admin(pair, "credits/acme/topup", {"amount": "0.005", "note": "prepaid"})
    with httpx.Client(headers=AUTH, timeout=10) as http:
        r = http.patch(f"{pair.urls[0]}/admin/customers/acme", json={"plan": "pro"})
        assert r.status_code == 200
        # The other replica has never seen acme: it loads the account on first use.
        assert http.get(f"{pair.urls[1]}/admin/credits/acme").json()["plan"] == "pro"

    # All at once, then a steady stream until the balance is spent.
    replies = asyncio.run(burst(pair, "acme", 500, 500))
    replies += asyncio.run(burst(pair, "acme", 300, 30))
    # The last refusals may have come while others still held their worst cases:
    # one at a time until refused, so that nothing is in flight at the end.
    for _ in range(20):
        replies += asyncio.run(burst(pair, "acme", 1, 1))
        if replies[-1].status == 429:
            break
    ok = [x for x in replies if x.status == 200]
    refused = [x for x in replies if x.status == 429]
    assert len(ok) + len(refused) == len(replies), {
        x.text for x in replies if x.status not in (200, 429)
    }
    assert replies[-1].status == 429
    assert all("insufficient_quota" in x.text for x in refused)
    assert 20 <= len(ok) <= 60, len(ok)
    served = {x.headers["x-tokenomy-request-id"] for x in ok}

    with contextlib.closing(open_store(pair.db)) as store:
        balance, debits = drain_check(store, "acme")
        admitted = {
            r.request_id
            for r in store.list_records(limit=10_000)
            if r.user == "acme" and r.status == 200
        }
    assert admitted == served and debits == len(served)
    assert Decimal(0) <= balance < Decimal("0.0003")  # drained to less than one worst case
    (debited,) = pair.ledger(
        "SELECT credited - balance FROM billing_customers WHERE customer = 'acme'"
    )[0]
    with contextlib.closing(pair.redis()) as client:
        counter = client.hgetall(f"{pair.prefix}c:credit:acme")
    # One counter for both replicas, and it agrees with the ledger to the nano-dollar.
    assert {int(k): int(v) for k, v in counter.items()} == {0: usd_to_units(debited)}
    assert all_returned(pair)
