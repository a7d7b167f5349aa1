"""A word-level diff of two emails' text, as HTML with <del> and <ins>."""

from __future__ import annotations

import difflib
import html
import re

from agents.copy import Draft

# Words, single punctuation marks and runs of space: "step, Dana" against "step" is ", Dana" gone.
_TOKEN = re.compile(r"\s+|\w+|[^\w\s]")


def email_text(draft: Draft) -> str:
    """The email as a reader takes it in: subject, preheader, paragraphs and button."""
    lines = [f"Subject: {draft.subject}", f"Preheader: {draft.preheader}", "", *draft.paragraphs]
    if draft.cta_text:
        lines += ["", f"[{draft.cta_text}]"]
    return "\n".join(lines)


def word_diff(before: str, after: str) -> str:
    """``after`` with what ``before`` had and it lacks struck out and what is new marked: line
    by line, and word by word within a line that was rewritten."""
    old, new = before.splitlines(), after.splitlines()
    lines: list[str] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, old, new).get_opcodes():
        if op == "equal":
            lines += [html.escape(line) for line in new[j1:j2]]
        elif op == "replace" and i2 - i1 == j2 - j1:
            lines += [_words(a, b) for a, b in zip(old[i1:i2], new[j1:j2], strict=True)]
        else:
            lines += [f"<del>{html.escape(line)}</del>" for line in old[i1:i2]]
            lines += [f"<ins>{html.escape(line)}</ins>" for line in new[j1:j2]]
    return "\n".join(lines)


def _words(before: str, after: str) -> str:
    old, new = _TOKEN.findall(before), _TOKEN.findall(after)
    # Spaces are no anchor: matching on them alone would shred a rewritten sentence word by word.
    matcher = difflib.SequenceMatcher(str.isspace, old, new, autojunk=False)
    parts = []
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op in ("delete", "replace"):
            parts.append(f"<del>{html.escape(''.join(old[i1:i2]))}</del>")
        if op in ("insert", "replace"):
            parts.append(f"<ins>{html.escape(''.join(new[j1:j2]))}</ins>")
        if op == "equal":
            parts.append(html.escape("".join(new[j1:j2])))
    return "".join(parts)
