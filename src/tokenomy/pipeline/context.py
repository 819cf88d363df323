"""The state of one request as it flows through the pipeline."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..config import Deployment
from ..errors import TokenomyError
from ..ledger.base import KeyRecord
from ..providers import Provider
from ..records import UsageRecord

OPENAI = "openai"
ANTHROPIC = "anthropic"
# The ops whose replies are choices of generated text: chat, and OpenAI's legacy
# Completions API (``n``, ``stream_options.include_usage``, the same usage block).
CHAT_LIKE = frozenset({"chat", "completions"})
# The operations OpenAI serves at a chosen ``service_tier`` (a deployment's own).
TIERED_OPS = frozenset({"chat", "responses"})


def new_request_id() -> str:
    return "req_" + os.urandom(12).hex()


@dataclass(slots=True)
class Call:
    api: str  # the API format the client called: OPENAI or ANTHROPIC
    # "chat" (chat completions / messages), "completions" (OpenAI's legacy API),
    # "responses" (OpenAI's) or "embeddings"
    op: str
    endpoint: str
    body: dict[str, Any]
    headers: Mapping[str, str]  # lower-cased client headers
    request_id: str = field(default_factory=new_request_id)
    started: float = field(default_factory=time.perf_counter)
    key: KeyRecord | None = None
    deployment: Deployment | None = None
    provider: Provider | None = None
    record: UsageRecord = field(init=False)
    response_headers: dict[str, str] = field(default_factory=dict)
    route: Any = None  # the routing plan (`tokenomy.routing.stage.Plan`), set by resolve
    levers: dict[str, Any] = field(default_factory=dict)  # per-request state of the levers
    finishing: bool = False  # its record is being (or was) written and its holds settled
    # The error that ended a stream after its first event: the client got it as an
    # error event in its API's format, and an in-process caller raises it.
    failure: TokenomyError | None = None

    def __post_init__(self) -> None:
        self.record = UsageRecord(request_id=self.request_id, api=self.api, endpoint=self.endpoint)

    @property
    def stream(self) -> bool:
        # Embeddings have no streamed form: a stray "stream" there is the upstream's
        # to refuse, and the answer (and its record) is one JSON body.
        return self.op != "embeddings" and bool(self.body.get("stream"))

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000.0


@dataclass(slots=True)
class JSONReply:
    status: int
    body: bytes
    headers: dict[str, str]


def _nothing() -> None:
    pass


@dataclass(slots=True)
class StreamReply:
    headers: dict[str, str]
    chunks: AsyncIterator[bytes]
    # Called by the server when the client goes away, so that a relay waiting on a
    # silent upstream stops now rather than at the upstream's next byte.
    hangup: Callable[[], None] = _nothing


Reply = JSONReply | StreamReply
