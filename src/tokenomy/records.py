"""The ledger record: one append-only row per request that reached the gateway."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from .usage import Usage


@dataclass(slots=True)
class UsageRecord:
    request_id: str
    ts: float = field(default_factory=time.time)  # unix seconds, request start
    api: str = ""  # "openai" or "anthropic": the API format the client called
    endpoint: str = ""  # e.g. "/v1/chat/completions"
    key_id: str | None = None
    org: str | None = None
    team: str | None = None
    user: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    requested_model: str = ""
    served_model: str | None = None
    provider: str | None = None
    deployment: str | None = None
    stream: bool = False
    usage: Usage = field(default_factory=Usage)
    # None means the price is unknown: never recorded as zero.
    cost_usd: Decimal | None = None
    price_unknown: bool = False
    latency_ms: float | None = None
    ttft_ms: float | None = None
    status: int = 200  # HTTP status the client got (499: it went away, or a shutdown cut it)
    error_type: str | None = None
    # Room for the later levers (cache, route, compress...) to explain themselves.
    decisions: dict[str, Any] = field(default_factory=dict)
    # The upstream's own id for its reply (OpenAI x-request-id, Anthropic request-id),
    # what its support asks for; of the last reply when a fallback served or failed.
    upstream_request_id: str | None = None
    # Whether the row counts against its request's budgets, limits and balance. A
    # call the gateway makes for itself (a judge's, a failed attempt's) is its own
    # cost: False. See `tokenomy.ledger.charges`.
    charged: bool = True
    # The id of the response object a Responses API request made (``resp_...``), which
    # a later request continues with ``previous_response_id``: the row says whose it
    # is (`tokenomy.pipeline.chains`). None for every other request.
    response_id: str | None = None
    # The ids of that response's output items (``msg_...``, ``fc_...``, ``rs_...``),
    # which a later request names in its ``input`` (an ``item_reference``): the row
    # says whose they are. Kept in the ledger's ``response_items`` table, committed
    # with the row; not read back with it. Empty for every other request.
    item_ids: tuple[str, ...] = ()
    # The upstream's own code for the error that failed the request (OpenAI's
    # ``error.code``, e.g. ``context_length_exceeded``, a failed Responses API
    # response's too; Anthropic's ``error.type``, e.g. ``overloaded_error``): why,
    # where ``error_type`` says only ``upstream_error``. None when it gave none.
    upstream_error_code: str | None = None
