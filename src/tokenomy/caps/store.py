"""Budget and limit definitions, fired alerts, and the ledger sums counters start from.

The tables live in the ledger's database (migration ``m002_caps``), so one
backup, one migration list and, across replicas, one PostgreSQL serve them.
`CapsStore` runs its SQL through the ledger store's own transactions
(``SQLStore._write``/``_read``, as billing does): reads and writes are
synchronous, so the gateway calls them in a thread.

Every change to a definition bumps ``cap_version`` in the same transaction;
gateways poll that one row about once a second and reload when it moves.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any, TypeVar

import orjson

from ..errors import ConfigError, InvalidRequest, NotFound
from ..ledger.base import REQUEST_COLUMNS, SQLStore, Store, dump_json, row_to_record
from ..ledger.charges import as_charged
from ..ledger.migrations import Cursor
from ..ledger.pages import Page, SortKey, read_page
from ..records import UsageRecord
from .counters import usd_to_units
from .model import EACH, Budget, Limit, Scope, Subject
from .periods import parse_period

T = TypeVar("T")
D = TypeVar("D", Budget, Limit)

BUDGET_COLUMNS = ("id", "name", "scope", "period", "limit_usd", "limit_tokens", "on_exceed",
                  "fail_mode", "alerts", "webhook_url", "created_at", "updated_at")  # fmt: skip
LIMIT_COLUMNS = ("id", "name", "scope", "rpm", "tpm", "input_tpm", "output_tpm", "concurrent",
                 "window_seconds", "fail_mode", "created_at", "updated_at")  # fmt: skip
_JSON = {"scope", "alerts"}
_ALERT_KEYS = ("budget_id", "entity", "period", "threshold", "fired_at", "total", "limit")
ALLOWANCE_SLACK = 60.0  # seconds: how far a replica's clock may lag the one that made it

# The ledger columns each scope dimension reads.
_COLUMNS = {"org": "org", "team": "team", "key": "key_id", "user": "end_user",
            "model": "requested_model"}  # fmt: skip


def _units_of(value: Any) -> int:
    return 0 if value is None else usd_to_units(Decimal(value))


def _loads(value: Any) -> Any:
    return orjson.loads(value) if isinstance(value, str | bytes) else value


class CapsStore:
    def __init__(self, store: Store) -> None:
        if not isinstance(store, SQLStore):
            raise ConfigError(f"caps need a SQL ledger (SQLite or PostgreSQL), not {store!r}")
        self.store = store
        self.dialect = store.dialect
        self.pg = self.dialect.name == "postgres"

    # -- plumbing ---------------------------------------------------------------------------

    def _sql(self, template: str) -> str:
        return template.replace("?", self.dialect.param)

    def _write(self, fn: Callable[[Cursor], T]) -> T:
        return self.store._write(fn)

    def _read(self, fn: Callable[[Cursor], T]) -> T:
        return self.store._read(fn)

    def _marks(self, columns: Sequence[str]) -> str:
        d = self.dialect
        return ", ".join(d.json_param if c in _JSON else d.param for c in columns)

    def _bump(self, cur: Cursor) -> None:
        cur.execute("UPDATE cap_version SET version = version + 1 WHERE id = 1")

    # -- definitions --------------------------------------------------------------------------

    def version(self) -> int:
        row = self._read(lambda cur: cur.execute("SELECT version FROM cap_version").fetchone())
        return int(row[0]) if row else 0

    def load(self) -> tuple[int, list[Budget], list[Limit]]:
        """Every definition, with the version they belong to (one consistent read)."""
        bsql = f"SELECT {', '.join(BUDGET_COLUMNS)} FROM cap_budgets ORDER BY created_at, id"
        lsql = f"SELECT {', '.join(LIMIT_COLUMNS)} FROM cap_limits ORDER BY created_at, id"

        def run(cur: Cursor) -> tuple[int, list[Any], list[Any]]:
            # The version is read first: a change racing this read is seen again
            # at the next poll, never missed.
            v = cur.execute("SELECT version FROM cap_version").fetchone()
            return int(v[0]), cur.execute(bsql).fetchall(), cur.execute(lsql).fetchall()

        version, brows, lrows = self._read(run)
        return version, [self._budget(r) for r in brows], [self._limit(r) for r in lrows]

    def budgets_page(self, *, after: SortKey | None = None, limit: int = 100) -> Page[Budget]:
        """``limit`` budgets past ``after``, in the order of `load`: the sort key is
        ``(created_at, id)``."""
        return self._page("cap_budgets", BUDGET_COLUMNS, self._budget, after, limit)

    def limits_page(self, *, after: SortKey | None = None, limit: int = 100) -> Page[Limit]:
        """``limit`` rate limits past ``after``, sorted as `budgets_page`."""
        return self._page("cap_limits", LIMIT_COLUMNS, self._limit, after, limit)

    def _page(
        self,
        table: str,
        columns: Sequence[str],
        item: Callable[[Sequence[Any]], D],
        after: SortKey | None,
        limit: int,
    ) -> Page[D]:
        return read_page(
            self._read, f"SELECT {', '.join(columns)} FROM {table}", ("created_at", "id"), after,
            limit, item=item, key=lambda d: (d.created_at, d.id), param=self.dialect.param,
        )  # fmt: skip

    def _budget(self, row: Sequence[Any]) -> Budget:
        (id_, name, scope, period, usd, tokens, on_exceed, fail_mode, alerts, hook, c, u) = row
        return Budget(
            id=id_, name=name, scope=Scope.of(_loads(scope)), period=parse_period(period),
            limit_usd=None if usd is None else Decimal(usd), limit_tokens=tokens,
            on_exceed=on_exceed, fail_mode=fail_mode, alerts=tuple(_loads(alerts)),
            webhook_url=hook, created_at=c, updated_at=u,
        )  # fmt: skip

    def _limit(self, row: Sequence[Any]) -> Limit:
        (id_, name, scope, rpm, tpm, itpm, otpm, conc, window, fail_mode, c, u) = row
        return Limit(
            id=id_, name=name, scope=Scope.of(_loads(scope)), rpm=rpm, tpm=tpm,
            input_tpm=itpm, output_tpm=otpm, concurrent=conc, window=window,
            fail_mode=fail_mode, created_at=c, updated_at=u,
        )  # fmt: skip

    def _budget_row(self, b: Budget) -> tuple[Any, ...]:
        usd: Any = b.limit_usd
        if usd is not None and self.dialect.money_as_text:
            usd = format(usd, "f")
        return (b.id, b.name, dump_json(b.scope.as_dict()), b.period.to_text(), usd,
                b.limit_tokens, b.on_exceed, b.fail_mode, dump_json(list(b.alerts)),
                b.webhook_url, b.created_at, b.updated_at)  # fmt: skip

    def _limit_row(self, lim: Limit) -> tuple[Any, ...]:
        return (lim.id, lim.name, dump_json(lim.scope.as_dict()), lim.rpm, lim.tpm,
                lim.input_tpm, lim.output_tpm, lim.concurrent, lim.window, lim.fail_mode,
                lim.created_at, lim.updated_at)  # fmt: skip

    def _upsert(self, table: str, columns: Sequence[str], row: tuple[Any, ...], new: bool) -> None:
        if new:
            sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({self._marks(columns)})"
            params: tuple[Any, ...] = row
        else:
            d = self.dialect
            sets = ", ".join(
                f"{c} = {d.json_param if c in _JSON else d.param}" for c in columns[1:]
            )
            sql = f"UPDATE {table} SET {sets} WHERE id = {d.param}"
            params = (*row[1:], row[0])

        def run(cur: Cursor) -> None:
            cur.execute(sql, params)
            if not new and cur.rowcount == 0:
                raise NotFound(f"no such {table[4:-1]} {row[0]!r}", code="not_found")
            self._bump(cur)

        try:
            self._write(run)
        except self.store.integrity_error as exc:
            raise InvalidRequest(
                f"a {table[4:-1]} named {row[1]!r} already exists", status=409, code="exists"
            ) from exc

    def save_budget(self, b: Budget, *, new: bool) -> None:
        self._upsert("cap_budgets", BUDGET_COLUMNS, self._budget_row(b), new)

    def save_limit(self, lim: Limit, *, new: bool) -> None:
        self._upsert("cap_limits", LIMIT_COLUMNS, self._limit_row(lim), new)

    def _find(self, table: str, columns: Sequence[str], ref: str) -> Any:
        sql = self._sql(f"SELECT {', '.join(columns)} FROM {table} WHERE id = ? OR name = ?")
        return self._read(lambda cur: cur.execute(sql, (ref, ref)).fetchone())

    def get_budget(self, ref: str) -> Budget | None:
        """By id or by name."""
        row = self._find("cap_budgets", BUDGET_COLUMNS, ref)
        return None if row is None else self._budget(row)

    def get_limit(self, ref: str) -> Limit | None:
        row = self._find("cap_limits", LIMIT_COLUMNS, ref)
        return None if row is None else self._limit(row)

    def delete(self, table: str, id_: str) -> bool:
        sql = self._sql(f"DELETE FROM {table} WHERE id = ?")

        def run(cur: Cursor) -> bool:
            cur.execute(sql, (id_,))
            gone = cur.rowcount > 0
            if gone:
                self._bump(cur)
            return gone

        return self._write(run)

    def delete_budget(self, id_: str) -> bool:
        return self.delete("cap_budgets", id_)

    def delete_limit(self, id_: str) -> bool:
        return self.delete("cap_limits", id_)

    # -- alerts ---------------------------------------------------------------------------

    def claim_alert(
        self, budget_id: str, entity: str, period: str, threshold: str, total: str, lim: str
    ) -> bool:
        """Record that a threshold fired; False if some process already recorded it."""
        sql = self._sql(
            "INSERT INTO cap_alerts (budget_id, entity, period, threshold, fired_at, total, lim) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
        )
        params = (budget_id, entity, period, threshold, time.time(), total, lim)

        def run(cur: Cursor) -> bool:
            cur.execute(sql, params)
            return cur.rowcount == 1

        return self._write(run)

    def alerts(self, budget_id: str | None = None) -> list[dict[str, Any]]:
        where = "" if budget_id is None else self._sql(" WHERE budget_id = ?")
        sql = (
            "SELECT budget_id, entity, period, threshold, fired_at, total, lim FROM cap_alerts"
            f"{where} ORDER BY fired_at"
        )
        params = () if budget_id is None else (budget_id,)
        rows = self._read(lambda cur: cur.execute(sql, params).fetchall())
        return [dict(zip(_ALERT_KEYS, r, strict=True)) for r in rows]

    def alerts_page(
        self, budget_id: str, *, after: SortKey | None = None, limit: int = 100
    ) -> Page[dict[str, Any]]:
        """``limit`` of a budget's fired thresholds past ``after``, in the order they
        fired: the sort key is ``(fired_at, entity, period, threshold)``."""
        sort = ("fired_at", "entity", "period", "threshold")
        return read_page(
            self._read,
            "SELECT budget_id, entity, period, threshold, fired_at, total, lim FROM cap_alerts",
            sort, after, limit,
            item=lambda r: dict(zip(_ALERT_KEYS, r, strict=True)),
            key=lambda a: tuple(a[k] for k in sort),
            param=self.dialect.param, where=[f"budget_id = {self.dialect.param}"],
            params=[budget_id],
        )  # fmt: skip

    # -- the ledger, seen by the caps -------------------------------------------------------------

    def records(self, request_ids: Sequence[str]) -> dict[str, UsageRecord]:
        """The requests' records, each as it was charged (with its charged side
        rows: `tokenomy.ledger.charges`), as the sweeper settles them."""
        out: dict[str, UsageRecord] = {}
        for i in range(0, len(request_ids), 500):
            chunk = list(request_ids[i : i + 500])
            marks = ", ".join([self.dialect.param] * len(chunk))
            sql = f"SELECT {', '.join(REQUEST_COLUMNS)} FROM requests WHERE request_id IN ({marks})"

            def run(cur: Cursor, sql: str = sql, chunk: list[str] = chunk) -> list[UsageRecord]:
                recs = [row_to_record(row) for row in cur.execute(sql, chunk).fetchall()]
                return as_charged(cur, self.dialect, recs)

            for rec in self._read(run):
                out[rec.request_id] = rec
        return out

    def allowance_records(self, allowances: Mapping[str, float]) -> dict[str, list[UsageRecord]]:
        """Per allowance id, the records of the requests admitted from it (they name
        it in ``decisions.caps.allowances``), from ``ALLOWANCE_SLACK`` seconds before
        the time it was made (a replica's clock may run a little behind another's),
        each as it was charged (`records`)."""
        p = self.dialect.param
        sql = (
            f"SELECT {', '.join(REQUEST_COLUMNS)} FROM requests "
            f"WHERE ts >= {p} AND CAST(decisions AS TEXT) LIKE {p}"
        )
        out: dict[str, list[UsageRecord]] = {}
        for rid, since in allowances.items():
            # An id is letters, digits and colons: nothing LIKE would read as a pattern.
            params = [since - ALLOWANCE_SLACK, f'%"{rid}"%']

            def run(cur: Cursor, params: list[Any] = params) -> list[UsageRecord]:
                recs = [row_to_record(row) for row in cur.execute(sql, params).fetchall()]
                return as_charged(cur, self.dialect, recs)

            out[rid] = self._read(run)
        return out

    def ledger_totals(
        self,
        scope: Scope,
        measure: str,
        start: float,
        end: float | None,
        bucket_seconds: int | None,
    ) -> list[tuple[str, int, int]]:
        """(entity, bucket, amount) summed from the requests table, as settles add them:
        over the rows charged to their requests (`tokenomy.ledger.charges`), not the
        gateway's own calls.

        ``bucket_seconds`` None puts every row in bucket 0 (the caller's own bucket
        number is applied by the caller); otherwise rows are grouped by
        ``floor(ts / bucket_seconds)``, as rolling windows bucket them.
        """
        p = self.dialect.param
        where: list[str] = ["charged", "ts >= " + p]
        params: list[Any] = [start]
        groups: list[tuple[str, Any]] = []
        names: list[str] = []
        if end is not None:
            where.append("ts < " + p)
            params.append(end)
        for dim, want in scope.dims:
            if dim.startswith("tag:"):
                if self.pg:
                    expr = f"(tags->>{p})"
                    arg: Any = dim[4:]
                else:
                    expr = f"json_extract(tags, {p})"
                    arg = '$."' + dim[4:].replace('"', '""') + '"'
            else:
                expr, arg = _COLUMNS[dim], None
            if want == EACH:
                groups.append((expr, arg))
                names.append(dim)
                where.append(f"{expr} IS NOT NULL")
            else:
                where.append(f"{expr} = {p}")
            if arg is not None:
                params.append(arg)
            if want != EACH:
                params.append(want)
        amount = {
            "usd": "CEIL(cost_usd * 1000000000)" if self.pg else "tk_caps_units(cost_usd)",
            "tokens": "input_tokens + output_tokens",
            "input_tokens": "input_tokens",
            "output_tokens": "output_tokens",
            "requests": "1",
        }[measure]
        if bucket_seconds is None:
            bucket = "0"
        elif self.pg:
            bucket = f"CAST(FLOOR(ts / {int(bucket_seconds)}) AS BIGINT)"
        else:
            bucket = f"CAST(ts / {int(bucket_seconds)} AS INTEGER)"
        # GROUP BY by position: a parameterised expression is not "the same" twice.
        select_exprs = [e for e, _ in groups]
        select_params = [a for _, a in groups if a is not None]
        positions = ", ".join(str(i + 1) for i in range(len(select_exprs) + 1))
        sql = (
            f"SELECT {', '.join([*select_exprs, bucket, f'SUM({amount})'])} FROM requests "
            f"WHERE {' AND '.join(where)} GROUP BY {positions}"
        )
        all_params = [*select_params, *params]

        def run(cur: Cursor) -> list[Any]:
            if not self.pg:
                conn = getattr(cur, "connection", None)
                if isinstance(conn, sqlite3.Connection):
                    conn.create_function("tk_caps_units", 1, _units_of, deterministic=True)
            return list(cur.execute(sql, all_params).fetchall())

        fixed = {d: v for d, v in scope.dims if v != EACH}
        out = []
        for row in self._read(run):
            values = dict(zip(names, row[: len(names)], strict=True))
            subject = _subject({**fixed, **{k: str(v) for k, v in values.items()}})
            entity = scope.entity(subject)
            if entity is not None and row[-1] is not None:
                out.append((entity, int(row[-2]), int(row[-1])))
        return out


def _subject(values: dict[str, str]) -> Subject:
    tags = {d[4:]: v for d, v in values.items() if d.startswith("tag:")}
    plain = {d: v for d, v in values.items() if not d.startswith("tag:")}
    return Subject(tags=tags, **plain)
