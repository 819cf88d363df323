"""`tokenomy keys`: create, list, revoke and expire virtual keys."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

import click

from ..keys import mint_key
from ..ledger import walk
from .common import PAGE, config_option, db_option, open_ledger

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


_LONGEST = 36500 * 86400  # 100 years: a time this far from now is still a date


def parse_duration(text: str, option: str | None = None) -> float:
    """Seconds from ``3600``, ``12h``, ``30d``...; ``option`` names the flag in errors."""
    m = _DURATION.match(text.strip())
    if not m:
        raise click.BadParameter(
            f"{text!r}: use a number with s, m, h, d or w (e.g. 30d)", param_hint=option
        )
    seconds = float(m.group(1)) * _UNITS[m.group(2)]
    if seconds > _LONGEST:
        raise click.BadParameter(f"{text!r}: at most 100 years (36500d)", param_hint=option)
    return seconds


def _when(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


@click.group()
def keys() -> None:
    """Manage virtual keys (stored hashed; the secret is shown once)."""


@keys.command("create")
@click.option("--name", default=None, help="A label for the key.")
@click.option("--org", default=None)
@click.option("--team", default=None)
@click.option("--user", default=None)
@click.option("--tag", "tags", multiple=True, help="key=value, repeatable.")
@click.option("--model", "models", multiple=True, help="Allowed model, repeatable (default: all).")
@click.option("--expires-in", default=None, help="Lifetime, e.g. 3600, 12h, 30d.")
@db_option
@config_option
def create(
    name: str | None,
    org: str | None,
    team: str | None,
    user: str | None,
    tags: tuple[str, ...],
    models: tuple[str, ...],
    expires_in: str | None,
    db: str | None,
    config_path: str | None,
) -> None:
    """Create a key; its secret is printed alone on the last line."""
    tag_map: dict[str, str] = {}
    for t in tags:
        k, _, v = t.partition("=")
        if not k:
            raise click.BadParameter(f"--tag {t!r}: expected key=value")
        tag_map[k] = v
    expires_at = time.time() + parse_duration(expires_in, "--expires-in") if expires_in else None
    secret, rec = mint_key(
        name=name, org=org, team=team, user=user, tags=tag_map, models=list(models),
        expires_at=expires_at,
    )  # fmt: skip
    with open_ledger(db, config_path) as store:
        store.create_key(rec)
    click.echo(f"key_id: {rec.key_id}  team: {team or '-'}  user: {user or '-'}  "
               f"expires: {_when(expires_at)}")  # fmt: skip
    click.echo("Store this key now; it cannot be shown again:", err=True)
    click.echo(secret)


@keys.command("list")
@db_option
@config_option
def list_(db: str | None, config_path: str | None) -> None:
    """List every key, oldest first (never their secrets)."""
    now = time.time()
    with open_ledger(db, config_path) as store:  # a bad --db or config: no header first
        click.echo(
            f"{'key_id':<14}{'name':<16}{'org':<12}{'team':<12}{'user':<12}{'status':<10}expires"
        )
        for k in walk(lambda after: store.keys_page(after=after, limit=PAGE)):
            status = "revoked" if k.revoked_at else (
                "expired" if k.expires_at and k.expires_at <= now else "active")  # fmt: skip
            click.echo(
                f"{k.key_id:<14}{(k.name or '-'):<16}{(k.org or '-'):<12}{(k.team or '-'):<12}"
                f"{(k.user or '-'):<12}{status:<10}{_when(k.expires_at)}"
            )


@keys.command("revoke")
@click.argument("key_id")
@db_option
@config_option
def revoke(key_id: str, db: str | None, config_path: str | None) -> None:
    """Revoke a key now (within the gateway's key cache TTL, 2 s by default)."""
    with open_ledger(db, config_path) as store:
        ok = store.update_key(key_id, revoked_at=time.time())
    if not ok:
        raise click.ClickException(f"no key {key_id!r}")
    click.echo(f"revoked {key_id}")


@keys.command("expire")
@click.argument("key_id")
@click.option("--in", "in_", required=True, help="Time from now, e.g. 0, 12h, 30d.")
@db_option
@config_option
def expire(key_id: str, in_: str, db: str | None, config_path: str | None) -> None:
    """Set a key's expiry."""
    at = time.time() + parse_duration(in_, "--in")
    with open_ledger(db, config_path) as store:
        ok = store.update_key(key_id, expires_at=at)
    if not ok:
        raise click.ClickException(f"no key {key_id!r}")
    click.echo(f"{key_id} expires {_when(at)}")
