"""Read the ledger for reports: whole UTC days from the rollups, the rest from rows.

A time range ``[since, until)`` splits into the whole days inside it, read from
the daily rollups, and the partial days at either end, read from ``requests``
through its ``ts`` index. Both are summed in SQL by the dimensions the caller
will group by, so little comes back however many requests there were: the
coarse rollup (day, org, team, model, provider, endpoint, route) serves any
report that needs no key, user or tag; the others read the wide one. Money is
summed exactly (PostgreSQL ``NUMERIC``; on SQLite the ``tk_money_sum``
aggregate over decimal strings).

The results come back as *entries*: the values of `FIELDS` (unread ones are
empty) followed by the sums. `Scan.group` adds entries up by any of the
dimensions read, in Python, so a page can cut one scan several ways.
`benchmarks/report_scale.py` measures all this over 10 million rows.
"""

from __future__ import annotations

import decimal
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson

from ..ledger.base import REQUEST_COLUMNS, SQLStore, Store, row_to_record
from ..ledger.migrations import Cursor, Dialect
from ..ledger.rollups import (
    COARSE,
    DAY,
    USAGE_COUNTS,
    WIDE,
    money_sum,
    route_sql,
    row_sql,
    savings_sql,
    usage_sums_sql,
)
from ..records import UsageRecord
from .model import DIMENSIONS, NO_FILTER, Filters, Group, Totals, check_dimension

_MONEY = decimal.Context(prec=200)
_N = len(USAGE_COUNTS)

# What an entry holds before its sums, in this order.
FIELDS = ("day", "org", "team", "user", "key", "tags", "model", "provider", "endpoint", "route")
_AT = {f: i for i, f in enumerate(FIELDS)}
_K = len(FIELDS)
_COARSE_FIELDS = {"day", "org", "team", "model", "provider", "endpoint", "route"}
# The rollup and ``requests`` column behind each field.
_COLUMN = {"day": "day", "org": "org", "team": "team", "user": "end_user", "key": "key_id",
           "tags": "tags", "model": "model", "provider": "provider", "endpoint": "endpoint",
           "route": "route", "charged": "charged"}  # fmt: skip
_FILTERS = {"orgs": "org", "teams": "team", "users": "user", "keys": "key", "models": "model",
            "providers": "provider", "endpoints": "endpoint"}  # fmt: skip

Entry = tuple[Any, ...]


def field_of(dim: str) -> str:
    check_dimension(dim)
    return "tags" if dim == "tag" or dim.startswith("tag:") else dim


def _sql_store(store: Store) -> SQLStore:
    if not isinstance(store, SQLStore):
        raise TypeError(f"reports need a SQL ledger, not {type(store).__name__}")
    return store


@dataclass(slots=True)
class Scan:
    """The sums of one time range and filter, by the dimensions read."""

    fields: frozenset[str] = frozenset()
    entries: list[Entry] = field(default_factory=list)
    savings: list[Entry] = field(default_factory=list)  # the fields, then lever, saved_usd
    _tags: dict[Any, dict[str, str]] = field(default_factory=dict)

    def tags_of(self, raw: Any) -> dict[str, str]:
        """Tags of an entry, parsed once per distinct value."""
        if isinstance(raw, dict):
            return raw
        parsed = self._tags.get(raw)
        if parsed is None:
            parsed = self._tags[raw] = orjson.loads(raw) if raw else {}
        return parsed

    def total(self) -> Totals:
        groups = self.group(())
        return groups[0].totals if groups else Totals()

    def group(self, dims: Sequence[str], *, sort: str = "cost") -> list[Group]:
        """Sum the entries by ``dims`` (see `DIMENSIONS`); ``sort`` is ``cost``
        (largest first) or ``key``."""
        missing = {field_of(d) for d in dims} - self.fields
        if missing:
            raise ValueError(f"this scan did not read {sorted(missing)}")
        keyer = self._keyer(tuple(dims))
        sums: dict[tuple[Any, ...], list[Any]] = {}
        saved: dict[tuple[Any, ...], dict[str, Decimal]] = {}
        with decimal.localcontext(_MONEY):
            for e in self.entries:
                for key in keyer(e):
                    acc = sums.get(key)
                    if acc is None:
                        sums[key] = list(e[_K:])
                    else:
                        for i in range(_N + 1):
                            acc[i] += e[_K + i]
            for s in self.savings:
                for key in keyer(s):
                    levers = saved.setdefault(key, {})
                    levers[s[_K]] = levers.get(s[_K], Decimal(0)) + s[_K + 1]
        groups = []
        for key, acc in sums.items():
            t = Totals(cost_usd=acc[_N], savings=saved.pop(key, {}))
            for name, value in zip(USAGE_COUNTS, acc, strict=False):
                setattr(t, name, value)
            groups.append(Group(_key(key), t))
        for key, levers in saved.items():  # savings on requests outside every usage entry
            groups.append(Group(_key(key), Totals(savings=levers)))
        if sort == "key":
            groups.sort(key=lambda g: tuple("" if v is None else v for v in g.key))
        else:
            groups.sort(key=lambda g: (-g.totals.cost_usd, -g.totals.requests, _nonone(g.key)))
        return groups

    def _keyer(self, dims: tuple[str, ...]) -> Callable[[Entry], Iterable[tuple[Any, ...]]]:
        getters = [self._getter(d) for d in dims]
        if "tag" not in dims:
            return lambda e: (tuple(g(e) for g in getters),)
        at = dims.index("tag")

        def expand(e: Entry) -> Iterable[tuple[Any, ...]]:
            base = [g(e) for g in getters]
            pairs = self.tags_of(e[_AT["tags"]])
            if not pairs:
                return (tuple(base),)
            out = []
            for k, v in sorted(pairs.items()):
                base[at] = f"{k}={v}"
                out.append(tuple(base))
            return out

        return expand

    def _getter(self, dim: str) -> Callable[[Entry], Any]:
        if dim == "day":
            days: dict[int, str] = {}
            i = _AT["day"]

            def day(e: Entry) -> str:
                d = days.get(e[i])
                if d is None:
                    d = days[e[i]] = datetime.fromtimestamp(e[i], UTC).strftime("%Y-%m-%d")
                return d

            return day
        if dim.startswith("tag:"):
            name, i = dim[4:], _AT["tags"]
            return lambda e: self.tags_of(e[i]).get(name, "")
        if dim == "tag":
            return lambda e: ""  # filled in by the expansion
        i = _AT[dim]
        return lambda e: e[i]


def _key(key: tuple[Any, ...]) -> tuple[str | None, ...]:
    return tuple(None if v == "" or v is None else str(v) for v in key)


def _nonone(key: tuple[str | None, ...]) -> tuple[str, ...]:
    return tuple("" if v is None else v for v in key)


# -- reading -----------------------------------------------------------------------------------


def scan(
    store: Store,
    *,
    since: float | None = None,
    until: float | None = None,
    filters: Filters = NO_FILTER,
    dims: Iterable[str] = DIMENSIONS,
    use_rollups: bool = True,
) -> Scan:
    """Sum ``[since, until)`` (unix seconds; None: unbounded) under ``filters``,
    by ``dims`` (every dimension by default: read only what you will group by).

    ``use_rollups=False`` sums the rows themselves: slower on a big ledger, and
    the reference the tests hold the rollups to.
    """
    s = _sql_store(store)
    result = Scan(frozenset(field_of(d) for d in dims))
    lo = -math.inf if since is None else float(since)
    hi = math.inf if until is None else float(until)
    if lo >= hi:
        return result
    d0 = lo if math.isinf(lo) else math.ceil(lo / DAY) * DAY
    d1 = hi if math.isinf(hi) else math.floor(hi / DAY) * DAY
    coarse = result.fields <= _COARSE_FIELDS and not (filters.keys or filters.users or filters.tags)
    reads: list[Callable[[Cursor], None]] = []
    if use_rollups and d0 < d1:
        table = COARSE if coarse else WIDE
        reads.append(lambda cur: _read_rollup(cur, s.dialect, table.usage, table.key,
                                              d0, d1, filters, result, savings=False))  # fmt: skip
        reads.append(lambda cur: _read_rollup(cur, s.dialect, table.savings, table.key,
                                              d0, d1, filters, result, savings=True))  # fmt: skip
        # Rows a hair under midnight can round into the next day's rollup row:
        # the partial days are cut by the same day expression as the rollups.
        if lo < d0:
            reads.append(lambda cur: _read_rows(cur, s.dialect, lo, d0, filters, result,
                                                day_before=d0))  # fmt: skip
        if d1 < hi:
            reads.append(lambda cur: _read_rows(cur, s.dialect, d1 - 1, hi, filters, result,
                                                day_from=d1))  # fmt: skip
    else:
        reads.append(lambda cur: _read_rows(cur, s.dialect, lo, hi, filters, result))

    def run(cur: Cursor) -> None:
        for read in reads:
            read(cur)

    s._read(run)
    return result


def _tag_filter(d: Dialect, tags: str, k: str) -> tuple[str, str]:
    p = d.param
    if d.name == "postgres":
        return f"{tags} ->> {p} = {p}", k
    if '"' in k or "\\" in k or min(k, default=" ") < " ":
        # A JSON path cannot name a key that JSON escapes (SQLite compares the
        # escaped text): such a tag, a client's own, is looked up key by key.
        return (
            f"EXISTS (SELECT 1 FROM json_each({tags}) AS j WHERE j.key = {p} AND j.value = {p})",
            k,
        )
    return f"json_extract({tags}, {p}) = {p}", '$."' + k + '"'


def _where(
    d: Dialect, column: Callable[[str], str], tags: str | None, filters: Filters,
    conds: list[str], params: list[Any],
) -> None:  # fmt: skip
    for name, fld in _FILTERS.items():
        values: tuple[str, ...] = getattr(filters, name)
        if values:
            conds.append(f"{column(fld)} IN ({', '.join([d.param] * len(values))})")
            params.extend(values)
    if filters.charged is not None:
        conds.append(f"{column('charged')} = {d.param}")
        params.append(filters.charged)
    if filters.tags:
        assert tags is not None, "tag filters need the wide rollup or the rows"
        for k, v in filters.tags:
            cond, arg = _tag_filter(d, tags, k)
            conds.append(cond)
            params.extend((arg, v))


def _raw_column(d: Dialect, f: str, prefix: str) -> str:
    """A filter's column in ``requests``, bare so its index can serve it."""
    if f == "model":
        return f"coalesce(nullif({prefix}served_model, ''), {prefix}requested_model)"
    return prefix + _COLUMN[f]


def _bounds(column: str, lo: float, hi: float, p: str) -> tuple[list[str], list[Any]]:
    conds, params = [], []
    if not math.isinf(lo):
        conds.append(f"{column} >= {p}")
        params.append(lo)
    if not math.isinf(hi):
        conds.append(f"{column} < {p}")
        params.append(hi)
    return conds, params


def _select(fields: frozenset[str], expr: Callable[[str], str]) -> tuple[list[str], list[int]]:
    """The SELECT expressions of the fields read, and their places in an entry."""
    read = [f for f in FIELDS if f in fields]
    return [expr(f) for f in read], [_AT[f] for f in read]


def _entry(places: list[int], values: Sequence[Any]) -> list[Any]:
    e: list[Any] = [""] * _K
    e[_AT["day"]] = 0
    for i, v in zip(places, values, strict=False):
        e[i] = v
    return e


def _sum_sql(d: Dialect, x: str) -> str:
    """An exact sum of money in SQL. SQLite has no decimal type: it hands back the
    decimal strings joined (`_money` adds them), which is twice as fast as a
    Python aggregate called once per row."""
    return money_sum(d, x) if d.name == "postgres" else f"group_concat({x})"


def _money(value: Any) -> Decimal:
    if isinstance(value, Decimal):
        return value
    if not value:
        return Decimal(0)
    text = str(value)
    if "," not in text:
        return Decimal(text)
    total = Decimal(0)
    for part in text.split(","):
        total = _MONEY.add(total, Decimal(part))
    return total


def _run(
    cur: Cursor, sql: str, params: list[Any], places: list[int], out: list[Entry], *, sums: int
) -> None:
    k = len(places)
    for row in cur.execute(sql, params).fetchall():
        if not row[k]:  # no row matched: the aggregate of nothing
            continue
        e = _entry(places, row)
        if sums:  # usage: the counts (PostgreSQL sums BIGINT to NUMERIC), then money
            # Each count on its own: over rows, count(*) is a BIGINT but the sums
            # are NUMERIC, and a Decimal token count would print as dollars.
            e.extend(c if type(c) is int else int(c) for c in row[k : k + sums])
            e.append(_money(row[k + sums]))
        else:  # savings: lever, amount
            e.extend((row[k], _money(row[k + 1])))
        out.append(tuple(e))


def _read_rollup(
    cur: Cursor, d: Dialect, table: str, key: tuple[str, ...], d0: float, d1: float,
    filters: Filters, out: Scan, *, savings: bool,
) -> None:  # fmt: skip
    def column(f: str) -> str:
        c = _COLUMN[f]
        if c == "route" and "route" not in key:
            return route_sql(d, "tags", "endpoint")
        if c == "tags" and d.name == "postgres":
            return "tags::text"
        return c

    exprs, places = _select(out.fields, column)
    conds, params = _bounds("day", d0, d1, d.param)
    _where(d, lambda f: _COLUMN[f], "tags" if "tags" in key else None, filters, conds, params)
    where = f"WHERE {' AND '.join(conds)}" if conds else ""
    if savings:
        select = [*exprs, "lever", _sum_sql(d, "saved_usd")]
        group = len(exprs) + 1
    else:
        select = [*exprs, *(f"sum({c})" for c in USAGE_COUNTS), _sum_sql(d, "cost_usd")]
        group = len(exprs)
    by = f"GROUP BY {', '.join(str(i + 1) for i in range(group))}" if group else ""
    sql = f"SELECT {', '.join(select)} FROM {table} {where} {by}"
    target = out.savings if savings else out.entries
    _run(cur, sql, params, places, target, sums=0 if savings else _N)


def _read_rows(
    cur: Cursor, d: Dialect, lo: float, hi: float, filters: Filters, out: Scan,
    *, day_before: float | None = None, day_from: float | None = None,
) -> None:  # fmt: skip
    def column(f: str) -> str:
        c = _COLUMN[f]
        if c == "tags":
            return "r.tags::text" if d.name == "postgres" else "r.tags"
        return row_sql(d, c)

    exprs, places = _select(out.fields, column)
    conds, params = _bounds("r.ts", lo, hi, d.param)
    day = row_sql(d, "day")
    if day_before is not None:
        conds.append(f"{day} < {d.param}")
        params.append(int(day_before))
    if day_from is not None:
        conds.append(f"{day} >= {d.param}")
        params.append(int(day_from))
    _where(d, lambda f: _raw_column(d, f, "r."), "r.tags", filters, conds, params)
    where = f"WHERE {' AND '.join(conds)}" if conds else ""
    by = f"GROUP BY {', '.join(str(i + 1) for i in range(len(exprs)))}" if exprs else ""
    sums = [*usage_sums_sql(d)[:-1], _sum_sql(d, "r.cost_usd")]
    sql = f"SELECT {', '.join([*exprs, *sums])} FROM requests AS r {where} {by}"
    _run(cur, sql, params, places, out.entries, sums=_N)
    source, ok, saved = savings_sql(d)
    by = f"GROUP BY {', '.join(str(i + 1) for i in range(len(exprs) + 1))}"
    sql = (
        f"SELECT {', '.join([*exprs, 'j.key', _sum_sql(d, saved)])} "
        f"FROM requests AS r, {source} {where} {'AND' if where else 'WHERE'} {ok} {by}"
    )
    _run(cur, sql, params, places, out.savings, sums=0)


# -- the most expensive requests ----------------------------------------------------------------


def top_requests(
    store: Store,
    *,
    since: float | None = None,
    until: float | None = None,
    filters: Filters = NO_FILTER,
    limit: int = 10,
    matching: int | None = None,
) -> list[UsageRecord]:
    """The ``limit`` priced requests with the highest cost, most expensive first.

    ``matching``, the number of requests in range (from a scan), picks the
    index on SQLite: walking the cost index pays when many rows match, the
    ``ts`` index when few do. PostgreSQL's planner decides for itself.
    """
    s = _sql_store(store)
    if limit <= 0:
        return []
    d = s.dialect
    conds, params = _bounds("ts", -math.inf if since is None else since,
                            math.inf if until is None else until, d.param)  # fmt: skip
    conds.append("cost_usd IS NOT NULL")
    _where(d, lambda f: _raw_column(d, f, ""), "tags", filters, conds, params)
    if d.name == "postgres":
        order, hint = "cost_usd DESC, ts, request_id", ""
    else:
        order = "CAST(cost_usd AS REAL) DESC, ts, request_id"
        hint = "INDEXED BY requests_cost" if matching is None or matching > 20_000 else ""
        if not hint and not (filters.teams or filters.keys):
            hint = "INDEXED BY requests_ts"
    # REAL ordering can swap costs that differ past the 15th digit: fetch a few
    # more and order them exactly.
    sql = (
        f"SELECT {', '.join(REQUEST_COLUMNS)} FROM requests {hint} "
        f"WHERE {' AND '.join(conds)} ORDER BY {order} LIMIT {d.param}"
    )
    params.append(limit + 10)
    rows = s._read(lambda cur: cur.execute(sql, params).fetchall())
    records = [row_to_record(r) for r in rows]
    records.sort(key=lambda r: (-(r.cost_usd or 0), r.ts, r.request_id))
    return records[:limit]
