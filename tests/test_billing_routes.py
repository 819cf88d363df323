"""A balance's hold covers every upstream call and every answer a request may get.

The worst case reserved before the upstream is called must be at least what the
request is then charged: with OpenAI's ``n`` answers, with fallbacks to a dearer
model, and with a cascade's drafts. Otherwise a small balance pays for far more
than it holds (the debit is cut to the balance, and the rest is a shortfall).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import openai
import pytest

from gateway_fixtures import GW, Fake
from routing_helpers import routed_gateway
from tokenomy.billing import BillingStore, Plan, build_statement, money_text, parse_period

D = Decimal
ID = "x-tokenomy-request-id"
ROUTING = {
    "tiers": ["gpt-4o-mini", "gpt-4o"],
    "cascade": {"threshold": 0.67, "samples": 3},
    "fallbacks": {"gpt-4o-mini": ["gpt-4o"], "gpt-4o-a": ["mystery-model-x"]},
}


@pytest.fixture
def rgw(fake: Fake, fake_llamacpp: Fake, tmp_path: Path) -> Iterator[GW]:
    yield from routed_gateway(tmp_path, fake, fake_llamacpp, ROUTING)


def on_pro(gw: GW, balance: str) -> BillingStore:
    b = BillingStore(gw.store)
    b.create_plan(Plan("pro", markup_pct=D("20")))
    b.assign_plan("alice", "pro")
    b.topup("alice", D(balance))
    return b


def charged_within_hold(gw: GW, b: BillingStore, request_id: str) -> Decimal:
    """The request's debit: its whole charge, never more than the worst case reserved."""
    rec = gw.record(request_id)
    debit = b.debit_of(request_id)
    assert debit is not None and not (debit.note or "").count("shortfall")
    assert -debit.amount <= D(rec.decisions["billing"]["reserved"])
    return -debit.amount


def ask(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def test_n_answers_are_all_in_the_worst_case(rgw: GW) -> None:
    b = on_pro(rgw, "0.002")
    client = rgw.openai()
    # Eight answers of up to 30 tokens at $10 per million, +20%: about $0.0029.
    with pytest.raises(openai.RateLimitError, match="Insufficient credit") as err:
        client.chat.completions.create(
            model="gpt-4o", messages=ask("hi [[fake:chunks=30]]"), max_tokens=30, n=8
        )
    assert err.value.code == "insufficient_quota"
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=ask("hi [[fake:chunks=30]]"), max_tokens=30, n=2
    )
    assert len(raw.parse().choices) == 2
    spent = charged_within_hold(rgw, b, raw.headers[ID])
    acct = b.customer("alice")
    assert acct is not None and acct.balance == D("0.002") - spent


def test_a_fallback_to_a_dearer_model_is_in_the_worst_case(rgw: GW) -> None:
    b = on_pro(rgw, "1")
    raw = rgw.openai().chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=ask("hi [[fake:status=500]] [[fake:only=gpt-4o-mini]] [[fake:chunks=20]]"),
        max_tokens=20,
    )
    rec = rgw.record(raw.headers[ID])
    assert rec.served_model == "gpt-4o"  # 16 times gpt-4o-mini's price per token
    charged_within_hold(rgw, b, rec.request_id)


def test_a_cascades_drafts_are_in_the_worst_case(rgw: GW) -> None:
    b = on_pro(rgw, "1")
    raw = rgw.openai().chat.completions.with_raw_response.create(
        model="cheap-first", messages=ask("what is 6 times 7 [[fake:vary]]"), max_tokens=20
    )
    rec = rgw.record(raw.headers[ID])
    assert rec.decisions["route"]["cascade"] == "escalated"
    assert rgw.store.get_record(rec.request_id + ".draft") is not None
    charged_within_hold(rgw, b, rec.request_id)


def test_a_fallback_without_a_price_cannot_spend_a_dollar_balance(rgw: GW) -> None:
    # gpt-4o-a is priced, but may fall back to a model whose price is unknown: under a
    # markup plan that request could not be charged, so it is refused, not served free.
    b = on_pro(rgw, "1")
    with pytest.raises(openai.BadRequestError, match="No price is known") as err:
        rgw.openai().chat.completions.create(
            model="gpt-4o-a", messages=ask("hi [[fake:status=500]] [[fake:only=gpt-4o]]")
        )
    assert err.value.code == "price_unknown"
    assert [e.kind for e in b.history("alice")] == ["topup"]


def statement_of(gw: GW, customer: str = "alice") -> dict[str, Any]:
    span = parse_period(datetime.now(UTC).strftime("%Y"))
    return build_statement(BillingStore(gw.store), customer, span).to_json()


def test_a_cascades_statement_agrees_with_its_debit(rgw: GW) -> None:
    b = on_pro(rgw, "1")
    client = rgw.openai()
    raw = client.chat.completions.with_raw_response.create(
        model="cheap-first", messages=ask("what is 6 times 7 [[fake:vary]]"), max_tokens=20
    )
    rec = rgw.record(raw.headers[ID])
    draft = rgw.record(rec.request_id + ".draft")
    client.chat.completions.create(model="gpt-4o", messages=ask("plain"), max_tokens=5)
    st = statement_of(rgw)
    # The debit charged the drafts with the request, at the plan's markup: so does the
    # statement (it charged the draft row at the provider's cost, without the markup).
    assert D(st["charged_usd"]) == -D(st["balance"]["debits"])
    assert st["balance"]["closing"] == money_text(b.customer("alice").balance)  # type: ignore[union-attr]
    assert rec.cost_usd is not None and draft.cost_usd is not None
    want = ((rec.cost_usd + draft.cost_usd) * D("1.2")).quantize(D("1E-9"))
    assert -b.debit_of(rec.request_id).amount == want  # type: ignore[union-attr]
    lines = {m["model"]: m for m in st["models"]}
    assert lines["gpt-4o-mini"]["output_tokens"] == draft.usage.output_tokens
    assert D(lines["gpt-4o-mini"]["charged_usd"]) == (draft.cost_usd * D("1.2")).quantize(D("1E-9"))
    assert st["usage"]["requests"] == 3  # the request, its draft, the plain one


def test_reconcile_charges_a_cascades_drafts_as_settling_did(rgw: GW) -> None:
    b = on_pro(rgw, "1")
    gw = rgw.app.gateway
    assert gw is not None and gw.billing is not None
    store = gw.billing.billing

    def down(*args: Any, **kw: Any) -> Any:
        raise RuntimeError("test: the database went away")

    store.debit = down  # type: ignore[method-assign]
    try:
        raw = rgw.openai().chat.completions.with_raw_response.create(
            model="cheap-first", messages=ask("what is 6 times 7 [[fake:vary]]"), max_tokens=20
        )
    finally:
        del store.debit
    rec = rgw.record(raw.headers[ID])
    draft = rgw.record(rec.request_id + ".draft")
    assert b.debit_of(rec.request_id) is None  # the crash left the record, not the debit
    assert b.reconcile(rec.ts - 1) == 1
    assert rec.cost_usd is not None and draft.cost_usd is not None
    want = ((rec.cost_usd + draft.cost_usd) * D("1.2")).quantize(D("1E-9"))
    assert -b.debit_of(rec.request_id).amount == want  # type: ignore[union-attr]
    assert b.reconcile(rec.ts - 1) == 0


def test_a_judges_calls_are_not_on_the_customers_statement(
    fake: Fake, fake_llamacpp: Fake, tmp_path: Path
) -> None:
    routing = {
        "rules": [{"name": "cheap", "when": {"model": "gpt-4o"}, "to": "gpt-4o-mini"}],
        "judge": {"sample_rate": 1.0, "model": "claude-sonnet-4-6"},
    }
    for gw in routed_gateway(tmp_path, fake, fake_llamacpp, routing):
        b = on_pro(gw, "1")
        raw = gw.openai().chat.completions.with_raw_response.create(
            model="gpt-4o", messages=ask("7"), max_tokens=5
        )
        judge = gw.app.gateway.judge  # type: ignore[union-attr]
        deadline = time.monotonic() + 5
        while gw.store.get_record(raw.headers[ID] + ".judge") is None or judge._tasks:
            assert time.monotonic() < deadline, "no judgement"
            time.sleep(0.02)
        st = statement_of(gw)
        # The judge's call is the gateway's: never debited, and not the customer's usage.
        assert st["usage"]["requests"] == 1
        assert [m["model"] for m in st["models"]] == ["gpt-4o-mini"]
        assert D(st["charged_usd"]) == -D(st["balance"]["debits"]) > 0
        assert [e.kind for e in b.history("alice")] == ["debit", "topup"]
