"""The progress of ``dripline simulate`` on stderr, so the report on stdout stays clean to pipe.

On a terminal one line is redrawn in place; anywhere else (a pipe, a log file) a new line is
written as each sequence day begins, so a reader of the stream sees it move too.
"""

from __future__ import annotations

import sys
from typing import TextIO

WIDTH = 24


class ProgressLine:
    def __init__(self, days: float, stream: TextIO | None = None) -> None:
        self.days = days
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()
        self._day_shown = -1
        self._drawn = False

    def update(self, day: float, sent: int, events: int) -> None:
        """Sequence ``day`` reached, with the emails sent and events answered so far."""
        day = min(day, self.days)
        if self.live:
            self._write("\r" + self.line(day, sent, events) + "\x1b[K")
        elif int(day) > self._day_shown:
            self._day_shown = int(day)
            self._write(self.line(day, sent, events) + "\n")

    def line(self, day: float, sent: int, events: int) -> str:
        done = round(WIDTH * day / self.days) if self.days else WIDTH
        bar = "#" * done + "-" * (WIDTH - done)
        return f"day {day:5.1f}/{self.days:g} [{bar}]  {sent} emails sent  {events} events"

    def note(self, text: str) -> None:
        """A message of its own, on its own line (the bar resumes below it)."""
        self.close()
        self._write(text + "\n")

    def close(self) -> None:
        if self.live and self._drawn:
            self._write("\n")
        self._drawn = False

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()
        self._drawn = self.live
