"""The people in the console's data set: names, companies, roles, plans and time zones.

Deterministic for a seed. Every address is unique and at an ``.example`` domain (which never
receives mail); a few contacts have no first name or no time zone, as real imports do, and some
names carry accents, so pages get to escape and render them.
"""

from __future__ import annotations

import random
import unicodedata
from dataclasses import dataclass
from typing import Any

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


@dataclass(frozen=True)
class Person:
    """A contact to be, and how readily they engage (it scales every reaction's odds)."""

    email: str
    timezone: str | None
    attributes: dict[str, Any]
    interest: float

    @property
    def first_name(self) -> str | None:
        name = self.attributes.get("first_name")
        return name if isinstance(name, str) else None


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
