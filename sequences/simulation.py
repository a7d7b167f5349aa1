"""The engagement model behind ``dripline simulate``: synthetic contacts whose true response
rates the simulator knows, so what the bandit learns can be checked against the truth.

Pure and seeded: the same seed gives the same contacts, the same true rates and the same
reaction to the same email.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sequences.definitions.document import EmailStep, SequenceDefinition

FIRST_NAMES = ["Ada", "Grace", "Linus", "Yuki", "Amara", "Mateo", "Priya", "Noah", "Zoë", "Omar"]


class Rates(BaseModel):
    """True probabilities that one email draws a human click, a reply, a conversion."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    click: float = Field(ge=0, le=1)
    reply: float = Field(0.0, ge=0, le=1)
    convert: float = Field(0.0, ge=0, le=1)


class Truth(BaseModel):
    """Rates per ``step`` or ``step/variant`` (the more specific wins), and how much more a
    contact responds to an email about the topic they care about."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    rates: dict[str, Rates]
    interest_boost: float = Field(2.5, ge=1, le=20)

    def for_email(self, step: str, variant: str | None) -> Rates:
        found = self.rates.get(f"{step}/{variant}") if variant else None
        return found or self.rates.get(step) or Rates(click=0.0)


class TruthError(ValueError):
    """Raised when a truth file cannot be read; the message names the file and the field."""


def load_truth(path: Path, defn: SequenceDefinition) -> Truth:
    try:
        truth = Truth.model_validate(yaml.safe_load(path.read_text()))
    except (OSError, yaml.YAMLError) as error:
        raise TruthError(f"{path}: {error}") from error
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise TruthError(f"{path}: {where}: {first['msg']}") from error
    known = set(email_arms(defn))
    unknown = sorted(k for k in truth.rates if k not in known)
    if unknown:
        raise TruthError(f"{path}: rates: no email step or variant named {unknown[0]!r}")
    return truth


def email_arms(defn: SequenceDefinition) -> list[str]:
    """Every ``step`` and ``step/variant`` an email of this sequence can be sent as."""
    arms: list[str] = []
    for step in defn.steps:
        if isinstance(step, EmailStep):
            arms.append(step.id)
            arms += [f"{step.id}/{v.id}" for v in step.email.variants]
    return arms


def seeded_truth(defn: SequenceDefinition, seed: int) -> Truth:
    """Made-up rates when no truth file is given: each variant a different click rate."""
    rng = random.Random(seed)
    rates: dict[str, Rates] = {}
    for arm in email_arms(defn):
        click = round(rng.uniform(0.04, 0.30), 3)
        rates[arm] = Rates(click=click, reply=round(click * 0.1, 4), convert=round(click * 0.2, 4))
    return Truth(rates=rates)


@dataclass(frozen=True)
class Person:
    email: str
    interest: str | None
    attributes: dict[str, Any]


def people(count: int, topics: list[str], seed: int) -> list[Person]:
    """Synthetic contacts, each caring about one of the sequence's topics (or none)."""
    rng = random.Random(seed)
    crowd: list[Person] = []
    for number in range(count):
        interest = rng.choice(topics) if topics else None
        first = FIRST_NAMES[number % len(FIRST_NAMES)]
        attributes = {"first_name": first, "company": f"Company {number}", "interest": interest}
        crowd.append(Person(f"sim{number}@example.com", interest, attributes))
    return crowd


def sequence_topics(defn: SequenceDefinition) -> list[str]:
    topics: dict[str, None] = {}
    for step in defn.steps:
        if isinstance(step, EmailStep):
            topics.update(dict.fromkeys(step.email.topics))
            for variant in step.email.variants:
                topics.update(dict.fromkeys(variant.topics))
    return list(topics)


@dataclass(frozen=True)
class Reaction:
    click: bool
    reply: bool
    convert: bool


def react(
    truth: Truth, person: Person, step: str, variant: str | None, topics: tuple[str, ...], seed: int
) -> Reaction:
    """How this person responds to this email: the same inputs always give the same answer."""
    digest = hashlib.sha256(f"{seed}:{person.email}:{step}:{variant}".encode()).digest()
    rng = random.Random(int.from_bytes(digest[:8], "big"))
    rates = truth.for_email(step, variant)
    boost = truth.interest_boost if person.interest and person.interest in topics else 1.0
    convert = rng.random() < min(rates.convert * boost, 1.0)
    reply = rng.random() < min(rates.reply * boost, 1.0)
    click = convert or rng.random() < min(rates.click * boost, 1.0)
    return Reaction(click=click, reply=reply, convert=convert)
