"""Docs are checked: every command has help, and docs/cli.md is generated from the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from tokenomy.cli import cli
from tokenomy.cli.docs import render, walk

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("path", [p for p, _ in walk(cli)], ids=lambda p: " ".join(p) or "tokenomy")
def test_every_command_has_help(path: tuple[str, ...]) -> None:
    cmd = dict(walk(cli))[path]
    assert (cmd.help or cmd.short_help or "").strip(), f"{' '.join(path)} has no help text"


def test_cli_reference_is_current() -> None:
    committed = (ROOT / "docs" / "cli.md").read_text()
    assert committed == render(cli), "run: python -m tokenomy.cli.docs > docs/cli.md"


@pytest.mark.parametrize(
    "doc",
    [
        "configuration.md",
        "ledger.md",
        "costs.md",
        "billing.md",
        "caps.md",
        "reports.md",
        "insights.md",
        "routing.md",
        "router.md",
        "cache.md",
        "semantic-cache.md",
    ],
)
def test_core_docs_exist(doc: str) -> None:
    assert len((ROOT / "docs" / doc).read_text()) > 500
