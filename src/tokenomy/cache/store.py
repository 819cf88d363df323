"""The backend interface: a cache entry, and where entries live.

An entry is one successful, complete response in the client's API format (JSON,
the same bytes a non-streamed request got), the usage and cost of the upstream
call that produced it, and, for entries the semantic cache indexes, the vector.
Its address is (namespace, key): no operation reads across namespaces.

Backends: `tokenomy.cache.sqlite` (the default, one file) and
`tokenomy.cache.redis` (shared by replicas).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

import orjson

from ..usage import Usage


@dataclass(frozen=True, slots=True)
class Entry:
    namespace: str
    key: str  # hex SHA-256 of the canonical request (tokenomy.cache.key)
    api: str  # "openai" or "anthropic": the format of `body`
    body: bytes  # the complete response, JSON, in that format
    usage: Usage  # what the upstream call used
    cost_usd: Decimal | None  # what it cost then (None: unknown price)
    served_model: str | None
    request_id: str  # the request that paid for it
    created: float  # unix seconds
    # Semantic entries: what the index needs to rebuild itself (tokenomy.cache.semantic).
    partition: str | None = None  # the hash of the request's context
    text: str | None = None  # the embedded text
    vector: bytes | None = None  # its embedding

    @property
    def size(self) -> int:
        return len(self.body) + len(self.vector or b"") + len(self.text or "")

    def meta(self) -> bytes:
        """Everything but the body and the vector, as JSON."""
        return orjson.dumps(
            {
                "api": self.api,
                "usage": dataclasses.asdict(self.usage),
                "cost_usd": None if self.cost_usd is None else str(self.cost_usd),
                "served_model": self.served_model,
                "request_id": self.request_id,
                "created": self.created,
                "partition": self.partition,
                "text": self.text,
            }
        )

    @classmethod
    def from_parts(
        cls, namespace: str, key: str, meta: bytes, body: bytes, vector: bytes | None
    ) -> Entry:
        m: dict[str, Any] = orjson.loads(meta)
        cost = m.get("cost_usd")
        return cls(
            namespace=namespace,
            key=key,
            api=str(m["api"]),
            body=body,
            usage=Usage(**m.get("usage") or {}),
            cost_usd=None if cost is None else Decimal(cost),
            served_model=m.get("served_model"),
            request_id=str(m.get("request_id") or ""),
            created=float(m.get("created") or 0.0),
            partition=m.get("partition"),
            text=m.get("text"),
            vector=vector or None,
        )


@dataclass(frozen=True, slots=True)
class SemanticRow:
    """A semantic entry as the index loads it."""

    key: str
    partition: str
    text: str
    vector: bytes
    created: float

    @classmethod
    def of(cls, key: str, meta: bytes, vector: bytes, created: float) -> SemanticRow:
        m = orjson.loads(meta)
        return cls(key, str(m.get("partition") or ""), str(m.get("text") or ""), vector, created)


class CacheUnavailable(Exception):
    """The backend failed (Redis down, SQLite locked...): the request goes on uncached."""


@dataclass(frozen=True, slots=True)
class Stats:
    entries: int
    bytes: int | None  # None: the backend does not track it (Redis)


class CacheStore(Protocol):
    """Where entries live. Every method is a coroutine; ``now`` is unix seconds.
    Backend failures raise `CacheUnavailable`."""

    async def get(self, namespace: str, key: str, now: float) -> Entry | None:
        """The live entry at (namespace, key), or None (missing or expired)."""

    async def put(self, entry: Entry, ttl: float) -> None:
        """Store (or replace) an entry for ``ttl`` seconds; may evict the oldest."""

    async def semantic_since(
        self, namespace: str, since: float, now: float, known: Mapping[str, float] | None = None
    ) -> list[SemanticRow]:
        """The live semantic entries of one namespace created after ``since``, but
        for those ``known`` maps (key -> created) to their own created time: rows
        the caller holds already, left out before their vectors are read."""

    async def semantic_namespaces(self, now: float) -> list[str]:
        """The namespaces that hold live semantic entries (loaded at start-up)."""

    async def clear(self, namespace: str | None = None) -> int:
        """Delete every entry (of one namespace); returns how many."""

    async def stats(self) -> Stats: ...

    async def close(self) -> None: ...
