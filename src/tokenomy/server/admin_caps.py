"""The admin API for budgets and rate limits (master key, like every ``/admin`` route).

GET    /admin/budgets               every budget, with the current period's usage
POST   /admin/budgets               {"name": "search-daily", "scope": {"team": "search"},
                                     "period": "daily", "limit_usd": "5", "alerts": [50, 80, 100]}
GET    /admin/budgets/{id or name}  one budget
PATCH  /admin/budgets/{id or name}  change any field but the id
DELETE /admin/budgets/{id or name}  remove it
GET    /admin/budgets/{ref}/alerts  the thresholds fired so far
GET    /admin/limits                every rate limit
POST   /admin/limits                {"name": "key-rpm", "scope": {"key": "each"}, "rpm": 60}
GET    /admin/limits/{id or name}   one limit
PATCH  /admin/limits/{id or name}   change any field but the id
DELETE /admin/limits/{id or name}   remove it

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
from .admin_http import json_object, not_allowed
from .http import send_json


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


async def handle_budgets(
    gw: Gateway, method: str, parts: list[str], receive: Any, send: Any
) -> None:
    caps = _caps(gw)
    store = caps.store
    if len(parts) == 1:
        if method == "GET":
            _, budgets, _ = await asyncio.to_thread(store.load)
            data = [{**budget_view(b), "usage": await _usage(caps, b)} for b in budgets]
            await send_json(send, 200, {"object": "list", "data": data})
        elif method == "POST":
            b = budget_from(await json_object(receive))
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
        alerts = await asyncio.to_thread(store.alerts, found.id)
        await send_json(send, 200, {"object": "list", "data": alerts})
    elif method == "GET" and action is None:
        await send_json(send, 200, {**budget_view(found), "usage": await _usage(caps, found)})
    elif method == "PATCH" and action is None:
        b = budget_from(await json_object(receive), base=found)
        await asyncio.to_thread(store.save_budget, b, new=False)
        await caps.reload(force=True)
        await send_json(send, 200, budget_view(b))
    elif method == "DELETE" and action is None:
        await asyncio.to_thread(store.delete_budget, found.id)
        await caps.reload(force=True)
        await send_json(send, 200, {"id": found.id, "deleted": True})
    else:
        raise not_allowed(method, parts)


async def handle_limits(
    gw: Gateway, method: str, parts: list[str], receive: Any, send: Any
) -> None:
    caps = _caps(gw)
    store: CapsStore = caps.store
    if len(parts) == 1:
        if method == "GET":
            _, _, limits = await asyncio.to_thread(store.load)
            await send_json(send, 200, {"object": "list", "data": [limit_view(x) for x in limits]})
        elif method == "POST":
            lim = limit_from(await json_object(receive))
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
        lim = limit_from(await json_object(receive), base=found)
        await asyncio.to_thread(store.save_limit, lim, new=False)
        await caps.reload(force=True)
        await send_json(send, 200, limit_view(lim))
    elif method == "DELETE":
        await asyncio.to_thread(store.delete_limit, found.id)
        await caps.reload(force=True)
        await send_json(send, 200, {"id": found.id, "deleted": True})
    else:
        raise not_allowed(method, parts)
