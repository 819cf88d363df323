"""Counters rebuilt from the ledger count what live admission counted.

Besides its own row, a request may leave side rows: a cascade's escalated draft
(charged with the request), a judge's calls and a failed attempt whose upstream
reported usage (the gateway's own cost, never charged). A gateway that starts
again, or that finds Redis restarted empty, seeds its budgets from the ledger:
it must arrive at the counters the requests were settled to, not count the
gateway's own calls as the budgets' spending.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from caps_helpers import Clock, add_budget, chat, ledger_units, policy, use
from gateway_fixtures import Fake, dep, gateway_settings
from tokenomy.caps import CapsPolicy
from tokenomy.caps.config import CapsConfig
from tokenomy.caps.counters import usd_to_units
from tokenomy.caps.memory import MemoryCounters
from tokenomy.caps.model import Subject, budget_from
from tokenomy.config import Settings
from tokenomy.gateway import Gateway
from tokenomy.ledger import Store, open_store
from tokenomy.pipeline.context import Call
from tokenomy.pricing import PriceBook
from tokenomy.records import UsageRecord
from tokenomy.server.http import read_body
from tokenomy.testing import serve_in_thread
from tokenomy.usage import Usage

T0 = datetime(2025, 6, 1, 12, tzinfo=UTC).timestamp()

# Asked for this, the upstream answers 200 with a reply of the wrong shape that
# reports what it used: the attempt fails, and its usage is a row of its own.
ODD = b'{"type": "message", "content": "x", "usage": {"input_tokens": 30, "output_tokens": 20}}'


async def odd_upstream(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await read_body(receive)
    headers = [(b"content-type", b"application/json"), (b"request-id", b"req_odd0123456789")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": ODD})


@pytest.fixture
def odd_url() -> Iterator[str]:
    with serve_in_thread(odd_upstream) as url:
        yield url


def settings_for(tmp_path: Path, fake: Fake, llama: Fake, odd_url: str, **caps: Any) -> Settings:
    base = gateway_settings(str(tmp_path / "ledger.db"), fake, llama, require_key=False)
    odd = dep("claude-sonnet-4-6", "anthropic", odd_url)
    routing = {
        "tiers": ["gpt-4o-mini", "gpt-4o"],
        "cascade": {"threshold": 0.67, "samples": 3},
        "fallbacks": {"claude-sonnet-4-6": ["gpt-4o-mini"]},
        "judge": {"sample_rate": 1.0, "model": "gpt-4o"},
    }
    return replace(base, deployments=(odd, *base.deployments), routing=routing, caps=caps)


BUDGETS = (
    {"name": "all", "scope": {}, "period": "lifetime", "limit_usd": "100",
     "limit_tokens": 10**9},
    {"name": "per-model", "scope": {"model": "each"}, "period": "daily", "limit_usd": "100"},
)  # fmt: skip


def ask(model: str, text: str) -> Call:
    body = {"model": model, "max_tokens": 20, "messages": [{"role": "user", "content": text}]}
    return Call("openai", "chat", "/v1/chat/completions", body, {})


async def serve(gateway: Gateway) -> list[str]:
    """A cascade that escalates, a fallback past a failed attempt that reported
    usage, a plain request; a judge rates the routed answers. Their request ids."""
    calls = [
        ask("cheap-first", "what is 6 times 7 [[fake:vary]]"),
        ask("claude-sonnet-4-6", "hello"),
        ask("gpt-4o", "plain"),
    ]
    for call in calls:
        await gateway.handle(call)
    assert gateway.judge is not None
    await gateway.judge.close(grace=10)  # the judgements are written
    return [c.request_id for c in calls]


async def counters(p: CapsPolicy) -> dict[tuple[str, str, str], int]:
    """Every budget counter the served requests touched, by (budget, measure, entity)."""
    out: dict[tuple[str, str, str], int] = {}
    for b in p.defs.budgets:
        for model in ("cheap-first", "claude-sonnet-4-6", "gpt-4o"):
            entity = b.scope.entity(Subject(model=model))
            assert entity is not None
            lines = p.budget_lines(b, entity)
            totals = await p.backend.totals([line.hold.window for line in lines])
            for line, total in zip(lines, totals, strict=True):
                out[(b.name, line.measure, entity)] = total
    return out


async def rebuilt(store: Store, config: CapsConfig) -> dict[tuple[str, str, str], int]:
    """The counters a gateway starting on this ledger seeds from it."""
    p = CapsPolicy(store, PriceBook(), config)
    await p.start(background=False)
    try:
        return await counters(p)
    finally:
        await p.stop()


def side_rows(store: Store, rids: list[str]) -> list[str]:
    return [
        r.request_id
        for r in store.list_records()
        if r.request_id not in rids and r.request_id.split(".")[0] in rids
    ]


async def check(
    tmp_path: Path, fake: Fake, llama: Fake, odd_url: str, again: CapsConfig, **caps: Any
) -> None:
    gateway = Gateway(settings_for(tmp_path, fake, llama, odd_url, **caps))
    assert gateway.caps is not None
    for raw in BUDGETS:
        gateway.caps.store.save_budget(budget_from(raw), new=True)
    try:
        rids = await serve(gateway)
        live = await counters(gateway.caps)
    finally:
        await gateway.close()
    with open_store(str(tmp_path / "ledger.db")) as store:
        sides = side_rows(store, rids)
        rid = rids[0]
        assert sorted(s.removeprefix(rid) for s in sides if s.startswith(rid)) == [
            ".draft", ".judge"]  # fmt: skip
        assert rids[1] + ".attempt1" in sides and rids[1] + ".judge" in sides
        # the gateway's own calls cost something: counting them would show
        assert ledger_units(store) > live[("all", "usd", "")]
        assert await rebuilt(store, again) == live


async def test_counters_rebuilt_in_memory_are_the_live_ones(
    fake: Fake, fake_llamacpp: Fake, tmp_path: Path, odd_url: str
) -> None:
    await check(tmp_path, fake, fake_llamacpp, odd_url, CapsConfig())


@pytest.mark.redis
async def test_counters_rebuilt_in_redis_are_the_live_ones(
    fake: Fake, fake_llamacpp: Fake, tmp_path: Path, odd_url: str, redis_url: str,
    redis_prefix: str,
) -> None:  # fmt: skip
    # Seeded under a prefix of their own, as a Redis restarted empty would be.
    # (No allowances: a counter read while a replica holds one counts it as spent.)
    again = CapsConfig(redis_url=redis_url, redis_prefix=redis_prefix + "again:")
    await check(tmp_path, fake, fake_llamacpp, odd_url, again,
                redis_url=redis_url, redis_prefix=redis_prefix, allowance=0)  # fmt: skip


async def test_a_crashed_requests_hold_is_swept_to_what_it_was_charged(store: Store) -> None:
    """The sweeper settles a dead process's reservation from the ledger as the
    process would have: the request's row plus its charged side rows (its
    escalated draft), not the gateway's own calls (its judge's). On both engines."""
    clock = Clock(T0)
    p = policy(store, clock, backend=MemoryCounters(clock=clock))
    await p.start(background=False)
    try:
        bid = await add_budget(p, name="b", scope={}, period="monthly", limit_usd="1")
        call = chat(max_tokens=100)
        await p.reserve(call)
        main = use(call, 10, 5)
        sides = [
            side_record(main, ".draft", "cascade", charged=True),
            side_record(main, ".judge", "judge", charged=False),
        ]
        store.insert_records([*sides, main])  # committed, then the process "died"
        p._open.clear()  # nobody renews it any more
        clock.t += p.config.lease + 1
        assert await p.sweeper.sweep_once() == 1
        (line,) = p.budget_lines(p.store.get_budget(bid))  # type: ignore[arg-type]
        assert main.cost_usd is not None and sides[0].cost_usd is not None
        want = usd_to_units(main.cost_usd + sides[0].cost_usd)
        assert await p.backend.totals([line.hold.window]) == [want]
        assert ledger_units(store, where="charged") == want < ledger_units(store)
    finally:
        await p.stop()


def side_record(main: UsageRecord, suffix: str, reason: str, *, charged: bool) -> UsageRecord:
    """A side row of ``main`` as `tokenomy.routing.side` writes one (its time too)."""
    route = {"reason": reason, "parent": main.request_id}
    return replace(main, request_id=main.request_id + suffix, decisions={"route": route},
                   usage=Usage(input_tokens=7, output_tokens=3), charged=charged,
                   cost_usd=Decimal("0.00005"))  # fmt: skip
