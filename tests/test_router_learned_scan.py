"""The one-pass features equal their regular-expression definitions, bit for bit."""

# ruff: noqa: RUF001 - characters that look like ASCII ones are what these tests are about

from __future__ import annotations

import math
import random
import re
import zlib
from typing import Any

import numpy as np
import pytest

from tokenomy.routing.learned import Router, scan
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
from tokenomy.routing.learned.scan import Scan, Terms

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
]
# Not ASCII, read through the ASCII stand-in: re.I matches "i" with the Turkish I's,
# "s" with the long s and "k" with the Kelvin sign (str.lower does not agree), and
# \w, \d and \s cover more.
FOREIGN = [
    "İstanbul İİ \u0131i",
    "Straße STRASSE ß",
    "\u212aelvin \u212a",
    "\u017folve the equation, \\\u017fqrt{2} claſs A: pas\u017f",
    "ıf fİrst thİs, then ıt; İF İnstead, FİNALLY untıl whıle",
    "ımport os\ndef f():\n    return İ;\u2028",
    "١٢٣ digits ٤٥, 12 and ١٢ and 1٢, 3.٥ and ٣/٤ ٪",
    "１２３ ＋ ４５６ ＝ ？ Ａ. Ｂ) 10,000 and １０,０００.",
    "\u00a0A. one\n\u3000B) two\n\u2028C. three\nＤ. four",
    "how\u00a0many how\u3000much how many\u2028def\u3000class\u00a0def x",
    "{\u00a0\n}\u3000\n;\u2029",
    "x\u2028y\u2029z\x85w\u1680v\u202fu end.\u3000end!\u00a0",
    "naïve café résumé 12.5%, cafe\u0301 e\u0308very atom\u0301",
    "数学 问题 how many 个？ 第１题：计算 ３.１４×２。",
    "emoji 😀 what? 👍🏽 ❤️ \U0001f469\u200d\U0001f4bb prove",
    "Кто и почему? Сколько стоит 5 рублей? ЭНЕРГИЯ",
    "ΣΟΦΟΣ σοφος σοφός ΜΟΛΥΒΙ — the force of ο λόγος",
    "\ufb01rst \ufb02ow \ufb01eld ﬀ ﬃ \ufb06",
    "\U0001d7ce\U0001d7d9 \U0001d400\U0001d41a ⅓ ² ½ Ⅻ",
    "\ud800 lone surrogate \udfff?",
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


# Characters outside ASCII: the ones re.I or str.lower treat specially, spaces,
# digits of other scripts, marks, and ranges of several blocks (Latin, Greek,
# Cyrillic, Arabic, Devanagari, punctuation, letterlike, CJK, Hangul, fullwidth,
# emoji, mathematical alphanumerics).
FOREIGN_CHARS = "\u212a\u017f\u0130\u0131\u00a0\u3000\u2028\u0085\uff11\u0661\u0301\ufb01\u03c2"
BLOCKS = [(0x80, 0x250), (0x370, 0x530), (0x600, 0x700), (0x900, 0x980), (0x2000, 0x2070)]
BLOCKS += [(0x2100, 0x2200), (0x3000, 0x3040), (0x4E00, 0x4F00), (0xAC00, 0xAD00)]
BLOCKS += [(0xFF00, 0xFFF0), (0x1F300, 0x1F650), (0x1D400, 0x1D800)]


def fuzzed(n: int) -> list[str]:
    rng = random.Random(20260)
    return ["".join(rng.choices(WORDS, k=rng.randint(0, 40))) for _ in range(n)]


def fuzzed_foreign(n: int) -> list[str]:
    """Words of `WORDS` mixed with characters outside ASCII, each text with one at least."""
    rng = random.Random(20261)

    def foreign() -> str:
        if rng.random() < 0.3:
            return rng.choice(FOREIGN_CHARS)
        lo, hi = rng.choice(BLOCKS)
        return chr(rng.randrange(lo, hi))

    return [
        "".join(rng.choice(WORDS) if rng.random() < 0.7 else foreign() for _ in range(k))
        + foreign()
        for k in (rng.randint(0, 40) for _ in range(n))
    ]


@pytest.mark.parametrize("text", TRICKY + FOREIGN)
def test_features_equal_their_definitions(text: str) -> None:
    assert Scan.of(text) is not None  # not the regular expressions
    assert vector(text) == vector_re(text)
    assert hashed_words(text, 4096) == hashed_reference(text, 4096)
    assert hashed_words(text, 64) == hashed_reference(text, 64)


def vector(text: str) -> list[str]:
    """The lexical features and the cues, bit for bit (`float.hex`)."""
    return [v.hex() for v in lexical(text) + cues(text)]


def vector_re(text: str) -> list[str]:
    return [v.hex() for v in lexical_re(text) + cues_re(text)]


@pytest.mark.parametrize("texts", [fuzzed(600), fuzzed_foreign(1500)], ids=["ascii", "foreign"])
def test_fuzzed_prompts_equal_their_definitions(texts: list[str]) -> None:
    for text in texts:
        assert vector(text) == vector_re(text), text
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


def test_a_stand_in_is_one_character_for_each() -> None:
    text = "İ\u0131\u017f\u212a é\u00a0１٢\u3000😀\u0301ß"
    got = Scan.of(text)
    assert got is not None
    assert got.text == "IISK _\t00\t##_"
    assert (got.foreign, got.ascii_digits) == (len(text) - 1, False)


def test_a_character_without_a_stand_in_keeps_the_expressions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    readings = {r: c for r, c in scan._BY_READING.items() if c != "_"}  # no word character
    monkeypatch.setattr(scan, "_BY_READING", readings)
    monkeypatch.setattr(scan, "_STAND_INS", scan._StandIns())
    assert Scan.of("na\u00efve\u3000１") is None
    assert Scan.of("١\u00a0") is not None
    for text in FOREIGN:
        assert vector(text) == vector_re(text)


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
