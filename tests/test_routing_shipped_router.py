"""tokenomy/auto with the router shipped in the package (no stub), through the gateway."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway_fixtures import Fake
from routing_helpers import chat, route_of, routed_gateway

pytest.importorskip("numpy")  # the shipped router has no embedding: no onnxruntime

EASY = "What is the capital of France?"
HARD = (
    "Let f(x) = x^3 - 6x^2 + 11x - 6. Prove that for every integer n > 3 the number f(n) is "
    "divisible by 6, and find all real x such that f(f(x)) = 0. Show every step."
)
TIERS = ["gpt-4o-mini", "gpt-4o"]


def test_shipped_router_separates_an_easy_and_a_hard_prompt(
    fake: Fake, fake_llamacpp: Fake, tmp_path: Path
) -> None:
    from tokenomy.routing.learned import Router

    router = Router.load()
    # A quality target whose threshold falls between the two prompts' scores.
    easy, hard = router.score(EASY), router.score(HARD)
    assert hard < easy
    grid = [round(0.5 + i * 0.0025, 4) for i in range(201)]
    target = next(q for q in grid if hard < router.threshold(quality_target=q) <= easy)
    routing = {"tiers": TIERS, "quality_target": target}
    for gw in routed_gateway(tmp_path, fake, fake_llamacpp, routing):
        a = chat(gw, "tokenomy/auto", EASY)
        b = chat(gw, "tokenomy/auto", HARD)
        assert a.status == b.status == 200 and a.record and b.record
        assert a.record.served_model == "gpt-4o-mini"
        assert b.record.served_model == "gpt-4o"
        for answer, text in ((a, EASY), (b, HARD)):
            route = route_of(answer.record)
            direct = router.decide([{"role": "user", "content": text}], TIERS,
                                   quality_target=target)  # fmt: skip
            assert route["reason"] == "router" and route["quality_target"] == target
            assert route["predicted_quality"] == pytest.approx(direct.predicted_quality, abs=1e-3)
            assert route["router_ms"] > 0
