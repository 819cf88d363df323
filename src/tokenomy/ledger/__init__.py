"""The ledger: every request's usage and cost, plus the virtual keys.

``open_store(url)`` picks the engine from the URL; ``GroupCommitWriter`` batches
the gateway's records into shared commits. See ``docs/ledger.md``.
"""

from __future__ import annotations

import os

from ..errors import ConfigError
from .base import KeyRecord, SQLStore, Store
from .migrations import MIGRATIONS
from .pages import Page, SortKey, walk
from .sqlite import SQLiteStore
from .writer import Deferred, GroupCommitWriter, WriterStats, load_fallback

__all__ = [
    "MIGRATIONS",
    "Deferred",
    "GroupCommitWriter",
    "KeyRecord",
    "Page",
    "SQLStore",
    "SQLiteStore",
    "SortKey",
    "Store",
    "WriterStats",
    "load_fallback",
    "open_store",
    "sqlite_path",
    "walk",
]

DEFAULT_PATH = "tokenomy.db"


def sqlite_path(url: str | None) -> str | None:
    """The SQLite path ``url`` names, or None if it names another engine.

    ``None`` → ``tokenomy.db``; ``sqlite:///rel.db`` → ``rel.db``;
    ``sqlite:////abs.db`` → ``/abs.db``; ``sqlite://`` → ``:memory:``.
    """
    if url is None:
        return DEFAULT_PATH
    if url.startswith("sqlite:"):
        rest = url.removeprefix("sqlite:").removeprefix("//")
        if rest in ("", "/"):
            return ":memory:"
        if not rest.startswith("/"):
            raise ConfigError(f"{url!r}: write SQLite URLs as sqlite:///relative or sqlite:////abs")
        return rest[1:]
    if "://" in url:
        return None
    return url


def open_store(url: str | None) -> Store:
    """Open (not migrate) the ledger at ``url``: a path or ``sqlite:///path`` for
    SQLite (``:memory:`` for tests), ``postgresql://...`` for PostgreSQL."""
    path = sqlite_path(url)
    if path is not None:
        return SQLiteStore(path if path == ":memory:" else os.path.expanduser(path))
    assert url is not None
    if url.startswith(("postgresql://", "postgres://")):
        try:
            from .postgres import PostgresStore
        except ImportError as exc:
            raise ConfigError(
                f"a PostgreSQL ledger needs psycopg: pip install 'tokenomy[postgres]' ({exc})"
            ) from exc
        return PostgresStore(url)
    scheme = url.split("://", 1)[0]
    raise ConfigError(
        f"unsupported ledger URL scheme {scheme!r}: use a path, sqlite:/// or postgresql://"
    )
