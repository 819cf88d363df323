"""`tokenomy budgets` and `tokenomy limits`: caps, changed live on the ledger database.

Running gateways pick a change up within ``caps.reload_interval`` (1 s): no restart.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from ..caps.model import budget_from, budget_view, limit_from, limit_view
from ..caps.store import CapsStore
from .common import click_errors, config_option, db_option, open_ledger

F = TypeVar("F", bound=Callable[..., Any])


def _scope_options(fn: F) -> F:
    for dim in ("model", "user", "key", "team", "org"):
        fn = click.option(
            f"--{dim}",
            default=None,
            help=f"Scope: this {dim}, or 'each' for one counter per {dim}.",
        )(fn)
    return click.option(
        "--tag", "tags", multiple=True, help="Scope: name=value or name=each; repeatable."
    )(fn)


def _scope(kw: dict[str, Any]) -> dict[str, str] | None:
    scope = {d: kw.pop(d) for d in ("org", "team", "key", "user", "model") if kw.get(d) is not None}
    for d in ("org", "team", "key", "user", "model"):
        kw.pop(d, None)
    for t in kw.pop("tags", ()) or ():
        name, sep, value = t.partition("=")
        if not name or not sep:
            raise click.BadParameter(f"--tag {t!r}: expected name=value or name=each")
        scope[f"tag:{name}"] = value
    return scope or None


def _run(db: str | None, config_path: str | None, fn: Callable[[CapsStore], Any]) -> Any:
    with open_ledger(db, config_path) as store, click_errors():
        return fn(CapsStore(store))


def _show(view: dict[str, Any]) -> None:
    click.echo("  ".join(f"{k}: {v}" for k, v in view.items() if k not in ("created_at",
                                                                           "updated_at")))  # fmt: skip


# -- budgets --------------------------------------------------------------------------------


@click.group()
def budgets() -> None:
    """Manage spend budgets (dollars and/or tokens per period, on any scope)."""


def _budget_options(fn: F) -> F:
    opts = [
        click.option("--usd", default=None, help="Dollar limit per period, e.g. 5 or 0.25."),
        click.option("--tokens", type=int, default=None, help="Token limit per period."),
        click.option("--period", default=None,
                     help="lifetime, daily, weekly, monthly (default), or rolling:24h."),
        click.option("--on-exceed", type=click.Choice(["refuse", "clamp"]), default=None,
                     help="Refuse (default), or lower max_tokens to what is left."),
        click.option("--fail-mode", type=click.Choice(["open", "closed"]), default=None,
                     help="When Redis is unreachable: admit (open) or refuse (closed, default)."),
        click.option("--alert", "alerts", type=int, multiple=True,
                     help="Alert threshold in percent; repeatable (e.g. --alert 50 --alert 80)."),
        click.option("--webhook", default=None, help="Alert webhook (default: webhook_url)."),
    ]  # fmt: skip
    for opt in reversed(opts):
        fn = opt(fn)
    return _scope_options(fn)


def _budget_fields(kw: dict[str, Any], *, creating: bool) -> dict[str, Any]:
    raw: dict[str, Any] = {}
    scope = _scope(kw)
    if scope is not None or creating:
        raw["scope"] = scope or {}
    for src, dst in (("usd", "limit_usd"), ("tokens", "limit_tokens"), ("period", "period"),
                     ("on_exceed", "on_exceed"), ("fail_mode", "fail_mode"),
                     ("webhook", "webhook_url")):  # fmt: skip
        if kw.get(src) is not None:
            raw[dst] = kw[src]
    if kw.get("alerts"):
        raw["alerts"] = list(kw["alerts"])
    return raw


@budgets.command("create")
@click.argument("name")
@_budget_options
@db_option
@config_option
def budgets_create(name: str, db: str | None, config_path: str | None, **kw: Any) -> None:
    """Create a budget, e.g. ``budgets create search-daily --team search --usd 5 --period daily``."""
    raw = {"name": name, **_budget_fields(kw, creating=True)}

    def run(caps: CapsStore) -> dict[str, Any]:
        b = budget_from(raw)
        caps.save_budget(b, new=True)
        return budget_view(b)

    _show(_run(db, config_path, run))


@budgets.command("list")
@db_option
@config_option
def budgets_list(db: str | None, config_path: str | None) -> None:
    """List budgets."""
    rows = _run(db, config_path, lambda caps: caps.load()[1])
    click.echo(f"{'name':<22}{'scope':<30}{'period':<14}{'usd':<12}{'tokens':<12}{'exceed':<8}fail")
    for b in rows:
        usd = "-" if b.limit_usd is None else str(b.limit_usd)
        tokens = "-" if b.limit_tokens is None else str(b.limit_tokens)
        click.echo(f"{b.name:<22}{b.scope.describe():<30}{b.period.to_text():<14}{usd:<12}"
                   f"{tokens:<12}{b.on_exceed:<8}{b.fail_mode}")  # fmt: skip


@budgets.command("update")
@click.argument("ref")
@_budget_options
@click.option("--no-usd", is_flag=True, help="Remove the dollar limit.")
@click.option("--no-tokens", is_flag=True, help="Remove the token limit.")
@db_option
@config_option
def budgets_update(
    ref: str, no_usd: bool, no_tokens: bool, db: str | None, config_path: str | None, **kw: Any
) -> None:
    """Change a budget (by name or id); scope options replace the whole scope."""
    raw = _budget_fields(kw, creating=False)
    if no_usd:
        raw["limit_usd"] = None
    if no_tokens:
        raw["limit_tokens"] = None

    def run(caps: CapsStore) -> dict[str, Any]:
        found = caps.get_budget(ref)
        if found is None:
            raise click.ClickException(f"no budget {ref!r}")
        b = budget_from(raw, base=found)
        caps.save_budget(b, new=False)
        return budget_view(b)

    _show(_run(db, config_path, run))


@budgets.command("delete")
@click.argument("ref")
@db_option
@config_option
def budgets_delete(ref: str, db: str | None, config_path: str | None) -> None:
    """Delete a budget (by name or id)."""

    def run(caps: CapsStore) -> str:
        found = caps.get_budget(ref)
        if found is None or not caps.delete_budget(found.id):
            raise click.ClickException(f"no budget {ref!r}")
        return found.name

    click.echo(f"deleted budget {_run(db, config_path, run)}")


# -- limits ---------------------------------------------------------------------------------


@click.group()
def limits() -> None:
    """Manage rate limits (requests and tokens per minute, concurrency)."""


def _limit_options(fn: F) -> F:
    opts = [
        click.option("--rpm", type=int, default=None, help="Requests per window."),
        click.option("--tpm", type=int, default=None, help="Tokens (input + output) per window."),
        click.option("--input-tpm", type=int, default=None, help="Input tokens per window."),
        click.option("--output-tpm", type=int, default=None, help="Output tokens per window."),
        click.option("--concurrent", type=int, default=None, help="Requests in flight."),
        click.option("--window", default=None, help="Window length (default 60s), e.g. 10s, 1m."),
        click.option("--fail-mode", type=click.Choice(["open", "closed"]), default=None,
                     help="When Redis is unreachable: admit (open, default) or refuse."),
    ]  # fmt: skip
    for opt in reversed(opts):
        fn = opt(fn)
    return _scope_options(fn)


def _limit_fields(kw: dict[str, Any], *, creating: bool) -> dict[str, Any]:
    raw: dict[str, Any] = {}
    scope = _scope(kw)
    if scope is not None or creating:
        raw["scope"] = scope or {}
    for f in ("rpm", "tpm", "input_tpm", "output_tpm", "concurrent", "window", "fail_mode"):
        if kw.get(f) is not None:
            raw[f] = kw[f]
    return raw


@limits.command("create")
@click.argument("name")
@_limit_options
@db_option
@config_option
def limits_create(name: str, db: str | None, config_path: str | None, **kw: Any) -> None:
    """Create a rate limit, e.g. ``limits create per-key --key each --rpm 60 --tpm 100000``."""
    raw = {"name": name, **_limit_fields(kw, creating=True)}

    def run(caps: CapsStore) -> dict[str, Any]:
        lim = limit_from(raw)
        caps.save_limit(lim, new=True)
        return limit_view(lim)

    _show(_run(db, config_path, run))


@limits.command("list")
@db_option
@config_option
def limits_list(db: str | None, config_path: str | None) -> None:
    """List rate limits."""
    rows = _run(db, config_path, lambda caps: caps.load()[2])
    click.echo(f"{'name':<22}{'scope':<30}{'rpm':<10}{'tpm':<10}{'in_tpm':<10}{'out_tpm':<10}"
               f"{'conc':<8}{'window':<8}fail")  # fmt: skip
    for x in rows:
        cells = [x.rpm, x.tpm, x.input_tpm, x.output_tpm]
        text = "".join(f"{'-' if c is None else c!s:<10}" for c in cells)
        conc = "-" if x.concurrent is None else str(x.concurrent)
        click.echo(f"{x.name:<22}{x.scope.describe():<30}{text}{conc:<8}{x.window!s:<8}"
                   f"{x.fail_mode}")  # fmt: skip


@limits.command("update")
@click.argument("ref")
@_limit_options
@db_option
@config_option
def limits_update(ref: str, db: str | None, config_path: str | None, **kw: Any) -> None:
    """Change a rate limit (by name or id); scope options replace the whole scope."""
    raw = _limit_fields(kw, creating=False)

    def run(caps: CapsStore) -> dict[str, Any]:
        found = caps.get_limit(ref)
        if found is None:
            raise click.ClickException(f"no limit {ref!r}")
        lim = limit_from(raw, base=found)
        caps.save_limit(lim, new=False)
        return limit_view(lim)

    _show(_run(db, config_path, run))


@limits.command("delete")
@click.argument("ref")
@db_option
@config_option
def limits_delete(ref: str, db: str | None, config_path: str | None) -> None:
    """Delete a rate limit (by name or id)."""

    def run(caps: CapsStore) -> str:
        found = caps.get_limit(ref)
        if found is None or not caps.delete_limit(found.id):
            raise click.ClickException(f"no limit {ref!r}")
        return found.name

    click.echo(f"deleted limit {_run(db, config_path, run)}")
