"""The local embedder: unit vectors whose dot product ranks paraphrases first."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

np = pytest.importorskip("numpy")


def test_paraphrase_is_closer_than_an_unrelated_question() -> None:
    from tokenomy.embed import DIM, shared_embedder

    v = shared_embedder().embed(
        ["How do I learn Python?", "What is the best way to learn Python?", "How do I cook rice?"]
    )
    assert v.shape == (3, DIM)
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-4)
    sim = v @ v.T
    assert sim[0, 1] > 0.8 > 0.3 > sim[0, 2]


def test_batches_match_single_calls() -> None:
    from tokenomy.embed import shared_embedder

    e = shared_embedder()
    texts = ["short", "a somewhat longer sentence about token bills and gateways"]
    assert np.allclose(e.embed(texts, batch=1), e.embed(texts, batch=2), atol=1e-4)


@pytest.fixture
def kept_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The built model is kept in a directory of this test's own."""
    where = tmp_path / "built"
    monkeypatch.setenv("TOKENOMY_EMBED_CACHE", str(where))
    return where


def test_the_built_model_is_kept_and_loaded_at_the_next_start(
    kept_in: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tokenomy import embed

    model, _ = embed.model_files()
    path = embed.built_path(model)
    assert path is not None and path.parent == kept_in
    kept_in.mkdir()
    path.write_bytes(b"not a model")  # a damaged file is rebuilt and replaced
    first = embed.Embedder()
    assert first.model_id == embed.MODEL_ID
    assert [p.name for p in kept_in.iterdir()] == [path.name]  # no temporary file left

    def no_build(model: Path) -> bytes:
        raise AssertionError("the kept model was built again")

    monkeypatch.setattr(embed, "requantized", no_build)
    second = embed.Embedder()
    assert second.model_id == embed.MODEL_ID
    text = ["how do I reset my password?"]
    assert np.array_equal(first.embed(text), second.embed(text))


def test_the_kept_model_is_named_by_its_source_and_recipe(
    kept_in: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tokenomy import embed

    source = tmp_path / "model.onnx"
    source.write_bytes(b"weights")
    first = embed.built_path(source)
    assert first is not None and embed.built_path(source) == first
    os.utime(source, ns=(0, 10**9))  # another file: another modification time...
    second = embed.built_path(source)
    source.write_bytes(b"weights, longer")  # ...or size
    third = embed.built_path(source)
    monkeypatch.setattr(embed, "BUILD", embed.BUILD + 1)  # another recipe
    assert len({first, second, third, embed.built_path(source)}) == 4


def test_an_unwritable_cache_builds_in_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from tokenomy import embed

    blocked = tmp_path / "a-file"
    blocked.write_bytes(b"")
    monkeypatch.setenv("TOKENOMY_EMBED_CACHE", str(blocked / "built"))  # under a file
    builds: list[Path] = []

    def build(model: Path) -> bytes:  # a stand-in build: the shipped graph's bytes
        builds.append(model)
        return model.read_bytes()

    monkeypatch.setattr(embed, "requantized", build)
    caplog.set_level(logging.INFO, "tokenomy.embed")
    for _ in range(2):  # built at each start
        assert embed.Embedder().embed_one("hello").shape == (embed.DIM,)
    assert builds == [embed.model_files()[0]] * 2
    assert "built at each start" in caplog.text
    assert list(tmp_path.iterdir()) == [blocked]  # nothing written anywhere
