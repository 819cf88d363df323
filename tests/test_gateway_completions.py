"""OpenAI's legacy Completions API through the gateway, with the official SDK: JSON and
streamed, metered like chat (the usage chunk asked for and kept from a client that
did not ask), counted where the upstream sends no usage; served only by upstreams
speaking OpenAI's API, never through an alias, and fallbacks keep ``max_tokens``."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import openai
import pytest

from gateway_fixtures import GW, Fake
from routing_helpers import routed_gateway
from tokenomy.pricing import PriceBook
from tokenomy.tokens import count_text
from tokenomy.usage import Usage

ROUTING = {
    "rules": [
        {"name": "long", "when": {"min_tokens": 20, "model": "gpt-4o-mini"}, "to": "gpt-4o"},
        {"name": "aliased", "when": {"header": {"x-route": "alias"}}, "to": "cheap-first"},
    ],
    "fallbacks": {"gpt-4o": ["claude-sonnet-4-6", "gpt-4o-mini"]},
    "aliases": {"cheap-first": ["gpt-4o-mini", "gpt-4o"]},
}


@pytest.fixture(scope="module")
def rgw(fake: Fake, fake_llamacpp: Fake, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GW]:
    yield from routed_gateway(tmp_path_factory.mktemp("cmpl"), fake, fake_llamacpp, ROUTING)


def test_a_completion_is_served_metered_and_priced(gw: GW) -> None:
    raw = gw.openai().completions.with_raw_response.create(
        model="gpt-4o", prompt="Say this is a test", max_tokens=3
    )
    done = raw.parse()
    assert done.object == "text_completion"
    assert done.choices[0].text == "Echo: Say this is" and done.choices[0].finish_reason == "length"
    assert done.usage is not None
    rec = gw.record(raw.headers["x-tokenomy-request-id"])
    assert (rec.endpoint, rec.served_model, rec.status) == ("/v1/completions", "gpt-4o", 200)
    assert rec.usage.input_tokens == done.usage.prompt_tokens == 5  # the fake counts words
    assert rec.usage.output_tokens == done.usage.completion_tokens == 3
    assert not rec.usage.estimated
    priced = PriceBook().cost(Usage(input_tokens=5, output_tokens=3), model="gpt-4o").total
    assert rec.cost_usd == priced and Decimal(raw.headers["x-tokenomy-cost-usd"]) == priced


def test_a_streamed_completion_keeps_its_usage_from_a_client_that_did_not_ask(gw: GW) -> None:
    raw = gw.openai().completions.with_raw_response.create(
        model="gpt-4o", prompt=["one two", "three"], n=2, stream=True
    )
    chunks = list(raw.parse())
    assert all(c.usage is None for c in chunks) and all(c.choices for c in chunks)
    texts: dict[int, str] = {}
    for c in chunks:
        texts[c.choices[0].index] = texts.get(c.choices[0].index, "") + c.choices[0].text
    assert sorted(texts) == [0, 1, 2, 3]  # n answers to each of two prompts
    sent = gw.fake.app.requests[-1].body
    assert sent["stream_options"] == {"include_usage": True}  # asked for the ledger's sake
    rec = gw.record(raw.headers["x-tokenomy-request-id"])
    assert rec.stream and rec.usage.input_tokens == 3 and not rec.usage.estimated
    # the fake's tokens are its stream pieces: one chunk each
    assert rec.usage.output_tokens == sum(1 for c in chunks if c.choices[0].text)


def test_a_client_asking_for_the_usage_chunk_gets_the_ledgers_count(gw: GW) -> None:
    raw = gw.openai().completions.with_raw_response.create(
        model="gpt-4o", prompt="hi there", stream=True, stream_options={"include_usage": True}
    )
    last = list(raw.parse())[-1]
    assert last.choices == [] and last.usage is not None
    rec = gw.record(raw.headers["x-tokenomy-request-id"])
    assert (rec.usage.input_tokens, rec.usage.output_tokens) == (
        last.usage.prompt_tokens,
        last.usage.completion_tokens,
    )


@pytest.mark.parametrize("stream", [False, True])
def test_an_upstream_without_usage_is_counted(gw: GW, stream: bool) -> None:
    # llama-local's server (like llama.cpp's) streams no usage; [[fake:no_usage]] sends none
    prompt = "Tell me about tokens [[fake:no_usage]]"
    raw = gw.openai().completions.with_raw_response.create(
        model="llama-local", prompt=prompt, max_tokens=4, stream=stream
    )
    parsed = raw.parse()
    text = "".join(c.choices[0].text for c in parsed) if stream else parsed.choices[0].text
    rec = gw.record(raw.headers["x-tokenomy-request-id"])
    assert rec.usage.estimated
    assert rec.usage.input_tokens == count_text(prompt, "llama-3-8b").tokens
    assert rec.usage.output_tokens == count_text(text, "llama-3-8b").tokens > 0
    assert rec.cost_usd is not None and rec.cost_usd > 0


@pytest.mark.parametrize(
    ("prompt", "tokens"),
    [(["a b", "c d e"], 5), ([15339, 1917, 0], 3), ([[1, 2], [3, 4, 5, 6]], 6)],
    ids=["strings", "token-ids", "token-arrays"],
)
def test_every_prompt_form_is_served_and_counted(gw: GW, prompt: object, tokens: int) -> None:
    raw = gw.openai().completions.with_raw_response.create(model="gpt-4o", prompt=prompt)  # type: ignore[arg-type]
    rec = gw.record(raw.headers["x-tokenomy-request-id"])
    assert rec.usage.input_tokens == tokens  # as the fake counts: words, or ids


@pytest.mark.parametrize(
    ("prompt", "where"),
    [([], "prompt"), ([1, "a"], "prompt"), ([[]], "prompt"), ([True], "prompt"), (7, "prompt")],
)
def test_a_malformed_prompt_is_a_400(gw: GW, prompt: object, where: str) -> None:
    before = gw.fake.app.mark()
    with pytest.raises(openai.BadRequestError) as err:
        gw.openai().completions.create(model="gpt-4o", prompt=prompt)  # type: ignore[arg-type]
    assert isinstance(err.value.body, dict) and err.value.body["param"] == where
    assert gw.fake.app.requests_since(before) == []


def test_upstream_refusals_are_relayed(gw: GW) -> None:
    with pytest.raises(openai.RateLimitError) as err:
        gw.openai().completions.create(
            model="gpt-4o", prompt="hi [[fake:status=429]] [[fake:retry_after=0]]"
        )
    assert isinstance(err.value.body, dict) and err.value.body["code"] == "rate_limit_exceeded"


def test_an_anthropic_served_model_and_an_alias_are_refused(rgw: GW) -> None:
    for model, says in (("claude-haiku-4-5", "legacy Completions API"), ("cheap-first", "alias")):
        with pytest.raises(openai.BadRequestError, match=says) as err:
            rgw.openai().completions.create(model=model, prompt="hi")
        assert isinstance(err.value.body, dict) and err.value.body["param"] == "model"


def test_a_fallback_skips_anthropic_and_keeps_max_tokens(rgw: GW) -> None:
    before = rgw.fake.app.mark()
    raw = rgw.openai().completions.with_raw_response.create(
        model="gpt-4o", prompt="hi [[fake:status=500]] [[fake:only=gpt-4o]]", max_tokens=2
    )
    rec = rgw.record(raw.headers["x-tokenomy-request-id"])
    assert rec.served_model == "gpt-4o-mini"
    sent = [r for r in rgw.fake.app.requests_since(before) if r.path == "/v1/completions"]
    assert [r.body["model"] for r in sent][-1] == "gpt-4o-mini"
    assert sent[-1].body["max_tokens"] == 2 and "max_completion_tokens" not in sent[-1].body
    assert all(r.path != "/v1/messages" for r in rgw.fake.app.requests_since(before))


def test_rules_read_the_prompt_and_may_not_route_to_an_alias(rgw: GW) -> None:
    short = rgw.openai().completions.with_raw_response.create(model="gpt-4o-mini", prompt="hi")
    long = rgw.openai().completions.with_raw_response.create(
        model="gpt-4o-mini", prompt="word " * 40
    )
    served = [rgw.record(r.headers["x-tokenomy-request-id"]).served_model for r in (short, long)]
    assert served == ["gpt-4o-mini", "gpt-4o"]  # the length rule counted the prompt
    with pytest.raises(openai.BadRequestError, match="alias") as err:
        rgw.openai().completions.create(
            model="gpt-4o-mini", prompt="hi", extra_headers={"x-route": "alias"}
        )
    assert isinstance(err.value.body, dict) and err.value.body["param"] == "model"


def test_a_completion_stream_the_client_leaves_is_recorded_with_its_text(gw: GW) -> None:
    body = {"model": "gpt-4o", "stream": True,
            "prompt": "slow [[fake:chunks=40]] [[fake:chunk_delay_ms=20]]"}  # fmt: skip
    rec = gw.settled(gw.left_stream("/v1/completions", body))
    assert rec.status == 499 and rec.error_type == "client_disconnected"
    # billed for the text relayed, counted from the chunks' `text`
    assert rec.usage.output_tokens >= 5 and rec.usage.estimated
    assert rec.cost_usd is not None and rec.cost_usd > 0
