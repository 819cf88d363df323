"""The admin API for prepaid billing (master key, like every ``/admin`` route).

GET    /admin/customers                      billing customers: plan, unit, balance (paged)
GET    /admin/customers/{customer}           one customer
PATCH  /admin/customers/{customer}           {"plan": "pro"} or {"plan": null}
GET    /admin/credits/{customer}             the balance (as /admin/customers/{customer})
GET    /admin/credits/{customer}/history     ledger entries, newest first (paged)
POST   /admin/credits/{customer}/topup       {"amount": "25.00", "unit": "usd", "note": "..."}
POST   /admin/credits/{customer}/adjust      {"amount": "-1.5", "note": "...",
                                              "kind": "adjustment"|"refund", "request_id": ...}
                                             (a refund: at most what the request's debit
                                             took from this customer, once per request)
GET    /admin/plans                          plans (paged)
POST   /admin/plans                          {"name": "pro", "markup_pct": "20"} or fixed prices
GET    /admin/plans/{name}                   one plan
GET    /admin/statements/{customer}/{period}       the statement as JSON
GET    /admin/statements/{customer}/{period}.csv   the same as CSV

Lists are paged (``?limit=N&after=CURSOR``, `tokenomy.server.admin_pages`):
customers and plans by name, a history newest first.

Amounts are strings (or integers) and are answered as strings: money is never a
float. A change reaches the gateway's cached accounts at once on this replica,
and within ``BillingPolicy.ttl`` on the others.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import asdict
from decimal import Decimal
from typing import Any

from ..billing import (
    BillingStore,
    Customer,
    Plan,
    build_statement,
    money_text,
    parse_money,
    parse_period,
)
from ..billing.credits import CreditEntry
from ..billing.policy import BillingPolicy
from ..errors import InvalidRequest, NotFound
from ..gateway import Gateway
from .admin_http import AdminRequest, not_allowed, only_fields, optional_str
from .admin_pages import ListCursor, list_body, page_query
from .http import send_json, send_stream

CUSTOMERS = ListCursor("customers", (str,))  # (customer,)
PLANS = ListCursor("plans", (str,))  # (name,)
HISTORY = ListCursor("credits", (float, int))  # (ts, id), newest first


def _billing(gw: Gateway) -> tuple[BillingStore, BillingPolicy | None]:
    for policy in gw.admit.policies:
        if isinstance(policy, BillingPolicy):
            return policy.billing, policy
    return BillingStore(gw.store), None


def _forget(policy: BillingPolicy | None, customer: str | None = None) -> None:
    if policy is not None:
        policy.forget(customer)


def _money(value: Decimal | None) -> str | None:
    return None if value is None else money_text(value)


def customer_view(c: Customer) -> dict[str, Any]:
    return {
        "customer": c.customer,
        "plan": c.plan,
        "unit": c.unit,
        "balance": None if c.unit is None else _money(c.balance),
        "created_at": c.created_at,
    }


def entry_view(e: CreditEntry) -> dict[str, Any]:
    return {**asdict(e), "amount": _money(e.amount)}


def plan_view(p: Plan) -> dict[str, Any]:
    view = {k: (_money(v) if isinstance(v, Decimal) else v) for k, v in asdict(p).items()}
    view["pricing"] = "markup" if p.markup_pct is not None else "fixed"
    return view


async def _one_customer(billing: BillingStore, customer: str) -> Customer:
    found = await asyncio.to_thread(billing.customer, customer)
    if found is None:
        raise NotFound(f"No billing customer {customer!r}", code="customer_not_found")
    return found


async def _send_entry(
    send: Any, billing: BillingStore, policy: BillingPolicy | None, entry: CreditEntry
) -> None:
    """201 with a new ledger entry and the balance after it (the cached account is
    stale); 200 with the entry a retried idempotency key had made, nothing changed."""
    _forget(policy, entry.customer)
    acct = await _one_customer(billing, entry.customer)
    status = 200 if entry.replayed else 201
    await send_json(send, status, {**entry_view(entry), "balance": _money(acct.balance)})


async def handle_customers(gw: Gateway, req: AdminRequest, send: Any) -> None:
    billing, policy = _billing(gw)
    method, parts = req.method, req.parts
    if len(parts) == 1 and method == "GET":
        q = page_query(req.query, CUSTOMERS)
        page = await asyncio.to_thread(billing.customers_page, after=q.after, limit=q.limit)
        await send_json(send, 200, list_body(page, CUSTOMERS, customer_view))
        return
    if len(parts) != 2:
        raise not_allowed(method, parts)
    customer = parts[1]
    if method == "GET":
        await send_json(send, 200, customer_view(await _one_customer(billing, customer)))
    elif method == "PATCH":
        body = only_fields(await req.json(), ("plan",))
        if "plan" not in body:
            raise InvalidRequest("give 'plan': a plan name, or null", param="plan")
        acct = await asyncio.to_thread(billing.assign_plan, customer, optional_str(body, "plan"))
        _forget(policy, customer)
        await send_json(send, 200, customer_view(acct))
    else:
        raise not_allowed(method, parts)


async def handle_credits(gw: Gateway, req: AdminRequest, send: Any) -> None:
    billing, policy = _billing(gw)
    method, parts = req.method, req.parts
    if len(parts) < 2 or len(parts) > 3:
        raise not_allowed(method, parts)
    customer, action = parts[1], (parts[2] if len(parts) == 3 else None)
    if method == "GET" and action is None:
        await send_json(send, 200, customer_view(await _one_customer(billing, customer)))
    elif method == "GET" and action == "history":
        q = page_query(req.query, HISTORY)
        page = await asyncio.to_thread(
            lambda: billing.history_page(customer, after=q.after, limit=q.limit)
        )
        await send_json(send, 200, list_body(page, HISTORY, entry_view))
    elif method == "POST" and action == "topup":
        body = only_fields(await req.json(), ("amount", "unit", "note", "idempotency_key"))
        unit = optional_str(body, "unit") or "usd"
        amount = parse_money(body.get("amount"), "amount", unit=unit)
        key = optional_str(body, "idempotency_key")
        entry = await asyncio.to_thread(
            lambda: billing.topup(
                customer, amount, unit=unit, note=optional_str(body, "note"), idempotency_key=key
            )
        )
        await _send_entry(send, billing, policy, entry)
    elif method == "POST" and action == "adjust":
        body = only_fields(
            await req.json(), ("amount", "note", "kind", "request_id", "idempotency_key")
        )
        acct = await _one_customer(billing, customer)
        amount = parse_money(body.get("amount"), "amount", unit=acct.unit or "usd")
        kind = optional_str(body, "kind") or "adjustment"
        request_id = optional_str(body, "request_id")
        key = optional_str(body, "idempotency_key")
        adjusted = await asyncio.to_thread(
            lambda: billing.adjust(
                customer,
                amount,
                note=optional_str(body, "note"),
                kind=kind,
                request_id=request_id,
                idempotency_key=key,
            )
        )
        await _send_entry(send, billing, policy, adjusted)
    else:
        raise not_allowed(method, parts)


_PRICES = ("markup_pct", "input_per_mtok", "output_per_mtok", "cached_input_per_mtok")


def _plan_from(body: dict[str, Any]) -> Plan:
    def price(name: str) -> Decimal | None:
        return None if body.get(name) is None else parse_money(body[name], name)

    only_fields(body, ("name", *_PRICES))
    name = optional_str(body, "name")
    if not name:
        raise InvalidRequest("a plan needs a 'name'", param="name")
    return Plan(
        name=name,
        markup_pct=price("markup_pct"),
        input_per_mtok=price("input_per_mtok"),
        output_per_mtok=price("output_per_mtok"),
        cached_input_per_mtok=price("cached_input_per_mtok"),
    )


async def handle_plans(gw: Gateway, req: AdminRequest, send: Any) -> None:
    billing, policy = _billing(gw)
    method, parts = req.method, req.parts
    if len(parts) == 1 and method == "GET":
        q = page_query(req.query, PLANS)
        page = await asyncio.to_thread(billing.plans_page, after=q.after, limit=q.limit)
        await send_json(send, 200, list_body(page, PLANS, plan_view))
    elif len(parts) == 1 and method == "POST":
        plan = await asyncio.to_thread(billing.create_plan, _plan_from(await req.json()))
        _forget(policy)
        await send_json(send, 201, plan_view(plan))
    elif len(parts) == 2 and method == "GET":
        found = await asyncio.to_thread(billing.plan, parts[1])
        if found is None:
            raise NotFound(f"No plan {parts[1]!r}", code="plan_not_found")
        await send_json(send, 200, plan_view(found))
    else:
        raise not_allowed(method, parts)


async def handle_statements(gw: Gateway, req: AdminRequest, send: Any) -> None:
    method, parts = req.method, req.parts
    if method != "GET" or len(parts) != 3:
        raise InvalidRequest("use GET /admin/statements/{customer}/{period}[.csv]", status=405)
    billing, _ = _billing(gw)
    customer, period = parts[1], parts[2]
    as_csv = period.endswith(".csv")
    period = period.removesuffix(".csv").removesuffix(".json")
    tz = gw.settings.timezone
    span = parse_period(period, tz)
    st = await asyncio.to_thread(build_statement, billing, customer, span, timezone=tz)
    # Written a piece at a time: a statement lists every top-up of its period.
    if as_csv:
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", customer)
        disposition = f'attachment; filename="statement-{safe}-{span.label}.csv"'
        chunks = (piece.encode() for piece in st.csv_chunks())
        await send_stream(send, 200, chunks, {"content-disposition": disposition},
                          content_type=b"text/csv; charset=utf-8")  # fmt: skip
    else:
        await send_stream(send, 200, st.json_chunks())
