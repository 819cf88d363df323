"""Feedback on answers: scores from clients (``POST /v1/feedback``) or from a judge
model, in the ledger's ``feedback`` table (migration ``m012_feedback``).

With ``routing.collect_prompts: true`` the chat messages of routed requests are
kept in ``route_prompts`` too, so `export_outcomes` can turn the operator's own
traffic into outcome data for ``tokenomy router train``: one line per scored
request, ``{"messages": [...], "models": {<served model>: {"score": s}}}``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import orjson

from ..errors import ConfigError, InvalidRequest
from ..ledger.base import SQLStore, Store
from ..ledger.migrations import Cursor
from ..ledger.pages import Page, SortKey, read_page
from ..pipeline.context import Call

SOURCES = ("user", "judge")
PAGE = 500  # scored requests `FeedbackStore.outcomes` reads at a time
log = logging.getLogger("tokenomy.routing")


@dataclass(frozen=True, slots=True)
class Feedback:
    request_id: str
    score: float
    source: str = "user"
    comment: str | None = None
    key_id: str | None = None
    org: str | None = None
    model: str | None = None
    ts: float = 0.0


class FeedbackStore:
    """The feedback and prompt tables, through the ledger store's transactions."""

    def __init__(self, store: Store) -> None:
        if not isinstance(store, SQLStore):
            raise ConfigError(f"feedback needs a SQL ledger, not {store!r}")
        self.store = store
        self.p = store.dialect.param

    def add(self, fb: Feedback) -> None:
        if fb.source not in SOURCES:
            raise ValueError(f"unknown feedback source {fb.source!r}")
        p = self.p
        sql = (
            "INSERT INTO feedback (request_id, ts, source, score, comment, key_id, org, model) "
            f"VALUES ({', '.join([p] * 8)})"
        )
        row = (fb.request_id, fb.ts or time.time(), fb.source, float(fb.score), fb.comment,
               fb.key_id, fb.org, fb.model)  # fmt: skip

        def run(cur: Cursor) -> None:
            cur.execute(sql, row)

        self.store._write(run)

    def save_prompt(self, request_id: str, ts: float, messages: Sequence[Any]) -> None:
        self.save_prompts([(request_id, ts, messages)])

    def save_prompts(self, rows: Sequence[tuple[str, float, Sequence[Any]]]) -> None:
        """(request id, ts, messages) rows, in one transaction; a request's prompt is
        kept once."""
        d = self.store.dialect
        sql = (
            f"INSERT INTO route_prompts (request_id, ts, messages) "
            f"VALUES ({d.param}, {d.param}, {d.json_param}) ON CONFLICT (request_id) DO NOTHING"
        )
        args = [(rid, ts, orjson.dumps(list(messages)).decode()) for rid, ts, messages in rows]
        self.store._write(lambda cur: cur.executemany(sql, args))

    def list(self, *, request_id: str | None = None) -> list[Feedback]:
        where, args = ("WHERE request_id = " + self.p, (request_id,)) if request_id else ("", ())
        sql = (
            "SELECT request_id, score, source, comment, key_id, org, model, ts "
            f"FROM feedback {where} ORDER BY id"
        )

        def run(cur: Cursor) -> list[Feedback]:
            cur.execute(sql, args)
            return [
                Feedback(r[0], float(r[1]), r[2], r[3], r[4], r[5], r[6], float(r[7]))
                for r in cur.fetchall()
            ]

        return self.store._read(run)

    def outcomes(self, *, since: float | None = None) -> Iterator[dict[str, Any]]:
        """Outcome lines (``tokenomy.routing.learned.outcomes`` format), one per scored
        request whose prompt was collected, with every model scored on it (a judge
        comparison scores two); several scores of one request and model are averaged.

        Read `PAGE` requests at a time, in request id order: each line is yielded
        before the next page is read, so an export holds one page however many
        requests were scored."""
        line: dict[str, Any] | None = None
        for request_id, model, score, source, messages in self._scored(since):
            if line is not None and line["id"] != request_id:
                yield line
                line = None
            if line is None:
                msgs = orjson.loads(messages) if isinstance(messages, str | bytes) else messages
                line = {"id": request_id, "messages": msgs, "models": {}, "source": source}
            line["models"][model or "unknown"] = {"score": round(float(score), 6)}
            if source != line["source"]:
                line["source"] = "mixed"
        if line is not None:
            yield line

    def _scored(self, since: float | None) -> Iterator[tuple[Any, ...]]:
        """(request id, model, mean score, source, messages) per scored request and
        model, by request id then model, a `PAGE` of requests at a time."""
        after: SortKey | None = None
        while True:
            ids, rows = self.store._read(partial(self._scored_page, after=after, since=since))
            yield from rows
            if ids.next is None:
                return
            after = ids.next

    def _scored_page(
        self, cur: Cursor, *, after: SortKey | None, since: float | None
    ) -> tuple[Page[str], Sequence[Any]]:
        """The page of requests past ``after`` with a prompt and feedback (from
        ``since`` on), and their scores."""
        p = self.p
        window, args = ([f"ts >= {p}"], [since]) if since is not None else ([], [])
        collected = "EXISTS (SELECT 1 FROM route_prompts rp WHERE rp.request_id = f.request_id)"
        ids = read_page(
            lambda fn: fn(cur), "SELECT DISTINCT f.request_id FROM feedback f", ("f.request_id",),
            after, PAGE, item=lambda r: str(r[0]), key=lambda rid: (rid,),
            param=p, where=[*("f." + w for w in window), collected], params=args,
        )  # fmt: skip
        if not ids.items:
            return ids, []
        where = " AND ".join([f"request_id IN ({', '.join([p] * len(ids.items))})", *window])
        cur.execute(
            "SELECT g.request_id, g.model, g.score, g.source, rp.messages FROM ("
            "SELECT request_id, model, AVG(score) AS score, MIN(source) AS source "
            f"FROM feedback WHERE {where} GROUP BY request_id, model) g "
            "JOIN route_prompts rp ON rp.request_id = g.request_id "
            "ORDER BY g.request_id, g.model",
            [*ids.items, *args],
        )
        return ids, cur.fetchall()


def parse_feedback(body: Any) -> tuple[str, float, str | None]:
    """(request_id, score, comment) from a ``POST /v1/feedback`` body; `InvalidRequest`
    naming the offending field."""
    if not isinstance(body, Mapping):
        raise InvalidRequest("the body must be a JSON object", param="body")
    rid = body.get("request_id")
    if not isinstance(rid, str) or not rid:
        raise InvalidRequest("'request_id' is required and must be a string", param="request_id")
    score = body.get("score")
    if isinstance(score, bool) or not isinstance(score, int | float):
        raise InvalidRequest("'score' is required and must be a number from 0 to 1", param="score")
    if not 0.0 <= float(score) <= 1.0:
        raise InvalidRequest("'score' must be between 0 and 1", param="score")
    comment = body.get("comment")
    if comment is not None and (not isinstance(comment, str) or len(comment) > 4000):
        raise InvalidRequest(
            "'comment' must be a string of at most 4000 characters", param="comment"
        )
    unknown = sorted(set(body) - {"request_id", "score", "comment"})
    if unknown:
        raise InvalidRequest(f"unknown field {unknown[0]!r}", param=unknown[0])
    return rid, float(score), comment


class PromptCollector:
    """Keeps served chat prompts (``routing.collect_prompts``) off the request path:
    a background task writes them in batches, one transaction each. They are training
    material, not billing data: past ``max_pending`` waiting prompts, new ones are
    dropped (and counted) rather than slowing requests down."""

    def __init__(self, store: Store, *, max_batch: int = 500, max_pending: int = 10_000) -> None:
        self.feedback = FeedbackStore(store)
        self.max_batch = max_batch
        self.max_pending = max_pending
        self.dropped = 0
        self._pending: list[tuple[str, float, list[Any]]] = []
        self._task: asyncio.Task[None] | None = None

    def add(self, call: Call) -> None:
        messages = call.body.get("messages")
        if call.op != "chat" or call.record.status != 200 or not isinstance(messages, list):
            return
        if len(self._pending) >= self.max_pending:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("collected prompts are not written fast enough: %d dropped",
                            self.dropped)  # fmt: skip
            return
        rec = call.record
        self._pending.append((rec.request_id, rec.ts, messages))  # serialised in the thread
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        while self._pending:
            batch = self._pending[: self.max_batch]
            del self._pending[: self.max_batch]
            try:
                await asyncio.to_thread(self.feedback.save_prompts, batch)
            except Exception:  # the answers were served and charged; only these are lost
                log.exception("could not keep %d collected prompts", len(batch))

    async def flush(self) -> None:
        """Return once every prompt added so far is written (at shutdown, in tests)."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)
        if self._pending:
            await self._drain()
