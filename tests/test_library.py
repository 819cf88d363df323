"""`tokenomy.Pipeline`: the gateway's pipeline called in process, with no server.

The upstream is the fake provider on loopback; the ledger is a real SQLite file,
read back after each call to check what was committed."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from gateway_fixtures import Fake, gateway_settings
from tokenomy import (
    AuthenticationFailed,
    InvalidRequest,
    Pipeline,
    RateLimited,
    Settings,
    UpstreamProtocolError,
    UpstreamStatusError,
    UsageRecord,
)
from tokenomy.cli import cli
from tokenomy.keys import mint_key
from tokenomy.ledger import open_store

M = Decimal(1_000_000)
CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hello there"}]}
CLAUDE = "claude-sonnet-4-6"
SLOW = "[[fake:chunks=40]] [[fake:chunk_delay_ms=20]]"  # a stream still running when left


def gpt4o_cost(prompt: int, completion: int) -> Decimal:
    """gpt-4o: $2.50 input, $10 output per million tokens."""
    return (prompt * Decimal("2.5") + completion * 10) / M


def chat(content: str, **body: Any) -> dict[str, Any]:
    return {"model": "gpt-4o", "messages": [{"role": "user", "content": content}], **body}


@pytest.fixture
def settings(fake: Fake, fake_llamacpp: Fake, tmp_path: Path) -> Settings:
    return gateway_settings(str(tmp_path / "ledger.db"), fake, fake_llamacpp)


@pytest.fixture
def key(settings: Settings) -> str:
    """A virtual key in the ledger: team "search", user "alice"."""
    secret, rec = mint_key(team="search", user="alice", org="acme")
    with open_store(settings.db) as store:
        store.migrate()
        store.create_key(rec)
    return secret


@pytest.fixture
async def pipeline(settings: Settings, key: str) -> AsyncIterator[Pipeline]:
    async with Pipeline(settings) as p:
        yield p


@pytest.fixture
def ledger(settings: Settings) -> Callable[[str], UsageRecord | None]:
    def read(request_id: str) -> UsageRecord | None:
        with open_store(settings.db) as store:
            return store.get_record(request_id)

    return read


async def recorded(ledger: Callable[[str], UsageRecord | None], request_id: str) -> UsageRecord:
    """The request's row, once it is committed (a dropped stream closes on the loop)."""
    for _ in range(500):
        rec = ledger(request_id)
        if rec is not None:
            return rec
        await asyncio.sleep(0.01)
    raise AssertionError(f"no ledger row for {request_id}")


async def test_a_chat_completion_is_metered_and_recorded(
    pipeline: Pipeline, key: str, ledger: Callable[[str], UsageRecord | None]
) -> None:
    body = chat("hello there", metadata={"feature": "search-box"})
    result = await pipeline.chat_completions(body, key=key, headers={"X-Tokenomy-Tags": "env=dev"})
    usage = result.body["usage"]
    assert result.body["choices"][0]["message"]["content"].startswith("Echo: hello")
    want = gpt4o_cost(usage["prompt_tokens"], usage["completion_tokens"])
    assert result.status == 200 and result.cost == want and isinstance(result.cost, Decimal)
    assert result.headers["x-tokenomy-cost-usd"] == str(want)
    assert result.headers["x-tokenomy-request-id"] == result.request_id
    assert (result.usage.input_tokens, result.usage.output_tokens) == (
        usage["prompt_tokens"],
        usage["completion_tokens"],
    )
    rec = ledger(result.request_id)  # committed before the call returned
    assert rec is not None and rec.cost_usd == want and rec.status == 200
    assert (rec.team, rec.user, rec.endpoint) == ("search", "alice", "/v1/chat/completions")
    assert rec.tags == {"feature": "search-box", "env": "dev"}
    assert body == chat("hello there", metadata={"feature": "search-box"})  # not changed


async def test_an_anthropic_message_is_metered_and_recorded(
    pipeline: Pipeline, key: str, ledger: Callable[[str], UsageRecord | None]
) -> None:
    body = {"model": CLAUDE, "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}
    result = await pipeline.messages(body, key=key)
    assert result.body["type"] == "message" and result.body["content"][0]["type"] == "text"
    u = result.body["usage"]
    # Claude Sonnet 4.6: $3 input, $15 output per million tokens
    want = (u["input_tokens"] * 3 + u["output_tokens"] * 15) / M
    assert result.cost == want
    rec = ledger(result.request_id)
    assert rec is not None and rec.api == "anthropic" and rec.provider == "anthropic"
    assert rec.cost_usd == want and rec.endpoint == "/v1/messages"


async def test_either_api_may_call_either_family(pipeline: Pipeline, key: str) -> None:
    result = await pipeline.chat_completions({**CHAT, "model": CLAUDE}, key=key)
    assert result.body["object"] == "chat.completion"  # translated back to OpenAI's format
    assert result.record.provider == "anthropic" and result.cost is not None


async def test_embeddings_are_metered_and_recorded(
    pipeline: Pipeline, key: str, ledger: Callable[[str], UsageRecord | None]
) -> None:
    body = {"model": "text-embedding-3-small", "input": ["one two three", "four five"]}
    result = await pipeline.embeddings(body, key=key)
    assert [len(d["embedding"]) for d in result.body["data"]] == [8, 8]
    assert result.usage.input_tokens == 5
    assert result.cost == 5 * Decimal("0.02") / M  # $0.02 per million tokens
    rec = ledger(result.request_id)
    assert rec is not None and rec.cost_usd == result.cost and rec.endpoint == "/v1/embeddings"


async def test_legacy_completions_are_metered_and_recorded(
    pipeline: Pipeline, key: str, ledger: Callable[[str], UsageRecord | None]
) -> None:
    body = {"model": "gpt-4o", "prompt": "one two three", "max_tokens": 2}
    result = await pipeline.completions(body, key=key)
    assert result.body["choices"][0]["text"] == "Echo: one two"
    assert (result.usage.input_tokens, result.usage.output_tokens) == (3, 2)
    assert result.cost == gpt4o_cost(3, 2)
    rec = ledger(result.request_id)
    assert rec is not None and rec.cost_usd == result.cost and rec.endpoint == "/v1/completions"
    async with await pipeline.stream_completions(body, key=key) as stream:
        texts = [chunk["choices"][0]["text"] async for chunk in stream if chunk["choices"]]
    assert "".join(texts) == "Echo: one two"
    assert stream.cost == gpt4o_cost(3, 2) and stream.record.stream
    with pytest.raises(InvalidRequest, match=r"stream_completions\(\)"):
        await pipeline.completions({**body, "stream": True}, key=key)


async def test_a_stream_read_to_its_end_is_recorded(
    pipeline: Pipeline, key: str, ledger: Callable[[str], UsageRecord | None]
) -> None:
    stream = await pipeline.stream_chat_completions(
        chat("hello there", stream_options={"include_usage": True}), key=key
    )
    with pytest.raises(RuntimeError, match="once it is closed"):
        _ = stream.cost  # not known yet: nothing says unknown before the end
    events = [event async for event in stream]
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"])
    assert text.startswith("Echo: hello") and events[-1]["usage"]  # no [DONE] among them
    usage = events[-1]["usage"]
    want = gpt4o_cost(usage["prompt_tokens"], usage["completion_tokens"])
    assert stream.closed and stream.cost == want and stream.record.status == 200
    rec = ledger(stream.request_id)
    assert rec is not None and rec.stream and rec.cost_usd == want and rec.status == 200


async def test_an_anthropic_stream_gives_its_events(
    pipeline: Pipeline, key: str, ledger: Callable[[str], UsageRecord | None]
) -> None:
    body = {"model": CLAUDE, "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}
    async with await pipeline.stream_messages(body, key=key) as stream:
        kinds = []
        async for event in stream:
            if event["type"] == "message_stop":  # held back until the record is committed
                assert ledger(stream.request_id) is not None
            kinds.append(event["type"])
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert "content_block_delta" in kinds
    rec = ledger(stream.request_id)
    assert rec is not None and rec.status == 200 and rec.cost_usd == stream.cost is not None


async def test_a_response_is_metered_and_recorded(
    pipeline: Pipeline, key: str, ledger: Callable[[str], UsageRecord | None]
) -> None:
    body = {"model": "gpt-4o", "input": "hello there", "instructions": "Be brief."}
    result = await pipeline.responses(body, key=key)
    assert result.body["object"] == "response" and result.body["status"] == "completed"
    message = result.body["output"][-1]
    assert message["type"] == "message"
    assert message["content"][0]["text"].startswith("Echo: hello")
    u = result.body["usage"]
    want = gpt4o_cost(u["input_tokens"], u["output_tokens"])
    assert result.status == 200 and result.cost == want
    assert result.headers["x-tokenomy-cost-usd"] == str(want)
    assert (result.usage.input_tokens, result.usage.output_tokens) == (
        u["input_tokens"],
        u["output_tokens"],
    )
    rec = ledger(result.request_id)
    assert rec is not None and rec.cost_usd == want and rec.endpoint == "/v1/responses"
    assert (rec.team, rec.user, rec.stream) == ("search", "alice", False)
    failed = await pipeline.responses({**body, "input": "hi [[fake:failed]]"}, key=key)
    assert failed.body["status"] == "failed" and failed.cost  # an answer, billed
    assert (failed.record.status, failed.record.error_type) == (500, "response_failed")
    with pytest.raises(InvalidRequest, match=r"stream_responses\(\)"):
        await pipeline.responses({**body, "stream": True}, key=key)
    with pytest.raises(InvalidRequest, match="not translated"):
        await pipeline.responses({**body, "model": CLAUDE}, key=key)


async def test_a_responses_stream_gives_its_events(
    pipeline: Pipeline, key: str, ledger: Callable[[str], UsageRecord | None]
) -> None:
    body = {"model": "gpt-4o", "input": "hello there"}
    async with await pipeline.stream_responses(body, key=key) as stream:
        events = []
        async for event in stream:
            if event["type"] == "response.completed":  # held until the record is committed
                assert ledger(stream.request_id) is not None
            events.append(event)
    kinds = [e["type"] for e in events]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert text.startswith("Echo: hello")
    u = events[-1]["response"]["usage"]
    want = gpt4o_cost(u["input_tokens"], u["output_tokens"])
    assert stream.cost == want and stream.record.status == 200
    rec = ledger(stream.request_id)
    assert rec is not None and rec.stream and rec.cost_usd == want
    assert rec.endpoint == "/v1/responses" and not rec.usage.estimated


async def test_only_its_tenant_continues_a_response(
    pipeline: Pipeline,
    key: str,
    settings: Settings,
    fake: Fake,
    ledger: Callable[[str], UsageRecord | None],
) -> None:
    """In process as over HTTP: a key of another team continuing a response is
    refused as OpenAI refuses an id it does not know, and the upstream never hears
    of it; the team's own streamed continuation goes on."""
    secret, other = mint_key(team="ads", org="acme")
    with open_store(settings.db) as store:
        store.create_key(other)
    made = await pipeline.responses({"model": "gpt-4o", "input": "hello there"}, key=key)
    rid = made.body["id"]
    assert made.record.response_id == rid
    body = {"model": "gpt-4o", "input": "what did I ask?", "previous_response_id": rid}
    before = fake.app.mark()
    with pytest.raises(InvalidRequest) as info:
        await pipeline.responses(body, key=secret)
    err = info.value
    assert (err.status, err.code, err.param) == (
        400,
        "previous_response_not_found",
        "previous_response_id",
    )
    assert err.message == f"Previous response with id '{rid}' not found."
    assert fake.app.requests_since(before) == []
    rec = ledger(err.request_id or "")
    assert rec is not None and rec.status == 400 and rec.key_id == other.key_id
    async with await pipeline.stream_responses(body, key=key) as stream:
        events = [event async for event in stream]
    assert events[-1]["response"]["previous_response_id"] == rid
    assert stream.record.response_id == events[-1]["response"]["id"] != rid


async def test_a_responses_stream_that_fails_midway_raises_and_is_recorded(
    pipeline: Pipeline, key: str, ledger: Callable[[str], UsageRecord | None]
) -> None:
    body = {"model": "gpt-4o", "input": "hi [[fake:stream_error]] [[fake:cut_at=6]]"}
    stream = await pipeline.stream_responses(body, key=key)
    kinds = []
    with pytest.raises(UpstreamProtocolError) as info:
        async for event in stream:
            kinds.append(event["type"])
    assert "response.output_text.delta" in kinds and info.value.request_id == stream.request_id
    rec = ledger(stream.request_id)
    assert rec is not None and rec.status == 502 and rec.usage.estimated and stream.closed


async def test_a_stream_left_early_is_recorded_as_a_client_gone(
    pipeline: Pipeline, key: str, ledger: Callable[[str], UsageRecord | None]
) -> None:
    async with await pipeline.stream_chat_completions(chat("hi " + SLOW), key=key) as stream:
        async for event in stream:
            if event["choices"] and event["choices"][0]["delta"].get("content"):
                break
    rec = ledger(stream.request_id)  # committed when the block closed the stream
    assert rec is not None and rec.status == 499 and rec.error_type == "client_disconnected"
    assert 0 < rec.usage.output_tokens < 40 and rec.usage.estimated  # what was generated
    assert (
        rec.cost_usd == stream.cost == gpt4o_cost(rec.usage.input_tokens, rec.usage.output_tokens)
    )


async def test_a_stream_dropped_unclosed_is_still_recorded(
    pipeline: Pipeline, key: str, ledger: Callable[[str], UsageRecord | None]
) -> None:
    stream = await pipeline.stream_chat_completions(chat("hi " + SLOW), key=key)
    await anext(stream)
    read_one = stream.request_id
    stream = await pipeline.stream_messages(
        {"model": CLAUDE, "max_tokens": 50, "messages": [{"role": "user", "content": SLOW}]},
        key=key,
    )
    never_read = stream.request_id  # the upstream stream is open, nothing read from it
    del stream
    gc.collect()
    for rid in (read_one, never_read):
        rec = await recorded(ledger, rid)
        assert rec.status == 499 and rec.stream and rec.usage.input_tokens > 0


async def test_closing_the_pipeline_records_its_open_streams(
    settings: Settings, key: str, ledger: Callable[[str], UsageRecord | None]
) -> None:
    async with Pipeline(settings) as p:
        kept = await p.stream_chat_completions(chat("hi " + SLOW), key=key)
        await anext(kept)
        dropped = await p.stream_chat_completions(chat("hi " + SLOW), key=key)
        dropped_id = dropped.request_id
        del dropped
    assert kept.closed
    for rid in (kept.request_id, dropped_id):
        rec = ledger(rid)
        assert rec is not None and rec.status == 499


async def test_closing_the_pipeline_lets_calls_in_flight_finish(
    settings: Settings, key: str, ledger: Callable[[str], UsageRecord | None]
) -> None:
    async with Pipeline(settings) as p:
        call = asyncio.create_task(p.chat_completions(chat("hi [[fake:delay_ms=200]]"), key=key))
        for _ in range(1000):  # until the call is in the gateway, waiting on the upstream
            if p.gateway.inflight:
                break
            await asyncio.sleep(0.005)
        assert p.gateway.inflight == 1
    result = await call
    rec = ledger(result.request_id)
    assert rec is not None and rec.status == 200 and rec.cost_usd == result.cost


async def test_an_error_mid_stream_is_raised_and_recorded(
    pipeline: Pipeline, key: str, ledger: Callable[[str], UsageRecord | None]
) -> None:
    stream = await pipeline.stream_chat_completions(chat("hi [[fake:stream_error]]"), key=key)
    with pytest.raises(UpstreamProtocolError) as info:
        async for _ in stream:
            pass
    assert info.value.status == 502 and info.value.request_id == stream.request_id
    rec = ledger(stream.request_id)
    assert rec is not None and rec.status == 502 and rec.error_type == "upstream_protocol_error"
    assert stream.closed


async def test_keys_are_checked_as_over_http(
    pipeline: Pipeline, key: str, ledger: Callable[[str], UsageRecord | None]
) -> None:
    with pytest.raises(AuthenticationFailed) as info:
        await pipeline.chat_completions(CHAT)  # require_key is on: no key, no answer
    assert info.value.status == 401
    with pytest.raises(AuthenticationFailed):
        await pipeline.chat_completions(CHAT, key="tk-000000000000-wrong")
    with pytest.raises(AuthenticationFailed):
        await pipeline.stream_chat_completions(CHAT, headers={"authorization": "Bearer nope"})
    assert ledger(info.value.request_id or "") is None  # unauthenticated: counted, not recorded
    by_header = await pipeline.messages(
        {"model": CLAUDE, "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]},
        headers={"x-api-key": key},  # the Anthropic SDK's header works too
    )
    assert by_header.record.team == "search"


async def test_without_required_keys_calls_are_metered_unattributed(
    settings: Settings, ledger: Callable[[str], UsageRecord | None]
) -> None:
    async with Pipeline(replace(settings, require_key=False)) as p:
        result = await p.chat_completions(chat("hi", user="carol"))
    rec = ledger(result.request_id)
    assert rec is not None and rec.key_id is None and rec.user == "carol" and rec.cost_usd


async def test_the_cache_answers_a_repeat_in_process(settings: Settings, key: str) -> None:
    body = chat("the same question", temperature=0)
    async with Pipeline(replace(settings, cache={"enabled": True})) as p:
        first = await p.chat_completions(body, key=key)
        again = await p.chat_completions(body, key=key)
        streamed = await p.stream_chat_completions(body, key=key)  # a hit replays as a stream
        text = "".join([e["choices"][0]["delta"].get("content") or "" async for e in streamed])
    assert (
        again.body["choices"] == first.body["choices"]
        and text == first.body["choices"][0]["message"]["content"]
    )
    for hit in (again.record, streamed.record):
        assert hit.cost_usd == 0 and hit.decisions["cache"]["saved_usd"] == str(first.cost)


async def test_a_budget_refusal_raises_rate_limited(
    settings: Settings, key: str, ledger: Callable[[str], UsageRecord | None]
) -> None:
    made = CliRunner().invoke(
        cli,
        ["budgets", "create", "tiny", "--team", "search", "--usd", "0.000001", "--db", settings.db],
    )
    assert made.exit_code == 0, made.output
    async with Pipeline(settings) as p:
        with pytest.raises(RateLimited) as info:
            await p.chat_completions(CHAT, key=key)
        with pytest.raises(RateLimited):
            await p.stream_chat_completions(CHAT, key=key)
    exc = info.value
    assert exc.status == 429 and exc.type == "rate_limit_error" and "tiny" in exc.message
    assert exc.request_id is not None
    rec = ledger(exc.request_id)  # the refusal is in the ledger, as over HTTP
    assert rec is not None and rec.status == 429 and rec.cost_usd is None


async def test_bad_requests_are_invalid_request_errors(pipeline: Pipeline, key: str) -> None:
    with pytest.raises(InvalidRequest, match="messages"):
        await pipeline.chat_completions({"model": "gpt-4o"}, key=key)
    with pytest.raises(InvalidRequest, match="max_tokens"):
        await pipeline.messages({"model": CLAUDE, "messages": CHAT["messages"]}, key=key)
    with pytest.raises(InvalidRequest, match="stream_chat_completions"):
        await pipeline.chat_completions({**CHAT, "stream": True}, key=key)
    with pytest.raises(InvalidRequest, match="not JSON"):
        await pipeline.chat_completions({**CHAT, "temperature": {0.5}}, key=key)
    with pytest.raises(InvalidRequest, match="JSON object"):
        await pipeline.embeddings(["not", "a", "dict"], key=key)  # type: ignore[arg-type]


async def test_upstream_errors_are_raised_with_their_status(pipeline: Pipeline, key: str) -> None:
    with pytest.raises(UpstreamStatusError) as info:
        await pipeline.chat_completions(chat("hi [[fake:status=400]]"), key=key)
    assert info.value.status == 400 and info.value.request_id


async def test_an_upstream_refusal_carries_its_own_message_code_and_param(
    pipeline: Pipeline, key: str
) -> None:
    with pytest.raises(UpstreamStatusError) as info:
        await pipeline.chat_completions(chat("hi [[fake:too_long]]"), key=key)
    exc = info.value
    assert (exc.status, exc.code, exc.param) == (400, "context_length_exceeded", "messages")
    assert exc.message.startswith("This model's maximum context length is 128000 tokens.")
    assert str(exc) == f"upstream openai returned 400: {exc.message}"  # for logs


async def test_a_pipeline_from_a_config_file(
    fake: Fake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOKENOMY_DB", str(tmp_path / "from-env.db"))
    monkeypatch.setenv("UPSTREAM_KEY", "sk-upstream-secret-abcdef")
    config = tmp_path / "tokenomy.yaml"
    config.write_text(
        "require_key: false\n"
        "models:\n"
        f"  - {{name: '*', provider: openai, base_url: '{fake.url}/v1', api_key_env: UPSTREAM_KEY}}\n"
    )
    async with Pipeline(config) as p:
        result = await p.chat_completions(CHAT)
    assert p.settings.db == str(tmp_path / "from-env.db")  # TOKENOMY_ variables apply
    with open_store(p.settings.db) as store:
        assert store.get_record(result.request_id) is not None


async def test_a_pipeline_must_be_open_to_take_calls(settings: Settings) -> None:
    p = Pipeline(settings)
    with pytest.raises(RuntimeError, match="not started"):
        await p.chat_completions(CHAT)
    async with p:
        pass
    with pytest.raises(RuntimeError, match="closed"):
        await p.chat_completions(CHAT)
    with pytest.raises(RuntimeError, match="closed"):
        await p.start()
