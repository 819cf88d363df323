"""The SQLite cache backend: one file of its own, next to the ledger by default.

Operations are small (one indexed row), so they run inline on the event loop, as
the ledger's inline writer does (except loading a namespace's semantic vectors,
which may be large and runs in a thread, on a connection of its own so that the
loop's lookups never wait for it); WAL mode without fsync on each commit keeps a
write well under a millisecond. Triggers keep the entry count and total size in
a one-row table, so the size limits are checked without scanning. Expired rows
are never served; each write also deletes a few of them, and, past a limit, the
oldest entries.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from typing import TypeVar

from .store import CacheUnavailable, Entry, SemanticRow, Stats

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cache_entries (
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    meta BLOB NOT NULL,
    body BLOB NOT NULL,
    vector BLOB,
    size INTEGER NOT NULL,
    created REAL NOT NULL,
    expires REAL NOT NULL,
    UNIQUE (namespace, key)
);
CREATE INDEX IF NOT EXISTS cache_entries_created ON cache_entries (created);
CREATE INDEX IF NOT EXISTS cache_entries_expires ON cache_entries (expires);
CREATE INDEX IF NOT EXISTS cache_entries_ns_created ON cache_entries (namespace, created)
    WHERE vector IS NOT NULL;
CREATE TABLE IF NOT EXISTS cache_stats (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    entries INTEGER NOT NULL,
    bytes INTEGER NOT NULL
);
INSERT OR IGNORE INTO cache_stats VALUES (0, 0, 0);
CREATE TRIGGER IF NOT EXISTS cache_entries_ins AFTER INSERT ON cache_entries BEGIN
    UPDATE cache_stats SET entries = entries + 1, bytes = bytes + NEW.size WHERE id = 0;
END;
CREATE TRIGGER IF NOT EXISTS cache_entries_del AFTER DELETE ON cache_entries BEGIN
    UPDATE cache_stats SET entries = entries - 1, bytes = bytes - OLD.size WHERE id = 0;
END;
"""

PURGE_BATCH = 64  # expired rows deleted per write
KEYS_PER_QUERY = 500  # keys in one IN (...) list, under SQLite's parameter limit

T = TypeVar("T")


class SQLiteCacheStore:
    def __init__(self, path: str, *, max_entries: int, max_bytes: int) -> None:
        self.path = path
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._reader: sqlite3.Connection | None = None  # for the semantic loads
        try:
            self._conn = self._connect()
            if path != ":memory:":
                self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise CacheUnavailable(f"cache database {path}: {exc}") from exc

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(
            self.path, timeout=5.0, isolation_level=None, check_same_thread=False
        )

    def _run(self, fn: Callable[[sqlite3.Connection], T], *, reader: bool = False) -> T:
        """``fn`` on the writer's connection, or with ``reader`` on the semantic loads'
        own (an in-memory database has only the one)."""
        reader = reader and self.path != ":memory:"
        with self._read_lock if reader else self._lock:
            try:
                if not reader:
                    return fn(self._conn)
                if self._reader is None:
                    self._reader = self._connect()
                return fn(self._reader)
            except sqlite3.Error as exc:
                raise CacheUnavailable(f"cache database {self.path}: {exc}") from exc

    async def get(self, namespace: str, key: str, now: float) -> Entry | None:
        row = self._run(
            lambda c: c.execute(
                "SELECT meta, body, vector FROM cache_entries "
                "WHERE namespace = ? AND key = ? AND expires > ?",
                (namespace, key, now),
            ).fetchone()
        )
        if row is None:
            return None
        return Entry.from_parts(namespace, key, row[0], row[1], row[2])

    async def put(self, entry: Entry, ttl: float) -> None:
        self._run(lambda c: self._put(c, entry, ttl))

    def _put(self, c: sqlite3.Connection, entry: Entry, ttl: float) -> None:
        c.execute("BEGIN IMMEDIATE")
        try:
            c.execute(
                "DELETE FROM cache_entries WHERE namespace = ? AND key = ?",
                (entry.namespace, entry.key),
            )
            c.execute(
                "INSERT INTO cache_entries "
                "(namespace, key, meta, body, vector, size, created, expires) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    entry.namespace,
                    entry.key,
                    entry.meta(),
                    entry.body,
                    entry.vector,
                    entry.size,
                    entry.created,
                    entry.created + ttl,
                ),
            )
            c.execute(
                "DELETE FROM cache_entries WHERE rowid IN (SELECT rowid FROM cache_entries "
                "WHERE expires <= ? LIMIT ?)",
                (time.time(), PURGE_BATCH),
            )
            self._evict(c, entry.size)
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise

    def _evict(self, c: sqlite3.Connection, fresh: int) -> None:
        """Delete the oldest entries until both limits hold (inside the write of an
        entry of ``fresh`` bytes): usually in one round, sized from the other
        entries' mean size."""
        while True:
            entries, size = c.execute(
                "SELECT entries, bytes FROM cache_stats WHERE id = 0"
            ).fetchone()
            if entries <= self.max_entries and size <= self.max_bytes:
                return
            n = max(entries - self.max_entries, 1)
            others, rest = entries - 1, size - fresh
            if size > self.max_bytes and others > 0 and rest > 0:
                n = max(n, -(-(size - self.max_bytes) * others // rest))  # at the mean size
            c.execute(
                "DELETE FROM cache_entries WHERE rowid IN "
                "(SELECT rowid FROM cache_entries ORDER BY created LIMIT ?)",
                (n,),
            )

    async def semantic_since(
        self, namespace: str, since: float, now: float, known: Mapping[str, float] | None = None
    ) -> list[SemanticRow]:
        # A first load may read a whole namespace: off the event loop.
        return await asyncio.to_thread(self._semantic_since, namespace, since, now, known or {})

    def _semantic_since(
        self, namespace: str, since: float, now: float, known: Mapping[str, float]
    ) -> list[SemanticRow]:
        rows = self._run(lambda c: _semantic_rows(c, namespace, since, now, known), reader=True)
        return [SemanticRow.of(str(k), m, bytes(v), float(t)) for k, m, v, t in rows]

    async def semantic_namespaces(self, now: float) -> list[str]:
        rows = self._run(
            lambda c: c.execute(
                "SELECT DISTINCT namespace FROM cache_entries "
                "WHERE vector IS NOT NULL AND expires > ?",
                (now,),
            ).fetchall()
        )
        return sorted(str(r[0]) for r in rows)

    async def clear(self, namespace: str | None = None) -> int:
        if namespace is None:
            return self._run(lambda c: c.execute("DELETE FROM cache_entries").rowcount)
        return self._run(
            lambda c: (
                c.execute("DELETE FROM cache_entries WHERE namespace = ?", (namespace,)).rowcount
            )
        )

    async def stats(self) -> Stats:
        entries, size = self._run(
            lambda c: c.execute("SELECT entries, bytes FROM cache_stats WHERE id = 0").fetchone()
        )
        return Stats(int(entries), int(size))

    async def close(self) -> None:
        with self._lock:
            self._conn.close()
        with self._read_lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None


_LIVE_VECTORS = "namespace = ? AND vector IS NOT NULL AND expires > ?"


def _semantic_rows(
    c: sqlite3.Connection, namespace: str, since: float, now: float, known: Mapping[str, float]
) -> list[tuple[str, bytes, bytes, float]]:
    """(key, meta, vector, created) of the live semantic rows created after
    ``since``; with ``known``, the keys are read first and the vectors of the
    rows not known (or replaced since) only."""
    live = (namespace, now)
    select = f"SELECT key, meta, vector, created FROM cache_entries WHERE {_LIVE_VECTORS}"
    if not known:
        return c.execute(f"{select} AND created > ?", (*live, since)).fetchall()
    keys = f"SELECT key, created FROM cache_entries WHERE {_LIVE_VECTORS} AND created > ?"
    new = [k for k, t in c.execute(keys, (*live, since)) if known.get(k) != t]
    rows: list[tuple[str, bytes, bytes, float]] = []
    for i in range(0, len(new), KEYS_PER_QUERY):
        batch = new[i : i + KEYS_PER_QUERY]
        marks = ",".join("?" * len(batch))
        rows += c.execute(f"{select} AND key IN ({marks})", (*live, *batch)).fetchall()
    return rows
