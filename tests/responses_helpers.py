"""Helpers for tests of the Responses API through the gateway, with the official SDK."""

from __future__ import annotations

from typing import Any

import openai


def create_response(client: openai.OpenAI, stream: bool, **body: Any) -> tuple[Any, str]:
    """A response made through the gateway, JSON or streamed: (the response object,
    the request id of its ledger row)."""
    body = {"model": "gpt-4o", "input": "hello there", **body}
    if not stream:
        raw = client.responses.with_raw_response.create(**body)
        return raw.parse(), raw.headers["x-tokenomy-request-id"]
    with client.responses.with_streaming_response.create(stream=True, **body) as resp:
        events = list(resp.parse())
        assert events[-1].type == "response.completed"
        return events[-1].response, resp.headers["x-tokenomy-request-id"]
