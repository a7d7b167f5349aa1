"""Field types of sequence documents: ids, durations, addresses, URLs, templates, windows."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import time
from email.utils import parseaddr
from typing import Annotated, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from email_validator import EmailNotValidError, validate_email
from pydantic import AfterValidator, StringConstraints

from sequences.definitions.sandbox import validate_condition, validate_template

_SLUG = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
_WINDOW = re.compile(r"(\d\d):(\d\d)-(\d\d):(\d\d)")


def _slug(value: str) -> str:
    if not _SLUG.fullmatch(value):
        raise ValueError(f"{value!r} is not a valid id: use a-z, 0-9 and '-', e.g. welcome-email")
    return value


def _address(value: str) -> str:
    if "\r" in value or "\n" in value:
        raise ValueError("an address must fit on one line")
    address = parseaddr(value)[1]
    try:
        # test_environment admits the reserved .test domain used in local setups.
        validate_email(address, check_deliverability=False, test_environment=True)
    except EmailNotValidError as exc:
        raise ValueError(f"{value!r} is not an email address ('Name <user@host>'): {exc}") from None
    return value


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or any(c.isspace() for c in value)
    ):
        raise ValueError(f"{value!r} is not an http(s) URL")
    return value


def valid_zone(value: str) -> None:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{value!r} is not an IANA time zone, e.g. Europe/Paris") from None


def passes(check: Callable[[str], object]) -> AfterValidator:
    """A validator that keeps the text as written once ``check`` accepts it."""

    def validate(value: str) -> str:
        check(value)
        return value

    return AfterValidator(validate)


Slug = Annotated[str, AfterValidator(_slug)]
Address = Annotated[str, AfterValidator(_address)]
HttpUrl = Annotated[str, AfterValidator(_http_url)]
EventType = Annotated[str, StringConstraints(min_length=1, max_length=100)]
TemplateText = Annotated[str, StringConstraints(max_length=50_000), passes(validate_template)]
Condition = Annotated[str, passes(validate_condition)]
Approval = Literal["always", "first_of_each_step", "never"]
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def parse_window(text: str) -> tuple[time, time]:
    """``"09:00-17:00"`` -> (09:00, 17:00); the end is exclusive."""
    match = _WINDOW.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a window: use HH:MM-HH:MM, e.g. 09:00-17:00")
    hh1, mm1, hh2, mm2 = (int(part) for part in match.groups())
    try:
        start, end = time(hh1, mm1), time(hh2, mm2)
    except ValueError:
        raise ValueError(f"{text!r} has an impossible time of day") from None
    if start >= end:
        raise ValueError(f"window {text!r} must start before it ends (no overnight windows)")
    return start, end
