"""The counter backends, held to one contract: the in-process one and the Redis (Lua) one."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from gateway_fixtures import closed_port
from tokenomy.caps.counters import (
    CounterBackend,
    CountersUnavailable,
    Hold,
    Window,
    units_to_usd,
    usd_to_units,
)
from tokenomy.caps.memory import TIDY_SLICE, MemoryCounters
from tokenomy.caps.redis import RedisCounters


class Clock:
    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture(
    params=[
        "memory",
        pytest.param("redis", marks=pytest.mark.redis),
        # the scripts through redis-py, as over TLS (rediss://)
        pytest.param("redis-py", marks=pytest.mark.redis),
    ]
)
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[tuple[CounterBackend, Clock]]:
    clock = Clock()
    if request.param == "memory":
        be: CounterBackend = MemoryCounters(clock=clock)
    else:
        url = request.getfixturevalue("redis_url")
        prefix = request.getfixturevalue("redis_prefix")
        be = RedisCounters(url, prefix=prefix, clock=clock, pipe=request.param == "redis")
    yield be, clock
    await be.close()


def test_money_units_round_up_and_back() -> None:
    from decimal import Decimal

    assert usd_to_units(Decimal("0.0000925")) == 92_500
    assert usd_to_units(Decimal("0.00000000001")) == 1  # never below the exact cost
    assert units_to_usd(92_500) == Decimal("0.0000925")
    assert units_to_usd(0) == 0


async def test_all_or_nothing(backend: tuple[CounterBackend, Clock]) -> None:
    be, _ = backend
    a, b = Window("a"), Window("b")
    assert (await be.reserve("r1", [Hold(a, 6, 10), Hold(b, 6, 10)], lease=30)).ok
    res = await be.reserve("r2", [Hold(a, 4, 10), Hold(b, 5, 10)], lease=30)
    assert res.refused == (1,) and res.totals == (6, 6)
    assert await be.totals([a, b]) == [6, 6]  # nothing of r2 was applied
    assert (await be.reserve("r3", [Hold(a, 4, 10), Hold(b, 4, 10)], lease=30)).ok
    assert await be.totals([a, b]) == [10, 10]


async def test_zero_and_unlimited_holds(backend: tuple[CounterBackend, Clock]) -> None:
    be, _ = backend
    w = Window("z")
    assert (await be.reserve("r1", [Hold(w, 0, 5)], lease=30)).ok  # below the limit
    assert (await be.reserve("r2", [Hold(w, 5, 5)], lease=30)).ok
    assert not (await be.reserve("r3", [Hold(w, 0, 5)], lease=30)).ok  # nothing left
    assert (await be.reserve("r4", [Hold(Window("free"), 10**12)], lease=30)).ok


async def test_settle_replaces_the_hold_exactly_once(backend: tuple[CounterBackend, Clock]) -> None:
    be, _ = backend
    w = Window("s")
    await be.reserve("r1", [Hold(w, 100, 1000)], lease=30)
    done = await be.settle("r1", [37])
    assert done.applied and done.totals == (37,)
    again = await be.settle("r1", [37])
    assert not again.applied
    assert await be.totals([w]) == [37]
    await be.reserve("r2", [Hold(w, 50, 1000)], lease=30)
    await be.settle("r2", [0])  # a release
    assert await be.totals([w]) == [37]


async def test_rolling_window_sums_its_buckets_and_drops_old_ones(
    backend: tuple[CounterBackend, Clock],
) -> None:
    be, _ = backend

    def w(bucket: int) -> Window:
        return Window("roll", bucket, span=3, keep=4, ttl=600)

    for bucket, amount in ((10, 1), (11, 2), (12, 4)):
        assert (await be.reserve(f"r{bucket}", [Hold(w(bucket), amount, 7)], lease=30)).ok
    assert not (await be.reserve("x", [Hold(w(12), 1, 7)], lease=30)).ok
    res = await be.reserve("r13", [Hold(w(13), 1, 7)], lease=30)  # bucket 10 left the window
    assert res.ok and res.totals == (6,) and res.oldest == (11,)
    assert await be.totals([w(13), w(14), w(16)]) == [7, 5, 0]
    await be.reserve("r20", [Hold(w(20), 1, 7)], lease=30)  # prunes below 17
    assert await be.totals([Window("roll", 13, span=10)]) == [0]


async def test_leases_expire_and_sweep_exactly_once(backend: tuple[CounterBackend, Clock]) -> None:
    be, clock = backend
    w = Window("lease")
    await be.reserve("dead", [Hold(w, 100, 1000, "usd")], lease=5)
    await be.reserve("alive", [Hold(w, 100, 1000, "usd")], lease=5)
    assert await be.expired() == []
    clock.t += 4
    await be.renew(["alive"], lease=5)
    clock.t += 2
    pending = await be.expired()
    assert [p.rid for p in pending] == ["dead"]
    assert pending[0].holds[0].amount == 100 and pending[0].holds[0].measure == "usd"
    first = await be.sweep(pending[0], [30])  # found in the ledger: settle to its cost
    assert first.applied and first.totals == (130,)
    assert not (await be.sweep(pending[0], None)).applied  # a second sweeper gets nothing
    assert not (await be.settle("dead", [30])).applied  # a late owner neither
    assert await be.totals([w]) == [130]


async def test_a_released_reservation_is_still_charged_by_a_late_owner(
    backend: tuple[CounterBackend, Clock],
) -> None:
    be, clock = backend
    w = Window("late")
    await be.reserve("slow", [Hold(w, 100, 1000)], lease=5)
    clock.t += 6
    (pending,) = await be.expired()
    assert (await be.sweep(pending, None)).applied  # no record yet: released
    assert await be.totals([w]) == [0]
    late = await be.settle("slow", [42])  # the owner was alive after all
    assert late.applied and await be.totals([w]) == [42]
    assert not (await be.settle("slow", [42])).applied


async def test_a_renewed_reservation_is_not_swept(backend: tuple[CounterBackend, Clock]) -> None:
    be, clock = backend
    await be.reserve("r", [Hold(Window("renew"), 1, 10)], lease=5)
    clock.t += 6
    (pending,) = await be.expired()
    await be.renew(["r"], lease=5)
    assert not (await be.sweep(pending, None)).applied


async def test_seed_only_where_nothing_is_counted(backend: tuple[CounterBackend, Clock]) -> None:
    be, _ = backend
    w = Window("seed", 3)
    assert await be.seed(w, 500)
    assert not await be.seed(w, 900)
    assert await be.totals([w]) == [500]
    assert not (await be.reserve("r", [Hold(w, 501, 1000)], lease=30)).ok


async def test_concurrent_reservations_never_exceed_the_limit(
    backend: tuple[CounterBackend, Clock],
) -> None:
    be, _ = backend
    w = Window("race")
    results = await asyncio.gather(
        *(be.reserve(f"r{i}", [Hold(w, 3, 100)], lease=30) for i in range(200))
    )
    assert sum(r.ok for r in results) == 33
    assert await be.totals([w]) == [99]


async def test_large_amounts_stay_exact(backend: tuple[CounterBackend, Clock]) -> None:
    be, _ = backend
    w = Window("big")
    big = 2**53 - 10
    assert (await be.reserve("r", [Hold(w, big - 1, big)], lease=30)).ok
    await be.settle("r", [big - 3])
    assert await be.totals([w]) == [big - 3]
    assert not (await be.reserve("r2", [Hold(w, 4, big)], lease=30)).ok
    assert (await be.reserve("r3", [Hold(w, 3, big)], lease=30)).ok


async def test_expired_counters_are_forgotten_in_memory() -> None:
    """As a Redis key with a TTL expires, an in-memory counter that expired is dropped
    by `tidy`: counters of per-user scopes whose users went away do not pile up."""
    clock = Clock()
    be = MemoryCounters(clock=clock)
    for i in range(3 * TIDY_SLICE):
        await be.reserve(f"r{i}", [Hold(Window(f"user={i}", 1, ttl=120), 1, 10)], lease=30)
        await be.settle(f"r{i}", [1])
    await be.reserve("f", [Hold(Window("forever"), 1), Hold(Window("fresh", ttl=600), 1)], lease=30)
    await be.tidy()
    assert be.counter_count() == 3 * TIDY_SLICE + 2  # none expired yet
    clock.t += 121
    await be.tidy()  # a bounded slice per call...
    assert be.counter_count() > 2
    for _ in range(4):
        await be.tidy()
    assert be.counter_count() == 2  # ...until all expired ones are gone
    assert await be.totals([Window("forever"), Window("fresh", ttl=600)]) == [1, 1]
    assert await be.totals([Window("user=7", 1, ttl=120)]) == [0]  # as before: expired is 0


@pytest.mark.redis
async def test_counter_keys_expire_in_redis(redis_url: str, redis_prefix: str) -> None:
    be = RedisCounters(redis_url, prefix=redis_prefix)
    await be.reserve(
        "r", [Hold(Window("ttl", 1, ttl=0.05), 1, 10), Hold(Window("forever"), 1)], lease=30
    )
    await asyncio.sleep(0.1)
    r = aioredis.Redis.from_url(redis_url)
    try:
        assert not await r.exists(redis_prefix + "c:ttl")
        assert await r.ttl(redis_prefix + "c:forever") == -1
        assert await r.zscore(redis_prefix + "rx", "r") is not None
    finally:
        await r.aclose()
        await be.close()


async def test_unreachable_redis_fails_fast() -> None:
    be = RedisCounters(f"redis://127.0.0.1:{closed_port()}/0", timeout=0.2)
    try:
        with pytest.raises(CountersUnavailable):
            await be.reserve("r", [Hold(Window("x"), 1, 10)], lease=30)
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(CountersUnavailable):  # fails fast without trying again
            await be.reserve("r", [Hold(Window("x"), 1, 10)], lease=30)
        assert loop.time() - start < 0.01
    finally:
        await be.close()


@pytest.mark.redis
async def test_redis_rolling_windows_count_as_the_memory_backend_does(
    redis_url: str, redis_prefix: str
) -> None:
    """Redis keeps a running sum per rolling window ('p'); seeded random traffic from
    replicas whose clocks disagree by a bucket (what ``keep = span + 1`` allows for),
    with refusals, settles above, below and to zero, and late settles, must see
    exactly the in-process totals."""
    import random

    rng = random.Random(7)
    clock = Clock()
    memory = MemoryCounters(clock=clock)
    redis_be = RedisCounters(redis_url, prefix=redis_prefix, clock=clock)
    backends: tuple[CounterBackend, CounterBackend] = (memory, redis_be)
    now = 100
    held: dict[str, list[int]] = {}

    def holds(bucket: int, tokens: int) -> list[Hold]:
        return [
            Hold(Window("tok", bucket, 5, 6), tokens, 400),
            Hold(Window("req", bucket, 5, 6), 1, 12),
            Hold(Window("day", 7, 1, 2), tokens),  # one bucket: no running sum
        ]

    try:
        for i in range(1500):
            op = rng.random()
            if op < 0.1:
                now += rng.choice((1, 1, 2, 7))  # 7: the whole window goes by
            elif op < 0.55 or not held:
                bucket = now - rng.choice((0, 0, 0, 1))  # a replica behind
                tokens = rng.choice((0, 5, 20, 60))
                got = [await be.reserve(f"r{i}", holds(bucket, tokens), lease=60)
                       for be in backends]  # fmt: skip
                assert got[0] == got[1], (i, got)
                if got[0].ok:
                    held[f"r{i}"] = [tokens, 1, tokens, bucket]
            elif op < 0.9:
                rid = rng.choice(sorted(held))
                tokens = rng.choice((0, held[rid][0], held[rid][0] // 2, held[rid][0] + 9))
                actual = [tokens, rng.choice((0, 1)), tokens]
                held_bucket = held.pop(rid)[3]
                # the total of a reservation's window, while that window is recent
                # (the backends drop older buckets alike only up to a bucket behind)
                recent = held_bucket >= now - 1
                want = [recent, recent, True]
                settled = [await be.settle(rid, actual, want=want) for be in backends]
                assert settled[0] == settled[1], (i, settled)
            reader = now - rng.choice((0, 1))
            windows = [Window("tok", reader, 5, 6), Window("req", reader, 5, 6)]
            totals = [await be.totals(windows) for be in backends]
            assert totals[0] == totals[1], (i, totals)
    finally:
        await redis_be.close()


async def test_a_late_write_into_a_rolling_window_counts_at_once(
    backend: tuple[CounterBackend, Clock],
) -> None:
    # Redis answers a second reader in the same bucket from its running sum ('p'):
    # a settle or a seed into an older bucket of the window must show in the next
    # read. (No totals asked of the settles: reading the window of an older bucket
    # makes Redis recount it, which would hide a wrong sum.)
    be, _ = backend

    def tok(bucket: int, amount: int) -> list[Hold]:
        return [Hold(Window("tok", bucket, 5, 6), amount, 1000)]

    async def admitted(rid: str) -> tuple[tuple[int, ...], tuple[int | None, ...]]:
        res = await be.reserve(rid, tok(102, 1), lease=60)
        assert res.ok
        return res.totals, res.oldest

    assert (await be.reserve("r1", tok(100, 0), lease=60)).ok  # nothing counted yet
    assert (await be.reserve("r2", tok(101, 5), lease=60)).ok
    assert await admitted("r3") == ((5,), (101,))
    await be.settle("r2", [0], want=[False])  # the window's oldest bucket empties
    assert await admitted("r4") == ((1,), (102,))
    await be.settle("r1", [7], want=[False])  # a bucket older than any counted so far
    assert await admitted("r5") == ((9,), (100,))
    assert await be.seed(Window("tok", 99, 5, 6), 50)  # a bucket nobody wrote
    assert await be.totals([Window("tok", 102, 5, 6)]) == [60]
    assert await admitted("r6") == ((60,), (99,))
