"""The population of the console's data set: who the contacts are, which sequence each enrolls
in and when (the plans the walks follow), and how they react to an email.

Deterministic for a seed. Every address is unique and at an ``.example`` domain (which never
receives mail); a few contacts have no first name or no time zone, as real imports do, and some
names carry accents, so pages get to escape and render them.

Enrollments start over the last ``DAYS`` days, one contact each. The reviewed sequence gets the
requested number of drafts pending review (placed at times spread over the last
``REVIEW_WINDOW``, each at one of its email steps, most at the first) plus a tenth of the
enrollments that went through it earlier; the rest go to the example sequences, 60/40. The
newest pending draft of each email step is left to the engine itself to draft (a template).

Reactions: the odds scale with the contact's ``interest`` and, for clicks, with a base rate fixed
per step and variant (drawn from its name, so variants differ and the bandit has something to
learn). Each arrives the way the engine would record it: opens from the pixel (unverified),
clicks through the redirect (a scanner's within seconds, flagged as a bot), replies and
conversions posted by a CRM to ``/v1/events`` (a conversion names the contact only),
unsubscribes through the one-click link and complaints from a SendGrid webhook. A calm reaction
(``calm=True``) leaves out everything that would end the enrollment.
"""

from __future__ import annotations

import hashlib
import random
import secrets
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sequences.definitions.document import EmailStep, SequenceDefinition, WaitStep

FIRST_NAMES = (
    *("Ada", "Priya", "Mateo", "Chloé", "Kwame", "Yuki", "Lars", "Amara", "Diego", "Ingrid"),
    *("Tomasz", "Fatima", "Noah", "Zoë", "Ravi", "Elena", "Jonas", "Mei", "Olusegun", "Hannah"),
    *("Santiago", "Aisha", "Felix", "Sofía", "Kenji", "Maren", "Omar", "Leila", "Björn", "Grace"),
    *("Luca", "Nadia", "Theo", "Ana", "Samuel", "Ines", "Arjun", "Freya", "Malik", "Clara"),
)
LAST_NAMES = (
    *("Lovelace", "Sharma", "García", "Dubois", "Mensah", "Tanaka", "Eriksen", "Okafor"),
    *("Rossi", "Nowak", "Haddad", "Kim", "Patel", "Novak", "Schmidt", "Chen", "Adeyemi"),
    *("Müller", "Silva", "Khan", "Weber", "Larsen", "Moreau", "Ito", "Costa", "Nguyen"),
)
COMPANIES = (
    *("Northwind", "Globex", "Initech", "Umbrella Analytics", "Hooli", "Vandelay Imports"),
    *("Stark Logistics", "Wayne Biotech", "Cyberdyne Retail", "Soylent Foods", "Tyrell Labs"),
    *("Aperture Health", "Oscorp Energy", "Wonka Confections", "Gringotts Finance", "Acme Fleet"),
    *("Pied Piper", "Dunder Mifflin", "Bluth Properties", "Monarch Travel", "Massive Dynamic"),
)
ROLES = (
    *("Head of Data", "Analytics Engineer", "VP Finance", "Founder", "Operations Manager"),
    *("Data Analyst", "CTO", "Product Manager", "Marketing Lead", "RevOps Manager"),
)
PLANS = ("trial", "team", "business", "enterprise")
PLAN_WEIGHTS = (55, 25, 12, 8)
ZONES = (
    *("Europe/London", "Europe/Berlin", "Europe/Paris", "America/New_York", "America/Chicago"),
    *("America/Los_Angeles", "America/Sao_Paulo", "Asia/Singapore", "Asia/Kolkata"),
    *("Australia/Sydney", "Africa/Lagos"),
)
DAYS = 60
REVIEW_WINDOW = timedelta(days=4)
CANCELLED_SHARE = 0.02
BOT_CLICK = "clicked within seconds of delivery"


@dataclass(frozen=True)
class Person:
    """A contact to be, and how readily they engage (it scales every reaction's odds)."""

    email: str
    timezone: str | None
    attributes: dict[str, Any]
    interest: float


def people(count: int, rng: random.Random) -> list[Person]:
    return [person(number, rng) for number in range(1, count + 1)]


def person(number: int, rng: random.Random) -> Person:
    first, last, company = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES), rng.choice(COMPANIES)
    attributes: dict[str, Any] = {
        "last_name": last,
        "company": company,
        "role": rng.choice(ROLES),
        "plan": rng.choices(PLANS, PLAN_WEIGHTS)[0],
        "seats": rng.choice((3, 5, 8, 12, 20, 35, 60, 150)),
    }
    if rng.random() > 0.04:
        attributes = {"first_name": first, **attributes}
    zone = rng.choice(ZONES) if rng.random() > 0.08 else None
    interest = min(max(rng.lognormvariate(0.0, 0.5), 0.2), 3.0)
    return Person(address(first, last, company, number), zone, attributes, interest)


def address(first: str, last: str, company: str, number: int) -> str:
    local = f"{_ascii(first)}.{_ascii(last)}{number}"
    return f"{local}@{_ascii(company)}.example"


def _ascii(text: str) -> str:
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return plain.lower().replace(" ", "-")


# ------------------------------------------------------------------------------- the plans


@dataclass(frozen=True)
class Plan:
    """Who enrolls where and when. With ``hold_step`` the walk goes calmly to that email
    step's review, reached at ``hold_time``, and leaves its draft pending (a ``template`` leaves
    its outbox row due instead, for the engine itself to draft)."""

    enrollment_id: str
    contact_id: int
    person: Person
    sequence: str
    created_at: datetime
    seed: int
    hold_step: str | None = None
    hold_time: datetime | None = None
    template: bool = False
    cancel_after: timedelta | None = None
    source: str = "api"


def plans(
    reviewed: SequenceDefinition,
    examples: tuple[SequenceDefinition, SequenceDefinition],
    now: datetime,
    counts: tuple[int, int],
    rng: random.Random,
) -> list[Plan]:
    """``counts``: (enrollments, drafts pending review). Sorted by start."""
    enrollments, drafts = counts
    if not 0 < drafts <= enrollments:
        raise ValueError(f"drafts must be between 1 and enrollments ({enrollments}): {drafts}")
    numbered = iter(enumerate(people(enrollments, rng), 1))
    held = [
        _held(reviewed, next(numbered), hold, rng) for hold in holds(reviewed, drafts, now, rng)
    ]
    others = [
        _free(defn, next(numbered), now, rng)
        for defn in mix(reviewed, examples, enrollments - drafts, rng)
    ]
    return sorted(held + others, key=lambda plan: plan.created_at)


def holds(
    defn: SequenceDefinition, drafts: int, now: datetime, rng: random.Random
) -> list[tuple[str, datetime, bool]]:
    """(step, when the draft was made, left to the engine) for each pending draft."""
    steps = [s.id for s in defn.steps if isinstance(s, EmailStep)]
    made = [(step, now - timedelta(seconds=60 + 7 * n), True) for n, step in enumerate(steps)]
    weights = [0.5**n for n in range(len(steps))]
    for _ in range(drafts - len(made)):
        step = rng.choices(steps, weights)[0]
        when = now - timedelta(seconds=rng.uniform(180, REVIEW_WINDOW.total_seconds()))
        made.append((step, when, False))
    return made[:drafts]


def mix(
    reviewed: SequenceDefinition,
    examples: tuple[SequenceDefinition, SequenceDefinition],
    count: int,
    rng: random.Random,
) -> list[SequenceDefinition]:
    """The reviewed sequence's earlier enrollments (a tenth); the examples share the rest."""
    earlier = count // 10
    first = round((count - earlier) * 0.6)
    chosen = [reviewed] * earlier + [examples[0]] * first
    chosen += [examples[1]] * (count - earlier - first)
    rng.shuffle(chosen)
    return chosen


def _held(
    defn: SequenceDefinition,
    numbered: tuple[int, Person],
    hold: tuple[str, datetime, bool],
    rng: random.Random,
) -> Plan:
    number, person = numbered
    step, when, template = hold
    return Plan(
        enrollment_id=enrollment_id(rng),
        contact_id=number,
        person=person,
        sequence=defn.key,
        created_at=when - time_to(defn, step),
        seed=rng.getrandbits(32),
        hold_step=step,
        hold_time=when,
        template=template,
    )


def _free(
    defn: SequenceDefinition, numbered: tuple[int, Person], now: datetime, rng: random.Random
) -> Plan:
    number, person = numbered
    cancel = rng.random() < CANCELLED_SHARE
    by_event = defn.entry is not None and defn.entry.events and rng.random() < 0.5
    return Plan(
        enrollment_id=enrollment_id(rng),
        contact_id=number,
        person=person,
        sequence=defn.key,
        created_at=now - timedelta(seconds=rng.uniform(600, DAYS * 86400)),
        seed=rng.getrandbits(32),
        cancel_after=timedelta(hours=rng.uniform(4, 300)) if cancel else None,
        source=f"event:{defn.entry.events[0]}" if by_event and defn.entry else "api",
    )


def enrollment_id(rng: random.Random) -> str:
    """``models.new_id``'s shape, from the seed: the same seed gives the same plans."""
    return f"enr_{rng.randbytes(10).hex()}"


def time_to(defn: SequenceDefinition, step_id: str) -> timedelta:
    """A first guess at how long an enrollment takes to reach ``step_id`` (the walk corrects
    it): the waits before it, and a couple of hours per email for its review."""
    total = timedelta()
    for step in defn.steps[: defn.index(step_id)]:
        if isinstance(step, WaitStep):
            total += step.wait.duration
        elif isinstance(step, EmailStep):
            total += timedelta(hours=2)
    return total


# --------------------------------------------------------------------------- the reactions


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
