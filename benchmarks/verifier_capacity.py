#!/usr/bin/env python3
"""Would a bigger verifier reach the strict wrong-hit targets? Dev data only.

    .venv/bin/python benchmarks/verifier_capacity.py     # ~5 min once the embeddings are cached

Splits ``qqp_dev.jsonl`` exactly as ``tokenomy.cache.semantic.train`` does (the
question-cluster split into a training and a calibration part), trains small
MLPs (numpy: ReLU layers, dropout, Adam, cosine learning-rate decay; the epoch
count chosen by early stopping on the inner split of the training part, then
refitted on the whole training part) on the shipped feature vector and on it
plus ``u + v``, applies the shipped vetoes and accepts on top, and prints for
each rule, on the calibration part: the best recall at a wrong-hit rate of at
most 2/3/5/10% (thresholds scanned on that part: an upper bound for any
threshold) and the recall that `calibrate.threshold_for` certifies for those
targets (what the product would ship). Rows: the raw cosine, the shipped
logistic regression and the MLPs. ``qqp_test.jsonl`` is never read.
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path
from typing import Any

import numpy as np

from tokenomy.cache.semantic.calibrate import threshold_for
from tokenomy.cache.semantic.features import LEXICAL, batch_features
from tokenomy.cache.semantic.pairs import embed_pairs
from tokenomy.cache.semantic.train import (
    CALIBRATION_SHARE,
    cluster_split,
    default_cache_dir,
    default_data_dir,
)
from tokenomy.cache.semantic.verifier import shipped_verifier

TARGETS = (0.02, 0.03, 0.05, 0.10)
Array = np.ndarray[Any, Any]


def best_recall(scores: Array, labels: Array, rate: float) -> float:
    """The largest recall of any threshold whose wrong-hit rate is at most ``rate``."""
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order].astype(np.int64)
    right = np.cumsum(y)
    served = np.arange(1, len(s) + 1)
    ends = np.r_[s[1:] != s[:-1], True]  # a threshold serves all tied scores
    ok = ends & (served - right <= rate * served + 1e-12)
    return float(right[ok].max()) / float(y.sum()) if ok.any() else 0.0


class MLP:
    def __init__(self, inputs: int, hidden: tuple[int, ...], seed: int) -> None:
        rng = np.random.default_rng(seed)
        sizes = [inputs, *hidden, 1]
        self.w = [
            (rng.standard_normal((a, b)) * np.sqrt(2.0 / a)).astype(np.float32)
            for a, b in itertools.pairwise(sizes)
        ]
        self.b = [np.zeros(b, np.float32) for b in sizes[1:]]

    def params(self) -> int:
        return sum(w.size for w in self.w) + sum(b.size for b in self.b)

    def predict(self, x: Array) -> Array:
        out = []
        for i in range(0, len(x), 8192):
            h = x[i : i + 8192]
            for j, (w, b) in enumerate(zip(self.w, self.b, strict=True)):
                h = h @ w + b
                if j < len(self.w) - 1:
                    h = np.maximum(h, 0)
            out.append(h[:, 0])
        z = np.concatenate(out).astype(np.float64)
        return 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))

    def fit_epoch(
        self, x: Array, y: Array, rng: np.random.Generator, lr: float, opt: dict[str, Any]
    ) -> None:
        """One epoch of Adam (weight decay 1e-4 on weights; dropout 0.1 in, 0.3 hidden)."""
        layers = len(self.w)
        params = self.w + self.b
        for start in range(0, len(x), 256):
            idx = opt["perm"][start : start + 256]
            h = x[idx] * ((rng.random((len(idx), x.shape[1]), dtype=np.float32) > 0.1) / 0.9)
            acts, masks = [h], []
            for j in range(layers):
                h = h @ self.w[j] + self.b[j]
                if j < layers - 1:
                    mask = (h > 0) * ((rng.random(h.shape, dtype=np.float32) > 0.3) / 0.7)
                    h = h * mask
                    masks.append(mask)
                    acts.append(h)
            p = 1.0 / (1.0 + np.exp(-np.clip(h[:, 0], -50, 50)))
            g = ((p - y[idx]) / len(idx))[:, None].astype(np.float32)
            gw: list[Array] = [np.empty(0)] * layers
            gb: list[Array] = [np.empty(0)] * layers
            for j in range(layers - 1, -1, -1):
                gw[j], gb[j] = acts[j].T @ g, g.sum(0)
                if j > 0:
                    g = (g @ self.w[j].T) * masks[j - 1]
            opt["step"] += 1
            t = opt["step"]
            for k, (param, grad) in enumerate(zip(params, gw + gb, strict=True)):
                opt["m"][k] = 0.9 * opt["m"][k] + 0.1 * grad
                opt["v"][k] = 0.999 * opt["v"][k] + 0.001 * grad * grad
                step = (opt["m"][k] / (1 - 0.9**t)) / (np.sqrt(opt["v"][k] / (1 - 0.999**t)) + 1e-8)
                param -= lr * (step + (1e-4 * param if k < layers else 0))


def train(
    x: Array, y: Array, hidden: tuple[int, ...], epochs: int, val: tuple[Array, Array] | None = None
) -> tuple[MLP, int]:
    """Train for ``epochs`` (cosine decay from 1e-3); with ``val``, stop when its
    log-loss has not improved for 3 epochs and return the best epoch count."""
    rng = np.random.default_rng(1000)
    model = MLP(x.shape[1], hidden, seed=0)
    params = model.w + model.b
    opt: dict[str, Any] = {"step": 0, "m": [np.zeros_like(p) for p in params],
                           "v": [np.zeros_like(p) for p in params]}  # fmt: skip
    yf = y.astype(np.float32)
    best, best_epoch, stale = np.inf, epochs, 0
    for epoch in range(1, epochs + 1):
        opt["perm"] = rng.permutation(len(x))
        model.fit_epoch(x, yf, rng, 1e-3 * 0.5 * (1 + np.cos(np.pi * (epoch - 1) / epochs)), opt)
        if val is not None:
            p = np.clip(model.predict(val[0]), 1e-7, 1 - 1e-7)
            loss = float(-np.mean(val[1] * np.log(p) + (1 - val[1]) * np.log(1 - p)))
            if loss < best - 1e-4:
                best, best_epoch, stale = loss, epoch, 0
            else:
                stale += 1
                if stale >= 3:
                    break
    return model, best_epoch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--data", type=Path, default=default_data_dir())
    ap.add_argument("--cache-dir", type=Path, default=default_cache_dir())
    args = ap.parse_args()
    started = time.time()
    pairs = embed_pairs(args.data / "cache" / "qqp_dev.jsonl", cache_dir=args.cache_dir)
    held = cluster_split(pairs.a, pairs.b, CALIBRATION_SHARE, "calibration")
    tr, cal = pairs.subset(np.flatnonzero(~held)), pairs.subset(np.flatnonzero(held))
    xt, xc = batch_features(tr.a, tr.b, tr.u, tr.v), batch_features(cal.a, cal.b, cal.u, cal.v)
    yt, yc = tr.labels.astype(np.float64), cal.labels.astype(np.int64)
    inner = cluster_split(tr.a, tr.b, 0.2, "inner")
    print(f"qqp_dev: {len(tr)} training pairs, {len(cal)} calibration pairs "
          f"({int(yc.sum())} duplicates)\n")  # fmt: skip

    veto = [LEXICAL.index("numbers_differ"), LEXICAL.index("negation_mismatch")]
    accept = [LEXICAL.index("same_normalized")]
    rules: dict[str, tuple[Array, str]] = {
        "cosine": (xc[:, 0].astype(np.float64), "-"),
        "shipped logistic regression": (shipped_verifier().probabilities(xc), "804"),
    }
    sets = {"shipped features": (xt, xc),
            "shipped features + u+v": (np.hstack([xt, tr.u + tr.v]), np.hstack([xc, cal.u + cal.v]))}  # fmt: skip
    for name, (a, c) in sets.items():
        mean, scale = a.mean(0), a.std(0) + 1e-6
        xs, cs = ((a - mean) / scale).astype(np.float32), ((c - mean) / scale).astype(np.float32)
        hidden = (512, 256)
        _, epochs = train(xs[~inner], yt[~inner], hidden, 30, val=(xs[inner], yt[inner]))
        model, _ = train(xs, yt, hidden, epochs)
        p = model.predict(cs)
        p[(xc[:, accept] > 0.5).any(axis=1)] = 1.0
        p[(xc[:, veto] > 0.5).any(axis=1)] = 0.0
        rules[f"MLP 512x256, {name} ({epochs} epochs)"] = (p, f"{model.params():,}")

    head = " / ".join(f"≤{t:.0%}" for t in TARGETS)
    print(f"| rule | parameters | best recall at wrong-hit rate {head} | "
          f"certified recall at target {head} |")  # fmt: skip
    print("|---|---:|---:|---:|")  # one column per rule, the rates separated by slashes
    for name, (scores, params) in rules.items():
        best = " / ".join(f"{best_recall(scores, yc, t):.1%}" for t in TARGETS)
        certified = []
        for t in TARGETS:
            c = threshold_for(scores, yc, t)
            certified.append(f"{(c.hits - c.wrong) / int(yc.sum()):.1%}")
        print(f"| {name} | {params} | {best} | {' / '.join(certified)} |")
    print(f"\n(took {time.time() - started:.0f} s)")


if __name__ == "__main__":
    main()
