"""uvicorn's server, woken once a second instead of ten times while idle.

uvicorn's main loop sleeps 0.1 s between "ticks": it refreshes the ``Date``
header once a second and looks for a shutdown signal on every tick. An idle
gateway thus wakes ten times a second, and on a virtual machine each wake-up
runs with cold caches. Here the loop ticks once a second, on the second of the
loop's clock (`tokenomy.ticks`; the ``Date`` header still changes every second),
and a shutdown signal ends the wait at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import FrameType

import uvicorn

from ..ticks import until_next

TICK = 1.0  # seconds between ticks; uvicorn's ``on_tick`` counts tenths


class QuietServer(uvicorn.Server):
    _exit: asyncio.Event | None = None
    _loop: asyncio.AbstractEventLoop | None = None

    async def main_loop(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._exit = asyncio.Event()
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + 10) % 864000  # a multiple of ten: the Date header refreshes
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._exit.wait(), until_next(self._loop.time(), TICK))
            should_exit = await self.on_tick(counter)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        loop, event = self._loop, self._exit
        if loop is not None and event is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed
                loop.call_soon_threadsafe(event.set)
