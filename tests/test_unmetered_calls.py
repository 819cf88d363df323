"""The calls the gateway relays unmetered, with both SDKs: ``GET /v1/models/{id}``;
token counting (Anthropic's ``count_tokens``, OpenAI's ``input_tokens``: by the
upstream where it can, else here); OpenAI's moderation. The key is checked, and
nothing reaches the ledger."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest

from gateway_fixtures import GW, MASTER_KEY, Fake, add_key, dep, deployments
from routing_helpers import routed_gateway
from tokenomy.tokens import count_chat_messages
from tokenomy.translate import anthropic_request_to_openai

MESSAGES: list[Any] = [{"role": "user", "content": "How many tokens is this question?"}]
ROUTING = {
    "aliases": {"cheap-first": ["gpt-4o-mini", "gpt-4o"]},
    "balance": {"weighted": {"strategy": "weight", "deployments": {"gpt-4o-a": 3, "gpt-4o-b": 1}}},
}


@pytest.fixture(scope="module")
def rgw(fake: Fake, fake_llamacpp: Fake, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GW]:
    moderation = dep("omni-moderation-latest", "openai", fake.url + "/v1")
    served = (*deployments(fake.url, fake_llamacpp.url), moderation)
    yield from routed_gateway(
        tmp_path_factory.mktemp("models"), fake, fake_llamacpp, ROUTING, deployments=served
    )


def rows(gw: GW) -> int:
    return gw.store.count_records()


# -- GET /v1/models/{id} ------------------------------------------------------------


def test_a_model_is_retrieved_in_each_apis_format(rgw: GW) -> None:
    model = rgw.openai().models.retrieve("gpt-4o")
    assert (model.id, model.object, model.owned_by) == ("gpt-4o", "model", "openai")
    info = rgw.anthropic().models.retrieve("gpt-4o")
    assert (info.id, info.type, info.display_name) == ("gpt-4o", "model", "gpt-4o")
    assert info.created_at.timestamp() == model.created


@pytest.mark.parametrize(
    ("name", "owner"),
    [("claude-haiku-4-5", "anthropic"), ("cheap-first", "tokenomy"), ("weighted", "openai")],
)
def test_wildcard_served_aliased_and_balanced_names_exist(rgw: GW, name: str, owner: str) -> None:
    assert rgw.openai().models.retrieve(name).owned_by == owner
    assert rgw.anthropic().models.retrieve(name).id == name
    if name != "claude-haiku-4-5":  # a wildcard deployment lists no names
        assert name in [m.id for m in rgw.openai().models.list()]


def test_an_unknown_model_is_each_apis_404(rgw: GW) -> None:
    with pytest.raises(openai.NotFoundError) as oai:
        rgw.openai().models.retrieve("gpt-9")
    assert oai.value.body == {
        "message": "The model 'gpt-9' does not exist",
        "type": "invalid_request_error",
        "param": "model",
        "code": "model_not_found",
    }
    with pytest.raises(anthropic.NotFoundError) as ant:
        rgw.anthropic().models.retrieve("gemini-9")
    assert ant.value.body == {
        "type": "error",
        "error": {"type": "not_found_error", "message": "model: gemini-9"},
    }


def test_a_model_the_key_may_not_use_does_not_exist_for_it(rgw: GW) -> None:
    limited, _ = add_key(rgw.db, team="search", models=["gpt-4o-mini"])
    assert rgw.openai(limited).models.retrieve("gpt-4o-mini").id == "gpt-4o-mini"
    with pytest.raises(openai.NotFoundError):
        rgw.openai(limited).models.retrieve("gpt-4o")
    with pytest.raises(openai.AuthenticationError):
        rgw.openai("tk-not-a-key").models.retrieve("gpt-4o")


# -- POST /v1/messages/count_tokens ---------------------------------------------------


def test_an_anthropic_upstream_counts(rgw: GW) -> None:
    before = rows(rgw)
    raw = rgw.anthropic().messages.with_raw_response.count_tokens(
        model="claude-haiku-4-5", messages=MESSAGES, system="Answer briefly."
    )
    assert raw.headers["x-tokenomy-token-count"] == "upstream"
    sent = rgw.fake.app.state.requests[-1]
    assert sent.path == "/v1/messages/count_tokens"
    assert sent.body == {
        "model": "claude-haiku-4-5",
        "messages": MESSAGES,
        "system": "Answer briefly.",
    }
    assert sent.headers["x-api-key"] != rgw.key  # the upstream's key, not the client's
    # the fake counts what it was sent, as Anthropic does: the system prompt too
    alone = rgw.anthropic().messages.count_tokens(model="claude-haiku-4-5", messages=MESSAGES)
    assert raw.parse().input_tokens > alone.input_tokens > 0
    assert rows(rgw) == before  # nothing metered


def test_a_model_served_by_openai_is_counted_here_as_its_translation(rgw: GW) -> None:
    body: dict[str, Any] = {"model": "gpt-4o", "messages": MESSAGES, "system": "Be brief."}
    raw = rgw.anthropic().messages.with_raw_response.count_tokens(**body)
    chat = anthropic_request_to_openai(body)
    assert raw.parse().input_tokens == count_chat_messages(chat["messages"], "gpt-4o").tokens
    assert raw.headers["x-tokenomy-token-count"] == "exact"
    tool = {"name": "lookup", "description": "Look up", "input_schema": {"type": "object"}}
    with_tool = rgw.anthropic().messages.with_raw_response.count_tokens(
        model="gpt-4o", messages=MESSAGES, tools=[tool]
    )
    assert with_tool.headers["x-tokenomy-token-count"] == "estimate"
    assert with_tool.parse().input_tokens > raw.parse().input_tokens - 5


def test_an_alias_is_estimated(rgw: GW) -> None:
    raw = rgw.anthropic().messages.with_raw_response.count_tokens(
        model="cheap-first", messages=MESSAGES
    )
    assert raw.headers["x-tokenomy-token-count"] == "estimate"
    assert raw.parse().input_tokens > 5


def test_count_tokens_refusals_are_anthropics(rgw: GW) -> None:
    client = rgw.anthropic()
    with pytest.raises(anthropic.NotFoundError, match="model: nowhere"):
        client.messages.count_tokens(model="nowhere", messages=MESSAGES)
    with pytest.raises(anthropic.BadRequestError, match="at least one message"):
        client.messages.count_tokens(model="gpt-4o", messages=[])
    with pytest.raises(anthropic.AuthenticationError):
        rgw.anthropic("tk-not-a-key").messages.count_tokens(model="gpt-4o", messages=MESSAGES)
    limited, _ = add_key(rgw.db, team="search", models=["gpt-4o-mini"])
    with pytest.raises(anthropic.PermissionDeniedError, match="may not use model"):
        rgw.anthropic(limited).messages.count_tokens(model="gpt-4o", messages=MESSAGES)
    # the upstream's own refusal is relayed: both temperature and top_p
    with pytest.raises(anthropic.BadRequestError, match="cannot both be specified"):
        client.messages.count_tokens(
            model="claude-haiku-4-5",
            messages=MESSAGES,
            extra_body={"temperature": 0.5, "top_p": 0.5},
        )
    # a request the other API cannot take is the client's 400
    with pytest.raises(anthropic.BadRequestError, match="role"):
        client.messages.count_tokens(model="gpt-4o", messages=[{"role": "system", "content": "x"}])


# -- POST /v1/responses/input_tokens --------------------------------------------------


def test_a_responses_upstream_counts_the_input(rgw: GW) -> None:
    before = rows(rgw)
    raw = rgw.openai().responses.input_tokens.with_raw_response.count(
        model="gpt-4o", input="one two three", instructions="be brief"
    )
    assert raw.headers["x-tokenomy-token-count"] == "upstream"
    counted = raw.parse()
    assert (counted.object, counted.input_tokens) == ("response.input_tokens", 3 + 3 + 2)
    sent = rgw.fake.app.requests[-1]
    assert (sent.path, sent.body["model"]) == ("/v1/responses/input_tokens", "gpt-4o")
    assert rows(rgw) == before  # nothing metered


def test_a_continued_response_is_counted_for_its_tenant_only(rgw: GW) -> None:
    made = rgw.openai().responses.create(model="gpt-4o", input="remember this")
    alone = rgw.openai().responses.input_tokens.count(model="gpt-4o", input="and now?")
    chained = rgw.openai().responses.input_tokens.count(
        model="gpt-4o", input="and now?", previous_response_id=made.id
    )
    assert chained.input_tokens > alone.input_tokens  # the stored response counts too
    stranger, _ = add_key(rgw.db, team="ads", org="acme")
    before = rgw.fake.app.mark()
    with pytest.raises(openai.BadRequestError) as err:
        rgw.openai(stranger).responses.input_tokens.count(
            model="gpt-4o", input="and now?", previous_response_id=made.id
        )
    assert isinstance(err.value.body, dict)
    assert err.value.body["code"] == "previous_response_not_found"
    assert rgw.fake.app.requests_since(before) == []


@pytest.mark.parametrize("model", ["claude-haiku-4-5", "cheap-first"])
def test_a_model_without_the_api_and_an_alias_are_estimated(rgw: GW, model: str) -> None:
    raw = rgw.openai().responses.input_tokens.with_raw_response.count(
        model=model, input="one two three"
    )
    assert raw.headers["x-tokenomy-token-count"] == "estimate"
    assert raw.parse().input_tokens > 3


def test_input_tokens_refusals_are_openais(rgw: GW) -> None:
    client = rgw.openai()
    with pytest.raises(openai.NotFoundError) as missing:
        client.responses.input_tokens.count(model="gemini-9", input="hi")
    assert isinstance(missing.value.body, dict) and missing.value.body["param"] == "model"
    with pytest.raises(openai.BadRequestError, match="model"):
        client.responses.input_tokens.count(input="hi")
    limited, _ = add_key(rgw.db, team="search", models=["gpt-4o-mini"])
    with pytest.raises(openai.PermissionDeniedError):
        rgw.openai(limited).responses.input_tokens.count(model="gpt-4o", input="hi")
    with pytest.raises(openai.BadRequestError, match="conversation"):
        client.responses.input_tokens.count(model="gpt-4o", input="hi", conversation="conv_1")


# -- POST /v1/moderations -------------------------------------------------------------


def test_a_moderation_is_relayed_to_its_model_unmetered(rgw: GW) -> None:
    before = rows(rgw)
    out = rgw.openai().moderations.create(input=["a kind word", "a threat [[fake:flag]]"])
    assert out.model == "omni-moderation-latest"  # OpenAI's default when none is named
    assert [r.flagged for r in out.results] == [False, True]
    assert out.results[1].categories.violence
    sent = rgw.fake.app.requests[-1]
    assert (sent.path, sent.body["model"]) == ("/v1/moderations", "omni-moderation-latest")
    assert rows(rgw) == before


def test_moderation_refusals_are_openais(rgw: GW) -> None:
    client = rgw.openai()
    with pytest.raises(openai.BadRequestError, match="moderation API"):
        client.moderations.create(model="claude-haiku-4-5", input="hi")
    with pytest.raises(openai.NotFoundError):
        client.moderations.create(model="text-moderation-9", input="hi")
    with pytest.raises(openai.BadRequestError, match="'input'"):
        client.moderations.create(input="")
    limited, _ = add_key(rgw.db, team="search", models=["gpt-4o-mini"])
    with pytest.raises(openai.PermissionDeniedError):
        rgw.openai(limited).moderations.create(input="hi")


def test_unmetered_calls_are_counted_in_the_metrics(rgw: GW) -> None:
    def count(name: str, model: str) -> float:
        with rgw.http() as c:
            text = c.get("/metrics", headers={"authorization": f"Bearer {MASTER_KEY}"}).text
        line = f'tokenomy_unmetered_calls_total{{call="{name}",model="{model}"}} '
        return float(next((x[len(line) :] for x in text.splitlines() if x.startswith(line)), 0))

    before = count("count_tokens", "gpt-4o"), count("responses.retrieve", "")
    rgw.anthropic().messages.count_tokens(model="gpt-4o", messages=MESSAGES)
    made = rgw.openai().responses.create(model="gpt-4o", input="hi")
    rgw.openai().responses.retrieve(made.id)
    with pytest.raises(anthropic.NotFoundError):  # a refusal is not counted
        rgw.anthropic().messages.count_tokens(model="nowhere", messages=MESSAGES)
    after = count("count_tokens", "gpt-4o"), count("responses.retrieve", "")
    assert (after[0] - before[0], after[1] - before[1]) == (1, 1)
