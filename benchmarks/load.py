#!/usr/bin/env python3
"""Tokenomy and LiteLLM under the same load, side by side, on loopback.

    python benchmarks/load.py [--quick]

Starts a fake OpenAI upstream, Tokenomy and LiteLLM, each in its own process, and
drives them from a separate load-generator process (this file run with
``--loadgen``). Runs are interleaved (direct, Tokenomy, LiteLLM, then direct,
LiteLLM, Tokenomy) so that machine noise hits both systems alike. Prints one
markdown table per scenario with Tokenomy, LiteLLM and the ratio Tokenomy/LiteLLM,
checks the targets, and saves the raw figures to
``benchmarks/results/load-<timestamp>.json``. benchmarks/README.md says what each
number means. The parts live in the ``loadlib`` package beside this file.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import Any

from loadlib import DIRECT, LITELLM, TOKENOMY, TOKENOMY_CAPS, loadgen
from loadlib.plan import Options, Scenario, Target, run_loadgen, scenarios
from loadlib.procfs import cpu_seconds, process_tree, tree_memory_mb
from loadlib.report import report, summarise
from loadlib.systems import Service, ensure_litellm, make_litellm, make_tokenomy, make_upstream


def start_gateways(
    opt: Options, tmp: Path, upstream: Service, cpus: set[int] | None, services: list[Service]
) -> dict[str, Target]:
    """Start each gateway once untimed (bytecode, page cache), then --startup-runs times
    timed, keeping the last one running; return the targets, the upstream included."""
    targets: dict[str, Target] = {}
    names = [*opt.systems, *([TOKENOMY_CAPS] if opt.caps_redis else [])]
    for name in names:
        if name == TOKENOMY_CAPS:
            svc, key = make_tokenomy(tmp, upstream.port, cpus, caps_redis=opt.caps_redis,
                                     caps_allowance=opt.caps_allowance)  # fmt: skip
        else:
            make = make_tokenomy if name == TOKENOMY else make_litellm
            svc, key = make(tmp, upstream.port, cpus)
        services.append(svc)
        svc.start(record=False)
        svc.stop()
        for i in range(opt.startup_runs):
            took = svc.start()
            print(f"{name}: healthy {took * 1000:.0f} ms after start", flush=True)
            if i < opt.startup_runs - 1:
                svc.stop()
        targets[name] = Target(svc.port, key, svc.pid)
    targets[DIRECT] = Target(upstream.port, "x", None)
    return targets


def idle_cpu_pct(gateways: dict[str, Service], seconds: float) -> dict[str, float]:
    """CPU the warmed-up gateways burn with no traffic at all (background tasks)."""
    trees = {name: process_tree(svc.pid) for name, svc in gateways.items()}
    before = {name: cpu_seconds(pids) for name, pids in trees.items()}
    time.sleep(seconds)
    return {
        name: (cpu_seconds(pids) - before[name]) / seconds * 100 for name, pids in trees.items()
    }


def run(opt: Options) -> int:
    began = time.time()
    gateway_cpus = driver_cpus = None
    cores = sorted(os.sched_getaffinity(0))
    if opt.pin and len(cores) >= 2:  # each gateway gets the last core; driver and upstream the rest
        gateway_cpus, driver_cpus = {cores[-1]}, set(cores[:-1])
    litellm_version = ensure_litellm() if LITELLM in opt.systems else None
    plan = scenarios(opt)
    services: list[Service] = []
    raw: list[dict[str, Any]] = []
    summaries: dict[str, dict[str, dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="tokenomy-bench-") as tmpdir:
        tmp = Path(tmpdir)
        try:
            upstream = make_upstream(tmp, opt.chunks, driver_cpus)
            services.append(upstream)
            upstream.start(timeout=60)
            targets = start_gateways(opt, tmp, upstream, gateway_cpus, services)
            gateways = {svc.name: svc for svc in services if svc.name in opt.systems}
            for target in targets.values():  # first requests are slow everywhere
                for stream in (False, True):
                    warm = Scenario("warm", "warm-up", "closed", stream, concurrency=4)
                    run_loadgen(warm, target, upstream.pid, opt, driver_cpus, 0.0, 1.5)
            idle = idle_cpu_pct(gateways, 2.0 if opt.quick else 4.0)
            print("warmed up; idle CPU " + ", ".join(f"{k} {v:.1f}%" for k, v in idle.items()))
            for sc in plan:
                per: dict[str, list[dict[str, Any]]] = {}
                for rnd in range(opt.rounds):
                    order = list(opt.systems) if rnd % 2 == 0 else opt.systems[::-1]
                    if sc.mode == "open" or rnd == 0:  # closed loop: one direct ceiling is enough
                        order.insert(0, DIRECT)
                    if sc.mode == "open" and TOKENOMY_CAPS in targets:
                        order.append(TOKENOMY_CAPS)  # the admission check's cost, on Redis
                    for name in order:
                        res = run_loadgen(sc, targets[name], upstream.pid, opt, driver_cpus)
                        per.setdefault(name, []).append(res)
                        kept = {k: v for k, v in res.items() if k not in ("latency_ms", "first_ms")}
                        raw.append({"scenario": sc.key, "round": rnd + 1, "system": name, **kept})
                        print(
                            f"  {sc.key:12} round {rnd + 1}  {name:13}"
                            f" {res['completed'] / res['window_s']:8.1f} req/s"
                            f"  errors {sum(res['errors'].values())}",
                            flush=True,
                        )
                summaries[sc.key] = summarise(per, sc)
                for name in opt.systems:  # growth from scenario to scenario would be a leak
                    now = tree_memory_mb(gateways[name].pid, "VmRSS")
                    summaries[sc.key][name]["rss_after_mb"] = now
            rss = {name: tree_memory_mb(svc.pid) for name, svc in gateways.items()}
            startup = {name: svc.startup_s for name, svc in gateways.items()}
            process = {"startup_s": startup, "peak_rss_mb": rss, "idle_cpu_pct": idle}
        finally:
            # A second Ctrl-C must not cut the clean-up short.
            previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            for svc in reversed(services):
                svc.stop()
            signal.signal(signal.SIGINT, previous)
    report(opt, plan, summaries, raw, process, litellm_version, time.time() - began)
    return 0


def parse_args(argv: list[str]) -> Options:
    p = argparse.ArgumentParser(description="Tokenomy vs LiteLLM load benchmark (loopback).")
    p.add_argument("--quick", action="store_true", help="about 2 minutes instead of about 10")
    # Defaults keep LiteLLM under about half of one core, so that its latency is not
    # queueing: it serves about 55 req/s non-streaming, 20 streaming, on one core here.
    p.add_argument("--rate", type=float, default=25.0, help="fixed rate, non-streaming (req/s)")
    p.add_argument("--stream-rate", type=float, default=10.0, help="fixed rate, streaming")
    p.add_argument("--concurrency", default="16,64", help="closed-loop levels, comma-separated")
    p.add_argument("--chunks", type=int, default=20, help="content chunks per streamed reply")
    p.add_argument("--rounds", type=int, help="interleaved rounds (default 2; quick 1)")
    p.add_argument("--duration", type=float, help="measured seconds per run (default 10; quick 4)")
    p.add_argument("--warmup", type=float, help="warm-up seconds per run (default 2; quick 1)")
    p.add_argument("--startup-runs", type=int, help="start-up samples (default 3; quick 1)")
    p.add_argument("--no-pin", action="store_true", help="do not pin the gateway to its own core")
    p.add_argument("--systems", default="tokenomy,litellm", help="tokenomy, litellm or both")
    p.add_argument("--caps-redis", default="redis://127.0.0.1:6379/0",
                   help="also run Tokenomy with a budget and a rate limit on this Redis at the "
                        "fixed rates, to measure the admission check ('off': skip)")  # fmt: skip
    p.add_argument("--caps-allowance", type=int,
                   help="caps.allowance of that gateway (0: every check goes to Redis; "
                        "default: the gateway's own)")  # fmt: skip
    a = p.parse_args(argv)
    asked = {s.strip() for s in a.systems.split(",") if s.strip()}
    if not asked or asked - {TOKENOMY, LITELLM}:
        p.error("--systems takes tokenomy, litellm or both")

    def pick(value: float | None, full: float, quick: float) -> float:
        return value if value is not None else (quick if a.quick else full)

    return Options(
        quick=a.quick,
        rate=a.rate,
        stream_rate=a.stream_rate,
        concurrency=[int(c) for c in a.concurrency.split(",") if c.strip()],
        chunks=a.chunks,
        rounds=int(pick(a.rounds, 2, 1)),
        duration=pick(a.duration, 10.0, 4.0),
        warmup=pick(a.warmup, 2.0, 1.0),
        startup_runs=int(pick(a.startup_runs, 3, 1)),
        pin=not a.no_pin,
        systems=[s for s in (TOKENOMY, LITELLM) if s in asked],
        caps_redis=caps_redis(a.caps_redis) if TOKENOMY in asked else None,
        caps_allowance=a.caps_allowance,
    )


def caps_redis(url: str) -> str | None:
    """The Redis URL if it answers a PING, else None (with a note)."""
    if url == "off":
        return None
    try:
        import redis
    except ImportError:
        print("note: the redis package is missing; the admission check is not measured")
        return None
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        print(f"note: Redis at {url} is unreachable ({exc}); the admission check is not measured")
        return None
    return url


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--loadgen":
        loadgen.main(sys.argv[2])
        return 0
    opt = parse_args(sys.argv[1:])

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt  # so that the finally blocks stop every process we started

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started in background
    try:
        return run(opt)
    except KeyboardInterrupt:
        print("interrupted; every process it started has been stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
