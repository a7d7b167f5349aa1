"""What every ESP webhook shares: its errors, the event record, and the checks on a request."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar

from sequences.errors import DriplineError

Headers = Mapping[str, str]  # header names in lower case, as Starlette gives them
T = TypeVar("T")
P = ParamSpec("P")


class WebhookRejected(DriplineError):
    """Raise when a request is not provably from the ESP; nothing is written, it gets a 401."""

    status = 401

    def __init__(self, reason: str, *, code: str = "bad_signature", status: int = 401) -> None:
        super().__init__(code, reason, status=status)
        self.reason = reason


class Malformed(DriplineError):
    """Raise when a payload is not in the provider's documented shape (400 when not JSON)."""

    status = 422

    def __init__(self, path: str, message: str, *, status: int = 422) -> None:
        details = [{"path": path, "message": message}]
        super().__init__("invalid_payload", f"{path}: {message}", details, status=status)
        self.path = path
        self.reason = message


class NotConfigured(DriplineError):
    """Raise when a provider's key is missing or unusable: 503, so the ESP retries later."""

    status = 503

    def __init__(self, provider: str, why: str = "is not configured") -> None:
        super().__init__("webhook_not_configured", f"webhook for {provider} {why}")


@dataclass(frozen=True)
class EspEvent:
    """One provider event in our terms. ``type`` is None for kinds we do not track.

    ``recipients`` are the addresses the provider lists; the event concerns only the one our
    message went to (an SES open lists every ``destination``, a Resend bounce every ``to``).
    """

    id: str
    provider_event: str
    type: str | None
    recipients: tuple[str, ...] = ()
    occurred_at: datetime | None = None
    message_ref: str | None = None  # our message id, else the Message-ID header, if echoed
    properties: dict[str, Any] = field(default_factory=dict)
    # What the provider says about one recipient only (SES: each bounced address's reply).
    per_recipient: dict[str, dict[str, Any]] = field(default_factory=dict)
    # (subject, when the ESP took the message): for an ESP that echoes no header of ours.
    sent_as: tuple[str, datetime] | None = None


@dataclass(frozen=True)
class Rejected:
    """An item of a signed request that cannot be mapped: logged and counted, never stored."""

    path: str
    message: str

    @property
    def field(self) -> str:
        """The path without item numbers (``3.sg_event_id`` -> ``sg_event_id``): a metric label."""
        return ".".join(p for p in self.path.split(".") if not p.isdigit()) or "body"


Item = EspEvent | Rejected


def item(build: Callable[P, EspEvent], *args: P.args, **kwargs: P.kwargs) -> Item:
    """One item of a batch: the event, or why it cannot be mapped, so the others still count."""
    try:
        return build(*args, **kwargs)
    except Malformed as malformed:
        return Rejected(malformed.path, malformed.reason)


def header(headers: Headers, name: str) -> str:
    value = headers.get(name.lower())
    if not value:
        raise WebhookRejected(f"missing header {name}")
    return value


def check_timestamp(sent: str | float, now: datetime, tolerance: float) -> None:
    """Refuse replays of old requests: the signed timestamp must be within ``tolerance``."""
    try:
        at = datetime.fromtimestamp(float(sent), UTC)
    except (TypeError, ValueError, OverflowError):
        raise WebhookRejected(f"timestamp {sent!r} is not a Unix time") from None
    check_instant(at, now, tolerance)


def check_instant(at: datetime, now: datetime, tolerance: float) -> None:
    skew = abs((now - at).total_seconds())
    if skew > tolerance:
        raise WebhookRejected(f"timestamp is {skew:.0f} s from now; the limit is {tolerance:.0f} s")


def same(given: str | bytes, expected: str | bytes) -> bool:
    """Constant-time equality, so response timing leaks nothing about the expected value."""
    a = given.encode() if isinstance(given, str) else given
    b = expected.encode() if isinstance(expected, str) else expected
    return hmac.compare_digest(a, b)


def load_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except UnicodeDecodeError:
        raise Malformed("body", "not UTF-8 text", status=400) from None
    except json.JSONDecodeError as error:
        message = f"invalid JSON at character {error.pos}: {error.msg}"
        raise Malformed("body", message, status=400) from None


def need(obj: Mapping[str, Any], key: str, kind: type[T], where: str = "") -> T:
    """``obj[key]`` when it is a ``kind``; otherwise a 422 naming ``where + key``."""
    value = obj.get(key)
    if not isinstance(value, kind):
        got = "nothing" if value is None else type(value).__name__
        raise Malformed(f"{where}{key}", f"expected {_KINDS.get(kind, kind.__name__)}, got {got}")
    return value


def maybe(obj: Mapping[str, Any], key: str, kind: type[T]) -> T | None:
    value = obj.get(key)
    return value if isinstance(value, kind) else None


def as_object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Malformed(where or "body", f"expected an object, got {type(value).__name__}")
    return value


def instant(value: Any, where: str) -> datetime:
    """A provider time: Unix seconds or ISO 8601 with an offset."""
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return datetime.fromtimestamp(value, UTC)
        if isinstance(value, str):
            parsed = datetime.fromisoformat(value)
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    except (ValueError, OverflowError):
        pass
    raise Malformed(where, f"expected a Unix or ISO 8601 time, got {value!r}")


def optional_instant(obj: Mapping[str, Any], key: str, where: str = "") -> datetime | None:
    return None if obj.get(key) is None else instant(obj[key], f"{where}{key}")


def stable_id(*parts: object) -> str:
    """An event id derived from what identifies the event, for providers that send none."""
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()


_KINDS: dict[type[Any], str] = {
    str: "a string",
    dict: "an object",
    list: "a list",
    int: "a number",
    bool: "true or false",
}


def properties(provider_event: str, **known: Any) -> dict[str, Any]:
    """Our event properties: the provider's own event name plus whatever it told us."""
    return {"provider_event": provider_event, **{k: v for k, v in known.items() if v is not None}}


def outcome(table: Mapping[str, str | None], *keys: str) -> tuple[str | None, str | None]:
    """(our type, bounce type) for the first of ``keys`` in ``table`` (most specific first).

    Each provider's table maps its event names (``bounce/blocked``: event/detail) to our event
    type, with ``:hard`` or ``:soft`` for bounces; None means not ours. The README shows the
    same tables, and a test holds them equal.
    """
    for key in keys:
        if key in table:
            mapped = table[key]
            if mapped is None:
                return None, None
            kind, _, bounce = mapped.partition(":")
            return kind, bounce or None
    return None, None
