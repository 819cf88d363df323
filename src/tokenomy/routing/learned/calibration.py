"""The knob's calibration table, from held-out outcomes of a weak and a strong model."""

from __future__ import annotations

from collections.abc import Sequence

from .metrics import curve
from .model import Calibration

STEPS = 100


def calibrate(
    win: Sequence[float], weak: Sequence[float], strong: Sequence[float], steps: int = STEPS
) -> Calibration:
    """For strong shares 0, 1/steps, … 1: the threshold that sends that share to the strong
    model (the requests with the lowest win scores) and the quality kept, as a share of
    always-strong quality: the router's quality curve (`metrics.curve`) at those shares."""
    p = [float(v) for v in win]
    n = len(p)
    if n == 0 or not (len(weak) == len(strong) == n):
        raise ValueError("calibration needs as many outcomes as probabilities, at least one")
    c = curve([-v for v in p], weak, strong)
    top = max(c.q_strong, 1e-12)
    sorted_p = sorted(p)
    shares, thresholds, quality = [], [], []
    for i in range(steps + 1):
        share = i / steps
        k = round(share * n)
        if k == 0:
            t = sorted_p[0] - 1e-9
        elif k >= n:
            t = sorted_p[-1] + 1e-9
        else:
            t = (sorted_p[k - 1] + sorted_p[k]) / 2
        shares.append(share)
        thresholds.append(t)
        quality.append(c.quality[k] / top)
    return Calibration(tuple(shares), tuple(thresholds), tuple(quality))
