"""Periodic chores on shared instants.

An idle gateway still has chores (the server's Date header, polling the caps
definitions, sweeping expired reservations). Each wake-up of an idle process
runs with cold caches and costs far more than the chore itself, so chores wait
for the next multiple of their period on the event loop's clock: those that
come due together are served by one wake-up.
"""

from __future__ import annotations


def until_next(now: float, period: float) -> float:
    """Seconds from ``now`` to the next multiple of ``period`` (a timer that fired a
    hair early, within 5% of a period, waits for the multiple after)."""
    wait = period - now % period
    return wait + period if wait < 0.05 * period else wait
