"""Yes/no settings: a quoted "false" is false, and a word that is neither is refused."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tokenomy.cache.config import cache_config
from tokenomy.config import flag, load_settings
from tokenomy.errors import ConfigError
from tokenomy.routing.config import parse_routing


@pytest.mark.parametrize(
    ("value", "expected"),
    [(True, True), (False, False), (1, True), (0, False), ("false", False), ("FALSE", False),
     ("no", False), ("off", False), ("0", False), ("", False), ("true", True), (" Yes ", True),
     ("on", True), ("1", True)],
)  # fmt: skip
def test_flag_spellings(value: Any, expected: bool) -> None:
    assert flag(value, "x") is expected


@pytest.mark.parametrize("value", ["maybe", 2, None, 0.5, ["true"]])
def test_flag_refuses_anything_else(value: Any) -> None:
    with pytest.raises(ConfigError, match="x: expected true or false"):
        flag(value, "x")


def _settings(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> Any:
    path = tmp_path / "tokenomy.yaml"
    path.write_text(text)
    return load_settings(path, env=env or {})


def test_quoted_false_switches_nothing_on(tmp_path: Path) -> None:
    s = _settings(
        tmp_path,
        'require_key: "false"\ncache: {enabled: "false", semantic: {enabled: "no"}}\n'
        'routing: {collect_prompts: "false", judge: {model: m, compare: "off"}}\n',
    )
    assert s.require_key is False
    cfg = cache_config(s)
    assert cfg.enabled is False and cfg.semantic_enabled is False
    routing = parse_routing(s.routing)
    assert routing.collect_prompts is False
    assert routing.judge is not None and routing.judge.compare is False


def test_quoted_true_switches_on(tmp_path: Path) -> None:
    s = _settings(tmp_path, 'cache: {enabled: "true", semantic: {enabled: "yes"}}\n')
    cfg = cache_config(s)
    assert cfg.enabled is True and cfg.semantic_enabled is True


def test_environment_words(tmp_path: Path) -> None:
    s = _settings(tmp_path, "", env={"TOKENOMY_REQUIRE_KEY": "off"})
    assert s.require_key is False
    with pytest.raises(ConfigError, match="TOKENOMY_REQUIRE_KEY"):
        _settings(tmp_path, "", env={"TOKENOMY_REQUIRE_KEY": "nope"})


@pytest.mark.parametrize(
    ("text", "where"),
    [("cache: {enabled: maybe}\n", "cache.enabled"),
     ("cache: {semantic: {enabled: 2}}\n", "cache.semantic.enabled")],
)  # fmt: skip
def test_bad_cache_flags_are_refused(tmp_path: Path, text: str, where: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(where)):
        cache_config(_settings(tmp_path, text))


def test_bad_routing_flag_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"routing\.collect_prompts"):
        parse_routing({"collect_prompts": "sometimes"})
