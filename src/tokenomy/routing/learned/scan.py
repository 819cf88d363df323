"""One pass over an ASCII prompt, shared by the lexical features and the cues.

The lexical features and the cues are defined by regular expressions
(`features.lexical_re`, `cues.cues_re`), most of them case-insensitive word
lists. Run one after another they scan a prompt seventeen times, about 20 ms for
25,000 characters. For ASCII text the same counts come from one `Scan`: the
text lower-cased once, its words counted once, and a few character translations
(the digits and their punctuation; the sentence, option and arithmetic marks;
the whitespace) for what is left.
Every count equals the regular expression's, so the feature vectors do not
change; tests/test_router_learned_scan.py checks it against the expressions.

Non-ASCII text keeps the expressions: `str.lower` and ``re.I`` disagree on some
characters (the Kelvin sign, the long s, Turkish dotted I), and ``\\w``,
``\\d`` and ``\\s`` cover more than the tables here.
"""

from __future__ import annotations

import re
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


class Scan:
    """An ASCII prompt, lower-cased, split into words and counted once."""

    __slots__ = ("counts", "lower", "numeric", "shape", "text", "words")

    def __init__(self, text: str) -> None:
        self.text = text
        self.lower = text.lower()
        self.words: list[str] = self.lower.translate(_TO_WORDS).split()
        self.counts: Counter[str] = Counter(self.words)
        # the runs of digits, ".", ",", "/" and "%", one space apart
        self.numeric = " ".join(text.translate(_TO_NUMERIC).split())
        self.shape = text.translate(_TO_SHAPE)

    def words_in(self, chars: int) -> list[str]:
        """The words of the first `chars` characters."""
        if len(self.text) <= chars:
            return self.words
        return self.lower[:chars].translate(_TO_WORDS).split()

    @classmethod
    def of(cls, text: str) -> Scan | None:
        """A scan of ASCII text; None for other text (it keeps the regular expressions)."""
        return cls(text) if text.isascii() else None

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
