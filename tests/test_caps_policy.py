"""The caps policy in one process: scopes, reserve-then-settle, clamp, periods rolling
over (an injected clock), restarts rebuilding from the ledger, sweeps and alerts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from caps_helpers import Clock, add_budget, add_limit, chat, finish, ledger_units, policy, receiver
from tokenomy.caps import CapsPolicy, Scope, Subject
from tokenomy.caps.counters import Hold, Window, usd_to_units
from tokenomy.caps.estimate import Estimator
from tokenomy.caps.memory import MemoryCounters
from tokenomy.caps.policy import HoldSource
from tokenomy.errors import InvalidRequest, RateLimited, TokenomyError
from tokenomy.images import count_images
from tokenomy.ledger import Store, open_store
from tokenomy.pipeline.admit import Admit
from tokenomy.pipeline.context import ANTHROPIC, OPENAI, Call
from tokenomy.pricing import PriceBook, PriceOverride
from tokenomy.records import UsageRecord
from tokenomy.webhook import scrubbed, shown

T0 = datetime(2025, 6, 1, 12, tzinfo=UTC).timestamp()


@pytest.fixture
def ledger(tmp_path: object) -> AsyncIterator[Store]:
    with open_store(str(tmp_path) + "/ledger.db") as s:  # type: ignore[operator]
        s.migrate()
        yield s


@pytest.fixture
async def caps(ledger: Store) -> AsyncIterator[tuple[CapsPolicy, Clock]]:
    clock = Clock(T0)
    p = policy(ledger, clock, backend=MemoryCounters(clock=clock))
    await p.start(background=False)
    yield p, clock
    await p.stop()


# -- scopes ------------------------------------------------------------------------------------


def test_scopes_match_fixed_values_and_each() -> None:
    s = Subject(
        org="acme", team="search", key="k1", user="alice", model="gpt-4o", tags={"env": "prod"}
    )
    assert Scope.of({}).entity(s) == ""
    assert Scope.of({"team": "search", "model": "gpt-4o"}).entity(s) == ""
    assert Scope.of({"team": "ads"}).entity(s) is None
    assert Scope.of({"user": "each"}).entity(s) == "user=alice"
    assert Scope.of({"team": "each", "model": "*"}).entity(s) == "model=gpt-4o|team=search"
    assert Scope.of({"tag:env": "prod"}).entity(s) == ""
    assert Scope.of({"tag:env": "each"}).entity(s) == "tag:env=prod"
    assert Scope.of({"tag:project": "each"}).entity(s) is None  # no such tag: out of scope
    assert Scope.of({"user": "each"}).entity(Subject(team="search")) is None
    long = Subject(user="x" * 500)
    entity = Scope.of({"user": "each"}).entity(long)
    assert entity is not None and len(entity) < 40  # client-chosen values stay bounded
    with pytest.raises(InvalidRequest):
        Scope.of({"colour": "red"})


def test_static_match_ignores_per_request_dimensions() -> None:
    scope = Scope.of({"team": "search", "user": "each", "tag:env": "prod"})
    assert scope.static_match(Subject(team="search"))
    assert not scope.static_match(Subject(team="ads"))


# -- the worst case ----------------------------------------------------------------------------


def test_worst_case_is_counted_input_plus_max_tokens_at_list_prices() -> None:
    est = Estimator(PriceBook())
    call = chat(max_tokens=100)
    e = est(call)
    assert e.output_tokens == 100
    assert e.input_tokens == 9  # 3 priming + 3 per message + "user" + "hello world"
    # gpt-4o: $2.50 / M input, $10 / M output
    assert e.usd == usd_to_units(Decimal("0.0000025") * 9 + Decimal("0.00001") * 100)
    assert est(chat()).output_tokens == 16384  # no max_tokens: the model's output limit
    assert est(chat("my-own-model")).output_tokens == 16384  # the default
    assert (
        Estimator(PriceBook(), output_limits={"my-own": 99})(chat("my-own-model")).output_tokens
        == 99
    )
    assert est(chat("mystery-model-x", max_tokens=5)).usd is None


def test_worst_case_is_priced_at_the_dearer_tier_the_request_asks_for() -> None:
    """The upstream prices a request at the tier it served (`Usage.price_context`):
    a worst case at the standard price would let a priority request overshoot."""
    est = Estimator(PriceBook())
    standard = est(chat("gpt-5", max_tokens=100))
    priority = est(chat("gpt-5", max_tokens=100, service_tier="priority"))
    assert standard.usd is not None and priority.usd == 2 * standard.usd  # $2.50 / $20
    assert est(chat("gpt-5", max_tokens=100, service_tier="flex")).usd == standard.usd
    plain = est(chat("claude-opus-4-8", api=ANTHROPIC, max_tokens=10))
    fast = est(chat("claude-opus-4-8", api=ANTHROPIC, max_tokens=10, speed="fast"))
    assert plain.usd is not None and fast.usd is not None and fast.usd > plain.usd


def test_worst_case_counts_each_image_at_its_models_ceiling() -> None:
    """The prompt count sees an image as nothing; the worst case adds the most one
    image can cost the model (providers resize images to a bounded size)."""
    est = Estimator(PriceBook())
    text = est(chat("gpt-4o", max_tokens=5)).input_tokens
    image = {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
    parts = [{"type": "text", "text": "hello world"}, image, image]
    two = est(chat("gpt-4o", max_tokens=5, messages=[{"role": "user", "content": parts}]))
    assert two.input_tokens >= text + 2 * 1445
    mini = est(chat("gpt-4o-mini", max_tokens=5, messages=[{"role": "user", "content": parts}]))
    assert mini.input_tokens >= 2 * 48169  # gpt-4o-mini bills an image as many tokens
    block = {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}
    hi = {"type": "text", "text": "hi"}

    def claude(*content: dict[str, Any]) -> int:
        msgs = [{"role": "user", "content": list(content)}]
        return est(
            chat("claude-sonnet-4-5", api=ANTHROPIC, max_tokens=5, messages=msgs)
        ).input_tokens

    assert claude(block, hi) - claude(hi) == 1600
    result = {"type": "tool_result", "tool_use_id": "t", "content": [block, hi]}
    assert count_images({"messages": [{"role": "user", "content": [block, result]}]}) == 2


def test_a_legacy_completions_worst_case_counts_every_answer_to_every_prompt() -> None:
    est = Estimator(PriceBook())

    def completion(**body: Any) -> Call:
        call = Call(
            OPENAI,
            "completions",
            "/v1/completions",
            {"model": "gpt-4o", "max_tokens": 10, **body},
            {},
        )
        call.record.requested_model = call.record.served_model = "gpt-4o"
        return call

    one = est(completion(prompt="one two three"))
    assert (one.input_tokens, one.output_tokens, one.answers) == (3, 10, 1)
    # n answers to each of two prompts; best_of generates (and bills) that many
    assert est(completion(prompt=["a", "b"], n=3)).answers == 6
    assert est(completion(prompt=["a", "b"], n=2, best_of=5)).answers == 10
    assert est(completion(prompt=[[1, 2, 3]])).input_tokens == 3
    assert one.usd is not None
    assert est(completion(prompt="one two three", n=2)).usd > one.usd  # type: ignore[operator]


def test_worst_case_prices_inputs_as_cache_writes_when_caching_is_asked() -> None:
    est = Estimator(PriceBook())
    plain = chat("claude-sonnet-4-5", api=ANTHROPIC, max_tokens=10)
    cached = chat("claude-sonnet-4-5", api=ANTHROPIC, max_tokens=10,
                  system=[{"type": "text", "text": "x", "cache_control": {"type": "ephemeral"}}])  # fmt: skip
    a, b = est(plain), est(cached)
    assert a.usd is not None and b.usd is not None and a.input_usd is not None
    assert b.input_usd is not None and b.input_usd >= 2 * a.input_usd


def test_worst_case_prices_openai_inputs_as_cache_writes_where_they_cost_more() -> None:
    """OpenAI caches a prompt without being asked, and GPT-5.6 and later bill the
    write at 1.25x input: priced as fresh input, a request that writes its whole
    prompt would cost more than was held."""
    est = Estimator(PriceBook())
    e = est(chat("gpt-5.6-terra", max_tokens=10))
    # gpt-5.6-terra (since 2026-07-30): $2.50 a million written, $12 out
    assert e.input_usd == usd_to_units(Decimal("0.0000025") * e.input_tokens)
    assert e.usd == usd_to_units(Decimal("0.0000025") * e.input_tokens + Decimal("0.00012"))
    # Where writes cost less than fresh input, the fresh input is the worst.
    cheap = PriceOverride(Decimal(3), Decimal(10), cache_write=Decimal("0.1"))
    dear = PriceOverride(Decimal(3), Decimal(10), cache_write=Decimal(4))
    book = Estimator(PriceBook({"cheap-writes": cheap, "dear-writes": dear}))
    low, high = book(chat("cheap-writes", max_tokens=10)), book(chat("dear-writes", max_tokens=10))
    assert low.input_usd == usd_to_units(Decimal("0.000003") * low.input_tokens)
    assert high.input_usd == usd_to_units(Decimal("0.000004") * high.input_tokens)
    # An Anthropic upstream caches only what the request marks.
    claude = book(chat("dear-writes", api=ANTHROPIC, max_tokens=10))
    assert claude.input_usd == usd_to_units(Decimal("0.000003") * claude.input_tokens)


@pytest.mark.parametrize(
    ("body", "asks"),
    [({"cache_control": {"type": "ephemeral"}}, True),
     ({"tools": [{"name": "t", "input_schema": {}, "cache_control": {"type": "ephemeral"}}]}, True),
     ({"messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t",
       "content": [{"type": "text", "text": "a", "cache_control": {"type": "ephemeral"}}]}]}]},
      True),  # nested in a tool result
     ({"messages": [{"role": "user", "content": "what does cache_control do?"}]}, False),
     ({"system": "cache_control", "messages": []}, False)],
)  # fmt: skip
def test_caching_is_asked_by_a_block_not_by_words(body: dict[str, object], asks: bool) -> None:
    from tokenomy.translate._common import asks_for_cache as _asks_for_cache

    assert _asks_for_cache(body) is asks


# -- budgets -----------------------------------------------------------------------------------


async def test_no_definitions_costs_nothing(caps: tuple[CapsPolicy, Clock]) -> None:
    p, _ = caps
    call = chat(max_tokens=10)
    await p.reserve(call)
    assert p.open_count() == 0 and call.record.decisions == {} and call.response_headers == {}


async def test_a_budget_refuses_what_cannot_fit_and_says_what_remains(
    caps: tuple[CapsPolicy, Clock], ledger: Store
) -> None:
    p, _ = caps
    await add_budget(p, name="search-daily", scope={"team": "search"}, period="daily",
                     limit_usd="0.001")  # fmt: skip
    ok = chat(max_tokens=50)  # worst case $0.0005225
    await p.reserve(ok)
    assert ok.record.decisions["caps"]["reserved_usd"] == "0.0005225"
    with pytest.raises(RateLimited) as info:
        await p.reserve(chat(max_tokens=50))  # twice 0.0005225 > 0.001
    err = info.value
    assert err.code == "budget_exceeded"
    assert "search-daily" in err.message and "$0.0004775 of $0.001 remains" in err.message
    assert err.headers["x-should-retry"] == "false"
    assert err.headers["retry-after"] == str(12 * 3600)  # the day ends at midnight UTC
    await p.reserve(chat(team="ads", max_tokens=50))  # another team: not in scope
    await finish(p, ledger, ok, 10, 5)  # actual $0.000075: room again
    await p.reserve(chat(max_tokens=50))


async def test_spend_never_passes_the_budget_and_counters_equal_the_ledger(
    caps: tuple[CapsPolicy, Clock], ledger: Store
) -> None:
    p, _ = caps
    bid = await add_budget(p, name="b", scope={}, period="monthly", limit_usd="0.01")
    admitted, refused = [], 0

    async def one(i: int) -> None:
        nonlocal refused
        call = chat(max_tokens=40, content=f"request {i}")
        try:
            await p.reserve(call)
        except RateLimited:
            refused += 1
            return
        await asyncio.sleep(0.001 * (i % 5))
        admitted.append(await finish(p, ledger, call, 12, 30))

    await asyncio.gather(*(one(i) for i in range(300)))
    spent = sum(r.cost_usd for r in admitted if r.cost_usd is not None)
    assert spent <= Decimal("0.01")
    assert refused > 0 and len(admitted) > 20
    (line,) = p.budget_lines(p.store.get_budget(bid))  # type: ignore[arg-type]
    assert await p.backend.totals([line.hold.window]) == [ledger_units(ledger)]


async def test_each_user_has_a_counter_of_their_own(caps: tuple[CapsPolicy, Clock]) -> None:
    p, _ = caps
    await add_budget(p, name="per-user", scope={"user": "each"}, period="daily", limit_tokens=100)
    await p.reserve(chat(user="alice", max_tokens=80))
    with pytest.raises(RateLimited, match="for user=alice"):
        await p.reserve(chat(user="alice", max_tokens=80))
    await p.reserve(chat(user="bob", max_tokens=80))
    await p.reserve(chat(user=None, max_tokens=80))  # no user: outside the scope


async def test_counters_of_users_gone_quiet_are_forgotten(caps: tuple[CapsPolicy, Clock]) -> None:
    """A per-user rate limit makes a counter per user; the housekeeping's tidy drops
    those whose window has passed, so a long-running gateway's memory stays bounded."""
    p, clock = caps
    await add_limit(p, name="per-user", scope={"user": "each"}, rpm=5)
    assert p._tidy is not None  # the housekeeping tidies the in-memory counters
    be = p.backend
    assert isinstance(be, MemoryCounters)
    for i in range(300):
        call = chat(user=f"u{i}")
        await p.reserve(call)
        await p.settle(call, call.record)
    assert be.counter_count() >= 300
    clock.t += 3600
    await p._tidy()
    await p._tidy()
    assert be.counter_count() == 0
    call = chat(user="u1")  # a returning user starts afresh
    await p.reserve(call)
    assert be.counter_count() == 1


async def test_team_by_model_combination(caps: tuple[CapsPolicy, Clock]) -> None:
    p, _ = caps
    await add_budget(p, name="t-x-m", scope={"team": "search", "model": "each"}, period="daily",
                     limit_tokens=100)  # fmt: skip
    await p.reserve(chat("gpt-4o", max_tokens=80))
    await p.reserve(chat("gpt-4o-mini", max_tokens=80))
    with pytest.raises(RateLimited, match="for model=gpt-4o "):
        await p.reserve(chat("gpt-4o", max_tokens=80))


async def test_every_applicable_budget_is_checked(caps: tuple[CapsPolicy, Clock]) -> None:
    p, _ = caps
    await add_budget(p, name="org", scope={"org": "acme"}, period="daily", limit_usd="100")
    await add_budget(p, name="key", scope={"key": "k1"}, period="daily", limit_tokens=50)
    with pytest.raises(RateLimited, match="Budget 'key'"):
        await p.reserve(chat(max_tokens=60))
    assert p.open_count() == 0  # all or nothing: the org budget holds nothing either


async def test_unknown_prices_reserve_nothing_but_stop_at_an_exhausted_budget(
    caps: tuple[CapsPolicy, Clock], ledger: Store
) -> None:
    p, _ = caps
    await add_budget(p, name="b", scope={}, period="daily", limit_usd="0.0002")
    mystery = chat("mystery-model-x", max_tokens=10_000)
    await p.reserve(mystery)
    assert mystery.record.decisions["caps"]["price_unknown"] is True
    await finish(p, ledger, mystery, 10, 10)
    spender = chat(max_tokens=15)
    await p.reserve(spender)
    await finish(p, ledger, spender, 20, 15)  # $0.0002 exactly: used up
    with pytest.raises(RateLimited, match="no known price"):
        await p.reserve(chat("mystery-model-x", max_tokens=1))


# -- clamp ------------------------------------------------------------------------------------


async def test_clamp_lowers_max_tokens_to_what_is_left(caps: tuple[CapsPolicy, Clock]) -> None:
    p, _ = caps
    await add_budget(p, name="c", scope={}, period="daily", limit_usd="0.001", on_exceed="clamp")
    call = chat(max_tokens=500)  # worst case $0.005025: five times the budget
    await p.reserve(call)
    # $0.001 - 9 input tokens ($0.0000225) leaves $0.0009775: 97 output tokens, one spare
    assert call.body["max_tokens"] == 96
    assert call.record.decisions["caps"]["clamped_max_tokens"] == 96
    assert Decimal(call.record.decisions["caps"]["reserved_usd"]) <= Decimal("0.001")
    new = chat(max_completion_tokens=500)
    with pytest.raises(RateLimited):  # what is left pays for no output token
        await p.reserve(new)


async def test_clamp_edits_the_field_the_client_used(caps: tuple[CapsPolicy, Clock]) -> None:
    p, _ = caps
    await add_budget(p, name="c", scope={}, period="daily", limit_tokens=110, on_exceed="clamp")
    oa = chat(max_completion_tokens=500)
    await p.reserve(oa)
    assert oa.body["max_completion_tokens"] == 101 and "max_tokens" not in oa.body
    await p.stop()
    p2 = policy(p.store.store, p.clock, backend=MemoryCounters())
    await p2.start(background=False)
    none_given = chat()
    await p2.reserve(none_given)
    assert none_given.body["max_tokens"] == 101
    await p2.stop()


async def test_clamp_on_an_anthropic_request(caps: tuple[CapsPolicy, Clock]) -> None:
    p, _ = caps
    await add_budget(p, name="c", scope={}, period="daily", limit_tokens=60, on_exceed="clamp")
    call = chat("claude-haiku-4-5", api=ANTHROPIC, max_tokens=1024)
    await p.reserve(call)
    assert 0 < call.body["max_tokens"] < 60


async def test_refuse_wins_over_clamp(caps: tuple[CapsPolicy, Clock]) -> None:
    p, _ = caps
    await add_budget(p, name="c", scope={}, period="daily", limit_tokens=60, on_exceed="clamp")
    await add_budget(p, name="r", scope={}, period="daily", limit_tokens=60)
    with pytest.raises(RateLimited):
        await p.reserve(chat(max_tokens=100))


# -- periods roll over --------------------------------------------------------------------------


async def test_a_daily_budget_starts_again_the_next_day(
    caps: tuple[CapsPolicy, Clock], ledger: Store
) -> None:
    p, clock = caps
    await add_budget(p, name="d", scope={}, period="daily", limit_tokens=100)
    call = chat(max_tokens=80)
    await p.reserve(call)
    await finish(p, ledger, call, 10, 80)
    with pytest.raises(RateLimited):
        await p.reserve(chat(max_tokens=80))
    clock.t = T0 + 12 * 3600 - 1  # 23:59:59
    with pytest.raises(RateLimited):
        await p.reserve(chat(max_tokens=80))
    clock.t = T0 + 12 * 3600  # midnight
    await p.reserve(chat(max_tokens=80))


async def test_a_rolling_window_forgets_what_slid_out(
    caps: tuple[CapsPolicy, Clock], ledger: Store
) -> None:
    p, clock = caps
    await add_budget(p, name="r", scope={}, period="rolling:10s:1s", limit_tokens=100)
    first = chat(max_tokens=80)
    await p.reserve(first)
    await finish(p, ledger, first, 10, 80)
    clock.t += 9
    with pytest.raises(RateLimited):
        await p.reserve(chat(max_tokens=80))
    clock.t += 1
    await p.reserve(chat(max_tokens=80))


async def test_calendar_periods_follow_the_configured_time_zone(ledger: Store) -> None:
    tokyo_midnight = datetime(2025, 6, 1, 15, tzinfo=UTC).timestamp()  # 00:00 JST
    clock = Clock(tokyo_midnight - 1)
    p = policy(ledger, clock, backend=MemoryCounters(clock=clock), timezone="Asia/Tokyo")
    await p.start(background=False)
    await add_budget(p, name="d", scope={}, period="daily", limit_tokens=100)
    await p.reserve(chat(max_tokens=80))
    with pytest.raises(RateLimited):  # the same Tokyo day: 80 more do not fit in 100
        await p.reserve(chat(max_tokens=80))
    clock.t = tokyo_midnight  # 15:00 UTC, the same UTC day: only Tokyo's day is new
    await p.reserve(chat(max_tokens=80))
    await p.stop()


# -- restarts -----------------------------------------------------------------------------------


async def test_a_restart_rebuilds_the_current_period_from_the_ledger(ledger: Store) -> None:
    clock = Clock(T0)
    p = policy(ledger, clock)
    await p.start(background=False)
    await add_budget(p, name="day", scope={"user": "each"}, period="daily", limit_usd="0.001")
    await add_budget(p, name="roll", scope={}, period="rolling:1h", limit_tokens=10_000)
    spent = []
    for i, user in enumerate(["alice", "alice", "bob"]):
        call = chat(user=user, max_tokens=20)
        clock.t = T0 + 60 * i
        await p.reserve(call)
        spent.append(await finish(p, ledger, call, 10, 20))
    yesterday = chat(user="alice", max_tokens=20)
    clock.t = T0 - 86400
    await p.reserve(yesterday)
    await finish(p, ledger, yesterday, 10, 20)
    clock.t = T0 + 300
    before = {
        u: await p.backend.totals(
            [line.hold.window for line in p.budget_lines(p.defs.budgets[0], f"user={u}")]
        )
        for u in ("alice", "bob")
    }
    roll_before = await p.backend.totals([p.budget_lines(p.defs.budgets[1])[0].hold.window])
    await p.stop()

    again = policy(ledger, clock)  # a fresh process: empty memory
    await again.start(background=False)
    for u in ("alice", "bob"):
        lines = again.budget_lines(again.defs.budgets[0], f"user={u}")
        assert await again.backend.totals([line.hold.window for line in lines]) == before[u]
    assert before["alice"] == [2 * 225_000]  # yesterday's request is not in today's window
    assert (
        await again.backend.totals([again.budget_lines(again.defs.budgets[1])[0].hold.window])
        == roll_before
    )
    assert roll_before == [90]
    await again.stop()


# -- sweeps --------------------------------------------------------------------------------------


async def test_expired_reservations_are_settled_from_the_ledger_or_released(
    caps: tuple[CapsPolicy, Clock], ledger: Store
) -> None:
    p, clock = caps
    bid = await add_budget(p, name="b", scope={}, period="monthly", limit_usd="1")
    committed, lost = chat(max_tokens=100), chat(max_tokens=100)
    await p.reserve(committed)
    await p.reserve(lost)
    ledger.insert_records([use_record(committed)])  # committed, then the process "died"
    p._open.clear()  # nobody renews them any more
    clock.t += p.config.lease + 1
    assert await p.sweeper.sweep_once() == 2
    assert (p.sweeper.settled, p.sweeper.released) == (1, 1)
    (line,) = p.budget_lines(p.store.get_budget(bid))  # type: ignore[arg-type]
    assert await p.backend.totals([line.hold.window]) == [ledger_units(ledger)] == [75_000]
    assert await p.sweeper.sweep_once() == 0


def use_record(call: Call) -> UsageRecord:
    from caps_helpers import use

    return use(call, 10, 5)


# -- rate limits ----------------------------------------------------------------------------


async def test_rate_limits_count_requests_and_tokens_per_window(
    caps: tuple[CapsPolicy, Clock], ledger: Store
) -> None:
    p, clock = caps
    await add_limit(p, name="k", scope={"key": "each"}, rpm=2, tpm=200)
    a = chat(max_tokens=50)
    await p.reserve(a)
    assert a.response_headers["x-ratelimit-remaining-requests"] == "1"
    assert a.response_headers["x-ratelimit-remaining-tokens"] == "141"
    assert a.response_headers["x-ratelimit-reset-requests"] == "1m0s"
    await finish(p, ledger, a, 10, 5)  # settles to 15 tokens
    clock.t += 20
    b = chat(max_tokens=50)
    await p.reserve(b)
    assert b.response_headers["x-ratelimit-remaining-tokens"] == "126"
    with pytest.raises(RateLimited) as info:
        await p.reserve(chat(max_tokens=50))
    h = info.value.headers
    assert info.value.code == "rate_limit_exceeded"
    assert h["x-ratelimit-remaining-requests"] == "0" and h["retry-after"] == "40"
    assert h["x-ratelimit-reset-requests"] == "40s"
    clock.t += 40
    await p.reserve(chat(max_tokens=50))  # the first request left the window


async def test_concurrency_limits_release_when_requests_end(
    caps: tuple[CapsPolicy, Clock], ledger: Store
) -> None:
    p, _ = caps
    await add_limit(p, name="c", scope={"team": "search"}, concurrent=2)
    a, b = chat(), chat()
    await p.reserve(a)
    await p.reserve(b)
    with pytest.raises(RateLimited, match="2 concurrent requests at most"):
        await p.reserve(chat())
    await finish(p, ledger, a, 1, 1)
    await p.reserve(chat())


# -- composition --------------------------------------------------------------------------------


class Refuse:
    async def reserve(self, call: Call) -> None:
        raise RateLimited("no")

    async def settle(self, call: Call, record: UsageRecord) -> None:
        raise AssertionError("never reserved")


async def test_a_later_policy_refusing_releases_the_caps(caps: tuple[CapsPolicy, Clock]) -> None:
    p, _ = caps
    await add_budget(p, name="b", scope={}, period="daily", limit_tokens=100)
    admit = Admit([p, Refuse()])
    for _ in range(3):
        with pytest.raises(RateLimited):
            await admit(chat(max_tokens=80))
    assert p.open_count() == 0
    await p.reserve(chat(max_tokens=80))  # nothing was left held


class Balance(HoldSource):
    """A prepaid balance joining the caps' atomic reservation."""

    def holds(self, call: Call, estimate: object) -> list[Hold]:
        return [Hold(Window("credit:alice"), 50, 100, "tokens")]

    def refusal(self, hold: Hold, total: int) -> TokenomyError:
        return RateLimited(f"balance: {hold.limit - total} left", code="insufficient_balance")

    def allowed_output(self, call: Call, hold: Hold, total: int, estimate: object) -> int | None:
        return None  # refuse, never clamp


async def test_another_source_joins_the_same_reservation(caps: tuple[CapsPolicy, Clock]) -> None:
    p, _ = caps
    p.add_source(Balance())
    await p.reserve(chat())
    await p.reserve(chat())
    with pytest.raises(RateLimited, match="balance: 0 left"):
        await p.reserve(chat())


async def test_one_housekeeping_task_reloads_and_sweeps_each_on_its_own_period(
    ledger: Store,
) -> None:
    p = policy(ledger, reload_interval=0.05, sweep_interval=10.0)
    reloads = sweeps = 0
    reload, sweep = p.reload, p.sweeper.round

    async def counted_reload(*, force: bool = False) -> bool:
        nonlocal reloads
        reloads += 1
        return await reload(force=force)

    async def counted_sweep() -> None:
        nonlocal sweeps
        sweeps += 1
        await sweep()

    p.reload = counted_reload  # type: ignore[method-assign]
    p.sweeper.round = counted_sweep  # type: ignore[method-assign]
    await p.start()
    assert len(p._tasks) == 1  # one wake-up per period, not one per chore
    await asyncio.sleep(0.4)
    await p.stop()
    assert reloads >= 4 and sweeps == 1  # the sweep at start, the next after 10 s


# -- alerts -------------------------------------------------------------------------------------


async def _cross_half(p: CapsPolicy, ledger: Store) -> None:
    await add_budget(p, name="retrying", scope={}, period="daily", limit_tokens=100,
                     alerts=[50])  # fmt: skip
    call = chat(max_tokens=10)
    await p.reserve(call)
    await finish(p, ledger, call, 10, 50)


@pytest.mark.parametrize(
    ("answers", "posts", "sent"),
    [([503, 429], 3, 1),  # failures the receiver may recover from: tried again
     ([400], 1, 0),  # the receiver refuses the body: trying again would not help
     ([503, 503, 503], 3, 0)],  # every try failed: given up, logged
)  # fmt: skip
async def test_a_failed_webhook_is_tried_again(
    ledger: Store, caplog: pytest.LogCaptureFixture, answers: list[int], posts: int, sent: int
) -> None:
    clock = Clock(T0)
    with receiver() as (got, url):
        got.answers = list(answers)
        p = policy(ledger, clock, webhook_url=url)
        p.alerts.delays = (0.01, 0.01)
        await p.start()
        await _cross_half(p, ledger)
        deadline = time.monotonic() + 5
        while p.alerts.sent + p.alerts.failed == 0:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        await p.stop()
    assert (got.posts, p.alerts.sent, len(got.bodies)) == (posts, sent, sent)
    assert p.alerts.failed == 1 - sent
    if not sent:
        assert "not delivered" in caplog.text and "reached 50%" in caplog.text


async def test_the_webhook_url_is_not_logged(
    ledger: Store, caplog: pytest.LogCaptureFixture
) -> None:
    # A Slack incoming webhook's path is its token: logs show scheme and host only.
    clock = Clock(T0)
    with receiver() as (got, url):
        secret_url = url + "/T0000/B0000/s3cr3tT0ken?sig=abc"
        got.answers = [503, 503]
        p = policy(ledger, clock, webhook_url=secret_url)
        p.alerts.delays = (0.01,)
        await p.start()
        await _cross_half(p, ledger)
        deadline = time.monotonic() + 5
        while p.alerts.failed == 0:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        await p.stop()
    assert got.posts == 2 and "trying again" in caplog.text and "not delivered" in caplog.text
    assert "s3cr3tT0ken" not in caplog.text and "sig=abc" not in caplog.text
    assert url.rsplit("/", 1)[0] + "/..." in caplog.text  # the host is still named


def test_webhook_urls_are_shown_without_their_secrets() -> None:
    assert shown("https://u:pw@hooks.example.com:8443/T0/B0/tok?x=1") == (
        "https://hooks.example.com:8443/..."
    )
    assert shown("not a url") == "<webhook>"
    assert scrubbed("cannot post to http://h/tok: refused", "http://h/tok") == (
        "cannot post to http://h/...: refused"
    )


async def test_shutdown_gives_up_on_a_delivery_waiting_to_retry(
    ledger: Store, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock(T0)
    with receiver() as (got, url):
        got.answers = [503]
        p = policy(ledger, clock, webhook_url=url)
        p.alerts.delays = (60.0,)
        await p.start()
        await _cross_half(p, ledger)
        deadline = time.monotonic() + 5
        while got.posts == 0:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        began = time.monotonic()
        await p.alerts.stop(drain=0.2)
        await p.stop()
    assert time.monotonic() - began < 5  # did not wait for the retry
    assert p.alerts.failed == 1 and "shutting down" in caplog.text


async def test_thresholds_fire_once_per_period_across_processes(
    ledger: Store, tmp_path: object
) -> None:
    clock = Clock(T0)
    with receiver() as (got, url):
        shared = MemoryCounters(clock=clock)  # both "replicas" see the same counters
        p1 = policy(ledger, clock, backend=shared, webhook_url=url)
        second_store = open_store(str(tmp_path) + "/ledger.db")  # type: ignore[operator]
        p2 = policy(second_store, clock, backend=shared, webhook_url=url)
        for p in (p1, p2):
            await p.start()
        await add_budget(p1, name="alerting", scope={}, period="daily", limit_tokens=1000,
                         alerts=[50, 80, 100])  # fmt: skip
        await p2.reload()
        for i in range(12):  # 90 tokens each: crosses 50% and 80%, stays under 100%
            p = (p1, p2)[i % 2]
            call = chat(max_tokens=80)
            await p.reserve(call)
            await finish(p, ledger, call, 10, 65)
        await asyncio.sleep(0)
        for p in (p1, p2):
            await p.alerts.stop()
        bodies = sorted(got.bodies, key=lambda b: b["threshold_pct"])
        assert [b["threshold_pct"] for b in bodies] == [50, 80]
        assert bodies[0]["text"].startswith("Budget 'alerting' reached 50%")
        assert bodies[0]["period"] == "2025-06-01" and bodies[0]["measure"] == "tokens"
        assert float(bodies[1]["percent"]) >= 80  # whichever replica claimed it first
        clock.t += 86400  # a new day: the thresholds may fire again
        call = chat(max_tokens=80)
        for p in (p1, p2):
            p.alerts.start()
        await p1.reserve(call)
        await finish(p1, ledger, call, 10, 600)
        for p in (p1, p2):
            await p.stop()
        second_store.close()
        assert [b["period"] for b in got.bodies[2:]] == ["2025-06-02"]
        assert len(p1.store.alerts()) == 3


def test_embeddings_reserve_their_input_only() -> None:
    est = Estimator(PriceBook())
    for given, tokens in (
        (["a b", "c"], 3),
        ("hello world", 2),
        ([1, 2, 3], 3),
        ([[1, 2], [3]], 3),
    ):
        call = Call("openai", "embeddings", "/v1/embeddings", {"model": "text-embedding-3-small",
                                                                "input": given}, {})  # fmt: skip
        call.record.requested_model = "text-embedding-3-small"
        e = est(call)
        assert (e.input_tokens, e.output_tokens) == (tokens, 0)
