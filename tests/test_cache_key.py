"""The canonical key and the caching policy, without a gateway."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tokenomy.cache.config import CacheConfig, cache_config, default_path
from tokenomy.cache.key import cache_key
from tokenomy.cache.policy import decide, namespace
from tokenomy.config import Settings, load_settings
from tokenomy.errors import ConfigError
from tokenomy.ledger.base import KeyRecord
from tokenomy.pipeline.context import Call

MSGS = [{"role": "user", "content": "What is 2 + 2?"}]


def key(body: dict[str, Any], api: str = "openai", model: str = "gpt-4o") -> str:
    return cache_key(api, model, body)


def test_equivalent_json_gives_the_same_key() -> None:
    a = {"messages": MSGS, "temperature": 0, "max_tokens": 10, "top_p": 1}
    b = orjson.loads('{"top_p": 1.0, "max_tokens": 10.0, "temperature": 0.0,\n "messages": '
                     '[{"content": "What is 2 + 2?", "role": "user"}]}')  # fmt: skip
    assert key(a) == key(b)
    assert len(key(a)) == 64


def test_fields_that_do_not_change_the_answer_are_ignored() -> None:
    base = {"messages": MSGS, "temperature": 0}
    noisy = {
        **base,
        "user": "bob",
        "metadata": {"trace": "x"},
        "stream": True,
        "stream_options": {"include_usage": True},
        "store": True,
        "service_tier": "auto",
        "model": "something-else",  # the requested model is hashed separately
    }
    assert key(base) == key(noisy)


def test_anthropic_cache_control_markers_are_ignored() -> None:
    plain = {"system": [{"type": "text", "text": "Be brief."}], "messages": MSGS}
    marked = {
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        "messages": MSGS,
    }
    assert key(plain, "anthropic") == key(marked, "anthropic")


@pytest.mark.parametrize(
    "change",
    [
        {"temperature": 0.2},
        {"max_tokens": 11},
        {"stop": ["\n"]},
        {"seed": 1},
        {"n": 2},
        {"response_format": {"type": "json_object"}},
        {"tools": [{"type": "function", "function": {"name": "f"}}]},
        {"tool_choice": "none"},
        {"messages": [{"role": "user", "content": "What is 2 + 3?"}]},
        {"messages": [{"role": "system", "content": "Be terse."}, *MSGS]},
    ],
)
def test_parameters_that_change_the_answer_change_the_key(change: dict[str, Any]) -> None:
    base = {"messages": MSGS, "temperature": 0, "max_tokens": 10}
    assert key(base) != key({**base, **change})


def test_model_and_api_are_part_of_the_key() -> None:
    body = {"messages": MSGS, "temperature": 0}
    assert key(body, model="gpt-4o") != key(body, model="gpt-4o-mini")
    assert key(body, api="openai") != key(body, api="anthropic")


def test_true_is_not_one() -> None:
    assert key({"messages": MSGS, "logprobs": True}) != key({"messages": MSGS, "logprobs": 1})


def call(body: dict[str, Any], headers: dict[str, str] | None = None, **kw: Any) -> Call:
    c = Call("openai", "chat", "/v1/chat/completions", {"messages": MSGS, **body}, headers or {})
    for k, v in kw.items():
        setattr(c, k, v)
    return c


CFG = CacheConfig(enabled=True)


@pytest.mark.parametrize(
    ("body", "cached"),
    [
        ({"temperature": 0}, True),
        ({"temperature": 0.0}, True),
        ({}, False),  # the APIs' default temperature is 1
        ({"temperature": 0.3}, False),
        ({"temperature": 0.3, "seed": 42}, True),
        ({"seed": True}, False),
    ],
)
def test_only_deterministic_requests(body: dict[str, Any], cached: bool) -> None:
    d = decide(call(body), CFG)
    assert (d.read, d.write) == (cached, cached)


def test_everything_cached_when_operator_says_so() -> None:
    d = decide(call({"temperature": 0.9}), CacheConfig(enabled=True, only_deterministic=False))
    assert d.read and d.write


def test_tools_need_permission() -> None:
    fn = {"type": "function", "function": {"name": "lookup"}}
    charge = {"type": "function", "function": {"name": "charge_card"}}
    anthropic_tool = {"name": "lookup", "input_schema": {}}
    body = {"temperature": 0, "tools": [fn]}
    assert not decide(call(body), CFG).write
    allowed = CacheConfig(enabled=True, allowed_tools=frozenset({"lookup"}))
    assert decide(call(body), allowed).write
    assert decide(call({"temperature": 0, "tools": [anthropic_tool]}), allowed).write
    assert not decide(call({"temperature": 0, "tools": [fn, charge]}), allowed).write
    assert decide(
        call({"temperature": 0, "tools": [fn, charge]}), CacheConfig(cache_tools=True)
    ).write
    # OpenAI's legacy `functions` declare tools too
    assert not decide(call({"temperature": 0, "functions": [{"name": "lookup"}]}), CFG).write
    legacy = {"temperature": 0, "functions": [{"name": "lookup"}, {"name": "charge_card"}]}
    assert not decide(call(legacy), allowed).write
    assert decide(call({"temperature": 0, "functions": [{"name": "lookup"}]}), allowed).write


def test_request_headers() -> None:
    body = {"temperature": 0}
    d = decide(call(body, {"x-tokenomy-cache": "no-store"}), CFG)
    assert (d.read, d.write) == (False, False)
    d = decide(call(body, {"x-tokenomy-cache": "refresh"}), CFG)
    assert (d.read, d.write) == (False, True)
    d = decide(call(body, {"x-tokenomy-cache": " Refresh "}), CFG)
    assert (d.read, d.write) == (False, True)


def test_embeddings_are_not_cached() -> None:
    c = Call("openai", "embeddings", "/v1/embeddings", {"input": "x", "temperature": 0}, {})
    assert not decide(c, CFG).write


def krec(key_id: str, team: str | None, org: str | None) -> KeyRecord:
    return KeyRecord(key_id=key_id, key_hash="h", team=team, org=org)


def test_namespaces() -> None:
    both = call({}, key=krec("k1", "search", "acme"))
    lone = call({}, key=krec("k2", None, None))
    assert namespace(both, CacheConfig(namespace="team")) == "org-team:acme/search"
    # a team is one tenant only within its org
    rival = call({}, key=krec("k3", "search", "globex"))
    orgless = call({}, key=krec("k4", "search", None))
    assert namespace(rival, CacheConfig(namespace="team")) == "org-team:globex/search"
    assert namespace(orgless, CacheConfig(namespace="team")) == "team:search"
    odd = call({}, key=krec("k5", "b", "a/b"))  # separators in names cannot collide
    assert namespace(odd, CacheConfig(namespace="team")) == "org-team:a%2Fb/b"
    assert namespace(both, CacheConfig(namespace="org")) == "org:acme"
    assert namespace(both, CacheConfig(namespace="key")) == "key:k1"
    # no team or org: the key's own namespace, never a shared one
    assert namespace(lone, CacheConfig(namespace="team")) == "key:k2"
    assert namespace(lone, CacheConfig(namespace="org")) == "key:k2"
    assert namespace(both, CacheConfig(namespace="shared:faq")) == "shared:faq"
    assert namespace(lone, CacheConfig(namespace="shared:faq")) == "shared:faq"
    # without a key (require_key: false) every caller is the same anonymous tenant
    assert namespace(call({}), CacheConfig(namespace="team")) == "anonymous"


def test_config_from_yaml(tmp_path: Any) -> None:
    path = tmp_path / "tokenomy.yaml"
    path.write_text(
        "db: data/ledger.db\n"
        "cache:\n  enabled: true\n  ttl: 60\n  namespace: org\n  allowed_tools: [a, b]\n"
        "  max_entries: 10\n  semantic: {enabled: true, target_wrong_hit_rate: 0.02}\n"
    )
    cfg = cache_config(load_settings(path, env={}))
    assert cfg.enabled and cfg.ttl == 60 and cfg.namespace == "org"
    assert cfg.allowed_tools == {"a", "b"} and cfg.max_entries == 10
    assert cfg.semantic_enabled and cfg.semantic.target_wrong_hit_rate == 0.02
    assert cfg.path == "data/ledger.cache.db"
    assert not cache_config(Settings()).enabled


@pytest.mark.parametrize(
    "raw",
    [
        {"colour": "blue"},
        {"ttl": 0},
        {"max_entries": -1},
        {"backend": "memcached"},
        {"backend": "redis"},  # without a redis_url
        {"namespace": "everyone"},
        {"namespace": "shared:"},
        {"semantic": {"enabled": True, "treshold": 0.9}},
        {"semantic": {"target_wrong_hit_rate": 1.5}},
        {"semantic": "on"},
        {"coalesce_wait": -1},
    ],
)
def test_bad_config_is_refused(raw: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        cache_config(Settings(cache=raw))


def test_default_path() -> None:
    assert default_path("tokenomy.db") == "tokenomy.cache.db"
    assert default_path("postgresql://x/y") == "tokenomy.cache.db"
    assert default_path(":memory:") == ":memory:"


def test_beta_headers_are_part_of_the_key() -> None:
    body = {"messages": MSGS}
    plain = cache_key("anthropic", "claude-sonnet-4-6", body, {"x-request-id": "1"})
    assert plain == cache_key("anthropic", "claude-sonnet-4-6", body)
    beta = cache_key("anthropic", "claude-sonnet-4-6", body, {"anthropic-beta": "context-1m"})
    assert beta != plain


def test_huge_numbers_do_not_break_the_key() -> None:
    body = orjson.loads(b'{"messages": [], "seed": 123456789012345678901234567890}')
    assert len(key(body)) == 64


def test_the_routed_models_are_part_of_the_key() -> None:
    body = {"messages": MSGS, "temperature": 0}
    plain = cache_key("openai", "gpt-4o", body)
    # served by the model asked for: the key of a request without routing
    assert cache_key("openai", "gpt-4o", body, route=["gpt-4o"]) == plain
    rerouted = cache_key("openai", "gpt-4o", body, route=["gpt-4o-mini"])
    with_fallback = cache_key("openai", "gpt-4o", body, route=["gpt-4o", "claude-sonnet-4-6"])
    assert len({plain, rerouted, with_fallback}) == 3
