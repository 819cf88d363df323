"""The numbers of the ``caps:``, ``cache:``, ``billing:`` and ``alerts:`` sections and
the deployments' prices are read by the shared `tokenomy.config.number` (dollars by
`decimal_number`, which keeps them exact): a negative, non-numeric, boolean,
infinite, NaN or too large value is one line of `ConfigError` that names the
setting, as for every other setting."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from tokenomy.billing.policy import billing_config
from tokenomy.cache.config import cache_config
from tokenomy.caps.config import caps_config
from tokenomy.config import Settings, load_settings
from tokenomy.errors import ConfigError
from tokenomy.insights.watch import watch_config

HUGE = "1" + "0" * 400  # beyond a float: float() raises OverflowError
BAD = ["-1", "abc", "true", ".inf", ".nan", "[1]", HUGE]

# setting → (YAML that sets it to @, values it refuses besides BAD)
SETTINGS = {
    **{f"caps.{name}": (f"caps: {{{name}: @}}", ["0"])
       for name in ("lease", "sweep_interval", "reload_interval", "max_hold",
                    "alert_timeout", "redis_timeout", "allowance_idle")},
    "caps.allowance": ("caps: {allowance: @}", ["2.5"]),
    "caps.default_max_output": ("caps: {default_max_output: @}", ["0", "2.5"]),
    "caps.output_limits.my-model": ("caps: {output_limits: {my-model: @}}", ["0", "2.5"]),
    "caps.inexact_input_margin": ("caps: {inexact_input_margin: @}", ["0.5"]),
    **{f"cache.{name}": (f"cache: {{{name}: @}}", ["0", "2.5"])
       for name in ("max_entry_bytes", "max_entries", "max_bytes")},
    "cache.ttl": ("cache: {ttl: @}", ["0"]),
    "cache.coalesce_wait": ("cache: {coalesce_wait: @}", []),
    "cache.semantic.target_wrong_hit_rate": (
        "cache: {semantic: {target_wrong_hit_rate: @}}", ["0", "1", "1.5"]
    ),
    "cache.semantic.sync_interval": ("cache: {semantic: {sync_interval: @}}", []),
    "billing.cache_ttl": ("billing: {cache_ttl: @}", []),
    "billing.reconcile_window": ("billing: {reconcile_window: @}", []),
    **{f"alerts.{name}": (f"alerts: {{{name}: @}}", []) for name in ("interval", "k", "min_spend")},
    "alerts.min_days": ("alerts: {min_days: @}", ["2.5"]),
    "alerts.baseline_days": ("alerts: {baseline_days: @}", ["0", "2.5", "1000000"]),
    "alerts.budgets.team=search": ('alerts: {budgets: {"team=search": @}}', []),
    "models[0].price.input": ("models: [{name: m, provider: openai, price: {input: @, output: 1}}]",
                              []),
    "models[0].price.cache_read": (
        "models: [{name: m, provider: openai, price: {input: 1, output: 1, cache_read: @}}]", []
    ),
}  # fmt: skip
CASES = [
    (where, template.replace("@", v), v)
    for where, (template, more) in SETTINGS.items()
    for v in (BAD + more)
]


def _load(tmp_path: Path, text: str) -> Settings:
    path = tmp_path / "tokenomy.yaml"
    path.write_text(text + "\n")
    return load_settings(path, env={})


@pytest.mark.parametrize(
    ("where", "text", "value"),
    CASES,
    ids=[f"{w}={'huge' if v == HUGE else v}" for w, _, v in CASES],
)
def test_a_bad_number_is_one_line_naming_the_setting(
    tmp_path: Path, where: str, text: str, value: str
) -> None:
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, text)
    message = str(err.value)
    assert message.startswith(f"{where}: expected "), message
    assert "\n" not in message


def test_good_numbers_still_read(tmp_path: Path) -> None:
    s = _load(
        tmp_path,
        'caps: {lease: "15", allowance: 0, default_max_output: 4096, '
        'output_limits: {my-model: 8192}, inexact_input_margin: "1.25", allowance_idle: 0.5}\n'
        "cache: {ttl: 60, max_entries: 10, coalesce_wait: 0, "
        "semantic: {target_wrong_hit_rate: 0.05, sync_interval: 0}}",
    )
    caps = caps_config(s)
    assert (caps.lease, caps.allowance, caps.default_max_output) == (15.0, 0, 4096)
    assert caps.output_limits == {"my-model": 8192} and caps.allowance_idle == 0.5
    assert caps.inexact_input_margin == Decimal("1.25")
    assert isinstance(caps.allowance, int) and isinstance(caps.default_max_output, int)
    cache = cache_config(s)
    assert (cache.ttl, cache.max_entries, cache.coalesce_wait) == (60.0, 10, 0.0)
    assert isinstance(cache.max_entries, int)
    assert (cache.semantic.target_wrong_hit_rate, cache.semantic.sync_interval) == (0.05, 0.0)


def test_good_billing_and_alerts_numbers_still_read(tmp_path: Path) -> None:
    s = _load(
        tmp_path,
        'billing: {cache_ttl: 0, reconcile_window: "3600"}\n'
        'alerts: {interval: 0, k: 2.5, min_spend: "0.10", min_days: 0, baseline_days: 3660, '
        'budgets: {total: 2000, "team=search": 0.1}}\n'
        "models: [{name: m, provider: openai, price: {input: 0.1, output: '2.50'}}]",
    )
    billing = billing_config(s)
    assert (billing.cache_ttl, billing.reconcile_window) == (0.0, 3600.0)
    alerts = watch_config(s.alerts, None)
    assert alerts.interval == 0.0
    rules = alerts.rules
    # Dollars (and the factor on them) are the exact Decimal written, not a float's.
    assert (str(rules.k), str(rules.min_spend)) == ("2.5", "0.10")
    assert {k: str(v) for k, v in rules.budgets.items()} == {"total": "2000", "team=search": "0.1"}
    assert (rules.min_days, rules.baseline_days) == (0, 3660)
    assert isinstance(rules.min_days, int) and isinstance(rules.baseline_days, int)
    price = s.deployments[0].price
    assert price is not None and (str(price.input), str(price.output)) == ("0.1", "2.50")


@pytest.mark.parametrize(
    ("text", "where"),
    [("caps: {output_limits: [8192]}", "caps.output_limits"),
     ("cache: {allowed_tools: 5}", "cache.allowed_tools"),
     ("alerts: {budgets: [500]}", "alerts.budgets"),
     ("alerts: {by: team}", "alerts.by"),
     ("alerts: {by: [user]}", "alerts.by"),
     ("alerts: {webhook_url: 5}", "alerts.webhook_url")],
)  # fmt: skip
def test_a_wrong_shape_is_named_too(tmp_path: Path, text: str, where: str) -> None:
    with pytest.raises(ConfigError, match=f"^{where}: expected "):
        _load(tmp_path, text)
