"""Anthropic Messages -> OpenAI Chat Completions: requests (an Anthropic client calling
an OpenAI-compatible model) and responses (an Anthropic model answering an OpenAI client)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from ._common import (
    TranslationError,
    anthropic_usage_to_openai,
    chat_completion_id,
    dumps,
    finish_reason,
    obj,
    string,
)

Part = dict[str, Any]

# Blocks with no OpenAI counterpart that are safe to leave out: reasoning, and the
# calls and results of tools that Anthropic runs itself (web search, code execution...).
_DROPPED_BLOCKS = frozenset(
    {"thinking", "redacted_thinking", "server_tool_use", "mcp_tool_use", "mcp_tool_result"}
)


def _dropped(kind: Any) -> bool:
    return isinstance(kind, str) and (
        kind in _DROPPED_BLOCKS or (kind.endswith("_tool_result") and kind != "tool_result")
    )


def anthropic_request_to_openai(
    body: Mapping[str, Any], *, max_tokens_field: str = "max_tokens"
) -> dict[str, Any]:
    """``max_tokens_field``: what the upstream calls the output cap (OpenAI's own API
    wants ``max_completion_tokens``, which its reasoning models alone accept)."""
    messages: list[dict[str, Any]] = []
    system = body.get("system")
    if system:
        text = system if isinstance(system, str) else _system_text(system)
        if text:
            messages.append({"role": "system", "content": text})
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise TranslationError("'messages' must be a non-empty array")
    for i, msg in enumerate(raw):
        if not isinstance(msg, dict):
            raise TranslationError(f"messages[{i}] must be an object")
        role, content = msg.get("role"), msg.get("content")
        if role not in ("user", "assistant"):
            raise TranslationError(f"messages[{i}]: unsupported role {role!r}")
        if isinstance(content, str):
            messages.append({"role": role, "content": content})
        elif not isinstance(content, list):
            raise TranslationError(f"messages[{i}]: content must be a string or an array")
        elif role == "user":
            _user_message(content, messages, f"messages[{i}]")
        else:
            _assistant_message(content, messages, f"messages[{i}]")

    out: dict[str, Any] = {"model": body.get("model"), "messages": messages}
    if body.get("max_tokens") is not None:
        out[max_tokens_field] = body["max_tokens"]
    for key in ("temperature", "top_p"):
        if body.get(key) is not None:
            out[key] = body[key]
    stop = body.get("stop_sequences")
    if stop:
        out["stop"] = list(stop)

    tools = body.get("tools")
    if tools:
        out["tools"] = [_tool(t) for t in tools]
        choice = body.get("tool_choice")
        if isinstance(choice, dict):
            converted = _tool_choice(choice)
            if converted is not None:
                out["tool_choice"] = converted
            if choice.get("disable_parallel_tool_use") and choice.get("type") != "none":
                out["parallel_tool_calls"] = False

    response_format = _response_format(body)
    if response_format is not None:
        out["response_format"] = response_format

    metadata = body.get("metadata")
    if isinstance(metadata, dict) and metadata.get("user_id"):
        out["user"] = metadata["user_id"]
    if body.get("stream"):
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    return out


def anthropic_response_to_openai(
    resp: Mapping[str, Any], *, model: str, created: int | None = None
) -> dict[str, Any]:
    text: list[str] = []
    reasoning: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    for block in resp.get("content") or ():
        kind = block.get("type")
        if kind == "text":
            text.append(block.get("text") or "")
        elif kind == "tool_use":
            tool_calls.append(_tool_call(block))
        elif kind == "thinking" and block.get("thinking"):
            reasoning.append(block["thinking"])

    content = "".join(text)
    message: dict[str, Any] = {
        "role": "assistant",
        "content": None if tool_calls and not content else content,
        "refusal": None,
    }
    if tool_calls:
        message["tool_calls"] = tool_calls
    if reasoning:
        message["reasoning_content"] = "\n\n".join(reasoning)
    return {
        "id": chat_completion_id(resp.get("id")),
        "object": "chat.completion",
        "created": int(time.time()) if created is None else created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": finish_reason(resp.get("stop_reason")),
            }
        ],
        "usage": anthropic_usage_to_openai(resp.get("usage") or {}),
    }


def _response_format(body: Mapping[str, Any]) -> dict[str, Any] | None:
    """Anthropic's structured outputs (``output_config.format``, or the beta's top-level
    ``output_format``) -> OpenAI's ``response_format``. Not ``strict``: OpenAI's strict
    mode refuses schemas with optional properties, which Anthropic accepts."""
    fmt = obj(body.get("output_config"), "'output_config'").get("format")
    where = "output_config.format"
    if fmt is None:
        fmt, where = body.get("output_format"), "'output_format'"
    if fmt is None:
        return None
    fmt = obj(fmt, where)
    if fmt.get("type") != "json_schema":
        raise TranslationError(f"unsupported {where} type {fmt.get('type')!r}")
    schema = obj(fmt.get("schema"), f"{where}.schema")
    return {"type": "json_schema", "json_schema": {"name": "output", "schema": schema}}


def _system_text(blocks: Any) -> str:
    if not isinstance(blocks, list):
        raise TranslationError("'system' must be a string or an array of text blocks")
    return "\n\n".join(
        string(b.get("text"), "system: a block's text")
        for b in blocks
        if isinstance(b, dict) and b.get("type") == "text"
    )


def _user_message(blocks: list[Any], messages: list[dict[str, Any]], where: str) -> None:
    """Tool results become ``tool`` messages, in order, ahead of the rest of the turn."""
    parts: list[Part] = []
    for block in blocks:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "tool_result":
            content, attachments = _tool_result_content(block.get("content"), where)
            messages.append(
                {"role": "tool", "tool_call_id": block.get("tool_use_id") or "", "content": content}
            )
            parts.extend(attachments)
        elif kind == "text":
            parts.append({"type": "text", "text": string(block.get("text"), f"{where}: text")})
        elif kind == "image":
            parts.append(_image_part(block, where))
        elif kind == "document":
            parts.append(_document_part(block, where))
        elif not _dropped(kind):
            raise TranslationError(
                f"{where}: content block {kind!r} is not supported by this model"
            )
    if parts:
        if len(parts) == 1 and parts[0]["type"] == "text":
            messages.append({"role": "user", "content": parts[0]["text"]})
        else:
            messages.append({"role": "user", "content": parts})


def _assistant_message(blocks: list[Any], messages: list[dict[str, Any]], where: str) -> None:
    text: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    for block in blocks:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            text.append(string(block.get("text"), f"{where}: text"))
        elif kind == "tool_use":
            tool_calls.append(_tool_call(block))
        elif not _dropped(kind):
            raise TranslationError(
                f"{where}: content block {kind!r} is not supported by this model"
            )
    content = "".join(text)
    if not content and not tool_calls:
        return  # e.g. a turn that held only thinking; OpenAI rejects an empty assistant message
    msg: dict[str, Any] = {"role": "assistant", "content": content or None}
    if tool_calls:
        msg["tool_calls"] = tool_calls
    messages.append(msg)


def _tool_result_content(content: Any, where: str) -> tuple[str, list[Part]]:
    """A tool message carries text only; images and documents in a tool result are
    passed on in the user message that follows the tool messages."""
    if content is None:
        return "", []
    if isinstance(content, str):
        return content, []
    if not isinstance(content, list):
        raise TranslationError(f"{where}: tool_result content must be a string or an array")
    texts: list[str] = []
    attachments: list[Part] = []
    for block in content:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            texts.append(string(block.get("text"), f"{where}: text"))
        elif kind == "image":
            attachments.append(_image_part(block, where))
        elif kind == "document":
            attachments.append(_document_part(block, where))
        else:
            raise TranslationError(f"{where}: tool_result block {kind!r} is not supported")
    return "\n".join(texts), attachments


def _image_part(block: Mapping[str, Any], where: str) -> Part:
    source = obj(block.get("source"), f"{where}: an image's source")
    if source.get("type") == "base64":
        url = f"data:{source.get('media_type')};base64,{source.get('data')}"
    elif source.get("type") == "url":
        url = source.get("url") or ""
    else:
        raise TranslationError(f"{where}: image source {source.get('type')!r} is not supported")
    return {"type": "image_url", "image_url": {"url": url}}


def _document_part(block: Mapping[str, Any], where: str) -> Part:
    source = obj(block.get("source"), f"{where}: a document's source")
    kind = source.get("type")
    if kind == "text":
        return {"type": "text", "text": source.get("data") or ""}
    if kind == "base64" and source.get("media_type") == "application/pdf":
        return {
            "type": "file",
            "file": {
                "filename": block.get("title") or "document.pdf",
                "file_data": f"data:application/pdf;base64,{source.get('data')}",
            },
        }
    raise TranslationError(f"{where}: document source {kind!r} is not supported by this model")


def _tool(tool: Any) -> dict[str, Any]:
    if not isinstance(tool, dict) or tool.get("type", "custom") not in ("custom", None):
        kind = tool.get("type") if isinstance(tool, dict) else None
        raise TranslationError(f"tool type {kind!r} is not supported by this model")
    name = tool.get("name")
    if not isinstance(name, str) or not name:
        raise TranslationError("every tool needs a name")
    fn: dict[str, Any] = {"name": name}
    if tool.get("description"):
        fn["description"] = tool["description"]
    fn["parameters"] = tool.get("input_schema") or {"type": "object", "properties": {}}
    return {"type": "function", "function": fn}


def _tool_call(block: Mapping[str, Any]) -> dict[str, Any]:
    """A ``tool_use`` block as an OpenAI tool call."""
    return {
        "id": block.get("id") or "",
        "type": "function",
        "function": {"name": block.get("name") or "", "arguments": dumps(block.get("input") or {})},
    }


def _tool_choice(choice: Mapping[str, Any]) -> Any:
    kind = choice.get("type")
    if kind == "auto":
        return "auto"
    if kind == "any":
        return "required"
    if kind == "none":
        return "none"
    if kind == "tool":
        return {"type": "function", "function": {"name": choice.get("name") or ""}}
    raise TranslationError(f"unsupported tool_choice type {kind!r}")
