"""Stage 4: call the provider and answer in the client's format (JSON responses).

When the client's API and the upstream's API match, the upstream bytes pass
through untouched; otherwise the request and response are translated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from .. import translate
from ..errors import InvalidRequest, UpstreamProtocolError
from ..providers import Provider, UpstreamResponse
from ..responses_api import output_text
from ..usage import Usage
from . import prompt_cache
from .context import ANTHROPIC, OPENAI, TIERED_OPS, Call
from .meter import estimate_usage

# What reading an upstream reply of an unexpected shape raises (a list where an
# object was due, a string where a number was): the upstream's fault, a 502.
SHAPE_ERRORS = (AttributeError, KeyError, TypeError, ValueError)


def upstream_body(call: Call, provider: Provider) -> dict[str, Any]:
    """The request body in the upstream's format, with the upstream model name."""
    body = call.body
    model = call.record.served_model or body["model"]
    if call.op == "embeddings" or call.api == provider.api:
        out = dict(body)
        if model != call.record.requested_model and call.op == "chat":
            _rename_max_tokens(out, provider.max_tokens_field)  # routed: the field it takes
    else:
        try:
            if call.api == OPENAI:
                out = translate.openai_request_to_anthropic(body)
            else:
                out = translate.anthropic_request_to_openai(
                    body, max_tokens_field=provider.max_tokens_field
                )
        except translate.TranslationError as exc:
            raise InvalidRequest(str(exc)) from exc
    out["model"] = model
    dep = provider.deployment
    if dep.service_tier is not None and call.op in TIERED_OPS:
        out["service_tier"] = dep.service_tier  # the deployment's, whatever the client asked
    if dep.prompt_cache is not None and call.op == "chat":  # Anthropic deployments only
        prompt_cache.mark(call, dep, provider.prefixes, out)
    return out


def _rename_max_tokens(body: dict[str, Any], field: str) -> None:
    """A client that asked one model with ``max_tokens`` and was routed to another:
    OpenAI's reasoning models refuse ``max_tokens`` (every OpenAI model takes
    ``max_completion_tokens``), so the cap moves to the field the upstream names."""
    if field != "max_tokens" and "max_tokens" in body and field not in body:
        body[field] = body.pop("max_tokens")


def output_text_of(data: Any, api: str) -> str:
    """Generated text of a JSON response (only needed to estimate usage)."""
    parts: list[str] = []
    if data.get("object") == "response":  # OpenAI's Responses API
        return output_text(data)
    if api == ANTHROPIC:
        for block in data.get("content") or []:
            if block.get("type") == "text":
                parts.append(block.get("text") or "")
            elif block.get("type") == "tool_use":
                parts.append(orjson.dumps(block.get("input")).decode())
    else:
        for choice in data.get("choices") or []:
            if isinstance(choice.get("text"), str):  # the legacy Completions API
                parts.append(choice["text"])
            msg = choice.get("message") or {}
            if isinstance(msg.get("content"), str):
                parts.append(msg["content"])
            for tc in msg.get("tool_calls") or []:
                parts.append((tc.get("function") or {}).get("arguments") or "")
    return "".join(parts)


def client_response(call: Call, provider: Provider, data: Any, raw: bytes) -> tuple[bytes, Any]:
    """The reply in the client's format: its bytes, and the same reply parsed."""
    if call.op == "embeddings" or call.api == provider.api:
        return raw, data
    model = call.record.requested_model
    if call.api == OPENAI:
        out = translate.anthropic_response_to_openai(data, model=model)
    else:
        out = translate.openai_response_to_anthropic(data, model=model)
    return orjson.dumps(out), out


@dataclass(slots=True)
class Answer:
    """An upstream reply, read and put in the client's format."""

    up: UpstreamResponse
    body: bytes  # the reply in the client's format
    parsed: Any  # the same, parsed
    usage: Usage  # what the upstream reported, else the gateway's count (estimated)


def answer(
    call: Call, provider: Provider, up: UpstreamResponse, usage: Usage | None = None
) -> Answer:
    """Read ``up`` for the client; ``usage``, when given, is what it used (a kept
    cascade draft's samples). A reply of an unexpected shape is the upstream's
    fault: an `UpstreamProtocolError` (a 502, and a ``bad_response`` to fall back
    on) carrying what the upstream said it used, which it charges all the same."""
    try:
        if usage is None and isinstance(up.data, dict):
            usage = provider.usage(up.data)
        out, parsed = client_response(call, provider, up.data, up.raw)
        if usage is None:
            usage = estimate_usage(call, output_text_of(up.data, provider.api))
    except SHAPE_ERRORS as exc:
        err = UpstreamProtocolError(f"upstream {provider.name} sent a reply of an unexpected shape")
        err.usage = usage
        err.upstream_request_id = provider.request_id(up.headers)
        raise err from exc
    return Answer(up, out, parsed, usage)
