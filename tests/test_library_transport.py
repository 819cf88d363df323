"""The official SDKs in process: `PipelineTransport` puts the gateway's HTTP layer
behind an httpx2 client, with no socket between them. Streams come through as they
are produced (not buffered whole), and a stream the client leaves is recorded."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import anthropic
import httpx2
import openai
import pytest

from gateway_fixtures import Fake, gateway_settings
from tokenomy import Pipeline, Settings, UsageRecord
from tokenomy.keys import mint_key
from tokenomy.ledger import open_store
from tokenomy.server.transport import PipelineTransport

MSG = [{"role": "user", "content": "hello there"}]
SLOW = [{"role": "user", "content": "hi [[fake:chunks=40]] [[fake:chunk_delay_ms=20]]"}]


@pytest.fixture
def settings(fake: Fake, fake_llamacpp: Fake, tmp_path: Path) -> Settings:
    return gateway_settings(str(tmp_path / "ledger.db"), fake, fake_llamacpp)


@pytest.fixture
def key(settings: Settings) -> str:
    secret, rec = mint_key(team="search", user="alice")
    with open_store(settings.db) as store:
        store.migrate()
        store.create_key(rec)
    return secret


@pytest.fixture
async def http(settings: Settings, key: str) -> AsyncIterator[httpx2.AsyncClient]:
    async with (
        Pipeline(settings) as pipeline,
        httpx2.AsyncClient(transport=PipelineTransport(pipeline)) as client,
    ):
        yield client


def ledger(settings: Settings, request_id: str) -> UsageRecord | None:
    with open_store(settings.db) as store:
        return store.get_record(request_id)


def oai(http: httpx2.AsyncClient, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url="http://tokenomy/v1", api_key=key, http_client=http, max_retries=0
    )


async def test_the_openai_sdk_calls_the_pipeline(
    http: httpx2.AsyncClient, key: str, settings: Settings
) -> None:
    raw = await oai(http, key).chat.completions.with_raw_response.create(
        model="gpt-4o", messages=MSG
    )
    completion = raw.parse()
    assert completion.choices[0].message.content
    rec = ledger(settings, raw.headers["x-tokenomy-request-id"])
    assert rec is not None and rec.team == "search" and rec.status == 200
    assert Decimal(raw.headers["x-tokenomy-cost-usd"]) == rec.cost_usd is not None


async def test_the_anthropic_sdk_calls_the_pipeline(
    http: httpx2.AsyncClient, key: str, settings: Settings
) -> None:
    client = anthropic.AsyncAnthropic(
        base_url="http://tokenomy", api_key=key, http_client=http, max_retries=0
    )
    message = await client.messages.create(model="claude-haiku-4-5", max_tokens=50, messages=MSG)
    assert message.content[0].type == "text"
    assert message._request_id is not None
    rec = ledger(settings, message._request_id)
    assert rec is not None and rec.api == "anthropic" and rec.cost_usd is not None
    async with client.messages.stream(
        model="claude-haiku-4-5", max_tokens=50, messages=MSG
    ) as stream:
        assert (await stream.get_final_text()).startswith("Echo: hello")


async def test_errors_come_in_the_sdk_s_own_types(http: httpx2.AsyncClient) -> None:
    with pytest.raises(openai.AuthenticationError) as info:
        await oai(http, "tk-000000000000-wrong").chat.completions.create(
            model="gpt-4o", messages=MSG
        )
    assert info.value.status_code == 401


async def test_a_stream_comes_as_it_is_produced_and_is_recorded_when_left(
    http: httpx2.AsyncClient, key: str, settings: Settings
) -> None:
    stream = await oai(http, key).chat.completions.create(
        model="gpt-4o", messages=SLOW, stream=True
    )
    rid = stream.response.headers["x-tokenomy-request-id"]
    first = await anext(aiter(stream))
    assert first.choices
    assert ledger(settings, rid) is None  # still running: not buffered to its end
    await stream.close()
    rec = ledger(settings, rid)  # closing waits for the record
    assert rec is not None and rec.status == 499 and rec.usage.output_tokens < 40


async def test_a_stream_read_to_its_end_is_recorded(
    http: httpx2.AsyncClient, key: str, settings: Settings
) -> None:
    stream = await oai(http, key).chat.completions.create(model="gpt-4o", messages=MSG, stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text.startswith("Echo: hello")
    rec = ledger(settings, stream.response.headers["x-tokenomy-request-id"])
    assert rec is not None and rec.status == 200 and rec.cost_usd is not None


async def test_closing_the_client_ends_its_open_streams(settings: Settings, key: str) -> None:
    async with Pipeline(settings) as pipeline:
        async with httpx2.AsyncClient(transport=PipelineTransport(pipeline)) as http:
            stream = await oai(http, key).chat.completions.create(
                model="gpt-4o", messages=SLOW, stream=True
            )
            await anext(aiter(stream))
        rec = ledger(settings, stream.response.headers["x-tokenomy-request-id"])
        assert rec is not None and rec.status == 499


async def test_the_pipeline_must_be_started(settings: Settings) -> None:
    async with httpx2.AsyncClient(transport=PipelineTransport(Pipeline(settings))) as http:
        with pytest.raises(RuntimeError, match="not started"):
            await http.get("http://tokenomy/healthz")
