"""The caps on a Redis of the test's own that goes away, stalls, or comes back
empty (`redis_server`): what a replica admits then, and what it logs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import openai
import pytest

from caps_helpers import add_budget, chat, finish, ledger_units, policy
from gateway_fixtures import Fake, gateway_settings, start_gateway
from redis_server import RedisServer
from tokenomy.billing import BillingStore
from tokenomy.caps import CapsPolicy
from tokenomy.caps import redis as caps_redis
from tokenomy.caps.counters import CountersUnavailable, Hold, Window
from tokenomy.caps.redis import RedisCounters
from tokenomy.errors import RateLimited
from tokenomy.ledger import Store, open_store

pytestmark = pytest.mark.redis


async def lost_connection(p: CapsPolicy) -> None:
    """Let the event loop see the server go (as a running gateway would at once)."""
    backend = p.backend
    inner = getattr(backend, "inner", backend)
    assert isinstance(inner, RedisCounters)
    if inner.pipe is None:  # redis-py finds out on a connection's next command: not tested here
        await inner.r.connection_pool.disconnect()
        return
    pipe = inner.pipe
    for _ in range(1000):
        if pipe._proto is None or pipe._proto.closed:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the lost connection went unnoticed")


@pytest.fixture
def ledger(tmp_path: Path) -> AsyncIterator[Store]:
    with open_store(str(tmp_path / "ledger.db")) as s:
        s.migrate()
        yield s  # type: ignore[misc]


@pytest.mark.parametrize("how", ["pipe", "allowances", "redis-py"])
async def test_a_redis_restarted_empty_is_seeded_again_before_it_admits(
    ledger: Store, redis_server: RedisServer, how: str
) -> None:
    if how == "redis-py":  # the scripts as over TLS
        p = policy(ledger, backend=RedisCounters(redis_server.url, pipe=False))
    else:
        allowance = 16 if how == "allowances" else 0
        p = policy(ledger, redis_url=redis_server.url, allowance=allowance, redis_timeout=10)
    await p.start(background=False)
    try:
        bid = await add_budget(p, name="life", scope={}, period="lifetime", limit_usd="0.0015")
        call = chat(max_tokens=100)
        await p.reserve(call)
        await finish(p, ledger, call, 10, 100)  # $0.001025 of $0.0015 spent
        with pytest.raises(RateLimited):
            await p.reserve(chat(max_tokens=100))
        redis_server.stop()
        await lost_connection(p)
        redis_server.start()  # back, empty: the counter is gone, the ledger is not
        with pytest.raises(RateLimited):
            await p.reserve(chat(max_tokens=100))
        (line,) = p.budget_lines(p.store.get_budget(bid))  # type: ignore[arg-type]
        assert await p.backend.totals([line.hold.window]) == [ledger_units(ledger)]
    finally:
        await p.stop()


def ask(client: openai.OpenAI) -> None:
    client.chat.completions.create(
        model="gpt-4o", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
    )


def test_a_prepaid_balance_holds_across_a_redis_restarted_empty(
    fake: Fake, fake_llamacpp: Fake, tmp_path: Path, redis_server: RedisServer
) -> None:
    settings = gateway_settings(str(tmp_path / "ledger.db"), fake, fake_llamacpp,
                                redis_url=redis_server.url)  # fmt: skip
    for gw in start_gateway(settings, fake):
        BillingStore(gw.store).topup("alice", Decimal("0.0007"))
        client = gw.openai()
        with pytest.raises(openai.APIStatusError) as refused:  # spend it, until refused
            for _ in range(100):
                ask(client)
        assert refused.value.code == "insufficient_quota"
        redis_server.restart()  # the running gateway sees it go, then come back empty
        with pytest.raises(openai.APIStatusError) as still:
            ask(client)
        assert still.value.code == "insufficient_quota"


async def test_a_stalled_redis_costs_one_timeout_at_a_time(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(caps_redis, "DOWN_FOR", 0.2)
    backend = RedisCounters(redis_server.url, prefix="t:", timeout=1.0)
    hold = [Hold(Window("w"), 1, 100, "requests")]
    try:
        assert (await backend.reserve("r0", hold, lease=30)).ok
        redis_server.pause()  # the kernel still accepts; nothing answers
        with pytest.raises(CountersUnavailable, match="did not answer"):
            await backend.reserve("r1", hold, lease=30)
        await asyncio.sleep(0.3)
        # One reservation finds out whether Redis is back; the others do not wait for it.
        got = await asyncio.gather(
            *(backend.reserve(f"r{i}", hold, lease=30) for i in range(2, 7)),
            return_exceptions=True,
        )
        errors = [str(e) for e in got]
        assert sum("did not answer" in e for e in errors) == 1
        assert sum("a moment ago" in e for e in errors) == 4
        redis_server.resume()
        await asyncio.sleep(0.3)
        assert (await backend.reserve("r7", hold, lease=30)).ok  # back: asked again
        # (What the stalled Redis ran late, r1 and the probe, is held until its lease
        # runs out; then a sweeper settles it from the ledger.)
    finally:
        redis_server.resume()
        await backend.close()
