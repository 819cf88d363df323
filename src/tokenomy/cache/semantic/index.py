"""The semantic index: per-namespace, per-context vector search plus the verifier.

Layout: namespace (the tenant's cache namespace) → partition (the hash of the
request's context, see `context`) → vectors. A lookup searches exactly one
partition of exactly one namespace, so a tenant can never be served another
tenant's entry, and a question is only ever compared with questions asked in the
same context.

A partition starts as a small numpy matrix (exact search; most multi-turn
contexts hold a handful of entries, and an HNSW graph costs ~50 KB even when
empty) and becomes a usearch HNSW index once it holds more than
`SMALL_PARTITION` entries. Vectors are stored as float16 (half the memory; the
cosine moves by ~1e-3).

The index keeps no answers: entries are the cache backend's, identified by its
``entry_id``. The backend stores `StoredVector` (id, partition, text, vector
bytes) with each entry so a replica rebuilds its index with `load` at start, and
calls `remove` when an entry expires or is evicted.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .calibrate import NEVER
from .context import Context
from .features import batch_features
from .verifier import Verifier, shipped_verifier

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

DIM = 384
SMALL_PARTITION = 256
CANDIDATES = 4  # nearest neighbours the verifier examines per lookup


@dataclass(frozen=True)
class Probe:
    """A request's context, embedded once: look it up, and on a miss add the same
    probe after the upstream answers (no second embedding)."""

    context: Context
    vector: NDArray[np.float32]

    def vector_bytes(self) -> bytes:
        return bytes(self.vector.astype("<f4").tobytes())


@dataclass(frozen=True)
class StoredVector:
    """What the backend keeps with a semantic entry to rebuild the index."""

    entry_id: str
    partition: str
    text: str
    vector: bytes  # DIM little-endian float32


@dataclass(frozen=True)
class Match:
    """A verified hit: serve the backend's entry ``entry_id``."""

    entry_id: str
    cosine: float
    probability: float


def new_hnsw() -> Any:
    """An empty usearch HNSW index for unit vectors (inner product = cosine)."""
    # usearch 2.26's native module makes a *later* `import onnxruntime` crash the
    # process (segfault in onnxruntime's initialisation); importing onnxruntime
    # first is safe, so do that whenever it is installed.
    with contextlib.suppress(ImportError):
        import onnxruntime  # noqa: F401
    from usearch.index import Index

    return Index(ndim=DIM, metric="ip", dtype="f16", connectivity=16)


class _Partition:
    def __init__(self) -> None:
        self.small: dict[int, NDArray[np.float16]] | None = {}
        self.hnsw: Any = None
        self.texts: dict[int, str] = {}

    def __len__(self) -> int:
        return len(self.texts)

    def add(self, keys: list[int], texts: list[str], vectors: NDArray[np.float32]) -> None:
        """Add rows (one HNSW batch insert when the partition is or becomes large)."""
        import numpy as np

        self.texts.update(zip(keys, texts, strict=True))
        half = vectors.astype(np.float16).reshape(len(keys), DIM)
        if self.small is not None and len(self.small) + len(keys) <= SMALL_PARTITION:
            self.small.update(zip(keys, half, strict=True))
            return
        if self.small is not None:  # promote: the small rows and the new ones at once
            if self.small:
                keys = [*self.small, *keys]
                half = np.concatenate([np.stack(list(self.small.values())), half])
            self.small = None
            self.hnsw = new_hnsw()
        self.hnsw.add(np.asarray(keys, dtype=np.uint64), half)

    def remove(self, key: int) -> None:
        self.texts.pop(key, None)
        if self.small is not None:
            self.small.pop(key, None)
        else:
            self.hnsw.remove(key)

    def nearest(self, vector: NDArray[np.float32], k: int) -> tuple[list[int], NDArray[np.float32]]:
        """Up to k (keys, float32 vectors) nearest to ``vector``."""
        import numpy as np

        if self.small is not None:
            keys = list(self.small)
            if not keys:
                return [], np.zeros((0, DIM), dtype=np.float32)
            mat = np.stack([self.small[key] for key in keys]).astype(np.float32)
            top = np.argsort(-(mat @ vector))[:k]
            return [keys[i] for i in top], mat[top]
        found = self.hnsw.search(vector.astype(np.float16), k)
        found_keys = [int(key) for key in found.keys]
        if not found_keys:
            return [], np.zeros((0, DIM), dtype=np.float32)
        vectors = np.asarray(self.hnsw.get(np.asarray(found_keys, dtype=np.uint64)))
        return found_keys, vectors.astype(np.float32).reshape(len(found_keys), DIM)


class SemanticIndex:
    """Thread-safe semantic lookup for many namespaces.

    ``target`` is the operator's wrong-hit rate (share of served hits that are
    not the same question); the verifier's threshold for it comes from the
    shipped calibration (`Verifier.threshold`)."""

    def __init__(
        self,
        *,
        target: float = 0.02,
        verifier: Verifier | None = None,
        embed: Callable[[str], NDArray[np.float32]] | None = None,
        candidates: int = CANDIDATES,
    ) -> None:
        self.verifier = verifier or shipped_verifier()
        self.target = target
        self.threshold = self.verifier.threshold(target)
        self.candidates = candidates
        self._embed = embed
        self._spaces: dict[str, dict[str, _Partition]] = {}
        self._where: dict[tuple[str, str], tuple[str, int]] = {}  # (ns, id) -> (partition, key)
        self._ids: dict[int, str] = {}
        self._keys = itertools.count(1)
        self._lock = threading.Lock()

    # -- embedding -------------------------------------------------------------
    def embed_context(self, context: Context) -> Probe:
        """Embed a context once (outside any lock: this is the slow part)."""
        if self._embed is None:
            from tokenomy.embed import shared_embedder

            self._embed = shared_embedder().embed_one
        return Probe(context, self._embed(context.text))

    # -- lookups ---------------------------------------------------------------
    def lookup(self, namespace: str, probe: Probe) -> Match | None:
        """The best verified entry of ``namespace`` in the probe's context, if any."""
        import numpy as np

        if self.threshold >= NEVER:  # the target is below what calibration can bound
            return None
        with self._lock:
            part = self._spaces.get(namespace, {}).get(probe.context.partition)
            if part is None or not len(part):
                return None
            keys, vectors = part.nearest(probe.vector, self.candidates)
            texts = [part.texts[k] for k in keys]
            ids = [self._ids[k] for k in keys]
        if not ids:
            return None
        queries = np.broadcast_to(probe.vector, vectors.shape)
        features = batch_features(texts, [probe.context.text] * len(ids), vectors, queries)
        probs = self.verifier.probabilities(features)
        best = int(np.argmax(probs))
        if probs[best] < self.threshold:
            return None
        return Match(ids[best], float(features[best, 0]), float(probs[best]))

    # -- maintenance -----------------------------------------------------------
    def add(self, namespace: str, probe: Probe, entry_id: str) -> StoredVector:
        """Index an entry; returns what the backend should store to rebuild it."""
        stored = StoredVector(
            entry_id, probe.context.partition, probe.context.text, probe.vector_bytes()
        )
        self._insert(namespace, [stored], probe.vector[None, :])
        return stored

    def load(self, namespace: str, entries: Iterable[StoredVector]) -> int:
        """Rebuild from stored entries (a replica at start, or catching up with
        entries other replicas added); returns how many were new. Entries already
        indexed in the same partition are skipped, so loading overlapping batches
        is idempotent. Inserted per partition in one batch (fast HNSW bulk build)."""
        import numpy as np

        latest = {e.entry_id: e for e in entries}  # an id given twice: the last one wins
        with self._lock:
            fresh = [
                e
                for e in latest.values()
                if self._where.get((namespace, e.entry_id), ("",))[0] != e.partition
            ]
        groups: dict[str, list[tuple[StoredVector, NDArray[np.float32]]]] = {}
        for entry in fresh:
            vector = np.frombuffer(entry.vector, dtype="<f4").astype(np.float32)
            if vector.shape != (DIM,):
                raise ValueError(f"entry {entry.entry_id}: vector of {vector.size} floats")
            groups.setdefault(entry.partition, []).append((entry, vector))
        for group in groups.values():
            self._insert(namespace, [e for e, _ in group], np.stack([v for _, v in group]))
        return sum(len(g) for g in groups.values())

    def _insert(
        self, namespace: str, entries: list[StoredVector], vectors: NDArray[np.float32]
    ) -> None:
        """Insert entries of one partition."""
        partition = entries[0].partition
        with self._lock:
            keys = []
            for entry in entries:
                self._remove_locked(namespace, entry.entry_id)  # re-adding replaces
                key = next(self._keys)
                self._where[namespace, entry.entry_id] = (partition, key)
                self._ids[key] = entry.entry_id
                keys.append(key)
            space = self._spaces.setdefault(namespace, {})
            part = space.setdefault(partition, _Partition())
            part.add(keys, [e.text for e in entries], vectors)

    def remove(self, namespace: str, entry_id: str) -> bool:
        """Forget an entry (expired or evicted); False when it was not indexed."""
        with self._lock:
            return self._remove_locked(namespace, entry_id)

    def _remove_locked(self, namespace: str, entry_id: str) -> bool:
        where = self._where.pop((namespace, entry_id), None)
        if where is None:
            return False
        partition, key = where
        space = self._spaces[namespace]
        space[partition].remove(key)
        self._ids.pop(key, None)
        if not len(space[partition]):
            del space[partition]
        if not space:
            del self._spaces[namespace]
        return True

    def size(self, namespace: str | None = None) -> int:
        """Entries indexed in one namespace, or in all."""
        with self._lock:
            if namespace is not None:
                return sum(len(p) for p in self._spaces.get(namespace, {}).values())
            return len(self._where)
