"""When a send may happen: send windows in the recipient's zone, and frequency caps.

Pure functions, no I/O. Local wall-clock times are resolved with ``fold=0``: an
ambiguous time (autumn fall-back) means its first occurrence, and a time that
does not exist (inside a spring-forward gap, e.g. 02:30 in New York) is moved
forward by the gap's length (to 03:30). Results are returned in UTC.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sequences.definitions.document import Schedule

ALL_DAYS = frozenset(range(7))


def _require_aware(value: datetime, name: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime")


def _local_instant(day: date, at: time, zone: ZoneInfo) -> datetime:
    # fold=0 by default; going through UTC moves a non-existent local time past the gap.
    return datetime.combine(day, at, tzinfo=zone).astimezone(UTC)


def _open_period(
    day: date, zone: ZoneInfo, window: tuple[time, time] | None
) -> tuple[datetime, datetime]:
    """The UTC [start, end) during which ``day`` allows sending."""
    if window is None:
        return _local_instant(day, time(0), zone), _local_instant(
            day + timedelta(days=1), time(0), zone
        )
    return _local_instant(day, window[0], zone), _local_instant(day, window[1], zone)


def next_allowed(
    at: datetime,
    *,
    timezone: ZoneInfo,
    days: frozenset[int],
    window: tuple[time, time] | None,
) -> datetime:
    """The earliest instant >= ``at`` on an allowed weekday (0 = Monday) inside ``window``.

    ``window`` is local [start, end); None means the whole day. When ``at`` is
    already allowed the same instant comes back (in UTC).
    """
    _require_aware(at, "at")
    if not days:
        raise ValueError("at least one day must be allowed")
    moment = at.astimezone(UTC)
    today = moment.astimezone(timezone).date()
    # Eight days always reach an allowed weekday, today's window possibly being over.
    for offset in range(8):
        day = today + timedelta(days=offset)
        if day.weekday() not in days:
            continue
        start, end = _open_period(day, timezone, window)
        if moment < end:
            return max(moment, start)
    raise AssertionError("unreachable: an allowed day occurs within any eight days")


def _zone(name: str | None) -> ZoneInfo | None:
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def window_from_spec(
    schedule: Schedule | None, contact_timezone: str | None
) -> tuple[ZoneInfo, frozenset[int], tuple[time, time] | None]:
    """The zone, weekdays and window for one contact; bad contact zones fall back."""
    if schedule is None:
        return ZoneInfo("UTC"), ALL_DAYS, None
    zone = _zone(contact_timezone) if schedule.timezone_from == "contact.timezone" else None
    return zone or ZoneInfo(schedule.timezone), schedule.weekdays, schedule.window_times


def frequency_cap_release(
    sent_times: Sequence[datetime], *, now: datetime, max_count: int, per: timedelta
) -> datetime:
    """When the next send is allowed under "at most ``max_count`` per ``per``".

    ``now`` if fewer than ``max_count`` sends fall within (now - per, now];
    otherwise the moment enough of them age out of that window.
    """
    _require_aware(now, "now")
    if max_count < 1 or per <= timedelta(0):
        raise ValueError("a frequency cap needs max_count >= 1 and a positive period")
    recent = sorted(sent for sent in sent_times if now - per < sent <= now)
    if len(recent) < max_count:
        return now
    # With the cap lowered since, more than max_count can be in the window.
    return recent[len(recent) - max_count] + per
