"""The `tokenomy` command line."""

from __future__ import annotations

import click

from ..errors import TokenomyError
from . import cache_admin  # noqa: F401  (registers `cache stats` and `cache clear`)
from .billing import credits, plans, statements
from .cache import cache
from .caps import budgets, limits
from .count import count
from .forecast import forecast
from .keys import keys
from .report import report
from .router import router
from .serve import serve
from .simulate import simulate


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="tokenomy")
def cli() -> None:
    """Tokenomy: meter, cap and cut the LLM token bill."""


cli.add_command(serve)
cli.add_command(keys)
cli.add_command(budgets)
cli.add_command(limits)
cli.add_command(credits)
cli.add_command(plans)
cli.add_command(statements)
cli.add_command(count)
cli.add_command(simulate)
cli.add_command(forecast)
cli.add_command(report)
cli.add_command(router)
cli.add_command(cache)


def main() -> None:
    try:
        cli()
    except TokenomyError as exc:  # bad config or input: a message, never a traceback
        click.echo(f"Error: {exc}", err=True)
        raise SystemExit(1) from None
