"""Rules and aliases through a real gateway: each kind of condition, first match wins."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from gateway_fixtures import GW, Fake, add_key
from routing_helpers import chat, route_of, routed_gateway

IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    path = tmp_path_factory.mktemp("rules")
    db = str(path / "ledger.db")
    ads_secret, _ = add_key(db, team="ads")
    vip_secret, vip_id = add_key(db, team="search")
    limited_secret, _ = add_key(db, models=["smart", "gpt-4o"])
    picky_secret, _ = add_key(db, models=["sturdy", "gpt-4o", "o3"])
    return {"path": path, "ads": ads_secret, "vip": vip_secret, "vip_id": vip_id,
            "limited": limited_secret, "picky": picky_secret}  # fmt: skip


@pytest.fixture(scope="module")
def rgw(keys: dict[str, Any], fake: Fake, fake_llamacpp: Fake) -> Iterator[GW]:
    routing = {
        "rules": [
            {"name": "hdr", "when": {"header": {"x-tokenomy-route": "cheap"}}, "to": "gpt-4o-mini"},
            {"name": "vip", "when": {"key": keys["vip_id"]}, "to": "o3"},
            {"name": "ads", "when": {"team": "ads", "model": "gpt-4o"}, "to": "gpt-4o-mini"},
            {"name": "bulk", "when": {"tag": "tier=bulk"}, "to": "gpt-4o-mini"},
            {"name": "tools", "when": {"tools": True, "model": "gpt-4o-mini"}, "to": "gpt-4o"},
            {"name": "images", "when": {"images": True}, "to": "claude-sonnet-4-6"},
            {"name": "long", "when": {"min_tokens": 60, "model": "gpt-4o-mini"}, "to": "gpt-4o"},
            {"name": "nick", "when": {"model": "fast"}, "to": "gpt-4o-mini"},
            {"name": "smart-short", "when": {"model": "smart", "max_tokens": 8}, "to": "gpt-4o-mini"},
        ],
        "aliases": {"smart": ["gpt-4o", "claude-sonnet-4-6"],
                    "sturdy": ["gpt-4o", "claude-sonnet-4-6", "o3"]},
    }  # fmt: skip
    yield from routed_gateway(keys["path"], fake, fake_llamacpp, routing)


def test_no_rule_serves_the_requested_model(rgw: GW) -> None:
    a = chat(rgw, "gpt-4o")
    assert a.status == 200 and a.record is not None
    assert a.record.served_model == "gpt-4o"
    assert "route" not in a.record.decisions  # nothing was routed


def test_header_rule(rgw: GW) -> None:
    a = chat(rgw, "gpt-4o", headers={"x-tokenomy-route": "cheap"})
    assert a.status == 200 and a.record is not None
    assert a.record.requested_model == "gpt-4o"
    assert a.record.served_model == "gpt-4o-mini"
    route = route_of(a.record)
    assert route["reason"] == "rule:hdr"
    assert (route["requested"], route["served"]) == ("gpt-4o", "gpt-4o-mini")
    # The saving is against the requested model's price.
    assert Decimal(route["saved_usd"]) > 0
    assert a.body["model"] == "gpt-4o-mini"


def test_key_rule(rgw: GW, keys: dict[str, Any]) -> None:
    a = chat(rgw, "gpt-4o", key=keys["vip"])
    assert a.record is not None and a.record.served_model == "o3"
    assert route_of(a.record)["reason"] == "rule:vip"


def test_team_rule_with_model_condition(rgw: GW, keys: dict[str, Any]) -> None:
    assert chat(rgw, "gpt-4o", key=keys["ads"]).record.served_model == "gpt-4o-mini"  # type: ignore[union-attr]
    # the same team asking for another model matches no rule
    assert chat(rgw, "o3", key=keys["ads"]).record.served_model == "o3"  # type: ignore[union-attr]


def test_tag_rule(rgw: GW) -> None:
    a = chat(rgw, "gpt-4o", headers={"x-tokenomy-tags": "tier=bulk"})
    assert a.record is not None and route_of(a.record)["reason"] == "rule:bulk"
    b = chat(rgw, "gpt-4o", headers={"x-tokenomy-tags": "tier=gold"})
    assert b.record is not None and b.record.served_model == "gpt-4o"


def test_tools_rule(rgw: GW) -> None:
    a = chat(rgw, "gpt-4o-mini", tools=[TOOL])
    assert a.record is not None and route_of(a.record)["reason"] == "rule:tools"
    assert a.record.served_model == "gpt-4o"
    # Upgrading costs money: the saving is negative, and says so.
    assert Decimal(route_of(a.record)["saved_usd"]) < 0


def test_images_rule_crosses_providers(rgw: GW) -> None:
    content = [{"type": "text", "text": "what is this"}, IMAGE]
    payload_model = "gpt-4o-mini"
    a = chat(rgw, payload_model, text="x")  # text only: no image rule
    assert a.record is not None and a.record.served_model == "gpt-4o-mini"
    with rgw.http() as client:
        r = client.post(
            "/v1/chat/completions",
            json={"model": payload_model, "messages": [{"role": "user", "content": content}]},
            headers={"authorization": f"Bearer {rgw.key}"},
        )
    assert r.status_code == 200, r.text
    rec = rgw.record(r.headers["x-tokenomy-request-id"])
    assert rec.served_model == "claude-sonnet-4-6" and rec.provider == "anthropic"
    assert r.json()["object"] == "chat.completion"  # translated back to the client's format


def test_prompt_length_rule(rgw: GW) -> None:
    short = chat(rgw, "gpt-4o-mini", text="short question")
    assert short.record is not None and short.record.served_model == "gpt-4o-mini"
    long = chat(rgw, "gpt-4o-mini", text="word " * 100)
    assert long.record is not None and route_of(long.record)["reason"] == "rule:long"
    assert long.record.served_model == "gpt-4o"


def test_model_nickname_rule(rgw: GW) -> None:
    a = chat(rgw, "fast")
    assert a.status == 200 and a.record is not None
    assert (a.record.requested_model, a.record.served_model) == ("fast", "gpt-4o-mini")
    assert "saved_usd" not in route_of(a.record)  # "fast" has no price of its own


def test_operator_alias_and_rule_on_alias(rgw: GW) -> None:
    a = chat(rgw, "smart", text="a question that is long enough to pass the rule")
    assert a.record is not None and a.record.served_model == "gpt-4o"
    assert route_of(a.record)["reason"] == "alias:smart"
    b = chat(rgw, "smart", text="hi")  # a short prompt: the rule sends it to the cheap model
    assert b.record is not None and b.record.served_model == "gpt-4o-mini"
    route = route_of(b.record)
    assert route["reason"] == "rule:smart-short"
    assert Decimal(route["saved_usd"]) > 0  # against the alias's first model, gpt-4o


def test_unknown_model_is_404(rgw: GW) -> None:
    a = chat(rgw, "no-such-model-anywhere")
    assert a.status == 404
    assert a.body["error"]["code"] == "model_not_found"


def test_key_restriction_applies_to_the_served_model(rgw: GW, keys: dict[str, Any]) -> None:
    # the short prompt is routed to gpt-4o-mini, which this key may not use
    refused = chat(rgw, "smart", key=keys["limited"], text="hi")
    assert refused.status == 403
    assert refused.body["error"]["code"] == "model_not_allowed"
    assert chat(rgw, "o3", key=keys["limited"]).status == 403


def test_a_key_limited_to_some_models_lists_only_those(rgw: GW, keys: dict[str, Any]) -> None:
    every = {m.id for m in rgw.openai().models.list()}
    assert {"gpt-4o", "o3", "smart", "sturdy", "gpt-4o-mini"} <= every
    assert {m.id for m in rgw.openai(keys["limited"]).models.list()} == {"smart", "gpt-4o"}


def test_a_fallback_the_key_may_not_use_is_skipped(rgw: GW, keys: dict[str, Any]) -> None:
    # "sturdy" tries gpt-4o, claude-sonnet-4-6, then o3; the picky key may not use Claude
    failing_4o = "hi [[fake:status=500]] [[fake:only=gpt-4o]]"
    anyone = chat(rgw, "sturdy", text=failing_4o)
    assert anyone.status == 200 and anyone.record is not None
    assert anyone.record.served_model == "claude-sonnet-4-6"  # the first fallback, for most
    before = rgw.fake.app.mark()
    picky = chat(rgw, "sturdy", key=keys["picky"], text=failing_4o)
    assert picky.status == 200 and picky.record is not None
    assert picky.record.served_model == "o3"
    assert [x["model"] for x in route_of(picky.record)["attempts"]] == ["gpt-4o"]
    assert {r.body["model"] for r in rgw.fake.app.requests_since(before)} == {"gpt-4o", "o3"}
