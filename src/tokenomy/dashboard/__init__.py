"""The web dashboard at ``/ui``: server-rendered pages over the ledger's reports.

GET  /ui                    the dashboard (filters in the query string:
                            since, until, team, model, tag=key=value, by)
GET  /ui/login, POST        sign in with the master key (sets an HttpOnly cookie)
POST /ui/logout             sign out
GET  /ui/static/<file>      the stylesheet and the chart renderer (no build step)

Every page but the sign-in form and the static files needs the master key:
``Authorization: Bearer`` or the session cookie (see `tokenomy.dashboard.auth`).
Reads run in a worker thread on a connection of their own, so a long report
never holds up the gateway's key lookups. See ``docs/reports.md``.
"""

from __future__ import annotations

import asyncio
import functools
import math
import time
from datetime import UTC, datetime
from importlib import resources
from typing import Any
from urllib.parse import parse_qs

from ..gateway import Gateway
from ..ledger import SQLStore, Store, open_store
from ..server.http import Scope, header_dict, read_body, send_bytes
from . import auth
from .data import Dashboard, View, collect
from .page import dashboard_page, login_page

__all__ = ["handle_ui"]

HTML = b"text/html; charset=utf-8"
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}
STATIC = {
    "chart.js": b"text/javascript; charset=utf-8",
    "dashboard.css": b"text/css; charset=utf-8",
}


async def handle_ui(
    gw: Gateway,
    scope: Scope,
    receive: Any,
    send: Any,
    throttle: auth.LoginThrottle,
) -> None:
    path = scope["path"].rstrip("/") or "/ui"
    method = scope["method"]
    headers = header_dict(scope)
    master = gw.settings.master_key
    if path.startswith("/ui/static/"):
        await _static(send, path.removeprefix("/ui/static/"))
    elif path == "/ui/login":
        await _login(gw, scope, receive, send, method, throttle)
    elif path == "/ui/logout" and method == "POST":
        await _redirect(send, "/ui/login", auth.clear_cookie())
    elif not master:
        await _html(send, 403, login_page(disabled=True))
    elif not auth.is_admin(master, headers):
        if method in ("GET", "HEAD"):
            await _redirect(send, "/ui/login")
        else:
            await _html(send, 401, login_page("Sign in first."))
    elif path == "/ui" and method in ("GET", "HEAD"):
        # A server may pass bytes that are no UTF-8: unreadable, they are no filter.
        raw = scope.get("query_string", b"").decode("utf-8", "replace")
        query = {k: v[0] for k, v in parse_qs(raw).items()}
        now = time.time()
        view = View.parse(query, today=datetime.fromtimestamp(now, UTC).date())
        board = await asyncio.to_thread(_collect, gw.store, view, now, gw.settings.timezone)
        await _html(send, 200, dashboard_page(board))
    else:
        await _html(send, 404, "<!doctype html><title>Not found</title><p>No such page.</p>")


async def _login(
    gw: Gateway,
    scope: Scope,
    receive: Any,
    send: Any,
    method: str,
    throttle: auth.LoginThrottle,
) -> None:
    master = gw.settings.master_key
    if not master:
        await _html(send, 403, login_page(disabled=True))
        return
    if method != "POST":
        await _html(send, 200, login_page())
        return
    client = (scope.get("client") or ("?", 0))[0]
    wait = throttle.retry_after(client)
    if wait > 0:
        await _html(
            send, 429, login_page(f"Too many wrong keys: try again in {math.ceil(wait)} s.")
        )
        return
    form = parse_qs((await read_body(receive)).decode("utf-8", "replace"))
    key = (form.get("key") or [""])[0].strip()
    if not gw.keys.is_master(key):
        throttle.failed(client)
        await _html(send, 401, login_page("That is not the master key."))
        return
    throttle.succeeded(client)
    await _redirect(send, "/ui", auth.set_cookie(master, secure=scope.get("scheme") == "https"))


def _collect(store: Store, view: View, now: float, tz: str) -> Dashboard:
    if not isinstance(store, SQLStore):
        raise TypeError(f"the dashboard needs a SQL ledger, not {type(store).__name__}")
    # Our own connection: the gateway's read connection serves key lookups.
    location = getattr(store, "url", None) or getattr(store, "path", ":memory:")
    if location == ":memory:":  # a second connection would open another, empty database
        return collect(store, view, now, tz=tz)
    with open_store(location) as own:
        assert isinstance(own, SQLStore)
        return collect(own, view, now, tz=tz)


@functools.cache
def _static_file(name: str) -> bytes:
    return resources.files(__package__).joinpath("static", name).read_bytes()


async def _static(send: Any, name: str) -> None:
    content_type = STATIC.get(name)
    if content_type is None:
        await _html(send, 404, "<!doctype html><title>Not found</title><p>No such file.</p>")
        return
    await send_bytes(send, 200, _static_file(name), {"cache-control": "no-cache",
                     "x-content-type-options": "nosniff"}, content_type=content_type)  # fmt: skip


async def _html(send: Any, status: int, page: str) -> None:
    await send_bytes(send, status, page.encode(), SECURITY_HEADERS, content_type=HTML)


async def _redirect(send: Any, location: str, cookie: str | None = None) -> None:
    headers = {**SECURITY_HEADERS, "location": location}
    if cookie:
        headers["set-cookie"] = cookie
    await send_bytes(send, 303, b"", headers, content_type=HTML)
