"""`tokenomy forecast`: month-end projections per scope, and the spend alerts."""

from __future__ import annotations

import json
import logging
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

import click

from ..config import load_settings
from ..errors import ConfigError
from .common import config_option, db_option


def _money(d: Decimal) -> str:
    return f"${d.quantize(Decimal('0.01')):,}"


_MOST = Decimal(10) ** 15  # dollars; more digits cannot be shown to the cent


def _amount(text: str, option: str, *, above_zero: bool = False) -> Decimal:
    """A finite number from 0 (or above 0) to 10^15, else a usage error naming ``option``."""
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise click.BadParameter(f"{text!r} is not a number", param_hint=option) from None
    low = "above 0" if above_zero else "0 or more"
    if not value.is_finite() or value < 0 or (above_zero and value == 0) or value > _MOST:
        raise click.BadParameter(f"{text!r}: expected {low}, at most 10^15", param_hint=option)
    return value


def _budgets(pairs: tuple[tuple[str, str], ...]) -> dict[str, Decimal]:
    out = {}
    for scope, usd in pairs:
        if scope != "total" and "=" not in scope:
            raise click.BadParameter(
                f"scope {scope!r}: write total or KIND=VALUE, e.g. team=search",
                param_hint="--budget",
            )
        out[scope] = _amount(usd, "--budget")
    return out


@click.command()
@db_option
@config_option
@click.option("--by", default="total", show_default=True,
              help="Scope: total, org, team, user, key, model, provider, route or tag:NAME.")  # fmt: skip
@click.option("--today", type=click.DateTime(["%Y-%m-%d"]), default=None,
              help="Forecast as of this day (default: today in the configured time zone).")  # fmt: skip
@click.option("--level", type=click.FloatRange(0.5, 0.99), default=0.8, show_default=True,
              help="Coverage of the uncertainty band.")  # fmt: skip
@click.option("--budget", nargs=2, multiple=True, metavar="SCOPE USD",
              help="A monthly budget, e.g. --budget team=search 500 (or total 2000).")  # fmt: skip
@click.option("--alerts", is_flag=True, help="Also check the alert rules, log and send them.")
@click.option("--k", "k", default="3", show_default=True,
              help="Anomaly: today's spend at least K times the typical day.")  # fmt: skip
@click.option("--min-spend", default="1", show_default=True,
              help="Anomaly: ignore days under this many dollars.")  # fmt: skip
@click.option("--webhook", default=None,
              help="Slack-compatible webhook URL (default: the webhook_url setting).")  # fmt: skip
@click.option("--state", default=None,
              help="File of alerts already sent (default: next to a SQLite ledger).")  # fmt: skip
@click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text",
              show_default=True)  # fmt: skip
def forecast(
    db: str | None,
    config_path: str | None,
    by: str,
    today: datetime | None,
    level: float,
    budget: tuple[tuple[str, str], ...],
    alerts: bool,
    k: str,
    min_spend: str,
    webhook: str | None,
    state: str | None,
    output_format: str,
) -> None:
    """Project each scope's spend to the end of the month, with an uncertainty band.

    The model is a trend with a weekly pattern, fitted to the last eight weeks of
    daily spend (see docs/insights.md). With --alerts, also report spend
    anomalies, forecasts over a --budget and models served without a price, as
    log lines and to the webhook; each alert is sent once.
    """
    from ..insights.alerts import (
        AlertRules,
        FileAlertLog,
        MemoryAlertLog,
        alert_dimensions,
        check_tally,
        deliver,
    )
    from ..insights.forecast import forecast as project
    from ..insights.forecast import month_bounds
    from ..insights.tally import dimension, tally
    from ..ledger import open_store, sqlite_path

    rules = AlertRules(k=_amount(k, "--k", above_zero=True), min_spend=_amount(min_spend,
                       "--min-spend"), budgets=_budgets(budget), level=level)  # fmt: skip
    try:
        settings = load_settings(config_path, db=db)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    zone = ZoneInfo(settings.timezone)  # checked by load_settings
    day: date = today.date() if today else datetime.now(zone).date()
    try:  # ten weeks of history before the day, the month after it: both must be dates
        start, end = month_bounds(day)
        since = datetime.combine(min(start, day - timedelta(70)), datetime.min.time(), zone)
        since.timestamp()
    except (OverflowError, ValueError) as exc:
        raise click.BadParameter(f"{day}: out of range", param_hint="--today") from exc
    try:
        dimension(by)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--by") from exc
    dims = [by, *(alert_dimensions(rules) if alerts else [])]
    try:
        for d in dims:
            dimension(d)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--budget") from exc
    with open_store(settings.db) as store:
        store.migrate()
        # the records stream through, a page at a time: memory stays flat
        found = tally(store.iter_records(since=since.timestamp()), tz=settings.timezone,
                      by=dims, until=day)  # fmt: skip
    rows = []
    for scope, series in found.series(by).items():
        f = project(series, until=end, period_start=start, level=level, partial=day)
        rows.append((scope, f))

    fired: list[Any] = []
    if alerts:
        path = sqlite_path(settings.db)
        state = state or (path + ".alerts" if path and path != ":memory:" else None)
        seen = FileAlertLog(state) if state else MemoryAlertLog()
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        fired = check_tally(found, today=day, rules=rules, seen=seen)
        deliver(fired, webhook_url=webhook or settings.webhook_url)

    if output_format == "json":
        out = {
            "as_of": day.isoformat(),
            "period": [start.isoformat(), end.isoformat()],
            "by": by,
            "forecasts": [
                {
                    "scope": scope,
                    "spent_usd": str(f.actual_to_date),
                    "projected_usd": str(f.projected_total),
                    "low_usd": str(f.low),
                    "high_usd": str(f.high),
                    "level": f.level,
                }
                for scope, f in rows
            ],
            "alerts": [a.payload() for a in fired],
        }
        click.echo(json.dumps(out, indent=2))
        return
    click.echo(f"forecast for {start.isoformat()}..{end.isoformat()} as of {day.isoformat()}, "
               f"{int(level * 100)}% band, by {by}")  # fmt: skip
    if not rows:
        click.echo("no priced spend in the ledger for this period")
    width = max([len(s) for s, _ in rows] + [5])
    for scope, f in rows:
        click.echo(f"  {scope.ljust(width)}  spent {_money(f.actual_to_date):>12}  "
                   f"projected {_money(f.projected_total):>12}  "
                   f"({_money(f.low)} - {_money(f.high)})")  # fmt: skip
    for a in fired:
        click.echo(f"alert: {a.text}")
