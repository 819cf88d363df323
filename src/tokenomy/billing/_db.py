"""Billing's access to the ledger database: the store's own transactions.

Billing keeps its tables in the same database as the request ledger, so that a
statement can join the two and one migration list covers both. It runs its SQL
through the store's ``_write`` (one committed transaction) and ``_read``.

Money crosses the boundary as exact `Decimal`: SQLite stores the plain decimal
string, PostgreSQL a ``NUMERIC``. SQLite's ``SUM`` would turn those strings
into floats, so on SQLite sums use ``tk_money_sum``, the exact aggregate the
SQLite store registers on its connections (`tokenomy.ledger.rollups`).
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any, TypeVar

from ..errors import ConfigError
from ..ledger.base import SQLStore, Store
from ..ledger.migrations import Cursor, Dialect

T = TypeVar("T")


def sql_store(store: Store) -> SQLStore:
    if not isinstance(store, SQLStore):
        raise ConfigError(f"billing needs a SQL ledger (SQLite or PostgreSQL), not {store!r}")
    return store


class DB:
    """One store, seen through billing's eyes."""

    def __init__(self, store: Store) -> None:
        self.store = sql_store(store)
        self.dialect: Dialect = self.store.dialect
        self.postgres = self.dialect.name == "postgres"

    def sql(self, template: str) -> str:
        """``template`` with ``?`` placeholders, ``{sum}`` and ``{for_update}`` filled in."""
        return template.replace("?", self.dialect.param).format(
            sum="SUM" if self.postgres else "tk_money_sum",
            for_update=" FOR UPDATE" if self.postgres else "",
        )

    def write(self, fn: Callable[[Cursor], T]) -> T:
        # SQLite's write transaction starts with BEGIN IMMEDIATE: it is already
        # serialised; PostgreSQL rows are locked with FOR UPDATE where it matters.
        return self.store._write(fn)

    def read(self, fn: Callable[[Cursor], T]) -> T:
        return self.store._read(fn)

    def money(self, value: Decimal) -> Any:
        return format(value, "f") if self.dialect.money_as_text else value


def money_out(value: Any) -> Decimal:
    """A money column (or an exact sum) as a Decimal; NULL sums are zero."""
    if value is None:
        return Decimal(0)
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, str):
        return Decimal(value)
    raise TypeError(f"not an exact amount: {value!r}")  # a float would be a bug


def money_or_none(value: Any) -> Decimal | None:
    return None if value is None else money_out(value)
