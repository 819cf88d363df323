"""Bad configuration on the command line: one line of error, exit status 1, no traceback."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tokenomy.cli import cli, main


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


def _main(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int | str | None, str, str]:
    monkeypatch.setattr(sys, "argv", ["tokenomy", *argv])
    with pytest.raises(SystemExit) as exit_:
        main()
    out, err = capsys.readouterr()
    return exit_.value.code, out, err


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("server: [1, 2]\n", "server: expected a mapping"),
        ("server: {port: abc}\n", "server.port: expected a whole number, got 'abc'"),
        ("server: {port: 70000}\n", "server.port: expected a whole number between 0 and 65535"),
        ("server: {drain_timeout: soon}\n", "server.drain_timeout: expected a number"),
        ("server: {drain_timeout: -5}\n", "server.drain_timeout: expected a number 0 or more"),
        ("server: {log_level: loud}\n", "server.log_level: expected one of critical, error"),
        ("server: {prot: 8080}\n", "server: unknown settings ['prot']"),
        ("key_cache_ttl: .nan\n", "key_cache_ttl: expected a number"),
        ("timezone: Mars/Base\n", "timezone: unknown time zone 'Mars/Base'"),
        ("caps: [1, 2]\n", "caps: expected a mapping"),
        ("billing: [a]\n", "billing: expected a mapping"),
        ("alerts: [a]\n", "alerts: expected a mapping"),
        ("routing: [a]\n", "routing: expected a mapping"),
        ("cache: on\n", "cache: expected a mapping"),
        ("cahce: {enabled: true}\n", "unknown settings ['cahce']"),
        ("requre_key: false\n", "unknown settings ['requre_key']"),
        ("redis_url: localhost:6379\n", "redis_url: expected a redis://, rediss:// or unix://"),
        ("webhook_url: 5\n", "webhook_url: expected a string, got 5"),
        ("master_key: 12345\n", "master_key: expected a string, got 12345"),
        ("db: [a]\n", "db: expected a SQLite path or a postgresql:// URL"),
        ("models: [{name: a, provider: openai, timeout: x}]\n", "models[0].timeout: expected"),
        ("models: [{name: a, provider: openai, headers: [1]}]\n", "models[0].headers: expected"),
        ("models: [{name: a, provider: openai, price: {input: .nan, output: 1}}]\n",
         "models[0].price.input: expected a price of 0 or more"),
        ("models: [{name: a, provider: openai, price: {input: -1, output: 1}}]\n",
         "models[0].price.input: expected a price of 0 or more"),
        # inside a section: checked when the file is read, by every command
        ("cache: {cahce: true}\n", "cache: unknown settings ['cahce']"),
        ("cache: {semantic: {enabeld: true}}\n", "cache.semantic: unknown settings"),
        ("caps: {lease: -1}\n", "caps.lease: expected a number above 0, got -1"),
        ("caps: {alowance: 4}\n", "caps: unknown settings ['alowance']"),
        ("billing: {fail_mode: sideways}\n", "billing.fail_mode must be 'open' or 'closed'"),
        ("alerts: {intervall: 60}\n", "alerts: unknown settings ['intervall']"),
        ("routing: {rules: 5}\n", "routing.rules: expected a list"),
    ],
)  # fmt: skip
def test_a_wrong_setting_is_named_not_a_traceback(
    text: str,
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(text)
    argv = ["keys", "list", "--config", str(config), "--db", str(tmp_path / "l.db")]
    code, out, err = _main(argv, monkeypatch, capsys)
    assert (code, out) == (1, "")
    assert err.startswith(f"Error: {message}") and err.count("\n") == 1, err


def test_serve_refuses_a_wrong_section_setting_before_it_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("cache: {enabled: true, cahce_tools: true}\n")
    argv = ["serve", "--config", str(config), "--db", str(tmp_path / "l.db"), "--port", "0"]
    code, out, err = _main(argv, monkeypatch, capsys)
    assert (code, out) == (1, "")
    assert err == "Error: cache: unknown settings ['cahce_tools']\n"


@pytest.mark.parametrize(
    ("name", "value"),
    [("TOKENOMY_PORT", "abc"), ("TOKENOMY_PORT", "1.5"), ("TOKENOMY_TIMEZONE", "Mars/Base"),
     ("TOKENOMY_REDIS_URL", "localhost"), ("TOKENOMY_WEBHOOK_URL", "hooks.example")],
)  # fmt: skip
def test_a_wrong_variable_is_named_not_a_traceback(
    name: str,
    value: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(name, value)
    code, out, err = _main(["forecast", "--db", str(tmp_path / "l.db")], monkeypatch, capsys)
    assert (code, out) == (1, "")
    assert err.startswith(f"Error: {name}: ") and err.count("\n") == 1, err


def test_a_config_file_that_is_not_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.yaml"
    config.write_bytes(b"\xff\xfe\x00junk")
    argv = ["keys", "list", "--config", str(config), "--db", str(tmp_path / "l.db")]
    code, out, err = _main(argv, monkeypatch, capsys)
    assert (code, out) == (1, "")
    assert err.startswith("Error: ") and str(config) in err and "Traceback" not in err


def test_caps_redis_url_is_used(tmp_path: Path) -> None:
    from tokenomy.caps.config import caps_config
    from tokenomy.config import load_settings

    config = tmp_path / "c.yaml"
    config.write_text("caps: {redis_url: 'redis://10.0.0.6:6379/0'}\n")
    assert caps_config(load_settings(config, env={})).redis_url == "redis://10.0.0.6:6379/0"
    config.write_text("redis_url: redis://a:6379/0\ncaps: {redis_prefix: 't:'}\n")
    assert caps_config(load_settings(config, env={})).redis_url == "redis://a:6379/0"


def test_a_postgres_server_that_does_not_answer_is_an_error_not_a_hang(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("psycopg")
    from tokenomy.ledger import postgres

    monkeypatch.setattr(postgres, "CONNECT_TIMEOUT", 1)  # psycopg's own default is 130 s
    monkeypatch.delenv("PGCONNECT_TIMEOUT", raising=False)
    with socket.socket() as silent:  # connections are queued, never answered
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"postgresql://127.0.0.1:{silent.getsockname()[1]}/x"
        code, out, err = _main(["keys", "list", "--db", url], monkeypatch, capsys)
    assert (code, out) == (1, "")
    assert err == "Error: cannot connect to the PostgreSQL ledger: connection timeout expired\n"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["keys", "create", "--expires-in", "99999999999999d"],
         "Invalid value for --expires-in: '99999999999999d': at most 100 years"),
        (["keys", "create", "--expires-in", "9" * 400], "Invalid value for --expires-in"),
        (["keys", "expire", "k", "--in", "1e5d"], "Invalid value for --in: '1e5d'"),
        (["credits", "reconcile", "--since", "99999999999999d"],
         "Invalid value for --since: '99999999999999d'"),
        (["credits", "history", "c", "--limit", "9" * 30], "Invalid value for '--limit'"),
        (["router", "export-feedback", "--since", "99999999999d"],
         "Invalid value for --since: '99999999999d'"),
    ],
)  # fmt: skip
def test_values_out_of_range_name_the_option(argv: list[str], message: str, tmp_path: Path) -> None:
    r = CliRunner().invoke(cli, [*argv, "--db", str(tmp_path / "l.db")])
    assert r.exit_code == 2 and isinstance(r.exception, SystemExit), r.output
    assert message in r.output


def test_export_feedback_into_a_missing_folder(tmp_path: Path) -> None:
    out = tmp_path / "missing" / "x.jsonl"
    argv = ["router", "export-feedback", "--db", str(tmp_path / "l.db"), "--out", str(out)]
    r = CliRunner().invoke(cli, argv)
    assert r.exit_code == 1 and isinstance(r.exception, SystemExit)
    assert r.output == f"Error: cannot write {out}: No such file or directory\n"


@pytest.mark.parametrize(
    ("argv", "message"),
    [(["budgets", "create", "b", "--usd", "5", "--webhook", "hooks.example/x"],
      "Error: 'webhook_url' must be an http:// or https:// URL\n"),
     (["statements", "c", "--period", "2026-01", "--timezone", "Mars/Base"],
      "Error: --timezone: unknown time zone 'Mars/Base' (e.g. UTC, Europe/Paris)\n")],
)  # fmt: skip
def test_a_bad_option_is_named_before_anything_is_stored(
    argv: list[str], message: str, tmp_path: Path
) -> None:
    db = str(tmp_path / "l.db")
    r = CliRunner().invoke(cli, [*argv, "--db", db])
    assert r.exit_code == 1 and isinstance(r.exception, SystemExit)
    assert r.output == message
    assert "b " not in CliRunner().invoke(cli, ["budgets", "list", "--db", db]).output
