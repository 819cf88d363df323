"""Error-bounded thresholds on synthetic scores."""

from __future__ import annotations

import math

import pytest

np = pytest.importorskip("numpy")

from tokenomy.cache.semantic.calibrate import NEVER, threshold_for, upper_bound  # noqa: E402
from tokenomy.cache.semantic.verifier import pick_threshold  # noqa: E402


def test_clopper_pearson_upper_bound_matches_known_values() -> None:
    # zero errors in n: the bound is 1 - 0.05 ** (1 / n) ("rule of three" ~ 3/n)
    assert upper_bound(0, 100) == pytest.approx(1 - 0.05 ** (1 / 100), abs=1e-6)
    # 5 errors in 100: the p at which P(X <= 5) = 0.05
    p = upper_bound(5, 100)
    cdf = sum(math.comb(100, i) * p**i * (1 - p) ** (100 - i) for i in range(6))
    assert cdf == pytest.approx(0.05, abs=1e-6)
    assert 0.05 < p < 0.11
    assert upper_bound(3, 3) == 1.0
    assert upper_bound(0, 0) == 1.0


def test_threshold_keeps_the_bound_under_target_and_recall_grows_with_target() -> None:
    rng = np.random.default_rng(0)
    n = 20_000
    labels = (rng.random(n) < 0.4).astype(np.int8)
    scores = rng.normal(0.3 + 0.5 * labels, 0.15)
    recalls = []
    for target in (0.01, 0.02, 0.05):
        cal = threshold_for(scores, labels, target)
        served = scores >= cal.threshold
        wrong = int((served & (labels == 0)).sum())
        assert cal.hits == int(served.sum()) and cal.wrong == wrong
        assert wrong / cal.hits <= cal.upper <= target
        recalls.append((served & (labels == 1)).sum() / labels.sum())
    assert 0 < recalls[0] < recalls[1] < recalls[2]


def test_fresh_data_from_the_same_distribution_stays_under_target() -> None:
    rng = np.random.default_rng(1)

    def draw(n: int) -> tuple[object, object]:
        labels = (rng.random(n) < 0.4).astype(np.int8)
        return rng.normal(0.3 + 0.5 * labels, 0.15), labels

    cal = threshold_for(*draw(15_000), 0.02)
    scores, labels = draw(50_000)
    served = scores >= cal.threshold
    assert (served & (labels == 0)).sum() / served.sum() <= 0.02


def test_unreachable_target_serves_nothing() -> None:
    labels = np.array([1, 0] * 50, dtype=np.int8)
    scores = np.linspace(1, 0, 100)
    assert threshold_for(scores, labels, 0.01).threshold == NEVER


def test_a_target_between_grid_points_takes_the_safer_threshold() -> None:
    grid = {0.01: 0.9, 0.02: 0.8, 0.05: 0.6}
    assert pick_threshold(grid, 0.02) == 0.8
    assert pick_threshold(grid, 0.03) == 0.8
    assert pick_threshold(grid, 0.5) == 0.6
    assert pick_threshold(grid, 0.005) == NEVER
