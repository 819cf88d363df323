"""Difficulty cues: lexical counts meant to carry across benchmarks.

The hashed words of `features` mostly learn *which task* a prompt belongs to,
and that does not transfer to an unseen benchmark. These counts describe what
makes one question harder than its siblings whatever the task: how many
sentences and distinct numbers it has, how large the numbers get, arithmetic
and multi-step wording, fractions and percentages, science and mathematics
vocabulary, and negations ("which is NOT ..."). Each is a log count, so a
long prompt does not swamp the others. Chosen on held-out dev tasks
(docs/router.md).
"""

from __future__ import annotations

import math
import re

CUES = (
    "sentences",
    "distinct_numbers",
    "largest_number",
    "arithmetic_words",
    "step_words",
    "fractions",
    "science_words",
    "negations",
)

_SENTENCE = re.compile(r"[.!?](?:\s|$)")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_ARITHMETIC = re.compile(
    r"\b(total|each|per|percent|times|twice|half|third|quarter|remaining|left|more than"
    r"|less than|fewer|average|ratio|rate|sum|difference|product|altogether|how many"
    r"|how much)\b",
    re.I,
)
_STEP = re.compile(
    r"\b(then|after|before|if|while|until|first|second|finally|instead|every)\b", re.I
)
_FRACTION = re.compile(r"%|\d/\d|\d\.\d|\bfraction|\bpercent", re.I)
_SCIENCE = re.compile(
    r"\b(physic\w*|chemi\w*|molecul\w*|atom\w*|integral|derivative|matrix|vector"
    r"|probabilit\w*|velocity|acceleration|energy|force|electr\w*|quantum|equation"
    r"|polynomial|theorem|prime|function|algorithm|genom\w*|enzyme|cell|protein|reaction"
    r"|mass|charge|wave|frequency|modulo|group|ring|field|eigen\w*|logarithm|circuit"
    r"|voltage|current|entropy|temperature)\b",
    re.I,
)
_NEGATION = re.compile(r"\b(not|except|false|incorrect|least|never|none)\b", re.I)
_LARGEST_CAP = 1e12


def _largest(numbers: list[str]) -> float:
    best = 0.0
    for n in numbers:
        plain = n.replace(",", "")
        if plain.replace(".", "", 1).isdigit():
            best = max(best, float(plain))
    return min(best, _LARGEST_CAP)


def cues(text: str) -> list[float]:
    """One value per name in `CUES`, roughly unit-scaled (the model standardises them)."""
    numbers = _NUMBER.findall(text)
    return [
        math.log1p(len(_SENTENCE.findall(text))),
        math.log1p(len(set(numbers))),
        math.log1p(_largest(numbers)) / 10,
        math.log1p(len(_ARITHMETIC.findall(text))),
        math.log1p(len(_STEP.findall(text))),
        math.log1p(len(_FRACTION.findall(text))),
        math.log1p(len(_SCIENCE.findall(text))),
        math.log1p(len(_NEGATION.findall(text))),
    ]
