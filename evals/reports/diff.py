"""A word-level diff of two emails' text, as HTML with <del> and <ins>."""

from __future__ import annotations

import difflib
import html
import re

from agents.copy import Draft

_TOKEN = re.compile(r"\s+|[^\s]+")


def email_text(draft: Draft) -> str:
    """The email as a reader takes it in: subject, preheader, paragraphs and button."""
    lines = [f"Subject: {draft.subject}", f"Preheader: {draft.preheader}", "", *draft.paragraphs]
    if draft.cta_text:
        lines += ["", f"[{draft.cta_text}]"]
    return "\n".join(lines)


def word_diff(before: str, after: str) -> str:
    """``after`` with what ``before`` had and it lacks struck out, and what is new marked."""
    old, new = _TOKEN.findall(before), _TOKEN.findall(after)
    parts = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, old, new, autojunk=False).get_opcodes():
        if op in ("delete", "replace"):
            parts.append(f"<del>{html.escape(''.join(old[i1:i2]))}</del>")
        if op in ("insert", "replace"):
            parts.append(f"<ins>{html.escape(''.join(new[j1:j2]))}</ins>")
        if op == "equal":
            parts.append(html.escape("".join(new[j1:j2])))
    return "".join(parts)
