"""The fake's OpenAI side: chat completions, embeddings and the model list."""

from __future__ import annotations

import base64
import math
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from ._fake_common import (
    CONTEXT_WINDOW,
    DEFAULT_REASONING_TOKENS,
    PER_MESSAGE_TOKENS,
    DirectiveError,
    FakeRequest,
    Headers,
    Scenario,
    bearer_token,
    drop_connection,
    embedding_bytes,
    error_headers,
    field_list,
    is_reasoning_model,
    parse_scenario,
    pause,
    reply_pieces,
    run_stream,
    sample_json,
    send_body,
    send_page,
    should_fail,
    split_even,
    tool_arguments,
    words,
)

FINGERPRINT = "fp_fake000001"
EMBEDDING_DIMS = 8
# Well below any real limit; remaining is fixed so headers stay cheap to build.
_RATE_OK: Headers = [
    (b"x-ratelimit-limit-requests", b"10000"),
    (b"x-ratelimit-remaining-requests", b"9999"),
    (b"x-ratelimit-reset-requests", b"6ms"),
    (b"x-ratelimit-limit-tokens", b"2000000"),
    (b"x-ratelimit-remaining-tokens", b"1999000"),
    (b"x-ratelimit-reset-tokens", b"30ms"),
]
_RATE_LIMITED: Headers = [
    (b"x-ratelimit-limit-requests", b"10000"),
    (b"x-ratelimit-remaining-requests", b"0"),
    (b"x-ratelimit-reset-requests", b"1s"),
    (b"x-ratelimit-limit-tokens", b"2000000"),
    (b"x-ratelimit-remaining-tokens", b"0"),
    (b"x-ratelimit-reset-tokens", b"1s"),
]
# status -> (error.type, message)
ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("invalid_request_error", "Incorrect API key provided."),
    403: ("invalid_request_error", "You are not allowed to use this resource."),
    404: ("invalid_request_error", "The model does not exist or you do not have access to it."),
    429: ("requests", "Rate limit reached for requests."),
    500: (
        "server_error",
        "The server had an error while processing your request. Sorry about that!",
    ),
    503: ("server_error", "The engine is currently overloaded, please try again later."),
}
# The error.code a status directive reports.
SCENARIO_CODES = {401: "invalid_api_key", 404: "model_not_found", 429: "rate_limit_exceeded"}
BROKEN_JSON = b'{"id": "chatcmpl-broken", "object": "chat.completion", "choices": ['
BROKEN_EVENT = b"data: {not json\n\n"


def headers_for(req: FakeRequest, status: int = 200, retry_after: int = 1) -> Headers:
    rate = _RATE_LIMITED if status == 429 else _RATE_OK
    out = [(b"x-request-id", req.state.new_id("req_").encode()), *rate]
    if status in (429, 503, 529):
        out.append((b"retry-after", str(retry_after).encode()))
    return out


def error_body(status: int, message: str | None, param: str | None, code: str | None) -> bytes:
    kind, default_message = ERRORS.get(
        status, ("server_error" if status >= 500 else "invalid_request_error", f"Error {status}.")
    )
    error = {"message": message or default_message, "type": kind, "param": param, "code": code}
    return orjson.dumps({"error": error})


async def send_error(
    req: FakeRequest,
    status: int,
    message: str | None = None,
    *,
    param: str | None = None,
    code: str | None = None,
    retry_after: int = 1,
    extra: Headers | None = None,
) -> None:
    headers = [*headers_for(req, status, retry_after), *(extra or ())]
    await send_body(req.send, status, error_body(status, message, param, code), headers)


async def admitted(req: FakeRequest) -> bool:
    """Checks shared by every OpenAI route; answers the request itself when they fail."""
    key = req.options.api_key
    if key is not None and bearer_token(req.headers) != key:
        await send_error(req, 401, "Incorrect API key provided.", code="invalid_api_key")
        return False
    if not isinstance(req.data, dict):
        message = "We could not parse the JSON body of your request."
        await send_error(req, 400, message)
        return False
    if not isinstance(req.data.get("model"), str) or not req.data["model"]:
        await send_error(req, 400, "you must provide a model parameter")
        return False
    return True


async def play_scenario(req: FakeRequest, sc: Scenario, prompt: str = "messages") -> bool:
    """Delay, reset, error status: True when the scenario already answered. ``prompt``
    names the request's prompt field, which a `too_long` refusal names as its param."""
    await pause(sc.delay_ms)
    if sc.reset and not req.data.get("stream"):
        await drop_connection(req.receive)
        return True
    if should_fail(sc, req.state):
        assert sc.status is not None
        if sc.html:
            await send_page(req.send, sc.status, error_headers(sc))
            return True
        code = SCENARIO_CODES.get(sc.status)
        await send_error(
            req, sc.status, code=code, retry_after=sc.retry_after_s, extra=error_headers(sc)
        )
        return True
    if sc.flex_busy and req.data.get("service_tier") == "flex":  # not charged by OpenAI
        message = "Resource unavailable: no flex processing capacity for this request."
        await send_error(req, 429, message, code="resource_unavailable")
        return True
    if sc.too_long:  # as OpenAI refuses a prompt past the context window
        message = (
            f"This model's maximum context length is {CONTEXT_WINDOW} tokens. However, "
            f"your {prompt} resulted in {CONTEXT_WINDOW + 1} tokens. "
            f"Please reduce the length of the {prompt}."
        )
        await send_error(req, 400, message, param=prompt, code="context_length_exceeded")
        return True
    if sc.malformed and not req.data.get("stream"):
        await send_body(req.send, 200, BROKEN_JSON, headers_for(req))
        return True
    return False


async def scenario_of(req: FakeRequest, text: str, prompt: str) -> Scenario | None:
    """The scenario ``text`` directs; None when it answered the request itself (a
    malformed directive, a reset, an error status...). ``prompt`` as for `play_scenario`."""
    try:
        sc = parse_scenario(text, req.options, req.data.get("model"))
    except DirectiveError as exc:
        await send_error(req, 400, str(exc))
        return None
    return None if await play_scenario(req, sc, prompt) else sc


# -- chat completions ---------------------------------------------------------------------------


def content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    parts = [p.get("text") for p in field_list(content) if isinstance(p, dict)]
    return " ".join(p for p in parts if isinstance(p, str))


def _prompt_tokens(messages: list[Any], tools: list[Any]) -> int:
    total = 0
    for m in messages:
        if not isinstance(m, dict):
            continue
        total += PER_MESSAGE_TOKENS + words(content_text(m.get("content")))
        for call in field_list(m.get("tool_calls")):
            if isinstance(call, dict) and isinstance(call.get("function"), dict):
                total += words(call["function"].get("arguments"))
    for tool in tools:
        fn = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(fn, dict):
            total += words(fn.get("name")) + words(fn.get("description"))
    return total


def last_user_text(messages: list[Any]) -> str:
    for m in reversed(messages):
        if isinstance(m, dict) and m.get("role") == "user":
            text = content_text(m.get("content"))
            if text:
                return text
    return ""


def _pick_tool(tools: list[Any], name: str) -> tuple[str, str]:
    functions = [
        t["function"]
        for t in tools
        if isinstance(t, dict) and isinstance(t.get("function"), dict) and t["function"].get("name")
    ]
    for fn in functions:
        if name in ("", fn["name"]):
            return str(fn["name"]), tool_arguments(fn.get("parameters"))
    raise DirectiveError(f"[[fake:tool={name}]] names no function tool of the request")


def _json_reply(text: str, response_format: Any) -> str | None:
    """The reply as JSON when `response_format` asks for JSON, else None."""
    if not isinstance(response_format, dict):
        return None
    kind = response_format.get("type")
    if kind == "json_object":
        return orjson.dumps({"answer": text}).decode()
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if isinstance(schema, dict) and (schema.get("properties") or schema.get("$ref")):
            return orjson.dumps(sample_json(schema, text)).decode()
        return orjson.dumps({"answer": text}).decode()
    return None


@dataclass(slots=True)
class _Reply:
    """One planned chat completion: the same reply in each of the `n` choices."""

    pieces: list[str]  # content pieces, or the tool call's argument fragments
    tool: tuple[str, str] | None  # (tool call id, function name)
    finish_reason: str
    usage: dict[str, Any] | None
    vary: bool = False  # choice i > 0 ends with " i"
    service_tier: str = "default"  # the tier that served it: "flex" or "priority" if asked
    logprob: float = -0.25  # each token's log probability, when `logprobs` is asked for


def _plan_chat(req: FakeRequest, sc: Scenario, data: dict[str, Any], n: int) -> _Reply:
    messages: list[Any] = data["messages"]
    tools = field_list(data.get("tools"))
    limit = data.get("max_completion_tokens") or data.get("max_tokens")
    limit = limit if isinstance(limit, int) and limit > 0 else None
    last_is_tool_result = isinstance(messages[-1], dict) and messages[-1].get("role") == "tool"
    tool: tuple[str, str] | None = None
    if sc.tool is not None and not last_is_tool_result:
        name, arguments = _pick_tool(tools, sc.tool)
        tool = (req.state.new_id("call_"), name)
        pieces = split_even(arguments, sc.chunks)
        finish = "tool_calls"
    else:
        pieces, truncated = reply_pieces(sc, limit)
        as_json = _json_reply("".join(pieces), data.get("response_format"))
        if as_json is not None:
            pieces = split_even(as_json, len(pieces))
        finish = "length" if truncated else "stop"
    usage = None
    if not sc.no_usage:
        model: str = data["model"]
        reasoning = sc.reasoning
        if reasoning is None:
            reasoning = DEFAULT_REASONING_TOKENS if is_reasoning_model(model) else 0
        prompt = _prompt_tokens(messages, tools)
        usage = chat_usage(
            prompt + sc.audio_in,
            n * len(pieces) + reasoning + sc.audio_out,
            sc.cached or 0,
            reasoning,
            audio=(sc.audio_in, sc.audio_out),
            written=sc.cache_write,
        )
    asked = data.get("service_tier")
    tier = asked if asked in ("flex", "priority") else "default"
    reply = _Reply(pieces, tool, finish, usage, sc.vary, tier)
    if sc.confidence is not None:  # OpenAI's floor for an impossible token is -9999
        reply.logprob = math.log(sc.confidence / 100) if sc.confidence else -9999.0
    return reply


def chat_usage(
    prompt: int,
    completion: int,
    cached: int,
    reasoning: int,
    audio: tuple[int, int] = (0, 0),
    written: int = 0,
) -> dict[str, Any]:
    """OpenAI's usage object; ``audio`` (prompt, completion) is part of the counts,
    and so are the cache reads (``cached``) and writes (``written``, reported when
    there are any: at most the prompt not read from the cache)."""
    details = {"cached_tokens": min(cached, prompt), "audio_tokens": audio[0]}
    if written:
        details["cache_write_tokens"] = min(written, prompt - details["cached_tokens"])
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": details,
        "completion_tokens_details": {
            "reasoning_tokens": reasoning,
            "audio_tokens": audio[1],
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


async def chat_completions(req: FakeRequest) -> None:
    if not await admitted(req):
        return
    data: dict[str, Any] = req.data
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        message = "Missing required parameter: 'messages'."
        await send_error(req, 400, message, param="messages", code="missing_required_parameter")
        return
    if data.get("max_tokens") is not None and is_reasoning_model(data["model"]):
        # As OpenAI's reasoning models answer: they take only max_completion_tokens.
        message = (
            "Unsupported parameter: 'max_tokens' is not supported with this model. "
            "Use 'max_completion_tokens' instead."
        )
        await send_error(req, 400, message, param="max_tokens", code="unsupported_parameter")
        return
    n = data.get("n") or 1
    if not isinstance(n, int) or not 1 <= n <= 128:
        await send_error(req, 400, "Invalid 'n': expected an integer from 1 to 128.", param="n")
        return
    try:
        sc = parse_scenario(last_user_text(messages), req.options, data.get("model"))
        if await play_scenario(req, sc):
            return
        if sc.ignore_n:
            n = 1
        reply = _plan_chat(req, sc, data, n)
    except DirectiveError as exc:
        await send_error(req, 400, str(exc))
        return
    if data.get("stream"):
        options = data.get("stream_options")
        asked = isinstance(options, dict) and options.get("include_usage") is True
        include_usage = asked and req.options.stream_usage and reply.usage is not None
        logprobs = data.get("logprobs") is True
        events = _chat_events(req, data["model"], n, reply, include_usage, logprobs)
        error_event = b"data: " + error_body(500, None, None, None) + b"\n\n"
        await run_stream(
            req,
            sc,
            headers_for(req),
            events,
            cut_at=2,
            broken=BROKEN_EVENT,
            error_event=error_event,
        )
        return
    body = _chat_json(req, data["model"], n, reply, data.get("logprobs") is True)
    await send_body(req.send, 200, body, headers_for(req))


def _logprob(token: str, value: float) -> dict[str, Any]:
    """A token's log probability, as ``logprobs: true`` asks for (the fake's tokens
    are its content pieces)."""
    return {"token": token, "logprob": value, "bytes": list(token.encode()), "top_logprobs": []}


def _logprobs(tokens: list[str], value: float) -> dict[str, Any]:
    return {"content": [_logprob(t, value) for t in tokens], "refusal": None}


def _chat_json(req: FakeRequest, model: str, n: int, reply: _Reply, logprobs: bool) -> bytes:
    message: dict[str, Any]
    if reply.tool is None:
        message = {"role": "assistant", "content": "".join(reply.pieces), "refusal": None}
    else:
        call_id, name = reply.tool
        function = {"name": name, "arguments": "".join(reply.pieces)}
        call = {"id": call_id, "type": "function", "function": function}
        message = {"role": "assistant", "content": None, "refusal": None, "tool_calls": [call]}
    message["annotations"] = []
    choices = []
    for i in range(n):
        tokens = reply.pieces + ([f" {i}"] if reply.vary and i else [])
        choices.append(
            {
                "index": i,
                "message": _variant(message, i) if reply.vary and i else message,
                "logprobs": (
                    _logprobs(tokens, reply.logprob) if logprobs and reply.tool is None else None
                ),
                "finish_reason": reply.finish_reason,
            }
        )
    body: dict[str, Any] = {
        "id": req.state.new_id("chatcmpl-"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
    }
    if reply.usage is not None:
        body["usage"] = reply.usage
    body["service_tier"] = reply.service_tier
    body["system_fingerprint"] = FINGERPRINT
    return orjson.dumps(body)


def _variant(message: dict[str, Any], i: int) -> dict[str, Any]:
    content = message.get("content")
    return {**message, "content": f"{content} {i}"} if isinstance(content, str) else message


def _chat_events(
    req: FakeRequest, model: str, n: int, reply: _Reply, include_usage: bool, logprobs: bool
) -> Iterator[bytes]:
    envelope = {
        "id": req.state.new_id("chatcmpl-"),
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "service_tier": reply.service_tier,
        "system_fingerprint": FINGERPRINT,
    }
    # Every chunk shares the envelope: serialise it once and splice the choices in.
    head = b"data: " + orjson.dumps(envelope)[:-1] + b',"choices":'
    tail = b',"usage":null}\n\n' if include_usage else b"}\n\n"

    def chunk(
        index: int, delta: dict[str, Any], finish: str | None = None, lp: Any = None
    ) -> bytes:
        choice = {"index": index, "delta": delta, "logprobs": lp, "finish_reason": finish}
        return head + orjson.dumps([choice]) + tail

    first: dict[str, Any] = {"role": "assistant", "content": "", "refusal": None}
    if reply.tool is not None:
        call_id, name = reply.tool
        function = {"name": name, "arguments": ""}
        call = {"index": 0, "id": call_id, "type": "function", "function": function}
        first = {"role": "assistant", "content": None, "refusal": None, "tool_calls": [call]}
    for i in range(n):
        yield chunk(i, first)
    for piece in reply.pieces:
        lp = None
        if reply.tool is None:
            delta: dict[str, Any] = {"content": piece}
            lp = _logprobs([piece], reply.logprob) if logprobs else None
        else:
            delta = {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}
        for i in range(n):
            yield chunk(i, delta, lp=lp)
    for i in range(n):
        yield chunk(i, {}, reply.finish_reason)
    if include_usage and reply.usage is not None:
        yield head + b"[]" + b',"usage":' + orjson.dumps(reply.usage) + b"}\n\n"
    yield b"data: [DONE]\n\n"


# -- embeddings and models ----------------------------------------------------------------------


def text_inputs(value: Any) -> list[Any] | None:
    """An embeddings ``input`` or a legacy completion's ``prompt`` as a list of
    strings or token arrays (one given flat is one); None when malformed."""

    def ids(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not value:
        return None
    if all(ids(v) for v in value):
        return [value]
    if all(isinstance(v, str) for v in value):
        return value
    if all(isinstance(v, list) and v and all(ids(t) for t in v) for v in value):
        return value
    return None


async def embeddings(req: FakeRequest) -> None:
    if not await admitted(req):
        return
    data: dict[str, Any] = req.data
    inputs = text_inputs(data.get("input"))
    if inputs is None:
        await send_error(req, 400, "Invalid 'input': expected a string or array.", param="input")
        return
    dims = data.get("dimensions") or EMBEDDING_DIMS
    encoding = data.get("encoding_format") or "float"
    if not isinstance(dims, int) or not 1 <= dims <= 4096 or encoding not in ("float", "base64"):
        await send_error(req, 400, "Invalid 'dimensions' or 'encoding_format'.")
        return
    sc = await scenario_of(req, next((i for i in inputs if isinstance(i, str)), ""), "input")
    if sc is None:
        return
    items = []
    tokens = 0
    for index, item in enumerate(inputs):
        tokens += words(item) if isinstance(item, str) else len(item)
        # (byte - 128) / 128 is exact in float32, so both encodings carry the same numbers.
        values = [(b - 128) / 128 for b in embedding_bytes(item, dims)]
        vector: Any = values
        if encoding == "base64":
            vector = base64.b64encode(struct.pack(f"<{dims}f", *values)).decode()
        items.append({"object": "embedding", "index": index, "embedding": vector})
    body: dict[str, Any] = {"object": "list", "data": items, "model": data["model"]}
    if not sc.no_usage:
        body["usage"] = {"prompt_tokens": tokens, "total_tokens": tokens}
    await send_body(req.send, 200, orjson.dumps(body), headers_for(req))


async def list_models(req: FakeRequest) -> None:
    key = req.options.api_key
    if key is not None and bearer_token(req.headers) != key:
        await send_error(req, 401, "Incorrect API key provided.", code="invalid_api_key")
        return
    data = [
        {"id": m, "object": "model", "created": 1_700_000_000, "owned_by": "tokenomy-fake"}
        for m in req.options.models
    ]
    body = orjson.dumps({"object": "list", "data": data})
    await send_body(req.send, 200, body, headers_for(req))


MODERATION_CATEGORIES = ("harassment", "hate", "self-harm", "sexual", "violence")


async def moderations(req: FakeRequest) -> None:
    """``POST /v1/moderations``: one result per input, flagged (as violence) when its
    text holds ``[[fake:flag]]``."""
    if not await admitted(req):
        return
    value = req.data.get("input")
    inputs = [value] if isinstance(value, str) else field_list(value)
    if not inputs:
        await send_error(req, 400, "Invalid 'input': expected a string or array.", param="input")
        return
    results = []
    for item in inputs:
        text = item if isinstance(item, str) else content_text([item])
        flagged = "[[fake:flag]]" in text
        categories = {c: flagged and c == "violence" for c in MODERATION_CATEGORIES}
        scores = {c: 0.97 if hit else 0.0001 for c, hit in categories.items()}
        applied = {c: ["text"] for c in MODERATION_CATEGORIES}
        results.append({"flagged": flagged, "categories": categories,
                        "category_scores": scores, "category_applied_input_types": applied})  # fmt: skip
    body = {"id": req.state.new_id("modr-"), "model": req.data["model"], "results": results}
    await send_body(req.send, 200, orjson.dumps(body), headers_for(req))
