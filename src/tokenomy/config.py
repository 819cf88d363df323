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
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from .errors import ConfigError
from .pricing import PriceOverride

DEFAULT_DB = "tokenomy.db"
OPENAI_DEFAULT_BASE = "https://api.openai.com/v1"
ANTHROPIC_DEFAULT_BASE = "https://api.anthropic.com"


# A deployment's ``price:``: the price book's override, as `tokenomy.pricing` takes it.
PriceConfig = PriceOverride


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
    price: PriceOverride | None = None
    price_provider: str | None = None  # genai-prices provider id, when it differs
    extra: Mapping[str, Any] = field(default_factory=dict)  # provider-specific settings
    # OpenAI's ``service_tier`` sent on every chat and Responses request it serves
    # (``flex``: half price, slower, sometimes 429; ``default``: never priority);
    # None: the client's own. See `SERVICE_TIERS`.
    service_tier: str | None = None
    # Anthropic cache breakpoints added to requests that carry none: "auto" (where a
    # read is expected) or "always"; None: off. See `tokenomy.pipeline.prompt_cache`.
    prompt_cache: str | None = None
    prompt_cache_ttl: str = "5m"  # the lifetime it asks for: "5m" (1.25x input) or "1h" (2x)

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
    # ``responses:`` (the Responses API's chains between tenants: tokenomy.pipeline.chains)
    responses: Mapping[str, Any] = field(default_factory=dict)
    otlp_endpoint: str | None = None  # OTLP/HTTP base URL: set, each request becomes a span
    log_level: str = "info"

    def find_deployment(self, model: str) -> Deployment | None:
        for dep in self.deployments:
            if dep.matches(model):
                return dep
        return None


def number(
    value: Any,
    where: str,
    *,
    whole: bool = False,
    low: float = 0,
    high: float | None = None,
    above: bool = False,
) -> float:
    """A number setting from YAML or an environment variable, ``low`` to ``high``
    (inclusive; ``above``: more than ``low``, as a duration or a size that 0 would
    make mean nothing); anything else is a `ConfigError` naming the setting."""
    kind = "a whole number" if whole else "a number"
    got = float("nan")
    if not isinstance(value, bool):
        try:
            got = float(value.strip() if isinstance(value, str) else value)
        except (TypeError, ValueError, OverflowError):
            pass
    if math.isnan(got) or (whole and not got.is_integer()):
        raise ConfigError(f"{where}: expected {kind}, got {value!r}")
    too_low = got <= low if above else got < low
    if too_low or (high is not None and got > high) or math.isinf(got):
        if high is not None:
            span = f"between {low:g} and {high:g}"
        else:
            span = f"above {low:g}" if above else f"{low:g} or more"
        raise ConfigError(f"{where}: expected {kind} {span}, got {value!r}")
    return got


def decimal_number(value: Any, where: str, *, what: str = "a number") -> Decimal:
    """A number setting of 0 or more as the exact Decimal of what was written (``0.1``
    is Decimal("0.1"), not the float nearest it): for money, and what multiplies it.
    Refused as `number` refuses: a NaN price cannot be compared (a budget check on
    it raises), a negative one pays back."""
    try:
        number(value, where)
        return Decimal(str(value).strip())
    except (ConfigError, InvalidOperation):
        raise ConfigError(f"{where}: expected {what} of 0 or more, got {value!r}") from None


def text(value: Any, where: str) -> str | None:
    """A string setting, or None when absent; a number or a list is refused (a YAML
    ``master_key: 12345`` would otherwise be a key nobody can send)."""
    if value is None or isinstance(value, str):
        return value
    raise ConfigError(f"{where}: expected a string, got {value!r} (quote it in YAML)")


def section(raw: Mapping[str, Any], name: str, where: str = "") -> dict[str, Any]:
    """A mapping section of the file (``caps:``, ``server:``, ...); absent or empty: {}."""
    value = raw.get(name)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where or name}: expected a mapping, got {value!r}")
    return dict(value)


REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def redis_url(value: Any, where: str) -> str | None:
    url = text(value, where)
    if url and not url.startswith(REDIS_SCHEMES):
        raise ConfigError(f"{where}: expected a redis://, rediss:// or unix:// URL, got {url!r}")
    return url or None


def http_url(value: Any, where: str) -> str | None:
    url = text(value, where)
    if url and not url.startswith(("http://", "https://")):
        raise ConfigError(f"{where}: expected an http:// or https:// URL, got {url!r}")
    return url or None


def timezone(value: Any, where: str) -> str:
    name = text(value, where)
    try:
        ZoneInfo(name or "")
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"{where}: unknown time zone {value!r} (e.g. UTC, Europe/Paris)") from exc
    assert name is not None
    return name


LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


def log_level(value: Any, where: str) -> str:
    level = text(value, where)
    if level is None or level.lower() not in LOG_LEVELS:
        raise ConfigError(f"{where}: expected one of {', '.join(LOG_LEVELS)}, got {value!r}")
    return level.lower()


def port(value: Any, where: str) -> int:
    return int(number(value, where, whole=True, high=65535))


_PRICE_KEYS = {f.name for f in fields(PriceOverride)}
_OPTIONAL_PRICES = [f.name for f in fields(PriceOverride) if f.name not in ("input", "output")]


def _price(raw: Any, where: str) -> PriceOverride | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping) or "input" not in raw or "output" not in raw:
        raise ConfigError(f"{where}: price needs 'input' and 'output' ($ per million tokens)")
    # A misspelt cache price, ignored, would bill those tokens at the input price.
    unknown = set(raw) - _PRICE_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(map(str, unknown))}")

    def usd(key: str) -> Decimal:
        return decimal_number(raw[key], f"{where}.{key}", what="a price")

    opt = {k: usd(k) for k in _OPTIONAL_PRICES if raw.get(k) is not None}
    return PriceOverride(input=usd("input"), output=usd("output"), **opt)


_DEPLOYMENT_KEYS = {
    "name", "provider", "model", "base_url", "api_key_env", "api_key", "headers",
    "timeout", "connect_timeout", "max_retries", "retry_backoff", "price", "price_provider", "extra",
    "service_tier", "prompt_cache", "prompt_cache_ttl",
}  # fmt: skip
# The tiers a deployment may impose: never a dearer one than standard, so the
# caps' worst case for its requests is the standard price.
SERVICE_TIERS = ("flex", "default")
PROMPT_CACHE_MODES = ("auto", "always")
PROMPT_CACHE_TTLS = ("5m", "1h")


def _deployment(raw: Any, idx: int) -> Deployment:
    where = f"models[{idx}]"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping")
    unknown = set(raw) - _DEPLOYMENT_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}")
    if "name" not in raw or "provider" not in raw:
        raise ConfigError(f"{where}: 'name' and 'provider' are required")
    headers = section(raw, "headers", f"{where}.headers")
    if not all(isinstance(v, str) for v in headers.values()):
        raise ConfigError(f"{where}.headers: expected string values, got {headers!r}")
    ttl = _one_of(raw.get("prompt_cache_ttl"), PROMPT_CACHE_TTLS, f"{where}.prompt_cache_ttl")
    return Deployment(
        name=str(raw["name"]),
        provider=str(raw["provider"]),
        model=str(raw["model"]) if raw.get("model") else None,
        base_url=http_url(raw.get("base_url") or None, f"{where}.base_url"),
        api_key_env=text(raw.get("api_key_env"), f"{where}.api_key_env"),
        api_key=text(raw.get("api_key"), f"{where}.api_key"),
        headers={str(k): v for k, v in headers.items()},
        timeout=number(raw.get("timeout", 600.0), f"{where}.timeout", above=True),
        connect_timeout=number(
            raw.get("connect_timeout", 10.0), f"{where}.connect_timeout", above=True
        ),
        max_retries=int(number(raw.get("max_retries", 2), f"{where}.max_retries", whole=True)),
        retry_backoff=number(raw.get("retry_backoff", 0.25), f"{where}.retry_backoff"),
        price=_price(raw.get("price"), where + ".price"),
        price_provider=text(raw.get("price_provider"), f"{where}.price_provider"),
        extra=section(raw, "extra", f"{where}.extra"),
        service_tier=_one_of(raw.get("service_tier"), SERVICE_TIERS, f"{where}.service_tier"),
        prompt_cache=_one_of(raw.get("prompt_cache"), PROMPT_CACHE_MODES, f"{where}.prompt_cache"),
        prompt_cache_ttl=ttl or "5m",
    )


def _one_of(value: Any, allowed: tuple[str, ...], where: str) -> str | None:
    if value is None:
        return None
    if value not in allowed:
        raise ConfigError(f"{where}: expected one of {', '.join(allowed)}, got {value!r}")
    return str(value)


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


_TOP_KEYS = {
    "server", "db", "master_key", "require_key", "metrics_auth", "refuse_unknown_prices",
    "key_cache_ttl", "redis_url", "timezone", "webhook_url", "otlp_endpoint",
    "caps", "billing", "alerts", "routing", "cache", "responses", "models",
}  # fmt: skip
_SERVER_KEYS = {"host", "port", "drain_timeout", "log_level"}

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


def _as_is(value: str, where: str) -> str:
    return value


# ``TOKENOMY_<NAME>`` sets the setting ``<name>``, read as its YAML value is.
_FROM_ENV: dict[str, Callable[[str, str], Any]] = {
    "db": _as_is, "master_key": _as_is, "redis_url": redis_url, "timezone": timezone,
    "webhook_url": http_url, "otlp_endpoint": http_url, "host": _as_is, "port": port,
    "require_key": flag, "metrics_auth": flag, "refuse_unknown_prices": flag,
}  # fmt: skip


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
        except UnicodeDecodeError as exc:
            raise ConfigError(f"config {path} is not UTF-8 text: {exc}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"invalid YAML in {path}: {exc}") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: top level must be a mapping")
        raw = loaded or {}

    unknown = set(raw) - _TOP_KEYS
    if unknown:  # a misspelt `requre_key: false` or `cahce:` would silently do nothing
        raise ConfigError(f"unknown settings {sorted(map(str, unknown))}")
    server = section(raw, "server")
    unknown = set(server) - _SERVER_KEYS
    if unknown:
        raise ConfigError(f"server: unknown settings {sorted(map(str, unknown))}")
    db = raw.get("db", DEFAULT_DB)
    if not isinstance(db, str) or not db:
        raise ConfigError(f"db: expected a SQLite path or a postgresql:// URL, got {db!r}")
    settings = Settings(
        host=text(server.get("host"), "server.host") or "127.0.0.1",
        port=port(server.get("port", 4000), "server.port"),
        db=db,
        master_key=text(raw.get("master_key"), "master_key"),
        require_key=flag(raw.get("require_key", True), "require_key"),
        metrics_auth=flag(raw.get("metrics_auth", False), "metrics_auth"),
        refuse_unknown_prices=flag(
            raw.get("refuse_unknown_prices", False), "refuse_unknown_prices"
        ),
        drain_timeout=number(server.get("drain_timeout", 30.0), "server.drain_timeout"),
        key_cache_ttl=number(raw.get("key_cache_ttl", 2.0), "key_cache_ttl"),
        redis_url=redis_url(raw.get("redis_url"), "redis_url"),
        timezone=timezone(raw.get("timezone", "UTC"), "timezone"),
        webhook_url=http_url(raw.get("webhook_url"), "webhook_url"),
        caps=section(raw, "caps"),
        billing=section(raw, "billing"),
        alerts=section(raw, "alerts"),
        routing=section(raw, "routing"),
        cache=section(raw, "cache"),
        responses=section(raw, "responses"),
        otlp_endpoint=http_url(raw.get("otlp_endpoint"), "otlp_endpoint"),
        log_level=log_level(server.get("log_level", "info"), "server.log_level"),
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
    for name, read in _FROM_ENV.items():
        var = "TOKENOMY_" + name.upper()
        if env.get(var):
            env_over[name] = read(env[var], var)
    if env.get("TOKENOMY_REQUIRE_BALANCE"):
        env_over["billing"] = {
            **settings.billing,
            "require_balance": flag(env["TOKENOMY_REQUIRE_BALANCE"], "TOKENOMY_REQUIRE_BALANCE"),
        }
    settings = replace(settings, **env_over)
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if "port" in overrides:
        overrides["port"] = port(overrides["port"], "--port")
    if "log_level" in overrides:
        overrides["log_level"] = log_level(overrides["log_level"], "--log-level")
    settings = replace(settings, **overrides) if overrides else settings
    check_sections(settings)
    return settings


def check_sections(settings: Settings) -> None:
    """Parse each configured section with its own module's parser, so a misspelt or
    out-of-range setting stops every command when the file is read (not only `serve`,
    and there before the server starts). An empty section is the defaults: nothing
    to check, and nothing imported."""
    if settings.caps:
        from .caps.config import caps_config

        caps_config(settings)
    if settings.billing:
        from .billing.policy import billing_config

        billing_config(settings)
    if settings.alerts:
        from .insights.watch import watch_config

        watch_config(settings.alerts, settings.webhook_url)
    if settings.routing:
        from .routing.config import parse_routing

        parse_routing(settings.routing)
    if settings.cache:
        from .cache.config import cache_config

        cache_config(settings)
    if settings.responses:
        from .pipeline.chains import chains_config

        chains_config(settings)
