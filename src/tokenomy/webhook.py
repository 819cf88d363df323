"""When an alert webhook is tried again: the policy both alert senders share.

A receiver that did not answer (connection refused or reset, timeout), asked to
be called later (408, 425, 429) or failed (5xx) is tried again after each delay
in `RETRY_DELAYS`; any other answer (2xx, or a 4xx that says the request itself
is wrong) ends the attempts.

A webhook URL is a secret (a Slack incoming webhook's path is its token), so
logs name it only by `shown`: scheme and host.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

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


def shown(url: str) -> str:
    """``url`` as a log line may show it: ``https://hooks.slack.com/...`` (no user,
    password, path or query, which may hold the receiver's token)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # not a URL at all: nothing of it is shown
        return "<webhook>"
    if not parts.scheme or not host:
        return "<webhook>"
    return f"{parts.scheme}://{host}{port}/..."


def scrubbed(text: str, url: str) -> str:
    """``text`` (an error message) with ``url`` replaced by `shown` ``url``."""
    return text.replace(url, shown(url)) if url else text
