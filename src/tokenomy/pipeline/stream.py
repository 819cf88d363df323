"""Stage 4, streaming: relay upstream SSE to the client in the client's format,
watching usage on the way, and hold back the stream's last event until the
request's record is committed (a response is complete only once it is metered).

One adapter per (client API, upstream API) pair, and one for OpenAI's Responses
API (passed through unchanged); each sees upstream events and
returns the frames to send, and keeps what the meter needs (usage, text). When
asked (`Adapter.sent`), it also keeps the events it sent, as parsed JSON, so the
cache rebuilds the response without parsing the stream a second time.

Until the stream has begun for the client (`read_head`), nothing has been sent:
an upstream error then is the whole request's, which may fall back or answer
with a status of its own. Events that carry nothing of the answer yet
(Anthropic's ``message_start`` and ``ping``) do not begin it: their frames are
held until the first event that does, so an error right after them (an
overloaded upstream) is still the request's.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import replace
from decimal import Decimal
from types import MappingProxyType
from typing import Any, ClassVar

import orjson

from .. import translate
from ..errors import (
    ANTHROPIC_TYPES,
    RELAYED_CHARS,
    TokenomyError,
    UpstreamError,
    UpstreamProtocolError,
)
from ..providers import Provider, UpstreamStream
from ..providers.anthropic import anthropic_usage, is_search_result
from ..providers.base import error_name
from ..providers.openai import is_search, openai_usage, response_usage
from ..responses_api import TEXT_DELTAS, item_ids, output_item_id, response_id
from ..sse import DONE_DATA, SSEEvent, frame
from ..usage import Usage
from .context import ANTHROPIC, OPENAI, Call
from .exchange import SHAPE_ERRORS
from .meter import estimate_usage, with_counted_output

DONE = b"data: [DONE]\n\n"
COST_HEADER = "x-tokenomy-cost-usd"


def cost_comment(cost: Decimal | None) -> bytes:
    """The SSE comment that gives a stream's cost, sent before its terminal event
    (clients skip comments; the same figure is the JSON reply's header)."""
    return f": {COST_HEADER}={'unknown' if cost is None else cost}\n\n".encode()


# The events that end a Responses stream, each carrying the whole response.
RESPONSE_ENDS = frozenset({"response.completed", "response.incomplete", "response.failed"})
# The events of a Responses stream that carry an output item, its id included.
ITEM_EVENTS = frozenset({"response.output_item.added", "response.output_item.done"})
# The status an error event stands for, by its type (or OpenAI's code) in either
# API: an error before the stream began is answered as that refusal would be.
EVENT_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "rate_limit_exceeded": 429,
    "insufficient_quota": 429,
    "api_error": 500,
    "server_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


# How a served reply ended, for its record: (status, error type, the upstream's code).
Outcome = tuple[int, str | None, str | None]
SERVED: Outcome = (200, None, None)


def reply_outcome(reply: Any) -> Outcome:
    """How an upstream reply that was served ended, for its record: a Responses API
    response that failed (``status: "failed"``) as the status its error's code
    stands for (else 502), ``response_failed`` and that code (``server_error``...);
    any other, `SERVED`."""
    if not isinstance(reply, dict) or reply.get("status") != "failed":
        return SERVED
    error = reply.get("error")
    code = error.get("code") if isinstance(error, dict) else None
    return EVENT_STATUS.get(str(code)) or 502, "response_failed", error_name(code)


def error_object(value: Any) -> dict[str, Any]:
    """An error event's ``error`` as the object both APIs document: a bare string
    (some servers send one) becomes its message, anything else an empty error."""
    if isinstance(value, dict):
        return value
    return {"message": value} if isinstance(value, str) and value else {}


def _loads(ev: SSEEvent) -> Any:
    try:
        return orjson.loads(ev.data)
    except orjson.JSONDecodeError as exc:
        raise UpstreamProtocolError("upstream sent a malformed SSE event") from exc


class Adapter:
    """Base: the state a relay keeps about one stream."""

    # The upstream's event types that carry nothing of the answer: the stream has
    # not begun for the client after them (`read_head` holds their frames).
    HELD: ClassVar[frozenset[str]] = frozenset()
    # The ids of a Responses stream's output items (each once, in order), for its
    # ledger row; other streams have none, and share this empty one.
    item_ids: Mapping[str, None] = MappingProxyType({})

    def __init__(self) -> None:
        self.usage: Usage | None = None
        # Whether `usage` counts the whole output. Anthropic reports the prompt in
        # message_start but the output only in message_delta: a stream cut before
        # that has its output counted from the text (`output_final` stays False).
        self.output_final = False
        self.text: list[str] = []
        # Web searches finished in the events relayed (a Responses stream's
        # web_search_call items, an Anthropic stream's web_search_tool_result
        # blocks): billed when the stream ends before its usage.
        self.searches = 0
        self.finished = False  # the upstream's own end-of-stream marker was seen
        # An event of the answer itself was seen (one that gave the client a frame,
        # for an OpenAI-compatible upstream; one not in HELD, for Anthropic's).
        self.begun = False
        # How a finished stream ended, for its record (`reply_outcome`): a Responses
        # stream may end with its own failure (``response.failed``).
        self.outcome: Outcome = SERVED
        self.upstream_error: dict[str, Any] | None = None
        # Set to a list by whoever wants the events sent to the client, parsed (the
        # data of each frame returned, in order; `DONE_DATA` for OpenAI's end marker).
        self.sent: list[Any] | None = None
        # The id of the response a Responses stream made, for its ledger row.
        self.response_id: str | None = None

    def on_event(self, ev: SSEEvent) -> list[bytes]:
        raise NotImplementedError

    def terminal(self) -> list[bytes]:
        """The frames held back until the record is committed."""
        raise NotImplementedError

    def error_event(self, api: str, err: Exception, upstream_api: str | None) -> bytes:
        """The frame reporting ``err`` in the started stream, in the client's format."""
        return error_frame(api, err, self.upstream_error, upstream_api)

    def _openai_chunk(self, ev: SSEEvent) -> dict[str, Any] | None:
        """An OpenAI-compatible upstream's chunk, its usage and text kept; None for the
        end marker and an error event (both noted)."""
        if ev.data == DONE_DATA:
            self.finished = True
            return None
        chunk: dict[str, Any] = _loads(ev)
        if "error" in chunk and "choices" not in chunk:
            self.upstream_error = error_object(chunk["error"])
            return None
        if chunk.get("usage"):
            self.usage = openai_usage(chunk["usage"], chunk.get("service_tier"))
            self.output_final = True
        _openai_chunk_text(chunk, self.text)
        return chunk


def _openai_chunk_text(chunk: dict[str, Any], text: list[str]) -> None:
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta")
        if not delta:
            piece = choice.get("text")  # the legacy Completions API's: no delta
            if piece and isinstance(piece, str):
                text.append(piece)
            continue
        content = delta.get("content")
        if content:
            text.append(content)
        for tc in delta.get("tool_calls") or ():
            args = (tc.get("function") or {}).get("arguments")
            if args:
                text.append(args)


def _anthropic_searched(data: dict[str, Any]) -> int:
    """1 for a ``content_block_start`` of a web search's result (the search was made:
    Anthropic reports it only in the final ``message_delta``), else 0."""
    return int(is_search_result(data.get("content_block")))


def _anthropic_delta_text(data: dict[str, Any], text: list[str]) -> None:
    delta = data.get("delta") or {}
    piece = delta.get("text") or delta.get("partial_json") or delta.get("thinking")
    if piece:
        text.append(piece)


class OpenAIPassthrough(Adapter):
    def __init__(self, client_wants_usage: bool) -> None:
        super().__init__()
        self.strip_usage = not client_wants_usage

    def on_event(self, ev: SSEEvent) -> list[bytes]:
        chunk = self._openai_chunk(ev)
        if chunk is None or (self.strip_usage and chunk.get("usage") and not chunk.get("choices")):
            return []
        self.begun = True
        if self.sent is not None:
            self.sent.append(chunk)
        return [ev.raw if ev.event is None else frame(ev.data)]

    def terminal(self) -> list[bytes]:
        if self.sent is not None:
            self.sent.append(DONE_DATA)
        return [DONE]


ANTHROPIC_HELD = frozenset({"message_start", "ping"})


class AnthropicPassthrough(Adapter):
    HELD = ANTHROPIC_HELD

    def __init__(self) -> None:
        super().__init__()
        self._usage_raw: dict[str, Any] = {}
        self._stop = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
        self._stop_data: Any = {"type": "message_stop"}

    def on_event(self, ev: SSEEvent) -> list[bytes]:
        data = _loads(ev)
        kind = data.get("type") or ev.event
        if kind not in self.HELD and kind != "error":
            self.begun = True
        if kind == "message_stop":
            self.finished = True
            self._stop, self._stop_data = ev.raw, data
            return []
        if kind == "content_block_delta":
            _anthropic_delta_text(data, self.text)
        elif kind == "content_block_start":
            self.searches += _anthropic_searched(data)
        elif kind == "message_start":
            self._usage_raw.update((data.get("message") or {}).get("usage") or {})
            self.usage = anthropic_usage(self._usage_raw)
        elif kind == "message_delta":
            final = {k: v for k, v in (data.get("usage") or {}).items() if v is not None}
            self._usage_raw.update(final)
            self.usage = anthropic_usage(self._usage_raw)
            self.output_final = self.output_final or "output_tokens" in final
        elif kind == "error":
            self.upstream_error = error_object(data.get("error"))
            return []
        if self.sent is not None:
            self.sent.append(data)
        return [ev.raw]

    def terminal(self) -> list[bytes]:
        if self.sent is not None:
            self.sent.append(self._stop_data)
        return [self._stop]


class OpenAIFromAnthropic(Adapter):
    """OpenAI client, Anthropic upstream."""

    HELD = ANTHROPIC_HELD

    def __init__(self, call: Call, client_wants_usage: bool) -> None:
        super().__init__()
        self.conv = translate.AnthropicToOpenAIStream(
            model=call.record.requested_model,
            request_id="chatcmpl-" + call.request_id[4:],
            created=int(time.time()),
            include_usage=client_wants_usage,
        )
        self._tail: list[dict[str, Any]] = []

    def on_event(self, ev: SSEEvent) -> list[bytes]:
        data = _loads(ev)
        kind = data.get("type") or ev.event or ""
        if kind == "error":
            self.upstream_error = error_object(data.get("error"))
            return []
        if kind not in self.HELD:
            self.begun = True
        if kind == "content_block_delta":
            _anthropic_delta_text(data, self.text)
        elif kind == "content_block_start":
            self.searches += _anthropic_searched(data)
        chunks = self.conv.feed(kind, data)
        if kind in ("message_start", "message_delta"):
            self.usage = anthropic_usage(self.conv.usage)
        if kind == "message_delta" and (data.get("usage") or {}).get("output_tokens") is not None:
            self.output_final = True
        if kind == "message_stop":
            self.finished = True
            self._tail = chunks
            return []
        if self.sent is not None:
            self.sent += chunks
        return [frame(orjson.dumps(c)) for c in chunks]

    def terminal(self) -> list[bytes]:
        if self.sent is not None:
            self.sent += self._tail
            self.sent.append(DONE_DATA)
        return [*(frame(orjson.dumps(c)) for c in self._tail), DONE]


class AnthropicFromOpenAI(Adapter):
    """Anthropic client, OpenAI-compatible upstream."""

    def __init__(self, call: Call) -> None:
        super().__init__()
        self.conv = translate.OpenAIToAnthropicStream(
            model=call.record.requested_model, message_id="msg_" + call.request_id[4:]
        )

    def on_event(self, ev: SSEEvent) -> list[bytes]:
        chunk = self._openai_chunk(ev)
        return [] if chunk is None else self._frames(self.conv.feed(chunk))

    def terminal(self) -> list[bytes]:
        return self._frames(self.conv.finish())

    def _frames(self, events: list[tuple[str, dict[str, Any]]]) -> list[bytes]:
        self.begun = self.begun or bool(events)
        if self.sent is not None:
            self.sent += [data for _, data in events]
        return [frame(orjson.dumps(data), name) for name, data in events]


class ResponsesPassthrough(Adapter):
    """OpenAI's Responses API, relayed unchanged. Its last event (``response.completed``,
    ``response.incomplete`` or ``response.failed``) carries the response and its
    usage, and is the one held back. The response's creation carries nothing of
    the answer (`HELD`): an error event after it is still the request's."""

    HELD = frozenset({"response.created", "response.queued", "response.in_progress"})

    def __init__(self) -> None:
        super().__init__()
        self.item_ids: dict[str, None] = {}
        self._last: list[bytes] = []
        self._last_data: Any = None
        self._error_raw: bytes | None = None
        self._seq = -1  # the last sequence_number seen

    def on_event(self, ev: SSEEvent) -> list[bytes]:
        if ev.data == DONE_DATA:  # a chat-style end marker some servers add: the
            return []  # held event goes last, and an SDK stops reading at this one
        data = _loads(ev)
        kind = data.get("type") or ev.event
        seq = data.get("sequence_number")
        if isinstance(seq, int):
            self._seq = seq
        if kind not in self.HELD and kind != "error":
            self.begun = True
        if self.response_id is None:  # the first event (response.created) names it
            self.response_id = response_id(data.get("response"))
        if kind == "error":
            nested = data.get("error")  # documented flat; some servers nest it
            flat = {k: data.get(k) for k in ("code", "message", "param")}
            self.upstream_error = nested if isinstance(nested, dict) else flat
            self._error_raw = ev.raw
            return []
        if kind in RESPONSE_ENDS:
            response = data["response"]
            self.item_ids.update(dict.fromkeys(item_ids(response)))
            self.usage = response_usage(response)
            self.output_final = self.finished = True
            self.outcome = reply_outcome(response)
            self._last, self._last_data = [ev.raw], data
            return []
        if kind in TEXT_DELTAS and isinstance(data.get("delta"), str):
            self.text.append(data["delta"])
        elif kind in ITEM_EVENTS:
            # An item the client saw is known even if the stream is cut before its end.
            seen = output_item_id(data.get("item"))
            if seen is not None:
                self.item_ids[seen] = None
            if kind == "response.output_item.done" and is_search(data.get("item")):
                self.searches += 1
        if self.sent is not None:
            self.sent.append(data)
        return [ev.raw]

    def terminal(self) -> list[bytes]:
        if self.sent is not None:
            self.sent.append(self._last_data)
        return self._last

    def error_event(self, api: str, err: Exception, upstream_api: str | None) -> bytes:
        """The upstream's own error event, unchanged; else one in the API's format."""
        if self._error_raw is not None:
            return self._error_raw
        body = {
            "type": "error",
            "code": getattr(err, "type", "api_error"),
            "message": str(err) or "upstream error",
            "param": None,
            "sequence_number": self._seq + 1,
        }
        return frame(orjson.dumps(body), "error")


def make_adapter(call: Call, upstream_api: str) -> Adapter:
    if call.op == "responses":  # served only by upstreams that speak it (`Resolve`)
        return ResponsesPassthrough()
    if call.api == OPENAI:
        opts = call.body.get("stream_options")
        wants = bool(isinstance(opts, dict) and opts.get("include_usage"))
        if upstream_api == OPENAI:
            return OpenAIPassthrough(wants)
        return OpenAIFromAnthropic(call, wants)
    if upstream_api == ANTHROPIC:
        return AnthropicPassthrough()
    return AnthropicFromOpenAI(call)


def feed(adapter: Adapter, ev: SSEEvent) -> list[bytes]:
    """``adapter.on_event(ev)``; an event of an unexpected shape is the upstream's fault."""
    try:
        return adapter.on_event(ev)
    except SHAPE_ERRORS as exc:
        raise UpstreamProtocolError("upstream sent a stream event of an unexpected shape") from exc


def stream_usage(call: Call, adapter: Adapter) -> Usage:
    """What a stream that ended is billed for: what the upstream reported, else the
    prompt and the text relayed, counted; and, when it ended before its usage, at
    least the web searches seen finished in the events relayed."""
    usage = reported_usage(call, adapter)
    if usage is None:
        usage = estimate_usage(call, "".join(adapter.text))
    if not adapter.output_final and adapter.searches > usage.web_search_requests:
        usage = replace(usage, web_search_requests=adapter.searches, estimated=True)
    return usage


def reported_usage(call: Call, adapter: Adapter) -> Usage | None:
    """What the upstream reported using, its output counted from the text when it
    reported only the prompt (Anthropic's ``message_start``); None if it reported nothing."""
    if adapter.usage is None or adapter.output_final:
        return adapter.usage
    return with_counted_output(call, adapter.usage, "".join(adapter.text))


async def read_head(
    call: Call, provider: Provider, up: UpstreamStream, adapter: Adapter
) -> tuple[list[bytes], list[SSEEvent]]:
    """Feed ``adapter`` the stream's events up to the one that begins it for the
    client: the first event of the answer itself (`Adapter.begun`), or the stream's
    end marker. Returns the client's frames so far and the rest of that read's
    events, for the relay to send in its first write.

    Nothing is sent before that (the frames of events that carry nothing of the
    answer, such as ``message_start``, are held), so what goes wrong is the
    request's error, still free to fall back (with an adapter of its own) or to
    answer with a status: an error event (the refusal its type names, carrying any
    usage reported before it), an event of the wrong shape, or the stream's end."""
    out: list[bytes] = []
    async for events in up.reads:
        for i, ev in enumerate(events):
            out += feed(adapter, ev)
            if adapter.upstream_error is not None:
                exc = event_error(provider, adapter.upstream_error, up.headers)
                exc.usage = reported_usage(call, adapter)
                raise exc
            if adapter.begun or adapter.finished:
                return out, events[i + 1 :]
    raise UpstreamProtocolError("upstream ended the stream before sending anything")


def event_code(provider: Provider, error: dict[str, Any]) -> str | None:
    """The upstream's own code for its error event (`Provider.error_code`)."""
    return provider.error_code(provider.error_details({"error": error}))


def event_error(
    provider: Provider, error: dict[str, Any], headers: Mapping[str, str]
) -> UpstreamError:
    """The upstream's error event, as the refusal it would have been before the stream."""
    details = provider.error_details({"error": error})
    status = EVENT_STATUS.get(details.type or "") or EVENT_STATUS.get(str(error.get("code"))) or 502
    return provider.error(status, details, headers)


def error_frame(
    api: str,
    err: UpstreamError | Exception,
    upstream: dict[str, Any] | None,
    upstream_api: str | None = None,
) -> bytes:
    """An error reported inside an already-started stream, in the client's format.

    ``upstream`` is the error event the provider sent, if any, in its own API
    (``upstream_api``): its message is passed on (cut at `RELAYED_CHARS`), its type,
    code and param only when that is the client's API."""
    up = upstream or {}
    said = up.get("message")
    own = err.message if isinstance(err, TokenomyError) else str(err)
    message = (said if isinstance(said, str) and said else own or "upstream error")[:RELAYED_CHARS]
    etype, code, param = (
        (error_name(up.get("type")), error_name(up.get("code")), error_name(up.get("param")))
        if upstream_api == api
        else (None, None, None)
    )
    if api == ANTHROPIC:
        etype = etype or ANTHROPIC_TYPES.get(getattr(err, "status", 500), "api_error")
        body = {"type": "error", "error": {"type": etype, "message": message}}
        return frame(orjson.dumps(body), "error")
    etype = etype or ("server_error" if upstream else getattr(err, "type", "api_error"))
    return frame(
        orjson.dumps({"error": {"message": message, "type": etype, "param": param, "code": code}})
    )
