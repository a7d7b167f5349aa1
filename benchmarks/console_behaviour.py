"""How recipients react to an email: what the relay said, then opens, link scanners' clicks,
human clicks, replies, conversions, unsubscribes and spam complaints, each with its time.

The odds scale with the contact's ``interest`` and, for clicks, with a base rate fixed per step
and variant (drawn from its name, so variants differ and the bandit has something to learn).
Each reaction arrives the way the engine would record it: opens from the pixel (unverified),
clicks through the redirect (a scanner's within seconds, flagged as a bot), replies and
conversions posted by a CRM to ``/v1/events`` (a conversion names the contact only),
unsubscribes through the one-click link and complaints from a SendGrid webhook.

A calm reaction (``calm=True``) leaves out everything that would end the enrollment.
"""

from __future__ import annotations

import hashlib
import random
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

BOT_CLICK = "clicked within seconds of delivery"
QUEUED = "250 2.0.0 Ok: queued as {}"
BOUNCED = "550 5.1.1 <{}>: Recipient address rejected: User unknown in virtual mailbox table"
DEFERRED = "421 4.7.0 Try again later, closing connection."


@dataclass(frozen=True)
class Happening:
    """An event on its way: stored when its time comes, if that is before now. (The walk also
    schedules a cancellation through the API this way, type ``cancel``, which stores nothing.)"""

    at: datetime
    type: str
    source: str
    message: str | None  # the message's pk; None for a conversion posted by email
    properties: dict[str, Any] = field(default_factory=dict)
    is_bot: bool = False
    event_id: str | None = None


@dataclass(frozen=True)
class Mail:
    """A sent email as its recipient sees it."""

    pk: str
    sent_at: datetime
    urls: tuple[str, ...]  # its tracked links (the layout links the call to action)


def click_rate(sequence: str, step: str, variant: str | None) -> float:
    digest = hashlib.sha256(f"{sequence}/{step}/{variant}".encode()).digest()
    return 0.06 + 0.16 * digest[0] / 255


def delivery(rng: random.Random, calm: bool) -> str:
    """sent, bounced (a hard 5xx at RCPT) or failed (4xx until the attempts ran out)."""
    roll = 1.0 if calm else rng.random()
    return "bounced" if roll < 0.015 else "failed" if roll < 0.019 else "sent"


def reactions(
    rng: random.Random, mail: Mail, interest: float, rate: float, *, calm: bool
) -> list[Happening]:
    clicks = _clicks(rng, mail, min(rate * interest, 0.9))
    found = [*_opens(rng, mail, interest), *_scanner(rng, mail), *clicks]
    if not calm:
        found += _reply(rng, mail, interest, bool(clicks))
        found += _conversion(rng, mail, interest, clicks)
        found += _unsubscribe(rng, mail) + _complaint(rng, mail)
    return found


def _after(
    rng: random.Random, start: datetime, mean_hours: float, floor_minutes: float
) -> datetime:
    hours = rng.expovariate(1.0 / mean_hours)
    return start + timedelta(hours=hours, minutes=floor_minutes)


def _opens(rng: random.Random, mail: Mail, interest: float) -> list[Happening]:
    found = []
    if rng.random() < 0.18:  # a privacy proxy fetches the pixel as the message arrives
        found.append(_pixel(mail.sent_at + timedelta(seconds=rng.uniform(20, 400)), mail))
    if rng.random() < min(0.45 * interest, 0.85):
        at = _after(rng, mail.sent_at, 4.0, 2.0)
        found.append(_pixel(at, mail))
        while rng.random() < 0.35:
            at = _after(rng, at, 20.0, 5.0)
            found.append(_pixel(at, mail))
    return found


def _pixel(at: datetime, mail: Mail) -> Happening:
    return Happening(at, "opened", "pixel", mail.pk)


def _scanner(rng: random.Random, mail: Mail) -> list[Happening]:
    """A mail gateway opens every link the moment the message lands."""
    if rng.random() >= 0.07:
        return []
    at = mail.sent_at + timedelta(seconds=rng.uniform(0.3, 1.5))
    return [
        Happening(at, "clicked", "click", mail.pk, {"url": url, "bot": BOT_CLICK}, is_bot=True)
        for url in mail.urls
    ]


def _clicks(rng: random.Random, mail: Mail, odds: float) -> list[Happening]:
    if not mail.urls or rng.random() >= odds:
        return []
    first = mail.urls[0] if rng.random() < 0.75 else rng.choice(mail.urls)
    at = _after(rng, mail.sent_at, 9.0, 3.0)
    found = [Happening(at, "clicked", "click", mail.pk, {"url": first})]
    if len(mail.urls) > 1 and rng.random() < 0.2:
        other = rng.choice([u for u in mail.urls if u != first])
        found.append(
            Happening(_after(rng, at, 0.2, 1.0), "clicked", "click", mail.pk, {"url": other})
        )
    return found


def _reply(rng: random.Random, mail: Mail, interest: float, clicked: bool) -> list[Happening]:
    if rng.random() >= (0.05 if clicked else 0.015) * interest:
        return []
    at = _after(rng, mail.sent_at, 20.0, 10.0)
    return [Happening(at, "replied", "api", mail.pk, event_id=_api_id())]


def _conversion(
    rng: random.Random, mail: Mail, interest: float, clicks: list[Happening]
) -> list[Happening]:
    if rng.random() >= (0.12 if clicks else 0.008) * interest:
        return []
    at = _after(rng, clicks[0].at if clicks else mail.sent_at, 30.0, 15.0)
    plan = {
        "plan": rng.choice(("team", "business", "enterprise")),
        "seats": rng.choice((5, 10, 25)),
    }
    return [Happening(at, "converted", "api", None, plan, event_id=_api_id())]


def _unsubscribe(rng: random.Random, mail: Mail) -> list[Happening]:
    if rng.random() >= 0.006:
        return []
    at = _after(rng, mail.sent_at, 12.0, 1.0)
    return [Happening(at, "unsubscribed", "unsubscribe", mail.pk, event_id=mail.pk)]


def _complaint(rng: random.Random, mail: Mail) -> list[Happening]:
    if rng.random() >= 0.0012:
        return []
    at = _after(rng, mail.sent_at, 24.0, 30.0)
    reported = {"provider_event": "spamreport"}
    sendgrid_id = secrets.token_hex(11)
    return [Happening(at, "complained", "sendgrid", mail.pk, reported, event_id=sendgrid_id)]


def _api_id() -> str:
    return f"evt_{secrets.token_hex(8)}"
