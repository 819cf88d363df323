"""Train and calibrate the shipped verifier (``verifier.json``) on QQP dev pairs.

    python -m tokenomy.cache.semantic.train [--data ../shared/data] [--out verifier.json]

Only **dev** data is used: ``cache/qqp_dev.jsonl`` is split by question cluster
(pairs that share a question, directly or through other pairs, stay on one side)
into a training part and a held-out calibration part. The logistic regression is
fitted on the training part (its L2 strength chosen on an inner split of it),
and the acceptance thresholds for every target wrong-hit rate are calibrated on
the calibration part (`calibrate.threshold_for`), as are the cosine thresholds of
the raw-cosine baseline. Deterministic: the same data gives the same file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...logistic import fit_logistic
from .calibrate import threshold_for
from .features import LEXICAL, batch_features
from .pairs import Pairs, embed_pairs
from .verifier import WEIGHTS, Verifier

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

REPO = Path(__file__).resolve().parents[4]
DATA_ENV = "TOKENOMY_DATA_DIR"
TARGETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.15, 0.2)
CALIBRATION_SHARE = 0.3
# lexical flags considered as vetoes; one is adopted when, among the training
# pairs that raise it, at least VETO_SHARE are not duplicates
VETO_CANDIDATES = ("numbers_differ", "negation_mismatch")
VETO_SHARE = 0.75
ACCEPTS = ("same_normalized",)
L2_GRID = (1000.0, 3000.0, 10000.0)  # the 768 embedding columns
LEXICAL_L2_GRID = (1.0, 30.0)  # the few lexical columns


def default_data_dir() -> Path:
    return Path(os.environ.get(DATA_ENV) or REPO.parent / "shared" / "data")


def default_cache_dir() -> Path:
    return REPO / "benchmarks" / ".cache"


def cluster_split(a: list[str], b: list[str], share: float, salt: str) -> NDArray[np.bool_]:
    """True for pairs in the held-out part: whole question clusters (union-find over
    the texts) go to one side, chosen by a hash of the cluster's smallest text."""
    import numpy as np

    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for x, y in zip(a, b, strict=True):
        rx, ry = find(x), find(y)
        if rx != ry:
            parent[max(rx, ry)] = min(rx, ry)

    def held_out(text: str) -> bool:
        h = hashlib.sha256((salt + find(text)).encode()).digest()
        return int.from_bytes(h[:8], "big") / 2**64 < share

    return np.array([held_out(x) for x in a], dtype=bool)


def _fit(
    x: NDArray[np.float64], y: NDArray[np.float64], l2: float, lexical_l2: float
) -> tuple[NDArray[np.float64], float]:
    """The grid's strengths are on the summed loss (`fit_logistic` takes the mean's),
    and the few lexical columns (first) are penalised less than the embedding's."""
    import numpy as np

    penalty = np.full(x.shape[1], l2)
    penalty[: len(LEXICAL)] = lexical_l2
    return fit_logistic(x, y, penalty / len(x), iterations=12)


def _log_loss(p: NDArray[np.float64], y: NDArray[np.float64]) -> float:
    import numpy as np

    p = np.clip(p, 1e-9, 1 - 1e-9)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def train(pairs: Pairs, *, log: Any = print) -> dict[str, Any]:
    """Fit and calibrate; returns the JSON-ready verifier."""
    import numpy as np

    held = cluster_split(pairs.a, pairs.b, CALIBRATION_SHARE, "calibration")
    tr, cal = pairs.subset(np.flatnonzero(~held)), pairs.subset(np.flatnonzero(held))
    log(f"train pairs {len(tr)}, calibration pairs {len(cal)}")
    x = batch_features(tr.a, tr.b, tr.u, tr.v).astype(np.float64)
    y = tr.labels.astype(np.float64)
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-6
    xs = (x - mean) / scale

    inner = cluster_split(tr.a, tr.b, 0.2, "inner")
    best, best_loss = (L2_GRID[0], LEXICAL_L2_GRID[0]), float("inf")
    for l2 in L2_GRID:
        for lex in LEXICAL_L2_GRID:
            w, b = _fit(xs[~inner], y[~inner], l2, lex)
            loss = _log_loss(1 / (1 + np.exp(-(xs[inner] @ w + b))), y[inner])
            log(f"l2={l2:g} lexical l2={lex:g}: inner validation log-loss {loss:.4f}")
            if loss < best_loss:
                best, best_loss = (l2, lex), loss
    w, b = _fit(xs, y, *best)
    # fold the standardisation into the weights: one dot product at run time
    weights = w / scale
    bias = b - float((w * mean / scale).sum())

    vetoes = []
    for name in VETO_CANDIDATES:
        raised = x[:, LEXICAL.index(name)] > 0.5
        share = float(1 - y[raised].mean()) if raised.any() else 0.0
        log(f"veto {name}: {int(raised.sum())} training pairs, {share:.1%} not duplicates")
        if share >= VETO_SHARE:
            vetoes.append({"feature": name, "pairs": int(raised.sum()), "not_duplicate": share})
    model = Verifier(
        weights=weights.astype(np.float32),
        bias=bias,
        thresholds={},
        cosine_thresholds={},
        meta={},
        vetoes=tuple(LEXICAL.index(v["feature"]) for v in vetoes),
        accepts=tuple(LEXICAL.index(a) for a in ACCEPTS),
    )
    xc = batch_features(cal.a, cal.b, cal.u, cal.v)
    prob = model.probabilities(xc)
    cos = xc[:, 0].astype(np.float64)
    labels = cal.labels
    verifier_cal = [threshold_for(prob, labels, t) for t in TARGETS]
    cosine_cal = [threshold_for(cos, labels, t) for t in TARGETS]
    positives = int(labels.sum())
    for v, c in zip(verifier_cal, cosine_cal, strict=True):
        log(
            f"target {v.target:>5.1%}: verifier p>={v.threshold:.4f} recall "
            f"{(v.hits - v.wrong) / positives:.3f} | cosine>={c.threshold:.4f} recall "
            f"{(c.hits - c.wrong) / positives:.3f}"
        )
    return {
        "version": 1,
        "model": "logistic regression",
        "features": [*LEXICAL, "u*v[384]", "|u-v|[384]"],
        "trained_on": "qqp_dev.jsonl (question-cluster split: "
        f"{len(tr)} train / {len(cal)} calibration pairs)",
        "l2": best[0],
        "lexical_l2": best[1],
        "confidence": 0.95,
        "calibration_positives": positives,
        "vetoes": vetoes,
        "accepts": list(ACCEPTS),
        "thresholds": [v.as_dict() for v in verifier_cal],
        "cosine_thresholds": [c.as_dict() for c in cosine_cal],
        "bias": round(bias, 6),
        "weights": [float(f"{x:.6g}") for x in weights],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=default_data_dir(), help="data directory")
    parser.add_argument("--cache-dir", type=Path, default=default_cache_dir())
    parser.add_argument("--out", type=Path, default=WEIGHTS)
    args = parser.parse_args(argv)
    pairs = embed_pairs(args.data / "cache" / "qqp_dev.jsonl", cache_dir=args.cache_dir)
    result = train(pairs)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
