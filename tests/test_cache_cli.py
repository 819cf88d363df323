"""`tokenomy cache stats` and `tokenomy cache clear` on a real cache file."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from pathlib import Path

from click.testing import CliRunner

from tokenomy.cache.sqlite import SQLiteCacheStore
from tokenomy.cache.store import Entry
from tokenomy.cli import cli
from tokenomy.usage import Usage


def fill(path: str) -> None:
    async def go() -> None:
        store = SQLiteCacheStore(path, max_entries=100, max_bytes=10**6)
        for ns in ("team:a", "team:a", "team:b"):
            key = f"{ns}-{time.perf_counter_ns()}"
            e = Entry(ns, key, "openai", b"{}", Usage(), Decimal(0), "m", "r", time.time())
            await store.put(e, 60)
        await store.close()

    asyncio.run(go())


def test_stats_and_clear(tmp_path: Path) -> None:
    db = str(tmp_path / "ledger.db")
    fill(str(tmp_path / "ledger.cache.db"))
    run = CliRunner()
    out = run.invoke(cli, ["cache", "stats", "--db", db])
    assert out.exit_code == 0, out.output
    assert "3 entries" in out.output and "ledger.cache.db" in out.output
    out = run.invoke(cli, ["cache", "clear", "--db", db])
    assert out.exit_code != 0 and "--namespace NS or --all" in out.output
    out = run.invoke(cli, ["cache", "clear", "--db", db, "--namespace", "team:a"])
    assert out.exit_code == 0 and "deleted 2 entries" in out.output
    out = run.invoke(cli, ["cache", "clear", "--db", db, "--all"])
    assert out.exit_code == 0 and "deleted 1 entries" in out.output
    assert "0 entries" in run.invoke(cli, ["cache", "stats", "--db", db]).output
