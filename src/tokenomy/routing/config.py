"""The ``routing:`` section of the configuration, parsed into value objects.

::

    routing:
      tiers: [gpt-4o-mini, gpt-4o]     # cheap -> strong, for tokenomy/auto and cheap-first
      quality_target: 0.95             # keep this share of the strongest tier's quality
      quality_targets: {teams: {search: 0.9}, keys: {key_abc: 0.99}}
      router_path: null                # learned router weights; null: the shipped ones
      rules:                           # in order; the first match wins
        - name: cheap-header
          when: {header: {x-tokenomy-route: cheap}}
          to: gpt-4o-mini
      aliases:                         # names clients may ask for as the model
        smart: {models: [gpt-4o, claude-sonnet-4-6]}            # first, then fallbacks
        auto-3: {strategy: router, tiers: [a, b, c], quality_target: 0.9}
        draft: {strategy: cascade, tiers: [a, b], threshold: 0.67, samples: 3}
        sums: {strategy: cascade, tiers: [a, b], scorer: checks}  # one draft, its arithmetic
        sure: {strategy: cascade, tiers: [a, b], scorer: logprobs, threshold: 0.8}
      fallbacks: {gpt-4o: [claude-sonnet-4-6]}
      fallback_on: [5xx, connect, timeout, 429, auth, bad_response]
      balance:
        gpt-4o: {strategy: weight, deployments: {gpt-4o-east: 3, gpt-4o-west: 1}}
      cascade: {threshold: 0.67, samples: 3, temperature: 0.7, scorer: agreement,
                streams: strongest}   # draft: streamed requests are cascaded too
      collect_prompts: false
      judge: {sample_rate: 0.05, model: gpt-4o, compare: false}
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from itertools import accumulate
from typing import Any

from ..config import flag
from ..errors import ConfigError

# keep this share of the strongest tier's quality, unless configured otherwise
DEFAULT_QUALITY_TARGET = 0.95

AUTO_ALIAS = "tokenomy/auto"
CASCADE_ALIAS = "cheap-first"
FAILURE_KINDS = ("5xx", "connect", "timeout", "429", "auth", "bad_response")
STRATEGIES = ("fallback", "router", "cascade")
# how a cascade scores its draft: the agreement of its samples, the arithmetic of the
# answer (`tokenomy.routing.learned.checks`), both multiplied, or the draft model's
# own token probabilities (`tokenomy.routing.learned.confidence`)
SCORERS = ("agreement", "checks", "both", "logprobs")
# the scorers that read each sample alone, so one sample is enough
ONE_SAMPLE_SCORERS = ("checks", "logprobs")
BALANCE_STRATEGIES = ("weight", "latency", "inflight")
CASCADE_STREAMS = ("strongest", "draft")


@dataclass(frozen=True, slots=True)
class Match:
    """Conditions of a rule; every one that is set must hold."""

    keys: frozenset[str] = frozenset()
    teams: frozenset[str] = frozenset()
    tags: Mapping[str, str | None] = field(default_factory=dict)  # None: tag present
    models: tuple[str, ...] = ()  # globs over the requested model or alias
    min_tokens: int | None = None
    max_tokens: int | None = None
    tools: bool | None = None
    images: bool | None = None
    headers: Mapping[str, str | None] = field(default_factory=dict)  # None: header present
    # ``models`` compiled once into one pattern (fnmatch's case-sensitive globs)
    models_re: re.Pattern[str] | None = field(init=False)

    def __post_init__(self) -> None:
        pattern = "|".join(f"(?:{fnmatch.translate(g)})" for g in self.models)
        object.__setattr__(self, "models_re", re.compile(pattern) if self.models else None)


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    when: Match
    to: str  # a public model name or an alias


@dataclass(frozen=True, slots=True)
class Alias:
    name: str
    strategy: str  # "fallback" (models in order), "router" or "cascade" (over tiers)
    models: tuple[str, ...]  # fallback: the order; router/cascade: the tiers, cheap -> strong
    quality_target: float | None = None
    threshold: float | None = None
    samples: int | None = None
    scorer: str | None = None  # cascades: one of SCORERS (None: routing.cascade.scorer)


@dataclass(frozen=True, slots=True)
class Balance:
    strategy: str  # "weight", "latency" (EWMA) or "inflight" (fewest in flight)
    deployments: Mapping[str, float]  # deployment name -> weight
    # derived once, for the pick on every request: the names, and the running totals
    # of their weights (what random.choices would rebuild on each call)
    names: tuple[str, ...] = field(init=False)
    cum_weights: tuple[float, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", tuple(self.deployments))
        object.__setattr__(self, "cum_weights", tuple(accumulate(self.deployments.values())))


@dataclass(frozen=True, slots=True)
class Judge:
    sample_rate: float
    model: str
    compare: bool = False  # also answer with the reference model and rate that answer


@dataclass(frozen=True, slots=True)
class RoutingConfig:
    rules: tuple[Rule, ...] = ()
    aliases: Mapping[str, Alias] = field(default_factory=dict)
    tiers: tuple[str, ...] = ()
    quality_target: float = DEFAULT_QUALITY_TARGET
    team_targets: Mapping[str, float] = field(default_factory=dict)
    key_targets: Mapping[str, float] = field(default_factory=dict)
    router_path: str | None = None
    fallbacks: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    fallback_on: frozenset[str] = frozenset(FAILURE_KINDS)
    balance: Mapping[str, Balance] = field(default_factory=dict)
    cascade_threshold: float = 0.67
    cascade_samples: int = 3
    cascade_temperature: float = 0.7  # the draft's samples are drawn at least this hot
    cascade_scorer: str = "agreement"
    # streamed requests: served by the strongest tier, or drafted (not streamed) and,
    # when kept, replayed as a stream ("draft"; the first byte waits for the draft)
    cascade_streams: str = "strongest"
    collect_prompts: bool = False
    judge: Judge | None = None


def _strs(raw: Any, where: str) -> tuple[str, ...]:
    # YAML reads a bare 429 as a number: names may be numbers too
    if isinstance(raw, str | int) and not isinstance(raw, bool):
        return (str(raw),)
    if not isinstance(raw, list) or not all(
        isinstance(x, str | int) and not isinstance(x, bool) for x in raw
    ):
        raise ConfigError(f"{where}: expected a name or a list of names")
    return tuple(str(x) for x in raw)


def _map(raw: Any, where: str) -> Mapping[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping")
    return raw


def _fraction(raw: Any, where: str) -> float:
    try:
        value = float(raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: not a number: {raw!r}") from exc
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{where}: must be between 0 and 1, got {value}")
    return value


def _optional_str_map(raw: Any, where: str) -> dict[str, str | None]:
    if isinstance(raw, str | list):
        return {name: None for name in _strs(raw, where)}
    return {str(k): None if v is None else str(v) for k, v in _map(raw, where).items()}


_MATCH_KEYS = {"key", "team", "tag", "model", "min_tokens", "max_tokens", "tools", "images", "header"}  # fmt: skip


def _match(raw: Any, where: str) -> Match:
    raw = _map(raw, where)
    unknown = set(raw) - _MATCH_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown conditions {sorted(unknown)}")

    def opt_int(name: str) -> int | None:
        value = raw.get(name)
        if value is None:
            return None
        if not isinstance(value, int) or value < 0:
            raise ConfigError(f"{where}.{name}: expected a non-negative integer")
        return value

    def opt_bool(name: str) -> bool | None:
        value = raw.get(name)
        if value is not None and not isinstance(value, bool):
            raise ConfigError(f"{where}.{name}: expected true or false")
        return value

    tags: dict[str, str | None] = {}
    if raw.get("tag") is not None:
        if isinstance(raw["tag"], Mapping):
            tags = _optional_str_map(raw["tag"], f"{where}.tag")
        else:
            for item in _strs(raw["tag"], f"{where}.tag"):
                name, eq, value = item.partition("=")
                tags[name.strip()] = value.strip() if eq else None
    headers = _optional_str_map(raw.get("header"), f"{where}.header")
    return Match(
        keys=frozenset(_strs(raw["key"], f"{where}.key")) if "key" in raw else frozenset(),
        teams=frozenset(_strs(raw["team"], f"{where}.team")) if "team" in raw else frozenset(),
        tags=tags,
        models=_strs(raw["model"], f"{where}.model") if "model" in raw else (),
        min_tokens=opt_int("min_tokens"),
        max_tokens=opt_int("max_tokens"),
        tools=opt_bool("tools"),
        images=opt_bool("images"),
        headers={k.lower(): v for k, v in headers.items()},
    )


def _rule(raw: Any, idx: int) -> Rule:
    where = f"routing.rules[{idx}]"
    raw = _map(raw, where)
    unknown = set(raw) - {"name", "when", "to"}
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}")
    if not isinstance(raw.get("to"), str) or not raw["to"]:
        raise ConfigError(f"{where}: 'to' (a model or an alias) is required")
    return Rule(
        name=str(raw.get("name") or f"rule{idx}"),
        when=_match(raw.get("when"), where + ".when"),
        to=raw["to"],
    )


def _alias(name: str, raw: Any, tiers: tuple[str, ...]) -> Alias:
    where = f"routing.aliases.{name}"
    if isinstance(raw, list):
        raw = {"models": raw}
    raw = _map(raw, where)
    unknown = set(raw) - {
        "strategy", "models", "tiers", "quality_target", "threshold", "samples", "scorer",
    }  # fmt: skip
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}")
    strategy = str(raw.get("strategy", "fallback"))
    if strategy not in STRATEGIES:
        raise ConfigError(f"{where}.strategy: one of {', '.join(STRATEGIES)}")
    listed = raw.get("models", raw.get("tiers"))
    models = _strs(listed, where + ".models") if listed is not None else tiers
    if not models:
        raise ConfigError(f"{where}: needs 'models' (or 'tiers', or routing.tiers)")
    if strategy != "fallback" and len(models) < 2:
        raise ConfigError(f"{where}: a {strategy} needs at least two tiers")
    scorer = _scorer(raw.get("scorer"), where + ".scorer")
    samples = raw.get("samples")
    if samples is not None and strategy != "cascade":  # a cascade's: by the scorer it
        _samples(samples, scorer, where + ".samples")  # uses (`_cascade_alias`)
    return Alias(
        name=name,
        strategy=strategy,
        models=models,
        quality_target=(
            _fraction(raw["quality_target"], where + ".quality_target")
            if raw.get("quality_target") is not None
            else None
        ),
        threshold=(
            _fraction(raw["threshold"], where + ".threshold")
            if raw.get("threshold") is not None
            else None
        ),
        samples=samples,
        scorer=scorer,
    )


def _scorer(raw: Any, where: str) -> str | None:
    if raw is None:
        return None
    if raw not in SCORERS:
        raise ConfigError(f"{where}: one of {', '.join(SCORERS)}")
    return str(raw)


def _samples(raw: Any, scorer: str | None, where: str) -> int:
    """A draft's sample count: agreement needs two to compare, checks and log
    probabilities can read one."""
    least = 1 if scorer in ONE_SAMPLE_SCORERS else 2
    if not isinstance(raw, int) or isinstance(raw, bool) or raw < least:
        raise ConfigError(f"{where}: an integer of at least {least}")
    return raw


def _default_samples(scorer: str) -> int:
    return 1 if scorer in ONE_SAMPLE_SCORERS else 3


def _cascade_alias(alias: Alias, scorer: str, samples: int | None) -> Alias:
    """A cascade alias with its scorer and sample count settled: its own, else the
    routing.cascade ones, else one sample for the scorers that read one answer."""
    own = alias.scorer or scorer
    count = alias.samples
    if count is None:
        count = samples if samples is not None and own == scorer else _default_samples(own)
    where = f"routing.aliases.{alias.name}.samples"
    return replace(alias, scorer=own, samples=_samples(count, own, where))


def _balance(model: str, raw: Any) -> Balance:
    where = f"routing.balance.{model}"
    raw = _map(raw, where)
    strategy = str(raw.get("strategy", "weight"))
    if strategy not in BALANCE_STRATEGIES:
        raise ConfigError(f"{where}.strategy: one of {', '.join(BALANCE_STRATEGIES)}")
    deps = raw.get("deployments")
    if isinstance(deps, list):
        deps = {str(d): 1.0 for d in deps}
    deps = _map(deps, where + ".deployments")
    if len(deps) < 1:
        raise ConfigError(f"{where}: 'deployments' lists the deployment names to balance over")
    weights: dict[str, float] = {}
    for dep, weight in deps.items():
        try:
            weights[str(dep)] = float(weight)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}.deployments.{dep}: weight must be a number") from exc
        if weights[str(dep)] < 0:
            raise ConfigError(f"{where}.deployments.{dep}: weight must not be negative")
    return Balance(strategy, weights)


def _targets(raw: Any, where: str) -> dict[str, float]:
    return {str(k): _fraction(v, f"{where}.{k}") for k, v in _map(raw, where).items()}


_KEYS = {
    "rules", "aliases", "tiers", "quality_target", "quality_targets", "router_path", "fallbacks",
    "fallback_on", "balance", "cascade", "collect_prompts", "judge",
}  # fmt: skip


def parse_routing(raw: Mapping[str, Any]) -> RoutingConfig:
    """The ``routing:`` mapping as a `RoutingConfig`; raises `ConfigError` on bad input."""
    unknown = set(raw) - _KEYS
    if unknown:
        raise ConfigError(f"routing: unknown keys {sorted(unknown)}")
    tiers = _strs(raw["tiers"], "routing.tiers") if raw.get("tiers") is not None else ()
    rules = raw.get("rules") or []
    if not isinstance(rules, list):
        raise ConfigError("routing.rules: expected a list")
    cascade = _map(raw.get("cascade"), "routing.cascade")
    threshold = _fraction(cascade.get("threshold", 0.67), "routing.cascade.threshold")
    scorer = _scorer(cascade.get("scorer"), "routing.cascade.scorer") or "agreement"
    given = cascade.get("samples")
    samples = _samples(
        _default_samples(scorer) if given is None else given, scorer, "routing.cascade.samples"
    )
    temperature = cascade.get("temperature", 0.7)
    if (
        not isinstance(temperature, int | float)
        or isinstance(temperature, bool)
        or not 0 <= temperature <= 2
    ):
        raise ConfigError("routing.cascade.temperature: a number from 0 to 2")
    streams = cascade.get("streams", "strongest")
    if streams not in CASCADE_STREAMS:
        raise ConfigError(f"routing.cascade.streams: one of {', '.join(CASCADE_STREAMS)}")
    unknown = set(cascade) - {"threshold", "samples", "temperature", "scorer", "streams"}
    if unknown:
        raise ConfigError(f"routing.cascade: unknown keys {sorted(unknown)}")
    aliases: dict[str, Alias] = {}
    if len(tiers) >= 2:
        aliases[AUTO_ALIAS] = Alias(AUTO_ALIAS, "router", tiers)
        aliases[CASCADE_ALIAS] = Alias(CASCADE_ALIAS, "cascade", tiers)
    for name, spec in _map(raw.get("aliases"), "routing.aliases").items():
        aliases[str(name)] = _alias(str(name), spec, tiers)
    for name, alias in aliases.items():
        if alias.strategy == "cascade":
            aliases[name] = _cascade_alias(alias, scorer, given)
    on = _strs(raw["fallback_on"], "routing.fallback_on") if "fallback_on" in raw else FAILURE_KINDS
    bad = set(on) - set(FAILURE_KINDS)
    if bad:
        raise ConfigError(f"routing.fallback_on: unknown kinds {sorted(bad)}")
    targets = _map(raw.get("quality_targets"), "routing.quality_targets")
    judge_raw = raw.get("judge")
    judge = None
    if judge_raw is not None:
        j = _map(judge_raw, "routing.judge")
        if not isinstance(j.get("model"), str):
            raise ConfigError("routing.judge.model: the model that judges answers")
        judge = Judge(
            _fraction(j.get("sample_rate", 0.05), "routing.judge.sample_rate"),
            j["model"],
            compare=flag(j.get("compare", False), "routing.judge.compare"),
        )
    return RoutingConfig(
        rules=tuple(_rule(r, i) for i, r in enumerate(rules)),
        aliases=aliases,
        tiers=tiers,
        quality_target=_fraction(
            raw.get("quality_target", DEFAULT_QUALITY_TARGET), "routing.quality_target"
        ),
        team_targets=_targets(targets.get("teams"), "routing.quality_targets.teams"),
        key_targets=_targets(targets.get("keys"), "routing.quality_targets.keys"),
        router_path=str(raw["router_path"]) if raw.get("router_path") else None,
        fallbacks={
            str(m): _strs(v, f"routing.fallbacks.{m}")
            for m, v in _map(raw.get("fallbacks"), "routing.fallbacks").items()
        },
        fallback_on=frozenset(on),
        balance={
            str(m): _balance(str(m), v)
            for m, v in _map(raw.get("balance"), "routing.balance").items()
        },
        cascade_threshold=threshold,
        cascade_samples=samples,
        cascade_temperature=float(temperature),
        cascade_scorer=scorer,
        cascade_streams=str(streams),
        collect_prompts=flag(raw.get("collect_prompts", False), "routing.collect_prompts"),
        judge=judge,
    )
