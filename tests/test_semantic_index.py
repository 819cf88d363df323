"""The semantic index: isolation, context, verification, remove and rebuild."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("numpy")
pytest.importorskip("onnxruntime")  # before usearch: see index.new_hnsw
pytest.importorskip("usearch")

from tokenomy.cache.semantic import SemanticIndex, StoredVector, context_of
from tokenomy.cache.semantic import index as index_module


def _body(question: str, *history: str, model: str = "gpt-4o-mini") -> dict[str, Any]:
    roles = ["user", "assistant"]
    msgs = [{"role": roles[i % 2], "content": h} for i, h in enumerate(history)]
    return {"model": model, "messages": [*msgs, {"role": "user", "content": question}]}


def _probe(ix: SemanticIndex, question: str, *history: str) -> Any:
    ctx = context_of(_body(question, *history))
    assert ctx is not None
    return ix.embed_context(ctx)


@pytest.fixture(scope="module")
def ix_factory() -> Any:
    return lambda: SemanticIndex(target=0.2)


def test_a_paraphrase_hits_and_reports_the_entry(ix_factory: Any) -> None:
    ix = ix_factory()
    ix.add("team-a", _probe(ix, "How can I learn Python quickly?"), "e1")
    match = ix.lookup("team-a", _probe(ix, "How can I learn Python fast?"))
    assert match is not None and match.entry_id == "e1"
    assert match.cosine > 0.8 and match.probability >= ix.threshold


def test_tenant_b_never_gets_tenant_a_entry(ix_factory: Any) -> None:
    ix = ix_factory()
    probe = _probe(ix, "How can I learn Python quickly?")
    ix.add("team-a", probe, "a1")
    assert ix.lookup("team-b", probe) is None
    assert ix.lookup("team-a", probe) is not None
    ix.add("team-b", probe, "b1")
    hit = ix.lookup("team-b", probe)
    assert hit is not None and hit.entry_id == "b1"


def test_same_last_question_after_a_different_history_misses(ix_factory: Any) -> None:
    ix = ix_factory()
    q = "What is its population?"
    ix.add("t", _probe(ix, q, "Tell me about Paris.", "Paris is the capital of France."), "paris")
    assert (
        ix.lookup("t", _probe(ix, q, "Tell me about Tokyo.", "Tokyo is Japan's capital.")) is None
    )
    assert ix.lookup("t", _probe(ix, q)) is None  # no history at all
    again = ix.lookup("t", _probe(ix, q, "Tell me about Paris.", "Paris is the capital of France."))
    assert again is not None and again.entry_id == "paris"


@pytest.mark.parametrize(
    ("stored", "asked"),
    [
        ("How do I convert 100 dollars to euros?", "How do I convert 500 dollars to euros?"),
        ("Why is Python popular?", "Why is Python not popular?"),
        ("What is the capital of Australia?", "What is the capital of Austria?"),
        ("When did World War 1 start?", "When did World War 2 start?"),
    ],
)
def test_near_identical_but_different_questions_are_rejected(
    ix_factory: Any, stored: str, asked: str
) -> None:
    ix = ix_factory()
    ix.add("t", _probe(ix, stored), "e")
    assert ix.lookup("t", _probe(ix, asked)) is None


def test_remove_and_rebuild_from_stored_vectors(ix_factory: Any) -> None:
    ix = ix_factory()
    stored: list[StoredVector] = [
        ix.add("t", _probe(ix, "How do I reset my password?"), "pw"),
        ix.add("t", _probe(ix, "What is the best laptop for programming?"), "laptop"),
    ]
    assert ix.size("t") == 2
    assert ix.remove("t", "pw") and not ix.remove("t", "pw")
    assert ix.lookup("t", _probe(ix, "How can I reset my password?")) is None

    replica = ix_factory()
    assert replica.load("t", stored) == 2
    hit = replica.lookup("t", _probe(replica, "How can I reset my password?"))
    assert hit is not None and hit.entry_id == "pw"
    assert replica.size() == 2 and replica.size("other") == 0
    assert replica.load("t", stored) == 0  # overlapping catch-up loads are idempotent
    assert replica.size() == 2


def test_re_adding_an_id_replaces_it(ix_factory: Any) -> None:
    ix = ix_factory()
    ix.add("t", _probe(ix, "How do I reset my password?"), "e")
    ix.add("t", _probe(ix, "What is the best laptop for programming?"), "e")
    assert ix.size("t") == 1
    assert ix.lookup("t", _probe(ix, "How can I reset my password?")) is None


def test_large_partitions_move_to_the_hnsw_index(
    ix_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    np = pytest.importorskip("numpy")
    monkeypatch.setattr(index_module, "SMALL_PARTITION", 8)
    ix = ix_factory()
    real = _probe(ix, "How can I learn Python quickly?")
    rng = np.random.default_rng(0)
    for i in range(40):
        v = rng.normal(size=384).astype(np.float32)
        ix.add("t", index_module.Probe(real.context, v / np.linalg.norm(v)), f"noise{i}")
    ix.add("t", real, "python")
    part = ix._spaces["t"][real.context.partition]
    assert part.small is None and part.hnsw is not None
    hit = ix.lookup("t", _probe(ix, "How can I learn Python fast?"))
    assert hit is not None and hit.entry_id == "python"
    assert ix.remove("t", "python")
    assert ix.lookup("t", _probe(ix, "How can I learn Python fast?")) is None


def test_a_stored_vector_of_the_wrong_size_is_refused(ix_factory: Any) -> None:
    ix = ix_factory()
    with pytest.raises(ValueError, match="vector"):
        ix.load("t", [StoredVector("e", "p", "text", b"\0" * 16)])


def test_concurrent_adds_removes_and_lookups_stay_consistent(ix_factory: Any) -> None:
    import threading

    np = pytest.importorskip("numpy")
    ix = ix_factory()
    base = _probe(ix, "How can I learn Python quickly?")
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(400, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    errors: list[BaseException] = []

    def writer(start: int) -> None:
        try:
            for i in range(start, 400, 4):
                probe = index_module.Probe(base.context, vectors[i])
                ix.add("t", probe, f"n{i}")
                if i % 3 == 0:
                    ix.remove("t", f"n{i}")
                ix.lookup("t", base)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert ix.size("t") == sum(1 for i in range(400) if i % 3)
