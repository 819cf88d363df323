"""Prompt → feature vector: a MiniLM embedding plus a few cheap lexical features.

The embedding sees the head and the tail of the prompt only (`HEAD_CHARS`,
`TAIL_CHARS`): the question usually sits at one end, and a shorter input keeps
the decision under a few milliseconds on one core.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from tokenomy.embed import DIM

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

HEAD_CHARS = 360
TAIL_CHARS = 140

_DIGIT = re.compile(r"\d")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_CODE = re.compile(r"```|\bdef |\bclass |\breturn\b|[{};]\s*$|\bimport |=>|\bfunction\b", re.M)
_MATH = re.compile(r"[=+\-*/^]|\\frac|\\sqrt|\$|\bsolve\b|\bequation\b|\bcalculate\b", re.I)
_CHOICES = re.compile(r"(?:^|\n)\s*\(?[A-D][.)]\s", re.M)
_NON_ASCII = re.compile(r"[^\x00-\x7f]")
_WH = re.compile(r"\b(how many|how much|what|which|who|why|when|where|explain|prove)\b", re.I)

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


def prompt_text(prompt: str | Sequence[Any]) -> str:
    """The text a router looks at: a string, or the user turns of a chat `messages` list."""
    if isinstance(prompt, str):
        return prompt
    parts: list[str] = []
    for msg in prompt:
        if not isinstance(msg, dict) or msg.get("role") not in ("user", None):
            continue
        content = msg.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(
                str(block.get("text", ""))
                for block in content
                if isinstance(block, dict) and block.get("type") == "text"
            )
    return "\n".join(parts)


def clip(text: str) -> str:
    """The part of a prompt the embedding sees."""
    if len(text) <= HEAD_CHARS + TAIL_CHARS:
        return text
    return text[:HEAD_CHARS] + " … " + text[-TAIL_CHARS:]


def lexical(text: str) -> list[float]:
    """Cheap features, roughly unit-scaled (standardised again by the model)."""
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
        math.log1p(len(_WH.findall(text))),
    ]


def featurize(texts: Sequence[str], embedder: Any = None) -> NDArray[np.float32]:
    """(n, DIM + len(LEXICAL)) float32: embedding of the clipped text, then lexical features."""
    import numpy as np

    if embedder is None:
        from tokenomy.embed import shared_embedder

        embedder = shared_embedder()
    clipped = [clip(t) for t in texts]
    # batches of similar length pad less: embed in length order, then restore the order
    order = sorted(range(len(clipped)), key=lambda i: len(clipped[i]))
    emb = np.empty((len(texts), DIM), dtype=np.float32)
    if order:
        emb[order] = embedder.embed([clipped[i] for i in order])
    lex = np.array([lexical(t) for t in texts], dtype=np.float32).reshape(len(texts), -1)
    out: NDArray[np.float32] = np.concatenate([emb, lex], axis=1).astype(np.float32)
    return out
