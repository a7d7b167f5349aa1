"""Human-written durations such as ``30s``, ``2h``, ``3d``, ``1w`` or ``1d12h``.

Units must appear largest first and at most once each (``1w2d3h4m5s``), so a
duration has exactly one spelling per unit set and typos like ``1d1d`` are caught.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator

__all__ = ["MAX_DURATION", "Duration", "Lead", "parse_duration", "parse_lead"]

MAX_DURATION = timedelta(days=365)

_PATTERN = re.compile(
    r"(?:(?P<w>\d{1,8})w)?(?:(?P<d>\d{1,8})d)?(?:(?P<h>\d{1,8})h)?"
    r"(?:(?P<m>\d{1,8})m)?(?:(?P<s>\d{1,8})s)?"
)
_UNIT_SECONDS = {"w": 7 * 86_400, "d": 86_400, "h": 3_600, "m": 60, "s": 1}


def parse_duration(text: str) -> timedelta:
    """Parse ``text`` into a positive timedelta of at most 365 days.

    Raises ValueError with a message meant for the person who wrote the sequence.
    """
    match = _PATTERN.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None or not any(match.groupdict().values()):
        raise ValueError(
            f"{text!r} is not a duration: use a number followed by s, m, h, d or w, e.g. 2d"
        )
    # Whole seconds as a Python int first: no timedelta overflow on silly inputs.
    seconds = sum(
        int(value) * _UNIT_SECONDS[unit] for unit, value in match.groupdict().items() if value
    )
    if seconds <= 0:
        raise ValueError(f"{text!r} is not a duration: it must be longer than zero")
    if seconds > MAX_DURATION.total_seconds():
        raise ValueError(f"{text!r} is too long: the longest allowed duration is 365d")
    return timedelta(seconds=seconds)


def _checked(text: str) -> str:
    parse_duration(text)
    return text


# A duration field as written (``2d``), checked when the settings or the document are read.
Duration = Annotated[str, AfterValidator(_checked)]


def parse_lead(text: str) -> timedelta:
    """A duration that may also be zero (``0`` or ``0s``): how far ahead something happens."""
    if isinstance(text, str) and text.strip() in ("0", "0s"):
        return timedelta(0)
    return parse_duration(text)


def _checked_lead(text: str) -> str:
    parse_lead(text)
    return text


def _zero_as_text(value: object) -> object:
    """YAML reads ``draft_ahead: 0`` as a number: 0 is a lead, and any other number is told
    what a duration looks like."""
    return str(value) if type(value) is int else value


# A duration field where ``0`` means "not ahead at all" (``draft_ahead: 0``).
Lead = Annotated[str, BeforeValidator(_zero_as_text), AfterValidator(_checked_lead)]
