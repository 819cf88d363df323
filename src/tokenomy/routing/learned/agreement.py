"""Score a cheap model's answer by the agreement between its samples.

Sample the cheap model k times; when most samples reach the same final answer,
the answer is likely right (majority-vote consistency, as in the "mixture of
thought" cascades). The score is the share of samples that agree with the most
common normalised answer, in (0, 1]; a cascade escalates below a threshold.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation

_CHOICE = re.compile(r"^\(?([A-Ja-j])[).:]?$")
_CHOICE_IN_TEXT = re.compile(r"\b(?:answer|option|choice)\s*(?:is|:)?\s*\(?([A-J])\b\)?", re.I)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")
_ANSWER_IS = re.compile(r"answer\s*(?:is|:)\s*(.+)$", re.I | re.S)
_PUNCT = re.compile(r"[\s.,;:!?\"'`]+$")
_DATE = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})$")


def _number(text: str) -> str | None:
    try:
        value = Decimal(text.replace(",", ""))
    except InvalidOperation:
        return None
    if not value.is_finite():
        return None
    if value == value.to_integral_value():
        return str(value.quantize(Decimal(1)))
    return format(value.normalize(), "f")


def normalize_answer(answer: object) -> str:
    """A canonical form, so '42', '42.0', '$42' and 'The answer is 42.' compare equal,
    and '(B)', 'b.' and 'The answer is B' do too; dates become MM/DD/YYYY."""
    text = str(answer).strip()
    match = _ANSWER_IS.search(text)
    if match:
        text = match.group(1).strip()
    text = _PUNCT.sub("", text.strip()).strip()
    date = _DATE.match(text)
    if date:
        return f"{int(date.group(1)):02d}/{int(date.group(2)):02d}/{date.group(3)}"
    choice = _CHOICE.match(text)
    if choice:
        return choice.group(1).upper()
    in_text = _CHOICE_IN_TEXT.search(str(answer))
    if in_text and not _NUMBER.fullmatch(text.lstrip("$")):
        return in_text.group(1).upper()
    bare = text.lstrip("$").rstrip("%").strip()
    if _NUMBER.fullmatch(bare):
        number = _number(bare)
        if number is not None:
            return number
    numbers = _NUMBER.findall(text)
    if numbers and len(text) > 40:  # free text: its last number is the answer
        number = _number(numbers[-1])
        if number is not None:
            return number
    return " ".join(text.lower().split())


def majority(answers: Sequence[object]) -> tuple[str, int]:
    """The most common normalised answer and its count (ties: the first seen)."""
    counts = Counter(normalize_answer(a) for a in answers)
    if not counts:
        return "", 0
    best, n = counts.most_common(1)[0]
    return best, n


def agreement(answers: Sequence[object]) -> float:
    """Share of samples agreeing with the majority answer; 0.0 for no samples."""
    if not answers:
        return 0.0
    _, n = majority(answers)
    return n / len(answers)
