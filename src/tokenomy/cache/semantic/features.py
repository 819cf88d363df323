"""Pair features for the verifier: embedding similarity plus the lexical signals
that a cosine misses (a different number, name, negation or question word turns a
near-identical sentence into a different question).

``pair_features(a, b, u, v)`` returns one float32 row: the lexical block
(`LEXICAL`, named for inspection) followed by ``u * v`` and ``|u - v|`` (the
classic sentence-pair representation: which embedding dimensions agree and
which differ).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

# words (any script) with their apostrophe suffix, and every other symbol on its
# own: "C" and "C++", "#" and "##" must differ
_WORD = re.compile(r"\w+(?:'[a-z]+)?|[^\w\s]")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_CAPITAL = re.compile(r"(?<![.?!]\s)(?<!^)\b([A-Z][A-Za-z0-9]*)")
NEGATIONS = frozenset(
    {"not", "no", "never", "none", "nobody", "nothing", "neither", "nor", "cannot", "without"}
    # typed without the apostrophe
    | {"cant", "dont", "doesnt", "didnt", "isnt", "arent", "wasnt", "werent", "wont", "wouldnt"}
    | {"shouldnt", "couldnt", "havent", "hasnt", "hadnt", "aint"}
)
QUESTION_WORDS = ("what", "why", "how", "when", "who", "where", "which", "whom", "whose")
STOPWORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "being",
        "do",
        "does",
        "did",
        "to",
        "of",
        "in",
        "on",
        "for",
        "with",
        "at",
        "by",
        "from",
        "and",
        "or",
        "i",
        "you",
        "my",
        "your",
        "it",
        "its",
        "this",
        "that",
        "these",
        "those",
        "can",
        "could",
        "should",
        "would",
        "will",
        "shall",
        "me",
        "we",
        "our",
        "us",
        "they",
        "their",
        "them",
        "he",
        "she",
        "his",
        "her",
        "as",
        "if",
        "so",
        "than",
        "then",
        "there",
        "any",
        "some",
        "what",
        "why",
        "how",
        "when",
        "who",
        "where",
        "which",
        "whom",
        "whose",
    ]
)

COS_STEPS = (0.9, 0.93, 0.95, 0.97, 0.98, 0.99, 0.995)
TRIGRAM_STEPS = (0.5, 0.7, 0.8, 0.9, 0.95)
WORD_STEPS = (0.5, 0.7, 0.8, 0.9)

LEXICAL = (
    "cos",
    "cos_sq",
    "word_jaccard",
    "trigram_jaccard",
    "char_len_ratio",
    "word_len_log_ratio",
    "numbers_differ",
    "numbers_present",
    "names_distance",
    "names_differ",
    "negation_mismatch",
    "question_words_differ",
    "first_question_word_differs",
    "same_normalized",
    "cos_x_jaccard",
    "content_diff_share",
    "content_diff_count",
    "person_mismatch",
    "symbols_differ",
    # step functions of the similarities: lets the linear model rank near-identical
    # pairs above mere paraphrases (the cleanest top band on the dev pairs)
    *(f"cos_gt_{t}" for t in COS_STEPS),
    *(f"trigram_gt_{t}" for t in TRIGRAM_STEPS),
    *(f"word_gt_{t}" for t in WORD_STEPS),
)
# "What is your X?" (an opinion poll) and "What is the X?" are labelled different
PUNCTUATION = frozenset(".,?!:;'\"()-")
PERSONAL = frozenset({"i", "me", "my", "you", "your", "yours", "we", "our"})


@lru_cache(maxsize=4096)
def _analyse(
    text: str,
) -> tuple[tuple[str, ...], frozenset[str], frozenset[str], frozenset[str], int, tuple[str, ...]]:
    """(words, trigrams, numbers, names, negations, question words) of one text; cached
    because a stored entry's text is analysed again at every lookup that finds it."""
    words = tuple(w.lower() for w in _WORD.findall(text))
    norm = " ".join(words)
    trigrams = frozenset(norm[i : i + 3] for i in range(max(len(norm) - 2, 1)))
    numbers = frozenset(n.replace(",", "") for n in _NUMBER.findall(text))
    names = frozenset(m.lower() for m in _CAPITAL.findall(text) if m.lower() not in STOPWORDS)
    negations = sum(1 for w in words if w in NEGATIONS or w.endswith("n't"))
    wh = tuple(w.split("'")[0] for w in words if w.split("'")[0] in QUESTION_WORDS)
    return words, trigrams, numbers, names, negations, wh


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    union = len(a | b)
    return len(a & b) / union if union else 1.0


def _symbols(words: frozenset[str]) -> frozenset[str]:
    """Symbols that carry meaning (C++, C#, $, %), not sentence punctuation."""
    return frozenset(w for w in words if not w[0].isalnum() and w not in PUNCTUATION)


def lexical_features(a: str, b: str, cos: float) -> list[float]:
    """The named lexical block (see `LEXICAL`) for texts a, b with cosine ``cos``."""
    import math

    wa, ta, na, ca, nega, wha = _analyse(a)
    wb, tb, nb, cb, negb, whb = _analyse(b)
    sa, sb = frozenset(wa), frozenset(wb)
    word_j = _jaccard(sa, sb)
    trigram_j = _jaccard(ta, tb)
    content_a, content_b = sa - STOPWORDS, sb - STOPWORDS
    content_diff = content_a ^ content_b
    content_all = content_a | content_b
    # a name only differs when the other text lacks the word in any case (QQP and
    # chat users often type in lower case)
    missing_names = (ca - sb) | (cb - sa)
    return [
        cos,
        cos * cos,
        word_j,
        trigram_j,
        min(len(a), len(b)) / max(len(a), len(b), 1),
        abs(math.log((len(wa) + 1) / (len(wb) + 1))),
        float(na != nb),
        float(bool(na or nb)),
        len(missing_names) / len(ca | cb) if ca or cb else 0.0,
        float(bool(missing_names)),
        float((nega > 0) != (negb > 0)),
        float(set(wha) != set(whb)),
        float((wha[:1] or ("",)) != (whb[:1] or ("",))),
        float(wa == wb),
        cos * word_j,
        len(content_diff) / len(content_all) if content_all else 0.0,
        min(len(content_diff), 6) / 6.0,
        float(bool(sa & PERSONAL) != bool(sb & PERSONAL)),
        float(_symbols(sa) != _symbols(sb)),
        *(float(cos > t) for t in COS_STEPS),
        *(float(trigram_j > t) for t in TRIGRAM_STEPS),
        *(float(word_j > t) for t in WORD_STEPS),
    ]


def pair_features(
    a: str, b: str, u: NDArray[np.float32], v: NDArray[np.float32]
) -> NDArray[np.float32]:
    """One feature row for texts a, b with unit embeddings u, v."""
    import numpy as np

    cos = float(np.dot(u, v))
    lex = np.asarray(lexical_features(a, b, cos), dtype=np.float32)
    return np.concatenate([lex, u * v, np.abs(u - v)]).astype(np.float32)


def batch_features(
    a: list[str], b: list[str], u: NDArray[np.float32], v: NDArray[np.float32]
) -> NDArray[np.float32]:
    """`pair_features` for many pairs at once (rows of u and v)."""
    import numpy as np

    cos = np.einsum("ij,ij->i", u, v)
    lex = np.asarray(
        [lexical_features(x, y, float(c)) for x, y, c in zip(a, b, cos, strict=True)],
        dtype=np.float32,
    ).reshape(len(a), len(LEXICAL))
    return np.concatenate([lex, u * v, np.abs(u - v)], axis=1).astype(np.float32)
