"""Flesch reading ease, for English copy: 206.835 - 1.015 * words/sentence - 84.6 * syllables/word.

60-70 reads as plain English; below 50 is hard going for a marketing email. Syllables are
counted by vowel groups with the usual corrections; a word with no Latin vowel (a name in
another script) counts as one, which keeps such names from skewing the score.
"""

from __future__ import annotations

import re

_SENTENCE_END = re.compile(r"[.!?]+(?=\s|$)|\n+")
_WORD = re.compile(r"[^\W_]+(?:['\u2019][^\W_]+)*")
_VOWELS = re.compile(r"[aeiouy]+")


def syllables(word: str) -> int:
    text = word.lower().replace("\u2019", "'")
    count = len(_VOWELS.findall(text))
    if count > 1 and text.endswith("e") and not text.endswith(("le", "ee", "ye")):
        count -= 1  # a silent final e: "make", "guide"
    if count > 1 and text.endswith("ed") and not text.endswith(("ted", "ded")):
        count -= 1  # "looked", "opened"
    return max(1, count)


def reading_ease(text: str) -> float | None:
    """The Flesch score of ``text``, or None when it has no words to score."""
    words = _WORD.findall(text)
    if not words:
        return None
    sentences = max(1, len([s for s in _SENTENCE_END.split(text) if _WORD.search(s)]))
    per_sentence = len(words) / sentences
    per_word = sum(syllables(w) for w in words) / len(words)
    return round(206.835 - 1.015 * per_sentence - 84.6 * per_word, 1)
