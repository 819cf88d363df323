"""Helpers for tests of the Responses API through the gateway, with the official SDK."""

from __future__ import annotations

from typing import Any, TypeVar

import openai
import pytest

from gateway_fixtures import GW

E = TypeVar("E", bound=openai.APIStatusError)


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


def openai_refusal(message: str, param: str | None, code: str | None = None) -> dict[str, Any]:
    """An OpenAI error body, as the API sends it."""
    error = {"message": message, "type": "invalid_request_error", "param": param, "code": code}
    return {"error": error}


def previous_not_found(rid: str) -> dict[str, Any]:
    """OpenAI's answer to a ``previous_response_id`` it does not know (a 400)."""
    message = f"Previous response with id '{rid}' not found."
    return openai_refusal(message, "previous_response_id", "previous_response_not_found")


def item_not_found(item_id: str) -> dict[str, Any]:
    """OpenAI's answer to an item id in ``input`` it does not know (a 404)."""
    return openai_refusal(f"Item with id '{item_id}' not found.", "input")


def response_not_found(rid: str) -> dict[str, Any]:
    """OpenAI's answer for a response id it does not know (a 404)."""
    return openai_refusal(f"Response with id '{rid}' not found.", None)


def refused_unheard(gw: GW, key: str, error: type[E], **body: Any) -> E:
    """A Responses request of ``key`` is refused with ``error``, and the upstream
    never hears of it."""
    before = gw.fake.app.mark()
    with pytest.raises(error) as info:
        gw.openai(key=key).responses.create(model="gpt-4o", **body)
    assert gw.fake.app.requests_since(before) == []
    return info.value
