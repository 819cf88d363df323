"""Fallbacks: on an upstream failure, try the next target in the plan.

Which failures move on is configurable (``routing.fallback_on``): ``5xx`` (the
provider's 5xx, or a malformed answer), ``connect`` (refused or reset),
``timeout`` and ``429`` (the provider's rate limit). A client error (any other
4xx) never does: the next model would refuse the same request. The provider's
own retries (``max_retries``) run first, inside each attempt.
"""

from __future__ import annotations

from ..errors import (
    TokenomyError,
    UpstreamConnectError,
    UpstreamProtocolError,
    UpstreamStatusError,
    UpstreamTimeout,
)


def failure_kind(exc: TokenomyError) -> str | None:
    """``5xx``, ``connect``, ``timeout`` or ``429``; None for errors that are final."""
    if isinstance(exc, UpstreamTimeout):
        return "timeout"
    if isinstance(exc, UpstreamConnectError):
        return "connect"
    if isinstance(exc, UpstreamStatusError):
        if exc.status == 429:
            return "429"
        return "5xx" if exc.status >= 500 else None
    if isinstance(exc, UpstreamProtocolError):
        return "5xx"
    return None
