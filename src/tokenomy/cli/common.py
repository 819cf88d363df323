"""What the ledger commands share: the --db and --config options, opening the
ledger, and showing a TokenomyError as a click error."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click

from ..config import load_settings
from ..errors import TokenomyError
from ..ledger import open_store
from ..ledger.base import Store

db_option = click.option("--db", default=None, envvar="TOKENOMY_DB", help="Ledger path or URL.")
config_option = click.option("--config", "config_path", default=None, help="YAML config file.")

# Rows a list command reads at a time: it prints every row, page after page, so
# its memory stays flat and output starts at once however long the list is.
PAGE = 1000


def open_ledger(db: str | None, config_path: str | None) -> Store:
    """The migrated ledger that --db (or the config file) names; the caller closes it."""
    store = open_store(load_settings(config_path, db=db).db)
    store.migrate()
    return store


@contextmanager
def click_errors() -> Iterator[None]:
    """A TokenomyError raised inside becomes a click error with the same message.

    `main()` prints such errors the same way; catching them here also shows them
    when the command is invoked without it (click's test runner, say)."""
    try:
        yield
    except TokenomyError as exc:
        raise click.ClickException(exc.message) from exc
