"""`tokenomy credits`, `tokenomy plans` and `tokenomy statements`: prepaid billing."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal

import click

from ..billing import (
    BillingStore,
    CreditEntry,
    Customer,
    Plan,
    build_statement,
    money_text,
    parse_money,
    parse_period,
)
from ..config import load_settings
from ..config import timezone as check_zone
from ..ledger import walk
from .common import PAGE, click_errors, config_option, db_option, open_ledger
from .keys import parse_duration


@contextmanager
def _billing(db: str | None, config_path: str | None) -> Iterator[BillingStore]:
    with open_ledger(db, config_path) as store, click_errors():
        yield BillingStore(store)


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


# -- credits ----------------------------------------------------------------------------


@click.group()
def credits() -> None:
    """Prepaid balances: top up, adjust, and read the credit ledger."""


@credits.command("topup")
@click.argument("customer")
@click.argument("amount")
@click.option("--unit", type=click.Choice(["usd", "tokens"]), default="usd", show_default=True,
              help="The balance's unit, fixed by the customer's first top-up.")  # fmt: skip
@click.option("--note", default=None, help="Why, for the ledger (e.g. an invoice number).")
@db_option
@config_option
def topup(
    customer: str, amount: str, unit: str, note: str | None, db: str | None, config_path: str | None
) -> None:
    """Add AMOUNT (dollars, or tokens) to CUSTOMER's balance."""
    with click_errors():
        value = parse_money(amount, "amount", unit=unit)
    with _billing(db, config_path) as billing:
        entry = billing.topup(customer, value, unit=unit, note=note)
        acct = billing.customer(customer)
    assert acct is not None
    click.echo(f"entry {entry.id}: topup {money_text(entry.amount)} {unit} for {customer}; "
               f"balance {money_text(acct.balance)} {unit}")  # fmt: skip


@credits.command("adjust", context_settings={"ignore_unknown_options": True})
@click.argument("customer")
@click.argument("amount")
@click.option("--note", required=True, help="Why: every adjustment is explained in the ledger.")
@click.option("--refund", "refund_of", default=None, metavar="REQUEST_ID",
              help="Give back AMOUNT of what this request's debit took from CUSTOMER "
                   "(at most all of it, once per request).")  # fmt: skip
@db_option
@config_option
def adjust(
    customer: str,
    amount: str,
    note: str,
    refund_of: str | None,
    db: str | None,
    config_path: str | None,
) -> None:
    """Add a signed AMOUNT to CUSTOMER's balance (never below zero)."""
    with _billing(db, config_path) as billing:
        acct = billing.customer(customer)
        if acct is None or acct.unit is None:
            raise click.ClickException(f"{customer!r} has no balance")
        value = parse_money(amount, "amount", unit=acct.unit)
        kind = "refund" if refund_of else "adjustment"
        entry = billing.adjust(customer, value, note=note, kind=kind, request_id=refund_of)
        after = billing.customer(customer)
    assert after is not None
    again = " (made before: nothing changed)" if entry.replayed else ""
    click.echo(f"entry {entry.id}: {kind} {money_text(entry.amount)} {entry.unit} for "
               f"{customer}; balance {money_text(after.balance)} {entry.unit}{again}")  # fmt: skip


@credits.command("balance")
@click.argument("customer", required=False)
@db_option
@config_option
def balance(customer: str | None, db: str | None, config_path: str | None) -> None:
    """Show CUSTOMER's balance and plan (every customer's without CUSTOMER)."""
    with _billing(db, config_path) as billing:
        rows: Iterable[Customer]
        if customer is None:
            rows = walk(lambda after: billing.customers_page(after=after, limit=PAGE))
        else:
            one = billing.customer(customer)
            if one is None:
                raise click.ClickException(f"no billing customer {customer!r}")
            rows = [one]
        click.echo(f"{'customer':<24}{'plan':<16}{'balance':>24}  unit")
        for c in rows:
            shown = "-" if c.unit is None else money_text(c.balance)
            click.echo(f"{c.customer:<24}{(c.plan or '-'):<16}{shown:>24}  {c.unit or '-'}")


@credits.command("history")
@click.argument("customer")
@click.option(
    "--limit",
    type=click.IntRange(1, 100_000),
    default=50,
    show_default=True,
    help="Most recent entries to show (a line on stderr says if there are more).",
)
@click.option("--all", "every", is_flag=True, help="Every entry, read a page at a time.")
@db_option
@config_option
def history(
    customer: str, limit: int, every: bool, db: str | None, config_path: str | None
) -> None:
    """List CUSTOMER's credit ledger entries, newest first."""
    with _billing(db, config_path) as billing:
        entries: Iterable[CreditEntry]
        more = False
        if every:
            entries = walk(lambda after: billing.history_page(customer, after=after, limit=PAGE))
        else:
            page = billing.history_page(customer, limit=limit)
            entries, more = page.items, page.next is not None
        click.echo(f"{'id':>8}  {'when':<24}{'kind':<12}{'amount':>22}  {'unit':<7}request / note")
        for e in entries:
            about = " ".join(x for x in (e.request_id, e.note) if x) or "-"
            amount = money_text(e.amount)
            click.echo(f"{e.id:>8}  {_when(e.ts):<24}{e.kind:<12}{amount:>22}  {e.unit:<7}{about}")
        if more:
            total = billing.entry_count(customer)
            click.echo(f"showing the {limit:,} newest of {total:,} entries: --limit N or --all "
                       "for more", err=True)  # fmt: skip


@credits.command("reconcile")
@click.option("--since", default="1d", show_default=True,
              help="How far back to look, e.g. 6h, 7d.")  # fmt: skip
@db_option
@config_option
def reconcile(since: str, db: str | None, config_path: str | None) -> None:
    """Append the debits of recorded requests that have none (after a crash)."""
    start = time.time() - parse_duration(since, "--since")
    with _billing(db, config_path) as billing:
        n = billing.reconcile(start)
    click.echo(f"appended {n} missing debit(s)")


# -- plans ------------------------------------------------------------------------------


@click.group()
def plans() -> None:
    """Plans: what customers pay on top of (or instead of) the provider cost."""


@plans.command("create")
@click.argument("name")
@click.option("--markup", default=None, help="Percent added to the provider cost, e.g. 20.")
@click.option("--input", "input_", default=None, help="Fixed $ per million input tokens.")
@click.option("--output", default=None, help="Fixed $ per million output tokens.")
@click.option("--cached-input", default=None,
              help="Fixed $ per million cache-read tokens (default: the input price).")  # fmt: skip
@db_option
@config_option
def create_plan(
    name: str,
    markup: str | None,
    input_: str | None,
    output: str | None,
    cached_input: str | None,
    db: str | None,
    config_path: str | None,
) -> None:
    """Create plan NAME: --markup PCT, or --input and --output prices."""

    def price(value: str | None, what: str) -> Decimal | None:
        return None if value is None else parse_money(value, what)

    with click_errors():
        plan = Plan(
            name=name,
            markup_pct=price(markup, "markup"),
            input_per_mtok=price(input_, "input"),
            output_per_mtok=price(output, "output"),
            cached_input_per_mtok=price(cached_input, "cached-input"),
        )
    with _billing(db, config_path) as billing:
        billing.create_plan(plan)
    click.echo(f"plan {name}: {plan.describe()}")


@plans.command("list")
@db_option
@config_option
def list_plans(db: str | None, config_path: str | None) -> None:
    """List every plan, by name."""
    with _billing(db, config_path) as billing:
        for p in walk(lambda after: billing.plans_page(after=after, limit=PAGE)):
            click.echo(f"{p.name:<20}{p.describe()}")


@plans.command("assign")
@click.argument("customer")
@click.argument("plan")
@db_option
@config_option
def assign(customer: str, plan: str, db: str | None, config_path: str | None) -> None:
    """Put CUSTOMER on PLAN ('none': pay the provider cost)."""
    with _billing(db, config_path) as billing:
        billing.assign_plan(customer, None if plan == "none" else plan)
    click.echo(f"{customer}: plan {plan}")


# -- statements -------------------------------------------------------------------------


@click.command()
@click.argument("customer")
@click.option("--period", required=True, help="YYYY-MM (or YYYY, YYYY-MM-DD).")
@click.option("--format", "fmt", type=click.Choice(["json", "csv"]), default="json",
              show_default=True)  # fmt: skip
@click.option("--timezone", default=None, help="Calendar time zone (default: the configured one).")
@db_option
@config_option
def statements(
    customer: str,
    period: str,
    fmt: str,
    timezone: str | None,
    db: str | None,
    config_path: str | None,
) -> None:
    """Print CUSTOMER's statement for a period: usage, cost, charges, balance."""
    with click_errors():
        tz = check_zone(timezone, "--timezone") if timezone else None
        tz = tz or load_settings(config_path, db=db).timezone
        span = parse_period(period, tz)
    with _billing(db, config_path) as billing:
        st = build_statement(billing, customer, span, timezone=tz)
        # a piece at a time, while the ledger is open: every top-up of the period
        if fmt == "csv":
            for piece in st.csv_chunks():
                click.echo(piece, nl=False)
        else:
            for chunk in st.json_chunks(indent=True):
                click.echo(chunk.decode(), nl=False)
            click.echo()
