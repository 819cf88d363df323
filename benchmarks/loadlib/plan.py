"""Scenarios, options, and one load-generator run in its own process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from . import BENCH
from .loadgen import Spec

CHAT_PATH = "/v1/chat/completions"


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    mode: Literal["open", "closed"]  # open: fixed rate; closed: fixed concurrency
    stream: bool
    rate: float = 0.0
    concurrency: int = 0


@dataclass
class Options:
    quick: bool
    rate: float
    stream_rate: float
    concurrency: list[int]
    chunks: int
    rounds: int
    warmup: float
    duration: float
    startup_runs: int
    pin: bool
    systems: list[str]
    timeout: float = 30.0  # per request, seconds
    caps_redis: str | None = None  # also run Tokenomy with caps on this Redis (fixed rates)
    caps_allowance: int | None = None  # its caps.allowance (None: the gateway's default)


def scenarios(opt: Options) -> list[Scenario]:
    streamed = f"streaming ({opt.chunks} chunks)"
    out = [
        Scenario("rate-json", f"Fixed rate {opt.rate:g} req/s, non-streaming", "open", False,
                 rate=opt.rate),
        Scenario("rate-stream", f"Fixed rate {opt.stream_rate:g} req/s, {streamed}", "open",
                 True, rate=opt.stream_rate),
    ]  # fmt: skip
    for stream in (False, True):
        for c in opt.concurrency:
            key = f"c{c}-{'stream' if stream else 'json'}"
            title = f"{c} concurrent, {streamed if stream else 'non-streaming'}"
            out.append(Scenario(key, title, "closed", stream, concurrency=c))
    return out


@dataclass(frozen=True)
class Target:
    port: int
    key: str  # bearer key
    pid: int | None  # the gateway's root process; None for the upstream itself


def run_loadgen(
    sc: Scenario,
    target: Target,
    upstream_pid: int,
    opt: Options,
    cpus: set[int] | None,
    warmup: float | None = None,
    duration: float | None = None,
) -> dict[str, Any]:
    """Run the load generator in a process of its own and return what it measured."""
    spec = Spec(
        mode=sc.mode,
        port=target.port,
        path=CHAT_PATH,
        key=target.key,
        stream=sc.stream,
        rate=sc.rate,
        concurrency=sc.concurrency,
        warmup=opt.warmup if warmup is None else warmup,
        duration=opt.duration if duration is None else duration,
        timeout=opt.timeout,
        gateway_pid=target.pid,
        upstream_pid=upstream_pid,
        result=_result_file(),
    )
    argv = [sys.executable, str(BENCH / "load.py"), "--loadgen", json.dumps(asdict(spec))]

    def pin() -> None:
        if cpus:
            os.sched_setaffinity(0, cpus)

    limit = spec.warmup + spec.duration + 3 * spec.timeout + 10
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=limit, check=False, preexec_fn=pin
    )
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed:\n{done.stderr[-2000:]}")
    out = Path(spec.result)
    try:
        result: dict[str, Any] = json.loads(out.read_text())
    finally:
        out.unlink(missing_ok=True)
    return result


def _result_file() -> str:
    fd, name = tempfile.mkstemp(prefix="tokenomy-loadgen-", suffix=".json")
    os.close(fd)
    return name
