"""The prompt-cache lever: Anthropic cache breakpoints added by the gateway where a
prefix will be read again, billed as the upstream reports and its saving recorded."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest

from gateway_fixtures import GW, Fake, add_key, dep, gateway_settings, start_gateway
from tokenomy.caps.estimate import Estimator
from tokenomy.config import ConfigError, Deployment, load_settings
from tokenomy.pipeline.context import Call
from tokenomy.pipeline.prompt_cache import Marked, continues, mark
from tokenomy.pricing import PriceBook
from tokenomy.providers import create_provider
from tokenomy.providers.prefixes import SeenPrefixes
from tokenomy.records import UsageRecord
from tokenomy.translate._common import asks_for_cache as has_breakpoint

MODEL = "claude-sonnet-4-5"
PRICES = PriceBook()


@pytest.fixture(scope="module")
def pgw(fake: Fake, fake_llamacpp: Fake, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GW]:
    db = str(tmp_path_factory.mktemp("pc") / "ledger.db")
    settings = gateway_settings(
        db, fake, fake_llamacpp, routing={"fallbacks": {"claude-auto": ["gpt-4o"]}}
    )
    marked = (
        dep("claude-auto", "anthropic", fake.url, model=MODEL, prompt_cache="auto"),
        dep("claude-always", "anthropic", fake.url, model=MODEL, prompt_cache="always"),
        dep("claude-plain", "anthropic", fake.url, model=MODEL),
        dep("claude-hour", "anthropic", fake.url, model=MODEL, prompt_cache="auto",
            prompt_cache_ttl="1h"),
    )  # fmt: skip
    yield from start_gateway(replace(settings, deployments=marked + settings.deployments), fake)


def system_prompt() -> str:
    return f"You answer questions about shipping, in short sentences. {uuid.uuid4().hex}"


def ask(
    gw: GW, model: str, system: str | None, messages: list[dict[str, Any]], key: str | None = None
) -> UsageRecord:
    extra: dict[str, Any] = {} if system is None else {"system": system}
    raw = gw.anthropic(key).messages.with_raw_response.create(
        model=model, max_tokens=20, messages=messages, **extra
    )
    raw.parse()
    return gw.record(raw.headers["x-tokenomy-request-id"])


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def sent(gw: GW) -> Any:
    return gw.fake.app.requests[-1].body


def plain_cost(rec: UsageRecord) -> Decimal:
    u = replace(rec.usage, cache_read_tokens=0, cache_write_tokens=0, cache_write_1h_tokens=0)
    total = PRICES.cost(u, model=MODEL, provider="anthropic").total
    assert total is not None
    return total


def test_auto_marks_a_shared_system_prompt_from_its_second_request_on(pgw: GW) -> None:
    """The first request of a system prompt goes unmarked (no premium); the second
    writes it at the end of the system prompt; the third reads it."""
    system = system_prompt()
    first = ask(pgw, "claude-auto", system, user("Where is my parcel?"))
    assert not has_breakpoint(sent(pgw)) and "prompt_cache" not in first.decisions
    second = ask(pgw, "claude-auto", system, user("How long does delivery take?"))
    body = sent(pgw)
    assert body["system"] == [{"type": "text", "text": system,
                               "cache_control": {"type": "ephemeral"}}]  # fmt: skip
    assert "cache_control" not in body  # no automatic caching: nothing follows yet
    wrote = second.decisions["prompt_cache"]
    assert wrote["mode"] == "auto" and wrote["marked"] == ["prefix"]
    assert wrote["written_tokens"] > 0 and wrote["read_tokens"] == 0
    assert Decimal(wrote["saved_usd"]) == plain_cost(second) - second.cost_usd < 0  # premium
    third = ask(pgw, "claude-auto", system, user("Can I change the address?"))
    read = third.decisions["prompt_cache"]
    assert read["read_tokens"] == wrote["written_tokens"] and read["written_tokens"] == 0
    assert third.cost_usd is not None
    assert Decimal(read["saved_usd"]) == plain_cost(third) - third.cost_usd > 0


def test_auto_caches_a_conversation_that_goes_on(pgw: GW) -> None:
    """A request with an assistant turn gets automatic caching; its next turn reads it."""
    convo = user(f"Plan a trip to Lyon. {uuid.uuid4().hex}")
    convo.append({"role": "assistant", "content": "Three days: old town, food, museums."})
    convo.append({"role": "user", "content": "Add a day trip."})
    turn2 = ask(pgw, "claude-auto", None, convo)
    assert sent(pgw)["cache_control"] == {"type": "ephemeral"}
    assert turn2.decisions["prompt_cache"]["marked"] == ["automatic"]
    assert turn2.usage.cache_write_tokens == turn2.usage.input_tokens  # all of it written
    convo += [{"role": "assistant", "content": "Annecy."}, {"role": "user", "content": "Why?"}]
    turn3 = ask(pgw, "claude-auto", None, convo)
    assert turn3.usage.cache_read_tokens == turn2.usage.cache_write_tokens
    assert Decimal(turn3.decisions["prompt_cache"]["saved_usd"]) > 0


def test_a_streamed_turn_is_marked_and_its_saving_recorded(pgw: GW) -> None:
    convo = [*user(f"Name a river. {uuid.uuid4().hex}"), {"role": "assistant", "content": "Loire."},
             *user("Another?")]  # fmt: skip
    rids = []
    for _ in range(2):
        with pgw.anthropic().messages.with_streaming_response.create(
            model="claude-auto",
            max_tokens=20,
            messages=convo,
            stream=True,  # type: ignore[arg-type]
        ) as resp:
            rids.append(resp.headers["x-tokenomy-request-id"])
            resp.read()
    assert sent(pgw)["cache_control"] == {"type": "ephemeral"}
    first, second = (pgw.record(r) for r in rids)
    assert first.stream and first.decisions["prompt_cache"]["written_tokens"] > 0
    assert second.usage.cache_read_tokens == first.usage.cache_write_tokens > 0
    assert Decimal(second.decisions["prompt_cache"]["saved_usd"]) == (
        plain_cost(second) - (second.cost_usd or 0)
    )


def test_always_marks_every_request_and_a_repeat_reads_it(pgw: GW) -> None:
    text = f"Summarise the returns policy. {uuid.uuid4().hex}"
    first = ask(pgw, "claude-always", None, user(text))
    assert sent(pgw)["cache_control"] == {"type": "ephemeral"}
    assert first.decisions["prompt_cache"]["marked"] == ["automatic"]
    assert first.usage.cache_write_tokens > 0
    again = ask(pgw, "claude-always", None, user(text))
    assert again.usage.cache_read_tokens == first.usage.cache_write_tokens
    # With a system prompt, its end is marked too: another question reads it.
    system = system_prompt()
    ask(pgw, "claude-always", system, user("a question"))
    assert sent(pgw)["system"][-1]["cache_control"] == {"type": "ephemeral"}
    other = ask(pgw, "claude-always", system, user("another question"))
    assert other.decisions["prompt_cache"]["marked"] == ["prefix", "automatic"]
    assert 0 < other.usage.cache_read_tokens < other.usage.input_tokens


def test_a_one_hour_lever_asks_for_an_hour_and_is_billed_at_its_rate(pgw: GW) -> None:
    system = system_prompt()
    ask(pgw, "claude-hour", system, user("first"))
    second = ask(pgw, "claude-hour", system, user("second"))
    assert sent(pgw)["system"][-1]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    assert second.usage.cache_write_1h_tokens > 0 and second.usage.cache_write_tokens == 0
    written = second.decisions["prompt_cache"]["written_tokens"]
    assert written == second.usage.cache_write_1h_tokens
    # $6 per million written for an hour against $3 of plain input: the premium is 1x.
    assert Decimal(second.decisions["prompt_cache"]["saved_usd"]) == -written * Decimal(3) / 10**6
    third = ask(pgw, "claude-hour", system, user("third"))
    assert third.usage.cache_read_tokens == written


def test_a_clients_own_breakpoints_are_left_alone(pgw: GW) -> None:
    system = [{"type": "text", "text": system_prompt(), "cache_control": {"type": "ephemeral"}}]
    for _ in range(2):
        raw = pgw.anthropic().messages.with_raw_response.create(
            model="claude-always",
            max_tokens=20,
            system=system,
            messages=user("hi"),  # type: ignore[arg-type]
        )
        rec = pgw.record(raw.headers["x-tokenomy-request-id"])
        assert sent(pgw)["system"] == system and "cache_control" not in sent(pgw)
        assert "prompt_cache" not in rec.decisions


def test_a_deployment_without_the_lever_sends_the_request_as_it_came(pgw: GW) -> None:
    system = system_prompt()
    for _ in range(2):
        rec = ask(pgw, "claude-plain", system, user("hi"))
        assert sent(pgw)["system"] == system and not has_breakpoint(sent(pgw))
        assert "prompt_cache" not in rec.decisions


def test_an_openai_client_is_marked_after_the_translation(pgw: GW) -> None:
    system = system_prompt()
    for _ in range(2):
        raw = pgw.openai().chat.completions.with_raw_response.create(
            model="claude-auto",
            messages=[{"role": "system", "content": system}, {"role": "user", "content": "hi"}],
        )
    assert sent(pgw)["system"][-1]["cache_control"] == {"type": "ephemeral"}
    rec = pgw.record(raw.headers["x-tokenomy-request-id"])
    assert rec.decisions["prompt_cache"]["marked"] == ["prefix"]


def test_another_organisations_prefix_is_not_counted_as_seen(pgw: GW) -> None:
    system = system_prompt()
    ask(pgw, "claude-auto", system, user("hi"))
    other = add_key(pgw.db, team="t", org="globex")[0]
    rec = ask(pgw, "claude-auto", system, user("hi"), key=other)
    assert not has_breakpoint(sent(pgw)) and "prompt_cache" not in rec.decisions


def test_a_fallback_to_another_provider_carries_no_prompt_cache_decision(pgw: GW) -> None:
    convo = [*user("a"), {"role": "assistant", "content": "b"},
             {"role": "user", "content": f"c [[fake:status=500]] [[fake:only={MODEL}]]"}]  # fmt: skip
    rec = ask(pgw, "claude-auto", None, convo)
    assert rec.deployment == "gpt-4o" and "cache_control" not in sent(pgw)
    assert "prompt_cache" not in rec.decisions


# -- the parts -------------------------------------------------------------------------------


def test_seen_prefixes_forget_after_the_lifetime_and_past_the_limit() -> None:
    now = [0.0]
    seen = SeenPrefixes(ttl=300, limit=2, clock=lambda: now[0])
    assert not seen.seen(b"a") and seen.seen(b"a")
    now[0] = 299.0
    assert seen.seen(b"a")  # each use renews it, as a read renews Anthropic's cache
    now[0] = 600.0
    assert not seen.seen(b"a")
    seen.seen(b"b")
    seen.seen(b"c")  # past the limit: the oldest, a, goes
    assert len(seen) == 2 and not seen.seen(b"a")


def test_mark_copies_what_it_changes_and_records_the_deployment() -> None:
    body: dict[str, Any] = {"model": MODEL, "tools": [{"name": "t", "input_schema": {}}],
                            "messages": user("hi")}  # fmt: skip
    client_tools = body["tools"]
    call = Call("anthropic", "chat", "/v1/messages", dict(body), {})
    call.record.org = "o"
    seen = SeenPrefixes()
    out = dict(body)
    auto = Deployment("d", "anthropic", prompt_cache="auto")
    mark(call, auto, seen, out)
    assert out == body and not call.levers
    out = dict(body)
    mark(call, auto, seen, out)
    assert out["tools"][-1]["cache_control"] == {"type": "ephemeral"}
    assert "cache_control" not in client_tools[-1]  # the client's body is untouched
    assert call.levers["prompt_cache"] == Marked("d", "auto", ("prefix",))
    mark(call, Deployment("e", "anthropic"), None, dict(body))  # the next attempt: no lever
    assert "prompt_cache" not in call.levers
    assert continues({"messages": [*user("a"), {"role": "assistant", "content": "b"}, *user("c")]})
    assert not continues({"messages": [*user("a"), {"role": "assistant", "content": "{"}]})


def test_the_worst_case_prices_the_prompt_as_a_cache_write_where_the_lever_may_mark() -> None:
    est = Estimator(PRICES)
    body = {"model": MODEL, "max_tokens": 10, "messages": user("word " * 1000)}
    call = Call("anthropic", "chat", "/v1/messages", body, {})
    call.record.requested_model = call.record.served_model = MODEL
    call.record.deployment = "claude-auto"
    plain = est(call)
    est.marked = {"claude-auto": "5m"}
    marked = est(call)
    # Claude Sonnet 4.5: $3 per million input tokens, $3.75 written to the cache for
    # 5 minutes, $6 for an hour.
    assert plain.input_usd == plain.input_tokens * 3 * 1000  # nano-dollars
    assert marked.input_usd == marked.input_tokens * Decimal("3.75") * 1000
    est.marked = {"claude-auto": "1h"}
    assert est(call).input_usd == plain.input_tokens * 6 * 1000
    est.marked = {"elsewhere": "5m"}
    assert est(call).input_usd == plain.input_usd


def test_prompt_cache_is_anthropics_and_takes_two_modes(tmp_path: Any) -> None:
    with pytest.raises(ConfigError, match="prompt_cache adds Anthropic"):
        create_provider(Deployment("m", "openai", api_key="k", prompt_cache="auto"))
    d = create_provider(Deployment("c", "anthropic", api_key="k", prompt_cache="auto"))
    assert d.prefixes is not None
    assert create_provider(Deployment("c", "anthropic", api_key="k")).prefixes is None
    path = tmp_path / "tokenomy.yaml"
    path.write_text("models:\n  - {name: c, provider: anthropic, prompt_cache: sometimes}\n")
    with pytest.raises(ConfigError, match=r"models\[0\]\.prompt_cache"):
        load_settings(path)
    path.write_text("models:\n  - {name: c, provider: anthropic, prompt_cache: always}\n")
    d = load_settings(path).deployments[0]
    assert (d.prompt_cache, d.prompt_cache_ttl) == ("always", "5m")
    path.write_text("models:\n  - {name: c, provider: anthropic, prompt_cache: auto, "
                    "prompt_cache_ttl: 1h}\n")  # fmt: skip
    assert load_settings(path).deployments[0].prompt_cache_ttl == "1h"
    assert create_provider(load_settings(path).deployments[0]).prefixes.ttl == 3600
    path.write_text("models:\n  - {name: c, provider: anthropic, prompt_cache_ttl: 2h}\n")
    with pytest.raises(ConfigError, match=r"models\[0\]\.prompt_cache_ttl"):
        load_settings(path)
