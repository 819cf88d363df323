"""Rebuild the complete JSON response from a stream, as the client received it.

A streamed miss is stored in the same form as a non-streamed one (the JSON
response in the called API's format), so either kind of request can be served
from it later. `Assembler.take` takes each event sent to the client, already
parsed (the relay parsed it to meter it: the cache does not parse it again);
`Assembler.feed` takes the bytes sent instead; `response` is the JSON, or None
when the stream did not end properly.
"""

from __future__ import annotations

from typing import Any

import orjson

from ..pipeline.context import ANTHROPIC
from ..sse import DONE_DATA, SSEParser
from ..usage import Usage


def openai_usage_json(u: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.total_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cache_read_tokens},
        "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
    }


def _add_logprobs(st: dict[str, Any], lp: dict[str, Any]) -> None:
    """Append a chunk's log probabilities (``logprobs: true``) to its choice's."""
    acc = st["logprobs"]
    if acc is None:
        acc = st["logprobs"] = {"content": None, "refusal": None}
    for k in ("content", "refusal"):
        if isinstance(lp.get(k), list):
            acc[k] = (acc[k] or []) + lp[k]


class Assembler:
    def __init__(self, api: str) -> None:
        self.api = api
        self._parser = SSEParser()
        self.done = False  # the stream's own end marker was seen
        # OpenAI
        self._head: dict[str, Any] = {}
        self._choices: dict[int, dict[str, Any]] = {}
        self._usage: Any = None
        # Anthropic
        self._message: dict[str, Any] = {}
        self._blocks: dict[int, dict[str, Any]] = {}
        self._json: dict[int, list[str]] = {}

    def feed(self, data: bytes) -> bool:
        """Take bytes sent to the client; True once the stream's end marker is in."""
        for ev in self._parser.feed(data):
            openai_end = self.api != ANTHROPIC and ev.data == DONE_DATA
            self.take(DONE_DATA if openai_end else orjson.loads(ev.data))
        return self.done

    def take(self, data: Any) -> bool:
        """Take one event sent to the client, as parsed JSON (`DONE_DATA` for OpenAI's
        end marker); True once the stream's end marker is in."""
        if self.api == ANTHROPIC:
            self._anthropic(data)
        elif data == DONE_DATA:
            self.done = True
        else:
            self._openai(data)
        return self.done

    # -- OpenAI -----------------------------------------------------------------------

    def _openai(self, chunk: Any) -> None:
        if not isinstance(chunk, dict) or "choices" not in chunk:
            return
        if not self._head:
            self._head = {k: chunk.get(k) for k in ("id", "created", "model")}
            if chunk.get("system_fingerprint") is not None:
                self._head["system_fingerprint"] = chunk["system_fingerprint"]
        if chunk.get("usage"):
            self._usage = chunk["usage"]
        for c in chunk["choices"]:
            st = self._choices.setdefault(
                int(c.get("index") or 0),
                {
                    "content": [],
                    "refusal": [],
                    "tools": {},
                    "finish": None,
                    "null": True,
                    "logprobs": None,
                },
            )
            if isinstance(c.get("logprobs"), dict):
                _add_logprobs(st, c["logprobs"])
            delta = c.get("delta") or {}
            if delta.get("content") is not None:
                st["null"] = False
                st["content"].append(delta["content"])
            if delta.get("refusal"):
                st["refusal"].append(delta["refusal"])
            for tc in delta.get("tool_calls") or ():
                t = st["tools"].setdefault(
                    int(tc.get("index") or 0),
                    {"id": None, "type": "function", "function": {"name": "", "arguments": ""}},
                )
                if tc.get("id"):
                    t["id"] = tc["id"]
                fn = tc.get("function") or {}
                if fn.get("name"):
                    t["function"]["name"] += fn["name"]
                if fn.get("arguments"):
                    t["function"]["arguments"] += fn["arguments"]
            if c.get("finish_reason"):
                st["finish"] = c["finish_reason"]

    def _openai_response(self, usage: Usage) -> dict[str, Any] | None:
        if not self._choices or any(st["finish"] is None for st in self._choices.values()):
            return None
        choices = []
        for idx in sorted(self._choices):
            st = self._choices[idx]
            msg: dict[str, Any] = {
                "role": "assistant",
                "content": None if st["null"] and not st["content"] else "".join(st["content"]),
                "refusal": "".join(st["refusal"]) or None,
            }
            if st["tools"]:
                msg["tool_calls"] = [st["tools"][t] for t in sorted(st["tools"])]
            choices.append(
                {
                    "index": idx,
                    "message": msg,
                    "logprobs": st["logprobs"],
                    "finish_reason": st["finish"],
                }
            )
        return {
            **self._head,
            "object": "chat.completion",
            "choices": choices,
            "usage": self._usage or openai_usage_json(usage),
        }

    # -- Anthropic --------------------------------------------------------------------

    def _anthropic(self, data: Any) -> None:
        kind = data.get("type") if isinstance(data, dict) else None
        if kind == "message_start":
            self._message = dict(data.get("message") or {})
        elif kind == "content_block_start":
            self._blocks[int(data.get("index") or 0)] = dict(data.get("content_block") or {})
        elif kind == "content_block_delta":
            i = int(data.get("index") or 0)
            block = self._blocks.setdefault(i, {})
            d = data.get("delta") or {}
            dt = d.get("type")
            if dt == "text_delta":
                block["text"] = (block.get("text") or "") + (d.get("text") or "")
            elif dt == "input_json_delta":
                self._json.setdefault(i, []).append(d.get("partial_json") or "")
            elif dt == "thinking_delta":
                block["thinking"] = (block.get("thinking") or "") + (d.get("thinking") or "")
            elif dt == "signature_delta":
                block["signature"] = d.get("signature")
            elif dt == "citations_delta":
                block.setdefault("citations", []).append(d.get("citation"))
        elif kind == "content_block_stop":
            i = int(data.get("index") or 0)
            if i in self._json:
                text = "".join(self._json.pop(i))
                self._blocks.setdefault(i, {})["input"] = orjson.loads(text) if text else {}
        elif kind == "message_delta":
            delta = data.get("delta") or {}
            for k in ("stop_reason", "stop_sequence"):
                if k in delta:
                    self._message[k] = delta[k]
            usage = dict(self._message.get("usage") or {})
            usage.update({k: v for k, v in (data.get("usage") or {}).items() if v is not None})
            self._message["usage"] = usage
        elif kind == "message_stop":
            self.done = True

    def _anthropic_response(self) -> dict[str, Any] | None:
        reason = self._message.get("stop_reason")
        if not self._message or reason is None or reason == "pause_turn":
            return None
        return {**self._message, "content": [self._blocks[i] for i in sorted(self._blocks)]}

    def response(self, usage: Usage) -> dict[str, Any] | None:
        """The complete response, or None when the stream did not finish."""
        if not self.done:
            return None
        if self.api == ANTHROPIC:
            return self._anthropic_response()
        return self._openai_response(usage)


def complete(api: str, resp: Any) -> bool:
    """Is a JSON response a finished answer worth storing?"""
    if not isinstance(resp, dict):
        return False
    if api == ANTHROPIC:
        return resp.get("type") == "message" and resp.get("stop_reason") not in (None, "pause_turn")
    choices = resp.get("choices")
    if not isinstance(choices, list) or not choices:
        return False
    return all(isinstance(c, dict) and c.get("finish_reason") for c in choices)
