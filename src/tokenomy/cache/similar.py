"""The semantic path of the cache stage: embed, find, verify, and keep replicas in step.

Wraps `tokenomy.cache.semantic.SemanticIndex` (the other half of the semantic
cache: context, vector index, verifier) with what the stage needs around it:

- embedding and verification run in a worker thread, off the event loop;
- every namespace's vectors are loaded from the backend at start-up (and a
  namespace first seen later, on its first lookup), then every
  ``sync_interval`` seconds (1 by default) the entries created since the last
  load are added: replicas sharing a Redis backend see each other's new entries
  within about that interval, with no extra channel;
- a match whose entry has expired or been evicted is forgotten and is a miss;
  at each sync the vectors of entries past their TTL are dropped, in every
  namespace (one that went quiet too), and beyond ``max_entries`` vectors the
  oldest are dropped, as the backend evicts its oldest entries: the index does
  not outgrow the backend.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from .config import SemanticConfig
from .store import CacheStore, Entry, SemanticRow

log = logging.getLogger("tokenomy.cache")

# Seconds before the newest entry seen that each sync looks at again: an entry's
# `created` is stamped by its replica's clock before the entry is embedded and
# written, so an entry can land after a newer one was already read (and clocks of
# replicas differ a little). Only the keys in that window are read again; the
# vectors of the rows already loaded are not (`CacheStore.semantic_since`'s known).
OVERLAP = 5.0


@dataclass(frozen=True, slots=True)
class Found:
    entry: Entry
    similarity: float
    probability: float


class SimilarLookup:
    def __init__(
        self,
        store: CacheStore,
        options: SemanticConfig,
        *,
        ttl: float,
        max_entries: int | None = None,
    ) -> None:
        try:
            from .semantic import SemanticIndex
        except ImportError as exc:
            raise ConfigError(
                f"cache.semantic needs the semantic extra: pip install 'tokenomy[semantic]' ({exc})"
            ) from exc
        from ..embed import shared_embedder

        self.store = store
        target = options.target_wrong_hit_rate
        self.index = SemanticIndex(target=target)
        self.never = self.index.threshold > 1  # the cache switches the semantic layer off
        if self.never:
            log.warning(
                "cache.semantic.target_wrong_hit_rate %s is below what the shipped verifier "
                "was calibrated to reach: the semantic cache would never hit and is off",
                target,
            )
        else:
            shared_embedder()  # load the model now (or fail at start-up), not on a request
        self.sync_interval = options.sync_interval
        self.ttl = ttl
        self.max_entries = max_entries
        self._synced: dict[str, tuple[float, float]] = {}  # ns -> (checked at, newest seen)
        # What is indexed, to skip rows already loaded and to drop old vectors:
        # ns -> key -> created, and (created, ns, key) of every namespace in about
        # the order indexed (an entry replaced since is skipped when its turn comes).
        self._born: dict[str, dict[str, float]] = {}
        self._order: deque[tuple[float, str, str]] = deque()
        self._indexed = 0  # vectors in the index
        self._lock = asyncio.Lock()

    def probe(
        self,
        body: Mapping[str, Any],
        headers: Mapping[str, str] | None = None,
        route: Sequence[str] | None = None,
    ) -> Any | None:
        """The request's embedded context (a `Probe`), or None when it has none."""
        from .semantic import context_of

        ctx = context_of(body, headers, route)
        return None if ctx is None else self.index.embed_context(ctx)

    def _probe_and_match(
        self,
        namespace: str,
        body: Mapping[str, Any],
        headers: Mapping[str, str] | None,
        route: Sequence[str] | None,
    ) -> tuple[Any, Any]:
        """Embed and search in one hop to a worker thread: (probe, match or None)."""
        probe = self.probe(body, headers, route)
        if probe is None:
            return None, None
        return probe, self.index.lookup(namespace, probe)

    async def find(
        self,
        namespace: str,
        body: Mapping[str, Any],
        headers: Mapping[str, str] | None = None,
        route: Sequence[str] | None = None,
    ) -> tuple[Any, Found | None]:
        """(probe, the verified entry or None); probe is None when not embeddable."""
        await self.sync(namespace)
        probe, match = await asyncio.to_thread(
            self._probe_and_match, namespace, body, headers, route
        )
        if probe is None or match is None:
            return probe, None
        entry = await self.store.get(namespace, match.entry_id, time.time())
        if entry is None:  # expired or evicted in the backend
            self._forget(namespace, match.entry_id)
            return probe, None
        return probe, Found(entry, match.cosine, match.probability)

    async def preload(self) -> int:
        """Load every namespace's vectors (at start-up); returns how many namespaces."""
        namespaces = await self.store.semantic_namespaces(time.time())
        for ns in namespaces:
            await self.sync(ns)
        return len(namespaces)

    async def sync(self, namespace: str) -> None:
        now = time.time()
        checked, newest = self._synced.get(namespace, (0.0, 0.0))
        if checked and now - checked < self.sync_interval:
            return
        async with self._lock:
            checked, newest = self._synced.get(namespace, (0.0, 0.0))
            if checked and now - checked < self.sync_interval:
                return
            since = newest - OVERLAP if newest else 0.0
            born = self._born.setdefault(namespace, {})
            rows = await self.store.semantic_since(namespace, since, now, born)
            new = sorted((r for r in rows if born.get(r.key) != r.created), key=lambda r: r.created)
            if new:
                await asyncio.to_thread(self._load, namespace, new)
                # The bookkeeping is the loop's alone (`add` and `find` change it
                # meanwhile, unlocked): noted here, not in the worker thread.
                for r in new:
                    self._note(namespace, r.key, r.created)
                newest = max(newest, new[-1].created)
            self._expire(now)
            self._synced[namespace] = (now, newest)

    def _load(self, namespace: str, rows: list[SemanticRow]) -> None:
        from .semantic import StoredVector

        self.index.load(
            namespace, (StoredVector(r.key, r.partition, r.text, r.vector) for r in rows)
        )

    def _note(self, namespace: str, key: str, created: float) -> None:
        born = self._born.setdefault(namespace, {})
        if key not in born:
            self._indexed += 1
        born[key] = created
        self._order.append((created, namespace, key))

    def _expire(self, now: float) -> None:
        """Forget the vectors of entries past their TTL, in every namespace, and the
        oldest beyond ``max_entries`` (the backend dropped or evicted them)."""
        order, cutoff, cap = self._order, now - self.ttl, self.max_entries
        while order and (order[0][0] <= cutoff or (cap is not None and self._indexed > cap)):
            created, namespace, key = order.popleft()
            born = self._born.get(namespace)
            if born is not None and born.get(key) == created:  # not replaced since
                self._forget(namespace, key)
                if not born:
                    del self._born[namespace]

    def _forget(self, namespace: str, key: str) -> None:
        born = self._born.get(namespace)
        if born is not None and born.pop(key, None) is not None:
            self._indexed -= 1
        self.index.remove(namespace, key)

    def indexed(self) -> int:
        """Vectors in the index (for tests and diagnostics)."""
        return self._indexed

    async def add(
        self, namespace: str, probe: Any, key: str, created: float
    ) -> tuple[str, str, bytes]:
        """Index a new entry; (partition, text, vector bytes) to store with it."""
        stored = await asyncio.to_thread(self.index.add, namespace, probe, key)
        self._note(namespace, key, created)
        return stored.partition, stored.text, stored.vector
