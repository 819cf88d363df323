"""`tokenomy router train` on a small sample builds a loadable router; `eval` prints the table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

pytest.importorskip("numpy")

from tokenomy.cli import cli
from tokenomy.embed import DIM
from tokenomy.routing.learned import Router

EASY = [
    "What is {a} plus {b}?",
    "Say hello to {a} in French.",
    "What colour is the sky on a clear day, number {a}?",
    "Spell the word cat {a} times.",
]
HARD = [
    "Prove that the sum of the first {a} odd numbers is a perfect square, then generalise to {b}.",
    "Write a Python function computing the {a}th Catalan number modulo {b} in O(n) time.",
    "A train leaves at {a}:00 at {b} km/h; another follows an hour later at 1.5 times that speed."
    " When and where does it catch up, and how far have both travelled?",
    "Derive the closed form of the recurrence T(n) = {a}T(n/2) + n^{b} and justify each step.",
]


def _sample(path: Path) -> Path:
    lines = []
    for i in range(12):
        for template, small in [(t, 1.0) for t in EASY] + [(t, 0.0) for t in HARD]:
            lines.append(
                {
                    "prompt": template.format(a=i + 2, b=i + 7),
                    "models": {
                        "small-model": {"score": small, "cost": "0.0001"},
                        "big-model": {"score": 1.0, "cost": "0.003"},
                    },
                }
            )
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    return path


def test_train_builds_a_loadable_router_and_eval_prints_the_table(tmp_path: Path) -> None:
    data = _sample(tmp_path / "outcomes.jsonl")
    out = tmp_path / "router.npz"
    runner = CliRunner()
    res = runner.invoke(
        cli, ["router", "train", "--data", str(data), "--out", str(out), "--holdout", "0.25"]
    )
    assert res.exit_code == 0, res.output
    assert "weak=small-model" in res.output and "strong=big-model" in res.output
    router = Router.load(out)
    assert router.heads == ("weak", "strong")
    # it learned the sample: easy prompts are likelier to be answered by the small model
    easy = router.score("What is 40 plus 41?")
    hard = router.score("Prove that the sum of the first 30 odd numbers is a perfect square.")
    assert easy > hard
    d = router.decide("What is 40 plus 41?", tiers=["small-model", "big-model"], strong_share=0.5)
    assert d.model == "small-model"

    res = runner.invoke(cli, ["router", "eval", "--data", str(data), "--router", str(out)])
    assert res.exit_code == 0, res.output
    assert "weak: small-model, strong: big-model, 96 prompts" in res.output
    assert "| router | APGR | CPT(50%) | CPT(80%) |" in res.output
    rows = {
        line.split("|")[1].strip(): line
        for line in res.output.splitlines()
        if line.startswith("| ")
    }
    assert {"random", "length", "learned"} <= set(rows)
    learned_apgr = float(rows["learned"].split("|")[2])
    # the sample is separable: the oracle APGR, 0.75 when half the prompts need strong
    assert learned_apgr == pytest.approx(0.75, abs=0.02)

    res = runner.invoke(
        cli, ["router", "eval", "--data", str(data), "--router", str(out), "--json"]
    )
    assert res.exit_code == 0, res.output
    payload = json.loads(res.output)
    assert payload["weak"] == "small-model"
    assert {r["router"] for r in payload["rows"]} == {"random", "length", "learned"}
    random_row = next(r for r in payload["rows"] if r["router"] == "random")
    assert 0.4 < random_row["apgr"] < 0.6
    assert random_row["saving_at_target"] is not None


def test_train_explains_bad_input(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "x", "models": {"a": {"score": 1.0}}}) + "\n")
    res = CliRunner().invoke(
        cli, ["router", "train", "--data", str(bad), "--out", str(tmp_path / "r.npz")]
    )
    assert res.exit_code != 0
    assert "at least two models" in res.output


def test_train_with_the_embedding_only(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")  # the embedding runs on it; the other tests do not
    import numpy as np

    data = _sample(tmp_path / "outcomes.jsonl")
    out = tmp_path / "embed.npz"
    args = ["router", "train", "--data", str(data), "--out", str(out), "--embed", "--hash-dim", "0"]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    router = Router.load(out)
    assert router.spec.embed and router.spec.hash_dim == 0
    assert router.weights.shape[1] == router.spec.dense + DIM
    # it learned the sample, and its weights on the embedding's columns are not all zero
    easy = router.score("What is 40 plus 41?")
    hard = router.score("Prove that the sum of the first 30 odd numbers is a perfect square.")
    assert easy > 0.5 > hard
    assert np.abs(router.weights[:, router.spec.dense :]).max() > 0


@pytest.mark.parametrize(
    ("entry", "message"),
    [({"score": 1.0, "cost": "x"}, "model 'a' cost 'x' is not a number of dollars"),
     ({"score": 1.0, "cost": "NaN"}, "model 'a' cost 'NaN' is not a number of dollars"),
     ({"score": 1.0, "cost": -1}, "model 'a' cost -1 is not a number of dollars"),
     ({"score": "high"}, "model 'a' score 'high' is not in [0, 1]"),
     ({"score": [1]}, "model 'a' score [1] is not in [0, 1]")],
)  # fmt: skip
def test_a_bad_score_or_cost_names_the_line(
    tmp_path: Path, entry: dict[str, object], message: str
) -> None:
    from tokenomy.errors import ConfigError
    from tokenomy.routing.learned.outcomes import read_all

    bad = tmp_path / "bad.jsonl"
    line = {"prompt": "x", "models": {"a": entry, "b": {"score": 0.0}}}
    bad.write_text(json.dumps(line) + "\n")
    with pytest.raises(ConfigError) as exc:
        read_all([str(bad)])
    assert exc.value.message == f"{bad}:1: {message}"
