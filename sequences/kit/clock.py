"""Time: a real clock, and the mapping between real time and sequence time.

Sequence definitions speak in sequence time ("wait 2d", "09:00-17:00 on weekdays"). With the
accelerated clock (``DRIPLINE_DAY_SECONDS=10``) one sequence day passes in ten real seconds, so
demos and tests run whole sequences in seconds. Rows in the database always hold real UTC times;
only scheduling arithmetic happens in sequence time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

DAY = 86400.0


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    """Wall-clock time, timezone-aware UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass(frozen=True)
class SequenceTime:
    """Maps real instants to sequence instants: ``virtual = anchor + (real - anchor) * speed``."""

    anchor: datetime
    speed: float = 1.0

    @classmethod
    def from_day_seconds(cls, anchor: datetime, day_seconds: float) -> SequenceTime:
        return cls(anchor=anchor, speed=DAY / day_seconds)

    def to_virtual(self, real: datetime) -> datetime:
        if self.speed == 1.0:
            return real
        return self.anchor + (real - self.anchor) * self.speed

    def to_real(self, virtual: datetime) -> datetime:
        if self.speed == 1.0:
            return virtual
        return self.anchor + (virtual - self.anchor) / self.speed

    def real_duration(self, sequence_duration: timedelta) -> timedelta:
        return sequence_duration / self.speed
