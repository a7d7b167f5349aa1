"""The check node's rules. Each is named, documented and returns a Finding.

``check_copy`` runs every rule that reads the copy itself; ``check_preview`` the one that reads
the rendered email. The same functions check a model's draft and a reviewer's edit.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

from agents.copy import CopyRequest, Draft, Finding, Preview
from agents.quarantine import CONTROLS, INSTRUCTION, PLACEHOLDER_VALUES, strings

SUBJECT_CHARS = (3, 78)
PREHEADER_MAX = 150
BODY_WORDS = (15, 300)
MAX_PARAGRAPHS = 6
CTA_MAX = 40

Rule = Callable[[Draft, CopyRequest], Finding]

_PLACEHOLDER = re.compile(
    r"\{\{[^{}\n]*\}\}|\{%[^{}\n]*%\}|\{#[^{}\n]*#\}|"  # a whole Jinja / Handlebars tag
    r"\{\{|\}\}|\{%|%\}|\{#|"  # or a stray half of one
    r"\{[a-z_][a-z0-9_.]*\}|\$\{[^}]*\}|"  # {first_name}, ${name}
    r"\*\|[A-Z_]+\|\*|%[A-Z_]{3,}%|"  # Mailchimp *|FNAME|*, %FIRSTNAME%
    r"\[(?:insert|your|first|last|company|name|link|date)[^\]]*\]|"  # [First Name], [insert link]
    r"<[a-zA-Z/!][^>]*>|"  # HTML or XML markup in plain text
    r"\blorem ipsum\b|(?-i:\bTODO\b|\bXXX\b)",  # "your todo list" is copy, "TODO" a marker
    re.IGNORECASE,
)
_URL = re.compile(
    r"(?:https?://|www\.)[^\s<>()\"']+|"
    r"\b[a-z0-9-]+(?:\.[a-z0-9-]+)*\.(?:com|io|net|org|co|ai|app|dev|test|xyz|info|biz|me|us|"
    r"uk|de|fr|ly|gl|gg|sh|link|site|online|store|shop)\b(?:/[^\s<>()\"']*)?",
    re.IGNORECASE,
)
_NUMBER = re.compile(r"[$€£¥]?\s?\d[\d,.]*\s?(?:%|k\b|m\b)?", re.IGNORECASE)
_MONTHS = [
    *("january", "february", "march", "april", "may", "june", "july", "august"),
    *("september", "october", "november", "december", "monday", "tuesday", "wednesday"),
    *("thursday", "friday", "saturday", "sunday", "tomorrow", "tonight"),
]
_DATE_WORD = re.compile(r"\b(" + "|".join(_MONTHS) + r")\b", re.IGNORECASE)
# "you may", "march on", "august company": only a capitalised one is the month.
_NOT_DATES_IN_LOWER_CASE = frozenset({"may", "march", "august"})
_CAPITALISED = re.compile(r"(?<![\w'\u2019])([A-Z][A-Za-z'\u2019&-]*[A-Za-z]|[A-Z]{2,})\b")
_SENTENCE_START = re.compile(r"(^|[.!?:;\n\u2014\u2013-]\s*|[\"\u201c(]\s*)$")
_COMMON_CAPS = frozenset(
    "I I'm I've I'd I'll OK PS FAQ FAQs PDF CSV API APIs URL UI UX AI CRM SaaS ROI B2B "
    "CEO CTO Q&A HTML Mr Mrs Ms Dr".lower().split()
)
_NUMBER_WORDS = {
    w: str(n)
    for n, w in enumerate(
        ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
    )
}
_SPAM = (
    "act now",
    "100% free",
    "risk-free",
    "risk free",
    "click here",
    "limited time",
    "guaranteed",
    "no obligation",
    "winner",
    "cash bonus",
    "double your",
    "earn money",
    "free gift",
    "urgent",
    "once in a lifetime",
    "buy now",
    "order now",
    "this isn't spam",
    "not spam",
    "$$$",
    "!!!",
)
# A phrase that starts with a letter starts a word: "impact now" is not "act now".
_SPAM_RE = {
    p: re.compile((r"(?<![a-z0-9])" if p[0].isalnum() else "") + re.escape(p)) for p in _SPAM
}
# Offers and prices in words: a draft may make one only when the brief or the fallback does.
_OFFERS = {
    name: re.compile(pattern, re.IGNORECASE)
    for name, pattern in {
        "discount": r"\bdiscount(s|ed)?\b",
        "coupon or promo code": r"\b(coupons?|promo(tion(al)?)? codes?|vouchers?)\b",
        "% off": r"(\d\s*%|\bper\s?cent|\bpercent)\s+off\b|\bhalf[- ]price\b",
        "free": r"\bfor free\b|\bfree (of charge|months?|weeks?|years?|trial|upgrade|seats?|"
        r"plan|access|credits?|gift|shipping)\b|\bcomplimentary\b|\bon the house\b",
        "trial extension": r"\b(trial|plan) extension\b|"
        r"\bextend(ed|ing)? (your|the) (trial|plan)\b",
        "rebate or cashback": r"\b(rebates?|cash ?back|refunds? of)\b",
    }.items()
}
# Every match of an _OFFERS pattern contains one of these: a draft without any makes no offer
# (six case-insensitive scans starting at a word boundary cost ~120 us, these ~3 us).
_OFFER_WORDS = (
    "discount", "coupon", "promo", "voucher", "off", "price", "free", "complimentary",
    "on the house", "extend", "extension", "rebate", "cash", "refund",
)  # fmt: skip
_NEGATION = re.compile(r"\b(no|not|never|without|avoid|don't|do not|nor)\b", re.IGNORECASE)
_GREETING = re.compile(
    r"^\s*(hi|hello|hey|dear|greetings|good (morning|afternoon|evening))\b(?P<gap>[ \t]*)"
    r"(?P<name>[^,!.\n]*)[,!.:]?",
    re.IGNORECASE,
)
_EMPTY_NAMES = PLACEHOLDER_VALUES | {""}


def _finding(rule: str, problems: list[str]) -> Finding:
    return Finding(rule=rule, ok=not problems, message="; ".join(problems[:5]))


def schema_valid(draft: Draft, request: CopyRequest) -> Finding:
    """The draft has a subject and a body; a step with a call to action has a button label.
    (A model's malformed JSON fails this rule before a Draft exists: see agents.schema.)"""
    problems = []
    if not draft.subject.strip():
        problems.append("the subject is empty")
    if not any(p.strip() for p in draft.paragraphs):
        problems.append("the body is empty")
    if request.cta and not (draft.cta_text or "").strip():
        problems.append("the step has a call to action but the draft names no button")
    return _finding("schema_valid", problems)


def length_bounds(draft: Draft, request: CopyRequest) -> Finding:
    """Subject 3-78 characters, preheader up to 150, body 15-300 words in at most 6
    paragraphs, button label up to 40 characters."""
    problems = []
    if not SUBJECT_CHARS[0] <= len(draft.subject) <= SUBJECT_CHARS[1]:
        problems.append(f"subject is {len(draft.subject)} characters (allowed {SUBJECT_CHARS})")
    if len(draft.preheader) > PREHEADER_MAX:
        problems.append(f"preheader is {len(draft.preheader)} characters (max {PREHEADER_MAX})")
    words = len(draft.body.split())
    if not BODY_WORDS[0] <= words <= BODY_WORDS[1]:
        problems.append(f"body is {words} words (allowed {BODY_WORDS})")
    if len(draft.paragraphs) > MAX_PARAGRAPHS:
        problems.append(f"{len(draft.paragraphs)} paragraphs (max {MAX_PARAGRAPHS})")
    if draft.cta_text and len(draft.cta_text) > CTA_MAX:
        problems.append(f"button label is {len(draft.cta_text)} characters (max {CTA_MAX})")
    return _finding("length_bounds", problems)


def no_placeholders(draft: Draft, request: CopyRequest) -> Finding:
    """No unresolved placeholder ({{ name }}, [First Name], *|FNAME|*), template syntax,
    markup or control character (NUL, ESC, a bidi override) in the copy: it is plain text,
    filled in for one recipient."""
    found = sorted({m.group(0) for m in _PLACEHOLDER.finditer(draft.text())})
    problems = [f"unresolved {f!r}" for f in found]
    controls = sorted({f"U+{ord(c):04X}" for c in CONTROLS.findall(draft.text())})
    problems += [f"control character {c}" for c in controls]
    return _finding("no_placeholders", problems)


def allowed_links(draft: Draft, request: CopyRequest) -> Finding:
    """Every URL or domain in the copy is one the step allows (its links and its CTA). The
    recipient's own address, validated at the door, may be quoted back to them."""
    allowed = {_norm_url(u) for u in request.links}
    hosts = {_norm_url(u).split("/", 1)[0] for u in request.links}
    problems = []
    text = draft.text()
    own = request.contact.get("email")
    if isinstance(own, str) and "@" in own:
        text = _blank_out(text, own)
    for match in _URL.finditer(text):
        url = _norm_url(match.group(0))
        if url not in allowed and url not in hosts:
            link = match.group(0).rstrip(".,;:!?")  # the sentence's full stop is no part of it
            problems.append(f"link {link!r} is not one the step allows")
    return _finding("allowed_links", problems)


def no_invented_facts(draft: Draft, request: CopyRequest) -> Finding:
    """No number, price, date or name that appears neither in the brief (with the step's
    fallback, CTA, angle and sender) nor in the contact's data nor in earlier subjects."""
    known = _known_text(request)
    known_numbers = {_norm_number(m.group(0)) for m in _NUMBER.finditer(known)}
    known_numbers |= {d for w, d in _NUMBER_WORDS.items() if re.search(rf"\b{w}\b", known)}
    known_words = set(re.findall(r"[a-z0-9'&-]+", known))
    known_words |= {re.sub(r"'s$", "", w) for w in known_words}  # "Globex's" names Globex
    problems: list[str] = []
    # A link is allowed_links' business: "cal.com/maya/30min" states no number and no name.
    text = _URL.sub(" ", draft.text())
    for match in _NUMBER.finditer(text):
        if _norm_number(match.group(0)) not in known_numbers:
            problems.append(f"number {match.group(0).strip()!r} is in neither brief nor data")
    for match in _DATE_WORD.finditer(text):
        if match.group(0) in _NOT_DATES_IN_LOWER_CASE:
            continue
        if match.group(0).lower() not in known_words:
            problems.append(f"date {match.group(0)!r} is in neither brief nor data")
    for name in _proper_names(text):
        key = name.lower().replace("\u2019", "'")  # "I\u2019m" is "I'm"
        if key not in known_words and key not in _COMMON_CAPS:
            problems.append(f"name {name!r} is in neither brief nor data")
    return _finding("no_invented_facts", list(dict.fromkeys(problems)))


def spam_phrases(draft: Draft, request: CopyRequest) -> Finding:
    """No phrase spam filters score ("act now", "100% free", "click here"...), no shouted
    subject (two or more ALL-CAPS words the brief and data do not use) and no run of
    exclamation marks."""
    text = draft.text().lower()
    # The substring test (C speed) first: a lookbehind keeps re from scanning for the phrase.
    problems = [
        f"spam phrase {p!r}"
        for p, pattern in _SPAM_RE.items()
        if p in text and pattern.search(text)
    ]
    caps = re.findall(r"\b[A-Z]{4,}\b", draft.subject)
    known = _known_raw(request)  # an acronym the brief or the data uses (GDPR, HIPAA) is no shout
    shouted = [
        w for w in caps if w.lower() not in _COMMON_CAPS and not re.search(rf"\b{w}\b", known)
    ]
    if len(shouted) >= 2:
        problems.append(f"shouted subject ({' '.join(shouted)})")
    if "!!" in text and "!!!" not in text:
        problems.append("repeated exclamation marks")
    return _finding("spam_phrases", problems)


def no_injected_text(draft: Draft, request: CopyRequest) -> Finding:
    """No text copied from a contact field that reads like an instruction (a prompt-injection
    payload): four words in a row from such a field is a leak."""
    text = _words(draft.text())
    problems = []
    for path, value in strings(request.contact):
        if not INSTRUCTION.search(value):
            continue
        words = _words(value)
        size = min(4, len(words))
        shingles = {" ".join(words[i : i + size]) for i in range(len(words) - size + 1)}
        joined = " ".join(text)
        if any(f" {s} " in f" {joined} " for s in shingles if s):
            problems.append(f"copies instruction-like text from contact field {path}")
    return _finding("no_injected_text", problems)


def greeting_named(draft: Draft, request: CopyRequest) -> Finding:
    """A greeting names someone: "Hi ," "Hi null," "Hello undefined" or "Dear None" is a
    blank field written out, not a name (the template's ``default(...)`` should have stood in).
    "Hi," with nothing between is plain English and passes."""
    problems = []
    for paragraph in draft.paragraphs:
        match = _GREETING.match(paragraph)
        if match is None:
            continue
        name = " ".join(match.group("name").split()).strip("'\"").lower()
        if name in _EMPTY_NAMES and (name or match.group("gap")):  # "Hi," alone is English
            problems.append(f"greeting {match.group(0).strip()!r} names nobody")
    return _finding("greeting_named", problems)


def no_unbacked_offers(draft: Draft, request: CopyRequest) -> Finding:
    """No offer or price in words ("discount", "for free", "20% off", "trial extension") that
    neither the brief nor the fallback copy makes: a promise the business never made."""
    text = draft.text()
    # Only for ASCII: re's IGNORECASE also matches a few other letters (the long s U+017F, the
    # dotted capital I U+0130, the Kelvin sign) to ASCII ones, which lower() does not reproduce.
    lowered = text.lower()
    if text.isascii() and not any(word in lowered for word in _OFFER_WORDS):
        return _finding("no_unbacked_offers", [])
    known = _offer_sources(request)
    problems = [
        f"offers {name!r} ({match.group(0)!r}), which neither the brief nor the fallback makes"
        for name, pattern in _OFFERS.items()
        if (match := pattern.search(text)) is not None and not _makes(pattern, known)
    ]
    return _finding("no_unbacked_offers", problems)


def unsubscribe_present(preview: Preview) -> Finding:
    """The rendered email, HTML and text alike, carries the recipient's unsubscribe link."""
    problems = []
    if not preview.unsubscribe_url.strip():  # "" is in every string: no URL is a failure
        return _finding("unsubscribe_present", ["the email has no unsubscribe URL"])
    if preview.unsubscribe_url not in preview.html:
        problems.append("the HTML part has no unsubscribe link")
    if preview.unsubscribe_url not in preview.text:
        problems.append("the text part has no unsubscribe link")
    return _finding("unsubscribe_present", problems)


COPY_RULES: dict[str, Rule] = {
    rule.__name__: rule
    for rule in (
        schema_valid,
        length_bounds,
        no_placeholders,
        allowed_links,
        no_invented_facts,
        spam_phrases,
        no_injected_text,
        greeting_named,
        no_unbacked_offers,
    )
}
RULE_NAMES = (*COPY_RULES, "unsubscribe_present")
# The gate every email passes before it is recorded, whoever wrote it. The composer's copy is
# the sequence author's own words, so the rules of form (length, invented facts, spam phrasing)
# are the author's business; what a contact's data could smuggle into it is checked for all.
GATE_RULES: dict[str, Rule] = {
    name: COPY_RULES[name]
    for name in (
        "no_placeholders",
        "allowed_links",
        "no_injected_text",
        "greeting_named",
        "no_unbacked_offers",
    )
}


def check_copy(draft: Draft, request: CopyRequest) -> list[Finding]:
    return [rule(draft, request) for rule in COPY_RULES.values()]


def check_gate(draft: Draft, request: CopyRequest) -> list[Finding]:
    """The checks the offline composer's copy passes before it may be sent."""
    return [rule(draft, request) for rule in GATE_RULES.values()]


def check_preview(preview: Preview) -> list[Finding]:
    return [unsubscribe_present(preview)]


def failed(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if not f.ok]


def _known_text(request: CopyRequest) -> str:
    """Everything the copy may draw facts from, lower-cased, apostrophes straightened."""
    return _known_raw(request).lower().replace("\u2019", "'")


def _known_raw(request: CopyRequest) -> str:
    parts = [request.brief, request.sender_name, request.sequence_key.replace("-", " ")]
    for fallback in (request.fallback, *request.variant_fallbacks.values()):
        parts += [fallback.subject, fallback.preheader, fallback.body]
    parts += [v.angle for v in request.variants]
    parts += [request.cta.text] if request.cta else []
    parts += [step.subject for step in request.engagement.history]
    parts += [value for _, value in strings(request.contact) if not INSTRUCTION.search(value)]
    return "\n".join(parts)


def _makes(pattern: re.Pattern[str], known: str) -> bool:
    """The brief or fallback makes the offer: "No pressure, no discounts." does not."""
    for match in pattern.finditer(known):
        clause = re.split(r"[.;:!?\n]", known[: match.start()])[-1]
        if not _NEGATION.search(clause[-40:]):
            return True
    return False


def _offer_sources(request: CopyRequest) -> str:
    parts = [request.brief, *(v.angle for v in request.variants)]
    for fallback in (request.fallback, *request.variant_fallbacks.values()):
        parts += [fallback.subject, fallback.preheader, fallback.body]
    return "\n".join(parts + ([request.cta.text] if request.cta else []))


def _proper_names(text: str) -> Iterator[str]:
    for line in text.splitlines():
        for match in _CAPITALISED.finditer(line):
            if not _SENTENCE_START.search(line[: match.start()]):
                yield re.sub(r"['\u2019]s$", "", match.group(1))


def _norm_number(text: str) -> str:
    return re.sub(r"[\s,$€£¥]", "", text).rstrip(".").lower()


def _blank_out(text: str, own: str) -> str:
    """``text`` with each occurrence of ``own``, in any case, replaced by a space. A pattern
    compiled per recipient missed re's cache at every send; for ASCII (lower-casing keeps every
    position) plain ``find`` on lower-cased copies does the same work."""
    if not (text.isascii() and own.isascii()):
        return re.sub(re.escape(own), " ", text, flags=re.IGNORECASE)
    lowered, needle = text.lower(), own.lower()
    parts, at = [], 0
    while (found := lowered.find(needle, at)) >= 0:
        parts += [text[at:found], " "]
        at = found + len(needle)
    return "".join([*parts, text[at:]])


def _norm_url(url: str) -> str:
    url = re.sub(r"^https?://", "", url.strip().lower()).rstrip(".,;:!?")
    return url.removeprefix("www.").rstrip("/")


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())
