"""The exact cache through the gateway, with the official SDKs (SQLite backend)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx2 as httpx
import openai
import pytest
from click.testing import CliRunner

from cache_helpers import CACHE_HEADER, cached_gateway, marker, new_key, upstream_calls
from gateway_fixtures import GW, MASTER_KEY, Fake, closed_port
from tokenomy.cache.config import CacheConfig
from tokenomy.cache.lever import STATE, ResponseCache, Ticket
from tokenomy.cache.sqlite import SQLiteCacheStore
from tokenomy.cli import cli
from tokenomy.keys import mint_key
from tokenomy.pipeline.context import Call
from tokenomy.pricing import PriceBook
from tokenomy.reports import build_report

M = Decimal(1_000_000)


@pytest.fixture(scope="module")
def cgw(fake: Fake, fake_llamacpp: Fake, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GW]:
    tmp = tmp_path_factory.mktemp("cache_gw")
    yield from cached_gateway(tmp, fake, fake_llamacpp, allowed_tools=["get_weather"])


def chat(gw: GW, content: str, key: str | None = None, **kw: Any) -> Any:
    kw.setdefault("temperature", 0)
    kw.setdefault("model", "gpt-4o")
    return gw.openai(key).chat.completions.with_raw_response.create(
        messages=[{"role": "user", "content": content}], **kw
    )


def test_repeat_is_an_exact_hit_recorded_at_zero_cost(cgw: GW) -> None:
    mark = marker()
    first = chat(cgw, f"hello {mark}")
    second = chat(cgw, f"hello {mark}")
    assert first.headers[CACHE_HEADER] == "miss"
    assert second.headers[CACHE_HEADER] == "hit-exact"
    assert upstream_calls(cgw, mark) == 1
    a, b = first.parse(), second.parse()
    assert b.choices[0].message.content == a.choices[0].message.content
    assert b.usage == a.usage
    assert second.headers["x-tokenomy-cost-usd"] == "0"
    paid = cgw.record(first.headers["x-tokenomy-request-id"])
    hit = cgw.record(second.headers["x-tokenomy-request-id"])
    assert paid.cost_usd is not None and paid.cost_usd > 0
    assert "cache" not in paid.decisions
    assert hit.status == 200 and hit.cost_usd == Decimal(0) and not hit.price_unknown
    # the tokens served are the original ones; the saving is their price today
    assert (hit.usage.input_tokens, hit.usage.output_tokens) == (
        paid.usage.input_tokens,
        paid.usage.output_tokens,
    )
    assert hit.decisions["cache"] == {
        "hit": "exact",
        "saved_usd": format(paid.cost_usd, "f"),
        "entry": paid.request_id,
    }
    assert (hit.team, hit.key_id, hit.served_model) == ("search", cgw.key_id, "gpt-4o")
    assert "E" not in hit.decisions["cache"]["saved_usd"]  # a plain decimal, never 1E-7
    metrics = httpx.get(cgw.url + "/metrics").text
    assert 'tokenomy_cache_hits_total{model="gpt-4o",team="search",kind="exact"}' in metrics
    assert 'tokenomy_saved_usd_total{model="gpt-4o",team="search",lever="cache"}' in metrics


def test_fields_that_do_not_change_the_answer_share_the_entry(cgw: GW) -> None:
    mark = marker()
    chat(cgw, f"same {mark}", user="alice", metadata={"a": "1"}, temperature=0.0)
    again = chat(cgw, f"same {mark}", user="carol", temperature=0, store=False)
    assert again.headers[CACHE_HEADER] == "hit-exact"
    changed = chat(cgw, f"same {mark}", temperature=0, max_tokens=50)
    assert changed.headers[CACHE_HEADER] == "miss"
    assert upstream_calls(cgw, mark) == 2


def test_policy_temperature_seed_and_headers(cgw: GW) -> None:
    mark = marker()
    hot = [chat(cgw, f"hot {mark}", temperature=0.7) for _ in range(2)]
    assert [r.headers[CACHE_HEADER] for r in hot] == ["bypass", "bypass"]
    default = chat(cgw, f"default {mark}", temperature=None)  # the API default is 1
    assert default.headers[CACHE_HEADER] == "bypass"
    seeded = [chat(cgw, f"seeded {mark}", temperature=0.7, seed=7) for _ in range(2)]
    assert [r.headers[CACHE_HEADER] for r in seeded] == ["miss", "hit-exact"]
    assert upstream_calls(cgw, mark) == 4

    nostore = {"extra_headers": {CACHE_HEADER: "no-store"}}
    r = chat(cgw, f"seeded {mark}", seed=7, temperature=0.7, **nostore)
    assert r.headers[CACHE_HEADER] == "bypass"
    r = chat(cgw, f"fresh {mark}", **nostore)
    assert r.headers[CACHE_HEADER] == "bypass"
    assert chat(cgw, f"fresh {mark}").headers[CACHE_HEADER] == "miss"  # nothing was stored

    refresh = {"extra_headers": {CACHE_HEADER: "refresh"}}
    r = chat(cgw, f"fresh {mark}", **refresh)
    assert r.headers[CACHE_HEADER] == "miss"
    hit = chat(cgw, f"fresh {mark}")
    assert hit.headers[CACHE_HEADER] == "hit-exact"
    entry = cgw.record(hit.headers["x-tokenomy-request-id"]).decisions["cache"]["entry"]
    assert entry == r.headers["x-tokenomy-request-id"]  # the refreshed answer
    assert upstream_calls(cgw, mark) == 4 + 4


def tool(name: str) -> dict[str, Any]:
    params = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    return {"type": "function", "function": {"name": name, "parameters": params}}


def test_tools_are_cached_only_when_allowed(cgw: GW) -> None:
    mark = marker()
    side = [tool("send_email")]
    r = [chat(cgw, f"mail {mark} [[fake:tool]]", tools=side) for _ in range(2)]
    assert [x.headers[CACHE_HEADER] for x in r] == ["bypass", "bypass"]
    mixed = [tool("get_weather"), tool("send_email")]
    assert chat(cgw, f"w {mark}", tools=mixed).headers[CACHE_HEADER] == "bypass"
    safe = [tool("get_weather")]
    r = [chat(cgw, f"weather {mark} [[fake:tool]]", tools=safe) for _ in range(2)]
    assert [x.headers[CACHE_HEADER] for x in r] == ["miss", "hit-exact"]
    a, b = r[0].parse(), r[1].parse()
    assert b.choices[0].message.tool_calls == a.choices[0].message.tool_calls
    assert b.choices[0].message.tool_calls
    assert upstream_calls(cgw, mark) == 4


def test_legacy_functions_are_tools_to_the_policy(cgw: GW) -> None:
    # `functions` is the older name of `tools` (an Anthropic upstream gets them as
    # tools): a function with side effects is no more replayed than a tool
    mark = marker()
    side = [tool("send_email")["function"]]
    r = [
        chat(cgw, f"mail {mark} [[fake:tool]]", model="claude-sonnet-4-6", functions=side)
        for _ in range(2)
    ]
    assert [x.headers[CACHE_HEADER] for x in r] == ["bypass", "bypass"]
    calls = r[0].parse().choices[0].message.tool_calls
    assert calls and calls[0].function.name == "send_email"
    assert upstream_calls(cgw, mark) == 2
    safe = [tool("get_weather")["function"]]
    r = [chat(cgw, f"weather {mark}", functions=safe) for _ in range(2)]
    assert [x.headers[CACHE_HEADER] for x in r] == ["miss", "hit-exact"]


def test_tenants_never_share_entries(cgw: GW) -> None:
    mark = marker()
    other_team = new_key(cgw, team="billing")
    same_team = new_key(cgw, team="search", user="dave")
    no_team = new_key(cgw, team=None)
    assert chat(cgw, f"secret {mark}").headers[CACHE_HEADER] == "miss"
    assert chat(cgw, f"secret {mark}", key=other_team).headers[CACHE_HEADER] == "miss"
    assert chat(cgw, f"secret {mark}", key=no_team).headers[CACHE_HEADER] == "miss"
    # the namespace is the team: another key of the same team shares the entry
    assert chat(cgw, f"secret {mark}", key=same_team).headers[CACHE_HEADER] == "hit-exact"
    # and the other tenants now hit their own entries, not each other's
    assert chat(cgw, f"secret {mark}", key=other_team).headers[CACHE_HEADER] == "hit-exact"
    assert chat(cgw, f"secret {mark}", key=no_team).headers[CACHE_HEADER] == "hit-exact"
    assert upstream_calls(cgw, mark) == 3


def test_a_team_of_another_org_is_another_tenant(cgw: GW) -> None:
    # the default key is team "search" of org "acme"; team "search" of "globex" is
    # someone else: neither its answers nor whether it asked are shared
    mark = marker()
    rival = new_key(cgw, team="search", org="globex")
    assert chat(cgw, f"private {mark}").headers[CACHE_HEADER] == "miss"
    assert chat(cgw, f"private {mark}", key=rival).headers[CACHE_HEADER] == "miss"
    assert chat(cgw, f"private {mark}", key=rival).headers[CACHE_HEADER] == "hit-exact"
    assert upstream_calls(cgw, mark) == 2


def test_namespace_per_key(fake: Fake, fake_llamacpp: Fake, tmp_path: Path) -> None:
    for gw in cached_gateway(tmp_path, fake, fake_llamacpp, namespace="key"):
        mark = marker()
        same_team = new_key(gw, team="search", user="dave")
        assert chat(gw, f"k {mark}").headers[CACHE_HEADER] == "miss"
        assert chat(gw, f"k {mark}", key=same_team).headers[CACHE_HEADER] == "miss"
        assert chat(gw, f"k {mark}", key=same_team).headers[CACHE_HEADER] == "hit-exact"


def test_shared_namespace_is_shared(fake: Fake, fake_llamacpp: Fake, tmp_path: Path) -> None:
    for gw in cached_gateway(tmp_path, fake, fake_llamacpp, namespace="shared:docs"):
        mark = marker()
        other = new_key(gw, team="billing")
        assert chat(gw, f"s {mark}").headers[CACHE_HEADER] == "miss"
        assert chat(gw, f"s {mark}", key=other).headers[CACHE_HEADER] == "hit-exact"


ROUTING = {
    "rules": [
        {"name": "cheap", "when": {"header": {"x-tokenomy-route": "cheap"}}, "to": "gpt-4o-mini"}
    ],
    "aliases": {"smart": {"models": ["gpt-4o", "gpt-4o-mini"]}},
}


def test_a_request_routed_elsewhere_is_another_entry(
    fake: Fake, fake_llamacpp: Fake, tmp_path: Path
) -> None:
    # The same body can be served by another model: a rule on a header (or a key,
    # team or tag), or a key allowed only some of an alias's models. An answer of
    # the model one request was routed to is never served to a request routed to
    # another, even in the same namespace.
    for gw in cached_gateway(tmp_path, fake, fake_llamacpp, routing=ROUTING):
        mark = marker()
        cheap = {"extra_headers": {"x-tokenomy-route": "cheap"}}
        first = chat(gw, f"r {mark}", **cheap)
        assert (first.headers[CACHE_HEADER], first.parse().model) == ("miss", "gpt-4o-mini")
        plain = chat(gw, f"r {mark}")
        assert (plain.headers[CACHE_HEADER], plain.parse().model) == ("miss", "gpt-4o")
        again = chat(gw, f"r {mark}", **cheap)
        assert (again.headers[CACHE_HEADER], again.parse().model) == ("hit-exact", "gpt-4o-mini")

        limited, rec = mint_key(
            team="search", user="dave", org="acme", models=["smart", "gpt-4o-mini"]
        )
        gw.store.create_key(rec)
        r = chat(gw, f"s {mark}", key=limited, model="smart")
        assert (r.headers[CACHE_HEADER], r.parse().model) == ("miss", "gpt-4o-mini")
        r = chat(gw, f"s {mark}", model="smart")
        assert (r.headers[CACHE_HEADER], r.parse().model) == ("miss", "gpt-4o")
        assert upstream_calls(gw, mark) == 4


def test_errors_are_not_stored(cgw: GW) -> None:
    mark = marker()
    client = cgw.http()
    body = {
        "model": "gpt-4o",
        "temperature": 0,
        "messages": [{"role": "user", "content": f"{mark} [[fake:status=500]]"}],
    }
    headers = {"authorization": f"Bearer {cgw.key}"}
    for _ in range(2):
        r = client.post("/v1/chat/completions", json=body, headers=headers)
        assert r.status_code >= 500
    client.close()
    # each request went upstream (three tries each): the first failure was not stored
    assert upstream_calls(cgw, mark) == 6


def test_embeddings_are_not_cached(cgw: GW) -> None:
    raw = cgw.openai().embeddings.with_raw_response.create(
        model="text-embedding-3-small", input="hello"
    )
    assert CACHE_HEADER not in raw.headers or raw.headers[CACHE_HEADER] == "bypass"


def test_anthropic_json_hit(cgw: GW) -> None:
    mark = marker()
    client = cgw.anthropic()

    def ask() -> Any:
        return client.messages.with_raw_response.create(
            model="claude-sonnet-4-6",
            max_tokens=64,
            messages=[{"role": "user", "content": f"hi {mark}"}],
            metadata={"user_id": "u-1"},
            extra_body={"temperature": 0},
        )

    a, b = ask(), ask()
    assert (a.headers[CACHE_HEADER], b.headers[CACHE_HEADER]) == ("miss", "hit-exact")
    assert b.parse().content == a.parse().content
    assert b.parse().usage == a.parse().usage
    assert upstream_calls(cgw, mark) == 1
    # an OpenAI request for the same words is a different entry (another format)
    r = chat(cgw, f"hi {mark}")
    assert r.headers[CACHE_HEADER] == "miss"


def test_savings_show_in_the_report_per_team_and_model(
    fake: Fake, fake_llamacpp: Fake, tmp_path: Path
) -> None:
    for gw in cached_gateway(tmp_path, fake, fake_llamacpp):
        other = new_key(gw, team="billing")
        mark = marker()
        paid = [chat(gw, f"r {mark}"), chat(gw, f"r {mark}", key=other)]
        for _ in range(2):
            chat(gw, f"r {mark}")
        hit = chat(gw, f"r {mark}", key=other)
        assert hit.headers[CACHE_HEADER] == "hit-exact"
        costs = [gw.record(p.headers["x-tokenomy-request-id"]).cost_usd for p in paid]
        assert all(c is not None and c > 0 for c in costs)
        rep = build_report(gw.store, group_by=("team", "model"))
        saved = {g.key: g.totals.saved_usd for g in rep.groups}
        assert saved[("search", "gpt-4o")] == 2 * costs[0]
        assert saved[("billing", "gpt-4o")] == costs[1]
        assert dict(rep.levers)["cache"] == 2 * costs[0] + costs[1]
        assert rep.total.saved_usd == 2 * costs[0] + costs[1]
        # the requests served from the cache cost nothing
        assert rep.total.cost_usd == sum(c for c in costs if c is not None)
        out = CliRunner().invoke(
            cli, ["report", "--db", gw.db, "--section", "all", "--format", "json"]
        )
        assert out.exit_code == 0, out.output
        data = json.loads(out.output)
        saved_total = 2 * costs[0] + costs[1]
        assert [(r["lever"], Decimal(r["saved_usd"])) for r in data["savings"]] == [
            ("cache", saved_total)
        ]
        by_group = {(g["team"], g["model"]): Decimal(g["saved_usd"]) for g in data["groups"]}
        assert by_group == {("search", "gpt-4o"): 2 * costs[0], ("billing", "gpt-4o"): costs[1]}


def test_a_broken_backend_never_fails_a_request(
    fake: Fake, fake_llamacpp: Fake, tmp_path: Path
) -> None:
    dead = f"redis://127.0.0.1:{closed_port()}/0"
    for gw in cached_gateway(tmp_path, fake, fake_llamacpp, backend="redis", redis_url=dead):
        mark = marker()
        for _ in range(2):
            r = chat(gw, f"down {mark}")
            assert r.headers[CACHE_HEADER] == "miss"
            assert r.parse().choices[0].message.content
        assert upstream_calls(gw, mark) == 2


def test_hits_pass_admission_and_settle_to_zero(
    fake: Fake, fake_llamacpp: Fake, tmp_path: Path
) -> None:
    caps = {"reload_interval": 0.05, "sweep_interval": 0.05}
    for gw in cached_gateway(tmp_path, fake, fake_llamacpp, caps=caps):
        auth = {"authorization": f"Bearer {MASTER_KEY}"}
        with httpx.Client(base_url=gw.url, headers=auth, timeout=10) as admin:
            budget = admin.post(
                "/admin/budgets",
                json={"name": "whole", "scope": {"team": "search"}, "limit_usd": "1",
                      "period": "monthly"},
            )  # fmt: skip
            assert budget.status_code == 201
            limit = admin.post(
                "/admin/limits", json={"name": "l", "scope": {"team": "search"}, "rpm": 3}
            )
            assert limit.status_code == 201
            time.sleep(0.2)  # the gateway reloads definitions every 0.05 s
            mark = marker()
            paid = chat(gw, f"budget {mark}", max_tokens=5)
            hits = [chat(gw, f"budget {mark}", max_tokens=5) for _ in range(2)]
            assert [h.headers[CACHE_HEADER] for h in hits] == ["hit-exact", "hit-exact"]
            cost = gw.record(paid.headers["x-tokenomy-request-id"]).cost_usd
            view = admin.get(f"/admin/budgets/{budget.json()['id']}").json()
            assert Decimal(view["usage"]["used_usd"]) == cost  # the hits settled to $0
            # a rate limit counts hits: the fourth request in the minute is refused
            with pytest.raises(openai.RateLimitError):
                chat(gw, f"budget {mark}", max_tokens=5)
        assert upstream_calls(gw, mark) == 1


def test_ttl_and_entry_size_limit(fake: Fake, fake_llamacpp: Fake, tmp_path: Path) -> None:
    for gw in cached_gateway(tmp_path, fake, fake_llamacpp, ttl=0.5, max_entry_bytes=2000):
        mark = marker()
        states = [chat(gw, f"short {mark}").headers[CACHE_HEADER] for _ in range(2)]
        assert states == ["miss", "hit-exact"]
        time.sleep(0.6)
        assert chat(gw, f"short {mark}").headers[CACHE_HEADER] == "miss"  # expired
        big = f"long {mark} [[fake:chunks=400]]"  # a reply over 2,000 bytes
        assert len(chat(gw, big).content) > 2000
        assert chat(gw, big).headers[CACHE_HEADER] == "miss"  # too large to keep
        assert upstream_calls(gw, mark) == 4


async def test_concurrent_repeats_cost_one_upstream_call(cgw: GW) -> None:
    mark = marker()
    client = cgw.async_openai()

    async def ask(content: str) -> str:
        raw = await client.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=[{"role": "user", "content": content}], temperature=0
        )
        return str(raw.headers[CACHE_HEADER])

    slow = f"herd {mark} [[fake:delay_ms=300]]"
    states = await asyncio.wait_for(asyncio.gather(*(ask(slow) for _ in range(5))), 20)
    assert sorted(states) == ["hit-exact"] * 4 + ["miss"]
    assert upstream_calls(cgw, mark) == 1
    # when the first request fails, the others do not wait for nothing: they go on
    failing = f"herd-fail {mark} [[fake:delay_ms=200]] [[fake:status=400]]"
    results = await asyncio.wait_for(
        asyncio.gather(*(ask(failing) for _ in range(3)), return_exceptions=True), 20
    )
    assert all(isinstance(r, openai.BadRequestError) for r in results)
    assert upstream_calls(cgw, mark) == 1 + 3
    await client.close()


async def test_the_store_step_keeps_the_reply_the_gateway_parsed() -> None:
    """store_json takes the reply already parsed with its bytes: it parses nothing."""
    store = SQLiteCacheStore(":memory:", max_entries=10, max_bytes=10**6)
    cache = ResponseCache(CacheConfig(enabled=True), store, PriceBook())
    body = b"bytes the store step must not parse"
    for key, reply in [("done", {"choices": [{"finish_reason": "stop"}]}), ("cut", {})]:
        call = Call("openai", "chat", "/v1/chat/completions", {"model": "gpt-4o"}, {})
        call.record.status = 200
        call.levers[STATE] = Ticket("ns", key)
        await cache.store_json(call, body, reply)
        assert STATE not in call.levers
    done = await store.get("ns", "done", time.time())
    assert done is not None and done.body == body
    assert await store.get("ns", "cut", time.time()) is None  # not a finished answer
    await cache.close()
