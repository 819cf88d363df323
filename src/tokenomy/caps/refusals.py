"""What a caller hears from the caps: refusals in words, and OpenAI's rate-limit headers.

A budget refusal is a 429 (``budget_exceeded``) that names the budget, what the
request could cost and what is left; ``x-should-retry: false`` keeps the
official SDKs from retrying it, and ``retry-after`` says when the period turns
over. A rate-limit refusal is a 429 (``rate_limit_exceeded``) with
``retry-after`` and OpenAI's ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import Overloaded, RateLimited
from .counters import Hold, units_to_usd
from .model import Budget, Limit
from .periods import Span


@dataclass(slots=True)
class Line:
    """One hold, and what it stands for."""

    hold: Hold
    budget: Budget | None
    limit: Limit | None
    entity: str
    span: Span | None  # budgets: the period the request falls in
    source: Any = None  # a hold added by a `policy.HoldSource`: that source

    @property
    def name(self) -> str:
        d = self.budget or self.limit
        assert d is not None
        return d.name

    @property
    def measure(self) -> str:
        return self.hold.measure


def money(units: int) -> str:
    return f"${units_to_usd(max(units, 0))}"


def amount(line: Line, units: int) -> str:
    return money(units) if line.measure == "usd" else f"{max(units, 0)} tokens"


def duration(seconds: float) -> str:
    """OpenAI's reset format: ``20ms``, ``1.5s``, ``6m0s``, ``1h2m3s``."""
    if seconds <= 0:
        return "0s"
    if seconds < 1:
        return f"{math.ceil(seconds * 1000)}ms"
    if seconds < 60:
        return f"{round(seconds, 3):g}s"
    whole = math.ceil(seconds)
    h, rest = divmod(whole, 3600)
    m, s = divmod(rest, 60)
    return (f"{h}h" if h else "") + f"{m}m{s}s"


def budget_refusal(line: Line, total: int, now: float) -> RateLimited:
    b = line.budget
    assert b is not None and line.hold.limit is not None
    limit = line.hold.limit
    left = limit - total
    who = f" for {line.entity}" if line.entity else ""
    if line.hold.amount == 0:
        need = "it has no known price, and nothing is left"
    else:
        need = f"this request may cost up to {amount(line, line.hold.amount)} (worst case)"
    msg = (
        f"Budget '{b.name}'{who} ({b.describe()}) stopped this request: {need}; "
        f"{amount(line, left)} of {amount(line, limit)} remains"
    )
    headers = {"x-should-retry": "false", "x-tokenomy-budget": b.name}
    end = line.span.end if line.span is not None else None
    if end is not None:
        wait = max(math.ceil(end - now), 1)
        msg += f" until the period ends in {duration(wait)}"
        headers["retry-after"] = str(wait)
    return RateLimited(msg + ".", code="budget_exceeded", headers=headers)


_LIMIT_WORDS = {
    "requests": "requests",
    "tokens": "tokens",
    "input_tokens": "input tokens",
    "output_tokens": "output tokens",
    "concurrent": "concurrent requests",
}


def reset_after(line: Line, oldest: int | None, now: float) -> float:
    """Seconds until the window frees what it holds now (1 s buckets)."""
    lim = line.limit
    if lim is None or line.measure == "concurrent":
        return 1.0
    first = oldest if oldest is not None else math.floor(now)
    return max(first + lim.window - now, 0.0)


def limit_refusal(
    line: Line, total: int, oldest: int | None, now: float, headers: dict[str, str]
) -> RateLimited:
    lim = line.limit
    assert lim is not None and line.hold.limit is not None
    who = f" for {line.entity}" if line.entity else ""
    what = _LIMIT_WORDS.get(line.measure, line.measure)
    wait = reset_after(line, oldest, now)
    if line.measure == "concurrent":
        msg = (f"Rate limit '{lim.name}'{who}: {line.hold.limit} {what} at most, "
               f"and {total} are in flight.")  # fmt: skip
    else:
        msg = (
            f"Rate limit '{lim.name}'{who} reached: {line.hold.limit} {what} per "
            f"{lim.window}s; {total} used, this request needs {line.hold.amount}. "
            f"Retry in {duration(wait)}."
        )
    out = {**headers, "retry-after": str(max(math.ceil(wait), 1))}
    return RateLimited(msg, headers=out)


def ratelimit_headers(
    lines: Sequence[Line],
    totals: Sequence[int],
    oldest: Sequence[int | None],
    now: float,
    *,
    admitted: bool,
) -> dict[str, str]:
    """OpenAI's ``x-ratelimit-*`` from the tightest request and token limits."""
    out: dict[str, str] = {}
    for kind, measures in (("requests", ("requests",)),
                           ("tokens", ("tokens", "input_tokens", "output_tokens"))):  # fmt: skip
        best: tuple[int, int, float] | None = None
        for i, line in enumerate(lines):
            if line.limit is None or line.measure not in measures or line.hold.limit is None:
                continue
            used = totals[i] + (line.hold.amount if admitted else 0)
            remaining = max(line.hold.limit - used, 0)
            reset = reset_after(line, oldest[i], now)
            if best is None or remaining < best[1]:
                best = (line.hold.limit, remaining, reset)
        if best is not None:
            out[f"x-ratelimit-limit-{kind}"] = str(best[0])
            out[f"x-ratelimit-remaining-{kind}"] = str(best[1])
            out[f"x-ratelimit-reset-{kind}"] = duration(best[2])
    return out


def unavailable(name: str, kind: str, backend: str) -> Overloaded:
    return Overloaded(
        f"The caps backend ({backend}) is unreachable, and {kind} '{name}' is set to "
        "fail closed: the request was refused.",
        code="caps_unavailable",
        headers={"x-tokenomy-caps": "fail-closed"},
    )
