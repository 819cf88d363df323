"""Fallbacks on each failure kind, none on client errors, and load balancing."""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from gateway_fixtures import GW, Fake
from routing_helpers import chat, route_of, routed_gateway
from tokenomy.config import Settings
from tokenomy.errors import (
    UpstreamConnectError,
    UpstreamProtocolError,
    UpstreamStatusError,
    UpstreamTimeout,
)
from tokenomy.pipeline.context import Call
from tokenomy.pipeline.resolve import Resolve
from tokenomy.routing.balance import COOLDOWN_S, REMEASURE_S, Balancer
from tokenomy.routing.config import Balance

ROUTING = {
    "fallbacks": {
        "gpt-4o": ["o3", "gpt-4o-mini"],
        "slow-model": ["gpt-4o-mini"],
        "dead-model": ["gpt-4o-mini"],
        # claude cannot embed: skipped for embeddings, and mystery-model-x serves
        "text-embedding-3-small": ["claude-sonnet-4-6", "mystery-model-x"],
    },
    "aliases": {"embed-alias": ["text-embedding-3-small"]},
    "balance": {
        "weighted": {"strategy": "weight", "deployments": {"gpt-4o-a": 3, "gpt-4o-b": 1}},
        "fastest": {"strategy": "latency", "deployments": ["gpt-4o-a", "gpt-4o-b"]},
        "least-busy": {"strategy": "inflight", "deployments": ["gpt-4o-b", "gpt-4o-a"]},
    },
}
ONLY_4O = "[[fake:only=gpt-4o]]"


@pytest.fixture(scope="module")
def fgw(fake: Fake, fake_llamacpp: Fake, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GW]:
    yield from routed_gateway(tmp_path_factory.mktemp("fb"), fake, fake_llamacpp, ROUTING)


def attempts(a: object) -> list[tuple[str, str]]:
    route = route_of(getattr(a, "record", None))
    return [(x["model"], x["error"]) for x in route["attempts"]]


def test_5xx_falls_back_in_order(fgw: GW) -> None:
    a = chat(fgw, "gpt-4o", f"hi [[fake:status=500]] {ONLY_4O} [[fake:only=o3]]")
    assert a.status == 200 and a.record is not None
    assert a.record.served_model == "gpt-4o-mini"
    assert attempts(a) == [("gpt-4o", "5xx"), ("o3", "5xx")]
    route = route_of(a.record)
    assert route["reason"] == "fallback" and route["requested"] == "gpt-4o"


def test_429_falls_back(fgw: GW) -> None:
    a = chat(fgw, "gpt-4o", f"hi [[fake:status=429]] [[fake:retry_after=0]] {ONLY_4O}")
    assert a.status == 200 and a.record is not None
    assert a.record.served_model == "o3"
    assert attempts(a) == [("gpt-4o", "429")]


def test_groqs_498_for_flex_without_capacity_is_retried_then_falls_back(fgw: GW) -> None:
    text = f"hi {uuid.uuid4().hex} [[fake:status=498]] [[fake:retry_after=0]] {ONLY_4O}"
    a = chat(fgw, "gpt-4o", text)
    assert a.status == 200 and a.record is not None
    assert a.record.served_model == "o3"
    assert attempts(a) == [("gpt-4o", "429")]
    # the fake keeps its last requests only: find this test's by their text
    sent = [r.body for r in list(fgw.fake.app.requests) if text in json.dumps(r.body)]
    assert [b["model"] for b in sent] == ["gpt-4o"] * 3 + ["o3"]  # its own two retries first


def test_connect_refused_falls_back(fgw: GW) -> None:
    a = chat(fgw, "dead-model")
    assert a.status == 200 and a.record is not None
    assert a.record.served_model == "gpt-4o-mini"
    assert attempts(a) == [("gpt-4o", "connect")]  # dead-model's upstream name is gpt-4o


def test_timeout_falls_back(fgw: GW) -> None:
    a = chat(fgw, "slow-model", f"hi [[fake:delay_ms=1500]] {ONLY_4O}")
    assert a.status == 200 and a.record is not None
    assert a.record.served_model == "gpt-4o-mini"
    assert attempts(a) == [("gpt-4o", "timeout")]


def test_no_fallback_on_a_client_error(fgw: GW) -> None:
    a = chat(fgw, "gpt-4o", f"hi [[fake:status=400]] {ONLY_4O}")
    assert a.status == 400
    assert a.record is not None and a.record.status == 400
    assert attempts(a) == [("gpt-4o", "upstream_error")]
    assert route_of(a.record)["attempts"][0]["status"] == 400
    assert [r.body["model"] for r in fgw.fake.app.requests[-1:]] == ["gpt-4o"]


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_gateway_key_falls_back_and_is_never_the_clients_401(
    fgw: GW, status: int
) -> None:
    """The provider refusing the gateway's own key is the operator's problem: the
    next deployment may hold a good key, and a client told 401 would blame its own."""
    a = chat(fgw, "gpt-4o", f"hi [[fake:status={status}]] {ONLY_4O}")
    assert a.status == 200 and a.record is not None and a.record.served_model == "o3"
    assert attempts(a) == [("gpt-4o", "auth")]
    alone = chat(fgw, "gpt-4o", f"hi [[fake:status={status}]] {ONLY_4O} [[fake:only=o3]] "
                                "[[fake:only=gpt-4o-mini]]")  # fmt: skip
    assert alone.status == 502
    error = alone.body["error"]
    assert error["type"] == "server_error" and error["code"] == "upstream_auth_error"
    assert "credentials" in error["message"]
    assert "Incorrect API key" not in error["message"]  # the provider's words stay in the log


def test_a_fallback_to_a_reasoning_model_takes_the_clients_max_tokens(fgw: GW) -> None:
    """o3 refuses ``max_tokens``, which gpt-4o takes: a client routed from one to the
    other has its cap sent as ``max_completion_tokens``."""
    before = fgw.fake.app.mark()
    a = chat(fgw, "gpt-4o", f"hi [[fake:status=500]] {ONLY_4O}", max_tokens=5)
    assert a.status == 200 and a.record is not None and a.record.served_model == "o3"
    sent = {r.body["model"]: r.body for r in fgw.fake.app.requests_since(before)}
    assert sent["gpt-4o"]["max_tokens"] == 5 and "max_completion_tokens" not in sent["gpt-4o"]
    assert sent["o3"]["max_completion_tokens"] == 5 and "max_tokens" not in sent["o3"]


def test_all_targets_failing_returns_the_last_error(fgw: GW) -> None:
    text = f"x [[fake:status=503]] [[fake:retry_after=0]] {ONLY_4O} [[fake:only=o3]] [[fake:only=gpt-4o-mini]]"
    a = chat(fgw, "gpt-4o", text)
    assert a.status == 503
    assert [m for m, _ in attempts(a)] == ["gpt-4o", "o3", "gpt-4o-mini"]


def test_stream_falls_back_before_the_first_byte(fgw: GW) -> None:
    client = fgw.openai()
    with client.chat.completions.with_streaming_response.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": f"hi [[fake:status=502]] {ONLY_4O}"}],
        stream=True,
    ) as resp:
        rid = resp.headers["x-tokenomy-request-id"]
        text = "".join(c.choices[0].delta.content or "" for c in resp.parse() if c.choices)
    assert text.startswith("Echo: hi")
    rec = fgw.record(rid)
    assert rec.served_model == "o3" and rec.stream
    assert [a["error"] for a in route_of(rec)["attempts"]] == ["5xx"]


@pytest.mark.parametrize("stream", [False, True])
def test_an_error_page_falls_back_as_any_5xx(fgw: GW, stream: bool) -> None:
    """A load balancer's HTML 502 is the upstream's 5xx like its API's own."""
    a = chat(fgw, "gpt-4o", f"hi [[fake:status=502]] [[fake:html]] {ONLY_4O}", stream=stream)
    assert a.status == 200 and a.record is not None
    assert a.record.served_model == "o3" and a.record.stream == stream
    assert [(x["model"], x["error"], x["status"]) for x in route_of(a.record)["attempts"]] == [
        ("gpt-4o", "5xx", 502)
    ]


def test_embeddings_fall_back_past_a_model_that_cannot_embed(fgw: GW) -> None:
    raw = fgw.openai().embeddings.with_raw_response.create(
        model="text-embedding-3-small",
        input="hi [[fake:status=503]] [[fake:retry_after=0]] [[fake:only=text-embedding-3-small]]",
    )
    assert len(raw.parse().data) == 1
    rec = fgw.record(raw.headers["x-tokenomy-request-id"])
    assert rec.status == 200 and rec.served_model == "mystery-model-x"
    assert attempts(type("A", (), {"record": rec})()) == [("text-embedding-3-small", "5xx")]
    assert rec.price_unknown and rec.cost_usd is None  # the fallback has no price: flagged


def test_an_alias_named_for_embeddings_is_a_400_saying_so(fgw: GW) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        fgw.openai().embeddings.create(model="embed-alias", input="hi")
    assert "alias" in err.value.message
    body = err.value.body
    assert isinstance(body, dict) and body["param"] == "model"


def test_weighted_balance_through_the_gateway(fgw: GW) -> None:
    # gpt-4o-a weighs 3 and gpt-4o-b 1: a seeded balancer makes the draws repeatable,
    # and the bound (four standard deviations of the binomial count) would hold for
    # any seed, while one deployment always winning, even or swapped weights all fail.
    draws, share = 80, 3 / 4
    balancer = fgw.app.gateway.resolve.balancer  # type: ignore[union-attr]
    own_rng, balancer.rng = balancer.rng, random.Random(20240611)
    try:
        with fgw.http() as client:
            ids = [
                client.post(
                    "/v1/chat/completions",
                    json={"model": "weighted", "messages": [{"role": "user", "content": "hi"}]},
                    headers={"authorization": f"Bearer {fgw.key}"},
                ).headers["x-tokenomy-request-id"]
                for _ in range(draws)
            ]
    finally:
        balancer.rng = own_rng
    records = [fgw.record(rid) for rid in ids]
    deps = Counter(r.deployment for r in records)
    assert set(deps) == {"gpt-4o-a", "gpt-4o-b"}
    bound = 4 * math.sqrt(draws * share * (1 - share))
    assert abs(deps["gpt-4o-a"] - draws * share) <= bound
    assert {route_of(r)["reason"] for r in records} == {"balance"}


def test_least_latency_picks_the_faster_deployment(fgw: GW) -> None:
    fgw.app.gateway.resolve.balancer.stats.clear()  # type: ignore[union-attr]  # fresh measurements
    slow_b = "hi [[fake:delay_ms=150]] [[fake:only=gpt-4o-2024-08-06]]"
    first = [chat(fgw, "fastest", slow_b).record for _ in range(2)]
    # each deployment is measured once, then the faster one is used
    assert {r.deployment for r in first if r} == {"gpt-4o-a", "gpt-4o-b"}
    later = [chat(fgw, "fastest", slow_b).record for _ in range(4)]
    assert {r.deployment for r in later if r} == {"gpt-4o-a"}


def test_only_deployments_balanced_by_measurement_are_measured(fgw: GW) -> None:
    resolve = fgw.app.gateway.resolve  # type: ignore[union-attr]
    resolve.balancer.stats.clear()
    assert chat(fgw, "gpt-4o-mini", "hi").status == 200  # not balanced at all
    assert chat(fgw, "fastest", "hi").status == 200  # balanced by latency
    assert set(resolve.balancer.stats) <= {"gpt-4o-a", "gpt-4o-b"}
    assert sum(s.inflight for s in resolve.balancer.stats.values()) == 0
    assert any(s.ewma_ms is not None for s in resolve.balancer.stats.values())


def test_weights_are_respected_statistically() -> None:
    balancer = Balancer(random.Random(1234))
    spec = Balance("weight", {"a": 3.0, "b": 1.0, "c": 0.0})
    picks = Counter(balancer.pick(spec) for _ in range(4000))
    assert picks["c"] == 0
    assert 0.72 < picks["a"] / 4000 < 0.78


def test_inflight_picks_the_least_busy() -> None:
    balancer = Balancer()
    spec = Balance("inflight", {"a": 1.0, "b": 1.0})
    balancer.start("a")
    assert balancer.pick(spec) == "b"
    balancer.start("b")
    balancer.start("b")
    assert balancer.pick(spec) == "a"


@pytest.mark.parametrize(
    ("error", "kinds", "falls_back"),
    [
        (UpstreamStatusError("x", status=500), ["5xx"], True),
        (UpstreamStatusError("x", status=500), ["connect"], False),
        (UpstreamStatusError("x", status=429), ["429"], True),
        (UpstreamStatusError("x", status=498), ["429"], True),  # Groq's flex, out of capacity
        (UpstreamStatusError("x", status=498), ["5xx"], False),
        (UpstreamStatusError("x", status=404), ["5xx", "429", "connect", "timeout"], False),
        (UpstreamConnectError("x"), ["connect"], True),
        (UpstreamTimeout("x"), ["timeout"], True),
        (UpstreamTimeout("x"), ["5xx"], False),
        (UpstreamProtocolError("x"), ["bad_response"], True),
        (UpstreamProtocolError("x"), ["5xx"], False),
    ],
)
async def test_fallback_on_is_configurable(
    error: Exception, kinds: list[str], falls_back: bool, tmp_path: Path
) -> None:
    from gateway_fixtures import dep

    settings = Settings(
        db=str(tmp_path / "x.db"),
        deployments=(dep("m1", "openai", "http://h/v1"), dep("m2", "openai", "http://h/v1")),
        routing={"fallbacks": {"m1": ["m2"]}, "fallback_on": kinds},
    )
    resolve = Resolve(settings)
    call = Call("openai", "chat", "/v1/chat/completions", {"model": "m1", "messages": []}, {})
    await resolve(call)
    served: list[str] = []

    async def send(c: Call) -> str:
        served.append(c.record.deployment or "")
        if len(served) == 1:
            raise error
        return "ok"

    if falls_back:
        assert await resolve.attempt(call, send) == "ok"
        assert served == ["m1", "m2"]
    else:
        with pytest.raises(type(error)):
            await resolve.attempt(call, send)
        assert served == ["m1"]
    await resolve.close()


@pytest.mark.parametrize("ending", [asyncio.CancelledError, RuntimeError])
async def test_an_attempt_cut_short_leaves_nothing_in_flight(
    ending: type[BaseException], tmp_path: Path
) -> None:
    # A request cancelled mid-attempt (or a bug past the provider boundary) left its
    # deployment counted in flight for good: "inflight" passed it over from then on.
    from gateway_fixtures import dep

    settings = Settings(
        db=str(tmp_path / "x.db"),
        deployments=(dep("m1", "openai", "http://h/v1"), dep("m2", "openai", "http://h/v1")),
        routing={"balance": {"pool": {"strategy": "inflight", "deployments": ["m1", "m2"]}}},
    )
    resolve = Resolve(settings)
    call = Call("openai", "chat", "/v1/chat/completions", {"model": "pool", "messages": []}, {})
    await resolve(call)
    chosen = call.record.deployment or ""

    async def send(c: Call) -> str:
        raise ending

    with pytest.raises(ending):
        await resolve.attempt(call, send)
    assert resolve.balancer.stat(chosen).inflight == 0
    await resolve.close()


def test_a_failed_attempt_is_not_measured_as_a_latency(fgw: GW) -> None:
    # A refused or failing deployment answers fastest; measured, it would win every pick.
    resolve = fgw.app.gateway.resolve  # type: ignore[union-attr]
    resolve.balancer.stats.clear()
    fail_b = "hi [[fake:status=500]] [[fake:only=gpt-4o-2024-08-06]]"
    records = [chat(fgw, "fastest", fail_b).record for _ in range(2)]
    assert {r.deployment for r in records if r} == {"gpt-4o-a", "gpt-4o-b"}
    assert resolve.balancer.stat("gpt-4o-a").ewma_ms is not None
    assert resolve.balancer.stat("gpt-4o-b").ewma_ms is None  # failed: still unmeasured
    assert resolve.balancer.stat("gpt-4o-b").inflight == 0


@pytest.mark.parametrize("pool", ["fastest", "least-busy"])
def test_a_failing_deployment_is_passed_over_while_it_cools_down(fgw: GW, pool: str) -> None:
    # Unmeasured (latency) or idle (inflight), a deployment that fails would win every
    # pick, and the pool would answer 500 while its other deployment is healthy.
    fgw.app.gateway.resolve.balancer.stats.clear()  # type: ignore[union-attr]
    fail_b = "hi [[fake:status=500]] [[fake:only=gpt-4o-2024-08-06]]"
    answers = [chat(fgw, pool, fail_b) for _ in range(5)]
    assert [a.record.deployment for a in answers if a.record].count("gpt-4o-b") == 1
    assert [a.status for a in answers].count(200) == 4


def test_a_cooled_down_deployment_is_probed_again() -> None:
    now = [100.0]
    balancer = Balancer(clock=lambda: now[0])
    for strategy in ("latency", "inflight"):
        balancer.stats.clear()
        spec = Balance(strategy, {"a": 1.0, "b": 1.0})
        balancer.start("a")
        balancer.done("a", None, failed=True)  # an upstream failure: cool down
        assert balancer.pick(spec) == "b"
        balancer.start("b")
        balancer.done("b", 50.0)
        assert balancer.pick(spec) == "b"
        now[0] += COOLDOWN_S
        assert balancer.pick(spec) == "a"  # probed again (unmeasured, or idle and first)
        balancer.start("a")
        balancer.done("a", None)  # the client's own error: no cool-down
        assert balancer.pick(spec) == "a"
        balancer.start("b")
        balancer.done("b", None, failed=True)
        balancer.start("a")
        balancer.done("a", None, failed=True)
        assert balancer.pick(spec) in {"a", "b"}  # every one cooling down: still served


def test_a_deployment_slow_once_is_measured_again() -> None:
    """Latency balancing: b had one slow answer; it is not shut out for good, it
    gets one request per REMEASURE_S, and wins again once it answers fast."""
    now = [100.0]
    balancer = Balancer(clock=lambda: now[0])
    spec = Balance("latency", {"a": 1.0, "b": 1.0})
    for name, ms in (("a", 40.0), ("b", 900.0)):
        balancer.start(name)
        balancer.done(name, ms)
    assert [balancer.pick(spec) for _ in range(3)] == ["a", "a", "a"]
    now[0] += REMEASURE_S / 2
    balancer.start("a")
    balancer.done("a", 40.0)  # a is measured all along; b is not
    now[0] += REMEASURE_S / 2
    assert [balancer.pick(spec) for _ in range(3)] == ["b", "a", "a"]  # one probe, not a stampede
    for _ in range(10):  # b is fast now: its moving average comes down below a's
        balancer.start("b")
        balancer.done("b", 10.0)
    assert balancer.pick(spec) == "b"


# -- the upstream's word on retries: x-should-retry, retry-after ---------------------------


def tagged() -> str:
    """A tag naming one test's upstream calls (and its own fail_times counter)."""
    return f"[[fake:id=t{time.time_ns()}]]"


def upstream_models(gw: GW, tag: str) -> list[str]:
    return [r.body["model"] for r in gw.fake.app.requests if tag in str(r.body)]


def test_x_should_retry_false_stops_the_deployments_own_retries(fgw: GW) -> None:
    """OpenAI and Anthropic send ``x-should-retry: false`` when a retry cannot
    succeed: flaky-model's two retries are not spent on it."""
    tag = tagged()
    text = f"hi [[fake:status=503]] [[fake:retry_after=0]] [[fake:should_retry=false]] {tag}"
    a = chat(fgw, "flaky-model", text)
    assert a.status == 503
    assert upstream_models(fgw, tag) == ["gpt-4o"]  # one call, no retry


def test_x_should_retry_false_still_falls_back_to_another_deployment(fgw: GW) -> None:
    """A fallback is another deployment, not a retry of the same request: it runs."""
    tag = tagged()
    text = f"hi [[fake:status=503]] [[fake:retry_after=0]] [[fake:should_retry=false]] {ONLY_4O}"
    a = chat(fgw, "gpt-4o", text + " " + tag)
    assert a.status == 200 and a.record is not None and a.record.served_model == "o3"
    assert upstream_models(fgw, tag) == ["gpt-4o", "o3"]
    assert attempts(a) == [("gpt-4o", "5xx")]


def test_x_should_retry_true_retries_a_status_not_retried_otherwise(fgw: GW) -> None:
    tag = tagged()
    text = f"hi [[fake:status=400]] [[fake:fail_times=1]] [[fake:should_retry=true]] {tag}"
    a = chat(fgw, "flaky-model", text)
    assert a.status == 200
    assert upstream_models(fgw, tag) == ["gpt-4o", "gpt-4o"]


def test_the_upstreams_retry_verdict_and_wait_reach_the_client(fgw: GW) -> None:
    """The client's SDK reads ``x-should-retry`` and ``retry-after`` too: a 429 the
    upstream says is pointless to retry is not retried by the client either."""
    text = "hi [[fake:status=429]] [[fake:retry_after=0]] [[fake:should_retry=false]]"
    body = {"model": "flaky-model", "messages": [{"role": "user", "content": text}]}
    with fgw.http() as c:
        r = c.post("/v1/chat/completions", json=body,
                   headers={"authorization": f"Bearer {fgw.key}"})  # fmt: skip
    assert r.status_code == 429
    assert r.headers["x-should-retry"] == "false" and r.headers["retry-after"] == "0"


def test_a_wait_past_the_retry_limit_is_not_waited_out(fgw: GW) -> None:
    """An upstream asking for two minutes: the deployment's retries would hold the
    client for nothing (a retry sooner fails again), so the refusal goes on at once,
    to the fallbacks or, as here, to the client with the upstream's retry-after."""
    tag = tagged()
    text = f"hi [[fake:status=429]] [[fake:retry_after=120]] {tag}"
    body = {"model": "flaky-model", "messages": [{"role": "user", "content": text}]}
    with fgw.http() as c:
        r = c.post("/v1/chat/completions", json=body,
                   headers={"authorization": f"Bearer {fgw.key}"})  # fmt: skip
    assert r.status_code == 429 and r.headers["retry-after"] == "120"
    assert upstream_models(fgw, tag) == ["gpt-4o"]


def test_stream_falls_back_on_an_error_event_before_the_first_byte(fgw: GW) -> None:
    """An error as the stream's first event: the client has nothing yet, so the
    request moves on as it would on the upstream's 5xx."""
    text = f"hi [[fake:stream_error]] [[fake:cut_at=0]] {ONLY_4O}"
    a = chat(fgw, "gpt-4o", text, stream=True)
    assert a.status == 200 and "Echo: hi" in a.body and '"error"' not in a.body
    assert a.record is not None and a.record.served_model == "o3"
    assert attempts(a) == [("gpt-4o", "5xx")]
    assert route_of(a.record)["attempts"][0]["status"] == 500
