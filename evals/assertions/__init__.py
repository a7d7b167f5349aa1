"""Every assertion a suite may name, by name. Each one's docstring is its documentation
(``dripline eval assertions`` prints them)."""

from __future__ import annotations

from evals.assertions.base import Assertion
from evals.assertions.facts import MENTIONS_FACT
from evals.assertions.judged import JUDGE
from evals.assertions.rules import GUARDRAILS, NO_INVENTED_FACTS, NO_NEW_URLS
from evals.assertions.style import READING_EASE, TONE
from evals.assertions.text import CONTAINS, LENGTH, NOT_CONTAINS, REGEX

ASSERTIONS: dict[str, Assertion] = {
    a.name: a
    for a in (
        GUARDRAILS,
        CONTAINS,
        NOT_CONTAINS,
        REGEX,
        LENGTH,
        MENTIONS_FACT,
        NO_INVENTED_FACTS,
        NO_NEW_URLS,
        READING_EASE,
        TONE,
        JUDGE,
    )
}
