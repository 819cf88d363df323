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
from collections import deque
from collections.abc import Callable, Mapping
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
    # bytes: a cookie may hold non-ASCII text, which compare_digest refuses as str
    return hmac.compare_digest(signature.encode(), _sign(master_key, expires).encode())


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


class LoginThrottle:
    """Slows guessing at the sign-in form: after ``attempts`` wrong keys from one
    client address within ``window`` seconds, it must wait until the oldest of
    them is ``window`` seconds old. Per process; a few thousand addresses at most."""

    def __init__(
        self,
        *,
        attempts: int = 5,
        window: float = 300.0,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.attempts = attempts
        self.window = window
        self.max_clients = max_clients
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}

    def retry_after(self, client: str) -> float:
        """Seconds this client must wait before it may try again (0: now)."""
        fails = self._failures.get(client)
        if not fails:
            return 0.0
        now = self.clock()
        while fails and now - fails[0] >= self.window:
            fails.popleft()
        if len(fails) < self.attempts:
            return 0.0
        return self.window - (now - fails[0])

    def failed(self, client: str) -> None:
        fails = self._failures.pop(client, None) or deque(maxlen=self.attempts)
        fails.append(self.clock())
        self._failures[client] = fails  # most recent last: the oldest go first
        while len(self._failures) > self.max_clients:
            del self._failures[next(iter(self._failures))]

    def succeeded(self, client: str) -> None:
        self._failures.pop(client, None)
