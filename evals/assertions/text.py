"""Assertions on the words themselves: contains, not_contains, regex and length."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, Field, field_validator, model_validator

from evals.assertions.base import Args, Assertion, Subject, Verdict, Where


def _listed(value: object) -> object:
    return [value] if isinstance(value, str) else value


Texts = Annotated[tuple[Annotated[str, Field(min_length=1)], ...], BeforeValidator(_listed)]


class TextArgs(Args):
    text: Annotated[Texts, Field(min_length=1)]
    where: Where = "text"
    case_sensitive: bool = False


class ContainsArgs(TextArgs):
    mode: Literal["all", "any"] = "all"  # every text, or at least one of them


# A word ends where no letter follows, nor an apostrophe and letters other than a possessive
# 's: "won" is not in "won't", "Dana" is in "Dana's".
_WORD_END = r"(?!\w|['\u2019](?!s\b)\w)"


def _found(args: TextArgs, s: Subject) -> list[tuple[str, bool]]:
    """Each text and whether it occurs as whole words: "won" is not found in "won't"."""
    haystack = " ".join(s.text(args.where).split())
    flags = 0 if args.case_sensitive else re.IGNORECASE
    found = []
    for text in (" ".join(t.split()) for t in args.text):
        start = r"(?<!\w)" if text[0].isalnum() else ""
        end = _WORD_END if text[-1].isalnum() else ""
        found.append((text, re.search(start + re.escape(text) + end, haystack, flags) is not None))
    return found


def check_contains(args: ContainsArgs, s: Subject) -> Verdict:
    """The email (`where`: subject, preheader, body, cta or text, the default: all of them)
    contains every one of `text` (with `mode: any`, at least one), as whole words ("won" is
    not in "won't"); case-insensitive unless `case_sensitive`; runs of whitespace count as one
    space."""
    found = _found(args, s)
    missing = [t for t, hit in found if not hit]
    if args.mode == "any" and len(missing) < len(found):
        return Verdict("pass")
    return Verdict.of([f"{args.where} lacks {t!r}" for t in missing])


def check_not_contains(args: TextArgs, s: Subject) -> Verdict:
    """None of `text` appears in the email (`where`, as for contains)."""
    return Verdict.of([f"{args.where} contains {t!r}" for t, hit in _found(args, s) if hit])


class RegexArgs(Args):
    pattern: str
    where: Where = "text"
    ignore_case: bool = True
    absent: bool = False  # the pattern must not match anywhere instead

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as error:
            raise ValueError(f"not a regular expression: {error}") from None
        return value


def check_regex(args: RegexArgs, s: Subject) -> Verdict:
    """The regular expression `pattern` matches somewhere in the email (`where`); with
    `absent: true` it must match nowhere. Case-insensitive unless `ignore_case: false`."""
    flags = re.IGNORECASE if args.ignore_case else 0
    match = re.search(args.pattern, s.text(args.where), flags)
    if args.absent:
        return Verdict.of([f"{args.where} matches: {match.group(0)!r}"] if match else [])
    return Verdict.of([] if match else [f"{args.where} has no match for /{args.pattern}/"])


def _ordered(value: tuple[int, int]) -> tuple[int, int]:
    if not 0 <= value[0] <= value[1]:
        raise ValueError(f"bounds are [min, max] with 0 <= min <= max, got {list(value)}")
    return value


Bounds = Annotated[tuple[int, int], AfterValidator(_ordered)]


class LengthArgs(Args):
    subject_chars: Bounds | None = None
    preheader_chars: Bounds | None = None
    body_words: Bounds | None = None
    paragraphs: Bounds | None = None
    cta_chars: Bounds | None = None

    @model_validator(mode="after")
    def _some(self) -> LengthArgs:
        if not self.model_dump(exclude_none=True):
            raise ValueError(f"give at least one bound: {', '.join(LengthArgs.model_fields)}")
        return self


def check_length(args: LengthArgs, s: Subject) -> Verdict:
    """Each bound given ([min, max], inclusive) holds: subject_chars, preheader_chars,
    body_words, paragraphs (the greeting line counts as one) and cta_chars."""
    draft = s.draft
    measured = {
        "subject_chars": len(draft.subject),
        "preheader_chars": len(draft.preheader),
        "body_words": len(draft.body.split()),
        "paragraphs": len(draft.paragraphs),
        "cta_chars": len(draft.cta_text or ""),
    }
    problems = []
    for name, bounds in args.model_dump(exclude_none=True).items():
        low, high = bounds
        if not low <= measured[name] <= high:
            problems.append(f"{name} is {measured[name]} (allowed {low}-{high})")
    return Verdict.of(problems)


CONTAINS = Assertion("contains", check_contains, ContainsArgs, shorthand="text")
NOT_CONTAINS = Assertion("not_contains", check_not_contains, TextArgs, shorthand="text")
REGEX = Assertion("regex", check_regex, RegexArgs, shorthand="pattern")
LENGTH = Assertion("length", check_length, LengthArgs)
