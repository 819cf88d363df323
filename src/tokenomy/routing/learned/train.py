"""Train a router from outcome data: logistic heads on prompt features, then the knob.

Each head is a class of models (``small=modelA,modelB``); its target for a prompt
is the mean score of the class's models that have one (a soft label in [0, 1]).
Heads are fitted by L2-regularised logistic regression (`tokenomy.logistic`) on
standardised features. A deterministic share of the prompts (by a hash of the
prompt) is held out: the knob's calibration table is measured on it, with the
first head's target as the weak model's outcome and the last head's as the
strong model's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ...logistic import fit_logistic
from .calibration import calibrate
from .features import Spec, featurize
from .model import Router
from .outcomes import Outcome, cheapest_first

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

DEFAULT_L2 = 0.0003  # chosen on held-out dev data (docs/router.md)
DEFAULT_HOLDOUT = 0.2  # share of prompts held out to calibrate the knob


@dataclass(frozen=True, slots=True)
class Head:
    name: str
    models: tuple[str, ...]

    @classmethod
    def parse(cls, spec: str) -> Head:
        """``name=model1,model2`` (or a bare model name: a head of its own)."""
        name, _, models = spec.partition("=")
        listed = tuple(m.strip() for m in models.split(",") if m.strip()) if models else (name,)
        return cls(name.strip(), listed)


def default_heads(outcomes: Sequence[Outcome]) -> list[Head]:
    """Two heads: the cheapest model and the dearest (by mean cost), or, without costs for
    every model, the lowest- and highest-scoring."""
    ranked = cheapest_first(outcomes, dict.fromkeys(m for o in outcomes for m in o.scores))
    if len(ranked) < 2:
        raise ValueError("training needs outcomes of at least two models")
    return [Head("weak", (ranked[0],)), Head("strong", (ranked[-1],))]


def targets(
    outcomes: Sequence[Outcome], heads: Sequence[Head]
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """(n, H) soft labels and the mask of which are known."""
    import numpy as np

    y = np.zeros((len(outcomes), len(heads)))
    known = np.zeros((len(outcomes), len(heads)), dtype=bool)
    for i, o in enumerate(outcomes):
        for h, head in enumerate(heads):
            vals = [o.scores[m] for m in head.models if m in o.scores]
            if vals:
                y[i, h] = sum(vals) / len(vals)
                known[i, h] = True
    return y, known


def held_out(prompt: str, share: float) -> bool:
    digest = hashlib.sha1(prompt.encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < share


@dataclass(frozen=True, slots=True)
class Trained:
    router: Router
    report: dict[str, Any]


def train(
    outcomes: Sequence[Outcome],
    heads: Sequence[Head] | None = None,
    *,
    x: NDArray[np.float32] | None = None,
    spec: Spec | None = None,
    holdout: float = DEFAULT_HOLDOUT,
    l2: float = DEFAULT_L2,
    embedder: Any = None,
) -> Trained:
    """A router from outcomes; `x` are precomputed features (``featurize``) of the prompts."""
    import numpy as np

    heads = list(heads) if heads else default_heads(outcomes)
    spec = spec or Spec()
    if x is None:
        x = featurize([o.prompt for o in outcomes], spec, embedder)
    y, known = targets(outcomes, heads)
    test = np.array([held_out(o.prompt, holdout) for o in outcomes], dtype=bool)
    train_rows = ~test
    if not train_rows.any():
        raise ValueError("no prompt left to train on; lower the holdout")
    mean = x[train_rows].mean(axis=0)
    std = x[train_rows].std(axis=0) + 1e-6
    # hashed words are sparse and already unit-scaled: scaling rare buckets up would let
    # a word seen twice dominate
    words = slice(spec.dense, spec.dense + spec.hash_dim)
    mean[words], std[words] = 0.0, 1.0
    xs = ((x - mean) / std).astype(np.float32)
    weights = np.zeros((len(heads), x.shape[1]), dtype=np.float32)
    bias = np.zeros(len(heads), dtype=np.float32)
    for h, head in enumerate(heads):
        rows = train_rows & known[:, h]
        if not rows.any():
            raise ValueError(
                f"head {head.name!r}: no training prompt has a score for {head.models}"
            )
        w, b = fit_logistic(xs[rows], y[rows, h], l2)
        weights[h], bias[h] = w, b
    router = Router(
        heads=tuple(h.name for h in heads),
        mean=mean.astype(np.float32),
        std=std.astype(np.float32),
        weights=weights,
        bias=bias,
        calibration=calibrate([0.0, 1.0], [0.0, 0.0], [1.0, 1.0]),
        meta={
            "heads": {h.name: list(h.models) for h in heads},
            "features": {"hash_dim": spec.hash_dim, "embed": spec.embed, "cues": spec.cues},
            "l2": l2,
            "holdout": holdout,
        },
        embedder=embedder,
    )
    # fp16 weights are what a saved router uses; calibrate with them
    router.weights = weights.astype(np.float16).astype(np.float32)
    cal_rows = test & known[:, 0] & known[:, -1]
    if not cal_rows.any():  # nothing held out with both heads: calibrate on the training rows
        cal_rows = known[:, 0] & known[:, -1]
    win = router.win_scores(router.predict_features(x[cal_rows]))
    router.calibration = calibrate(list(win), list(y[cal_rows, 0]), list(y[cal_rows, -1]))
    report = {
        "prompts": len(outcomes),
        "train": int(train_rows.sum()),
        "calibration_prompts": int(cal_rows.sum()),
        "heads": {h.name: list(h.models) for h in heads},
    }
    router.meta["calibration_prompts"] = report["calibration_prompts"]
    return Trained(router, report)
