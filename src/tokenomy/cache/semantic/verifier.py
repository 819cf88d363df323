"""The verifier: is a cached question the same question as the new one?

A logistic regression over `features.pair_features` (cosine, lexical signals and
the element-wise embedding product and difference), trained on the QQP dev pairs
by `tokenomy.cache.semantic.train`, plus vetoes: a pair whose numbers differ or
whose negations disagree is never served (on the dev pairs, most such pairs
are not duplicates: a hit in that class would be wrong far more often than
any target allows, and for a cache "100 vs 500 dollars" or "is / is not" means a
different answer even when QQP's annotators called the intent the same), and
one override the other way: the same words and symbols in any case or spacing
are the same question (QQP labels a few such pairs "different"; a cache must
not learn to refuse an exact repeat). Its weights and its calibrated thresholds
ship in ``verifier.json`` next to this module; run time needs numpy only.

``threshold(target)`` answers "accept at which probability?" for an operator's
target wrong-hit rate: the shipped grid holds thresholds calibrated for several
targets, and a target between grid points uses the strictest threshold whose
calibrated target is at or below it (never a looser one than calibrated).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .calibrate import NEVER
from .features import LEXICAL, pair_features

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

WEIGHTS = Path(__file__).with_name("verifier.json")


@dataclass(frozen=True)
class Verifier:
    weights: NDArray[np.float32]
    bias: float
    thresholds: dict[float, float]  # target wrong-hit rate -> probability threshold
    cosine_thresholds: dict[float, float]  # the same for the raw-cosine baseline
    meta: dict[str, Any]
    vetoes: tuple[int, ...] = ()  # lexical flags (feature columns) that force P = 0
    accepts: tuple[int, ...] = ()  # lexical flags that force P = 1 (same words and symbols)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Verifier:
        import numpy as np

        return cls(
            weights=np.asarray(data["weights"], dtype=np.float32),
            bias=float(data["bias"]),
            thresholds={float(t["target"]): float(t["threshold"]) for t in data["thresholds"]},
            cosine_thresholds={
                float(t["target"]): float(t["threshold"]) for t in data["cosine_thresholds"]
            },
            meta={k: v for k, v in data.items() if k not in ("weights", "bias")},
            vetoes=tuple(LEXICAL.index(v["feature"]) for v in data.get("vetoes", [])),
            accepts=tuple(LEXICAL.index(a) for a in data.get("accepts", [])),
        )

    @classmethod
    def load(cls, path: Path = WEIGHTS) -> Verifier:
        return cls.from_dict(json.loads(path.read_text()))

    def probabilities(self, features: NDArray[np.float32]) -> NDArray[np.float64]:
        """P(duplicate) for rows of features."""
        import numpy as np

        z = features.astype(np.float64) @ self.weights.astype(np.float64) + self.bias
        out: NDArray[np.float64] = 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))
        if self.accepts:
            out[(features[:, list(self.accepts)] > 0.5).any(axis=1)] = 1.0
        if self.vetoes:
            out[(features[:, list(self.vetoes)] > 0.5).any(axis=1)] = 0.0
        return out

    def probability(self, a: str, b: str, u: NDArray[np.float32], v: NDArray[np.float32]) -> float:
        return float(self.probabilities(pair_features(a, b, u, v)[None, :])[0])

    def threshold(self, target: float) -> float:
        return pick_threshold(self.thresholds, target)

    def cosine_threshold(self, target: float) -> float:
        return pick_threshold(self.cosine_thresholds, target)


def pick_threshold(grid: dict[float, float], target: float) -> float:
    """The threshold calibrated for the largest grid target <= ``target``: the
    safest available; `NEVER` (serve nothing) below the smallest grid target."""
    fitting = [t for t in grid if t <= target + 1e-12]
    return grid[max(fitting)] if fitting else NEVER


@lru_cache(maxsize=1)
def shipped_verifier() -> Verifier:
    """The verifier trained and calibrated on the QQP dev pairs (loaded once)."""
    return Verifier.load()
