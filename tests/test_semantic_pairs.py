"""Embedded pairs are cached per input file and per the model that embedded them."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from tokenomy.cache.semantic.pairs import embed_pairs

np = pytest.importorskip("numpy")


class Fake:
    """An embedder whose vectors say which model made them."""

    def __init__(self, model_id: str, value: float) -> None:
        self.model_id = model_id
        self.value = value
        self.calls = 0

    def embed(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        return np.full((len(texts), 384), self.value, dtype=np.float32)


def test_cached_vectors_are_keyed_by_the_embedders_model(tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl"
    rows = [{"text_a": "a", "text_b": "b", "label": 1}, {"text_a": "c", "text_b": "a", "label": 0}]
    path.write_bytes(b"\n".join(orjson.dumps(r) for r in rows))
    cache = tmp_path / "cache"
    shipped, fast = Fake("all-MiniLM-L6-v2/int8-shipped", 1.0), Fake("other", 2.0)
    first = embed_pairs(path, cache_dir=cache, embedder=shipped)
    again = embed_pairs(path, cache_dir=cache, embedder=Fake(shipped.model_id, 9.0))
    assert np.array_equal(again.u, first.u)  # read from the cache: not embedded again
    other = embed_pairs(path, cache_dir=cache, embedder=fast)
    assert fast.calls == 1 and float(other.u[0, 0]) == 2.0  # not the other model's vectors
    assert len(list(cache.iterdir())) == 2
    assert list(other.labels) == [1, 0] and other.a == ["a", "c"]
