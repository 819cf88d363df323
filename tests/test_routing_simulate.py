"""The what-if simulator with the learned router as a policy (``simulate --auto``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from tokenomy.cli import cli
from tokenomy.insights.route_policy import LearnedRoute
from tokenomy.insights.simulate import simulate
from tokenomy.insights.traffic import Request, Traffic
from tokenomy.usage import Usage


@dataclass
class Decision:
    model: str
    predicted_quality: float


class Stub:
    def decide(self, prompt: Any, tiers: Sequence[str], *, quality_target: float) -> Decision:
        return Decision(tiers[0], 0.97) if "simple" in prompt else Decision(tiers[-1], 0.9)


def test_router_policy_moves_what_it_routes_to_the_cheap_tier() -> None:
    reqs = [
        Request("a", "gpt-4o", Usage(1000, 500), provider="openai", prompt="a simple one"),
        Request("b", "gpt-4o", Usage(1000, 500), provider="openai", prompt="a hard proof"),
        Request("c", "gpt-4o", Usage(1000, 500), provider="openai"),  # no prompt
    ]
    policy = LearnedRoute(("gpt-4o-mini", "gpt-4o"), 0.95, router=Stub())
    sim = simulate(Traffic(reqs, "test"), [policy])
    [result] = sim.results
    assert result.changed == 1
    assert result.saving is not None and result.saving > 0
    assert "gpt-4o-mini 1, gpt-4o 1" in result.quality
    assert "mean predicted p(good answer) 0.935" in result.quality
    assert "1 requests without a prompt" in result.quality


def test_simulate_cli_auto_with_the_shipped_router(tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    lines = []
    for i, text in enumerate(["What is the capital of France?", "Say hi."]):
        lines.append({
            "request": {"model": "gpt-4o", "messages": [{"role": "user", "content": text}]},
            "response": {"id": f"r{i}", "model": "gpt-4o",
                         "usage": {"prompt_tokens": 20, "completion_tokens": 10}},
        })  # fmt: skip
    log.write_text("\n".join(json.dumps(x) for x in lines))
    args = ["simulate", "--jsonl", str(log), "--auto", "gpt-4o-mini,gpt-4o", "0.95",
            "--format", "json", "--db", str(tmp_path / "x.db")]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    [policy] = json.loads(result.output)["policies"]
    assert policy["policy"] == "router over gpt-4o-mini, gpt-4o at quality 0.95"
    assert "router's choice on 2 prompts" in policy["quality"]
    bad = CliRunner().invoke(cli, ["simulate", "--jsonl", str(log), "--auto", "gpt-4o", "0.9"])
    assert bad.exit_code != 0 and "two tiers" in bad.output
