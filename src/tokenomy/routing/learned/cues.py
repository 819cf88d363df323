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

from .scan import Scan, Terms, occurrences

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
_ARITHMETIC = Terms(
    *("total", "each", "per", "percent", "times", "twice", "half", "third", "quarter"),
    *("remaining", "left", "more than", "less than", "fewer", "average", "ratio", "rate"),
    *("sum", "difference", "product", "altogether", "how many", "how much"),
)
_STEP = Terms(
    *("then", "after", "before", "if", "while", "until", "first", "second", "finally"),
    *("instead", "every"),
)
_FRACTION = re.compile(r"%|\d/\d|\d\.\d|\bfraction|\bpercent", re.I)
_FRACTION_MARKS = re.compile(r"%|\d/\d|\d\.\d")
_SCIENCE = Terms(
    *("physic*", "chemi*", "molecul*", "atom*", "integral", "derivative", "matrix", "vector"),
    *("probabilit*", "velocity", "acceleration", "energy", "force", "electr*", "quantum"),
    *("equation", "polynomial", "theorem", "prime", "function", "algorithm", "genom*"),
    *("enzyme", "cell", "protein", "reaction", "mass", "charge", "wave", "frequency"),
    *("modulo", "group", "ring", "field", "eigen*", "logarithm", "circuit", "voltage"),
    *("current", "entropy", "temperature"),
)
_NEGATION = Terms("not", "except", "false", "incorrect", "least", "never", "none")
_LARGEST_CAP = 1e12


def _largest(numbers: list[str]) -> float:
    best = 0.0
    for n in numbers:
        plain = n.replace(",", "")
        if plain.replace(".", "", 1).isdigit():
            best = max(best, float(plain))
    return min(best, _LARGEST_CAP)


def cues(text: str, scan: Scan | None = None) -> list[float]:
    """One value per name in `CUES`, roughly unit-scaled (the model standardises them).

    Equal to `cues_re`; the text is read from its `Scan` (`scan`, when the
    caller already has it)."""
    scan = scan or Scan.of(text)
    if scan is None:
        return cues_re(text)
    numbers = _NUMBER.findall(scan.numeric if scan.ascii_digits else text)
    lower = scan.lower
    fractions = len(_FRACTION_MARKS.findall(scan.numeric))
    fractions += occurrences(lower, "fraction") + occurrences(lower, "percent")
    return [
        math.log1p(scan.sentences()),
        math.log1p(len(set(numbers))),
        math.log1p(_largest(numbers)) / 10,
        math.log1p(_ARITHMETIC.count(scan)),
        math.log1p(_STEP.count(scan)),
        math.log1p(fractions),
        math.log1p(_SCIENCE.count(scan)),
        math.log1p(_NEGATION.count(scan)),
    ]


def cues_re(text: str) -> list[float]:
    """The cues' definition: one regular expression each (any text)."""
    numbers = _NUMBER.findall(text)
    return [
        math.log1p(len(_SENTENCE.findall(text))),
        math.log1p(len(set(numbers))),
        math.log1p(_largest(numbers)) / 10,
        math.log1p(len(_ARITHMETIC.pattern.findall(text))),
        math.log1p(len(_STEP.pattern.findall(text))),
        math.log1p(len(_FRACTION.findall(text))),
        math.log1p(len(_SCIENCE.pattern.findall(text))),
        math.log1p(len(_NEGATION.pattern.findall(text))),
    ]
