"""`tokenomy report`: spend and tokens by any dimension, from the ledger."""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import click
from rich import box
from rich.console import Console
from rich.table import Table

from ..config import load_settings
from ..ledger import open_store
from ..reports import SECTIONS, TABLES, Filters, Report, build_report, check_dimension, to_csv
from ..reports import to_json as report_json
from ..reports.export import TOTALS_HEADER, group_row
from .common import config_option, db_option
from .keys import parse_duration

_RELATIVE = re.compile(r"^\d+(?:\.\d+)?[smhdw]$")


def parse_when(text: str, *, now: float | None = None, option: str | None = None) -> float:
    """Unix seconds from ``2026-11-01`` (UTC midnight), an ISO date-time (UTC
    unless it names a zone), or a duration back from now (``7d``, ``12h``)."""
    text = text.strip()
    if _RELATIVE.match(text):
        return (time.time() if now is None else now) - parse_duration(text, option)
    try:
        if len(text) == 10:
            d = date.fromisoformat(text)
            return datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp()
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise click.BadParameter(
            f"{text!r}: use a date (2026-11-01), a date-time (2026-11-01T09:30) or 7d/12h",
            param_hint=option,
        ) from exc
    ts = (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()
    try:  # 0001-01-01T00:00+01:00 is in year 0 in UTC: no date to show or compare
        datetime.fromtimestamp(ts, UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise click.BadParameter(f"{text!r}: out of range in UTC", param_hint=option) from exc
    return ts


def _dims(text: str) -> tuple[str, ...]:
    dims = tuple(d.strip() for d in text.split(",") if d.strip())
    try:
        return tuple(check_dimension(d) for d in dims)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--group-by") from exc


def _tags(values: Sequence[str]) -> tuple[tuple[str, str], ...]:
    out = []
    for t in values:
        k, sep, v = t.partition("=")
        if not k or not sep:
            raise click.BadParameter(f"{t!r}: expected key=value", param_hint="--tag")
        out.append((k, v))
    return tuple(out)


@click.command()
@click.option("--group-by", "group_by", default="team,model", show_default=True,
              help="Comma-separated: org, team, user, key, tag, tag:NAME, model, provider, "
                   "route, endpoint, day.")  # fmt: skip
@click.option("--since", default=None,
              help="Start (inclusive): 2026-11-01, 2026-11-01T09:30, or 7d back. Default: all.")  # fmt: skip
@click.option("--until", default=None,
              help="End (exclusive), same forms. Default: now.")  # fmt: skip
@click.option("--org", "orgs", multiple=True, help="Only this org (repeatable).")
@click.option("--team", "teams", multiple=True, help="Only this team (repeatable).")
@click.option("--user", "users", multiple=True, help="Only this end user (repeatable).")
@click.option("--key", "keys", multiple=True, help="Only this key id (repeatable).")
@click.option("--model", "models", multiple=True, help="Only this served model (repeatable).")
@click.option("--provider", "providers", multiple=True, help="Only this provider (repeatable).")
@click.option("--endpoint", "endpoints", multiple=True,
              help="Only this endpoint path (repeatable).")  # fmt: skip
@click.option(
    "--tag", "tags", multiple=True, help="Only requests with tag key=value (all must match)."
)
@click.option("--top", type=click.IntRange(min=0), default=10, show_default=True,
              help="How many of the most expensive requests to list.")  # fmt: skip
@click.option("--format", "output_format", type=click.Choice(["table", "csv", "json"]),
              default="table", show_default=True)  # fmt: skip
@click.option("--section", type=click.Choice(["all", *SECTIONS]), default=None,
              help="What to print: all (table and json default) or one section "
                   "(CSV holds one; its default is groups).")  # fmt: skip
@db_option
@config_option
def report(
    group_by: str,
    since: str | None,
    until: str | None,
    orgs: tuple[str, ...],
    teams: tuple[str, ...],
    users: tuple[str, ...],
    keys: tuple[str, ...],
    models: tuple[str, ...],
    providers: tuple[str, ...],
    endpoints: tuple[str, ...],
    tags: tuple[str, ...],
    top: int,
    output_format: str,
    section: str | None,
    db: str | None,
    config_path: str | None,
) -> None:
    """Spend and tokens grouped by any dimension over a time range, with the most
    expensive requests, cost per 1,000 requests by route, the share of input
    tokens read from provider caches, unpriced models and savings by lever.

    Days are UTC. Money is exact; requests whose price is unknown are counted
    apart, never as $0.
    """
    dims = _dims(group_by)
    lo = parse_when(since, option="--since") if since else None
    hi = parse_when(until, option="--until") if until else None
    if lo is not None and hi is not None and lo >= hi:
        raise click.BadParameter("--since must be before --until")
    if output_format == "csv" and section == "all":
        raise click.UsageError("CSV holds one section: pick one with --section")
    if output_format == "csv":
        chosen: tuple[str, ...] = (section or "groups",)
    else:
        chosen = SECTIONS if section in (None, "all") else (section,)
    filters = Filters(orgs=orgs, teams=teams, users=users, keys=keys, models=models,
                      providers=providers, endpoints=endpoints, tags=_tags(tags))  # fmt: skip
    store = open_store(load_settings(config_path, db=db).db)  # ConfigError: main() reports it
    try:
        store.migrate()
        rep = build_report(
            store, group_by=dims, since=lo, until=hi, filters=filters,
            top=top if "top" in chosen else 0,
        )  # fmt: skip
    finally:
        store.close()
    if output_format == "csv":
        click.echo(to_csv(rep, chosen[0]), nl=False)
    elif output_format == "json":
        click.echo(json.dumps(report_json(rep, chosen), indent=2, ensure_ascii=False))
    else:
        _print_tables(rep, chosen)


# -- the terminal -----------------------------------------------------------------------------


def money(value: Decimal | None, places: int = 6) -> str:
    if value is None:
        return "unknown"
    return f"${value:,.{places}f}"


def _cell(column: str, value: Any) -> str:
    if value is None:
        return "unknown" if column.endswith("_usd") or column.startswith("cost") else "-"
    if isinstance(value, Decimal):
        if column.endswith("share"):
            return f"{value * 100:.1f}%"
        return money(value)
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _print_tables(rep: Report, sections: Sequence[str]) -> None:
    console = Console(width=None if sys.stdout.isatty() else 160, highlight=False)
    t = rep.total
    console.print(f"[bold]Tokenomy report[/bold], {rep.period} (UTC)")
    if rep.filters.describe():
        shown = "; ".join(f"{k}: {', '.join(v)}" for k, v in rep.filters.describe().items())
        console.print(f"Filters: {shown}")
    share = "-" if t.cache_share is None else f"{t.cache_share * 100:.1f}%"
    console.print(
        f"{t.requests:,} requests, {money(t.cost_usd)} on requests with known prices, "
        f"{t.unpriced_requests:,} with unknown prices, cache share {share}, "
        f"saved {money(t.saved_usd)}"
    )
    titles = {
        "groups": f"Spend by {', '.join(rep.group_by) or 'total'}",
        "top": "Most expensive requests",
        "routes": "Cost per 1,000 requests by route",
        "unpriced": "Models with unknown prices (their cost is not in the totals)",
        "savings": "Savings by lever",
    }
    wanted = {
        "groups": ("requests", "input_tokens", "output_tokens", "cache_share", "cost_usd",
                   "unpriced_requests", "saved_usd"),
    }  # fmt: skip
    for section in sections:
        header, rows = TABLES[section](rep)
        if not rows:
            console.print(f"\n{titles[section]}: none.")
            continue
        keep = [
            i for i, h in enumerate(header)
            if section != "groups" or i < len(rep.group_by) or h in wanted["groups"]
        ]  # fmt: skip
        table = Table(title=titles[section], box=box.SIMPLE_HEAVY, title_justify="left")
        for i in keep:
            numeric = rows and isinstance(rows[0][i], int | Decimal)
            table.add_column(header[i], justify="right" if numeric else "left")
        n_key = len(rep.group_by) if section == "groups" else 0
        for row in rows:
            cells = [
                "(none)" if i < n_key and row[i] is None else _cell(header[i], row[i]) for i in keep
            ]
            _mark_unknown(header, row, [header[i] for i in keep], cells)
            table.add_row(*cells)
        if section == "groups":
            totals = ["total"] + [""] * (len(rep.group_by) - 1) if rep.group_by else []
            total_row = dict(zip(TOTALS_HEADER, _total_cells(rep), strict=True))
            table.add_section()
            table.add_row(*totals, *(total_row[header[i]] for i in keep if i >= len(rep.group_by)))
        console.print()
        console.print(table)
        if section == "top" and rep.top_cut:
            console.print(f"  The {len(rows):,} most expensive of {t.priced_requests:,} priced "
                          "requests: --top N lists more.")  # fmt: skip


def _total_cells(rep: Report) -> list[str]:
    values = group_row((), rep.total)
    cells = [_cell(h, v) for h, v in zip(TOTALS_HEADER, values, strict=True)]
    _mark_unknown(TOTALS_HEADER, values, TOTALS_HEADER, cells)
    return cells


def _mark_unknown(
    header: Sequence[str], row: list[Any], shown: Sequence[str], cells: list[str]
) -> None:
    """A known cost next to requests of unknown price is a lower bound: say so."""
    if "unpriced_requests" not in header or "cost_usd" not in shown:
        return
    if row[header.index("unpriced_requests")] and row[header.index("cost_usd")] is not None:
        cells[shown.index("cost_usd")] += " + unknown"
