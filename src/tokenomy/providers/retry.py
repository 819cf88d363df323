"""Whether to retry an upstream's error reply on the same deployment, and when.

The upstream has the last word. OpenAI and Anthropic send ``x-should-retry``
(which their own SDKs obey): ``false`` means a retry cannot succeed (a quota
spent, a request the model refuses), ``true`` that it can even when the status
says otherwise. Without it, the statuses that may pass are retried: 408, 409,
429, Groq's 498 (its flex tier out of capacity) and the 5xx a retry can mend.

The wait is the exponential backoff or what the upstream asks for
(``retry-after-ms``, else ``retry-after`` in seconds or as an HTTP date),
whichever is longer. An upstream asking for more than `MAX_WAIT_S` is not waited
out: the client would be held that long for a retry that, sooner, fails again,
so the refusal goes on at once (to the fallbacks, or to the client with the
upstream's ``retry-after``).

These are the deployment's own retries (``max_retries``). A fallback to another
deployment is another request, not a retry of this one: ``x-should-retry: false``
does not stop it (`tokenomy.routing.fallback`).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime

# 498: Groq's flex tier without capacity (``capacity_exceeded``), a 429 by another number.
RETRYABLE_STATUS = frozenset({408, 409, 429, 498, 500, 502, 503, 504, 529})
MAX_WAIT_S = 30.0


def should_retry(status: int, headers: Mapping[str, str]) -> bool:
    """The upstream's ``x-should-retry`` when it sent one, else whether ``status`` may pass."""
    verdict = headers.get("x-should-retry", "").strip().lower()
    if verdict in ("true", "false"):
        return verdict == "true"
    return status in RETRYABLE_STATUS


def asked_wait(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """The seconds the upstream asks to wait, or None when it asks nothing readable."""
    wait: float | None = None
    ms = headers.get("retry-after-ms")
    if ms is not None:
        wait = _number(ms)
        wait = None if wait is None else wait / 1000.0
    after = headers.get("retry-after")
    if wait is None and after is not None:
        wait = _number(after)
        if wait is None:  # an HTTP date
            try:
                when = parsedate_to_datetime(after).timestamp()
            except (TypeError, ValueError, IndexError, OverflowError):
                return None
            wait = max(when - (time.time() if now is None else now), 0.0)
    return wait


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def backoff(attempt: int, base: float) -> float:
    """Exponential backoff with jitter: ``base`` doubled each retry, times 0.5 to 1.5."""
    return base * 2.0**attempt * (0.5 + random.random())


def retry_delay(status: int, headers: Mapping[str, str], attempt: int, base: float) -> float | None:
    """Seconds to wait before retrying an error reply, or None: not retried."""
    if not should_retry(status, headers):
        return None
    asked = asked_wait(headers)
    if asked is None:
        return backoff(attempt, base)
    if asked > MAX_WAIT_S:
        return None
    return max(backoff(attempt, base), asked)
