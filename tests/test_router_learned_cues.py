"""The difficulty cues and their place in the feature layout; old routers keep theirs."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tokenomy.routing.learned import Router
from tokenomy.routing.learned.cues import CUES, cues
from tokenomy.routing.learned.features import LEXICAL, Spec, featurize, lexical
from tokenomy.routing.learned.outcomes import Outcome
from tokenomy.routing.learned.train import Head, train

WORD_PROBLEM = (
    "Tom has 12 apples. He gives half of them to Ann, then buys 30 more. "
    "How many apples does he have in total?"
)


def test_cues_count_what_they_name() -> None:
    got = dict(zip(CUES, cues(WORD_PROBLEM), strict=True))
    assert got["sentences"] == pytest.approx(math.log1p(3))
    assert got["distinct_numbers"] == pytest.approx(math.log1p(2))
    assert got["largest_number"] == pytest.approx(math.log1p(30) / 10)
    # half, how many, total
    assert got["arithmetic_words"] == pytest.approx(math.log1p(3))
    assert got["step_words"] == pytest.approx(math.log1p(1))  # then
    assert got["fractions"] == 0.0
    assert got["science_words"] == 0.0
    assert got["negations"] == 0.0
    science = dict(
        zip(CUES, cues("Which is NOT a unit of energy or force? 2.5% of 1,000"), strict=True)
    )
    assert science["science_words"] == pytest.approx(math.log1p(2))
    assert science["negations"] == pytest.approx(math.log1p(1))
    assert science["fractions"] == pytest.approx(math.log1p(2))  # 2.5 and %
    assert science["largest_number"] == pytest.approx(math.log1p(1000) / 10)


def test_cues_sit_between_the_lexical_counts_and_the_hashed_words() -> None:
    with_cues, without = Spec(hash_dim=32), Spec(hash_dim=32, cues=False)
    assert with_cues.width == without.width + len(CUES)
    a = featurize([WORD_PROBLEM], with_cues)[0]
    b = featurize([WORD_PROBLEM], without)[0]
    n = len(LEXICAL)
    assert list(a[:n]) == pytest.approx(lexical(WORD_PROBLEM))
    assert list(a[n : n + len(CUES)]) == pytest.approx(cues(WORD_PROBLEM))
    assert list(a[n + len(CUES) :]) == pytest.approx(list(b[n:]))


def _outcomes() -> list[Outcome]:
    easy = [f"What is {i} plus one?" for i in range(40)]
    hard = [WORD_PROBLEM.replace("12", str(i + 13)) + " Explain each step." for i in range(40)]
    out = [Outcome(p, {"weak": 1.0, "strong": 1.0}) for p in easy]
    return out + [Outcome(p, {"weak": 0.0, "strong": 1.0}) for p in hard]


def test_router_trained_with_cues_round_trips(tmp_path: Path) -> None:
    trained = train(
        _outcomes(), [Head("weak", ("weak",)), Head("strong", ("strong",))], spec=Spec(hash_dim=64)
    )
    path = tmp_path / "cues.npz"
    trained.router.save(path)
    loaded = Router.load(path)
    assert loaded.spec == Spec(hash_dim=64, cues=True)
    assert loaded.score(WORD_PROBLEM) < loaded.score("What is 3 plus one?")


def test_router_saved_before_the_cues_loads_without_them(tmp_path: Path) -> None:
    trained = train(
        _outcomes(),
        [Head("weak", ("weak",)), Head("strong", ("strong",))],
        spec=Spec(hash_dim=64, cues=False),
    )
    router = trained.router
    del router.meta["features"]["cues"]  # what a weights file from before the cues holds
    path = tmp_path / "old.npz"
    router.save(path)
    loaded = Router.load(path)
    assert loaded.spec == Spec(hash_dim=64, cues=False)
    assert loaded.features(["x"]).shape == (1, len(LEXICAL) + 64)
    assert loaded.score(WORD_PROBLEM) == pytest.approx(router.score(WORD_PROBLEM), abs=1e-3)
