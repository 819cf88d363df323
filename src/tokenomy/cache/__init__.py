"""Pay once: the response cache (exact, and semantic with the ``semantic`` extra).

- `key`: the canonical request and its hash; `policy`: what may be cached, the
  ``x-tokenomy-cache`` header and the tenant namespace; `config`: ``cache:``.
- `store`: the backend interface; `sqlite` (default) and `redis` implement it.
- `assemble`: a stream back to its JSON response; `replay`: JSON to a stream.
- `lever`: the pipeline stage; `similar`: its semantic path around `semantic`.

See ``docs/cache.md``.
"""

from __future__ import annotations

from .config import CacheConfig, cache_config
from .key import cache_key
from .lever import ResponseCache, open_cache_store, response_cache
from .store import CacheStore, CacheUnavailable, Entry, Stats

__all__ = [
    "CacheConfig",
    "CacheStore",
    "CacheUnavailable",
    "Entry",
    "ResponseCache",
    "Stats",
    "cache_config",
    "cache_key",
    "open_cache_store",
    "response_cache",
]
