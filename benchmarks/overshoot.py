"""Budget overshoot under concurrent load: Tokenomy and LiteLLM, same scenario.

    .venv/bin/python benchmarks/overshoot.py [-n 500] [--concurrency 100] [--budget-requests 100]

One fake upstream (with a delay, so requests overlap as real model calls do),
a budget that pays for about ``--budget-requests`` requests, then ``-n``
requests fired ``--concurrency`` at a time through each gateway. The spend is
computed here, identically for both systems, from the usage in every 200
response at the configured price; overshoot is ``max(0, spent - budget)``.

- Tokenomy: a lifetime dollar budget on the model (``tokenomy budgets create``).
- Tokenomy, two replicas (``tokenomy-replicas``): the same budget, two gateway
  processes sharing a PostgreSQL ledger (a scratch schema) and Redis counters
  (a scratch prefix), with allowances (the default); requests alternate
  between them. Needs ``--pg`` and ``--redis`` (the local servers by default).
- LiteLLM: provider budget routing (``router_settings.provider_budget_config``,
  in-memory spend tracking, no database); its DB-backed key budgets need Prisma
  engine binaries that this machine cannot download.

Raw figures go to ``benchmarks/results/overshoot-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import secrets
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

from loadlib import BENCH, HOST, MODEL, PRICE_IN, PRICE_OUT
from loadlib.systems import (
    LITELLM_VENV,
    Probe,
    Service,
    chat_probe,
    child_env,
    ensure_litellm,
    free_port,
    tokenomy_argv,
)

MAX_TOKENS = 64
CHUNKS = 20  # completion tokens per reply (under MAX_TOKENS)
MTOK = Decimal(1_000_000)
PREFIX = f"overshoot-{secrets.token_hex(4)}:"  # the replicas' Redis keys


def cost(usage: dict[str, Any]) -> Decimal:
    prompt = Decimal(int(usage.get("prompt_tokens", 0)))
    completion = Decimal(int(usage.get("completion_tokens", 0)))
    return (prompt * Decimal(PRICE_IN) + completion * Decimal(PRICE_OUT)) / MTOK


def request_body(i: int) -> bytes:
    body = {
        "model": MODEL,
        "max_tokens": MAX_TOKENS,
        "messages": [{"role": "user", "content": f"Question number {i}: what is two plus two?"}],
    }
    return json.dumps(body).encode()


def send(port: int, key: str, i: int) -> tuple[int, dict[str, Any] | None]:
    """One chat request; (status, usage of a 200 reply). Status 0 is a transport error."""
    conn = http.client.HTTPConnection(HOST, port, timeout=120)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    try:
        conn.request("POST", "/v1/chat/completions", body=request_body(i), headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        if resp.status != 200:
            return resp.status, None
        usage = json.loads(data).get("usage") or {}
        return 200, usage
    except (OSError, http.client.HTTPException, ValueError):
        return 0, None
    finally:
        conn.close()


def fire(ports: list[int], key: str, n: int, concurrency: int) -> dict[str, Any]:
    began = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        results = list(pool.map(lambda i: send(ports[i % len(ports)], key, i), range(n)))
    took = time.perf_counter() - began
    statuses: dict[str, int] = {}
    spent = Decimal(0)
    admitted = 0
    for status, usage in results:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
        if status == 200 and usage is not None:
            admitted += 1
            spent += cost(usage)
    return {"admitted": admitted, "spent": spent, "statuses": statuses, "seconds": took}


def start_upstream(tmp: Path, delay_ms: int) -> Service:
    port = free_port()
    argv = [sys.executable, "-m", "tokenomy.testing.fake_upstream", "--host", HOST]
    argv += ["--port", str(port), "--chunks", str(CHUNKS), "--delay-ms", str(delay_ms)]
    svc = Service(
        "fake upstream", argv, child_env({}, True), port, chat_probe("x"),
        tmp / "upstream.log", None,
    )  # fmt: skip
    svc.start()
    return svc


def per_request_cost(upstream: int) -> Decimal:
    """The cost of one scenario request, asked of the upstream directly."""
    status, usage = send(upstream, "x", 0)
    if status != 200 or usage is None:
        raise RuntimeError(f"fake upstream answered {status}")
    return cost(usage)


def run_tokenomy(
    tmp: Path,
    upstream: int,
    budget: Decimal,
    n: int,
    concurrency: int,
    *,
    replicas: int = 1,
    db: str = "",
    redis: str = "",
    allowance: int | None = None,
) -> dict[str, Any]:
    work = tmp / f"tokenomy-{replicas}"
    work.mkdir()
    db, config = db or str(work / "l.db"), work / "cfg.yaml"
    shared = f"redis_url: {redis}\ncaps:\n  redis_prefix: '{PREFIX}'\n" if redis else ""
    if redis and allowance is not None:
        shared += f"  allowance: {allowance}\n"
    config.write_text(
        "server:\n  log_level: warning\nmodels:\n"
        f"  - name: {MODEL}\n    provider: openai\n    base_url: http://{HOST}:{upstream}/v1\n"
        f"    api_key: x\n    price: {{input: {PRICE_IN}, output: {PRICE_OUT}}}\n" + shared
    )
    master = "tk-bench-" + secrets.token_hex(16)
    env = child_env({"TOKENOMY_MASTER_KEY": master}, True)
    subprocess.run(
        tokenomy_argv("budgets", "create", "overshoot", "--model", MODEL, "--usd", f"{budget:f}",
                      "--period", "lifetime", "--db", db, "--config", str(config)),
        env=env, check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    services = []
    for i in range(replicas):
        port = free_port()
        argv = tokenomy_argv("serve", "--config", str(config), "--db", db)
        argv += ["--host", HOST, "--port", str(port)]
        health: Probe = ("GET", "/healthz", None, {})
        services.append(Service(f"tokenomy-{i}", argv, env, port, health, work / f"{i}.log", None))
    try:
        for svc in services:
            svc.start()
        out = fire([svc.port for svc in services], master, n, concurrency)
    finally:
        for svc in services:
            svc.stop()
    out["mechanism"] = "lifetime $ budget on the model (reserve, then settle)"
    if replicas > 1:
        every = " (every check in Redis)" if allowance == 0 else ", allowances"
        out["mechanism"] += f"; {replicas} replicas, PostgreSQL + Redis{every}"
    return out


def run_tokenomy_replicas(
    tmp: Path,
    upstream: int,
    budget: Decimal,
    n: int,
    concurrency: int,
    pg: str,
    redis: str,
    allowance: int | None,
) -> dict[str, Any]:
    """Two Tokenomy replicas on a scratch PostgreSQL schema and Redis prefix."""
    import psycopg
    import redis as redis_lib

    schema = "overshoot_" + secrets.token_hex(4)
    with psycopg.connect(pg, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        db = f"{pg}{'&' if '?' in pg else '?'}options=-csearch_path%3D{schema}"
        return run_tokenomy(tmp, upstream, budget, n, concurrency, replicas=2, db=db,
                            redis=redis, allowance=allowance)  # fmt: skip
    finally:
        with psycopg.connect(pg, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        client = redis_lib.Redis.from_url(redis)
        keys = list(client.scan_iter(match=PREFIX + "*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


def run_litellm(
    tmp: Path, upstream: int, budget: Decimal, n: int, concurrency: int
) -> dict[str, Any]:
    ensure_litellm()
    key = "sk-bench-" + secrets.token_hex(16)
    config = tmp / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        f"  - model_name: {MODEL}\n    litellm_params:\n      model: openai/{MODEL}\n"
        f"      api_base: http://{HOST}:{upstream}/v1\n      api_key: x\n"
        f"    model_info:\n      input_cost_per_token: {Decimal(PRICE_IN) / MTOK:f}\n"
        f"      output_cost_per_token: {Decimal(PRICE_OUT) / MTOK:f}\n"
        "router_settings:\n  provider_budget_config:\n"
        f"    openai:\n      budget_limit: {budget:f}\n      time_period: 1d\n"
        f"general_settings:\n  master_key: {key}\n"
        "litellm_settings:\n  telemetry: false\n"
    )
    env = child_env({"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR"}, False)
    port = free_port()
    argv = [str(LITELLM_VENV / "bin" / "litellm"), "--config", str(config)]
    argv += ["--host", HOST, "--port", str(port)]
    health: Probe = ("GET", "/health/liveliness", None, {})
    svc = Service("litellm", argv, env, port, health, tmp / "litellm.log", None)
    try:
        svc.start(timeout=180)
        out = fire([port], key, n, concurrency)
    finally:
        svc.stop()
    out["mechanism"] = "provider_budget_config (router, in-memory spend, no DB)"
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("-n", type=int, default=500, help="requests per system")
    ap.add_argument("--concurrency", type=int, default=100)
    ap.add_argument("--budget-requests", type=int, default=100, help="budget pays for this many")
    ap.add_argument("--delay-ms", type=int, default=50, help="fake upstream delay")
    ap.add_argument("--systems", default="tokenomy,tokenomy-replicas,litellm")
    ap.add_argument("--pg", default="postgresql://127.0.0.1:5432/test",
                    help="PostgreSQL for tokenomy-replicas (a scratch schema is made)")  # fmt: skip
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/0", help="Redis for them")
    ap.add_argument("--allowance", type=int,
                    help="the replicas' caps.allowance (0: every check in Redis)")  # fmt: skip
    args = ap.parse_args()

    def replicas(tmp: Path, up: int, budget: Decimal, n: int, c: int) -> dict[str, Any]:
        return run_tokenomy_replicas(tmp, up, budget, n, c, args.pg, args.redis, args.allowance)

    runners = {"tokenomy": run_tokenomy, "tokenomy-replicas": replicas, "litellm": run_litellm}
    rows: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="overshoot-") as t:
        tmp = Path(t)
        upstream = start_upstream(tmp, args.delay_ms)
        try:
            unit = per_request_cost(upstream.port)
            budget = unit * args.budget_requests
            for name in args.systems.split(","):
                rows[name] = runners[name](tmp, upstream.port, budget, args.n, args.concurrency)
        finally:
            upstream.stop()

    head = "| system | mechanism | budget $ | admitted | spent $ | overshoot $ | overshoot % |"
    lines = [head, "|---|---|---:|---:|---:|---:|---:|"]
    for name, r in rows.items():
        over = max(Decimal(0), r["spent"] - budget)
        r["overshoot_usd"] = over
        r["overshoot_pct"] = float(over / budget * 100)
        lines.append(
            f"| {name} | {r['mechanism']} | {budget:f} | {r['admitted']}/{args.n} "
            f"| {r['spent']:f} | {over:f} | {r['overshoot_pct']:.1f} |"
        )
    table = "\n".join(lines)
    print(
        f"{args.n} requests, {args.concurrency} concurrent, upstream delay {args.delay_ms} ms, "
        f"max_tokens {MAX_TOKENS}; one request costs ${unit:f}\n"
    )
    print(table)

    results = BENCH / "results"
    results.mkdir(exist_ok=True)
    path = results / f"overshoot-{time.strftime('%Y%m%d-%H%M%S')}.json"
    raw = {
        "n": args.n, "concurrency": args.concurrency, "delay_ms": args.delay_ms,
        "max_tokens": MAX_TOKENS, "price": {"input": PRICE_IN, "output": PRICE_OUT},
        "request_cost_usd": str(unit), "budget_usd": str(budget),
        "systems": {k: {f: (str(v) if isinstance(v, Decimal) else v) for f, v in r.items()}
                    for k, r in rows.items()},
        "table": table,
    }  # fmt: skip
    path.write_text(json.dumps(raw, indent=2) + "\n")
    print(f"\nraw results: {path.relative_to(BENCH.parent)}")


if __name__ == "__main__":
    main()
