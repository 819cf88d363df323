"""What both directions share: the errors, usage and stop-reason mappings, ids, JSON."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import orjson


class TranslationError(ValueError):
    """The request cannot be expressed in the other API; the gateway answers 400."""


class UpstreamStreamError(TranslationError):
    """An ``error`` event inside an Anthropic stream (e.g. ``overloaded_error``).

    ``error`` is the event's ``error`` object as received; ``error_type`` its type.
    This is an upstream failure, not a client mistake: the gateway should report it
    in the stream (as it does for any upstream error), not as a 400.
    """

    def __init__(self, error: Mapping[str, Any]) -> None:
        self.error = dict(error)
        self.error_type = str(error.get("type") or "api_error")
        super().__init__(str(error.get("message") or "upstream error"))


# Anthropic stop_reason -> OpenAI finish_reason.
FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

# OpenAI finish_reason -> Anthropic stop_reason.
STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def finish_reason(stop_reason: Any) -> str:
    return FINISH_REASONS.get(stop_reason, "stop") if stop_reason else "stop"


def stop_reason(finish: Any, *, used_tools: bool) -> str:
    reason = STOP_REASONS.get(finish, "end_turn") if finish else "end_turn"
    # Several OpenAI-compatible servers say "stop" even when they return tool calls.
    if used_tools and reason == "end_turn":
        return "tool_use"
    return reason


def _int(value: Any) -> int:
    return value if isinstance(value, int) else 0


def anthropic_usage_to_openai(u: Mapping[str, Any]) -> dict[str, Any]:
    """Anthropic usage -> OpenAI usage. Anthropic's ``input_tokens`` excludes cache
    reads and writes; OpenAI's ``prompt_tokens`` includes them."""
    read = _int(u.get("cache_read_input_tokens"))
    written = _int(u.get("cache_creation_input_tokens"))
    prompt = _int(u.get("input_tokens")) + read + written
    completion = _int(u.get("output_tokens"))
    details: dict[str, int] = {"cached_tokens": read}
    if written:
        details["cache_write_tokens"] = written
    thinking = _int((u.get("output_tokens_details") or {}).get("thinking_tokens"))
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": details,
        # OpenAI sends it on every reply; clients read reasoning_tokens off it.
        "completion_tokens_details": {"reasoning_tokens": thinking},
    }


def openai_usage_to_anthropic(u: Mapping[str, Any]) -> dict[str, Any]:
    """OpenAI usage -> Anthropic usage: cached (and, when reported, cache-written)
    tokens are moved out of the prompt count into their own fields."""
    details = u.get("prompt_tokens_details") or {}
    read = _int(details.get("cached_tokens", u.get("prompt_cache_hit_tokens")))  # DeepSeek's name
    written = _int(details.get("cache_write_tokens"))
    out: dict[str, Any] = {
        "input_tokens": max(_int(u.get("prompt_tokens")) - read - written, 0),
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": read,
        "output_tokens": _int(u.get("completion_tokens")),
    }
    reasoning = _int((u.get("completion_tokens_details") or {}).get("reasoning_tokens"))
    if reasoning:
        out["output_tokens_details"] = {"thinking_tokens": reasoning}
    return out


def chat_completion_id(anthropic_id: Any) -> str:
    if not isinstance(anthropic_id, str) or not anthropic_id:
        return "chatcmpl-" + uuid.uuid4().hex
    return "chatcmpl-" + anthropic_id.removeprefix("msg_")


def message_id(openai_id: Any) -> str:
    if not isinstance(openai_id, str) or not openai_id:
        return "msg_" + uuid.uuid4().hex
    return "msg_" + openai_id.removeprefix("chatcmpl-")


def new_tool_id() -> str:
    return "toolu_" + uuid.uuid4().hex[:24]


_BAD_TOOL_ID_CHARS = re.compile(r"[^A-Za-z0-9_-]")


def anthropic_tool_id(tool_id: Any) -> str:
    """Anthropic accepts tool ids matching ``^[a-zA-Z0-9_-]+$``; some OpenAI-compatible
    servers use others (``functions.get_weather:0``). Mapping is deterministic, so a
    call and its result still match."""
    if not isinstance(tool_id, str) or not tool_id:
        raise TranslationError("a tool call or tool result has no id")
    return _BAD_TOOL_ID_CHARS.sub("_", tool_id)


def obj(value: Any, where: str) -> Mapping[str, Any]:
    """A client's JSON object, ``{}`` when absent; any other type is the client's mistake."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise TranslationError(f"{where} must be an object")
    return value


def array(value: Any, where: str) -> list[Any]:
    """A client's JSON array, ``[]`` when absent; any other type is the client's mistake."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise TranslationError(f"{where} must be an array")
    return value


def string(value: Any, where: str) -> str:
    """A client's text field, ``""`` when absent; any other type is the client's mistake."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise TranslationError(f"{where} must be a string")
    return value


def dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def parse_arguments(raw: Any) -> dict[str, Any]:
    """Tool-call arguments (a JSON string) -> a JSON object. Arguments that are not
    a JSON object (truncated or invalid JSON) become ``{}``."""
    if isinstance(raw, dict):
        return raw
    if not isinstance(raw, str) or not raw:
        return {}
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def text_of(content: Any) -> str:
    """A string, or the text of an array of text parts/blocks, concatenated."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            p.get("text") or p.get("refusal") or ""
            for p in content
            if isinstance(p, dict) and p.get("type") in ("text", "refusal", None)
        )
    return ""


def asks_for_cache(body: Mapping[str, Any]) -> bool:
    """Whether an Anthropic request marks anything for caching: a top-level
    ``cache_control`` (automatic caching) or a block's (`cache_breakpoints`)."""
    return "cache_control" in body or next(cache_breakpoints(body), None) is not None


def cache_breakpoints(body: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """The blocks of an Anthropic request that carry ``cache_control``, in prompt
    order: tools, system blocks, message content blocks and the blocks inside tool
    results (the places Anthropic reads it; the request's own top-level key aside)."""
    for tool in body.get("tools") or ():
        if isinstance(tool, dict) and "cache_control" in tool:
            yield tool
    system = body.get("system")
    if isinstance(system, list):
        yield from (b for b in system if isinstance(b, dict) and "cache_control" in b)
    for m in body.get("messages") or ():
        content = m.get("content") if isinstance(m, dict) else None
        if not isinstance(content, list):
            continue
        for b in content:
            if not isinstance(b, dict):
                continue
            if "cache_control" in b:
                yield b
            inner = b.get("content")
            if b.get("type") == "tool_result" and isinstance(inner, list):
                yield from (p for p in inner if isinstance(p, dict) and "cache_control" in p)
