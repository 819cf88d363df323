"""L2-regularised logistic regression, fitted in numpy: the learned router's heads
(`tokenomy.routing.learned.train`) and the semantic cache's verifier
(`tokenomy.cache.semantic.train`) are both one.

The loss is the mean cross-entropy plus ``l2 / 2`` times the squared weights (the
bias is not penalised), on standardised features: Newton's method for up to
`NEWTON_MAX_FEATURES` features, full-batch Adam beyond (a Hessian that large
costs more than it saves).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

NEWTON_MAX_FEATURES = 1024


def fit_logistic(
    x: NDArray[np.floating],
    y: NDArray[np.float64],
    l2: float | NDArray[np.float64],
    iterations: int = 30,
) -> tuple[NDArray[np.float64], float]:
    """Weights and bias; ``l2`` is one strength, or one per column of `x`."""
    import numpy as np

    n, f = x.shape
    if f > NEWTON_MAX_FEATURES:
        return _fit_adam(x, y, l2)
    xb = np.concatenate([x.astype(np.float64), np.ones((n, 1))], axis=1)
    w = np.zeros(f + 1)
    reg = np.zeros(f + 1)
    reg[:-1] = l2
    for _ in range(iterations):
        # clipped: exp would overflow on a logit past ~700, and p is 0 or 1 long before
        p = 1.0 / (1.0 + np.exp(-np.clip(xb @ w, -50, 50)))
        grad = xb.T @ (p - y) / n + reg * w
        hess = (xb * (p * (1 - p))[:, None]).T @ xb / n + np.diag(reg + 1e-9)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.max(np.abs(step)) < 1e-6:
            break
    return w[:-1], float(w[-1])


def _fit_adam(
    x: NDArray[np.floating],
    y: NDArray[np.float64],
    l2: float | NDArray[np.float64],
    steps: int = 400,
    lr: float = 0.02,
) -> tuple[NDArray[np.float64], float]:
    import numpy as np

    n, f = x.shape
    x = x.astype(np.float32, copy=False)
    w = np.zeros(f, dtype=np.float32)
    b = 0.0
    m, v = np.zeros(f, dtype=np.float32), np.zeros(f, dtype=np.float32)
    mb = vb = 0.0
    yf = y.astype(np.float32)
    for t in range(1, steps + 1):
        p = 1.0 / (1.0 + np.exp(-(x @ w + b)))
        err = (p - yf) / n
        gw = x.T @ err + l2 * w
        gb = float(err.sum())
        m = 0.9 * m + 0.1 * gw
        v = 0.999 * v + 0.001 * gw * gw
        mb = 0.9 * mb + 0.1 * gb
        vb = 0.999 * vb + 0.001 * gb * gb
        c1, c2 = 1 - 0.9**t, 1 - 0.999**t
        w -= lr * (m / c1) / (np.sqrt(v / c2) + 1e-8)
        b -= lr * (mb / c1) / (math.sqrt(vb / c2) + 1e-8)
    return w.astype(np.float64), b
