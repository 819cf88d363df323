"""What the gateway reads of the Responses API without a server: a request's prompt,
a response's usage and web searches, its text, and which upstreams serve it."""

from __future__ import annotations

from typing import Any

import pytest

from tokenomy.config import Deployment
from tokenomy.errors import ConfigError
from tokenomy.images import count_images
from tokenomy.pipeline.context import OPENAI, Call
from tokenomy.pipeline.exchange import output_text_of
from tokenomy.pipeline.meter import estimate_usage
from tokenomy.providers import create_provider
from tokenomy.providers.openai import response_usage, web_searches
from tokenomy.responses_api import (
    as_messages,
    as_tools,
    item_ids,
    output_text,
    referenced_items,
)
from tokenomy.routing.rules import has_images
from tokenomy.tokens import count_chat_messages, count_text


def test_the_prompt_as_chat_messages() -> None:
    body: dict[str, Any] = {
        "instructions": "Be brief.",
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "weather?"}]},
            {"type": "function_call", "call_id": "c", "name": "get", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c", "output": "sunny"},
            {"type": "reasoning", "id": "rs", "summary": [{"type": "summary_text", "text": "t"}]},
            {"type": "item_reference", "id": "msg_stored"},  # not visible here
            {"id": "msg_stored_too"},  # an item_reference whose type is left out
            {"type": "web_search_call", "id": "ws", "status": "completed", "action": {"q": 1}},
        ],
    }
    assert as_messages(body) == [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": [{"type": "input_text", "text": "weather?"}]},
        {
            "role": "assistant",
            "tool_calls": [{"type": "function", "function": {"name": "get", "arguments": "{}"}}],
        },
        {"role": "tool", "content": "sunny"},
        {"role": "assistant", "content": [{"type": "summary_text", "text": "t"}]},
        {"role": "assistant", "item": {"action": {"q": 1}}},
    ]
    assert as_messages({"input": "hi"}) == [{"role": "user", "content": "hi"}]


def test_the_stored_items_a_request_names() -> None:
    """Items the upstream reads from its storage by their id: item references
    (their ``type`` may be left out, or null) and reasoning items with an id; each
    once, in order. Items sent whole carry their content, whatever their id."""
    body = {
        "input": [
            {"type": "item_reference", "id": "msg_1"},
            {"role": "user", "content": "hi", "id": "msg_inline"},
            {"id": "fc_2"},
            {"type": None, "id": "msg_3"},
            {"type": "reasoning", "id": "rs_4", "summary": [], "encrypted_content": "x"},
            {"type": "reasoning", "summary": []},
            {"type": "message", "id": "msg_5", "role": "assistant", "content": []},
            {"type": "function_call", "id": "fc_6", "call_id": "c", "name": "f", "arguments": ""},
            {"type": "item_reference", "id": "msg_1"},
            {"type": "item_reference", "id": 7},
            "not an item",
        ]
    }
    assert referenced_items(body) == ["msg_1", "fc_2", "msg_3", "rs_4"]
    assert referenced_items({"input": "hi"}) == referenced_items({}) == []


def test_the_ids_of_a_responses_output_items() -> None:
    response = {
        "output": [
            {"type": "reasoning", "id": "rs_1"},
            {"type": "message", "id": "msg_2"},
            {"type": "message", "id": "msg_2"},
            {"type": "message"},
            {"type": "message", "id": ""},
            {"type": "message", "id": "msg_\x00"},  # no ledger text holds a NUL
            {"type": "function_call", "id": 3},
            "junk",
        ]
    }
    assert item_ids(response) == ("rs_1", "msg_2")
    assert item_ids({"output": None}) == item_ids(None) == ()


def test_function_tools_take_the_chat_form() -> None:
    tool = {"type": "function", "name": "get", "description": "d", "parameters": {}, "strict": True}
    search = {"type": "web_search"}
    assert as_tools({"tools": [tool, search]}) == [
        {"type": "function", "function": {"name": "get", "description": "d", "parameters": {}}},
        search,
    ]


def test_images_of_the_input_are_found_and_opaque_data_is_not_text() -> None:
    image = {"type": "input_image", "image_url": "https://x/a.png"}
    screenshot = {"type": "computer_screenshot", "image_url": "data:image/png;base64," + "A" * 9000}
    body: dict[str, Any] = {
        "input": [
            {"role": "user", "content": [image]},
            {"type": "function_call_output", "call_id": "c", "output": [image]},
            {"type": "computer_call_output", "call_id": "c2", "output": screenshot},
            {"type": "image_generation_call", "id": "ig", "result": "B" * 9000},
            {"type": "reasoning", "id": "rs", "summary": [], "encrypted_content": "C" * 9000},
        ]
    }
    assert count_images(body) == 3 and has_images(body)
    assert not has_images({"input": "no image here"})
    tokens = count_chat_messages(as_messages(body), "gpt-4o").tokens
    assert tokens < 100  # the base64 is not counted as text: images are priced as images


def test_usage_and_web_searches_of_a_response() -> None:
    response: dict[str, Any] = {
        "object": "response",
        "service_tier": "flex",
        "usage": {
            "input_tokens": 100,
            "input_tokens_details": {"cached_tokens": 40},
            "output_tokens": 30,
            "output_tokens_details": {"reasoning_tokens": 10},
        },
        "output": [
            {"type": "web_search_call", "action": {"type": "search", "query": "a"}},
            {"type": "web_search_call", "action": {"type": "open_page", "url": "u"}},
            {"type": "web_search_call", "action": {"type": "find_in_page", "pattern": "p"}},
            {"type": "web_search_call", "status": "completed"},  # older replies: no action
            {"type": "message", "content": []},
        ],
    }
    usage = response_usage(response)
    assert usage is not None
    assert (usage.input_tokens, usage.cache_read_tokens) == (100, 40)
    assert (usage.output_tokens, usage.reasoning_tokens) == (30, 10)
    assert usage.price_context == (("service_tier", "flex"),)
    assert usage.web_search_requests == 2  # searches are billed; page actions are not
    # what the response says it is billed for wins over counting its items
    response["tool_usage"] = {"web_search": {"num_requests": 5}}
    assert web_searches(response) == 5
    openai = create_provider(Deployment("gpt-4o", "openai", api_key="k"))
    assert openai.usage(response) == response_usage(response)
    assert response_usage({"object": "response", "usage": None}) is None


def test_the_text_of_a_response() -> None:
    response = {
        "object": "response",
        "output": [
            {"type": "reasoning", "summary": [{"type": "summary_text", "text": "hmm. "}]},
            {"type": "message", "content": [{"type": "output_text", "text": "Hi "},
                                            {"type": "refusal", "refusal": "no"}]},
            {"type": "function_call", "arguments": '{"a": 1}'},
            {"type": "web_search_call"},
        ],
    }  # fmt: skip
    assert output_text(response) == 'hmm. Hi no{"a": 1}'
    assert output_text_of(response, OPENAI) == output_text(response)


def test_a_reply_without_usage_is_estimated_from_the_prompt_and_text() -> None:
    body = {"model": "gpt-4o", "input": "hello there", "instructions": "Be brief."}
    call = Call(OPENAI, "responses", "/v1/responses", body, {})
    call.record.requested_model = call.record.served_model = "gpt-4o"
    usage = estimate_usage(call, "Echo: hello")
    assert usage.estimated
    assert usage.input_tokens == count_chat_messages(as_messages(body), "gpt-4o").tokens
    assert usage.output_tokens == count_text("Echo: hello", "gpt-4o").tokens


def test_which_upstreams_serve_the_responses_api() -> None:
    openai = create_provider(Deployment("m", "openai", api_key="k"))
    assert openai.supports_responses
    assert openai.url("responses", "m") == "https://api.openai.com/v1/responses"
    azure = create_provider(
        Deployment("m", "azure", base_url="https://r.openai.azure.com", api_key="k")
    )
    assert azure.supports_responses
    assert azure.url("responses", "gpt-4o") == "https://r.openai.azure.com/openai/v1/responses"
    counting = azure.url("input_tokens", "gpt-4o")  # token counting: the v1 API too
    assert counting == "https://r.openai.azure.com/openai/v1/responses/input_tokens"
    assert openai.url("input_tokens", "m") == "https://api.openai.com/v1/responses/input_tokens"
    assert not create_provider(Deployment("m", "vllm")).supports_responses
    opted = create_provider(Deployment("m", "vllm", extra={"responses": True}))
    assert opted.supports_responses and opted.url("responses", "m").endswith("/v1/responses")
    assert not create_provider(
        Deployment("m", "openai", extra={"responses": "no"})
    ).supports_responses
    claude = create_provider(Deployment("c", "anthropic", api_key="k", extra={"responses": True}))
    assert not claude.supports_responses  # the gateway does not translate the API
    with pytest.raises(ConfigError, match=r"models\[m\]\.responses"):
        create_provider(Deployment("m", "vllm", extra={"responses": "maybe"}))
