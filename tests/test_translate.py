"""Translation between OpenAI Chat Completions and Anthropic Messages.

Payloads follow the shapes in the providers' API references; outputs are checked
exactly, and against the official SDKs' response and stream-event types.
"""

from __future__ import annotations

import json
from typing import Any

import pydantic
import pytest
from anthropic.types import Message, RawMessageStreamEvent
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from tokenomy import translate
from tokenomy.translate import (
    AnthropicToOpenAIStream,
    OpenAIToAnthropicStream,
    TranslationError,
    UpstreamStreamError,
    anthropic_request_to_openai,
    anthropic_response_to_openai,
    openai_request_to_anthropic,
    openai_response_to_anthropic,
)

ANTHROPIC_EVENT = pydantic.TypeAdapter(RawMessageStreamEvent)

WEATHER_SCHEMA = {
    "type": "object",
    "properties": {
        "location": {"type": "string", "description": "The city and state"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["location"],
}
TIME_SCHEMA = {"type": "object", "properties": {"tz": {"type": "string"}}}
OPENAI_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the current weather in a given location",
            "parameters": WEATHER_SCHEMA,
        },
    },
    {"type": "function", "function": {"name": "get_time", "parameters": TIME_SCHEMA}},
]
ANTHROPIC_TOOLS = [
    {
        "name": "get_weather",
        "description": "Get the current weather in a given location",
        "input_schema": WEATHER_SCHEMA,
    },
    {"name": "get_time", "input_schema": TIME_SCHEMA},
]
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="


def test_exported_members() -> None:
    assert all(hasattr(translate, name) for name in translate.__all__)
    assert translate.__doc__ is not None
    for name in translate.__all__:  # the package docstring documents the whole API
        assert name in translate.__doc__
    assert issubclass(TranslationError, ValueError)
    assert issubclass(UpstreamStreamError, TranslationError)


# --- OpenAI request -> Anthropic request ------------------------------------------


def test_openai_request_multi_turn_with_tools_images_and_system() -> None:
    body = {
        "model": "claude-sonnet-4-5",
        "messages": [
            {"role": "system", "content": "You are a weather bot."},
            {"role": "developer", "content": [{"type": "text", "text": "Use metric units."}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Weather in Paris? And what is in this picture?"},
                    {
                        "type": "image_url",
                        "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "low"},
                    },
                    {"type": "image_url", "image_url": {"url": "https://example.com/sky.jpg"}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_abc",
                        "type": "function",
                        "function": {
                            "name": "get_weather",
                            "arguments": '{"location": "Paris, France"}',
                        },
                    },
                    {
                        "id": "call_def",
                        "type": "function",
                        "function": {"name": "get_time", "arguments": '{"tz":"Europe/Paris"}'},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "call_abc", "content": "18°C, cloudy"},
            {
                "role": "tool",
                "tool_call_id": "call_def",
                "content": [{"type": "text", "text": "14:05"}],
            },
            {"role": "user", "content": "Thanks. Short answer please."},
        ],
        "tools": OPENAI_TOOLS,
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "max_completion_tokens": 512,
        "temperature": 1.4,
        "top_p": 0.9,
        "stop": ["\n", "END"],
        "user": "user-123",
        "stream": True,
        "stream_options": {"include_usage": True},
        "seed": 7,
        "frequency_penalty": 0.5,
        "presence_penalty": 0.1,
        "logprobs": True,
        "top_logprobs": 2,
        "logit_bias": {"50256": -100},
        "store": False,
        "n": 1,
    }
    snapshot = json.dumps(body)
    assert openai_request_to_anthropic(body) == {
        "model": "claude-sonnet-4-5",
        "system": [
            {"type": "text", "text": "You are a weather bot."},
            {"type": "text", "text": "Use metric units."},
        ],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Weather in Paris? And what is in this picture?"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                    },
                    {
                        "type": "image",
                        "source": {"type": "url", "url": "https://example.com/sky.jpg"},
                    },
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {
                        "type": "tool_use",
                        "id": "call_abc",
                        "name": "get_weather",
                        "input": {"location": "Paris, France"},
                    },
                    {
                        "type": "tool_use",
                        "id": "call_def",
                        "name": "get_time",
                        "input": {"tz": "Europe/Paris"},
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "call_abc", "content": "18°C, cloudy"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "call_def",
                        "content": [{"type": "text", "text": "14:05"}],
                    },
                    {"type": "text", "text": "Thanks. Short answer please."},
                ],
            },
        ],
        "max_tokens": 512,
        "temperature": 1.0,  # capped; top_p is left out (Claude refuses the pair)
        "stop_sequences": ["END"],
        "tools": ANTHROPIC_TOOLS,
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "metadata": {"user_id": "user-123"},
        "stream": True,
    }
    assert json.dumps(body) == snapshot  # the input is not mutated


def test_openai_request_minimal() -> None:
    out = openai_request_to_anthropic(
        {"model": "m", "messages": [{"role": "user", "content": "Hello"}]}
    )
    assert out == {
        "model": "m",
        "messages": [{"role": "user", "content": "Hello"}],
        "max_tokens": 4096,
    }
    small = openai_request_to_anthropic(
        {"model": "m", "messages": [{"role": "user", "content": "Hi"}]}, default_max_tokens=100
    )
    assert small["max_tokens"] == 100


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"max_tokens": 50}, 50),
        ({"max_completion_tokens": 70, "max_tokens": 50}, 70),
        ({"max_tokens": None}, 4096),
    ],
)
def test_openai_request_max_tokens(params: dict[str, Any], expected: int) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], **params}
    assert openai_request_to_anthropic(body)["max_tokens"] == expected


@pytest.mark.parametrize(
    ("stop", "expected"),
    [
        ("END", ["END"]),
        (["a", "b"], ["a", "b"]),
        (["\n", " "], None),
        (None, None),
    ],
)
def test_openai_request_stop(stop: Any, expected: list[str] | None) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], "stop": stop}
    assert openai_request_to_anthropic(body).get("stop_sequences") == expected


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        ("auto", None, {"type": "auto"}),
        ("required", None, {"type": "any"}),
        ("none", None, {"type": "none"}),
        (
            {"type": "function", "function": {"name": "get_time"}},
            None,
            {"type": "tool", "name": "get_time"},
        ),
        (None, None, None),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        ("none", False, {"type": "none"}),
        (
            {"type": "function", "function": {"name": "get_time"}},
            False,
            {"type": "tool", "name": "get_time", "disable_parallel_tool_use": True},
        ),
        ("auto", True, {"type": "auto"}),
    ],
)
def test_openai_request_tool_choice(choice: Any, parallel: Any, expected: Any) -> None:
    body: dict[str, Any] = {
        "model": "m",
        "messages": [{"role": "user", "content": "x"}],
        "tools": OPENAI_TOOLS,
    }
    if choice is not None:
        body["tool_choice"] = choice
    if parallel is not None:
        body["parallel_tool_calls"] = parallel
    assert openai_request_to_anthropic(body).get("tool_choice") == expected


def test_openai_request_tool_choice_without_tools_is_dropped() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], "tool_choice": "auto"}
    out = openai_request_to_anthropic(body)
    assert "tool_choice" not in out
    assert "tools" not in out


def test_openai_request_allowed_tools_and_legacy_functions() -> None:
    base = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    allowed = openai_request_to_anthropic(
        {
            **base,
            "tools": OPENAI_TOOLS,
            "tool_choice": {
                "type": "allowed_tools",
                "allowed_tools": {
                    "mode": "required",
                    "tools": [{"type": "function", "function": {"name": "get_time"}}],
                },
            },
        }
    )
    assert allowed["tools"] == [ANTHROPIC_TOOLS[1]]
    assert allowed["tool_choice"] == {"type": "any"}

    legacy = openai_request_to_anthropic(
        {
            **base,
            "functions": [f["function"] for f in OPENAI_TOOLS],
            "function_call": {"name": "get_weather"},
        }
    )
    assert legacy["tools"] == ANTHROPIC_TOOLS
    assert legacy["tool_choice"] == {"type": "tool", "name": "get_weather"}


def test_openai_request_merges_same_role_and_drops_empty_messages() -> None:
    out = openai_request_to_anthropic(
        {
            "model": "m",
            "messages": [
                {"role": "user", "content": "first"},
                {"role": "user", "content": [{"type": "text", "text": "second"}]},
                {"role": "assistant", "content": ""},
                {"role": "user", "content": "third"},
                {"role": "assistant", "content": [{"type": "text", "text": "A"}]},
                {"role": "assistant", "content": "B"},
            ],
        }
    )
    assert out["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "first"},
                {"type": "text", "text": "second"},
                {"type": "text", "text": "third"},
            ],
        },
        {
            "role": "assistant",
            "content": [{"type": "text", "text": "A"}, {"type": "text", "text": "B"}],
        },
    ]


@pytest.mark.parametrize(
    ("prefill", "expected"),
    [
        ("The answer is ", [{"role": "assistant", "content": "The answer is"}]),
        ("  ", []),
    ],
)
def test_openai_request_trims_the_prefill(prefill: str, expected: list[Any]) -> None:
    """Anthropic rejects a final assistant message that ends in whitespace."""
    out = openai_request_to_anthropic(
        {
            "model": "m",
            "messages": [
                {"role": "user", "content": "x"},
                {"role": "assistant", "content": prefill},
            ],
        }
    )
    assert out["messages"][1:] == expected


def test_openai_request_tool_results_go_first_and_ids_are_sanitised() -> None:
    out = openai_request_to_anthropic(
        {
            "model": "m",
            "messages": [
                {"role": "user", "content": "time?"},
                {
                    "role": "assistant",
                    "content": "Checking.",
                    "tool_calls": [
                        {
                            "id": "functions.get_time:0",
                            "type": "function",
                            "function": {"name": "get_time", "arguments": "{not json"},
                        }
                    ],
                },
                {"role": "user", "content": "hurry"},
                {"role": "tool", "tool_call_id": "functions.get_time:0", "content": ""},
            ],
            "tools": OPENAI_TOOLS,
        }
    )
    assert out["messages"][1:] == [
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "functions_get_time_0", "name": "get_time", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "functions_get_time_0"},
                {"type": "text", "text": "hurry"},
            ],
        },
    ]


def test_openai_request_cache_breakpoints() -> None:
    def part(text: str, **extra: Any) -> dict[str, Any]:
        return {"type": "text", "text": text, **extra}

    ephemeral = {"type": "ephemeral"}
    out = openai_request_to_anthropic(
        {
            "model": "m",
            "messages": [
                {"role": "system", "content": [part("sys", cache_control=ephemeral)]},
                {"role": "user", "content": [part("u1", cache_control=ephemeral)]},
                {"role": "assistant", "content": "a1"},
                {
                    "role": "user",
                    "content": [part("u2", prompt_cache_breakpoint={"mode": "explicit"})],
                },
                {"role": "assistant", "content": "a2"},
                {
                    "role": "user",
                    "content": [
                        part("u3", prompt_cache_breakpoint={"mode": "explicit", "ttl": "12h"})
                    ],
                },
                {"role": "assistant", "content": "a3"},
                {"role": "user", "content": [part("u4", cache_control=ephemeral)]},
            ],
        }
    )
    # Five breakpoints in, Anthropic's four out: the earliest one (system) goes.
    assert out["system"] == [{"type": "text", "text": "sys"}]
    assert [m["content"] for m in out["messages"] if m["role"] == "user"] == [
        [part("u1", cache_control=ephemeral)],
        [part("u2", cache_control=ephemeral)],
        [part("u3", cache_control={"type": "ephemeral", "ttl": "1h"})],
        [part("u4", cache_control=ephemeral)],
    ]


def test_openai_request_response_format_becomes_instruction() -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    out = openai_request_to_anthropic(
        {
            "model": "m",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "x"},
            ],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": schema, "strict": True},
            },
        }
    )
    system = out["system"]
    assert system[0] == {"type": "text", "text": "Be brief."}
    assert system[1]["text"].startswith("Respond with a single JSON value")
    assert json.loads(system[1]["text"].split("JSON Schema: ", 1)[1]) == schema

    only = openai_request_to_anthropic(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "x"}],
            "response_format": {"type": "json_object"},
        }
    )
    assert "JSON object" in only["system"]
    plain = openai_request_to_anthropic(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "x"}],
            "response_format": {"type": "text"},
        }
    )
    assert "system" not in plain


def test_openai_request_pdf_file_part() -> None:
    out = openai_request_to_anthropic(
        {
            "model": "m",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "file",
                            "file": {
                                "filename": "report.pdf",
                                "file_data": "data:application/pdf;base64,JVBERi0xLjQK",
                            },
                        },
                        {"type": "text", "text": "Summarise."},
                    ],
                }
            ],
        }
    )
    assert out["messages"][0]["content"][0] == {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0xLjQK"},
        "title": "report.pdf",
    }


@pytest.mark.parametrize(
    "change",
    [
        {"n": 2},
        {"modalities": ["text", "audio"]},
        {"messages": []},
        {"messages": [{"role": "critic", "content": "x"}]},
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "input_audio", "input_audio": {"data": "AAA", "format": "wav"}}
                    ],
                }
            ]
        },
        {
            "messages": [
                {"role": "user", "content": [{"type": "file", "file": {"file_id": "file-abc"}}]}
            ]
        },
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "data:image/png,xyz"}}],
                }
            ]
        },
        {"tools": [{"type": "custom", "custom": {"name": "grammar"}}]},
        {"tool_choice": {"type": "custom", "custom": {"name": "x"}}, "tools": OPENAI_TOOLS},
        {"max_tokens": 0},
    ],
)
def test_openai_request_untranslatable(change: dict[str, Any]) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], **change}
    with pytest.raises(TranslationError):
        openai_request_to_anthropic(body)


def _say(content: Any) -> list[dict[str, Any]]:
    return [{"role": "user", "content": content}]


def _assistant_calls(calls: Any) -> list[dict[str, Any]]:
    return [{"role": "assistant", "content": "ok", "tool_calls": calls}, *_say("x")]


@pytest.mark.parametrize(
    "change",
    [
        {"modalities": 5},
        {"functions": 5},
        {"functions": ["f"]},
        {"tools": [{"type": "function", "function": "f"}]},
        {"tools": OPENAI_TOOLS, "tool_choice": {"type": "function", "function": "f"}},
        {"tools": OPENAI_TOOLS, "tool_choice": {"type": "allowed_tools", "allowed_tools": "f"}},
        {
            "tools": OPENAI_TOOLS,
            "tool_choice": {"type": "allowed_tools", "allowed_tools": {"tools": 5}},
        },
        {
            "tools": OPENAI_TOOLS,
            "tool_choice": {"type": "allowed_tools", "allowed_tools": {"tools": [{"function": 5}]}},
        },
        {
            "tools": OPENAI_TOOLS,
            "tool_choice": {"type": "allowed_tools", "allowed_tools": {"tools": [{"name": [1]}]}},
        },
        {"response_format": {"type": "json_schema", "json_schema": "s"}},
        {"messages": _say([{"type": "image_url", "image_url": 5}])},
        {"messages": _say([{"type": "file", "file": "f"}])},
        {"messages": _assistant_calls(5)},
        {"messages": _assistant_calls([{"id": "c", "type": "function", "function": "f"}])},
        {"messages": [{"role": "assistant", "function_call": {"name": [1]}}, *_say("x")]},
        {"messages": [*_say("x"), {"role": "function", "name": [1], "content": "r"}]},
        {"messages": [*_say("x"), {"role": "assistant", "content": [{"type": "text", "text": 5}]}]},
        {"messages": [{"role": "system", "content": [{"type": "text", "text": 5}]}, *_say("x")]},
    ],
)
def test_openai_request_of_wrong_types_is_a_translation_error(change: dict[str, Any]) -> None:
    """A wrong type deep in a request is the client's mistake (a 400), not a crash."""
    body = {"model": "m", "messages": _say("x"), **change}
    with pytest.raises(TranslationError):
        openai_request_to_anthropic(body)


# --- Anthropic response -> OpenAI response ----------------------------------------

ANTHROPIC_TOOL_RESPONSE: dict[str, Any] = {
    "id": "msg_01Aq9w938a90dw8q",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5-20250929",
    "content": [
        {
            "type": "thinking",
            "thinking": "The user wants the weather; I should call the tool.",
            "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds",
        },
        {"type": "text", "text": "I'll check the current weather in Paris for you."},
        {
            "type": "tool_use",
            "id": "toolu_01A09q90qw90lq917835lq9",
            "name": "get_weather",
            "input": {"location": "Paris, France", "unit": "celsius"},
        },
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 472,
        "cache_creation_input_tokens": 100,
        "cache_read_input_tokens": 2048,
        "output_tokens": 89,
    },
}


def test_anthropic_response_to_openai() -> None:
    out = anthropic_response_to_openai(ANTHROPIC_TOOL_RESPONSE, model="claude-sonnet", created=1)
    assert out == {
        "id": "chatcmpl-01Aq9w938a90dw8q",
        "object": "chat.completion",
        "created": 1,
        "model": "claude-sonnet",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "I'll check the current weather in Paris for you.",
                    "refusal": None,
                    "tool_calls": [
                        {
                            "id": "toolu_01A09q90qw90lq917835lq9",
                            "type": "function",
                            "function": {
                                "name": "get_weather",
                                "arguments": '{"location":"Paris, France","unit":"celsius"}',
                            },
                        }
                    ],
                    "reasoning_content": "The user wants the weather; I should call the tool.",
                },
                "logprobs": None,
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {
            "prompt_tokens": 2620,
            "completion_tokens": 89,
            "total_tokens": 2709,
            "prompt_tokens_details": {"cached_tokens": 2048, "cache_write_tokens": 100},
            "completion_tokens_details": {"reasoning_tokens": 0},
        },
    }
    ChatCompletion.model_validate(out)


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("pause_turn", "stop"),
        ("model_context_window_exceeded", "length"),
    ],
)
def test_anthropic_stop_reasons(stop_reason: str, finish_reason: str) -> None:
    resp = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude",
        "content": [{"type": "text", "text": "Hi"}],
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 1},
    }
    out = anthropic_response_to_openai(resp, model="claude")
    assert out["choices"][0]["finish_reason"] == finish_reason
    assert out["usage"] == {
        "prompt_tokens": 10,
        "completion_tokens": 1,
        "total_tokens": 11,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }
    assert isinstance(out["created"], int)
    ChatCompletion.model_validate(out)


def test_anthropic_response_tool_only_and_reasoning_tokens() -> None:
    resp = {
        **ANTHROPIC_TOOL_RESPONSE,
        "content": [ANTHROPIC_TOOL_RESPONSE["content"][2]],
        "usage": {
            "input_tokens": 5,
            "output_tokens": 40,
            "output_tokens_details": {"thinking_tokens": 30},
        },
    }
    out = anthropic_response_to_openai(resp, model="m")
    message = out["choices"][0]["message"]
    assert message["content"] is None
    assert "reasoning_content" not in message
    assert out["usage"]["completion_tokens_details"] == {"reasoning_tokens": 30}
    ChatCompletion.model_validate(out)


# --- Anthropic stream -> OpenAI chunks --------------------------------------------


def anthropic_tool_stream() -> list[tuple[str, dict[str, Any]]]:
    """Text, then two tool calls, as the Messages API streams them."""

    def delta(index: int, **d: Any) -> tuple[str, dict[str, Any]]:
        return "content_block_delta", {"type": "content_block_delta", "index": index, "delta": d}

    def start(index: int, block: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        return "content_block_start", {
            "type": "content_block_start",
            "index": index,
            "content_block": block,
        }

    def stop(index: int) -> tuple[str, dict[str, Any]]:
        return "content_block_stop", {"type": "content_block_stop", "index": index}

    return [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "msg_014p7gG3wDgGV9EUtLvnow3U",
                    "type": "message",
                    "role": "assistant",
                    "model": "claude-sonnet-4-5-20250929",
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {
                        "input_tokens": 472,
                        "cache_creation_input_tokens": 0,
                        "cache_read_input_tokens": 2048,
                        "output_tokens": 2,
                    },
                },
            },
        ),
        start(0, {"type": "text", "text": ""}),
        ("ping", {"type": "ping"}),
        delta(0, type="text_delta", text="Okay"),
        delta(0, type="text_delta", text=", let me check."),
        stop(0),
        start(1, {"type": "tool_use", "id": "toolu_01T1", "name": "get_weather", "input": {}}),
        delta(1, type="input_json_delta", partial_json=""),
        delta(1, type="input_json_delta", partial_json='{"location":'),
        delta(1, type="input_json_delta", partial_json=' "Paris, France"}'),
        stop(1),
        start(2, {"type": "tool_use", "id": "toolu_01T2", "name": "get_time", "input": {}}),
        delta(2, type="input_json_delta", partial_json='{"tz": "Europe/Paris"}'),
        stop(2),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                "usage": {"output_tokens": 89},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]


def _chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-x",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "claude",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        **extra,
    }


def test_anthropic_stream_to_openai_chunks() -> None:
    conv = AnthropicToOpenAIStream("claude", "chatcmpl-x", 1700000000, include_usage=True)
    chunks = [c for name, data in anthropic_tool_stream() for c in conv.feed(name, data)]
    u = {"usage": None}
    assert chunks == [
        _chunk({"role": "assistant", "content": ""}, **u),
        _chunk({"content": "Okay"}, **u),
        _chunk({"content": ", let me check."}, **u),
        _chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "toolu_01T1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    }
                ]
            },
            **u,
        ),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"location":'}}]}, **u),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": ' "Paris, France"}'}}]}, **u),
        _chunk(
            {
                "tool_calls": [
                    {
                        "index": 1,
                        "id": "toolu_01T2",
                        "type": "function",
                        "function": {"name": "get_time", "arguments": ""},
                    }
                ]
            },
            **u,
        ),
        _chunk(
            {"tool_calls": [{"index": 1, "function": {"arguments": '{"tz": "Europe/Paris"}'}}]},
            **u,
        ),
        _chunk({}, "tool_calls", **u),
        {
            "id": "chatcmpl-x",
            "object": "chat.completion.chunk",
            "created": 1700000000,
            "model": "claude",
            "choices": [],
            "usage": {
                "prompt_tokens": 2520,
                "completion_tokens": 89,
                "total_tokens": 2609,
                "prompt_tokens_details": {"cached_tokens": 2048},
                "completion_tokens_details": {"reasoning_tokens": 0},
            },
        },
    ]
    # The raw Anthropic usage, for the meter: message_start's, updated by message_delta.
    assert conv.usage == {
        "input_tokens": 472,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 2048,
        "output_tokens": 89,
    }
    assert conv.finish_reason == "tool_calls"

    state: ChatCompletionStreamState[Any] = ChatCompletionStreamState()
    for c in chunks:
        state.handle_chunk(ChatCompletionChunk.model_validate(c))
    final = state.get_final_completion()
    assert final.choices[0].message.content == "Okay, let me check."
    calls = final.choices[0].message.tool_calls or []
    assert [(c.id, c.function.name, json.loads(c.function.arguments)) for c in calls] == [
        ("toolu_01T1", "get_weather", {"location": "Paris, France"}),
        ("toolu_01T2", "get_time", {"tz": "Europe/Paris"}),
    ]


def test_anthropic_stream_without_usage_chunk() -> None:
    conv = AnthropicToOpenAIStream("claude", "chatcmpl-x", 1700000000, include_usage=False)
    chunks = [c for name, data in anthropic_tool_stream() for c in conv.feed(name, data)]
    assert all("usage" not in c for c in chunks)
    assert chunks[-1] == _chunk({}, "tool_calls")
    assert conv.openai_usage["prompt_tokens"] == 2520


def test_anthropic_stream_cumulative_usage_and_thinking() -> None:
    conv = AnthropicToOpenAIStream("claude", "chatcmpl-x", 1700000000, include_usage=False)
    events: list[tuple[str, dict[str, Any]]] = [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {"usage": {"input_tokens": 10, "output_tokens": 1}},
            },
        ),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "thinking", "thinking": "", "signature": ""},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "thinking_delta", "thinking": "Hmm."},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "signature_delta", "signature": "EqQB"},
            },
        ),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "max_tokens", "stop_sequence": None},
                "usage": {
                    "input_tokens": 10,
                    "cache_read_input_tokens": None,
                    "cache_creation_input_tokens": 30,
                    "output_tokens": 7,
                },
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    chunks = [c for name, data in events for c in conv.feed(name, data)]
    assert [c["choices"][0]["delta"] for c in chunks] == [
        {"role": "assistant", "content": ""},
        {"reasoning_content": "Hmm."},
        {},
    ]
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert conv.usage == {"input_tokens": 10, "cache_creation_input_tokens": 30, "output_tokens": 7}


def test_anthropic_stream_error_event() -> None:
    conv = AnthropicToOpenAIStream("claude", "chatcmpl-x", 1, include_usage=True)
    with pytest.raises(UpstreamStreamError) as info:
        conv.feed(
            "error",
            {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
        )
    assert info.value.error_type == "overloaded_error"
    assert info.value.error == {"type": "overloaded_error", "message": "Overloaded"}
    assert str(info.value) == "Overloaded"
    assert conv.feed("some_future_event", {"type": "some_future_event"}) == []


# --- Anthropic request -> OpenAI request ------------------------------------------


def test_anthropic_request_multi_turn_with_tools_images_and_cache_control() -> None:
    ephemeral = {"type": "ephemeral"}
    body = {
        "model": "gpt-4o",
        "max_tokens": 1024,
        "system": [
            {"type": "text", "text": "You are a weather bot."},
            {"type": "text", "text": "Long cached context.", "cache_control": ephemeral},
        ],
        "messages": [
            {
                "role": "user",
                "content": [
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                    },
                    {
                        "type": "image",
                        "source": {"type": "url", "url": "https://example.com/a.jpg"},
                    },
                    {"type": "text", "text": "Weather here?", "cache_control": ephemeral},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "Need tools.", "signature": "EqQB"},
                    {"type": "text", "text": "Checking."},
                    {
                        "type": "tool_use",
                        "id": "toolu_01A",
                        "name": "get_weather",
                        "input": {"location": "Paris, France"},
                    },
                    {
                        "type": "tool_use",
                        "id": "toolu_01B",
                        "name": "get_time",
                        "input": {"tz": "Europe/Paris"},
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_01A", "content": "18°C"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_01B",
                        "content": [
                            {"type": "text", "text": "14:05"},
                            {
                                "type": "image",
                                "source": {
                                    "type": "base64",
                                    "media_type": "image/png",
                                    "data": PNG,
                                },
                            },
                        ],
                        "is_error": False,
                        "cache_control": ephemeral,
                    },
                    {"type": "text", "text": "And tomorrow?"},
                ],
            },
        ],
        "tools": [
            {**ANTHROPIC_TOOLS[0], "cache_control": ephemeral},
            {**ANTHROPIC_TOOLS[1], "type": "custom"},
        ],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "stop_sequences": ["END"],
        "temperature": 0.2,
        "top_p": 0.9,
        "top_k": 40,
        "metadata": {"user_id": "user-123"},
        "thinking": {"type": "enabled", "budget_tokens": 2000},
        "stream": True,
    }
    snapshot = json.dumps(body)
    data_url = f"data:image/png;base64,{PNG}"
    assert anthropic_request_to_openai(body) == {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "You are a weather bot.\n\nLong cached context."},
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": data_url}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}},
                    {"type": "text", "text": "Weather here?"},
                ],
            },
            {
                "role": "assistant",
                "content": "Checking.",
                "tool_calls": [
                    {
                        "id": "toolu_01A",
                        "type": "function",
                        "function": {
                            "name": "get_weather",
                            "arguments": '{"location":"Paris, France"}',
                        },
                    },
                    {
                        "id": "toolu_01B",
                        "type": "function",
                        "function": {"name": "get_time", "arguments": '{"tz":"Europe/Paris"}'},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_01A", "content": "18°C"},
            {"role": "tool", "tool_call_id": "toolu_01B", "content": "14:05"},
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": data_url}},
                    {"type": "text", "text": "And tomorrow?"},
                ],
            },
        ],
        "max_tokens": 1024,
        "temperature": 0.2,
        "top_p": 0.9,
        "stop": ["END"],
        "tools": OPENAI_TOOLS,
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "user": "user-123",
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    assert json.dumps(body) == snapshot


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, {"tool_choice": "auto"}),
        ({"type": "any"}, {"tool_choice": "required"}),
        ({"type": "none"}, {"tool_choice": "none"}),
        (
            {"type": "tool", "name": "get_time"},
            {"tool_choice": {"type": "function", "function": {"name": "get_time"}}},
        ),
        (
            {"type": "auto", "disable_parallel_tool_use": True},
            {"tool_choice": "auto", "parallel_tool_calls": False},
        ),
        (None, {}),
    ],
)
def test_anthropic_request_tool_choice(choice: Any, expected: dict[str, Any]) -> None:
    body: dict[str, Any] = {
        "model": "m",
        "max_tokens": 10,
        "messages": [{"role": "user", "content": "x"}],
        "tools": ANTHROPIC_TOOLS,
    }
    if choice is not None:
        body["tool_choice"] = choice
    out = anthropic_request_to_openai(body)
    assert {k: out[k] for k in ("tool_choice", "parallel_tool_calls") if k in out} == expected


def test_anthropic_request_simple_and_documents() -> None:
    out = anthropic_request_to_openai(
        {
            "model": "m",
            "max_tokens": 10,
            "system": "Be brief.",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "document",
                            "title": "report.pdf",
                            "source": {
                                "type": "base64",
                                "media_type": "application/pdf",
                                "data": "JVBERi0xLjQK",
                            },
                        },
                        {
                            "type": "document",
                            "source": {"type": "text", "media_type": "text/plain", "data": "Notes"},
                        },
                        {"type": "text", "text": "Summarise."},
                    ],
                },
                {"role": "assistant", "content": [{"type": "thinking", "thinking": "x"}]},
                {"role": "assistant", "content": "Sure"},
            ],
        }
    )
    assert out == {
        "model": "m",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {
                "role": "user",
                "content": [
                    {
                        "type": "file",
                        "file": {
                            "filename": "report.pdf",
                            "file_data": "data:application/pdf;base64,JVBERi0xLjQK",
                        },
                    },
                    {"type": "text", "text": "Notes"},
                    {"type": "text", "text": "Summarise."},
                ],
            },
            {"role": "assistant", "content": "Sure"},
        ],
        "max_tokens": 10,
    }


@pytest.mark.parametrize(
    "change",
    [
        {"messages": []},
        {"messages": [{"role": "system", "content": "x"}]},
        {"tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 5}]},
        {"messages": [{"role": "user", "content": [{"type": "search_result", "title": "t"}]}]},
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}],
                }
            ]
        },
        {"tool_choice": {"type": "sometimes"}, "tools": ANTHROPIC_TOOLS},
        {"output_config": {"format": {"type": "regex", "pattern": "a+"}}},
    ],
)
def test_anthropic_request_untranslatable(change: dict[str, Any]) -> None:
    body = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], **change}
    with pytest.raises(TranslationError):
        anthropic_request_to_openai(body)


@pytest.mark.parametrize(
    "change",
    [
        {"system": [{"type": "text", "text": 5}]},
        {"messages": _say([{"type": []}])},
        {"messages": _say([{"type": "text", "text": 5}])},
        {"messages": _say([{"type": "image", "source": "s"}])},
        {"messages": _say([{"type": "document", "source": 5}])},
        {"messages": [{"role": "assistant", "content": [{"type": "text", "text": 5}]}]},
        {"output_config": "json"},
        {"output_config": {"format": {"type": "json_schema", "schema": "{}"}}},
        {"output_format": ["json_schema"]},
        {
            "messages": _say(
                [
                    {
                        "type": "tool_result",
                        "tool_use_id": "t",
                        "content": [{"type": "text", "text": 5}],
                    }
                ]
            )
        },
    ],
)
def test_anthropic_request_of_wrong_types_is_a_translation_error(change: dict[str, Any]) -> None:
    """A wrong type deep in a request is the client's mistake (a 400), not a crash."""
    body = {"model": "m", "max_tokens": 5, "messages": _say("x"), **change}
    with pytest.raises(TranslationError):
        anthropic_request_to_openai(body)


def test_anthropic_request_structured_output_becomes_response_format() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    expected = {"type": "json_schema", "json_schema": {"name": "output", "schema": schema}}
    body = {"model": "m", "max_tokens": 5, "messages": _say("x")}
    fmt = {"type": "json_schema", "schema": schema}
    for change in ({"output_config": {"format": fmt, "effort": "high"}}, {"output_format": fmt}):
        assert anthropic_request_to_openai({**body, **change})["response_format"] == expected
    assert "response_format" not in anthropic_request_to_openai(
        {**body, "output_config": {"effort": "low"}}
    )


# --- OpenAI response -> Anthropic response ----------------------------------------

OPENAI_TOOL_RESPONSE: dict[str, Any] = {
    "id": "chatcmpl-abc123",
    "object": "chat.completion",
    "created": 1741570283,
    "model": "gpt-4o-2024-08-06",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Let me check.",
                "refusal": None,
                "annotations": [],
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"location":"Paris"}'},
                    },
                    {
                        "id": "call_2",
                        "type": "function",
                        "function": {"name": "get_time", "arguments": '{"tz": "Europe/Pa'},
                    },
                ],
            },
            "logprobs": None,
            "finish_reason": "tool_calls",
        }
    ],
    "usage": {
        "prompt_tokens": 2520,
        "completion_tokens": 89,
        "total_tokens": 2609,
        "prompt_tokens_details": {"cached_tokens": 2048, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    },
    "service_tier": "default",
    "system_fingerprint": "fp_fc9f1d7035",
}


def test_openai_response_to_anthropic() -> None:
    out = openai_response_to_anthropic(OPENAI_TOOL_RESPONSE, model="gpt-4o")
    assert out == {
        "id": "msg_abc123",
        "type": "message",
        "role": "assistant",
        "model": "gpt-4o",
        "content": [
            {"type": "text", "text": "Let me check."},
            {
                "type": "tool_use",
                "id": "call_1",
                "name": "get_weather",
                "input": {"location": "Paris"},
            },
            # Truncated arguments are not valid JSON: the input becomes {}.
            {"type": "tool_use", "id": "call_2", "name": "get_time", "input": {}},
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 472,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 2048,
            "output_tokens": 89,
        },
    }
    Message.model_validate(out)


@pytest.mark.parametrize(
    ("finish", "message", "expected"),
    [
        ("stop", {"content": "Hi"}, "end_turn"),
        ("length", {"content": "Hi"}, "max_tokens"),
        ("content_filter", {"content": ""}, "refusal"),
        ("function_call", {"function_call": {"name": "f", "arguments": "{}"}}, "tool_use"),
        # Some OpenAI-compatible servers finish tool calls with "stop".
        (
            "stop",
            {"tool_calls": [{"id": "c", "type": "function", "function": {"name": "f"}}]},
            "tool_use",
        ),
        ("stop", {"content": None, "refusal": "I can't help with that."}, "refusal"),
        (None, {"content": "Hi"}, "end_turn"),
    ],
)
def test_openai_finish_reasons(finish: Any, message: dict[str, Any], expected: str) -> None:
    resp = {
        "id": "chatcmpl-1",
        "choices": [
            {"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}
        ],
    }
    out = openai_response_to_anthropic(resp, model="m")
    assert out["stop_reason"] == expected
    assert out["usage"]["input_tokens"] == 0
    Message.model_validate(out)


def test_openai_response_empty_content_is_omitted() -> None:
    resp = {
        "id": "x",
        "choices": [{"index": 0, "message": {"content": ""}, "finish_reason": "stop"}],
    }
    out = openai_response_to_anthropic(resp, model="m")
    assert out["content"] == []
    assert out["id"] == "msg_x"


# --- OpenAI stream -> Anthropic events --------------------------------------------


def openai_tool_stream() -> list[dict[str, Any]]:
    """Text, then two parallel tool calls, then the usage chunk, as OpenAI streams them."""

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": "chatcmpl-abc",
            "object": "chat.completion.chunk",
            "created": 1741570283,
            "model": "gpt-4o-2024-08-06",
            "system_fingerprint": "fp_fc9f1d7035",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            "usage": None,
        }

    def call(index: int, **fields: Any) -> dict[str, Any]:
        return {"tool_calls": [{"index": index, **fields}]}

    return [
        chunk({"role": "assistant", "content": "", "refusal": None}),
        chunk({"content": "Let me "}),
        chunk({"content": "check."}),
        chunk(
            call(0, id="call_1", type="function", function={"name": "get_weather", "arguments": ""})
        ),
        chunk(call(0, function={"arguments": '{"location":'})),
        chunk(call(0, function={"arguments": ' "Paris"}'})),
        chunk(
            call(1, id="call_2", type="function", function={"name": "get_time", "arguments": ""})
        ),
        chunk(call(1, function={"arguments": '{"tz":"Europe/Paris"}'})),
        chunk({}, "tool_calls"),
        {
            "id": "chatcmpl-abc",
            "object": "chat.completion.chunk",
            "created": 1741570283,
            "model": "gpt-4o-2024-08-06",
            "system_fingerprint": "fp_fc9f1d7035",
            "choices": [],
            "usage": {
                "prompt_tokens": 2520,
                "completion_tokens": 89,
                "total_tokens": 2609,
                "prompt_tokens_details": {"cached_tokens": 2048, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0},
            },
        },
    ]


def _start(index: int, block: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return "content_block_start", {
        "type": "content_block_start",
        "index": index,
        "content_block": block,
    }


def _delta(index: int, **delta: Any) -> tuple[str, dict[str, Any]]:
    return "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}


def _stop(index: int) -> tuple[str, dict[str, Any]]:
    return "content_block_stop", {"type": "content_block_stop", "index": index}


MESSAGE_START = (
    "message_start",
    {
        "type": "message_start",
        "message": {
            "id": "msg_abc",
            "type": "message",
            "role": "assistant",
            "model": "gpt-4o",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": 0,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "output_tokens": 0,
            },
        },
    },
)


def test_openai_stream_to_anthropic_events() -> None:
    conv = OpenAIToAnthropicStream(model="gpt-4o", message_id="msg_abc")
    events = [e for c in openai_tool_stream() for e in conv.feed(c)]
    tail = conv.finish()
    assert events == [
        MESSAGE_START,
        _start(0, {"type": "text", "text": ""}),
        _delta(0, type="text_delta", text="Let me "),
        _delta(0, type="text_delta", text="check."),
        _stop(0),
        _start(1, {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {}}),
        _delta(1, type="input_json_delta", partial_json='{"location":'),
        _delta(1, type="input_json_delta", partial_json=' "Paris"}'),
        _stop(1),
        _start(2, {"type": "tool_use", "id": "call_2", "name": "get_time", "input": {}}),
        _delta(2, type="input_json_delta", partial_json='{"tz":"Europe/Paris"}'),
    ]
    assert tail == [
        _stop(2),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                "usage": {
                    "input_tokens": 472,
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 2048,
                    "output_tokens": 89,
                },
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    assert conv.finish() == []  # idempotent
    for name, data in events + tail:
        assert ANTHROPIC_EVENT.validate_python(data).type == name

    message = _accumulate(events + tail)
    assert message == {
        **openai_response_to_anthropic(_openai_final(openai_tool_stream()), model="gpt-4o"),
        "id": "msg_abc",
    }
    Message.model_validate(message)


def test_openai_stream_without_usage_and_with_empty_stream() -> None:
    conv = OpenAIToAnthropicStream(model="gpt-4o", message_id="msg_abc")
    chunks = [c for c in openai_tool_stream()[:3] if c["choices"]]
    events = [e for c in chunks for e in conv.feed(c)]
    assert events[-1] == _delta(0, type="text_delta", text="check.")
    assert conv.finish()[1] == (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": 0},
        },
    )

    empty = OpenAIToAnthropicStream(model="gpt-4o", message_id="msg_abc")
    assert [name for name, _ in empty.finish()] == [
        "message_start",
        "message_delta",
        "message_stop",
    ]


def test_openai_stream_text_after_tool_and_missing_indexes() -> None:
    conv = OpenAIToAnthropicStream(model="m", message_id="msg_1")
    chunks: list[dict[str, Any]] = [
        {
            "choices": [
                {
                    "index": 0,
                    "delta": {
                        "tool_calls": [
                            {"id": "c1", "function": {"name": "f", "arguments": {"a": 1}}}
                        ]
                    },
                }
            ]
        },
        {"choices": [{"index": 0, "delta": {"tool_calls": [{"function": {"arguments": ""}}]}}]},
        {"choices": [{"index": 0, "delta": {"content": "done"}, "finish_reason": "stop"}]},
    ]
    events = [e for c in chunks for e in conv.feed(c)]
    assert events[1:] == [
        _start(0, {"type": "tool_use", "id": "c1", "name": "f", "input": {}}),
        _delta(0, type="input_json_delta", partial_json='{"a":1}'),
        _stop(0),
        _start(1, {"type": "text", "text": ""}),
        _delta(1, type="text_delta", text="done"),
    ]
    assert conv.finish()[1][1]["delta"]["stop_reason"] == "tool_use"


# --- Round trips ------------------------------------------------------------------


def test_round_trip_openai_request() -> None:
    """OpenAI -> Anthropic -> OpenAI keeps the conversation and the tools."""
    messages = [
        {"role": "system", "content": "You are a weather bot."},
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"location":"Paris"}'},
                },
                {
                    "id": "call_2",
                    "type": "function",
                    "function": {"name": "get_time", "arguments": '{"tz":"Europe/Paris"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "18°C"},
        {"role": "tool", "tool_call_id": "call_2", "content": "14:05"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "And this one?"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
            ],
        },
        {"role": "assistant", "content": "Sunny."},
    ]
    body = {
        "model": "m",
        "messages": messages,
        "tools": OPENAI_TOOLS,
        "tool_choice": {"type": "function", "function": {"name": "get_time"}},
        "max_tokens": 300,
        "temperature": 0.5,
        "stop": ["END"],
        "user": "u1",
    }
    back = anthropic_request_to_openai(openai_request_to_anthropic(body))
    assert back == {**body, "messages": messages}


def test_round_trip_anthropic_request() -> None:
    body = {
        "model": "m",
        "max_tokens": 300,
        "system": "You are a weather bot.",
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Checking."},
                    {
                        "type": "tool_use",
                        "id": "toolu_1",
                        "name": "get_weather",
                        "input": {"location": "Paris"},
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18°C"},
                    {"type": "text", "text": "Thanks"},
                ],
            },
        ],
        "tools": ANTHROPIC_TOOLS,
        "tool_choice": {"type": "auto"},
        "stop_sequences": ["END"],
        "metadata": {"user_id": "u1"},
    }
    assert openai_request_to_anthropic(anthropic_request_to_openai(body)) == body


def test_round_trip_responses() -> None:
    message = {**ANTHROPIC_TOOL_RESPONSE, "content": ANTHROPIC_TOOL_RESPONSE["content"][1:]}
    back = openai_response_to_anthropic(
        anthropic_response_to_openai(message, model="claude"), model="claude"
    )
    assert back == {**message, "model": "claude"}


def test_round_trip_streams() -> None:
    """OpenAI chunks -> Anthropic events -> OpenAI chunks keeps the text and tool calls."""
    to_anthropic = OpenAIToAnthropicStream(model="gpt-4o", message_id="msg_abc")
    to_openai = AnthropicToOpenAIStream("gpt-4o", "chatcmpl-abc", 1741570283, include_usage=True)
    chunks = []
    events = [e for c in openai_tool_stream() for e in to_anthropic.feed(c)] + to_anthropic.finish()
    for name, data in events:
        chunks.extend(to_openai.feed(name, data))
    state: ChatCompletionStreamState[Any] = ChatCompletionStreamState()
    for c in chunks:
        state.handle_chunk(ChatCompletionChunk.model_validate(c))
    final = state.get_final_completion()
    original = _openai_final(openai_tool_stream())
    assert final.choices[0].message.content == original["choices"][0]["message"]["content"]
    assert final.choices[0].finish_reason == "tool_calls"
    assert [
        (c.id, c.function.name, c.function.arguments)
        for c in final.choices[0].message.tool_calls or []
    ] == [
        (c["id"], c["function"]["name"], c["function"]["arguments"])
        for c in original["choices"][0]["message"]["tool_calls"]
    ]
    assert final.usage is not None
    assert final.usage.prompt_tokens == 2520
    assert final.usage.prompt_tokens_details is not None
    assert final.usage.prompt_tokens_details.cached_tokens == 2048


def _openai_final(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """The chat.completion an OpenAI stream adds up to (one choice)."""
    text, finish, usage = "", None, None
    calls: dict[int, dict[str, Any]] = {}
    for c in chunks:
        usage = c.get("usage") or usage
        for choice in c["choices"]:
            delta = choice["delta"]
            text += delta.get("content") or ""
            for tc in delta.get("tool_calls") or ():
                call = calls.setdefault(
                    tc["index"],
                    {
                        "id": tc.get("id"),
                        "type": "function",
                        "function": {"name": "", "arguments": ""},
                    },
                )
                fn = tc.get("function") or {}
                call["function"]["name"] += fn.get("name") or ""
                call["function"]["arguments"] += fn.get("arguments") or ""
            finish = choice.get("finish_reason") or finish
    message = {"role": "assistant", "content": text, "tool_calls": list(calls.values())}
    return {
        "id": chunks[0]["id"],
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": usage,
    }


def _accumulate(events: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """The message an Anthropic event stream adds up to."""
    message: dict[str, Any] = {}
    partial: dict[int, str] = {}
    for name, data in events:
        if name == "message_start":
            message = {**data["message"], "content": []}
        elif name == "content_block_start":
            message["content"].append(dict(data["content_block"]))
        elif name == "content_block_delta":
            block, delta = message["content"][data["index"]], data["delta"]
            if delta["type"] == "text_delta":
                block["text"] += delta["text"]
            else:
                partial[data["index"]] = partial.get(data["index"], "") + delta["partial_json"]
        elif name == "content_block_stop" and data["index"] in partial:
            message["content"][data["index"]]["input"] = _loads_object(partial[data["index"]])
        elif name == "message_delta":
            message.update(data["delta"])
            message["usage"] = {**message["usage"], **data["usage"]}
    return message


def _loads_object(raw: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}
