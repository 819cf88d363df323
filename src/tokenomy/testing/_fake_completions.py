"""The fake's legacy Completions API (``POST /v1/completions``), as OpenAI documents it:
a ``text_completion`` object, or its chunks streamed with the usage chunk that
``stream_options.include_usage`` asks for; a prompt is a string, a list of strings,
or token ids (one list, or a list of lists). ``max_tokens`` defaults to 16."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import orjson

from ._fake_common import (
    FakeRequest,
    reply_pieces,
    run_stream,
    send_body,
    words,
)
from ._fake_openai import (
    BROKEN_EVENT,
    FINGERPRINT,
    admitted,
    error_body,
    headers_for,
    scenario_of,
    send_error,
    text_inputs,
)

DEFAULT_MAX_TOKENS = 16  # the API's default for this endpoint


async def completions(req: FakeRequest) -> None:
    if not await admitted(req):
        return
    data: dict[str, Any] = req.data
    items = text_inputs(data.get("prompt"))
    if items is None:
        message = "Invalid 'prompt': expected a string, an array of strings or token ids."
        await send_error(req, 400, message, param="prompt")
        return
    n = data.get("n") or 1
    limit = data.get("max_tokens", DEFAULT_MAX_TOKENS)
    if not isinstance(n, int) or not 1 <= n <= 128 or not isinstance(limit, int) or limit < 1:
        await send_error(req, 400, "Invalid 'n' or 'max_tokens'.")
        return
    sc = await scenario_of(req, next((p for p in items if isinstance(p, str)), ""), "prompt")
    if sc is None:
        return
    pieces, truncated = reply_pieces(sc, limit)
    finish = "length" if truncated else "stop"
    choices = len(items) * n
    prompt_tokens = sum(words(p) if isinstance(p, str) else len(p) for p in items)
    usage = None
    if not sc.no_usage:
        completion = choices * len(pieces)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": prompt_tokens + completion,
        }
    envelope = {
        "id": req.state.new_id("cmpl-"),
        "object": "text_completion",
        "created": int(time.time()),
        "model": data["model"],
        "system_fingerprint": FINGERPRINT,
    }
    if data.get("stream"):
        options = data.get("stream_options")
        asked = isinstance(options, dict) and options.get("include_usage") is True
        wanted = usage if asked and req.options.stream_usage else None
        events = _events(envelope, choices, pieces, finish, wanted)
        error_event = b"data: " + error_body(500, None, None, None) + b"\n\n"
        await run_stream(
            req, sc, headers_for(req), events, cut_at=2, broken=BROKEN_EVENT,
            error_event=error_event,
        )  # fmt: skip
        return
    text_out = "".join(pieces)
    body: dict[str, Any] = {
        **envelope,
        "choices": [
            {"text": text_out, "index": i, "logprobs": None, "finish_reason": finish}
            for i in range(choices)
        ],
    }
    if usage is not None:
        body["usage"] = usage
    await send_body(req.send, 200, orjson.dumps(body), headers_for(req))


def _events(
    envelope: dict[str, Any],
    choices: int,
    pieces: list[str],
    finish: str,
    usage: dict[str, Any] | None,
) -> Iterator[bytes]:
    def chunk(data: dict[str, Any]) -> bytes:
        return b"data: " + orjson.dumps({**envelope, **data}) + b"\n\n"

    for piece in pieces:
        for i in range(choices):
            choice = {"text": piece, "index": i, "logprobs": None, "finish_reason": None}
            yield chunk({"choices": [choice]})
    for i in range(choices):
        yield chunk(
            {"choices": [{"text": "", "index": i, "logprobs": None, "finish_reason": finish}]}
        )
    if usage is not None:
        yield chunk({"choices": [], "usage": usage})
    yield b"data: [DONE]\n\n"
