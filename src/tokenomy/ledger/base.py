"""The store interface: one ledger of usage records plus virtual keys.

Stores are synchronous and owned by one thread at a time; the gateway talks to
them through `tokenomy.ledger.writer.GroupCommitWriter` (records) and
``asyncio.to_thread`` (keys), so a slow disk or a network round trip to
PostgreSQL never blocks the event loop.

`SQLStore` holds everything the two SQL engines share: the statements, the
record ↔ row mapping and the key queries. An engine supplies its connections
through ``_write`` (one committed transaction) and ``_read``.
"""

from __future__ import annotations

import contextlib
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from types import TracebackType
from typing import Any, NamedTuple, TypeVar

import orjson

from ..errors import InvalidRequest
from ..records import UsageRecord
from ..usage import Usage
from . import rollups
from .migrations import Cursor, Dialect, apply_pending
from .pages import Page, SortKey, read_page

T = TypeVar("T")


@dataclass(slots=True)
class KeyRecord:
    key_id: str  # public identifier, safe to log ("tk-" + 8 hex)
    key_hash: str  # sha256 hex of the secret key; the secret itself is never stored
    name: str | None = None
    org: str | None = None
    team: str | None = None
    user: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    models: list[str] = field(default_factory=list)  # empty: every model
    created_at: float = 0.0
    expires_at: float | None = None
    revoked_at: float | None = None


class Owner(NamedTuple):
    """Who made a request, as its ledger row names them (`tokenomy.tenancy.tenant`
    reads its tenant from this)."""

    key_id: str | None
    org: str | None
    team: str | None


class Store(ABC):
    """A ledger backend. Implementations: SQLite (default) and PostgreSQL."""

    # Where GroupCommitWriter appends records it could not insert, unless told otherwise.
    fallback_path: str = "tokenomy-ledger.failed.jsonl"
    # True when a commit is fast and local (SQLite): the group-commit writer then
    # commits on the event loop itself instead of handing records to a thread.
    inline_commits: bool = False
    # Set after each commit by a store whose log needs checkpoints (SQLite): the
    # writer's checkpoint thread sleeps on it while the ledger is idle.
    committed: threading.Event | None = None

    def checkpoint(self) -> None:
        """Fold the write-ahead log back into the database (SQLite); default no-op."""
        return None

    @abstractmethod
    def migrate(self, *, upto: str | None = None) -> list[str]:
        """Apply pending migrations in order (stopping after ``upto`` if given);
        return the names applied. Idempotent, and safe when processes race."""

    @abstractmethod
    def insert_records(self, records: Sequence[UsageRecord]) -> int:
        """Append records in one transaction (committed when this returns).

        Returns the number of rows added: a record whose ``request_id`` is already
        in the ledger is skipped, so a retry can never count a request twice."""

    @abstractmethod
    def get_record(self, request_id: str) -> UsageRecord | None: ...

    @abstractmethod
    def list_records(self, *, limit: int = 1000, since: float | None = None) -> list[UsageRecord]:
        """The newest ``limit`` records (from ``since`` on), newest first: at most
        ``limit`` of them. For every record, `iter_records`."""

    @abstractmethod
    def iter_records(
        self, *, since: float | None = None, page: int = 2000
    ) -> Iterator[UsageRecord]:
        """Oldest first, read ``page`` records at a time: memory stays flat however
        big the ledger is, and no read is held open between pages."""

    @abstractmethod
    def count_records(self) -> int: ...

    @abstractmethod
    def response_owners(self, response_id: str) -> list[Owner]:
        """Who made the Responses API response ``response_id`` (the rows whose
        ``response_id`` it is; one, unless an upstream reused an id): empty when
        the gateway never relayed it."""

    @abstractmethod
    def response_deployment(self, response_id: str) -> str | None:
        """The deployment that served the response ``response_id`` (its latest row's),
        where the response is kept; None when the gateway never relayed it."""

    @abstractmethod
    def item_owners(self, item_ids: Sequence[str]) -> dict[str, list[Owner]]:
        """Who made the responses whose output had the items ``item_ids`` (a
        record's ``item_ids``), by item id; an item the gateway never relayed is
        not in it."""

    @abstractmethod
    def create_key(self, key: KeyRecord) -> None:
        """Raises `InvalidRequest` (409) if the key id or hash already exists."""

    @abstractmethod
    def get_key_by_hash(self, key_hash: str) -> KeyRecord | None: ...

    @abstractmethod
    def get_key(self, key_id: str) -> KeyRecord | None: ...

    @abstractmethod
    def list_keys(self) -> list[KeyRecord]:
        """Oldest first."""

    @abstractmethod
    def keys_page(self, *, after: SortKey | None = None, limit: int = 100) -> Page[KeyRecord]:
        """``limit`` keys past ``after``, oldest first; the sort key is
        ``(created_at, key_id)``: see `tokenomy.ledger.pages`."""

    @abstractmethod
    def update_key(
        self, key_id: str, *, revoked_at: float | None = None, expires_at: float | None = None
    ) -> bool:
        """Set revoked_at and/or expires_at (None leaves a field unchanged).
        Returns False if there is no such key."""

    @abstractmethod
    def close(self) -> None:
        """Close the connections. Idempotent."""

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# -- the record <-> row mapping -----------------------------------------------------------

# Column order of `requests` (minus the surrogate ``id``). UsageRecord.user is
# stored as ``end_user``: ``user`` is a PostgreSQL keyword that silently selects
# the current role when left unquoted.
REQUEST_COLUMNS = (
    "request_id",
    "ts",
    "api",
    "endpoint",
    "key_id",
    "org",
    "team",
    "end_user",
    "tags",
    "requested_model",
    "served_model",
    "provider",
    "deployment",
    "stream",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cache_write_1h_tokens",
    "reasoning_tokens",
    "estimated",
    "cost_usd",
    "price_unknown",
    "latency_ms",
    "ttft_ms",
    "status",
    "error_type",
    "decisions",
    "audio_input_tokens",
    "audio_output_tokens",
    "web_search_requests",
    "upstream_request_id",
    "charged",
    "response_id",
    "price_context",
    "upstream_error_code",
)
KEY_COLUMNS = (
    "key_id",
    "key_hash",
    "name",
    "org",
    "team",
    "end_user",
    "tags",
    "models",
    "created_at",
    "expires_at",
    "revoked_at",
)
# The ids of a response's output items, each with the request id of the row that
# relayed them: only rows just added get theirs, so a retried batch adds none twice
# (the conflict clause takes a record naming one item twice).
_INSERT_ITEMS = (
    "INSERT INTO response_items (item_id, request_id) VALUES (?, ?) ON CONFLICT DO NOTHING"
)
_JSON_COLUMNS = {"tags", "decisions", "models", "price_context"}


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Decimal):  # money in a lever's decision: keep it exact
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def dump_json(obj: Any) -> str:
    return orjson.dumps(obj, default=_json_default).decode()


def _load_json(value: Any) -> Any:
    # SQLite hands back text; psycopg has already parsed JSONB.
    return orjson.loads(value) if isinstance(value, str | bytes) else value


def _money(value: Any) -> Decimal | None:
    if value is None or isinstance(value, Decimal):
        return value
    return Decimal(value)


def record_to_row(rec: UsageRecord, dialect: Dialect) -> tuple[Any, ...]:
    u = rec.usage
    cost: Any = rec.cost_usd
    if cost is not None and dialect.money_as_text:
        cost = format(cost, "f")  # exact, and never in exponent notation
    return (
        rec.request_id,
        float(rec.ts),
        rec.api,
        rec.endpoint,
        rec.key_id,
        rec.org,
        rec.team,
        rec.user,
        dump_json(rec.tags),
        rec.requested_model,
        rec.served_model,
        rec.provider,
        rec.deployment,
        bool(rec.stream),
        u.input_tokens,
        u.output_tokens,
        u.cache_read_tokens,
        u.cache_write_tokens,
        u.cache_write_1h_tokens,
        u.reasoning_tokens,
        bool(u.estimated),
        cost,
        bool(rec.price_unknown),
        rec.latency_ms,
        rec.ttft_ms,
        rec.status,
        rec.error_type,
        dump_json(rec.decisions),
        u.audio_input_tokens,
        u.audio_output_tokens,
        u.web_search_requests,
        rec.upstream_request_id,
        bool(rec.charged),
        rec.response_id,
        dump_json(dict(u.price_context)) if u.price_context else None,
        rec.upstream_error_code,
    )


def _price_context(value: Any) -> tuple[tuple[str, str], ...]:
    """The stored ``{"service_tier": "priority"}`` as `Usage.price_context`; null: ()."""
    got = _load_json(value) if value is not None else None
    return tuple((str(k), str(v)) for k, v in got.items()) if isinstance(got, dict) else ()


def row_to_record(row: Sequence[Any]) -> UsageRecord:
    (
        request_id,
        ts,
        api,
        endpoint,
        key_id,
        org,
        team,
        end_user,
        tags,
        requested_model,
        served_model,
        provider,
        deployment,
        stream,
        input_tokens,
        output_tokens,
        cache_read_tokens,
        cache_write_tokens,
        cache_write_1h_tokens,
        reasoning_tokens,
        estimated,
        cost_usd,
        price_unknown,
        latency_ms,
        ttft_ms,
        status,
        error_type,
        decisions,
        audio_input_tokens,
        audio_output_tokens,
        web_search_requests,
        upstream_request_id,
        charged,
        response_id,
        price_context,
        upstream_error_code,
    ) = row
    return UsageRecord(
        request_id=request_id,
        ts=ts,
        api=api,
        endpoint=endpoint,
        key_id=key_id,
        org=org,
        team=team,
        user=end_user,
        tags=_load_json(tags),
        requested_model=requested_model,
        served_model=served_model,
        provider=provider,
        deployment=deployment,
        stream=bool(stream),
        usage=Usage(
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cache_read_tokens=cache_read_tokens,
            cache_write_tokens=cache_write_tokens,
            cache_write_1h_tokens=cache_write_1h_tokens,
            reasoning_tokens=reasoning_tokens,
            estimated=bool(estimated),
            price_context=_price_context(price_context),
            audio_input_tokens=audio_input_tokens,
            audio_output_tokens=audio_output_tokens,
            web_search_requests=web_search_requests,
        ),
        cost_usd=_money(cost_usd),
        price_unknown=bool(price_unknown),
        latency_ms=latency_ms,
        ttft_ms=ttft_ms,
        status=status,
        error_type=error_type,
        decisions=_load_json(decisions),
        upstream_request_id=upstream_request_id,
        charged=bool(charged),
        response_id=response_id,
        upstream_error_code=upstream_error_code,
    )


def key_to_row(key: KeyRecord) -> tuple[Any, ...]:
    return (
        key.key_id,
        key.key_hash,
        key.name,
        key.org,
        key.team,
        key.user,
        dump_json(key.tags),
        dump_json(key.models),
        key.created_at,
        key.expires_at,
        key.revoked_at,
    )


def row_to_key(row: Sequence[Any]) -> KeyRecord:
    key_id, key_hash, name, org, team, end_user, tags, models, created, expires, revoked = row
    return KeyRecord(
        key_id=key_id,
        key_hash=key_hash,
        name=name,
        org=org,
        team=team,
        user=end_user,
        tags=_load_json(tags),
        models=_load_json(models),
        created_at=created,
        expires_at=expires,
        revoked_at=revoked,
    )


# -- the shared SQL store -------------------------------------------------------------------


class SQLStore(Store):
    """The queries, written once; subclasses own the connections and their locks."""

    dialect: Dialect
    # The driver's exception for a violated UNIQUE constraint.
    integrity_error: tuple[type[Exception], ...] = ()

    @abstractmethod
    def _write(self, fn: Callable[[Cursor], T]) -> T:
        """Run ``fn`` inside one write transaction and commit it (roll back on error)."""

    @abstractmethod
    def _read(self, fn: Callable[[Cursor], T]) -> T:
        """Run ``fn`` on the read connection."""

    def _lock_for_migration(self, cur: Cursor) -> None:
        """Serialise migrations across processes (a no-op if ``_write`` already does)."""

    def _sql(self, template: str) -> str:
        return template.replace("?", self.dialect.param)

    def _values(self, columns: Sequence[str]) -> str:
        d = self.dialect
        return ", ".join(d.json_param if c in _JSON_COLUMNS else d.param for c in columns)

    # -- migrations and records ------------------------------------------------------

    def migrate(self, *, upto: str | None = None) -> list[str]:
        def run(cur: Cursor) -> list[str]:
            self._lock_for_migration(cur)
            return apply_pending(cur, self.dialect, upto=upto)

        return self._write(run)

    def insert_records(self, records: Sequence[UsageRecord]) -> int:
        if not records:
            return 0
        rows = [record_to_row(r, self.dialect) for r in records]
        sql = (
            f"INSERT INTO requests ({', '.join(REQUEST_COLUMNS)}) "
            f"VALUES ({self._values(REQUEST_COLUMNS)}) ON CONFLICT (request_id) DO NOTHING"
        )

        def run(cur: Cursor) -> int:
            fresh = self._insert_new(cur, sql, records, rows)
            items = [(i, r.request_id) for r in fresh for i in r.item_ids]
            with self._pipeline(cur):
                if items:
                    cur.executemany(self._sql(_INSERT_ITEMS), items)
                rollups.bump(cur, self.dialect, fresh)
            return len(fresh)

        return self._write(run)

    def _insert_new(
        self,
        cur: Cursor,
        sql: str,
        records: Sequence[UsageRecord],
        rows: Sequence[tuple[Any, ...]],
    ) -> Sequence[UsageRecord]:
        """Run the insert; return the records it added (the rollups count only those).

        A savepoint keeps the common case to one ``executemany``: when the row
        count shows some ids were already recorded (a retried batch) or repeat
        within the batch, the insert is undone and redone with the new rows only.
        """
        cur.execute("SAVEPOINT tk_insert")
        cur.executemany(sql, rows)
        fresh: Sequence[UsageRecord] = records
        if cur.rowcount != len(records):
            cur.execute("ROLLBACK TO SAVEPOINT tk_insert")
            fresh = self._unrecorded(cur, records)
            if fresh:
                cur.executemany(sql, [record_to_row(r, self.dialect) for r in fresh])
        cur.execute("RELEASE SAVEPOINT tk_insert")
        return fresh

    def _pipeline(self, cur: Cursor) -> contextlib.AbstractContextManager[Any]:
        """Send the statements run inside it without waiting for each reply (an
        engine with a network round trip overrides it)."""
        return contextlib.nullcontext()

    def _unrecorded(self, cur: Cursor, records: Sequence[UsageRecord]) -> list[UsageRecord]:
        """The records whose request id is not in the ledger, each id once."""
        seen: set[str] = set()
        ids = list(dict.fromkeys(r.request_id for r in records))
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            marks = ", ".join([self.dialect.param] * len(chunk))
            cur.execute(f"SELECT request_id FROM requests WHERE request_id IN ({marks})", chunk)
            seen.update(row[0] for row in cur.fetchall())
        fresh = []
        for r in records:
            if r.request_id not in seen:
                seen.add(r.request_id)
                fresh.append(r)
        return fresh

    def get_record(self, request_id: str) -> UsageRecord | None:
        sql = self._sql(f"SELECT {', '.join(REQUEST_COLUMNS)} FROM requests WHERE request_id = ?")
        row = self._read(lambda cur: cur.execute(sql, (request_id,)).fetchone())
        return None if row is None else row_to_record(row)

    def list_records(self, *, limit: int = 1000, since: float | None = None) -> list[UsageRecord]:
        where, params = ("", (limit,)) if since is None else ("WHERE ts >= ?", (since, limit))
        sql = self._sql(
            f"SELECT {', '.join(REQUEST_COLUMNS)} FROM requests {where} "
            "ORDER BY ts DESC, id DESC LIMIT ?"
        )
        rows = self._read(lambda cur: cur.execute(sql, params).fetchall())
        return [row_to_record(r) for r in rows]

    def iter_records(
        self, *, since: float | None = None, page: int = 2000
    ) -> Iterator[UsageRecord]:
        cols = f"id, {', '.join(REQUEST_COLUMNS)}"
        order = "ORDER BY ts, id LIMIT ?"
        first = self._sql(f"SELECT {cols} FROM requests WHERE ts >= ? {order}")
        # (ts, id) past the last row read; `ts >= ?` lets the ts index find the start
        rest = self._sql(
            f"SELECT {cols} FROM requests WHERE ts >= ? AND (ts > ? OR id > ?) {order}"
        )
        params: tuple[Any, ...] = (float("-inf") if since is None else since, page)
        sql = first
        while True:
            rows = self._fetch(sql, params)
            for row in rows:
                yield row_to_record(row[1:])
            if len(rows) < page:
                return
            last_id, last_ts = rows[-1][0], rows[-1][2]
            sql, params = rest, (last_ts, last_ts, last_id, page)

    def _fetch(self, sql: str, params: Sequence[Any]) -> list[Any]:
        return self._read(lambda cur: cur.execute(sql, params).fetchall())

    def count_records(self) -> int:
        row = self._read(lambda cur: cur.execute("SELECT count(*) FROM requests").fetchone())
        return int(row[0])

    def response_owners(self, response_id: str) -> list[Owner]:
        # a client's id may hold a NUL: no row holds it (PostgreSQL: `NulFreeText`)
        sql = self._sql(
            "SELECT DISTINCT key_id, org, team FROM requests WHERE response_id = ? LIMIT 16"
        )
        rows = self._read(lambda cur: cur.execute(sql, (response_id,)).fetchall())
        return [Owner(*row) for row in rows]

    def response_deployment(self, response_id: str) -> str | None:
        sql = self._sql(
            "SELECT deployment FROM requests WHERE response_id = ? AND deployment IS NOT NULL "
            "ORDER BY ts DESC LIMIT 1"
        )
        row = self._read(lambda cur: cur.execute(sql, (response_id,)).fetchone())
        return None if row is None else str(row[0])

    def item_owners(self, item_ids: Sequence[str]) -> dict[str, list[Owner]]:
        ids = list(dict.fromkeys(item_ids))
        owners: dict[str, list[Owner]] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ", ".join([self.dialect.param] * len(chunk))
            sql = (
                "SELECT DISTINCT i.item_id, r.key_id, r.org, r.team FROM response_items i "
                f"JOIN requests r ON r.request_id = i.request_id WHERE i.item_id IN ({marks})"
            )
            rows = self._fetch(sql, chunk)
            for item_id, *owner in rows:
                owners.setdefault(item_id, []).append(Owner(*owner))
        return owners

    # -- keys -------------------------------------------------------------------------------

    def create_key(self, key: KeyRecord) -> None:
        sql = (
            f"INSERT INTO api_keys ({', '.join(KEY_COLUMNS)}) VALUES ({self._values(KEY_COLUMNS)})"
        )
        row = key_to_row(key)
        try:
            self._write(lambda cur: cur.execute(sql, row))
        except self.integrity_error as exc:
            raise InvalidRequest(
                f"A key with id {key.key_id!r} or the same hash already exists.",
                status=409,
                code="key_exists",
            ) from exc

    def _one_key(self, column: str, value: str) -> KeyRecord | None:
        sql = self._sql(f"SELECT {', '.join(KEY_COLUMNS)} FROM api_keys WHERE {column} = ?")
        row = self._read(lambda cur: cur.execute(sql, (value,)).fetchone())
        return None if row is None else row_to_key(row)

    def get_key_by_hash(self, key_hash: str) -> KeyRecord | None:
        return self._one_key("key_hash", key_hash)

    def get_key(self, key_id: str) -> KeyRecord | None:
        return self._one_key("key_id", key_id)

    def list_keys(self) -> list[KeyRecord]:
        sql = f"SELECT {', '.join(KEY_COLUMNS)} FROM api_keys ORDER BY created_at, key_id"
        return [row_to_key(r) for r in self._read(lambda cur: cur.execute(sql).fetchall())]

    def keys_page(self, *, after: SortKey | None = None, limit: int = 100) -> Page[KeyRecord]:
        return read_page(
            self._read, f"SELECT {', '.join(KEY_COLUMNS)} FROM api_keys", ("created_at", "key_id"),
            after, limit, item=row_to_key, key=lambda k: (k.created_at, k.key_id),
            param=self.dialect.param,
        )  # fmt: skip

    def update_key(
        self, key_id: str, *, revoked_at: float | None = None, expires_at: float | None = None
    ) -> bool:
        sets = [
            (c, v)
            for c, v in (("revoked_at", revoked_at), ("expires_at", expires_at))
            if v is not None
        ]
        if not sets:
            return self.get_key(key_id) is not None
        sql = self._sql(
            f"UPDATE api_keys SET {', '.join(c + ' = ?' for c, _ in sets)} WHERE key_id = ?"
        )
        params = (*(v for _, v in sets), key_id)

        def run(cur: Cursor) -> bool:
            cur.execute(sql, params)
            return cur.rowcount > 0

        return self._write(run)
