"""`tokenomy cache eval` on a small pairs file written here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tokenomy.cli import cli

pytest.importorskip("numpy")

PAIRS = [
    ("How can I learn Python quickly?", "How can I learn Python fast?", 1),
    ("How do I reset my password?", "How can I reset my password?", 1),
    ("What is the capital of France?", "What is the capital of France?", 1),
    ("Why is the sky blue?", "Why is the sea salty?", 0),
    ("How do I convert 100 dollars to euros?", "How do I convert 500 dollars to euros?", 0),
    ("Who wrote Hamlet?", "What is the best laptop for programming?", 0),
]


def _write(tmp_path: Path) -> Path:
    path = tmp_path / "pairs.jsonl"
    path.write_text(
        "".join(json.dumps({"text_a": a, "text_b": b, "label": y}) + "\n" for a, b, y in PAIRS)
    )
    return path


def test_cache_eval_json_counts_served_hits(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        [
            "cache",
            "eval",
            "--pairs",
            str(_write(tmp_path)),
            "--target",
            "0.2",
            "--target",
            "0.02",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["pairs"] == 6 and out["duplicates"] == 3
    assert set(out["targets"]) == {"0.2", "0.02"}
    ours = out["targets"]["0.2"]["verifier"]
    # the paraphrases are served; the numbers differ pair and the unrelated pairs are not
    assert ours["hits"] == 3 and ours["wrong"] == 0 and ours["recall"] == 1.0
    base = out["targets"]["0.2"]["cosine_same_rate"]
    assert base["wrong_hit_rate"] <= ours["wrong_hit_rate"] + 1e-12
    # QQP's label noise allows no calibrated threshold at 2%: nothing is served
    strict = out["targets"]["0.02"]["verifier"]
    assert strict["hits"] == 0 and strict["threshold"] > 1


def test_cache_eval_prints_a_table(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["cache", "eval", "--pairs", str(_write(tmp_path))])
    assert result.exit_code == 0, result.output
    assert "verifier" in result.output and "cosine" in result.output
    assert "6 pairs, 3 duplicates" in result.output


def test_cache_eval_rejects_a_malformed_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text_a": "x"}\n')
    result = CliRunner().invoke(cli, ["cache", "eval", "--pairs", str(bad)])
    assert result.exit_code != 0
    assert "bad.jsonl:1" in result.output


@pytest.mark.parametrize(
    ("line", "message"),
    [('{"text_a": "x", "text_b": "y", "label": 7}', "need text_a, text_b and a 0/1 label"),
     ('{"text_a": 5, "text_b": "y", "label": 1}', "need text_a, text_b and a 0/1 label"),
     ("not json", "not JSON: ")],
)  # fmt: skip
def test_cache_eval_names_the_bad_line(tmp_path: Path, line: str, message: str) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text_a": "a", "text_b": "b", "label": 0}\n' + line + "\n")
    result = CliRunner().invoke(cli, ["cache", "eval", "--pairs", str(bad)])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert result.output.startswith(f"Error: {bad}:2: {message}")
