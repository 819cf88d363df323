"""A ConfigError out of `router` or `simulate` reaches the user through `main()`:
one line `Error: ...` on stderr, exit status 1, nothing on stdout, no traceback."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tokenomy.cli import main


def _run(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> int | str | None:
    monkeypatch.setattr(sys, "argv", ["tokenomy", *argv])
    with pytest.raises(SystemExit) as exit_:
        main()
    return exit_.value.code


@pytest.mark.parametrize("command", ["train", "eval"])
def test_router_reports_a_bad_outcome_file(
    command: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = tmp_path / "outcomes.jsonl"
    data.write_text("not json\n")
    argv = ["router", command, "--data", str(data)]
    if command == "train":
        argv += ["--out", str(tmp_path / "r.npz")]
    assert _run(argv, monkeypatch) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"Error: {data}:1: not JSON: ") and err.count("\n") == 1


def test_router_reports_an_outcome_without_models(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "outcomes.jsonl"
    data.write_text(json.dumps({"prompt": "hi"}) + "\n")
    argv = ["router", "train", "--data", str(data), "--out", str(tmp_path / "r.npz")]
    assert _run(argv, monkeypatch) == 1
    out, err = capsys.readouterr()
    assert (out, err) == (
        "",
        f"Error: {data}:1: an outcome needs 'models': {{name: {{'score': ...}}}}\n",
    )


def test_simulate_reports_a_broken_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("caps:\n  redis_prefix: a:b:\n")
    argv = ["simulate", "--config", str(config), "--db", str(tmp_path / "l.db"), "--cache", "0.3"]
    assert _run(argv, monkeypatch) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"Error: invalid YAML in {config}") and "Traceback" not in err


def test_simulate_reports_a_bad_ledger_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["simulate", "--db", "sqlite://nowhere", "--cache", "0.3"]
    assert _run(argv, monkeypatch) == 1
    out, err = capsys.readouterr()
    assert (out, err) == (
        "",
        "Error: 'sqlite://nowhere': write SQLite URLs as sqlite:///relative or sqlite:////abs\n",
    )
