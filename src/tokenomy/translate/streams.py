"""Stream converters: one upstream SSE event (already parsed) in, the client's events out.
The gateway does the SSE parsing and framing; these keep only the state a stream needs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._common import (
    UpstreamStreamError,
    anthropic_usage_to_openai,
    dumps,
    finish_reason,
    new_tool_id,
    openai_usage_to_anthropic,
    stop_reason,
)

Event = tuple[str, dict[str, Any]]


class AnthropicToOpenAIStream:
    """Anthropic Messages events -> ``chat.completion.chunk`` dicts."""

    __slots__ = (
        "_tools",
        "created",
        "finish_reason",
        "id",
        "include_usage",
        "model",
        "usage",
    )

    def __init__(self, model: str, request_id: str, created: int, include_usage: bool) -> None:
        self.model = model
        self.id = request_id
        self.created = created
        self.include_usage = include_usage
        # The raw Anthropic usage, merged from message_start and message_delta (whose
        # counts are cumulative, so later values replace earlier ones).
        self.usage: dict[str, Any] = {}
        self.finish_reason: str | None = None
        self._tools: dict[int, int] = {}  # Anthropic block index -> OpenAI tool_calls index

    @property
    def openai_usage(self) -> dict[str, Any]:
        """The usage so far, in OpenAI's meaning."""
        return anthropic_usage_to_openai(self.usage)

    def feed(self, event_type: str, data: Mapping[str, Any]) -> list[dict[str, Any]]:
        kind = event_type or data.get("type")
        if kind == "content_block_delta":
            return self._delta(data)
        if kind == "content_block_start":
            return self._block_start(data)
        if kind == "message_start":
            self._merge_usage((data.get("message") or {}).get("usage"))
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind == "message_delta":
            self._merge_usage(data.get("usage"))
            reason = (data.get("delta") or {}).get("stop_reason")
            if not reason:
                return []
            self.finish_reason = finish_reason(reason)
            return [self._chunk({}, self.finish_reason)]
        if kind == "message_stop":
            if not self.include_usage:
                return []
            return [
                {
                    "id": self.id,
                    "object": "chat.completion.chunk",
                    "created": self.created,
                    "model": self.model,
                    "choices": [],
                    "usage": self.openai_usage,
                }
            ]
        if kind == "error":
            raise UpstreamStreamError(data.get("error") or {})
        return []  # ping, content_block_stop, and event types added later

    def _merge_usage(self, usage: Any) -> None:
        if isinstance(usage, dict):
            self.usage.update({k: v for k, v in usage.items() if v is not None})

    def _block_start(self, data: Mapping[str, Any]) -> list[dict[str, Any]]:
        block = data.get("content_block") or {}
        kind = block.get("type")
        if kind == "tool_use":
            n = self._tools[data.get("index", -1)] = len(self._tools)
            call = {
                "index": n,
                "id": block.get("id") or new_tool_id(),
                "type": "function",
                "function": {"name": block.get("name") or "", "arguments": ""},
            }
            return [self._chunk({"tool_calls": [call]})]
        if kind == "text" and block.get("text"):
            return [self._chunk({"content": block["text"]})]
        if kind == "thinking" and block.get("thinking"):
            return [self._chunk({"reasoning_content": block["thinking"]})]
        return []

    def _delta(self, data: Mapping[str, Any]) -> list[dict[str, Any]]:
        delta = data.get("delta") or {}
        kind = delta.get("type")
        if kind == "text_delta":
            text = delta.get("text")
            return [self._chunk({"content": text})] if text else []
        if kind == "input_json_delta":
            n = self._tools.get(data.get("index", -1))
            fragment = delta.get("partial_json")
            if n is None or not fragment:  # a server tool's input, or nothing new
                return []
            return [
                self._chunk({"tool_calls": [{"index": n, "function": {"arguments": fragment}}]})
            ]
        if kind == "thinking_delta" and delta.get("thinking"):
            return [self._chunk({"reasoning_content": delta["thinking"]})]
        return []  # signature_delta, citations_delta

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        chunk: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if self.include_usage:  # as OpenAI does: null on every chunk but the last
            chunk["usage"] = None
        return chunk


class OpenAIToAnthropicStream:
    """``chat.completion.chunk`` dicts -> Anthropic Messages ``(event, data)`` pairs.

    Call `feed` for every chunk (the usage-only one included) and `finish` once the
    upstream's ``[DONE]`` arrives: the stop reason and the final usage are only
    known then.
    """

    __slots__ = (
        "_finish",
        "_finished",
        "_next_index",
        "_open",
        "_open_is_text",
        "_refusal",
        "_started",
        "_tools",
        "message_id",
        "model",
        "usage",
    )

    def __init__(self, model: str, message_id: str) -> None:
        self.model = model
        self.message_id = message_id
        self.usage: dict[str, Any] | None = None  # the last OpenAI usage object seen
        self._started = False
        self._finished = False
        self._open: int | None = None  # the index of the open content block
        self._open_is_text = False
        self._next_index = 0
        self._tools: dict[int, int] = {}  # OpenAI tool_calls index -> block index
        self._finish: str | None = None
        self._refusal = False

    def feed(self, chunk: Mapping[str, Any]) -> list[Event]:
        out: list[Event] = []
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self.usage = usage
        if not self._started:
            out.append(self._message_start())
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            text = delta.get("content")
            if text:
                self._text(text, out)
            refusal = delta.get("refusal")
            if refusal:
                self._refusal = True
                self._text(refusal, out)
            for call in delta.get("tool_calls") or ():
                self._tool(call, out)
            legacy = delta.get("function_call")
            if isinstance(legacy, dict):
                self._tool({"index": 0, "function": legacy}, out)
            if choice.get("finish_reason"):
                self._finish = choice["finish_reason"]
        return out

    def finish(self) -> list[Event]:
        if self._finished:
            return []
        self._finished = True
        out: list[Event] = []
        if not self._started:
            out.append(self._message_start())
        self._close(out)
        reason = stop_reason(self._finish, used_tools=bool(self._tools))
        if self._refusal and reason == "end_turn":
            reason = "refusal"
        if self.usage:
            usage: dict[str, Any] = openai_usage_to_anthropic(self.usage)
        else:
            usage = {"output_tokens": 0}
        out.append(
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": reason, "stop_sequence": None},
                    "usage": usage,
                },
            )
        )
        out.append(("message_stop", {"type": "message_stop"}))
        return out

    def _message_start(self) -> Event:
        self._started = True
        # The prompt's size is only known from the final usage chunk (unless the server
        # reports usage on every chunk), so message_start says 0 input tokens.
        usage = openai_usage_to_anthropic(self.usage or {})
        message: dict[str, Any] = {
            "id": self.message_id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage,
        }
        return "message_start", {"type": "message_start", "message": message}

    def _close(self, out: list[Event]) -> None:
        if self._open is not None:
            out.append(("content_block_stop", {"type": "content_block_stop", "index": self._open}))
            self._open = None

    def _start(self, block: dict[str, Any], out: list[Event]) -> int:
        self._close(out)
        index = self._open = self._next_index
        self._next_index += 1
        out.append(
            (
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": block},
            )
        )
        return index

    def _text(self, text: str, out: list[Event]) -> None:
        index = self._open
        if index is None or not self._open_is_text:
            index = self._start({"type": "text", "text": ""}, out)
            self._open_is_text = True
        out.append(
            (
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": "text_delta", "text": text},
                },
            )
        )

    def _tool(self, call: Mapping[str, Any], out: list[Event]) -> None:
        n = call.get("index")
        if not isinstance(n, int):  # some servers leave it out: a new id starts a new call
            n = len(self._tools) if call.get("id") or not self._tools else len(self._tools) - 1
        fn = call.get("function") or {}
        index = self._tools.get(n)
        if index is None:
            block: dict[str, Any] = {
                "type": "tool_use",
                "id": call.get("id") or new_tool_id(),
                "name": fn.get("name") or "",
                "input": {},
            }
            index = self._tools[n] = self._start(block, out)
            self._open_is_text = False
        args = fn.get("arguments")
        if args and not isinstance(args, str):  # a few servers send an object
            args = dumps(args)
        if args:
            # OpenAI streams tool calls one after another; a fragment for an earlier
            # call (never seen from OpenAI itself) still goes to that call's block.
            out.append(
                (
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "input_json_delta", "partial_json": args},
                    },
                )
            )
