"""The OpenAI-compatible surface, driven by the official `openai` SDK."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx2 as httpx
import openai
import pytest

from gateway_fixtures import GW, MASTER_KEY, Fake, gateway_settings, start_gateway
from tokenomy.insights.simulate import Reroute, Selector, simulate
from tokenomy.insights.traffic import from_ledger
from tokenomy.keys import mint_key

M = Decimal(1_000_000)
MSG = [{"role": "user", "content": "hello there"}]


def gpt4o_cost(prompt: int, cached: int, completion: int) -> Decimal:
    """gpt-4o: $2.50 input, $1.25 cached input, $10 output per million tokens."""
    return ((prompt - cached) * Decimal("2.5") + cached * Decimal("1.25") + completion * 10) / M


def test_json_response_is_metered_exactly(gw: GW) -> None:
    raw = gw.openai().chat.completions.with_raw_response.create(
        model="gpt-4o", messages=MSG, user="bob"
    )
    resp = raw.parse()
    rid = raw.headers["x-tokenomy-request-id"]
    assert resp.usage is not None
    cost = gpt4o_cost(resp.usage.prompt_tokens, 0, resp.usage.completion_tokens)
    assert Decimal(raw.headers["x-tokenomy-cost-usd"]) == cost
    rec = gw.record(rid)
    assert rec.cost_usd == cost and isinstance(rec.cost_usd, Decimal)
    assert (rec.usage.input_tokens, rec.usage.output_tokens) == (
        resp.usage.prompt_tokens,
        resp.usage.completion_tokens,
    )
    assert not rec.usage.estimated and not rec.price_unknown
    assert (rec.key_id, rec.org, rec.team, rec.user) == (
        gw.key_id,
        "acme",
        "search",
        "alice",
    )  # the key fixes its user
    assert rec.tags == {"env": "test"}
    assert (rec.provider, rec.served_model, rec.status, rec.stream) == (
        "openai",
        "gpt-4o",
        200,
        False,
    )
    assert rec.latency_ms is not None and rec.latency_ms > 0


def test_upstream_gets_its_own_key_and_model(gw: GW) -> None:
    gw.openai().chat.completions.create(model="house-model", messages=MSG)
    seen = gw.fake.app.requests[-1]
    assert seen.body["model"] == "llama-3-8b-house"
    assert seen.headers["authorization"] == "Bearer sk-upstream-secret-abcdef"


def test_cached_tokens_are_priced_at_the_cache_rate(gw: GW) -> None:
    raw = gw.openai().chat.completions.with_raw_response.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "a long shared prefix of words [[fake:cached=4]]"}],
    )
    resp = raw.parse()
    assert resp.usage is not None and resp.usage.prompt_tokens_details is not None
    assert resp.usage.prompt_tokens_details.cached_tokens == 4
    rec = gw.record(raw.headers["x-tokenomy-request-id"])
    assert rec.usage.cache_read_tokens == 4
    assert rec.usage.input_tokens == resp.usage.prompt_tokens  # cached tokens are included
    assert rec.cost_usd == gpt4o_cost(resp.usage.prompt_tokens, 4, resp.usage.completion_tokens)


def test_reasoning_tokens_are_output(gw: GW) -> None:
    raw = gw.openai().chat.completions.with_raw_response.create(
        model="o3", messages=[{"role": "user", "content": "think [[fake:reasoning=40]]"}]
    )
    resp = raw.parse()
    assert resp.usage is not None
    rec = gw.record(raw.headers["x-tokenomy-request-id"])
    assert rec.usage.reasoning_tokens == 40
    assert rec.usage.output_tokens == resp.usage.completion_tokens >= 40
    # o3 since 2025-06-10: $2 input, $8 output per million tokens
    assert rec.cost_usd == (resp.usage.prompt_tokens * 2 + resp.usage.completion_tokens * 8) / M


# o3 per million tokens, by the tier that served the request (genai-prices' tier
# rates, verified from 2026-10-12): (input, output).
O3_TIER_RATES = {"default": (2, 8), "flex": (1, 4), "priority": (Decimal("3.5"), 14)}


@pytest.mark.parametrize("tier", ["flex", "priority"])
@pytest.mark.parametrize("stream", [False, True])
def test_the_service_tier_that_served_a_request_sets_its_price(
    gw: GW, tier: str, stream: bool
) -> None:
    """Flex is half the standard price and priority 1.75x: the tier the response
    reports (not the one asked for, which may be downgraded) is the one billed."""
    with gw.openai().chat.completions.with_streaming_response.create(
        model="o3",
        messages=MSG,
        service_tier=tier,
        stream=stream,  # type: ignore[arg-type]
    ) as resp:
        rid = resp.headers["x-tokenomy-request-id"]
        resp.read()
    assert gw.fake.app.requests[-1].body["service_tier"] == tier
    rec = gw.record(rid)
    assert not rec.usage.estimated and rec.usage.output_tokens > 0
    rate_in, rate_out = O3_TIER_RATES[tier]
    assert (
        rec.cost_usd == (rec.usage.input_tokens * rate_in + rec.usage.output_tokens * rate_out) / M
    )
    assert rec.usage.price_context == (("service_tier", tier),)  # the ledger keeps the tier


def test_a_priority_request_replayed_from_the_ledger_is_priced_at_priority(
    fresh_gw: GW,
) -> None:
    """`tokenomy simulate` on the ledger prices a priority request at the priority
    rate it was billed at (not the standard one), and a reroute keeps the tier."""
    raw = fresh_gw.openai().chat.completions.with_raw_response.create(
        model="o3", messages=MSG, service_tier="priority"
    )
    rec = fresh_gw.record(raw.headers["x-tokenomy-request-id"])
    rate_in, rate_out = O3_TIER_RATES["priority"]
    priority = (rec.usage.input_tokens * rate_in + rec.usage.output_tokens * rate_out) / M
    assert rec.cost_usd == priority
    move = Reroute(Selector.parse("model=o3"), "gpt-5", "openai")
    sim = simulate(from_ledger(fresh_gw.store), [move])
    assert sim.baseline_total == sim.logged_total == priority
    # gpt-5 at priority: $2.50 in, $20 out per million tokens (standard $1.25, $10).
    [moved] = sim.results
    assert (
        moved.after == (rec.usage.input_tokens * Decimal("2.5") + rec.usage.output_tokens * 20) / M
    )


def test_price_override_from_config(gw: GW) -> None:
    raw = gw.openai().chat.completions.with_raw_response.create(
        model="house-model", messages=[{"role": "user", "content": "x y [[fake:cached=2]]"}]
    )
    u = raw.parse().usage
    assert u is not None
    want = (
        (u.prompt_tokens - 2) * Decimal("0.5")
        + 2 * Decimal("0.05")
        + u.completion_tokens * Decimal("1.5")
    ) / M
    assert Decimal(raw.headers["x-tokenomy-cost-usd"]) == want


def test_unknown_price_is_flagged_never_zero(gw: GW) -> None:
    raw = gw.openai().chat.completions.with_raw_response.create(
        model="mystery-model-x", messages=MSG
    )
    assert raw.headers["x-tokenomy-cost-usd"] == "unknown"
    rec = gw.record(raw.headers["x-tokenomy-request-id"])
    assert rec.price_unknown and rec.cost_usd is None
    assert rec.usage.output_tokens > 0
    metrics = httpx.get(gw.url + "/metrics").text
    assert 'tokenomy_unpriced_requests_total{model="mystery-model-x"}' in metrics


def test_stream_without_usage_request_hides_usage_but_meters_it(gw: GW) -> None:
    with gw.openai().chat.completions.with_streaming_response.create(
        model="gpt-4o", messages=MSG, stream=True
    ) as resp:
        rid = resp.headers["x-tokenomy-request-id"]
        chunks = list(resp.parse())
    assert chunks and all(c.choices for c in chunks)  # no usage-only chunk reached the client
    assert all(c.usage is None for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text.startswith("Echo: hello")
    upstream = gw.fake.app.requests[-1].body
    assert upstream["stream_options"] == {"include_usage": True}
    rec = gw.record(rid)
    assert rec.stream and rec.status == 200 and not rec.usage.estimated
    assert rec.usage.output_tokens == len([c for c in chunks if c.choices[0].delta.content])
    assert rec.cost_usd == gpt4o_cost(rec.usage.input_tokens, 0, rec.usage.output_tokens)
    assert rec.ttft_ms is not None and rec.ttft_ms <= rec.latency_ms  # type: ignore[operator]


def test_stream_with_usage_request_passes_usage_through(gw: GW) -> None:
    stream = gw.openai().chat.completions.create(
        model="gpt-4o", messages=MSG, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert last.usage.completion_tokens == 8


async def test_async_client_json_and_stream(gw: GW) -> None:
    client = gw.async_openai()
    resp = await client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
    assert resp.choices[0].message.content
    stream = await client.chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True)
    pieces = [c.choices[0].delta.content async for c in stream if c.choices]
    assert "".join(p or "" for p in pieces).startswith("Echo:")
    await client.close()


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {
                "type": "object",
                "properties": {"location": {"type": "string"}},
                "required": ["location"],
            },
        },
    }
]


def test_tool_calls_json_and_stream(gw: GW) -> None:
    client = gw.openai()
    msgs = [{"role": "user", "content": "weather in Paris? [[fake:tool=get_weather]]"}]
    resp = client.chat.completions.create(model="gpt-4o", messages=msgs, tools=TOOLS)  # type: ignore[arg-type]
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]  # type: ignore[index]
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments)  # type: ignore[union-attr]
    stream = client.chat.completions.create(model="gpt-4o", messages=msgs, tools=TOOLS, stream=True)  # type: ignore[arg-type]
    args, finish = "", None
    for chunk in stream:
        for c in chunk.choices:
            for tc in c.delta.tool_calls or []:
                args += (tc.function.arguments or "") if tc.function else ""
            finish = c.finish_reason or finish
    assert finish == "tool_calls" and json.loads(args) == json.loads(call.function.arguments)  # type: ignore[union-attr]


def test_n_json_mode_and_structured_outputs(gw: GW) -> None:
    client = gw.openai()
    resp = client.chat.completions.create(model="gpt-4o", messages=MSG, n=2)
    assert [c.index for c in resp.choices] == [0, 1]
    resp = client.chat.completions.create(
        model="gpt-4o", messages=MSG, response_format={"type": "json_object"}
    )
    assert isinstance(json.loads(resp.choices[0].message.content or ""), dict)
    schema = {
        "name": "answer",
        "schema": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    }
    resp = client.chat.completions.create(
        model="gpt-4o",
        messages=MSG,
        response_format={"type": "json_schema", "json_schema": schema},  # type: ignore[typeddict-item]
    )
    assert "city" in json.loads(resp.choices[0].message.content or "")


def test_attribution_from_metadata_user_and_tags_header(gw: GW) -> None:
    """A request fills in what its key leaves open; what the key names (the default
    key: user alice, tag env=test) it cannot change."""
    client = gw.openai(default_headers={"x-tokenomy-tags": "feature=search, env=prod"})
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=MSG, user="customer-42", metadata={"route": "/ask"}
    )
    rec = gw.record(raw.headers["x-tokenomy-request-id"])
    assert rec.user == "alice"
    assert rec.tags == {"env": "test", "route": "/ask", "feature": "search"}
    secret, app_key = mint_key(team="search", org="acme")  # an application's key: no user
    gw.store.create_key(app_key)
    raw = gw.openai(
        secret, default_headers={"x-tokenomy-tags": "env=prod"}
    ).chat.completions.with_raw_response.create(
        model="gpt-4o", messages=MSG, user="customer-42", metadata={"route": "/ask"}
    )
    rec = gw.record(raw.headers["x-tokenomy-request-id"])
    assert rec.user == "customer-42" and rec.key_id == app_key.key_id
    assert rec.tags == {"env": "prod", "route": "/ask"}


def test_embeddings_are_metered(gw: GW) -> None:
    raw = gw.openai().embeddings.with_raw_response.create(
        model="text-embedding-3-small", input=["one two three", "four five"]
    )
    resp = raw.parse()
    assert len(resp.data) == 2 and len(resp.data[0].embedding) == 8
    rec = gw.record(raw.headers["x-tokenomy-request-id"])
    assert rec.usage.input_tokens == resp.usage.prompt_tokens == 5
    # text-embedding-3-small: $0.02 per million tokens
    assert rec.cost_usd == 5 * Decimal("0.02") / M


def test_embeddings_with_a_stray_stream_flag_are_one_json_answer_recorded_so(gw: GW) -> None:
    raw = gw.openai().embeddings.with_raw_response.create(
        model="text-embedding-3-small", input="one two", extra_body={"stream": True}
    )
    assert raw.parse().usage.prompt_tokens == 2
    rec = gw.record(raw.headers["x-tokenomy-request-id"])
    assert rec.stream is False and rec.status == 200
    assert Decimal(raw.headers["x-tokenomy-cost-usd"]) == rec.cost_usd == 2 * Decimal("0.02") / M


@pytest.mark.parametrize("given", ["", [], ["one", ""], [[1, 2], []]])
def test_an_empty_embeddings_input_is_a_400_before_the_upstream(gw: GW, given: object) -> None:
    seen = gw.fake.app.state.recorded
    with pytest.raises(openai.BadRequestError) as err:
        gw.openai().embeddings.create(model="text-embedding-3-small", input=given)  # type: ignore[arg-type]
    body = err.value.body
    assert isinstance(body, dict) and body["type"] == "invalid_request_error"
    assert body["param"] == "input"
    assert gw.fake.app.state.recorded == seen  # the upstream was never asked


def test_models_list(gw: GW) -> None:
    ids = {m.id for m in gw.openai().models.list()}
    assert {"gpt-4o", "o3", "house-model"} <= ids
    assert not any("*" in i for i in ids)


def test_upstream_without_stream_usage_is_counted_and_marked_estimated(gw: GW) -> None:
    with gw.openai().chat.completions.with_streaming_response.create(
        model="llama-local", messages=MSG, stream=True
    ) as resp:
        rid = resp.headers["x-tokenomy-request-id"]
        text = "".join(c.choices[0].delta.content or "" for c in resp.parse() if c.choices)
    rec = gw.record(rid)
    assert rec.usage.estimated and rec.status == 200
    from tokenomy.tokens import count_chat_messages, count_text

    assert rec.usage.output_tokens == count_text(text, "llama-local").tokens
    assert rec.usage.input_tokens == count_chat_messages(MSG, "llama-local").tokens
    want = (rec.usage.input_tokens * Decimal("0.1") + rec.usage.output_tokens * Decimal("0.2")) / M
    assert rec.cost_usd == want


def test_llamacpp_provider_is_not_asked_for_stream_usage(gw: GW, fake_llamacpp: object) -> None:
    list(gw.openai().chat.completions.create(model="llama-local", messages=MSG, stream=True))
    body = fake_llamacpp.app.requests[-1].body  # type: ignore[attr-defined]
    assert "stream_options" not in body


@pytest.mark.parametrize("path", ["/healthz", "/metrics"])
def test_health_and_metrics(gw: GW, path: str) -> None:
    r = httpx.get(gw.url + path)
    assert r.status_code == 200
    if path == "/metrics":
        assert "tokenomy_spend_usd_total" in r.text


def test_metrics_can_require_the_master_key(
    fake: Fake, fake_llamacpp: Fake, tmp_path: Path
) -> None:
    """/metrics shows spend by team and model: with metrics_auth, only to the master key."""
    settings = gateway_settings(str(tmp_path / "ledger.db"), fake, fake_llamacpp,
                                metrics_auth=True)  # fmt: skip
    for g in start_gateway(settings, fake):
        assert httpx.get(g.url + "/metrics").status_code == 401
        other = httpx.get(g.url + "/metrics", headers={"authorization": f"Bearer {g.key}"})
        assert other.status_code == 401 and other.json()["error"]["code"] == "invalid_api_key"
        ok = httpx.get(g.url + "/metrics", headers={"authorization": f"Bearer {MASTER_KEY}"})
        assert ok.status_code == 200 and "tokenomy_spend_usd_total" in ok.text
        assert httpx.get(g.url + "/healthz").status_code == 200  # probes need no key


def test_an_answer_whose_record_waits_in_the_fallback_file_is_served(
    fresh_gw: GW, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ledger refuses the insert (a database outage): the record is kept in the
    fallback file, to be replayed, and the answer the provider already billed is
    served; only when the fallback file cannot be written either is it a 500."""
    from tokenomy.ledger import load_fallback

    g = fresh_gw.app.gateway
    assert g is not None

    def down(records: object) -> int:
        raise OSError("database is down")

    monkeypatch.setattr(g.store, "insert_records", down)
    g.writer.fallback_path = str(tmp_path / "kept.jsonl")
    raw = fresh_gw.openai().chat.completions.with_raw_response.create(model="gpt-4o", messages=MSG)
    assert raw.http_response.status_code == 200 and raw.parse().choices[0].message.content
    [kept] = load_fallback(str(tmp_path / "kept.jsonl"))
    assert kept.request_id == raw.headers["x-tokenomy-request-id"] and kept.cost_usd
    g.writer.fallback_path = str(tmp_path / "missing" / "kept.jsonl")  # cannot be written
    with pytest.raises(openai.InternalServerError):
        fresh_gw.openai().chat.completions.create(model="gpt-4o", messages=MSG)


def test_an_image_counts_in_the_estimate_when_the_upstream_reports_no_usage(gw: GW) -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    messages: list[Any] = [{"role": "user", "content": [{"type": "text", "text": "hi"}, image]}]
    with gw.openai().chat.completions.with_streaming_response.create(
        model="llama-local", messages=messages, stream=True
    ) as resp:
        rid = resp.headers["x-tokenomy-request-id"]
        assert "".join(c.choices[0].delta.content or "" for c in resp.parse() if c.choices)
    rec = gw.record(rid)
    from tokenomy.images import image_tokens_estimate
    from tokenomy.tokens import count_chat_messages

    assert rec.usage.estimated and rec.status == 200
    assert image_tokens_estimate({"messages": messages}, "llama-local") == 1398
    assert rec.usage.input_tokens == count_chat_messages(messages, "llama-local").tokens + 1398
