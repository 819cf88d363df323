"""One pass over a prompt, shared by the lexical features and the cues.

The lexical features and the cues are defined by regular expressions
(`features.lexical_re`, `cues.cues_re`), most of them case-insensitive word
lists. Run one after another they scan a prompt seventeen times, about 20 ms for
25,000 characters. For ASCII text the same counts come from one `Scan`: the
text lower-cased once, its words counted once, and a few character translations
(the digits and their punctuation; the sentence, option and arithmetic marks;
the whitespace) for what is left.
Every count equals the regular expression's, so the feature vectors do not
change; tests/test_router_learned_scan.py checks it against the expressions.

Other text is scanned through an ASCII *stand-in*, one character for each: a
character outside ASCII becomes the ASCII character that every expression reads
the same way, asked of the regex engine (`_reading`): ``\\w``, ``\\d`` and
``\\s`` (Unicode), `str.isspace` (for `str.split`) and the letters ``re.I``
matches it with. So a word character becomes "_", a digit "0", a space "\\t"
(no expression names it; they name " " and "\\n"), anything else "#", and the
Kelvin sign, the long s and the Turkish I's the capitals "K", "S" and "I" (the
case-sensitive expressions name no capital but A-D). The stand-in is mapped
before lower-casing, so `str.lower` never sees "İ". Its digits are all "0": a
prompt with digits outside ASCII reads its numbers from itself (`Scan.ascii_digits`),
and the share of characters outside ASCII is counted on the prompt (`Scan.foreign`).
A character with no stand-in (none in Python 3.11) makes the text keep the expressions.
"""

from __future__ import annotations

import re
import string
from collections import Counter

_ASCII = [chr(i) for i in range(128)]
# The character classes as the regex engine sees them, read from it rather than retyped.
WORD_CHARS = frozenset(c for c in _ASCII if re.fullmatch(r"\w", c))
SPACE_CHARS = frozenset(c for c in _ASCII if re.fullmatch(r"\s", c))

_TO_WORDS = str.maketrans({c: " " for c in _ASCII if c not in WORD_CHARS})
# Digits and the marks the number patterns read; everything else separates.
_TO_NUMERIC = str.maketrans({c: " " for c in _ASCII if c not in "0123456789.,/%"})
# Sentence ends ("." and "!" for "!?"), option letters ("A" for A-D) and marks, the
# arithmetic marks ("+" for "=+-*/^$"), whitespace (" "); "_" for the rest.
_TO_SHAPE = str.maketrans(
    {c: "_" for c in _ASCII}
    | {c: " " for c in SPACE_CHARS}
    | dict.fromkeys("ABCD", "A")
    | {".": ".", ")": ")", "!": "!", "?": "!"}
    | dict.fromkeys("=+-*/^$", "+")
)
_TO_GAPS = str.maketrans({c: " " if c in SPACE_CHARS else "x" for c in _ASCII})
_BLANK = re.compile(r"\s*")
_TERM = re.compile(r"[a-z]+(?: [a-z]+)*\*?")

_CLASSES = tuple(re.compile(c) for c in (r"\w", r"\d", r"\s"))
_LETTERS = tuple(re.compile(c, re.I) for c in string.ascii_lowercase)


def _reading(char: str) -> tuple[bool, ...]:
    """What the expressions can tell of `char`: whether it is ``\\w``, ``\\d``,
    ``\\s`` and `str.isspace`, and which lower-case letters ``re.I`` matches it with.
    (The other characters the expressions name are ASCII without case: each matches
    only itself.)"""
    return (
        *(p.fullmatch(char) is not None for p in _CLASSES),
        char.isspace(),
        *(p.fullmatch(char) is not None for p in _LETTERS),
    )


# The stand-ins, by reading: characters the expressions know by their reading only
# (none names "_", "0", "#" or "\t", and the case-sensitive ones name no capital
# but A-D), each standing in for the characters that read the same.
_BY_READING = {_reading(c): c for c in "_0\t#" + string.ascii_uppercase[4:]}
_MAX_STAND_INS = 1 << 16


class _StandIns(dict[int, str]):
    """A `str.translate` table, filled as characters come: a character → its ASCII
    stand-in ("" when it has none, which shortens the translation)."""

    def __missing__(self, code: int) -> str:
        if len(self) >= _MAX_STAND_INS:  # bounded whatever the prompts hold
            self.clear()
        char = chr(code)
        self[code] = found = char if code < 128 else _BY_READING.get(_reading(char), "")
        return found


_STAND_INS = _StandIns()


class Scan:
    """An ASCII prompt, or the ASCII stand-in of another (`of`), lower-cased, split
    into words and counted once."""

    __slots__ = ("ascii_digits", "counts", "foreign", "lower", "numeric", "shape", "text", "words")

    def __init__(self, text: str, foreign: int = 0, *, ascii_digits: bool = True) -> None:
        self.text = text
        self.foreign = foreign  # the prompt's characters outside ASCII
        self.ascii_digits = ascii_digits  # no digit outside ASCII: `numeric` has the numbers
        self.lower = text.lower()
        self.words: list[str] = self.lower.translate(_TO_WORDS).split()
        self.counts: Counter[str] = Counter(self.words)
        # the runs of digits, ".", ",", "/" and "%", one space apart
        self.numeric = " ".join(text.translate(_TO_NUMERIC).split())
        self.shape = text.translate(_TO_SHAPE)

    def words_in(self, chars: int) -> list[str]:
        """The words of the first `chars` characters (of the stand-in, when `foreign`)."""
        if len(self.text) <= chars:
            return self.words
        return self.lower[:chars].translate(_TO_WORDS).split()

    @classmethod
    def of(cls, text: str) -> Scan | None:
        """A scan of `text`, or of its ASCII stand-in; None when a character has no
        stand-in (the text keeps the regular expressions)."""
        if text.isascii():
            return cls(text)
        stand_in = text.translate(_STAND_INS)
        if len(stand_in) != len(text):
            return None
        foreign = len(text) - len(text.encode("ascii", "ignore"))
        return cls(stand_in, foreign, ascii_digits=stand_in.count("0") == text.count("0"))

    def spaced_words(self) -> int:
        """``len(text.split())``: runs of non-whitespace."""
        gaps = self.text.translate(_TO_GAPS)
        return gaps.count(" x") + (gaps[:1] == "x")

    def sentences(self) -> int:
        """``[.!?](?:\\s|$)``: sentence marks followed by whitespace or the end."""
        s = self.shape
        return s.count(". ") + s.count("! ") + (s[-1:] in (".", "!"))

    def options(self) -> int:
        """``(?:^|\\n)\\s*\\(?[A-D][.)]\\s`` (multiline): option letters opening a line.

        A letter followed by ``.`` or ``)`` and whitespace counts when the text
        between it (and an optional ``(``) and the line's start is blank.
        """
        text, s, n = self.text, self.shape, 0
        for mark in ("A. ", "A) "):
            i = s.find(mark)
            while i >= 0:
                end = i - 1 if i and text[i - 1] == "(" else i
                if _BLANK.fullmatch(text, text.rfind("\n", 0, end) + 1, end):
                    n += 1
                i = s.find(mark, i + 3)
        return n


def occurrences(text: str, term: str, *, whole: bool = False) -> int:
    """How often `term` starts a word of ASCII `text` (`whole`: and ends one): what
    ``\\bterm`` (``\\bterm\\b``) finds."""
    n, size = 0, len(term)
    i = text.find(term)
    while i >= 0:
        end = i + size
        if (i == 0 or text[i - 1] not in WORD_CHARS) and not (
            whole and end < len(text) and text[end] in WORD_CHARS
        ):
            n += 1
            i = text.find(term, end)
        else:
            i = text.find(term, i + 1)
    return n


class Terms:
    """Lower-case words and phrases, counted as ``\\b(t1|t2|...)\\b`` with ``re.I``
    counts them; a term ending in ``*`` is a stem (``stem\\w*``).

    On a `Scan` the words are looked up in its word counts and the stems and
    phrases found in its lower-cased text. That equals the expression's count
    only when a word cannot be matched by two terms, nor a phrase share a word
    with another term; the constructor refuses terms that break this.
    """

    __slots__ = ("_zeros", "pattern", "phrases", "stems", "words")

    def __init__(self, *terms: str) -> None:
        for t in terms:
            if not _TERM.fullmatch(t) or (" " in t and t.endswith("*")):
                raise ValueError(f"{t!r}: a term is lower-case words, or one word ending in *")
            if terms.count(t) > 1:
                raise ValueError(f"{t!r} is listed twice")
        alternatives = (t[:-1] + r"\w*" if t.endswith("*") else t for t in terms)
        self.pattern = re.compile(r"\b(" + "|".join(alternatives) + r")\b", re.I)
        self.words = tuple(t for t in terms if " " not in t and not t.endswith("*"))
        self.stems = tuple(t[:-1] for t in terms if t.endswith("*"))
        self.phrases = tuple(t for t in terms if " " in t)
        self._zeros = (0,) * len(self.words)
        self._check()

    def _check(self) -> None:
        def matched(word: str) -> bool:
            return word in self.words or word.startswith(self.stems)

        firsts = {p.split()[0] for p in self.phrases}
        clashes = [w for w in self.words if w.startswith(self.stems)]
        clashes += [s for s in self.stems if sum(s.startswith(o) for o in self.stems) > 1]
        for p in self.phrases:
            first, *rest = p.split()
            clashes += [p] if matched(first) else []
            clashes += [p for w in rest if matched(w) or w in firsts]
            clashes += [p for q in self.phrases if q.startswith(p + " ")]
        if clashes:
            raise ValueError(f"terms a word-by-word count cannot separate: {sorted(set(clashes))}")

    def count(self, scan: Scan) -> int:
        """``len(self.pattern.findall(scan.text))``, from the scan."""
        n = sum(map(scan.counts.get, self.words, self._zeros))
        n += sum(occurrences(scan.lower, s) for s in self.stems)
        return n + sum(occurrences(scan.lower, p, whole=True) for p in self.phrases)
