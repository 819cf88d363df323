"""The knob's calibration table, from held-out outcomes of a weak and a strong model."""

from __future__ import annotations

from collections.abc import Sequence

from .model import Calibration

STEPS = 100


def calibrate(
    win: Sequence[float], weak: Sequence[float], strong: Sequence[float], steps: int = STEPS
) -> Calibration:
    """For strong shares 0, 1/steps, … 1: the threshold that sends that share to the strong
    model (the requests with the lowest win scores) and the quality kept, as a share of
    always-strong quality."""
    import numpy as np

    p = np.asarray(win, dtype=np.float64)
    w = np.asarray(weak, dtype=np.float64)
    s = np.asarray(strong, dtype=np.float64)
    n = len(p)
    if n == 0 or not (len(w) == len(s) == n):
        raise ValueError("calibration needs as many outcomes as probabilities, at least one")
    order = np.argsort(p, kind="stable")
    sorted_p = p[order]
    # gain[k] = quality when the k lowest-probability requests go to the strong model
    gain = np.concatenate([[0.0], np.cumsum(s[order] - w[order])])
    base, top = w.sum(), max(s.sum(), 1e-12)
    shares, thresholds, quality = [], [], []
    for i in range(steps + 1):
        share = i / steps
        k = round(share * n)
        if k == 0:
            t = float(sorted_p[0]) - 1e-9
        elif k >= n:
            t = float(sorted_p[-1]) + 1e-9
        else:
            t = float((sorted_p[k - 1] + sorted_p[k]) / 2)
        shares.append(share)
        thresholds.append(t)
        quality.append(float((base + gain[k]) / top))
    return Calibration(tuple(shares), tuple(thresholds), tuple(quality))
