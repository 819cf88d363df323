"""What the gateway reads of a request to OpenAI's Responses API (``POST /v1/responses``).

Responses requests, replies and stream events pass through unchanged to the
upstreams that serve the API (`tokenomy.providers.base.Provider.supports_responses`);
they are read only to cap, route and meter them. A request's prompt is its
``instructions`` and its ``input`` (a string, or a list of input items: messages
with text, image, file and audio parts, function calls and their outputs,
reasoning items, built-in tool calls...). `as_messages` gives it as chat
messages, so that token counting (`tokenomy.tokens`), the image estimates
(`tokenomy.images`), routing rules and the learned router read it as they read
a chat request; `as_tools` gives its tools in the chat form.

What a request brings that the gateway cannot see is not in them: the context
of ``previous_response_id`` and ``item_reference`` items, a stored ``prompt``
template, and the opaque ``encrypted_content`` of reasoning items (a
``conversation`` is refused: `tokenomy.pipeline.chains`). The caps' worst case
leaves it out; the record is metered from the upstream's usage, which counts it.

A reply's usage is read by `tokenomy.providers.openai.response_usage`; its text
(only needed to estimate a reply that reports none) by `output_text`; its id,
which the ledger keeps so that only its tenant may continue it
(`tokenomy.pipeline.chains`), by `response_id`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "TEXT_DELTAS",
    "as_messages",
    "as_tools",
    "output_text",
    "prompt_messages",
    "response_id",
]

# Stream events whose ``delta`` is generated text (what a cut stream is counted from).
TEXT_DELTAS = frozenset(
    {
        "response.output_text.delta",
        "response.refusal.delta",
        "response.function_call_arguments.delta",
        "response.custom_tool_call_input.delta",
        "response.reasoning_text.delta",
        "response.reasoning_summary_text.delta",
        "response.code_interpreter_call_code.delta",
        "response.mcp_call_arguments.delta",
    }
)
# An item's fields that are not prompt text: bookkeeping, and opaque data (encrypted
# reasoning, a generated image's base64) that would count as megabytes of text.
_NOT_PROMPT = frozenset({"id", "status", "type", "encrypted_content", "result"})


def as_messages(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The request's ``instructions`` and ``input`` as chat messages (items that
    are not objects are left out: validation refuses them)."""
    out: list[dict[str, Any]] = []
    for field, role in (("instructions", "developer"), ("input", "user")):
        value = body.get(field)
        if isinstance(value, str):
            if value:
                out.append({"role": role, "content": value})
        elif isinstance(value, list):
            out.extend(m for m in map(_message, value) if m is not None)
    return out


def _message(item: Any) -> dict[str, Any] | None:
    if not isinstance(item, Mapping):
        return None
    kind = item.get("type")
    role = item.get("role")
    if kind in (None, "message") and isinstance(role, str):
        return {"role": role, "content": item.get("content")}
    if kind == "function_call":
        call = {"name": item.get("name"), "arguments": item.get("arguments")}
        return {"role": "assistant", "tool_calls": [{"type": "function", "function": call}]}
    if kind in ("function_call_output", "custom_tool_call_output"):
        return {"role": "tool", "content": item.get("output")}
    if kind == "computer_call_output":  # a screenshot: an image part, not text
        return {"role": "tool", "content": [item.get("output")]}
    if kind == "reasoning":
        summary = item.get("summary")
        parts = summary if isinstance(summary, list) else []
        return {"role": "assistant", "content": parts}
    if kind == "item_reference":  # an item stored upstream: not visible here
        return None
    # Built-in tool calls and their outputs: counted as their JSON.
    return {"role": "assistant", "item": {k: v for k, v in item.items() if k not in _NOT_PROMPT}}


def as_tools(body: Mapping[str, Any]) -> list[Any] | None:
    """The request's tools, function tools in the chat form (``{"type": "function",
    "function": {...}}``) so the chat recipe counts them; built-in tools as they are."""
    tools = body.get("tools")
    if not isinstance(tools, list):
        return None
    out: list[Any] = []
    for tool in tools:
        if isinstance(tool, Mapping) and tool.get("type") == "function" and "function" not in tool:
            fn = {k: tool[k] for k in ("name", "description", "parameters") if k in tool}
            out.append({"type": "function", "function": fn})
        else:
            out.append(tool)
    return out


def prompt_messages(body: Mapping[str, Any]) -> list[Any]:
    """A chat request's ``messages``, or a Responses request's prompt as messages."""
    messages = body.get("messages")
    if isinstance(messages, list):
        return messages
    return as_messages(body)


def response_id(response: Any) -> str | None:
    """The id of a response object (a JSON reply, or a stream event's ``response``)."""
    if not isinstance(response, Mapping):
        return None
    rid = response.get("id")
    return rid if isinstance(rid, str) and rid else None


def output_text(response: Mapping[str, Any]) -> str:
    """The generated text of a response object: its messages' text and refusals,
    function call arguments, custom tool inputs and reasoning summaries."""
    return "".join(_item_text(item) for item in _list(response.get("output")))


def _item_text(item: Any) -> str:
    if not isinstance(item, Mapping):
        return ""
    kind = item.get("type")
    if kind == "message":
        return "".join(_part_text(p) for p in _list(item.get("content")))
    if kind == "function_call":
        return _str(item.get("arguments"))
    if kind == "custom_tool_call":
        return _str(item.get("input"))
    if kind == "reasoning":
        return "".join(_part_text(p) for p in _list(item.get("summary")))
    return ""


def _part_text(part: Any) -> str:
    if not isinstance(part, Mapping):
        return ""
    return _str(part.get("text")) or _str(part.get("refusal"))


def _list(value: Any) -> Iterable[Any]:
    return value if isinstance(value, list) else ()


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""
