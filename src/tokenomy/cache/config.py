"""The cache's settings: the ``cache:`` section of the config file.

cache:
  enabled: true              # off by default: nothing is cached unless asked for
  backend: sqlite            # or redis (shared by replicas)
  path: tokenomy.cache.db    # sqlite: default is the ledger's file name + .cache.db
  redis_url: redis://...     # redis: default is the gateway-wide redis_url
  redis_prefix: "tokenomy:cache:"
  namespace: team            # key | team | org | shared:NAME (one namespace for all)
  ttl: 86400                 # seconds an entry lives
  max_entry_bytes: 1000000   # larger responses are not stored
  max_entries: 100000        # beyond these, the oldest entries are evicted
  max_bytes: 500000000       # (sqlite; Redis bounds memory with its own maxmemory)
  only_deterministic: true   # only temperature 0 or a fixed seed
  cache_tools: false         # true: requests with any tools may be cached
  allowed_tools: []          # or: only these tool names (side-effect free)
  semantic:                  # needs the ``semantic`` extra
    enabled: false
    target_wrong_hit_rate: 0.01
    sync_interval: 1         # seconds between loads of other replicas' new entries
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import Settings, flag, number, redis_url
from ..errors import ConfigError

NAMESPACES = ("key", "team", "org")
SHARED = "shared:"


@dataclass(frozen=True, slots=True)
class SemanticConfig:
    """``cache.semantic``: the similar-request layer (`tokenomy.cache.similar`)."""

    enabled: bool = False
    target_wrong_hit_rate: float = 0.01  # the verifier's threshold is calibrated to this
    sync_interval: float = 1.0  # seconds between loads of entries other replicas added


@dataclass(frozen=True, slots=True)
class CacheConfig:
    enabled: bool = False
    backend: str = "sqlite"
    path: str = "tokenomy.cache.db"
    redis_url: str | None = None
    redis_prefix: str = "tokenomy:cache:"
    namespace: str = "team"
    ttl: float = 86400.0
    max_entry_bytes: int = 1_000_000
    max_entries: int = 100_000
    max_bytes: int = 500_000_000
    only_deterministic: bool = True
    cache_tools: bool = False
    allowed_tools: frozenset[str] = frozenset()
    coalesce_wait: float = 30.0  # seconds a repeat waits for an identical request in flight
    semantic: SemanticConfig = field(default_factory=SemanticConfig)

    @property
    def semantic_enabled(self) -> bool:
        return self.semantic.enabled


def default_path(db: str) -> str:
    """The cache file next to a SQLite ledger (``ledger.db`` or ``sqlite:///ledger.db``
    → ``ledger.cache.db``, ``~`` expanded as for the ledger)."""
    from ..ledger import sqlite_path

    path = sqlite_path(db)
    if path is None:  # a PostgreSQL ledger: a file in the working directory
        return "tokenomy.cache.db"
    if path == ":memory:":
        return path
    p = Path(path).expanduser()
    return str(p.with_name(p.stem + ".cache.db"))


_SIZES = ("max_entry_bytes", "max_entries", "max_bytes")
_BOOLS = ("enabled", "only_deterministic", "cache_tools")


SEMANTIC_KEYS = frozenset(SemanticConfig.__dataclass_fields__)


def _semantic(raw: Any) -> SemanticConfig:
    if not isinstance(raw, Mapping):
        raise ConfigError("cache.semantic: expected a mapping")
    unknown = set(raw) - SEMANTIC_KEYS
    if unknown:
        raise ConfigError(f"cache.semantic: unknown settings {sorted(unknown)}")
    default = SemanticConfig()
    where = "cache.semantic.target_wrong_hit_rate"
    value = raw.get("target_wrong_hit_rate", default.target_wrong_hit_rate)
    rate = number(value, where, high=1)
    if rate in (0, 1):  # no threshold keeps every wrong hit out, or lets all of them in
        raise ConfigError(f"{where}: expected a number between 0 and 1, not either, got {value!r}")
    return SemanticConfig(
        enabled=flag(raw.get("enabled", default.enabled), "cache.semantic.enabled"),
        target_wrong_hit_rate=rate,
        sync_interval=number(
            raw.get("sync_interval", default.sync_interval), "cache.semantic.sync_interval"
        ),
    )


def cache_config(settings: Settings) -> CacheConfig:
    raw: Mapping[str, Any] = getattr(settings, "cache", None) or {}
    unknown = set(raw) - set(CacheConfig.__dataclass_fields__)
    if unknown:
        raise ConfigError(f"cache: unknown settings {sorted(unknown)}")
    kw: dict[str, Any] = {"path": default_path(settings.db), "redis_url": settings.redis_url}
    for name in _BOOLS:
        if raw.get(name) is not None:
            kw[name] = flag(raw[name], f"cache.{name}")
    for name in _SIZES:
        if raw.get(name) is not None:
            kw[name] = int(number(raw[name], f"cache.{name}", whole=True, above=True))
    if raw.get("ttl") is not None:
        kw["ttl"] = number(raw["ttl"], "cache.ttl", above=True)
    if raw.get("coalesce_wait") is not None:
        kw["coalesce_wait"] = number(raw["coalesce_wait"], "cache.coalesce_wait")
    for name in ("path", "redis_prefix"):
        if raw.get(name):
            kw[name] = str(raw[name])
    if raw.get("redis_url"):
        kw["redis_url"] = redis_url(raw["redis_url"], "cache.redis_url")
    tools = raw.get("allowed_tools")
    if tools is not None:
        # YAML reads a bare `- 123` as a number: a tool may be named so
        names = isinstance(tools, list) and all(
            isinstance(t, str | int) and not isinstance(t, bool) for t in tools
        )
        if not names:
            raise ConfigError(f"cache.allowed_tools: expected a list of tool names, got {tools!r}")
        kw["allowed_tools"] = frozenset(str(t) for t in tools)
    if raw.get("semantic") is not None:
        kw["semantic"] = _semantic(raw["semantic"])
    backend = str(raw.get("backend", "sqlite"))
    if backend not in ("sqlite", "redis"):
        raise ConfigError(f"cache.backend: expected sqlite or redis, got {backend!r}")
    if backend == "redis" and not kw.get("redis_url"):
        raise ConfigError("cache.backend redis needs cache.redis_url or redis_url")
    ns = str(raw.get("namespace", "team"))
    if ns not in NAMESPACES and not (ns.startswith(SHARED) and len(ns) > len(SHARED)):
        raise ConfigError(f"cache.namespace: expected key, team, org or shared:NAME, got {ns!r}")
    return CacheConfig(backend=backend, namespace=ns, **kw)
