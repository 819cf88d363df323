"""A throwaway redis-server of a test's own, to stop, pause and restart.

The shared Redis on 6379 is never touched: failure tests run against this one.
Skipped where no ``redis-server`` binary is on the PATH, failed then under
``CI=true`` (the tests that use it are marked ``redis`` as well, like every test
that needs Redis).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

READY_WITHIN = 20.0  # seconds; generous for a loaded machine


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """One redis-server process on a port of its own, without persistence: a
    restart comes back empty, as a Redis without a disk does."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--daemonize", "no"]  # fmt: skip
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + READY_WITHIN
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.02)
        raise RuntimeError("redis-server did not answer in time")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            os.kill(proc.pid, signal.SIGCONT)  # a paused server does not die of SIGKILL at once
            proc.kill()
            proc.wait(READY_WITHIN)

    def restart(self) -> None:
        """Kill it and start an empty one on the same port."""
        self.stop()
        self.start()

    def pause(self) -> None:
        """SIGSTOP: connections are still accepted by the kernel, nothing answers."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    pytest.importorskip("redis")
    binary = shutil.which("redis-server")
    if binary is None:
        reason = "no redis-server binary to start a private Redis"
        if os.environ.get("CI") == "true":
            pytest.fail(reason + " (CI=true: Redis tests must run)", pytrace=False)
        pytest.skip(reason)
    server = RedisServer(binary)
    server.start()
    try:
        yield server
    finally:
        server.stop()
