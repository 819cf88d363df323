"""Bad configuration on the command line: one line of error, exit status 1, no traceback."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tokenomy.cli import main


def test_a_broken_config_file_is_a_message_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("caps:\n  redis_prefix: a:b:\n")
    argv = ["tokenomy", "budgets", "list", "--config", str(config), "--db", str(tmp_path / "l.db")]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("Error: invalid YAML in") and "Traceback" not in err
