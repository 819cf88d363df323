"""Daily rollups of the ledger, kept in step with ``requests`` by the ledger itself.

A report over millions of requests reads these instead of the rows:

- ``usage_daily``: one row per UTC day and bucket (org, team, end user, key,
  tags, model, provider, endpoint) with the request count, errors, token sums,
  the exact cost of the priced requests, and the requests and tokens whose
  price is unknown (counted apart, never as $0).
- ``usage_daily_coarse``: the same sums by day, org, team, model, provider,
  endpoint and route only: small whatever the traffic, it serves every report
  that needs no key, user or tag.
- ``savings_daily``, ``savings_daily_coarse``: the same buckets per lever, with
  the dollars each lever says it saved (``decisions[lever]["saved_usd"]``, see
  ``docs/reports.md``).

Every bucket is also keyed by ``charged`` (`tokenomy.ledger.charges`): the rows
charged to requests are summed apart from the gateway's own calls (a judge's, a
failed attempt's). A report of spend adds both; what a budget has spent, as the
caps count it, is the charged sums alone.

`SQLStore.insert_records` calls `bump` inside the transaction that inserts the
rows, with only the rows that were new, so a rollup never drifts from the
ledger. The sums are upserts (``col = col + excluded.col``), which PostgreSQL
applies atomically under concurrent writers; SQLite serialises writers anyway.
Money stays exact: PostgreSQL adds ``NUMERIC``; SQLite, which has no decimal
type, adds the decimal strings with the ``tk_money_*`` functions the SQLite
store registers on its connections (`register_sqlite_functions`).

Migration ``m010_rollups`` created the tables (without ``charged``, `M010`) and
backfilled them from the rows already in the ledger; ``m018_rollups_charged``
remakes them with ``charged`` in their keys (`split_charged_statements`).
"""

from __future__ import annotations

import decimal
import functools
import math
import re
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, cast

import orjson

from ..records import UsageRecord

if TYPE_CHECKING:  # migrations.py imports this module for m010
    from .migrations import Cursor, Dialect

DAY = 86400

# Per-bucket sums, in column order; ``cost_usd`` (money) follows them.
USAGE_COUNTS = (
    "requests",
    "errors",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cache_write_1h_tokens",
    "reasoning_tokens",
    "unpriced_requests",
    "unpriced_input_tokens",
    "unpriced_output_tokens",
)

# Money sums get more digits than any ledger will hold: a sum is never rounded.
MONEY = decimal.Context(prec=200, traps=[decimal.InvalidOperation])


@dataclass(frozen=True, slots=True)
class Rollup:
    """A pair of daily rollup tables (usage, savings) keyed by ``key`` columns.

    NULLs are stored as '' so the key can be a primary key on both engines;
    ``model`` is the served model, or the requested one when nothing served the
    request; ``route`` is the ``route`` tag, else the endpoint.
    """

    usage: str
    savings: str
    key: tuple[str, ...]


_WIDE_KEY = ("day", "org", "team", "end_user", "key_id", "tags", "model", "provider", "endpoint")
_COARSE_KEY = ("day", "org", "team", "model", "provider", "endpoint", "route")

# Every dimension a report can group or filter by. Its size grows with the
# distinct (key, user, tags, model, endpoint) combinations seen each day.
WIDE = Rollup("usage_daily", "savings_daily", (*_WIDE_KEY, "charged"))
# The dimensions most reports use, a few hundred rows a day whatever the traffic.
COARSE = Rollup("usage_daily_coarse", "savings_daily_coarse", (*_COARSE_KEY, "charged"))
ROLLUPS = (WIDE, COARSE)
# The rollups as migration m010 made them, before ``charged`` was in their keys.
M010 = (
    Rollup(WIDE.usage, WIDE.savings, _WIDE_KEY),
    Rollup(COARSE.usage, COARSE.savings, _COARSE_KEY),
)

Bucket = tuple[Any, ...]


def day_of(ts: float) -> int:
    """The UTC day containing ``ts``, as the unix second it starts at (the SQL
    computes the same: the floor of the same float division)."""
    return math.floor(ts / DAY) * DAY


def canonical_tags(tags: Mapping[str, Any]) -> str:
    return orjson.dumps(tags, option=orjson.OPT_SORT_KEYS).decode()


def is_unpriced(rec: UsageRecord) -> bool:
    """Tokens were spent but no price is known. (A request refused before any
    token was counted has no cost either, but it is not an unknown price.)"""
    u = rec.usage
    return rec.cost_usd is None and (rec.price_unknown or u.input_tokens + u.output_tokens > 0)


# A decimal as PostgreSQL reads one from a decision (`savings_sql`): Python's
# Decimal also takes "1_000", other scripts' digits and "Infinity", which would
# count in the rollups but not in the same sum over the rows.
_DECIMAL = re.compile(r"\s*[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\s*", re.ASCII)


def parse_money(value: Any) -> Decimal | None:
    """A finite decimal from a string or a JSON number; None for anything else."""
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        return None
    text = str(value)
    return Decimal(text.strip()) if _DECIMAL.fullmatch(text) else None


def lever_savings(decisions: Mapping[str, Any]) -> Iterator[tuple[str, Decimal]]:
    """``(lever, saved_usd)`` for each lever that recorded a valid ``saved_usd``."""
    for lever, decision in decisions.items():
        if isinstance(decision, Mapping):
            saved = parse_money(decision.get("saved_usd"))
            if saved is not None:
                yield str(lever), saved


def route_of(rec: UsageRecord) -> str:
    route = rec.tags.get("route")
    return str(route) if route else rec.endpoint


# -- maintenance on insert ----------------------------------------------------------------


def _money_param(value: Decimal, dialect: Dialect) -> Any:
    return format(value, "f") if dialect.money_as_text else value


def _add(dialect: Dialect, a: str, b: str) -> str:
    return f"{a} + {b}" if dialect.name == "postgres" else f"tk_money_add({a}, {b})"


@functools.cache
def _upsert_sql(
    dialect: Dialect, table: str, key: tuple[str, ...], counts: tuple[str, ...], money: str
) -> str:
    cols = [*key, *counts, money]
    values = ", ".join(dialect.json_param if c == "tags" else dialect.param for c in cols)
    sets = [f"{c} = {table}.{c} + excluded.{c}" for c in counts]
    sets.append(f"{money} = {_add(dialect, f'{table}.{money}', f'excluded.{money}')}")
    return (
        f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({values}) "
        f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {', '.join(sets)}"
    )


def bump(cur: Cursor, dialect: Dialect, records: Sequence[UsageRecord]) -> None:
    """Add ``records`` (rows just inserted, each once) to the rollups, in the
    caller's transaction."""
    if not records:
        return
    usage: tuple[dict[Bucket, list[Any]], ...] = ({}, {})
    savings: tuple[dict[Bucket, list[Any]], ...] = ({}, {})
    with decimal.localcontext(MONEY):
        for rec in records:
            u = rec.usage
            unpriced = is_unpriced(rec)
            day, org, team = day_of(rec.ts), rec.org or "", rec.team or ""
            model, provider = rec.served_model or rec.requested_model, rec.provider or ""
            charged = bool(rec.charged)
            buckets = (
                (day, org, team, rec.user or "", rec.key_id or "", canonical_tags(rec.tags),
                 model, provider, rec.endpoint, charged),
                (day, org, team, model, provider, rec.endpoint, route_of(rec), charged),
            )  # fmt: skip
            levers = list(lever_savings(rec.decisions))
            for i, b in enumerate(buckets):
                row = usage[i].get(b)
                if row is None:
                    row = usage[i][b] = [0] * len(USAGE_COUNTS) + [Decimal(0)]
                row[0] += 1
                row[1] += rec.status >= 400
                row[2] += u.input_tokens
                row[3] += u.output_tokens
                row[4] += u.cache_read_tokens
                row[5] += u.cache_write_tokens
                row[6] += u.cache_write_1h_tokens
                row[7] += u.reasoning_tokens
                if unpriced:
                    row[8] += 1
                    row[9] += u.input_tokens
                    row[10] += u.output_tokens
                if rec.cost_usd is not None:
                    row[11] += rec.cost_usd
                for lever, saved in levers:
                    srow = savings[i].get((*b, lever))
                    if srow is None:
                        srow = savings[i][(*b, lever)] = [0, Decimal(0)]
                    srow[0] += 1
                    srow[1] += saved
    for rollup, sums, saved_sums in zip(ROLLUPS, usage, savings, strict=True):
        _run(
            cur,
            _upsert_sql(dialect, rollup.usage, rollup.key, USAGE_COUNTS, "cost_usd"),
            [(*b, *row[:-1], _money_param(row[-1], dialect)) for b, row in sums.items()],
        )
        if saved_sums:
            _run(
                cur,
                _upsert_sql(
                    dialect, rollup.savings, (*rollup.key, "lever"), ("requests",), "saved_usd"
                ),
                [(*b, n, _money_param(v, dialect)) for b, (n, v) in saved_sums.items()],
            )


def _run(cur: Cursor, sql: str, rows: list[tuple[Any, ...]]) -> None:
    # One row (the usual batch when traffic is light) is cheaper as a plain execute.
    if len(rows) == 1:
        cur.execute(sql, rows[0])
    elif rows:
        cur.executemany(sql, rows)


# -- SQL shared by the backfill and the reports ---------------------------------------------


def day_sql(d: Dialect, ts: str) -> str:
    if d.name == "postgres":
        return f"(floor({ts} / 86400) * 86400)::bigint"
    return f"CAST({ts} / 86400 AS INTEGER) * 86400"  # ts > 0: truncation is floor


def tag_sql(d: Dialect, tags: str, name: str) -> str:
    """The value of tag ``name`` (a trusted identifier) in the JSON column ``tags``."""
    if d.name == "postgres":
        return f"({tags} ->> '{name}')"
    return f"json_extract({tags}, '$.{name}')"


def route_sql(d: Dialect, tags: str, endpoint: str) -> str:
    return f"coalesce(nullif({tag_sql(d, tags, 'route')}, ''), {endpoint})"


def money_sum(d: Dialect, x: str) -> str:
    return f"coalesce(sum({x}), 0)" if d.name == "postgres" else f"tk_money_sum({x})"


def row_sql(d: Dialect, column: str, alias: str = "r") -> str:
    """A rollup key column computed from a ``requests`` row."""
    r = alias + "."
    if column == "day":
        return day_sql(d, r + "ts")
    if column == "charged":
        return r + "charged"
    if column == "model":
        return f"coalesce(nullif({r}served_model, ''), {r}requested_model)"
    if column == "endpoint":
        return r + "endpoint"
    if column == "route":
        return route_sql(d, r + "tags", r + "endpoint")
    if column == "tags":
        if d.name == "postgres":
            return r + "tags"
        return (  # sorted keys, as the insert path writes them
            "(SELECT json_group_object(key, value) FROM "
            f"(SELECT key, value FROM json_each({r}tags) ORDER BY key))"
        )
    return f"coalesce({r}{column}, '')"


def usage_sums_sql(d: Dialect, alias: str = "r") -> list[str]:
    """USAGE_COUNTS then cost_usd, summed over ``requests`` rows."""
    r = alias + "."
    unpriced = (
        f"{r}cost_usd IS NULL AND ({r}price_unknown OR {r}input_tokens + {r}output_tokens > 0)"
    )
    return [
        "count(*)",
        f"sum(CASE WHEN {r}status >= 400 THEN 1 ELSE 0 END)",
        *(f"sum({r}{c})" for c in USAGE_COUNTS[2:8]),
        f"sum(CASE WHEN {unpriced} THEN 1 ELSE 0 END)",
        f"sum(CASE WHEN {unpriced} THEN {r}input_tokens ELSE 0 END)",
        f"sum(CASE WHEN {unpriced} THEN {r}output_tokens ELSE 0 END)",
        money_sum(d, r + "cost_usd"),
    ]


def savings_sql(d: Dialect, alias: str = "r") -> tuple[str, str, str]:
    """(FROM item, WHERE condition, saved amount) to read the levers' savings from
    ``requests`` rows; the lever is ``j.key``."""
    decisions = f"{alias}.decisions"
    if d.name == "postgres":
        saved = "(j.value ->> 'saved_usd')"
        ok = (
            "jsonb_typeof(j.value) = 'object' AND jsonb_typeof(j.value -> 'saved_usd') "
            f"IN ('string', 'number') AND {saved} ~ "
            r"'^\s*[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?\s*$'"
        )
        return f"jsonb_each({decisions}) AS j", ok, f"trim({saved})::numeric"
    saved = "tk_money(json_extract(j.value, '$.saved_usd'))"
    # json_extract reads true as 1: only a string or a number is an amount.
    ok = (
        "j.type = 'object' AND json_type(j.value, '$.saved_usd') IN ('integer', 'real', 'text') "
        f"AND {saved} IS NOT NULL"
    )
    return f"json_each({decisions}) AS j", ok, saved


# -- schema and backfill ----------------------------------------------------------------------


def _key_type(d: Dialect, column: str) -> str:
    if column == "day":
        return "BIGINT"
    if column == "tags":
        return d.json
    return d.boolean if column == "charged" else "TEXT"


def create_statements(d: Dialect, rollups: Sequence[Rollup] = ROLLUPS) -> list[str]:
    zero = "'0'" if d.money_as_text else "0"
    counts = ",\n            ".join(f"{c} BIGINT NOT NULL DEFAULT 0" for c in USAGE_COUNTS)
    out = []
    for rollup in rollups:
        key = ",\n            ".join(f"{c} {_key_type(d, c)} NOT NULL" for c in rollup.key)
        out += [
            f"""CREATE TABLE {rollup.usage} (
            {key},
            {counts},
            cost_usd {d.money} NOT NULL DEFAULT {zero},
            PRIMARY KEY ({", ".join(rollup.key)})
        )""",
            f"""CREATE TABLE {rollup.savings} (
            {key},
            lever TEXT NOT NULL,
            requests BIGINT NOT NULL DEFAULT 0,
            saved_usd {d.money} NOT NULL DEFAULT {zero},
            PRIMARY KEY ({", ".join(rollup.key)}, lever)
        )""",
        ]
    return out


def backfill_statements(
    d: Dialect, rollups: Sequence[Rollup] = ROLLUPS, *, where: str | None = None
) -> list[str]:
    """Fill every rollup from the rows in ``requests`` (``r``) that ``where`` keeps
    (default: all); the buckets they fill start empty."""
    source, ok, saved = savings_sql(d)
    rows = "" if where is None else f" WHERE {where}"
    out = []
    for rollup in rollups:
        keys = ", ".join(row_sql(d, c) for c in rollup.key)
        groups = ", ".join(str(i) for i in range(1, len(rollup.key) + 1))
        out += [
            f"INSERT INTO {rollup.usage} ({', '.join((*rollup.key, *USAGE_COUNTS, 'cost_usd'))}) "
            f"SELECT {keys}, {', '.join(usage_sums_sql(d))} FROM requests AS r{rows} "
            f"GROUP BY {groups}",
            f"INSERT INTO {rollup.savings} ({', '.join(rollup.key)}, lever, requests, saved_usd) "
            f"SELECT {keys}, j.key, count(*), {money_sum(d, saved)} "
            f"FROM requests AS r, {source} WHERE {ok}{'' if where is None else f' AND {where}'} "
            f"GROUP BY {groups}, {len(rollup.key) + 1}",
        ]
    return out


def split_charged_statements(d: Dialect) -> list[str]:
    """Remake the rollups of `M010` with ``charged`` in their keys (`ROLLUPS`).

    Only the UTC days that hold a row not charged (``m018_days``: the days the
    gateway made calls of its own) are summed again from ``requests``; every
    other day's buckets are copied as they were, all charged. So the migration
    reads the whole ledger once, for its uncharged rows, not to group it all.
    """
    yes = "TRUE" if d.name == "postgres" else "1"
    out = [
        f"CREATE TEMP TABLE m018_days AS SELECT DISTINCT {day_sql(d, 'ts')} AS day "
        "FROM requests WHERE NOT charged"
    ]
    for rollup in M010:
        for table in (rollup.usage, rollup.savings):
            out += [
                f"CREATE TEMP TABLE m018_{table} AS SELECT * FROM {table}",
                f"DROP TABLE {table}",
            ]
    out += create_statements(d)
    for old in M010:
        for table, sums in ((old.usage, (*USAGE_COUNTS, "cost_usd")),
                            (old.savings, ("lever", "requests", "saved_usd"))):  # fmt: skip
            cols = ", ".join((*old.key, *sums))
            out += [
                f"INSERT INTO {table} ({cols}, charged) SELECT {cols}, {yes} FROM m018_{table} "
                "WHERE day NOT IN (SELECT day FROM m018_days)",
                f"DROP TABLE m018_{table}",
            ]
    out += backfill_statements(d, where=f"{day_sql(d, 'r.ts')} IN (SELECT day FROM m018_days)")
    out.append("DROP TABLE m018_days")
    return out


def rebuild(cur: Cursor, dialect: Dialect) -> None:
    """Recompute every rollup from ``requests`` (repair, or after a bulk load
    that bypassed `SQLStore.insert_records`). Run it in a write transaction."""
    for rollup in ROLLUPS:
        cur.execute(f"DELETE FROM {rollup.usage}")
        cur.execute(f"DELETE FROM {rollup.savings}")
    for statement in backfill_statements(dialect):
        cur.execute(statement)


# -- exact money in SQLite ------------------------------------------------------------------


def _sql_money(value: Any) -> str | None:
    d = parse_money(value.decode() if isinstance(value, bytes) else value)
    return None if d is None else format(d, "f")


def _sql_money_add(a: Any, b: Any) -> str:
    x, y = parse_money(a), parse_money(b)
    return format(MONEY.add(x or Decimal(0), y or Decimal(0)), "f")


class _MoneySum:
    def __init__(self) -> None:
        self.total = Decimal(0)

    def step(self, value: Any) -> None:
        d = parse_money(value)
        if d is not None:
            self.total = MONEY.add(self.total, d)

    def finalize(self) -> str:
        return format(self.total, "f")


def register_sqlite_functions(conn: sqlite3.Connection) -> None:
    """``tk_money(x)``: x as an exact decimal string (NULL if not a number);
    ``tk_money_add(a, b)`` and the aggregate ``tk_money_sum(x)``: exact sums of
    decimal strings (values that are not numbers are skipped)."""
    conn.create_function("tk_money", 1, _sql_money, deterministic=True)
    conn.create_function("tk_money_add", 2, _sql_money_add, deterministic=True)
    # typeshed expects aggregates to return int; SQLite takes any value.
    conn.create_aggregate("tk_money_sum", 1, cast(Any, _MoneySum))
