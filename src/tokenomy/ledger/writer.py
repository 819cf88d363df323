"""Group commit: many concurrent requests share one transaction.

`GroupCommitWriter` owns a daemon thread that owns the store's write path. A
request hands its record to `write` (or `submit`) and waits; the thread takes
everything queued (up to ``max_batch``), inserts it in one transaction, commits,
and only then wakes every waiter, one ``call_soon_threadsafe`` per event loop.
Under load one commit serves hundreds of requests; when the queue is quiet a
record is committed at once, with no timer to wait for.

With a store whose commits are fast and local (SQLite, ``Store.inline_commits``)
there is no thread: records written during one turn of the event loop are
committed together at the end of that turn, on the loop, and their waiters are
woken directly — no thread hand-offs on the request path. A background thread
then only checkpoints the write-ahead log at most once a second, so no commit
pays for a checkpoint, and sleeps while nothing is committed.

A batch that fails is retried once, then inserted row by row, so one bad record
cannot take the others down with it. A record that still fails is appended to
the fallback file as a JSON line (see `load_fallback`) and its waiter gets
`Deferred` (the record is safe there and will be replayed: its request may be
answered), or, when even the fallback file could not be written, the error
itself: nothing is dropped silently.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from ..errors import Overloaded
from ..records import UsageRecord
from ..usage import Usage
from .base import Store

log = logging.getLogger("tokenomy.ledger")

Waiter = asyncio.Future[None] | concurrent.futures.Future[None]
_Item = tuple[UsageRecord, Waiter]


class Deferred(Exception):
    """A record not committed now but kept in the fallback file, from which
    `load_fallback` replays it into the ledger; ``cause`` says why."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"ledger record kept in the fallback file: {cause!r}")
        self.cause = cause


@dataclasses.dataclass(frozen=True, slots=True)
class WriterStats:
    committed: int  # records acknowledged as committed (duplicates included)
    batches: int  # transactions committed
    failed: int  # records written to the fallback file instead of the ledger
    retries: int  # batches retried after an error
    duplicates: int  # records skipped because their request_id was already there
    queued: int  # records waiting for the writer thread (approximate)


class GroupCommitWriter:
    def __init__(
        self,
        store: Store,
        *,
        max_batch: int = 1000,
        fallback_path: str | None = None,
        inline: bool | None = None,
        checkpoint_every: float = 1.0,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.inline = store.inline_commits if inline is None else inline
        self._pending: list[_Item] = []  # inline mode: written during this loop turn
        # close() flushes from a worker thread while the loop may flush too: each
        # batch is taken under this lock (appends only add at the end: no lock).
        self._pending_lock = threading.Lock()
        self._flush_scheduled = False
        self.store = store
        self.max_batch = max_batch
        self.fallback_path = fallback_path or store.fallback_path
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._put_lock = threading.Lock()  # orders submits against the close sentinel
        self._take_lock = threading.Lock()  # orders the thread's takes against abandon
        self._fallback_lock = threading.Lock()
        self._closed = False
        self._abandoned = False
        self._inflight: list[_Item] = []
        self._committed = self._batches = self._failed = self._retries = self._duplicates = 0
        self._stop = threading.Event()
        self.checkpoint_every = checkpoint_every  # seconds between checkpoints while commits come
        target = self._checkpoints if self.inline else self._run
        self._thread = threading.Thread(target=target, name="tokenomy-ledger", daemon=True)
        self._thread.start()

    # -- callers --------------------------------------------------------------------------

    async def write(self, record: UsageRecord) -> None:
        """Return once the record is committed; raise what the store raised if it
        could not be (the record is then in the fallback file)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        if self.inline:
            self._put_inline(loop, (record, fut))
        else:
            self._put((record, fut))
        await fut

    def submit(self, record: UsageRecord) -> concurrent.futures.Future[None]:
        """For callers without an event loop; the future resolves on commit."""
        fut: concurrent.futures.Future[None] = concurrent.futures.Future()
        if self.inline:
            self._refuse_if_closed(record)
            self._flush([(record, fut)])
        else:
            self._put((record, fut))
        return fut

    def _refuse_if_closed(self, record: UsageRecord) -> None:
        if self._closed:
            exc = Overloaded("The ledger writer is closed.")
            self._to_fallback([(record, exc)])
            raise exc

    def _put_inline(self, loop: asyncio.AbstractEventLoop, item: _Item) -> None:
        self._refuse_if_closed(item[0])
        self._pending.append(item)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush_pending)  # after every callback of this turn

    def _flush_pending(self) -> None:
        self._flush_scheduled = False
        while batch := self._take_pending():
            self._flush(batch)

    def _take_pending(self) -> list[_Item]:
        with self._pending_lock:
            batch = self._pending[: self.max_batch]
            del self._pending[: self.max_batch]
        return batch

    def _put(self, item: _Item) -> None:
        with self._put_lock:
            if not self._closed:
                self._queue.put(item)
                return
        # Too late to commit: keep the record, and tell the caller.
        exc = Overloaded("The ledger writer is closed.")
        self._to_fallback([(item[0], exc)])
        raise exc

    def stats(self) -> WriterStats:
        return WriterStats(
            committed=self._committed,
            batches=self._batches,
            failed=self._failed,
            retries=self._retries,
            duplicates=self._duplicates,
            queued=self._queue.qsize() + len(self._pending),
        )

    def close(self, timeout: float | None = None) -> bool:
        """Commit everything queued, then stop the thread. Returns True when drained.

        If the store does not finish within ``timeout`` seconds, every record not
        known to be committed goes to the fallback file (a record whose commit
        completes later is then in both; replaying skips it by request_id)."""
        if self.inline:
            return self._close_inline(timeout)
        with self._put_lock:
            if not self._closed:
                self._closed = True
                self._queue.put(None)
        self._thread.join(timeout)
        if not self._thread.is_alive():
            return True
        with self._take_lock:
            if self._abandoned:  # an earlier close() already saved what was pending
                return False
            self._abandoned = True
            leftovers = list(self._inflight)
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    leftovers.append(item)
            self._queue.put(None)
        log.error(
            "ledger writer did not drain in %ss; %d records go to %s",
            timeout,
            len(leftovers),
            self.fallback_path,
        )
        exc = TimeoutError(f"the ledger did not commit within {timeout}s")
        self._settle(leftovers, self._to_fallback([(r, exc) for r, _ in leftovers]))
        return False

    def _close_inline(self, timeout: float | None) -> bool:
        self._closed = True
        # Normally empty: a flush is scheduled with every write. Whatever is left
        # (the loop stopped first) is committed here; waiters are woken on their loop.
        self._flush_pending()
        self._stop.set()
        if self.store.committed is not None:
            self.store.committed.set()  # wakes the checkpoint thread to see the stop
        self._thread.join(timeout)
        return True

    def _checkpoints(self) -> None:
        committed = self.store.committed
        while not self._stop.wait(self.checkpoint_every):  # at most one per period
            if committed is not None:
                committed.wait()  # an idle ledger: asleep until the next commit
                committed.clear()
                if self._stop.is_set():
                    return
            try:
                self.store.checkpoint()
            except Exception as exc:  # a failed checkpoint is retried next period
                log.warning("ledger checkpoint failed: %r", exc)
                if committed is not None:
                    committed.set()

    # -- the writer thread ----------------------------------------------------------------

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            with self._take_lock:
                batch, stop = self._take(first)
                abandoned = self._abandoned
                if not abandoned:
                    self._inflight = batch
            if abandoned:  # close() gave up on the store: keep these in the fallback file
                exc = TimeoutError("the ledger writer was abandoned at close")
                self._settle(batch, self._to_fallback([(r, exc) for r, _ in batch]))
            elif batch:
                self._flush(batch)
            if stop:
                return

    def _take(self, first: _Item | None) -> tuple[list[_Item], bool]:
        if first is None:
            return [], True
        batch = [first]
        while len(batch) < self.max_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False

    def _flush(self, batch: list[_Item]) -> None:
        try:
            errors = self._commit([r for r, _ in batch])
        except BaseException as exc:  # a bug here must not leave requests waiting forever
            log.exception("ledger writer failed")
            errors = [exc] * len(batch)
            with contextlib.suppress(BaseException):
                self._to_fallback([(r, exc) for r, _ in batch])
        with self._take_lock:
            self._inflight = []
        self._settle(batch, errors)

    def _commit(self, records: list[UsageRecord]) -> list[BaseException | None]:
        error: Exception | None = None
        for attempt in (1, 2):
            try:
                added = self.store.insert_records(records)
            # Whatever the driver raises (locked, connection lost, bad value), the
            # batch is retried and then split; nothing here may kill the thread.
            except Exception as exc:
                log.warning(
                    "ledger batch of %d failed (attempt %d): %r", len(records), attempt, exc
                )
                error = exc
                if attempt == 1:
                    self._retries += 1
                continue
            self._count(len(records), added)
            return [None] * len(records)
        if len(records) == 1 and error is not None:
            return self._to_fallback([(records[0], error)])
        failures: list[tuple[UsageRecord, BaseException]] = []
        outcome: list[BaseException | None] = []
        for rec in records:
            try:
                self._count(1, self.store.insert_records([rec]))
                outcome.append(None)
            except Exception as exc:  # see above: one row's error stays with that row
                failures.append((rec, exc))
                outcome.append(exc)
        kept = iter(self._to_fallback(failures))
        return [None if o is None else next(kept) for o in outcome]

    def _count(self, records: int, added: int) -> None:
        self._committed += records
        self._batches += 1
        self._duplicates += records - added

    def _to_fallback(
        self, failures: Sequence[tuple[UsageRecord, BaseException]]
    ) -> list[BaseException | None]:
        """Append failed records to the fallback file; return for each `Deferred`
        (kept there) or, if the file could not be written, its error."""
        if not failures:
            return []
        now = time.time()
        lines = "".join(_fallback_line(rec, exc, now) for rec, exc in failures)
        kept = False
        with self._fallback_lock:
            self._failed += len(failures)
            try:
                with open(self.fallback_path, "a", encoding="utf-8") as f:
                    f.write(lines)
                    f.flush()
                    os.fsync(f.fileno())
                kept = True
            except OSError:
                # The last place left: the log carries the records themselves.
                log.critical(
                    "cannot write %s; records follow:\n%s",
                    self.fallback_path,
                    lines,
                    exc_info=True,
                )
        for rec, exc in failures:
            log.error("ledger record %s not committed: %r", rec.request_id, exc)
        return [Deferred(exc) if kept else exc for _, exc in failures]

    def _settle(self, batch: Sequence[_Item], errors: Sequence[BaseException | None]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[None], Any]]] = {}
        for (_, waiter), exc in zip(batch, errors, strict=True):
            if isinstance(waiter, asyncio.Future):
                by_loop.setdefault(waiter.get_loop(), []).append((waiter, exc))
            elif not waiter.done():
                try:
                    if exc is None:
                        waiter.set_result(None)
                    else:
                        waiter.set_exception(exc)
                except concurrent.futures.InvalidStateError:
                    pass  # cancelled by its caller meanwhile
        running = _running_loop()
        for loop, waiters in by_loop.items():
            if loop is running:  # inline mode: wake them now, no self-pipe round trip
                _wake(waiters)
                continue
            try:
                loop.call_soon_threadsafe(_wake, waiters)
            except RuntimeError:
                pass  # the loop is closed: nobody is waiting any more


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _wake(waiters: list[tuple[asyncio.Future[None], BaseException | None]]) -> None:
    for fut, exc in waiters:
        if fut.done():  # the waiting task was cancelled; the record is still committed
            continue
        if exc is None:
            fut.set_result(None)
        else:
            fut.set_exception(exc)


# -- the fallback file --------------------------------------------------------------------


def _json_fallback(obj: Any) -> Any:
    # Keep what can be kept: Decimal exactly, anything else as its repr.
    return str(obj) if isinstance(obj, Decimal) else repr(obj)


def _fallback_line(rec: UsageRecord, exc: BaseException, now: float) -> str:
    # The stdlib encoder, not orjson: this path must take whatever made the insert
    # fail, integers past 64 bits included.
    line = {"failed_at": now, "error": repr(exc), "record": record_to_json(rec)}
    try:
        text = json.dumps(line, default=_json_fallback, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        text = json.dumps({"failed_at": now, "error": repr(exc), "record_repr": repr(rec)})
    return text + "\n"


def record_to_json(rec: UsageRecord) -> dict[str, Any]:
    """A JSON-ready dict of ``rec`` (shallow: no deep copy of what it holds)."""
    data = {f.name: getattr(rec, f.name) for f in dataclasses.fields(rec)}
    data["usage"] = {f.name: getattr(rec.usage, f.name) for f in dataclasses.fields(rec.usage)}
    if rec.cost_usd is not None:
        data["cost_usd"] = str(rec.cost_usd)
    return data


def record_from_json(data: dict[str, Any]) -> UsageRecord:
    fields = dict(data)
    fields["usage"] = Usage(**fields.get("usage", {}))
    cost = fields.get("cost_usd")
    fields["cost_usd"] = None if cost is None else Decimal(cost)
    fields["item_ids"] = tuple(fields.get("item_ids", ()))  # a JSON list
    return UsageRecord(**fields)


def load_fallback(path: str) -> list[UsageRecord]:
    """The records in a fallback file, ready for `Store.insert_records` (which
    skips any that did reach the ledger). Lines holding only a repr are skipped."""
    with open(path, encoding="utf-8") as f:
        lines = [json.loads(line) for line in f if line.strip()]
    return [record_from_json(line["record"]) for line in lines if "record" in line]
