"""The SQLite ledger: the default, one file next to the gateway.

Two connections, each behind its own lock: the write connection (record batches
from the writer thread, key changes, migrations) and a read-only connection
(key lookups, reports). In WAL mode readers never wait for the writer, so a key
lookup from ``asyncio.to_thread`` is not held up by a batch being inserted. An
in-memory database has a single connection and lock, since a second connection
would open a second, empty database.

Every write transaction starts with ``BEGIN IMMEDIATE``: it takes the file's
write lock up front, so another process on the same file (``tokenomy keys
create`` while the gateway runs) waits up to ``busy_timeout`` instead of failing
half-way through.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from typing import TypeVar

from ..errors import ConfigError
from .base import SQLStore
from .migrations import SQLITE, Cursor
from .rollups import register_sqlite_functions

T = TypeVar("T")

MEMORY = ":memory:"


class SQLiteStore(SQLStore):
    dialect = SQLITE
    integrity_error = (sqlite3.IntegrityError,)

    def __init__(self, path: str, *, busy_timeout: float = 5.0) -> None:
        self.path = path
        self.busy_timeout = busy_timeout
        if path != MEMORY:
            self.fallback_path = path + ".failed.jsonl"
            self.inline_commits = True
        self._ckpt_conn: sqlite3.Connection | None = None
        self.committed: threading.Event = threading.Event()
        self._closed = False
        self._wconn = self._connect(readonly=False)
        self._wlock = threading.Lock()
        if path == MEMORY:
            self._rconn, self._rlock = self._wconn, self._wlock
        else:
            self._rconn, self._rlock = self._connect(readonly=True), threading.Lock()

    def _connect(self, *, readonly: bool) -> sqlite3.Connection:
        try:
            # isolation_level=None: the module never opens transactions behind our back.
            conn = sqlite3.connect(
                self.path,
                timeout=self.busy_timeout,
                isolation_level=None,
                check_same_thread=False,
            )
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            if not readonly:
                # Persistent in the file; only needs to succeed once.
                conn.execute("PRAGMA journal_mode = WAL")
            # With WAL, NORMAL loses nothing when the process dies (the OS has the
            # pages); only a power cut can roll back the last few commits.
            conn.execute("PRAGMA synchronous = NORMAL")
            if readonly:
                conn.execute("PRAGMA query_only = ON")
            register_sqlite_functions(conn)  # exact money sums for the rollups
        except sqlite3.Error as exc:
            raise ConfigError(f"cannot open SQLite ledger {self.path!r}: {exc}") from exc
        return conn

    def _write(self, fn: Callable[[Cursor], T]) -> T:
        with self._wlock:
            cur = self._wconn.cursor()
            try:
                cur.execute("BEGIN IMMEDIATE")
                result = fn(cur)
                cur.execute("COMMIT")
                if not self.committed.is_set():  # set() takes a lock: only when it changes
                    self.committed.set()
                return result
            except BaseException:
                if self._wconn.in_transaction:
                    self._wconn.execute("ROLLBACK")
                raise
            finally:
                cur.close()

    def _read(self, fn: Callable[[Cursor], T]) -> T:
        with self._rlock:
            cur = self._rconn.cursor()
            try:
                return fn(cur)
            finally:
                cur.close()

    def checkpoint(self) -> None:
        """A passive checkpoint on a connection of its own, so that commits on the
        request path never pay for one (see `GroupCommitWriter`). One that could not
        copy the whole log back (a reader held it) marks the ledger for another."""
        with self._wlock:
            if self._closed or self.path == MEMORY:
                return
            if self._ckpt_conn is None:
                self._wconn.execute("PRAGMA wal_autocheckpoint = 0")
                self._ckpt_conn = self._connect(readonly=False)
            conn = self._ckpt_conn
        try:
            row = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.ProgrammingError:  # closed meanwhile
            return
        if row is not None and row[2] < row[1]:  # frames left in the log
            self.committed.set()

    def close(self) -> None:
        with self._wlock:
            if self._closed:
                return
            self._closed = True
            self._wconn.close()
            if self._ckpt_conn is not None:
                self._ckpt_conn.close()
        if self._rconn is not self._wconn:
            with self._rlock:
                self._rconn.close()

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"
