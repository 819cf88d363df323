"""Allowances: admission from capacity a replica holds ahead (`caps.allowance`),
over the in-process backend standing in for the shared one (the two-replica
tests in test_caps_replicas.py run them on Redis and PostgreSQL)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable, Iterator, Sequence

import pytest

from caps_helpers import Clock, add_budget, chat, ledger_units, policy, use
from tokenomy.caps.allowance import Allowances, allowance_rid, allowance_since
from tokenomy.caps.config import CapsConfig
from tokenomy.caps.counters import CounterBackend, Hold, Reserved, Window
from tokenomy.caps.memory import MemoryCounters
from tokenomy.caps.policy import CapsPolicy
from tokenomy.caps.redis import RedisCounters
from tokenomy.caps.sweeper import Sweeper
from tokenomy.ledger import Store, open_store
from tokenomy.pricing import PriceBook

T0 = 1_750_000_000.0
LEASE = 30.0


class Counted(MemoryCounters):
    """The in-process backend, counting the reservations asked of it."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock=clock)
        self.asked = 0

    async def reserve(self, rid: str, holds: Sequence[Hold], *, lease: float) -> Reserved:
        self.asked += 1
        return await super().reserve(rid, holds, lease=lease)


def tokens(amount: int, *, limit: int | None = 1000, bucket: int = 0, key: str = "t") -> Hold:
    return Hold(Window(key, bucket, 1, 2), amount, limit, "tokens")


async def total(be: CounterBackend, key: str = "t", bucket: int = 0) -> int:
    return (await be.totals([Window(key, bucket, 1, 2)]))[0]


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def inner(clock: Clock) -> Counted:
    return Counted(clock)


@pytest.fixture
async def allow(inner: Counted, clock: Clock) -> AsyncIterator[Allowances]:
    a = Allowances(inner, size=4, idle=5.0, lease=LEASE, clock=clock)
    yield a
    await a.close()


def test_an_allowance_id_says_when_it_was_made() -> None:
    rid = allowance_rid(T0 + 0.7)
    assert allowance_since(rid) == T0 and rid != allowance_rid(T0)
    assert allowance_since("req-123") is None


async def test_after_one_check_in_the_backend_the_next_ones_need_no_round_trip(
    allow: Allowances, inner: Counted
) -> None:
    first = await allow.reserve("r1", [tokens(10)], lease=LEASE)
    assert first.ok and first.via == ()
    await allow.quiet()
    # The allowance: 4 worst cases (40), under 1/8 of what was left (990 // 8).
    assert await total(inner) == 10 + 40 and allow.held() == 1
    asked = inner.asked
    second = await allow.reserve("r2", [tokens(10)], lease=LEASE)
    assert second.ok and len(second.via) == 1 and second.via[0].startswith("allow:")
    assert second.totals == (10,)  # the window before it: r1, not the unused allowance
    assert inner.asked == asked  # admitted in process
    settled = await allow.settle("r2", [6])
    assert settled.applied and settled.totals == (16,)
    for rid in ("r3", "r4", "r5"):  # 34 left: three more of 10
        assert (await allow.reserve(rid, [tokens(10)], lease=LEASE)).via
    assert inner.asked == asked
    assert (await allow.reserve("r6", [tokens(10)], lease=LEASE)).via == ()
    assert inner.asked == asked + 1  # ran dry: back to the backend
    for rid in ("r1", "r3", "r4", "r5", "r6"):
        await allow.settle(rid, [7])
    await allow.close()
    assert await total(inner) == 6 + 5 * 7  # every allowance returned: what was used


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def replica_backends(
    request: pytest.FixtureRequest, inner: Counted
) -> Callable[[], CounterBackend]:
    """Backends for replicas sharing counters: the one in-process backend, or a
    connection of each replica's own to the same Redis keys."""
    if request.param == "memory":
        return lambda: inner
    url, prefix = request.getfixturevalue("redis_url"), request.getfixturevalue("redis_prefix")
    return lambda: RedisCounters(url, prefix=prefix)


async def test_two_replicas_sharing_a_backend_never_hold_more_than_the_limit(
    replica_backends: Callable[[], CounterBackend], clock: Clock
) -> None:
    limit = 2400
    rng = random.Random(7)
    inner = replica_backends()  # for reading the totals
    reps = [
        Allowances(replica_backends(), size=4, idle=5.0, lease=LEASE, clock=clock) for _ in range(2)
    ]
    used = local = admitted = 0
    held: dict[str, int] = {}  # what admitted, unsettled requests may still use

    async def request(i: int) -> None:
        nonlocal used, local, admitted
        rep, amount = reps[i % 2], rng.randint(1, 30)
        res = await rep.reserve(f"q{i}", [tokens(amount, limit=limit)], lease=LEASE)
        if not res.ok:
            return
        held[f"q{i}"] = amount
        local += bool(res.via)
        admitted += 1
        assert used + sum(held.values()) <= limit  # what requests may spend fits
        assert await total(inner) <= limit  # and the backend never counts past it
        for _ in range(rng.randint(0, 3)):
            await asyncio.sleep(0)
        spent = rng.randint(0, amount)
        del held[f"q{i}"]
        used += spent
        await rep.settle(f"q{i}", [spent])

    for wave in range(0, 400, 8):  # a few at a time, each wave overlapping the next's start
        await asyncio.gather(*(request(i) for i in range(wave, wave + 8)))
    assert local > admitted / 2, (local, admitted)  # most came from allowances
    for rep in reps:
        await rep.close()
    assert await total(inner) == used
    assert used > limit * 0.8  # the limit was reached, not avoided
    if isinstance(inner, RedisCounters):
        await inner.close()


async def test_a_window_that_moves_on_returns_its_allowance(
    allow: Allowances, inner: Counted
) -> None:
    await allow.reserve("r1", [tokens(10)], lease=LEASE)
    await allow.quiet()
    await allow.reserve("r2", [tokens(10)], lease=LEASE)  # from the allowance
    moved = await allow.reserve("r3", [tokens(10, bucket=1)], lease=LEASE)
    assert moved.via == ()  # the next bucket: checked in the backend
    await allow.settle("r2", [3])
    await allow.quiet()
    assert await total(inner, bucket=0) == 10 + 3  # r1 held, r2 used; the rest returned


async def test_a_refused_replica_returns_its_idle_allowance_and_tries_again(
    inner: Counted, clock: Clock
) -> None:
    allow = Allowances(inner, size=16, idle=5.0, lease=LEASE, clock=clock)
    await allow.reserve("r1", [tokens(10, limit=100)], lease=LEASE)
    await allow.quiet()
    await allow.settle("r1", [10])
    assert await total(inner) == 10 + 11  # 90 // 8 held ahead
    big = await allow.reserve("r2", [tokens(85, limit=100)], lease=LEASE)
    assert big.ok and big.totals == (10,)  # fits once the allowance is returned
    await allow.close()


async def test_holds_without_an_allowance_kind_always_go_to_the_backend(
    allow: Allowances, inner: Counted
) -> None:
    concurrent = Hold(Window("c"), 1, 10, "concurrent")
    counting = tokens(5, limit=None)
    unpriced = Hold(Window("u"), 0, 10**6, "usd")  # refused once the budget is used up
    for i in range(3):
        assert (await allow.reserve(f"c{i}", [concurrent], lease=LEASE)).via == ()
        assert (await allow.reserve(f"n{i}", [counting], lease=LEASE)).via == ()
        assert (await allow.reserve(f"u{i}", [unpriced], lease=LEASE)).via == ()
        await allow.quiet()
    assert inner.asked == 9 and allow.held() == 0


async def test_a_request_stamped_a_bucket_earlier_leaves_the_allowance_be(
    allow: Allowances, inner: Counted
) -> None:
    await allow.reserve("r1", [tokens(10, bucket=5)], lease=LEASE)
    await allow.quiet()
    late = await allow.reserve("r0", [tokens(10, bucket=4)], lease=LEASE)
    assert late.ok and late.via == ()
    await allow.quiet()
    assert (await allow.reserve("r2", [tokens(10, bucket=5)], lease=LEASE)).via


async def primed(inner: CounterBackend, clock: Clock, *, idle: float) -> Allowances:
    """Allowances whose first request ("r1", 10 tokens) went to the backend and
    made an allowance."""
    allow = Allowances(inner, size=4, idle=idle, lease=LEASE, clock=clock)
    await allow.reserve("r1", [tokens(10)], lease=LEASE)
    await allow.quiet()
    return allow


async def test_idle_allowances_are_returned_and_held_ones_renewed(
    inner: Counted, clock: Clock
) -> None:
    allow = await primed(inner, clock, idle=20.0)
    await allow.reserve("r2", [tokens(10)], lease=LEASE)
    clock.t += 11.0  # past a third of the lease, not idle yet: renewed
    await allow.tidy()
    assert allow.held() == 1
    clock.t += 24.0  # its first lease ran out, the renewed one has not
    assert [p.rid for p in await inner.expired()] == ["r1"]
    await allow.tidy()  # idle: retired, returned when r2 settles
    assert allow.held() == 1
    await allow.settle("r2", [4])
    await allow.quiet()
    assert allow.held() == 0
    assert await total(inner) == 10 + 4


# -- a crashed replica's allowance is settled from the ledger -------------------------------------


@pytest.fixture
def ledger(tmp_path: object) -> Iterator[Store]:
    with open_store(str(tmp_path) + "/ledger.db") as s:  # type: ignore[operator]
        s.migrate()
        yield s


async def test_a_dead_replicas_allowance_is_settled_from_the_ledger(
    store: Store, clock: Clock
) -> None:
    """On SQLite and on PostgreSQL: the sweeper finds the records by the allowance's id."""
    ledger = store
    inner = MemoryCounters(clock=clock)
    allow = Allowances(inner, size=4, idle=60.0, lease=LEASE, clock=clock)
    p = policy(ledger, clock, backend=allow, lease=LEASE)
    await p.start(background=False)
    bid = await add_budget(p, name="b", scope={}, period="monthly", limit_usd="1")
    calls = [chat(max_tokens=100) for _ in range(4)]
    await p.reserve(calls[0])
    await allow.quiet()
    for call in calls[1:]:
        await p.reserve(call)
    via = [call.record.decisions["caps"].get("allowances") for call in calls]
    assert via[0] is None and via[1] == via[2] == via[3] and via[1] is not None
    # Three requests reach the ledger, one does not; then the replica dies.
    ledger.insert_records([use(calls[i], 10, 5) for i in (0, 1, 2)])
    clock.t += LEASE + 1
    sweeper = Sweeper(inner, p.store, lease=LEASE, open_rids=list)  # the survivor's
    assert await sweeper.sweep_once() == 2  # r0's reservation, and the allowance
    assert sweeper.settled == 2
    (line,) = p.budget_lines(p.store.get_budget(bid))  # type: ignore[arg-type]
    assert await inner.totals([line.hold.window]) == [ledger_units(ledger)]


def test_the_gateway_holds_allowances_on_redis_unless_told_not_to(ledger: Store) -> None:
    url = "redis://127.0.0.1:1/0"  # never reached: nothing is started
    on = CapsPolicy(ledger, PriceBook(), CapsConfig(redis_url=url))
    off = CapsPolicy(ledger, PriceBook(), CapsConfig(redis_url=url, allowance=0))
    local = CapsPolicy(ledger, PriceBook(), CapsConfig())
    assert isinstance(on.backend, Allowances) and on.backend.name == "redis"
    assert not isinstance(off.backend, Allowances) and off.backend.name == "redis"
    assert isinstance(local.backend, MemoryCounters)


def test_the_allowance_settings_are_read_and_checked() -> None:
    from tokenomy.caps.config import caps_config
    from tokenomy.config import Settings
    from tokenomy.errors import ConfigError

    cfg = caps_config(Settings(caps={"allowance": 4, "allowance_idle": "0.5"}))
    assert (cfg.allowance, cfg.allowance_idle) == (4, 0.5)
    assert caps_config(Settings()).allowance == 16
    for bad in ({"allowance": -1}, {"allowance_idle": 0}, {"allowance": "many"}):
        with pytest.raises(ConfigError):
            caps_config(Settings(caps=bad))


async def test_an_allowance_not_renewed_in_time_stops_admitting(
    inner: Counted, clock: Clock
) -> None:
    allow = await primed(inner, clock, idle=60.0)
    clock.t += LEASE * 0.6
    assert (await allow.reserve("r2", [tokens(10)], lease=LEASE)).via
    clock.t += LEASE * 0.1  # no renewal came (Redis unreachable, say): a sweeper may take it soon
    assert (await allow.reserve("r3", [tokens(10)], lease=LEASE)).via == ()
    await allow.quiet()
    assert allow.held() == 2  # the old one, waiting for r2; a new one, made by r3
    await allow.close()


async def test_a_check_after_the_window_moved_on_does_not_count_the_old_allowance(
    replica_backends: Callable[[], CounterBackend], clock: Clock
) -> None:
    """The allowance of the bucket before is settled ahead of the check, on the same
    connection, so the check (and its rate-limit headers) sees only what was used."""
    allow = Allowances(replica_backends(), size=4, idle=60.0, lease=LEASE, clock=clock)

    def one(bucket: int) -> Hold:  # a request on a window of two buckets
        return Hold(Window("r", bucket, 2, 3), 1, 100, "requests")

    await allow.reserve("a", [one(0)], lease=LEASE)
    await allow.quiet()  # an allowance of 4 on bucket 0
    assert (await allow.reserve("b", [one(0)], lease=LEASE)).via
    await allow.settle("a", [1])
    await allow.settle("b", [1])
    moved = await allow.reserve("c", [one(1)], lease=LEASE)
    assert moved.via == () and moved.totals == (2,)  # a and b, not the 3 left unused
    await allow.settle("c", [1])
    await allow.close()


async def test_a_request_that_never_ended_stays_counted_at_its_hold(
    inner: Counted, clock: Clock
) -> None:
    allow = await primed(inner, clock, idle=60.0)
    assert (await allow.reserve("r2", [tokens(10)], lease=LEASE)).via
    allow.forget("r2")  # past max_hold: its cost will never be known here
    await allow.settle("r1", [10])
    await allow.close()
    assert await total(inner) == 10 + 10  # r1's actual, r2's hold


async def test_an_arriving_request_wakes_the_backend_only_without_allowances(
    inner: Counted, clock: Clock
) -> None:
    woken: list[int] = []
    inner.nudge = lambda: woken.append(1)  # type: ignore[attr-defined]
    allow = Allowances(inner, size=4, idle=60.0, lease=LEASE, clock=clock)
    allow.nudge()
    assert woken == [1]  # nothing held: the check goes to the backend
    await allow.reserve("r1", [tokens(10)], lease=LEASE)
    await allow.quiet()
    allow.nudge()
    assert woken == [1]  # an allowance held: most likely admitted in process
    await allow.close()
