"""The report's total: its JSON keys, and the total row of the terminal table."""

from __future__ import annotations

import json

from click.testing import CliRunner

from test_reports import RECORDS
from tokenomy.cli import cli
from tokenomy.ledger import Store

WINDOW = ["--since", "2026-10-01", "--until", "2026-12-01"]


def _report(db: str, *args: str) -> str:
    result = CliRunner().invoke(
        cli, ["report", "--db", db, *WINDOW, *args], catch_exceptions=False, terminal_width=200
    )
    assert result.exit_code == 0, result.output
    return result.output


def test_json_total_keys(store: Store, db_url: str) -> None:
    store.insert_records(RECORDS)
    out = json.loads(_report(db_url, "--group-by", "team", "--format", "json"))
    assert list(out["total"]) == [
        "requests",
        "errors",
        "input_tokens",
        "output_tokens",
        "cache_read_tokens",
        "cache_share",
        "cost_usd",
        "unpriced_requests",
        "unpriced_input_tokens",
        "unpriced_output_tokens",
        "saved_usd",
        "cost_per_1k_requests",
    ]
    assert out["total"]["requests"] == 144 and out["total"]["unpriced_requests"] == 22


def test_table_total_row(store: Store, db_url: str) -> None:
    store.insert_records(RECORDS)
    for group_by in ("team", "team,model"):
        rows = [
            line.split()
            for line in _report(db_url, "--group-by", group_by).splitlines()
            if line.strip().startswith("total ")
        ]
        assert rows == [
            ["total", "144", "140,439", "15,989", "41.0%", "$2,592,616.333605", "+", "unknown",
             "22", "$1,806.266760"]
        ]  # fmt: skip
