"""What both fake providers share: options, state, scenario directives, counting, HTTP.

See `tokenomy.testing.fake_upstream` for the documented behaviour.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import os
import re
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import orjson
from starlette.types import Receive, Send

PER_MESSAGE_TOKENS = 3
DEFAULT_CHUNKS = 8
DEFAULT_REASONING_TOKENS = 16
MAX_CHUNKS = 100_000
DEFAULT_MODELS = (
    "gpt-4o-mini",
    "gpt-4o",
    "o3-mini",
    "text-embedding-3-small",
    "claude-sonnet-4-6",
    "claude-haiku-4-5",
)

JSON = b"application/json"
EVENT_STREAM = b"text/event-stream; charset=utf-8"
HTML = b"text/html; charset=utf-8"


@dataclass(slots=True)
class FakeOptions:
    """Server-wide settings; read on every request, so a test may change them live."""

    chunks: int = DEFAULT_CHUNKS  # content pieces per reply (= completion tokens)
    delay_ms: float = 0.0  # sleep before responding
    chunk_delay_ms: float = 0.0  # sleep between stream chunks
    stream_usage: bool = True  # False: OpenAI streams never carry usage (llama.cpp)
    retry_after_s: int = 1  # `retry-after` sent with 429, 503 and 529
    api_key: str | None = None  # when set, requests must present this key (else 401)
    log_limit: int = 1000  # requests kept in `FakeState.requests` (set at creation)
    cache_limit: int = 10_000  # prompt-cache prefixes kept before the cache is cleared
    # Anthropic: a breakpoint whose prefix is shorter than this is not cached (Claude
    # Sonnet and Opus: 1024 tokens); 0, the default, caches any prefix.
    cache_min_tokens: int = 0
    models: tuple[str, ...] = DEFAULT_MODELS  # what GET /v1/models lists


@dataclass(slots=True, frozen=True)
class RecordedRequest:
    """One received request, as the fake saw it."""

    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: Any  # the parsed JSON body; None when empty or not JSON
    query: str = ""  # the query string, as sent


class FakeState:
    """Everything the fake remembers between requests. Lives on the app, never in a global."""

    def __init__(self, options: FakeOptions) -> None:
        self.requests: deque[RecordedRequest] = deque(maxlen=max(options.log_limit, 0))
        self.recorded = 0  # requests ever recorded (the log keeps only the latest)
        self.failures: dict[str, int] = {}  # directive text -> failures served so far
        self.prompt_cache: set[bytes] = set()  # digests of cached Anthropic prefixes
        self.stored: set[str] = set()  # ids of the Responses API responses kept (``store``)
        # the responses kept, as a GET returns them, and their input items
        self.stored_bodies: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = {}
        self.stored_items: set[str] = set()  # ids of those responses' output items
        self._prefix = os.urandom(4).hex()
        self._serial = itertools.count(1)

    def new_id(self, prefix: str) -> str:
        return f"{prefix}{self._prefix}{next(self._serial):016x}"

    def clear(self) -> None:
        self.requests.clear()
        self.failures.clear()
        self.prompt_cache.clear()
        self.stored.clear()
        self.stored_bodies.clear()
        self.stored_items.clear()


@dataclass(slots=True)
class FakeRequest:
    """One request in flight, handed to a provider's handler."""

    method: str
    path: str
    headers: dict[str, str]
    data: Any  # parsed JSON body, or None
    receive: Receive
    send: Send
    options: FakeOptions
    state: FakeState


# -- scenario directives ----------------------------------------------------------------------

DIRECTIVE = re.compile(r"\[\[fake:([a-z_]+)(?:=([^\]]*))?\]\]")
INT_DIRECTIVES = frozenset(
    {
        "status",
        "delay_ms",
        "chunk_delay_ms",
        "chunks",
        "cached",
        "cache_write",
        "reasoning",
        "audio_in",
        "audio_out",
        "web_searches",
        "fail_times",
        "retry_after",
        "cut_at",
        "confidence",
    }
)
FLAG_DIRECTIVES = frozenset(
    {
        "no_usage",
        "malformed",
        "reset",
        "stream_error",
        "vary",
        "ignore_n",
        "rich",
        "failed",
        "too_long",
        "flex_busy",
        "html",
    }
)


class DirectiveError(ValueError):
    """A `[[fake:...]]` token the fake does not understand."""


@dataclass(slots=True)
class Scenario:
    """What the last user message asked the fake to do."""

    words: list[str]  # the message's words, directives removed
    chunks: int
    delay_ms: float
    chunk_delay_ms: float
    retry_after_s: int
    status: int | None = None
    fail_times: int | None = None
    tool: str | None = None  # "" means the first tool of the request
    cached: int | None = None
    cache_write: int = 0  # OpenAI: prompt tokens written to the cache (part of the prompt)
    reasoning: int | None = None
    audio_in: int = 0  # OpenAI: audio prompt tokens, on top of the text's
    audio_out: int = 0  # OpenAI: audio completion tokens, on top of the text's
    web_searches: int = 0  # Anthropic, OpenAI Responses: server-side web searches made
    no_usage: bool = False
    malformed: bool = False
    reset: bool = False
    stream_error: bool = False
    vary: bool = False  # the `n` choices of a JSON reply disagree
    ignore_n: bool = False  # one choice whatever `n` asks
    rich: bool = False  # Anthropic: thinking, server-tool and cited blocks before the reply
    failed: bool = False  # OpenAI Responses: the response fails (status "failed")
    too_long: bool = False  # refused as a prompt past the model's context window
    flex_busy: bool = False  # OpenAI: a request at service_tier flex gets a 429
    html: bool = False  # with `status`: an HTML error page, not the API's error body
    stop: str | None = None  # Anthropic: the stop_reason to report
    should_retry: str | None = None  # the `x-should-retry` of an error reply: "true"/"false"
    cut_at: int | None = None  # the event `malformed`, `reset` or `stream_error` replaces
    confidence: int | None = None  # OpenAI chat: each token's probability, in percent
    key: str = ""  # the directive text, which names the fail_times counter


def parse_scenario(text: str, options: FakeOptions, model: str | None = None) -> Scenario:
    """The scenario of ``text``; with ``[[fake:only=M]]``, directives apply to model M only."""
    sc = Scenario(
        words=[],
        chunks=options.chunks,
        delay_ms=options.delay_ms,
        chunk_delay_ms=options.chunk_delay_ms,
        retry_after_s=options.retry_after_s,
    )
    if "[[fake:" not in text:
        sc.words = text.split()
        return sc
    tokens = DIRECTIVE.findall(text)
    sc.words = DIRECTIVE.sub(" ", text).split()
    only = [v for k, v in tokens if k == "only"]
    if only and model is not None and model not in only:
        return sc
    sc.key = " ".join(sorted(f"{k}={v}" for k, v in tokens))
    for key, value in tokens:
        if key in INT_DIRECTIVES:
            try:
                number = int(value)
            except ValueError:
                raise DirectiveError(f"[[fake:{key}]] needs an integer, got {value!r}") from None
            _set_number(sc, key, number)
        elif key in FLAG_DIRECTIVES:
            setattr(sc, key, True)
        elif key == "tool":
            sc.tool = value
        elif key == "stop":
            sc.stop = value
        elif key == "should_retry":
            if value not in ("true", "false"):
                raise DirectiveError("[[fake:should_retry]] must be true or false")
            sc.should_retry = value
        elif key not in ("id", "only"):  # `id` only names a separate fail_times counter
            raise DirectiveError(f"unknown fake directive [[fake:{key}]]")
    return sc


def _set_number(sc: Scenario, key: str, number: int) -> None:
    if number < 0:
        raise DirectiveError(f"[[fake:{key}]] must not be negative")
    if key == "chunks":
        sc.chunks = min(max(number, 1), MAX_CHUNKS)
    elif key == "status":
        if not 400 <= number <= 599:
            raise DirectiveError("[[fake:status]] must be a 4xx or 5xx code")
        sc.status = number
    elif key == "confidence" and number > 100:
        raise DirectiveError("[[fake:confidence]] is a percentage, 0 to 100")
    elif key == "retry_after":
        sc.retry_after_s = number
    else:
        setattr(sc, key, number)


def error_headers(sc: Scenario) -> Headers:
    """The scenario's own headers on an error reply (``x-should-retry``)."""
    if sc.should_retry is None:
        return []
    return [(b"x-should-retry", sc.should_retry.encode())]


def should_fail(sc: Scenario, state: FakeState) -> bool:
    """Whether this request gets the scenario's error status (see `fail_times`)."""
    if sc.status is None:
        return False
    if sc.fail_times is None:
        return True
    served = state.failures.get(sc.key, 0)
    if served >= sc.fail_times:
        return False
    state.failures[sc.key] = served + 1
    return True


# The context window a `too_long` prompt exceeds.
CONTEXT_WINDOW = 128_000


# -- counting and content ---------------------------------------------------------------------


def words(text: Any) -> int:
    return len(text.split()) if isinstance(text, str) else 0


def is_reasoning_model(model: str) -> bool:
    return len(model) > 1 and model[0] == "o" and model[1].isdigit()


def reply_pieces(sc: Scenario, limit: int | None) -> tuple[list[str], bool]:
    """The reply text in stream pieces, and whether `limit` (max tokens) cut it short."""
    vocab = sc.words or ["ok"]
    count = sc.chunks if limit is None else max(min(sc.chunks, limit), 1)
    pieces = [f"Echo: {vocab[0]}"]
    pieces.extend(" " + vocab[i % len(vocab)] for i in range(1, count))
    return pieces, count < sc.chunks


def split_even(text: str, parts: int) -> list[str]:
    """`text` cut into `parts` non-empty pieces (fewer if the text is shorter)."""
    parts = max(1, min(parts, len(text)))
    size = len(text)
    return [text[i * size // parts : (i + 1) * size // parts] for i in range(parts)]


def sample_json(schema: Any, text: str, root: Any = None, depth: int = 0) -> Any:
    """A value that satisfies a (simple) JSON schema: strings are `text`."""
    root = schema if root is None else root
    if not isinstance(schema, Mapping) or depth > 8:
        return text
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/") and isinstance(root, Mapping):
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part, {}) if isinstance(target, Mapping) else {}
        return sample_json(target, text, root, depth + 1)
    for union in ("anyOf", "oneOf", "allOf"):
        options = schema.get(union)
        if isinstance(options, list) and options:
            return sample_json(options[0], text, root, depth + 1)
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    props = schema.get("properties")
    if kind == "object" or isinstance(props, Mapping):
        props = props if isinstance(props, Mapping) else {}
        required = schema.get("required")
        names = required if isinstance(required, list) else list(props)
        # a schema of the wrong shape (a name or a type that is no string) is the
        # request's mistake: answered with a value, never a crash of the fake
        return {
            n: sample_json(props.get(n, {}), text, root, depth + 1)
            for n in names
            if isinstance(n, str)
        }
    simple: dict[str, Any] = {"integer": 1, "number": 1, "boolean": True, "array": [], "null": None}
    return simple.get(kind, text) if isinstance(kind, str) else text


def tool_arguments(schema: Any) -> str:
    """Arguments for a tool call: the schema's required properties filled with "x"."""
    required = schema.get("required") if isinstance(schema, Mapping) else None
    if isinstance(required, list) and required:
        return orjson.dumps(sample_json(schema, "x")).decode()
    return '{"location": "Paris"}'


def embedding_bytes(item: Any, dims: int) -> bytes:
    """`dims` deterministic bytes for one embeddings input."""
    raw = item.encode() if isinstance(item, str) else orjson.dumps(item)
    return hashlib.shake_128(raw).digest(dims)


# -- HTTP ---------------------------------------------------------------------------------------

Headers = list[tuple[bytes, bytes]]


async def read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b""
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def pause(ms: float) -> None:
    if ms > 0:
        await asyncio.sleep(ms / 1000)


async def send_body(
    send: Send, status: int, body: bytes, headers: Headers, content_type: bytes = JSON
) -> None:
    start = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": start + headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def send_page(send: Send, status: int, headers: Headers) -> None:
    """An HTML error page for ``status``, as a load balancer or proxy in front of an
    API answers (``html``): no error body of the API's."""
    try:
        title = f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        title = str(status)
    page = f"<html><head><title>{title}</title></head><body><h1>{title}</h1><hr>nginx</body></html>"
    await send_body(send, status, page.encode(), headers, HTML)


async def start_stream(send: Send, headers: Headers) -> None:
    start = [(b"content-type", EVENT_STREAM), (b"cache-control", b"no-cache")]
    await send({"type": "http.response.start", "status": 200, "headers": start + headers})


async def send_chunk(send: Send, data: bytes) -> None:
    await send({"type": "http.response.body", "body": data, "more_body": True})


async def end_stream(send: Send) -> None:
    await send({"type": "http.response.body", "body": b"", "more_body": False})


class ConnectionDropped(Exception):
    """Raised to drop the connection where the server gives no handle to close it."""


async def drop_connection(receive: Receive) -> None:
    """Close the client's connection without finishing the response.

    uvicorn answers an exception raised before the response starts with a 500, so
    the fake closes uvicorn's transport (reached through the bound `receive`) and
    waits for the disconnect: the client sees the socket close mid-response. Under
    any other server, it raises instead.
    """
    cycle = getattr(receive, "__self__", None)
    transport = getattr(cycle, "transport", None)
    close = getattr(transport, "close", None)
    if not callable(close):
        raise ConnectionDropped("fake upstream dropped the connection")
    close()
    await receive()  # returns http.disconnect once the server has noticed


def bearer_token(headers: Mapping[str, str]) -> str | None:
    value = headers.get("authorization", "")
    return value[7:] if value[:7].lower() == "bearer " else None


def field_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


async def run_stream(
    req: FakeRequest,
    sc: Scenario,
    headers: Headers,
    events: Iterable[bytes],
    *,
    cut_at: int,
    broken: bytes,
    error_event: bytes,
) -> None:
    """Send `events` as one streamed response; `malformed`, `reset` and `stream_error`
    take over after `cut_at` events (the scenario's `cut_at` when it has one)."""
    send = req.send
    await start_stream(send, headers)
    cut = sc.malformed or sc.reset or sc.stream_error
    if sc.cut_at is not None:
        cut_at = sc.cut_at
    delay = sc.chunk_delay_ms
    for i, event in enumerate(events):
        if delay and i:
            await pause(delay)
        if cut and i == cut_at:
            if sc.reset:
                await drop_connection(req.receive)
                return
            await send_chunk(send, broken if sc.malformed else error_event)
            break
        await send_chunk(send, event)
    await end_stream(send)
