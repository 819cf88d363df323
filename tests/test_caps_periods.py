"""Periods: calendar buckets in a time zone (DST, month ends, year ends) and rolling windows."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from tokenomy.caps.periods import (
    MAX_BUCKETS,
    Period,
    bucket_bounds,
    locate,
    parse_period,
    parse_seconds,
    period_label,
)
from tokenomy.errors import ConfigError

NY = ZoneInfo("America/New_York")
TOKYO = ZoneInfo("Asia/Tokyo")
UTC_Z = ZoneInfo("UTC")


def ts(*args: int, tz: ZoneInfo = UTC_Z) -> float:
    return datetime(*args, tzinfo=tz).timestamp()  # type: ignore[misc]


def test_daily_is_23_hours_on_spring_forward_and_25_on_fall_back() -> None:
    spring = locate(Period("daily"), ts(2025, 3, 9, 12, tz=NY), NY)
    assert spring.end is not None and spring.end - spring.start == 23 * 3600
    assert spring.start == ts(2025, 3, 9, tz=NY)
    fall = locate(Period("daily"), ts(2025, 11, 2, 1, 30, tz=NY), NY)
    assert fall.end is not None and fall.end - fall.start == 25 * 3600
    # Both 01:30s of the repeated hour are the same day.
    later = datetime(2025, 11, 2, 1, 30, fold=1, tzinfo=NY).timestamp()
    assert locate(Period("daily"), later, NY).bucket == fall.bucket


def test_the_day_turns_over_at_local_midnight() -> None:
    before = locate(Period("daily"), ts(2025, 6, 1, 23, 59, 59, tz=NY), NY)
    after = locate(Period("daily"), ts(2025, 6, 2, 0, 0, 0, tz=NY), NY)
    assert after.bucket == before.bucket + 1
    assert before.end == after.start
    assert period_label(Period("daily"), after.bucket) == "2025-06-02"


def test_time_zone_decides_the_day() -> None:
    moment = ts(2025, 6, 1, 20)  # 20:00 UTC = 05:00 next day in Tokyo
    assert (
        period_label(Period("daily"), locate(Period("daily"), moment, UTC_Z).bucket) == "2025-06-01"
    )
    assert (
        period_label(Period("daily"), locate(Period("daily"), moment, TOKYO).bucket) == "2025-06-02"
    )


@pytest.mark.parametrize(
    ("moment", "label", "days"),
    [
        ((2025, 1, 31, 23), "2025-01", 31),
        ((2025, 2, 28, 23), "2025-02", 28),
        ((2024, 2, 29, 12), "2024-02", 29),
        ((2025, 12, 31, 23, 59), "2025-12", 31),
        ((2025, 4, 30, 0), "2025-04", 30),
    ],
)
def test_months_end_on_their_last_day(moment: tuple[int, ...], label: str, days: int) -> None:
    span = locate(Period("monthly"), ts(*moment), UTC_Z)
    assert period_label(Period("monthly"), span.bucket) == label
    assert span.end is not None and span.end - span.start == days * 86400
    nxt = locate(Period("monthly"), span.end, UTC_Z)
    assert nxt.bucket == span.bucket + 1  # December rolls into January of the next year


def test_a_month_in_a_dst_zone_is_not_a_whole_number_of_days() -> None:
    span = locate(Period("monthly"), ts(2025, 3, 15, tz=NY), NY)
    assert span.end is not None and span.end - span.start == 31 * 86400 - 3600


def test_weeks_are_iso_weeks_starting_monday() -> None:
    sunday = locate(Period("weekly"), ts(2025, 6, 8, 23), UTC_Z)
    monday = locate(Period("weekly"), ts(2025, 6, 9, 0), UTC_Z)
    assert monday.bucket == sunday.bucket + 7
    assert monday.start == ts(2025, 6, 9)
    assert period_label(Period("weekly"), monday.bucket) == "2025-W24"
    new_year = locate(Period("weekly"), ts(2025, 1, 1), UTC_Z)  # a Wednesday in week 1
    assert period_label(Period("weekly"), new_year.bucket) == "2025-W01"
    assert new_year.start == ts(2024, 12, 30)


def test_lifetime_is_one_bucket_forever() -> None:
    span = locate(Period("lifetime"), 1e9, UTC_Z)
    assert (span.bucket, span.start, span.end) == (0, 0.0, None)


def test_rolling_windows_are_whole_buckets() -> None:
    p = parse_period("rolling:24h")
    assert (p.bucket_seconds, p.span) == (60, 1440)
    span = locate(p, 1_000_000_030.0, UTC_Z)
    assert span.bucket == 1_000_000_030 // 60
    assert span.start == (span.bucket - 1439) * 60
    assert span.end == (span.bucket + 1) * 60
    short = parse_period("rolling:10s:1s")
    assert (short.bucket_seconds, short.span) == (1, 10)


def test_long_rolling_windows_get_coarser_buckets() -> None:
    p = parse_period("rolling:30d")
    assert p.span <= MAX_BUCKETS
    assert p.bucket_seconds == 1800


@pytest.mark.parametrize("kind", ["daily", "weekly", "monthly", "rolling:1h"])
def test_bucket_bounds_agree_with_locate(kind: str) -> None:
    p = parse_period(kind)
    for moment in (
        ts(2025, 3, 9, 3, tz=NY),
        ts(2025, 11, 2, 0, 30, tz=NY),
        ts(2024, 12, 31, 23, tz=NY),
    ):
        span = locate(p, moment, NY)
        start, end = bucket_bounds(p, span.bucket, NY)
        assert end == span.end
        assert start <= moment < (end or moment + 1)


def test_parsing() -> None:
    assert parse_period("Daily") == Period("daily")
    assert parse_period("rolling:90m") == Period("rolling", 5400)
    assert parse_period("rolling:3600:5m").to_text() == "rolling:3600:300"
    assert parse_seconds("2w") == 1_209_600
    for bad in ("hourly", "rolling", "daily:3", "rolling:-5", "rolling:1.5s"):
        with pytest.raises(ConfigError):
            parse_period(bad)


def test_labels_use_utc_free_calendar_numbers() -> None:
    day = locate(Period("daily"), datetime(2025, 7, 4, 12, tzinfo=UTC).timestamp(), UTC_Z)
    assert period_label(Period("daily"), day.bucket) == "2025-07-04"
    assert period_label(Period("lifetime"), 0) == "lifetime"
