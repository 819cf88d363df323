"""Responses API chains between tenants: every key shares the gateway's upstream
account, where OpenAI keeps each response, so a request may continue
(``previous_response_id``) only a response its own tenant made; any other id is
refused as OpenAI refuses an id it does not know, before anything reaches the
upstream. Driven by the official `openai` SDK, and in process by `Pipeline`."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import openai
import pytest

from gateway_fixtures import GW, Fake, add_key, gateway_settings, start_gateway
from responses_helpers import create_response, previous_not_found, refused_unheard
from tokenomy import ConfigError, InvalidRequest, Pipeline
from tokenomy.config import load_settings


def create(client: openai.OpenAI, stream: bool, **body: Any) -> tuple[str, str]:
    """A response made through the gateway: (its id, the request id of its row)."""
    response, request_id = create_response(client, stream, **body)
    return response.id, request_id


def refused(gw: GW, key: str, rid: str, stream: bool = False) -> openai.BadRequestError:
    """``key`` continuing ``rid`` is refused, and the upstream never hears of it."""
    return refused_unheard(gw, key, openai.BadRequestError, stream=stream,
                           input="and what did I ask you before?", previous_response_id=rid)  # fmt: skip


@pytest.mark.parametrize("stream", [False, True])
def test_another_tenant_cannot_continue_a_response(gw: GW, other_team: str, stream: bool) -> None:
    rid, made = create(gw.openai(), stream)
    assert gw.record(made).response_id == rid  # whose it is, in its ledger row
    err = refused(gw, other_team, rid, stream)
    # exactly what OpenAI answers for an id it does not know: nothing says it exists
    assert err.status_code == 400 and err.response.json() == previous_not_found(rid)
    assert err.code == "previous_response_not_found" and err.param == "previous_response_id"
    rec = gw.record(err.response.headers["x-tokenomy-request-id"])
    assert (rec.status, rec.error_type, rec.response_id) == (400, "invalid_request_error", None)


def test_a_team_of_the_same_name_in_another_org_is_another_tenant(gw: GW) -> None:
    rid, _ = create(gw.openai(), stream=False)
    globex, _ = add_key(gw.db, team="search", org="globex")
    assert refused(gw, globex, rid).response.json() == previous_not_found(rid)


@pytest.mark.parametrize("stream", [False, True])
def test_a_tenant_continues_its_own_chain(gw: GW, stream: bool) -> None:
    """Another key of the same team (the default scope) continues it, JSON and
    streamed, and the responses those make continue in turn."""
    teammate, _ = add_key(gw.db, team="search", org="acme")
    first, _ = create(gw.openai(), stream=True)
    second, made = create(gw.openai(key=teammate), stream, previous_response_id=first)
    assert gw.fake.app.requests[-1].body["previous_response_id"] == first
    assert gw.record(made).response_id == second != first
    third, _ = create(gw.openai(), stream, input="and then?", previous_response_id=second)
    assert gw.fake.app.requests[-1].body["previous_response_id"] == second
    assert third not in (first, second)


def test_an_id_the_gateway_never_relayed_is_refused(gw: GW) -> None:
    """Made before the gateway recorded ids, directly at OpenAI, or made up: the
    gateway cannot say whose it is, so it refuses it, as OpenAI does an unknown id."""
    for rid in ("resp_0123456789abcdef", ""):
        assert refused(gw, gw.key, rid).response.json() == previous_not_found(rid)


def test_an_error_does_not_echo_a_huge_value_whole(gw: GW) -> None:
    """A 100,000-character id is named in the refusal cut to 2,000 characters."""
    rid = "resp_" + "x" * 100_000
    message = refused(gw, gw.key, rid).response.json()["error"]["message"]
    assert len(message) == 2000
    assert message.startswith("Previous response with id 'resp_xxx") and message.endswith("x\u2026")


@pytest.mark.parametrize(
    "conversation", ["conv_689667905b048191b4740501625afd940c7533ace33a2dab", {"id": "conv_1"}]
)
def test_a_conversation_is_refused(gw: GW, conversation: Any) -> None:
    before = gw.fake.app.mark()
    with pytest.raises(openai.BadRequestError) as info:
        gw.openai().responses.create(model="gpt-4o", input="hi", conversation=conversation)
    assert info.value.param == "conversation" and info.value.code == "unsupported_parameter"
    assert (
        "Conversations API" in info.value.message and "previous_response_id" in info.value.message
    )
    assert gw.fake.app.requests_since(before) == []
    assert gw.record(info.value.response.headers["x-tokenomy-request-id"]).status == 400


def test_chat_requests_are_not_checked(gw: GW) -> None:
    """Only the Responses API reads stored state: a chat body's stray fields pass on."""
    reply = gw.openai().chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "hi"}],
        extra_body={"previous_response_id": "resp_x", "conversation": "conv_x"},
    )
    assert reply.choices[0].message.content
    assert gw.fake.app.requests[-1].body["previous_response_id"] == "resp_x"


# -- replicas: one ledger, two gateways -------------------------------------------------


# `replicas` (conftest): two gateways sharing one ledger


@pytest.mark.parametrize("stream", [False, True])
def test_ownership_holds_across_replicas(replicas: tuple[GW, GW], stream: bool) -> None:
    one, two = replicas
    rid, _ = create(one.openai(), stream)
    stranger, _ = add_key(one.db, team="ads", org="acme")
    assert refused(two, stranger, rid, stream).response.json() == previous_not_found(rid)
    # the key that made it (team search), and its teammate minted by the other replica
    for client in (two.openai(key=one.key), two.openai()):
        nxt, _ = create(client, stream, previous_response_id=rid)
        assert two.fake.app.requests[-1].body["previous_response_id"] == rid
        assert nxt != rid


# -- settings ------------------------------------------------------------------------------


def test_unknown_ids_may_be_let_through_while_clients_move(
    fake: Fake, fake_llamacpp: Fake, tmp_path: Path
) -> None:
    """``allow_unknown_ids``: an id the gateway never relayed goes to the upstream,
    which answers for it (here: refuses it, relayed as any upstream refusal is); one
    the gateway relayed is still its tenant's alone."""
    settings = gateway_settings(
        str(tmp_path / "ledger.db"), fake, fake_llamacpp, responses={"allow_unknown_ids": True}
    )
    with contextlib.contextmanager(start_gateway)(settings, fake) as gw:
        stranger, _ = add_key(gw.db, team="ads", org="acme")
        with pytest.raises(openai.BadRequestError) as info:
            gw.openai(key=stranger).responses.create(
                model="gpt-4o", input="hi", previous_response_id="resp_made_elsewhere"
            )
        assert "x-tokenomy-upstream-request-id" in info.value.response.headers  # the fake's
        assert "Previous response with id 'resp_made_elsewhere' not found." in info.value.message
        assert fake.app.requests[-1].body["previous_response_id"] == "resp_made_elsewhere"
        rid, _ = create(gw.openai(), stream=False)
        assert refused(gw, stranger, rid).response.json() == previous_not_found(rid)


def keys(db: str) -> dict[str, str]:
    """Keys of: the same team, another team of the same org, another org."""
    specs = {
        "author": {"team": "search", "org": "acme"},
        "teammate": {"team": "search", "org": "acme"},
        "same_org": {"team": "ads", "org": "acme"},
        "other_org": {"team": "search", "org": "globex"},
    }
    return {name: add_key(db, **kw)[0] for name, kw in specs.items()}


@pytest.mark.parametrize(
    ("scope", "allowed"),
    [
        ("key", set()),
        ("team", {"teammate"}),
        ("org", {"teammate", "same_org"}),
        ("shared", {"teammate", "same_org", "other_org"}),
    ],
)
async def test_the_chain_scope_says_who_is_one_tenant(
    fake: Fake, fake_llamacpp: Fake, tmp_path: Path, scope: str, allowed: set[str]
) -> None:
    db = str(tmp_path / "ledger.db")
    settings = gateway_settings(db, fake, fake_llamacpp, responses={"chain_scope": scope})
    made = keys(db)
    body = {"model": "gpt-4o", "input": "hello there"}
    async with Pipeline(settings) as p:
        rid = (await p.responses(body, key=made["author"])).body["id"]
        own = await p.responses({**body, "previous_response_id": rid}, key=made["author"])
        assert own.body["previous_response_id"] == rid
        for name in ("teammate", "same_org", "other_org"):
            again = {**body, "previous_response_id": rid}
            if name in allowed:
                assert (await p.responses(again, key=made[name])).status == 200
                continue
            before = fake.app.mark()
            with pytest.raises(InvalidRequest) as info:
                await p.responses(again, key=made[name])
            assert info.value.code == "previous_response_not_found"
            assert fake.app.requests_since(before) == []
        # whatever the scope, an id nobody relayed is refused
        with pytest.raises(InvalidRequest):
            await p.responses({**body, "previous_response_id": "resp_x"}, key=made["author"])


async def test_requests_without_a_key_are_one_tenant(
    fake: Fake, fake_llamacpp: Fake, tmp_path: Path
) -> None:
    """With ``require_key`` off, key-less requests share their chains, and neither
    they nor a keyed tenant continue the other's."""
    db = str(tmp_path / "ledger.db")
    settings = gateway_settings(db, fake, fake_llamacpp, require_key=False)
    keyed = add_key(db, team="search", org="acme")[0]
    body = {"model": "gpt-4o", "input": "hello there"}
    async with Pipeline(settings) as p:
        anon = (await p.responses(body)).body["id"]
        assert (await p.responses({**body, "previous_response_id": anon})).status == 200
        with pytest.raises(InvalidRequest):
            await p.responses({**body, "previous_response_id": anon}, key=keyed)
        mine = (await p.responses(body, key=keyed)).body["id"]
        with pytest.raises(InvalidRequest):
            await p.responses({**body, "previous_response_id": mine})


@pytest.mark.parametrize(
    ("section", "error"),
    [
        ({"chain_scope": "user"}, "responses.chain_scope: expected key, team, org or shared"),
        ({"allow_unknown_ids": "sometimes"}, "responses.allow_unknown_ids: expected true"),
        ({"scope": "team"}, "responses: unknown settings ['scope']"),
    ],
)
def test_bad_settings_stop_the_start(tmp_path: Path, section: dict[str, Any], error: str) -> None:
    import yaml

    path = tmp_path / "tokenomy.yaml"
    path.write_text(yaml.safe_dump({"responses": section}))
    with pytest.raises(ConfigError, match=error.replace("[", r"\[")):
        load_settings(path, env={})
