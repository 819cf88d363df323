"""OpenAI Chat Completions -> Anthropic Messages: requests (an OpenAI client calling an
Anthropic model) and responses (an OpenAI-compatible model answering an Anthropic client)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._common import (
    TranslationError,
    anthropic_tool_id,
    array,
    cache_breakpoints,
    dumps,
    message_id,
    new_tool_id,
    obj,
    openai_usage_to_anthropic,
    parse_arguments,
    stop_reason,
    string,
    text_of,
)

Block = dict[str, Any]

# Anthropic allows at most four cache breakpoints per request.
MAX_CACHE_BREAKPOINTS = 4
_IMAGE_TYPES = {"image/jpg": "image/jpeg"}
_JSON_OBJECT_INSTRUCTION = (
    "Respond with a single valid JSON object and nothing else: no prose, no code fences."
)
_JSON_SCHEMA_INSTRUCTION = (
    "Respond with a single JSON value that conforms to the following JSON Schema, "
    "and nothing else: no prose, no code fences.\nJSON Schema: "
)


def openai_request_to_anthropic(
    body: Mapping[str, Any], *, default_max_tokens: int = 4096
) -> dict[str, Any]:
    n = body.get("n")
    if n is not None and n != 1:
        raise TranslationError("'n' other than 1 is not supported by this model")
    if "audio" in array(body.get("modalities"), "'modalities'"):
        raise TranslationError("audio output is not supported by this model")

    conv = _Conversation()
    messages = conv.convert(body.get("messages"))
    system = conv.system
    instruction = _response_format_instruction(body.get("response_format"))
    if instruction:
        system.append({"type": "text", "text": instruction})

    out: dict[str, Any] = {"model": body.get("model")}
    if system:
        plain = len(system) == 1 and "cache_control" not in system[0]
        out["system"] = system[0]["text"] if plain else system
    out["messages"] = messages
    out["max_tokens"] = _max_tokens(body, default_max_tokens)

    temperature = body.get("temperature")
    if isinstance(temperature, int | float) and not isinstance(temperature, bool):
        out["temperature"] = min(temperature, 1.0)  # OpenAI allows 0-2, Anthropic 0-1
    if body.get("top_p") is not None and "temperature" not in out:
        # Current Claude models refuse temperature and top_p together; OpenAI takes both.
        out["top_p"] = body["top_p"]
    stop = _stop_sequences(body.get("stop"))
    if stop:
        out["stop_sequences"] = stop

    tools = body.get("tools")
    tool_choice = body.get("tool_choice")
    if tools is None and body.get("functions") is not None:  # the legacy names
        tools = [
            {"type": "function", "function": f} for f in array(body["functions"], "'functions'")
        ]
        tool_choice = _legacy_function_choice(body.get("function_call"))
    if tools:
        converted, allowed = _tools(tools), _allowed_tools(tool_choice)
        if allowed is not None:
            converted = [t for t in converted if t["name"] in allowed]
        out["tools"] = converted
        choice = _tool_choice(tool_choice, body.get("parallel_tool_calls"))
        if choice is not None:
            out["tool_choice"] = choice

    user = body.get("user") or body.get("safety_identifier")
    if isinstance(user, str) and user:
        out["metadata"] = {"user_id": user}
    if body.get("stream"):
        out["stream"] = True
    _limit_cache_breakpoints(out)
    return out


def openai_response_to_anthropic(resp: Mapping[str, Any], *, model: str) -> dict[str, Any]:
    choices = resp.get("choices") or ()
    choice: Mapping[str, Any] = choices[0] if choices else {}
    msg: Mapping[str, Any] = choice.get("message") or {}

    content: list[Block] = []
    text = text_of(msg.get("content"))
    refusal = msg.get("refusal")
    if text:
        content.append({"type": "text", "text": text})
    elif isinstance(refusal, str) and refusal:
        content.append({"type": "text", "text": refusal})
    for call in msg.get("tool_calls") or ():
        fn = call.get("function") or {}
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id") or new_tool_id(),
                "name": fn.get("name") or "",
                "input": parse_arguments(fn.get("arguments")),
            }
        )
    legacy = msg.get("function_call")
    if isinstance(legacy, dict):
        content.append(
            {
                "type": "tool_use",
                "id": new_tool_id(),
                "name": legacy.get("name") or "",
                "input": parse_arguments(legacy.get("arguments")),
            }
        )

    used_tools = any(b["type"] == "tool_use" for b in content)
    reason = stop_reason(choice.get("finish_reason"), used_tools=used_tools)
    if refusal and not text and reason == "end_turn":
        reason = "refusal"
    usage = openai_usage_to_anthropic(resp.get("usage") or {})
    return {
        "id": message_id(resp.get("id")),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": reason,
        "stop_sequence": None,
        "usage": usage,
    }


class _Conversation:
    """Builds Anthropic ``messages`` (and the hoisted ``system`` blocks) from OpenAI's."""

    def __init__(self) -> None:
        self.system: list[Block] = []
        self.messages: list[dict[str, Any]] = []
        self._legacy_call_ids: dict[str, str] = {}  # function name -> id, for role "function"

    def convert(self, raw: Any) -> list[dict[str, Any]]:
        if not isinstance(raw, list) or not raw:
            raise TranslationError("'messages' must be a non-empty array")
        for i, msg in enumerate(raw):
            if not isinstance(msg, dict):
                raise TranslationError(f"messages[{i}] must be an object")
            role = msg.get("role")
            if role in ("system", "developer"):
                self.system.extend(_text_blocks(msg.get("content"), f"messages[{i}]"))
            elif role == "user":
                self._add("user", _user_blocks(msg.get("content"), f"messages[{i}]"))
            elif role == "assistant":
                self._add("assistant", self._assistant_blocks(msg, i))
            elif role == "tool":
                self._add("user", [_tool_result(msg.get("tool_call_id"), msg.get("content"), i)])
            elif role == "function":
                name = string(msg.get("name"), f"messages[{i}].name")
                call_id = self._legacy_call_ids.get(name) or "call_legacy"
                self._add("user", [_tool_result(call_id, msg.get("content"), i)])
            else:
                raise TranslationError(f"messages[{i}]: unsupported role {role!r}")
        self._trim_prefill()
        for m in self.messages:
            blocks = m["content"]
            if m["role"] == "user" and len(blocks) > 1:
                # Anthropic wants a user message's tool results before anything else.
                blocks.sort(key=lambda b: b["type"] != "tool_result")
            if len(blocks) == 1 and blocks[0].keys() == {"type", "text"}:
                m["content"] = blocks[0]["text"]
        return self.messages

    def _trim_prefill(self) -> None:
        """Anthropic rejects a final assistant message (a prefill) that ends in whitespace."""
        if not self.messages or self.messages[-1]["role"] != "assistant":
            return
        blocks = self.messages[-1]["content"]
        last = blocks[-1]
        if last["type"] == "text":
            last["text"] = last["text"].rstrip()
            if not last["text"]:
                blocks.pop()
                if not blocks:
                    self.messages.pop()

    def _add(self, role: str, blocks: list[Block]) -> None:
        if not blocks:  # Anthropic rejects empty messages; OpenAI clients send some
            return
        if self.messages and self.messages[-1]["role"] == role:
            self.messages[-1]["content"].extend(blocks)
        else:
            self.messages.append({"role": role, "content": blocks})

    def _assistant_blocks(self, msg: Mapping[str, Any], i: int) -> list[Block]:
        content = msg.get("content")
        blocks = _text_blocks(content, f"messages[{i}]") if content is not None else []
        for call in array(msg.get("tool_calls"), f"messages[{i}].tool_calls"):
            if not isinstance(call, dict) or call.get("type", "function") != "function":
                raise TranslationError(f"messages[{i}]: only function tool calls are supported")
            fn = obj(call.get("function"), f"messages[{i}]: a tool call's function")
            blocks.append(
                {
                    "type": "tool_use",
                    "id": anthropic_tool_id(call.get("id")),
                    "name": fn.get("name") or "",
                    "input": parse_arguments(fn.get("arguments")),
                }
            )
        legacy = msg.get("function_call")
        if isinstance(legacy, dict):
            name = string(legacy.get("name"), f"messages[{i}].function_call.name")
            call_id = f"call_legacy_{i}"
            self._legacy_call_ids[name] = call_id
            blocks.append(
                {
                    "type": "tool_use",
                    "id": call_id,
                    "name": name,
                    "input": parse_arguments(legacy.get("arguments")),
                }
            )
        return blocks


def _cache_control(part: Mapping[str, Any]) -> dict[str, Any] | None:
    """OpenRouter-style ``cache_control`` passes through; OpenAI's own
    ``prompt_cache_breakpoint`` marks the same thing: the end of a reusable prefix."""
    cc = part.get("cache_control")
    if isinstance(cc, dict):
        return cc
    bp = part.get("prompt_cache_breakpoint")
    if isinstance(bp, dict):
        return (
            {"type": "ephemeral", "ttl": "1h"} if bp.get("ttl") == "12h" else {"type": "ephemeral"}
        )
    return None


def _text_block(text: str, part: Mapping[str, Any]) -> Block:
    block: Block = {"type": "text", "text": text}
    cc = _cache_control(part)
    if cc is not None:
        block["cache_control"] = cc
    return block


def _text_blocks(content: Any, where: str) -> list[Block]:
    """System, developer and assistant content: a string or text (and refusal) parts."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise TranslationError(f"{where}: content must be a string or an array")
    blocks = []
    for part in content:
        if not isinstance(part, dict) or part.get("type") not in ("text", "refusal"):
            raise TranslationError(f"{where}: only text content parts are allowed here")
        value = string(part.get("text") or part.get("refusal"), f"{where}: a part's text")
        if value:  # Anthropic rejects empty text blocks
            blocks.append(_text_block(value, part))
    return blocks


def _user_blocks(content: Any, where: str) -> list[Block]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise TranslationError(f"{where}: content must be a string or an array")
    blocks = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            text = part.get("text")
            if isinstance(text, str) and text:  # Anthropic rejects empty text blocks
                blocks.append(_text_block(text, part))
            continue
        if kind == "image_url":
            block = _image_block(part, where)
        elif kind == "file":
            block = _document_block(part, where)
        else:
            raise TranslationError(f"{where}: content part {kind!r} is not supported by this model")
        cc = _cache_control(part)
        if cc is not None:
            block["cache_control"] = cc
        blocks.append(block)
    return blocks


def _parse_data_url(url: str, where: str) -> tuple[str, str]:
    header, sep, data = url[5:].partition(",")
    if not sep or not header.endswith(";base64"):
        raise TranslationError(f"{where}: only base64 data URLs are supported")
    media_type = header.split(";", 1)[0].lower()
    return _IMAGE_TYPES.get(media_type, media_type), data


def _image_block(part: Mapping[str, Any], where: str) -> Block:
    spec = part.get("image_url")
    url = spec if isinstance(spec, str) else obj(spec, f"{where}: image_url").get("url")
    if not isinstance(url, str) or not url:
        raise TranslationError(f"{where}: image_url has no url")
    if url.startswith("data:"):
        media_type, data = _parse_data_url(url, where)
        return {
            "type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": data},
        }
    return {"type": "image", "source": {"type": "url", "url": url}}


def _document_block(part: Mapping[str, Any], where: str) -> Block:
    spec = obj(part.get("file"), f"{where}: file")
    data_url = spec.get("file_data")
    if not isinstance(data_url, str) or not data_url.startswith("data:"):
        raise TranslationError(f"{where}: only inline (file_data) PDF files are supported")
    media_type, data = _parse_data_url(data_url, where)
    if media_type != "application/pdf":
        raise TranslationError(f"{where}: file type {media_type!r} is not supported")
    block: Block = {
        "type": "document",
        "source": {"type": "base64", "media_type": media_type, "data": data},
    }
    if spec.get("filename"):
        block["title"] = spec["filename"]
    return block


def _tool_result(call_id: Any, content: Any, i: int) -> Block:
    block: Block = {"type": "tool_result", "tool_use_id": anthropic_tool_id(call_id)}
    if isinstance(content, str):
        if content:
            block["content"] = content
    elif content is not None:
        parts = _text_blocks(content, f"messages[{i}]")
        if parts:
            block["content"] = parts
    return block


def _max_tokens(body: Mapping[str, Any], default: int) -> int:
    value = body.get("max_completion_tokens")
    if value is None:
        value = body.get("max_tokens")
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise TranslationError("max_tokens must be a positive integer")
    return value


def _stop_sequences(stop: Any) -> list[str]:
    seqs = [stop] if isinstance(stop, str) else stop if isinstance(stop, list) else []
    # Anthropic rejects whitespace-only stop sequences ("\n" is common with OpenAI).
    return [s for s in seqs if isinstance(s, str) and s.strip()]


def _response_format_instruction(fmt: Any) -> str | None:
    if not isinstance(fmt, dict):
        return None
    if fmt.get("type") == "json_object":
        return _JSON_OBJECT_INSTRUCTION
    if fmt.get("type") == "json_schema":
        spec = obj(fmt.get("json_schema"), "response_format.json_schema")
        return _JSON_SCHEMA_INSTRUCTION + dumps(spec.get("schema") or {})
    return None


def _tools(tools: Any) -> list[Block]:
    if not isinstance(tools, list):
        raise TranslationError("'tools' must be an array")
    out = []
    for tool in tools:
        if not isinstance(tool, dict) or tool.get("type", "function") != "function":
            raise TranslationError("only function tools are supported by this model")
        fn = obj(tool.get("function"), "a tool's function")
        name = fn.get("name")
        if not isinstance(name, str) or not name:
            raise TranslationError("every tool needs a function name")
        converted: Block = {"name": name}
        if fn.get("description"):
            converted["description"] = fn["description"]
        converted["input_schema"] = fn.get("parameters") or {"type": "object", "properties": {}}
        cc = tool.get("cache_control")
        if isinstance(cc, dict):
            converted["cache_control"] = cc
        out.append(converted)
    return out


def _allowed_tools(choice: Any) -> set[str] | None:
    if not isinstance(choice, dict) or choice.get("type") != "allowed_tools":
        return None
    spec = obj(choice.get("allowed_tools"), "tool_choice.allowed_tools")
    where, name = "tool_choice.allowed_tools.tools", "an allowed tool's name"
    return {
        string(obj(t.get("function"), f"{where}[]: function").get("name") or t.get("name"), name)
        for t in array(spec.get("tools"), where)
        if isinstance(t, dict)
    }


def _tool_choice(choice: Any, parallel: Any) -> dict[str, Any] | None:
    out: dict[str, Any] | None
    if choice is None:
        out = None
    elif choice == "auto":
        out = {"type": "auto"}
    elif choice == "required":
        out = {"type": "any"}
    elif choice == "none":
        out = {"type": "none"}
    elif isinstance(choice, dict) and choice.get("type") == "function":
        name = obj(choice.get("function"), "tool_choice.function").get("name")
        if not isinstance(name, str) or not name:
            raise TranslationError("tool_choice names no function")
        out = {"type": "tool", "name": name}
    elif isinstance(choice, dict) and choice.get("type") == "allowed_tools":
        mode = obj(choice.get("allowed_tools"), "tool_choice.allowed_tools").get("mode")
        out = {"type": "any" if mode == "required" else "auto"}
    else:
        raise TranslationError(f"unsupported tool_choice {choice!r}")
    if parallel is False:
        if out is None:
            out = {"type": "auto"}
        if out["type"] != "none":
            out["disable_parallel_tool_use"] = True
    return out


def _legacy_function_choice(choice: Any) -> Any:
    if isinstance(choice, dict) and choice.get("name"):
        return {"type": "function", "function": {"name": choice["name"]}}
    return choice if choice in ("auto", "none") else None


def _limit_cache_breakpoints(out: dict[str, Any]) -> None:
    """Keep the last four cache breakpoints (Anthropic's limit; OpenAI allows more in
    a conversation). The later a breakpoint, the longer the prefix it caches."""
    marked = list(cache_breakpoints(out))
    for block in marked[: max(len(marked) - MAX_CACHE_BREAKPOINTS, 0)]:
        del block["cache_control"]
