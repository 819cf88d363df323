"""The learned router: per-tier probabilities of a good answer, and one knob.

A router holds H logistic *heads*, ordered from the least to the most capable
class of model; head h predicts the probability that a model of that class
answers the prompt well. An operator's N tiers (cheap → strong) are placed on
the heads by position (tier i at head position i/(N-1)·(H-1), interpolating
linearly between neighbouring heads), giving each tier a predicted quality
q_i. The *win score* of tier i is its predicted probability of doing as well
as the strongest tier, 1 - max(0, q_strongest - q_i): a prompt that every
model fails, or every model answers, is a win for the cheap tier. The router
serves the cheapest tier whose win score reaches a threshold; the strongest
tier takes everything else.

The threshold comes from the one knob, through a calibration table measured on
held-out development data: ``strong_share`` (the share of requests the strong
tier should take) or ``quality_target`` (the share of the strong model's quality
to keep). A stricter target never lowers the threshold, so it never sends fewer
requests to stronger tiers.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import DEFAULT_QUALITY_TARGET
from .features import Spec, featurize, prompt_text

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

DEFAULT_PATH = Path(__file__).with_name("default_router.npz")
DEFAULT_TIERS = ("weak", "strong")
_KNOWN_MAX = 256  # thresholds a calibration remembers (targets come from configuration)


@dataclass(frozen=True, slots=True)
class Decision:
    """Which tier serves a prompt, and why."""

    model: str
    predicted_quality: float  # predicted probability that `model` answers well
    scores: dict[str, float]  # tier → predicted probability of a good answer
    reason: str
    threshold: float  # the win score a cheaper tier had to reach
    win: dict[str, float] = field(default_factory=dict)  # tier → P(as good as the strongest)


@dataclass(frozen=True, slots=True)
class Calibration:
    """Knob → threshold, measured on held-out dev data (shares ascending)."""

    share: tuple[float, ...]  # share of requests sent to the strong tier
    threshold: tuple[float, ...]  # win score below which a request goes strong
    quality: tuple[float, ...]  # routed quality / always-strong quality at that share
    # knob → threshold, remembered: a gateway asks for the same few targets on every request
    _known: dict[tuple[float | None, float | None], float] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def threshold_for(self, quality_target: float | None, strong_share: float | None) -> float:
        """The threshold for `strong_share`, else for `quality_target` (None: the default)."""
        key = (quality_target, strong_share)
        t = self._known.get(key)
        if t is None:
            if strong_share is None:
                target = DEFAULT_QUALITY_TARGET if quality_target is None else quality_target
                strong_share = self.share_for_quality(target)
            t = self.threshold_for_share(strong_share)
            if len(self._known) >= _KNOWN_MAX:
                self._known.clear()
            self._known[key] = t
        return t

    def threshold_for_share(self, strong_share: float) -> float:
        s = min(max(strong_share, 0.0), 1.0)
        return _interp(s, self.share, self.threshold)

    def share_for_quality(self, quality_target: float) -> float:
        """The smallest strong share whose dev quality reached the target."""
        best = -math.inf
        for s, q in zip(self.share, self.quality, strict=True):
            best = max(best, q)
            if best >= quality_target:
                return s
        return 1.0


def _interp(x: float, xs: Sequence[float], ys: Sequence[float]) -> float:
    if x <= xs[0]:
        return ys[0]
    for i in range(1, len(xs)):
        if x <= xs[i]:
            span = xs[i] - xs[i - 1]
            w = 0.0 if span <= 0 else (x - xs[i - 1]) / span
            return ys[i - 1] + w * (ys[i] - ys[i - 1])
    return ys[-1]


@dataclass(slots=True)
class Router:
    """Logistic heads over `featurize` features, plus the calibration table."""

    heads: tuple[str, ...]
    mean: NDArray[np.float32]
    std: NDArray[np.float32]
    weights: NDArray[np.float32]  # (H, F)
    bias: NDArray[np.float32]  # (H,)
    calibration: Calibration
    meta: dict[str, Any] = field(default_factory=dict)
    embedder: Any = None
    spec: Spec = field(init=False, repr=False, compare=False)  # from meta, when made

    def __post_init__(self) -> None:
        f = self.meta.get("features", {})
        self.spec = Spec(
            hash_dim=int(f.get("hash_dim", 0)),
            embed=bool(f.get("embed", False)),
            cues=bool(f.get("cues", False)),
        )

    # -- persistence -------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path | None = None) -> Router:
        """A router from a weights file; None → the default shipped in the package."""
        import numpy as np

        with np.load(Path(path) if path else DEFAULT_PATH, allow_pickle=False) as z:
            cal = Calibration(
                tuple(float(v) for v in z["cal_share"]),
                tuple(float(v) for v in z["cal_threshold"]),
                tuple(float(v) for v in z["cal_quality"]),
            )
            return cls(
                heads=tuple(str(h) for h in z["heads"]),
                mean=z["mean"].astype(np.float32),
                std=z["std"].astype(np.float32),
                weights=z["weights"].astype(np.float32),
                bias=z["bias"].astype(np.float32),
                calibration=cal,
                meta=json.loads(str(z["meta"])),
            )

    def save(self, path: str | Path) -> None:
        import numpy as np

        with Path(path).open("wb") as fh:
            np.savez_compressed(
                fh,
                heads=np.array(self.heads),
                mean=self.mean.astype(np.float32),
                std=self.std.astype(np.float32),
                weights=self.weights.astype(np.float16),
                bias=self.bias.astype(np.float32),
                cal_share=np.array(self.calibration.share, dtype=np.float64),
                cal_threshold=np.array(self.calibration.threshold, dtype=np.float64),
                cal_quality=np.array(self.calibration.quality, dtype=np.float64),
                meta=np.array(json.dumps(self.meta, sort_keys=True)),
            )

    # -- prediction --------------------------------------------------------
    def features(self, texts: Sequence[str]) -> NDArray[np.float32]:
        return featurize(texts, self.spec, self.embedder)

    def predict_features(self, x: NDArray[np.float32]) -> NDArray[np.float64]:
        """(n, H) probabilities of a good answer, per head."""
        import numpy as np

        z = ((x - self.mean) / self.std) @ self.weights.T.astype(np.float32, copy=False) + self.bias
        out: NDArray[np.float64] = 1.0 / (1.0 + np.exp(-z.astype(np.float64)))
        return out

    def predict(self, texts: Sequence[str]) -> NDArray[np.float64]:
        return self.predict_features(self.features(texts))

    def win_scores(self, probs: NDArray[np.float64]) -> NDArray[np.float64]:
        """(n,) win score of the least capable head against the most capable one."""
        import numpy as np

        out: NDArray[np.float64] = 1.0 - np.clip(probs[:, -1] - probs[:, 0], 0.0, 1.0)
        return out

    def score(self, prompt: str | Sequence[Any]) -> float:
        """The cheap model's win probability: that it answers as well as the strong one."""
        return float(self.win_scores(self.predict([prompt_text(prompt)]))[0])

    # -- the knob ----------------------------------------------------------
    def threshold(
        self, *, quality_target: float | None = None, strong_share: float | None = None
    ) -> float:
        """The probability a cheaper tier must reach to serve a prompt."""
        return self.calibration.threshold_for(quality_target, strong_share)

    def tier_scores(self, probs: Sequence[float], tiers: Sequence[str]) -> dict[str, float]:
        """Predicted quality of an operator's tiers (cheap → strong), placed on the heads."""
        n, h = len(tiers), len(probs)
        if n == 1 or h == 1:
            return {t: float(probs[-1]) for t in tiers}
        out = {}
        for i, t in enumerate(tiers):
            pos = i * (h - 1) / (n - 1)
            lo = min(int(pos), h - 2)
            w = pos - lo
            out[t] = float((1 - w) * probs[lo] + w * probs[lo + 1])
        return out

    def decide(
        self,
        prompt: str | Sequence[Any],
        tiers: Sequence[str] | None = None,
        quality_target: float | None = None,
        strong_share: float | None = None,
    ) -> Decision:
        """The cheapest tier predicted to answer as well as the strongest; tiers cheap → strong."""
        tiers = tuple(tiers) if tiers else DEFAULT_TIERS
        probs = self.predict([prompt_text(prompt)])[0]
        t = self.threshold(quality_target=quality_target, strong_share=strong_share)
        return self.decide_from(list(map(float, probs)), tiers, t)

    def decide_from(self, probs: Sequence[float], tiers: Sequence[str], t: float) -> Decision:
        """The decision for head probabilities `probs` at threshold `t`."""
        scores = self.tier_scores(probs, tiers)
        top = scores[tiers[-1]]
        win = {name: 1.0 - min(max(top - q, 0.0), 1.0) for name, q in scores.items()}
        for name in tiers[:-1]:
            if win[name] >= t:
                reason = f"learned: win({name})={win[name]:.3f} >= {t:.3f}"
                return Decision(name, scores[name], scores, reason, t, win)
        last = tiers[-1]
        reason = f"learned: no cheaper tier's win score reached {t:.3f}"
        return Decision(last, scores[last], scores, reason, t, win)

    def calibrate(
        self, win: Sequence[float], weak: Sequence[float], strong: Sequence[float]
    ) -> Router:
        """A copy whose knob is calibrated on these outcomes: the cheap model's win scores
        (`win_scores`) and the weak and strong models' scores on the same prompts."""
        from .calibration import calibrate

        return Router(
            self.heads,
            self.mean,
            self.std,
            self.weights,
            self.bias,
            calibrate(win, weak, strong),
            dict(self.meta),
            self.embedder,
        )
