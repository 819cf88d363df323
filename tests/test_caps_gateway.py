"""Caps through the real gateway and the official SDKs: 429s with OpenAI's headers,
errors in the called API's format, clamp reaching the upstream, live changes from the
CLI and the admin API, streams, and what happens when Redis is unreachable."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx2 as httpx
import openai
import pytest
from click.testing import CliRunner

from caps_helpers import ledger_units
from gateway_fixtures import GW, MASTER_KEY, Fake, closed_port, gateway_settings, start_gateway
from tokenomy.cli import cli

MESSAGES = [{"role": "user", "content": "hello world"}]


def make_gw(fake: Fake, llama: Fake, tmp_path: Path, **kw: Any) -> Iterator[GW]:
    caps = {"reload_interval": 0.05, "sweep_interval": 0.05, **kw.pop("caps", {})}
    settings = gateway_settings(str(tmp_path / "ledger.db"), fake, llama, caps=caps, **kw)
    yield from start_gateway(settings, fake)


@pytest.fixture
def cgw(fake: Fake, fake_llamacpp: Fake, tmp_path: Path) -> Iterator[GW]:
    yield from make_gw(fake, fake_llamacpp, tmp_path)


def admin(gw: GW) -> httpx.Client:
    return httpx.Client(
        base_url=gw.url, headers={"authorization": f"Bearer {MASTER_KEY}"}, timeout=10
    )


def wait_for(check: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_openai_sdk_sees_rate_limit_error_and_headers(cgw: GW) -> None:
    with admin(cgw) as a:
        r = a.post("/admin/limits", json={"name": "per-key", "scope": {"key": "each"}, "rpm": 2,
                                          "tpm": 10_000})  # fmt: skip
        assert r.status_code == 201, r.text
    client = cgw.openai()
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=MESSAGES, max_tokens=20
    )
    assert raw.headers["x-ratelimit-limit-requests"] == "2"
    assert raw.headers["x-ratelimit-remaining-requests"] == "1"
    assert raw.headers["x-ratelimit-limit-tokens"] == "10000"
    assert int(raw.headers["x-ratelimit-remaining-tokens"]) == 10_000 - 29
    # the admission check's own time, for operators and benchmarks/load.py
    timing = raw.headers["server-timing"]
    assert timing.startswith("admit;dur=") and float(timing.split("=", 1)[1]) >= 0
    client.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=20)
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=20)
    h = info.value.response.headers
    assert h["x-ratelimit-remaining-requests"] == "0"
    assert h["x-ratelimit-reset-requests"].endswith("s")
    assert 55 <= int(h["retry-after"]) <= 60
    assert info.value.code == "rate_limit_exceeded"
    assert "per-key" in info.value.message
    rid = h["x-tokenomy-request-id"]
    assert cgw.record(rid).status == 429  # the refusal is in the ledger too


def test_a_request_the_other_api_cannot_take_is_a_400_before_the_caps(cgw: GW) -> None:
    """n=2 cannot go to Claude: that is a 400 (the request is wrong), not a 429 from
    a token limit its worst case went over (a retry could never succeed)."""
    with admin(cgw) as a:
        r = a.post("/admin/limits", json={"name": "tight", "scope": {"key": "each"},
                                          "tpm": 1_000})  # fmt: skip
        assert r.status_code == 201, r.text
    with pytest.raises(openai.BadRequestError) as info:
        cgw.openai().chat.completions.create(model="claude-sonnet-4-6", messages=MESSAGES, n=2)
    assert "n" in info.value.message
    ok = cgw.openai().chat.completions.with_raw_response.create(
        model="gpt-4o", messages=MESSAGES, max_tokens=5
    )
    assert ok.headers["x-ratelimit-remaining-tokens"]  # the limit is there, and nothing held


def test_anthropic_client_gets_anthropic_errors_for_budgets(cgw: GW) -> None:
    with admin(cgw) as a:
        a.post("/admin/budgets", json={"name": "tiny", "scope": {"team": "search"},
                                       "period": "daily", "limit_tokens": 50})  # fmt: skip
    client = cgw.anthropic()
    with pytest.raises(anthropic.RateLimitError) as info:
        client.messages.create(model="claude-haiku-4-5", max_tokens=100, messages=MESSAGES)
    err = info.value
    assert err.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    assert "Budget 'tiny'" in err.body["error"]["message"]  # type: ignore[index]
    assert err.response.headers["x-should-retry"] == "false"
    client.messages.create(model="claude-haiku-4-5", max_tokens=10, messages=MESSAGES)


def test_clamp_reaches_the_upstream_body(cgw: GW) -> None:
    with admin(cgw) as a:
        a.post("/admin/budgets", json={"name": "clamped", "scope": {}, "period": "daily",
                                       "limit_tokens": 60, "on_exceed": "clamp"})  # fmt: skip
    client = cgw.openai()
    reply = client.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=4000)
    assert cgw.fake.app.requests[-1].body["max_tokens"] == 51  # 60 - 9 counted input tokens
    assert reply.usage is not None
    # Anthropic client, OpenAI upstream: the clamp is translated with the request.
    cgw.anthropic().messages.create(model="gpt-4o", max_tokens=4000, messages=MESSAGES)
    up = cgw.fake.app.requests[-1].body
    assert 0 < up.get("max_completion_tokens", up.get("max_tokens")) < 60


def test_budgets_change_live_from_the_cli(cgw: GW) -> None:
    client = cgw.openai()
    runner = CliRunner()
    made = runner.invoke(cli, ["budgets", "create", "cli-budget", "--team", "search", "--tokens", "10",
                               "--period", "daily", "--db", cgw.db])  # fmt: skip
    assert made.exit_code == 0, made.output
    assert "cli-budget" in runner.invoke(cli, ["budgets", "list", "--db", cgw.db]).output

    def refused() -> bool:
        try:
            client.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=5)
        except openai.RateLimitError:
            return True
        return False

    wait_for(refused)
    up = runner.invoke(
        cli, ["budgets", "update", "cli-budget", "--tokens", "100000", "--db", cgw.db]
    )
    assert up.exit_code == 0, up.output
    wait_for(lambda: not refused())
    lim = runner.invoke(cli, ["limits", "create", "one", "--user", "each", "--concurrent", "0",
                              "--db", cgw.db])  # fmt: skip
    assert lim.exit_code == 0, lim.output
    wait_for(refused)
    assert "one" in runner.invoke(cli, ["limits", "list", "--db", cgw.db]).output
    assert runner.invoke(cli, ["limits", "delete", "one", "--db", cgw.db]).exit_code == 0
    assert runner.invoke(cli, ["budgets", "delete", "cli-budget", "--db", cgw.db]).exit_code == 0
    wait_for(lambda: not refused())
    bad = runner.invoke(
        cli, ["budgets", "create", "x", "--period", "hourly", "--usd", "1", "--db", cgw.db]
    )
    assert bad.exit_code != 0 and "period" in bad.output


def test_admin_api_manages_budgets_and_limits(cgw: GW) -> None:
    with admin(cgw) as a:
        r = a.post("/admin/budgets", json={"name": "b1", "scope": {"team": "search", "model": "each"},
                                           "period": "rolling:24h", "limit_usd": "2.5",
                                           "alerts": ["50%", 80]})  # fmt: skip
        assert r.status_code == 201 and r.json()["limit_usd"] == "2.5"
        assert r.json()["alerts"] == [50, 80]
        assert a.post("/admin/budgets", json={"name": "b1", "limit_usd": "1"}).status_code == 409
        assert a.post("/admin/budgets", json={"name": "b2", "limit_usd": 1.5}).status_code == 400
        assert a.post("/admin/budgets", json={"name": "b3"}).status_code == 400
        assert (
            a.post(
                "/admin/budgets", json={"name": "b4", "limit_usd": "1", "scope": {"x": "y"}}
            ).status_code
            == 400
        )
        r = a.patch("/admin/budgets/b1", json={"limit_usd": "3", "on_exceed": "clamp"})
        assert (
            r.status_code == 200
            and r.json()["limit_usd"] == "3"
            and r.json()["period"] == "rolling:86400"
        )
        whole = a.post(
            "/admin/budgets", json={"name": "whole", "limit_usd": "1", "period": "monthly"}
        )
        cgw.openai().chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=5)
        view = a.get(f"/admin/budgets/{whole.json()['id']}").json()
        assert view["usage"]["used_usd"] == "0.0000625"  # 5 in, 5 out
        assert a.get("/admin/budgets").json()["data"][0]["usage"] is None  # "each": many counters
        assert a.get("/admin/budgets/b1/alerts").json()["data"] == []
        assert a.delete("/admin/budgets/b1").json()["deleted"] is True
        assert a.get("/admin/budgets/b1").status_code == 404
        r = a.post(
            "/admin/limits",
            json={"name": "l1", "scope": {"user": "each"}, "rpm": 5, "window": "10s"},
        )
        assert r.status_code == 201 and r.json()["window"] == 10
        assert a.patch("/admin/limits/l1", json={"rpm": 6}).json()["rpm"] == 6
        assert a.post("/admin/limits", json={"name": "l2"}).status_code == 400
        assert [x["name"] for x in a.get("/admin/limits").json()["data"]] == ["l1"]
        assert a.delete("/admin/limits/l1").status_code == 200
        assert (
            httpx.get(
                cgw.url + "/admin/budgets", headers={"authorization": "Bearer nope"}
            ).status_code
            == 401
        )


def test_streams_settle_when_they_end(cgw: GW) -> None:
    with admin(cgw) as a:
        bid = a.post(
            "/admin/budgets", json={"name": "s", "limit_usd": "1", "period": "daily"}
        ).json()["id"]
        client = cgw.openai()
        for _ in range(3):
            chunks = list(client.chat.completions.create(model="gpt-4o", messages=MESSAGES,
                                                         max_tokens=30, stream=True))  # fmt: skip
            assert chunks
        used = a.get(f"/admin/budgets/{bid}").json()["usage"]["used_usd"]
    from decimal import Decimal

    from tokenomy.caps.counters import usd_to_units

    assert usd_to_units(Decimal(used)) == ledger_units(cgw.store)


@pytest.fixture
def dead_redis_gw(fake: Fake, fake_llamacpp: Fake, tmp_path: Path) -> Iterator[GW]:
    url = f"redis://127.0.0.1:{closed_port()}/0"
    yield from make_gw(fake, fake_llamacpp, tmp_path, redis_url=url)


def test_unreachable_redis_follows_each_caps_fail_mode(dead_redis_gw: GW) -> None:
    gw = dead_redis_gw
    with admin(gw) as a:
        a.post("/admin/budgets", json={"name": "lenient", "limit_usd": "5", "fail_mode": "open"})
        client = gw.openai()
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=MESSAGES, max_tokens=5
        )
        assert raw.headers["x-tokenomy-caps"] == "fail-open"
        assert gw.record(raw.headers["x-tokenomy-request-id"]).decisions["caps"] == {
            "fail_open": True
        }
        a.post(
            "/admin/budgets", json={"name": "strict", "scope": {"team": "search"}, "limit_usd": "5"}
        )
        with pytest.raises(openai.InternalServerError) as info:
            client.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=5)
        assert info.value.status_code == 503
        assert info.value.response.headers["x-tokenomy-caps"] == "fail-closed"
        assert "strict" in info.value.message and "fail closed" in info.value.message
        with pytest.raises(anthropic.APIStatusError) as ainfo:
            gw.anthropic().messages.create(
                model="claude-haiku-4-5", max_tokens=5, messages=MESSAGES
            )
        assert ainfo.value.status_code == 503
        assert ainfo.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]


def test_an_arriving_request_lets_the_counters_wake_before_its_check(cgw: GW) -> None:
    gateway = cgw.app.gateway  # type: ignore[union-attr]
    assert gateway is not None and gateway.caps is not None
    events: list[str] = []
    gateway.caps._nudge = lambda: events.append("nudge")  # a Redis backend's wake-up
    reserve = gateway.caps.reserve

    async def reserving(call: Any) -> None:
        events.append("reserve")
        await reserve(call)

    gateway.caps.reserve = reserving  # type: ignore[method-assign]
    client = cgw.openai()
    client.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=5)
    assert events == ["reserve"]  # no caps defined: nothing to wake
    with admin(cgw) as a:
        r = a.post("/admin/limits", json={"name": "wake", "scope": {"key": "each"}, "rpm": 100})
        assert r.status_code == 201, r.text
    wait_for(lambda: not gateway.caps.defs.empty)
    events.clear()
    client.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=5)
    assert events == ["nudge", "reserve"]
