"""The pipelined Redis connection the admission scripts use, against the local Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from gateway_fixtures import closed_port
from tokenomy.caps.resp import Pipe, ReplyError, Script, pack

pytestmark = pytest.mark.redis


@pytest.fixture
async def pipe(redis_url: str) -> AsyncIterator[Pipe]:
    p = Pipe(redis_url, timeout=2)
    yield p
    await p.close()


def test_pack_is_resp() -> None:
    assert pack(("SET", b"k", 12)) == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\n12\r\n"


async def test_concurrent_calls_get_their_own_replies(pipe: Pipe, redis_prefix: str) -> None:
    key = redis_prefix + "n"
    replies = await asyncio.gather(*(pipe.call("INCRBY", key, i) for i in range(1, 201)))
    # sent in the order the calls were made, so each reply is the running sum
    assert replies == [sum(range(1, i + 1)) for i in range(1, 201)]
    assert await pipe.call("GET", key) == str(sum(range(1, 201))).encode()


async def test_an_error_reply_fails_only_its_call(pipe: Pipe, redis_prefix: str) -> None:
    key = redis_prefix + "s"
    ok, bad, after = await asyncio.gather(
        pipe.call("SET", key, "text"),
        pipe.call("INCR", key),  # not an integer
        pipe.call("GET", key),
        return_exceptions=True,
    )
    assert ok == b"OK" and after == b"text"
    assert isinstance(bad, ReplyError) and "not an integer" in str(bad)


async def test_script_reloads_after_redis_forgot_it(
    pipe: Pipe, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[bytes | str | int] = []
    call = pipe.call

    async def recording(*args: bytes | str | int) -> Any:
        sent.append(args[0])
        return await call(*args)

    monkeypatch.setattr(pipe, "call", recording)
    script = Script(pipe, "return tonumber(ARGV[1]) * 2  -- tokenomy resp test")
    await script.load()
    sent.clear()
    assert await script([], [21]) == 42
    assert sent == ["EVALSHA"]  # by its SHA1, not its source
    r = aioredis.Redis.from_url(redis_url)
    try:
        await r.script_flush()
    finally:
        await r.aclose()
    assert await script([], [5]) == 10  # NOSCRIPT, then EVAL with the source
    assert sent[-2:] == ["EVALSHA", "EVAL"]


async def test_lost_connection_fails_waiting_calls_then_reconnects(pipe: Pipe) -> None:
    assert await pipe.call("PING") == b"PONG"
    me = await pipe.call("CLIENT", "ID")
    slow = asyncio.ensure_future(pipe.call("BLPOP", "tk_test_resp_never", 5))
    await asyncio.sleep(0.05)
    r = aioredis.Redis.from_url(f"redis://127.0.0.1:{pipe._port}/0")
    try:
        await r.execute_command("CLIENT", "KILL", "ID", me)
    finally:
        await r.aclose()
    with pytest.raises(ConnectionError):
        await slow
    assert await pipe.call("PING") == b"PONG"  # a fresh connection
    assert await pipe.call("CLIENT", "ID") != me


async def test_silence_times_out_and_the_next_call_reconnects(redis_url: str) -> None:
    p = Pipe(redis_url, timeout=0.1)
    try:
        with pytest.raises(TimeoutError):
            await p.call("BLPOP", "tk_test_resp_never", 2)
        assert await p.call("PING") == b"PONG"
    finally:
        await p.close()


async def test_one_timer_watches_each_call_to_its_own_deadline(redis_url: str) -> None:
    p = Pipe(redis_url, timeout=0.3)
    loop = asyncio.get_running_loop()
    try:
        for _ in range(20):  # answered calls over twice the timeout: none times out
            assert await p.call("PING") == b"PONG"
            await asyncio.sleep(0.03)
        await asyncio.sleep(0.2)  # the watch armed by an answered call fires meanwhile...
        start = loop.time()
        with pytest.raises(TimeoutError):  # ...and a silent call still gets its 0.3 s
            await p.call("BLPOP", "tk_test_resp_never", 2)
        assert 0.25 <= loop.time() - start < 1.0
    finally:
        await p.close()


async def test_unreachable_server_raises_oserror() -> None:
    p = Pipe(f"redis://127.0.0.1:{closed_port()}/0", timeout=0.2)
    with pytest.raises(OSError):
        await p.call("PING")


async def test_url_database_is_selected(redis_url: str, redis_prefix: str) -> None:
    base = redis_url.rsplit("/", 1)[0]
    p = Pipe(f"{base}/3")
    r = aioredis.Redis.from_url(f"{base}/3")
    try:
        await p.call("SET", redis_prefix + "db", "3")
        assert await r.get(redis_prefix + "db") == b"3"
    finally:
        await r.delete(redis_prefix + "db")
        await r.aclose()
        await p.close()


async def test_a_burst_waits_for_one_failed_connection_attempt_not_one_each() -> None:
    # A server that accepts connections and never answers: the AUTH of every new
    # connection times out. Ten calls at once must not queue ten timeouts.
    accepted: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    p = Pipe(f"redis://:secret@127.0.0.1:{port}/0", timeout=0.2)
    loop = asyncio.get_running_loop()
    try:
        start = loop.time()
        results = await asyncio.gather(*(p.call("PING") for _ in range(10)), return_exceptions=True)
        assert all(isinstance(r, OSError) for r in results)
        assert loop.time() - start < 0.6  # one timeout (0.2 s), not ten
    finally:
        await p.close()
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_a_nudge_after_idle_sends_one_ping_whose_reply_is_dropped(
    pipe: Pipe, redis_prefix: str
) -> None:
    key = redis_prefix + "nudge"
    pipe.nudge()  # not connected yet: nothing to wake
    assert pipe._proto is None
    assert await pipe.call("SET", key, "v") == b"OK"
    proto = pipe._proto
    assert proto is not None
    # The clock of its last use is set here, not waited for: a loaded machine may
    # take longer than the idle gap (1 ms) between two lines.
    loop = asyncio.get_running_loop()
    proto.last = loop.time()
    pipe.nudge()  # just used: Redis is awake, nothing is sent
    assert not proto.waiting
    proto.last = loop.time() - 1.0  # idle for a second
    pipe.nudge()
    pipe.nudge()  # the first one counts as use
    assert len(proto.waiting) == 1 and proto.waiting[0][0] is None
    # the PONG is dropped: the next call gets its own reply, in order
    assert await pipe.call("GET", key) == b"v"
    assert not proto.waiting


async def test_a_nudge_cut_off_by_a_lost_connection_fails_nobody(pipe: Pipe) -> None:
    me = await pipe.call("CLIENT", "ID")
    await asyncio.sleep(0.005)
    proto = pipe._proto
    assert proto is not None
    pipe.nudge()
    proto.abort(ConnectionError("gone"))  # before the PONG came back
    assert proto.closed and not proto.waiting
    assert await pipe.call("CLIENT", "ID") != me  # the next call opens a new connection


def test_a_nudge_from_another_loop_is_not_sent(redis_url: str) -> None:
    p = Pipe(redis_url, timeout=2)
    first = asyncio.new_event_loop()
    try:
        assert first.run_until_complete(p.call("PING")) == b"PONG"
        proto = p._proto
        assert proto is not None

        async def nudge() -> None:
            await asyncio.sleep(0.005)
            p.nudge()  # neither raises nor writes through the other loop's transport

        asyncio.run(nudge())
        assert not proto.waiting
        first.run_until_complete(p.close())
    finally:
        first.close()
