"""The Responses API through routing (fallbacks, aliases, tokenomy/auto, a cascade)
and caps (its worst case, a budget's refusal, clamp), with the official `openai` SDK."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2 as httpx
import openai
import pytest

from gateway_fixtures import GW, MASTER_KEY, Fake, gateway_settings, start_gateway
from routing_helpers import route_of, routed_gateway
from tokenomy.caps.estimate import Estimator, set_max_output
from tokenomy.images import image_tokens_max
from tokenomy.pipeline.context import OPENAI, Call
from tokenomy.pricing import PriceBook
from tokenomy.records import UsageRecord
from tokenomy.responses_api import as_messages, as_tools
from tokenomy.tokens import count_chat_messages

ROUTING = {
    "tiers": ["gpt-4o-mini", "gpt-4o"],
    "fallbacks": {"gpt-4o": ["claude-haiku-4-5", "gpt-4o-mini"]},
    "aliases": {
        "mixed": ["claude-haiku-4-5", "gpt-4o"],
        "openai-pair": ["gpt-4o", "gpt-4o-mini"],
        "claude-first": {"strategy": "cascade", "tiers": ["claude-haiku-4-5", "claude-sonnet-4-6"]},
    },
}
FAIL_4O = "[[fake:status=500]] [[fake:only=gpt-4o]]"


@dataclass
class Decision:
    model: str
    predicted_quality: float


class StubRouter:
    """The cheap tier for prompts whose user turns say "simple"."""

    def __init__(self) -> None:
        self.prompts: list[Any] = []

    def decide(self, prompt: Any, tiers: Sequence[str], *, quality_target: float) -> Decision:
        self.prompts.append(prompt)
        text = " ".join(str(m.get("content")) for m in prompt if m.get("role") == "user")
        return Decision(tiers[0] if "simple" in text else tiers[-1], 0.97)


@pytest.fixture(scope="module")
def rgw(fake: Fake, fake_llamacpp: Fake, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GW]:
    path = tmp_path_factory.mktemp("responses-routing")
    for gw in routed_gateway(path, fake, fake_llamacpp, ROUTING):
        gw.app.gateway.resolve.routing.router = StubRouter()  # type: ignore[union-attr]
        yield gw


def create(gw: GW, model: str, text: str, **body: Any) -> UsageRecord:
    """A Responses request (streamed when asked), read to its end; its ledger row."""
    with gw.openai().responses.with_streaming_response.create(
        model=model, input=text, **body
    ) as resp:
        resp.read()
        return gw.record(resp.headers["x-tokenomy-request-id"])


@pytest.mark.parametrize("stream", [False, True])
def test_a_500_falls_back_past_a_fallback_that_cannot_serve_it(rgw: GW, stream: bool) -> None:
    """gpt-4o falls back to claude-haiku-4-5, then gpt-4o-mini: a Responses request
    skips Claude (its upstream does not speak the API) and is served by gpt-4o-mini."""
    rec = create(rgw, "gpt-4o", f"hello {FAIL_4O}", stream=stream)
    assert (rec.status, rec.served_model, rec.endpoint) == (200, "gpt-4o-mini", "/v1/responses")
    route = route_of(rec)
    assert route["reason"] == "fallback"
    assert [(a["model"], a["error"]) for a in route["attempts"]] == [("gpt-4o", "5xx")]
    assert rec.cost_usd is not None and not rec.usage.estimated


def test_an_alias_with_a_target_that_cannot_serve_it_is_a_400(rgw: GW) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        rgw.openai().responses.create(model="mixed", input="hi")
    assert "'claude-haiku-4-5'" in info.value.message and info.value.param == "model"


def test_an_alias_of_openai_models_is_served_and_falls_back(rgw: GW) -> None:
    rec = create(rgw, "openai-pair", f"hello {FAIL_4O}")
    assert (rec.requested_model, rec.served_model) == ("openai-pair", "gpt-4o-mini")
    assert route_of(rec)["alias"] == "openai-pair"


def test_the_learned_router_reads_the_input(rgw: GW) -> None:
    router = rgw.app.gateway.resolve.routing.router  # type: ignore[union-attr]
    assert isinstance(router, StubRouter)
    rec = create(rgw, "tokenomy/auto", "a simple question", instructions="Be brief.")
    assert (rec.served_model, route_of(rec)["reason"]) == ("gpt-4o-mini", "router")
    assert router.prompts[-1] == [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": "a simple question"},
    ]
    rec = create(rgw, "tokenomy/auto", "prove the Riemann hypothesis")
    assert rec.served_model == "gpt-4o"


def test_a_cascade_serves_its_strongest_tier(rgw: GW) -> None:
    """The cascade's judge reads chat answers: a Responses request goes to the
    strongest tier, as a streamed one does."""
    rec = create(rgw, "cheap-first", "hello")
    assert rec.served_model == "gpt-4o"
    assert route_of(rec)["cascade"] == "responses: strongest tier"
    with pytest.raises(openai.BadRequestError):
        rgw.openai().responses.create(model="claude-first", input="hi")


# -- caps ------------------------------------------------------------------------------------


@pytest.fixture
def cgw(fake: Fake, fake_llamacpp: Fake, tmp_path: Path) -> Iterator[GW]:
    caps = {"reload_interval": 0.05, "sweep_interval": 0.05}
    settings = gateway_settings(str(tmp_path / "ledger.db"), fake, fake_llamacpp, caps=caps)
    yield from start_gateway(settings, fake)


def add_budget(gw: GW, **budget: Any) -> None:
    with httpx.Client(
        base_url=gw.url, headers={"authorization": f"Bearer {MASTER_KEY}"}, timeout=10
    ) as admin:
        r = admin.post("/admin/budgets", json=budget)
        assert r.status_code == 201, r.text


def test_a_budget_refuses_in_openais_format(cgw: GW) -> None:
    add_budget(cgw, name="tiny", scope={"team": "search"}, period="daily", limit_tokens=50)
    client = cgw.openai()
    with pytest.raises(openai.RateLimitError) as info:
        client.responses.create(model="gpt-4o", input="hello world", max_output_tokens=100)
    err = info.value
    assert err.body["type"] == "rate_limit_error"  # type: ignore[index]
    assert "Budget 'tiny'" in err.message and err.code == "budget_exceeded"
    assert err.response.headers["x-should-retry"] == "false"
    rec = cgw.record(err.response.headers["x-tokenomy-request-id"])
    assert (rec.status, rec.endpoint) == (429, "/v1/responses")
    # without max_output_tokens, the worst case is the model's whole output limit
    with pytest.raises(openai.RateLimitError):
        client.responses.create(model="gpt-4o", input="hello world")
    client.responses.create(model="gpt-4o", input="hello world", max_output_tokens=10)


def test_clamp_lowers_max_output_tokens(cgw: GW) -> None:
    add_budget(cgw, name="clamped", scope={}, period="daily", limit_tokens=60, on_exceed="clamp")
    cgw.openai().responses.create(model="gpt-4o", input="hello world", max_output_tokens=4000)
    sent = cgw.fake.app.requests[-1].body
    assert 0 < sent["max_output_tokens"] < 60 and "max_tokens" not in sent


# -- the worst case --------------------------------------------------------------------------

TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"location": {"type": "string"}}},
}


def responses_call(**body: Any) -> Call:
    call = Call(OPENAI, "responses", "/v1/responses", {"model": "gpt-4o", **body}, {})
    call.record.requested_model = call.record.served_model = "gpt-4o"
    return call


def test_the_worst_case_counts_instructions_input_and_tools() -> None:
    est = Estimator(PriceBook())
    plain = est(responses_call(input="what is the weather in Paris"))
    items = [
        {"role": "user", "content": [{"type": "input_text", "text": "what is the weather"}]},
        {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "sunny, 21 degrees"},
    ]
    body = {"input": items, "instructions": "Answer in French.", "tools": [TOOL]}
    full = est(responses_call(**body))
    counted = count_chat_messages(as_messages(body), "gpt-4o", tools=as_tools(body)).tokens
    # a Responses prompt is an estimate (the API's framing is not documented): margin 1.2
    assert full.input_tokens == math.ceil(counted * 1.2) > plain.input_tokens
    assert full.output_tokens == plain.output_tokens == 16384  # gpt-4o's output limit
    assert full.usd is not None and plain.usd is not None and full.usd > plain.usd


def test_the_worst_case_output_is_max_output_tokens_and_clamp_sets_it() -> None:
    est = Estimator(PriceBook())
    call = responses_call(input="hi", max_output_tokens=123, max_tokens=9)
    assert est(call).output_tokens == 123  # a chat field means nothing here
    set_max_output(call, 50)
    assert call.body["max_output_tokens"] == 50 and call.body["max_tokens"] == 9


def test_the_worst_case_adds_each_image_at_its_ceiling() -> None:
    est = Estimator(PriceBook())
    image = {"type": "input_image", "image_url": "https://example.com/a.png", "detail": "high"}
    text = {"type": "input_text", "text": "what is this"}
    without = est(responses_call(input=[{"role": "user", "content": [text]}]))
    with_image = est(responses_call(input=[{"role": "user", "content": [text, image]}]))
    assert with_image.input_tokens == without.input_tokens + image_tokens_max("gpt-4o")
