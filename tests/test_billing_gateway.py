"""Prepaid balances through the real gateway: reserve, refuse in each API's format, settle.

The proof that a balance drained by concurrent requests never goes negative is
here for one process; the two-replica version is in ``test_billing_replicas.py``.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator, Sequence
from decimal import Decimal
from pathlib import Path

import anthropic
import openai
import pytest

from gateway_fixtures import GW, Fake, gateway_settings, start_gateway
from tokenomy.billing import BillingStore, Plan, record_charge
from tokenomy.billing.policy import window_for
from tokenomy.caps import CountersUnavailable, Hold, Reserved, usd_to_units
from tokenomy.keys import mint_key
from tokenomy.ledger import Store
from tokenomy.tokens import count_chat_messages
from tokenomy.usage import Usage

D = Decimal
ID = "x-tokenomy-request-id"


def drain_check(store: Store, customer: str) -> tuple[Decimal, int]:
    """The proof's invariants, from the ledgers alone; returns (balance, debits)."""
    b = BillingStore(store)
    acct = b.customer(customer)
    assert acct is not None and acct.unit is not None
    entries = b.history(customer, limit=1_000_000)
    assert acct.balance >= 0
    assert acct.balance == sum((e.amount for e in entries), D(0))
    debits = {e.request_id: e for e in entries if e.kind == "debit"}
    assert len(debits) == sum(e.kind == "debit" for e in entries)  # one per request
    assert not [e for e in debits.values() if e.note and "shortfall" in e.note]
    records = [r for r in store.list_records(limit=1_000_000) if r.user == customer]
    charged = {}
    for r in records:
        _, amount = record_charge(r)
        if amount:
            charged[r.request_id] = amount
    assert set(debits) == set(charged)  # every debit has its record, and every charge a debit
    assert -sum((e.amount for e in debits.values()), D(0)) == sum(charged.values(), D(0))
    for rid, e in debits.items():
        assert -e.amount == charged[rid]
    return acct.balance, len(debits)


@pytest.fixture
def bill_gw(fake: Fake, fake_llamacpp: Fake, tmp_path: Path) -> Iterator[GW]:
    settings = gateway_settings(str(tmp_path / "ledger.db"), fake, fake_llamacpp)
    yield from start_gateway(settings, fake)


def app_key(gw: GW) -> str:
    """An application's key: no user of its own, so each request names its customer
    (the default key is alice's, and bills alice whatever a request says)."""
    secret, rec = mint_key(team="search", org="acme")
    gw.store.create_key(rec)
    return secret


def ask(i: int, extra: str = "") -> list[dict[str, str]]:
    return [{"role": "user", "content": f"hello number {i} {extra}".strip()}]


async def test_a_balance_drained_by_concurrent_requests_never_goes_negative(bill_gw: GW) -> None:
    b = BillingStore(bill_gw.store)
    b.create_plan(Plan("pro", markup_pct=D("25")))
    b.assign_plan("alice", "pro")
    b.topup("alice", D("0.004"))
    client = bill_gw.async_openai()
    gate = asyncio.Semaphore(40)
    outcomes: dict[str, int] = {"ok": 0, "refused": 0}

    async def one(i: int) -> None:
        async with gate:
            try:
                if i % 3 == 0:
                    stream = await client.chat.completions.create(
                        model="gpt-4o", messages=ask(i, "[[fake:chunk_delay_ms=2]]"),
                        max_tokens=16, stream=True,
                    )  # fmt: skip
                    async for _ in stream:
                        pass
                else:
                    await client.chat.completions.create(
                        model="gpt-4o", messages=ask(i, "[[fake:delay_ms=15]]"), max_tokens=16
                    )
                outcomes["ok"] += 1
            except openai.RateLimitError as exc:
                assert exc.code == "insufficient_quota"
                assert "Insufficient credit" in exc.message
                assert exc.response.headers["x-should-retry"] == "false"
                outcomes["refused"] += 1

    try:
        await asyncio.gather(*(one(i) for i in range(400)))
    finally:
        await client.close()
    balance, debits = drain_check(bill_gw.store, "alice")
    assert outcomes["ok"] == debits and outcomes["refused"] == 400 - debits
    assert 15 < debits < 60 and outcomes["refused"] > 300
    # Drained: what is left cannot pay another worst case (about $0.00026).
    assert balance < D("0.0003")
    gw = bill_gw.app.gateway
    assert gw is not None and gw.caps is not None and gw.billing is not None
    acct = b.customer("alice")
    assert acct is not None
    [total] = await gw.caps.backend.totals([window_for("alice")])
    assert total == usd_to_units(acct.debited)  # no hold left behind, no debit uncounted
    assert gw.billing.open_count() == 0


def test_a_request_is_debited_its_charge_under_the_plan(bill_gw: GW) -> None:
    b = BillingStore(bill_gw.store)
    b.create_plan(Plan("pro", markup_pct=D("20")))
    b.assign_plan("alice", "pro")
    b.topup("alice", D("5"))
    raw = bill_gw.openai().chat.completions.with_raw_response.create(
        model="gpt-4o", messages=ask(1), max_tokens=50
    )
    rec = bill_gw.record(raw.headers[ID])
    assert rec.cost_usd is not None
    want = (rec.cost_usd * D("1.2")).quantize(D("0.000000001"))
    terms = rec.decisions["billing"]
    assert terms["customer"] == "alice" and terms["plan"] == "pro" and terms["unit"] == "usd"
    assert terms["markup_pct"] == "20"
    assert D(terms["reserved"]) >= want
    debit = b.debit_of(rec.request_id)
    assert debit is not None and debit.amount == -want and debit.ts == rec.ts
    acct = b.customer("alice")
    assert acct is not None and acct.balance == D(5) - want


def test_the_openai_user_field_picks_the_customer(bill_gw: GW) -> None:
    b = BillingStore(bill_gw.store)
    b.topup("bob", D("1"))
    raw = bill_gw.openai(app_key(bill_gw)).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=ask(1), user="bob", max_tokens=5
    )
    rec = bill_gw.record(raw.headers[ID])
    debit = b.debit_of(rec.request_id)
    assert rec.user == "bob" and debit is not None and debit.customer == "bob"
    assert rec.cost_usd is not None and debit.amount == -rec.cost_usd.quantize(D("1E-9"))
    assert b.customer("alice") is None


def test_a_customers_own_key_cannot_bill_another_customer(bill_gw: GW) -> None:
    b = BillingStore(bill_gw.store)
    b.topup("bob", D("1"))
    b.topup("alice", D("0.000001"))  # alice's key, naming bob, still draws on alice's
    with pytest.raises(openai.RateLimitError, match="customer 'alice'"):
        bill_gw.openai().chat.completions.create(
            model="gpt-4o-mini", messages=ask(1), user="bob", max_tokens=5
        )
    acct = b.customer("bob")
    assert (
        acct is not None and acct.balance == 1 and [e.kind for e in b.history("bob")] == ["topup"]
    )


def test_a_token_balance_pays_tokens(bill_gw: GW) -> None:
    b = BillingStore(bill_gw.store)
    b.topup("alice", D(100), unit="tokens")
    raw = bill_gw.openai().chat.completions.with_raw_response.create(
        model="gpt-4o", messages=ask(1), max_tokens=8
    )
    rec = bill_gw.record(raw.headers[ID])
    debit = b.debit_of(rec.request_id)
    used = rec.usage.input_tokens + rec.usage.output_tokens
    assert debit is not None and debit.amount == -used and debit.unit == "tokens"
    with pytest.raises(openai.RateLimitError, match="tokens of prepaid balance"):
        bill_gw.openai().chat.completions.create(model="gpt-4o", messages=ask(2), max_tokens=500)
    acct = b.customer("alice")
    assert acct is not None and acct.balance == 100 - used


def test_an_embeddings_request_is_held_and_debited_its_input_only(bill_gw: GW) -> None:
    b = BillingStore(bill_gw.store)
    b.topup("bob", D(10), unit="tokens")
    client = bill_gw.openai(app_key(bill_gw))
    raw = client.embeddings.with_raw_response.create(
        model="text-embedding-3-small", input=[[1, 2, 3], [4, 5]], user="bob"
    )
    rec = bill_gw.record(raw.headers[ID])
    assert rec.user == "bob" and rec.usage.input_tokens == raw.parse().usage.prompt_tokens == 5
    debit = b.debit_of(rec.request_id)
    assert debit is not None and debit.amount == -5 and debit.unit == "tokens"
    # 6 token ids do not fit the 5 left: refused, and told so without a word of
    # max_tokens, which an embeddings request does not have.
    with pytest.raises(openai.RateLimitError) as err:
        client.embeddings.create(model="text-embedding-3-small", input=list(range(6)), user="bob")
    assert err.value.code == "insufficient_quota"
    assert "up to 6 tokens" in err.value.message and "max_tokens" not in err.value.message
    acct = b.customer("bob")
    assert acct is not None and acct.balance == 5


def test_anthropic_clients_hear_a_400_like_anthropic_sends(bill_gw: GW) -> None:
    b = BillingStore(bill_gw.store)
    b.topup("carol", D("0.000001"))
    with pytest.raises(anthropic.BadRequestError) as err:
        bill_gw.anthropic(app_key(bill_gw)).messages.create(
            model="claude-haiku-4-5", max_tokens=100, messages=ask(1),
            metadata={"user_id": "carol"},
        )  # fmt: skip
    assert err.value.status_code == 400
    assert "Insufficient credit" in err.value.message and "carol" in err.value.message
    assert err.value.response.headers["x-should-retry"] == "false"
    body = err.value.body
    assert isinstance(body, dict) and body["error"]["type"] == "invalid_request_error"
    # Nothing was spent, and nothing is held.
    acct = b.customer("carol")
    assert acct is not None and acct.balance == D("0.000001")


def test_customers_without_a_balance_are_not_limited(bill_gw: GW) -> None:
    b = BillingStore(bill_gw.store)
    b.create_plan(Plan("flat", input_per_mtok=D("1"), output_per_mtok=D("2")))
    b.assign_plan("alice", "flat")  # a plan, postpaid: charged, never refused
    raw = bill_gw.openai().chat.completions.with_raw_response.create(
        model="gpt-4o", messages=ask(1), max_tokens=5
    )
    rec = bill_gw.record(raw.headers[ID])
    usd, debit = record_charge(rec)
    u = rec.usage
    assert debit is None and usd == (u.input_tokens * 1 + u.output_tokens * 2) / D(10**6)
    assert b.debit_of(rec.request_id) is None
    walk_in = bill_gw.openai(app_key(bill_gw)).chat.completions.with_raw_response.create(
        model="gpt-4o", messages=ask(2), user="dave"
    )
    assert "billing" not in bill_gw.record(walk_in.headers[ID]).decisions


def test_require_balance_refuses_customers_without_one(
    fake: Fake, fake_llamacpp: Fake, tmp_path: Path
) -> None:
    settings = gateway_settings(
        str(tmp_path / "ledger.db"), fake, fake_llamacpp, billing={"require_balance": True}
    )
    for gw in start_gateway(settings, fake):
        with pytest.raises(openai.RateLimitError, match="no prepaid balance") as err:
            gw.openai().chat.completions.create(model="gpt-4o", messages=ask(1))
        assert err.value.code == "insufficient_quota"
        BillingStore(gw.store).topup("erin", D("1"))
        ok = gw.openai(app_key(gw)).chat.completions.create(
            model="gpt-4o", messages=ask(2), user="erin", max_tokens=5
        )
        assert ok.choices[0].message.content


def test_a_failed_request_releases_its_hold_and_pays_nothing(bill_gw: GW) -> None:
    b = BillingStore(bill_gw.store)
    b.topup("alice", D("1"))
    with pytest.raises(openai.InternalServerError):
        bill_gw.openai().chat.completions.create(
            model="gpt-4o", messages=ask(1, "[[fake:status=500]]"), max_tokens=5
        )
    acct = b.customer("alice")
    assert acct is not None and acct.balance == 1
    assert [e.kind for e in b.history("alice")] == ["topup"]


def test_an_unpriced_model_cannot_spend_a_dollar_balance(bill_gw: GW) -> None:
    BillingStore(bill_gw.store).topup("alice", D("1"))
    with pytest.raises(openai.BadRequestError, match="No price is known"):
        bill_gw.openai().chat.completions.create(model="mystery-model-x", messages=ask(1))


def unreachable(gw: GW) -> None:
    """Make the counters fail for requests (not for billing's own catch-up)."""
    g = gw.app.gateway
    assert g is not None and g.caps is not None
    backend = g.caps.backend
    real = backend.reserve

    async def reserve(rid: str, holds: Sequence[Hold], *, lease: float) -> Reserved:
        if rid.startswith("req_"):
            raise CountersUnavailable("test: Redis is down")
        return await real(rid, holds, lease=lease)

    backend.reserve = reserve  # type: ignore[method-assign]


def test_unreachable_counters_fail_closed_for_balances(bill_gw: GW) -> None:
    BillingStore(bill_gw.store).topup("alice", D("1"))
    unreachable(bill_gw)
    with pytest.raises(openai.InternalServerError) as err:
        bill_gw.openai().chat.completions.create(model="gpt-4o", messages=ask(1), max_tokens=5)
    assert err.value.status_code == 503 and "fail closed" in err.value.message
    assert err.value.response.headers["x-tokenomy-caps"] == "fail-closed"
    # A customer without a balance is not billing's to refuse.
    walk_in = app_key(bill_gw)
    bill_gw.openai(walk_in).chat.completions.create(model="gpt-4o", messages=ask(2), user="walk-in")


def test_fail_open_serves_debits_and_keeps_the_counter_equal_to_the_ledger(
    fake: Fake, fake_llamacpp: Fake, tmp_path: Path
) -> None:
    settings = gateway_settings(
        str(tmp_path / "ledger.db"), fake, fake_llamacpp, billing={"fail_mode": "open"}
    )
    for gw in start_gateway(settings, fake):
        b = BillingStore(gw.store)
        b.topup("alice", D("1"))
        gw.openai().chat.completions.create(model="gpt-4o", messages=ask(1), max_tokens=5)
        unreachable(gw)
        raw = gw.openai().chat.completions.with_raw_response.create(
            model="gpt-4o", messages=ask(2), max_tokens=5
        )
        assert raw.headers["x-tokenomy-caps"] == "fail-open"
        rec = gw.record(raw.headers[ID])
        assert rec.decisions["billing"]["fail_open"] is True
        assert b.debit_of(rec.request_id) is not None
        drain_check(gw.store, "alice")
        g = gw.app.gateway
        assert g is not None and g.caps is not None
        acct = b.customer("alice")
        assert acct is not None
        [total] = asyncio.run(g.caps.backend.totals([window_for("alice")]))
        assert total == usd_to_units(acct.debited)


def prompt_tokens(model: str) -> int:
    """What the caps estimate counts for ``ask(1)``: the model's tokenizer, scaled by the
    default inexact-input margin (1.2, rounded up) when the count is not exact."""
    count = count_chat_messages(ask(1), model)
    return count.tokens if count.exact else math.ceil(count.tokens * D("1.2"))


@pytest.fixture
def clamp_gw(fake: Fake, fake_llamacpp: Fake, tmp_path: Path) -> Iterator[GW]:
    settings = gateway_settings(
        str(tmp_path / "ledger.db"), fake, fake_llamacpp, billing={"on_exceed": "clamp"}
    )
    yield from start_gateway(settings, fake)


def test_clamp_lowers_max_tokens_to_what_a_token_balance_pays(clamp_gw: GW) -> None:
    b = BillingStore(clamp_gw.store)
    b.topup("alice", D(100), unit="tokens")
    raw = clamp_gw.openai().chat.completions.with_raw_response.create(
        model="gpt-4o", messages=ask(1), max_tokens=500
    )
    rec = clamp_gw.record(raw.headers[ID])
    clamped = rec.decisions["caps"]["clamped_max_tokens"]
    # a token balance pays prompt plus output tokens: what the prompt leaves of 100
    assert clamped == 100 - prompt_tokens("gpt-4o")
    assert int(rec.decisions["billing"]["reserved"]) == 100
    assert rec.usage.output_tokens <= clamped
    acct = b.customer("alice")
    assert (
        acct is not None
        and 0 <= acct.balance == 100 - rec.usage.input_tokens - rec.usage.output_tokens
    )


def test_clamp_lowers_max_tokens_to_what_a_dollar_balance_pays_under_the_plan(
    clamp_gw: GW,
) -> None:
    b = BillingStore(clamp_gw.store)
    b.create_plan(Plan("pro", markup_pct=D("25")))
    b.assign_plan("alice", "pro")
    b.topup("alice", D("0.0002"))
    raw = clamp_gw.openai().chat.completions.with_raw_response.create(
        model="gpt-4o", messages=ask(1), max_tokens=4000
    )
    rec = clamp_gw.record(raw.headers[ID])
    clamped = rec.decisions["caps"]["clamped_max_tokens"]
    # $0.0002 buys $0.00016 of provider cost at the 25% markup; gpt-4o's prompt
    # ($2.50 per million) takes its share, and output ($10 per million) the rest.
    per_input, per_output = D("2.50") / 10**6, D("10") / 10**6
    million = clamp_gw.app.gateway.prices.cost(  # type: ignore[union-attr]
        Usage(input_tokens=10**6, output_tokens=10**6), model="gpt-4o", provider="openai"
    )
    assert (million.input, million.output) == (D("2.50"), D("10"))  # the prices used here
    provider_usd = D("0.0002") / D("1.25")
    expected = (provider_usd - prompt_tokens("gpt-4o") * per_input) // per_output
    assert clamped == expected
    assert D(rec.decisions["billing"]["reserved"]) <= D("0.0002")
    acct = b.customer("alice")
    assert acct is not None and acct.balance >= 0
    with pytest.raises(openai.RateLimitError, match="Insufficient credit"):
        for i in range(50):  # drained: at last nothing is left for even one token
            clamp_gw.openai().chat.completions.create(
                model="gpt-4o", messages=ask(i), max_tokens=4000
            )
    acct = b.customer("alice")
    assert acct is not None and acct.balance >= 0


def test_clamp_works_on_a_fixed_price_plan_for_a_model_without_a_price(clamp_gw: GW) -> None:
    # The plan charges its own price per million tokens: that the provider's price of
    # the model is unknown does not stop the clamp.
    b = BillingStore(clamp_gw.store)
    b.create_plan(Plan("flat", input_per_mtok=D("1"), output_per_mtok=D("2")))
    b.assign_plan("alice", "flat")
    b.topup("alice", D("0.0001"))
    raw = clamp_gw.openai().chat.completions.with_raw_response.create(
        model="mystery-model-x", messages=ask(1), max_tokens=100_000
    )
    rec = clamp_gw.record(raw.headers[ID])
    assert rec.price_unknown  # the provider's cost is flagged, never $0
    clamped = rec.decisions["caps"]["clamped_max_tokens"]
    # $0.0001 less the prompt at the plan's $1 per million, at $2 per million output
    per_input, per_output = D("1") / 10**6, D("2") / 10**6
    expected = (D("0.0001") - prompt_tokens("mystery-model-x") * per_input) // per_output
    assert clamped == expected
    assert D(rec.decisions["billing"]["reserved"]) <= D("0.0001")
    acct = b.customer("alice")
    assert acct is not None and acct.balance >= 0
