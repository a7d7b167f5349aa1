"""mentions_fact: the email uses what we know about this recipient."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, Field

from evals.assertions.base import Args, Assertion, Subject, Verdict, Where


def _listed(value: object) -> object:
    return (value,) if isinstance(value, str) else value


class FactArgs(Args):
    # Dotted paths into the contact's data; with several, any one of them will do.
    fact: Annotated[tuple[str, ...], BeforeValidator(_listed), Field(min_length=1)]
    where: Where = "text"


def fact_values(contact: dict[str, Any], path: str) -> list[str]:
    """The text forms of the field at ``path`` ("company", "usage.top_report"); a list
    field gives one per item. Empty when the contact has no such field."""
    value: Any = contact
    for key in path.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    items = value if isinstance(value, list) else [value]
    return [" ".join(str(v).split()) for v in items if v not in (None, "") and str(v).strip()]


def check_mentions_fact(args: FactArgs, s: Subject) -> Verdict:
    """The email mentions the contact's `fact` (a dotted path into the contact's data, e.g.
    company or first_name; several paths: any one of them). A list field is mentioned when
    any item is. Case-insensitive; `where` narrows it to a part of the email."""
    text = " ".join(s.text(args.where).split()).lower()
    for path in args.fact:
        hit = next((v for v in fact_values(s.request.contact, path) if v.lower() in text), None)
        if hit is not None:
            return Verdict("pass", f"mentions {path} ({hit!r})")
    return Verdict("fail", f"mentions none of the contact's {', '.join(args.fact)}")


def fact_exists(args: FactArgs, contact: dict[str, Any]) -> str | None:
    missing = [p for p in args.fact if not fact_values(contact, p)]
    return f"the contact has no {', '.join(missing)}" if missing else None


MENTIONS_FACT = Assertion(
    "mentions_fact", check_mentions_fact, FactArgs, shorthand="fact", against_contact=fact_exists
)
