"""The fake's Anthropic side: messages (with prompt caching), token counting, the model list."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from ._fake_common import (
    CONTEXT_WINDOW,
    PER_MESSAGE_TOKENS,
    DirectiveError,
    FakeRequest,
    Headers,
    Scenario,
    bearer_token,
    drop_connection,
    error_headers,
    field_list,
    parse_scenario,
    pause,
    reply_pieces,
    run_stream,
    send_body,
    send_page,
    should_fail,
    split_even,
    tool_arguments,
    words,
)

# status -> (error.type, message)
ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    402: ("billing_error", "Your credit balance is too low to access the Anthropic API."),
    403: ("permission_error", "Your API key does not have permission to use this resource."),
    404: ("not_found_error", "Not found."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "This request would exceed the rate limit for your organization."),
    500: ("api_error", "Internal server error"),
    504: ("timeout_error", "Request timed out."),
    529: ("overloaded_error", "Overloaded"),
}
BROKEN_JSON = b'{"id": "msg_broken", "type": "message", "content": ['
BROKEN_EVENT = b"event: content_block_delta\ndata: {not json\n\n"
OVERLOADED_EVENT = (
    b'event: error\ndata: {"type":"error","error":'
    b'{"type":"overloaded_error","message":"Overloaded"}}\n\n'
)
# (name, limit, remaining): remaining is fixed so headers stay cheap to build.
_RATE_LIMITS = (
    (b"requests", b"4000", b"3999"),
    (b"tokens", b"2000000", b"1999000"),
    (b"input-tokens", b"1600000", b"1599000"),
    (b"output-tokens", b"400000", b"399000"),
)


def headers_for(
    req: FakeRequest, status: int = 200, retry_after: int = 1, request_id: str | None = None
) -> Headers:
    request_id = request_id or req.state.new_id("req_")
    reset = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 1)).encode()
    out: Headers = [(b"request-id", request_id.encode())]
    for name, limit, remaining in _RATE_LIMITS:
        prefix = b"anthropic-ratelimit-" + name
        out.append((prefix + b"-limit", limit))
        out.append((prefix + b"-remaining", b"0" if status == 429 else remaining))
        out.append((prefix + b"-reset", reset))
    if status in (429, 503, 529):
        out.append((b"retry-after", str(retry_after).encode()))
    return out


async def send_error(
    req: FakeRequest,
    status: int,
    message: str | None = None,
    retry_after: int = 1,
    extra: Headers | None = None,
) -> None:
    kind, default = ERRORS.get(
        status, ("api_error" if status >= 500 else "invalid_request_error", f"Error {status}.")
    )
    request_id = req.state.new_id("req_")
    error = {"type": kind, "message": message or default}
    body = orjson.dumps({"type": "error", "error": error, "request_id": request_id})
    headers = [*headers_for(req, status, retry_after, request_id), *(extra or ())]
    await send_body(req.send, status, body, headers)


async def _admitted(req: FakeRequest, need_max_tokens: bool) -> bool:
    """Checks of the real API, in its order; answers the request itself when one fails."""
    key = req.options.api_key
    if key is not None and key not in (req.headers.get("x-api-key"), bearer_token(req.headers)):
        await send_error(req, 401)
        return False
    if "anthropic-version" not in req.headers:
        await send_error(req, 400, "anthropic-version: header is required")
        return False
    data = req.data
    if not isinstance(data, dict):
        await send_error(req, 400, "There was an issue with the format of your request.")
        return False
    problem = None
    if not isinstance(data.get("model"), str) or not data["model"]:
        problem = "model: Field required"
    elif not isinstance(data.get("messages"), list) or not data["messages"]:
        problem = "messages: Field required"
    elif need_max_tokens and not (isinstance(data.get("max_tokens"), int) and data["max_tokens"]):
        problem = "max_tokens: Field required"
    elif data.get("temperature") is not None and data.get("top_p") is not None:
        # As current models (Sonnet 4.5 and later, Haiku 4.5, Opus 4.1 and later) answer.
        problem = (
            "`temperature` and `top_p` cannot both be specified for this model. "
            "Please use only one."
        )
    if problem is not None:
        await send_error(req, 400, problem)
        return False
    return True


# -- counting and prompt caching ----------------------------------------------------------------


def _block_text(block: Any) -> str:
    if not isinstance(block, dict):
        return ""
    kind = block.get("type")
    if kind == "text":
        return str(block.get("text") or "")
    if kind == "tool_result":
        content = block.get("content")
        if isinstance(content, str):
            return content
        return " ".join(_block_text(b) for b in field_list(content))
    if kind == "tool_use":
        return orjson.dumps(block.get("input")).decode()
    if kind == "thinking":
        return str(block.get("thinking") or "")
    return ""


def _units(data: dict[str, Any]) -> Iterator[tuple[Any, int, Any]]:
    """The prompt in cache order (tools, system, messages): (block, tokens, cache_control)."""
    for tool in field_list(data.get("tools")):
        if isinstance(tool, dict):
            yield (
                tool,
                words(tool.get("name")) + words(tool.get("description")),
                tool.get("cache_control"),
            )
    system = data.get("system")
    if isinstance(system, str):  # the same prompt as one text block
        yield {"type": "text", "text": system}, words(system), None
    for block in field_list(system):
        if isinstance(block, dict):
            yield block, words(_block_text(block)), block.get("cache_control")
    for message in data["messages"]:
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        role = message.get("role")
        if isinstance(content, str):
            yield (
                [role, {"type": "text", "text": content}],
                PER_MESSAGE_TOKENS + words(content),
                None,
            )
            continue
        overhead = PER_MESSAGE_TOKENS
        for block in field_list(content):
            cache_control = block.get("cache_control") if isinstance(block, dict) else None
            yield [role, block], overhead + words(_block_text(block)), cache_control
            overhead = 0


@dataclass(slots=True)
class _Prompt:
    total: int
    read: int = 0
    write_5m: int = 0
    write_1h: int = 0

    @property
    def uncached(self) -> int:
        return self.total - self.read - self.write_5m - self.write_1h


def _measure_prompt(req: FakeRequest, data: dict[str, Any], cached: int | None) -> _Prompt:
    """Count the prompt and play the prompt cache.

    Each `cache_control` block ends a prefix that gets written to the cache. A
    request reads the longest cached prefix ending at one of its block boundaries
    (up to its last breakpoint), and writes the tokens from there to its last
    breakpoint, each segment at the TTL of the breakpoint that ends it.
    """
    units = list(_units(data))
    prompt = _Prompt(sum(tokens for _, tokens, _ in units))
    if cached is not None:
        prompt.read = min(cached, prompt.total)
        return prompt
    automatic = data.get("cache_control")
    if isinstance(automatic, dict) and units and units[-1][2] is None:
        units[-1] = (units[-1][0], units[-1][1], automatic)  # a breakpoint on the last block
    last = max((i for i, (_, _, cc) in enumerate(units) if isinstance(cc, dict)), default=-1)
    if last < 0:
        return prompt
    hasher = hashlib.blake2b(data["model"].encode(), digest_size=16)
    running = 0
    boundaries: list[tuple[bytes, int, Any]] = []
    for block, tokens, cc in units[: last + 1]:
        material = _without_cache_control(block)
        hasher.update(orjson.dumps(material, option=orjson.OPT_SORT_KEYS))
        running += tokens
        boundaries.append((hasher.digest(), running, cc))
    cache = req.state.prompt_cache
    hit = next((i for i in range(last, -1, -1) if boundaries[i][0] in cache), -1)
    done = prompt.read = boundaries[hit][1] if hit >= 0 else 0
    for digest, upto, cc in boundaries[hit + 1 :]:
        if not isinstance(cc, dict) or upto < req.options.cache_min_tokens:
            continue
        if cc.get("ttl") == "1h":
            prompt.write_1h += upto - done
        else:
            prompt.write_5m += upto - done
        done = upto
        if len(cache) >= req.options.cache_limit:
            cache.clear()
        cache.add(digest)
    return prompt


def _without_cache_control(block: Any) -> Any:
    """The block as the cache sees it: a marked block and the same block unmarked
    (or marked by automatic caching) are one prefix."""
    if isinstance(block, list):  # [role, message block or text]
        return [block[0], _without_cache_control(block[1])]
    if isinstance(block, dict) and "cache_control" in block:
        return {k: v for k, v in block.items() if k != "cache_control"}
    return block


def _usage(prompt: _Prompt, output: int, reasoning: int, searches: int) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "input_tokens": prompt.uncached,
        "cache_creation_input_tokens": prompt.write_5m + prompt.write_1h,
        "cache_read_input_tokens": prompt.read,
        "cache_creation": {
            "ephemeral_5m_input_tokens": prompt.write_5m,
            "ephemeral_1h_input_tokens": prompt.write_1h,
        },
        "output_tokens": output,
        "service_tier": "standard",
    }
    if reasoning:
        usage["output_tokens_details"] = {"thinking_tokens": reasoning}
    if searches:
        usage["server_tool_use"] = {"web_search_requests": searches}
    return usage


# What `[[fake:rich]]` puts before the reply: a thinking block, a web search and
# its result, and a text block that cites it (the JSON body's blocks; the stream
# sends them with their documented deltas).
STOP_SEQUENCE = "###"
_SIGNATURE = "EqQBCkYIARgCIkB0ZXN0"
_SEARCH = {"query": "tokenomy"}
_CITATION = {
    "type": "web_search_result_location",
    "url": "https://example.com/a",
    "title": "A",
    "encrypted_index": "Eo8BCioIAhgB",
    "cited_text": "cited words",
}


def _search_blocks(tool_id: str) -> list[dict[str, Any]]:
    """One web search, as the API returns it: the ``server_tool_use`` block that
    calls it and the ``web_search_tool_result`` block that answers it."""
    result = {
        "type": "web_search_result",
        "url": "https://example.com/a",
        "title": "A",
        "encrypted_content": "EqgfCioIARgB",
        "page_age": None,
    }
    return [
        {"type": "server_tool_use", "id": tool_id, "name": "web_search", "input": _SEARCH},
        {"type": "web_search_tool_result", "tool_use_id": tool_id, "content": [result]},
    ]


_RICH_BLOCKS: list[dict[str, Any]] = [
    {"type": "thinking", "thinking": "Let me think.", "signature": _SIGNATURE},
    *_search_blocks("srvtoolu_01"),
    {"type": "text", "text": "cited words", "citations": [_CITATION]},
]


def _block_events(index: int, block: dict[str, Any]) -> Iterator[bytes]:
    """A finished content block as a stream sends it: ``content_block_start`` with
    the block emptied, its documented deltas, ``content_block_stop``."""
    kind = block["type"]
    start, deltas = block, []
    if kind == "thinking":
        start = {"type": "thinking", "thinking": "", "signature": ""}
        deltas = [
            {"type": "thinking_delta", "thinking": block["thinking"]},
            {"type": "signature_delta", "signature": block["signature"]},
        ]
    elif kind == "server_tool_use":
        start = {**block, "input": {}}
        deltas = [
            {"type": "input_json_delta", "partial_json": orjson.dumps(block["input"]).decode()}
        ]
    elif kind == "text":
        start = {"type": "text", "text": ""}
        deltas = [{"type": "citations_delta", "citation": c} for c in block.get("citations", ())]
        deltas.append({"type": "text_delta", "text": block["text"]})
    body = {"type": "content_block_start", "index": index, "content_block": start}
    yield _event("content_block_start", body)
    for delta in deltas:
        body = {"type": "content_block_delta", "index": index, "delta": delta}
        yield _event("content_block_delta", body)
    yield _event("content_block_stop", {"type": "content_block_stop", "index": index})


# -- messages -----------------------------------------------------------------------------------


def _last_user_text(messages: list[Any]) -> str:
    for m in reversed(messages):
        if not isinstance(m, dict) or m.get("role") != "user":
            continue
        content = m.get("content")
        if isinstance(content, str):
            text = content
        else:
            parts = [b for b in field_list(content) if isinstance(b, dict)]
            text = " ".join(str(b.get("text") or "") for b in parts if b.get("type") == "text")
        if text.strip():
            return text
    return ""


def _ends_with_tool_result(messages: list[Any]) -> bool:
    last = messages[-1]
    content = last.get("content") if isinstance(last, dict) else None
    return any(isinstance(b, dict) and b.get("type") == "tool_result" for b in field_list(content))


def _pick_tool(tools: list[Any], name: str) -> tuple[str, str]:
    for tool in tools:
        if isinstance(tool, dict) and tool.get("name") and name in ("", tool["name"]):
            return str(tool["name"]), tool_arguments(tool.get("input_schema"))
    raise DirectiveError(f"[[fake:tool={name}]] names no tool of the request")


@dataclass(slots=True)
class _Reply:
    pieces: list[str]  # text pieces, or the tool input's JSON fragments
    tool: tuple[str, str] | None  # (tool_use id, tool name)
    stop_reason: str
    usage: dict[str, Any] | None
    # The blocks before the reply: `[[fake:rich]]`'s, then a web search's two per search.
    before: list[dict[str, Any]]
    stop_sequence: str | None = None


def _plan(req: FakeRequest, sc: Scenario, data: dict[str, Any]) -> _Reply:
    messages: list[Any] = data["messages"]
    tool = None
    if sc.tool is not None and not _ends_with_tool_result(messages):
        name, arguments = _pick_tool(field_list(data.get("tools")), sc.tool)
        tool = (req.state.new_id("toolu_"), name)
        pieces = split_even(arguments, sc.chunks)
        stop = "tool_use"
    else:
        pieces, truncated = reply_pieces(sc, data["max_tokens"])
        stop = "max_tokens" if truncated else "end_turn"
    if sc.stop is not None:
        stop = sc.stop
    before = list(_RICH_BLOCKS) if sc.rich else []
    for _ in range(sc.web_searches):
        before += _search_blocks(req.state.new_id("srvtoolu_"))
    usage = None
    if not sc.no_usage:
        reasoning = sc.reasoning or 0
        prompt = _measure_prompt(req, data, sc.cached)
        searches = sum(b["type"] == "web_search_tool_result" for b in before)
        usage = _usage(prompt, len(pieces) + reasoning, reasoning, searches)
    stop_sequence = STOP_SEQUENCE if stop == "stop_sequence" else None
    return _Reply(pieces, tool, stop, usage, before, stop_sequence)


async def messages(req: FakeRequest) -> None:
    if not await _admitted(req, need_max_tokens=True):
        return
    data: dict[str, Any] = req.data
    stream = bool(data.get("stream"))
    try:
        sc = parse_scenario(_last_user_text(data["messages"]), req.options, data.get("model"))
        await pause(sc.delay_ms)
        if sc.reset and not stream:
            await drop_connection(req.receive)
            return
        if should_fail(sc, req.state):
            assert sc.status is not None
            if sc.html:
                await send_page(req.send, sc.status, error_headers(sc))
                return
            await send_error(req, sc.status, retry_after=sc.retry_after_s, extra=error_headers(sc))
            return
        if sc.too_long:  # as Anthropic refuses a prompt past the context window
            too_long = f"prompt is too long: {CONTEXT_WINDOW + 1} tokens > {CONTEXT_WINDOW} maximum"
            await send_error(req, 400, too_long)
            return
        if sc.malformed and not stream:
            await send_body(req.send, 200, BROKEN_JSON, headers_for(req))
            return
        reply = _plan(req, sc, data)
    except DirectiveError as exc:
        await send_error(req, 400, str(exc))
        return
    message_id = req.state.new_id("msg_")
    if stream:
        events = _events(message_id, data["model"], reply)
        await run_stream(
            req,
            sc,
            headers_for(req),
            events,
            cut_at=4,
            broken=BROKEN_EVENT,
            error_event=OVERLOADED_EVENT,
        )
        return
    if reply.tool is None:
        content: list[dict[str, Any]] = [{"type": "text", "text": "".join(reply.pieces)}]
    else:
        tool_id, name = reply.tool
        tool_input = orjson.loads("".join(reply.pieces))
        content = [{"type": "tool_use", "id": tool_id, "name": name, "input": tool_input}]
    content = [*reply.before, *content]
    body = _message(message_id, data["model"], content, reply.stop_reason, reply.usage)
    body["stop_sequence"] = reply.stop_sequence
    await send_body(req.send, 200, orjson.dumps(body), headers_for(req))


def _message(
    message_id: str,
    model: str,
    content: list[dict[str, Any]],
    stop_reason: str | None,
    usage: dict[str, Any] | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
    }
    if usage is not None:
        body["usage"] = usage
    return body


def _event(name: str, payload: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


def _events(message_id: str, model: str, reply: _Reply) -> Iterator[bytes]:
    usage = reply.usage
    start_usage = None
    if usage is not None:
        # The searches are made during the turn: counted in the final usage only.
        start_usage = {
            k: v for k, v in usage.items() if k not in ("output_tokens_details", "server_tool_use")
        }
        start_usage["output_tokens"] = 1
    start = _message(message_id, model, [], None, start_usage)
    yield _event("message_start", {"type": "message_start", "message": start})
    for index, before in enumerate(reply.before):
        yield from _block_events(index, before)
    first = len(reply.before)
    block: dict[str, Any] = {"type": "text", "text": ""}
    kind = "text_delta"
    if reply.tool is not None:
        block = {"type": "tool_use", "id": reply.tool[0], "name": reply.tool[1], "input": {}}
        kind = "input_json_delta"
    yield _event(
        "content_block_start",
        {"type": "content_block_start", "index": first, "content_block": block},
    )
    yield _event("ping", {"type": "ping"})
    head = (
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":'
        + str(first).encode()
        + b',"delta":'
    )
    field = "text" if reply.tool is None else "partial_json"
    for piece in reply.pieces:
        yield head + orjson.dumps({"type": kind, field: piece}) + b"}\n\n"
    yield _event("content_block_stop", {"type": "content_block_stop", "index": first})
    delta: dict[str, Any] = {
        "type": "message_delta",
        "delta": {"stop_reason": reply.stop_reason, "stop_sequence": reply.stop_sequence},
    }
    if usage is not None:
        # The final usage is cumulative; today's API repeats the input side here too.
        delta["usage"] = {
            "input_tokens": usage["input_tokens"],
            "cache_creation_input_tokens": usage["cache_creation_input_tokens"],
            "cache_read_input_tokens": usage["cache_read_input_tokens"],
            "output_tokens": usage["output_tokens"],
        }
        for extra in ("output_tokens_details", "server_tool_use"):
            if extra in usage:
                delta["usage"][extra] = usage[extra]
    yield _event("message_delta", delta)
    yield _event("message_stop", {"type": "message_stop"})


# -- token counting and models ------------------------------------------------------------------


async def count_tokens(req: FakeRequest) -> None:
    if not await _admitted(req, need_max_tokens=False):
        return
    total = sum(tokens for _, tokens, _ in _units(req.data))
    await send_body(req.send, 200, orjson.dumps({"input_tokens": total}), headers_for(req))


async def list_models(req: FakeRequest) -> None:
    models = req.options.models
    data = [
        {"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"}
        for m in models
    ]
    body = {
        "data": data,
        "has_more": False,
        "first_id": models[0] if models else None,
        "last_id": models[-1] if models else None,
    }
    await send_body(req.send, 200, orjson.dumps(body), headers_for(req))
