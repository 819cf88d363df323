"""The load generator: runs in its own process, prints one JSON result.

A bare HTTP/1.1 keep-alive client on asyncio streams (uvloop when present): the
generator shares a core with the fake upstream, and a full client library costs
several times more CPU per request.

Open loop: requests leave on a fixed schedule whatever the replies do, and latency
counts from the scheduled time, so a stall shows in every request it delays (no
coordinated omission). Closed loop: N workers, each sending its next request when
the last reply ends. Only requests sent inside the measured window count for
latency; replies that end inside it count for throughput. The CPU time of the
gateway, the upstream and the generator itself is read at the window's edges.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from . import HOST, MODEL
from .procfs import cpu_seconds, process_tree


class StaleConnection(Exception):
    """A kept-alive connection the server had closed before we sent on it."""


def request_bytes(port: int, path: str, key: str, stream: bool) -> bytes:
    body: dict[str, Any] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Count from one to twenty, please."}],
        "max_tokens": 64,
    }
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    data = json.dumps(body, separators=(",", ":")).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
    )
    return head.encode() + data


def _has_content(event: bytes, loads: Callable[[bytes], Any]) -> bool:
    for line in event.split(b"\n"):
        if not line.startswith(b"data:"):
            continue
        payload = line[5:].strip()
        if payload == b"[DONE]":
            return False
        try:
            obj = loads(payload)
        except ValueError:
            return False
        for choice in obj.get("choices") or ():
            if (choice.get("delta") or {}).get("content"):
                return True
    return False


class SseWatch:
    """Notes when the first event carrying content arrives, and whether [DONE] did."""

    __slots__ = ("buf", "first", "loads", "tail")

    def __init__(self, loads: Callable[[bytes], Any]) -> None:
        self.buf = b""
        self.tail = b""
        self.first = 0.0
        self.loads = loads

    def feed(self, data: bytes) -> None:
        if not self.first:
            self.buf += data.replace(b"\r\n", b"\n")
            while not self.first:
                cut = self.buf.find(b"\n\n")
                if cut < 0:
                    break
                event, self.buf = self.buf[:cut], self.buf[cut + 2 :]
                if _has_content(event, self.loads):
                    self.first = time.perf_counter()
        self.tail = (self.tail + data)[-64:]

    @property
    def done(self) -> bool:
        return b"[DONE]" in self.tail


class Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.usable = True
        self.used = False
        self.admit_ms: float | None = None  # the gateway's Server-Timing "admit" entry

    @classmethod
    async def open(cls, port: int) -> Conn:
        reader, writer = await asyncio.open_connection(HOST, port, limit=1 << 20)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer)

    def close(self) -> None:
        self.usable = False
        self.writer.close()

    async def exchange(
        self, request: bytes, watch: SseWatch | None
    ) -> tuple[int, float, float, bool]:
        """Send one request; return (status, first token or body time, end time, ok)."""
        reused, self.used = self.used, True
        self.writer.write(request)
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionResetError) as exc:
            empty = not isinstance(exc, asyncio.IncompleteReadError) or not exc.partial
            if reused and empty:
                raise StaleConnection from exc
            raise
        status = int(head[9:12])
        headers: dict[bytes, bytes] = {}
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip().lower()
        if headers.get(b"connection") == b"close":
            self.usable = False
        self.admit_ms = server_timing(headers.get(b"server-timing", b""), b"admit")
        body = b""
        if headers.get(b"transfer-encoding") == b"chunked":
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
                if size == 0:
                    while await self.reader.readuntil(b"\r\n") != b"\r\n":
                        pass
                    break
                chunk = (await self.reader.readexactly(size + 2))[:-2]
                if watch is not None:
                    watch.feed(chunk)
                else:
                    body += chunk
        elif b"content-length" in headers:
            body = await self.reader.readexactly(int(headers[b"content-length"]))
            if watch is not None:
                watch.feed(body)
        else:
            body = await self.reader.read()
            self.usable = False
            if watch is not None:
                watch.feed(body)
        end = time.perf_counter()
        if watch is not None:
            ok = status == 200 and bool(watch.first) and watch.done
            return status, watch.first or end, end, ok
        return status, end, end, status == 200 and body.startswith(b"{")


def server_timing(value: bytes, metric: bytes) -> float | None:
    """The ``dur`` of one metric of a Server-Timing header, in milliseconds."""
    for entry in value.split(b","):
        name, *params = (p.strip() for p in entry.split(b";"))
        if name == metric:
            for p in params:
                if p.startswith(b"dur="):
                    return float(p[4:])
    return None


@dataclass
class Spec:
    mode: Literal["open", "closed"]
    port: int
    path: str
    key: str
    stream: bool
    rate: float
    concurrency: int
    warmup: float
    duration: float
    timeout: float
    gateway_pid: int | None
    upstream_pid: int
    result: str  # the file the figures are written to (a pipe could cut them short)


@dataclass
class Recorder:
    start: float
    end: float
    latency: list[float] = field(default_factory=list)
    first: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    completed: int = 0  # successful replies that ended inside the window
    cpu: dict[str, float] = field(default_factory=dict)
    lag: list[float] = field(default_factory=list)
    admit: list[float] = field(default_factory=list)  # ms, from Server-Timing

    def ok(self, sent: float, first: float, end: float, admit_ms: float | None = None) -> None:
        if self.start <= end < self.end:
            self.completed += 1
        if self.start <= sent < self.end:
            self.latency.append(end - sent)
            self.first.append(first - sent)
            if admit_ms is not None:
                self.admit.append(admit_ms)

    def error(self, sent: float, kind: str) -> None:
        if self.start <= sent < self.end:
            self.errors[kind] = self.errors.get(kind, 0) + 1


async def _sample_window(spec: Spec, rec: Recorder) -> None:
    """Read the CPU counters at the window's edges (the process trees found up front)."""
    trees = {"upstream": process_tree(spec.upstream_pid)}
    if spec.gateway_pid is not None:
        trees["gateway"] = process_tree(spec.gateway_pid)

    def sample() -> dict[str, float]:
        own = os.times()
        return {"loadgen": own.user + own.system} | {k: cpu_seconds(v) for k, v in trees.items()}

    await asyncio.sleep(max(0.0, rec.start - time.perf_counter()))
    before = sample()
    await asyncio.sleep(max(0.0, rec.end - time.perf_counter()))
    after = sample()
    rec.cpu = {name: after[name] - before[name] for name in after}


async def drive(spec: Spec) -> Recorder:
    try:
        import orjson

        loads: Callable[[bytes], Any] = orjson.loads
    except ImportError:  # pragma: no cover - the repo venv has orjson
        loads = json.loads
    request = request_bytes(spec.port, spec.path, spec.key, spec.stream)
    begin = time.perf_counter() + 0.05
    rec = Recorder(begin + spec.warmup, begin + spec.warmup + spec.duration)
    idle: deque[Conn] = deque()  # FIFO, so that every kept connection stays warm

    async def once(sent: float, conn: Conn | None) -> tuple[Conn | None, bool]:
        """One request; returns the connection to keep (if any) and whether it failed."""
        for attempt in (0, 1):
            if conn is None:
                conn = (
                    idle.popleft() if idle and spec.mode == "open" else await Conn.open(spec.port)
                )
            watch = SseWatch(loads) if spec.stream else None
            try:
                status, first, end, ok = await asyncio.wait_for(
                    conn.exchange(request, watch), spec.timeout
                )
            except StaleConnection:
                conn.close()
                conn = None
                if attempt == 0:
                    continue
                rec.error(sent, "stale_connection")
                return None, True
            except (OSError, ValueError, TimeoutError, asyncio.IncompleteReadError) as exc:
                conn.close()
                rec.error(sent, "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__)
                return None, True
            if ok:
                rec.ok(sent, first, end, conn.admit_ms)
            else:
                rec.error(sent, f"http_{status}" if status != 200 else "bad_body")
            return (conn if conn.usable else None), not ok
        return None, True

    sampler = asyncio.create_task(_sample_window(spec, rec))
    if spec.mode == "open":
        # Requests go out on a fixed schedule whatever the replies do; latency counts
        # from the scheduled time, so a stall shows up in every request it delays.
        tasks: set[asyncio.Task[None]] = set()

        async def scheduled(sent: float) -> None:
            conn, _ = await once(sent, None)
            if conn is not None:
                idle.append(conn)

        total = round((spec.warmup + spec.duration) * spec.rate)
        for i in range(total):
            sent = begin + i / spec.rate
            delay = sent - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if rec.start <= sent < rec.end:
                rec.lag.append(time.perf_counter() - sent)
            if len(tasks) >= 2000:
                rec.error(sent, "generator_overloaded")
                continue
            task = asyncio.create_task(scheduled(sent))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(tasks, timeout=spec.timeout + 1)
    else:

        async def worker() -> None:
            conn: Conn | None = None
            while (sent := time.perf_counter()) < rec.end:
                conn, failed = await once(sent, conn)
                if failed:
                    await asyncio.sleep(0.01)  # no hot loop against a refusing server

        await asyncio.gather(*(worker() for _ in range(spec.concurrency)))
    await sampler
    for conn in idle:
        conn.close()
    return rec


def pct(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return None
    return sorted_values[max(0, math.ceil(q * len(sorted_values)) - 1)]


def main(raw: str) -> None:
    spec = Spec(**json.loads(raw))
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    rec = asyncio.run(asyncio.wait_for(drive(spec), spec.warmup + spec.duration + 2 * spec.timeout))
    lag = sorted(rec.lag)
    out = {
        "latency_ms": sorted(round(v * 1000, 4) for v in rec.latency),
        "first_ms": sorted(round(v * 1000, 4) for v in rec.first),
        "admit_ms": sorted(rec.admit),
        "errors": rec.errors,
        "completed": rec.completed,
        "window_s": rec.end - rec.start,
        "cpu_s": rec.cpu,
        "late_ms_p99": round((pct(lag, 0.99) or 0.0) * 1000, 3),
        "late_ms_max": round(lag[-1] * 1000, 3) if lag else 0.0,
    }
    Path(spec.result).write_text(json.dumps(out))
