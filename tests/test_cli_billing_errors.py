"""Bad input to the billing commands is one line of error, with or without `main()`."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from tokenomy.cli import cli


def test_credits_adjust_explains_a_bad_amount(tmp_path: Path) -> None:
    db = str(tmp_path / "l.db")
    runner = CliRunner()
    assert runner.invoke(cli, ["credits", "topup", "alice", "5", "--db", db]).exit_code == 0
    for amount in ("0.0000000001", "lots"):
        res = runner.invoke(cli, ["credits", "adjust", "alice", amount, "--note", "x", "--db", db])
        assert res.exit_code == 1
        assert res.output.startswith("Error: ") and res.output.count("\n") == 1, res.output


def test_plans_create_explains_a_bad_price(tmp_path: Path) -> None:
    res = CliRunner().invoke(
        cli, ["plans", "create", "pro", "--input", "cheap", "--db", str(tmp_path / "l.db")]
    )
    assert res.exit_code == 1
    assert res.output.startswith("Error: ") and res.output.count("\n") == 1, res.output
