"""Two gateways (replicas) sharing one Redis cache see each other's entries."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from cache_helpers import CACHE_HEADER, marker, new_key, upstream_calls
from gateway_fixtures import GW, Fake, gateway_settings, start_gateway

pytestmark = pytest.mark.redis

replica = contextlib.contextmanager(start_gateway)


def ask(gw: GW, content: str, key: str | None = None) -> str:
    raw = gw.openai(key).chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": content}], temperature=0
    )
    return str(raw.headers[CACHE_HEADER])


def test_replicas_share_entries_but_not_tenants(
    fake: Fake, fake_llamacpp: Fake, tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    cache = {"enabled": True, "backend": "redis", "redis_prefix": redis_prefix}
    db = str(tmp_path / "ledger.db")  # one ledger (the keys); each replica its own process state
    settings = gateway_settings(db, fake, fake_llamacpp, redis_url=redis_url, cache=cache)
    with replica(settings, fake) as a, replica(settings, fake) as b:
        mark = marker()
        other = new_key(a, team="billing")
        q = f"replicas {mark}"
        assert ask(a, q) == "miss"
        assert ask(b, q) == "hit-exact"  # written by replica one, served by replica two
        assert ask(b, q, other) == "miss"  # another tenant, even through the shared Redis
        assert ask(a, q, other) == "hit-exact"
        assert upstream_calls(a, mark) == 2
