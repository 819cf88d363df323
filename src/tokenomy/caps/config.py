"""The caps' settings: the ``caps:`` section of the config file, plus the
gateway-wide ``redis_url``, ``timezone`` and ``webhook_url``.

    caps:
      redis_url: redis://...        # default: the gateway-wide redis_url
      redis_prefix: "tokenomy:"     # every Redis key starts with this
      lease: 30                     # seconds a reservation lives without renewal
      sweep_interval: 1             # seconds between sweeps for expired reservations
      reload_interval: 1            # seconds between checks for changed definitions
      default_max_output: 16384     # output tokens reserved when neither the request
      output_limits: {my-model: 8192}  # nor this table (plus built-ins) says more
      inexact_input_margin: "1.2"   # scale for input counts that are estimates
      alert_timeout: 5              # seconds a webhook may take
      redis_timeout: 5              # seconds before a silent Redis counts as unreachable
      allowance: 16                 # on Redis: capacity a replica may hold ahead, per counter,
                                    # in worst cases of a request (0: every check goes to Redis)
      allowance_idle: 2             # seconds an unused allowance is kept before it is returned
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ..config import Settings, number, redis_url, section
from ..errors import ConfigError
from .estimate import DEFAULT_MAX_OUTPUT


@dataclass(frozen=True, slots=True)
class CapsConfig:
    redis_url: str | None = None
    redis_prefix: str = "tokenomy:"
    timezone: str = "UTC"
    webhook_url: str | None = None
    lease: float = 30.0
    sweep_interval: float = 1.0
    reload_interval: float = 1.0
    max_hold: float = 3600.0  # a reservation is not renewed past this age
    default_max_output: int = DEFAULT_MAX_OUTPUT
    output_limits: Mapping[str, int] = field(default_factory=dict)
    inexact_input_margin: Decimal = Decimal("1.2")
    alert_timeout: float = 5.0
    redis_timeout: float = 5.0  # generous: a busy event loop reads replies late
    allowance: int = 16  # see caps.allowance; 0: admit every request in Redis
    allowance_idle: float = 2.0


_DURATIONS = ("lease", "sweep_interval", "reload_interval", "max_hold", "alert_timeout",
              "redis_timeout", "allowance_idle")  # fmt: skip


def caps_config(settings: Settings) -> CapsConfig:
    raw: Mapping[str, Any] = getattr(settings, "caps", None) or {}
    unknown = set(raw) - set(CapsConfig.__dataclass_fields__) - {"redis_url"}
    if unknown:
        raise ConfigError(f"caps: unknown settings {sorted(unknown)}")
    kw: dict[str, Any] = {}
    for name in _DURATIONS:
        if raw.get(name) is not None:
            kw[name] = number(raw[name], f"caps.{name}", above=True)
    if raw.get("allowance") is not None:
        kw["allowance"] = int(number(raw["allowance"], "caps.allowance", whole=True))
    if raw.get("default_max_output") is not None:
        kw["default_max_output"] = _output_limit(raw["default_max_output"], "default_max_output")
    limits = section(raw, "output_limits", "caps.output_limits")
    if limits:
        kw["output_limits"] = {
            str(k): _output_limit(v, f"output_limits.{k}") for k, v in limits.items()
        }
    if raw.get("inexact_input_margin") is not None:
        # A scale below 1 would shrink a worst case that is meant to be an upper bound.
        margin = number(raw["inexact_input_margin"], "caps.inexact_input_margin", low=1)
        kw["inexact_input_margin"] = Decimal(str(margin))
    if raw.get("redis_prefix") is not None:
        kw["redis_prefix"] = str(raw["redis_prefix"])
    return CapsConfig(
        # `caps.redis_url`, when given, wins over the gateway-wide one (it was ignored:
        # counters stayed in one replica's memory while the operator meant Redis).
        redis_url=redis_url(raw.get("redis_url"), "caps.redis_url") or settings.redis_url,
        timezone=settings.timezone,
        webhook_url=settings.webhook_url,
        **kw,
    )


def _output_limit(value: Any, name: str) -> int:
    """A number of output tokens: whole, and at least 1 (a model answers something)."""
    return int(number(value, f"caps.{name}", whole=True, low=1))
