"""Periods: which bucket a moment falls in, and which buckets make up the window.

- ``lifetime``: one bucket, forever.
- ``daily``, ``weekly`` (ISO weeks, Monday first) and ``monthly``: calendar
  periods in the configured time zone (``zoneinfo``), so a day is 23 or 25
  hours across a DST change and a month ends on its last day. The bucket is the
  period's number (the local date's ordinal, the Monday's ordinal, or
  ``year * 12 + month - 1``); the window is that one bucket.
- ``rolling``: the last ``seconds``, in buckets of ``granularity`` seconds
  (60 by default; at most `MAX_BUCKETS` buckets, so longer windows get coarser
  buckets). The window is the current bucket plus the ``span - 1`` before it,
  counted whole: it covers between ``seconds - granularity`` and ``seconds`` of
  history, never an interpolated fraction, so it stays exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..errors import ConfigError

KINDS = ("lifetime", "daily", "weekly", "monthly", "rolling")
MAX_BUCKETS = 1440
CALENDAR_GRACE = 2 * 86400.0  # a calendar counter outlives its period by this long


@dataclass(frozen=True, slots=True)
class Period:
    kind: str
    seconds: int = 0  # rolling only: the window's length
    granularity: int = 0  # rolling only: bucket width in seconds (0: the default)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"period must be one of {', '.join(KINDS)}, not {self.kind!r}")
        if self.kind == "rolling":
            if self.seconds <= 0:
                raise ConfigError("a rolling period needs a length in seconds")
            if self.granularity < 0 or self.granularity > self.seconds:
                raise ConfigError("granularity must be between 1 s and the window's length")

    @property
    def bucket_seconds(self) -> int:
        """Rolling windows: the bucket width actually used."""
        gran = self.granularity or min(60, self.seconds)
        return max(gran, math.ceil(self.seconds / MAX_BUCKETS))

    @property
    def span(self) -> int:
        return math.ceil(self.seconds / self.bucket_seconds) if self.kind == "rolling" else 1

    @property
    def tag(self) -> str:
        """A short name that changes when the period's meaning changes (part of counter keys)."""
        if self.kind == "rolling":
            return f"r{self.seconds}g{self.bucket_seconds}"
        return self.kind[0]

    def describe(self) -> str:
        if self.kind == "rolling":
            return f"rolling {format_seconds(self.seconds)}"
        return self.kind

    def to_text(self) -> str:
        if self.kind != "rolling":
            return self.kind
        text = f"rolling:{self.seconds}"
        return text + (f":{self.granularity}" if self.granularity else "")


def parse_period(text: str) -> Period:
    """``daily``, ``rolling:24h``, ``rolling:3600``, ``rolling:24h:5m`` (with granularity)."""
    kind, _, rest = text.strip().lower().partition(":")
    if kind != "rolling":
        if rest:
            raise ConfigError(f"period {text!r}: only rolling periods take a length")
        return Period(kind)
    length, _, gran = rest.partition(":")
    if not length:
        raise ConfigError(f"period {text!r}: give the length, e.g. rolling:24h")
    return Period("rolling", parse_seconds(length), parse_seconds(gran) if gran else 0)


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_seconds(text: str) -> int:
    t = text.strip().lower()
    unit = _UNITS.get(t[-1:]) if t else None
    try:
        value = float(t[:-1] if unit else t) * (unit or 1)
    except ValueError:
        raise ConfigError(f"{text!r}: use seconds or a number with s, m, h, d or w") from None
    if value <= 0 or value != int(value):
        raise ConfigError(f"{text!r}: must be a positive whole number of seconds")
    return int(value)


def format_seconds(seconds: float) -> str:
    for name, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{name}"
    return f"{seconds:g}s"


@lru_cache(maxsize=64)
def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"unknown time zone {name!r}") from exc


@dataclass(frozen=True, slots=True)
class Span:
    """Where a moment falls: its bucket, and the window's bounds in unix seconds."""

    bucket: int
    start: float  # the window's first second (0 for lifetime)
    end: float | None  # when this bucket stops being current (None: never)


def locate(period: Period, ts: float, tz: ZoneInfo) -> Span:
    """The bucket ``ts`` falls in, with the start of the window it closes and its end."""
    kind = period.kind
    if kind == "lifetime":
        return Span(0, 0.0, None)
    if kind == "rolling":
        gran = period.bucket_seconds
        bucket = math.floor(ts / gran)
        return Span(bucket, (bucket - period.span + 1) * gran, (bucket + 1) * gran)
    day = datetime.fromtimestamp(ts, tz).date()
    if kind == "daily":
        first, nxt = day, day + timedelta(days=1)
        bucket = day.toordinal()
    elif kind == "weekly":
        first = day - timedelta(days=day.weekday())
        nxt = first + timedelta(days=7)
        bucket = first.toordinal()
    else:
        first = day.replace(day=1)
        nxt = date(first.year + first.month // 12, first.month % 12 + 1, 1)
        bucket = first.year * 12 + first.month - 1
    return Span(bucket, midnight(first, tz), midnight(nxt, tz))


def midnight(day: date, tz: ZoneInfo) -> float:
    """The first instant of ``day`` in ``tz``, as unix seconds.

    Where midnight itself is skipped by a DST change (some zones move at 00:00),
    the day starts at the first local time that exists.
    """
    local = datetime(day.year, day.month, day.day, tzinfo=tz)
    ts = local.timestamp()
    if datetime.fromtimestamp(ts, tz).date() != day:  # midnight did not exist
        ts = datetime(day.year, day.month, day.day, 1, tzinfo=tz).timestamp()
        ts -= 3600
        while datetime.fromtimestamp(ts, tz).date() != day:
            ts += 60
    return ts


def bucket_bounds(period: Period, bucket: int, tz: ZoneInfo) -> tuple[float, float | None]:
    """The unix-second bounds [start, end) of one bucket."""
    if period.kind == "lifetime":
        return 0.0, None
    if period.kind == "rolling":
        gran = period.bucket_seconds
        return bucket * gran, (bucket + 1) * gran
    if period.kind == "monthly":
        year, month0 = divmod(bucket, 12)
        first = date(year, month0 + 1, 1)
        nxt = date(year + (month0 + 1) // 12, (month0 + 1) % 12 + 1, 1)
    else:
        first = date.fromordinal(bucket)
        nxt = first + timedelta(days=1 if period.kind == "daily" else 7)
    return midnight(first, tz), midnight(nxt, tz)


def period_label(period: Period, bucket: int) -> str:
    """A human name for a bucket: ``2025-03-09``, ``2025-W10``, ``2025-03``."""
    if period.kind == "lifetime":
        return "lifetime"
    if period.kind == "rolling":
        return f"rolling-{bucket}"
    if period.kind == "monthly":
        year, month0 = divmod(bucket, 12)
        return f"{year:04d}-{month0 + 1:02d}"
    day = date.fromordinal(bucket)
    if period.kind == "weekly":
        iso = day.isocalendar()
        return f"{iso.year:04d}-W{iso.week:02d}"
    return day.isoformat()
