"""Prompt → feature vector: cheap lexical features, hashed words, optionally an embedding.

The default features cost well under a millisecond: a few lexical counts
(length, digits, code and math markers, multiple-choice options, question
words), the difficulty cues of `cues.py`, and word unigrams and bigrams hashed into `Spec.hash_dim` buckets.
A prompt is read for the counts and the cues in one pass (`scan.py`). The
MiniLM embedding (`Spec.embed`) is optional: it costs about 0.3 ms of CPU per
word piece on one core, more than the 5 ms decision budget for a typical
prompt. It sees the head and the tail of the prompt only (`HEAD_CHARS`,
`TAIL_CHARS`), where the question usually sits.
"""

from __future__ import annotations

import math
import operator
import re
import zlib
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import TYPE_CHECKING, Any

from tokenomy.embed import DIM

from .cues import CUES, cues
from .scan import Scan, Terms, occurrences

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

HEAD_CHARS = 360
TAIL_CHARS = 140
BOW_CHARS = 4000
DEFAULT_HASH_DIM = 4096  # buckets for hashed word unigrams and bigrams

_DIGIT = re.compile(r"\d")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_CODE = re.compile(r"```|\bdef |\bclass |\breturn\b|[{};]\s*$|\bimport |=>|\bfunction\b", re.M)
_CODE_LINE_END = re.compile(r"[{};]\s*$", re.M)
_MATH = re.compile(r"[=+\-*/^]|\\frac|\\sqrt|\$|\bsolve\b|\bequation\b|\bcalculate\b", re.I)
_MATH_WORDS = Terms("solve", "equation", "calculate")
_CHOICES = re.compile(r"(?:^|\n)\s*\(?[A-D][.)]\s", re.M)
_NON_ASCII = re.compile(r"[^\x00-\x7f]")
_WORD = re.compile(r"\w+")
_WH = Terms(
    "how many", "how much", "what", "which", "who", "why", "when", "where", "explain", "prove"
)

LEXICAL = (
    "log_chars",
    "log_words",
    "digit_share",
    "numbers",
    "code",
    "math",
    "choices",
    "non_ascii",
    "questions",
    "wh_words",
)


# Text parts of a message's content: chat and Anthropic ``text``, Responses ``input_text``.
_TEXT_PARTS = ("text", "input_text")


def prompt_text(prompt: str | Sequence[Any]) -> str:
    """The text a router looks at: a string, or the user turns of a chat `messages` list."""
    if isinstance(prompt, str):
        return prompt
    return "\n".join(_user_texts(prompt))


def prompt_chars(prompt: str | Sequence[Any]) -> int:
    """``len(prompt_text(prompt))``, without joining the user turns."""
    if isinstance(prompt, str):
        return len(prompt)
    return max(sum(len(part) + 1 for part in _user_texts(prompt)) - 1, 0)


def _user_texts(messages: Sequence[Any]) -> Iterator[str]:
    for msg in messages:
        if not isinstance(msg, dict) or msg.get("role") not in ("user", None):
            continue
        content = msg.get("content")
        if isinstance(content, str):
            yield content
        elif isinstance(content, list):
            yield from (
                str(block.get("text", ""))
                for block in content
                if isinstance(block, dict) and block.get("type") in _TEXT_PARTS
            )


def clip(text: str) -> str:
    """The part of a prompt the embedding sees."""
    if len(text) <= HEAD_CHARS + TAIL_CHARS:
        return text
    return text[:HEAD_CHARS] + " … " + text[-TAIL_CHARS:]


def lexical(text: str, scan: Scan | None = None) -> list[float]:
    """Cheap features, roughly unit-scaled (standardised again by the model).

    Equal to `lexical_re`; the text is read from its `Scan` (`scan`, when the
    caller already has it) instead of one regular expression per feature."""
    scan = scan or Scan.of(text)
    if scan is None:
        return lexical_re(text)
    n = max(len(text), 1)
    ascii_text, lower, numeric = scan.text, scan.lower, scan.numeric
    marks = scan.shape.count("+") + lower.count("\\frac") + lower.count("\\sqrt")
    return [
        math.log1p(len(text)),
        math.log1p(scan.spaced_words()),
        sum(map(numeric.count, "0123456789")) / n,
        math.log1p(len(_NUMBER.findall(numeric))),
        float(_has_code(ascii_text)),
        math.log1p(marks + _MATH_WORDS.count(scan)),
        float(scan.options() >= 3),
        scan.foreign / n,
        math.log1p(ascii_text.count("?")),
        math.log1p(_WH.count(scan)),
    ]


def _has_code(text: str) -> bool:
    """`_CODE` finds something in ASCII `text`: one alternative at a time, cheapest first."""
    return (
        "```" in text
        or "=>" in text
        or any(occurrences(text, start) for start in ("def ", "class ", "import "))
        or any(occurrences(text, word, whole=True) for word in ("return", "function"))
        or (any(c in text for c in "{};") and _CODE_LINE_END.search(text) is not None)
    )


def lexical_re(text: str) -> list[float]:
    """The lexical features' definition: one regular expression each (any text)."""
    n = max(len(text), 1)
    words = len(text.split())
    return [
        math.log1p(len(text)),
        math.log1p(words),
        len(_DIGIT.findall(text)) / n,
        math.log1p(len(_NUMBER.findall(text))),
        float(bool(_CODE.search(text))),
        math.log1p(len(_MATH.findall(text))),
        float(len(_CHOICES.findall(text)) >= 3),
        len(_NON_ASCII.findall(text)) / n,
        math.log1p(text.count("?")),
        math.log1p(len(_WH.pattern.findall(text))),
    ]


@dataclass(frozen=True, slots=True)
class Spec:
    """Which features a router uses; stored in its weights file."""

    hash_dim: int = DEFAULT_HASH_DIM  # hashed word unigrams and bigrams (0: none)
    embed: bool = False  # the MiniLM embedding (better topics, ~20 ms more per prompt)
    cues: bool = True  # the difficulty cues of `cues.py` (routers trained before them: False)

    @property
    def dense(self) -> int:
        """Columns before the hashed words: the lexical counts and the cues."""
        return len(LEXICAL) + (len(CUES) if self.cues else 0)

    @property
    def width(self) -> int:
        return self.dense + self.hash_dim + (DIM if self.embed else 0)


def hashed_words(text: str, dim: int, scan: Scan | None = None) -> list[tuple[int, float]]:
    """Sparse (index, value): log counts of word unigrams and bigrams, L2-normalised."""
    return list(zip(*_hashed(text, dim, scan), strict=True))


def _hashed(text: str, dim: int, scan: Scan | None) -> tuple[list[int], list[float]]:
    """`hashed_words` as (indices, values)."""
    if scan and not scan.foreign:
        words = scan.words_in(BOW_CHARS)
    else:  # a stand-in's words are not the prompt's
        words = _WORD.findall(text[:BOW_CHARS].lower())
    # the grams in reading order (w0, w1, "w0 w1", w2, "w1 w2", ...): the buckets are
    # counted in the order their first grams appear, and the norm sums in that order
    grams = words[:1] * (2 * len(words) - 1)
    grams[1::2] = words[1:]
    grams[2::2] = map(" ".join, pairwise(words))
    counts = Counter(map(dim.__rmod__, map(zlib.crc32, map(str.encode, grams))))
    logs = list(map(math.log1p, counts.values()))
    norm = math.sqrt(sum(map(operator.mul, logs, logs))) or 1.0
    return list(counts), [v / norm for v in logs]


def featurize(
    texts: Sequence[str], spec: Spec | None = None, embedder: Any = None
) -> NDArray[np.float32]:
    """(n, spec.width) float32: lexical features, the cues, hashed words, then
    (optionally) the embedding of the clipped text."""
    import numpy as np

    spec = spec or Spec()
    out = np.zeros((len(texts), spec.width), dtype=np.float32)
    nlex, ndense = len(LEXICAL), spec.dense
    for i, text in enumerate(texts):
        scan = Scan.of(text)
        out[i, :nlex] = lexical(text, scan)
        if spec.cues:
            out[i, nlex:ndense] = cues(text, scan)
        if spec.hash_dim:
            buckets, values = _hashed(text, spec.hash_dim, scan)
            out[i, ndense:][buckets] = values
    if spec.embed:
        if embedder is None:
            from tokenomy.embed import shared_embedder

            embedder = shared_embedder()
        clipped = [clip(t) for t in texts]
        # batches of similar length pad less: embed in length order, then restore the order
        order = sorted(range(len(clipped)), key=lambda i: len(clipped[i]))
        if order:
            out[order, ndense + spec.hash_dim :] = embedder.embed([clipped[i] for i in order])
    return out
