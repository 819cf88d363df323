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
(only needed to estimate a reply that reports none) by `output_text`; its id and
the ids of its output items, which the ledger keeps so that only its tenant may
continue it or name its items (`tokenomy.pipeline.chains`), by `response_id` and
`item_ids`. The ids of the stored items a request names are `referenced_items`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "TEXT_DELTAS",
    "as_messages",
    "as_tools",
    "item_ids",
    "output_item_id",
    "output_text",
    "prompt_messages",
    "referenced_items",
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
    if kind == "item_reference" or (kind is None and "role" not in item):
        return None  # an item stored upstream (its type may be left out): not visible here
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


def item_ids(response: Any) -> tuple[str, ...]:
    """The ids of a response object's output items, each once, in order."""
    if not isinstance(response, Mapping):
        return ()
    ids = (output_item_id(item) for item in _list(response.get("output")))
    return tuple(dict.fromkeys(i for i in ids if i is not None))


def output_item_id(item: Any) -> str | None:
    """An output item's id as the ledger keeps it; None for none, an empty one, or
    one holding a NUL (no ledger text can hold it, nor would a real one)."""
    got = item_id(item)
    return got if got and "\x00" not in got else None


def item_id(item: Any) -> str | None:
    """An item's id, when it has a string one."""
    got = item.get("id") if isinstance(item, Mapping) else None
    return got if isinstance(got, str) else None


def referenced_items(body: Mapping[str, Any]) -> list[str]:
    """The ids of the stored items a request's ``input`` names, each once, in order:
    the upstream reads them from its storage. They are the ``item_reference``
    items' (whose ``type`` may be left out: an item with an ``id`` and no
    ``role``), and reasoning items' (OpenAI reads a reasoning item sent with an
    ``id`` from its storage too). Other items sent with an ``id`` carry their
    content themselves."""
    ids: dict[str, None] = {}
    for item in _list(body.get("input")):
        if isinstance(item, Mapping) and _is_reference(item):
            rid = item_id(item)
            if rid is not None:
                ids[rid] = None
    return list(ids)


def _is_reference(item: Mapping[str, Any]) -> bool:
    kind = item.get("type")
    if kind is None:
        return "role" not in item
    return kind in ("item_reference", "reasoning")


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
