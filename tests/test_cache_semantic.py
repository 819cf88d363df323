"""The semantic path through the gateway: equivalent requests hit; other contexts,
other tenants and other questions never do.

These test the cache stage around the semantic index, with a stand-in verifier
(cosine >= 0.98, `cache_helpers.CosineVerifier`); the shipped verifier's
calibration is measured by benchmarks/cache_eval.py and tests/test_semantic_*."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from cache_helpers import (
    CACHE_HEADER,
    cached_gateway,
    marker,
    new_key,
    stand_in_verifier,
    upstream_calls,
)
from gateway_fixtures import GW, Fake, gateway_settings, start_gateway

pytest.importorskip("onnxruntime")
pytest.importorskip("usearch")

replica = contextlib.contextmanager(start_gateway)


@pytest.fixture
def stand_in() -> Iterator[None]:
    with stand_in_verifier():
        yield


@pytest.fixture(scope="module")
def sgw(fake: Fake, fake_llamacpp: Fake, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GW]:
    tmp = tmp_path_factory.mktemp("cache_semantic")
    semantic = {"enabled": True, "target_wrong_hit_rate": 0.02}
    with stand_in_verifier():
        yield from cached_gateway(tmp, fake, fake_llamacpp, semantic=semantic, routing=ROUTING)


ROUTE = "x-tokenomy-route"
ROUTING = {"rules": [{"name": "cheap", "when": {"header": {ROUTE: "cheap"}}, "to": "gpt-4o-mini"}]}


def ask(
    gw: GW, messages: list[dict[str, Any]], key: str | None = None, route: str | None = None
) -> Any:
    return gw.openai(key).chat.completions.with_raw_response.create(
        model="gpt-4o",
        messages=messages,
        temperature=0,
        extra_headers={ROUTE: route} if route else None,
    )


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def test_an_equivalent_request_the_exact_key_misses_is_a_semantic_hit(sgw: GW) -> None:
    # The same words sent as content parts with stray spaces: another exact key, the
    # same question. (Which paraphrases hit is the verifier's business, measured by
    # benchmarks/cache_eval.py; this checks the stage around it.)
    mark = marker()
    system = {"role": "system", "content": f"You answer geography questions. {mark}"}
    first = ask(sgw, [system, user("What is the capital city of France?")])
    assert first.headers[CACHE_HEADER] == "miss"
    parts = {
        "role": "user",
        "content": [{"type": "text", "text": " What is the capital city of France?  "}],
    }
    second = ask(sgw, [system, parts])
    assert second.headers[CACHE_HEADER] == "hit-semantic"
    assert second.parse().choices[0].message.content == first.parse().choices[0].message.content
    assert upstream_calls(sgw, mark) == 1
    paid = sgw.record(first.headers["x-tokenomy-request-id"])
    hit = sgw.record(second.headers["x-tokenomy-request-id"])
    assert hit.cost_usd == Decimal(0)
    decision = hit.decisions["cache"]
    assert decision["hit"] == "semantic" and decision["entry"] == paid.request_id
    assert Decimal(decision["saved_usd"]) == paid.cost_usd
    assert 0.99 < decision["similarity"] <= 1.0


def test_a_different_question_is_a_miss(sgw: GW) -> None:
    mark = marker()
    system = {"role": "system", "content": f"You answer geography questions. {mark}"}
    assert ask(sgw, [system, user("What is the capital of Spain?")]).headers[CACHE_HEADER] == "miss"
    other = ask(sgw, [system, user("What is the capital of Portugal?")])
    assert other.headers[CACHE_HEADER] == "miss"
    assert upstream_calls(sgw, mark) == 2


def test_the_same_question_after_another_history_is_a_miss(sgw: GW) -> None:
    mark = marker()
    q = user(f"And how many people live there? {mark}")
    paris = [user("Tell me about Paris."), {"role": "assistant", "content": "Paris is in France."}]
    tokyo = [user("Tell me about Tokyo."), {"role": "assistant", "content": "Tokyo is in Japan."}]
    assert ask(sgw, [*paris, q]).headers[CACHE_HEADER] == "miss"
    assert ask(sgw, [*tokyo, q]).headers[CACHE_HEADER] == "miss"
    assert ask(sgw, [*paris, q]).headers[CACHE_HEADER] == "hit-exact"
    assert ask(sgw, [*tokyo, q]).headers[CACHE_HEADER] == "hit-exact"
    assert upstream_calls(sgw, mark) == 2


def test_another_tenant_never_gets_a_semantic_hit(sgw: GW) -> None:
    mark = marker()
    other = new_key(sgw, team="billing")
    system = {"role": "system", "content": f"You answer geography questions. {mark}"}
    assert ask(sgw, [system, user("What is the capital of Italy?")]).headers[CACHE_HEADER] == "miss"
    # the variant that is a semantic hit within one tenant (the positive control below)
    theirs = ask(sgw, [system, parts("What is the capital of Italy?")], key=other)
    assert theirs.headers[CACHE_HEADER] == "miss"
    mine = ask(sgw, [system, parts("What is the capital of Italy?")])
    assert mine.headers[CACHE_HEADER] == "hit-semantic"
    assert upstream_calls(sgw, mark) == 2


def test_a_request_routed_to_another_model_never_gets_a_semantic_hit(sgw: GW) -> None:
    mark = marker()
    system = {"role": "system", "content": f"You answer geography questions. {mark}"}
    first = ask(sgw, [system, user("What is the capital of Greece?")], route="cheap")
    assert (first.headers[CACHE_HEADER], first.parse().model) == ("miss", "gpt-4o-mini")
    # the variant that is a semantic hit for a request routed the same way
    theirs = ask(sgw, [system, parts("What is the capital of Greece?")])
    assert (theirs.headers[CACHE_HEADER], theirs.parse().model) == ("miss", "gpt-4o")
    mine = ask(sgw, [system, parts("What is the capital of Greece?")], route="cheap")
    assert (mine.headers[CACHE_HEADER], mine.parse().model) == ("hit-semantic", "gpt-4o-mini")
    assert upstream_calls(sgw, mark) == 2


def parts(text: str) -> dict[str, Any]:
    return {"role": "user", "content": [{"type": "text", "text": f" {text} "}]}


@pytest.mark.usefixtures("stand_in")
def test_a_restarted_gateway_reloads_its_vectors(
    fake: Fake, fake_llamacpp: Fake, tmp_path: Path
) -> None:
    mark = marker()
    system = {"role": "system", "content": f"Geography. {mark}"}
    semantic = {"enabled": True, "target_wrong_hit_rate": 0.02}
    for gw in cached_gateway(tmp_path, fake, fake_llamacpp, semantic=semantic):
        assert ask(gw, [system, user("Where is Lyon?")]).headers[CACHE_HEADER] == "miss"
    for gw in cached_gateway(tmp_path, fake, fake_llamacpp, semantic=semantic):
        r = ask(gw, [system, parts("Where is Lyon?")])
        assert r.headers[CACHE_HEADER] == "hit-semantic"
    assert upstream_calls(gw, mark) == 1


@pytest.mark.redis
@pytest.mark.usefixtures("stand_in")
def test_redis_replicas_see_each_others_semantic_entries(
    fake: Fake, fake_llamacpp: Fake, tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    mark = marker()
    system = {"role": "system", "content": f"Geography. {mark}"}
    cache = {
        "enabled": True,
        "backend": "redis",
        "redis_prefix": redis_prefix,
        "semantic": {"enabled": True, "target_wrong_hit_rate": 0.02, "sync_interval": 0.05},
    }
    db = str(tmp_path / "ledger.db")
    settings = gateway_settings(db, fake, fake_llamacpp, redis_url=redis_url, cache=cache)
    with replica(settings, fake) as a, replica(settings, fake) as b:
        # b looks first (its index of the namespace is loaded, empty), then a adds
        assert ask(b, [system, user("Where is Nice?")]).headers[CACHE_HEADER] == "miss"
        assert ask(a, [system, user("Where is Lille?")]).headers[CACHE_HEADER] == "miss"
        time.sleep(0.1)
        r = ask(b, [system, parts("Where is Lille?")])
        assert r.headers[CACHE_HEADER] == "hit-semantic"  # found by b's poll of a's additions
        assert upstream_calls(a, mark) == 2


class BrokenVerifier:
    def threshold(self, target: float) -> float:
        return 0.5

    def probability(self, a: str, b: str, u: Any, v: Any) -> float:
        raise RuntimeError("broken model")

    def probabilities(self, features: Any) -> Any:
        raise RuntimeError("broken model")


def test_a_failing_semantic_layer_never_fails_a_request(
    fake: Fake, fake_llamacpp: Fake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tokenomy.cache.semantic as semantic
    from tokenomy.cache.semantic.index import SemanticIndex

    def broken(**kw: Any) -> Any:
        return SemanticIndex(**kw, verifier=BrokenVerifier())  # type: ignore[arg-type]

    monkeypatch.setattr(semantic, "SemanticIndex", broken)
    mark = marker()
    semantic_on = {"enabled": True, "target_wrong_hit_rate": 0.02}
    for gw in cached_gateway(tmp_path, fake, fake_llamacpp, semantic=semantic_on):
        first = ask(gw, [user(f"Where is Metz? {mark}")])
        second = ask(gw, [parts(f"Where is Metz? {mark}")])  # reaches the broken verifier
        assert (first.headers[CACHE_HEADER], second.headers[CACHE_HEADER]) == ("miss", "miss")
        assert second.parse().choices[0].message.content
        # the exact layer still works
        assert ask(gw, [user(f"Where is Metz? {mark}")]).headers[CACHE_HEADER] == "hit-exact"
        assert upstream_calls(gw, mark) == 2
