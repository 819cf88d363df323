"""The ``routing:`` section: parsing, defaults and the errors a bad one gets."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from gateway_fixtures import dep
from tokenomy.config import Settings, load_settings
from tokenomy.errors import ConfigError
from tokenomy.pipeline.resolve import Resolve
from tokenomy.routing.config import AUTO_ALIAS, CASCADE_ALIAS, parse_routing


def test_yaml_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "tokenomy.yaml"
    path.write_text(
        """
models:
  - {name: gpt-4o, provider: openai, base_url: "http://h/v1"}
  - {name: gpt-4o-mini, provider: openai, base_url: "http://h/v1"}
routing:
  tiers: [gpt-4o-mini, gpt-4o]
  quality_target: 0.9
  rules:
    - name: cheap
      when: {header: {X-Tokenomy-Route: cheap}, tag: [env=dev, beta], min_tokens: 10}
      to: gpt-4o-mini
  aliases:
    smart: [gpt-4o, gpt-4o-mini]
  fallback_on: [5xx, connect]
  cascade: {threshold: 0.5, samples: 4}
  judge: {sample_rate: 0.1, model: gpt-4o}
"""
    )
    settings = load_settings(path, env={})
    cfg = parse_routing(settings.routing)
    assert cfg.tiers == ("gpt-4o-mini", "gpt-4o") and cfg.quality_target == 0.9
    [rule] = cfg.rules
    assert rule.when.headers == {"x-tokenomy-route": "cheap"}  # header names are lower-cased
    assert rule.when.tags == {"env": "dev", "beta": None}
    assert rule.when.min_tokens == 10
    assert set(cfg.aliases) == {AUTO_ALIAS, CASCADE_ALIAS, "smart"}
    assert cfg.aliases["smart"].strategy == "fallback"
    assert cfg.aliases[AUTO_ALIAS].strategy == "router"
    assert cfg.fallback_on == {"5xx", "connect"}
    assert (cfg.cascade_threshold, cfg.cascade_samples) == (0.5, 4)
    assert cfg.judge is not None and cfg.judge.sample_rate == 0.1
    Resolve(settings)  # every target resolves


def test_no_tiers_no_builtin_aliases() -> None:
    assert parse_routing({}).aliases == {}
    assert parse_routing({"tiers": ["a"]}).aliases == {}  # one tier: nothing to choose


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"colour": 1}, "unknown keys"),
        ({"rules": {"a": 1}}, "expected a list"),
        ({"rules": [{"when": {}}]}, "'to'"),
        ({"rules": [{"to": "x", "when": {"weather": "sunny"}}]}, "unknown conditions"),
        ({"rules": [{"to": "x", "when": {"min_tokens": -1}}]}, "non-negative"),
        ({"rules": [{"to": "x", "when": {"tools": "yes"}}]}, "true or false"),
        ({"quality_target": 1.5}, "between 0 and 1"),
        ({"aliases": {"a": {"strategy": "magic", "models": ["x"]}}}, "strategy"),
        ({"aliases": {"a": {"strategy": "router", "models": ["x"]}}}, "at least two"),
        ({"aliases": {"a": {}}}, "needs 'models'"),
        ({"fallback_on": ["4xx"]}, "unknown kinds"),
        ({"balance": {"m": {"strategy": "random", "deployments": ["a"]}}}, "strategy"),
        ({"balance": {"m": {"deployments": {"a": -1}}}}, "negative"),
        ({"cascade": {"samples": 1}}, "at least 2"),
        ({"cascade": {"scorer": "vibes"}}, "one of agreement, checks, both, logprobs"),
        ({"cascade": {"scorer": "logprobs", "samples": 0}}, "at least 1"),
        ({"cascade": {"streams": "sometimes"}}, "streams: one of strongest, draft"),
        ({"cascade": {"scorer": "checks", "samples": 0}}, "at least 1"),
        ({"cascade": {"scorer": "both", "samples": True}}, "at least 2"),
        (
            {"aliases": {"a": {"strategy": "cascade", "models": ["x", "y"], "samples": 1}}},
            "aliases.a.samples: an integer of at least 2",
        ),
        (
            {"aliases": {"a": {"strategy": "cascade", "models": ["x", "y"], "scorer": 3}}},
            "aliases.a.scorer",
        ),
        ({"judge": {"sample_rate": 0.1}}, "judge.model"),
    ],
)
def test_bad_config_is_refused(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_routing(raw)


@pytest.mark.parametrize(
    ("routing", "message"),
    [
        ({"rules": [{"to": "nowhere"}]}, "'nowhere' is neither an alias"),
        ({"fallbacks": {"m1": ["ghost"]}}, "'ghost'"),
        # an alias is served by name only where a rule points to it: elsewhere a 404
        ({"aliases": {"a": ["m1"], "b": ["a", "m1"]}}, "aliases.b: 'a' is an alias"),
        ({"aliases": {"a": ["m1"]}, "fallbacks": {"m1": ["a"]}}, "fallbacks.m1: 'a' is an alias"),
        ({"aliases": {"a": ["m1"]}, "tiers": ["a", "m1"]}, "tiers: 'a' is an alias"),
        ({"judge": {"model": "ghost"}}, "judge.model: 'ghost' is not a configured model"),
        ({"balance": {"m1": {"deployments": ["m1", "ghost"]}}}, "no deployment named 'ghost'"),
    ],
)
def test_targets_must_exist(routing: dict[str, Any], message: str, tmp_path: Path) -> None:
    check_targets(routing, message, tmp_path)


def test_a_logprobs_cascade_needs_drafts_that_return_log_probabilities(tmp_path: Path) -> None:
    """An Anthropic draft tier has none: every request would pay both tiers."""
    sure = {"strategy": "cascade", "scorer": "logprobs", "models": ["c1", "m1"]}
    check_targets({"aliases": {"sure": sure}}, "aliases.sure: .* 'c1' .anthropic API", tmp_path)
    global_scorer = {"tiers": ["c1", "m1"], "cascade": {"scorer": "logprobs"}}
    check_targets(global_scorer, "aliases.cheap-first: scorer logprobs", tmp_path)
    # the strongest tier is never scored: it may be any model
    Resolve(Settings(db=str(tmp_path / "x.db"), deployments=DEPS,
                     routing={"aliases": {"sure": {**sure, "models": ["m1", "c1"]}}}))  # fmt: skip


DEPS = (dep("m1", "openai", "http://h/v1"), dep("c1", "anthropic", "http://h"))


def check_targets(routing: dict[str, Any], message: str, tmp_path: Path) -> None:
    settings = Settings(
        db=str(tmp_path / "x.db"),
        deployments=DEPS,
        routing=routing,
    )
    with pytest.raises(ConfigError, match=message):
        Resolve(settings)


def test_the_documented_example_loads(tmp_path: Path) -> None:
    import re

    doc = (Path(__file__).parent.parent / "docs" / "routing.md").read_text()
    example = re.search(r"```yaml\n(.*?)```", doc, re.S)
    assert example is not None
    path = tmp_path / "example.yaml"
    path.write_text(example.group(1))
    settings = load_settings(path, env={})
    resolve = Resolve(settings)
    cfg = resolve.config
    assert [r.name for r in cfg.rules] == ["cheap-header", "long-prompts", "vision", "batch-team"]
    assert cfg.judge is not None and cfg.judge.compare
    assert cfg.balance["gpt-4o-pool"].deployments == {"gpt-4o": 3.0, "gpt-4o-east": 1.0}


def test_a_router_weights_file_that_cannot_load_stops_the_start(tmp_path: Path) -> None:
    """An operator's own weights file, missing or corrupt, is a start-up error: served
    anyway, every tokenomy/auto request would go to the strongest tier unnoticed."""
    import asyncio

    from tokenomy.server.app import TokenomyApp

    def settings(path: Path) -> Settings:
        return Settings(
            db=str(tmp_path / "x.db"),
            deployments=(dep("m1", "openai", "http://h/v1"), dep("m2", "openai", "http://h/v1")),
            routing={"tiers": ["m1", "m2"], "router_path": str(path)},
        )

    with pytest.raises(ConfigError, match="no weights file"):
        Resolve(settings(tmp_path / "missing.npz"))
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"not a weights file")
    app = TokenomyApp(settings(corrupt))
    try:
        with pytest.raises(ConfigError, match="cannot load the router weights"):
            asyncio.run(app.startup())
    finally:
        asyncio.run(app.shutdown())
    # without an alias that uses the router, the file is never read
    Resolve(replace(settings(tmp_path / "missing.npz"), routing={"router_path": "nope.npz"}))


def test_a_cascade_scorer_and_its_sample_count() -> None:
    """`checks` reads one answer, so one sample is its default; `agreement` compares
    several. An alias takes routing.cascade's scorer and samples unless it sets its own,
    and another scorer's sample count only when it shares that scorer."""
    cfg = parse_routing(
        {
            "tiers": ["a", "b"],
            "cascade": {"samples": 5},
            "aliases": {
                "sums": {"strategy": "cascade", "scorer": "checks"},
                "sums3": {"strategy": "cascade", "scorer": "checks", "samples": 3},
                "mixed": {"strategy": "cascade", "scorer": "both"},
            },
        }
    )
    got = {n: (a.scorer, a.samples) for n, a in cfg.aliases.items() if a.strategy == "cascade"}
    assert got == {
        CASCADE_ALIAS: ("agreement", 5),
        "sums": ("checks", 1),
        "sums3": ("checks", 3),
        "mixed": ("both", 3),
    }
    only = parse_routing({"tiers": ["a", "b"], "cascade": {"scorer": "checks"}})
    assert (only.cascade_scorer, only.cascade_samples) == ("checks", 1)
    sure = parse_routing({"tiers": ["a", "b"], "cascade": {"scorer": "logprobs"}})
    assert (sure.cascade_scorer, sure.cascade_samples) == ("logprobs", 1)
    assert sure.cascade_streams == "strongest"  # streams keep their first byte's speed
    drafted = parse_routing({"tiers": ["a", "b"], "cascade": {"streams": "draft"}})
    assert drafted.cascade_streams == "draft"
    assert (only.aliases[CASCADE_ALIAS].scorer, only.aliases[CASCADE_ALIAS].samples) == (
        "checks",
        1,
    )


def test_an_alias_sample_count_is_judged_by_the_scorer_it_will_use() -> None:
    """An alias without a scorer of its own uses routing.cascade's: under `checks`, its
    one sample is valid (it was refused as 'at least 2'); under `agreement`, not."""
    cascade = {"strategy": "cascade", "samples": 1}
    cfg = parse_routing(
        {"tiers": ["a", "b"], "cascade": {"scorer": "checks"}, "aliases": {"one": cascade}}
    )
    assert (cfg.aliases["one"].scorer, cfg.aliases["one"].samples) == ("checks", 1)
    with pytest.raises(ConfigError, match=r"aliases\.one\.samples: an integer of at least 2"):
        parse_routing({"tiers": ["a", "b"], "aliases": {"one": cascade}})
    with pytest.raises(ConfigError, match=r"aliases\.one\.samples: an integer of at least 2"):
        parse_routing(
            {"tiers": ["a", "b"], "cascade": {"scorer": "checks"},
             "aliases": {"one": {**cascade, "scorer": "both"}}}
        )  # fmt: skip
