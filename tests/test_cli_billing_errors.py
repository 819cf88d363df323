"""Bad input to the billing commands is one line of error, with or without `main()`."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from click.testing import CliRunner

from tokenomy.billing import BillingStore
from tokenomy.cli import cli
from tokenomy.ledger import open_store


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


def test_credits_adjust_refuses_a_refund_without_a_matching_debit(tmp_path: Path) -> None:
    db = str(tmp_path / "l.db")
    runner = CliRunner()
    for who in ("alice", "bob"):
        assert runner.invoke(cli, ["credits", "topup", who, "5", "--db", db]).exit_code == 0
    with open_store(db) as store:
        BillingStore(store).debit("alice", "req_5f0c", Decimal("0.02"))
    for who, amount, rid, says in [
        ("bob", "0.02", "req_5f0c", "no debit of request 'req_5f0c'"),  # alice's request
        ("alice", "0.02", "req_5f0d", "no debit of request 'req_5f0d'"),  # a typo
        ("alice", "500", "req_5f0c", "was debited 0.02 usd"),
    ]:
        res = runner.invoke(
            cli, ["credits", "adjust", who, amount, "--note", "x", "--refund", rid, "--db", db]
        )
        assert res.exit_code == 1
        assert res.output.startswith("Error: ") and res.output.count("\n") == 1, res.output
        assert says in res.output
    res = runner.invoke(cli, ["credits", "balance", "--db", db])
    assert [line.split()[-2] for line in res.output.splitlines()[1:]] == ["4.98", "5"]
