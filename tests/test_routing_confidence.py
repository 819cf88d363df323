"""The draft model's own confidence, read from the log probabilities it returned."""

from __future__ import annotations

import math
from typing import Any

import pytest

from tokenomy.routing.learned.confidence import confidence, reply_confidence, token_logprobs


def choice(*values: Any) -> dict[str, Any]:
    return {"logprobs": {"content": [{"token": "t", "logprob": v} for v in values]}}


def test_the_geometric_mean_probability_of_the_tokens() -> None:
    assert confidence([math.log(0.5), math.log(0.8)]) == pytest.approx(math.sqrt(0.4))
    assert confidence([0.0, 0.0]) == 1.0
    assert confidence([-9999.0]) == pytest.approx(0.0)  # OpenAI's floor
    assert confidence([-math.inf, 0.0]) == 0.0
    assert confidence([]) is None


def test_odd_log_probabilities_are_read_safely() -> None:
    # NaN, strings, booleans and missing values are skipped; a positive log
    # probability (a probability over 1) counts as certain, never above 1
    assert token_logprobs(choice(-1.0, "x", None, True, math.nan, 0.5)) == [-1.0, 0.0]
    for odd in (None, "x", {}, {"logprobs": None}, {"logprobs": {"content": None}},
                {"logprobs": {"content": "x"}}, {"logprobs": {"content": [1, "x", None]}}):  # fmt: skip
        assert token_logprobs(odd) == []
    assert confidence(token_logprobs(choice(5.0))) == 1.0


def test_a_reply_is_scored_by_its_first_choice() -> None:
    assert reply_confidence({"choices": [choice(math.log(0.25))]}) == pytest.approx(0.25)
    refusal = {"logprobs": {"content": None, "refusal": [{"token": "no", "logprob": -0.1}]}}
    for reply in ({"choices": []}, {"choices": [refusal]}, {"choices": "x"}, None, []):
        assert reply_confidence(reply) is None
