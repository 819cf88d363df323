"""The same gateway with its ledger on the real local PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from decimal import Decimal

import openai
import pytest

from gateway_fixtures import GW, Fake, gateway_settings, start_gateway

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_gw(pg_schema_url: str, fake: Fake, fake_llamacpp: Fake) -> Iterator[GW]:
    yield from start_gateway(gateway_settings(pg_schema_url, fake, fake_llamacpp), fake)


def test_records_land_in_postgres_exactly(pg_gw: GW) -> None:
    raw = pg_gw.openai().chat.completions.with_raw_response.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "hello there [[fake:cached=2]]"}],
        user="carol",
    )
    u = raw.parse().usage
    assert u is not None
    rec = pg_gw.record(raw.headers["x-tokenomy-request-id"])
    want = (
        (u.prompt_tokens - 2) * Decimal("2.5") + 2 * Decimal("1.25") + u.completion_tokens * 10
    ) / 10**6
    assert rec.cost_usd == want == Decimal(raw.headers["x-tokenomy-cost-usd"])
    assert rec.user == "alice" and rec.team == "search" and rec.usage.cache_read_tokens == 2


def test_concurrent_streams_all_recorded_in_postgres(pg_gw: GW) -> None:
    async def run() -> list[str]:
        client = pg_gw.async_openai()

        async def one() -> str:
            async with client.chat.completions.with_streaming_response.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
            ) as resp:
                async for _ in await resp.parse():
                    pass
                return resp.headers["x-tokenomy-request-id"]

        ids = await asyncio.gather(*(one() for _ in range(40)))
        await client.close()
        return list(ids)

    ids = asyncio.run(run())
    recs = [pg_gw.store.get_record(i) for i in ids]
    assert all(r is not None and r.status == 200 and r.cost_usd for r in recs)
    assert pg_gw.store.count_records() == 40


def test_unknown_price_is_null_in_postgres(pg_gw: GW) -> None:
    raw = pg_gw.anthropic().messages.with_raw_response.create(
        model="mystery-model-x", max_tokens=10, messages=[{"role": "user", "content": "x"}]
    )
    rec = pg_gw.record(raw.headers["x-tokenomy-request-id"])
    assert rec.price_unknown and rec.cost_usd is None and rec.api == "anthropic"


def test_a_previous_response_id_with_a_nul_is_refused_as_unknown(pg_gw: GW) -> None:
    """Bad input is a 400 (OpenAI's refusal of an id it does not know), not a 500
    from PostgreSQL, whose text cannot hold a NUL."""
    rid = "resp_0123\x00abcd"
    with pytest.raises(openai.BadRequestError) as info:
        pg_gw.openai().responses.create(model="gpt-4o", input="hi", previous_response_id=rid)
    assert info.value.code == "previous_response_not_found"
    assert info.value.param == "previous_response_id"


def test_a_nul_in_what_the_client_sends_is_recorded_and_never_a_500(pg_gw: GW) -> None:
    """PostgreSQL's text and jsonb cannot hold a NUL (JSON's \\u0000), which a client may
    put in any string: a served request is still recorded (its tag, its model name
    kept with U+FFFD in its place), and a lookup by such a string finds nothing."""
    say = [{"role": "user", "content": "hi"}]
    h = {"authorization": f"Bearer {pg_gw.key}"}
    with pg_gw.http() as c:
        served = c.post("/v1/chat/completions", headers=h,
                        json={"model": "gpt-4o", "messages": say, "metadata": {"k\x00": "a\x00b"}})  # fmt: skip
        assert served.status_code == 200, served.text
        rec = pg_gw.record(served.headers["x-tokenomy-request-id"])
        assert rec.tags["k\ufffd"] == "a\ufffdb"
        refused = c.post(
            "/v1/chat/completions", headers=h, json={"model": "gpt\x00", "messages": say}
        )
        assert refused.status_code == 404, refused.text
        assert pg_gw.record(refused.headers["x-tokenomy-request-id"]).requested_model == "gpt\ufffd"
        scored = c.post("/v1/feedback", headers=h, json={"request_id": "req_\x00", "score": 1})
        assert scored.status_code == 404, scored.text
        assert scored.json()["error"]["code"] == "request_not_found"
