"""Assertions on how the email reads: reading ease and tone words."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator, Field

from evals.assertions.base import Args, Assertion, Subject, Verdict, Where
from evals.readability import reading_ease

# Pressure, guilt and hype: what content-ops teams strike from drafts first.
PUSHY = (
    "hurry",
    "last chance",
    "don't miss",
    "act fast",
    "only today",
    "final notice",
    "before it's too late",
    "you forgot",
    "you haven't even",
    "disappointed",
    "we're sad",
    "amazing",
    "incredible",
    "revolutionary",
    "game-changer",
    "game changer",
    "skyrocket",
    "supercharge",
)


class EaseArgs(Args):
    min: float = 60.0
    where: Where = "body"


def check_reading_ease(args: EaseArgs, s: Subject) -> Verdict:
    """The Flesch reading ease of the body (or `where`) is at least `min` (default 60: plain
    English). Long sentences and long words lower it."""
    score = reading_ease(s.text(args.where))
    if score is None:
        return Verdict("fail", f"{args.where} has no words to score")
    message = f"reading ease {score} (min {args.min:g})"
    return Verdict("pass" if score >= args.min else "fail", message)


def _listed(value: object) -> object:
    return (value,) if isinstance(value, str) else value


Words = Annotated[tuple[str, ...], BeforeValidator(_listed)]


class ToneArgs(Args):
    avoid: Words = PUSHY
    prefer: Annotated[Words, Field(description="at least one of these must appear")] = ()
    where: Where = "text"


def _uses(text: str, phrase: str) -> bool:
    phrase = phrase.lower().replace("\u2019", "'")
    return re.search(rf"(?<!\w){re.escape(phrase)}(?!\w)", text) is not None


def check_tone(args: ToneArgs, s: Subject) -> Verdict:
    """No word or phrase from `avoid` (by default: pushy, guilt-tripping and hype words such as
    "hurry", "last chance", "you forgot", "amazing") and, when `prefer` is given, at least one
    of those. Whole words, case-insensitive."""
    text = s.text(args.where).lower().replace("\u2019", "'")
    problems = [f"uses {w!r}" for w in args.avoid if _uses(text, w)]
    if args.prefer and not any(_uses(text, w) for w in args.prefer):
        problems.append(f"uses none of {list(args.prefer)}")
    return Verdict.of(problems)


READING_EASE = Assertion("reading_ease", check_reading_ease, EaseArgs, shorthand="min")
TONE = Assertion("tone", check_tone, ToneArgs, shorthand="avoid")
