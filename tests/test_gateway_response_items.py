"""Responses API items between tenants: OpenAI keeps each response's output items
with it, under the upstream account every key shares, and a request may name one
by its id in ``input`` (an ``item_reference``, or a reasoning item with an
``id``), which the upstream reads from its storage. The gateway records the ids
of the items of every response it relays, and lets a request name only items its
own tenant's responses had; any other id is refused as OpenAI refuses an item it
does not know, before anything reaches the upstream. Driven by the official
`openai` SDK, and in process by `Pipeline`."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import openai
import pytest

from gateway_fixtures import GW, Fake, add_key, gateway_settings, start_gateway
from responses_helpers import create_response, item_not_found, refused_unheard
from tokenomy import InvalidRequest, Pipeline
from tokenomy.ledger.base import Owner

TOOLS = [
    {
        "type": "function",
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    }
]


def create(client: openai.OpenAI, stream: bool, **body: Any) -> tuple[list[Any], str]:
    """A response made through the gateway: (its output items, the request id of its row)."""
    response, request_id = create_response(client, stream, **body)
    return list(response.output), request_id


def naming(*items: dict[str, Any]) -> list[dict[str, Any]]:
    """An ``input`` naming ``items``, then asking on."""
    return [*items, {"role": "user", "content": "and then?"}]


def ref(item_id: str) -> dict[str, Any]:
    return {"type": "item_reference", "id": item_id}


def refused(
    gw: GW, key: str, items: list[dict[str, Any]], stream: bool = False
) -> openai.NotFoundError:
    """``key`` naming ``items`` is refused, and the upstream never hears of it."""
    return refused_unheard(gw, key, openai.NotFoundError, input=naming(*items), stream=stream)


@pytest.fixture(scope="module")
def teammate(gw: GW) -> str:
    return add_key(gw.db, team="search", org="acme")[0]


@pytest.mark.parametrize("stream", [False, True])
def test_another_tenant_cannot_name_an_item(gw: GW, other_team: str, stream: bool) -> None:
    output, _ = create(gw.openai(), stream)
    msg = output[-1].id
    assert msg.startswith("msg_")
    # whose it is, with the ledger row that relayed it
    assert gw.store.item_owners([msg]) == {msg: [Owner(gw.key_id, "acme", "search")]}
    err = refused(gw, other_team, [ref(msg)], stream)
    # exactly what OpenAI answers for an item it does not know: nothing says it exists
    assert err.status_code == 404 and err.response.json() == item_not_found(msg)
    rec = gw.record(err.response.headers["x-tokenomy-request-id"])
    assert (rec.status, rec.error_type, rec.response_id) == (404, "invalid_request_error", None)


@pytest.mark.parametrize("stream", [False, True])
def test_a_tenant_names_its_own_items(gw: GW, teammate: str, stream: bool) -> None:
    """Another key of the same team names the message, the function call and the
    reasoning items a response had, JSON and streamed; they reach the upstream as
    they were sent, and the items of the response that makes are its team's too."""
    reasoned, _ = create(gw.openai(), stream, model="o3", input="think it over")
    called, _ = create(
        gw.openai(), stream, input="weather in Paris? [[fake:tool=get_weather]]", tools=TOOLS
    )
    rs, msg = reasoned[0], reasoned[-1]
    assert (rs.type, msg.type, called[-1].type) == ("reasoning", "message", "function_call")
    items = [
        {"type": "reasoning", "id": rs.id, "summary": []},
        ref(msg.id),
        {"id": called[-1].id},  # an item_reference whose type is left out
        {"type": "function_call_output", "call_id": called[-1].call_id, "output": "sunny"},
    ]
    output, _ = create(gw.openai(key=teammate), stream, input=naming(*items), tools=TOOLS)
    assert gw.fake.app.requests[-1].body["input"] == naming(*items)
    again, _ = create(gw.openai(), stream, input=naming(ref(output[-1].id)))
    assert gw.fake.app.requests[-1].body["input"][0] == ref(output[-1].id)
    assert again[-1].id not in (msg.id, output[-1].id)


def test_every_way_of_naming_a_stored_item_is_checked(gw: GW, other_team: str) -> None:
    """An ``item_reference`` with its type, without it (or null), and a reasoning
    item sent with an id: each names an item the upstream reads from its storage."""
    reasoned, _ = create(gw.openai(), stream=False, model="o3", input="think it over")
    rs, msg = reasoned[0].id, reasoned[-1].id
    for item in (
        {"id": msg},
        {"id": msg, "type": None},
        {"type": "reasoning", "id": rs, "summary": []},
        {"type": "reasoning", "id": rs, "summary": [], "encrypted_content": "gAAAA"},
    ):
        err = refused(gw, other_team, [item])
        assert err.response.json() == item_not_found(item["id"])


def test_items_sent_whole_are_not_references(gw: GW, other_team: str) -> None:
    """A message or a function call sent with its content carries it itself: its
    ``id`` names nothing to read, whoever's it was, and it passes on."""
    called, _ = create(
        gw.openai(), stream=False, input="weather in Oslo? [[fake:tool=get_weather]]", tools=TOOLS
    )
    call = called[-1]
    items = [
        {"type": "message", "id": "msg_elsewhere", "role": "assistant",
         "content": [{"type": "output_text", "text": "hi", "annotations": []}]},
        {"type": "function_call", "id": call.id, "call_id": call.call_id,
         "name": call.name, "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "rain"},
    ]  # fmt: skip
    output, _ = create(gw.openai(key=other_team), False, input=items, tools=TOOLS)
    assert gw.fake.app.requests[-1].body["input"] == items and output


def test_the_first_item_not_the_callers_is_the_one_named(gw: GW, other_team: str) -> None:
    """Items the caller may name pass the check; the refusal names the first that
    it may not, whether another tenant's or one nobody relayed, after one lookup."""
    mine, _ = create(gw.openai(key=other_team), stream=False)
    theirs, _ = create(gw.openai(), stream=False)
    items = [ref(mine[-1].id), ref("msg_made_elsewhere"), ref(theirs[-1].id)]
    err = refused(gw, other_team, items)
    assert err.response.json() == item_not_found("msg_made_elsewhere")
    err = refused(gw, other_team, [ref(mine[-1].id), ref(theirs[-1].id)])
    assert err.response.json() == item_not_found(theirs[-1].id)


def test_an_item_the_gateway_never_relayed_is_refused(gw: GW) -> None:
    """Made before the gateway recorded items, directly at OpenAI, or made up: the
    gateway cannot say whose it is, so it refuses it, as OpenAI does an unknown id."""
    for item_id in ("msg_0123456789abcdef", "", "msg_\x00"):
        assert refused(gw, gw.key, [ref(item_id)]).response.json() == item_not_found(item_id)


def test_the_items_a_stream_relayed_before_it_was_cut_are_its_tenants(
    gw: GW, teammate: str, other_team: str
) -> None:
    """Cut in the second of two web searches: the client saw the first search's
    item done and the second's added, so both are known, and its team's."""
    with gw.openai().responses.with_streaming_response.create(
        model="gpt-4o",
        input="news today [[fake:web_searches=2]] [[fake:reset]] [[fake:cut_at=9]]",
        tools=[{"type": "web_search"}],
        stream=True,
    ) as resp:
        events = list(resp.parse())
    assert events[-1].type == "error"
    seen = [e.item.id for e in events if e.type == "response.output_item.added"]
    assert len(seen) == 2 and all(i.startswith("ws_") for i in seen)
    assert set(gw.store.item_owners(seen)) == set(seen)
    create(gw.openai(key=teammate), False, input=naming(ref(seen[0]), ref(seen[1])))
    assert refused(gw, other_team, [ref(seen[1])]).response.json() == item_not_found(seen[1])


def test_a_request_naming_no_item_reads_no_item(gw: GW, monkeypatch: pytest.MonkeyPatch) -> None:
    """The lookup is made only for a request that names a stored item."""
    asked: list[list[str]] = []
    store = gw.app.gateway.store
    real = store.item_owners
    monkeypatch.setattr(store, "item_owners", lambda ids: asked.append(list(ids)) or real(ids))
    create(gw.openai(), stream=False, input=naming({"role": "assistant", "content": "hi"}))
    assert asked == []
    with pytest.raises(openai.NotFoundError):
        gw.openai().responses.create(model="gpt-4o", input=naming(ref("a"), ref("b"), ref("a")))
    assert asked == [["a", "b"]]


# -- replicas: one ledger, two gateways -------------------------------------------------


# `replicas` (conftest): two gateways sharing one ledger


@pytest.mark.parametrize("stream", [False, True])
def test_item_ownership_holds_across_replicas(replicas: tuple[GW, GW], stream: bool) -> None:
    one, two = replicas
    output, _ = create(one.openai(), stream, model="o3")
    rs, msg = output[0].id, output[-1].id
    stranger, _ = add_key(one.db, team="ads", org="acme")
    for item in ({"type": "reasoning", "id": rs, "summary": []}, ref(msg)):
        err = refused(two, stranger, [item], stream)
        assert err.response.json() == item_not_found(item["id"])
    # the key that made it (team search), and its teammate minted by the other replica
    for client in (two.openai(key=one.key), two.openai()):
        nxt, _ = create(client, stream, input=naming(ref(msg)))
        assert two.fake.app.requests[-1].body["input"][0] == ref(msg)
        assert nxt[-1].id != msg


# -- settings ------------------------------------------------------------------------------


def test_unknown_items_may_be_let_through_while_clients_move(
    fake: Fake, fake_llamacpp: Fake, tmp_path: Path
) -> None:
    """``allow_unknown_ids``: an item the gateway never relayed goes to the upstream,
    which answers for it (here: refuses it, relayed as any upstream refusal is);
    one the gateway relayed is still its tenant's alone."""
    settings = gateway_settings(
        str(tmp_path / "ledger.db"), fake, fake_llamacpp, responses={"allow_unknown_ids": True}
    )
    with contextlib.contextmanager(start_gateway)(settings, fake) as gw:
        stranger, _ = add_key(gw.db, team="ads", org="acme")
        with pytest.raises(openai.NotFoundError) as info:
            gw.openai(key=stranger).responses.create(
                model="gpt-4o", input=naming(ref("msg_made_elsewhere"))
            )
        assert "x-tokenomy-upstream-request-id" in info.value.response.headers  # the fake's
        assert info.value.response.json() == item_not_found("msg_made_elsewhere")
        assert fake.app.requests[-1].body["input"][0] == ref("msg_made_elsewhere")
        output, _ = create(gw.openai(), stream=False)
        assert refused(gw, stranger, [ref(output[-1].id)]).response.json() == item_not_found(
            output[-1].id
        )


@pytest.mark.parametrize(
    ("scope", "allowed"),
    [("key", set()), ("team", {"teammate"}), ("shared", {"teammate", "other_org"})],
)
async def test_the_chain_scope_says_whose_items_are_whose(
    fake: Fake, fake_llamacpp: Fake, tmp_path: Path, scope: str, allowed: set[str]
) -> None:
    db = str(tmp_path / "ledger.db")
    settings = gateway_settings(db, fake, fake_llamacpp, responses={"chain_scope": scope})
    made = {
        "author": add_key(db, team="search", org="acme")[0],
        "teammate": add_key(db, team="search", org="acme")[0],
        "other_org": add_key(db, team="search", org="globex")[0],
    }
    async with Pipeline(settings) as p:
        first = await p.responses({"model": "gpt-4o", "input": "hi"}, key=made["author"])
        body = {"model": "gpt-4o", "input": naming(ref(first.body["output"][-1]["id"]))}
        assert (await p.responses(body, key=made["author"])).status == 200
        for name in ("teammate", "other_org"):
            if name in allowed:
                assert (await p.responses(body, key=made[name])).status == 200
                continue
            before = fake.app.mark()
            with pytest.raises(InvalidRequest) as info:
                await p.responses(body, key=made[name])
            assert (info.value.status, info.value.param, info.value.code) == (404, "input", None)
            assert fake.app.requests_since(before) == []
        # whatever the scope, an item nobody relayed is refused
        with pytest.raises(InvalidRequest, match=r"^Item with id 'msg_x' not found\.$"):
            await p.responses({**body, "input": naming(ref("msg_x"))}, key=made["author"])
