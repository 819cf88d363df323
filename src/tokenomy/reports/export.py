"""A report as tables of plain values: for CSV, JSON, and the terminal.

Money is a `Decimal` here and a plain decimal string in CSV and JSON (exact,
never in exponent notation); ratios are full-precision decimals; a cost that is
unknown is ``None`` (empty in CSV, ``null`` in JSON), never 0. In CSV a text
cell that a spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@``...)
starts with an apostrophe.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ..csvsafe import plain, write_csv
from .model import Report, Totals, iso

SECTIONS = ("groups", "top", "routes", "unpriced", "savings")

Table = tuple[list[str], list[list[Any]]]

# The columns of `group_row` after the key: a group's totals, and the report's total.
TOTALS_HEADER = (
    "requests",
    "errors",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_share",
    "cost_usd",
    "unpriced_requests",
    "unpriced_input_tokens",
    "unpriced_output_tokens",
    "saved_usd",
)


def group_table(report: Report) -> Table:
    header = [*report.group_by, *TOTALS_HEADER]
    return header, [group_row(g.key, g.totals) for g in report.groups]


def group_row(key: tuple[str | None, ...], t: Totals) -> list[Any]:
    """A row of `group_table`: the key, then the totals (cost None when unknown)."""
    return [
        *key,
        t.requests,
        t.errors,
        t.input_tokens,
        t.output_tokens,
        t.cache_read_tokens,
        t.cache_share,
        t.cost_usd if t.priced_requests else None,
        t.unpriced_requests,
        t.unpriced_input_tokens,
        t.unpriced_output_tokens,
        t.saved_usd,
    ]


def top_table(report: Report) -> Table:
    header = [
        "request_id",
        "time",
        "team",
        "user",
        "key",
        "model",
        "route",
        "input_tokens",
        "output_tokens",
        "cost_usd",
    ]
    rows = [
        [
            r.request_id,
            datetime.fromtimestamp(r.ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            r.team,
            r.user,
            r.key_id,
            r.served_model or r.requested_model,
            r.tags.get("route") or r.endpoint,
            r.usage.input_tokens,
            r.usage.output_tokens,
            r.cost_usd,
        ]
        for r in report.top
    ]
    return header, rows


def route_table(report: Report) -> Table:
    header = [
        "route",
        "requests",
        "priced_requests",
        "cost_usd",
        "cost_per_1k_requests",
        "cache_share",
    ]
    rows = [
        [
            g.key[0],
            g.totals.requests,
            g.totals.priced_requests,
            g.totals.cost_usd if g.totals.priced_requests else None,  # unknown, not $0
            g.totals.cost_per_1k_requests,
            g.totals.cache_share,
        ]
        for g in report.routes
    ]
    return header, rows


def unpriced_table(report: Report) -> Table:
    header = ["model", "provider", "requests", "input_tokens", "output_tokens"]
    rows = [
        [
            *g.key,
            g.totals.unpriced_requests,
            g.totals.unpriced_input_tokens,
            g.totals.unpriced_output_tokens,
        ]
        for g in report.unpriced
    ]
    return header, rows


def savings_table(report: Report) -> Table:
    return ["lever", "saved_usd"], [[lever, saved] for lever, saved in report.levers]


TABLES = {
    "groups": group_table,
    "top": top_table,
    "routes": route_table,
    "unpriced": unpriced_table,
    "savings": savings_table,
}


def to_csv(report: Report, section: str = "groups") -> str:
    header, rows = TABLES[section](report)
    return write_csv([header, *rows])  # ``tag:NAME`` in the header names a column


def to_json(report: Report, sections: tuple[str, ...] = SECTIONS) -> dict[str, Any]:
    t = report.total
    out: dict[str, Any] = {
        "since": iso(report.since),
        "until": iso(report.until),
        "group_by": list(report.group_by),
        "filters": report.filters.describe(),
        "total": dict(zip(TOTALS_HEADER, map(plain, group_row((), t)), strict=True)),
    }
    out["total"]["cost_per_1k_requests"] = plain(t.cost_per_1k_requests)
    for section in sections:
        header, rows = TABLES[section](report)
        out[section] = [dict(zip(header, map(plain, row), strict=True)) for row in rows]
    return out
