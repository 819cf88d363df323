"""The `tokenomy` command line."""

from __future__ import annotations

import click

from .count import count
from .keys import keys
from .serve import serve


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="tokenomy")
def cli() -> None:
    """Tokenomy: meter, cap and cut the LLM token bill."""


cli.add_command(serve)
cli.add_command(keys)
cli.add_command(count)


def main() -> None:
    cli()
