from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from sequences.definitions.document import Schedule
from sequences.definitions.schedule import (
    ALL_DAYS,
    frequency_cap_release,
    next_allowed,
    window_from_spec,
)

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")
WEEKDAYS = frozenset(range(5))
OFFICE = (time(9), time(17))


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def test_inside_window_is_returned_unchanged() -> None:
    at = datetime(2026, 11, 24, 10, 30, tzinfo=PARIS)  # a Tuesday
    assert next_allowed(at, timezone=PARIS, days=WEEKDAYS, window=OFFICE) == at


def test_weekend_moves_to_monday_nine_local() -> None:
    saturday_noon = datetime(2026, 11, 28, 12, tzinfo=PARIS)
    result = next_allowed(saturday_noon, timezone=PARIS, days=WEEKDAYS, window=OFFICE)
    assert result == utc(2026, 11, 30, 8)  # 09:00 CET
    assert result.tzinfo is UTC


def test_after_window_moves_to_next_day() -> None:
    tuesday_evening = datetime(2026, 11, 24, 18, tzinfo=PARIS)
    result = next_allowed(tuesday_evening, timezone=PARIS, days=WEEKDAYS, window=OFFICE)
    assert result.astimezone(PARIS) == datetime(2026, 11, 25, 9, tzinfo=PARIS)


def test_window_end_is_exclusive_and_friday_evening_waits_for_monday() -> None:
    friday_close = datetime(2026, 11, 27, 17, tzinfo=PARIS)
    result = next_allowed(friday_close, timezone=PARIS, days=WEEKDAYS, window=OFFICE)
    assert result.astimezone(PARIS) == datetime(2026, 11, 30, 9, tzinfo=PARIS)


def test_before_window_moves_to_start_same_day() -> None:
    early = datetime(2026, 11, 24, 6, 15, tzinfo=PARIS)
    result = next_allowed(early, timezone=PARIS, days=WEEKDAYS, window=OFFICE)
    assert result.astimezone(PARIS) == datetime(2026, 11, 24, 9, tzinfo=PARIS)


def test_no_window_means_any_time_on_allowed_days() -> None:
    sunday = datetime(2026, 11, 29, 15, tzinfo=PARIS)
    result = next_allowed(sunday, timezone=PARIS, days=WEEKDAYS, window=None)
    assert result.astimezone(PARIS) == datetime(2026, 11, 30, 0, tzinfo=PARIS)


def test_spring_forward_window_start_uses_the_new_offset() -> None:
    # 2026-03-08 is the spring-forward Sunday in New York: 09:00 is EDT (UTC-4), not EST.
    saturday_night = utc(2026, 3, 8, 1)  # 20:00 EST on Saturday
    result = next_allowed(saturday_night, timezone=NEW_YORK, days=ALL_DAYS, window=OFFICE)
    assert result == utc(2026, 3, 8, 13)


def test_window_start_inside_the_dst_gap_moves_past_it() -> None:
    at = utc(2026, 3, 8, 6)  # 01:00 EST; 02:30 does not exist that night
    result = next_allowed(at, timezone=NEW_YORK, days=ALL_DAYS, window=(time(2, 30), time(5)))
    assert result == utc(2026, 3, 8, 7, 30)
    assert result.astimezone(NEW_YORK).strftime("%H:%M %Z") == "03:30 EDT"


def test_fall_back_ambiguous_start_uses_first_occurrence() -> None:
    at = utc(2026, 11, 1, 4)  # 00:00 EDT on the fall-back night
    result = next_allowed(at, timezone=NEW_YORK, days=ALL_DAYS, window=(time(1, 30), time(3)))
    assert result == utc(2026, 11, 1, 5, 30)  # 01:30 EDT, the first 01:30


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        next_allowed(datetime(2026, 1, 1), timezone=PARIS, days=ALL_DAYS, window=None)  # noqa: DTZ001


def test_window_from_spec_prefers_a_valid_contact_zone() -> None:
    spec = Schedule.model_validate(
        {"timezone": "Europe/Paris", "timezone_from": "contact.timezone", "days": ["mon", "fri"]}
        | {"window": "09:00-17:00"}
    )
    zone, days, window = window_from_spec(spec, "America/New_York")
    assert (zone, days, window) == (NEW_YORK, frozenset({0, 4}), OFFICE)
    assert window_from_spec(spec, "Not/AZone")[0] == PARIS
    assert window_from_spec(spec, "../../etc/passwd")[0] == PARIS
    assert window_from_spec(spec, None)[0] == PARIS


def test_window_from_spec_ignores_contact_zone_unless_asked() -> None:
    spec = Schedule.model_validate({"timezone": "Europe/Paris"})
    assert window_from_spec(spec, "America/New_York") == (PARIS, ALL_DAYS, None)
    assert window_from_spec(None, "America/New_York") == (ZoneInfo("UTC"), ALL_DAYS, None)


NOW = utc(2026, 11, 24, 12)
DAY = timedelta(days=1)


def test_frequency_cap_allows_when_under_the_cap() -> None:
    sent = [NOW - timedelta(hours=30), NOW - timedelta(hours=2)]
    assert frequency_cap_release(sent, now=NOW, max_count=2, per=DAY) == NOW


def test_frequency_cap_waits_for_the_oldest_send_to_age_out() -> None:
    sent = [NOW - timedelta(hours=2), NOW - timedelta(hours=20)]
    release = frequency_cap_release(sent, now=NOW, max_count=2, per=DAY)
    assert release == NOW + timedelta(hours=4)
    assert frequency_cap_release(sent, now=release, max_count=2, per=DAY) == release


def test_frequency_cap_window_is_open_at_its_start() -> None:
    sent = [NOW - DAY]  # exactly one period ago: already aged out
    assert frequency_cap_release(sent, now=NOW, max_count=1, per=DAY) == NOW


def test_frequency_cap_lowered_below_the_recent_count() -> None:
    sent = [NOW - timedelta(hours=h) for h in (1, 5, 10)]
    release = frequency_cap_release(sent, now=NOW, max_count=1, per=DAY)
    assert release == NOW - timedelta(hours=1) + DAY
