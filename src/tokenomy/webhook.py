"""When an alert webhook is tried again: the policy both alert senders share.

A receiver that did not answer (connection refused or reset, timeout), asked to
be called later (408, 425, 429) or failed (5xx) is tried again after each delay
in `RETRY_DELAYS`; any other answer (2xx, or a 4xx that says the request itself
is wrong) ends the attempts.
"""

from __future__ import annotations

from collections.abc import Sequence

RETRY_DELAYS: tuple[float, ...] = (1.0, 5.0, 30.0)  # seconds before the 2nd, 3rd, 4th try


def retryable(status: int | None) -> bool:
    """Whether a webhook that answered ``status`` (None: no answer) may be tried again."""
    return status is None or status in (408, 425, 429) or status >= 500


def retry_delay(attempt: int, status: int | None, delays: Sequence[float]) -> float | None:
    """Seconds to wait before trying again after try number ``attempt`` (from 0)
    answered ``status``, or None: give up."""
    if attempt < len(delays) and retryable(status):
        return delays[attempt]
    return None
