"""The tier lever: a deployment that sends every request at OpenAI's flex tier
(half price), or never above the standard one, with its saving in the ledger."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest

from gateway_fixtures import GW, Fake, dep, gateway_settings, start_gateway
from routing_helpers import chat, route_of
from tokenomy.caps.estimate import Estimator
from tokenomy.config import ConfigError, Deployment, load_settings
from tokenomy.pipeline.context import Call
from tokenomy.pricing import PriceBook
from tokenomy.providers import create_provider
from tokenomy.records import UsageRecord

M = Decimal(1_000_000)
# o3's $/MTok (input, output) by tier, from genai-prices.
RATES = {"default": (2, 8), "flex": (1, 4), "priority": (Decimal("3.5"), 14)}
ROUTING = {
    "rules": [{"name": "low-priority", "when": {"header": {"x-priority": "low"}, "model": ["o3"]},
               "to": "o3-flex"}],
    "fallbacks": {"o3-flex": ["o3"]},
}  # fmt: skip


@pytest.fixture(scope="module")
def tgw(fake: Fake, fake_llamacpp: Fake, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GW]:
    db = str(tmp_path_factory.mktemp("tier") / "ledger.db")
    settings = gateway_settings(db, fake, fake_llamacpp, routing=ROUTING)
    v1 = fake.url + "/v1"
    tiered = (
        dep("o3-flex", "openai", v1, model="o3", service_tier="flex", max_retries=0),
        dep("o3-standard", "openai", v1, model="o3", service_tier="default"),
    )
    yield from start_gateway(replace(settings, deployments=settings.deployments + tiered), fake)


def cost(rec: UsageRecord, tier: str) -> Decimal:
    rate_in, rate_out = RATES[tier]
    return (rec.usage.input_tokens * rate_in + rec.usage.output_tokens * rate_out) / M


def sent(gw: GW) -> Any:
    return gw.fake.app.requests[-1].body.get("service_tier")


@pytest.mark.parametrize("stream", [False, True])
def test_a_flex_deployment_sends_flex_and_bills_half_the_standard_price(
    tgw: GW, stream: bool
) -> None:
    with tgw.openai().chat.completions.with_streaming_response.create(
        model="o3-flex", messages=[{"role": "user", "content": "hi"}], stream=stream
    ) as resp:
        rid = resp.headers["x-tokenomy-request-id"]
        resp.read()
    assert sent(tgw) == "flex"
    rec = tgw.record(rid)
    assert rec.usage.output_tokens > 0 and not rec.usage.estimated
    assert rec.cost_usd == cost(rec, "flex")
    tier = rec.decisions["tier"]
    assert tier == {"imposed": "flex", "served": "flex", "saved_usd": tier["saved_usd"]}
    assert Decimal(tier["saved_usd"]) == cost(rec, "default") - cost(rec, "flex")


def test_the_deployments_tier_replaces_the_one_the_client_asked_for(tgw: GW) -> None:
    """A client asking for priority on the flex deployment is served at flex; the
    saving is against the priority price it would otherwise have paid."""
    a = chat(tgw, "o3-flex", service_tier="priority")
    assert a.status == 200 and a.record is not None
    assert sent(tgw) == "flex"
    saved = cost(a.record, "priority") - cost(a.record, "flex")
    assert Decimal(a.record.decisions["tier"]["saved_usd"]) == saved


def test_a_default_tier_deployment_never_serves_priority(tgw: GW) -> None:
    a = chat(tgw, "o3-standard", service_tier="priority")
    assert a.status == 200 and a.record is not None
    assert sent(tgw) == "default"
    assert a.record.cost_usd == cost(a.record, "default")
    tier = a.record.decisions["tier"]
    assert (tier["imposed"], tier["served"]) == ("default", "default")
    assert Decimal(tier["saved_usd"]) == cost(a.record, "priority") - cost(a.record, "default")
    # Asked for nothing: the standard price either way, so no saving is claimed.
    b = chat(tgw, "o3-standard")
    assert b.record is not None
    assert b.record.decisions["tier"] == {"imposed": "default", "served": "default"}


def test_flex_without_capacity_falls_back_to_the_standard_deployment(tgw: GW) -> None:
    """OpenAI's 429 for flex without capacity (not charged) moves on to the fallback,
    which serves at the standard tier and price; no tier saving is claimed."""
    a = chat(tgw, "o3-flex", "hi [[fake:flex_busy]]")
    assert a.status == 200 and a.record is not None
    assert a.record.deployment == "o3" and sent(tgw) is None
    assert a.record.cost_usd == cost(a.record, "default")
    assert "tier" not in a.record.decisions
    route = route_of(a.record)
    assert route["reason"] == "fallback"
    assert [(x["deployment"], x["error"]) for x in route["attempts"]] == [("o3-flex", "429")]


def test_only_a_flex_request_is_refused_for_lack_of_flex_capacity(tgw: GW) -> None:
    b = chat(tgw, "o3-standard", "hi [[fake:flex_busy]]")
    assert b.status == 200 and sent(tgw) == "default"


def test_a_rule_sends_low_priority_traffic_to_the_flex_deployment(tgw: GW) -> None:
    a = chat(tgw, "o3", headers={"x-priority": "low"})
    assert a.status == 200 and a.record is not None
    assert a.record.deployment == "o3-flex" and sent(tgw) == "flex"
    assert route_of(a.record)["rule"] == "low-priority"
    assert a.record.cost_usd == cost(a.record, "flex")
    b = chat(tgw, "o3")  # without the header: the standard deployment, no tier lever
    assert b.record is not None and b.record.deployment == "o3"
    assert sent(tgw) is None and "tier" not in b.record.decisions


def test_an_anthropic_client_is_served_at_flex_through_the_translation(tgw: GW) -> None:
    raw = tgw.anthropic().messages.with_raw_response.create(
        model="o3-flex", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
    )
    assert raw.parse().usage.output_tokens > 0
    assert sent(tgw) == "flex"
    rec = tgw.record(raw.headers["x-tokenomy-request-id"])
    assert rec.cost_usd == cost(rec, "flex")
    assert rec.decisions["tier"]["served"] == "flex"


def test_a_responses_request_is_served_at_flex(tgw: GW) -> None:
    raw = tgw.openai().responses.with_raw_response.create(model="o3-flex", input="hi")
    assert raw.parse().service_tier == "flex"
    assert sent(tgw) == "flex"
    rec = tgw.record(raw.headers["x-tokenomy-request-id"])
    assert rec.cost_usd == cost(rec, "flex")
    assert Decimal(rec.decisions["tier"]["saved_usd"]) == cost(rec, "default") - rec.cost_usd


def test_a_deployment_takes_only_the_tiers_that_cost_no_more(tmp_path: Any) -> None:
    path = tmp_path / "tokenomy.yaml"
    for tier in ("flex", "default"):
        path.write_text(f"models:\n  - {{name: m, provider: openai, service_tier: {tier}}}\n")
        assert load_settings(path).deployments[0].service_tier == tier
    for bad in ("priority", "auto", "scale", "1"):
        path.write_text(f"models:\n  - {{name: m, provider: openai, service_tier: {bad}}}\n")
        with pytest.raises(ConfigError, match=r"models\[0\]\.service_tier"):
            load_settings(path)


def test_only_an_upstream_speaking_openais_api_takes_a_service_tier() -> None:
    anthropic = Deployment("claude", "anthropic", api_key="k", service_tier="flex")
    with pytest.raises(ConfigError, match="service_tier is OpenAI's"):
        create_provider(anthropic)
    for provider in ("openai", "azure", "vllm"):
        d = Deployment("m", provider, base_url="http://h/v1", api_key="k", service_tier="flex")
        assert create_provider(d).deployment.service_tier == "flex"


def test_the_tier_levers_savings_reach_the_metrics(tgw: GW) -> None:
    chat(tgw, "o3-flex")
    with tgw.http() as client:
        text = client.get("/metrics").text
    assert 'lever="tier"' in text


def test_the_worst_case_of_a_tiered_deployment_is_never_at_priority() -> None:
    """A client asking for priority is served at the deployment's tier: the caps'
    worst case is the standard price, not priority's."""
    est = Estimator(PriceBook())
    body = {"model": "o3", "max_completion_tokens": 100, "service_tier": "priority",
            "messages": [{"role": "user", "content": "word " * 100}]}  # fmt: skip
    call = Call("openai", "chat", "/v1/chat/completions", body, {})
    call.record.requested_model = call.record.served_model = "o3"
    call.record.deployment = "o3-flex"
    priority = est(call)
    est.tiered = frozenset({"o3-flex"})
    standard = est(call)
    assert priority.usd is not None and standard.usd is not None
    assert standard.usd * Decimal("1.75") == priority.usd  # o3: priority is 1.75x
