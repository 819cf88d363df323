"""The learned router: metrics on hand-computed cases, the knob, the agreement scorer,
the outcome format, and the shipped router's load and decision path."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from tokenomy.errors import ConfigError
from tokenomy.routing.learned import agreement, normalize_answer
from tokenomy.routing.learned.metrics import cost_at, curve
from tokenomy.routing.learned.outcomes import Outcome, parse, read, write

WEAK = [0.0, 0.0, 1.0, 1.0]
STRONG = [1.0, 1.0, 1.0, 1.0]


def test_oracle_curve_apgr_and_cpt_by_hand() -> None:
    # the two prompts the weak model fails go to the strong model first
    c = curve([1.0, 1.0, 0.0, 0.0], WEAK, STRONG)
    assert c.quality == [0.5, 0.75, 1.0, 1.0, 1.0]
    assert c.pgr == [0.0, 0.5, 1.0, 1.0, 1.0]
    # trapezoids of width 1/4: (0+.5)/2 + (.5+1)/2 + 1 + 1, over 4
    assert c.apgr() == pytest.approx(0.75)
    assert c.cpt(0.5) == 0.25
    assert c.cpt(0.8) == 0.5
    assert c.share_for_quality(0.95) == 0.5


def test_worst_router_and_constant_router() -> None:
    worst = curve([0.0, 0.0, 1.0, 1.0], WEAK, STRONG)
    assert worst.pgr == [0.0, 0.0, 0.0, 0.5, 1.0]
    assert worst.apgr() == pytest.approx(0.25)
    # a constant score is the random router's expectation: a straight line, APGR 0.5
    flat = curve([0.3] * 4, WEAK, STRONG)
    assert flat.pgr == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])
    assert flat.apgr() == pytest.approx(0.5)
    assert flat.cpt(0.5) == 0.5


def test_always_strong_and_always_weak_endpoints() -> None:
    c = curve([0.1, 0.9, 0.5, 0.2], [0.0, 1.0, 0.0, 1.0], [1.0, 1.0, 0.0, 1.0])
    assert c.quality_at(0.0) == c.q_weak == 0.5
    assert c.quality_at(1.0) == c.q_strong == 0.75
    assert c.pgr[0] == 0.0 and c.pgr[-1] == 1.0


def test_cost_at_share_with_ties_spread_evenly() -> None:
    weak_cost = [Decimal("1")] * 4
    strong_cost = [Decimal("10")] * 4
    assert cost_at([1.0, 1.0, 0.0, 0.0], weak_cost, strong_cost, 0.5) == Decimal(22)
    assert cost_at([1.0, 0.0, 0.0, 0.0], weak_cost, strong_cost, 0.5) == Decimal(22)
    assert cost_at([0.0] * 4, weak_cost, strong_cost, 1.0) == Decimal(40)
    assert cost_at([0.0] * 4, weak_cost, strong_cost, 0.0) == Decimal(4)


def test_curve_rejects_mismatched_lengths() -> None:
    with pytest.raises(ValueError):
        curve([1.0], [0.0, 1.0], [1.0, 1.0])


def test_calibration_table_is_monotonic_and_reaches_targets() -> None:
    from tokenomy.routing.learned.calibration import calibrate

    probs = [0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9]
    weak = [0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0]
    strong = [1.0] * 8
    cal = calibrate(probs, weak, strong, steps=8)
    assert list(cal.threshold) == sorted(cal.threshold)
    assert cal.quality[0] == pytest.approx(5 / 8) and cal.quality[-1] == pytest.approx(1.0)
    # 2 strong calls fix 2 of 3 failures; the third needs the 4th call
    assert cal.share_for_quality(7 / 8) == pytest.approx(2 / 8)
    assert cal.share_for_quality(1.0) == pytest.approx(4 / 8)
    t_quarter = cal.threshold_for_share(0.25)
    assert sum(p < t_quarter for p in probs) == 2


def test_calibration_spreads_tied_win_scores_as_the_evaluation_does() -> None:
    """Prompts with the same win score go strong together, in no order of their own:
    the quality kept at a share is the expected one (as `metrics.curve` counts it),
    not that of the order the held-out prompts came in."""
    from tokenomy.routing.learned.calibration import calibrate

    win, weak, strong = [0.5, 0.5, 0.9], [0.0, 1.0, 1.0], [1.0, 1.0, 1.0]
    forward = calibrate(win, weak, strong, steps=3)
    backward = calibrate(win[::-1], weak[::-1], strong[::-1], steps=3)
    assert forward.quality == backward.quality
    # one of the two tied prompts goes strong: half a failure fixed, on average
    assert forward.quality[1] == pytest.approx((2 + 0.5) / 3)
    assert forward.quality[1] == curve([-w for w in win], weak, strong).quality[1]


def test_the_evaluated_pair_is_the_trained_routers_default_heads() -> None:
    """`router eval` compares the models `router train` would route between: ranked
    by cost as soon as each has one (not by score when a cost is missing somewhere),
    and ties in the order the models first appear (not a set's, which varies)."""
    from tokenomy.routing.learned.evaluate import pick_pair
    from tokenomy.routing.learned.train import default_heads

    def o(models: dict[str, tuple[float, str | None]]) -> Outcome:
        costs = {m: Decimal(c) for m, (_, c) in models.items() if c is not None}
        return Outcome("p", {m: s for m, (s, _) in models.items()}, costs)

    partly_priced = [
        o({"a": (0.2, "1"), "b": (0.9, "0.1"), "c": (0.5, None)}),
        o({"a": (0.3, "1"), "b": (0.8, None), "c": (0.6, "0.5")}),
    ]
    tied = [o({m: (0.5, None) for m in "qwertyuiop"})]
    for outcomes in (partly_priced, tied):
        heads = default_heads(outcomes)
        pair = pick_pair(outcomes)
        assert (pair.weak, pair.strong) == (heads[0].models[0], heads[1].models[0])
    assert [h.models[0] for h in default_heads(partly_priced)] == ["b", "a"]
    assert [h.models[0] for h in default_heads(tied)] == ["q", "p"]


@pytest.mark.parametrize(
    ("answers", "score"),
    [
        (["42", "42.0", "$42", "The answer is 42."], 1.0),
        (["(B)", "b.", "The answer is B", "C"], 0.75),
        (["5/1/2021", "05/01/2021", "04/30/2021"], 2 / 3),
        (["yes", "no"], 0.5),
        ([], 0.0),
    ],
)
def test_agreement(answers: list[str], score: float) -> None:
    assert agreement(answers) == pytest.approx(score)


def test_normalize_answer_numbers_and_choices() -> None:
    assert normalize_answer("1,234.50") == "1234.5"
    assert normalize_answer(" (c) ") == "C"
    assert normalize_answer("So he has 5 apples, then 7 more, which makes 12 in total") == "12"
    assert normalize_answer("More Likely") == "more likely"


def test_outcome_format_round_trip(tmp_path: Path) -> None:
    rows = [
        Outcome("What is 2+2?", {"big": 1.0, "small": 1.0}, {"big": Decimal("0.0021")}),
        parse(
            {
                "messages": [
                    {"role": "system", "content": "be brief"},
                    {"role": "user", "content": "Hi"},
                ],
                "models": {"big": {"score": 0.5, "cost": 0.001}, "small": {"score": 0}},
                "id": "r2",
            }
        ),
    ]
    path = tmp_path / "o.jsonl"
    assert write(rows, path) == 2
    back = list(read(path))
    assert back[0].prompt == "What is 2+2?" and back[0].costs == {"big": Decimal("0.0021")}
    assert back[1].prompt == "Hi" and back[1].scores == {"big": 0.5, "small": 0.0}
    assert back[1].costs == {"big": Decimal("0.001")} and back[1].extra == {"id": "r2"}


@pytest.mark.parametrize(
    "bad",
    [
        {"models": {"a": {"score": 1}}},
        {"prompt": "x"},
        {"prompt": "x", "models": {"a": {"score": 2}}},
        {"prompt": "x", "models": {"a": {"cost": 1}}},
    ],
)
def test_outcome_format_rejects_bad_lines(bad: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        parse(bad, "line 1")
