"""Upstream calls a request makes besides its answer: a cascade's escalated drafts,
a judge's ratings and reference answers, the failed attempts the upstream charged.

Each is its own ledger row, ``<request id><suffix>``, attributed like the request
(key, team, user, tags) and metered at its own model's price. A draft or a
judgement has a ``saved_usd`` of minus its cost: the client would not have paid
for it. A failed attempt has none: the request would have paid it without the
fallback too.

Whoever makes a side call says whether it is ``charged`` with the request (a
draft is; a judgement and a failed attempt, the gateway's own cost, are not:
`tokenomy.ledger.charges`). The side rows written while the request runs are
kept on its plan (``Plan.sides``), and admission settles it with the charged
ones (`charged`), as every later reader of the ledger counts it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from ..errors import UpstreamError, upstream_code
from ..ledger.charges import with_sides
from ..pipeline.context import Call
from ..records import UsageRecord
from ..usage import Usage

Meter = Callable[[Call, Usage], None]
Write = Callable[[UsageRecord], Awaitable[None]]


def side_call(
    parent: Call,
    suffix: str,
    *,
    charged: bool,
    body: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    **record: Any,
) -> Call:
    """A call made on behalf of ``parent``: its body and headers unless given, its
    key, deployment and provider, and a copy of its record (its ``ts`` too: a
    charged row falls in its request's period) with ``record`` changed. The
    upstream's id for its reply is its own, set once it answers: never its
    parent's; so are the ids of a response it made and of its items."""
    rid = parent.request_id + suffix
    side = Call(parent.api, parent.op, parent.endpoint,
                parent.body if body is None else body,
                parent.headers if headers is None else headers, request_id=rid)  # fmt: skip
    side.key, side.deployment, side.provider = parent.key, parent.deployment, parent.provider
    record.setdefault("upstream_request_id", None)
    record.setdefault("response_id", None)
    record.setdefault("item_ids", ())
    record.setdefault("upstream_error_code", None)
    side.record = replace(parent.record, request_id=rid, tags=dict(parent.record.tags),
                          decisions={}, charged=charged, **record)  # fmt: skip
    return side


def charged(call: Call, rec: UsageRecord) -> UsageRecord:
    """The record admission settles ``call`` with: its own, plus the side rows it
    wrote that are charged with it (`tokenomy.ledger.charges.with_sides`)."""
    plan = call.route
    return rec if plan is None else with_sides(rec, plan.sides)


async def write_side(
    side: Call,
    usage: Usage,
    route: dict[str, Any],
    *,
    meter: Meter,
    write: Write,
    keep: list[UsageRecord] | None = None,
) -> UsageRecord:
    """Meter the side call, add its routing decision (``saved_usd``: minus its cost)
    and commit its row; first added to ``keep`` (its request's ``Plan.sides``)."""
    rec = side.record
    rec.latency_ms = side.elapsed_ms()
    meter(side, usage)
    if rec.cost_usd is not None:
        route["saved_usd"] = format(-rec.cost_usd, "f")
    rec.decisions["route"] = route
    if keep is not None:
        keep.append(rec)
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
    side = side_call(call, f".attempt{n}", charged=False, status=error.status,
                     error_type=error.type, upstream_error_code=upstream_code(error),
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
    plan.sides.append(rec)
    await write(rec)
    return rec
