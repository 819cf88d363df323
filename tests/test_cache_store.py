"""Both cache backends against the same contract: real SQLite, the local Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from tokenomy.cache.redis import RedisCacheStore
from tokenomy.cache.sqlite import SQLiteCacheStore
from tokenomy.cache.store import CacheStore, CacheUnavailable, Entry
from tokenomy.usage import Usage

TTL = 3600.0


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[CacheStore]:
    store: CacheStore
    if request.param == "sqlite":
        store = SQLiteCacheStore(str(tmp_path / "c.db"), max_entries=5, max_bytes=10_000)
    else:
        url = request.getfixturevalue("redis_url")
        prefix = request.getfixturevalue("redis_prefix")
        store = RedisCacheStore(url, prefix=prefix, max_entries=5, ttl=TTL)
    yield store
    await store.close()


def entry(ns: str, key: str, *, created: float | None = None, body: bytes = b'{"x":1}',
          vector: bytes | None = None) -> Entry:  # fmt: skip
    return Entry(
        namespace=ns,
        key=key,
        api="openai",
        body=body,
        usage=Usage(
            input_tokens=10,
            output_tokens=5,
            cache_read_tokens=2,
            audio_input_tokens=3,
            audio_output_tokens=1,
            web_search_requests=2,
        ),
        cost_usd=Decimal("0.000123"),
        served_model="gpt-4o",
        request_id="req_" + key,
        created=time.time() if created is None else created,
        partition="p1" if vector else None,
        text="what is it" if vector else None,
        vector=vector,
    )


async def test_round_trip(backend: CacheStore) -> None:
    e = entry("team:a", "k1")
    await backend.put(e, TTL)
    got = await backend.get("team:a", "k1", time.time())
    assert got == e
    assert isinstance(got.cost_usd, Decimal) and got.usage.cache_read_tokens == 2
    assert (got.usage.audio_input_tokens, got.usage.web_search_requests) == (3, 2)


async def test_namespaces_are_separate(backend: CacheStore) -> None:
    await backend.put(entry("team:a", "k1"), TTL)
    assert await backend.get("team:b", "k1", time.time()) is None
    await backend.put(entry("team:b", "k1", body=b'{"b":1}'), TTL)
    a = await backend.get("team:a", "k1", time.time())
    b = await backend.get("team:b", "k1", time.time())
    assert a is not None and b is not None and (a.body, b.body) == (b'{"x":1}', b'{"b":1}')
    await backend.put(entry("team:a:x", "k1"), TTL)  # a namespace that starts alike
    assert await backend.clear("team:a") == 1
    assert await backend.get("team:a", "k1", time.time()) is None
    assert await backend.get("team:b", "k1", time.time()) is not None
    assert await backend.get("team:a:x", "k1", time.time()) is not None


async def test_ttl_expiry(backend: CacheStore) -> None:
    await backend.put(entry("ns", "short"), 0.2)
    await backend.put(entry("ns", "long"), TTL)
    assert await backend.get("ns", "short", time.time()) is not None
    await asyncio.sleep(0.3)
    assert await backend.get("ns", "short", time.time()) is None
    assert await backend.get("ns", "long", time.time()) is not None


async def test_oldest_entries_are_evicted_past_max_entries(backend: CacheStore) -> None:
    now = time.time()
    for i in range(7):
        await backend.put(entry("ns", f"k{i}", created=now - 100 + i), TTL)
    alive = [i for i in range(7) if await backend.get("ns", f"k{i}", time.time()) is not None]
    assert alive == [2, 3, 4, 5, 6]
    assert (await backend.stats()).entries == 5


async def test_replacing_an_entry_keeps_one(backend: CacheStore) -> None:
    await backend.put(entry("ns", "k", body=b'{"v":1}'), TTL)
    await backend.put(entry("ns", "k", body=b'{"v":2}'), TTL)
    got = await backend.get("ns", "k", time.time())
    assert got is not None and got.body == b'{"v":2}'
    assert (await backend.stats()).entries == 1


async def test_semantic_entries_since(backend: CacheStore) -> None:
    now = time.time()
    vec = bytes(range(16))
    await backend.put(entry("ns", "old", created=now - 10, vector=vec), TTL)
    await backend.put(entry("ns", "new", created=now - 1, vector=vec), TTL)
    await backend.put(entry("ns", "plain", created=now), TTL)  # no vector
    await backend.put(entry("other", "x", created=now, vector=vec), TTL)
    rows = await backend.semantic_since("ns", 0.0, time.time())
    assert sorted(r.key for r in rows) == ["new", "old"]
    assert {(r.partition, r.text, r.vector) for r in rows} == {("p1", "what is it", vec)}
    newer = await backend.semantic_since("ns", now - 5, time.time())
    assert [r.key for r in newer] == ["new"]
    assert await backend.semantic_namespaces(time.time()) == ["ns", "other"]


async def test_semantic_rows_known_are_left_out(backend: CacheStore) -> None:
    now = time.time()
    vec = bytes(range(16))
    await backend.put(entry("ns", "a", created=now - 2, vector=vec), TTL)
    await backend.put(entry("ns", "b", created=now - 1, vector=vec), TTL)
    rows = await backend.semantic_since("ns", now - 5, time.time(), {"a": now - 2})
    assert [(r.key, r.vector) for r in rows] == [("b", vec)]
    # a key known with another created time was replaced since: read again
    rows = await backend.semantic_since("ns", now - 5, time.time(), {"a": now - 9, "b": now - 1})
    assert [r.key for r in rows] == ["a"]
    assert (
        await backend.semantic_since("ns", now - 5, time.time(), {"a": now - 2, "b": now - 1}) == []
    )


async def test_sqlite_total_bytes_limit(tmp_path: Path) -> None:
    store = SQLiteCacheStore(str(tmp_path / "c.db"), max_entries=100, max_bytes=250)
    now = time.time()
    for i in range(5):
        await store.put(entry("ns", f"k{i}", created=now + i, body=b"x" * 100), TTL)
    stats = await store.stats()
    assert stats.entries == 2 and stats.bytes is not None and stats.bytes <= 250
    assert await store.get("ns", "k4", time.time()) is not None
    assert await store.get("ns", "k2", time.time()) is None
    await store.close()


async def test_sqlite_evicts_for_a_large_entry_in_few_rounds(tmp_path: Path) -> None:
    store = SQLiteCacheStore(str(tmp_path / "c.db"), max_entries=1000, max_bytes=40_000)
    now = time.time()
    for i in range(100):
        await store.put(entry("ns", f"k{i}", created=now + i, body=b"x" * 300), TTL)
    rounds: list[str] = []  # the limits are read once per round, and once at the end
    store._conn.set_trace_callback(
        lambda sql: rounds.append(sql) if sql.startswith("SELECT entries, bytes") else None
    )
    await store.put(entry("ns", "big", created=now + 200, body=b"y" * 20_000), TTL)
    stats = await store.stats()
    assert stats.bytes is not None and 20_000 < stats.bytes <= 40_000
    assert await store.get("ns", "big", time.time()) is not None
    assert await store.get("ns", "k99", time.time()) is not None  # the newest stay
    assert await store.get("ns", "k0", time.time()) is None
    assert 2 <= len(rounds) <= 3  # not one round per evicted entry (~60)
    await store.close()


async def test_a_semantic_load_never_holds_up_lookups(tmp_path: Path) -> None:
    import threading

    store = SQLiteCacheStore(str(tmp_path / "c.db"), max_entries=100, max_bytes=100_000)
    await store.put(entry("ns", "k", vector=b"\x00" * 8), TTL)
    entered, release = threading.Event(), threading.Event()
    connect = store._connect

    class Slow:  # a load that takes as long as the test says
        def __init__(self) -> None:
            self.conn = connect()

        def execute(self, *args: object) -> object:
            entered.set()
            release.wait(5)
            return self.conn.execute(*args)  # type: ignore[arg-type]

        def close(self) -> None:
            self.conn.close()

    store._connect = Slow  # type: ignore[assignment, method-assign]  # the reader's only
    load = asyncio.create_task(store.semantic_since("ns", 0.0, time.time()))
    assert await asyncio.to_thread(entered.wait, 5)
    began = time.monotonic()
    assert await store.get("ns", "k", time.time()) is not None  # while the load runs
    assert time.monotonic() - began < 1
    release.set()
    assert [r.key for r in await load] == ["k"]
    await store.close()


async def test_sqlite_failure_is_cache_unavailable(tmp_path: Path) -> None:
    with pytest.raises(CacheUnavailable):
        SQLiteCacheStore(str(tmp_path / "missing" / "c.db"), max_entries=1, max_bytes=1)


@pytest.mark.redis
async def test_redis_down_is_cache_unavailable() -> None:
    store = RedisCacheStore("redis://127.0.0.1:1/0", prefix="x:", max_entries=1, ttl=TTL)
    with pytest.raises(CacheUnavailable):
        await store.get("ns", "k", time.time())
    await store.close()
