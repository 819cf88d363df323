"""A stored response read, listed and deleted through the gateway with the official SDK:
from the upstream that keeps it, by its own tenant only; any other id is OpenAI's
404 for an id it does not know, and the upstream never hears of it."""

from __future__ import annotations

import openai
import pytest

from gateway_fixtures import GW
from responses_helpers import create_response, response_not_found


def unheard(gw: GW, key: str, rid: str) -> None:
    """Every call on ``rid`` by ``key`` is the 404, and none reaches the upstream."""
    client = gw.openai(key=key)
    before = gw.fake.app.mark()
    for call in (
        lambda: client.responses.retrieve(rid),
        lambda: client.responses.input_items.list(rid),
        lambda: client.responses.delete(rid),
    ):
        with pytest.raises(openai.NotFoundError) as info:
            call()
        assert info.value.body == response_not_found(rid)["error"]
    assert gw.fake.app.requests_since(before) == []


@pytest.mark.parametrize("stream", [False, True])
def test_a_response_is_retrieved_listed_and_deleted_by_its_tenant(gw: GW, stream: bool) -> None:
    made, _ = create_response(gw.openai(), stream, input="remember the number 42")
    client = gw.openai()
    got = client.responses.retrieve(made.id)
    assert (got.id, got.status, got.output_text) == (made.id, "completed", made.output_text)
    items = client.responses.input_items.list(made.id)
    assert [i.type for i in items.data] == ["message"]
    assert items.data[0].content[0].text == "remember the number 42"  # type: ignore[union-attr]
    sent = gw.fake.app.requests[-1]
    assert (sent.method, sent.path) == ("GET", f"/v1/responses/{made.id}/input_items")
    assert sent.headers["authorization"] != f"Bearer {gw.key}"  # the upstream's key
    client.responses.delete(made.id)
    with pytest.raises(openai.NotFoundError) as gone:  # the upstream's own 404, relayed
        client.responses.retrieve(made.id)
    assert gone.value.body == response_not_found(made.id)["error"]


def test_another_tenant_and_an_unknown_id_get_the_404_unheard(gw: GW, other_team: str) -> None:
    made, _ = create_response(gw.openai(), False)
    unheard(gw, other_team, made.id)
    unheard(gw, gw.key, "resp_never_relayed")
    assert gw.openai().responses.retrieve(made.id).id == made.id  # still there


def test_a_background_stream_and_cancel_are_refused(gw: GW) -> None:
    made, _ = create_response(gw.openai(), False)
    with gw.http() as c:
        auth = {"authorization": f"Bearer {gw.key}"}
        streamed = c.get(f"/v1/responses/{made.id}?stream=true", headers=auth)
        cancel = c.post(f"/v1/responses/{made.id}/cancel", headers=auth)
        odd = c.get(f"/v1/responses/{made.id}/elsewhere", headers=auth)
    assert streamed.status_code == 400 and streamed.json()["error"]["param"] == "stream"
    assert cancel.status_code == 400 and "background" in cancel.json()["error"]["message"]
    assert odd.status_code == 404 and odd.json()["error"]["code"] == "unknown_route"


def test_a_query_is_passed_on(gw: GW) -> None:
    made, _ = create_response(gw.openai(), False)
    items = gw.openai().responses.input_items.list(made.id, limit=5, order="asc")
    assert items.data and items.has_more is False
    assert gw.fake.app.requests[-1].query == "limit=5&order=asc"
    with pytest.raises(openai.AuthenticationError):
        gw.openai(key="tk-not-a-key").responses.retrieve(made.id)


@pytest.mark.parametrize(
    "rid",
    ["..%2F..%2Fmodels", "%00", "resp_" + "x" * 20_000, "%C3%A9t%C3%A9", "resp_a%3Fb%3Dc", "%20"],
    ids=["slashes", "nul", "long", "non-ascii", "query-in-id", "space"],
)
def test_odd_ids_are_the_404_in_format(gw: GW, rid: str) -> None:
    before = gw.fake.app.mark()
    with gw.http() as c:
        r = c.get(f"/v1/responses/{rid}", headers={"authorization": f"Bearer {gw.key}"})
    assert r.status_code == 404
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert gw.fake.app.requests_since(before) == []
