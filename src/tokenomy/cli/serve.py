"""`tokenomy serve`: the gateway on uvicorn."""

from __future__ import annotations

import logging

import click

from ..config import load_settings
from ..errors import ConfigError


@click.command()
@click.option("--host", default=None, help="Interface to bind (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default 4000).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="YAML config file (models, prices, server settings).")  # fmt: skip
@click.option("--db", default=None, envvar="TOKENOMY_DB",
              help="Ledger: a SQLite path (default tokenomy.db) or a postgresql:// URL.")  # fmt: skip
@click.option("--log-level", default=None, help="debug, info, warning, error.")
def serve(
    host: str | None,
    port: int | None,
    config_path: str | None,
    db: str | None,
    log_level: str | None,
) -> None:
    """Run the metering gateway (OpenAI- and Anthropic-compatible)."""
    import uvicorn

    from ..server.app import create_app
    from ..server.protocol import GatewayProtocol

    try:
        settings = load_settings(config_path, host=host, port=port, db=db, log_level=log_level)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    level = settings.log_level.upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not settings.deployments:
        logging.getLogger("tokenomy").warning(
            "no upstream configured: set OPENAI_API_KEY/OPENAI_BASE_URL, "
            "ANTHROPIC_API_KEY/ANTHROPIC_BASE_URL, or pass --config"
        )
    try:
        import uvloop  # noqa: F401

        loop = "uvloop"
    except ImportError:  # pragma: no cover - platforms without uvloop
        loop = "asyncio"
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        loop=loop,
        http=GatewayProtocol,
        lifespan="on",
        access_log=False,
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=int(settings.drain_timeout),
        timeout_keep_alive=30,
    )
    from ..server.quiet import QuietServer

    QuietServer(config).run()
