"""The gateway's uvicorn server: one tick a second while idle, and a shutdown signal
ends the wait at once."""

from __future__ import annotations

import asyncio
import signal
import socket
from typing import Any

import pytest
import uvicorn

from tokenomy.server import quiet
from tokenomy.server.quiet import QuietServer


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})


async def test_a_signal_ends_the_wait_between_ticks(monkeypatch: Any) -> None:
    monkeypatch.setattr(quiet, "TICK", 60.0)  # without the wake-up, a minute
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(_app, lifespan="on", log_level="warning")
    server = QuietServer(config)
    ticks: list[int] = []
    ticked = asyncio.Event()
    on_tick = server.on_tick

    async def counted(counter: int) -> bool:
        ticks.append(counter)
        ticked.set()
        return await on_tick(counter)

    server.on_tick = counted  # type: ignore[method-assign]
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    await asyncio.wait_for(ticked.wait(), 10)
    await asyncio.sleep(0.2)
    assert ticks == [0]  # uvicorn's own loop would have ticked twice by now
    # uvicorn raises the signals it caught again once it has stopped: a signal whose
    # handler does nothing stands for SIGTERM here, which would end the test run
    before = signal.signal(signal.SIGUSR1, lambda *_: None)
    try:
        server.handle_exit(signal.SIGUSR1, None)
        await asyncio.wait_for(serving, 10)
    finally:
        signal.signal(signal.SIGUSR1, before)
    assert ticks == [0, 10]  # counted in tenths: the Date header refreshes every tick
    sock.close()


def test_chores_wait_for_the_next_multiple_of_their_period() -> None:
    from tokenomy.ticks import until_next

    assert until_next(100.25, 1.0) == 0.75
    assert until_next(100.0, 1.0) == 1.0
    assert until_next(100.99, 1.0) == pytest.approx(1.01)  # fired a hair early
    assert until_next(7.0, 5.0) == 3.0
