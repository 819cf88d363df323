"""Provider modules: URLs, headers, usage normalisation, and SSE parsing."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from decimal import Decimal

import orjson
import pytest

from tokenomy.config import Deployment
from tokenomy.errors import ConfigError
from tokenomy.pricing import PriceBook
from tokenomy.providers import create_provider, provider_names
from tokenomy.providers.anthropic import anthropic_usage, is_search_result
from tokenomy.providers.base import ErrorDetails, error_name
from tokenomy.providers.openai import openai_usage
from tokenomy.providers.retry import MAX_WAIT_S, asked_wait, retry_delay, should_retry
from tokenomy.sse import SSEParser, frame
from tokenomy.translate._common import openai_usage_to_anthropic
from tokenomy.usage import Usage


def test_openai_compatible_flavours_share_one_base() -> None:
    names = provider_names()
    assert {"openai", "azure", "anthropic", "groq", "vllm", "ollama", "llamacpp"} <= set(names)
    groq = create_provider(Deployment("m", "groq", api_key="k"))
    assert groq.url("chat", "m") == "https://api.groq.com/openai/v1/chat/completions"
    assert groq.headers({}) == {"authorization": "Bearer k"}
    assert groq.pricing_provider == "groq" and groq.api == "openai"
    assert create_provider(Deployment("m", "llamacpp")).stream_usage is False
    with pytest.raises(ConfigError):
        create_provider(Deployment("m", "nope"))


def test_azure_urls_and_header() -> None:
    az = create_provider(
        Deployment(
            "gpt-4o",
            "azure",
            base_url="https://x.openai.azure.com",
            api_key="k",
            extra={"api_version": "2024-10-21"},
        )
    )
    assert az.url("chat", "prod-4o") == (
        "https://x.openai.azure.com/openai/deployments/prod-4o/chat/completions?api-version=2024-10-21"
    )
    assert az.headers({}) == {"api-key": "k"}


def test_anthropic_headers_pass_version_and_beta() -> None:
    p = create_provider(Deployment("claude-*", "anthropic", api_key="k"))
    h = p.headers(
        {"anthropic-beta": "x", "anthropic-version": "2023-06-01", "authorization": "Bearer leak"}
    )
    assert h == {"anthropic-version": "2023-06-01", "anthropic-beta": "x", "x-api-key": "k"}
    assert p.url("chat", "claude-haiku-4-5") == "https://api.anthropic.com/v1/messages"


def test_openai_usage_includes_cached_and_reasoning() -> None:
    u = openai_usage(
        {
            "prompt_tokens": 100,
            "completion_tokens": 50,
            "prompt_tokens_details": {"cached_tokens": 60},
            "completion_tokens_details": {"reasoning_tokens": 30},
        }
    )
    assert u == Usage(input_tokens=100, output_tokens=50, cache_read_tokens=60, reasoning_tokens=30)
    assert u.uncached_input_tokens == 40
    assert openai_usage(None) is None


M = 1_000_000


def test_openai_cache_writes_are_part_of_the_prompt_like_cache_reads() -> None:
    """``cache_write_tokens`` (chat's ``prompt_tokens_details``, the Responses API's
    ``input_tokens_details``) is inside the prompt count: the fresh input excludes
    it, so each prompt token is billed once. Missed, gpt-5.6-terra's writes would
    be billed at its $2 input rate instead of $2.50."""
    chat = {
        "prompt_tokens": 2600,
        "completion_tokens": 10,
        "prompt_tokens_details": {"cached_tokens": 2000, "cache_write_tokens": 400},
    }
    responses = {
        "input_tokens": 2600,
        "output_tokens": 10,
        "input_tokens_details": {
            "cached_tokens": 2000,
            "cache_write_tokens": 400,
            "cache_write_tokens_details": {"ttl_30m_tokens": 300, "ttl_12h_tokens": 100},
        },
    }
    want = Usage(input_tokens=2600, output_tokens=10, cache_read_tokens=2000,
                 cache_write_tokens=400)  # fmt: skip
    for raw in (chat, responses):
        u = openai_usage(raw)
        assert u == want and u is not None and u.uncached_input_tokens == 200
    at = datetime(2026, 9, 1, tzinfo=UTC)  # after the 2026-07-30 price cut
    cost = PriceBook().cost(want, model="gpt-5.6-terra", provider="openai", at=at)
    assert cost.total == (200 * 2 + 2000 * Decimal("0.2") + 400 * Decimal("2.5") + 10 * 12) / M
    unreported = {"prompt_tokens": 5, "prompt_tokens_details": {"cache_write_tokens": None}}
    assert openai_usage(unreported) == Usage(input_tokens=5)


def test_openai_usage_reads_the_cache_fields_of_compatible_servers() -> None:
    """DeepSeek reports cache hits as ``prompt_cache_hit_tokens`` (within
    ``prompt_tokens``); Responses-style servers use ``input_tokens_details``. Missed,
    the hits would be priced as fresh input: deepseek-chat's is 0.27 against 0.07."""
    deepseek = {"prompt_tokens": 1000, "completion_tokens": 10, "prompt_cache_hit_tokens": 800,
                "prompt_cache_miss_tokens": 200}  # fmt: skip
    u = openai_usage(deepseek)
    assert u == Usage(input_tokens=1000, output_tokens=10, cache_read_tokens=800)
    at = datetime(2025, 9, 1, 12, tzinfo=UTC)  # deepseek's daytime (standard) price
    cost = PriceBook().cost(u, model="deepseek-chat", provider="deepseek", at=at)
    # 200 fresh at $0.27, 800 cached at $0.07, 10 out at $1.10 per million
    assert cost.total == (200 * Decimal("0.27") + 800 * Decimal("0.07") + 10 * Decimal("1.1")) / M
    both = {**deepseek, "prompt_tokens_details": {"cached_tokens": 700}}
    assert openai_usage(both) == Usage(1000, 10, cache_read_tokens=700)  # OpenAI's own wins
    responses = {"input_tokens": 50, "output_tokens": 9,
                 "input_tokens_details": {"cached_tokens": 20},
                 "output_tokens_details": {"reasoning_tokens": 4}}  # fmt: skip
    assert openai_usage(responses) == Usage(50, 9, cache_read_tokens=20, reasoning_tokens=4)
    assert openai_usage_to_anthropic(deepseek) == {
        "input_tokens": 200, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 800,
        "output_tokens": 10,
    }  # fmt: skip


def test_anthropic_usage_adds_cache_tokens_and_splits_ttl() -> None:
    u = anthropic_usage(
        {
            "input_tokens": 10,
            "cache_read_input_tokens": 200,
            "cache_creation_input_tokens": 300,
            "cache_creation": {"ephemeral_5m_input_tokens": 100, "ephemeral_1h_input_tokens": 200},
            "output_tokens": 7,
        }
    )
    assert u == Usage(
        input_tokens=510, output_tokens=7, cache_read_tokens=200, cache_write_tokens=100,
        cache_write_1h_tokens=200,
    )  # fmt: skip
    # without the breakdown every write is a 5-minute write
    u2 = anthropic_usage({"input_tokens": 1, "cache_creation_input_tokens": 5, "output_tokens": 1})
    assert u2 is not None and (u2.cache_write_tokens, u2.cache_write_1h_tokens) == (5, 0)


def test_usage_keeps_the_tier_that_sets_the_price() -> None:
    """OpenAI reports ``service_tier`` next to ``usage``; Anthropic reports fast mode
    as ``usage.speed``. Standard tiers select the standard price: nothing is kept."""
    u = {"prompt_tokens": 10, "completion_tokens": 5}
    assert openai_usage(u, "priority") == Usage(
        10, 5, price_context=(("service_tier", "priority"),)
    )
    assert openai_usage(u, "flex") == Usage(10, 5, price_context=(("service_tier", "flex"),))
    assert openai_usage(u, "default") == openai_usage(u, None) == Usage(10, 5)
    provider = create_provider(Deployment("gpt-5", "openai", api_key="k"))
    assert provider.usage({"usage": u, "service_tier": "flex"}) == openai_usage(u, "flex")
    a = {"input_tokens": 10, "output_tokens": 5}
    assert anthropic_usage({**a, "speed": "fast"}) == Usage(
        10, 5, price_context=(("speed", "fast"),)
    )
    assert anthropic_usage({**a, "speed": "standard", "service_tier": "standard"}) == Usage(10, 5)


def test_sse_parser_handles_splits_crlf_comments_and_multiline() -> None:
    p = SSEParser()
    wire = b': comment\r\nevent: message_start\r\ndata: {"a":\r\ndata: 1}\r\n\r\ndata: [DONE]\n\n'
    events = []
    for i in range(len(wire)):  # one byte at a time
        events += p.feed(wire[i : i + 1])
    assert [(e.event, e.data) for e in events] == [
        ("message_start", b'{"a":\n1}'),
        (None, b"[DONE]"),
    ]
    assert not p.buffered
    p.feed(b"data: {trunc")
    assert p.buffered
    assert frame(b"{}", "ping") == b"event: ping\ndata: {}\n\n"


def test_usage_read_back_from_json_keeps_its_tier() -> None:
    """Cache entries and the ledger's fallback file store usage as JSON: the tier
    comes back as lists, and must compare (and price) as the tuple it was."""
    u = Usage(10, 5, price_context=(("service_tier", "flex"),))
    back = Usage(**orjson.loads(orjson.dumps(dataclasses.asdict(u))))
    assert back == u and back.price_context == (("service_tier", "flex"),)


def test_audio_tokens_and_web_searches_are_read() -> None:
    """OpenAI's audio tokens are subsets of the prompt and completion counts;
    Anthropic's web searches are billed per search. Dropped, audio would be priced
    at the text rate (gpt-audio: $2.50 against $32 per million) and searches free."""
    u = openai_usage(
        {
            "prompt_tokens": 120,
            "completion_tokens": 80,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 100},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 64},
        }
    )
    assert u == Usage(120, 80, audio_input_tokens=100, audio_output_tokens=64)
    a = anthropic_usage(
        {"input_tokens": 10, "output_tokens": 5, "server_tool_use": {"web_search_requests": 2}}
    )
    assert a == Usage(10, 5, web_search_requests=2)
    assert anthropic_usage({"input_tokens": 1, "server_tool_use": None}) == Usage(1)


def test_an_anthropic_search_is_billed_once_its_result_came() -> None:
    """What a stream cut before its final usage bills as searches: the results
    relayed; not the call (its result may never come) nor a search that failed."""
    call = {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}}
    found = {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []}
    failed = {
        **found,
        "content": {"type": "web_search_tool_result_error", "error_code": "max_uses_exceeded"},
    }
    fetched = {"type": "web_fetch_tool_result", "tool_use_id": "srvtoolu_2", "content": {}}
    assert is_search_result(found)
    assert not any(map(is_search_result, (call, failed, fetched, None, "text")))


def test_usage_extras_add_up_and_survive_json() -> None:
    one = Usage(10, 5, audio_input_tokens=4, audio_output_tokens=3, web_search_requests=1)
    two = Usage(20, 6, audio_input_tokens=1, web_search_requests=2)
    assert one + two == Usage(
        30, 11, audio_input_tokens=5, audio_output_tokens=3, web_search_requests=3
    )
    back = Usage(**orjson.loads(orjson.dumps(dataclasses.asdict(one))))
    assert back == one
    # A cache entry or fallback line written before these fields existed still loads.
    assert Usage(**{"input_tokens": 10, "output_tokens": 5}) == Usage(10, 5)


def test_the_upstreams_retry_verdict_overrides_the_status() -> None:
    assert should_retry(503, {}) and should_retry(429, {}) and not should_retry(400, {})
    assert not should_retry(503, {"x-should-retry": "false"})
    assert should_retry(400, {"x-should-retry": "True"})
    assert should_retry(503, {"x-should-retry": "maybe"})  # unreadable: the status decides


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        ({}, None),
        ({"retry-after": "2"}, 2.0),
        ({"retry-after": "0.5"}, 0.5),
        ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5),  # the finer one wins
        ({"retry-after-ms": "soon", "retry-after": "9"}, 9.0),
        ({"retry-after": "Wed, 21 Oct 2015 07:28:10 GMT"}, 10.0),  # an HTTP date
        ({"retry-after": "Wed, 21 Oct 2015 07:27:00 GMT"}, 0.0),  # already past
        ({"retry-after": "-3"}, None),
        ({"retry-after": "nan"}, None),
        ({"retry-after": "inf"}, None),
        ({"retry-after": "tomorrow"}, None),
    ],
)
def test_the_wait_an_upstream_asks_for(headers: dict[str, str], wait: float | None) -> None:
    now = 1445412480.0  # Wed, 21 Oct 2015 07:28:00 GMT
    assert asked_wait(headers, now=now) == wait


def test_retry_delay_waits_what_the_upstream_asks_unless_it_is_too_long() -> None:
    assert retry_delay(400, {}, 0, 0.01) is None
    assert retry_delay(503, {"x-should-retry": "false", "retry-after": "1"}, 0, 0.01) is None
    assert retry_delay(429, {"retry-after": "2"}, 0, 0.01) == 2.0
    assert retry_delay(429, {"retry-after": str(MAX_WAIT_S + 1)}, 0, 0.01) is None
    delay = retry_delay(503, {}, 2, 0.01)  # the backoff: 0.04, jittered by 0.5 to 1.5
    assert delay is not None and 0.02 <= delay <= 0.06


def test_the_upstream_request_id_is_read_and_only_if_it_looks_like_one() -> None:
    oai, claude = (
        create_provider(Deployment("m", "openai")),
        create_provider(Deployment("c", "anthropic")),
    )
    assert oai.request_id({"x-request-id": "req_abc123"}) == "req_abc123"
    assert claude.request_id({"request-id": "req_011CX"}) == "req_011CX"
    assert claude.request_id({"x-request-id": "req_abc123"}) is None
    assert oai.request_id({}) is None
    assert oai.request_id({"x-request-id": "two words"}) is None
    assert oai.request_id({"x-request-id": "x" * 201}) is None


PAGE = b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"


@pytest.mark.parametrize(
    ("raw", "content_type", "said"),
    [
        (PAGE, "text/html; charset=utf-8", "text/html"),  # parameters left out
        (PAGE, "Text/HTML", "Text/HTML"),  # as sent
        (b"Bad Gateway", None, "no content type"),
        (PAGE, "<b>not a media type</b>", "no content type"),  # not repeated
        (PAGE, "text/" + "h" * 100, "no content type"),
        (b"", "text/html", "empty body"),
        (b'{"detail": "Bad Gateway"}', "application/json", "application/json"),  # not the API's
        (b'"Bad Gateway"', "application/json", "application/json"),
    ],
)
def test_an_error_reply_that_is_no_api_error_body_is_described_not_quoted(
    raw: bytes, content_type: str | None, said: str
) -> None:
    headers = {} if content_type is None else {"content-type": content_type}
    for prov in (
        create_provider(Deployment("gpt-4o", "openai")),
        create_provider(Deployment("claude-*", "anthropic")),
    ):
        details = prov.refusal_details(502, raw, headers)
        said_by = f"upstream {prov.name} returned HTTP 502 ({said}, not an API error body)"
        assert details == ErrorDetails(said_by)


def test_an_api_error_body_is_read_as_before() -> None:
    oai = create_provider(Deployment("gpt-4o", "openai"))
    body = b'{"error": {"message": "m", "type": "server_error", "code": "c", "param": null}}'
    assert oai.refusal_details(500, body, {"content-type": "text/plain"}) == ErrorDetails(
        "m", "server_error", "c"
    )
    assert oai.refusal_details(500, b'{"error": "bare"}', {}) == ErrorDetails("bare")


def test_an_error_name_is_a_short_printable_string() -> None:
    assert error_name("context_length_exceeded") == "context_length_exceeded"
    for odd in ("", "x" * 201, "bad\x00name", "two\nlines", 400, None):
        assert error_name(odd) is None
