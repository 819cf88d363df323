"""The price a customer pays: plans, exact Decimal arithmetic, one documented rounding."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from cache_helpers import cached_gateway
from gateway_fixtures import Fake
from test_billing_gateway import app_key
from tokenomy.billing import (
    QUANTUM,
    BillingConfig,
    BillingStore,
    Plan,
    billing_config,
    charge,
    parse_money,
    parse_period,
    plan_from_terms,
    plan_terms,
    record_charge,
    token_charge,
)
from tokenomy.config import load_settings
from tokenomy.errors import ConfigError, InvalidRequest
from tokenomy.records import UsageRecord
from tokenomy.usage import Usage

D = Decimal


def test_without_a_plan_the_customer_pays_the_provider_cost_rounded_to_a_nano_dollar() -> None:
    got = charge(None, Usage(10, 5), D("0.0000123456785"))
    assert got == D("0.000012346") and isinstance(got, Decimal)
    assert got.as_tuple().exponent == -9


@pytest.mark.parametrize(
    ("cost", "expected"),
    [
        (D("0.0000000005"), D("0")),  # exactly half: to the even nano-dollar (0)
        (D("0.0000000015"), D("0.000000002")),  # exactly half: to the even nano-dollar (2)
        (D("0.00000000051"), D("0.000000001")),
        (D("0.0000000004999"), D("0")),
    ],
)
def test_rounding_is_half_even_at_one_nano_dollar(cost: Decimal, expected: Decimal) -> None:
    assert charge(None, Usage(), cost) == expected
    assert D("0.000000001") == QUANTUM


def test_markup_multiplies_the_exact_provider_cost() -> None:
    pro = Plan("pro", markup_pct=D("20"))
    assert charge(pro, Usage(1000, 1000), D("0.0125")) == D("0.015")
    # 2.5% of a cost with many digits: no float anywhere, one rounding at the end.
    odd = Plan("odd", markup_pct=D("2.5"))
    assert charge(odd, Usage(), D("0.000001234567")) == D("0.000001265")
    assert charge(odd, Usage(), D("0.1")) + charge(odd, Usage(), D("0.2")) == D("0.3075")  # type: ignore[operator]


def test_a_negative_markup_is_a_discount_and_unknown_costs_stay_unknown() -> None:
    assert charge(Plan("half", markup_pct=D("-50")), Usage(), D("0.01")) == D("0.005")
    assert charge(Plan("free", markup_pct=D("-100")), Usage(), D("3")) == D("0")
    assert charge(Plan("pro", markup_pct=D("20")), Usage(10, 10), None) is None
    assert charge(None, Usage(10, 10), None) is None


def test_fixed_prices_ignore_the_provider_cost() -> None:
    flat = Plan("flat", input_per_mtok=D("3"), output_per_mtok=D("15"))
    u = Usage(input_tokens=1_000_000, output_tokens=200_000)
    assert charge(flat, u, None) == D("6")  # 3 + 0.2 * 15, price unknown upstream or not
    assert charge(flat, u, D("1000")) == D("6")
    assert charge(flat, Usage(1, 1), None) == D("0.000018")


def test_fixed_prices_bill_cache_reads_at_their_own_rate_and_writes_at_the_input_rate() -> None:
    plan = Plan("c", input_per_mtok=D("2"), output_per_mtok=D("8"), cached_input_per_mtok=D("0.5"))
    u = Usage(input_tokens=1000, cache_read_tokens=600, cache_write_tokens=100, output_tokens=10)
    # 400 uncached (incl. 100 written) * 2 + 600 * 0.5 + 10 * 8, per million
    assert charge(plan, u, None) == D("0.00118")
    no_cached_rate = Plan("n", input_per_mtok=D("2"), output_per_mtok=D("8"))
    assert charge(no_cached_rate, u, None) == D("0.00208")


def test_rounding_never_makes_the_actual_charge_exceed_the_worst_case() -> None:
    plan = Plan("p", input_per_mtok=D("0.15"), output_per_mtok=D("0.6"))
    worst = charge(plan, Usage(333, 777), None)
    assert worst is not None
    for out in range(0, 778, 37):
        got = charge(plan, Usage(333, out), None)
        assert got is not None and got <= worst


def test_token_balances_pay_every_prompt_and_output_token() -> None:
    u = Usage(input_tokens=120, cache_read_tokens=100, output_tokens=30, reasoning_tokens=20)
    assert token_charge(u) == D(150) and isinstance(token_charge(u), Decimal)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "needs 'markup_pct'"),
        ({"input_per_mtok": D(1)}, "needs 'markup_pct'"),
        ({"markup_pct": D(5), "input_per_mtok": D(1), "output_per_mtok": D(1)}, "not both"),
        ({"markup_pct": D(-101)}, "below -100"),
        ({"input_per_mtok": D(-1), "output_per_mtok": D(1)}, "negative"),
    ],
)
def test_bad_plans_are_refused(kwargs: dict[str, Decimal], message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        Plan("bad", **kwargs)


def test_amounts_are_parsed_exactly_and_never_from_floats() -> None:
    assert parse_money("10.25", "amount") == D("10.25")
    assert parse_money(7, "amount") == D(7)
    assert parse_money("1000", "amount", unit="tokens") == D(1000)
    for bad in (0.1, "abc", "NaN", "Infinity", "0.0000000001", True, None):
        with pytest.raises(InvalidRequest):
            parse_money(bad, "amount")
    with pytest.raises(InvalidRequest, match="whole number"):
        parse_money("1.5", "amount", unit="tokens")


def test_periods_are_calendar_spans_in_the_configured_zone() -> None:
    nov = parse_period("2026-11")
    assert (nov.start.isoformat(), nov.end.isoformat()) == (
        "2026-11-01T00:00:00+00:00",
        "2026-12-01T00:00:00+00:00",
    )
    dec = parse_period("2026-12", "Europe/Paris")
    assert dec.end.isoformat() == "2027-01-01T00:00:00+01:00"
    assert dec.bounds[1] - dec.bounds[0] == 31 * 86400
    march = parse_period("2026-03", "Europe/Paris")  # loses an hour to summer time
    assert march.bounds[1] - march.bounds[0] == 31 * 86400 - 3600
    assert (
        parse_period("2026-03-29", "Europe/Paris").bounds[1]
        - parse_period("2026-03-29", "Europe/Paris").bounds[0]
        == 23 * 3600
    )
    assert parse_period("2026").end.year == 2027
    for bad in ("2026-13", "26-11", "2026-11-31", "last month"):
        with pytest.raises(InvalidRequest):
            parse_period(bad)


def test_billing_settings_from_the_file_and_the_environment(tmp_path: Path) -> None:
    cfg = tmp_path / "tokenomy.yaml"
    cfg.write_text("billing:\n  fail_mode: open\n  cache_ttl: 0.5\n")
    got = billing_config(load_settings(cfg, env={}))
    assert got == BillingConfig(require_balance=False, fail_mode="open", cache_ttl=0.5)
    env = {"TOKENOMY_REQUIRE_BALANCE": "true"}
    assert billing_config(load_settings(cfg, env=env)).require_balance is True
    assert billing_config(load_settings(None, env={})) == BillingConfig()
    cfg.write_text("billing:\n  require_balanse: true\n")
    with pytest.raises(ConfigError, match="unknown"):
        billing_config(load_settings(cfg, env={}))
    cfg.write_text("billing:\n  fail_mode: maybe\n")
    with pytest.raises(ConfigError, match="fail_mode"):
        billing_config(load_settings(cfg, env={}))


def test_a_record_carries_the_terms_it_is_charged_under() -> None:
    flat = Plan(
        "flat", input_per_mtok=D("3"), output_per_mtok=D("15"), cached_input_per_mtok=D("1")
    )
    terms = {"customer": "acme", "unit": "usd", **plan_terms(flat)}
    assert terms["input_per_mtok"] == "3" and "markup_pct" not in terms
    assert plan_from_terms(terms) == flat
    rec = UsageRecord(request_id="r", usage=Usage(1000, 100), decisions={"billing": terms})
    assert record_charge(rec) == (D("0.0045"), D("0.0045"))
    rec.decisions["billing"] = {**terms, "unit": "tokens"}
    assert record_charge(rec) == (D("0.0045"), D(1100))
    rec.decisions["billing"] = {"customer": "acme", "unit": None}  # postpaid, no plan
    rec.cost_usd = D("0.0000000015")
    assert record_charge(rec) == (D("0.000000002"), None)
    assert record_charge(UsageRecord(request_id="x", cost_usd=D("0.5"))) == (D("0.5"), None)
    unpriced = UsageRecord(request_id="y", decisions={"billing": {"unit": "usd", "plan": "p",
                                                                  "markup_pct": "10"}})  # fmt: skip
    assert record_charge(unpriced) == (None, D(0))


def test_a_cache_hit_pays_for_the_answer_as_the_plan_prices_it(
    fake: Fake, fake_llamacpp: Fake, tmp_path: Path
) -> None:
    """A hit costs the provider nothing: free under a markup (or no plan); a fixed-price
    plan charges the tokens served, and a token balance pays them (docs/billing.md)."""
    for gw in cached_gateway(tmp_path, fake, fake_llamacpp):
        b = BillingStore(gw.store)
        b.create_plan(Plan("pro", markup_pct=Decimal("20")))
        b.create_plan(Plan("flat", input_per_mtok=Decimal("1"), output_per_mtok=Decimal("2")))
        for customer, plan, unit in (
            ("m", "pro", "usd"),
            ("f", "flat", "usd"),
            ("t", None, "tokens"),
        ):
            if plan:
                b.assign_plan(customer, plan)
            b.topup(customer, Decimal(10**6), unit=unit)
        key = gw.openai(app_key(gw))
        for customer in ("m", "f", "t"):
            msgs = [{"role": "user", "content": f"cache me {customer}"}]
            ids = [
                key.chat.completions.with_raw_response.create(
                    model="gpt-4o",
                    messages=msgs,  # type: ignore[arg-type]
                    user=customer,
                    temperature=0,
                ).headers["x-tokenomy-request-id"]
                for _ in range(2)
            ]
            paid, hit = gw.record(ids[0]), gw.record(ids[1])
            assert hit.decisions["cache"]["hit"] == "exact" and hit.cost_usd == 0
            debit, first = b.debit_of(hit.request_id), b.debit_of(paid.request_id)
            assert first is not None and first.amount < 0
            if customer == "m":
                assert debit is None  # 20% on $0
            else:
                assert debit is not None and debit.amount == first.amount
