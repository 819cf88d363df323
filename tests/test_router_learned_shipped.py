"""The shipped router: loads, decides, and a stricter knob never sends fewer prompts to strong."""

from __future__ import annotations

import pytest

pytest.importorskip("numpy")  # the shipped router has no embedding: no onnxruntime

from tokenomy.routing.learned import Decision, Router

EASY = "What is the capital of France?"
HARD = (
    "Let f(x) = x^3 - 6x^2 + 11x - 6. Prove that for every integer n > 3 the number f(n) is "
    "divisible by 6, and find all real x such that f(f(x)) = 0. Show every step."
)
PROMPTS = [
    EASY,
    HARD,
    "Translate 'good morning' into Spanish.",
    "Write a Python function that merges k sorted linked lists in O(n log k) time.",
    "Janet has 3 apples and buys 5 more. How many apples does she have?",
    "Which of the following is a prime number?\nA. 21\nB. 27\nC. 29\nD. 33\nAnswer:",
]


@pytest.fixture(scope="module")
def router() -> Router:
    return Router.load()


def test_shipped_router_loads_and_decides(router: Router) -> None:
    d = router.decide(EASY, tiers=["mini", "max"], quality_target=0.95)
    assert isinstance(d, Decision)
    assert d.model in ("mini", "max")
    assert set(d.scores) == {"mini", "max"}
    assert 0.0 <= d.predicted_quality <= 1.0
    assert d.reason.startswith("learned")
    assert 0.0 <= router.score(EASY) <= 1.0
    # chat messages are read too: the user turns
    msgs = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": EASY}]
    assert router.score(msgs) == pytest.approx(router.score(EASY), abs=1e-6)


def test_stricter_quality_target_never_sends_fewer_to_strong(router: Router) -> None:
    targets = [0.5, 0.8, 0.9, 0.95, 0.98, 0.99, 1.0]
    strong_counts = []
    last_t = -1.0
    for q in targets:
        t = router.threshold(quality_target=q)
        assert t >= last_t
        last_t = t
        decisions = [router.decide(p, quality_target=q) for p in PROMPTS]
        strong_counts.append(sum(d.model == "strong" for d in decisions))
    assert strong_counts == sorted(strong_counts)
    assert strong_counts[-1] > strong_counts[0]


def test_strong_share_knob_is_monotonic(router: Router) -> None:
    shares = [0.0, 0.2, 0.5, 0.8, 1.0]
    counts = [
        sum(router.decide(p, strong_share=s).model == "strong" for p in PROMPTS) for s in shares
    ]
    assert counts == sorted(counts)
    assert counts[0] == 0 or counts[0] < counts[-1]
    assert counts[-1] == len(PROMPTS)


def test_hard_prompt_needs_more_than_easy_prompt(router: Router) -> None:
    easy, hard = router.score(EASY), router.score(HARD)
    assert hard < easy
    # at a threshold between the two, the easy prompt stays cheap and the hard one goes strong
    t = (easy + hard) / 2
    share = next(
        s
        for s, th in zip(router.calibration.share, router.calibration.threshold, strict=True)
        if th >= t
    )
    assert router.decide(EASY, strong_share=share).model == "weak"
    assert router.decide(HARD, strong_share=share).model == "strong"


def test_many_tiers_cheapest_that_reaches_the_threshold(router: Router) -> None:
    tiers = ["nano", "mini", "full", "max"]
    for p in PROMPTS:
        for q in (0.8, 0.95, 0.99):
            d = router.decide(p, tiers=tiers, quality_target=q)
            assert d.model in tiers
            cheaper = tiers[: tiers.index(d.model)]
            assert all(d.win[c] < d.threshold for c in cheaper)
            if d.model != tiers[-1]:
                assert d.win[d.model] >= d.threshold
            # tiers are placed on the heads in order: a dearer tier never predicts worse
            qualities = [d.scores[t] for t in tiers]
            assert qualities == sorted(qualities)
    # stricter target: the chosen tier never gets cheaper
    for p in PROMPTS:
        picks = [
            tiers.index(router.decide(p, tiers=tiers, quality_target=q).model)
            for q in (0.8, 0.95, 0.99, 1.0)
        ]
        assert picks == sorted(picks)
