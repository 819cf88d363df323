"""Caps hold across replicas: two gateway processes share one PostgreSQL ledger and
one Redis, with the fake upstream behind them.

- 500 concurrent requests against a budget that pays for about 100: settled spend
  never passes it, every admitted request is in the ledger, counters equal the ledger;
- the same with a tokens-per-minute limit;
- SIGKILL of one replica under load: its reservations run out and the survivor's
  sweeper settles them from the ledger, counting nothing twice.

(Periods rolling over are shown with an injected clock in test_caps_policy.py and
test_caps_redis.py.)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import httpx2 as httpx
import psycopg
import pytest
import redis
import yaml

from conftest import pg_schema
from gateway_fixtures import MASTER_KEY, UPSTREAM_KEY, closed_port, wait_healthy
from tokenomy.caps.counters import usd_to_units

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

AUTH = {"authorization": f"Bearer {MASTER_KEY}"}


@dataclass
class Replicas:
    urls: list[str]
    procs: list[subprocess.Popen[bytes]]
    db: str
    redis_url: str
    prefix: str
    allowance: int = 16

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url)

    def ledger(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.db) as conn:
            return conn.execute(sql, params).fetchall()


def _launch(cfg: Path, db: str, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "TOKENOMY_MASTER_KEY": MASTER_KEY}
    return subprocess.Popen(
        [sys.executable, "-m", "tokenomy", "serve", "--config", str(cfg), "--db", db,
         "--port", str(port), "--log-level", "warning"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip


@contextlib.contextmanager
def replicas(
    fake_url: str, tmp_path: Path, pg_url: str, redis_url: str, allowance: int = 16
) -> Iterator[Replicas]:
    prefix = f"tk_test_{secrets.token_hex(6)}:"
    cfg = tmp_path / "tokenomy.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "server": {"drain_timeout": 5},
                "redis_url": redis_url,
                "caps": {"redis_prefix": prefix, "lease": 2, "sweep_interval": 0.2,
                         "reload_interval": 0.2, "allowance": allowance,
                         "allowance_idle": 0.3},
                "models": [{"name": "gpt-4o", "provider": "openai", "base_url": fake_url + "/v1",
                            "api_key": UPSTREAM_KEY}],
            }
        )
    )  # fmt: skip
    with pg_schema(pg_url) as db:
        with psycopg.connect(db, autocommit=True):
            pass
        # Migrate once up front, so the two replicas do not race their first start.
        from tokenomy.ledger import open_store

        with open_store(db) as store:
            store.migrate()
        ports = [closed_port(), closed_port()]
        procs = [_launch(cfg, db, p) for p in ports]
        urls = [f"http://127.0.0.1:{p}" for p in ports]
        try:
            deadline = time.monotonic() + 30
            for url, proc in zip(urls, procs, strict=True):
                wait_healthy(url, proc, deadline)
            yield Replicas(urls, procs, db, redis_url, prefix, allowance)
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in procs:
                try:
                    _, err = proc.communicate(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    _, err = proc.communicate()
                assert b"Traceback" not in err, err.decode()[-3000:]
                assert b"caps unavailable" not in err, err.decode()[-3000:]
            client = redis.Redis.from_url(redis_url)
            keys = list(client.scan_iter(match=prefix + "*", count=1000))
            if keys:
                client.delete(*keys)
            client.close()


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    """The fake upstream in a process of its own: the test process only drives the load."""
    port = closed_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tokenomy.testing.fake_upstream", "--port", str(port),
         "--api-key", UPSTREAM_KEY],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            httpx.get(url + "/v1/models", headers={"authorization": f"Bearer {UPSTREAM_KEY}"})
            break
        except httpx.TransportError:
            assert proc.poll() is None and time.monotonic() < deadline, (
                "fake upstream did not start"
            )
            time.sleep(0.05)
    try:
        yield url
    finally:
        proc.kill()
        proc.wait(timeout=10)


@pytest.fixture(scope="module", params=[16, 0], ids=["allowances", "strict"])
def pair(
    request: pytest.FixtureRequest,
    upstream: str,
    tmp_path_factory: pytest.TempPathFactory,
    pg_url: str,
    redis_url: str,
) -> Iterator[Replicas]:
    """Two replicas: with allowances (the default), and with every check in Redis."""
    tmp = tmp_path_factory.mktemp("replicas")
    with replicas(upstream, tmp, pg_url, redis_url, allowance=request.param) as r:
        yield r


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    text: str


def create(r: Replicas, what: str, body: dict[str, Any]) -> dict[str, Any]:
    resp = httpx.post(f"{r.urls[0]}/admin/{what}", json=body, headers=AUTH, timeout=10)
    assert resp.status_code == 201, resp.text
    time.sleep(0.6)  # the other replica reloads within caps.reload_interval
    return dict(resp.json())


def one_by_one(r: Replicas, tag: str, n: int) -> list[str]:
    """``n`` requests one after another, alternating between the replicas; their ids."""
    headers = {**AUTH, "x-tokenomy-tags": f"test={tag}"}
    body = {"model": "gpt-4o", "max_tokens": 10,
            "messages": [{"role": "user", "content": "hello world [[fake:delay_ms=40]]"}]}  # fmt: skip
    ids = []
    for i in range(n):
        resp = httpx.post(f"{r.urls[i % 2]}/v1/chat/completions", json=body, headers=headers,
                          timeout=10)  # fmt: skip
        assert resp.status_code == 200, resp.text
        ids.append(resp.headers["x-tokenomy-request-id"])
    return ids


async def burst(r: Replicas, tag: str, n: int = 500) -> list[Reply]:
    """``n`` requests at once, alternating between the replicas (aiohttp: a client
    that keeps up with 500 connections)."""
    headers = {**AUTH, "x-tokenomy-tags": f"test={tag}"}
    timeout = aiohttp.ClientTimeout(total=30)
    connector = aiohttp.TCPConnector(limit=n)
    async with aiohttp.ClientSession(headers=headers, timeout=timeout, connector=connector) as s:

        async def one(i: int) -> Reply:
            body = {"model": "gpt-4o", "max_tokens": 10, "stream": i % 5 == 0,
                    "messages": [{"role": "user", "content": "hello world [[fake:delay_ms=40]]"}]}  # fmt: skip
            async with s.post(f"{r.urls[i % 2]}/v1/chat/completions", json=body) as resp:
                text = await resp.text()
                return Reply(resp.status, {k.lower(): v for k, v in resp.headers.items()}, text)

        return list(await asyncio.gather(*(one(i) for i in range(n))))


def open_reservations(r: Replicas) -> int:
    with contextlib.closing(r.redis()) as client:
        return int(client.zcard(r.prefix + "rx"))


def all_returned(r: Replicas, within: float = 10.0) -> bool:
    """Wait until no reservation is open: the replicas return their idle
    allowances (``allowance_idle``), and a dead one's run out and are swept."""
    deadline = time.monotonic() + within
    while open_reservations(r) and time.monotonic() < deadline:
        time.sleep(0.05)
    return open_reservations(r) == 0


def from_allowances(r: Replicas, ids: list[str]) -> int:
    """How many of the requests ``ids`` were admitted from an allowance."""
    sql = "SELECT count(*) FROM requests WHERE request_id = ANY(%s) AND decisions->'caps' ? 'allowances'"
    return int(r.ledger(sql, ids)[0][0])


def test_500_concurrent_requests_never_overspend_a_shared_budget(pair: Replicas) -> None:
    limit = Decimal("0.00925")  # about 100 requests at $0.0000925
    b = create(pair, "budgets", {"name": "shared", "scope": {"tag:test": "budget"},
                                 "period": "daily", "limit_usd": str(limit)})  # fmt: skip
    # A few first, one by one: with allowances, each replica holds some when the burst
    # comes (made in the background after its first request).
    first = one_by_one(pair, "budget", 4)
    replies = asyncio.run(burst(pair, "budget"))
    ok = [x for x in replies if x.status == 200]
    refused = [x for x in replies if x.status == 429]
    assert len(ok) + len(refused) == 500, {x.text for x in replies if x.status not in (200, 429)}
    assert all("budget_exceeded" in x.text for x in refused)
    assert 56 <= len(ok) <= 96, len(ok)
    ids = first + [x.headers["x-tokenomy-request-id"] for x in ok]
    rows = dict(
        pair.ledger("SELECT request_id, cost_usd FROM requests WHERE request_id = ANY(%s)", ids)
    )
    assert set(rows) == set(ids)  # every admitted request has its ledger record
    spent = sum(rows.values(), Decimal(0))
    assert spent <= limit
    all_rows = pair.ledger("SELECT cost_usd FROM requests WHERE tags->>'test' = 'budget'")
    counted = sum(usd_to_units(c) for (c,) in all_rows if c is not None)
    assert all_returned(pair)
    assert (from_allowances(pair, ids) > 0) == (pair.allowance > 0)
    for url in pair.urls:  # both replicas read the one counter: it equals the ledger
        view = httpx.get(f"{url}/admin/budgets/{b['id']}", headers=AUTH).json()
        assert usd_to_units(Decimal(view["usage"]["used_usd"])) == counted


def test_a_tokens_per_minute_limit_holds_across_replicas(pair: Replicas) -> None:
    lim = create(pair, "limits", {"name": "tpm", "scope": {"tag:test": "tpm"}, "tpm": 1300})
    replies = asyncio.run(burst(pair, "tpm"))
    ok = [x for x in replies if x.status == 200]
    refused = [x for x in replies if x.status == 429]
    assert len(ok) + len(refused) == 500, {x.text for x in replies if x.status not in (200, 429)}
    assert 30 <= len(ok) <= 100, len(ok)  # every worst case is held at once: fewer fit
    assert all(x.headers["x-ratelimit-limit-tokens"] == "1300" for x in refused)
    assert all(int(x.headers["retry-after"]) >= 1 for x in refused)
    ids = [x.headers["x-tokenomy-request-id"] for x in ok]
    (used,) = pair.ledger(
        "SELECT sum(input_tokens + output_tokens) FROM requests WHERE request_id = ANY(%s)", ids
    )[0]
    assert used <= 1300
    (everything,) = pair.ledger(
        "SELECT sum(input_tokens + output_tokens) FROM requests WHERE tags->>'test' = 'tpm'"
    )[0]
    assert all_returned(pair)
    with contextlib.closing(pair.redis()) as client:
        buckets = client.hgetall(f"{pair.prefix}c:l:{lim['id']}:tokens:60:")
    buckets.pop(b"p", None)  # the window's running sum, not a bucket
    assert sum(int(v) for v in buckets.values()) == everything == used


async def _load(url: str, stop: asyncio.Event, done: list[str]) -> None:
    headers = {**AUTH, "x-tokenomy-tags": "test=kill"}
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(headers=headers, timeout=timeout) as s:

        async def worker(n: int) -> None:
            i = 0
            while not stop.is_set():
                i += 1
                body = {"model": "gpt-4o", "max_tokens": 10, "stream": (n + i) % 2 == 0,
                        "messages": [{"role": "user", "content": "hi [[fake:delay_ms=150]]"}]}  # fmt: skip
                try:
                    async with s.post(url + "/v1/chat/completions", json=body) as r:
                        text = await r.text()
                        if r.status == 200 and ("[DONE]" in text or '"choices"' in text):
                            done.append(r.headers["x-tokenomy-request-id"])
                except (aiohttp.ClientError, TimeoutError):
                    await asyncio.sleep(0.05)  # the replica is gone

        await asyncio.gather(*(worker(n) for n in range(20)))


def test_sigkill_of_a_replica_leaves_nothing_double_counted(
    upstream: str, tmp_path: Path, pg_url: str, redis_url: str
) -> None:
    with replicas(upstream, tmp_path, pg_url, redis_url) as r:
        b = create(
            r, "budgets", {"name": "all", "scope": {}, "period": "monthly", "limit_usd": "10"}
        )

        async def run() -> tuple[list[str], set[str]]:
            stop, done = asyncio.Event(), []
            tasks = [asyncio.create_task(_load(url, stop, done)) for url in r.urls]
            await asyncio.sleep(1.0)
            r.procs[0].send_signal(signal.SIGKILL)
            await asyncio.sleep(0.05)
            with contextlib.closing(r.redis()) as client:  # the dead replica's, and the
                left = {m.decode() for m in client.zrange(r.prefix + "rx", 0, -1)}  # survivor's
            await asyncio.sleep(0.7)
            stop.set()
            await asyncio.gather(*tasks)
            return done, left

        done, left_at_kill = asyncio.run(run())
        assert r.procs[0].wait(timeout=10) == -signal.SIGKILL
        assert left_at_kill and len(done) > 50
        # The lease (2 s) runs out; the survivor's sweeper settles the dead replica's
        # reservations and allowances from the ledger.
        assert all_returned(r)
        assert from_allowances(r, done) > 0
        rows = r.ledger("SELECT cost_usd FROM requests")
        counted = sum(usd_to_units(c) for (c,) in rows if c is not None)
        view = httpx.get(f"{r.urls[1]}/admin/budgets/{b['id']}", headers=AUTH).json()
        assert usd_to_units(Decimal(view["usage"]["used_usd"])) == counted
        missing = r.ledger("SELECT count(*) FROM requests WHERE request_id = ANY(%s)", done)[0][0]
        assert missing == len(set(done))
