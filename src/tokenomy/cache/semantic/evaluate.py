"""Serve-the-pairs evaluation, shared by ``tokenomy cache eval`` and the benchmark.

Each pair is served as a cache lookup: ``text_a`` is the stored question,
``text_b`` the new one, and a hit is served when the rule accepts the pair.

- recall: served true duplicates / all true duplicates;
- wrong-hit rate: served non-duplicates / served hits (what the operator bounds).

Three rules side by side, on the same embeddings:

- the verifier at the threshold calibrated (on dev) for the target;
- the GPTCache-style baseline: cosine >= the threshold calibrated the same way
  on the same dev data for the same target;
- the baseline at the verifier's wrong-hit rate: the cosine threshold chosen *on
  the evaluated pairs themselves* (an oracle, the most the baseline could do) for
  the largest recall whose wrong-hit rate does not exceed the verifier's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from .features import batch_features
from .pairs import Pairs
from .verifier import Verifier

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray


@dataclass(frozen=True)
class Served:
    rule: str
    threshold: float
    hits: int
    wrong: int
    recall: float
    wrong_hit_rate: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def served(
    rule: str, scores: NDArray[np.floating], labels: NDArray[np.integer], threshold: float
) -> Served:
    accept = scores >= threshold
    hits = int(accept.sum())
    wrong = int((accept & (labels == 0)).sum())
    positives = max(int(labels.sum()), 1)
    return Served(
        rule, threshold, hits, wrong, (hits - wrong) / positives, wrong / hits if hits else 0.0
    )


def best_at_rate(
    rule: str, scores: NDArray[np.floating], labels: NDArray[np.integer], rate: float
) -> Served:
    """The threshold with the most recall whose wrong-hit rate is at most ``rate``."""
    import numpy as np

    order = np.argsort(-scores, kind="stable")
    s = scores[order]
    wrong = np.cumsum(labels[order] == 0)
    hits = np.arange(1, len(s) + 1)
    # only cut between distinct scores: ties are served together
    last_of_tie = np.append(s[1:] != s[:-1], True)
    ok = np.flatnonzero(last_of_tie & (wrong <= rate * hits + 1e-12))
    if not len(ok):
        return served(rule, scores, labels, float("inf"))
    i = int(ok[np.argmax(hits[ok] - wrong[ok])])
    return served(rule, scores, labels, float(s[i]))


@dataclass(frozen=True)
class Scored:
    probability: NDArray[np.float64]
    cosine: NDArray[np.float64]
    labels: NDArray[np.int8]


def score(pairs: Pairs, verifier: Verifier) -> Scored:
    import numpy as np

    x = batch_features(pairs.a, pairs.b, pairs.u, pairs.v)
    return Scored(verifier.probabilities(x), x[:, 0].astype(np.float64), pairs.labels)


def evaluate(scored: Scored, verifier: Verifier, target: float) -> dict[str, Served]:
    """The three rules at one target (see the module docstring)."""
    ours = served("verifier", scored.probability, scored.labels, verifier.threshold(target))
    baseline = served(
        "cosine (dev-calibrated)", scored.cosine, scored.labels, verifier.cosine_threshold(target)
    )
    oracle = best_at_rate(
        "cosine at verifier's rate", scored.cosine, scored.labels, ours.wrong_hit_rate
    )
    return {"verifier": ours, "cosine": baseline, "cosine_same_rate": oracle}
