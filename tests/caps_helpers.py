"""Helpers for the caps tests: calls without a server, a policy on a real ledger,
and a local webhook receiver."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import orjson

from tokenomy.caps import CapsPolicy, CapsStore
from tokenomy.caps.config import CapsConfig
from tokenomy.caps.counters import CounterBackend, usd_to_units
from tokenomy.caps.model import budget_from, limit_from
from tokenomy.ledger.base import Store
from tokenomy.pipeline.context import ANTHROPIC, OPENAI, Call
from tokenomy.pipeline.meter import Meter
from tokenomy.pricing import PriceBook
from tokenomy.records import UsageRecord
from tokenomy.testing import serve_in_thread
from tokenomy.usage import Usage

PRICES = PriceBook()


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def chat(
    model: str = "gpt-4o",
    *,
    team: str | None = "search",
    key: str = "k1",
    user: str | None = None,
    org: str | None = "acme",
    tags: dict[str, str] | None = None,
    content: str = "hello world",
    api: str = OPENAI,
    **body: Any,
) -> Call:
    payload: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": content}]}
    payload.update(body)
    endpoint = "/v1/messages" if api == ANTHROPIC else "/v1/chat/completions"
    call = Call(api, "chat", endpoint, payload, {})
    rec = call.record
    rec.requested_model = rec.served_model = model
    rec.team, rec.key_id, rec.user, rec.org = team, key, user, org
    rec.tags = dict(tags or {})
    return call


def use(call: Call, input_tokens: int, output_tokens: int) -> UsageRecord:
    """Meter the call as if the upstream reported this usage."""
    Meter(PRICES)(call, Usage(input_tokens=input_tokens, output_tokens=output_tokens))
    return call.record


def policy(
    store: Store,
    clock: Clock | None = None,
    *,
    backend: CounterBackend | None = None,
    **config: Any,
) -> CapsPolicy:
    return CapsPolicy(store, PRICES, CapsConfig(**config), backend=backend, clock=clock)


async def add_budget(p: CapsPolicy, **raw: Any) -> str:
    b = budget_from(raw)
    p.store.save_budget(b, new=True)
    await p.reload()
    return b.id


async def add_limit(p: CapsPolicy, **raw: Any) -> str:
    lim = limit_from(raw)
    p.store.save_limit(lim, new=True)
    await p.reload()
    return lim.id


async def finish(p: CapsPolicy, store: Store, call: Call, inp: int, out: int) -> UsageRecord:
    """What the gateway does at the end: meter, commit, then settle."""
    rec = use(call, inp, out)
    store.insert_records([rec])
    await p.settle(call, rec)
    return rec


def ledger_units(store: Store, *, where: str = "1 = 1") -> int:
    """Σ ceil(cost) over ledger rows, in counter units (what the counters must hold)."""
    caps = CapsStore(store)
    rows = caps._read(
        lambda cur: cur.execute(f"SELECT cost_usd FROM requests WHERE {where}").fetchall()
    )
    return sum(usd_to_units(Decimal(r[0])) for r in rows if r[0] is not None)


class Receiver:
    """A local HTTP endpoint that keeps every JSON body posted to it."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.answers: list[int] = []  # statuses for the next posts (then 200)
        self.posts = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        chunks = []
        while True:
            msg = await receive()
            chunks.append(msg.get("body", b""))
            if not msg.get("more_body"):
                break
        with self.lock:
            self.posts += 1
            status = self.answers.pop(0) if self.answers else 200
            if status == 200:
                self.bodies.append(orjson.loads(b"".join(chunks)))
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


@contextmanager
def receiver() -> Iterator[tuple[Receiver, str]]:
    app = Receiver()
    with serve_in_thread(app) as url:
        yield app, url + "/hook"
