"""tokenomy/auto (the learned router) and cheap-first (the cascade) through the gateway."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson
import pytest

from gateway_fixtures import GW, Fake, add_key
from routing_helpers import chat, route_of, routed_gateway
from tokenomy.ledger.base import Store
from tokenomy.records import UsageRecord

TIERS = ["gpt-4o-mini", "gpt-4o"]
KEYS: dict[str, str] = {}


@dataclass
class Decision:
    model: str
    predicted_quality: float


class StubRouter:
    """Cheap tier for prompts that say "simple", unless the target is above 0.99."""

    def __init__(self) -> None:
        self.seen: list[tuple[Any, tuple[str, ...], float]] = []

    def decide(self, prompt: Any, tiers: Sequence[str], *, quality_target: float) -> Decision:
        self.seen.append((prompt, tuple(tiers), quality_target))
        text = " ".join(m["content"] for m in prompt if m.get("role") == "user")
        if "simple" in text and quality_target <= 0.99:
            return Decision(tiers[0], 0.97)
        return Decision(tiers[-1], 0.9)


@pytest.fixture(scope="module")
def agw(fake: Fake, fake_llamacpp: Fake, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GW]:
    path = tmp_path_factory.mktemp("auto")
    KEYS["legal"], _ = add_key(str(path / "ledger.db"), team="legal")
    KEYS["strong"], _ = add_key(str(path / "ledger.db"), models=["cheap-first", "gpt-4o"])
    routing = {
        "tiers": TIERS,
        "quality_target": 0.95,
        "quality_targets": {"teams": {"legal": 0.999}},
        "cascade": {"threshold": 0.67, "samples": 3},
        "aliases": {
            "auto-strict": {"strategy": "router", "quality_target": 0.995},
            "claude-first": {
                "strategy": "cascade",
                "tiers": ["claude-haiku-4-5", "claude-sonnet-4-6"],
            },
            "sums": {"strategy": "cascade", "scorer": "checks"},
            "claude-sums": {
                "strategy": "cascade",
                "scorer": "checks",
                "tiers": ["claude-haiku-4-5", "claude-sonnet-4-6"],
            },
            "sure": {"strategy": "cascade", "scorer": "logprobs", "threshold": 0.8},
        },
    }
    for gw in routed_gateway(path, fake, fake_llamacpp, routing):
        gw.app.gateway.resolve.routing.router = StubRouter()  # type: ignore[union-attr]
        yield gw


def stub(gw: GW) -> StubRouter:
    router = gw.app.gateway.resolve.routing.router  # type: ignore[union-attr]
    assert isinstance(router, StubRouter)
    return router


def test_auto_sends_a_simple_prompt_to_the_cheap_tier(agw: GW) -> None:
    a = chat(agw, "tokenomy/auto", "a simple question")
    assert a.status == 200 and a.record is not None
    assert (a.record.requested_model, a.record.served_model) == ("tokenomy/auto", "gpt-4o-mini")
    route = route_of(a.record)
    assert route["reason"] == "router"
    assert route["predicted_quality"] == 0.97 and route["quality_target"] == 0.95
    assert route["router_ms"] >= 0
    # saved against the strongest tier, at the same usage
    assert Decimal(route["saved_usd"]) > 0
    prompt, tiers, target = stub(agw).seen[-1]
    assert tiers == tuple(TIERS) and target == 0.95
    assert prompt[-1]["content"] == "a simple question"


def test_auto_sends_a_hard_prompt_to_the_strong_tier(agw: GW) -> None:
    a = chat(agw, "tokenomy/auto", "prove the Riemann hypothesis")
    assert a.record is not None and a.record.served_model == "gpt-4o"
    assert Decimal(route_of(a.record)["saved_usd"]) == 0


def test_quality_target_per_alias_and_per_team(agw: GW) -> None:
    a = chat(agw, "auto-strict", "a simple question")
    assert a.record is not None and a.record.served_model == "gpt-4o"
    assert stub(agw).seen[-1][2] == 0.995
    b = chat(agw, "tokenomy/auto", "a simple question", key=KEYS["legal"])
    assert b.record is not None and b.record.served_model == "gpt-4o"
    assert stub(agw).seen[-1][2] == 0.999


def test_chosen_tier_falls_back_to_stronger_tiers(agw: GW) -> None:
    a = chat(agw, "tokenomy/auto", "simple [[fake:status=500]] [[fake:only=gpt-4o-mini]]")
    assert a.status == 200 and a.record is not None
    assert a.record.served_model == "gpt-4o"
    route = route_of(a.record)
    assert route["reason"] == "fallback"
    assert route["attempts"][0]["model"] == "gpt-4o-mini"


def rows(store: Store, request_id: str) -> list[UsageRecord]:
    return [r for r in store.list_records(limit=10_000) if r.request_id.startswith(request_id)]


def test_cascade_keeps_a_consistent_cheap_answer(agw: GW) -> None:
    a = chat(agw, "cheap-first", "what is 6 times 7")
    assert a.status == 200 and a.record is not None
    assert a.record.served_model == "gpt-4o-mini"
    assert len(a.body["choices"]) == 1  # the client asked for one answer
    route = route_of(a.record)
    assert route["reason"] == "cascade" and route["cascade"] == "kept"
    assert route["score"] == 1.0 and route["escalated"] is False
    assert Decimal(route["saved_usd"]) > 0
    sent = agw.fake.app.requests[-1].body
    assert sent["n"] == 3 and sent["model"] == "gpt-4o-mini"
    assert [r.request_id for r in rows(agw.store, a.request_id)] == [a.request_id]


def test_cascade_escalates_and_records_both_calls(agw: GW) -> None:
    a = chat(agw, "cheap-first", "what is 6 times 7 [[fake:vary]]")
    assert a.status == 200 and a.record is not None
    assert a.record.served_model == "gpt-4o"
    route = route_of(a.record)
    assert route["cascade"] == "escalated" and route["escalated"] is True
    assert route["score"] == pytest.approx(1 / 3, abs=1e-3)
    draft = agw.record(a.request_id + ".draft")
    d = route_of(draft)
    assert d["cascade"] == "draft" and d["parent"] == a.request_id and d["escalated"] is True
    assert draft.served_model == "gpt-4o-mini"
    assert draft.cost_usd is not None and draft.cost_usd > 0
    assert Decimal(d["saved_usd"]) == -draft.cost_usd
    assert draft.usage.output_tokens == 3 * a.record.usage.output_tokens  # three samples
    assert (draft.key_id, draft.team) == (a.record.key_id, a.record.team)
    # the strong call's saving is zero: the draft's cost is the price of trying
    assert Decimal(route["saved_usd"]) == 0


def test_streamed_cascade_goes_to_the_strong_tier(agw: GW) -> None:
    a = chat(agw, "cheap-first", "what is 6 times 7", stream=True)
    assert a.status == 200 and a.record is not None
    assert a.record.served_model == "gpt-4o" and a.record.stream
    assert route_of(a.record)["cascade"] == "streamed: strongest tier"
    assert agw.fake.app.requests[-1].body.get("n") is None


def test_report_shows_routing_savings(agw: GW) -> None:
    from click.testing import CliRunner

    from tokenomy.cli import cli

    chat(agw, "tokenomy/auto", "another simple question")
    records = agw.store.list_records(limit=10_000)
    expected = sum(
        (Decimal(r.decisions["route"]["saved_usd"]) for r in records
         if "saved_usd" in r.decisions.get("route", {})),
        Decimal(0),
    )  # fmt: skip
    assert expected > 0
    result = CliRunner().invoke(
        cli, ["report", "--db", agw.db, "--format", "csv", "--section", "savings"],
        catch_exceptions=False,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = [line.split(",") for line in result.output.strip().splitlines()]
    assert rows[0] == ["lever", "saved_usd"]
    assert {r[0]: Decimal(r[1]) for r in rows[1:]}["route"] == expected


class SettleSpy:
    """An admission policy that remembers what each request was settled with."""

    def __init__(self) -> None:
        self.settled: dict[str, UsageRecord] = {}

    async def reserve(self, call: Any) -> None:
        return None

    async def settle(self, call: Any, record: UsageRecord) -> None:
        self.settled[call.request_id] = record


async def test_admission_is_charged_for_the_draft_too(
    fake: Fake, fake_llamacpp: Fake, tmp_path: Any
) -> None:
    from gateway_fixtures import gateway_settings
    from tokenomy.gateway import Gateway
    from tokenomy.pipeline.context import Call

    settings = gateway_settings(str(tmp_path / "l.db"), fake, fake_llamacpp,
                                routing={"tiers": TIERS}, require_key=False)  # fmt: skip
    spy = SettleSpy()
    gateway = Gateway(settings, policies=[spy])  # type: ignore[list-item]
    try:
        body = {"model": "cheap-first",
                "messages": [{"role": "user", "content": "what is 6 x 7 [[fake:vary]]"}]}  # fmt: skip
        call = Call("openai", "chat", "/v1/chat/completions", body, {})
        await gateway.handle(call)
        main = call.record
        (draft,) = call.route.sides
        charged = spy.settled[call.request_id]
        assert main.cost_usd is not None and draft.cost_usd is not None
        assert charged.cost_usd == main.cost_usd + draft.cost_usd
        assert charged.usage.output_tokens == main.usage.output_tokens + draft.usage.output_tokens
        assert main.decisions["route"]["cascade"] == "escalated"
    finally:
        await gateway.close()


def test_a_draft_answered_once_for_n_escalates(agw: GW) -> None:
    # An upstream that ignores `n` sent one answer of the three asked for: the two
    # missing samples count as disagreeing, not as a unanimous vote of one.
    a = chat(agw, "cheap-first", "what is 6 times 7 [[fake:ignore_n]]")
    assert a.status == 200 and a.record is not None
    assert a.record.served_model == "gpt-4o"
    route = route_of(a.record)
    assert route["cascade"] == "escalated" and route["score"] == pytest.approx(1 / 3, abs=1e-3)
    draft = agw.record(a.request_id + ".draft")
    assert draft.usage.output_tokens == a.record.usage.output_tokens  # one answer was paid


@pytest.mark.parametrize(("asked", "sent"), [(0, 0.7), (0.2, 0.7), (1.0, 1.0), (None, None)])
def test_the_draft_samples_at_a_temperature_that_can_disagree(
    agw: GW, asked: float | None, sent: float | None
) -> None:
    extra = {} if asked is None else {"temperature": asked}
    before = agw.fake.app.mark()
    a = chat(agw, "cheap-first", f"what is 6 times 7, at {asked}", **extra)
    assert a.status == 200 and route_of(a.record)["cascade"] == "kept"
    draft = next(r.body for r in agw.fake.app.requests_since(before))
    assert draft["n"] == 3 and draft.get("temperature") == sent


def test_a_kept_draft_replies_with_a_majority_answer() -> None:
    from tokenomy.providers.base import UpstreamResponse
    from tokenomy.routing.cascade import Draft
    from tokenomy.usage import Usage

    def reply(text: str) -> UpstreamResponse:
        data = {"content": [{"type": "text", "text": text}], "usage": {}}
        return UpstreamResponse(200, {}, data, b"")

    ups = [reply(t) for t in ("The answer is 41.", "It is 42", "42.0")]
    draft = Draft([(u, u.data, t) for u, t in zip(ups, ("41", "42", "42.0"), strict=True)],
                  Usage(), ups)  # fmt: skip
    score, up = draft.pick(3)
    assert score == pytest.approx(2 / 3, abs=1e-3) and up is ups[1]
    assert draft.pick(4)[0] == 0.5  # a sample asked for and not answered disagrees


def test_cascade_with_n_goes_to_the_strong_tier(agw: GW) -> None:
    a = chat(agw, "cheap-first", "what is 6 times 7", n=2)
    assert a.status == 200 and a.record is not None
    assert a.record.served_model == "gpt-4o" and len(a.body["choices"]) == 2
    assert route_of(a.record)["cascade"] == "n > 1: strongest tier"


def test_anthropic_client_through_the_router(agw: GW) -> None:
    client = agw.anthropic()
    raw = client.messages.with_raw_response.create(
        model="tokenomy/auto",
        max_tokens=50,
        messages=[{"role": "user", "content": "a simple question"}],
    )
    msg = raw.parse()
    assert msg.content[0].type == "text" and msg.content[0].text.startswith("Echo:")
    rec = agw.record(raw.headers["x-tokenomy-request-id"])
    assert (rec.api, rec.served_model, rec.provider) == ("anthropic", "gpt-4o-mini", "openai")
    assert route_of(rec)["reason"] == "router"


class BrokenRouter:
    def decide(self, prompt: Any, tiers: Sequence[str], *, quality_target: float) -> Decision:
        raise ValueError("weights do not fit")


def test_a_failing_router_serves_the_strongest_tier(agw: GW, caplog: Any) -> None:
    resolve = agw.app.gateway.resolve  # type: ignore[union-attr]
    good = resolve.routing.router
    resolve.routing.router = BrokenRouter()
    try:
        a = chat(agw, "tokenomy/auto", "a simple question")
    finally:
        resolve.routing.router = good
    assert a.status == 200 and a.record is not None
    assert a.record.served_model == "gpt-4o"
    assert route_of(a.record)["router"] == "error"


def test_aliases_are_listed_as_models(agw: GW) -> None:
    ids = [m.id for m in agw.openai().models.list()]
    assert {"tokenomy/auto", "cheap-first", "auto-strict", "gpt-4o"} <= set(ids)


def test_key_restricted_tiers_are_never_drafted(agw: GW) -> None:
    before = agw.fake.app.mark()
    a = chat(agw, "cheap-first", "what is 6 times 7 [[fake:vary]]", key=KEYS["strong"])
    assert a.status == 200 and a.record is not None
    assert a.record.served_model == "gpt-4o"
    assert route_of(a.record)["cascade"] == "one tier"
    assert [r.body["model"] for r in agw.fake.app.requests_since(before)] == ["gpt-4o"]


async def test_a_fast_router_runs_inline_and_a_slow_one_in_a_thread() -> None:
    import threading
    import time as _time

    from tokenomy.pipeline.context import Call
    from tokenomy.routing.config import parse_routing
    from tokenomy.routing.stage import RoutingStage

    class Where(StubRouter):
        def __init__(self, sleep_s: float) -> None:
            super().__init__()
            self.sleep_s = sleep_s
            self.threads: list[str] = []

        def decide(self, prompt: Any, tiers: Sequence[str], *, quality_target: float) -> Decision:
            self.threads.append(threading.current_thread().name)
            _time.sleep(self.sleep_s)
            return super().decide(prompt, tiers, quality_target=quality_target)

    main = threading.current_thread().name
    config = parse_routing({"tiers": TIERS})
    body = {"model": "tokenomy/auto", "messages": [{"role": "user", "content": "simple"}]}
    for sleep_s, inline in ((0.0, True), (0.01, False)):
        router = Where(sleep_s)
        stage = RoutingStage(config, router=router)
        stage.inline_ms = 5.0
        for _ in range(3):
            call = Call("openai", "chat", "/v1/chat/completions", dict(body), {})
            plan = await stage.plan(call, "tokenomy/auto")
            assert plan.targets[0] == "gpt-4o-mini"
        assert router.threads[0] != main  # unmeasured: the first call goes to a thread
        assert all((t == main) == inline for t in router.threads[1:])
    # a fast router still reads a long prompt off the event loop: its cost grows with it
    router = Where(0.0)
    stage = RoutingStage(config, router=router)
    stage.inline_ms = 5.0
    for text in ("simple", "simple", "word " * 1_000):
        call = Call("openai", "chat", "/v1/chat/completions",
                    {**body, "messages": [{"role": "user", "content": text}]}, {})  # fmt: skip
        await stage.plan(call, "tokenomy/auto")
    assert router.threads[1] == main and router.threads[2] != main


def test_anthropic_cascade_samples_in_parallel_and_saves_per_answer(agw: GW) -> None:
    from tokenomy.usage import Usage

    before = agw.fake.app.mark()
    a = chat(agw, "claude-first", "what is 6 times 7")
    assert a.status == 200 and a.record is not None
    rec = a.record
    assert rec.served_model == "claude-haiku-4-5" and route_of(rec)["cascade"] == "kept"
    sent = [r for r in agw.fake.app.requests_since(before) if r.path == "/v1/messages"]
    assert len(sent) == 3  # three samples, three calls
    # the record carries what the three calls used; the client's reply, one answer's
    assert rec.usage.input_tokens == 3 * a.body["usage"]["prompt_tokens"]
    assert rec.usage.output_tokens == 3 * a.body["usage"]["completion_tokens"]
    # The saving compares one answer at the strong tier with the three calls made.
    one = Usage(rec.usage.input_tokens // 3, rec.usage.output_tokens // 3)
    strong = agw.app.gateway.prices.cost(  # type: ignore[union-attr]
        one, model="claude-sonnet-4-6", provider="anthropic", override_key="claude-*"
    )
    assert strong.total is not None and rec.cost_usd is not None
    assert Decimal(route_of(rec)["saved_usd"]) == strong.total - rec.cost_usd


def test_a_cache_hit_on_a_routed_request_never_counts_a_dollar_twice(
    fake: Fake, fake_llamacpp: Fake, tmp_path: Any
) -> None:
    from tokenomy.pricing import PriceBook

    routing = {"tiers": TIERS, "quality_target": 0.95}
    for gw in routed_gateway(tmp_path, fake, fake_llamacpp, routing, cache={"enabled": True}):
        gw.app.gateway.resolve.routing.router = StubRouter()  # type: ignore[union-attr]
        first = chat(gw, "tokenomy/auto", "a simple question", temperature=0)
        again = chat(gw, "tokenomy/auto", "a simple question", temperature=0)
        assert first.record is not None and again.record is not None
        assert again.record.decisions["cache"]["hit"] == "exact"
        assert again.record.served_model == first.record.served_model == "gpt-4o-mini"
        # What the strong tier would have cost for the same answer, split between the
        # cache (the routed model's cost) and routing (the difference).
        strong = PriceBook().cost(again.record.usage, model="gpt-4o", provider="openai").total
        cache_saved = Decimal(again.record.decisions["cache"]["saved_usd"])
        route_saved = Decimal(route_of(again.record)["saved_usd"])
        assert first.record.cost_usd is not None
        assert cache_saved == first.record.cost_usd and again.record.cost_usd == 0
        assert cache_saved + route_saved == strong


def test_a_failed_anthropic_sample_keeps_the_others_usage(agw: GW) -> None:
    text = ("what is 6 times 7 [[fake:status=400]] [[fake:fail_times=1]] [[fake:id=partial]]"
            " [[fake:only=claude-haiku-4-5]]")  # fmt: skip
    a = chat(agw, "claude-first", text)
    assert a.status == 200 and a.record is not None
    assert a.record.served_model == "claude-sonnet-4-6"
    # two answers of the three asked for agree: 2/3 is under the 0.67 threshold
    assert route_of(a.record)["scores"] == [0.6667]
    draft = agw.record(a.request_id + ".draft")
    assert draft.served_model == "claude-haiku-4-5"
    assert draft.usage.input_tokens == 2 * a.record.usage.input_tokens  # both paid calls
    assert draft.cost_usd is not None and draft.cost_usd > 0


def test_a_cached_cascade_answer_claims_one_answer(
    fake: Fake, fake_llamacpp: Fake, tmp_path: Any
) -> None:
    from tokenomy.pricing import PriceBook

    routing = {"tiers": TIERS, "cascade": {"samples": 3}}
    for gw in routed_gateway(tmp_path, fake, fake_llamacpp, routing, cache={"enabled": True}):
        first = chat(gw, "cheap-first", "what is 6 times 7", temperature=0)
        again = chat(gw, "cheap-first", "what is 6 times 7", temperature=0)
        assert first.record is not None and again.record is not None
        assert route_of(first.record)["cascade"] == "kept"
        assert again.record.decisions["cache"]["hit"] == "exact"
        one = first.record.usage
        assert again.record.usage.output_tokens == one.output_tokens // 3
        assert again.record.usage.input_tokens == one.input_tokens  # one call with n=3
        cost = PriceBook().cost(again.record.usage, model="gpt-4o-mini", provider="openai").total
        assert Decimal(again.record.decisions["cache"]["saved_usd"]) == cost


# The fake echoes the prompt's words: a prompt of N words with chunks=N is answered
# with exactly those words, so the draft states the prompt's arithmetic.
SOUND = "[[fake:chunks=8]] so 6 * 7 = 42 and 42 + 1 = 43"
SLIP = "[[fake:chunks=8]] so 6 * 7 = 48 and 48 + 1 = 49"


@pytest.mark.parametrize("alias", ["sums", "claude-sums"])
def test_a_checks_cascade_keeps_one_sound_draft_as_asked(agw: GW, alias: str) -> None:
    before = agw.fake.app.mark()
    a = chat(agw, alias, SOUND, temperature=0)
    assert a.status == 200 and a.record is not None
    assert a.record.served_model in ("gpt-4o-mini", "claude-haiku-4-5")
    route = route_of(a.record)
    assert (route["cascade"], route["score"], route["scorer"]) == ("kept", 1.0, "checks")
    sent = [r.body for r in agw.fake.app.requests_since(before)]
    assert len(sent) == 1  # one sample, one call
    assert sent[0].get("n", 1) == 1 and sent[0]["temperature"] == 0  # one sample needs no heat
    assert "6 * 7 = 42" in str(a.body)


def test_a_checks_cascade_escalates_a_draft_that_miscalculates(agw: GW) -> None:
    a = chat(agw, "sums", SLIP)
    assert a.status == 200 and a.record is not None
    assert a.record.served_model == "gpt-4o"
    route = route_of(a.record)
    assert route["cascade"] == "escalated" and route["scores"] == [0.5]
    draft = agw.record(a.request_id + ".draft")
    assert draft.served_model == "gpt-4o-mini" and route_of(draft)["score"] == 0.5
    assert route_of(draft)["scorer"] == "checks"  # what the score is a score of
    assert draft.cost_usd is not None and draft.cost_usd > 0


def test_a_draft_is_kept_by_checks_or_both() -> None:
    from tokenomy.providers.base import UpstreamResponse
    from tokenomy.routing.cascade import Draft
    from tokenomy.usage import Usage

    texts = ("6 * 7 = 48. The answer is 48.", "6 * 7 = 42. The answer is 42.",
             "7 * 6 = 42. The answer is 42.")  # fmt: skip
    ups = [UpstreamResponse(200, {}, {"n": i}, b"") for i in range(3)]
    draft = Draft([(u, u.data, t) for u, t in zip(ups, texts, strict=True)], Usage(), ups)
    score, up = draft.pick(3, "checks")
    assert (score, up) == (1.0, ups[1])  # the first sound sample
    assert draft.pick(3, "both") == (pytest.approx(2 / 3, abs=1e-3), ups[1])
    slips = Draft([(ups[0], ups[0].data, texts[0])], Usage(), ups[:1])
    assert slips.pick(1, "checks") == (0.5, ups[0])
    assert slips.pick(2, "both")[0] == 0.25  # half agreed, one false claim
    # both: of the samples giving the majority answer, the one without a slip
    mixed = ("6 * 7 = 48. The answer is 42.", "6 * 7 = 42. The answer is 42.")
    pair = Draft([(u, u.data, t) for u, t in zip(ups, mixed, strict=False)], Usage(), ups[:2])
    assert pair.pick(2, "both") == (1.0, ups[1])
    assert pair.pick(2, "agreement") == (1.0, ups[0])


async def test_long_drafts_are_scored_off_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reading an answer costs about a microsecond a character: a long one (a model
    asked to write pages of sums) is read on a worker thread, a short one in place."""
    import threading

    from tokenomy.providers.base import UpstreamResponse
    from tokenomy.routing import cascade
    from tokenomy.usage import Usage

    where: list[bool] = []

    def score(text: str) -> float:
        where.append(threading.current_thread() is threading.main_thread())
        return 1.0

    monkeypatch.setattr(cascade, "check_score", score)
    up = UpstreamResponse(200, {}, {}, b"")
    long = "6 * 7 = 42. " * (cascade.INLINE_CHARS // 10)
    for text in ("6 * 7 = 42.", long):
        draft = cascade.Draft([(up, up.data, text)], Usage(), [up])
        assert await draft.judge(1, "checks") == (1.0, up)
    assert where == [True, False]


def test_a_draft_without_any_answer_scores_nothing_and_escalates() -> None:
    """An upstream that sent ``choices: []`` gave no answer to score: it was an
    IndexError (a 500) under every scorer."""
    from tokenomy.providers.base import UpstreamResponse
    from tokenomy.routing.cascade import Draft
    from tokenomy.usage import Usage

    up = UpstreamResponse(200, {}, {"choices": []}, b"")
    for scorer in ("agreement", "checks", "both", "logprobs"):
        assert Draft([], Usage(), [up]).pick(3, scorer) == (0.0, up)


def test_a_logprobs_cascade_keeps_a_confident_draft_without_showing_its_logprobs(
    agw: GW,
) -> None:
    before = agw.fake.app.mark()
    reply = agw.openai().chat.completions.create(
        model="sure", messages=[{"role": "user", "content": "[[fake:confidence=95]] hi"}]
    )
    assert reply.model == "gpt-4o-mini"
    assert reply.choices[0].logprobs is None  # the client did not ask for them
    a = agw.record(agw.store.list_records(limit=1)[0].request_id)
    route = route_of(a)
    assert (route["cascade"], route["scorer"], route["score"]) == ("kept", "logprobs", 0.95)
    sent = [r.body for r in agw.fake.app.requests_since(before)]
    assert len(sent) == 1 and sent[0]["logprobs"] is True  # the draft was asked for them
    assert sent[0]["top_logprobs"] == 0  # OpenAI's default, said: some servers need it
    assert sent[0].get("n", 1) == 1  # one sample is enough
    assert a.cost_usd is not None and a.cost_usd > 0


def test_a_logprobs_cascade_passes_logprobs_to_a_client_that_asked(agw: GW) -> None:
    before = agw.fake.app.mark()
    reply = agw.openai().chat.completions.create(
        model="sure",
        messages=[{"role": "user", "content": "[[fake:confidence=90]] [[fake:chunks=3]] hi"}],
        logprobs=True,
        top_logprobs=2,
    )
    assert agw.fake.app.requests_since(before)[0].body["top_logprobs"] == 2  # the client's
    assert reply.model == "gpt-4o-mini"
    lp = reply.choices[0].logprobs
    assert lp is not None and lp.content is not None and len(lp.content) == 3
    assert lp.content[0].logprob == pytest.approx(math.log(0.9))


def test_a_logprobs_cascade_escalates_an_unsure_draft(agw: GW) -> None:
    before = agw.fake.app.mark()
    a = chat(agw, "sure", "[[fake:confidence=50]] hi")
    assert a.status == 200 and a.record is not None
    assert a.record.served_model == "gpt-4o"
    assert a.body["choices"][0]["logprobs"] is None
    route = route_of(a.record)
    assert route["cascade"] == "escalated" and route["scores"] == [0.5]
    draft = agw.record(a.request_id + ".draft")
    assert draft.served_model == "gpt-4o-mini"
    assert (route_of(draft)["scorer"], route_of(draft)["score"]) == ("logprobs", 0.5)
    assert draft.cost_usd is not None and draft.cost_usd > 0
    strong = [r.body for r in agw.fake.app.requests_since(before)][-1]
    assert strong["model"] == "gpt-4o" and "logprobs" not in strong  # as the client sent it


def test_a_logprobs_cascade_escalates_drafts_that_carry_no_logprobs(agw: GW) -> None:
    """A tool call is no text: OpenAI returns no log probabilities for it (nor for a
    refusal), so the draft cannot be scored and escalates. (An Anthropic draft tier,
    which has none at all, is refused when the config loads.)"""
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    b = chat(agw, "sure", "[[fake:confidence=99]] [[fake:tool]] hi", tools=tools)
    assert b.record is not None and b.record.served_model == "gpt-4o"
    assert route_of(b.record)["scores"] == [0.0]


def test_an_anthropic_client_gets_a_kept_logprobs_draft_in_its_format(agw: GW) -> None:
    reply = agw.anthropic().messages.create(
        model="sure",
        max_tokens=50,
        messages=[{"role": "user", "content": "[[fake:confidence=97]] hi"}],
    )
    assert reply.type == "message" and reply.content[0].type == "text"
    rec = agw.store.list_records(limit=1)[0]
    assert rec.served_model == "gpt-4o-mini"
    assert (route_of(rec)["cascade"], route_of(rec)["score"]) == ("kept", 0.97)


def test_a_draft_is_kept_by_its_most_confident_sample() -> None:
    from tokenomy.providers.base import UpstreamResponse
    from tokenomy.routing.cascade import Draft
    from tokenomy.usage import Usage

    def reply(*logprobs: float) -> dict[str, Any]:
        content = [{"token": "x", "logprob": v} for v in logprobs]
        choice = {"index": 0, "message": {"content": "x"}, "logprobs": {"content": content}}
        return {"choices": [choice]}

    ups = [UpstreamResponse(200, {}, reply(*lp), b"") for lp in ([-1.0, -3.0], [-0.1], [])]
    draft = Draft([(u, u.data, "x") for u in ups], Usage(), ups)
    score, up = draft.pick(3, "logprobs")
    assert score == round(math.exp(-0.1), 4) and up is ups[1]
    # a draft asked for logprobs the client did not want hands its reply back without them
    hidden = Draft([(u, u.data, "x") for u in ups], Usage(), ups, strip_logprobs=True)
    score, up = hidden.pick(3, "logprobs")
    assert up.data["choices"][0]["logprobs"] is None
    assert orjson.loads(up.raw)["choices"][0]["logprobs"] is None
    assert ups[1].data["choices"][0]["logprobs"] is not None  # the upstream's reply untouched
    assert Draft([(ups[2], ups[2].data, "x")], Usage(), ups[2:]).pick(1, "logprobs")[0] == 0.0


def test_metrics_count_cascades_by_alias_scorer_and_outcome(agw: GW) -> None:
    def counts() -> dict[str, int]:
        with agw.http() as client:
            text = client.get("/metrics").text
        found = re.findall(
            r'^tokenomy_cascade_total\{model="sure",scorer="logprobs",outcome="(\w+)"\} (\d+)$',
            text,
            re.M,
        )
        return {outcome: int(n) for outcome, n in found}

    before = counts()
    chat(agw, "sure", "[[fake:confidence=95]] hi")
    chat(agw, "sure", "[[fake:confidence=50]] hi")
    chat(agw, "sure", "[[fake:confidence=50]] hi")
    after = counts()
    assert after.get("kept", 0) - before.get("kept", 0) == 1
    assert after.get("escalated", 0) - before.get("escalated", 0) == 2  # drafts' rows not counted
