"""`tokenomy cache stats` and `tokenomy cache clear`: the cache's entries."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import click

from ..cache import CacheStore, Stats, cache_config, open_cache_store
from ..cache.config import CacheConfig
from ..cache.store import CacheUnavailable
from ..config import load_settings
from .cache import cache
from .common import click_errors, config_option

T = TypeVar("T")

db_option = click.option("--db", default=None, envvar="TOKENOMY_DB",
                         help="Ledger path (the cache file defaults to its name + .cache.db).")  # fmt: skip


def _config(config_path: str | None, db: str | None) -> CacheConfig:
    with click_errors():
        return cache_config(load_settings(config_path, db=db))


def _where(cfg: CacheConfig) -> str:
    return f"redis ({cfg.redis_prefix}*)" if cfg.backend == "redis" else cfg.path


async def _stats(store: CacheStore) -> Stats:
    try:
        return await store.stats()
    finally:
        await store.close()


async def _clear(store: CacheStore, namespace: str | None) -> int:
    try:
        return await store.clear(namespace)
    finally:
        await store.close()


def _run(cfg: CacheConfig, job: Callable[[CacheStore], Coroutine[Any, Any, T]]) -> T:
    """Run ``job`` on the configured cache; a backend that fails (a file that cannot
    be opened, a Redis that does not answer) is a message naming it."""
    try:
        return asyncio.run(job(open_cache_store(cfg)))
    except CacheUnavailable as exc:
        raise click.ClickException(str(exc)) from exc


@cache.command("stats")
@config_option
@db_option
def stats(config_path: str | None, db: str | None) -> None:
    """How many entries the cache holds, and their size."""
    cfg = _config(config_path, db)
    s = _run(cfg, _stats)
    size = "not tracked" if s.bytes is None else f"{s.bytes:,} bytes"
    click.echo(f"{_where(cfg)}: {s.entries:,} entries, {size}")


@cache.command("clear")
@config_option
@db_option
@click.option("--namespace", default=None,
              help="Only this namespace: org-team:ORG/TEAM, team:NAME, org:NAME, key:KEY_ID, "
                   "shared:NAME or anonymous.")  # fmt: skip
@click.option("--all", "everything", is_flag=True, help="Every namespace.")
def clear(config_path: str | None, db: str | None, namespace: str | None, everything: bool) -> None:
    """Delete cache entries: one namespace (a tenant), or all with --all."""
    if (namespace is None) == (not everything):
        raise click.UsageError("give --namespace NS or --all")
    cfg = _config(config_path, db)
    n = _run(cfg, lambda store: _clear(store, namespace))
    click.echo(f"deleted {n:,} entries from {_where(cfg)}")
