"""The PostgreSQL ledger (``pip install tokenomy[postgres]``), on psycopg 3.

Two connections, each behind its own lock, opened on first use: the write
connection (autocommit off: record batches from the writer thread, key changes,
migrations) and a read connection in autocommit mode, so a key lookup never
leaves a transaction idle. A connection found broken (server restart, failover,
idle timeout) is reopened and the operation retried once; inserts skip request
ids already present, so retrying a batch whose commit was in doubt is safe.

PostgreSQL's text and jsonb cannot hold NUL (U+0000), which a client may put in
any string it sends (JSON's ``\\u0000``: a model name, a tag, a feedback
comment, an id to look up). Every string parameter is written with U+FFFD in its
place (`NulFreeText`): a row holding one is kept rather than failed (a request
left unrecorded), and a lookup by one finds nothing rather than failing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

import psycopg
from psycopg.abc import Buffer
from psycopg.types.string import StrDumperUnknown

from ..errors import ConfigError
from ..records import UsageRecord
from .base import SQLStore
from .migrations import POSTGRES, Cursor

T = TypeVar("T")
log = logging.getLogger("tokenomy.ledger")

# Advisory lock key for migrations ("tknm"); the second key is the schema, so
# ledgers in different schemas of one database migrate independently.
_MIGRATION_LOCK = 0x746B6E6D

# Seconds to wait for a server that does not answer, unless the URL
# (``?connect_timeout=``) or PGCONNECT_TIMEOUT says otherwise: psycopg's own
# default is 130 s, a start or a CLI command that seems to hang.
CONNECT_TIMEOUT = 10

# JSON's escape of a NUL: a backslash not itself escaped (preceded by an even run)
_NUL_ESCAPE = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")


class NulFreeText(StrDumperUnknown):
    """Strings as psycopg sends them by default, a NUL as U+FFFD: in the text
    itself, and as the escape in JSON text bound for a jsonb column."""

    def dump(self, obj: str) -> Buffer | None:
        if "\x00" in obj:
            obj = obj.replace("\x00", "\ufffd")
        if "\\u0000" in obj:
            obj = _NUL_ESCAPE.sub(r"\1\\ufffd", obj)
        return super().dump(obj)


class PostgresStore(SQLStore):
    dialect = POSTGRES
    integrity_error = (psycopg.IntegrityError,)

    def __init__(self, url: str) -> None:
        self.url = url
        self._closed = False
        self._wlock = threading.Lock()
        self._rlock = threading.Lock()
        self._rconn: psycopg.Connection[tuple[object, ...]] | None = None
        try:
            given = "connect_timeout" in psycopg.conninfo.conninfo_to_dict(url)
        except psycopg.ProgrammingError as exc:
            raise ConfigError(f"not a PostgreSQL URL: {exc}") from exc
        self._timeout: dict[str, Any] = (
            {} if given or os.environ.get("PGCONNECT_TIMEOUT") else
            {"connect_timeout": CONNECT_TIMEOUT}
        )  # fmt: skip
        try:
            self._wconn: psycopg.Connection[tuple[object, ...]] | None = self._connect(False)
        except psycopg.OperationalError as exc:
            raise ConfigError(f"cannot connect to the PostgreSQL ledger: {exc}") from exc

    def _connect(self, autocommit: bool) -> psycopg.Connection[tuple[object, ...]]:
        conn = psycopg.connect(self.url, autocommit=autocommit, **self._timeout)
        conn.adapters.register_dumper(str, NulFreeText)
        return conn

    def _run(self, fn: Callable[[Cursor], T], *, write: bool) -> T:
        for attempt in (1, 2):
            conn = self._conn(write)
            try:
                with conn.cursor() as cur:
                    result = fn(cur)
                if write:
                    conn.commit()
                return result
            except psycopg.OperationalError as exc:
                if attempt == 1 and (conn.broken or conn.closed):
                    log.warning("PostgreSQL connection lost (%s); reconnecting", exc)
                    self._forget(write)
                    continue
                _rollback(conn)
                raise
            except BaseException:
                _rollback(conn)
                raise
        raise AssertionError("unreachable")

    def _conn(self, write: bool) -> psycopg.Connection[tuple[object, ...]]:
        if self._closed:
            raise RuntimeError("the PostgreSQL ledger is closed")
        conn = self._wconn if write else self._rconn
        if conn is None or conn.closed:
            conn = self._connect(autocommit=not write)
            if write:
                self._wconn = conn
            else:
                self._rconn = conn
        return conn

    def _forget(self, write: bool) -> None:
        conn = self._wconn if write else self._rconn
        if conn is not None:
            conn.close()
        if write:
            self._wconn = None
        else:
            self._rconn = None

    def _write(self, fn: Callable[[Cursor], T]) -> T:
        with self._wlock:
            return self._run(fn, write=True)

    def _read(self, fn: Callable[[Cursor], T]) -> T:
        with self._rlock:
            return self._run(fn, write=False)

    def _insert_new(
        self,
        cur: Cursor,
        sql: str,
        records: Sequence[UsageRecord],
        rows: Sequence[tuple[Any, ...]],
    ) -> Sequence[UsageRecord]:
        # RETURNING names the rows added, in the same pipelined round trip.
        pg = cast("psycopg.Cursor[tuple[Any, ...]]", cur)
        pg.executemany(sql + " RETURNING request_id", rows, returning=True)
        added: set[str] = set()
        while True:
            added.update(row[0] for row in pg.fetchall())
            if not pg.nextset():
                break
        fresh = []
        for r in records:  # within a batch, the first of a repeated id is the one inserted
            if r.request_id in added:
                added.discard(r.request_id)
                fresh.append(r)
        return fresh

    def _pipeline(self, cur: Cursor) -> contextlib.AbstractContextManager[Any]:
        # The rollup upserts go out together: one round trip, not one each.
        return cast("psycopg.Cursor[tuple[Any, ...]]", cur).connection.pipeline()

    def _lock_for_migration(self, cur: Cursor) -> None:
        # Released at commit; current_schema() is NULL when search_path names no
        # existing schema, and a NULL key would silently skip the lock.
        cur.execute(
            f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK}, "
            "hashtext(coalesce(current_schema(), '')))"
        )

    def close(self) -> None:
        with self._wlock, self._rlock:
            if self._closed:
                return
            self._closed = True
            for conn in (self._wconn, self._rconn):
                if conn is not None:
                    conn.close()
            self._wconn = self._rconn = None

    def __repr__(self) -> str:
        info = psycopg.conninfo.conninfo_to_dict(self.url)
        return f"PostgresStore(host={info.get('host')!r}, dbname={info.get('dbname')!r})"


def _rollback(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    if conn.closed or conn.broken:
        return
    try:
        conn.rollback()
    except psycopg.Error:
        log.debug("rollback failed", exc_info=True)
