"""Configuration as explicit value objects.

Loaded from an optional YAML file, then from ``TOKENOMY_``-prefixed environment
variables, then from command-line flags (the CLI passes those in). Without a
file, upstreams come from the variables the official SDKs read:
``OPENAI_API_KEY``/``OPENAI_BASE_URL`` and ``ANTHROPIC_API_KEY``/``ANTHROPIC_BASE_URL``.

A deployment maps a public model name (a glob such as ``claude-*`` is allowed)
to a provider, an upstream model and base URL, the environment variable that
holds its key, timeouts, retries and optional price overrides.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

DEFAULT_DB = "tokenomy.db"
OPENAI_DEFAULT_BASE = "https://api.openai.com/v1"
ANTHROPIC_DEFAULT_BASE = "https://api.anthropic.com"


@dataclass(frozen=True, slots=True)
class PriceConfig:
    """Dollars per million tokens (``web_search``: per thousand searches); overrides
    genai-prices for one deployment. See `tokenomy.pricing.PriceOverride`."""

    input: Decimal
    output: Decimal
    cache_read: Decimal | None = None
    cache_write: Decimal | None = None
    cache_write_1h: Decimal | None = None
    input_audio: Decimal | None = None
    output_audio: Decimal | None = None
    web_search: Decimal | None = None


@dataclass(frozen=True, slots=True)
class Deployment:
    name: str  # public model name or glob ("*", "claude-*")
    provider: str  # provider module name: "openai" (any compatible API), "anthropic"
    model: str | None = None  # upstream model; None: the requested name is sent as is
    base_url: str | None = None
    api_key_env: str | None = None
    api_key: str | None = field(default=None, repr=False)
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout: float = 600.0  # whole request, seconds
    connect_timeout: float = 10.0
    max_retries: int = 2
    retry_backoff: float = 0.25  # first retry delay, seconds; doubles each retry
    price: PriceConfig | None = None
    price_provider: str | None = None  # genai-prices provider id, when it differs
    extra: Mapping[str, Any] = field(default_factory=dict)  # provider-specific settings

    def matches(self, model: str) -> bool:
        if any(ch in self.name for ch in "*?["):
            return fnmatch.fnmatchcase(model, self.name)
        return self.name == model

    def upstream_model(self, requested: str) -> str:
        return self.model or requested

    def resolve_key(self) -> str | None:
        if self.api_key:
            return self.api_key
        if self.api_key_env:
            return os.environ.get(self.api_key_env)
        return None


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 4000
    db: str = DEFAULT_DB
    master_key: str | None = field(default=None, repr=False)
    require_key: bool = True  # False: unauthenticated requests are served (and metered)
    metrics_auth: bool = False  # True: GET /metrics needs the master key (it shows spend)
    refuse_unknown_prices: bool = False
    deployments: tuple[Deployment, ...] = ()
    drain_timeout: float = 30.0  # seconds to finish in-flight requests on SIGTERM
    key_cache_ttl: float = 2.0  # seconds a verified key is trusted without a lookup
    redis_url: str | None = None  # set: counters and reservations live in Redis (replicas)
    timezone: str = "UTC"  # calendar periods (daily, weekly, monthly) are in this zone
    webhook_url: str | None = None  # default target for alerts (Slack-compatible JSON)
    caps: Mapping[str, Any] = field(default_factory=dict)  # the ``caps:`` section (tokenomy.caps)
    billing: Mapping[str, Any] = field(default_factory=dict)  # ``billing:`` (tokenomy.billing)
    alerts: Mapping[str, Any] = field(default_factory=dict)  # ``alerts:`` (insights.watch)
    routing: Mapping[str, Any] = field(default_factory=dict)  # ``routing:`` (tokenomy.routing)
    cache: Mapping[str, Any] = field(default_factory=dict)  # ``cache:`` (tokenomy.cache)
    otlp_endpoint: str | None = None  # OTLP/HTTP base URL: set, each request becomes a span
    log_level: str = "info"

    def find_deployment(self, model: str) -> Deployment | None:
        for dep in self.deployments:
            if dep.matches(model):
                return dep
        return None


def _decimal(value: Any, where: str) -> Decimal:
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError) as exc:
        raise ConfigError(f"{where}: not a number: {value!r}") from exc


_OPTIONAL_PRICES = (
    "cache_read", "cache_write", "cache_write_1h", "input_audio", "output_audio", "web_search",
)  # fmt: skip
_PRICE_KEYS = {"input", "output", *_OPTIONAL_PRICES}


def _price(raw: Any, where: str) -> PriceConfig | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping) or "input" not in raw or "output" not in raw:
        raise ConfigError(f"{where}: price needs 'input' and 'output' ($ per million tokens)")
    # A misspelt cache price, ignored, would bill those tokens at the input price.
    unknown = set(raw) - _PRICE_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(map(str, unknown))}")
    opt = {k: _decimal(raw[k], f"{where}.{k}") for k in _OPTIONAL_PRICES if raw.get(k) is not None}
    return PriceConfig(
        input=_decimal(raw["input"], f"{where}.input"),
        output=_decimal(raw["output"], f"{where}.output"),
        **opt,
    )


_DEPLOYMENT_KEYS = {
    "name", "provider", "model", "base_url", "api_key_env", "api_key", "headers",
    "timeout", "connect_timeout", "max_retries", "retry_backoff", "price", "price_provider", "extra",
}  # fmt: skip


def _deployment(raw: Any, idx: int) -> Deployment:
    where = f"models[{idx}]"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping")
    unknown = set(raw) - _DEPLOYMENT_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}")
    if "name" not in raw or "provider" not in raw:
        raise ConfigError(f"{where}: 'name' and 'provider' are required")
    try:
        return Deployment(
            name=str(raw["name"]),
            provider=str(raw["provider"]),
            model=str(raw["model"]) if raw.get("model") else None,
            base_url=str(raw["base_url"]) if raw.get("base_url") else None,
            api_key_env=raw.get("api_key_env"),
            api_key=raw.get("api_key"),
            headers=dict(raw.get("headers") or {}),
            timeout=float(raw.get("timeout", 600.0)),
            connect_timeout=float(raw.get("connect_timeout", 10.0)),
            max_retries=int(raw.get("max_retries", 2)),
            retry_backoff=float(raw.get("retry_backoff", 0.25)),
            price=_price(raw.get("price"), where + ".price"),
            price_provider=raw.get("price_provider"),
            extra=dict(raw.get("extra") or {}),
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def deployments_from_env(env: Mapping[str, str]) -> tuple[Deployment, ...]:
    """Upstreams named as the official SDKs name them; Claude models go to Anthropic."""
    deps: list[Deployment] = []
    if env.get("ANTHROPIC_API_KEY") or env.get("ANTHROPIC_BASE_URL"):
        deps.append(
            Deployment(
                name="claude-*",
                provider="anthropic",
                base_url=env.get("ANTHROPIC_BASE_URL") or ANTHROPIC_DEFAULT_BASE,
                api_key_env="ANTHROPIC_API_KEY",
            )
        )
    if env.get("OPENAI_API_KEY") or env.get("OPENAI_BASE_URL"):
        deps.append(
            Deployment(
                name="*",
                provider="openai",
                base_url=env.get("OPENAI_BASE_URL") or OPENAI_DEFAULT_BASE,
                api_key_env="OPENAI_API_KEY",
            )
        )
    return tuple(deps)


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


def flag(value: Any, where: str) -> bool:
    """A yes/no setting: a YAML boolean, 0 or 1, or one of true/false, yes/no, on/off
    (an environment variable's spelling). Anything else is a `ConfigError`: a quoted
    ``"false"`` must not switch a feature on."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
    raise ConfigError(f"{where}: expected true or false, got {value!r}")


def load_settings(
    path: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Build Settings: YAML file, then TOKENOMY_* variables, then explicit overrides."""
    env = os.environ if env is None else env
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read config {path}: {exc}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"invalid YAML in {path}: {exc}") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: top level must be a mapping")
        raw = loaded or {}

    server = raw.get("server") or {}
    settings = Settings(
        host=str(server.get("host", "127.0.0.1")),
        port=int(server.get("port", 4000)),
        db=str(raw.get("db", DEFAULT_DB)),
        master_key=raw.get("master_key"),
        require_key=flag(raw.get("require_key", True), "require_key"),
        metrics_auth=flag(raw.get("metrics_auth", False), "metrics_auth"),
        refuse_unknown_prices=flag(
            raw.get("refuse_unknown_prices", False), "refuse_unknown_prices"
        ),
        drain_timeout=float(server.get("drain_timeout", 30.0)),
        key_cache_ttl=float(raw.get("key_cache_ttl", 2.0)),
        redis_url=raw.get("redis_url"),
        timezone=str(raw.get("timezone", "UTC")),
        webhook_url=raw.get("webhook_url"),
        caps=dict(raw.get("caps") or {}),
        billing=dict(raw.get("billing") or {}),
        alerts=dict(raw.get("alerts") or {}),
        routing=dict(raw.get("routing") or {}),
        cache=dict(raw.get("cache") or {}),
        otlp_endpoint=raw.get("otlp_endpoint"),
        log_level=str(server.get("log_level", "info")),
    )
    models = raw.get("models")
    if models is not None:
        if not isinstance(models, list):
            raise ConfigError("models: expected a list of deployments")
        deps = tuple(_deployment(m, i) for i, m in enumerate(models))
    else:
        deps = deployments_from_env(env)
    settings = replace(settings, deployments=deps)

    env_over: dict[str, Any] = {}
    if env.get("TOKENOMY_DB"):
        env_over["db"] = env["TOKENOMY_DB"]
    if env.get("TOKENOMY_MASTER_KEY"):
        env_over["master_key"] = env["TOKENOMY_MASTER_KEY"]
    if env.get("TOKENOMY_REDIS_URL"):
        env_over["redis_url"] = env["TOKENOMY_REDIS_URL"]
    if env.get("TOKENOMY_TIMEZONE"):
        env_over["timezone"] = env["TOKENOMY_TIMEZONE"]
    if env.get("TOKENOMY_WEBHOOK_URL"):
        env_over["webhook_url"] = env["TOKENOMY_WEBHOOK_URL"]
    if env.get("TOKENOMY_OTLP_ENDPOINT"):
        env_over["otlp_endpoint"] = env["TOKENOMY_OTLP_ENDPOINT"]
    if env.get("TOKENOMY_REQUIRE_BALANCE"):
        env_over["billing"] = {
            **settings.billing,
            "require_balance": flag(env["TOKENOMY_REQUIRE_BALANCE"], "TOKENOMY_REQUIRE_BALANCE"),
        }
    if env.get("TOKENOMY_HOST"):
        env_over["host"] = env["TOKENOMY_HOST"]
    if env.get("TOKENOMY_PORT"):
        env_over["port"] = int(env["TOKENOMY_PORT"])
    if env.get("TOKENOMY_REQUIRE_KEY"):
        env_over["require_key"] = flag(env["TOKENOMY_REQUIRE_KEY"], "TOKENOMY_REQUIRE_KEY")
    if env.get("TOKENOMY_METRICS_AUTH"):
        env_over["metrics_auth"] = flag(env["TOKENOMY_METRICS_AUTH"], "TOKENOMY_METRICS_AUTH")
    if env.get("TOKENOMY_REFUSE_UNKNOWN_PRICES"):
        env_over["refuse_unknown_prices"] = flag(
            env["TOKENOMY_REFUSE_UNKNOWN_PRICES"], "TOKENOMY_REFUSE_UNKNOWN_PRICES"
        )
    settings = replace(settings, **env_over)
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return replace(settings, **overrides) if overrides else settings
