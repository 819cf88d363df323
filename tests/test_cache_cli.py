"""`tokenomy cache stats` and `tokenomy cache clear` on a real cache file."""

from __future__ import annotations

import asyncio
import socket
import time
from decimal import Decimal
from pathlib import Path

from click.testing import CliRunner

from tokenomy.cache.sqlite import SQLiteCacheStore
from tokenomy.cache.store import CacheUnavailable, Entry
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


def test_a_cache_that_cannot_be_opened_is_a_message(tmp_path: Path) -> None:
    db = str(tmp_path / "missing" / "ledger.db")
    for args in (["stats"], ["clear", "--all"]):
        out = CliRunner().invoke(cli, ["cache", *args, "--db", db])
        assert out.exit_code == 1 and not isinstance(out.exception, CacheUnavailable)
        assert out.output == (
            f"Error: cache database {tmp_path}/missing/ledger.cache.db: unable to open database "
            "file\n"
        )


def test_a_redis_cache_that_is_down_is_a_message(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = tmp_path / "c.yaml"
    config.write_text(f"cache: {{backend: redis, redis_url: 'redis://127.0.0.1:{port}/0'}}\n")
    out = CliRunner().invoke(cli, ["cache", "stats", "--config", str(config)])
    assert out.exit_code == 1 and not isinstance(out.exception, CacheUnavailable)
    assert out.output.startswith("Error: cache redis: ") and str(port) in out.output


def test_the_cache_file_sits_next_to_a_sqlite_url_ledger(tmp_path: Path) -> None:
    fill(str(tmp_path / "ledger.cache.db"))
    out = CliRunner().invoke(cli, ["cache", "stats", "--db", f"sqlite:///{tmp_path}/ledger.db"])
    assert out.exit_code == 0 and out.output.startswith(f"{tmp_path}/ledger.cache.db: 3 entries")
