"""The Redis cache backend: entries shared by every replica.

Layout (``P`` is ``cache.redis_prefix``, "tokenomy:cache:" by default):

    P e:<namespace>:<key>   hash: meta (JSON), body, vec (semantic entries);
                            expires with the entry's TTL (Redis expiry)
    P idx                   sorted set: entry key -> created (unix seconds), for
                            evicting the oldest past ``max_entries``
    P v:<namespace>         sorted set: key -> created, the namespace's semantic
                            entries: a replica loads them all on first use, then
                            polls for the ones other replicas added since

The total size in bytes is left to Redis's own ``maxmemory`` policy.

A Redis that fails (down, or silent past ``timeout``) is not asked again for
`DOWN_FOR` seconds, and then by one call at a time until it answers: the others
fail at once (`CacheUnavailable`: the request goes on uncached), so a stalled
Redis costs each request nothing rather than a timeout per lookup and store.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from .store import CacheUnavailable, Entry, SemanticRow, Stats

T = TypeVar("T")

DOWN_FOR = 1.0  # seconds Redis is not asked after a failure


def _glob_escape(text: str) -> str:
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)


class RedisCacheStore:
    def __init__(
        self, url: str, *, prefix: str, max_entries: int, ttl: float, timeout: float = 5.0
    ) -> None:
        self.prefix = prefix
        self.max_entries = max_entries
        self.ttl = ttl
        self._r: Any = aioredis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        self._down_until = 0.0  # monotonic time until which Redis is not asked
        self._probing = False  # a call is finding out whether it is back

    def _ek(self, namespace: str, key: str) -> str:
        return f"{self.prefix}e:{namespace}:{key}"

    async def _run(self, fn: Callable[[], Awaitable[T]]) -> T:
        probe = False
        if self._down_until:
            if self._probing or time.monotonic() < self._down_until:
                raise CacheUnavailable("cache redis: unreachable a moment ago")
            probe = self._probing = True
        try:
            result = await fn()
        except (RedisError, OSError) as exc:
            self._down_until = time.monotonic() + DOWN_FOR
            raise CacheUnavailable(f"cache redis: {exc}") from exc
        finally:
            if probe:
                self._probing = False
        self._down_until = 0.0
        return result

    async def get(self, namespace: str, key: str, now: float) -> Entry | None:
        got = await self._run(
            lambda: self._r.hmget(self._ek(namespace, key), "meta", "body", "vec")
        )
        meta, body, vec = got
        if meta is None or body is None:
            return None
        return Entry.from_parts(namespace, key, meta, body, vec)

    async def put(self, entry: Entry, ttl: float) -> None:
        await self._run(lambda: self._put(entry, ttl))

    async def _put(self, entry: Entry, ttl: float) -> None:
        ek = self._ek(entry.namespace, entry.key)
        fields: dict[str, bytes] = {"meta": entry.meta(), "body": entry.body}
        if entry.vector is not None:
            fields["vec"] = entry.vector
        p, now = self.prefix, time.time()
        pipe = self._r.pipeline(transaction=True)
        pipe.delete(ek)
        pipe.hset(ek, mapping=fields)
        pipe.pexpire(ek, max(int(ttl * 1000), 1))
        pipe.zadd(p + "idx", {ek: entry.created})
        pipe.zremrangebyscore(p + "idx", "-inf", now - self.ttl)
        if entry.vector is not None:
            vk = f"{p}v:{entry.namespace}"
            pipe.zadd(vk, {entry.key: entry.created})
            pipe.zremrangebyscore(vk, "-inf", now - self.ttl)
            pipe.pexpire(vk, max(int(self.ttl * 1000), 1))
        pipe.zcard(p + "idx")
        res = await pipe.execute()
        excess = int(res[-1]) - self.max_entries
        if excess > 0:
            oldest = await self._r.zpopmin(p + "idx", excess)
            if oldest:
                await self._r.delete(*[m for m, _ in oldest])

    async def semantic_since(
        self, namespace: str, since: float, now: float, known: Mapping[str, float] | None = None
    ) -> list[SemanticRow]:
        return await self._run(lambda: self._semantic_since(namespace, since, now, known or {}))

    async def _semantic_since(
        self, namespace: str, since: float, now: float, known: Mapping[str, float]
    ) -> list[SemanticRow]:
        lo = max(since, now - self.ttl)
        rows = await self._r.zrangebyscore(
            f"{self.prefix}v:{namespace}", f"({lo}", "+inf", withscores=True
        )
        if known:  # only the sorted set's (key, created) was read for these
            rows = [(k, t) for k, t in rows if known.get(k.decode()) != t]
        if not rows:
            return []
        pipe = self._r.pipeline(transaction=False)
        for key, _ in rows:
            pipe.hmget(self._ek(namespace, key.decode()), "meta", "vec")
        got = await pipe.execute()
        return [
            SemanticRow.of(key.decode(), meta, bytes(vec), float(score))
            for (key, score), (meta, vec) in zip(rows, got, strict=True)
            if meta is not None and vec is not None
        ]

    async def semantic_namespaces(self, now: float) -> list[str]:
        return await self._run(self._semantic_namespaces)

    async def _semantic_namespaces(self) -> list[str]:
        start = len(self.prefix) + 2  # after "P v:"
        keys = [k async for k in self._r.scan_iter(match=f"{self.prefix}v:*", count=1000)]
        return sorted(k.decode()[start:] for k in keys)

    async def clear(self, namespace: str | None = None) -> int:
        return await self._run(lambda: self._clear(namespace))

    async def _clear(self, namespace: str | None) -> int:
        p = self.prefix
        ns = "*" if namespace is None else _glob_escape(namespace)
        keys = [k async for k in self._r.scan_iter(match=f"{p}e:{ns}:*", count=1000)]
        if namespace is not None:  # not "team:a:b"'s entries when clearing "team:a"
            base = len(self._ek(namespace, "").encode())
            keys = [k for k in keys if b":" not in k[base:]]  # keys are hex: no ":"
        for i in range(0, len(keys), 500):
            await self._r.delete(*keys[i : i + 500])
            await self._r.zrem(p + "idx", *keys[i : i + 500])
        vkeys = [k async for k in self._r.scan_iter(match=f"{p}v:{ns}", count=1000)]
        if vkeys:
            await self._r.delete(*vkeys)
        return len(keys)

    async def stats(self) -> Stats:
        n = await self._run(lambda: self._r.zcard(self.prefix + "idx"))
        return Stats(int(n), None)

    async def close(self) -> None:
        await self._r.aclose()
