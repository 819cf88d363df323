"""Gateways with the response cache on, and a second tenant's key."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway_fixtures import GW, Fake, gateway_settings, start_gateway
from tokenomy.keys import mint_key

CACHE_HEADER = "x-tokenomy-cache"


def cached_gateway(
    tmp_path: Path,
    fake: Fake,
    llama: Fake,
    *,
    name: str = "ledger.db",
    caps: dict[str, Any] | None = None,
    routing: dict[str, Any] | None = None,
    **cache: Any,
) -> Iterator[GW]:
    settings = gateway_settings(
        str(tmp_path / name),
        fake,
        llama,
        cache={"enabled": True, **cache},
        caps=caps or {},
        routing=routing or {},
    )
    yield from start_gateway(settings, fake)


def new_key(gw: GW, *, team: str | None, org: str = "acme", user: str = "bob") -> str:
    secret, rec = mint_key(team=team, user=user, org=org)
    gw.store.create_key(rec)
    return secret


def marker() -> str:
    """Words no other test sends, to count this test's upstream calls."""
    return "q" + uuid.uuid4().hex[:12]


def upstream_calls(gw: GW, mark: str) -> int:
    return sum(1 for r in gw.fake.app.requests if mark in str(r.body))


class CosineVerifier:
    """Stands in for the shipped verifier in tests of the cache stage (wiring,
    isolation, contexts, replicas), so they do not depend on the calibration,
    which benchmarks/cache_eval.py measures: a hit is a cosine of at least 0.98."""

    def threshold(self, target: float) -> float:
        return 0.98

    def probability(self, a: str, b: str, u: Any, v: Any) -> float:
        return float(u @ v)

    def probabilities(self, features: Any) -> Any:
        from tokenomy.cache.semantic.features import LEXICAL

        return features[:, LEXICAL.index("cos")].astype("float64")


@contextlib.contextmanager
def stand_in_verifier() -> Iterator[None]:
    import tokenomy.cache.semantic as semantic
    from tokenomy.cache.semantic.index import SemanticIndex as real

    def make(**kw: Any) -> Any:
        return real(**kw, verifier=CosineVerifier())  # type: ignore[arg-type]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(semantic, "SemanticIndex", make)
        yield
