"""Fallbacks: on an upstream failure, try the next target in the plan.

Which failures move on is configurable (``routing.fallback_on``): ``5xx`` (the
provider's 5xx), ``connect`` (refused or reset), ``timeout``, ``429`` (the
provider's rate limit, or Groq's 498 for its flex tier out of capacity),
``auth`` (the provider refused the gateway's own key with a 401 or 403: another
deployment's key may work) and ``bad_response`` (a
reply the gateway cannot read: invalid JSON, the wrong shape, too large, or a
stream broken before its first event reached the client). A client error (any
other 4xx) never does: the next model would refuse the same request. The
provider's own retries (``max_retries``) run first, inside each attempt; an
upstream's ``x-should-retry: false`` ends those, not the fallbacks.
"""

from __future__ import annotations

from ..errors import (
    TokenomyError,
    UpstreamAuthError,
    UpstreamConnectError,
    UpstreamProtocolError,
    UpstreamStatusError,
    UpstreamTimeout,
)

RATE_LIMITED = frozenset({429, 498})  # 498: Groq's flex tier out of capacity


def failure_kind(exc: TokenomyError) -> str | None:
    """``5xx``, ``connect``, ``timeout``, ``429``, ``auth`` or ``bad_response``; None
    for errors that are final."""
    if isinstance(exc, UpstreamTimeout):
        return "timeout"
    if isinstance(exc, UpstreamConnectError):
        return "connect"
    if isinstance(exc, UpstreamStatusError):
        if exc.status in RATE_LIMITED:
            return "429"
        return "5xx" if exc.status >= 500 else None
    if isinstance(exc, UpstreamAuthError):
        return "auth"
    if isinstance(exc, UpstreamProtocolError):
        return "bad_response"
    return None
