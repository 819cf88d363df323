"""The semantic path's bookkeeping: loading from the backend, and vectors of
expired entries leaving the index (stand-in verifier, see test_cache_semantic)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from cache_helpers import stand_in_verifier
from tokenomy.cache.config import SemanticConfig
from tokenomy.cache.similar import SimilarLookup
from tokenomy.cache.sqlite import SQLiteCacheStore
from tokenomy.cache.store import Entry, SemanticRow
from tokenomy.usage import Usage

pytest.importorskip("onnxruntime")
pytest.importorskip("usearch")

pytestmark = pytest.mark.usefixtures("stand_in")


@pytest.fixture
def stand_in() -> Iterator[None]:
    with stand_in_verifier():
        yield


OPTIONS = SemanticConfig(enabled=True, target_wrong_hit_rate=0.02, sync_interval=0)
BODY = {"messages": [{"role": "user", "content": "Where is the Eiffel tower?"}]}


async def test_expired_vectors_leave_the_index(tmp_path: Path) -> None:
    store = SQLiteCacheStore(str(tmp_path / "c.db"), max_entries=10, max_bytes=10**6)
    ttl = 0.5
    sim = SimilarLookup(store, OPTIONS, ttl=ttl)
    probe = await asyncio.to_thread(sim.probe, BODY)
    created = time.time()
    partition, text, vector = await sim.add("ns", probe, "k1", created)
    entry = Entry("ns", "k1", "openai", b"{}", Usage(), Decimal(0), "m", "r", created,
                  partition=partition, text=text, vector=vector)  # fmt: skip
    await store.put(entry, ttl)
    _, found = await sim.find("ns", BODY)
    assert found is not None and found.entry.key == "k1"
    # a second lookup re-reads the recent rows but does not index k1 twice
    await sim.find("ns", BODY)
    assert sim.index.size("ns") == 1
    await asyncio.sleep(ttl + 0.1)
    await sim.sync("ns")  # the sync alone drops the expired vector, before any lookup
    assert sim.index.size("ns") == 0
    _, found = await sim.find("ns", BODY)
    assert found is None
    assert sim.index.size("ns") == 0
    await store.close()


async def test_a_restarted_lookup_loads_the_backend(tmp_path: Path) -> None:
    store = SQLiteCacheStore(str(tmp_path / "c.db"), max_entries=10, max_bytes=10**6)
    first = SimilarLookup(store, OPTIONS, ttl=60)
    probe = await asyncio.to_thread(first.probe, BODY)
    created = time.time()
    partition, text, vector = await first.add("ns", probe, "k1", created)
    await store.put(
        Entry("ns", "k1", "openai", b"{}", Usage(), Decimal(0), "m", "r", created,
              partition=partition, text=text, vector=vector),
        60,
    )  # fmt: skip
    second = SimilarLookup(store, OPTIONS, ttl=60)
    assert await second.preload() == 1  # at start-up, before any lookup
    assert second.index.size("ns") == 1
    _, found = await second.find("ns", BODY)
    assert found is not None and found.similarity > 0.99
    _, other_ns = await second.find("other", BODY)
    assert other_ns is None
    await store.close()


async def test_a_sync_reads_only_rows_it_has_not_loaded(tmp_path: Path) -> None:
    """Each sync looks again at the keys of the last OVERLAP seconds, so an entry
    written late (created before one already loaded) is still found, but the
    vectors of the rows already loaded are not read again."""
    store = SQLiteCacheStore(str(tmp_path / "c.db"), max_entries=10, max_bytes=10**6)
    writer, reader = SimilarLookup(store, OPTIONS, ttl=60), SimilarLookup(store, OPTIONS, ttl=60)
    probe = await asyncio.to_thread(writer.probe, BODY)
    read: list[str] = []
    since = store.semantic_since

    async def counted(*args: Any) -> list[SemanticRow]:
        rows = await since(*args)
        read.extend(r.key for r in rows)
        return rows

    store.semantic_since = counted  # type: ignore[method-assign]

    async def put(key: str, created: float) -> None:
        partition, text, vector = await writer.add("ns", probe, key, created)
        entry = Entry("ns", key, "openai", b"{}", Usage(), Decimal(0), "m", "r", created,
                      partition=partition, text=text, vector=vector)  # fmt: skip
        await store.put(entry, 60)

    now = time.time()
    await put("newer", now)
    await reader.sync("ns")
    assert read == ["newer"] and reader.index.size("ns") == 1
    await put("late", now - 2)  # created first, written after "newer" was loaded
    await reader.sync("ns")
    assert read == ["newer", "late"] and reader.index.size("ns") == 2
    await reader.sync("ns")  # nothing new: no row read
    assert read == ["newer", "late"]
    await store.close()


async def test_the_index_never_outgrows_the_backend(tmp_path: Path) -> None:
    """A namespace that went quiet loses its expired vectors at any namespace's
    sync, and beyond max_entries the oldest vectors go, as the backend evicts."""
    store = SQLiteCacheStore(str(tmp_path / "c.db"), max_entries=100, max_bytes=10**7)
    sim = SimilarLookup(store, OPTIONS, ttl=60, max_entries=3)
    probe = await asyncio.to_thread(sim.probe, BODY)
    now = time.time()
    await sim.add("quiet", probe, "old", now - 120)  # past its TTL; "quiet" is never looked up
    for i, ns in enumerate(["a", "b", "a", "c"]):
        await sim.add(ns, probe, f"k{i}", now + i)
    assert sim.indexed() == 5
    await sim.sync("a")
    assert sim.indexed() == 3  # "old" expired, and k0 (the oldest) went over the cap
    assert sim.index.size("quiet") == 0 and sim.index.size("a") == 1
    assert sim.index.size("b") == 1 and sim.index.size("c") == 1
    await sim.add("a", probe, "k2", now + 9)  # the same key again: still one vector
    assert sim.indexed() == 3 and sim.index.size("a") == 1
    await store.close()


class _Paused(int):
    """The count of indexed vectors, pausing a worker thread that adds to it (between
    its read and its write) until the event loop has changed the count meanwhile."""

    paused = threading.Event()
    go = threading.Event()

    def __add__(self, other: int) -> int:  # type: ignore[override]
        if threading.current_thread() is not threading.main_thread():
            self.paused.set()
            self.go.wait()
        return int(self) + other


async def test_a_sync_and_an_add_at_once_count_every_vector(tmp_path: Path) -> None:
    # A sync loading another replica's rows noted them from its worker thread while
    # the loop noted its own new entry: one of the two counts was lost, and the
    # index then held more vectors than max_entries (or dropped some too early).
    store = SQLiteCacheStore(str(tmp_path / "c.db"), max_entries=10, max_bytes=10**6)
    other, sim = SimilarLookup(store, OPTIONS, ttl=60), SimilarLookup(store, OPTIONS, ttl=60)
    probe = await asyncio.to_thread(sim.probe, BODY)
    created = time.time()
    partition, text, vector = await other.add("ns", probe, "theirs", created)
    await store.put(
        Entry("ns", "theirs", "openai", b"{}", Usage(), Decimal(0), "m", "r", created,
              partition=partition, text=text, vector=vector),
        60,
    )  # fmt: skip
    _Paused.paused.clear()
    _Paused.go.clear()
    sim._indexed = _Paused(0)
    syncing = asyncio.create_task(sim.sync("ns"))
    paused = asyncio.ensure_future(asyncio.to_thread(_Paused.paused.wait))
    # Old code: the sync's thread pauses mid-count. Fixed: the sync just ends.
    await asyncio.wait({syncing, paused}, return_when=asyncio.FIRST_COMPLETED)
    try:
        await sim.add("ns", probe, "ours", created + 1)
    finally:
        _Paused.go.set()
        _Paused.paused.set()
    await syncing
    await paused
    assert sim.index.size("ns") == 2
    assert sim.indexed() == 2
    await store.close()
