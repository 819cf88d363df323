"""Verifier features, and the shipped verifier on pairs a cosine gets wrong."""

from __future__ import annotations

import pytest

from tokenomy.cache.semantic.features import LEXICAL, lexical_features

np = pytest.importorskip("numpy")


def _f(a: str, b: str) -> dict[str, float]:
    return dict(zip(LEXICAL, lexical_features(a, b, 0.9), strict=True))


def test_numbers_names_negations_and_question_words_are_flagged() -> None:
    assert _f("Convert 100 USD to EUR", "Convert 500 USD to EUR")["numbers_differ"] == 1.0
    assert _f("Convert 1,000 USD", "Convert 1000 USD")["numbers_differ"] == 0.0
    assert _f("Why is Python popular?", "Why isn't Python popular?")["negation_mismatch"] == 1.0
    assert _f("Why is it not hot?", "Why is it never hot?")["negation_mismatch"] == 0.0
    assert _f("How do I visit Paris?", "How do I visit Rome?")["names_differ"] == 1.0
    assert _f("Is Paris nice?", "is paris nice?")["names_differ"] == 0.0
    same_wh = _f("What is RAM?", "What is ROM?")
    assert same_wh["question_words_differ"] == 0.0
    diff_wh = _f("Why did Rome fall?", "When did Rome fall?")
    assert diff_wh["question_words_differ"] == 1.0 == diff_wh["first_question_word_differs"]


def test_overlap_features_are_bounded_and_symmetric() -> None:
    a, b = "How can I learn Python quickly?", "What is the fastest way to learn Python?"
    ab, ba = lexical_features(a, b, 0.8), lexical_features(b, a, 0.8)
    assert ab == pytest.approx(ba)
    assert all(
        0.0 <= x <= 1.0 for x, name in zip(ab, LEXICAL, strict=True) if name != "word_len_log_ratio"
    )
    same = _f(a, a.upper())
    assert same["word_jaccard"] == 1.0 and same["same_normalized"] == 1.0


def _prob(a: str, b: str) -> float:
    from tokenomy.cache.semantic import shipped_verifier
    from tokenomy.embed import shared_embedder

    u, v = shared_embedder().embed([a, b])
    return shipped_verifier().probability(a, b, u, v)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("How do I convert 100 dollars to euros?", "How do I convert 500 dollars to euros?"),
        ("Why is Python popular?", "Why is Python not popular?"),
        ("When did World War 1 start?", "When did World War 2 start?"),
    ],
)
def test_the_verifier_rejects_what_a_high_cosine_accepts(a: str, b: str) -> None:
    from tokenomy.cache.semantic import shipped_verifier
    from tokenomy.embed import shared_embedder

    u, v = shared_embedder().embed([a, b])
    verifier = shipped_verifier()
    assert float(u @ v) >= verifier.cosine_threshold(0.2) or float(u @ v) > 0.85
    assert _prob(a, b) < verifier.threshold(0.2)


def test_the_verifier_accepts_a_plain_paraphrase() -> None:
    from tokenomy.cache.semantic import shipped_verifier

    p = _prob("How can I learn Python quickly?", "How can I learn Python fast?")
    assert p >= shipped_verifier().threshold(0.2)


def test_shipped_thresholds_tighten_as_the_target_falls() -> None:
    from tokenomy.cache.semantic import shipped_verifier

    v = shipped_verifier()
    grid = sorted(v.thresholds)
    assert {0.01, 0.02, 0.05} <= set(grid)
    thresholds = [v.thresholds[t] for t in grid]
    assert thresholds == sorted(thresholds, reverse=True)
    assert v.threshold(0.025) == v.thresholds[0.02]
