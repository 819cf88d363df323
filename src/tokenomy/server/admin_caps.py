"""The admin API for budgets and rate limits (master key, like every ``/admin`` route).

GET    /admin/budgets               the budgets, with the current period's usage (paged)
POST   /admin/budgets               {"name": "search-daily", "scope": {"team": "search"},
                                     "period": "daily", "limit_usd": "5", "alerts": [50, 80, 100]}
GET    /admin/budgets/{id or name}  one budget
PATCH  /admin/budgets/{id or name}  change any field but the id
DELETE /admin/budgets/{id or name}  remove it
GET    /admin/budgets/{ref}/alerts  the thresholds fired so far (paged)
GET    /admin/limits                the rate limits (paged)
POST   /admin/limits                {"name": "key-rpm", "scope": {"key": "each"}, "rpm": 60}
GET    /admin/limits/{id or name}   one limit
PATCH  /admin/limits/{id or name}   change any field but the id
DELETE /admin/limits/{id or name}   remove it

Lists are paged (``?limit=N&after=CURSOR``, `tokenomy.server.admin_pages`):
budgets and limits in the order they were made, alerts in the order they fired.
Money is a string (``"5"``, ``"0.25"``), never a float. This process applies a
change at once; other replicas within ``caps.reload_interval`` (1 s).
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..caps import Budget, CapsPolicy, Limit
from ..caps.model import EACH, budget_from, budget_view, limit_from, limit_view
from ..caps.refusals import money
from ..caps.store import CapsStore
from ..errors import NotFound
from ..gateway import Gateway
from .admin_http import AdminRequest, not_allowed
from .admin_pages import ListCursor, list_body, page_query
from .http import send_json

BUDGETS = ListCursor("budgets", (float, str))  # (created_at, id)
LIMITS = ListCursor("limits", (float, str))  # (created_at, id)
ALERTS = ListCursor("alerts", (float, str, str, str))  # (fired_at, entity, period, threshold)


def _caps(gw: Gateway) -> CapsPolicy:
    if gw.caps is None:
        raise NotFound("Caps need a SQL ledger.", code="not_found")
    return gw.caps


async def _usage(caps: CapsPolicy, b: Budget) -> dict[str, Any] | None:
    """The current period's total (spent plus held) of a budget without "each" dimensions."""
    if any(v == EACH for _, v in b.scope.dims):
        return None
    lines = caps.budget_lines(b)
    try:
        totals = await caps.backend.totals([line.hold.window for line in lines])
    except Exception:  # usage is informative; the definition is what was asked for
        return None
    out: dict[str, Any] = {}
    for line, total in zip(lines, totals, strict=True):
        if line.measure == "usd":
            out["used_usd"] = money(total)[1:]
        else:
            out["used_tokens"] = total
    return out


async def handle_budgets(gw: Gateway, req: AdminRequest, send: Any) -> None:
    caps = _caps(gw)
    store, method, parts = caps.store, req.method, req.parts
    if len(parts) == 1:
        if method == "GET":
            q = page_query(req.query, BUDGETS)
            page = await asyncio.to_thread(store.budgets_page, after=q.after, limit=q.limit)
            usage = {b.id: await _usage(caps, b) for b in page.items}
            body = list_body(page, BUDGETS, lambda b: {**budget_view(b), "usage": usage[b.id]})
            await send_json(send, 200, body)
        elif method == "POST":
            b = budget_from(await req.json())
            await asyncio.to_thread(store.save_budget, b, new=True)
            await caps.reload(force=True)
            await send_json(send, 201, budget_view(b))
        else:
            raise not_allowed(method, parts)
        return
    found = await asyncio.to_thread(store.get_budget, parts[1])
    if found is None:
        raise NotFound(f"No budget {parts[1]!r}", code="budget_not_found")
    action = parts[2] if len(parts) > 2 else None
    if method == "GET" and action == "alerts":
        q = page_query(req.query, ALERTS)
        alerts = await asyncio.to_thread(
            lambda: store.alerts_page(found.id, after=q.after, limit=q.limit)
        )
        await send_json(send, 200, list_body(alerts, ALERTS, lambda a: a))
    elif method == "GET" and action is None:
        await send_json(send, 200, {**budget_view(found), "usage": await _usage(caps, found)})
    elif method == "PATCH" and action is None:
        b = budget_from(await req.json(), base=found)
        await asyncio.to_thread(store.save_budget, b, new=False)
        await caps.reload(force=True)
        await send_json(send, 200, budget_view(b))
    elif method == "DELETE" and action is None:
        await asyncio.to_thread(store.delete_budget, found.id)
        await caps.reload(force=True)
        await send_json(send, 200, {"id": found.id, "deleted": True})
    else:
        raise not_allowed(method, parts)


async def handle_limits(gw: Gateway, req: AdminRequest, send: Any) -> None:
    caps = _caps(gw)
    store: CapsStore = caps.store
    method, parts = req.method, req.parts
    if len(parts) == 1:
        if method == "GET":
            q = page_query(req.query, LIMITS)
            page = await asyncio.to_thread(store.limits_page, after=q.after, limit=q.limit)
            await send_json(send, 200, list_body(page, LIMITS, limit_view))
        elif method == "POST":
            lim = limit_from(await req.json())
            await asyncio.to_thread(store.save_limit, lim, new=True)
            await caps.reload(force=True)
            await send_json(send, 201, limit_view(lim))
        else:
            raise not_allowed(method, parts)
        return
    found: Limit | None = await asyncio.to_thread(store.get_limit, parts[1])
    if found is None:
        raise NotFound(f"No limit {parts[1]!r}", code="limit_not_found")
    if len(parts) > 2:
        raise NotFound(f"No admin route /admin/{'/'.join(parts)}", code="not_found")
    if method == "GET":
        await send_json(send, 200, limit_view(found))
    elif method == "PATCH":
        lim = limit_from(await req.json(), base=found)
        await asyncio.to_thread(store.save_limit, lim, new=False)
        await caps.reload(force=True)
        await send_json(send, 200, limit_view(lim))
    elif method == "DELETE":
        await asyncio.to_thread(store.delete_limit, found.id)
        await caps.reload(force=True)
        await send_json(send, 200, {"id": found.id, "deleted": True})
    else:
        raise not_allowed(method, parts)
