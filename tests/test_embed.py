"""The local embedder: unit vectors whose dot product ranks paraphrases first."""

from __future__ import annotations

import pytest

np = pytest.importorskip("numpy")


def test_paraphrase_is_closer_than_an_unrelated_question() -> None:
    from tokenomy.embed import DIM, shared_embedder

    v = shared_embedder().embed(
        ["How do I learn Python?", "What is the best way to learn Python?", "How do I cook rice?"]
    )
    assert v.shape == (3, DIM)
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-4)
    sim = v @ v.T
    assert sim[0, 1] > 0.8 > 0.3 > sim[0, 2]


def test_batches_match_single_calls() -> None:
    from tokenomy.embed import shared_embedder

    e = shared_embedder()
    texts = ["short", "a somewhat longer sentence about token bills and gateways"]
    assert np.allclose(e.embed(texts, batch=1), e.embed(texts, batch=2), atol=1e-4)
