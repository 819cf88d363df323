"""Replay a stored response as a stream in the format of the API that was called.

An entry holds the complete JSON response. A streamed request served from it
gets the events the provider would have sent: OpenAI ``chat.completion.chunk``
events (a role chunk, content and tool-call pieces, with the log probabilities
of a request that asked for them, a finish chunk, a usage
chunk when ``stream_options.include_usage`` asked for one, ``[DONE]``), or
Anthropic ``message_start``, ``content_block_start/delta/stop`` for each text,
thinking and tool-use block, ``message_delta`` and ``message_stop``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from typing import Any

import orjson

from ..pipeline.context import ANTHROPIC
from ..pipeline.stream import DONE, cost_comment
from ..sse import frame

PIECE = 48  # characters per replayed delta


def pieces(text: str, size: int = PIECE) -> Iterator[str]:
    for i in range(0, len(text), size):
        yield text[i : i + size]


def replay_frames(api: str, resp: dict[str, Any], *, include_usage: bool) -> list[bytes]:
    """Every frame of the stream but the terminal one(s), then the terminal ones."""
    if api == ANTHROPIC:
        return list(_anthropic(resp))
    return list(_openai(resp, include_usage))


async def replay_stream(frames: list[bytes], cost: Decimal | None) -> AsyncIterator[bytes]:
    """A replayed stream, in one write (its record is already committed), its cost
    in a comment before its terminal frame (`replay_frames`)."""
    yield b"".join(frames[:-1]) + cost_comment(cost) + frames[-1]


# -- OpenAI ---------------------------------------------------------------------------


def _openai(resp: dict[str, Any], include_usage: bool) -> Iterator[bytes]:
    base: dict[str, Any] = {
        "id": resp.get("id"),
        "object": "chat.completion.chunk",
        "created": resp.get("created"),
        "model": resp.get("model"),
    }
    if resp.get("system_fingerprint") is not None:
        base["system_fingerprint"] = resp["system_fingerprint"]
    if include_usage:
        base["usage"] = None

    def chunk(
        index: int, delta: dict[str, Any], finish: str | None = None, logprobs: Any = None
    ) -> bytes:
        choice = {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
        return frame(orjson.dumps({**base, "choices": [choice]}))

    for choice in resp.get("choices") or ():
        idx = int(choice.get("index") or 0)
        msg = choice.get("message") or {}
        content = msg.get("content")
        lp = choice.get("logprobs")
        lp = lp if isinstance(lp, dict) else {}
        yield chunk(idx, {"role": "assistant", "content": "" if content is not None else None})
        for piece, logprobs in _content(content or "", lp.get("content")):
            yield chunk(idx, {"content": piece}, logprobs=logprobs)
        if msg.get("refusal"):
            refusal = lp.get("refusal")
            logprobs = {"content": None, "refusal": refusal} if refusal else None
            yield chunk(idx, {"refusal": msg["refusal"]}, logprobs=logprobs)
        for t, tc in enumerate(msg.get("tool_calls") or ()):
            fn = tc.get("function") or {}
            head = {
                "index": t,
                "id": tc.get("id"),
                "type": tc.get("type", "function"),
                "function": {"name": fn.get("name"), "arguments": ""},
            }
            yield chunk(idx, {"tool_calls": [head]})
            for piece in pieces(fn.get("arguments") or ""):
                yield chunk(idx, {"tool_calls": [{"index": t, "function": {"arguments": piece}}]})
        yield chunk(idx, {}, choice.get("finish_reason") or "stop")
    if include_usage:
        yield frame(orjson.dumps({**base, "choices": [], "usage": resp.get("usage")}))
    yield DONE


def _content(text: str, tokens: Any) -> Iterator[tuple[str, dict[str, Any] | None]]:
    """(piece, its chunk's logprobs): with the log probabilities a request asked for,
    one token per chunk as the provider streams them (all on the first piece when
    the tokens do not spell the text); otherwise pieces of `PIECE` characters."""
    if not isinstance(tokens, list) or not tokens:
        for piece in pieces(text):
            yield piece, None
        return
    spelled = [
        t["token"] for t in tokens if isinstance(t, dict) and isinstance(t.get("token"), str)
    ]
    if len(spelled) == len(tokens) and "".join(spelled) == text:
        for token, lp in zip(spelled, tokens, strict=True):
            yield token, {"content": [lp], "refusal": None}
        return
    logprobs: dict[str, Any] | None = {"content": tokens, "refusal": None}
    for piece in pieces(text):
        yield piece, logprobs
        logprobs = None


# -- Anthropic ------------------------------------------------------------------------


def _event(name: str, payload: dict[str, Any]) -> bytes:
    return frame(orjson.dumps({"type": name, **payload}), name)


def _anthropic(resp: dict[str, Any]) -> Iterator[bytes]:
    usage = dict(resp.get("usage") or {})
    start = {k: v for k, v in resp.items() if k not in ("content", "stop_reason", "stop_sequence")}
    start.update(content=[], stop_reason=None, stop_sequence=None, usage={**usage})
    start["usage"]["output_tokens"] = 0
    yield _event("message_start", {"message": start})
    for i, block in enumerate(resp.get("content") or ()):
        yield from _block(i, block)
    delta = {"stop_reason": resp.get("stop_reason"), "stop_sequence": resp.get("stop_sequence")}
    yield _event("message_delta", {"delta": delta, "usage": usage})
    yield _event("message_stop", {})


def _block(i: int, block: dict[str, Any]) -> Iterator[bytes]:
    kind = block.get("type")

    def delta(d: dict[str, Any]) -> bytes:
        return _event("content_block_delta", {"index": i, "delta": d})

    if kind == "text":
        head = {k: v for k, v in block.items() if k != "citations"}
        yield _event("content_block_start", {"index": i, "content_block": {**head, "text": ""}})
        for piece in pieces(block.get("text") or ""):
            yield delta({"type": "text_delta", "text": piece})
        for citation in block.get("citations") or ():
            yield delta({"type": "citations_delta", "citation": citation})
    elif kind in ("tool_use", "server_tool_use"):
        yield _event("content_block_start", {"index": i, "content_block": {**block, "input": {}}})
        args = orjson.dumps(block.get("input") or {}).decode()
        for piece in pieces(args):
            yield delta({"type": "input_json_delta", "partial_json": piece})
    elif kind == "thinking":
        head = {"type": "thinking", "thinking": "", "signature": ""}
        yield _event("content_block_start", {"index": i, "content_block": head})
        for piece in pieces(block.get("thinking") or ""):
            yield delta({"type": "thinking_delta", "thinking": piece})
        if block.get("signature"):
            yield delta({"type": "signature_delta", "signature": block["signature"]})
    else:  # redacted thinking, server tool results: whole in the start event
        yield _event("content_block_start", {"index": i, "content_block": block})
    yield _event("content_block_stop", {"index": i})
