"""Upstream calls a request makes besides its answer: a cascade's escalated drafts,
a judge's ratings and reference answers, the failed attempts the upstream charged.

Each is its own ledger row, ``<request id><suffix>``, attributed like the request
(key, team, user, tags) and metered at its own model's price. A draft or a
judgement has a ``saved_usd`` of minus its cost: the client would not have paid
for it. A failed attempt has none: the request would have paid it without the
fallback too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from ..errors import UpstreamError
from ..pipeline.context import Call
from ..records import UsageRecord
from ..usage import Usage

Meter = Callable[[Call, Usage], None]
Write = Callable[[UsageRecord], Awaitable[None]]


def side_call(
    parent: Call,
    suffix: str,
    *,
    body: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    **record: Any,
) -> Call:
    """A call made on behalf of ``parent``: its body and headers unless given, its
    key, deployment and provider, and a copy of its record with ``record`` changed."""
    rid = parent.request_id + suffix
    side = Call(parent.api, parent.op, parent.endpoint,
                parent.body if body is None else body,
                parent.headers if headers is None else headers, request_id=rid)  # fmt: skip
    side.key, side.deployment, side.provider = parent.key, parent.deployment, parent.provider
    side.record = replace(
        parent.record, request_id=rid, tags=dict(parent.record.tags), decisions={}, **record
    )
    return side


async def write_side(
    side: Call, usage: Usage, route: dict[str, Any], *, meter: Meter, write: Write
) -> UsageRecord:
    """Meter the side call, add its routing decision (``saved_usd``: minus its cost)
    and commit its row."""
    rec = side.record
    rec.latency_ms = side.elapsed_ms()
    meter(side, usage)
    if rec.cost_usd is not None:
        route["saved_usd"] = format(-rec.cost_usd, "f")
    rec.decisions["route"] = route
    await write(rec)
    return rec


async def write_failed_attempt(
    call: Call, error: UpstreamError, *, meter: Meter, write: Write
) -> UsageRecord | None:
    """The attempt that failed with ``error``, when the upstream reported what it
    used (a reply of the wrong shape, a stream's early error): its row
    ``<request id>.attempt<N>``, the N-th attempt, at its deployment's price. The
    call is still bound to that deployment. Not settled with the request: the
    client is charged for the attempt that answered, as its hold covered."""
    if error.usage is None:
        return None
    plan = call.route
    n = len(plan.attempts)  # this attempt's entry is the last
    side = side_call(call, f".attempt{n}", status=error.status, error_type=error.type,
                     upstream_request_id=error.upstream_request_id)  # fmt: skip
    side.started = call.started
    rec = side.record
    rec.latency_ms = side.elapsed_ms()
    meter(side, error.usage)
    rec.decisions["route"] = {
        "reason": "fallback",
        "attempt": "failed",
        "parent": call.request_id,
        "requested": plan.requested,
        "served": rec.served_model,
        "deployment": rec.deployment,
        "error": plan.attempts[-1]["error"],
    }
    await write(rec)
    return rec
