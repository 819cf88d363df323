"""Reports over 10 million ledger rows, on SQLite and on PostgreSQL.

    .venv/bin/python benchmarks/report_scale.py                      # both engines, 10M rows
    .venv/bin/python benchmarks/report_scale.py --rows 1000000 --engines sqlite

Generates synthetic traffic (seeded: 180 days, 100 keys in 20 teams, 12
models, tags for environment and route, 2% unpriced, lever savings on a
quarter of the requests), bulk-loads it into a fresh SQLite file and a fresh
PostgreSQL schema (dropped afterwards), builds the daily rollups with the same
SQL as migration ``m010_rollups``, then times the reports ``tokenomy report``
and the dashboard run. It also measures what keeping the rollups costs
``insert_records``, the gateway's write path. Prints a markdown table.

Not part of the test suite: the load takes minutes.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import secrets
import tempfile
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from tokenomy.ledger import SQLStore, open_store, rollups
from tokenomy.ledger.base import REQUEST_COLUMNS
from tokenomy.records import UsageRecord
from tokenomy.reports import Filters, build_report, scan, top_requests
from tokenomy.usage import Usage

PG_URL = os.environ.get("TOKENOMY_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
DAY = 86400
END = 1_796_083_200  # 2026-12-01 00:00 UTC: the synthetic traffic ends here
MODELS = [  # (model, provider, $/M input, $/M output); None: unknown price
    ("gpt-4o", "openai", "2.5", "10"), ("gpt-4o-mini", "openai", "0.15", "0.6"),
    ("o3", "openai", "2", "8"), ("o4-mini", "openai", "1.1", "4.4"),
    ("claude-sonnet-4", "anthropic", "3", "15"), ("claude-haiku-4", "anthropic", "1", "5"),
    ("claude-opus-4", "anthropic", "15", "75"), ("gemini-2.5-pro", "google", "1.25", "10"),
    ("gemini-2.5-flash", "google", "0.3", "2.5"), ("llama-3-70b", "groq", "0.59", "0.79"),
    ("mistral-large", "mistral", "2", "6"), ("house-model", "vllm", None, None),
]  # fmt: skip


def rows(n: int, days: int, seed: int = 1) -> Iterator[tuple[Any, ...]]:
    """``n`` ledger rows in time order, as tuples in REQUEST_COLUMNS order (SQLite types)."""
    rng = random.Random(seed)
    keys = []
    for k in range(100):
        team = f"team-{k % 20:02d}"
        models = rng.sample(range(len(MODELS) - 1), 3) + ([len(MODELS) - 1] if k % 10 == 0 else [])
        keys.append((f"tk-{k:08x}", f"org-{k % 5}", team, [f"user-{k}-{u}" for u in range(2)],
                     models, [f"{team}/route-{r}" for r in range(4)]))  # fmt: skip
    start = END - days * DAY
    step = days * DAY / n
    empty = "{}"
    for i in range(n):
        key_id, org, team, users, models, routes = keys[rng.randrange(100)]
        model, provider, pin, pout = MODELS[rng.choice(models)]
        inp, out = rng.randint(200, 8000), rng.randint(20, 1500)
        cached = inp // 2 if rng.random() < 0.3 else 0
        tags = orjson.dumps({"env": "prod" if rng.random() < 0.9 else "dev",
                             "route": rng.choice(routes)}).decode()  # fmt: skip
        if pin is None:
            cost, unknown = None, True
        else:
            c = (Decimal(inp - cached) * Decimal(pin) + Decimal(cached) * Decimal(pin) / 10
                 + Decimal(out) * Decimal(pout)) / 1_000_000  # fmt: skip
            cost, unknown = format(c, "f"), False
        decisions = empty
        if cost is not None and rng.random() < 0.25:
            decisions = orjson.dumps({rng.choice(["cache", "route", "compress"]):
                                      {"saved_usd": f"0.000{rng.randint(1, 9999):04d}"}}).decode()  # fmt: skip
        yield (f"req-{i:09d}", start + i * step, "openai", "/v1/chat/completions", key_id, org,
               team, rng.choice(users), tags, model, model, provider, None, False, inp, out,
               cached, 0, 0, 0, False, cost, unknown, 500.0, None, 200, None, decisions,
               0, 0, 0, None, True, None, None, None)  # fmt: skip


@contextlib.contextmanager
def pg_schema() -> Iterator[str]:
    import psycopg

    schema = "tk_bench_" + secrets.token_hex(4)
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        sep = "&" if "?" in PG_URL else "?"
        yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def load(store: SQLStore, n: int, days: int) -> float:
    t = time.perf_counter()
    cols = ", ".join(REQUEST_COLUMNS)
    if store.dialect.name == "postgres":

        def copy(cur: Any) -> None:
            with cur.copy(f"COPY requests ({cols}) FROM STDIN") as cp:
                for row in rows(n, days):
                    cp.write_row(row)

        store._write(copy)
    else:
        sql = f"INSERT INTO requests ({cols}) VALUES ({', '.join('?' * len(REQUEST_COLUMNS))})"
        it = rows(n, days)
        while True:
            chunk = [r for _, r in zip(range(500_000), it, strict=False)]
            if not chunk:
                break

            def insert(cur: Any, chunk: list[tuple[Any, ...]] = chunk) -> None:
                cur.execute("PRAGMA cache_size = -2000000")
                cur.executemany(sql, chunk)

            store._write(insert)
    return time.perf_counter() - t


def timed(fn: Callable[[], Any], repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def insert_cost(url: str) -> tuple[float, float]:
    """µs per record through insert_records (rollups kept), in batches of 1000 and of 1."""
    recs = [
        UsageRecord(f"w{i}", ts=END - 3600 + i * 0.01, endpoint="/v1/chat/completions",
                    key_id=f"tk-{i % 40}", team=f"team-{i % 8}", user=f"u{i % 40}",
                    tags={"env": "prod"}, requested_model="gpt-4o", served_model="gpt-4o",
                    provider="openai", usage=Usage(1200, 300), cost_usd=Decimal("0.006"))
        for i in range(22_000)
    ]  # fmt: skip
    with open_store(url) as store:
        store.migrate()
        t = time.perf_counter()
        for i in range(0, 20_000, 1000):
            store.insert_records(recs[i : i + 1000])
        batched = (time.perf_counter() - t) / 20_000 * 1e6
        t = time.perf_counter()
        for r in recs[20_000:]:
            store.insert_records([r])
        single = (time.perf_counter() - t) / 2_000 * 1e6
    return batched, single


def bench(
    engine: str, url: str, n: int, days: int, small_url: str, small_url2: str
) -> dict[str, Any]:
    out: dict[str, Any] = {"engine": engine, "rows": n}
    with open_store(url) as store:
        assert isinstance(store, SQLStore)
        store.migrate()
        out["load_s"] = load(store, n, days)
        t = time.perf_counter()
        store._write(lambda cur: rollups.rebuild(cur, store.dialect))
        store._write(lambda cur: cur.execute("ANALYZE"))
        out["rollup_build_s"] = time.perf_counter() - t
        for table in ("usage_daily", "usage_daily_coarse"):
            out[f"{table} rows"] = store._read(
                lambda cur, t=table: cur.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            )
        month = END - 30 * DAY
        odd = (END - 45.3 * DAY, END - 12.7 * DAY)  # partial days at both ends
        team = Filters(teams=("team-07",))
        out["all time, team+model"] = timed(lambda: build_report(store, group_by=("team", "model")))
        out["30 days, day+team"] = timed(
            lambda: build_report(store, group_by=("day", "team"), since=month)
        )
        out["odd range, tag"] = timed(
            lambda: build_report(store, group_by=("tag",), since=odd[0], until=odd[1])
        )
        out["one team, user"] = timed(lambda: build_report(store, group_by=("user",), filters=team))
        out["top 10, all time"] = timed(lambda: top_requests(store, limit=10))
        total = scan(store).total()
        out["check"] = f"{total.requests:,} requests, ${total.cost_usd:,.2f}"
    out["insert_records µs/row, batches of 1000 / of 1"] = "{:.0f} / {:.0f}".format(
        *insert_cost(small_url)
    )
    keep = rollups.bump
    try:  # the same without maintaining the rollups, for comparison
        rollups.bump = lambda *a: None  # type: ignore[assignment]
        out["the same without rollups"] = "{:.0f} / {:.0f}".format(*insert_cost(small_url2))
    finally:
        rollups.bump = keep
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--days", type=int, default=180)
    parser.add_argument("--engines", default="sqlite,postgres")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for engine in args.engines.split(","):
            print(f"{engine}: loading {args.rows:,} rows ...", flush=True)
            if engine == "sqlite":
                results.append(bench(engine, str(Path(tmp) / "big.db"), args.rows, args.days,
                                     str(Path(tmp) / "s1.db"), str(Path(tmp) / "s2.db")))  # fmt: skip
            else:
                with pg_schema() as big, pg_schema() as s1, pg_schema() as s2:
                    results.append(bench(engine, big, args.rows, args.days, s1, s2))
            print(results[-1], flush=True)
    keys = [k for k in results[0] if k != "engine"]
    print("\n| | " + " | ".join(r["engine"] for r in results) + " |")
    print("|---|" + "---|" * len(results))
    for k in keys:
        cells = [f"{r[k]:.2f} s" if isinstance(r[k], float) else f"{r[k]:,}" if isinstance(
            r[k], int) else str(r[k]) for r in results]  # fmt: skip
        print(f"| {k} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
