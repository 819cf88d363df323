"""The what-if simulator on the shared AlpacaEval traffic, a JSONL log and the ledger.

The shared data lives at ``../shared/data`` beside the repository (or where
``TOKENOMY_SHARED_DATA`` points). Without it these tests skip, except under
``CI=true``, where the data is present and a skip would hide a broken setup.
"""

from __future__ import annotations

import json
import os
import sys
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner

from tokenomy.cli import cli
from tokenomy.insights.simulate import (
    Compress,
    Flex,
    OutputCap,
    PriceChange,
    Reroute,
    ResponseCache,
    Selector,
    Sim,
    cost_of,
    render_table,
    simulate,
)
from tokenomy.insights.traffic import Traffic, from_alpaca_eval, from_jsonl, from_ledger
from tokenomy.ledger import open_store
from tokenomy.pricing import PriceBook
from tokenomy.records import UsageRecord
from tokenomy.tokens import count_chat_messages, count_text
from tokenomy.usage import Usage

ROOT = Path(__file__).resolve().parents[1]
PRICES = PriceBook()


def shared_traffic_file() -> Path:
    base = Path(os.environ.get("TOKENOMY_SHARED_DATA") or ROOT.parent / "shared" / "data")
    path = base / "traffic" / "alpaca_eval_outputs.parquet"
    if not path.exists():
        reason = f"shared traffic data not found at {path} (set TOKENOMY_SHARED_DATA)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason + " (CI=true: the shared data must be there)", pytrace=False)
        pytest.skip(reason)
    return path


@pytest.fixture(scope="module")
def alpaca_path() -> Path:
    return shared_traffic_file()


@pytest.fixture(scope="module")
def alpaca(alpaca_path: Path) -> Traffic:
    return from_alpaca_eval(alpaca_path, generator="gpt4_1106_preview")


@pytest.fixture(scope="module")
def rows(alpaca_path: Path) -> dict[tuple[int, str], dict[str, str]]:
    import pyarrow.parquet as pq

    table = pq.read_table(alpaca_path).to_pylist()
    return {(r["instruction_id"], r["generator"]): r for r in table}


# -- costs from the real texts ---------------------------------------------------------------


@pytest.mark.parametrize("iid", [0, 17, 404, 804])
def test_costs_come_from_the_real_texts(
    alpaca: Traffic, rows: dict[tuple[int, str], dict[str, str]], iid: int
) -> None:
    row = rows[iid, "gpt4_1106_preview"]
    req = alpaca.requests[iid]
    assert req.prompt_id == str(iid) and req.route == row["dataset"]
    model = "gpt-4-1106-preview"
    n_in = count_chat_messages([{"role": "user", "content": row["instruction"]}], model)
    n_out = count_text(row["output"], model)
    assert n_in.exact and n_out.exact  # cl100k_base is GPT-4 Turbo's own tokenizer
    assert (req.usage.input_tokens, req.usage.output_tokens) == (n_in.tokens, n_out.tokens)
    # GPT-4 Turbo: $10 input, $30 output per million tokens.
    p_in = PRICES.input_price_per_token(model, "openai")
    p_out = PRICES.output_price_per_token(model, "openai")
    assert (p_in, p_out) == (Decimal(10) / 10**6, Decimal(30) / 10**6)
    want = n_in.tokens * p_in + n_out.tokens * p_out
    got = cost_of(Sim(req), PRICES)
    assert got == want and isinstance(got, Decimal)


def test_the_baseline_is_the_sum_of_exact_request_costs(alpaca: Traffic) -> None:
    sim = simulate(alpaca, [ResponseCache(Decimal(0))])
    assert sim.requests == 805 and sim.baseline_unpriced == 0
    costs = [cost_of(Sim(r), PRICES) for r in alpaca.requests]
    assert sim.baseline_total == sum(c for c in costs if c is not None)
    assert sim.logged_total is None  # a file of answers, not a ledger


# -- each policy's arithmetic ----------------------------------------------------------------


def test_cache_hit_rate_removes_exactly_that_share(alpaca: Traffic) -> None:
    h = Decimal("0.35")
    [r] = simulate(alpaca, [ResponseCache(h)]).results
    assert r.after == r.before * (1 - h)
    assert r.tokens_after == r.tokens_before  # the requests that do go out are unchanged


def test_compression_shrinks_uncached_input_tokens(alpaca: Traffic) -> None:
    ratio = Decimal(3)
    [r] = simulate(alpaca, [Compress(ratio)]).results
    p_in = PRICES.input_price_per_token("gpt-4-1106-preview", "openai")
    assert p_in is not None
    kept = 0
    saved = Decimal(0)
    for req in alpaca.requests:
        n = req.usage.input_tokens
        k = int((Decimal(n) / ratio).to_integral_value(ROUND_HALF_EVEN))
        kept += k
        saved += (n - k) * p_in
    assert r.tokens_after.input_tokens == kept
    assert r.tokens_after.output_tokens == r.tokens_before.output_tokens
    assert r.saving == saved


def test_compression_keeps_cached_tokens() -> None:
    u = Usage(input_tokens=1000, output_tokens=10, cache_read_tokens=600)
    t = Traffic([_req("a", "gpt-4o", u)], "test")
    sim = Compress(Decimal(2)).apply(Sim(t.requests[0]), None)
    assert (sim.req.usage.input_tokens, sim.req.usage.cache_read_tokens) == (800, 600)


def test_output_caps_per_route(alpaca: Traffic) -> None:
    cap = OutputCap(Selector.parse("route=koala"), 200)
    [r] = simulate(alpaca, [cap]).results
    koala = [q for q in alpaca.requests if q.route == "koala"]
    cut = [q for q in koala if q.usage.output_tokens > 200]
    assert r.changed == len(cut) > 0
    p_out = PRICES.output_price_per_token("gpt-4-1106-preview", "openai")
    assert p_out is not None
    assert r.saving == sum((q.usage.output_tokens - 200) * p_out for q in cut)
    assert (
        r.quality
        == f"{len(cut)} of {len(koala)} answers cut short at the cap; effect on quality unknown"
    )


def test_price_change_multiplies_input_and_output_prices(alpaca: Traffic) -> None:
    [r] = simulate(alpaca, [PriceChange(Selector.parse("provider=openai"), Decimal("0.5"),
                                        Decimal("0.8"))]).results  # fmt: skip
    m = "gpt-4-1106-preview"
    p_in, p_out = PRICES.input_price_per_token(m), PRICES.output_price_per_token(m)
    assert p_in is not None and p_out is not None
    tb = r.tokens_before
    assert r.after == tb.input_tokens * p_in * Decimal("0.5") + tb.output_tokens * p_out * Decimal(
        "0.8"
    )
    assert r.quality.startswith("unchanged")


def test_reroute_uses_the_targets_own_recorded_answers(
    alpaca: Traffic, rows: dict[tuple[int, str], dict[str, str]]
) -> None:
    target = "gpt-4o-mini-2024-07-18"
    policy = Reroute(Selector.parse("route=vicuna"), target, "openai")
    [r] = simulate(alpaca, [policy]).results
    vicuna = [q for q in alpaca.requests if q.route == "vicuna"]
    assert r.changed == len(vicuna) == 80
    q = vicuna[0]
    moved = policy.apply(Sim(q), alpaca.evidence)
    answer = rows[int(q.prompt_id or 0), "gpt-4o-mini-2024-07-18"]["output"]
    assert moved.req.usage.output_tokens == count_text(answer, target).tokens
    assert moved.req.model == target and moved.rerouted_from == "gpt-4-1106-preview"
    # GPT-4o mini: $0.15 input, $0.60 output per million tokens.
    u = moved.req.usage
    assert (
        cost_of(moved, PRICES)
        == (u.input_tokens * Decimal("0.15") + u.output_tokens * Decimal("0.6")) / 10**6
    )
    # The file has answers but no judgements of them: quality stays unknown.
    assert r.quality.startswith("unknown: no quality labels")


def test_an_unpriced_target_is_never_counted_as_free(alpaca: Traffic) -> None:
    [r] = simulate(alpaca, [Reroute(Selector(), "claude-instant-1.2", "anthropic")]).results
    assert r.unpriced_after == 805 and r.before == r.after == 0
    table = render_table(simulate(alpaca, [Reroute(Selector(), "claude-instant-1.2", "anthropic")]))
    assert "unknown" in table and "805 after" in table


def test_combined_policies_apply_in_order(alpaca: Traffic) -> None:
    policies = [Compress(Decimal(2)), ResponseCache(Decimal("0.5"))]
    sim = simulate(alpaca, policies)
    assert [r.name for r in sim.results][-1] == "all of the above"
    assert sim.results[-1].after == sim.results[0].after * Decimal("0.5")


# -- other traffic sources -------------------------------------------------------------------


def _req(rid: str, model: str, usage: Usage, **kw: object) -> object:
    from tokenomy.insights.traffic import Request

    return Request(rid, model, usage, **kw)  # type: ignore[arg-type]


def test_jsonl_log_in_three_shapes(tmp_path: Path) -> None:
    completion = {
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1_740_787_200,
        "model": "gpt-4o-2024-08-06",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi!"}}],
        "usage": {"prompt_tokens": 1200, "completion_tokens": 300,
                  "prompt_tokens_details": {"cached_tokens": 1024}},
    }  # fmt: skip
    batch = {"custom_id": "job-7", "response": {"status_code": 200, "body": {**completion,
             "usage": {"prompt_tokens": 10, "completion_tokens": 5}}}}  # fmt: skip
    pair = {
        "request": {"model": "gpt-4o", "messages": [{"role": "user", "content": "hello there"}],
                    "metadata": {"team": "search", "route": "chat"}},
        "response": {"model": "gpt-4o", "choices": [{"message": {"content": "Hello!"}}]},
    }  # fmt: skip
    path = tmp_path / "log.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in (completion, batch, pair)) + "\n")
    t = from_jsonl(path)
    a, b, c = t.requests
    assert a.usage == Usage(input_tokens=1200, output_tokens=300, cache_read_tokens=1024)
    assert a.ts == 1_740_787_200.0 and a.request_id == "chatcmpl-1"
    assert b.request_id == "job-7" and b.usage.total_tokens == 15
    n_in = count_chat_messages(pair["request"]["messages"], "gpt-4o").tokens  # type: ignore[index]
    assert c.usage == Usage(n_in, count_text("Hello!", "gpt-4o").tokens, estimated=True)
    assert (c.team, c.route) == ("search", "chat")
    # gpt-4o: $2.50 input, $1.25 cached input, $10 output per million tokens.
    want = (176 * Decimal("2.5") + 1024 * Decimal("1.25") + 300 * 10) / 10**6
    assert cost_of(Sim(a), PRICES) == want
    [r] = simulate(t, [Reroute(Selector.parse("team=search"), "gpt-4o-mini")]).results
    assert (
        r.changed == 1
        and r.quality == "unknown: no evidence for the target model; logged tokens kept"
    )


def test_jsonl_usage_is_read_as_the_gateway_meters_it(tmp_path: Path) -> None:
    """Cache writes (chat and Responses names) and audio are kept, as the gateway
    keeps them: a replay prices the writes at gpt-5.6-terra's write rate, not as
    fresh input."""
    chat = {
        "id": "chatcmpl-2",
        "model": "gpt-5.6-terra",
        "created": 1_788_000_000,
        "usage": {
            "prompt_tokens": 2600,
            "completion_tokens": 10,
            "prompt_tokens_details": {"cached_tokens": 2000, "cache_write_tokens": 400},
        },
    }
    resp = {
        "id": "resp_1",
        "object": "response",
        "model": "gpt-5.6-terra",
        "created_at": 1_788_000_000,
        "usage": {
            "input_tokens": 2600,
            "output_tokens": 10,
            "input_tokens_details": {"cached_tokens": 2000, "cache_write_tokens": 400},
        },
    }
    path = tmp_path / "log.jsonl"
    path.write_text(json.dumps(chat) + "\n" + json.dumps(resp) + "\n")
    for r in from_jsonl(path).requests:
        assert r.usage == Usage(2600, 10, cache_read_tokens=2000, cache_write_tokens=400)
    [a, _] = from_jsonl(path).requests
    want = (200 * 2 + 2000 * Decimal("0.2") + 400 * Decimal("2.5") + 10 * 12) / 10**6
    assert cost_of(Sim(a), PRICES) == want
    bad = {**chat, "usage": {**chat["usage"], "prompt_tokens_details": {"cache_write_tokens": -4}}}
    path.write_text(json.dumps(bad) + "\n")
    with pytest.raises(ValueError, match=r"log.jsonl:1: usage: cache_write_tokens -4"):
        from_jsonl(path)


def test_a_jsonl_service_tier_prices_the_request_and_its_reroute(tmp_path: Path) -> None:
    """The response's ``service_tier`` (beside its usage, as the gateway reads it)
    prices the logged request and goes with it to another model: a flex request
    moved to gpt-5-mini is flex there too; a priority one moved to gpt-5-nano,
    which is not sold at priority, pays nano's standard price."""
    lines = [
        {"id": f"chatcmpl-{tier}", "model": "gpt-5", "service_tier": tier,
         "metadata": {"team": tier}, "usage": {"prompt_tokens": 1000, "completion_tokens": 500}}
        for tier in ("flex", "priority", "default")
    ]  # fmt: skip
    path = tmp_path / "tiers.jsonl"
    path.write_text("".join(json.dumps({"response": x, "request": {"metadata": x["metadata"]}})
                            + "\n" for x in lines))  # fmt: skip
    t = from_jsonl(path)
    flex, priority, default = t.requests
    assert flex.usage.price_context == (("service_tier", "flex"),)
    assert priority.usage.price_context == (("service_tier", "priority"),)
    assert default.usage == Usage(1000, 500)
    # gpt-5: $1.25 in, $10 out; flex half of that, priority twice.
    standard = (1000 * Decimal("1.25") + 500 * 10) / 10**6
    assert [cost_of(Sim(r), PRICES) for r in t.requests] == [standard / 2, standard * 2, standard]
    policies = [
        Reroute(Selector.parse("team=flex"), "gpt-5-mini", "openai"),
        Reroute(Selector.parse("team=priority"), "gpt-5-nano", "openai"),
    ]
    to_mini, to_nano, _ = simulate(t, policies).results
    # gpt-5-mini: $0.25 in, $2 out (flex half); gpt-5-nano: $0.05 in, $0.40 out.
    mini_flex = (1000 * Decimal("0.25") + 500 * 2) / 10**6 / 2
    nano = (1000 * Decimal("0.05") + 500 * Decimal("0.4")) / 10**6
    assert to_mini.after == mini_flex + standard * 2 + standard
    assert to_nano.after == standard / 2 + nano + standard


def test_jsonl_without_usage_counts_images_as_the_meter_does(tmp_path: Path) -> None:
    """A logged request with images and no usage: each image adds what a 1024x1024
    image costs the model at its detail (`tokenomy.images`), not nothing."""
    image = {"type": "image_url", "image_url": {"url": "https://x/a.png"}}
    messages = [{"role": "user", "content": [{"type": "text", "text": "What is it?"}, image]}]
    pair = {
        "request": {"model": "gpt-4o", "messages": messages},
        "response": {"model": "gpt-4o", "choices": [{"message": {"content": "A cat."}}]},
    }
    path = tmp_path / "log.jsonl"
    path.write_text(json.dumps(pair) + "\n")
    [r] = from_jsonl(path).requests
    text_only = count_chat_messages(messages, "gpt-4o").tokens
    # gpt-4o: 85 + 4 tiles of 170 at the default detail.
    assert r.usage == Usage(text_only + 765, count_text("A cat.", "gpt-4o").tokens, estimated=True)


def test_jsonl_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"model": "gpt-4o", "usage": {"prompt_tokens": 1}}\n{"nothing": 1}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2"):
        from_jsonl(path)


def test_ledger_replay(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "ledger.db"))
    store.migrate()
    recs = []
    for i, (team, model, inp, out) in enumerate([
        ("search", "gpt-4o", 1000, 200), ("search", "gpt-4o", 3000, 50),
        ("ads", "gpt-4o-mini", 500, 500), ("ads", "mystery-model", 10, 10),
    ]):  # fmt: skip
        usage = Usage(inp, out)
        cost = PRICES.cost(usage, model=model, provider="openai")
        recs.append(UsageRecord(f"r{i}", ts=1_740_787_200.0 + i, team=team, served_model=model,
                                provider="openai", usage=usage, cost_usd=cost.total,
                                price_unknown=cost.price_unknown,
                                endpoint="/v1/chat/completions"))  # fmt: skip
    recs.append(UsageRecord("refused", status=401, requested_model="gpt-4o"))
    store.insert_records(recs)
    t = from_ledger(store)  # read as it is iterated, while the store is open
    assert [r.request_id for r in t.requests] == ["r0", "r1", "r2", "r3"]
    sim = simulate(t, [Reroute(Selector.parse("team=search"), "gpt-4o-mini", "openai")])
    store.close()
    assert sim.source == "ledger (4 requests)"
    assert sim.baseline_unpriced == 1
    assert sim.baseline_total == sum(r.cost_usd for r in recs if r.cost_usd is not None)
    assert sim.logged_total is None  # one logged cost is unknown
    [r] = sim.results
    assert r.changed == 2
    mini = (4000 * Decimal("0.15") + 250 * Decimal("0.6")) / 10**6
    gpt4o = (4000 * Decimal("2.5") + 250 * 10) / 10**6
    assert r.saving == gpt4o - mini
    assert r.quality == "unknown: no evidence for the target model; logged tokens kept"


def test_a_reroute_keeps_the_audio_and_the_searches_the_ledger_recorded(tmp_path: Path) -> None:
    """Moved to another model, a request still sends its audio and makes its web
    searches: the rerouted cost prices them at the target's own rates."""
    store = open_store(str(tmp_path / "ledger.db"))
    store.migrate()
    voice = Usage(1000, 500, audio_input_tokens=300, audio_output_tokens=200)
    searched = Usage(1000, 500, web_search_requests=3)
    recs = [
        UsageRecord(rid, ts=1_740_787_200.0 + i, team=team, served_model=model, provider=provider,
                    usage=usage, endpoint="/v1/chat/completions",
                    cost_usd=PRICES.cost(usage, model=model, provider=provider).total)
        for i, (rid, team, model, provider, usage) in enumerate([
            ("r0", "voice", "gpt-audio", "openai", voice),
            ("r1", "research", "claude-sonnet-4-6", "anthropic", searched),
        ])
    ]  # fmt: skip
    store.insert_records(recs)
    policies = [
        Reroute(Selector.parse("team=voice"), "gpt-audio-mini", "openai"),
        Reroute(Selector.parse("team=research"), "claude-haiku-4-5", "anthropic"),
    ]
    sim = simulate(from_ledger(store), policies)
    store.close()
    moved_voice, moved_search, both = sim.results
    logged_voice, logged_search = (r.cost_usd for r in recs)
    # gpt-audio-mini: $0.60 text in, $10 audio in, $2.40 text out, $20 audio out.
    mini = (700 * Decimal("0.6") + 300 * 10 + 300 * Decimal("2.4") + 200 * 20) / 10**6
    # claude-haiku-4-5: $1 in, $5 out, and $10 per thousand web searches.
    haiku = (1000 * 1 + 500 * 5) / Decimal(10**6) + 3 * Decimal(10) / 1000
    assert moved_voice.after == mini + logged_search
    assert moved_search.after == logged_voice + haiku
    assert both.after == mini + haiku
    assert both.changed == 2 and both.tokens_after == both.tokens_before == voice + searched


# -- the command -----------------------------------------------------------------------------


def test_cli_on_the_shared_traffic_with_plots(alpaca_path: Path, tmp_path: Path) -> None:
    out = CliRunner().invoke(cli, [
        "simulate", "--alpaca-eval", str(alpaca_path), "--move", "route=koala",
        "gpt-4o-mini-2024-07-18@openai", "--cache", "20%", "--plots", str(tmp_path),
    ])  # fmt: skip
    assert out.exit_code == 0, out.output
    assert "route=koala -> gpt-4o-mini-2024-07-18" in out.output
    assert "response cache, hit rate 0.2" in out.output
    for name in ("spend_over_time.png", "cost_by_policy.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_flex_prices_matching_requests_at_the_flex_rates(tmp_path: Path) -> None:
    """gpt-5 at flex is half its standard price, and a priority request moved to
    flex pays that half too; claude has no flex rate: its price is unchanged."""
    lines = [
        {"id": f"r{i}", "model": model, "service_tier": tier, "metadata": {"team": team},
         "usage": {"prompt_tokens": 1000, "completion_tokens": 500}}
        for i, (model, tier, team) in enumerate([("gpt-5", "default", "evals"),
                                                 ("gpt-5", "priority", "evals"),
                                                 ("gpt-5", "default", "search"),
                                                 ("claude-sonnet-4-5", None, "evals")])
    ]  # fmt: skip
    path = tmp_path / "log.jsonl"
    path.write_text("".join(json.dumps({"response": x, "request": {"metadata": x["metadata"]}})
                            + "\n" for x in lines))  # fmt: skip
    t = from_jsonl(path)
    standard = (1000 * Decimal("1.25") + 500 * 10) / 10**6
    claude = cost_of(Sim(t.requests[3]), PRICES)
    assert claude is not None
    [flex] = simulate(t, [Flex(Selector.parse("team=evals"))]).results
    assert flex.before == standard + standard * 2 + standard + claude
    assert flex.after == standard / 2 + standard / 2 + standard + claude
    out = CliRunner().invoke(cli, ["simulate", "--jsonl", str(path), "--flex", "model=gpt-5",
                                   "--format", "json"])  # fmt: skip
    assert out.exit_code == 0, out.output
    saving = Decimal(json.loads(out.output)["policies"][0]["saving_usd"])
    assert saving == standard * Decimal("2.5")  # 4 standard prices down to 1.5


def test_cli_json_from_the_ledger(tmp_path: Path) -> None:
    db = str(tmp_path / "l.db")
    with open_store(db) as store:
        store.migrate()
        u = Usage(1000, 100)
        store.insert_records([UsageRecord("x", served_model="gpt-4o", provider="openai", usage=u,
                              cost_usd=PRICES.cost(u, model="gpt-4o").total, team="t")])  # fmt: skip
    args = ["simulate", "--db", db, "--compress", "2", "--format", "json", "--plots", str(tmp_path)]
    out = CliRunner().invoke(cli, args)
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert (tmp_path / "spend_over_time.png").stat().st_size > 1000  # per day: it has times
    assert data["policies"][0]["input_tokens"] == [1000, 500]
    assert Decimal(data["policies"][0]["saving_usd"]) == 500 * Decimal("2.5") / 10**6


def test_cli_without_the_insights_extra(alpaca_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)  # import fails as if absent
    out = CliRunner().invoke(cli, ["simulate", "--alpaca-eval", str(alpaca_path), "--cache", "0.1"])
    assert out.exit_code != 0
    assert "pip install 'tokenomy[insights]'" in out.output


def test_cli_needs_a_policy() -> None:
    out = CliRunner().invoke(cli, ["simulate", "--db", ":memory:"])
    assert out.exit_code == 2 and "at least one policy" in out.output


def test_a_logged_prompt_is_the_user_text_the_router_reads(tmp_path: Path) -> None:
    blocks = [{"type": "text", "text": "What is in"}, {"type": "image_url", "image_url": {}},
              {"type": "text", "text": "this picture?"}]  # fmt: skip
    lines = [
        {"request": {"model": "gpt-4o", "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": blocks},
            {"role": "assistant", "content": "A cat."},
            {"role": "user", "content": "Which breed?"}]},
         "response": {"model": "gpt-4o", "usage": {"prompt_tokens": 9, "completion_tokens": 2}}},
        {"request": {"model": "gpt-4o", "messages": [{"role": "system", "content": "x"}]},
         "response": {"model": "gpt-4o", "usage": {"prompt_tokens": 1, "completion_tokens": 1}}},
    ]  # fmt: skip
    path = tmp_path / "log.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    with_blocks, no_user = from_jsonl(path).requests
    # content blocks count (their text parts only), as they do for the router
    assert with_blocks.prompt == "What is in\nthis picture?\nWhich breed?"
    assert no_user.prompt is None


@pytest.mark.parametrize(
    ("usage", "message"),
    [({"prompt_tokens": -5, "completion_tokens": 1}, "usage: input_tokens -5 is not a token count"),
     ({"prompt_tokens": 1, "completion_tokens": 10**40}, "usage: output_tokens 1000")],
)  # fmt: skip
def test_jsonl_token_counts_out_of_range_name_the_line(
    tmp_path: Path, usage: dict[str, int], message: str
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"model": "gpt-4o", "usage": usage}) + "\n")
    out = CliRunner().invoke(cli, ["simulate", "--jsonl", str(path), "--cache", "0.3"])
    assert out.exit_code == 1 and isinstance(out.exception, SystemExit), out.output
    assert out.output.startswith(f"Error: {path}:1: {message}")


def test_jsonl_that_is_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b'{"model": "gpt-4o", "usage": {"prompt_tokens": 1}}\n\xff\xfe\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: 'utf-8' codec"):
        from_jsonl(path)


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--cache", "nan"], "--cache: 'nan' is not a finite number"),
     (["--compress", "inf"], "--compress: 'inf' is not a finite number"),
     (["--auto", "a,b", "nan"], "--auto: 'nan' is not a finite number"),
     (["--days", "nan", "--cache", "0.3"], "Invalid value for --days: nan")],
)  # fmt: skip
def test_cli_refuses_numbers_that_are_not_finite(
    tmp_path: Path, args: list[str], message: str
) -> None:
    out = CliRunner().invoke(cli, ["simulate", "--db", str(tmp_path / "l.db"), *args])
    assert out.exit_code == 2 and isinstance(out.exception, SystemExit), out.output
    assert message in out.output
