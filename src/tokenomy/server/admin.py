"""The admin HTTP API, guarded by the master key (``TOKENOMY_MASTER_KEY``).

POST   /admin/keys                 create a key; the secret is in the answer, once
GET    /admin/keys                 list keys (never their hashes), oldest first, paged
GET    /admin/keys/{key_id}        one key
PATCH  /admin/keys/{key_id}        change ``expires_at`` (unix seconds or null)
POST   /admin/keys/{key_id}/revoke revoke now
DELETE /admin/keys/{key_id}        revoke now (keys are never deleted: the ledger names them)

Every list is paged (``?limit=N&after=CURSOR``): see `tokenomy.server.admin_pages`.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any

from ..errors import InvalidRequest, NotFound
from ..gateway import Gateway
from ..keys import bearer_token, mint_key
from ..ledger.base import KeyRecord
from .admin_billing import handle_credits, handle_customers, handle_plans, handle_statements
from .admin_caps import handle_budgets, handle_limits
from .admin_http import AdminRequest, not_allowed, only_fields, optional_str
from .admin_pages import ListCursor, list_body, page_query
from .http import Scope, send_json


def key_view(rec: KeyRecord) -> dict[str, Any]:
    view = asdict(rec)
    view.pop("key_hash")
    now = time.time()
    view["active"] = rec.revoked_at is None and (rec.expires_at is None or rec.expires_at > now)
    return view


_KEY_FIELDS = ("name", "org", "team", "user", "tags", "models", "expires_in", "expires_at")

# The last second a calendar can show (9999-12-31): later, or not finite, is no date.
_LAST_TS = 253_402_300_799.0


def _expiry(body: dict[str, Any]) -> float | None:
    if body.get("expires_in") is not None and body.get("expires_at") is not None:
        raise InvalidRequest("give 'expires_in' or 'expires_at', not both", param="expires_in")
    if body.get("expires_in") is not None:
        seconds = _seconds(body["expires_in"], "expires_in")
        if seconds < 0:  # as the CLI's --expires-in: a lifetime is not negative
            raise InvalidRequest("'expires_in' must not be negative", param="expires_in")
        return _date_ts(time.time() + seconds, "expires_in")
    if body.get("expires_at") is not None:
        return _date_ts(_seconds(body["expires_at"], "expires_at"), "expires_at")
    return None


def _seconds(value: Any, name: str) -> float:
    try:
        if isinstance(value, bool):
            raise TypeError
        return float(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidRequest(f"'{name}' must be a number of seconds", param=name) from exc


def _date_ts(ts: float, name: str) -> float:
    if not math.isfinite(ts) or not 0 <= ts <= _LAST_TS:
        raise InvalidRequest(f"'{name}' must give a date between 1970 and 9999", param=name)
    return ts


# An admin handler gets the gateway, the request (method, path parts after /admin,
# query, body) and the ASGI send callable.
AdminHandler = Callable[[Gateway, AdminRequest, Any], Awaitable[None]]

KEYS = ListCursor("keys", (float, str))  # (created_at, key_id)


async def handle_admin(
    gw: Gateway, scope: Scope, receive: Any, send: Any, headers: dict[str, str]
) -> None:
    gw.keys.require_master(bearer_token(headers), "The admin API")
    req = AdminRequest.of(scope, receive)
    handler = ADMIN_ROUTES.get(req.parts[0]) if req.parts else None
    if handler is None:
        raise NotFound(f"No admin route {scope['path'].rstrip('/')}", code="not_found")
    await handler(gw, req, send)


async def handle_keys(gw: Gateway, req: AdminRequest, send: Any) -> None:
    store, method, parts = gw.store, req.method, req.parts
    if len(parts) == 1:
        if method == "GET":
            q = page_query(req.query, KEYS)
            page = await asyncio.to_thread(store.keys_page, after=q.after, limit=q.limit)
            await send_json(send, 200, list_body(page, KEYS, key_view))
            return
        if method == "POST":
            body = only_fields(await req.json(), _KEY_FIELDS)
            tags = {} if body.get("tags") is None else body["tags"]
            models = [] if body.get("models") is None else body["models"]
            if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
                raise InvalidRequest("'tags' must be an object of strings", param="tags")
            if not isinstance(models, list) or not all(isinstance(m, str) and m for m in models):
                raise InvalidRequest("'models' must be an array of model names", param="models")
            secret, rec = mint_key(
                name=optional_str(body, "name"),
                org=optional_str(body, "org"),
                team=optional_str(body, "team"),
                user=optional_str(body, "user"),
                tags=dict(tags),
                models=list(models),
                expires_at=_expiry(body),
            )
            await asyncio.to_thread(store.create_key, rec)
            await send_json(send, 201, {**key_view(rec), "key": secret})
            return
        raise not_allowed(method, parts)
    key_id = parts[1]
    rec_or_none = await asyncio.to_thread(store.get_key, key_id)
    if rec_or_none is None:
        raise NotFound(f"No key {key_id!r}", code="key_not_found")
    action = parts[2] if len(parts) > 2 else None
    if method == "GET" and action is None:
        await send_json(send, 200, key_view(rec_or_none))
        return
    if (method == "POST" and action == "revoke") or (method == "DELETE" and action is None):
        await asyncio.to_thread(store.update_key, key_id, revoked_at=time.time())
    elif method == "PATCH" and action is None:
        body = only_fields(await req.json(), ("expires_at", "expires_in"))
        exp = _expiry(body)
        if exp is None:
            raise InvalidRequest("give 'expires_at' (unix seconds) or 'expires_in' (seconds)")
        await asyncio.to_thread(store.update_key, key_id, expires_at=exp)
    else:
        raise not_allowed(method, parts)
    gw.keys.forget()
    updated = await asyncio.to_thread(store.get_key, key_id)
    assert updated is not None
    await send_json(send, 200, key_view(updated))


# First path segment after /admin → handler. Each capability adds its own entry.
ADMIN_ROUTES: dict[str, AdminHandler] = {
    "keys": handle_keys,
    "budgets": handle_budgets,
    "limits": handle_limits,
    "credits": handle_credits,
    "plans": handle_plans,
    "customers": handle_customers,
    "statements": handle_statements,
}
