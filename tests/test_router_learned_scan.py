"""The one-pass features equal their regular-expression definitions, bit for bit."""

from __future__ import annotations

import math
import random
import re
import zlib
from typing import Any

import numpy as np
import pytest

from tokenomy.routing.learned import Router
from tokenomy.routing.learned.cues import CUES, cues, cues_re
from tokenomy.routing.learned.features import (
    BOW_CHARS,
    LEXICAL,
    Spec,
    featurize,
    hashed_words,
    lexical,
    lexical_re,
    prompt_chars,
    prompt_text,
)
from tokenomy.routing.learned.model import DEFAULT_QUALITY_TARGET, Calibration
from tokenomy.routing.learned.scan import Terms

TRICKY = [
    "",
    " ",
    "\n",
    "end.",
    "end!",
    "Why?\n",
    "A. a\nB. b\nC. c",
    "(A) one\n(B) two\n (C) three\n\tD) four",
    "\n\n A) x \x0b B) y\x1c\nC) z\rD. q\n((A) no",
    "Ph.D. U.S.A. Plan B. vitamin D. ",
    "HOW MANY apples? How  many? how\nmany; show many, More Than less than morethan",
    "def f(x):\n    return x;\n",
    "class A { }\nimport os",
    "x => y, preturn, definitely, Return FUNCTION functions",
    "```py\nprint(1)\n```",
    "a;  \t\n b",
    "a;b",
    "\\FRAC{1}{2} \\Sqrt{2} $x$ = 3 + 4 - 5 * 6 / 7 ^ 8 SOLVE equations Calculate",
    "1,000,000.50 and 3/4 and 2.5% 1.2.3 4/5/6 fraction1/2 Percentage percent% 1.,2",
    "atomic anatomy atom_ 3atom ELECTRONS Eigenvalue physics_ _physics CHEMISTRY",
    "NOT except FALSE Incorrect least NEVER none, Nonetheless",
    "then_ _then then2 If, while; until: first-second Every",
    "a\x1cb\x1dc\x1ed\x1ff tab\tsep\x0c\r\n",
    ("The quick brown fox. " * 190) + "Supercalifragilistic word. " * 10,  # a word at BOW_CHARS
    # not ASCII: the regular expressions read these
    "İstanbul İİ \u0131i",
    "Straße STRASSE ß",
    "\u212aelvin \u212a",
    "\u017folve the equation",
    "١٢٣ digits ٤٥",
    "naïve café résumé 12.5%",
    "数学 问题 how many 个",
    "emoji 😀 what?",
]
WORDS = [
    *("A", "B", "D", "E", "(", ")", ".", "!", "?", "\n", " ", " ", "\t", "\x0b", "\x1c", "\r"),
    *("0", "1", "9", ",", "/", "%", "{", "}", ";", "=", ">", "`", "\\", "_", "$", "-", "x"),
    *("how", "many", "more", "than", "per", "percent", "atom", "def", "return", "class", "Frac"),
    *("sqrt", "solve", "What", "NOT", "then", "If", "physics", "eigen", "function", "fraction"),
]


def hashed_reference(text: str, dim: int) -> list[tuple[int, float]]:
    """The hashed words the plain way: one gram at a time."""
    counts: dict[int, int] = {}
    prev = ""
    for w in re.findall(r"\w+", text[:BOW_CHARS].lower()):
        for gram in (w, prev + " " + w) if prev else (w,):
            h = zlib.crc32(gram.encode("utf-8")) % dim
            counts[h] = counts.get(h, 0) + 1
        prev = w
    values = [(h, math.log1p(c)) for h, c in counts.items()]
    norm = math.sqrt(sum(v * v for _, v in values)) or 1.0
    return [(h, v / norm) for h, v in values]


def fuzzed(n: int) -> list[str]:
    rng = random.Random(20260)
    return ["".join(rng.choices(WORDS, k=rng.randint(0, 40))) for _ in range(n)]


@pytest.mark.parametrize("text", TRICKY)
def test_features_equal_their_definitions(text: str) -> None:
    assert lexical(text) == lexical_re(text)
    assert cues(text) == cues_re(text)
    assert hashed_words(text, 4096) == hashed_reference(text, 4096)
    assert hashed_words(text, 64) == hashed_reference(text, 64)


def test_fuzzed_prompts_equal_their_definitions() -> None:
    texts = fuzzed(600)
    for text in texts:
        assert lexical(text) == lexical_re(text), text
        assert cues(text) == cues_re(text), text
        assert hashed_words(text, 64) == hashed_reference(text, 64), text
    spec = Spec(hash_dim=64)
    n, dense = len(LEXICAL), spec.dense
    want = np.zeros((len(texts), spec.width), dtype=np.float32)
    for i, text in enumerate(texts):
        want[i, :n] = lexical_re(text)
        want[i, n:dense] = cues_re(text)
        for h, v in hashed_reference(text, 64):
            want[i, dense + h] = v
    assert featurize(texts, spec).tobytes() == want.tobytes()


def test_the_counts_behind_a_few_features() -> None:
    def counts(values: list[float]) -> list[int]:
        return [round(math.expm1(v)) for v in values]

    text = "HOW MANY atoms? How much Energy is NOT stored; 2.5% of 1,000.\n(A) 1/2 (B) 3"
    lex = dict(zip(LEXICAL, lexical(text), strict=True))
    assert counts([lex["numbers"], lex["math"], lex["wh_words"], lex["questions"]]) == [6, 1, 2, 1]
    assert lex["digit_share"] == 9 / len(text)
    # sentences, distinct numbers, -, arithmetic, steps, fractions, science, negations
    got = counts(cues(text))
    assert got[:2] + got[3:] == [2, 5, 2, 0, 3, 2, 1]
    assert dict(zip(CUES, cues(text), strict=True))["largest_number"] == math.log1p(1000) / 10


def test_terms_that_a_word_count_cannot_separate_are_refused() -> None:
    for terms in (("how", "how many"), ("atom*", "atomic"), ("more than", "than"), ("a*", "ab*")):
        with pytest.raises(ValueError, match="cannot separate"):
            Terms(*terms)
    with pytest.raises(ValueError, match="twice"):
        Terms("per", "per")
    with pytest.raises(ValueError, match="lower-case"):
        Terms("How")


def test_prompt_chars_is_the_joined_length() -> None:
    prompts: list[str | list[dict[str, Any]]] = [
        "plain",
        [],
        [{"role": "system", "content": "sys"}],
        [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"content": "c"}],
        [{"role": "user", "content": [{"type": "text", "text": "x"}, {"type": "image"}]}],
        [{"role": "user", "content": ""}, {"role": "user", "content": ""}],
    ]
    for p in prompts:
        assert prompt_chars(p) == len(prompt_text(p))


def test_thresholds_are_remembered_not_changed() -> None:
    cal = Router.load().calibration
    fresh = Calibration(cal.share, cal.threshold, cal.quality)
    for q in (None, 0.5, 0.9, DEFAULT_QUALITY_TARGET, 0.99, 1.0):
        share = cal.share_for_quality(DEFAULT_QUALITY_TARGET if q is None else q)
        assert fresh.threshold_for(q, None) == cal.threshold_for_share(share)
        assert fresh.threshold_for(q, None) == cal.threshold_for_share(share)  # remembered
    for s in (0.0, 0.3, 1.0):
        assert fresh.threshold_for(0.9, s) == cal.threshold_for_share(s)
    assert fresh == cal
