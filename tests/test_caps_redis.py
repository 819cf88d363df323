"""The caps policy on Redis: two policies in one process stand in for two replicas
(same Redis prefix, same ledger), with an injected clock for periods and leases."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from caps_helpers import Clock, add_budget, chat, finish, ledger_units, policy, use
from tokenomy.caps import CapsPolicy
from tokenomy.caps.redis import RedisCounters
from tokenomy.errors import RateLimited
from tokenomy.ledger import Store, open_store

pytestmark = pytest.mark.redis

T0 = datetime(2025, 6, 30, 23, 59, 50, tzinfo=UTC).timestamp()


@pytest.fixture
def ledger(tmp_path: Path) -> AsyncIterator[Store]:
    with open_store(str(tmp_path / "ledger.db")) as s:
        s.migrate()
        yield s  # type: ignore[misc]


@pytest.fixture
async def two(
    ledger: Store, tmp_path: Path, redis_url: str, redis_prefix: str
) -> AsyncIterator[tuple[CapsPolicy, CapsPolicy, Clock]]:
    clock = Clock(T0)
    other = open_store(str(tmp_path / "ledger.db"))
    ps = [
        policy(
            s, clock, backend=RedisCounters(redis_url, prefix=redis_prefix, clock=clock), lease=5
        )
        for s in (ledger, other)
    ]
    for p in ps:
        await p.start(background=False)
    yield ps[0], ps[1], clock
    for p in ps:
        await p.stop()
    other.close()


async def test_two_replicas_share_one_budget(
    two: tuple[CapsPolicy, CapsPolicy, Clock], ledger: Store
) -> None:
    a, b, _ = two
    bid = await add_budget(a, name="shared", scope={}, period="monthly", limit_usd="0.005")
    await b.reload()
    admitted = []

    async def one(i: int) -> None:
        p = (a, b)[i % 2]
        call = chat(max_tokens=30, content=f"n {i}")
        try:
            await p.reserve(call)
        except RateLimited:
            return
        await asyncio.sleep(0.002)
        admitted.append(await finish(p, ledger, call, 12, 25))

    await asyncio.gather(*(one(i) for i in range(200)))
    assert sum(r.cost_usd for r in admitted if r.cost_usd) <= Decimal("0.005")
    assert len(admitted) >= 10
    (line,) = a.budget_lines(a.store.get_budget(bid))  # type: ignore[arg-type]
    assert await b.backend.totals([line.hold.window]) == [ledger_units(ledger)]


async def test_a_month_rolls_over_on_both(
    two: tuple[CapsPolicy, CapsPolicy, Clock], ledger: Store
) -> None:
    a, b, clock = two
    await add_budget(a, name="m", scope={}, period="monthly", limit_tokens=100)
    await b.reload()
    call = chat(max_tokens=80)
    await a.reserve(call)
    await finish(a, ledger, call, 10, 80)
    with pytest.raises(RateLimited, match="until the period ends in 10s"):
        await b.reserve(chat(max_tokens=80))
    clock.t += 10  # July
    await b.reserve(chat(max_tokens=80))
    with pytest.raises(RateLimited):
        await a.reserve(chat(max_tokens=80))


async def test_the_survivor_sweeps_a_dead_replicas_reservations(
    two: tuple[CapsPolicy, CapsPolicy, Clock], ledger: Store
) -> None:
    a, b, clock = two
    bid = await add_budget(a, name="b", scope={}, period="monthly", limit_usd="1")
    await b.reload()
    committed, lost, live = chat(max_tokens=100), chat(max_tokens=100), chat(max_tokens=100)
    for call in (committed, lost):
        await a.reserve(call)
    await b.reserve(live)
    ledger.insert_records([use(committed, 10, 5)])  # committed; then replica a "dies"
    a._open.clear()
    clock.t += 4
    await b.sweeper.renew()  # b is alive and renews its own
    clock.t += 2
    assert await b.sweeper.sweep_once() == 2
    assert (b.sweeper.settled, b.sweeper.released) == (1, 1)
    await finish(b, ledger, live, 10, 5)
    (line,) = b.budget_lines(b.store.get_budget(bid))  # type: ignore[arg-type]
    assert await b.backend.totals([line.hold.window]) == [ledger_units(ledger)] == [150_000]


async def test_a_new_replica_seeds_only_missing_counters(
    two: tuple[CapsPolicy, CapsPolicy, Clock], ledger: Store, redis_url: str, redis_prefix: str
) -> None:
    a, _, clock = two
    bid = await add_budget(a, name="b", scope={"user": "each"}, period="daily", limit_usd="1")
    call = chat(user="carol", max_tokens=10)
    await a.reserve(call)
    await finish(a, ledger, call, 10, 10)
    # Spend that reached the ledger while no counter existed (say, Redis was flushed):
    dave = chat(user="dave")
    dave.record.ts = clock.t
    ledger.insert_records([use(dave, 100, 100)])
    fresh = policy(
        ledger, clock, backend=RedisCounters(redis_url, prefix=redis_prefix, clock=clock)
    )
    await fresh.start(background=False)
    budget = fresh.store.get_budget(bid)
    assert budget is not None
    for user, units in (("carol", 125_000), ("dave", 1_250_000)):
        (line,) = fresh.budget_lines(budget, f"user={user}")
        assert await fresh.backend.totals([line.hold.window]) == [units]
    await fresh.stop()


async def test_redis_going_away_defers_the_settle_to_the_sweeper(
    two: tuple[CapsPolicy, CapsPolicy, Clock], ledger: Store
) -> None:
    a, b, clock = two
    bid = await add_budget(a, name="b", scope={}, period="monthly", limit_usd="1", fail_mode="open")
    call = chat(max_tokens=100)
    await a.reserve(call)
    rec = use(call, 10, 5)
    ledger.insert_records([rec])
    backend = a.backend
    assert isinstance(backend, RedisCounters)
    backend._down_until = 1e18  # as if Redis had just refused a connection
    await a.settle(call, rec)  # logged, left to its lease
    open_call = chat(max_tokens=1)
    await a.reserve(open_call)
    assert open_call.response_headers["x-tokenomy-caps"] == "fail-open"
    backend._down_until = 0.0
    clock.t += 6
    await b.reload()
    assert await b.sweeper.sweep_once() == 1
    (line,) = b.budget_lines(b.store.get_budget(bid))  # type: ignore[arg-type]
    assert await b.backend.totals([line.hold.window]) == [ledger_units(ledger)]


async def test_an_arriving_request_wakes_redis_only_when_caps_apply(
    two: tuple[CapsPolicy, CapsPolicy, Clock],
) -> None:
    a, _, _ = two
    assert isinstance(a.backend, RedisCounters) and a.backend.pipe is not None
    proto = a.backend.pipe._proto  # opened by start()
    assert proto is not None
    await asyncio.sleep(0.005)
    a.nudge()  # nothing defined: no admission check will follow
    assert not proto.waiting
    await add_budget(a, name="nudged", scope={}, period="daily", limit_usd="1")
    await asyncio.sleep(0.005)
    a.nudge()
    assert [fut for fut, _ in proto.waiting] == [None]  # one PING, its reply dropped
    call = chat()
    await a.reserve(call)  # replies stay in step
    assert not proto.waiting and call.record.decisions["caps"]["reserved_tokens"] > 0
