"""Two gateways (replicas) sharing one Redis cache see each other's entries."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import pytest

from cache_helpers import CACHE_HEADER, marker, new_key, upstream_calls
from gateway_fixtures import GW, Fake, gateway_settings, start_gateway
from redis_server import RedisServer
from tokenomy.cache import redis as cache_redis
from tokenomy.cache.redis import RedisCacheStore
from tokenomy.cache.store import CacheUnavailable

pytestmark = pytest.mark.redis

replica = contextlib.contextmanager(start_gateway)


def ask(gw: GW, content: str, key: str | None = None) -> str:
    raw = gw.openai(key).chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": content}], temperature=0
    )
    return str(raw.headers[CACHE_HEADER])


def test_replicas_share_entries_but_not_tenants(
    fake: Fake, fake_llamacpp: Fake, tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    cache = {"enabled": True, "backend": "redis", "redis_prefix": redis_prefix}
    db = str(tmp_path / "ledger.db")  # one ledger (the keys); each replica its own process state
    settings = gateway_settings(db, fake, fake_llamacpp, redis_url=redis_url, cache=cache)
    with replica(settings, fake) as a, replica(settings, fake) as b:
        mark = marker()
        other = new_key(a, team="billing")
        q = f"replicas {mark}"
        assert ask(a, q) == "miss"
        assert ask(b, q) == "hit-exact"  # written by replica one, served by replica two
        assert ask(b, q, other) == "miss"  # another tenant, even through the shared Redis
        assert ask(a, q, other) == "hit-exact"
        assert upstream_calls(a, mark) == 2


async def test_a_stalled_redis_costs_one_timeout_not_one_per_lookup(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cache_redis, "DOWN_FOR", 0.2)
    store = RedisCacheStore(redis_server.url, prefix="c:", max_entries=10, ttl=60, timeout=1.0)
    try:
        assert await store.get("ns", "k", time.time()) is None
        redis_server.pause()  # the kernel still accepts; nothing answers
        with pytest.raises(CacheUnavailable, match="Timeout"):
            await store.get("ns", "k", time.time())
        with pytest.raises(CacheUnavailable, match="a moment ago"):  # not asked again
            await store.get("ns", "k", time.time())
        await asyncio.sleep(0.3)
        # Then one call finds out whether it is back; the others do not wait for it.
        got = await asyncio.gather(
            *(store.get("ns", "k", time.time()) for _ in range(5)), return_exceptions=True
        )
        errors = [str(e) for e in got]
        assert sum("Timeout" in e for e in errors) == 1
        assert sum("a moment ago" in e for e in errors) == 4
        redis_server.resume()
        await asyncio.sleep(0.3)
        assert await store.get("ns", "k", time.time()) is None  # back: asked again
        assert await store.get("ns", "k", time.time()) is None
    finally:
        redis_server.resume()
        await store.close()


def test_a_redis_gone_or_stalled_never_fails_a_request(
    fake: Fake, fake_llamacpp: Fake, tmp_path: Path, redis_server: RedisServer
) -> None:
    cache = {"enabled": True, "backend": "redis"}
    settings = gateway_settings(str(tmp_path / "ledger.db"), fake, fake_llamacpp,
                                redis_url=redis_server.url, cache=cache)  # fmt: skip
    with replica(settings, fake) as gw:
        q = f"outage {marker()}"
        assert ask(gw, q) == "miss"
        assert ask(gw, q) == "hit-exact"
        redis_server.stop()
        assert ask(gw, q) == "miss"  # served by the upstream
        redis_server.start()
        redis_server.pause()
        assert ask(gw, q) == "miss"
        redis_server.resume()
