"""Labelled text pairs (``{"text_a", "text_b", "label"}`` JSONL) and their embeddings.

Embedding ~100k questions takes minutes on a CPU, so `embed_pairs` can keep the
vectors in a cache directory (one ``.npy`` per input file, keyed by the file's
content hash and the embedder's own ``model_id``: the shipped graph and the
re-quantized one give different vectors) and reuse them on the next run.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import orjson

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray


class TextEmbedder(Protocol):
    """What `embed_pairs` needs of an embedder (`tokenomy.embed.Embedder` is one)."""

    @property
    def model_id(self) -> str: ...

    def embed(self, texts: list[str]) -> NDArray[np.float32]: ...


@dataclass(frozen=True)
class Pairs:
    """Pairs with unit embeddings: rows of ``u`` embed ``a``, rows of ``v`` embed ``b``."""

    a: list[str]
    b: list[str]
    labels: NDArray[np.int8]
    u: NDArray[np.float32]
    v: NDArray[np.float32]

    def __len__(self) -> int:
        return len(self.a)

    def subset(self, idx: NDArray[np.int64]) -> Pairs:
        return Pairs(
            [self.a[i] for i in idx],
            [self.b[i] for i in idx],
            self.labels[idx],
            self.u[idx],
            self.v[idx],
        )


def read_pairs(path: Path) -> tuple[list[str], list[str], list[int]]:
    """(text_a, text_b, label) columns of a JSONL pairs file; blank lines skipped."""
    a: list[str] = []
    b: list[str] = []
    labels: list[int] = []
    with path.open("rb") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise ValueError(f"{path}:{n}: not JSON: {exc}") from exc
            ok = isinstance(row, dict) and row.get("label") in (0, 1)  # a 7 is no label
            if not ok or not all(isinstance(row.get(k), str) for k in ("text_a", "text_b")):
                raise ValueError(f"{path}:{n}: need text_a, text_b and a 0/1 label")
            a.append(row["text_a"])
            b.append(row["text_b"])
            labels.append(int(row["label"]))
    return a, b, labels


def embed_texts(
    texts: list[str], embed: Callable[[list[str]], NDArray[np.float32]]
) -> NDArray[np.float32]:
    """Embed unique texts once, shortest first (less padding per batch)."""
    import numpy as np

    unique = sorted(set(texts), key=len)
    vectors = embed(unique) if unique else np.zeros((0, 384), dtype=np.float32)
    row = {t: i for i, t in enumerate(unique)}
    return vectors[[row[t] for t in texts]]


def embed_pairs(
    path: Path,
    *,
    cache_dir: Path | None = None,
    embedder: TextEmbedder | None = None,
) -> Pairs:
    """Read a pairs file and embed both sides (from ``cache_dir`` when cached);
    with the shared local embedder unless given another."""
    import numpy as np

    a, b, labels = read_pairs(path)
    if embedder is None:
        from tokenomy.embed import shared_embedder

        embedder = shared_embedder()
    cached: Path | None = None
    if cache_dir is not None:
        # The vectors depend on the file and on the model that embeds it.
        key = path.read_bytes() + embedder.model_id.encode()
        cached = cache_dir / f"{path.stem}-{hashlib.sha256(key).hexdigest()[:16]}.npy"
    if cached is not None and cached.is_file():
        both = np.load(cached)
    else:
        both = embed_texts(a + b, embedder.embed)
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            np.save(cached, both)
    n = len(a)
    return Pairs(a, b, np.asarray(labels, dtype=np.int8), both[:n], both[n:])
