"""`tokenomy count`, through click's CliRunner."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from tokenomy.cli.count import count
from tokenomy.tokens import count_chat_messages


def run(*args: str, input: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(count, list(args), input=input)
    return result.exit_code, result.output


def run_json(*args: str, input: str | None = None) -> dict[str, object]:
    code, output = run(*args, "--format", "json", input=input)
    assert code == 0, output
    data: dict[str, object] = json.loads(output)
    return data


def test_counts_and_prices_text() -> None:
    code, output = run("hello world")
    assert code == 0, output
    assert "2 input tokens (exact, text, model gpt-4o)" in output
    # 2 tokens at $2.50 per million.
    assert "cost: $0.000005 for 2 input tokens" in output


def test_json_output_is_exact_decimal() -> None:
    data = run_json("hello world", "--model", "gpt-4o", "--output-tokens", "1000")
    assert data["input_tokens"] == 2
    assert data["exact"] is True
    assert data["kind"] == "text"
    assert data["cost_usd"] == "0.010005"  # a string: no float rounding on the way out
    assert Decimal(str(data["cost_usd"])) == (2 * Decimal("2.5") + 1000 * 10) / 1_000_000


def test_reads_stdin_and_files(tmp_path: Path) -> None:
    assert run_json(input="hello world")["input_tokens"] == 2
    path = tmp_path / "prompt.txt"
    path.write_text("hello world", encoding="utf-8")
    assert run_json("--file", str(path))["input_tokens"] == 2
    assert run_json("--file", "-", input="hello world")["input_tokens"] == 2


def test_openai_request_file_is_counted_as_chat(tmp_path: Path) -> None:
    body: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "messages": [
            {
                "role": "system",
                "content": "You are a helpful assistant that can answer to questions about the weather.",
            },
            {"role": "user", "content": "What's the weather like in San Francisco?"},
        ],
    }
    path = tmp_path / "request.json"
    path.write_text(json.dumps(body), encoding="utf-8")
    data = run_json("--file", str(path))
    assert data["kind"] == "openai-chat"
    assert data["model"] == "gpt-4o-mini"  # taken from the request
    assert data["exact"] is True
    assert data["input_tokens"] == count_chat_messages(body["messages"], "gpt-4o-mini").tokens
    # --model on the command line wins over the request's model.
    assert run_json("--file", str(path), "--model", "gpt-4")["model"] == "gpt-4"


def test_openai_request_with_tools_matches_the_cookbook_estimate() -> None:
    # The OpenAI cookbook's tools example: 101 prompt tokens on gpt-4o-mini.
    body = {
        "model": "gpt-4o-mini",
        "messages": [
            {
                "role": "system",
                "content": "You are a helpful assistant that can answer to questions about the weather.",
            },
            {"role": "user", "content": "What's the weather like in San Francisco?"},
        ],
        "tools": [
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
        ],
    }
    data = run_json(input=json.dumps(body))
    assert (data["kind"], data["input_tokens"], data["exact"]) == ("openai-chat", 101, False)
    # The same definition through the deprecated `functions` is the same prompt.
    legacy = {
        "model": body["model"],
        "messages": body["messages"],
        "functions": [tool["function"] for tool in body["tools"]],
    }
    data = run_json(input=json.dumps(legacy))
    assert (data["kind"], data["input_tokens"], data["exact"]) == ("openai-chat", 101, False)


def test_anthropic_request_is_estimated() -> None:
    body = {
        "model": "claude-sonnet-4-5",
        "system": "Be brief.",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "Hello"}],
    }
    data = run_json(input=json.dumps(body))
    assert data["kind"] == "anthropic-messages"
    assert data["exact"] is False
    assert data["price_source"] == "genai-prices"
    _, output = run(input=json.dumps(body))
    assert "estimated, anthropic-messages" in output


def test_images_add_their_likely_cost_as_the_meter_does() -> None:
    """Each image adds what a 1024x1024 image costs the model at its detail
    (`tokenomy.images`), as the gateway's estimate of a request without usage."""
    text = [{"type": "text", "text": "What is in this picture?"}]
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    low = {"type": "image_url", "image_url": {"url": "https://x/a.png", "detail": "low"}}
    messages = [{"role": "user", "content": [*text, image, low]}]
    body = {"model": "gpt-4o", "messages": messages}
    data = run_json(input=json.dumps(body))
    text_only = count_chat_messages(messages, "gpt-4o").tokens
    # gpt-4o: 85 + 4 tiles of 170 at the default detail, 85 at "low".
    assert (data["input_tokens"], data["exact"]) == (text_only + 765 + 85, False)
    claude_image = {"type": "image", "source": {"type": "url", "url": "https://x/a.png"}}
    claude = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": [*text, claude_image]}],
    }
    without = {**claude, "messages": [{"role": "user", "content": text}]}
    with_image = run_json(input=json.dumps(claude))["input_tokens"]
    assert with_image == run_json(input=json.dumps(without))["input_tokens"] + 1398  # type: ignore[operator]


def test_unknown_model_has_unknown_price() -> None:
    code, output = run("hello", "--model", "my-llama", "--provider", "ollama")
    assert code == 0, output
    assert "estimated" in output
    assert "cost: price unknown" in output
    data = run_json("hello", "--model", "my-llama", "--provider", "ollama")
    assert data["cost_usd"] is None
    assert data["price_unknown"] is True


def test_json_that_is_not_a_request_is_text() -> None:
    data = run_json('{"a": 1}')
    assert data["kind"] == "text"


def test_clear_errors_without_tracebacks(tmp_path: Path) -> None:
    code, output = run("text", "--file", str(tmp_path / "missing.txt"))
    assert code == 2
    assert "does not exist" in output
    path = tmp_path / "prompt.txt"
    path.write_text("x", encoding="utf-8")
    code, output = run("text", "--file", str(path))
    assert code == 2
    assert "either TEXT or --file" in output
    binary = tmp_path / "blob.bin"
    binary.write_bytes(b"\xff\xfe\x00bad")
    code, output = run("--file", str(binary))
    assert code == 1
    assert "not UTF-8" in output
    code, output = run("--output-tokens", "-5", "x")
    assert code == 2
    code, output = run(input=json.dumps({"messages": ["not an object"]}))
    assert code == 1
    assert "cannot count this request" in output
    assert "Traceback" not in output


def test_help() -> None:
    code, output = run("--help")
    assert code == 0
    assert "--output-tokens" in output
