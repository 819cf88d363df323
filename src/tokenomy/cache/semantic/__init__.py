"""The semantic cache's brain: which cached question, if any, is the new one.

Used by the cache stage like this (the backend owns entries and answers; this
package only decides which entry matches)::

    from tokenomy.cache.semantic import SemanticIndex, context_of

    index = SemanticIndex(target=0.15)          # operator's wrong-hit rate
    index.load(namespace, backend_vectors)      # at start: StoredVector rows
    ctx = context_of(body)                      # None: not semantically cacheable
    probe = index.embed_context(ctx)            # embed once per request
    match = index.lookup(namespace, probe)      # Match(entry_id, cosine, probability)
    ... on a miss, after the upstream answered:
    stored = index.add(namespace, probe, entry_id)   # keep stored.* with the entry
    ... on expiry or eviction:
    index.remove(namespace, entry_id)

Needs the ``semantic`` extra (numpy, onnxruntime, tokenizers, usearch).
"""

from __future__ import annotations

from .context import Context, context_of
from .index import Match, Probe, SemanticIndex, StoredVector
from .verifier import Verifier, shipped_verifier

__all__ = [
    "Context",
    "Match",
    "Probe",
    "SemanticIndex",
    "StoredVector",
    "Verifier",
    "context_of",
    "shipped_verifier",
]
