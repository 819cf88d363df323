"""Who may see the dashboard: whoever holds the master key.

Two ways in, both checked in constant time:

- ``Authorization: Bearer <master key>`` on every request (scripts, curl);
- the login form, which sets the ``tokenomy_ui`` cookie (HttpOnly,
  SameSite=Strict, Path=/ui, Secure over HTTPS) holding ``<expiry>.<HMAC-SHA256
  of the expiry keyed by the master key>``. The key itself is never stored in
  the browser; a session lasts 12 hours, and changing the master key ends
  every session.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from http.cookies import CookieError, SimpleCookie

from ..keys import bearer_token

COOKIE = "tokenomy_ui"
SESSION_SECONDS = 12 * 3600


def _sign(master_key: str, expires: int) -> str:
    msg = f"tokenomy-ui-session:{expires}".encode()
    return hmac.new(master_key.encode(), msg, hashlib.sha256).hexdigest()


def session_token(master_key: str, *, now: float | None = None) -> str:
    expires = int((time.time() if now is None else now) + SESSION_SECONDS)
    return f"{expires}.{_sign(master_key, expires)}"


def valid_session(master_key: str, token: str | None, *, now: float | None = None) -> bool:
    if not token:
        return False
    expires_text, _, signature = token.partition(".")
    try:
        expires = int(expires_text)
    except ValueError:
        return False
    if expires < (time.time() if now is None else now):
        return False
    return hmac.compare_digest(signature, _sign(master_key, expires))


def read_cookie(headers: Mapping[str, str], name: str = COOKIE) -> str | None:
    raw = headers.get("cookie")
    if not raw:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(raw)
    except CookieError:
        return None
    morsel = jar.get(name)
    return morsel.value if morsel is not None else None


def is_admin(master_key: str | None, headers: Mapping[str, str]) -> bool:
    if not master_key:
        return False
    token = bearer_token(headers)
    if token and hmac.compare_digest(token.encode(), master_key.encode()):
        return True
    return valid_session(master_key, read_cookie(headers))


def set_cookie(master_key: str, *, secure: bool) -> str:
    parts = [
        f"{COOKIE}={session_token(master_key)}",
        "Path=/ui",
        "HttpOnly",
        "SameSite=Strict",
        f"Max-Age={SESSION_SECONDS}",
    ]
    if secure:
        parts.append("Secure")
    return "; ".join(parts)


def clear_cookie() -> str:
    return f"{COOKIE}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0"
