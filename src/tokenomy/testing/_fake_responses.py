"""The fake's OpenAI Responses API: ``POST /v1/responses``, JSON or SSE.

See `tokenomy.testing.fake_upstream` for the documented behaviour.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from ._fake_common import (
    DEFAULT_REASONING_TOKENS,
    PER_MESSAGE_TOKENS,
    DirectiveError,
    FakeRequest,
    Scenario,
    bearer_token,
    field_list,
    is_reasoning_model,
    parse_scenario,
    reply_pieces,
    run_stream,
    send_body,
    split_even,
    tool_arguments,
    words,
)
from ._fake_openai import (
    BROKEN_EVENT,
    admitted,
    content_text,
    headers_for,
    play_scenario,
    send_error,
)

# Chat Completions fields the Responses API refuses, as it does ("Unsupported parameter").
_CHAT_ONLY = ("messages", "max_tokens", "max_completion_tokens", "n")


def _input_tokens(data: dict[str, Any]) -> int:
    """``instructions`` words, then per input item: a message 3 + words of its text,
    a function call the words of its arguments, a function call output those of its
    output; and each function tool's name and description words."""
    total = words(data.get("instructions"))
    inp = data.get("input")
    items: list[Any] = [{"role": "user", "content": inp}] if isinstance(inp, str) else inp or []
    for item in items:
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        if kind in (None, "message"):
            total += PER_MESSAGE_TOKENS + words(content_text(item.get("content")))
        elif kind == "function_call":
            total += words(item.get("arguments"))
        elif kind == "function_call_output":
            total += words(content_text(item.get("output")))
    for tool in field_list(data.get("tools")):
        if isinstance(tool, dict) and tool.get("type") == "function":
            total += words(tool.get("name")) + words(tool.get("description"))
    return total


def _unknown_item(req: FakeRequest, data: dict[str, Any]) -> str | None:
    """The first item ``input`` names by id (an ``item_reference``, its ``type``
    left out or not, or a reasoning item with an ``id``) that the fake did not keep."""
    for item in field_list(data.get("input")):
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            continue
        kind = item.get("type")
        named = kind in ("item_reference", "reasoning") or (kind is None and "role" not in item)
        if named and item["id"] not in req.state.stored_items:
            return str(item["id"])
    return None


async def _previous_kept(req: FakeRequest, previous: Any) -> bool:
    """Whether the response a request continues (if any) is kept; else answers as
    OpenAI does."""
    if previous is None or previous in req.state.stored:
        return True
    message = f"Previous response with id '{previous}' not found."
    await send_error(
        req, 400, message, param="previous_response_id", code="previous_response_not_found"
    )
    return False


def _last_user_text(data: dict[str, Any]) -> str:
    inp = data.get("input")
    if isinstance(inp, str):
        return inp
    for item in reversed(field_list(inp)):
        if isinstance(item, dict) and item.get("role") == "user":
            text = content_text(item.get("content"))
            if text:
                return text
    return ""


def _pick_tool(tools: list[Any], name: str) -> tuple[str, str]:
    functions = [
        t for t in tools if isinstance(t, dict) and t.get("type") == "function" and t.get("name")
    ]
    for fn in functions:
        if name in ("", fn["name"]):
            return str(fn["name"]), tool_arguments(fn.get("parameters"))
    raise DirectiveError(f"[[fake:tool={name}]] names no function tool of the request")


@dataclass(slots=True)
class _Plan:
    """One planned response: its output items, in order, and how it ends."""

    pieces: list[str]  # the message's text pieces, or the function call's argument fragments
    tool: tuple[str, str] | None  # (call_id, name) when the reply is a function call
    status: str  # "completed", "incomplete" or "failed"
    usage: dict[str, Any] | None
    reasoning: int
    tier: str
    ids: dict[str, str] = field(default_factory=dict)  # item ids, by item kind
    searches: list[str] = field(default_factory=list)  # the web search calls' ids


def _plan(req: FakeRequest, sc: Scenario, data: dict[str, Any]) -> _Plan:
    tools = field_list(data.get("tools"))
    limit = data.get("max_output_tokens")
    limit = limit if isinstance(limit, int) and limit > 0 else None
    items = field_list(data.get("input"))
    after_output = bool(items) and isinstance(items[-1], dict)
    after_output = after_output and items[-1].get("type") == "function_call_output"
    tool: tuple[str, str] | None = None
    truncated = False
    if sc.tool is not None and not after_output:
        name, arguments = _pick_tool(tools, sc.tool)
        tool = (req.state.new_id("call_"), name)
        pieces = split_even(arguments, sc.chunks)
    else:
        pieces, truncated = reply_pieces(sc, limit)
    reasoning = sc.reasoning
    if reasoning is None:
        reasoning = DEFAULT_REASONING_TOKENS if is_reasoning_model(data["model"]) else 0
    usage = None
    if not sc.no_usage:
        prompt = _input_tokens(data)
        output = len(pieces) + reasoning
        cached = min(sc.cached or 0, prompt)
        usage = {
            "input_tokens": prompt,
            "input_tokens_details": {"cached_tokens": cached,
                                     "cache_write_tokens": min(sc.cache_write, prompt - cached)},
            "output_tokens": output,
            "output_tokens_details": {"reasoning_tokens": reasoning},
            "total_tokens": prompt + output,
        }  # fmt: skip
    status = "failed" if sc.failed else "incomplete" if truncated else "completed"
    asked = data.get("service_tier")
    tier = asked if asked in ("flex", "priority") else "default"
    plan = _Plan(pieces, tool, status, usage, reasoning, tier)
    for kind, prefix in (("reasoning", "rs_"), ("message", "msg_"), ("function_call", "fc_")):
        plan.ids[kind] = req.state.new_id(prefix)
    plan.searches = [req.state.new_id("ws_") for _ in range(sc.web_searches)]
    return plan


def _items(plan: _Plan, query: str) -> list[dict[str, Any]]:
    """The response's output items, finished."""
    out: list[dict[str, Any]] = []
    if plan.reasoning:
        out.append({"id": plan.ids["reasoning"], "type": "reasoning", "summary": []})
    for search_id in plan.searches:
        out.append(
            {
                "id": search_id,
                "type": "web_search_call",
                "status": "completed",
                "action": {"type": "search", "query": query},
            }
        )
    item_status = "incomplete" if plan.status == "incomplete" else "completed"
    if plan.tool is None:
        text = "".join(plan.pieces)
        out.append(
            {
                "id": plan.ids["message"],
                "type": "message",
                "status": item_status,
                "role": "assistant",
                "content": [_text_part(text)],
            }
        )
    else:
        call_id, name = plan.tool
        out.append(
            {
                "id": plan.ids["function_call"],
                "type": "function_call",
                "status": item_status,
                "call_id": call_id,
                "name": name,
                "arguments": "".join(plan.pieces),
            }
        )
    return out


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _response(
    rid: str, data: dict[str, Any], plan: _Plan, output: list[dict[str, Any]], status: str
) -> dict[str, Any]:
    done = status != "in_progress"
    body: dict[str, Any] = {
        "id": rid,
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "error": None,
        "incomplete_details": None,
        "instructions": data.get("instructions"),
        "max_output_tokens": data.get("max_output_tokens"),
        "model": data["model"],
        "output": output,
        "parallel_tool_calls": data.get("parallel_tool_calls", True),
        "previous_response_id": data.get("previous_response_id"),
        "reasoning": {"effort": None, "summary": None},
        "service_tier": plan.tier,
        "store": data.get("store", True),
        "temperature": data.get("temperature", 1.0),
        "text": {"format": {"type": "text"}},
        "tool_choice": data.get("tool_choice", "auto"),
        "tools": field_list(data.get("tools")),
        "top_p": data.get("top_p", 1.0),
        "truncation": "disabled",
        "usage": plan.usage if done else None,
        "user": data.get("user"),
        "metadata": data.get("metadata") or {},
    }
    if status == "incomplete":
        body["incomplete_details"] = {"reason": "max_output_tokens"}
    elif status == "failed":
        body["error"] = {"code": "server_error", "message": "The model failed to respond."}
    if done and plan.searches:
        body["tool_usage"] = {
            "web_search": {"num_requests": len(plan.searches)},
            "image_gen": {
                "input_tokens": 0,
                "input_tokens_details": {"image_tokens": 0, "text_tokens": 0},
                "output_tokens": 0,
                "total_tokens": 0,
            },
        }
    return body


async def responses(req: FakeRequest) -> None:
    if not await admitted(req):
        return
    data: dict[str, Any] = req.data
    for name in _CHAT_ONLY:
        if name in data:
            message = f"Unsupported parameter: '{name}'."
            await send_error(req, 400, message, param=name, code="unsupported_parameter")
            return
    options = data.get("stream_options")
    if isinstance(options, dict) and "include_usage" in options:
        message = "Unknown parameter: 'stream_options.include_usage'."
        await send_error(req, 400, message, param="stream_options.include_usage")
        return
    previous = data.get("previous_response_id")
    if not await _previous_kept(req, previous):
        return
    missing = _unknown_item(req, data)
    if missing is not None:
        await send_error(req, 404, f"Item with id '{missing}' not found.", param="input")
        return
    inp = data.get("input")
    continued = inp is None and bool(previous)
    if not continued and (not isinstance(inp, str | list) or not inp):
        await send_error(req, 400, "Missing required parameter: 'input'.", param="input")
        return
    try:
        sc = parse_scenario(_last_user_text(data), req.options, data.get("model"))
        if await play_scenario(req, sc, "input"):
            return
        plan = _plan(req, sc, data)
    except DirectiveError as exc:
        await send_error(req, 400, str(exc))
        return
    rid = req.state.new_id("resp_")
    query = " ".join(sc.words) or "ok"
    if data.get("store") is not False:
        req.state.stored.add(rid)
        req.state.stored_items.update(item["id"] for item in _items(plan, query))
        final = _response(rid, data, plan, _items(plan, query), plan.status)
        req.state.stored_bodies[rid] = (final, _input_items(req, data.get("input")))
    if data.get("stream"):
        events = _events(rid, data, plan, query)
        cut_at = 2 if sc.cut_at is None else sc.cut_at  # the event the error replaces
        error = {"type": "error", "code": "server_error", "param": None,
                 "message": "The server had an error while processing your request.",
                 "sequence_number": cut_at}  # fmt: skip
        await run_stream(
            req,
            sc,
            headers_for(req),
            events,
            cut_at=cut_at,
            broken=BROKEN_EVENT,
            error_event=_frame(error),
        )
        return
    body = _response(rid, data, plan, _items(plan, query), plan.status)
    await send_body(req.send, 200, orjson.dumps(body), headers_for(req))


def _frame(data: dict[str, Any]) -> bytes:
    return b"event: " + str(data["type"]).encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def _events(rid: str, data: dict[str, Any], plan: _Plan, query: str) -> Iterator[bytes]:
    """The stream's events, as OpenAI sends them: the response created and in
    progress, each output item added, its deltas and done, then the response's end."""
    seq = 0

    def event(kind: str, **fields: Any) -> bytes:
        nonlocal seq
        out = _frame({"type": kind, **fields, "sequence_number": seq})
        seq += 1
        return out

    start = _response(rid, data, plan, [], "in_progress")
    yield event("response.created", response=start)
    yield event("response.in_progress", response=start)
    items = _items(plan, query)
    for index, item in enumerate(items):
        added = {**item, "status": "in_progress"} if "status" in item else item
        if item["type"] == "message":
            added = {**added, "content": []}
        elif item["type"] == "function_call":
            added = {**added, "arguments": ""}
        yield event("response.output_item.added", output_index=index, item=added)
        where = {"item_id": item["id"], "output_index": index}
        if item["type"] == "web_search_call":
            for phase in ("in_progress", "searching", "completed"):
                yield event(f"response.web_search_call.{phase}", **where)
        elif item["type"] == "message":
            text = item["content"][0]["text"]
            part = {"content_index": 0, **where}
            yield event("response.content_part.added", **part, part=_text_part(""))
            for piece in plan.pieces:
                yield event("response.output_text.delta", **part, delta=piece, logprobs=[])
            yield event("response.output_text.done", **part, text=text, logprobs=[])
            yield event("response.content_part.done", **part, part=_text_part(text))
        elif item["type"] == "function_call":
            for piece in plan.pieces:
                yield event("response.function_call_arguments.delta", **where, delta=piece)
            yield event(
                "response.function_call_arguments.done",
                **where,
                name=item["name"],
                arguments=item["arguments"],
            )
        yield event("response.output_item.done", output_index=index, item=item)
    final = _response(rid, data, plan, items, plan.status)
    yield event(f"response.{plan.status}", response=final)


def _input_items(req: FakeRequest, value: Any) -> list[dict[str, Any]]:
    """A request's input as the API lists it back: items, each with an id."""
    if isinstance(value, str):
        value = [
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": value}]}
        ]
    items = []
    for item in field_list(value):
        if isinstance(item, dict):
            items.append({"id": req.state.new_id("msg_"), **item})
    return items


async def stored(req: FakeRequest) -> None:
    """``GET``/``DELETE /v1/responses/{id}`` and ``GET /v1/responses/{id}/input_items``,
    for a response kept (``store``), as OpenAI answers them."""
    key = req.options.api_key
    if key is not None and bearer_token(req.headers) != key:
        await send_error(req, 401, "Incorrect API key provided.", code="invalid_api_key")
        return
    rid, _, tail = req.path.removeprefix("/v1/responses/").partition("/")
    kept = req.state.stored_bodies.get(rid)
    route = (req.method, tail)
    if route not in (("GET", ""), ("DELETE", ""), ("GET", "input_items")):
        await send_error(req, 404, f"Invalid URL ({req.method} {req.path})")
        return
    if kept is None:
        await send_error(req, 404, f"Response with id '{rid}' not found.")
        return
    body, inputs = kept
    out: dict[str, Any]
    if route == ("GET", ""):
        out = body
    elif route == ("DELETE", ""):
        del req.state.stored_bodies[rid]
        req.state.stored.discard(rid)
        out = {"id": rid, "object": "response", "deleted": True}
    else:
        out = {
            "object": "list",
            "data": inputs,
            "first_id": inputs[0]["id"] if inputs else None,
            "last_id": inputs[-1]["id"] if inputs else None,
            "has_more": False,
        }
    await send_body(req.send, 200, orjson.dumps(out), headers_for(req))


async def input_tokens(req: FakeRequest) -> None:
    """``POST /v1/responses/input_tokens``: the input a request would take, counted
    as the fake counts a response's (a stored response continued counts too)."""
    if not await admitted(req):
        return
    data: dict[str, Any] = req.data
    previous = data.get("previous_response_id")
    if not await _previous_kept(req, previous):
        return
    total = _input_tokens(data)
    if previous is not None:
        usage = req.state.stored_bodies[previous][0].get("usage") or {}
        total += int(usage.get("total_tokens", 0))
    body = {"object": "response.input_tokens", "input_tokens": total}
    await send_body(req.send, 200, orjson.dumps(body), headers_for(req))
